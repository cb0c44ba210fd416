//! The chat as users see it: a real service and real participants, each its own process, driven through
//! their standard input and read from their standard output.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use chitty_chat::harness::{ParticipantProcess, joined_prefix, left_prefix, message_body};
use common::{WAIT, args, binary, has, log_dir, log_lines, participant, service};

#[tokio::test]
async fn three_participants_join_chat_and_leave_and_a_late_one_starts_at_its_own_join() {
    let dir = log_dir();
    let mut service = service(dir.path(), &[]).await;
    let mut alice = participant(&service, dir.path(), "alice").await;
    let mut bob = participant(&service, dir.path(), "bob").await;
    let mut carol = participant(&service, dir.path(), "carol").await;

    // Everyone present sees each later join, the newcomer included.
    for (watcher, names) in [
        (&mut alice, vec!["bob", "carol"]),
        (&mut bob, vec!["carol"]),
    ] {
        for name in names {
            let prefix = joined_prefix(name);
            watcher
                .wait_for_event(
                    &format!("{name}'s join"),
                    |line| line.body.starts_with(&prefix),
                    WAIT,
                )
                .await
                .expect("joins reach everyone present");
        }
    }

    alice.say("hello from alice").await.expect("type");
    bob.say("hello from bob").await.expect("type");
    carol.say("hello from carol").await.expect("type");
    let mut seen_by: Vec<Vec<(u64, String)>> = Vec::new();
    for watcher in [&mut alice, &mut bob, &mut carol] {
        for author in ["alice", "bob", "carol"] {
            let body = message_body(author, &format!("hello from {author}"));
            watcher
                .wait_for_event(
                    &format!("{author}'s message"),
                    |line| line.body == body,
                    WAIT,
                )
                .await
                .expect("every message reaches everyone");
        }
        seen_by.push(
            watcher
                .received()
                .iter()
                .filter(|line| line.body.starts_with('<'))
                .map(|line| (line.seq, line.body.clone()))
                .collect(),
        );
    }
    assert_eq!(seen_by[0], seen_by[1], "alice and bob saw different orders");
    assert_eq!(seen_by[1], seen_by[2], "bob and carol saw different orders");

    // Bob leaves: the others see it, bob does not see his own left sentence, and exits 0.
    bob.close_input();
    let status = bob.wait(WAIT).await.expect("bob exits");
    assert!(
        status.success(),
        "bob exited with {status}; stderr: {:?}",
        bob.errors()
    );
    for watcher in [&mut alice, &mut carol] {
        watcher
            .wait_for_event(
                "bob's leave",
                |line| line.body.starts_with(&left_prefix("bob")),
                WAIT,
            )
            .await
            .expect("the others see bob leave");
    }
    assert!(
        !bob.received()
            .iter()
            .any(|line| line.body.starts_with(&left_prefix("bob"))),
        "bob saw his own left sentence:\n{}",
        bob.transcript()
    );

    // A late participant starts at its own join: nothing from before it joined.
    let dave = participant(&service, dir.path(), "dave").await;
    let first = &dave.received()[0];
    assert!(
        first.body.starts_with(&joined_prefix("dave")),
        "dave's first line is {:?}, want his own join",
        first.body
    );
    for watcher in [&mut alice, &mut carol] {
        watcher
            .wait_for_event(
                "dave's join",
                |line| line.body.starts_with(&joined_prefix("dave")),
                WAIT,
            )
            .await
            .expect("the others see dave join");
    }

    // Every received line shows the participant's own clock past the event's time.
    for watcher in [&alice, &bob, &carol, &dave] {
        for line in watcher.received() {
            assert!(line.me > line.lamport, "{}: {line:?}", watcher.name());
        }
    }

    service.terminate().expect("SIGTERM");
    assert!(
        service
            .wait(WAIT)
            .await
            .expect("the service exits")
            .success()
    );

    // The service logged every call with its component, event, participant, seq and Lamport times.
    let service_log = log_lines(&dir.path().join("service.log"));
    for (event, participant) in [
        ("join", "alice"),
        ("publish", "bob"),
        ("leave", "bob"),
        ("join", "dave"),
    ] {
        let line = service_log
            .iter()
            .find(|line| has(line, "event", event) && has(line, "participant", participant))
            .unwrap_or_else(|| panic!("no {event} line for {participant} in the service log"));
        assert!(has(line, "component", "service"), "{line}");
        let request = line["request_lamport"].as_u64().expect("request_lamport");
        let received = line["received_lamport"].as_u64().expect("received_lamport");
        let stamped = line["lamport"].as_u64().expect("lamport");
        let response = line["response_lamport"].as_u64().expect("response_lamport");
        assert!(
            request < received && received < stamped && stamped < response,
            "{line}"
        );
        assert!(line["seq"].as_u64().is_some(), "{line}");
    }
    let broadcasts = service_log
        .iter()
        .filter(|line| has(line, "event", "broadcast"))
        .count();
    assert!(
        broadcasts >= 8,
        "the service logged {broadcasts} broadcasts, want every event"
    );

    // Each participant logged what it received with the event's time and its own.
    let alice_log = log_lines(&dir.path().join("alice.log"));
    let receive = alice_log
        .iter()
        .find(|line| has(line, "event", "receive") && has(line, "participant", "carol"))
        .expect("alice logged receiving from carol");
    assert!(has(receive, "component", "alice"), "{receive}");
    assert!(
        receive["lamport"].as_u64() > receive["event_lamport"].as_u64(),
        "{receive}"
    );
}

#[tokio::test]
async fn a_killed_participant_is_announced_left_within_ten_seconds_and_its_name_is_freed() {
    let dir = log_dir();
    // The default grace period: this is the promise users get out of the box.
    let mut service = service(dir.path(), &[]).await;
    let mut alice = participant(&service, dir.path(), "alice").await;
    let mut bob = participant(&service, dir.path(), "bob").await;
    alice
        .wait_for_event(
            "bob's join",
            |line| line.body.starts_with(&joined_prefix("bob")),
            WAIT,
        )
        .await
        .expect("alice sees bob join");

    bob.kill().expect("SIGKILL");
    bob.wait(WAIT).await.expect("bob dies");
    let left = alice
        .wait_for_event(
            "bob's leave",
            |line| line.body.starts_with(&left_prefix("bob")),
            Duration::from_secs(10),
        )
        .await
        .expect("a killed participant is announced left within 10 s");
    assert_eq!(
        alice
            .received()
            .iter()
            .filter(|line| line.body.starts_with(&left_prefix("bob")))
            .count(),
        1,
        "bob was announced left more than once"
    );

    // The name is free again.
    let bob_again = participant(&service, dir.path(), "bob").await;
    assert!(bob_again.received()[0].seq > left.seq);

    service.terminate().expect("SIGTERM");
    service.wait(WAIT).await.expect("the service exits");
    let crash = log_lines(&dir.path().join("service.log"))
        .into_iter()
        .find(|line| has(line, "event", "crash_leave"))
        .expect("the service logged the crash-leave");
    assert!(has(&crash, "participant", "bob"), "{crash}");
    assert!(
        crash["reason"]
            .as_str()
            .is_some_and(|reason| reason.contains("connection closed")),
        "{crash}"
    );
}

#[tokio::test]
async fn invalid_messages_are_refused_with_their_reason_and_nothing_is_broadcast() {
    let dir = log_dir();
    let mut service = service(dir.path(), &[]).await;
    let mut alice = participant(&service, dir.path(), "alice").await;
    let mut bob = participant(&service, dir.path(), "bob").await;
    alice.say("before").await.expect("type");
    let before = bob
        .wait_for_event(
            "alice's first message",
            |line| line.body == message_body("alice", "before"),
            WAIT,
        )
        .await
        .expect("a valid message goes through");

    let too_long = "x".repeat(129);
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (b"\n".to_vec(), "message is empty"),
        (b"   \n".to_vec(), "message is only whitespace"),
        (
            format!("{too_long}\n").into_bytes(),
            "message is 129 characters long, over the limit of 128",
        ),
        (b"ring \x07 the bell\n".to_vec(), "control character U+0007"),
        (
            b"\x1b[2J clear the screen\n".to_vec(),
            "control character U+001B",
        ),
        (b"delete \x7f\n".to_vec(), "control character U+007F"),
        (
            "c1 \u{85} next line\n".as_bytes().to_vec(),
            "control character U+0085",
        ),
        (
            b"not utf-8 \xff\xfe\n".to_vec(),
            "the line is not valid UTF-8",
        ),
    ];
    for (bytes, reason) in &cases {
        alice.type_bytes(bytes).await.expect("type");
        alice
            .wait_for_error(reason, |line| line.contains(reason), WAIT)
            .await
            .expect("each refusal is reported with its reason");
    }
    assert!(
        alice
            .errors()
            .iter()
            .all(|line| line.starts_with("not sent: ")),
        "{:?}",
        alice.errors()
    );

    // Length counts characters, not bytes: 128 two-byte characters are fine.
    let accented = "é".repeat(128);
    alice.say(&accented).await.expect("type");
    let after = bob
        .wait_for_event(
            "the 128-character message",
            |line| line.body == message_body("alice", &accented),
            WAIT,
        )
        .await
        .expect("alice carries on after refusals");
    assert_eq!(
        after.seq,
        before.seq + 1,
        "something was broadcast between the two valid messages"
    );

    service.terminate().expect("SIGTERM");
    service.wait(WAIT).await.expect("the service exits");
    let refusals = log_lines(&dir.path().join("service.log"))
        .into_iter()
        .filter(|line| has(line, "event", "refused") && has(line, "rpc", "Publish"))
        .count();
    // Invalid UTF-8 never leaves the participant; the other seven reach the service and are refused there.
    assert_eq!(refusals, cases.len() - 1);
}

#[tokio::test]
async fn a_taken_or_invalid_name_is_refused_and_the_participant_exits_with_the_reason() {
    let dir = log_dir();
    let service = service(dir.path(), &[]).await;
    let _alice = participant(&service, dir.path(), "alice").await;
    for (name, reason) in [
        ("alice", "the name \"alice\" is taken"),
        (" alice", "name starts or ends with whitespace"),
        ("a\tb", "unprintable character U+0009"),
    ] {
        let mut second = ParticipantProcess::start(binary(), &service.url(), name, &[])
            .await
            .expect("start");
        let status = second.wait(WAIT).await.expect("exits");
        assert!(!status.success(), "{name:?} was admitted");
        assert_eq!(
            second.errors().len(),
            1,
            "want one line, got {:?}",
            second.errors()
        );
        assert!(
            second.errors()[0].contains(reason),
            "got {:?}, want {reason:?}",
            second.errors()
        );
    }
}

#[tokio::test]
async fn an_unreachable_service_is_reported_in_one_line_with_a_failure_exit() {
    // Bind a port and close it again, so nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port();
    let mut participant = ParticipantProcess::start(
        binary(),
        &format!("http://127.0.0.1:{port}"),
        "alice",
        &args(&["--connect-timeout", "2s"]),
    )
    .await
    .expect("start");
    let status = participant.wait(WAIT).await.expect("exits");
    assert!(!status.success());
    let errors = participant.errors();
    assert_eq!(errors.len(), 1, "want exactly one line, got {errors:?}");
    assert!(
        errors[0].contains("cannot reach the Chitty-Chat service"),
        "{errors:?}"
    );
    assert!(!errors[0].contains("panicked"), "{errors:?}");
}

#[tokio::test]
async fn ten_participants_publishing_at_once_all_see_one_complete_order() {
    const PEOPLE: usize = 10;
    const EACH: usize = 5;
    let dir = log_dir();
    let service = service(dir.path(), &[]).await;
    let mut people = Vec::new();
    for index in 0..PEOPLE {
        people.push(participant(&service, dir.path(), &format!("p{index}")).await);
    }
    // Wait until the first has seen everyone join, so all are present before anyone speaks.
    let last = joined_prefix(&format!("p{}", PEOPLE - 1));
    people[0]
        .wait_for_event("the last join", |line| line.body.starts_with(&last), WAIT)
        .await
        .expect("everyone joins");

    // Everyone types all their lines at once.
    for person in &mut people {
        let name = person.name().to_owned();
        let burst: String = (1..=EACH).map(|n| format!("{name} says {n}\n")).collect();
        person.type_bytes(burst.as_bytes()).await.expect("type");
    }

    let mut orders = Vec::new();
    for person in &mut people {
        for index in 0..PEOPLE {
            let body = message_body(&format!("p{index}"), &format!("p{index} says {EACH}"));
            person
                .wait_for_event("each sender's last message", |line| line.body == body, WAIT)
                .await
                .expect("every message reaches everyone");
        }
        let messages: Vec<(u64, String)> = person
            .received()
            .iter()
            .filter(|line| line.body.starts_with('<'))
            .map(|line| (line.seq, line.body.clone()))
            .collect();
        assert_eq!(
            messages.len(),
            PEOPLE * EACH,
            "{} missed messages",
            person.name()
        );
        orders.push(messages);
    }
    for (index, order) in orders.iter().enumerate().skip(1) {
        assert_eq!(order, &orders[0], "p{index} saw a different order than p0");
    }
    // Each sender's messages arrive in the order it sent them.
    let mut next: HashMap<String, usize> = HashMap::new();
    for (_, body) in &orders[0] {
        let (author, number) = body
            .trim_start_matches('<')
            .split_once("> ")
            .and_then(|(author, text)| {
                Some((
                    author.to_owned(),
                    text.rsplit_once(' ')?.1.parse::<usize>().ok()?,
                ))
            })
            .expect("a message body");
        let expected = next.entry(author.clone()).or_insert(1);
        assert_eq!(
            number, *expected,
            "{author}'s messages arrived out of order"
        );
        *expected += 1;
    }
}

#[tokio::test]
async fn sigterm_makes_a_participant_leave_and_stops_the_service_promptly_with_streams_open() {
    let dir = log_dir();
    let mut service = service(dir.path(), &[]).await;
    let mut alice = participant(&service, dir.path(), "alice").await;
    let mut bob = participant(&service, dir.path(), "bob").await;

    bob.terminate().expect("SIGTERM");
    assert!(bob.wait(WAIT).await.expect("bob exits").success());
    alice
        .wait_for_event(
            "bob's leave",
            |line| line.body.starts_with(&left_prefix("bob")),
            WAIT,
        )
        .await
        .expect("SIGTERM leaves");

    // Alice's stream is open; the service must still stop within 5 s.
    service.terminate().expect("SIGTERM");
    let status = service
        .wait(Duration::from_secs(5))
        .await
        .expect("the service stops within 5 s with a stream open");
    assert!(status.success(), "the service exited with {status}");
    alice
        .wait_for_output(
            "the lost connection",
            |line| {
                line.starts_with("--- connection lost: the service is shutting down or restarting")
            },
            WAIT,
        )
        .await
        .expect("alice says why she lost the service");

    // With the service gone, leaving still ends the participant cleanly, and says what it could not do.
    alice.close_input();
    assert!(alice.wait(WAIT).await.expect("alice exits").success());
    assert!(
        alice
            .errors()
            .iter()
            .any(|line| line.contains("left without telling the service")),
        "{:?}",
        alice.errors()
    );
}

#[tokio::test]
async fn a_scripted_participant_says_its_lines_at_its_pace_and_leaves_when_told() {
    let dir = log_dir();
    let service = service(dir.path(), &[]).await;
    let mut listener = participant(&service, dir.path(), "listener").await;
    let mut scripted = ParticipantProcess::start(
        binary(),
        &service.url(),
        "robot",
        &args(&[
            "--say",
            "beep",
            "--say",
            "boop",
            "--repeat",
            "2",
            "--pace",
            "50ms",
            "--leave-after",
            "2s",
        ]),
    )
    .await
    .expect("start");
    for text in ["beep #1", "boop #1", "beep #2", "boop #2"] {
        listener
            .wait_for_event(text, |line| line.body == message_body("robot", text), WAIT)
            .await
            .expect("the scripted lines arrive in order");
    }
    listener
        .wait_for_event(
            "the robot's leave",
            |line| line.body.starts_with(&left_prefix("robot")),
            WAIT,
        )
        .await
        .expect("the scripted participant leaves after --leave-after");
    assert!(scripted.wait(WAIT).await.expect("exits").success());
    let seqs: Vec<u64> = listener
        .received()
        .iter()
        .filter(|line| line.body.starts_with("<robot>"))
        .map(|line| line.seq)
        .collect();
    assert!(seqs.windows(2).all(|pair| pair[0] < pair[1]), "{seqs:?}");
}
