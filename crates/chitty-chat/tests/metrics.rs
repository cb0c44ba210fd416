//! Prometheus metrics on the real service, as an operator scrapes them: `serve --metrics-listen` serves
//! `GET /metrics` over real HTTP, and a known sequence of calls (joins, messages, an invalid message, a
//! rate-limited burst, a participant that never reads and is cut off, a replaced stream, a leave) moves
//! the counters by exactly what the client saw. The text is read with a Prometheus parser.

mod common;

use chitty_chat::harness::ServiceProcess;
use chitty_proto::v1;
use chitty_proto::v1::chitty_chat_client::ChittyChatClient;
use common::{Scrape, WAIT, args, authorized, binary, open, raw_client, raw_join};
use tonic::Code;
use tonic::transport::Channel;

/// A sample's name, its labels, and the value it should have.
type Want<'a> = (&'a str, &'a [(&'a str, &'a str)], u64);

/// A Publish of `text` by the session of `token`.
async fn publish(
    client: &mut ChittyChatClient<Channel>,
    token: &str,
    text: &str,
) -> Result<u64, tonic::Status> {
    client
        .publish(authorized(
            v1::PublishRequest {
                text: text.to_owned(),
                lamport: 1,
                idempotency_key: String::new(),
            },
            token,
        ))
        .await
        .map(|response| response.into_inner().seq)
}

#[tokio::test]
async fn a_known_sequence_of_calls_moves_every_counter_by_what_the_client_saw() {
    // A burst large enough to flood a reader that reads nothing, refilled slowly enough that a quick
    // run of publishes afterwards finds the bucket empty.
    const BURST: u64 = 2000;
    let service = ServiceProcess::start(
        binary(),
        &args(&[
            "--in-memory",
            "--metrics-listen",
            "127.0.0.1:0",
            "--stream-queue",
            "16",
            "--publish-rate",
            "1",
            "--publish-burst",
            &BURST.to_string(),
            // Nobody is swept during the test: the sessions without a stream stay in their grace period.
            "--grace",
            "10m",
        ]),
    )
    .await
    .expect("the service starts");
    let fresh = Scrape::of(&service).await;
    fresh.expect("chitty_chat_participants_present", &[], 0);
    fresh.expect(
        "chitty_chat_events_appended_total",
        &[("kind", "message")],
        0,
    );
    fresh.expect(
        "chitty_chat_slow_readers_cut_off_total",
        &[("reason", "fell_behind")],
        0,
    );

    let mut client = raw_client(&service).await;
    let (ada, _) = raw_join(&mut client, "ada").await;
    let (talker, _) = raw_join(&mut client, "talker").await;
    let taken = client
        .join(v1::JoinRequest {
            name: "ada".to_owned(),
            lamport: 1,
            ..Default::default()
        })
        .await
        .expect_err("a second ada is refused");
    assert_eq!(taken.code(), Code::AlreadyExists, "{taken:?}");

    // The stalled participant opens its stream on a connection with a small HTTP/2 window, and never
    // reads from it.
    let channel = Channel::from_shared(service.url())
        .expect("a URL")
        .initial_stream_window_size(16 * 1024)
        .connect()
        .await
        .expect("connect");
    let mut stalled_client = ChittyChatClient::new(channel);
    let (stalled, _) = raw_join(&mut stalled_client, "stalled").await;
    let _never_read = open(&mut stalled_client, &stalled, 0)
        .await
        .expect("the stream opens");

    let invalid = publish(&mut client, &ada, &"x".repeat(129))
        .await
        .expect_err("a message of 129 characters is refused");
    assert_eq!(invalid.code(), Code::InvalidArgument, "{invalid:?}");

    // The talker publishes until the stalled reader is cut off, then keeps going until the rate limit
    // refuses it three times: every answer is tallied.
    let text = "y".repeat(128);
    let mut accepted = 0u64;
    let mut rate_limited = 0u64;
    let mut cut_off = false;
    while rate_limited < 3 {
        match publish(&mut client, &talker, &text).await {
            Ok(_) => accepted += 1,
            Err(status) => {
                assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
                rate_limited += 1;
            }
        }
        if !cut_off && accepted.is_multiple_of(100) {
            let now = Scrape::of(&service).await;
            cut_off = now.get(
                "chitty_chat_slow_readers_cut_off_total",
                &[("reason", "fell_behind")],
            ) >= 1.0;
        }
        assert!(
            accepted + rate_limited <= 2 * BURST,
            "{accepted} accepted and {rate_limited} rate-limited: the limit never bit"
        );
    }
    assert!(
        cut_off,
        "the stalled reader was not cut off by {accepted} messages"
    );

    // A participant that reconnects before its old stream was noticed closed replaces it.
    let _replaced = open(&mut client, &talker, 0)
        .await
        .expect("the stream opens");
    let mut current = open(&mut client, &talker, 0)
        .await
        .expect("the stream opens");
    let left = client
        .leave(authorized(v1::LeaveRequest { lamport: 1 }, &ada))
        .await
        .expect("ada leaves")
        .into_inner();
    // The left event reaches the talker's current stream: every count below includes it.
    let seen_left = tokio::time::timeout(WAIT, async {
        loop {
            let event = current
                .message()
                .await
                .expect("the stream is healthy")
                .expect("the stream is open");
            if event.seq == left.seq {
                break event;
            }
        }
    })
    .await
    .expect("the left event arrives within the bound");
    assert_eq!(seen_left.participant, "ada");

    let text = Scrape::of(&service).await;
    let joins = 3;
    let last_seq = joins + accepted + 1;
    assert_eq!(left.seq, last_seq, "every accepted call appended one event");
    let want: [Want; 13] = [
        (
            "chitty_chat_events_appended_total",
            &[("kind", "joined")],
            joins,
        ),
        (
            "chitty_chat_events_appended_total",
            &[("kind", "message")],
            accepted,
        ),
        ("chitty_chat_events_appended_total", &[("kind", "left")], 1),
        (
            "chitty_chat_refusals_total",
            &[
                ("call", "join"),
                ("code", "ALREADY_EXISTS"),
                ("reason", "name_taken"),
            ],
            1,
        ),
        (
            "chitty_chat_refusals_total",
            &[
                ("call", "publish"),
                ("code", "INVALID_ARGUMENT"),
                ("reason", "invalid_message"),
            ],
            1,
        ),
        (
            "chitty_chat_refusals_total",
            &[
                ("call", "publish"),
                ("code", "RESOURCE_EXHAUSTED"),
                ("reason", "rate_limited"),
            ],
            rate_limited,
        ),
        (
            "chitty_chat_slow_readers_cut_off_total",
            &[("reason", "fell_behind")],
            1,
        ),
        ("chitty_chat_streams_replaced_total", &[], 1),
        ("chitty_chat_publish_latency_seconds_count", &[], accepted),
        ("chitty_chat_participants_present", &[], 2),
        // The stalled participant, whose stream was cut off; the talker has a stream open.
        ("chitty_chat_sessions_in_grace", &[], 1),
        ("chitty_chat_broadcast_streams_open", &[], 1),
        ("chitty_chat_last_seq", &[], last_seq),
    ];
    for (name, labels, value) in want {
        text.expect(name, labels, value);
    }
    // Every event was held for replay (the window is far below its bounds), and committed.
    text.expect("chitty_chat_history_window_events", &[], last_seq);
    text.expect("chitty_chat_store_events_per_commit_sum", &[], last_seq);
    assert!(
        text.get("chitty_chat_store_commit_latency_seconds_count", &[]) >= 1.0,
        "no commit was timed"
    );
    assert_eq!(
        text.parsed
            .samples
            .iter()
            .filter(|sample| sample.metric == "chitty_chat_sessions_swept_total")
            .count(),
        0,
        "nobody was swept: {}",
        text.text
    );
    // Deliveries: the stalled reader got at most the 16 its mailbox holds past what the network took,
    // the talker's streams got their replays, and the last stream the left event.
    let deliveries = text.get("chitty_chat_deliveries_total", &[]);
    assert!(deliveries >= 1.0, "got {deliveries} deliveries");
    let written = text.get("chitty_chat_stream_written_bytes_total", &[]);
    assert!(
        written >= 128.0,
        "got {written} bytes written, want at least one 128-character message"
    );
    assert!(
        text.get("chitty_chat_lamport_clock", &[]) >= last_seq as f64,
        "the clock ticked for every event"
    );
    if cfg!(target_os = "linux") {
        assert!(
            text.get("process_resident_memory_bytes", &[]) > 0.0,
            "{}",
            text.text
        );
        assert!(text.get("process_open_fds", &[]) >= 3.0, "{}", text.text);
    }
    assert!(
        text.value("chitty_chat_cluster_consumer_lag_events", &[])
            .is_none(),
        "a single node has no cluster metrics"
    );
}
