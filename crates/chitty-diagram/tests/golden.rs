//! Golden-file tests: diagrams of the committed demo run, compared with `testdata/golden/`.
//!
//! `testdata/run/` holds the logs of a real `chitty-chat demo --participants 4` run, untrimmed.
//! `testdata/cluster/` holds the logs of a real run of three cluster nodes (`serve --nats`), made by
//! `crates/chitty-check/testdata/cluster.sh`: the same logs as `chitty-check`'s `testdata/cluster/`. Each test
//! draws one window of it and compares the output with its golden file byte for byte. After an intended
//! change to the output, run `UPDATE_GOLDEN=1 cargo test -p chitty-diagram --test golden` to rewrite the
//! golden files, and look at the difference before committing it.

use std::path::{Path, PathBuf};

use chitty_diagram::{Format, Run, Window, read_dir};
use chitty_logs::testing::assert_golden;

fn testdata() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata")
}

fn demo_run() -> Run {
    read_dir(testdata().join("run")).expect("the committed demo run reads")
}

/// Compares `got` with the golden file `name`, or rewrites it when `UPDATE_GOLDEN=1`.
fn check_golden(name: &str, got: &str) {
    assert_golden(&testdata().join("golden").join(name), got);
}

fn draw(window: &Window, format: Format) -> String {
    demo_run()
        .diagram(window)
        .unwrap_or_else(|error| panic!("drawing {window}: {error}"))
        .render(format)
}

#[test]
fn the_demo_run_reads_completely() {
    let run = demo_run();
    assert_eq!(run.skipped_lines(), 0, "skipped lines");
    assert_eq!(run.unmatched_records(), 0, "unmatched records");
    assert_eq!(
        run.participants().collect::<Vec<_>>(),
        ["alice", "bob", "carol", "dave", "erin"]
    );
}

#[test]
fn whole_run_svg() {
    check_golden("run_all.svg", &draw(&Window::All, Format::Svg));
}

#[test]
fn participant_window_svg() {
    check_golden(
        "participant_dave.svg",
        &draw(&Window::Participant("dave".into()), Format::Svg),
    );
}

#[test]
fn seq_window_svg() {
    check_golden(
        "seq_5_to_8.svg",
        &draw(&Window::Seqs { from: 5, to: 8 }, Format::Svg),
    );
}

#[test]
fn whole_run_mermaid() {
    check_golden("run_all.mmd", &draw(&Window::All, Format::Mermaid));
}

#[test]
fn seq_window_mermaid() {
    check_golden(
        "seq_13_to_16.mmd",
        &draw(&Window::Seqs { from: 13, to: 16 }, Format::Mermaid),
    );
}

fn cluster_run() -> Run {
    read_dir(testdata().join("cluster")).expect("the committed cluster run reads")
}

#[test]
fn the_cluster_run_reads_with_a_lifeline_per_node() {
    let run = cluster_run();
    // The nodes' logs hold lines of the NATS client library, which are not records.
    assert_eq!(run.skipped_lines(), 11, "skipped lines");
    assert_eq!(run.unmatched_records(), 0, "unmatched records");
    assert_eq!(
        run.services().collect::<Vec<_>>(),
        ["node-0", "node-1", "node-2"]
    );
    // The nodes' NATS layer logs as `cluster`, which is no participant.
    assert_eq!(
        run.participants().collect::<Vec<_>>(),
        ["alice", "bob", "carol", "dave", "frank", "erin"]
    );
    let diagram = run.diagram(&Window::All).expect("the whole run draws");
    assert_eq!(
        diagram.lifelines().collect::<Vec<_>>(),
        [
            "node-0", "node-1", "node-2", "alice", "bob", "carol", "dave", "frank", "erin"
        ]
    );
}

#[test]
fn cluster_seq_window_mermaid() {
    let drawn = cluster_run()
        .diagram(&Window::Seqs { from: 10, to: 14 })
        .unwrap_or_else(|error| panic!("drawing seq 10 to 14: {error}"))
        .render(Format::Mermaid);
    check_golden("cluster_seq_10_to_14.mmd", &drawn);
}
