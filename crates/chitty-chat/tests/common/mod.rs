//! Helpers shared by the integration tests: the real binary, bounded waits, and a raw gRPC client for
//! what a well-behaved participant would never send.

#![allow(dead_code)]

pub mod tally;
pub mod tmux;
pub mod vocabulary;

use std::path::Path;
use std::time::Duration;

use chitty_chat::harness::{ParticipantProcess, ServiceProcess};
use chitty_proto::v1;
use chitty_proto::v1::chitty_chat_client::ChittyChatClient;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tonic::metadata::MetadataValue;
use tonic::transport::Channel;

/// The bound on every wait for something that should happen promptly.
pub const WAIT: Duration = Duration::from_secs(15);

/// The `chitty-chat` binary cargo built for these tests.
pub fn binary() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_chitty-chat"))
}

/// Arguments from string slices.
pub fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|arg| (*arg).to_owned()).collect()
}

/// A service with its data and a JSON log in `dir`, plus `extra` flags.
pub async fn service(dir: &Path, extra: &[&str]) -> ServiceProcess {
    ServiceProcess::start(binary(), &service_args(dir, extra))
        .await
        .expect("the service starts")
}

/// The arguments of [`service`]: its data directory and JSON log in `dir`, then `extra`.
pub fn service_args(dir: &Path, extra: &[&str]) -> Vec<String> {
    let mut all = args(&["--data-dir"]);
    all.push(dir.join("data").display().to_string());
    all.extend(args(&["--log-format", "json", "--log-file"]));
    all.push(dir.join("service.log").display().to_string());
    all.extend(args(extra));
    all
}

/// A participant with a JSON log in `dir`, started and seen to receive its own join.
pub async fn participant(service: &ServiceProcess, dir: &Path, name: &str) -> ParticipantProcess {
    let log = dir.join(format!("{name}.log")).display().to_string();
    let mut participant = ParticipantProcess::start(
        binary(),
        &service.url(),
        name,
        &args(&["--log-format", "json", "--log-file", &log]),
    )
    .await
    .expect("the participant starts");
    let prefix = chitty_chat::harness::joined_prefix(name);
    participant
        .wait_for_event("its own join", |line| line.body.starts_with(&prefix), WAIT)
        .await
        .expect("a participant sees its own join");
    participant
}

/// The JSON log lines in `path` (each a JSON object), as they are now, each held to the log vocabulary.
pub fn log_lines(path: &Path) -> Vec<serde_json::Value> {
    let origin = path.display().to_string();
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|line| {
            let line = serde_json::from_str(line)
                .unwrap_or_else(|error| panic!("not JSON ({error}): {line}"));
            vocabulary::assert_in_vocabulary(&line, &origin);
            line
        })
        .collect()
}

/// Whether a JSON log line has `field` equal to `value`.
pub fn has(line: &serde_json::Value, field: &str, value: impl Into<serde_json::Value>) -> bool {
    line.get(field) == Some(&value.into())
}

/// A temporary directory for one test's logs, removed when the test ends, unless `CHITTY_KEEP_LOGS=1`:
/// then it is kept, and its path printed, to study a failure afterwards.
pub fn log_dir() -> tempfile::TempDir {
    let mut dir = tempfile::Builder::new()
        .prefix("chitty-test-")
        .tempdir()
        .expect("a temporary directory");
    if chitty_cluster::testing::keep_logs() {
        dir.disable_cleanup(true);
        println!("keeping the logs in {}", dir.path().display());
    }
    dir
}

/// Runs `chitty-chat check` on the logs in `dir`.
pub async fn check(dir: &Path) -> std::process::Output {
    tokio::time::timeout(
        WAIT,
        tokio::process::Command::new(binary())
            .arg("check")
            .arg(dir)
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("the checker finishes within the bound")
    .expect("the checker runs")
}

/// A raw gRPC client, for calls a real participant never makes.
pub async fn raw_client(service: &ServiceProcess) -> ChittyChatClient<Channel> {
    ChittyChatClient::connect(service.url())
        .await
        .expect("the service accepts connections")
}

/// Joins as `name` over a raw client; returns the token and the response.
pub async fn raw_join(
    client: &mut ChittyChatClient<Channel>,
    name: &str,
) -> (String, v1::JoinResponse) {
    let response = client
        .join(v1::JoinRequest {
            name: name.to_owned(),
            lamport: 1,
            ..Default::default()
        })
        .await
        .expect("join succeeds")
        .into_inner();
    (response.session_token.clone(), response)
}

/// A request carrying `authorization: Bearer <token>`.
pub fn authorized<T>(message: T, token: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    let value: MetadataValue<_> = format!("Bearer {token}").parse().expect("a token is ASCII");
    request.metadata_mut().insert("authorization", value);
    request
}

/// The body of `GET /metrics` from `service`, over a plain HTTP/1.1 connection.
pub async fn scrape(service: &ServiceProcess) -> String {
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

/// A scrape, parsed as Prometheus parses it.
pub struct Scrape {
    /// The parsed samples.
    pub parsed: prometheus_parse::Scrape,
    /// The text, for failure messages.
    pub text: String,
}

impl Scrape {
    /// Scrapes `service` and parses the answer; fails the test if it does not parse.
    pub async fn of(service: &ServiceProcess) -> Self {
        let text = scrape(service).await;
        let parsed = prometheus_parse::Scrape::parse(text.lines().map(|line| Ok(line.to_owned())))
            .expect("the metrics parse as Prometheus text");
        Self { parsed, text }
    }

    /// The value of the sample `name` with exactly `labels`, if there is one.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        self.parsed
            .samples
            .iter()
            .find(|sample| {
                sample.metric == name
                    && sample.labels.len() == labels.len()
                    && labels
                        .iter()
                        .all(|(key, value)| sample.labels.get(key) == Some(*value))
            })
            .and_then(|sample| match &sample.value {
                prometheus_parse::Value::Counter(value)
                | prometheus_parse::Value::Gauge(value)
                | prometheus_parse::Value::Untyped(value) => Some(*value),
                _ => None,
            })
    }

    /// The value of `name` with `labels`, which must be there.
    pub fn get(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.value(name, labels)
            .unwrap_or_else(|| panic!("no sample {name}{labels:?} in\n{}", self.text))
    }

    /// Asserts that `name` with `labels` is `want`.
    pub fn expect(&self, name: &str, labels: &[(&str, &str)], want: u64) {
        assert_eq!(
            self.get(name, labels),
            want as f64,
            "{name}{labels:?}: got/want, in\n{}",
            self.text
        );
    }
}

/// Opens a Broadcast stream for `token` from `after_seq`.
pub async fn open(
    client: &mut ChittyChatClient<Channel>,
    token: &str,
    after_seq: u64,
) -> Result<tonic::Streaming<v1::Event>, tonic::Status> {
    client
        .broadcast(authorized(
            v1::BroadcastRequest {
                lamport: 1,
                after_seq,
            },
            token,
        ))
        .await
        .map(tonic::Response::into_inner)
}
