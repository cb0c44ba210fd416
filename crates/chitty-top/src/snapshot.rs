//! One scrape of a node's metrics endpoint, parsed into the figures `top` uses.
//!
//! The text is parsed by `prometheus-parse`. The service writes the OpenMetrics text format
//! (prometheus-client), which differs from the older Prometheus text format in ways the parser copes with:
//! its `# UNIT` and `# EOF` lines match none of the parser's patterns and are skipped like any other
//! comment, and a counter's `# TYPE` line names the family without `_total`, so its samples come out
//! untyped; `top` knows which names are counters (`names.rs`) and reads any scalar sample's value.

use std::collections::BTreeMap;

use prometheus_parse::{Sample, Scrape, Value};

use crate::names;

/// What one scrape of one node said. A figure the endpoint did not serve is `None`: an older service, or
/// a cluster-only metric on a single node.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    /// Participants present, for the participants column.
    pub participants_present: Option<f64>,
    /// Messages appended by this node's calls so far, for the message rate.
    pub messages_appended: Option<f64>,
    /// Events put into subscribers' mailboxes so far, for the delivery rate.
    pub deliveries: Option<f64>,
    /// Slow readers cut off so far, by reason, for the cut-off columns: kept per series so that a reset
    /// of one is seen as such.
    pub cut_offs: Option<Series>,
    /// Refused calls so far, by label set, for the refusals column.
    pub refusals: Option<Series>,
    /// Publish latency's cumulative buckets so far, for the p99 over the interval.
    pub publish_latency: Option<Buckets>,
    /// The node's Lamport clock, shown as it is.
    pub lamport_clock: Option<f64>,
    /// The seq of the newest event the node holds, shown as it is.
    pub last_seq: Option<f64>,
    /// Events of the cluster's log the node has not applied yet; `None` on a single node.
    pub consumer_lag: Option<f64>,
}

/// The series of one labelled counter: each label set's value, keyed by its labels written out in
/// name order (`call=publish,reason=rate_limited`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Series(pub BTreeMap<String, f64>);

impl Series {
    /// The sum over every series.
    pub fn total(&self) -> f64 {
        self.0.values().sum()
    }
}

/// A histogram's cumulative buckets: (upper bound `le`, observations at or below it), sorted by upper
/// bound; the last is `+Inf` when the endpoint served it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Buckets(pub Vec<(f64, f64)>);

/// Why a scrape's text could not be read as a node's metrics.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SnapshotError {
    /// The body parsed, but held no Chitty-Chat metric: the URL is some other endpoint.
    #[error("no chitty_chat_ metrics in the answer")]
    NotChittyChat,
}

impl Snapshot {
    /// Reads the text of one scrape.
    pub fn parse(text: &str) -> Result<Self, SnapshotError> {
        let lines = text.lines().map(|line| Ok(line.to_owned()));
        // Reading lines from memory cannot fail, and the parser reports nothing else as an error: a line
        // it does not understand is skipped.
        let scrape = Scrape::parse(lines).map_err(|_| SnapshotError::NotChittyChat)?;
        if !scrape
            .samples
            .iter()
            .any(|sample| sample.metric.starts_with("chitty_chat_"))
        {
            return Err(SnapshotError::NotChittyChat);
        }
        let mut snapshot = Snapshot {
            // The service creates a refusals series at the first refusal, so none served means none yet.
            refusals: Some(Series::default()),
            ..Snapshot::default()
        };
        for sample in &scrape.samples {
            let name = sample.metric.as_str();
            match name {
                names::PARTICIPANTS_PRESENT => snapshot.participants_present = scalar(sample),
                names::EVENTS_APPENDED
                    if sample.labels.get(names::KIND_LABEL) == Some(names::MESSAGE_KIND) =>
                {
                    snapshot.messages_appended = scalar(sample);
                }
                names::DELIVERIES => snapshot.deliveries = scalar(sample),
                names::SLOW_READERS_CUT_OFF => add_series(&mut snapshot.cut_offs, sample),
                names::REFUSALS => add_series(&mut snapshot.refusals, sample),
                // The parser gathers a histogram's `_bucket` samples into one sample named after the
                // family.
                names::PUBLISH_LATENCY => {
                    if let Value::Histogram(counts) = &sample.value {
                        let mut buckets: Vec<(f64, f64)> = counts
                            .iter()
                            .map(|bucket| (bucket.less_than, bucket.count))
                            .collect();
                        buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
                        snapshot.publish_latency = Some(Buckets(buckets));
                    }
                }
                names::LAMPORT_CLOCK => snapshot.lamport_clock = scalar(sample),
                names::LAST_SEQ => snapshot.last_seq = scalar(sample),
                names::CLUSTER_CONSUMER_LAG => snapshot.consumer_lag = scalar(sample),
                _ => {}
            }
        }
        Ok(snapshot)
    }
}

/// The value of a counter, gauge or untyped sample.
fn scalar(sample: &Sample) -> Option<f64> {
    match sample.value {
        Value::Counter(value) | Value::Gauge(value) | Value::Untyped(value) => Some(value),
        Value::Histogram(_) | Value::Summary(_) => None,
    }
}

/// Adds `sample` to a labelled counter's series.
fn add_series(series: &mut Option<Series>, sample: &Sample) {
    let Some(value) = scalar(sample) else {
        return;
    };
    let mut labels: Vec<(&String, &String)> = sample.labels.iter().collect();
    labels.sort();
    let key = labels
        .iter()
        .map(|(name, value)| format!("{name}={value}"))
        .collect::<Vec<_>>()
        .join(",");
    series
        .get_or_insert_with(Series::default)
        .0
        .insert(key, value);
}
