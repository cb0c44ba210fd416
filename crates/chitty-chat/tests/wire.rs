//! The wire contract, exercised with a raw gRPC client against the real service process: what a
//! well-behaved participant never sends, and the stream semantics it relies on.

mod common;

use std::time::Duration;

use chitty_chat::harness::{joined_prefix, message_body};
use chitty_proto::v1;
use chitty_proto::v1::chitty_chat_client::ChittyChatClient;
use common::{
    WAIT, authorized, has, log_dir, log_lines, open, participant, raw_client, raw_join, service,
};
use prost::Message as _;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::transport::Channel;
use tonic::{Code, Status, Streaming};

/// Reads the next event within the bound.
async fn next_event(stream: &mut Streaming<v1::Event>) -> v1::Event {
    tokio::time::timeout(WAIT, stream.message())
        .await
        .expect("an event within the bound")
        .expect("the stream is healthy")
        .expect("the stream is open")
}

/// Publishes `text` for `token`, returning the event's seq.
async fn publish(client: &mut ChittyChatClient<Channel>, token: &str, text: &str) -> u64 {
    client
        .publish(authorized(
            v1::PublishRequest {
                text: text.to_owned(),
                lamport: 1,
                ..Default::default()
            },
            token,
        ))
        .await
        .expect("publish succeeds")
        .into_inner()
        .seq
}

/// A request with this `authorization` value, or none.
fn with_credential<T>(message: T, credential: Option<&str>) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    if let Some(credential) = credential {
        request
            .metadata_mut()
            .insert("authorization", credential.parse().expect("ASCII"));
    }
    request
}

#[tokio::test]
async fn missing_malformed_forged_and_ended_tokens_are_unauthenticated() {
    let dir = log_dir();
    let service = service(dir.path(), &[]).await;
    let mut client = raw_client(&service).await;
    let (token, _) = raw_join(&mut client, "mallory").await;
    client
        .leave(authorized(v1::LeaveRequest { lamport: 2 }, &token))
        .await
        .expect("leave succeeds");

    let ended = format!("Bearer {token}");
    let forged = format!("Bearer {}", "0".repeat(64));
    for credential in [
        None,
        Some("Basic bWFsbG9yeQ=="),
        Some("Bearer "),
        Some(forged.as_str()),
        Some(ended.as_str()),
    ] {
        let publish = client
            .publish(with_credential(
                v1::PublishRequest {
                    text: "I am alice".into(),
                    lamport: 1,
                    ..Default::default()
                },
                credential,
            ))
            .await
            .expect_err("publish must be refused");
        let mut probe = client.clone();
        let leave = probe
            .leave(with_credential(v1::LeaveRequest { lamport: 1 }, credential))
            .await
            .expect_err("leave must be refused");
        let broadcast = client
            .broadcast(with_credential(
                v1::BroadcastRequest {
                    lamport: 1,
                    after_seq: 0,
                },
                credential,
            ))
            .await
            .expect_err("broadcast must be refused");
        for (rpc, status) in [
            ("Publish", publish),
            ("Leave", leave),
            ("Broadcast", broadcast),
        ] {
            assert_eq!(
                status.code(),
                Code::Unauthenticated,
                "{rpc} with {credential:?}: got {status:?}"
            );
            assert!(
                status.message().contains("session token")
                    || status.message().contains("credential")
            );
            assert!(
                status.metadata().get("lamport").is_some(),
                "a status carries the service's Lamport time"
            );
        }
    }
}

/// A codec that sends raw bytes as the request, to put on the wire what no protobuf library would encode.
#[derive(Debug, Default, Clone)]
struct RawRequest;

impl Codec for RawRequest {
    type Encode = Vec<u8>;
    type Decode = v1::PublishResponse;
    type Encoder = RawRequest;
    type Decoder = RawRequest;

    fn encoder(&mut self) -> Self::Encoder {
        RawRequest
    }

    fn decoder(&mut self) -> Self::Decoder {
        RawRequest
    }
}

impl Encoder for RawRequest {
    type Item = Vec<u8>;
    type Error = Status;

    fn encode(&mut self, item: Vec<u8>, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        use prost::bytes::BufMut as _;
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for RawRequest {
    type Item = v1::PublishResponse;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<v1::PublishResponse>, Status> {
        v1::PublishResponse::decode(src)
            .map(Some)
            .map_err(|error| Status::internal(error.to_string()))
    }
}

async fn raw_publish(service_url: String, token: &str, body: Vec<u8>) -> Status {
    let channel = Channel::from_shared(service_url)
        .expect("a URL")
        .connect()
        .await
        .expect("connect");
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.expect("ready");
    let path =
        tonic::codegen::http::uri::PathAndQuery::from_static("/chittychat.v1.ChittyChat/Publish");
    grpc.unary(authorized(body, token), path, RawRequest)
        .await
        .expect_err("the service must refuse this request")
}

#[tokio::test]
async fn invalid_utf8_and_malformed_protobuf_on_the_wire_are_invalid_argument() {
    let dir = log_dir();
    let service = service(dir.path(), &[]).await;
    let mut watcher = participant(&service, dir.path(), "watcher").await;
    let mut client = raw_client(&service).await;
    let (token, _) = raw_join(&mut client, "sender").await;
    let before = publish(&mut client, &token, "before").await;

    // Field 1 (text), length-delimited, 3 bytes that are not UTF-8.
    let status = raw_publish(service.url(), &token, vec![0x0a, 0x03, b'h', 0xff, 0xfe]).await;
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(
        status.message().contains("PublishRequest.text") && status.message().contains("UTF-8"),
        "got {:?}",
        status.message()
    );
    // A length prefix claiming more bytes than follow.
    let status = raw_publish(service.url(), &token, vec![0x0a, 0x7f, b'h', b'i']).await;
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    // A field with an invalid wire type.
    let status = raw_publish(service.url(), &token, vec![0x0f, 0x01]).await;
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");

    let after = publish(&mut client, &token, "after").await;
    assert_eq!(
        after,
        before + 1,
        "something was broadcast for an invalid request"
    );
    watcher
        .wait_for_event(
            "the message after",
            |line| line.body == message_body("sender", "after"),
            WAIT,
        )
        .await
        .expect("the chat goes on");
}

#[tokio::test]
async fn broadcast_starts_at_the_own_join_and_resumes_after_seq_without_gap_or_duplicate() {
    let dir = log_dir();
    let service = service(dir.path(), &[]).await;
    let mut talker = raw_client(&service).await;
    let (talker_token, _) = raw_join(&mut talker, "talker").await;
    publish(&mut talker, &talker_token, "before the watcher joined").await;

    let mut client = raw_client(&service).await;
    let (token, joined) = raw_join(&mut client, "watcher").await;

    // after_seq = 0, or any point before the join, starts at the watcher's own join event.
    for after_seq in [0, joined.seq - 1, 1] {
        let mut stream = open(&mut client, &token, after_seq).await.expect("open");
        let first = next_event(&mut stream).await;
        assert_eq!(first.seq, joined.seq, "from after_seq {after_seq}");
        assert_eq!(
            first.text,
            format!(
                "{}{}",
                joined_prefix("watcher").trim_start_matches("*** "),
                first.lamport
            )
        );
    }

    let mut stream = open(&mut client, &token, 0).await.expect("open");
    next_event(&mut stream).await;
    for n in 1..=3 {
        publish(&mut talker, &talker_token, &format!("live {n}")).await;
    }
    let mut last_seq = 0;
    for n in 1..=3 {
        let event = next_event(&mut stream).await;
        assert_eq!(event.text, format!("live {n}"));
        last_seq = event.seq;
    }
    drop(stream);

    for n in 1..=3 {
        publish(&mut talker, &talker_token, &format!("missed {n}")).await;
    }
    let mut stream = open(&mut client, &token, last_seq).await.expect("reopen");
    publish(&mut talker, &talker_token, "live again").await;
    let mut texts = Vec::new();
    let mut seqs = Vec::new();
    for _ in 0..4 {
        let event = next_event(&mut stream).await;
        texts.push(event.text);
        seqs.push(event.seq);
    }
    assert_eq!(texts, ["missed 1", "missed 2", "missed 3", "live again"]);
    assert_eq!(seqs, (last_seq + 1..=last_seq + 4).collect::<Vec<_>>());
}

#[tokio::test]
async fn resuming_from_before_the_held_history_is_out_of_range_and_says_what_is_held() {
    let dir = log_dir();
    let service = service(dir.path(), &["--retain-events", "4"]).await;
    let mut client = raw_client(&service).await;
    let (token, joined) = raw_join(&mut client, "watcher").await;
    let mut last = 0;
    for n in 0..10 {
        last = publish(&mut client, &token, &format!("message {n}")).await;
    }
    let status = open(&mut client, &token, joined.seq)
        .await
        .expect_err("history is gone");
    assert_eq!(status.code(), Code::OutOfRange, "{status:?}");
    let held = format!("the history holds seq {} to {last}", last - 3);
    assert!(
        status.message().contains(&held),
        "got {:?}, want it to contain {held:?}",
        status.message()
    );

    let status = open(&mut client, &token, last + 5)
        .await
        .expect_err("the future is not held");
    assert_eq!(status.code(), Code::OutOfRange, "{status:?}");
}

#[tokio::test]
async fn a_new_stream_replaces_the_old_one_which_ends_with_aborted() {
    let dir = log_dir();
    let service = service(dir.path(), &[]).await;
    let mut client = raw_client(&service).await;
    let (token, _) = raw_join(&mut client, "twice").await;
    let mut old = open(&mut client, &token, 0).await.expect("open");
    next_event(&mut old).await;
    let mut new = open(&mut client, &token, 0).await.expect("open again");
    next_event(&mut new).await;
    let status = tokio::time::timeout(WAIT, old.message())
        .await
        .expect("the old stream ends promptly")
        .expect_err("the old stream ends with an error");
    assert_eq!(status.code(), Code::Aborted, "{status:?}");
    publish(&mut client, &token, "still here").await;
    assert_eq!(next_event(&mut new).await.text, "still here");
}

#[tokio::test]
async fn lamport_times_follow_the_rules_and_absurd_ones_are_refused() {
    let dir = log_dir();
    let service = service(dir.path(), &[]).await;
    let mut client = raw_client(&service).await;
    let joined = client
        .join(v1::JoinRequest {
            name: "ahead".into(),
            lamport: 1000,
            ..Default::default()
        })
        .await
        .expect("join")
        .into_inner();
    assert!(
        joined.lamport > 1000,
        "the response must follow the request's time"
    );
    let token = joined.session_token.clone();
    let mut stream = open(&mut client, &token, 0).await.expect("open");
    let join_event = next_event(&mut stream).await;
    assert!(join_event.lamport > 1000 && join_event.lamport < joined.lamport);

    let mut previous = join_event.lamport;
    for n in 0..5 {
        let response = client
            .publish(authorized(
                v1::PublishRequest {
                    text: format!("n{n}"),
                    lamport: 3,
                    ..Default::default()
                },
                &token,
            ))
            .await
            .expect("publish")
            .into_inner();
        let event = next_event(&mut stream).await;
        assert!(
            event.lamport > previous,
            "event times must strictly increase along seq"
        );
        assert!(
            response.lamport > event.lamport,
            "the response is sent after the event"
        );
        previous = event.lamport;
    }

    let status = client
        .publish(authorized(
            v1::PublishRequest {
                text: "from the far future".into(),
                lamport: u64::MAX,
                ..Default::default()
            },
            &token,
        ))
        .await
        .expect_err("an absurd Lamport time is refused");
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    let taken = client
        .join(v1::JoinRequest {
            name: "ahead".into(),
            lamport: 1,
            ..Default::default()
        })
        .await
        .expect_err("the name is taken");
    assert_eq!(taken.code(), Code::AlreadyExists, "{taken:?}");
}

#[tokio::test]
async fn a_participant_that_never_reads_is_cut_off_while_everyone_else_gets_everything() {
    const MESSAGES: usize = 600;
    let dir = log_dir();
    // The talker publishes without a stream, and the stalled participant has none once it is cut off:
    // on a loaded machine the 600 publishes can outlast the default 5 s grace, which would end both
    // sessions before the test is done with them. The grace is not what this test is about.
    let mut service = service(
        dir.path(),
        &[
            "--stream-queue",
            "16",
            "--publish-rate",
            "100000",
            "--publish-burst",
            "100000",
            "--grace",
            "10m",
        ],
    )
    .await;
    let mut reader = participant(&service, dir.path(), "reader").await;

    // The stalled participant opens its stream and then reads nothing while the chat goes on. Its small
    // HTTP/2 window keeps what the network buffers for it small, so its queue fills after fewer messages.
    let channel = Channel::from_shared(service.url())
        .expect("a URL")
        .initial_stream_window_size(16 * 1024)
        .connect()
        .await
        .expect("connect");
    let mut stalled_client = ChittyChatClient::new(channel);
    let (stalled_token, _) = raw_join(&mut stalled_client, "stalled").await;
    let mut stalled = open(&mut stalled_client, &stalled_token, 0)
        .await
        .expect("open");

    let mut talker = raw_client(&service).await;
    let (talker_token, _) = raw_join(&mut talker, "talker").await;
    let text = "x".repeat(128);
    let mut last = 0;
    for _ in 0..MESSAGES {
        last = publish(&mut talker, &talker_token, &text).await;
    }
    let seen = reader
        .wait_for_event(
            "the last message",
            |line| line.seq == last,
            Duration::from_secs(60),
        )
        .await
        .expect("the reader gets everything");
    assert_eq!(seen.body, message_body("talker", &text));
    let talker_messages = reader
        .received()
        .iter()
        .filter(|line| line.body.starts_with("<talker>"))
        .count();
    assert_eq!(talker_messages, MESSAGES, "the reader lost messages");

    // Now the stalled participant reads: what was buffered, then the cut-off.
    let mut last_read = 0;
    let status = loop {
        match tokio::time::timeout(WAIT, stalled.message())
            .await
            .expect("bounded")
        {
            Ok(Some(event)) => {
                if last_read != 0 {
                    assert_eq!(event.seq, last_read + 1, "a gap in the stalled stream");
                }
                last_read = event.seq;
            }
            Ok(None) => panic!("the stream ended cleanly; want RESOURCE_EXHAUSTED"),
            Err(status) => break status,
        }
    };
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert!(
        status.message().contains("fell behind"),
        "{:?}",
        status.message()
    );
    eprintln!("the stalled participant read {last_read} of {last} events before the cut-off");
    assert!(
        last_read < last,
        "the stalled participant was not cut off before the end"
    );

    // It may reconnect with after_seq and catch up exactly.
    let mut resumed = open(&mut stalled_client, &stalled_token, last_read)
        .await
        .expect("resume");
    let first = next_event(&mut resumed).await;
    assert_eq!(first.seq, last_read + 1);

    service.terminate().expect("SIGTERM");
    service.wait(WAIT).await.expect("the service exits");
    let cut = log_lines(&dir.path().join("service.log"))
        .into_iter()
        .find(|line| has(line, "event", "cut_off"))
        .expect("the cut-off is logged");
    assert!(has(&cut, "participant", "stalled"), "{cut}");
}

#[tokio::test]
async fn participants_lists_who_is_present_as_of_a_seq_and_only_to_participants() {
    let dir = log_dir();
    let service = service(dir.path(), &[]).await;
    let mut client = raw_client(&service).await;
    let (alice, _) = raw_join(&mut client, "alice").await;
    let (_, bob) = raw_join(&mut client, "bob").await;
    let presence = client
        .participants(authorized(v1::ParticipantsRequest { lamport: 1 }, &alice))
        .await
        .expect("a participant may ask")
        .into_inner();
    assert_eq!(presence.names, ["alice", "bob"]);
    assert_eq!(
        presence.seq, bob.seq,
        "the list reflects every event up to bob's join"
    );
    assert!(presence.lamport > 1);
    let status = client
        .participants(authorized(v1::ParticipantsRequest { lamport: 1 }, "forged"))
        .await
        .expect_err("strangers may not ask");
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
}

#[tokio::test]
async fn the_health_command_reports_a_serving_service_and_fails_without_one() {
    let dir = log_dir();
    let mut service = service(dir.path(), &[]).await;
    let probe = |url: String| async move {
        tokio::time::timeout(
            WAIT,
            tokio::process::Command::new(common::binary())
                .args(["health", "--server", &url, "--timeout", "2s"])
                .kill_on_drop(true)
                .output(),
        )
        .await
        .expect("the probe answers within the bound")
        .expect("the probe runs")
    };
    let serving = probe(service.url()).await;
    assert!(serving.status.success(), "{serving:?}");
    assert_eq!(String::from_utf8_lossy(&serving.stdout).trim(), "serving");

    service.terminate().expect("SIGTERM");
    service.wait(WAIT).await.expect("the service stops");
    let gone = probe(service.url()).await;
    assert!(!gone.status.success(), "{gone:?}");
    assert!(
        String::from_utf8_lossy(&gone.stderr).contains("cannot reach"),
        "{gone:?}"
    );
}
