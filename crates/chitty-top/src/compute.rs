//! The pure core of `top`: what to show for each node and for all of them together, from a node's last
//! two snapshots. No I/O and no clock: the time between the scrapes is an argument.
//!
//! # Rates and resets
//!
//! A rate is the increase of a counter between the last two scrapes divided by the time between them.
//! When a counter went down, the node restarted and counted again from zero, so its new value is the
//! increase, as Prometheus's `rate()` takes it. A labelled counter is treated per series, and a series
//! that was not there before counts from zero, since the service creates a series on its first
//! increment. A histogram is reset as a whole: if any bucket went down, the new buckets are the increase.
//!
//! # The p99
//!
//! The 99th percentile of Publish latency over the interval comes from the increase of each cumulative
//! bucket, interpolated linearly within the bucket the rank falls in, exactly as Prometheus's
//! `histogram_quantile` does ([`quantile`]). With no Publish in the interval there is no p99.

use std::time::Duration;

use crate::snapshot::{Buckets, Series, Snapshot};

/// The quantile of Publish latency that `top` shows.
pub const PUBLISH_QUANTILE: f64 = 0.99;

/// What one row of the view says about a node that answered, or about all nodes together.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Figures {
    /// Participants present: how busy the chat is.
    pub participants: Option<u64>,
    /// Messages appended per second over the interval: the load of publishes.
    pub message_rate: Option<f64>,
    /// Events put into subscribers' mailboxes per second over the interval: the fan-out's work.
    pub delivery_rate: Option<f64>,
    /// The 99th percentile of Publish latency over the interval, in seconds: how long the slowest
    /// acknowledgements take.
    pub publish_p99: Option<f64>,
    /// Slow readers cut off since the node started, over every reason: a sign that the queues are too
    /// short or readers too slow.
    pub cut_offs: Option<u64>,
    /// Slow readers cut off during the interval, to see whether it is happening now.
    pub cut_offs_in_interval: Option<u64>,
    /// Calls refused since the node started, over every call and reason.
    pub refusals: Option<u64>,
    /// The node's Lamport clock: it should keep rising while the chat is active.
    pub lamport_clock: Option<u64>,
    /// The seq of the newest event the node holds: with several nodes, they should agree.
    pub last_seq: Option<u64>,
    /// Events of the cluster's log not yet applied by the node; `None` on a single node.
    pub consumer_lag: Option<u64>,
    /// The increase of each Publish latency bucket over the interval, kept so that the total row's p99
    /// is computed from every node's observations rather than from their p99s.
    pub publish_latency_increase: Option<Buckets>,
}

/// Whether a node answered its last scrape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeState {
    /// It answered with Chitty-Chat metrics.
    Up,
    /// It did not; `reason` says why in a few words (`connection refused`).
    Down {
        /// Why, for the operator.
        reason: String,
    },
}

/// One node's row: which node, whether it is up, and its figures (all `None` while it is down).
#[derive(Debug, Clone, PartialEq)]
pub struct NodeRow {
    /// The node's metrics URL, which names it.
    pub url: String,
    /// Whether its last scrape succeeded.
    pub state: NodeState,
    /// What its last two scrapes say.
    pub figures: Figures,
}

/// The row that sums up every node.
#[derive(Debug, Clone, PartialEq)]
pub struct TotalRow {
    /// How many nodes answered their last scrape.
    pub up: usize,
    /// How many nodes are watched.
    pub nodes: usize,
    /// The figures of every node that is up, put together: rates and counts are added, the p99 comes from
    /// the merged bucket increases, and participants, the Lamport clock, the last seq and the lag are the
    /// greatest of any node (in cluster mode each node reports the whole chat's participants).
    pub figures: Figures,
}

/// The figures of a node whose last scrape is `current` and whose scrape before it, `elapsed` earlier,
/// is `previous` (none on the first scrape, which has no rates yet).
pub fn node_figures(previous: Option<&Snapshot>, current: &Snapshot, elapsed: Duration) -> Figures {
    let seconds = elapsed.as_secs_f64();
    let rate = |pick: fn(&Snapshot) -> Option<f64>| -> Option<f64> {
        let previous = pick(previous?)?;
        let current = pick(current)?;
        (seconds > 0.0).then(|| increase(previous, current) / seconds)
    };
    let publish_latency_increase = previous.and_then(|previous| {
        Some(bucket_increase(
            previous.publish_latency.as_ref()?,
            current.publish_latency.as_ref()?,
        ))
    });
    let cut_offs_in_interval = previous.and_then(|previous| {
        Some(series_increase(
            previous.cut_offs.as_ref()?,
            current.cut_offs.as_ref()?,
        ))
    });
    Figures {
        participants: current.participants_present.map(whole),
        message_rate: rate(|snapshot| snapshot.messages_appended),
        delivery_rate: rate(|snapshot| snapshot.deliveries),
        publish_p99: publish_latency_increase
            .as_ref()
            .and_then(|increase| quantile(PUBLISH_QUANTILE, increase)),
        cut_offs: current
            .cut_offs
            .as_ref()
            .map(|series| whole(series.total())),
        cut_offs_in_interval: cut_offs_in_interval.map(whole),
        refusals: current
            .refusals
            .as_ref()
            .map(|series| whole(series.total())),
        lamport_clock: current.lamport_clock.map(whole),
        last_seq: current.last_seq.map(whole),
        consumer_lag: current.consumer_lag.map(whole),
        publish_latency_increase,
    }
}

/// The total row over `rows`.
pub fn total(rows: &[NodeRow]) -> TotalRow {
    let up: Vec<&Figures> = rows
        .iter()
        .filter(|row| row.state == NodeState::Up)
        .map(|row| &row.figures)
        .collect();
    let sum_f64 = |pick: fn(&Figures) -> Option<f64>| {
        up.iter()
            .filter_map(|figures| pick(figures))
            .reduce(|a, b| a + b)
    };
    let sum_u64 = |pick: fn(&Figures) -> Option<u64>| {
        up.iter()
            .filter_map(|figures| pick(figures))
            .reduce(|a, b| a.saturating_add(b))
    };
    let max_u64 =
        |pick: fn(&Figures) -> Option<u64>| up.iter().filter_map(|figures| pick(figures)).max();
    let publish_latency_increase = up
        .iter()
        .filter_map(|figures| figures.publish_latency_increase.clone())
        .reduce(|merged, next| merge(&merged, &next));
    let figures = Figures {
        participants: max_u64(|figures| figures.participants),
        message_rate: sum_f64(|figures| figures.message_rate),
        delivery_rate: sum_f64(|figures| figures.delivery_rate),
        publish_p99: publish_latency_increase
            .as_ref()
            .and_then(|increase| quantile(PUBLISH_QUANTILE, increase)),
        cut_offs: sum_u64(|figures| figures.cut_offs),
        cut_offs_in_interval: sum_u64(|figures| figures.cut_offs_in_interval),
        refusals: sum_u64(|figures| figures.refusals),
        lamport_clock: max_u64(|figures| figures.lamport_clock),
        last_seq: max_u64(|figures| figures.last_seq),
        consumer_lag: max_u64(|figures| figures.consumer_lag),
        publish_latency_increase,
    };
    TotalRow {
        up: up.len(),
        nodes: rows.len(),
        figures,
    }
}

/// How much a counter rose from `previous` to `current`; a counter that went down was reset, and counted
/// `current` since.
pub fn increase(previous: f64, current: f64) -> f64 {
    if current < previous {
        current
    } else {
        current - previous
    }
}

/// How much a labelled counter rose, over all its series; a new series counts from zero.
pub fn series_increase(previous: &Series, current: &Series) -> f64 {
    current
        .0
        .iter()
        .map(|(labels, value)| increase(previous.0.get(labels).copied().unwrap_or(0.0), *value))
        .sum()
}

/// How much each cumulative bucket rose. If the buckets changed or any went down, the node restarted, and
/// `current` is the increase.
pub fn bucket_increase(previous: &Buckets, current: &Buckets) -> Buckets {
    let same_bounds = previous.0.len() == current.0.len()
        && previous
            .0
            .iter()
            .zip(&current.0)
            .all(|(before, now)| before.0 == now.0);
    let reset = !same_bounds
        || previous
            .0
            .iter()
            .zip(&current.0)
            .any(|(before, now)| now.1 < before.1);
    if reset {
        return current.clone();
    }
    Buckets(
        previous
            .0
            .iter()
            .zip(&current.0)
            .map(|(before, now)| (now.0, now.1 - before.1))
            .collect(),
    )
}

/// The bucket counts of two histograms added, when they have the same bounds (every node serves the
/// same buckets); otherwise the first.
fn merge(a: &Buckets, b: &Buckets) -> Buckets {
    if a.0.len() != b.0.len() || a.0.iter().zip(&b.0).any(|(x, y)| x.0 != y.0) {
        return a.clone();
    }
    Buckets(
        a.0.iter()
            .zip(&b.0)
            .map(|(x, y)| (x.0, x.1 + y.1))
            .collect(),
    )
}

/// The `q` quantile of the observations counted in cumulative `buckets`, as Prometheus's
/// `histogram_quantile` computes it: find the bucket where the rank `q × count` falls and interpolate
/// linearly between its lower and upper bounds (the lowest bucket starts at 0). A rank in the `+Inf`
/// bucket gives the highest finite bound. `None` without observations, or without a `+Inf` bucket.
pub fn quantile(q: f64, buckets: &Buckets) -> Option<f64> {
    let buckets = &buckets.0;
    let (last_bound, observations) = *buckets.last()?;
    if last_bound != f64::INFINITY || buckets.len() < 2 || observations <= 0.0 {
        return None;
    }
    // Cumulative counts never fall; a scrape racing an observation could make them, so hold each to at
    // least the one before, as Prometheus does.
    let mut counts: Vec<f64> = Vec::with_capacity(buckets.len());
    for (_, count) in buckets {
        let floor = counts.last().copied().unwrap_or(0.0);
        counts.push(count.max(floor));
    }
    let observations = counts[counts.len() - 1];
    let rank = q * observations;
    let index = counts.iter().position(|count| *count >= rank)?;
    if index == buckets.len() - 1 {
        return Some(buckets[buckets.len() - 2].0);
    }
    let upper = buckets[index].0;
    if index == 0 && upper <= 0.0 {
        return Some(upper);
    }
    let (lower, below) = if index == 0 {
        (0.0, 0.0)
    } else {
        (buckets[index - 1].0, counts[index - 1])
    };
    let in_bucket = counts[index] - below;
    Some(lower + (upper - lower) * ((rank - below) / in_bucket))
}

/// A gauge's or counter's value as a whole number.
fn whole(value: f64) -> u64 {
    if value.is_finite() && value > 0.0 {
        value.round() as u64
    } else {
        0
    }
}
