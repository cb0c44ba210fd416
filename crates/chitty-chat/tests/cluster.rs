//! Cluster mode with real processes: a 3-server NATS JetStream cluster, 3 Chitty-Chat nodes, and
//! participants spread over them. Without nats-server installed, each test prints why it skipped.

mod common;

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use chitty_chat::harness::{
    ParticipantProcess, ServiceProcess, joined_prefix, left_prefix, message_body,
};
use chitty_cluster::testing::{NatsCluster, unique_prefix};
use chitty_participant::output::EventLine;
use chitty_proto::v1;
use common::{WAIT, args, binary, check, log_dir};
use tonic::Code;

/// Flags that let a test publish faster than the default per-participant rate.
const FAST: [&str; 4] = ["--publish-rate", "10000", "--publish-burst", "10000"];

/// The grace period the nodes give a participant to reconnect.
const GRACE: &str = "2s";

/// Starts Chitty-Chat node `index` of a chat with `prefix`, connected to nats-server `index % 3`
/// first, with a JSON log in `dir`.
async fn node(nats: &NatsCluster, dir: &Path, prefix: &str, index: usize) -> ServiceProcess {
    let mut urls: Vec<String> = (0..3)
        .map(|server| nats.url((index + server) % 3))
        .collect();
    urls.dedup();
    let log = dir
        .join(format!("service-{index}.log"))
        .display()
        .to_string();
    let mut extra = args(&[
        "--nats",
        &urls.join(","),
        "--node-id",
        &format!("node-{index}"),
        "--replicas",
        "3",
        "--nats-prefix",
        prefix,
        "--grace",
        GRACE,
        "--log-format",
        "json",
        "--log-file",
        &log,
    ]);
    extra.extend(args(&FAST));
    let mut node = ServiceProcess::start(binary(), &extra)
        .await
        .expect("the node starts");
    // A node listens before it has joined the cluster; it serves once it has.
    let health = tokio::time::timeout(
        WAIT * 2,
        tokio::process::Command::new(binary())
            .args(["health", "--server", &node.url(), "--timeout", "25s"])
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("the health check finishes within the bound")
    .expect("the health check runs");
    assert!(
        health.status.success(),
        "node {index} does not serve: {}\n{}",
        String::from_utf8_lossy(&health.stderr),
        node.stderr().join("\n")
    );
    node
}

/// Starts a participant that may connect to any of `services`, in that order, with a JSON log in
/// `dir`, and waits until it sees its own join.
async fn participant_of(
    services: &[&ServiceProcess],
    dir: &Path,
    name: &str,
) -> ParticipantProcess {
    let urls: Vec<String> = services.iter().map(|service| service.url()).collect();
    let log = dir.join(format!("{name}.log")).display().to_string();
    let mut participant = ParticipantProcess::start(
        binary(),
        &urls.join(","),
        name,
        &args(&["--log-format", "json", "--log-file", &log]),
    )
    .await
    .expect("the participant starts");
    participant
        .wait_for_event(
            "its own join",
            |line| line.body.starts_with(&joined_prefix(name)),
            WAIT,
        )
        .await
        .expect("a participant sees its own join");
    participant
}

/// The seqs and bodies a participant received, in order.
fn order(received: &[EventLine]) -> Vec<(u64, String)> {
    received
        .iter()
        .map(|line| (line.seq, line.body.clone()))
        .collect()
}

/// Asserts that `checked` (the output of `chitty-chat check`) passed, showing it if not.
fn assert_checked(checked: &std::process::Output) {
    assert!(
        checked.status.success(),
        "the checker failed:\n{}\n{}",
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn participants_on_three_nodes_see_one_order_and_the_checker_passes() {
    let Some(nats) = NatsCluster::start_or_skip(
        "participants_on_three_nodes_see_one_order_and_the_checker_passes",
        3,
    )
    .await
    else {
        return;
    };
    let dir = log_dir();
    let prefix = unique_prefix();
    let nodes = [
        node(&nats, dir.path(), &prefix, 0).await,
        node(&nats, dir.path(), &prefix, 1).await,
        node(&nats, dir.path(), &prefix, 2).await,
    ];
    let mut people = Vec::new();
    for (index, name) in ["alice", "bob", "carol"].into_iter().enumerate() {
        people.push(participant_of(&[&nodes[index]], dir.path(), name).await);
    }
    for person in &mut people {
        person
            .wait_for_event(
                "carol's join",
                |line| line.body.starts_with(&joined_prefix("carol")),
                WAIT,
            )
            .await
            .expect("every node delivers every join");
    }
    for round in 1..=5 {
        for person in &mut people {
            let text = format!("{} says {round}", person.name());
            person.say(&text).await.expect("type");
        }
    }
    for person in &mut people {
        for author in ["alice", "bob", "carol"] {
            let last = message_body(author, &format!("{author} says 5"));
            person
                .wait_for_event("the last message", |line| line.body == last, WAIT)
                .await
                .expect("every message reaches every node's participants");
        }
    }
    // One order for everyone: from carol's join on, all three received the same events at the same
    // seqs, and each received Lamport time is above the one before.
    let since_carol = |received: &[EventLine]| {
        let all = order(received);
        let start = all
            .iter()
            .position(|(_, body)| body.starts_with(&joined_prefix("carol")))
            .expect("carol's join was received");
        all[start..].to_vec()
    };
    let reference = since_carol(people[0].received());
    assert_eq!(reference.len(), 16, "carol's join and 15 messages");
    for person in &people[1..] {
        assert_eq!(
            since_carol(person.received()),
            reference,
            "{} saw another order",
            person.name()
        );
    }
    for person in &people {
        let lamports: Vec<u64> = person.received().iter().map(|line| line.lamport).collect();
        assert!(
            lamports.windows(2).all(|pair| pair[0] < pair[1]),
            "{} received Lamport times that do not increase along seq: {lamports:?}",
            person.name()
        );
    }
    // Alice leaves through node 0: the others, on nodes 1 and 2, see it.
    let mut alice = people.remove(0);
    alice.close_input();
    alice.wait(WAIT).await.expect("alice leaves and exits");
    for person in &mut people {
        person
            .wait_for_event(
                "alice's leave",
                |line| line.body.starts_with(&left_prefix("alice")),
                WAIT,
            )
            .await
            .expect("a leave through one node reaches the others");
    }
    for mut person in people {
        person.close_input();
        person.wait(WAIT).await.expect("leaves and exits");
    }
    for node in &nodes {
        node.terminate().expect("SIGTERM");
    }
    for mut node in nodes {
        assert!(node.wait(WAIT).await.expect("stops").success());
    }
    assert_checked(&check(dir.path()).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_joins_of_one_name_on_two_nodes_at_once_admit_exactly_one() {
    let Some(nats) = NatsCluster::start_or_skip(
        "two_joins_of_one_name_on_two_nodes_at_once_admit_exactly_one",
        3,
    )
    .await
    else {
        return;
    };
    let dir = log_dir();
    let prefix = unique_prefix();
    let first = node(&nats, dir.path(), &prefix, 0).await;
    let second = node(&nats, dir.path(), &prefix, 1).await;
    let mut on_first = v1::chitty_chat_client::ChittyChatClient::connect(first.url())
        .await
        .expect("connect");
    let mut on_second = v1::chitty_chat_client::ChittyChatClient::connect(second.url())
        .await
        .expect("connect");
    // Several rounds, each with a new name, so that a race that only sometimes admits both shows.
    for round in 0..5 {
        let name = format!("zoe{round}");
        let request = || v1::JoinRequest {
            name: name.clone(),
            lamport: 1,
            ..Default::default()
        };
        let (a, b) = tokio::join!(on_first.join(request()), on_second.join(request()));
        let outcomes = [a, b];
        let admitted = outcomes.iter().filter(|outcome| outcome.is_ok()).count();
        assert_eq!(admitted, 1, "round {round}: got {outcomes:?}");
        let refused = outcomes
            .iter()
            .find_map(|outcome| outcome.as_ref().err())
            .expect("one was refused");
        assert_eq!(refused.code(), Code::AlreadyExists, "{refused:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_killed_mid_chat_loses_nothing_and_its_stranded_participant_leaves_once() {
    const MESSAGES_EACH: usize = 100;
    const KILL_AFTER: usize = 40;
    let Some(nats) = NatsCluster::start_or_skip(
        "a_node_killed_mid_chat_loses_nothing_and_its_stranded_participant_leaves_once",
        3,
    )
    .await
    else {
        return;
    };
    let dir = log_dir();
    let prefix = unique_prefix();
    let mut doomed = node(&nats, dir.path(), &prefix, 0).await;
    let second = node(&nats, dir.path(), &prefix, 1).await;
    let third = node(&nats, dir.path(), &prefix, 2).await;
    // Alice and dave are on the node that dies; alice can fail over to the second, dave cannot.
    let mut alice = participant_of(&[&doomed, &second], dir.path(), "alice").await;
    let mut dave = participant_of(&[&doomed], dir.path(), "dave").await;
    let mut bob = participant_of(&[&second, &third], dir.path(), "bob").await;
    let mut carol = participant_of(&[&third], dir.path(), "carol").await;
    for watcher in [&mut alice, &mut bob, &mut carol] {
        watcher
            .wait_for_event(
                "carol's join",
                |line| line.body.starts_with(&joined_prefix("carol")),
                WAIT,
            )
            .await
            .expect("everyone is present");
    }

    // Alice and bob chat at 50 messages per second each; the node alice and dave use dies meanwhile.
    let mut pace = tokio::time::interval(Duration::from_millis(20));
    for n in 1..=MESSAGES_EACH {
        pace.tick().await;
        alice.say(&format!("alice {n}")).await.expect("type");
        bob.say(&format!("bob {n}")).await.expect("type");
        if n == KILL_AFTER {
            doomed.kill().expect("SIGKILL");
            doomed.wait(WAIT).await.expect("the node dies");
            // Dave has nowhere to go: his process ends too, and only the grace period can tell.
            dave.kill().expect("SIGKILL");
        }
    }

    // Every typed message reaches every remaining participant exactly once, in each sender's order.
    for watcher in [&mut alice, &mut bob, &mut carol] {
        for author in ["alice", "bob"] {
            let last = message_body(author, &format!("{author} {MESSAGES_EACH}"));
            watcher
                .wait_for_event("the last message", |line| line.body == last, WAIT * 2)
                .await
                .expect("the chat goes on after the node died");
        }
        watcher
            .wait_for_event(
                "dave's leave",
                |line| line.body.starts_with(&left_prefix("dave")),
                WAIT,
            )
            .await
            .expect("the stranded participant is announced left");
        let mut count: HashMap<String, usize> = HashMap::new();
        for line in watcher.received() {
            *count.entry(line.body.clone()).or_default() += 1;
        }
        for author in ["alice", "bob"] {
            for n in 1..=MESSAGES_EACH {
                let body = message_body(author, &format!("{author} {n}"));
                assert_eq!(
                    count.get(&body).copied().unwrap_or(0),
                    1,
                    "{} received {body:?} other than once",
                    watcher.name()
                );
            }
        }
        let dave_left = count
            .iter()
            .filter(|(body, _)| body.starts_with(&left_prefix("dave")))
            .map(|(_, times)| times)
            .sum::<usize>();
        assert_eq!(
            dave_left,
            1,
            "{} saw dave leave other than once",
            watcher.name()
        );
        let seqs: Vec<u64> = watcher.received().iter().map(|line| line.seq).collect();
        assert!(
            seqs.windows(2).all(|pair| pair[0] < pair[1]),
            "{} received seqs out of order or twice: {seqs:?}",
            watcher.name()
        );
    }
    alice
        .wait_for_output(
            "the failover",
            |line| line.starts_with("--- reconnected to "),
            WAIT,
        )
        .await
        .expect("alice says she resumed on another node");
    for mut person in [alice, bob, carol] {
        person.close_input();
        person.wait(WAIT).await.expect("leaves and exits");
    }
    for node in [&second, &third] {
        node.terminate().expect("SIGTERM");
    }
    for mut node in [second, third] {
        assert!(node.wait(WAIT).await.expect("stops").success());
    }
    assert_checked(&check(dir.path()).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_chat_goes_on_when_one_nats_server_of_three_is_killed() {
    let Some(mut nats) = NatsCluster::start_or_skip(
        "the_chat_goes_on_when_one_nats_server_of_three_is_killed",
        3,
    )
    .await
    else {
        return;
    };
    let dir = log_dir();
    let prefix = unique_prefix();
    // Node 0 talks to nats-server 0 first, which dies: it must fail over to another.
    let first = node(&nats, dir.path(), &prefix, 0).await;
    let second = node(&nats, dir.path(), &prefix, 1).await;
    let mut alice = participant_of(&[&first], dir.path(), "alice").await;
    let mut bob = participant_of(&[&second], dir.path(), "bob").await;
    alice
        .wait_for_event(
            "bob's join",
            |line| line.body.starts_with(&joined_prefix("bob")),
            WAIT,
        )
        .await
        .expect("both are present");
    alice.say("before").await.expect("type");
    bob.wait_for_event(
        "before",
        |line| line.body == message_body("alice", "before"),
        WAIT,
    )
    .await
    .expect("delivered before the kill");
    nats.kill(0);
    for n in 1..=10 {
        alice.say(&format!("after {n}")).await.expect("type");
        bob.say(&format!("reply {n}")).await.expect("type");
    }
    for watcher in [&mut alice, &mut bob] {
        for last in [
            message_body("alice", "after 10"),
            message_body("bob", "reply 10"),
        ] {
            watcher
                .wait_for_event("the last message", |line| line.body == last, WAIT * 2)
                .await
                .expect("the chat goes on with two nats-servers of three");
        }
    }
    for mut person in [alice, bob] {
        person.close_input();
        person.wait(WAIT).await.expect("leaves and exits");
    }
}
