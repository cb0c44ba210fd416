//! Regenerates the Rust code for `proto/chittychat/v1/chittychat.proto`, and the encoded
//! `FileDescriptorSet` that server reflection serves, and fails if either differs from what is
//! committed, so neither can drift from the contract.
//!
//! No system `protoc` is needed: `protox` parses the proto file in pure Rust, and the descriptor set is
//! the very one the code is generated from, encoded with prost. After changing the proto file, run
//! `cargo test -p chitty-proto --test bootstrap` once; it rewrites the stale files and fails, and the
//! next run passes. Commit the result.

use std::path::{Path, PathBuf};

use prost::Message as _;

#[test]
fn generated_code_and_descriptor_set_are_up_to_date() {
    let crate_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let proto_root = crate_dir.join("../../proto");

    let descriptors = protox::compile(["chittychat/v1/chittychat.proto"], [&proto_root])
        .expect("the proto file must parse");
    let encoded_descriptors = descriptors.encode_to_vec();
    let out_dir = tempfile::tempdir().expect("a temporary directory");
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .codec_path("crate::codec::Codec")
        .out_dir(out_dir.path())
        .compile_fds(descriptors)
        .expect("code generation must succeed");
    let generated = std::fs::read(out_dir.path().join("chittychat.v1.rs"))
        .expect("the generator writes chittychat.v1.rs");

    let stale: Vec<String> = [
        (crate_dir.join("src/generated/chittychat.v1.rs"), generated),
        (
            crate_dir.join("src/generated/chittychat.v1.descriptor.bin"),
            encoded_descriptors,
        ),
    ]
    .iter()
    .filter(|(path, generated)| rewrite_if_different(path, generated))
    .map(|(path, _)| path.display().to_string())
    .collect();
    assert!(
        stale.is_empty(),
        "these generated files were out of date and have been rewritten; review and commit them: {}",
        stale.join(", ")
    );
}

/// Writes `generated` to `committed_path` if the file there differs (or is missing); says whether it
/// did.
fn rewrite_if_different(committed_path: &Path, generated: &[u8]) -> bool {
    let committed = std::fs::read(committed_path).unwrap_or_default();
    if committed == generated {
        return false;
    }
    std::fs::write(committed_path, generated).expect("rewrite the generated file");
    true
}
