//! Regenerates the Rust code for `proto/chittychat/v1/chittychat.proto` and fails if it differs from what
//! is committed, so the committed code can never drift from the contract.
//!
//! No system `protoc` is needed: `protox` parses the proto file in pure Rust. After changing the proto
//! file, run `cargo test -p chitty-proto --test bootstrap` once; it rewrites the generated file and fails,
//! and the next run passes. Commit the result.

use std::path::PathBuf;

#[test]
fn generated_code_is_up_to_date() {
    let crate_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let proto_root = crate_dir.join("../../proto");
    let committed_path = crate_dir.join("src/generated/chittychat.v1.rs");

    let descriptors = protox::compile(["chittychat/v1/chittychat.proto"], [&proto_root])
        .expect("the proto file must parse");
    let out_dir = tempfile::tempdir().expect("a temporary directory");
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .codec_path("crate::codec::Codec")
        .out_dir(out_dir.path())
        .compile_fds(descriptors)
        .expect("code generation must succeed");

    let generated = std::fs::read_to_string(out_dir.path().join("chittychat.v1.rs"))
        .expect("the generator writes chittychat.v1.rs");
    let committed = std::fs::read_to_string(&committed_path).unwrap_or_default();
    if generated != committed {
        std::fs::write(&committed_path, &generated).expect("rewrite the generated code");
        panic!(
            "the generated code in {} was out of date and has been rewritten; review and commit it",
            committed_path.display()
        );
    }
}
