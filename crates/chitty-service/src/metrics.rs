//! The service's Prometheus metrics, and the small HTTP server that serves them on `GET /metrics`.
//!
//! # Why `prometheus-client`
//!
//! It is the official Rust client of the Prometheus project (`prometheus/client_rust`), it writes the
//! OpenMetrics text format that Prometheus scrapes, it has no global registry (the registry lives in
//! [`Metrics`], so tests and several services in one process do not share counters), and its counters,
//! gauges and histograms are plain atomics: updating one is a relaxed atomic add, cheap enough for the
//! call path. It offers no process metrics (resident memory, CPU seconds, file descriptors); those are
//! left out for now.
//!
//! # What is counted where
//!
//! - The call protocol (`call.rs`), written once for both backends, counts appended events by kind,
//!   refusals by call and reason, and times Publish.
//! - The fan-out (`fanout.rs`) counts deliveries a batch at a time, from what `Fanout::publish` already
//!   knows, and slow readers cut off by reason; it never adds work per event per subscriber.
//! - Gauges of what a node holds anyway (participants present, streams open, the Lamport clock, the last
//!   seq) are read
//!   from the node when `/metrics` is scraped, so nothing updates them on the call path.
//!
//! # Names
//!
//! Every name has the `chitty_chat_` prefix, base units (seconds), `_total` on counters and `_seconds` on
//! the latency histogram, as Prometheus's naming conventions ask.

use std::sync::Arc;

use axum::Router;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// The content type of the OpenMetrics text format that [`Metrics::encode`] writes.
pub const CONTENT_TYPE_OPENMETRICS: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The kind of an appended event: the `kind` label of `chitty_chat_events_appended_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, EncodeLabelValue)]
#[allow(
    non_camel_case_types,
    reason = "the label values are the variants' names"
)]
pub enum EventKind {
    /// A participant joined.
    joined,
    /// A participant published a message.
    message,
    /// A participant left, or was ended after vanishing.
    left,
}

/// The labels of one appended-events counter.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct KindLabels {
    /// What kind of event was appended.
    pub kind: EventKind,
}

/// The labels of one refusals counter.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct RefusalLabels {
    /// The refused call, lowercase: `join`, `publish`, `leave`, `broadcast` or `participants`.
    pub call: &'static str,
    /// Why it was refused, one word of `ChatError::reason`'s vocabulary.
    pub reason: &'static str,
}

/// The labels of one cut-off counter.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct CutOffLabels {
    /// Why the subscriber was cut off.
    pub reason: &'static str,
}

/// Every metric of one service node, and the registry that encodes them. Cheap to update: each is an
/// atomic.
#[derive(Debug)]
pub struct Metrics {
    /// Where every metric below is registered, for encoding.
    registry: Registry,
    /// `chitty_chat_participants_present`: participants present, read from the node at scrape time.
    pub participants_present: Gauge,
    /// `chitty_chat_broadcast_streams_open`: Broadcast streams open on this node, read at scrape time
    /// (a stream whose connection went away counts until the next batch forgets it).
    pub broadcast_streams_open: Gauge,
    /// `chitty_chat_events_appended_total{kind}`: events this node's calls appended, by kind.
    pub events_appended: Family<KindLabels, Counter>,
    /// `chitty_chat_deliveries_total`: events put into subscribers' mailboxes, counted per batch.
    pub deliveries: Counter,
    /// `chitty_chat_slow_readers_cut_off_total{reason}`: subscribers cut off because they fell behind.
    pub slow_readers_cut_off: Family<CutOffLabels, Counter>,
    /// `chitty_chat_refusals_total{call,reason}`: refused calls, by call and reason.
    pub refusals: Family<RefusalLabels, Counter>,
    /// `chitty_chat_publish_latency_seconds`: a Publish's time from request to acknowledgement.
    pub publish_latency: Histogram,
    /// `chitty_chat_lamport_clock`: the node's Lamport clock, read at scrape time.
    pub lamport_clock: Gauge,
    /// `chitty_chat_last_seq`: the seq of the newest event the node holds, read at scrape time.
    pub last_seq: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Every metric at zero, registered under the `chitty_chat` prefix.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("chitty_chat");
        let participants_present = Gauge::default();
        registry.register(
            "participants_present",
            "Participants present",
            participants_present.clone(),
        );
        let broadcast_streams_open = Gauge::default();
        registry.register(
            "broadcast_streams_open",
            "Broadcast streams open on this node",
            broadcast_streams_open.clone(),
        );
        let events_appended = Family::<KindLabels, Counter>::default();
        registry.register(
            "events_appended",
            "Events appended by this node's calls, by kind",
            events_appended.clone(),
        );
        let deliveries = Counter::default();
        registry.register(
            "deliveries",
            "Events put into subscribers' mailboxes",
            deliveries.clone(),
        );
        let slow_readers_cut_off = Family::<CutOffLabels, Counter>::default();
        registry.register(
            "slow_readers_cut_off",
            "Subscribers cut off because they fell behind, by reason",
            slow_readers_cut_off.clone(),
        );
        let refusals = Family::<RefusalLabels, Counter>::default();
        registry.register(
            "refusals",
            "Refused calls, by call and reason",
            refusals.clone(),
        );
        // From 0.5 ms to about 16 s: a Publish waits for a disk sync, or for a JetStream append.
        let publish_latency = Histogram::new(exponential_buckets(0.0005, 2.0, 16));
        registry.register_with_unit(
            "publish_latency",
            "Time from a Publish request to its acknowledgement",
            Unit::Seconds,
            publish_latency.clone(),
        );
        let lamport_clock = Gauge::default();
        registry.register(
            "lamport_clock",
            "The node's Lamport clock",
            lamport_clock.clone(),
        );
        let last_seq = Gauge::default();
        registry.register(
            "last_seq",
            "The seq of the newest event the node holds",
            last_seq.clone(),
        );
        // Series that exist from the start read 0 rather than missing, so rate() sees their first rise.
        for kind in [EventKind::joined, EventKind::message, EventKind::left] {
            events_appended
                .get_or_create(&KindLabels { kind })
                .inc_by(0);
        }
        slow_readers_cut_off
            .get_or_create(&CutOffLabels {
                reason: "fell_behind",
            })
            .inc_by(0);
        Self {
            registry,
            participants_present,
            broadcast_streams_open,
            events_appended,
            deliveries,
            slow_readers_cut_off,
            refusals,
            publish_latency,
            lamport_clock,
            last_seq,
        }
    }

    /// Counts one appended event of `kind`.
    pub fn appended(&self, kind: EventKind) {
        self.events_appended
            .get_or_create(&KindLabels { kind })
            .inc();
    }

    /// Counts one refusal of `call` for `reason`.
    pub fn refused(&self, call: &'static str, reason: &'static str) {
        self.refusals
            .get_or_create(&RefusalLabels { call, reason })
            .inc();
    }

    /// Every metric in the OpenMetrics text format.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)
            .expect("writing to a String cannot fail");
        text
    }

    /// Sets the gauges to what the node holds now, then encodes every metric.
    pub fn scrape(&self, node: NodeGauges) -> String {
        let gauge = |value: u64| i64::try_from(value).unwrap_or(i64::MAX);
        self.participants_present.set(gauge(node.present));
        self.broadcast_streams_open.set(gauge(node.streams_open));
        self.lamport_clock.set(gauge(node.lamport));
        self.last_seq.set(gauge(node.last_seq));
        self.encode()
    }
}

/// What a node holds anyway, read when `/metrics` is scraped: the values of the gauges.
#[derive(Debug, Clone, Copy, Default)]
pub struct NodeGauges {
    /// Participants present.
    pub present: u64,
    /// Broadcast streams open on the node.
    pub streams_open: u64,
    /// The node's Lamport clock.
    pub lamport: u64,
    /// The seq of the newest event the node holds.
    pub last_seq: u64,
}

/// Serves `GET /metrics` on `listener` until `stop` is cancelled, answering each scrape with
/// `scrape()`. This module knows nothing of the node; the server passes `scrape`.
pub async fn serve_metrics(
    listener: TcpListener,
    scrape: impl Fn() -> String + Send + Sync + 'static,
    stop: CancellationToken,
) -> std::io::Result<()> {
    let scrape = Arc::new(scrape);
    let app = Router::new().route(
        "/metrics",
        get(async move || ([(CONTENT_TYPE, CONTENT_TYPE_OPENMETRICS)], scrape()).into_response()),
    );
    axum::serve(listener, app)
        .with_graceful_shutdown(stop.cancelled_owned())
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every line of the text output is a comment (`# HELP`, `# TYPE`, `# UNIT`, `# EOF`) or a sample,
    /// `name{labels} value`, with a `chitty_chat_` name and a number for its value.
    #[test]
    fn text_output_parses_as_prometheus_exposition() {
        let metrics = Metrics::new();
        metrics.appended(EventKind::joined);
        metrics.appended(EventKind::message);
        metrics.refused("publish", "invalid_message");
        metrics.deliveries.inc_by(3);
        metrics
            .slow_readers_cut_off
            .get_or_create(&CutOffLabels { reason: "full" })
            .inc();
        metrics.publish_latency.observe(0.002);
        let text = metrics.encode();
        let mut samples = Vec::new();
        for line in text.lines() {
            if let Some(comment) = line.strip_prefix("# ") {
                let keyword = comment.split(' ').next().unwrap_or("");
                assert!(
                    ["HELP", "TYPE", "UNIT", "EOF"].contains(&keyword),
                    "got comment {line:?}, want HELP, TYPE, UNIT or EOF"
                );
                continue;
            }
            let (series, value) = line
                .rsplit_once(' ')
                .unwrap_or_else(|| panic!("got {line:?}, want `name{{labels}} value`"));
            assert!(
                value.parse::<f64>().is_ok(),
                "got value {value:?} in {line:?}, want a number"
            );
            let name = match series.split_once('{') {
                Some((name, labels)) => {
                    let labels = labels
                        .strip_suffix('}')
                        .unwrap_or_else(|| panic!("got {line:?}, want labels closed by `}}`"));
                    for pair in labels.split(',') {
                        let (key, quoted) = pair
                            .split_once('=')
                            .unwrap_or_else(|| panic!("got label {pair:?}, want key=\"value\""));
                        assert!(
                            key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
                            "got label name {key:?} in {line:?}"
                        );
                        assert!(
                            quoted.len() >= 2 && quoted.starts_with('"') && quoted.ends_with('"'),
                            "got label value {quoted:?} in {line:?}, want it quoted"
                        );
                    }
                    name
                }
                None => series,
            };
            assert!(
                name.starts_with("chitty_chat_")
                    && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
                "got metric name {name:?} in {line:?}"
            );
            samples.push((series.to_owned(), value.to_owned()));
        }
        assert_eq!(text.lines().last(), Some("# EOF"), "got {text}");
        let value_of = |series: &str| {
            samples
                .iter()
                .find(|(name, _)| name == series)
                .map(|(_, value)| value.as_str())
        };
        assert_eq!(
            value_of("chitty_chat_events_appended_total{kind=\"message\"}"),
            Some("1")
        );
        assert_eq!(
            value_of("chitty_chat_refusals_total{call=\"publish\",reason=\"invalid_message\"}"),
            Some("1")
        );
        assert_eq!(value_of("chitty_chat_deliveries_total"), Some("3"));
        assert_eq!(
            value_of("chitty_chat_publish_latency_seconds_count"),
            Some("1")
        );
    }
}
