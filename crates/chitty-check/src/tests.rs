//! Unit tests on small hand-written runs: one clean run, and one edit of it (or a run of its own) per kind
//! of violation.
//!
//! The clean run follows the Lamport rules of `README.md` by hand: alice joins (seq 1), bob joins (2),
//! alice publishes "hi" (3), bob publishes "hello" (4), alice leaves (5), bob leaves (6).

use chitty_logs::Run;

use crate::{Check, Report, Violation, check};

const SERVICE: &str = r#"{"component":"service","event":"start","last_seq":0}
{"component":"service","event":"broadcast","seq":1,"lamport":3,"kind":"joined","participant":"alice","text":"Participant alice joined","recipients":0}
{"component":"service","event":"join","participant":"alice","seq":1,"lamport":3,"request_lamport":1,"received_lamport":2,"response_lamport":4}
{"component":"service","event":"broadcast_open","participant":"alice","after_seq":0,"from_seq":1,"request_lamport":6,"received_lamport":7}
{"component":"service","event":"broadcast","seq":2,"lamport":9,"kind":"joined","participant":"bob","text":"Participant bob joined","recipients":1}
{"component":"service","event":"join","participant":"bob","seq":2,"lamport":9,"request_lamport":1,"received_lamport":8,"response_lamport":10}
{"component":"service","event":"broadcast_open","participant":"bob","after_seq":0,"from_seq":2,"request_lamport":12,"received_lamport":13}
{"component":"service","event":"broadcast","seq":3,"lamport":15,"kind":"message","participant":"alice","text":"hi","recipients":2}
{"component":"service","event":"publish","participant":"alice","seq":3,"lamport":15,"request_lamport":11,"received_lamport":14,"response_lamport":16}
{"component":"service","event":"broadcast","seq":4,"lamport":19,"kind":"message","participant":"bob","text":"hello","recipients":2}
{"component":"service","event":"publish","participant":"bob","seq":4,"lamport":19,"request_lamport":17,"received_lamport":18,"response_lamport":20}
{"component":"service","event":"broadcast","seq":5,"lamport":23,"kind":"left","participant":"alice","text":"Participant alice left","recipients":1}
{"component":"service","event":"leave","participant":"alice","seq":5,"lamport":23,"request_lamport":21,"received_lamport":22,"response_lamport":24}
{"component":"service","event":"broadcast","seq":6,"lamport":27,"kind":"left","participant":"bob","text":"Participant bob left","recipients":0}
{"component":"service","event":"leave","participant":"bob","seq":6,"lamport":27,"request_lamport":25,"received_lamport":26,"response_lamport":28}
{"component":"service","event":"stop","last_seq":6}
"#;

const ALICE: &str = r#"{"component":"alice","event":"connect","server":"http://127.0.0.1:50051"}
{"component":"alice","event":"join_sent","lamport":1}
{"component":"alice","event":"join_ok","seq":1,"response_lamport":4,"lamport":5}
{"component":"alice","event":"broadcast_open","after_seq":0,"lamport":6}
{"component":"alice","event":"receive","seq":1,"kind":"joined","participant":"alice","event_lamport":3,"lamport":7,"text":"Participant alice joined"}
{"component":"alice","event":"receive","seq":2,"kind":"joined","participant":"bob","event_lamport":9,"lamport":10,"text":"Participant bob joined"}
{"component":"alice","event":"publish_sent","lamport":11,"chars":2}
{"component":"alice","event":"publish_ok","seq":3,"response_lamport":16,"lamport":17}
{"component":"alice","event":"receive","seq":3,"kind":"message","participant":"alice","event_lamport":15,"lamport":18,"text":"hi"}
{"component":"alice","event":"receive","seq":4,"kind":"message","participant":"bob","event_lamport":19,"lamport":20,"text":"hello"}
{"component":"alice","event":"leave_sent","lamport":21}
{"component":"alice","event":"leave_ok","seq":5,"response_lamport":24,"lamport":25}
"#;

const BOB: &str = r#"{"component":"bob","event":"connect","server":"http://127.0.0.1:50051"}
{"component":"bob","event":"join_sent","lamport":1}
{"component":"bob","event":"join_ok","seq":2,"response_lamport":10,"lamport":11}
{"component":"bob","event":"broadcast_open","after_seq":0,"lamport":12}
{"component":"bob","event":"receive","seq":2,"kind":"joined","participant":"bob","event_lamport":9,"lamport":13,"text":"Participant bob joined"}
{"component":"bob","event":"receive","seq":3,"kind":"message","participant":"alice","event_lamport":15,"lamport":16,"text":"hi"}
{"component":"bob","event":"publish_sent","lamport":17,"chars":5}
{"component":"bob","event":"publish_ok","seq":4,"response_lamport":20,"lamport":21}
{"component":"bob","event":"receive","seq":4,"kind":"message","participant":"bob","event_lamport":19,"lamport":22,"text":"hello"}
{"component":"bob","event":"receive","seq":5,"kind":"left","participant":"alice","event_lamport":23,"lamport":24,"text":"Participant alice left"}
{"component":"bob","event":"leave_sent","lamport":25}
{"component":"bob","event":"leave_ok","seq":6,"response_lamport":28,"lamport":29}
"#;

/// The log files of a run, by file name.
#[derive(Debug, Clone)]
struct Logs(Vec<(&'static str, String)>);

impl Logs {
    fn clean() -> Logs {
        Logs(vec![
            ("alice.log", ALICE.to_owned()),
            ("bob.log", BOB.to_owned()),
            ("service.log", SERVICE.to_owned()),
        ])
    }

    fn text(&mut self, file: &str) -> &mut String {
        match self.0.iter_mut().find(|(name, _)| *name == file) {
            Some((_, text)) => text,
            None => panic!("the fixture has no file {file}"),
        }
    }

    /// Replaces the one occurrence of `from` in `file` with `to`.
    fn replace(mut self, file: &str, from: &str, to: &str) -> Logs {
        let text = self.text(file);
        assert_eq!(
            text.matches(from).count(),
            1,
            "{from:?} must occur exactly once in {file}"
        );
        *text = text.replacen(from, to, 1);
        self
    }

    /// Removes the one line of `file` that contains `pattern`.
    fn remove_line(mut self, file: &str, pattern: &str) -> Logs {
        let text = self.text(file);
        let kept: Vec<&str> = text
            .lines()
            .filter(|line| !line.contains(pattern))
            .collect();
        assert_eq!(
            kept.len() + 1,
            text.lines().count(),
            "{pattern:?} must match exactly one line of {file}"
        );
        *text = kept.join("\n") + "\n";
        self
    }

    fn without(mut self, file: &str) -> Logs {
        self.0.retain(|(name, _)| *name != file);
        self
    }

    fn check(&self) -> Report {
        let mut run = Run::new();
        for (file, text) in &self.0 {
            run.add_text(Some(file), text);
        }
        check(&run)
    }
}

/// The one violation of `check` in `report` about `participant` at `seq`, whose message contains every
/// piece of `says`; fails with the whole report otherwise.
fn find<'a>(
    report: &'a Report,
    check: Check,
    participant: Option<&str>,
    seq: Option<u64>,
    says: &[&str],
) -> &'a Violation {
    let found: Vec<&Violation> = report
        .violations_of(check)
        .filter(|violation| violation.participant.as_deref() == participant)
        .filter(|violation| violation.seq == seq)
        .collect();
    let [violation] = found.as_slice() else {
        panic!(
            "got {} violations of {check:?} for {participant:?} at seq {seq:?}, want 1; the report:\n{report}",
            found.len()
        );
    };
    for piece in says {
        assert!(
            violation.message.contains(piece),
            "got the message {:?}, want it to say {piece:?}",
            violation.message
        );
    }
    let printed = report.to_string();
    assert!(
        printed.contains(&violation.to_string()),
        "the printed report must list the violation; got:\n{printed}"
    );
    violation
}

/// Fails unless every violation in `report` is of one of `checks`.
fn only(report: &Report, checks: &[Check]) {
    let others: Vec<String> = report
        .violations()
        .iter()
        .filter(|violation| !checks.contains(&violation.check))
        .map(ToString::to_string)
        .collect();
    assert!(
        others.is_empty(),
        "got violations of other checks than {checks:?}: {others:#?}"
    );
}

#[test]
fn the_clean_run_passes_every_check_and_says_what_it_covered() {
    let report = Logs::clean().check();
    assert!(report.is_ok(), "got violations, want none:\n{report}");
    assert!(report.notes().is_empty(), "got notes:\n{report}");
    let coverage = |check| report.coverage(check).unwrap_or_default().to_owned();
    assert_eq!(
        coverage(Check::SeqHasNoGap),
        "6 broadcast lines of the service, seq 1 to 6, across 1 service life"
    );
    assert_eq!(
        coverage(Check::ClockCondition),
        "22 pairs: 8 requests, 6 responses, 8 deliveries"
    );
    let printed = report.to_string();
    for line in [
        "  alice: from its join at seq 1 (alice.log:3) to seq 4, the seq before it left at seq 5 (alice.log:12); received 4 of 4 expected",
        "  bob: from its join at seq 2 (bob.log:3) to seq 5, the seq before it left at seq 6 (bob.log:12); received 4 of 4 expected",
        "  ok    no event lost: 2 participant processes checked over 8 expected receives, 0 acknowledged gaps",
        "result: OK, no violation",
    ] {
        assert!(
            printed.contains(line),
            "the report must contain {line:?}; got:\n{printed}"
        );
    }
}

#[test]
fn a_seq_the_service_skipped_or_gave_twice_is_found() {
    let logs = Logs(vec![(
        "service.log",
        concat!(
            r#"{"component":"service","event":"start","last_seq":0}"#,
            "\n",
            r#"{"component":"service","event":"broadcast","seq":1,"lamport":3,"kind":"joined","participant":"alice","text":"j"}"#,
            "\n",
            r#"{"component":"service","event":"broadcast","seq":2,"lamport":5,"kind":"message","participant":"alice","text":"a"}"#,
            "\n",
            r#"{"component":"service","event":"broadcast","seq":5,"lamport":7,"kind":"message","participant":"alice","text":"b"}"#,
            "\n",
            r#"{"component":"service","event":"broadcast","seq":5,"lamport":9,"kind":"message","participant":"alice","text":"c"}"#,
            "\n",
            r#"{"component":"service","event":"stop","last_seq":5}"#,
            "\n",
        )
        .to_owned(),
    )]);
    let report = logs.check();
    let gap = find(
        &report,
        Check::SeqHasNoGap,
        None,
        Some(3),
        &[
            "the service never broadcast seqs 3 to 4",
            "from seq 2",
            "to seq 5",
        ],
    );
    assert_eq!(
        gap.locations
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>(),
        ["service.log:3", "service.log:4"]
    );
    find(
        &report,
        Check::SeqHasNoGap,
        None,
        Some(5),
        &[
            "broadcast seq 5 twice",
            "message by alice \"b\" at Lamport 7",
            "message by alice \"c\" at Lamport 9",
        ],
    );
    assert_eq!(report.violations().len(), 2, "got:\n{report}");
}

#[test]
fn a_received_event_that_differs_from_the_service_or_was_never_broadcast_is_invented() {
    let report = Logs::clean()
        .replace(
            "alice.log",
            r#""event_lamport":19,"lamport":20,"text":"hello""#,
            r#""event_lamport":19,"lamport":20,"text":"hellO""#,
        )
        .check();
    only(&report, &[Check::NothingInvented]);
    let violation = find(
        &report,
        Check::NothingInvented,
        Some("alice"),
        Some(4),
        &["text got \"hellO\", want \"hello\""],
    );
    assert_eq!(violation.locations[0].to_string(), "alice.log:10");

    let report = Logs::clean()
        .replace(
            "bob.log",
            r#"{"component":"bob","event":"leave_sent","lamport":25}"#,
            concat!(
                r#"{"component":"bob","event":"receive","seq":9,"kind":"message","participant":"mallory","event_lamport":24,"lamport":25,"text":"boo"}"#,
                "\n",
                r#"{"component":"bob","event":"leave_sent","lamport":26}"#,
            ),
        )
        .check();
    find(
        &report,
        Check::NothingInvented,
        Some("bob"),
        Some(9),
        &[
            "bob received seq 9, message by mallory \"boo\" at Lamport 24, which the service never broadcast",
        ],
    );
}

#[test]
fn a_seq_received_twice_is_a_duplicate() {
    let report = Logs::clean()
        .replace(
            "bob.log",
            r#"{"component":"bob","event":"leave_ok","seq":6,"response_lamport":28,"lamport":29}"#,
            concat!(
                r#"{"component":"bob","event":"leave_ok","seq":6,"response_lamport":28,"lamport":29}"#,
                "\n",
                r#"{"component":"bob","event":"receive","seq":4,"kind":"message","participant":"bob","event_lamport":19,"lamport":30,"text":"hello"}"#,
            ),
        )
        .check();
    // The repeated line is also out of order after seq 5; only the duplicate is reported for it.
    only(&report, &[Check::NoDuplicate]);
    find(
        &report,
        Check::NoDuplicate,
        Some("bob"),
        Some(4),
        &["bob received seq 4 twice: first at bob.log:9, again at bob.log:13"],
    );
}

#[test]
fn seqs_received_out_of_order_are_a_reordering() {
    // bob prints seq 5 before seq 4, with clocks that are otherwise consistent.
    let report = Logs::clean()
        .replace(
            "bob.log",
            concat!(
                r#"{"component":"bob","event":"receive","seq":4,"kind":"message","participant":"bob","event_lamport":19,"lamport":22,"text":"hello"}"#,
                "\n",
                r#"{"component":"bob","event":"receive","seq":5,"kind":"left","participant":"alice","event_lamport":23,"lamport":24,"text":"Participant alice left"}"#,
                "\n",
                r#"{"component":"bob","event":"leave_sent","lamport":25}"#,
            ),
            concat!(
                r#"{"component":"bob","event":"receive","seq":5,"kind":"left","participant":"alice","event_lamport":23,"lamport":24,"text":"Participant alice left"}"#,
                "\n",
                r#"{"component":"bob","event":"receive","seq":4,"kind":"message","participant":"bob","event_lamport":19,"lamport":25,"text":"hello"}"#,
                "\n",
                r#"{"component":"bob","event":"leave_sent","lamport":26}"#,
            ),
        )
        .replace(
            "service.log",
            r#""request_lamport":25,"received_lamport":26"#,
            r#""request_lamport":26,"received_lamport":27"#,
        )
        .replace(
            "service.log",
            r#"{"component":"service","event":"broadcast","seq":6,"lamport":27"#,
            r#"{"component":"service","event":"broadcast","seq":6,"lamport":28"#,
        )
        .replace(
            "service.log",
            r#""seq":6,"lamport":27,"request_lamport""#,
            r#""seq":6,"lamport":28,"request_lamport""#,
        )
        .replace(
            "service.log",
            r#""response_lamport":28}"#,
            r#""response_lamport":29}"#,
        )
        .replace(
            "bob.log",
            r#""seq":6,"response_lamport":28,"lamport":29"#,
            r#""seq":6,"response_lamport":29,"lamport":30"#,
        )
        .check();
    only(&report, &[Check::SameOrderEverywhere]);
    let violation = find(
        &report,
        Check::SameOrderEverywhere,
        Some("bob"),
        Some(4),
        &["bob received seq 4 after seq 5; want seqs in increasing order"],
    );
    let locations: Vec<String> = violation
        .locations
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(locations, ["bob.log:10", "bob.log:9"]);
}

#[test]
fn a_seq_a_present_participant_did_not_receive_is_lost() {
    let report = Logs::clean()
        .remove_line("bob.log", r#""seq":3,"kind":"message""#)
        .check();
    only(&report, &[Check::NoEventLost]);
    let violation = find(
        &report,
        Check::NoEventLost,
        Some("bob"),
        Some(3),
        &[
            "bob did not receive seq 3",
            "present from its join at seq 2 to seq 5, the seq before it left at seq 6",
        ],
    );
    // The join, and the receives on both sides of the gap.
    let locations: Vec<String> = violation
        .locations
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        locations,
        ["bob.log:3", "bob.log:5", "bob.log:8", "bob.log:11"]
    );
}

#[test]
fn an_acknowledged_message_missing_from_the_history_is_lost() {
    // The service has no seq 3 at all: alice was told seq 3, and nobody has it.
    let report = Logs::clean()
        .remove_line("service.log", r#""event":"broadcast","seq":3"#)
        .remove_line("alice.log", r#""seq":3,"kind""#)
        .remove_line("bob.log", r#""seq":3,"kind""#)
        .check();
    find(
        &report,
        Check::AcknowledgedKept,
        Some("alice"),
        Some(3),
        &[
            "alice's Publish was acknowledged with seq 3 (alice.log:8), but the service's history has no seq 3: an acknowledged Publish was lost",
        ],
    );
    // A restart that recovered less than was acknowledged gives the seq to someone else's event.
    let restarted = SERVICE
        .replace(
            r#"{"component":"service","event":"broadcast","seq":3,"lamport":15,"kind":"message","participant":"alice","text":"hi","recipients":2}"#,
            concat!(
                r#"{"component":"service","event":"stop","last_seq":2}"#,
                "\n",
                r#"{"component":"service","event":"recover","last_seq":2,"lamport":100}"#,
                "\n",
                r#"{"component":"service","event":"start","last_seq":2}"#,
            ),
        );
    let report = Logs::clean()
        .replace("service.log", SERVICE, &restarted)
        .replace(
            "service.log",
            r#""seq":4,"lamport":19,"kind":"message","participant":"bob""#,
            r#""seq":3,"lamport":101,"kind":"message","participant":"bob""#,
        )
        .check();
    find(
        &report,
        Check::AcknowledgedKept,
        Some("alice"),
        Some(3),
        &[
            "alice's Publish was acknowledged with seq 3 (alice.log:8), but the service's seq 3 is message by bob \"hello\" at Lamport 101; want a message event by alice",
        ],
    );
}

#[test]
fn a_receive_not_after_its_send_breaks_the_clock_condition() {
    let report = Logs::clean()
        .replace(
            "alice.log",
            r#""event_lamport":19,"lamport":20"#,
            r#""event_lamport":19,"lamport":19"#,
        )
        .check();
    only(&report, &[Check::ClockCondition]);
    find(
        &report,
        Check::ClockCondition,
        Some("alice"),
        Some(4),
        &[
            "delivery: the service sent seq 4 at Lamport 19 (service.log:10), and alice received it at Lamport 19 (alice.log:10); want the receive greater than 19",
        ],
    );

    let report = Logs::clean()
        .replace(
            "service.log",
            r#""request_lamport":17,"received_lamport":18"#,
            r#""request_lamport":17,"received_lamport":17"#,
        )
        .check();
    only(&report, &[Check::ClockCondition]);
    find(
        &report,
        Check::ClockCondition,
        Some("bob"),
        Some(4),
        &[
            "request: bob sent publish_sent at Lamport 17 (bob.log:7), and the service received it at Lamport 17 (service.log:11)",
        ],
    );
}

#[test]
fn a_clock_that_goes_back_is_found_for_participants_and_the_service() {
    let report = Logs::clean()
        .replace(
            "alice.log",
            r#""response_lamport":4,"lamport":5"#,
            r#""response_lamport":4,"lamport":9"#,
        )
        .check();
    only(&report, &[Check::ClocksIncrease]);
    find(
        &report,
        Check::ClocksIncrease,
        Some("alice"),
        None,
        &[
            "alice's clock did not increase: Lamport 6 at its broadcast_open (alice.log:4), after 9 at its join_ok (alice.log:3); want more than 9",
        ],
    );

    // The service's event times must increase along seq.
    let report = Logs::clean()
        .replace(
            "service.log",
            r#""seq":4,"lamport":19,"kind""#,
            r#""seq":4,"lamport":14,"kind""#,
        )
        .check();
    find(
        &report,
        Check::ClocksIncrease,
        None,
        Some(4),
        &["seq 4 has Lamport 14, after seq 3 at Lamport 15; want more than 15"],
    );
}

#[test]
fn a_sender_whose_messages_were_reordered_or_swapped_is_found() {
    // alice's second message got a lower seq than her first.
    let logs = Logs(vec![(
        "alice.log",
        concat!(
            r#"{"component":"alice","event":"join_sent","lamport":1}"#,
            "\n",
            r#"{"component":"alice","event":"join_ok","seq":1,"response_lamport":4,"lamport":5}"#,
            "\n",
            r#"{"component":"alice","event":"publish_sent","lamport":6,"chars":3}"#,
            "\n",
            r#"{"component":"alice","event":"publish_ok","seq":3,"response_lamport":9,"lamport":10}"#,
            "\n",
            r#"{"component":"alice","event":"publish_sent","lamport":11,"chars":4}"#,
            "\n",
            r#"{"component":"alice","event":"publish_ok","seq":2,"response_lamport":14,"lamport":15}"#,
            "\n",
        )
        .to_owned(),
    )]);
    let report = logs.check();
    find(
        &report,
        Check::SenderOrder,
        Some("alice"),
        Some(2),
        &[
            "alice sent a message at alice.log:5 that got seq 2, after the message it sent earlier at alice.log:3 got seq 3",
        ],
    );

    // The event at alice's seq is not as long as what she sent.
    let report = Logs::clean()
        .replace(
            "alice.log",
            r#""lamport":11,"chars":2"#,
            r#""lamport":11,"chars":3"#,
        )
        .check();
    only(&report, &[Check::SenderOrder]);
    find(
        &report,
        Check::SenderOrder,
        Some("alice"),
        Some(3),
        &[
            "alice sent a message of 3 characters at alice.log:7 and was told seq 3, but the event at seq 3 is message by alice \"hi\" at Lamport 15, of 2 characters",
        ],
    );
}

#[test]
fn a_gap_the_participant_said_it_skipped_is_acknowledged_not_a_violation() {
    // bob loses his connection after seq 2; when he is back the service no longer holds seqs 3 and 4.
    let report = Logs::clean()
        .replace(
            "bob.log",
            r#"{"component":"bob","event":"receive","seq":3,"kind":"message","participant":"alice","event_lamport":15,"lamport":16,"text":"hi"}"#,
            concat!(
                r#"{"component":"bob","event":"disconnected","reason":"the service is unreachable","last_seq":2}"#,
                "\n",
                r#"{"component":"bob","event":"reconnect_attempt","server":"http://127.0.0.1:50051","after_seq":2}"#,
                "\n",
                r#"{"component":"bob","event":"broadcast_open","after_seq":2,"lamport":14}"#,
                "\n",
                r#"{"component":"bob","event":"broadcast_open","after_seq":4,"lamport":16}"#,
                "\n",
                r#"{"component":"bob","event":"reconnected","server":"http://127.0.0.1:50051","after_seq":4}"#,
            ),
        )
        .remove_line("bob.log", r#""seq":4,"kind""#)
        .check();
    // Those two stream openings are not in the service's log; nothing asks the service's lines to have a
    // participant's counterpart.
    assert!(report.is_ok(), "got violations, want none:\n{report}");
    let gaps: Vec<String> = report
        .acknowledged_gaps()
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        gaps,
        [
            "bob skipped seqs 3 to 4: the service no longer held them when it reconnected; it printed so and carried on from the present (at bob.log:10)"
        ]
    );
    assert!(
        report
            .to_string()
            .contains("acknowledged gaps (1), not violations:"),
        "got:\n{report}"
    );
    // The same gap without the `reconnected` line that acknowledges it is a violation.
    let report = Logs::clean()
        .remove_line("bob.log", r#""seq":3,"kind""#)
        .remove_line("bob.log", r#""seq":4,"kind""#)
        .check();
    find(
        &report,
        Check::NoEventLost,
        Some("bob"),
        Some(3),
        &["bob did not receive seqs 3 to 4"],
    );
}

#[test]
fn a_killed_participant_is_checked_up_to_its_last_receive() {
    // bob is killed after receiving seq 3; the service announces him left at seq 6.
    let mut bob: Vec<&str> = BOB.lines().take(6).collect();
    bob.push("");
    let report = Logs::clean()
        .replace("bob.log", BOB, &bob.join("\n"))
        .remove_line("service.log", r#""event":"publish","participant":"bob""#)
        .remove_line("service.log", r#""event":"leave","participant":"bob""#)
        .replace(
            "service.log",
            r#""seq":4,"lamport":19,"kind":"message","participant":"bob","text":"hello""#,
            r#""seq":4,"lamport":19,"kind":"message","participant":"alice","text":"hello""#,
        )
        .replace(
            "service.log",
            r#"{"component":"service","event":"stop","last_seq":6}"#,
            concat!(
                r#"{"component":"service","event":"crash_leave","participant":"bob","seq":6,"lamport":27,"grace_ms":2000}"#,
                "\n",
                r#"{"component":"service","event":"stop","last_seq":6}"#,
            ),
        )
        .replace(
            "alice.log",
            r#""participant":"bob","event_lamport":19,"lamport":20,"text":"hello""#,
            r#""participant":"alice","event_lamport":19,"lamport":20,"text":"hello""#,
        )
        .check();
    assert!(report.is_ok(), "got violations, want none:\n{report}");
    let printed = report.to_string();
    assert!(
        printed.contains("  bob: from its join at seq 2 (bob.log:3) to seq 3, killed or cut off: the service announced it left at seq 6, so checked up to its last receive (service.log:14); received 2 of 2 expected"),
        "got:\n{printed}"
    );
}

#[test]
fn without_the_service_log_participants_are_compared_with_each_other() {
    let report = Logs::clean().without("service.log").check();
    assert!(report.is_ok(), "got violations, want none:\n{report}");
    assert!(
        report
            .notes()
            .iter()
            .any(|note| note.starts_with("the service's log is missing")),
        "got notes {:?}",
        report.notes()
    );
    assert!(
        report
            .to_string()
            .contains("history: NO SERVICE LOG; the union of what the participants received"),
        "got:\n{report}"
    );

    let report = Logs::clean()
        .without("service.log")
        .replace(
            "bob.log",
            r#""event_lamport":15,"lamport":16,"text":"hi""#,
            r#""event_lamport":15,"lamport":16,"text":"ho""#,
        )
        .check();
    only(&report, &[Check::SameOrderEverywhere]);
    find(
        &report,
        Check::SameOrderEverywhere,
        Some("bob"),
        Some(3),
        &[
            "participants disagree on seq 3: bob received message by alice \"ho\" at Lamport 15, alice received message by alice \"hi\" at Lamport 15: text got \"ho\", want \"hi\"",
        ],
    );
}

#[test]
fn a_failing_report_prints_each_violation_with_its_check_and_locations() {
    let report = Logs::clean()
        .remove_line("bob.log", r#""seq":3,"kind":"message""#)
        .check();
    let printed = report.to_string();
    for line in [
        "  FAIL  no event lost: 1 violation; 2 participant processes checked over 8 expected receives, 0 acknowledged gaps",
        "violations (1):",
        "  1. [no event lost] bob did not receive seq 3, although it was present from its join at seq 2 to seq 5, the seq before it left at seq 6; want every seq in between, and no gap it acknowledged covers these (at bob.log:3, bob.log:5, bob.log:8, bob.log:11)",
        "result: FAILED, 1 violation",
    ] {
        assert!(
            printed.contains(line),
            "the report must contain {line:?}; got:\n{printed}"
        );
    }
}

#[test]
fn a_presence_call_is_paired_like_the_other_calls() {
    let service = concat!(
        r#"{"component":"service","event":"start","last_seq":0}"#,
        "\n",
        r#"{"component":"service","event":"broadcast","seq":1,"lamport":3,"kind":"joined","participant":"carol","text":"Participant carol joined"}"#,
        "\n",
        r#"{"component":"service","event":"join","participant":"carol","seq":1,"lamport":3,"request_lamport":1,"received_lamport":2,"response_lamport":4}"#,
        "\n",
        r#"{"component":"service","event":"participants","participant":"carol","present":1,"seq":1,"request_lamport":7,"received_lamport":8,"response_lamport":9}"#,
        "\n",
        r#"{"component":"service","event":"stop","last_seq":1}"#,
        "\n",
    );
    let carol = concat!(
        r#"{"component":"carol","event":"connect"}"#,
        "\n",
        r#"{"component":"carol","event":"join_sent","lamport":1}"#,
        "\n",
        r#"{"component":"carol","event":"join_ok","seq":1,"response_lamport":4,"lamport":5}"#,
        "\n",
        r#"{"component":"carol","event":"receive","seq":1,"kind":"joined","participant":"carol","event_lamport":3,"lamport":6,"text":"Participant carol joined"}"#,
        "\n",
        r#"{"component":"carol","event":"participants_sent","lamport":7}"#,
        "\n",
        r#"{"component":"carol","event":"participants_ok","present":1,"seq":1,"response_lamport":9,"lamport":10}"#,
        "\n",
    );
    let logs = Logs(vec![
        ("carol.log", carol.to_owned()),
        ("service.log", service.to_owned()),
    ]);
    let report = logs.check();
    assert!(report.is_ok(), "got violations, want none:\n{report}");
    assert_eq!(
        report.coverage(Check::ClockCondition),
        Some("5 pairs: 2 requests, 2 responses, 1 delivery"),
        "got:\n{report}"
    );

    let report = logs
        .clone()
        .replace(
            "carol.log",
            r#""response_lamport":9,"lamport":10"#,
            r#""response_lamport":9,"lamport":9"#,
        )
        .check();
    only(&report, &[Check::ClockCondition]);
    find(
        &report,
        Check::ClockCondition,
        Some("carol"),
        Some(1),
        &[
            "response: the service answered carol's Participants at Lamport 9, and carol received the answer at Lamport 9 (carol.log:6)",
        ],
    );

    let report = logs
        .replace(
            "carol.log",
            r#""present":1,"seq":1"#,
            r#""present":1,"seq":2"#,
        )
        .check();
    find(
        &report,
        Check::NothingInvented,
        Some("carol"),
        Some(2),
        &[
            "carol was told seq 2 for its Participants (carol.log:6), but the service's answer stamped 9 was for seq 1 (service.log:4)",
        ],
    );
}

/// The clean run served by a cluster of two nodes: alice calls node `a`, bob calls node `b`, and each
/// node logs a broadcast line for every event, as every node of a cluster does.
fn cluster() -> Logs {
    Logs::clean()
        .without("service.log")
        .with("service-a.log", node_log("a", &["alice"]))
        .with("service-b.log", node_log("b", &["bob"]))
}

/// The clean service log as node `node` logs it: its `start` names the node, and of the call lines
/// it keeps those of `callers`.
fn node_log(node: &str, callers: &[&str]) -> String {
    let mut log = String::new();
    for line in SERVICE.lines() {
        let keep = if line.contains(r#""event":"start""#) {
            log.push_str(&line.replace(
                r#""last_seq":0"#,
                &format!(r#""node":"{node}","last_seq":0"#),
            ));
            log.push('\n');
            continue;
        } else if line.contains(r#""event":"broadcast""#) || line.contains(r#""event":"stop""#) {
            true
        } else {
            callers
                .iter()
                .any(|caller| line.contains(&format!(r#""participant":"{caller}""#)))
        };
        if keep {
            log.push_str(line);
            log.push('\n');
        }
    }
    log
}

impl Logs {
    fn with(mut self, file: &'static str, text: String) -> Logs {
        self.0.push((file, text));
        self
    }
}

#[test]
fn a_cluster_of_two_nodes_is_checked_as_one_history() {
    let report = cluster().check();
    assert!(report.is_ok(), "got violations, want none:\n{report}");
    assert!(report.notes().is_empty(), "got notes:\n{report}");
    assert_eq!(
        report.coverage(Check::SeqHasNoGap),
        Some("12 broadcast lines of a cluster of 2 nodes, seq 1 to 6, across 2 node lives")
    );
    // Every call is matched, on whichever node logged it.
    assert_eq!(
        report.coverage(Check::ClockCondition),
        Some("22 pairs: 8 requests, 6 responses, 8 deliveries")
    );
    let printed = report.to_string();
    for line in [
        "  history: the union of the broadcast lines of a cluster of 2 nodes (a, b), seq 1 to 6, across 2 node lives",
        "  cluster node a (service-a.log): 1 life (beginning at service-a.log:1), 6 broadcast lines (seqs 1 to 6)",
        "6 broadcast lines of a seq that another node (or an earlier life of the node) had broadcast compared with the first",
    ] {
        assert!(
            printed.contains(line),
            "the report must contain {line:?}; got:\n{printed}"
        );
    }
}

#[test]
fn service_logs_that_name_no_node_are_one_service_whose_seqs_repeat() {
    // The same two logs without node ids are one service restarted, which broadcast every seq twice:
    // only a `node` on a `start` line makes a cluster.
    let logs = cluster()
        .replace("service-a.log", r#""node":"a","#, "")
        .replace("service-b.log", r#""node":"b","#, "");
    let report = logs.check();
    let printed = report.to_string();
    for piece in [
        "the service restarted with its history going back: it recovered up to seq 0, but it had reached seq 6",
        "the service broadcast seq 1 twice",
        "the service's clock went back across the restart at service-b.log:1",
    ] {
        assert!(
            printed.contains(piece),
            "the report must say {piece:?}; got:\n{printed}"
        );
    }
    assert_eq!(
        report.violations_of(Check::SeqHasNoGap).count(),
        7,
        "got:\n{report}"
    );
    // An empty node id is a single service too.
    let report = cluster()
        .replace("service-a.log", r#""node":"a","#, r#""node":"","#)
        .replace("service-b.log", r#""node":"b","#, r#""node":"","#)
        .check();
    assert_eq!(
        report.violations_of(Check::SeqHasNoGap).count(),
        7,
        "got:\n{report}"
    );
}

#[test]
fn nodes_that_disagree_on_an_event_are_a_violation_naming_both() {
    let report = cluster()
        .replace(
            "service-b.log",
            r#""participant":"bob","text":"hello","recipients":2"#,
            r#""participant":"bob","text":"hellO","recipients":2"#,
        )
        .check();
    let violation = find(
        &report,
        Check::SameOrderEverywhere,
        None,
        Some(4),
        &[
            "the cluster's nodes disagree on seq 4: b broadcast message by bob \"hellO\" at Lamport 19, but a broadcast message by bob \"hello\" at Lamport 19 first: text got \"hellO\", want \"hello\"",
        ],
    );
    assert_eq!(
        violation
            .locations
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>(),
        ["service-b.log:7", "service-a.log:8"]
    );
    assert_eq!(report.violations().len(), 1, "got:\n{report}");

    // A participant that received the version of its node is not blamed for the nodes' disagreement.
    let report = cluster()
        .replace(
            "service-b.log",
            r#""participant":"bob","text":"hello","recipients":2"#,
            r#""participant":"bob","text":"hellO","recipients":2"#,
        )
        .replace(
            "bob.log",
            r#""event_lamport":19,"lamport":22,"text":"hello""#,
            r#""event_lamport":19,"lamport":22,"text":"hellO""#,
        )
        .check();
    only(&report, &[Check::SameOrderEverywhere]);
    assert_eq!(report.violations().len(), 1, "got:\n{report}");
    // A version no node broadcast is still invented.
    let report = cluster()
        .replace(
            "bob.log",
            r#""event_lamport":19,"lamport":22,"text":"hello""#,
            r#""event_lamport":19,"lamport":22,"text":"hellO""#,
        )
        .check();
    find(
        &report,
        Check::NothingInvented,
        Some("bob"),
        Some(4),
        &["text got \"hellO\", want \"hello\""],
    );
}

/// Node `b` killed after broadcasting seqs 1 to 3 and started again: the new life replays the stream,
/// logging seq 1 before its `start` line, and goes on to seq 6.
fn cluster_with_a_restarted_node() -> Logs {
    let full = node_log("b", &[]);
    let lines: Vec<&str> = full.lines().collect();
    let (start, broadcasts) = (lines[0], &lines[1..7]);
    let mut log = vec![start];
    log.extend(&broadcasts[..3]);
    log.push(broadcasts[0]);
    log.push(start);
    log.extend(&broadcasts[1..]);
    log.extend(&lines[7..]);
    cluster()
        .without("service-a.log")
        .without("service-b.log")
        .with("service-a.log", node_log("a", &["alice", "bob"]))
        .with("service-b.log", log.join("\n") + "\n")
}

#[test]
fn a_restarted_node_replays_the_stream_in_a_new_life_with_a_new_clock() {
    let report = cluster_with_a_restarted_node().check();
    assert!(report.is_ok(), "got violations, want none:\n{report}");
    assert_eq!(
        report.coverage(Check::SeqHasNoGap),
        Some("15 broadcast lines of a cluster of 2 nodes, seq 1 to 6, across 3 node lives")
    );
    let printed = report.to_string();
    for line in [
        "  cluster node b (service-b.log): 2 lives (beginning at service-b.log:1, service-b.log:5), 9 broadcast lines (seqs 1 to 3, then seqs 1 to 6); 1 of them ended without a `stop` line",
        "seqs from 7: after the nodes' last broadcast line: 1 node life ended without a `stop` line (b (life 1 of 2))",
    ] {
        assert!(
            printed.contains(line),
            "the report must contain {line:?}; got:\n{printed}"
        );
    }

    // A replay that differs from what was broadcast before is caught, and names the life.
    let report = cluster_with_a_restarted_node()
        .replace(
            "service-b.log",
            r#""seq":5,"lamport":23,"kind":"left""#,
            r#""seq":5,"lamport":22,"kind":"left""#,
        )
        .check();
    find(
        &report,
        Check::SameOrderEverywhere,
        None,
        Some(5),
        &[
            "b (life 2 of 2) broadcast left by alice at Lamport 22, but a broadcast left by alice at Lamport 23 first: Lamport time got 22, want 23",
        ],
    );
}

#[test]
fn a_seq_no_node_broadcast_is_a_gap_of_the_cluster() {
    // One node's missing line is covered by the other's.
    let report = cluster()
        .remove_line("service-b.log", r#""event":"broadcast","seq":3,"#)
        .check();
    assert!(report.is_ok(), "got violations, want none:\n{report}");
    let report = cluster()
        .remove_line("service-a.log", r#""event":"broadcast","seq":3,"#)
        .remove_line("service-b.log", r#""event":"broadcast","seq":3,"#)
        .check();
    find(
        &report,
        Check::SeqHasNoGap,
        None,
        Some(3),
        &[
            "no node of the cluster broadcast seq 3: the nodes' broadcast lines go from seq 2 to seq 4; no participant can have received it",
        ],
    );
}

#[test]
fn a_cluster_event_time_not_above_the_one_before_breaks_the_clock() {
    let report = cluster()
        .replace(
            "service-a.log",
            r#""seq":4,"lamport":19,"kind":"message""#,
            r#""seq":4,"lamport":15,"kind":"message""#,
        )
        .replace(
            "service-b.log",
            r#""seq":4,"lamport":19,"kind":"message""#,
            r#""seq":4,"lamport":15,"kind":"message""#,
        )
        .check();
    find(
        &report,
        Check::ClocksIncrease,
        None,
        Some(4),
        &[
            "the service's event times do not increase along seq: seq 4 has Lamport 15, after seq 3 at Lamport 15",
        ],
    );
}

#[test]
fn a_node_log_without_a_start_line_is_one_more_node_named_after_its_file() {
    let report = cluster()
        .remove_line("service-b.log", r#""event":"start""#)
        .check();
    assert!(report.is_ok(), "got violations, want none:\n{report}");
    let printed = report.to_string();
    for piece in [
        "cluster node service-b.log (service-b.log): 1 life",
        "the service's lines in service-b.log name no node on a `start` line, in a run whose other service lines do; they are taken as one more node of the cluster, called service-b.log",
    ] {
        assert!(
            printed.contains(piece),
            "the report must say {piece:?}; got:\n{printed}"
        );
    }
}
