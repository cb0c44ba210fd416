//! The checker on the logs of real runs, committed under `testdata/`, and on corrupted copies of them.
//!
//! - `testdata/demo/` holds the logs of `chitty-chat demo --participants 4`, untrimmed: four participants
//!   join and chat, erin joins late, publishes and leaves, dave is killed with SIGKILL and announced left
//!   by the service, and the rest leave.
//! - `testdata/restarts/` holds the logs of `testdata/restarts.sh`: the service is stopped and restarted,
//!   then killed with SIGKILL and restarted, with its log appended; dave is killed; carol is frozen until
//!   her session ends, and joins again; bob is frozen until the service no longer holds what he missed,
//!   and skips it.
//!
//! - `testdata/cluster/` holds the logs of `testdata/cluster.sh`: three cluster nodes (`serve --nats`,
//!   one log each) with participants spread over them; dave is killed and announced left by another
//!   node; node-2 is killed, carol fails over to node-0, frank (who knows only node-2) is announced left
//!   and joins again once node-2 is back in a second life that replays the stream. The nodes' logs also
//!   hold lines of the NATS client library, which are not Chitty-Chat records and are skipped.
//!
//! - `testdata/web/` holds the logs of a run with browser participants: alice and bob are the participant
//!   page in headless Chromium (served from another origin, with `serve --web-origin`), their logs what
//!   `window.chittyLog()` returned; carol is a
//!   terminal participant (`join --plain --say ... --leave-after 12s`). bob first tries the name "Alice"
//!   and is refused, the service is stopped and restarted while alice types, both pages resume, carol
//!   leaves on her own and the pages leave with `window.chittyLeave()`.
//!
//! The reports are compared with `testdata/golden/`. After an intended change to the report, run
//! `UPDATE_GOLDEN=1 cargo test -p chitty-check --test real_runs` and look at the difference before
//! committing it.

use std::fs;
use std::path::{Path, PathBuf};

use chitty_check::{Check, Report, Violation, check};
use chitty_logs::Run;
use chitty_logs::testing::compare_golden;

fn testdata() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata")
}

/// Reads and checks a committed run the way a caller would.
fn check_dir(name: &str) -> Report {
    check_dir_skipping(name, 0)
}

/// Reads and checks a committed run in which `skipped` lines are not log records.
fn check_dir_skipping(name: &str, skipped: usize) -> Report {
    let run = chitty_logs::read_dir(testdata().join(name))
        .unwrap_or_else(|error| panic!("the committed run {name} reads: {error}"));
    assert_eq!(run.skipped_lines(), skipped, "skipped lines in {name}");
    check(&run)
}

/// How many lines of the committed cluster run are the NATS client library's, not records.
const CLUSTER_SKIPPED: usize = 11;

/// The log files of a committed run, to corrupt before checking.
struct Copy(Vec<(String, String)>);

impl Copy {
    fn of(name: &str) -> Copy {
        let mut files = Vec::new();
        let dir = testdata().join(name);
        for entry in fs::read_dir(&dir).unwrap_or_else(|error| panic!("{name}: {error}")) {
            let path = entry.map(|entry| entry.path()).expect("a directory entry");
            let text = fs::read_to_string(&path).expect("a log file");
            let file = path
                .file_name()
                .map(|file| file.to_string_lossy().into_owned());
            files.push((file.unwrap_or_default(), text));
        }
        files.sort();
        Copy(files)
    }

    fn lines(&mut self, file: &str) -> (Vec<String>, &mut String) {
        let Some((_, text)) = self.0.iter_mut().find(|(name, _)| name == file) else {
            panic!("no file {file}");
        };
        (text.lines().map(str::to_owned).collect(), text)
    }

    /// The index of the one line of `file` containing `pattern`.
    fn line_of(lines: &[String], file: &str, pattern: &str) -> usize {
        let found: Vec<usize> = (0..lines.len())
            .filter(|index| lines[*index].contains(pattern))
            .collect();
        match found.as_slice() {
            [index] => *index,
            _ => panic!(
                "{pattern:?} matches {} lines of {file}, want 1",
                found.len()
            ),
        }
    }

    fn delete_line(mut self, file: &str, pattern: &str) -> Copy {
        let (mut lines, text) = self.lines(file);
        let index = Copy::line_of(&lines, file, pattern);
        lines.remove(index);
        *text = lines.join("\n") + "\n";
        self
    }

    fn swap_lines(mut self, file: &str, first: &str, second: &str) -> Copy {
        let (mut lines, text) = self.lines(file);
        let (a, b) = (
            Copy::line_of(&lines, file, first),
            Copy::line_of(&lines, file, second),
        );
        lines.swap(a, b);
        *text = lines.join("\n") + "\n";
        self
    }

    /// Replaces `from` with `to` in the one line of `file` containing `pattern`.
    fn edit_line(mut self, file: &str, pattern: &str, from: &str, to: &str) -> Copy {
        let (mut lines, text) = self.lines(file);
        let index = Copy::line_of(&lines, file, pattern);
        assert!(
            lines[index].contains(from),
            "{from:?} is not in {pattern:?}"
        );
        lines[index] = lines[index].replacen(from, to, 1);
        *text = lines.join("\n") + "\n";
        self
    }

    /// Replaces `from` with `to` in the last line of `file` containing `pattern`.
    fn edit_last_line(mut self, file: &str, pattern: &str, from: &str, to: &str) -> Copy {
        let (mut lines, text) = self.lines(file);
        let Some(index) = lines.iter().rposition(|line| line.contains(pattern)) else {
            panic!("{pattern:?} matches no line of {file}");
        };
        assert!(
            lines[index].contains(from),
            "{from:?} is not in {pattern:?}"
        );
        lines[index] = lines[index].replacen(from, to, 1);
        *text = lines.join("\n") + "\n";
        self
    }

    /// The logs as one `docker compose logs` file: each line behind its container's name (the file's
    /// name without `.log`, then `-1`), the containers' lines merged by timestamp, each container's in
    /// its own order, as `docker compose logs` keeps them.
    fn combined(&self) -> Run {
        let mut queues: Vec<(String, std::collections::VecDeque<&str>)> = self
            .0
            .iter()
            .map(|(file, text)| {
                let container = format!("{}-1", file.trim_end_matches(".log"));
                (container, text.lines().collect())
            })
            .collect();
        let timestamp = |line: &str| line.get(14..41).unwrap_or_default().to_owned();
        let mut combined = Vec::new();
        while let Some((container, queue)) = queues
            .iter_mut()
            .filter(|(_, queue)| !queue.is_empty())
            .min_by_key(|(_, queue)| queue.front().map(|line| timestamp(line)))
        {
            if let Some(line) = queue.pop_front() {
                combined.push(format!("{container:<12} | {line}"));
            }
        }
        let mut run = Run::new();
        run.add_text(Some("compose.log"), &combined.join("\n"));
        run
    }

    fn check(&self) -> Report {
        let mut run = Run::new();
        for (file, text) in &self.0 {
            run.add_text(Some(file), text);
        }
        check(&run)
    }
}

/// The violations of `check`, printed; fails with the report unless there is at least one.
fn violations(report: &Report, check: Check) -> Vec<String> {
    let found: Vec<String> = report
        .violations_of(check)
        .map(Violation::to_string)
        .collect();
    assert!(
        !found.is_empty(),
        "got no violation of {check:?}, want one; the report:\n{report}"
    );
    found
}

/// Compares `report` with the golden file `name`, or rewrites it when `UPDATE_GOLDEN=1`; a difference
/// shows the whole report too, since a report is short and its context explains the line.
fn check_golden(name: &str, report: &Report) {
    // The first line names the directory checked, which differs between checkouts.
    let got = report.to_string().replace(
        &testdata().display().to_string(),
        "crates/chitty-check/testdata",
    );
    if let Err(mismatch) = compare_golden(&testdata().join("golden").join(name), &got) {
        panic!("{mismatch}\nthe whole report:\n{got}");
    }
}

#[test]
fn the_demo_run_passes_cleanly() {
    let report = check_dir("demo");
    assert!(report.is_ok(), "got violations, want none:\n{report}");
    assert!(report.notes().is_empty(), "got notes:\n{report}");
    assert!(report.acknowledged_gaps().is_empty(), "got:\n{report}");
    assert_eq!(
        report.coverage(Check::NoEventLost),
        Some("5 participant processes checked over 62 expected receives, 0 acknowledged gaps")
    );
    check_golden("demo.txt", &report);
}

#[test]
fn the_run_with_restarts_and_reconnections_passes_with_its_acknowledged_gaps() {
    let report = check_dir("restarts");
    assert!(report.is_ok(), "got violations, want none:\n{report}");
    assert!(report.notes().is_empty(), "got notes:\n{report}");
    let gaps: Vec<(&str, u64, u64)> = report
        .acknowledged_gaps()
        .iter()
        .map(|gap| (gap.participant.as_str(), gap.from, gap.to))
        .collect();
    assert_eq!(gaps, [("bob", 17, 20), ("carol", 13, 13)]);
    assert_eq!(
        report.coverage(Check::SeqHasNoGap),
        Some("27 broadcast lines of the service, seq 1 to 27, across 3 service lives")
    );
    check_golden("restarts.txt", &report);
}

#[test]
fn the_run_with_browser_participants_passes_like_any_other() {
    // The page logs in the participant vocabulary, so its logs are checked like a terminal's: a page that
    // logged a field the checker cannot read, or a clock step out of order, would fail here.
    let report = check_dir("web");
    assert!(report.is_ok(), "got violations, want none:\n{report}");
    assert!(report.notes().is_empty(), "got notes:\n{report}");
    assert_eq!(
        report.coverage(Check::NoEventLost),
        Some("3 participant processes checked over 24 expected receives, 0 acknowledged gaps")
    );
    assert_eq!(
        report.coverage(Check::ClockCondition),
        Some("61 pairs: 22 requests, 15 responses, 24 deliveries")
    );
    check_golden("web.txt", &report);
}

#[test]
fn a_receive_missing_from_a_page_log_is_an_event_lost() {
    let report = Copy::of("web")
        .delete_line("bob.log", r#""event":"receive","seq":5,"#)
        .check();
    assert_eq!(
        violations(&report, Check::NoEventLost).len(),
        1,
        "got:\n{report}"
    );
}

#[test]
fn one_docker_compose_file_of_the_demo_reads_and_checks_like_the_directory() {
    // `docker compose logs` interleaves the containers' lines, each behind its container's name.
    let mut lines: Vec<(String, String)> = Vec::new();
    for (file, text) in Copy::of("demo").0 {
        let container = format!("{}-1", file.trim_end_matches(".log"));
        for line in text.lines() {
            let timestamp = line.get(14..41).unwrap_or_default().to_owned();
            lines.push((timestamp, format!("{container:<10} | {line}")));
        }
    }
    lines.sort();
    let combined: Vec<String> = lines.into_iter().map(|(_, line)| line).collect();
    let mut run = Run::new();
    run.add_text(Some("compose.log"), &combined.join("\n"));
    let report = check(&run);
    let directory = check_dir("demo");
    assert!(report.is_ok(), "got violations, want none:\n{report}");
    for check in Check::ALL {
        assert_eq!(
            report.coverage(check),
            directory.coverage(check),
            "coverage of {check:?}: got the combined file's, want the directory's"
        );
    }
}

#[test]
fn a_deleted_receive_is_an_event_lost() {
    let report = Copy::of("demo")
        .delete_line("bob.log", r#""event":"receive","seq":7,"#)
        .check();
    assert_eq!(report.violations().len(), 1, "got:\n{report}");
    let found = violations(&report, Check::NoEventLost);
    assert_eq!(
        found,
        [
            "[no event lost] bob did not receive seq 7, although it was present from its join at seq 2 to seq 17, the seq before it left at seq 18; want every seq in between, and no gap it acknowledged covers these (at bob.log:3, bob.log:13, bob.log:14, bob.log:26)"
        ]
    );
    check_golden("demo_receive_deleted.txt", &report);
}

#[test]
fn two_swapped_receives_are_a_reordering_and_a_clock_going_back() {
    let report = Copy::of("demo")
        .swap_lines(
            "bob.log",
            r#""event":"receive","seq":6,"#,
            r#""event":"receive","seq":7,"#,
        )
        .check();
    assert_eq!(
        violations(&report, Check::SameOrderEverywhere),
        [
            "[same order everywhere] bob received seq 6 after seq 7; want seqs in increasing order (at bob.log:14, bob.log:13)"
        ]
    );
    assert_eq!(
        violations(&report, Check::ClocksIncrease),
        [
            "[every node's clock strictly increases] bob's clock did not increase: Lamport 44 at its receive (bob.log:14), after 45 at its receive (bob.log:13); want more than 45 (at bob.log:14, bob.log:13)"
        ]
    );
    assert_eq!(report.violations().len(), 2, "got:\n{report}");
}

#[test]
fn a_receive_time_not_above_the_send_breaks_the_clock_condition() {
    let report = Copy::of("demo")
        .edit_line(
            "carol.log",
            r#""event":"receive","seq":10,"#,
            r#""lamport":49"#,
            r#""lamport":45"#,
        )
        .check();
    let found = violations(&report, Check::ClockCondition);
    assert_eq!(
        found,
        [
            "[clock condition on every send/receive pair] delivery: the service sent seq 10 at Lamport 45 (service.log:24), and carol received it at Lamport 45 (carol.log:16); want the receive greater than 45 (at carol.log:16)"
        ]
    );
    // carol's own clock went back too, to 45 after 48.
    violations(&report, Check::ClocksIncrease);
    assert!(
        report.violations().iter().all(|violation| matches!(
            violation.check,
            Check::ClockCondition | Check::ClocksIncrease
        )),
        "got:\n{report}"
    );
}

#[test]
fn a_restart_that_recovers_less_than_was_acknowledged_loses_history() {
    let report = Copy::of("restarts")
        .edit_line(
            "service.log",
            r#""event":"recover","last_seq":15"#,
            r#""last_seq":15"#,
            r#""last_seq":14"#,
        )
        .check();
    assert_eq!(
        violations(&report, Check::SeqHasNoGap),
        [
            "[seq has no gap] the service restarted with its history going back: it recovered up to seq 14, but it had reached seq 15 before the restart, losing seq 15 (at service.log:50)"
        ]
    );
}

#[test]
fn a_broadcast_line_lost_in_the_crash_is_vouched_for_by_the_recovery() {
    // The service was killed after ordering seq 15 (carol's message) and before logging it, as a
    // SIGKILL can do: the restart's recovered last_seq says it was kept.
    let copy = Copy::of("restarts").delete_line("service.log", r#""event":"broadcast","seq":15,"#);
    let report = copy.check();
    assert!(report.is_ok(), "got violations, want none:\n{report}");
    let notes = report.notes().join("\n");
    assert!(
        notes.contains("seq 15: recovered by the restart at service.log:49 but never logged as broadcast")
            && notes.contains("1 acknowledged calls have no broadcast line; the service's call line and its recovered last_seq vouch for them"),
        "got notes:\n{notes}"
    );
    // Without the recovery saying so, the same missing line is a gap, and what was received of it
    // invented.
    let report = copy
        .edit_line(
            "service.log",
            r#""event":"recover","last_seq":15"#,
            r#""last_seq":15"#,
            r#""last_seq":14"#,
        )
        .check();
    violations(&report, Check::SeqHasNoGap);
    violations(&report, Check::NothingInvented);
    violations(&report, Check::AcknowledgedKept);
}

#[test]
fn the_cluster_run_passes_with_a_restarted_node_and_a_failover() {
    let report = check_dir_skipping("cluster", CLUSTER_SKIPPED);
    assert!(report.is_ok(), "got violations, want none:\n{report}");
    let gaps: Vec<(&str, u64, u64)> = report
        .acknowledged_gaps()
        .iter()
        .map(|gap| (gap.participant.as_str(), gap.from, gap.to))
        .collect();
    assert_eq!(gaps, [("frank", 13, 15)]);
    assert_eq!(
        report.coverage(Check::SeqHasNoGap),
        Some("87 broadcast lines of a cluster of 3 nodes, seq 1 to 25, across 4 node lives")
    );
    check_golden("cluster.txt", &report);
}

#[test]
fn one_docker_compose_file_of_the_cluster_reads_and_checks_like_the_directory() {
    // All three nodes log as `service` into one file; their containers tell them apart.
    let report = check(&Copy::of("cluster").combined());
    let directory = check_dir_skipping("cluster", CLUSTER_SKIPPED);
    assert!(report.is_ok(), "got violations, want none:\n{report}");
    for check in Check::ALL {
        assert_eq!(
            report.coverage(check),
            directory.coverage(check),
            "coverage of {check:?}: got the combined file's, want the directory's"
        );
    }
    let printed = report.to_string();
    assert!(
        printed.contains("  cluster node node-2 (service-2-1): 2 lives (beginning at compose.log:"),
        "got:\n{printed}"
    );
}

#[test]
fn two_nodes_disagreeing_on_an_event_are_a_violation_naming_both() {
    let report = Copy::of("cluster")
        .edit_line(
            "service-1.log",
            r#""event":"broadcast","seq":8,"#,
            r#""text":"hello from carol on node-2""#,
            r#""text":"hello from carol on node-1""#,
        )
        .check();
    assert_eq!(
        violations(&report, Check::SameOrderEverywhere),
        [
            "[same order everywhere] the cluster's nodes disagree on seq 8: node-1 broadcast message by carol \"hello from carol on node-1\" at Lamport 29, but node-0 broadcast message by carol \"hello from carol on node-2\" at Lamport 29 first: text got \"hello from carol on node-1\", want \"hello from carol on node-2\" (at service-1.log:17, service-0.log:15)"
        ]
    );
    assert_eq!(report.violations().len(), 1, "got:\n{report}");
}

#[test]
fn a_restarted_node_that_replays_a_different_event_is_caught() {
    let report = Copy::of("cluster")
        .edit_last_line(
            "service-2.log",
            r#""event":"broadcast","seq":3,"#,
            r#""lamport":9,"#,
            r#""lamport":10,"#,
        )
        .check();
    let found = violations(&report, Check::SameOrderEverywhere);
    assert_eq!(found.len(), 1, "got:\n{report}");
    assert!(
        found[0].starts_with(
            "[same order everywhere] the cluster's nodes disagree on seq 3: node-2 (life 2 of 2) broadcast joined by carol at Lamport 10, but node-0 broadcast joined by carol at Lamport 9 first: Lamport time got 10, want 9"
        ),
        "got {found:?}"
    );
}

#[test]
fn a_seq_no_node_logged_is_a_gap_of_the_cluster() {
    let mut copy = Copy::of("cluster");
    for node in ["service-0.log", "service-1.log", "service-2.log"] {
        copy = copy.delete_line(node, r#""event":"broadcast","seq":14,"#);
    }
    let report = copy.check();
    let found = violations(&report, Check::SeqHasNoGap);
    assert_eq!(found.len(), 1, "got:\n{report}");
    assert!(
        found[0].starts_with(
            "[seq has no gap] no node of the cluster broadcast seq 14: the nodes' broadcast lines go from seq 13 to seq 15; no participant can have received it"
        ),
        "got {found:?}"
    );
    // What participants received of it is then invented, and carol's acknowledged message lost.
    violations(&report, Check::NothingInvented);
    violations(&report, Check::AcknowledgedKept);
}
