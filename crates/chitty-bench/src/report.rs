//! The figures of a run, and how they are reported: a table for people, one JSON object for tools.
//!
//! # The JSON object
//!
//! ```text
//! {
//!   "scenario": "fanout", "nodes": 1, "cluster": false, "n": 1000, "machine": {...}, "settings": {...},
//!   <every figure of Chitty-Chat at the largest N, at the top level>,
//!   "nats": {<the same figures for NATS>} or null,
//!   "ratio": {<figure>: Chitty-Chat / NATS, for each numeric figure} or null,
//!   "runs": [ {"n": 100, <figures>, "nats": ..., "ratio": ...}, ... one per N, in the order given ]
//! }
//! ```
//!
//! The figures are named as issue 6 names them (`deliveries_per_sec`, `p50_us`, `p99_us`, `p999_us`,
//! `max_us`, `server_cpu_us_per_delivery`, `rss_per_participant_bytes`) plus the others of
//! [`Figures`]. A figure a scenario does not measure is `null`: latency in `idle`, memory per participant
//! outside it.
//!
//! # Several nodes
//!
//! With `--nodes K` (cluster mode), `nodes` is K and `cluster` is true. The `server_*` figures are then
//! summed over the K nodes, `server_cpu_us_per_node` and `server_cpu_percent_per_node` give each node's
//! share, and the `jetstream_cpu_*` figures give the nats-server that holds the event log, which is part
//! of the system under test; `machine_cpu_percent` is what all of them and the load generator used of
//! the machine's cores together. The `jetstream_*` figures are `null` outside cluster mode.

use std::fmt::Write as _;

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::measure::CpuUse;

/// A process using at least this share of one core over a run is reported as saturated.
const SATURATED_SHARE_OF_A_CORE: f64 = 0.9;

/// Everything measured in one run of one system at one N.
#[derive(Debug, Clone, Serialize)]
pub struct Figures {
    /// N: participants listening (in `fanout`, not counting the publisher).
    pub participants: usize,
    /// Messages the system accepted.
    pub published: u64,
    /// Messages received, summed over listeners.
    pub deliveries: u64,
    /// Deliveries per second, from the start of publishing to the last delivery (in `churn`, of the
    /// churn phase).
    pub deliveries_per_sec: Option<f64>,
    /// Publish-to-delivery latency, median, in microseconds.
    pub p50_us: Option<u64>,
    /// Publish-to-delivery latency, 99th percentile.
    pub p99_us: Option<u64>,
    /// Publish-to-delivery latency, 99.9th percentile.
    pub p999_us: Option<u64>,
    /// Publish-to-delivery latency, the largest seen.
    pub max_us: Option<u64>,
    /// Joined and left events received, summed over listeners: Chitty-Chat broadcasts every join and
    /// leave to everyone, which is most of the load in `churn`; NATS has none.
    pub announcements_delivered: u64,
    /// Failed publishes, stream errors and missing deliveries.
    pub delivery_errors: u64,
    /// Deliveries expected (every accepted message to every listener) that never arrived.
    pub missing_deliveries: u64,
    /// The server's CPU time (utime + stime) over the run, in microseconds.
    pub server_cpu_us: Option<u64>,
    /// The server's CPU time per delivery.
    pub server_cpu_us_per_delivery: Option<f64>,
    /// The server's CPU time as a share of one core over the run, in percent.
    pub server_cpu_percent: Option<f64>,
    /// The server's write system calls (`write`, `writev`) per delivery: below 1 when it batches
    /// several deliveries into one write.
    pub server_writes_per_delivery: Option<f64>,
    /// The load generator's CPU time over the run, in microseconds.
    pub load_generator_cpu_us: Option<u64>,
    /// The load generator's CPU time per delivery.
    pub load_generator_cpu_us_per_delivery: Option<f64>,
    /// The load generator's CPU time as a share of one core over the run, in percent.
    pub load_generator_cpu_percent: Option<f64>,
    /// Each node's CPU time over the run, in microseconds, in node order (one entry for one node).
    pub server_cpu_us_per_node: Option<Vec<u64>>,
    /// Each node's CPU time as a share of one core over the run, in percent.
    pub server_cpu_percent_per_node: Option<Vec<f64>>,
    /// In cluster mode: the JetStream nats-server's CPU time over the run, in microseconds.
    pub jetstream_cpu_us: Option<u64>,
    /// In cluster mode: the JetStream nats-server's CPU time per delivery.
    pub jetstream_cpu_us_per_delivery: Option<f64>,
    /// In cluster mode: the JetStream nats-server's CPU time as a share of one core, in percent.
    pub jetstream_cpu_percent: Option<f64>,
    /// Every measured process (server nodes, the JetStream server, the load generator) together, as a
    /// share of all the machine's cores, in percent: near 100 the machine itself is the bound.
    pub machine_cpu_percent: Option<f64>,
    /// Which process ran at about a full core or more. With one service process: `server`, `load
    /// generator`, `both` or `neither`. In cluster mode: those of `server` (the nodes together),
    /// `nats-server` and `load generator` that did, joined by ` + `, or `neither`.
    pub saturated: Option<String>,
    /// The server's resident memory before the participants connected.
    pub rss_before_bytes: Option<u64>,
    /// The server's resident memory with every participant connected and idle.
    pub rss_after_bytes: Option<u64>,
    /// (after - before) / N.
    pub rss_per_participant_bytes: Option<f64>,
    /// In `churn`: the calm phase and the churn achieved.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub churn: Option<ChurnFigures>,
}

impl Figures {
    /// No figures yet, for N participants.
    pub fn empty(participants: usize) -> Self {
        Self {
            participants,
            published: 0,
            deliveries: 0,
            deliveries_per_sec: None,
            p50_us: None,
            p99_us: None,
            p999_us: None,
            max_us: None,
            announcements_delivered: 0,
            delivery_errors: 0,
            missing_deliveries: 0,
            server_cpu_us: None,
            server_cpu_us_per_delivery: None,
            server_cpu_percent: None,
            server_writes_per_delivery: None,
            load_generator_cpu_us: None,
            load_generator_cpu_us_per_delivery: None,
            load_generator_cpu_percent: None,
            server_cpu_us_per_node: None,
            server_cpu_percent_per_node: None,
            jetstream_cpu_us: None,
            jetstream_cpu_us_per_delivery: None,
            jetstream_cpu_percent: None,
            machine_cpu_percent: None,
            saturated: None,
            rss_before_bytes: None,
            rss_after_bytes: None,
            rss_per_participant_bytes: None,
            churn: None,
        }
    }

    /// Sets the latency percentiles from `histogram`, if it has any sample.
    pub fn set_latency(&mut self, histogram: &Histogram<u64>) {
        let latency = LatencyFigures::of(histogram, std::time::Duration::ZERO);
        self.p50_us = latency.p50_us;
        self.p99_us = latency.p99_us;
        self.p999_us = latency.p999_us;
        self.max_us = latency.max_us;
    }

    /// Sets the CPU figures from what every process used over a run with `deliveries` deliveries, on a
    /// machine with `cores` cores.
    pub fn set_cpu(&mut self, cpu: &CpuUse, deliveries: u64, cores: usize) {
        let wall_us = cpu.wall.as_micros().max(1) as f64;
        let per_delivery = |us: u64| (deliveries > 0).then(|| us as f64 / deliveries as f64);
        let percent = |us: u64| 100.0 * us as f64 / wall_us;
        let micros =
            |used: std::time::Duration| u64::try_from(used.as_micros()).unwrap_or(u64::MAX);
        let server_us = cpu.service.map(micros);
        let jetstream_us = cpu.jetstream.map(micros);
        let load_us = micros(cpu.load_generator);
        self.server_cpu_us = server_us;
        self.server_cpu_us_per_delivery = server_us.and_then(per_delivery);
        self.server_cpu_percent = server_us.map(percent);
        self.server_writes_per_delivery = cpu.service_writes.and_then(per_delivery);
        let per_node: Vec<u64> = cpu.service_per_node.iter().copied().map(micros).collect();
        self.server_cpu_percent_per_node =
            (!per_node.is_empty()).then(|| per_node.iter().copied().map(percent).collect());
        self.server_cpu_us_per_node = (!per_node.is_empty()).then_some(per_node);
        self.jetstream_cpu_us = jetstream_us;
        self.jetstream_cpu_us_per_delivery = jetstream_us.and_then(per_delivery);
        self.jetstream_cpu_percent = jetstream_us.map(percent);
        self.load_generator_cpu_us = Some(load_us);
        self.load_generator_cpu_us_per_delivery = per_delivery(load_us);
        self.load_generator_cpu_percent = Some(percent(load_us));
        let all_us = server_us.unwrap_or(0) + jetstream_us.unwrap_or(0) + load_us;
        self.machine_cpu_percent = Some(percent(all_us) / cores.max(1) as f64);
        let saturated = |percent: Option<f64>| {
            percent.is_some_and(|percent| percent >= 100.0 * SATURATED_SHARE_OF_A_CORE)
        };
        let server = saturated(self.server_cpu_percent);
        let load_generator = saturated(self.load_generator_cpu_percent);
        let several_processes = cpu.jetstream.is_some() || cpu.service_per_node.len() > 1;
        self.saturated = Some(if several_processes {
            let parts: Vec<&str> = [
                (server, "server"),
                (saturated(self.jetstream_cpu_percent), "nats-server"),
                (load_generator, "load generator"),
            ]
            .into_iter()
            .filter_map(|(is, name)| is.then_some(name))
            .collect();
            match parts.is_empty() {
                true => "neither".to_owned(),
                false => parts.join(" + "),
            }
        } else {
            match (server, load_generator) {
                (true, true) => "both",
                (true, false) => "server",
                (false, true) => "load generator",
                (false, false) => "neither",
            }
            .to_owned()
        });
    }

    /// The numeric figures worth a ratio, by JSON name.
    fn comparable(&self) -> Vec<(&'static str, Option<f64>)> {
        let mut figures = vec![
            ("deliveries_per_sec", self.deliveries_per_sec),
            ("p50_us", self.p50_us.map(|v| v as f64)),
            ("p99_us", self.p99_us.map(|v| v as f64)),
            ("p999_us", self.p999_us.map(|v| v as f64)),
            ("max_us", self.max_us.map(|v| v as f64)),
            (
                "server_cpu_us_per_delivery",
                self.server_cpu_us_per_delivery,
            ),
            (
                "server_writes_per_delivery",
                self.server_writes_per_delivery,
            ),
            (
                "load_generator_cpu_us_per_delivery",
                self.load_generator_cpu_us_per_delivery,
            ),
            ("rss_per_participant_bytes", self.rss_per_participant_bytes),
        ];
        if let Some(churn) = &self.churn {
            figures.push(("calm_p99_us", churn.calm.p99_us.map(|v| v as f64)));
            figures.push(("p99_ratio_churn_over_calm", churn.p99_ratio_churn_over_calm));
        }
        figures
    }
}

/// Throughput and latency of one phase.
#[derive(Debug, Clone, Serialize)]
pub struct LatencyFigures {
    /// Deliveries per second over the phase.
    pub deliveries_per_sec: Option<f64>,
    /// Median latency, µs.
    pub p50_us: Option<u64>,
    /// 99th percentile, µs.
    pub p99_us: Option<u64>,
    /// 99.9th percentile, µs.
    pub p999_us: Option<u64>,
    /// Largest, µs.
    pub max_us: Option<u64>,
}

impl LatencyFigures {
    /// The figures of `histogram`, whose samples arrived over `duration` (zero: no rate).
    pub fn of(histogram: &Histogram<u64>, duration: std::time::Duration) -> Self {
        let any = !histogram.is_empty();
        let at = |quantile: f64| any.then(|| histogram.value_at_quantile(quantile));
        Self {
            deliveries_per_sec: (any && !duration.is_zero())
                .then(|| histogram.len() as f64 / duration.as_secs_f64()),
            p50_us: at(0.5),
            p99_us: at(0.99),
            p999_us: at(0.999),
            max_us: any.then(|| histogram.max()),
        }
    }
}

/// What the churn scenario adds.
#[derive(Debug, Clone, Serialize)]
pub struct ChurnFigures {
    /// Joins plus leaves per second achieved in the churn phase.
    pub churn_ops_per_sec: f64,
    /// Churning participants whose join, stream or leave failed.
    pub churn_errors: u64,
    /// Churn starts skipped because too many churning participants were still running.
    pub churn_skipped: u64,
    /// The room without churn, for comparison.
    pub calm: LatencyFigures,
    /// p99 during churn divided by p99 without it.
    pub p99_ratio_churn_over_calm: Option<f64>,
}

/// One N: Chitty-Chat's figures, NATS's if measured, and their ratios.
#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    /// N.
    pub n: usize,
    /// Chitty-Chat's figures.
    #[serde(flatten)]
    pub chitty: Figures,
    /// NATS's figures, with `--vs-nats`.
    pub nats: Option<Figures>,
    /// Chitty-Chat / NATS for each numeric figure both have.
    pub ratio: Option<serde_json::Map<String, serde_json::Value>>,
}

impl RunReport {
    /// The report of one N, computing the ratios.
    pub fn new(n: usize, chitty: Figures, nats: Option<Figures>) -> Self {
        let ratio = nats.as_ref().map(|nats| {
            chitty
                .comparable()
                .into_iter()
                .zip(nats.comparable())
                .filter_map(|((name, ours), (_, theirs))| {
                    let ratio = ours? / theirs?;
                    ratio
                        .is_finite()
                        .then(|| (name.to_owned(), serde_json::json!(ratio)))
                })
                .collect()
        });
        Self {
            n,
            chitty,
            nats,
            ratio,
        }
    }
}

/// The machine the run was measured on.
#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    /// Cores available.
    pub cores: usize,
    /// `model name` from /proc/cpuinfo.
    pub cpu: String,
    /// `MemTotal` from /proc/meminfo, in bytes.
    pub memory_bytes: Option<u64>,
    /// The 1-minute load average when the run started.
    pub load_average_at_start: Option<f64>,
}

impl Machine {
    /// Reads the machine's description; what cannot be read is left out.
    pub fn read() -> Self {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let loadavg = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
        Self {
            cores: std::thread::available_parallelism().map_or(1, usize::from),
            cpu: cpuinfo
                .lines()
                .find_map(|line| line.strip_prefix("model name"))
                .and_then(|rest| rest.split_once(':'))
                .map_or_else(|| "unknown".to_owned(), |(_, name)| name.trim().to_owned()),
            memory_bytes: meminfo
                .lines()
                .find_map(|line| line.strip_prefix("MemTotal:"))
                .and_then(|value| {
                    value
                        .trim()
                        .trim_end_matches("kB")
                        .trim()
                        .parse::<u64>()
                        .ok()
                })
                .map(|kib| kib * 1024),
            load_average_at_start: loadavg
                .split_whitespace()
                .next()
                .and_then(|value| value.parse().ok()),
        }
    }
}

/// How the Chitty-Chat service under test was deployed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Deployment {
    /// How many service processes served the chat: 1, or K nodes in cluster mode.
    pub nodes: usize,
    /// Whether the nodes ran in cluster mode (through NATS JetStream) rather than as one node with its
    /// embedded store.
    pub cluster: bool,
}

impl Deployment {
    /// One node with its embedded store: what the harness runs without `--nodes` or `--cluster`.
    pub const SINGLE: Deployment = Deployment {
        nodes: 1,
        cluster: false,
    };
}

/// The whole invocation: every N, with the largest N's figures at the top level.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The scenario's name.
    pub scenario: String,
    /// How many nodes, and whether in cluster mode: `"nodes"` and `"cluster"` at the top level.
    #[serde(flatten)]
    pub deployment: Deployment,
    /// The machine.
    pub machine: Machine,
    /// The flags that shaped the load.
    pub settings: serde_json::Value,
    /// The run at the largest N, flattened to the top level.
    #[serde(flatten)]
    pub headline: Option<RunReport>,
    /// Every run, one per N, in the order given.
    pub runs: Vec<RunReport>,
}

impl Report {
    /// The report of `runs`, headlined by the one with the largest N.
    pub fn new(
        scenario: String,
        deployment: Deployment,
        machine: Machine,
        settings: serde_json::Value,
        runs: Vec<RunReport>,
    ) -> Self {
        let headline = runs.iter().max_by_key(|run| run.n).cloned();
        Self {
            scenario,
            deployment,
            machine,
            settings,
            headline,
            runs,
        }
    }

    /// The table for people: one block per N, a row per figure, a column per system and their ratio.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "machine: {} cores, {}, load average {} at start",
            self.machine.cores,
            self.machine.cpu,
            self.machine
                .load_average_at_start
                .map_or_else(|| "unknown".to_owned(), |load| format!("{load:.2}")),
        );
        if self.deployment.cluster {
            let _ = writeln!(
                out,
                "Chitty-Chat: {} node{} in cluster mode sharing one nats-server with JetStream, \
                 participants spread round-robin; server figures are summed over the nodes",
                self.deployment.nodes,
                if self.deployment.nodes == 1 { "" } else { "s" },
            );
        }
        for run in &self.runs {
            let _ = writeln!(out, "\n{} with N = {}", self.scenario, run.n);
            let _ = writeln!(
                out,
                "{:<38} {:>14} {:>14} {:>12}",
                "figure", "Chitty-Chat", "NATS", "Chitty/NATS"
            );
            for row in rows(&run.chitty, run.nats.as_ref()) {
                let _ = writeln!(out, "{row}");
            }
        }
        out
    }
}

/// The rows of one run's table.
fn rows(chitty: &Figures, nats: Option<&Figures>) -> Vec<String> {
    type Read = fn(&Figures) -> Option<f64>;
    let numeric: Vec<(&str, Read, usize)> = vec![
        ("deliveries/s", |f| f.deliveries_per_sec, 0),
        ("latency p50 (µs)", |f| f.p50_us.map(|v| v as f64), 0),
        ("latency p99 (µs)", |f| f.p99_us.map(|v| v as f64), 0),
        ("latency p99.9 (µs)", |f| f.p999_us.map(|v| v as f64), 0),
        ("latency max (µs)", |f| f.max_us.map(|v| v as f64), 0),
        ("messages published", |f| Some(f.published as f64), 0),
        ("deliveries", |f| Some(f.deliveries as f64), 0),
        ("delivery errors", |f| Some(f.delivery_errors as f64), 0),
        (
            "joined/left events delivered",
            |f| (f.announcements_delivered > 0).then_some(f.announcements_delivered as f64),
            0,
        ),
        (
            "server CPU (µs per delivery)",
            |f| f.server_cpu_us_per_delivery,
            3,
        ),
        (
            "load generator CPU (µs per delivery)",
            |f| f.load_generator_cpu_us_per_delivery,
            3,
        ),
        (
            "server write syscalls per delivery",
            |f| f.server_writes_per_delivery,
            3,
        ),
        (
            "server CPU (s)",
            |f| f.server_cpu_us.map(|v| v as f64 / 1e6),
            2,
        ),
        (
            "load generator CPU (s)",
            |f| f.load_generator_cpu_us.map(|v| v as f64 / 1e6),
            2,
        ),
        ("server CPU (% of one core)", |f| f.server_cpu_percent, 0),
        (
            "load generator CPU (% of one core)",
            |f| f.load_generator_cpu_percent,
            0,
        ),
        (
            "JetStream server CPU (µs per delivery)",
            |f| f.jetstream_cpu_us_per_delivery,
            3,
        ),
        (
            "JetStream server CPU (s)",
            |f| f.jetstream_cpu_us.map(|v| v as f64 / 1e6),
            2,
        ),
        (
            "JetStream server CPU (% of one core)",
            |f| f.jetstream_cpu_percent,
            0,
        ),
        (
            "all processes (% of the machine)",
            |f| f.machine_cpu_percent,
            0,
        ),
        (
            "server RSS per participant (bytes)",
            |f| f.rss_per_participant_bytes,
            0,
        ),
        (
            "server RSS before (MiB)",
            |f| f.rss_before_bytes.map(mib),
            1,
        ),
        ("server RSS after (MiB)", |f| f.rss_after_bytes.map(mib), 1),
        (
            "calm: deliveries/s",
            |f| f.churn.as_ref().and_then(|c| c.calm.deliveries_per_sec),
            0,
        ),
        (
            "calm: latency p50 (µs)",
            |f| {
                f.churn
                    .as_ref()
                    .and_then(|c| c.calm.p50_us.map(|v| v as f64))
            },
            0,
        ),
        (
            "calm: latency p99 (µs)",
            |f| {
                f.churn
                    .as_ref()
                    .and_then(|c| c.calm.p99_us.map(|v| v as f64))
            },
            0,
        ),
        (
            "churn p99 / calm p99",
            |f| f.churn.as_ref().and_then(|c| c.p99_ratio_churn_over_calm),
            2,
        ),
        (
            "churn: joins+leaves per second",
            |f| f.churn.as_ref().map(|c| c.churn_ops_per_sec),
            0,
        ),
        (
            "churn: errors",
            |f| f.churn.as_ref().map(|c| c.churn_errors as f64),
            0,
        ),
    ];
    // Counts of messages mean nothing where nothing is published (idle).
    let idle =
        chitty.deliveries_per_sec.is_none() && nats.is_none_or(|n| n.deliveries_per_sec.is_none());
    let mut rows = Vec::new();
    for (name, read, decimals) in numeric {
        if idle
            && matches!(
                name,
                "messages published" | "deliveries" | "delivery errors"
            )
        {
            continue;
        }
        let ours = read(chitty);
        let theirs = nats.and_then(read);
        if ours.is_none() && theirs.is_none() {
            continue;
        }
        let ratio = match (ours, theirs) {
            (Some(ours), Some(theirs)) if theirs != 0.0 => format!("{:.2}", ours / theirs),
            _ => String::new(),
        };
        rows.push(format!(
            "{name:<38} {:>14} {:>14} {ratio:>12}",
            number(ours, decimals),
            number(theirs, decimals),
        ));
    }
    let per_node = |f: Option<&Figures>| {
        f.and_then(|f| f.server_cpu_percent_per_node.as_ref())
            .filter(|nodes| nodes.len() > 1)
            .map(|nodes| {
                nodes
                    .iter()
                    .map(|percent| format!("{percent:.0}"))
                    .collect::<Vec<_>>()
                    .join(" / ")
            })
    };
    if !idle && let Some(ours) = per_node(Some(chitty)) {
        rows.push(format!(
            "{:<38} {:>14} {:>14}",
            "server CPU per node (% of one core)",
            ours,
            per_node(nats).unwrap_or_default()
        ));
    }
    let saturated = |f: Option<&Figures>| f.and_then(|f| f.saturated.clone()).unwrap_or_default();
    if !idle {
        rows.push(format!(
            "{:<38} {:>14} {:>14}",
            "saturated (≥ 90% of a core)",
            saturated(Some(chitty)),
            saturated(nats)
        ));
    }
    rows
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// A number with thousands separators, or `-` when absent.
fn number(value: Option<f64>, decimals: usize) -> String {
    let Some(value) = value else {
        return "-".to_owned();
    };
    let formatted = format!("{value:.decimals$}");
    let (whole, fraction) = formatted
        .split_once('.')
        .map_or((formatted.as_str(), None), |(w, f)| (w, Some(f)));
    let (sign, digits) = whole
        .strip_prefix('-')
        .map_or(("", whole), |digits| ("-", digits));
    let mut grouped = String::new();
    for (position, digit) in digits.chars().enumerate() {
        if position > 0 && (digits.len() - position) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(digit);
    }
    match fraction {
        Some(fraction) => format!("{sign}{grouped}.{fraction}"),
        None => format!("{sign}{grouped}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_get_thousands_separators() {
        assert_eq!(number(Some(1_234_567.0), 0), "1,234,567");
        assert_eq!(number(Some(999.0), 0), "999");
        assert_eq!(number(Some(0.2512), 3), "0.251");
        assert_eq!(number(Some(-12_345.5), 1), "-12,345.5");
        assert_eq!(number(None, 0), "-");
    }

    #[test]
    fn ratios_are_ours_over_theirs_for_figures_both_have() {
        let mut ours = Figures::empty(10);
        ours.deliveries_per_sec = Some(300.0);
        let mut theirs = Figures::empty(10);
        theirs.deliveries_per_sec = Some(200.0);
        theirs.p99_us = Some(5);
        let run = RunReport::new(10, ours, Some(theirs));
        let ratio = run.ratio.expect("ratios with NATS");
        assert_eq!(
            ratio.get("deliveries_per_sec"),
            Some(&serde_json::json!(1.5))
        );
        assert_eq!(ratio.get("p99_us"), None);
    }

    #[test]
    fn cluster_cpu_is_summed_over_the_nodes_and_the_nats_server_is_reported_beside_it() {
        let second = std::time::Duration::from_secs(1);
        let cpu = CpuUse {
            wall: second,
            service: Some(second.mul_f64(1.1)),
            service_per_node: vec![second.mul_f64(0.6), second.mul_f64(0.5)],
            service_writes: Some(500),
            jetstream: Some(second.mul_f64(0.95)),
            load_generator: second.mul_f64(0.35),
        };
        let mut figures = Figures::empty(10);
        figures.set_cpu(&cpu, 1_000, 4);
        assert_eq!(figures.server_cpu_us, Some(1_100_000));
        assert_eq!(figures.server_cpu_us_per_node, Some(vec![600_000, 500_000]));
        let per_node = figures.server_cpu_percent_per_node.expect("per node");
        assert!(
            (per_node[0] - 60.0).abs() < 1e-9 && (per_node[1] - 50.0).abs() < 1e-9,
            "got {per_node:?}, want [60, 50]"
        );
        assert_eq!(figures.jetstream_cpu_us, Some(950_000));
        assert_eq!(figures.jetstream_cpu_us_per_delivery, Some(950.0));
        let machine = figures.machine_cpu_percent.expect("machine share");
        assert!(
            (machine - 60.0).abs() < 1e-9,
            "got {machine}% of 4 cores, want 60%"
        );
        assert_eq!(figures.saturated.as_deref(), Some("server + nats-server"));
    }

    #[test]
    fn one_service_process_keeps_the_saturated_words_of_before() {
        let second = std::time::Duration::from_secs(1);
        let cpu = CpuUse {
            wall: second,
            service: Some(second),
            service_per_node: vec![second],
            service_writes: None,
            jetstream: None,
            load_generator: second,
        };
        let mut figures = Figures::empty(10);
        figures.set_cpu(&cpu, 1_000, 2);
        assert_eq!(figures.saturated.as_deref(), Some("both"));
        assert_eq!(figures.jetstream_cpu_percent, None);
    }

    #[test]
    fn the_json_object_says_how_many_nodes_served() {
        let report = Report::new(
            "room".to_owned(),
            Deployment {
                nodes: 3,
                cluster: true,
            },
            Machine::read(),
            serde_json::json!({}),
            vec![RunReport::new(5, Figures::empty(5), None)],
        );
        let json = serde_json::to_value(&report).expect("serialisable");
        assert_eq!(json["nodes"], 3);
        assert_eq!(json["cluster"], true);
        assert!(json["jetstream_cpu_percent"].is_null());
        assert!(report.table().contains("3 nodes in cluster mode"));
    }

    #[test]
    fn the_json_object_has_the_figures_of_the_largest_n_at_the_top() {
        let mut small = Figures::empty(5);
        small.deliveries_per_sec = Some(1.0);
        let mut large = Figures::empty(50);
        large.deliveries_per_sec = Some(2.0);
        let report = Report::new(
            "fanout".to_owned(),
            Deployment::SINGLE,
            Machine::read(),
            serde_json::json!({}),
            vec![
                RunReport::new(50, large, None),
                RunReport::new(5, small, None),
            ],
        );
        let json = serde_json::to_value(&report).expect("serialisable");
        assert_eq!(json["n"], 50);
        assert_eq!(json["deliveries_per_sec"], 2.0);
        assert_eq!(json["runs"][1]["n"], 5);
        assert!(json["nats"].is_null());
        assert!(json["p99_us"].is_null());
    }
}
