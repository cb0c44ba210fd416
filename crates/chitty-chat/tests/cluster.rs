//! Cluster mode with real processes: a 3-server NATS JetStream cluster, 3 Chitty-Chat nodes, and
//! participants spread over them. Without a supported nats-server installed (2.11.0 or newer), each
//! test prints why it skipped; the one about an older server talks to a stand-in and always runs.

mod common;

use std::path::Path;
use std::time::Duration;

use chitty_chat::harness::{
    ParticipantProcess, ServiceProcess, joined_prefix, left_prefix, message_body,
};
use chitty_cluster::testing::{NatsCluster, VersionOnlyServer, unique_prefix};
use chitty_participant::output::EventLine;
use chitty_proto::v1;
use common::tally::{Tally, assert_seqs_increase};
use common::{Scrape, WAIT, args, binary, check, has, log_dir, log_lines};
use tokio::time::Instant;
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
        "--metrics-listen",
        "127.0.0.1:0",
    ]);
    extra.extend(args(&FAST));
    let mut node = ServiceProcess::start(binary(), &extra)
        .await
        .expect("the node starts");
    // A node listens before it has joined the cluster; it serves once it has.
    if let Err(error) = await_health(&node, "serving", WAIT * 2).await {
        panic!(
            "node {index} does not serve: {error}\n{}",
            node.stderr().join("\n")
        );
    }
    node
}

/// Three nodes of the chat with `prefix`, and one participant of `names` on each (the first on node 0),
/// each waiting for its own join.
async fn three_nodes_one_participant_each(
    nats: &NatsCluster,
    dir: &Path,
    prefix: &str,
    names: [&str; 3],
) -> ([ServiceProcess; 3], Vec<ParticipantProcess>) {
    let nodes = [
        node(nats, dir, prefix, 0).await,
        node(nats, dir, prefix, 1).await,
        node(nats, dir, prefix, 2).await,
    ];
    let mut people = Vec::new();
    for (node, name) in nodes.iter().zip(names) {
        people.push(participant_of(&[node], dir, name).await);
    }
    (nodes, people)
}

/// How often the tests reread a log file or ask for a node's health: neither offers an event to await.
const POLL: Duration = Duration::from_millis(100);

/// Waits until `chitty-chat health` on `node` prints `want` ("serving" or "not serving"), at most
/// `within`. The health service is polled: the test has no stream of its changes.
async fn await_health(node: &ServiceProcess, want: &str, within: Duration) -> Result<(), String> {
    let deadline = Instant::now() + within;
    let mut got = String::new();
    while Instant::now() < deadline {
        let output = tokio::time::timeout(
            WAIT,
            tokio::process::Command::new(binary())
                .args(["health", "--server", &node.url(), "--timeout", "5s"])
                .kill_on_drop(true)
                .output(),
        )
        .await;
        got = match output {
            Ok(Ok(output)) => String::from_utf8_lossy(&output.stdout).trim().to_owned(),
            Ok(Err(error)) => format!("cannot run the health check: {error}"),
            Err(_) => "no answer".to_owned(),
        };
        if got == want {
            return Ok(());
        }
        tokio::time::sleep(POLL * 2).await;
    }
    Err(format!("got health {got:?}, want {want:?}"))
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

/// Ends a run: every participant leaves and must exit successfully, every node stops cleanly on
/// SIGTERM, and the checker must pass on the logs in `dir`.
async fn leave_stop_and_check(
    people: Vec<ParticipantProcess>,
    nodes: impl IntoIterator<Item = ServiceProcess>,
    dir: &Path,
) {
    leave_all(people).await;
    stop_and_check(nodes, dir).await;
}

/// Closes each participant's input, so it leaves and exits, and asserts that it exited successfully.
async fn leave_all(people: Vec<ParticipantProcess>) {
    for mut person in people {
        person.close_input();
        let status = person.wait(WAIT).await.expect("leaves and exits");
        assert!(
            status.success(),
            "got: {} exited with {status}, stderr:\n{}\nwant: success",
            person.name(),
            person.errors().join("\n")
        );
    }
}

/// Stops every node, waits for each to exit successfully, and runs the checker over the run's logs.
async fn stop_and_check(nodes: impl IntoIterator<Item = ServiceProcess>, dir: &Path) {
    let nodes: Vec<ServiceProcess> = nodes.into_iter().collect();
    for node in &nodes {
        node.terminate().expect("SIGTERM");
    }
    for mut node in nodes {
        assert!(node.wait(WAIT).await.expect("stops").success());
    }
    assert_checked(&check(dir).await);
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
    let (nodes, mut people) =
        three_nodes_one_participant_each(&nats, dir.path(), &prefix, ["alice", "bob", "carol"])
            .await;
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
    leave_stop_and_check(people, nodes, dir.path()).await;
}

#[tokio::test]
async fn serve_against_a_nats_server_older_than_2_11_exits_with_one_line_saying_why() {
    let old = VersionOnlyServer::start("2.9.10")
        .await
        .expect("the stand-in server listens");
    let dir = log_dir();
    let log = dir.path().join("service.log").display().to_string();
    let output = tokio::time::timeout(
        WAIT,
        tokio::process::Command::new(binary())
            .args(["serve", "--listen", "127.0.0.1:0", "--node-id", "node-0"])
            .args([
                "--nats",
                &old.url(),
                "--log-format",
                "json",
                "--log-file",
                &log,
            ])
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("the node exits within the bound")
    .expect("the node runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        output.status.code(),
        Some(1),
        "got {}, want exit code 1; stderr:\n{stderr}",
        output.status
    );
    let want = "chitty-chat: cannot join the cluster: nats-server 2.9.10 is older than 2.11.0, the \
                oldest supported: cluster mode relies on the publish header \
                Nats-Expected-Last-Subject-Sequence-Subject, which nats-server added in 2.11.0\n";
    assert_eq!(stderr, want, "got stderr {stderr:?}, want {want:?}");
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
        Tally::of(watcher).assert_each_received_once(&["alice", "bob"], MESSAGES_EACH);
        let dave_left = watcher
            .received()
            .iter()
            .filter(|line| line.body.starts_with(&left_prefix("dave")))
            .count();
        assert_eq!(
            dave_left,
            1,
            "{} saw dave leave other than once",
            watcher.name()
        );
        assert_seqs_increase(watcher);
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

/// How many JSON lines of `path` have `event` equal to `name`. A line being written as we read, not
/// yet whole, is not counted.
fn count_events(path: &Path, name: &str) -> usize {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|line| line.get("event").and_then(|event| event.as_str()) == Some(name))
        .count()
}

/// The last `lines` lines of every log file in `dir`, for a failure message.
fn log_tails(dir: &Path, lines: usize) -> String {
    let mut paths: Vec<_> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|entry| entry.ok().map(|entry| entry.path()))
                .collect()
        })
        .unwrap_or_default();
    paths.sort();
    let mut out = String::new();
    for path in paths {
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        out.push_str(&format!("--- {}\n", path.display()));
        for line in &all[all.len().saturating_sub(lines)..] {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// Waits until the node logging to `log` fails a heartbeat (it cannot reach a NATS quorum) after
/// `not_before`: a `heartbeat_failed` line that was not in the file when it was first read from then
/// on. Polls the file every [`POLL`] until `deadline`. Returns how many heartbeats had failed.
async fn await_heartbeat_failed_after(
    log: &Path,
    not_before: Instant,
    deadline: Instant,
) -> Result<usize, String> {
    let mut before = None;
    loop {
        let failed = count_events(log, "heartbeat_failed");
        let now = Instant::now();
        if now >= not_before {
            match before {
                None => before = Some(failed),
                Some(before) if failed > before => return Ok(failed),
                Some(_) => {}
            }
        }
        if now >= deadline {
            return Err(format!(
                "got: {failed} heartbeat_failed line(s) in {}, none written in the {:?} since the \
                 outage was long enough; want: one more",
                log.display(),
                now.saturating_duration_since(not_before),
            ));
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Whether a status line of a participant says its link broke.
fn link_lost(line: &str) -> bool {
    line.starts_with("--- connection lost: ")
}

/// Whether a status line of a participant says it is connected again: resumed, joined again after its
/// session ended, or carried on past events the service no longer holds.
fn link_back(line: &str) -> bool {
    line.starts_with("--- reconnected to ")
        || line.starts_with("--- the session ended while disconnected; joined again as ")
        || line.starts_with("--- the service no longer holds events ")
}

/// How many times a participant printed that its link broke, and that it was back.
fn links(person: &ParticipantProcess) -> (usize, usize) {
    let lost = person
        .other_output()
        .iter()
        .filter(|line| link_lost(line))
        .count();
    let back = person
        .other_output()
        .iter()
        .filter(|line| link_back(line))
        .count();
    (lost, back)
}

/// Waits until `person` has printed as many reconnections as lost links, at most `within`: it is
/// connected, or was never cut off.
async fn await_link_up(person: &mut ParticipantProcess, within: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + within;
    loop {
        let (lost, back) = links(person);
        if back >= lost {
            return Ok(());
        }
        // Counts the reconnection lines it is shown (each line once per call) and accepts the one past
        // those already printed.
        let seen = std::cell::Cell::new(0);
        person
            .wait_for_output(
                &format!("a reconnection after {lost} lost link(s) and {back} reconnection(s)"),
                |line| {
                    if link_back(line) {
                        seen.set(seen.get() + 1);
                    }
                    seen.get() > back
                },
                deadline.saturating_duration_since(Instant::now()),
            )
            .await?;
    }
}

/// Turns a participant's failed wait for what we `want` of `waiting` into a failure message: the
/// error, which participants exited and whether because their name was still taken (the failure the
/// outage test pins), their standard error, and the tails of the logs.
async fn not_back(
    people: &mut [ParticipantProcess],
    dir: &Path,
    waiting: &str,
    error: anyhow::Error,
    want: &str,
) -> String {
    let mut exits = String::new();
    for person in people.iter_mut() {
        // A participant still running is not waited for long: it is not the one that exited.
        if let Ok(status) = person.wait(Duration::from_millis(500)).await {
            let taken = person.errors().iter().any(|line| line.contains("is taken"));
            exits.push_str(&format!(
                "{} exited ({status}){}; its stderr:\n{}\n",
                person.name(),
                if taken {
                    " because its name was still taken"
                } else {
                    ""
                },
                person.errors().join("\n")
            ));
        }
    }
    if exits.is_empty() {
        exits.push_str("every participant is still running\n");
    }
    format!(
        "got: {error:#}\n{exits}want: {waiting} {want}\nlogs:\n{}",
        log_tails(dir, 12)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn participants_rejoin_after_nats_loses_its_quorum_for_longer_than_the_grace_period() {
    const NAMES: [&str; 3] = ["alice", "bob", "carol"];
    const ROUNDS: usize = 5;
    let Some(mut nats) = NatsCluster::start_or_skip(
        "participants_rejoin_after_nats_loses_its_quorum_for_longer_than_the_grace_period",
        3,
    )
    .await
    else {
        return;
    };
    let started = Instant::now();
    let dir = log_dir();
    let prefix = unique_prefix();
    // Node i talks to nats-server i first: nodes 1 and 2 lose theirs and fail over to server 0, which
    // is left without a quorum; node 0 keeps its connection to it.
    let (nodes, mut people) =
        three_nodes_one_participant_each(&nats, dir.path(), &prefix, NAMES).await;
    for person in &mut people {
        person
            .say(&format!("{} before", person.name()))
            .await
            .expect("type");
    }
    for person in &mut people {
        for author in NAMES {
            let body = message_body(author, &format!("{author} before"));
            person
                .wait_for_event(
                    "a message before the outage",
                    |line| line.body == body,
                    WAIT,
                )
                .await
                .expect("everyone chats before the outage");
        }
    }

    // nats-server 0, which survives, leads the event stream when the others die: then it takes the
    // appends made during the outage into its log without a quorum to commit them, and nats-server
    // 2.9.10 may apply one of them to its own store after the others elected a leader and stored
    // another event at that seq (see "Only what the stream's leader holds" in chitty-cluster's log.rs).
    nats.lead(&chitty_cluster::log::stream_name(&prefix), 0)
        .await
        .expect("nats-server 0 leads the event stream");
    // Two nats-servers of three die: JetStream has no quorum, and the nodes cannot reach it. Each
    // participant says something meanwhile: the call fails (refused, or unanswered in time), and the
    // participant, its link lost, keeps trying to reconnect while the grace period runs out.
    nats.kill(1);
    nats.kill(2);
    for person in &mut people {
        person
            .say(&format!("{} during the outage", person.name()))
            .await
            .expect("type");
    }
    let mut failure = None;
    for person in &mut people {
        if let Err(error) = person
            .wait_for_output("that its link broke", link_lost, WAIT * 2)
            .await
        {
            failure = Some((person.name().to_owned(), error));
            break;
        }
    }
    if let Some((name, error)) = failure {
        let want = "to lose its link during the outage";
        panic!(
            "{}",
            not_back(&mut people, dir.path(), &name, error, want).await
        );
    }
    // Every node still cannot reach NATS three grace periods after the last participant lost its link.
    let grace = humantime::parse_duration(GRACE).expect("GRACE is a duration");
    let outage_until = Instant::now() + grace * 3;
    for (index, node) in nodes.iter().enumerate() {
        let log = dir.path().join(format!("service-{index}.log"));
        let failed = await_heartbeat_failed_after(&log, outage_until, outage_until + WAIT)
            .await
            .unwrap_or_else(|error| {
                panic!(
                    "node {index} did not show an outage longer than the grace period {GRACE}: {error}\nlogs:\n{}",
                    log_tails(dir.path(), 12)
                )
            });
        println!("node {index}: {failed} heartbeats failed during the outage");
        // A node that cannot write says so to load balancers and to participants' failover.
        if let Err(error) = await_health(node, "not serving", WAIT).await {
            panic!("node {index} during the outage: {error}");
        }
    }

    // The servers come back with their stores: the quorum is back.
    for index in [1, 2] {
        nats.restart(index)
            .await
            .unwrap_or_else(|error| panic!("nats-server {index} does not come back: {error}"));
    }
    println!("nats recovered {:?} into the test", started.elapsed());
    for (index, node) in nodes.iter().enumerate() {
        if let Err(error) = await_health(node, "serving", WAIT * 2).await {
            panic!("node {index} after NATS recovered: {error}");
        }
    }

    // Everyone is connected again, resumed or joined again, nobody stopped, and what each says now
    // reaches everyone.
    let want = "back in the chat after NATS recovered";
    let mut failure = None;
    for person in &mut people {
        if let Err(error) = await_link_up(person, WAIT * 3).await {
            failure = Some((person.name().to_owned(), error));
            break;
        }
    }
    if let Some((name, error)) = failure {
        panic!(
            "{}",
            not_back(&mut people, dir.path(), &name, error, want).await
        );
    }
    // A participant whose session ended after NATS came back joins again and is not shown what came
    // before its new join: a round in which someone joined again may leave them without some of its
    // messages. So rounds go on until one that nobody joined again during, at most ROUNDS.
    let mut whole_round = None;
    for round in 1..=ROUNDS {
        let since: Vec<u64> = people
            .iter()
            .map(|person| person.received().last().map_or(0, |line| line.seq))
            .collect();
        for person in &mut people {
            person
                .say(&format!("{} is back, round {round}", person.name()))
                .await
                .expect("type");
        }
        let mut joined_again = Vec::new();
        'everyone: for (person, since) in people.iter_mut().zip(since) {
            let own_join = joined_prefix(person.name());
            for author in NAMES {
                let body = message_body(author, &format!("{author} is back, round {round}"));
                match person
                    .wait_for_event(
                        &format!("{author}'s message of round {round}, or its own new join"),
                        |line| {
                            line.body == body
                                || (line.seq > since && line.body.starts_with(&own_join))
                        },
                        WAIT * 2,
                    )
                    .await
                {
                    Ok(line) if line.body == body => {}
                    Ok(_) => {
                        joined_again.push(person.name().to_owned());
                        continue 'everyone;
                    }
                    Err(error) => {
                        failure = Some((person.name().to_owned(), error));
                        break 'everyone;
                    }
                }
            }
        }
        if let Some((name, error)) = failure {
            panic!(
                "{}",
                not_back(&mut people, dir.path(), &name, error, want).await
            );
        }
        if joined_again.is_empty() {
            whole_round = Some(round);
            break;
        }
        println!("round {round}: {joined_again:?} joined again meanwhile; another round");
    }
    let Some(whole_round) = whole_round else {
        panic!(
            "got: someone joined again during each of {ROUNDS} rounds after NATS recovered\n\
             want: a round of messages that everyone receives whole\nlogs:\n{}",
            log_tails(dir.path(), 12)
        );
    };
    println!("round {whole_round} reached everyone");
    for person in &people {
        let (lost, back) = links(person);
        let rejoined = person
            .other_output()
            .iter()
            .filter(|line| line.starts_with("--- the session ended while disconnected"))
            .count();
        let during: Vec<&str> = NAMES
            .into_iter()
            .filter(|author| {
                let body = message_body(author, &format!("{author} during the outage"));
                person.received().iter().any(|line| line.body == body)
            })
            .collect();
        println!(
            "{}: lost its link {lost} time(s), back {back} time(s), of which {rejoined} by joining \
             again; received the messages typed during the outage by {during:?}",
            person.name()
        );
    }

    leave_stop_and_check(people, nodes, dir.path()).await;
    println!("took {:?}", started.elapsed());
}

/// Whether the events a participant received hold `name` present twice at any moment: a joined event
/// of it while it was present, or a left event while it was not. Returns how many times it joined.
fn joins_alternating_with_leaves(received: &[EventLine], name: &str) -> Result<usize, String> {
    let mut present = false;
    let mut joins = 0;
    for line in received {
        if line.body.starts_with(&joined_prefix(name)) {
            if present {
                return Err(format!(
                    "{name} joined again at seq {} while present",
                    line.seq
                ));
            }
            present = true;
            joins += 1;
        } else if line.body.starts_with(&left_prefix(name)) {
            if !present {
                return Err(format!("{name} left at seq {} while absent", line.seq));
            }
            present = false;
        }
    }
    Ok(joins)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nine_publishers_on_three_nodes_while_one_name_is_claimed_left_and_claimed_again() {
    const MESSAGES_EACH: usize = 30;
    const CLAIMS: usize = 6;
    let Some(nats) = NatsCluster::start_or_skip(
        "nine_publishers_on_three_nodes_while_one_name_is_claimed_left_and_claimed_again",
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
    let names: Vec<String> = (0..9).map(|index| format!("p{index}")).collect();
    let mut people = Vec::new();
    for (index, name) in names.iter().enumerate() {
        people.push(participant_of(&[&nodes[index % 3]], dir.path(), name).await);
    }
    let last_name = names.last().expect("nine names").clone();
    for person in &mut people {
        person
            .wait_for_event(
                "the last join",
                |line| line.body.starts_with(&joined_prefix(&last_name)),
                WAIT,
            )
            .await
            .expect("everyone is present");
    }
    let urls: Vec<String> = nodes.iter().map(ServiceProcess::url).collect();
    // The name "rex" is claimed on two nodes at once, left through the third, and claimed again,
    // while everyone publishes as fast as they can.
    let claims = tokio::spawn(async move {
        let mut clients = Vec::new();
        for url in &urls {
            clients.push(
                v1::chitty_chat_client::ChittyChatClient::connect(url.clone())
                    .await
                    .expect("connect"),
            );
        }
        for round in 0..CLAIMS {
            let request = || v1::JoinRequest {
                name: "rex".to_owned(),
                lamport: 1,
                ..Default::default()
            };
            let (mut first, mut second) =
                (clients[round % 3].clone(), clients[(round + 1) % 3].clone());
            let (a, b) = tokio::join!(first.join(request()), second.join(request()));
            let admitted: Vec<_> = [&a, &b]
                .into_iter()
                .filter_map(|outcome| outcome.as_ref().ok())
                .collect();
            assert_eq!(admitted.len(), 1, "round {round}: got {a:?} and {b:?}");
            let token = admitted[0].get_ref().session_token.clone();
            let mut leave = tonic::Request::new(v1::LeaveRequest { lamport: 1 });
            leave.metadata_mut().insert(
                "authorization",
                format!("Bearer {token}").parse().expect("ASCII"),
            );
            clients[(round + 2) % 3]
                .leave(leave)
                .await
                .expect("rex leaves through another node");
        }
    });
    for message in 0..MESSAGES_EACH {
        for person in &mut people {
            let text = format!("{} says {message}", person.name());
            person.say(&text).await.expect("type");
        }
    }
    tokio::time::timeout(WAIT * 4, claims)
        .await
        .expect("the claims end in time")
        .expect("every claim admitted exactly one and every leave succeeded");
    // Sent once every claim and leave was acknowledged, so ordered after all of them.
    people[0].say("after the claims").await.expect("type");
    let after_claims = message_body("p0", "after the claims");
    for person in &mut people {
        for name in &names {
            let last = message_body(name, &format!("{name} says {}", MESSAGES_EACH - 1));
            person
                .wait_for_event("the last message", |line| line.body == last, WAIT * 2)
                .await
                .expect("every message reaches every participant");
        }
        person
            .wait_for_event(
                "the message after the claims",
                |line| line.body == after_claims,
                WAIT,
            )
            .await
            .expect("every message reaches every participant");
    }
    for person in &people {
        let joins = joins_alternating_with_leaves(person.received(), "rex")
            .unwrap_or_else(|error| panic!("{} saw {error}", person.name()));
        assert_eq!(
            joins,
            CLAIMS,
            "{} saw rex join {joins} times",
            person.name()
        );
    }
    leave_all(people).await;
    // Node 0's metrics: it sees all three nodes, catches up with every leave, and counts the same
    // append conflicts and retries that it logs when it stops.
    let scraped = tokio::time::timeout(WAIT, async {
        loop {
            let scraped = Scrape::of(&nodes[0]).await;
            if scraped.get("chitty_chat_cluster_consumer_lag_events", &[]) == 0.0
                && scraped.get("chitty_chat_participants_present", &[]) == 0.0
            {
                break scraped;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("node 0 applies every leave within the bound");
    scraped.expect("chitty_chat_cluster_nodes_alive", &[], 3);
    assert!(
        scraped.get("chitty_chat_cluster_append_latency_seconds_count", &[]) >= 1.0,
        "node 0 timed its appends: {}",
        scraped.text
    );
    let conflicts = scraped.get("chitty_chat_cluster_append_conflicts_total", &[]);
    let retries = scraped.get("chitty_chat_cluster_append_retries_total", &[]);
    stop_and_check(nodes, dir.path()).await;
    let stats = log_lines(&dir.path().join("service-0.log"))
        .into_iter()
        .find(|line| has(line, "event", "append_stats"))
        .expect("node 0 logs its append counts when it stops");
    assert_eq!(
        (Some(conflicts), Some(retries)),
        (
            stats["conflicts"].as_f64(),
            stats["transient_retries"].as_f64()
        ),
        "conflicts and retries: the metrics, then the log line {stats}"
    );
}
