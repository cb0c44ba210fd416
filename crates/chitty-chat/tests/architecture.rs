//! The architecture invariants about crate boundaries that can be checked mechanically (ARCHITECTURE.md,
//! "Crate boundaries"): which crates may depend on which, read from `cargo metadata`.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

/// Every workspace crate and the names of its normal (not dev, not build) dependencies.
fn normal_dependencies() -> BTreeMap<String, BTreeSet<String>> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let output = Command::new(cargo)
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo metadata runs");
    assert!(
        output.status.success(),
        "cargo metadata failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let metadata: serde_json::Value =
        serde_json::from_slice(&output.stdout).expect("cargo metadata prints JSON");
    metadata["packages"]
        .as_array()
        .expect("a package list")
        .iter()
        .map(|package| {
            let name = package["name"].as_str().expect("a name").to_owned();
            let dependencies = package["dependencies"]
                .as_array()
                .expect("a dependency list")
                .iter()
                .filter(|dependency| dependency["kind"].is_null())
                .map(|dependency| dependency["name"].as_str().expect("a name").to_owned())
                .collect();
            (name, dependencies)
        })
        .collect()
}

/// Asserts that only the crates in `allowed` have a normal dependency whose name `matches`.
fn only_these_depend_on(what: &str, matches: impl Fn(&str) -> bool, allowed: &[&str]) {
    let crates = normal_dependencies();
    assert!(
        crates.len() >= 10,
        "got {} workspace crates from cargo metadata",
        crates.len()
    );
    let offenders: Vec<String> = crates
        .iter()
        .filter(|(name, dependencies)| {
            !allowed.contains(&name.as_str())
                && dependencies.iter().any(|dependency| matches(dependency))
        })
        .map(|(name, _)| name.clone())
        .collect();
    assert!(
        offenders.is_empty(),
        "{offenders:?} depend on {what}, which only {allowed:?} may"
    );
}

#[test]
fn only_the_grpc_layers_depend_on_tonic() {
    // The contract's generated code, the service's and the participant's gRPC layers, and the load
    // generator, which speaks the wire protocol itself.
    only_these_depend_on(
        "tonic",
        |name| name == "tonic" || name.starts_with("tonic-"),
        &[
            "chitty-proto",
            "chitty-service",
            "chitty-participant",
            "chitty-bench",
        ],
    );
}

#[test]
fn only_the_cluster_crate_and_the_bench_talk_to_nats() {
    only_these_depend_on(
        "async-nats",
        |name| name == "async-nats",
        &["chitty-cluster", "chitty-bench"],
    );
}

#[test]
fn only_the_service_opens_the_database() {
    only_these_depend_on("redb", |name| name == "redb", &["chitty-service"]);
}

#[test]
fn only_the_front_ends_draw_on_the_terminal() {
    only_these_depend_on(
        "ratatui",
        |name| name == "ratatui" || name == "crossterm",
        &["chitty-participant", "chitty-top"],
    );
}

#[test]
fn the_pure_core_depends_on_no_other_crate_of_ours_and_on_no_runtime() {
    let crates = normal_dependencies();
    let core = crates
        .get("chitty-core")
        .expect("chitty-core is a workspace crate");
    let impure: Vec<&String> = core
        .iter()
        .filter(|dependency| {
            dependency.starts_with("chitty-")
                || ["tokio", "tonic", "async-nats", "redb", "hyper", "axum"]
                    .contains(&dependency.as_str())
        })
        .collect();
    assert!(
        impure.is_empty(),
        "chitty-core depends on {impure:?}: the core has no I/O and no async"
    );
}
