//! Hostile and careful users: TLS, the join secret, and bytes on the wire that no gRPC client would
//! send. Every attack runs against the real service process while a control participant keeps chatting.

mod common;

use std::time::Duration;

use chitty_chat::harness::{ParticipantProcess, joined_prefix, message_body};
use common::{WAIT, args, binary, log_dir, participant, service};
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A certificate authority and a certificate for `localhost` and 127.0.0.1 signed by it, as PEM files in
/// `dir`: returns the paths of (CA certificate, server certificate, server key).
fn certificates(dir: &std::path::Path) -> (String, String, String) {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_key = KeyPair::generate().expect("a CA key");
    let ca = ca_params.self_signed(&ca_key).expect("a CA certificate");
    let issuer = Issuer::new(ca_params, ca_key);
    let server_params =
        CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
            .expect("server parameters");
    let server_key = KeyPair::generate().expect("a server key");
    let server = server_params
        .signed_by(&server_key, &issuer)
        .expect("a server certificate");
    let write = |name: &str, pem: String| {
        let path = dir.join(name);
        std::fs::write(&path, pem).expect("write a PEM file");
        path.display().to_string()
    };
    (
        write("ca.pem", ca.pem()),
        write("server.pem", server.pem()),
        write("server.key", server_key.serialize_pem()),
    )
}

#[tokio::test]
async fn tls_serves_participants_that_trust_its_authority_and_refuses_others() {
    let dir = log_dir();
    let (ca, certificate, key) = certificates(dir.path());
    let service = service(dir.path(), &["--tls-cert", &certificate, "--tls-key", &key]).await;
    let url = format!("https://localhost:{}", service.address().port());

    let mut alice = ParticipantProcess::start(binary(), &url, "alice", &args(&["--ca", &ca]))
        .await
        .expect("start");
    alice
        .wait_for_event(
            "her join",
            |line| line.body.starts_with(&joined_prefix("alice")),
            WAIT,
        )
        .await
        .expect("a participant trusting the CA joins over TLS");
    alice.say("encrypted hello").await.expect("type");
    alice
        .wait_for_event(
            "her message",
            |line| line.body == message_body("alice", "encrypted hello"),
            WAIT,
        )
        .await
        .expect("the chat works over TLS");

    let mut stranger = ParticipantProcess::start(binary(), &url, "stranger", &[])
        .await
        .expect("start");
    assert!(!stranger.wait(WAIT).await.expect("exits").success());
    assert!(
        stranger
            .errors()
            .iter()
            .any(|line| line.contains("cannot reach the Chitty-Chat service")),
        "{:?}",
        stranger.errors()
    );

    let mut plaintext = ParticipantProcess::start(binary(), &service.url(), "plain", &[])
        .await
        .expect("start");
    assert!(
        !plaintext.wait(WAIT).await.expect("exits").success(),
        "a plaintext participant cannot talk to a TLS service"
    );
}

#[tokio::test]
async fn a_join_secret_admits_those_who_know_it_and_no_one_else() {
    let dir = log_dir();
    let service = service(dir.path(), &["--join-secret", "open sesame"]).await;
    let mut friend = ParticipantProcess::start(
        binary(),
        &service.url(),
        "friend",
        &args(&["--join-secret", "open sesame"]),
    )
    .await
    .expect("start");
    friend
        .wait_for_event(
            "its join",
            |line| line.body.starts_with(&joined_prefix("friend")),
            WAIT,
        )
        .await
        .expect("the right secret admits");

    for guess in ["", "open says me"] {
        let mut intruder = ParticipantProcess::start(
            binary(),
            &service.url(),
            "intruder",
            &args(&["--join-secret", guess]),
        )
        .await
        .expect("start");
        assert!(!intruder.wait(WAIT).await.expect("exits").success());
        assert!(
            intruder
                .errors()
                .iter()
                .any(|line| line.contains("wrong join secret")),
            "{:?}",
            intruder.errors()
        );
    }
}

/// One gRPC frame: the compression flag, a length prefix, and the payload that actually follows.
fn frame(claimed_length: u32, payload: &[u8]) -> Vec<u8> {
    let mut frame = vec![0];
    frame.extend_from_slice(&claimed_length.to_be_bytes());
    frame.extend_from_slice(payload);
    frame
}

/// A raw HTTP/2 connection to the service at `address`, driven by a task of its own.
async fn raw_connection(
    address: std::net::SocketAddr,
) -> h2::client::SendRequest<prost::bytes::Bytes> {
    let tcp = tokio::net::TcpStream::connect(address)
        .await
        .expect("connect");
    let (client, connection) = h2::client::handshake(tcp).await.expect("HTTP/2 handshake");
    tokio::spawn(connection);
    client
}

/// The headers of a Publish request to the service at `address`, with a token it never issued.
fn publish_headers(address: std::net::SocketAddr) -> http::Request<()> {
    http::Request::builder()
        .method("POST")
        .uri(format!("http://{address}/chittychat.v1.ChittyChat/Publish"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .header("authorization", "Bearer not-a-real-token")
        .body(())
        .expect("a request")
}

/// Sends a raw HTTP/2 request to Publish with `body` and returns the grpc-status and message it gets.
async fn raw_publish(address: std::net::SocketAddr, body: Vec<u8>) -> (String, String) {
    let mut client = raw_connection(address).await;
    let (response, mut send) = client
        .send_request(publish_headers(address), false)
        .expect("send headers");
    send.send_data(body.into(), true).expect("send the body");
    let response = tokio::time::timeout(WAIT, response)
        .await
        .expect("an answer")
        .expect("a response");
    let headers = response.headers().clone();
    let mut body = response.into_body();
    while let Some(chunk) = tokio::time::timeout(WAIT, body.data())
        .await
        .expect("bounded")
    {
        chunk.expect("body data");
    }
    let trailers = tokio::time::timeout(WAIT, body.trailers())
        .await
        .expect("bounded")
        .expect("trailers")
        .unwrap_or_else(|| headers.clone());
    let read = |name: &str| {
        trailers
            .get(name)
            .or_else(|| headers.get(name))
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    (read("grpc-status"), read("grpc-message"))
}

#[tokio::test]
async fn malformed_frames_a_4_gb_length_and_thousands_of_resets_are_answered_cleanly() {
    let dir = log_dir();
    let service = service(dir.path(), &[]).await;
    let mut alice = participant(&service, dir.path(), "alice").await;
    let mut bob = participant(&service, dir.path(), "bob").await;
    let address = service.address();
    let mut round = 0;
    let mut control =
        async |alice: &mut chitty_chat::harness::ParticipantProcess,
               bob: &mut chitty_chat::harness::ParticipantProcess| {
            round += 1;
            let text = format!("still chatting {round}");
            alice.say(&text).await.expect("type");
            bob.wait_for_event(
                "the control message",
                |line| line.body == message_body("alice", &text),
                WAIT,
            )
            .await
            .expect("the control participants keep chatting");
        };

    // Not protobuf at all: a field with an invalid wire type.
    let (status, message) = raw_publish(address, frame(2, &[0x0f, 0x01])).await;
    assert_eq!(status, "3", "INVALID_ARGUMENT, got {status} {message}");
    control(&mut alice, &mut bob).await;

    // A frame whose length prefix promises more than the stream delivers.
    let (status, message) = raw_publish(address, frame(100, &[0x0a, 0x02, b'h', b'i'])).await;
    eprintln!("truncated frame: grpc-status {status}: {message}");
    assert_ne!(status, "0", "a truncated frame must not succeed: {message}");
    assert_ne!(status, "", "a truncated frame gets a gRPC status");
    control(&mut alice, &mut bob).await;

    // A length prefix claiming 4 GB: refused by the size limit before anything is allocated.
    let (status, message) = raw_publish(address, frame(u32::MAX, &[0x0a, 0x02, b'h', b'i'])).await;
    eprintln!("4 GB length prefix: grpc-status {status}: {message}");
    assert!(
        ["8", "11"].contains(&status.as_str()),
        "RESOURCE_EXHAUSTED or OUT_OF_RANGE, got {status} {message}"
    );
    control(&mut alice, &mut bob).await;

    // Ten thousand streams opened and reset at once, on as many connections as the service tolerates.
    let mut resets = 0;
    let mut connections = 0;
    while resets < 10_000 {
        let tcp = tokio::net::TcpStream::connect(address)
            .await
            .expect("connect");
        let Ok((mut client, connection)) = h2::client::handshake(tcp).await else {
            continue;
        };
        connections += 1;
        let driver = tokio::spawn(connection);
        for _ in 0..1000 {
            let request = http::Request::builder()
                .method("POST")
                .uri(format!("http://{address}/chittychat.v1.ChittyChat/Publish"))
                .header("content-type", "application/grpc")
                .body(())
                .expect("a request");
            let Ok(ready) = client.clone().ready().await else {
                break;
            };
            client = ready;
            match client.send_request(request, false) {
                Ok((_, mut send)) => {
                    send.send_reset(h2::Reason::CANCEL);
                    resets += 1;
                }
                Err(_) => break,
            }
        }
        driver.abort();
    }
    eprintln!("{resets} streams reset over {connections} connections");
    assert!(connections >= 1);
    control(&mut alice, &mut bob).await;

    // Plain garbage instead of HTTP/2: the connection is closed, nothing else happens.
    let mut tcp = tokio::net::TcpStream::connect(address)
        .await
        .expect("connect");
    tcp.write_all(b"GET / HTTP/1.0\r\n\r\n\x00\xff garbage \xff\x00")
        .await
        .expect("write");
    let mut sink = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut sink)).await;
    control(&mut alice, &mut bob).await;
}

/// The `SETTINGS_MAX_CONCURRENT_STREAMS` that a service started with `extra` announces to a client.
async fn announced_stream_limit(extra: &[&str]) -> usize {
    let dir = log_dir();
    let service = service(dir.path(), extra).await;
    let client = raw_connection(service.address()).await;
    // A request answered means the service's SETTINGS, which precede its first frame, have arrived.
    let mut client = tokio::time::timeout(WAIT, client.ready())
        .await
        .expect("ready in time")
        .expect("ready");
    let (response, mut send) = client
        .send_request(publish_headers(service.address()), false)
        .expect("send headers");
    send.send_data(frame(0, &[]).into(), true)
        .expect("send the body");
    tokio::time::timeout(WAIT, response)
        .await
        .expect("an answer in time")
        .expect("a response");
    client.current_max_send_streams()
}

#[tokio::test]
async fn a_connection_may_have_16_calls_in_flight_unless_the_operator_allows_more() {
    assert_eq!(announced_stream_limit(&[]).await, 16, "the default");
    assert_eq!(
        announced_stream_limit(&["--max-streams-per-connection", "200"]).await,
        200,
        "--max-streams-per-connection 200"
    );
}
