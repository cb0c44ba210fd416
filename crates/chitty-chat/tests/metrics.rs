//! Prometheus metrics on the real service, as an operator scrapes them: `serve --metrics-listen` serves
//! `GET /metrics` over real HTTP, and a known sequence of calls moves the counters by exactly what it
//! must.

mod common;

use chitty_chat::harness::ServiceProcess;
use chitty_proto::v1;
use common::{WAIT, args, authorized, binary, raw_client, raw_join};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The body of `GET /metrics` from `service`, over a plain HTTP/1.1 connection.
async fn scrape(service: &ServiceProcess) -> String {
    let address = service
        .metrics_address()
        .expect("the service was started with --metrics-listen");
    let response = tokio::time::timeout(WAIT, async {
        let mut connection = TcpStream::connect(address).await?;
        connection
            .write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            .await?;
        let mut response = String::new();
        connection.read_to_string(&mut response).await?;
        std::io::Result::Ok(response)
    })
    .await
    .expect("the metrics are served within the bound")
    .expect("the metrics endpoint answers over HTTP");
    let (head, body) = response
        .split_once("\r\n\r\n")
        .expect("an HTTP response has a head and a body");
    assert!(
        head.starts_with("HTTP/1.1 200"),
        "got response head {head:?}, want 200"
    );
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: application/openmetrics-text"),
        "got response head {head:?}, want the OpenMetrics content type"
    );
    body.to_owned()
}

/// The value of the sample named exactly `series` (name and labels), if the output has it.
fn sample<'a>(text: &'a str, series: &str) -> Option<&'a str> {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .find_map(|line| match line.rsplit_once(' ') {
            Some((name, value)) if name == series => Some(value),
            _ => None,
        })
}

#[tokio::test]
async fn metrics_count_joins_messages_and_a_refused_publish() {
    let service = ServiceProcess::start(
        binary(),
        &args(&["--in-memory", "--metrics-listen", "127.0.0.1:0"]),
    )
    .await
    .expect("the service starts");
    let mut client = raw_client(&service).await;
    let (ada, _) = raw_join(&mut client, "ada").await;
    let (_grace, _) = raw_join(&mut client, "grace").await;
    let publish = |text: String| {
        authorized(
            v1::PublishRequest {
                text,
                lamport: 2,
                idempotency_key: String::new(),
            },
            &ada,
        )
    };
    client
        .publish(publish("hello".to_owned()))
        .await
        .expect("a valid message is accepted");
    let refused = client
        .publish(publish("x".repeat(129)))
        .await
        .expect_err("a message of 129 characters is refused");
    assert_eq!(
        refused.code(),
        tonic::Code::InvalidArgument,
        "got {refused:?}"
    );

    let text = scrape(&service).await;
    let want = [
        ("chitty_chat_events_appended_total{kind=\"joined\"}", "2"),
        ("chitty_chat_events_appended_total{kind=\"message\"}", "1"),
        (
            "chitty_chat_refusals_total{call=\"publish\",reason=\"invalid_message\"}",
            "1",
        ),
        ("chitty_chat_participants_present", "2"),
        ("chitty_chat_last_seq", "3"),
    ];
    for (series, value) in want {
        assert_eq!(
            sample(&text, series),
            Some(value),
            "{series}: got/want, in\n{text}"
        );
    }
    assert_eq!(
        sample(&text, "chitty_chat_events_appended_total{kind=\"left\"}"),
        Some("0"),
        "nobody left, in\n{text}"
    );
    let published: u64 = sample(&text, "chitty_chat_publish_latency_seconds_count")
        .expect("the publish latency histogram has a count")
        .parse()
        .expect("a count is a number");
    assert!(
        published >= 1,
        "got {published} timed publishes, want at least 1"
    );
    let lamport: u64 = sample(&text, "chitty_chat_lamport_clock")
        .expect("the Lamport clock is a gauge")
        .parse()
        .expect("a clock is a number");
    assert!(lamport >= 3, "got Lamport clock {lamport}, want at least 3");
}
