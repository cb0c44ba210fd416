//! `chitty-chat demo` runs the whole demonstration with real processes and passes its own checks.

mod common;

use std::process::Stdio;

use common::{WAIT, binary, log_lines};

#[tokio::test]
async fn the_demo_runs_four_participants_and_a_late_one_and_every_check_passes() {
    let dir = common::log_dir();
    let output = tokio::time::timeout(
        WAIT * 4,
        tokio::process::Command::new(binary())
            .args(["demo", "--participants", "4", "--out"])
            .arg(dir.path())
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("the demo finishes within a minute")
    .expect("the demo runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "the demo failed with {}:\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains("Every participant received every event it should have"),
        "{stdout}"
    );

    // One JSON log per process, every line with a component and an event.
    for name in ["service", "alice", "bob", "carol", "dave", "erin"] {
        let path = dir.path().join(format!("{name}.log"));
        let lines = log_lines(&path);
        assert!(!lines.is_empty(), "{} is empty", path.display());
        for line in &lines {
            assert!(
                line["component"].is_string() && line["event"].is_string(),
                "{name}: {line}"
            );
        }
        assert!(
            stdout.contains(&path.display().to_string()),
            "the demo does not point to {}",
            path.display()
        );
    }
    assert!(
        stdout.contains("result: OK, no violation"),
        "the demo runs the history checker: {stdout}"
    );

    // The diagram of the run, as SVG and as Mermaid, from the same logs.
    for (format, starts) in [("svg", "<svg"), ("mermaid", "sequenceDiagram")] {
        let drawn = tokio::process::Command::new(binary())
            .args(["diagram", "--participant", "erin", "--format", format])
            .arg(dir.path())
            .output()
            .await
            .expect("the diagram command runs");
        assert!(
            drawn.status.success(),
            "{}",
            String::from_utf8_lossy(&drawn.stderr)
        );
        let text = String::from_utf8_lossy(&drawn.stdout);
        assert!(
            text.trim_start().starts_with(starts),
            "{format}: {text:.200}"
        );
        assert!(text.contains("erin"), "{format} names erin");
    }

    let service = log_lines(&dir.path().join("service.log"));
    for event in [
        "start",
        "join",
        "publish",
        "broadcast",
        "broadcast_open",
        "leave",
        "crash_leave",
        "stop",
    ] {
        assert!(
            service.iter().any(|line| line["event"] == event),
            "the service log has no {event} line"
        );
    }
}
