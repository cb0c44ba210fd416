//! The service's Prometheus metrics, and the small HTTP server that serves them on `GET /metrics`.
//!
//! # Why `prometheus-client`
//!
//! It is the official Rust client of the Prometheus project (`prometheus/client_rust`), it writes the
//! OpenMetrics text format that Prometheus scrapes, it has no global registry (the registry lives in
//! [`Metrics`], so tests and several services in one process do not share counters), and its counters,
//! gauges and histograms are plain atomics: updating one is a relaxed atomic add, cheap enough for the
//! call path. It offers no process metrics; [`ProcessCollector`] reads them from `/proc` with the
//! `procfs` crate (the one the `prometheus` crate's process collector uses), at scrape time.
//!
//! # What is counted where
//!
//! - The call protocol (`call.rs`), written once for both backends, counts appended events by kind,
//!   replaced streams, and times Publish. The gRPC layer (`grpc.rs`) counts refusals, since it is the
//!   one place that knows a refusal's status code, and the bytes it writes to Broadcast streams, a
//!   batch at a time.
//! - The fan-out (`fanout.rs`) counts deliveries a batch at a time, from what `Fanout::publish` already
//!   knows, and slow readers cut off by reason; it never adds work per event per subscriber.
//! - A single node's writer (`hub.rs`) times each store commit and counts its events; a cluster node
//!   (`cluster.rs`) times each append to the JetStream log. Each sweep (`chat.rs`, `cluster.rs`)
//!   counts the sessions it ends, by why.
//! - What a node holds anyway (participants present, streams open, sessions in their grace period, the
//!   Lamport clock, the last seq, the history window, and in cluster mode the consumer's lag, the nodes
//!   alive and the counts `chitty-cluster` keeps) is read from the node when `/metrics` is scraped, as
//!   a [`NodeSnapshot`], so nothing updates it on the call path.
//!
//! # Names
//!
//! Every name has the `chitty_chat_` prefix (cluster mode's own have `chitty_chat_cluster_`), base
//! units (seconds, bytes), `_total` on counters and the unit on histograms, as Prometheus's naming
//! conventions ask. The process metrics have the `process_` names every Prometheus client gives them.
//! docs/operations.md lists every metric with its meaning and labels.

use std::sync::{Arc, Mutex, PoisonError};

use axum::Router;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::routing::get;
use chitty_core::{LamportTime, Seq};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{
    DescriptorEncoder, EncodeLabelSet, EncodeLabelValue, EncodeMetric,
};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
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
    /// The gRPC status code the caller got, as gRPC spells it: `INVALID_ARGUMENT`, ...
    pub code: &'static str,
    /// Why it was refused, one word of `ChatError::reason`'s vocabulary.
    pub reason: &'static str,
}

/// The labels of a counter with a reason: cut-offs and swept sessions.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct ReasonLabels {
    /// Why: the reason's stable name, as the matching log line gives it.
    pub reason: &'static str,
}

/// Which backend a node runs: which of the node-specific metrics it has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeKind {
    /// A single node with its own store: store commit metrics.
    Single,
    /// A cluster node: append latency, and the `chitty_chat_cluster_` metrics of its snapshot.
    Cluster,
}

/// Every metric of one service node, and the registry that encodes them. Cheap to update: each is an
/// atomic.
#[derive(Debug)]
pub struct Metrics {
    /// Where every metric below is registered, for encoding.
    registry: Registry,
    /// What the node held at the last scrape, which [`SnapshotCollector`] encodes.
    snapshot: Arc<Mutex<NodeSnapshot>>,
    /// `chitty_chat_events_appended_total{kind}`: events this node's calls and sweeps appended.
    pub events_appended: Family<KindLabels, Counter>,
    /// `chitty_chat_deliveries_total`: events put into subscribers' mailboxes, counted per batch.
    pub deliveries: Counter,
    /// `chitty_chat_stream_written_bytes_total`: bytes of encoded events written to Broadcast streams,
    /// counted per batch.
    pub stream_bytes_written: Counter,
    /// `chitty_chat_slow_readers_cut_off_total{reason}`: subscribers cut off because they fell behind.
    pub slow_readers_cut_off: Family<ReasonLabels, Counter>,
    /// `chitty_chat_refusals_total{call,code,reason}`: refused calls.
    pub refusals: Family<RefusalLabels, Counter>,
    /// `chitty_chat_streams_replaced_total`: Broadcast streams ended because a newer one of the same
    /// session opened (a participant that reconnected before its old stream was noticed closed).
    pub streams_replaced: Counter,
    /// `chitty_chat_sessions_swept_total{reason}`: sessions the sweep ended after their grace period,
    /// by why they vanished.
    pub sessions_swept: Family<ReasonLabels, Counter>,
    /// `chitty_chat_publish_latency_seconds`: a Publish's time from request to acknowledgement.
    pub publish_latency: Histogram,
    /// `chitty_chat_store_commit_latency_seconds`: how long one commit of a single node's store takes,
    /// a disk sync included; `None` on a cluster node, which has no store.
    pub store_commit_latency: Option<Histogram>,
    /// `chitty_chat_store_events_per_commit`: how many events one store commit writes; `None` on a
    /// cluster node.
    pub store_events_per_commit: Option<Histogram>,
    /// `chitty_chat_cluster_append_latency_seconds`: how long an append to the JetStream log takes
    /// until JetStream acknowledged it and this node applied it, retries included; `None` on a single
    /// node.
    pub cluster_append_latency: Option<Histogram>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new(NodeKind::Single)
    }
}

/// Buckets from 0.5 ms to about 16 s: a Publish waits for a disk sync, or for a JetStream append.
fn latency_buckets() -> impl Iterator<Item = f64> {
    exponential_buckets(0.0005, 2.0, 16)
}

impl Metrics {
    /// Every metric of a node of `kind` at zero, registered under the `chitty_chat` prefix, and the
    /// process metrics.
    pub fn new(kind: NodeKind) -> Self {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(ProcessCollector));
        let chat = registry.sub_registry_with_prefix("chitty_chat");
        let snapshot = Arc::new(Mutex::new(NodeSnapshot::default()));
        chat.register_collector(Box::new(SnapshotCollector(Arc::clone(&snapshot))));

        let events_appended = Family::<KindLabels, Counter>::default();
        chat.register(
            "events_appended",
            "Events appended by this node's calls and sweeps, by kind",
            events_appended.clone(),
        );
        let deliveries = Counter::default();
        chat.register(
            "deliveries",
            "Events put into subscribers' mailboxes",
            deliveries.clone(),
        );
        let stream_bytes_written = Counter::default();
        chat.register_with_unit(
            "stream_written",
            "Bytes of encoded events written to Broadcast streams",
            Unit::Bytes,
            stream_bytes_written.clone(),
        );
        let slow_readers_cut_off = Family::<ReasonLabels, Counter>::default();
        chat.register(
            "slow_readers_cut_off",
            "Subscribers cut off because they fell behind, by reason",
            slow_readers_cut_off.clone(),
        );
        let refusals = Family::<RefusalLabels, Counter>::default();
        chat.register(
            "refusals",
            "Refused calls, by call, gRPC status code and reason",
            refusals.clone(),
        );
        let streams_replaced = Counter::default();
        chat.register(
            "streams_replaced",
            "Broadcast streams replaced by a newer one of the same session",
            streams_replaced.clone(),
        );
        let sessions_swept = Family::<ReasonLabels, Counter>::default();
        chat.register(
            "sessions_swept",
            "Sessions ended by the sweep after their grace period, by why they vanished",
            sessions_swept.clone(),
        );
        let publish_latency = Histogram::new(latency_buckets());
        chat.register_with_unit(
            "publish_latency",
            "Time from a Publish request to its acknowledgement",
            Unit::Seconds,
            publish_latency.clone(),
        );
        let (store_commit_latency, store_events_per_commit, cluster_append_latency) = match kind {
            NodeKind::Single => {
                let latency = Histogram::new(latency_buckets());
                chat.register_with_unit(
                    "store_commit_latency",
                    "Time one commit of the event store takes, its disk sync included",
                    Unit::Seconds,
                    latency.clone(),
                );
                // 1, 2, 4, ... 4096 events: the writer commits whatever queued while the last commit ran.
                let events = Histogram::new(exponential_buckets(1.0, 2.0, 13));
                chat.register(
                    "store_events_per_commit",
                    "Events written by one commit of the event store",
                    events.clone(),
                );
                (Some(latency), Some(events), None)
            }
            NodeKind::Cluster => {
                let latency = Histogram::new(latency_buckets());
                chat.register_with_unit(
                    "cluster_append_latency",
                    "Time an append to the JetStream event log takes until acknowledged and applied here, retries included",
                    Unit::Seconds,
                    latency.clone(),
                );
                (None, None, Some(latency))
            }
        };
        // Series that exist from the start read 0 rather than missing, so rate() sees their first rise.
        for kind in [EventKind::joined, EventKind::message, EventKind::left] {
            events_appended
                .get_or_create(&KindLabels { kind })
                .inc_by(0);
        }
        slow_readers_cut_off
            .get_or_create(&ReasonLabels {
                reason: "fell_behind",
            })
            .inc_by(0);
        Self {
            registry,
            snapshot,
            events_appended,
            deliveries,
            stream_bytes_written,
            slow_readers_cut_off,
            refusals,
            streams_replaced,
            sessions_swept,
            publish_latency,
            store_commit_latency,
            store_events_per_commit,
            cluster_append_latency,
        }
    }

    /// Counts one appended event of `kind`.
    pub fn appended(&self, kind: EventKind) {
        self.events_appended
            .get_or_create(&KindLabels { kind })
            .inc();
    }

    /// Counts one refusal of `call`, answered with status `code`, for `reason`.
    pub fn refused(&self, call: &'static str, code: &'static str, reason: &'static str) {
        self.refusals
            .get_or_create(&RefusalLabels { call, code, reason })
            .inc();
    }

    /// Counts one session the sweep ended, for `reason`.
    pub fn swept(&self, reason: &'static str) {
        self.sessions_swept
            .get_or_create(&ReasonLabels { reason })
            .inc();
    }

    /// Counts `count` slow readers cut off, for `reason`.
    pub fn cut_off(&self, reason: &'static str, count: u64) {
        self.slow_readers_cut_off
            .get_or_create(&ReasonLabels { reason })
            .inc_by(count);
    }

    /// Times one store commit of `events` events.
    pub fn committed(&self, events: usize, seconds: f64) {
        if let Some(latency) = &self.store_commit_latency {
            latency.observe(seconds);
        }
        if let Some(per_commit) = &self.store_events_per_commit {
            per_commit.observe(events as f64);
        }
    }

    /// Every metric in the OpenMetrics text format, with the snapshot of the last scrape.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)
            .expect("writing to a String cannot fail");
        text
    }

    /// Records what the node holds now, then encodes every metric.
    pub fn scrape(&self, node: NodeSnapshot) -> String {
        *self.snapshot.lock().unwrap_or_else(PoisonError::into_inner) = node;
        self.encode()
    }
}

/// What a node holds anyway, read when `/metrics` is scraped.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeSnapshot {
    /// `chitty_chat_participants_present`: participants present.
    pub present: u64,
    /// `chitty_chat_broadcast_streams_open`: Broadcast streams open on the node (a stream whose
    /// connection went away counts until the next batch forgets it).
    pub streams_open: u64,
    /// `chitty_chat_sessions_in_grace`: sessions present without an open Broadcast stream, which the
    /// sweep ends once their grace period is over.
    pub in_grace: u64,
    /// `chitty_chat_lamport_clock`: the node's Lamport clock.
    pub lamport: LamportTime,
    /// `chitty_chat_last_seq`: the seq of the newest event the node holds.
    pub last_seq: Seq,
    /// `chitty_chat_history_window_events`: events the node holds for replay.
    pub history_events: u64,
    /// `chitty_chat_history_window_bytes`: their estimated size.
    pub history_bytes: u64,
    /// What only a cluster node has; `None` on a single node.
    pub cluster: Option<ClusterSnapshot>,
}

/// What a cluster node holds anyway, read at scrape time: the `chitty_chat_cluster_` metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClusterSnapshot {
    /// `chitty_chat_cluster_consumer_lag_events`: events known to be in the stream that this node has
    /// not applied yet.
    pub consumer_lag: u64,
    /// `chitty_chat_cluster_nodes_alive`: nodes whose heartbeat this node saw lately, itself included.
    pub nodes_alive: u64,
    /// `chitty_chat_cluster_append_conflicts_total`: appends refused because another append of the
    /// same participant came first, each costing a retry.
    pub append_conflicts: u64,
    /// `chitty_chat_cluster_append_retries_total`: appends retried after a timeout or a failover.
    pub append_retries: u64,
    /// `chitty_chat_cluster_nats_reconnects_total`: times the connection to NATS was made again after
    /// it was lost.
    pub nats_reconnects: u64,
}

/// Encodes the [`NodeSnapshot`] of the last scrape.
#[derive(Debug)]
struct SnapshotCollector(Arc<Mutex<NodeSnapshot>>);

impl Collector for SnapshotCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let node = self
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let gauges = [
            (
                "participants_present",
                "Participants present.",
                node.present,
            ),
            (
                "broadcast_streams_open",
                "Broadcast streams open on this node.",
                node.streams_open,
            ),
            (
                "sessions_in_grace",
                "Sessions present without an open Broadcast stream, in their grace period.",
                node.in_grace,
            ),
            (
                "lamport_clock",
                "The node's Lamport clock.",
                node.lamport.get(),
            ),
            (
                "last_seq",
                "The seq of the newest event the node holds.",
                node.last_seq.get(),
            ),
            (
                "history_window_events",
                "Events the node holds for replay.",
                node.history_events,
            ),
        ];
        for (name, help, value) in gauges {
            gauge(&mut encoder, name, help, None, value)?;
        }
        gauge(
            &mut encoder,
            "history_window",
            "Estimated size of the events the node holds for replay.",
            Some(&Unit::Bytes),
            node.history_bytes,
        )?;
        if let Some(cluster) = node.cluster {
            gauge(
                &mut encoder,
                "cluster_consumer_lag_events",
                "Events in the stream this node has not applied yet.",
                None,
                cluster.consumer_lag,
            )?;
            gauge(
                &mut encoder,
                "cluster_nodes_alive",
                "Nodes whose heartbeat this node saw lately, itself included.",
                None,
                cluster.nodes_alive,
            )?;
            let counters = [
                (
                    "cluster_append_conflicts",
                    "Appends refused because another append of the same participant came first.",
                    cluster.append_conflicts,
                ),
                (
                    "cluster_append_retries",
                    "Appends retried after a timeout or a NATS failover.",
                    cluster.append_retries,
                ),
                (
                    "cluster_nats_reconnects",
                    "Times the connection to NATS was made again after it was lost.",
                    cluster.nats_reconnects,
                ),
            ];
            for (name, help, value) in counters {
                let counter = ConstCounter::new(value);
                counter.encode(encoder.encode_descriptor(
                    name,
                    help,
                    None,
                    counter.metric_type(),
                )?)?;
            }
        }
        Ok(())
    }
}

/// Encodes one gauge of a snapshot.
fn gauge(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    value: u64,
) -> Result<(), std::fmt::Error> {
    let gauge = ConstGauge::new(i64::try_from(value).unwrap_or(i64::MAX));
    gauge.encode(encoder.encode_descriptor(name, help, unit, gauge.metric_type())?)
}

/// The usual process metrics, read from `/proc/self` at scrape time: CPU seconds, resident and virtual
/// memory, open and most file descriptors, and the start time. Where `/proc` cannot be read (not
/// Linux), they are left out.
#[derive(Debug)]
struct ProcessCollector;

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Ok(process) = procfs::process::Process::myself() else {
            return Ok(());
        };
        if let Ok(stat) = process.stat() {
            let ticks = procfs::ticks_per_second() as f64;
            let cpu = ConstCounter::new((stat.utime + stat.stime) as f64 / ticks);
            cpu.encode(encoder.encode_descriptor(
                "process_cpu",
                "User and system CPU time spent.",
                Some(&Unit::Seconds),
                cpu.metric_type(),
            )?)?;
            let page_size = procfs::page_size();
            gauge(
                &mut encoder,
                "process_resident_memory",
                "Resident memory size.",
                Some(&Unit::Bytes),
                stat.rss.saturating_mul(page_size),
            )?;
            gauge(
                &mut encoder,
                "process_virtual_memory",
                "Virtual memory size.",
                Some(&Unit::Bytes),
                stat.vsize,
            )?;
            if let Ok(boot) = procfs::boot_time_secs() {
                gauge(
                    &mut encoder,
                    "process_start_time",
                    "Start time of the process since the Unix epoch.",
                    Some(&Unit::Seconds),
                    boot + stat.starttime / procfs::ticks_per_second(),
                )?;
            }
        }
        if let Ok(open) = process.fd_count() {
            gauge(
                &mut encoder,
                "process_open_fds",
                "Open file descriptors.",
                None,
                open as u64,
            )?;
        }
        if let Ok(limits) = process.limits()
            && let procfs::process::LimitValue::Value(most) = limits.max_open_files.soft_limit
        {
            gauge(
                &mut encoder,
                "process_max_fds",
                "The most file descriptors the process may open.",
                None,
                most,
            )?;
        }
        Ok(())
    }
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

    /// The value of the sample `name` whose labels are exactly `labels`, as a Prometheus parser reads
    /// the text (a histogram's count for a histogram).
    fn value_of(
        scrape: &prometheus_parse::Scrape,
        name: &str,
        labels: &[(&str, &str)],
    ) -> Option<f64> {
        scrape
            .samples
            .iter()
            .find(|sample| {
                sample.metric == name
                    && sample.labels.len() == labels.len()
                    && labels
                        .iter()
                        .all(|(key, value)| sample.labels.get(key) == Some(*value))
            })
            .map(|sample| match &sample.value {
                prometheus_parse::Value::Counter(value)
                | prometheus_parse::Value::Gauge(value)
                | prometheus_parse::Value::Untyped(value) => *value,
                prometheus_parse::Value::Histogram(buckets) => {
                    buckets.last().map_or(0.0, |bucket| bucket.count)
                }
                prometheus_parse::Value::Summary(_) => f64::NAN,
            })
    }

    /// A sample's name, its labels, and the value it should have.
    type Want<'a> = (&'a str, &'a [(&'a str, &'a str)], f64);

    fn parse(text: &str) -> prometheus_parse::Scrape {
        prometheus_parse::Scrape::parse(text.lines().map(|line| Ok(line.to_owned())))
            .expect("the output parses as Prometheus text")
    }

    #[test]
    fn a_single_node_scrape_parses_with_every_counter_and_the_snapshot() {
        let metrics = Metrics::new(NodeKind::Single);
        metrics.appended(EventKind::joined);
        metrics.appended(EventKind::message);
        metrics.refused("publish", "INVALID_ARGUMENT", "invalid_message");
        metrics.deliveries.inc_by(3);
        metrics.stream_bytes_written.inc_by(120);
        metrics.cut_off("fell_behind", 1);
        metrics.swept("never_opened");
        metrics.streams_replaced.inc();
        metrics.publish_latency.observe(0.002);
        metrics.committed(5, 0.001);
        let text = metrics.scrape(NodeSnapshot {
            present: 2,
            streams_open: 1,
            in_grace: 1,
            lamport: LamportTime::new(9),
            last_seq: Seq::new(4),
            history_events: 4,
            history_bytes: 400,
            cluster: None,
        });
        assert_eq!(text.lines().last(), Some("# EOF"), "got {text}");
        let scrape = parse(&text);
        let want: [Want; 18] = [
            (
                "chitty_chat_events_appended_total",
                &[("kind", "joined")],
                1.0,
            ),
            (
                "chitty_chat_events_appended_total",
                &[("kind", "message")],
                1.0,
            ),
            (
                "chitty_chat_events_appended_total",
                &[("kind", "left")],
                0.0,
            ),
            (
                "chitty_chat_refusals_total",
                &[
                    ("call", "publish"),
                    ("code", "INVALID_ARGUMENT"),
                    ("reason", "invalid_message"),
                ],
                1.0,
            ),
            ("chitty_chat_deliveries_total", &[], 3.0),
            ("chitty_chat_stream_written_bytes_total", &[], 120.0),
            (
                "chitty_chat_slow_readers_cut_off_total",
                &[("reason", "fell_behind")],
                1.0,
            ),
            (
                "chitty_chat_sessions_swept_total",
                &[("reason", "never_opened")],
                1.0,
            ),
            ("chitty_chat_streams_replaced_total", &[], 1.0),
            ("chitty_chat_publish_latency_seconds_count", &[], 1.0),
            ("chitty_chat_store_commit_latency_seconds_count", &[], 1.0),
            ("chitty_chat_store_events_per_commit_sum", &[], 5.0),
            ("chitty_chat_participants_present", &[], 2.0),
            ("chitty_chat_broadcast_streams_open", &[], 1.0),
            ("chitty_chat_sessions_in_grace", &[], 1.0),
            ("chitty_chat_lamport_clock", &[], 9.0),
            ("chitty_chat_history_window_events", &[], 4.0),
            ("chitty_chat_history_window_bytes", &[], 400.0),
        ];
        for (name, labels, value) in want {
            assert_eq!(
                value_of(&scrape, name, labels),
                Some(value),
                "{name}{labels:?}: got/want, in\n{text}"
            );
        }
        for sample in &scrape.samples {
            assert!(
                sample.metric.starts_with("chitty_chat_") || sample.metric.starts_with("process_"),
                "got metric {:?}, want the chitty_chat_ prefix or a process metric",
                sample.metric
            );
            assert!(
                !sample.metric.starts_with("chitty_chat_cluster_"),
                "a single node has no cluster metrics: got {:?}",
                sample.metric
            );
        }
        if cfg!(target_os = "linux") {
            let resident = value_of(&scrape, "process_resident_memory_bytes", &[])
                .expect("Linux has process metrics");
            assert!(resident > 0.0, "got resident memory {resident}");
            let open = value_of(&scrape, "process_open_fds", &[]).expect("open fds");
            assert!(open >= 1.0, "got {open} open file descriptors");
            assert!(
                value_of(&scrape, "process_cpu_seconds_total", &[]).is_some(),
                "{text}"
            );
        }
    }

    #[test]
    fn a_cluster_node_scrape_has_the_cluster_metrics_and_no_store_metrics() {
        let metrics = Metrics::new(NodeKind::Cluster);
        metrics
            .cluster_append_latency
            .as_ref()
            .expect("a cluster node times its appends")
            .observe(0.004);
        let text = metrics.scrape(NodeSnapshot {
            cluster: Some(ClusterSnapshot {
                consumer_lag: 7,
                nodes_alive: 3,
                append_conflicts: 2,
                append_retries: 1,
                nats_reconnects: 4,
            }),
            ..NodeSnapshot::default()
        });
        let scrape = parse(&text);
        let want = [
            ("chitty_chat_cluster_consumer_lag_events", 7.0),
            ("chitty_chat_cluster_nodes_alive", 3.0),
            ("chitty_chat_cluster_append_conflicts_total", 2.0),
            ("chitty_chat_cluster_append_retries_total", 1.0),
            ("chitty_chat_cluster_nats_reconnects_total", 4.0),
            ("chitty_chat_cluster_append_latency_seconds_count", 1.0),
        ];
        for (name, value) in want {
            assert_eq!(
                value_of(&scrape, name, &[]),
                Some(value),
                "{name}: got/want, in\n{text}"
            );
        }
        assert!(
            !text.contains("chitty_chat_store_"),
            "a cluster node has no store: {text}"
        );
    }
}
