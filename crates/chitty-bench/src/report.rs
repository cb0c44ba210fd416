//! The figures of a run, and how they are reported: a table for people, one JSON object for tools.
//!
//! # The JSON object
//!
//! ```text
//! {
//!   "scenario": "ingest", "machine": {...}, "settings": {...},
//!   <the first deployment (the baseline), as the object was before deployments could be listed:>
//!   "nodes": 1, "cluster": false, "nats_servers": 0, "replicas": null, "n": 4,
//!   <every figure of Chitty-Chat at the largest N>,
//!   "nats": {<the same figures for NATS>} or null,
//!   "ratio": {<figure>: Chitty-Chat / NATS, for each numeric figure} or null,
//!   "ratio_to_baseline": null,
//!   "runs": [ {"n": 4, <figures>, "nats": ..., "ratio": ..., "ratio_to_baseline": ...}, ... one per N ],
//!   "deployments": [ {<the same for each --nodes entry, in order, the baseline first>}, ... ]
//! }
//! ```
//!
//! The figures are named as issue 6 names them (`deliveries_per_sec`, `p50_us`, `p99_us`, `p999_us`,
//! `max_us`, `server_cpu_us_per_delivery`, `rss_per_participant_bytes`) and issue 14 adds to them
//! (`messages_per_sec`, `server_cpu_us_per_message`, `jetstream_cpu_us_per_message`), plus the others of
//! [`Figures`]. A figure a scenario does not measure is `null`: latency in `idle`, memory per
//! participant outside it. `ratio_to_baseline` is this deployment / the first one at the same N, for each
//! numeric figure both have (so not the nats-server's figures against a single node, which has none).
//!
//! # Several nodes
//!
//! In cluster mode (`nodes` K, `cluster` true), the `server_*` figures are summed over the K nodes,
//! `server_cpu_us_per_node` and `server_cpu_percent_per_node` give each node's share, and the
//! `jetstream_cpu_*` figures give the nats-servers that hold the event log, summed over them
//! (`jetstream_cpu_percent_per_server` lists each), which are part of the system under test;
//! `machine_cpu_percent` is what all of them and the load generator used of the machine's cores
//! together. The `jetstream_*` figures are `null` outside cluster mode. `saturated` names each process
//! at 90% of a core or more.

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
    /// Messages accepted per second (acknowledged Publish calls; for NATS, `PUB`s queued), from the
    /// start of publishing to the last answer.
    pub messages_per_sec: Option<f64>,
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
    /// The server's CPU time per accepted message.
    pub server_cpu_us_per_message: Option<f64>,
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
    /// In cluster mode: the JetStream nats-servers' CPU time over the run, summed over them, in
    /// microseconds.
    pub jetstream_cpu_us: Option<u64>,
    /// In cluster mode: the JetStream nats-servers' CPU time per delivery.
    pub jetstream_cpu_us_per_delivery: Option<f64>,
    /// In cluster mode: the JetStream nats-servers' CPU time per accepted message.
    pub jetstream_cpu_us_per_message: Option<f64>,
    /// In cluster mode: the JetStream nats-servers' CPU time, summed, as a share of one core, in
    /// percent.
    pub jetstream_cpu_percent: Option<f64>,
    /// In cluster mode: each JetStream nats-server's CPU time as a share of one core, in percent.
    pub jetstream_cpu_percent_per_server: Option<Vec<f64>>,
    /// Every measured process (server nodes, the JetStream server, the load generator) together, as a
    /// share of all the machine's cores, in percent: near 100 the machine itself is the bound.
    pub machine_cpu_percent: Option<f64>,
    /// Which processes ran at 90% of a core or more: with one service process, `server`, `load
    /// generator`, `both` or `neither`; in cluster mode, each such node, nats-server and the load
    /// generator by name, joined by ` + `, or `neither` (see [`saturated`]).
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
            messages_per_sec: None,
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
            server_cpu_us_per_message: None,
            server_cpu_percent: None,
            server_writes_per_delivery: None,
            load_generator_cpu_us: None,
            load_generator_cpu_us_per_delivery: None,
            load_generator_cpu_percent: None,
            server_cpu_us_per_node: None,
            server_cpu_percent_per_node: None,
            jetstream_cpu_us: None,
            jetstream_cpu_us_per_delivery: None,
            jetstream_cpu_us_per_message: None,
            jetstream_cpu_percent: None,
            jetstream_cpu_percent_per_server: None,
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

    /// Sets the CPU figures from what every process used over a run with `deliveries` deliveries of
    /// `messages` accepted messages, on a machine with `cores` cores.
    pub fn set_cpu(&mut self, cpu: &CpuUse, deliveries: u64, messages: u64, cores: usize) {
        let wall_us = cpu.wall.as_micros().max(1) as f64;
        let per = |count: u64| move |us: u64| (count > 0).then(|| us as f64 / count as f64);
        let (per_delivery, per_message) = (per(deliveries), per(messages));
        let percent = |us: u64| 100.0 * us as f64 / wall_us;
        let micros =
            |used: &std::time::Duration| u64::try_from(used.as_micros()).unwrap_or(u64::MAX);
        let server_us = cpu.service.as_ref().map(micros);
        let jetstream_us = cpu.jetstream.as_ref().map(micros);
        let load_us = micros(&cpu.load_generator);
        self.server_cpu_us = server_us;
        self.server_cpu_us_per_delivery = server_us.and_then(per_delivery);
        self.server_cpu_us_per_message = server_us.and_then(per_message);
        self.server_cpu_percent = server_us.map(percent);
        self.server_writes_per_delivery = cpu.service_writes.and_then(per_delivery);
        let per_node: Vec<u64> = cpu.service_per_node.iter().map(micros).collect();
        let node_percents: Vec<f64> = per_node.iter().copied().map(percent).collect();
        self.server_cpu_percent_per_node = (!per_node.is_empty()).then(|| node_percents.clone());
        self.server_cpu_us_per_node = (!per_node.is_empty()).then_some(per_node);
        self.jetstream_cpu_us = jetstream_us;
        self.jetstream_cpu_us_per_delivery = jetstream_us.and_then(per_delivery);
        self.jetstream_cpu_us_per_message = jetstream_us.and_then(per_message);
        self.jetstream_cpu_percent = jetstream_us.map(percent);
        let server_percents: Vec<f64> = cpu
            .jetstream_per_server
            .iter()
            .map(|used| percent(micros(used)))
            .collect();
        self.jetstream_cpu_percent_per_server =
            (!server_percents.is_empty()).then(|| server_percents.clone());
        self.load_generator_cpu_us = Some(load_us);
        self.load_generator_cpu_us_per_delivery = per_delivery(load_us);
        self.load_generator_cpu_percent = Some(percent(load_us));
        let all_us = server_us.unwrap_or(0) + jetstream_us.unwrap_or(0) + load_us;
        self.machine_cpu_percent = Some(percent(all_us) / cores.max(1) as f64);
        self.saturated = Some(saturated(
            &node_percents,
            &server_percents,
            percent(load_us),
        ));
    }

    /// The numeric figures worth a ratio, by JSON name.
    fn comparable(&self) -> Vec<(&'static str, Option<f64>)> {
        let mut figures = vec![
            ("messages_per_sec", self.messages_per_sec),
            ("deliveries_per_sec", self.deliveries_per_sec),
            ("p50_us", self.p50_us.map(|v| v as f64)),
            ("p99_us", self.p99_us.map(|v| v as f64)),
            ("p999_us", self.p999_us.map(|v| v as f64)),
            ("max_us", self.max_us.map(|v| v as f64)),
            (
                "server_cpu_us_per_delivery",
                self.server_cpu_us_per_delivery,
            ),
            ("server_cpu_us_per_message", self.server_cpu_us_per_message),
            (
                "jetstream_cpu_us_per_delivery",
                self.jetstream_cpu_us_per_delivery,
            ),
            (
                "jetstream_cpu_us_per_message",
                self.jetstream_cpu_us_per_message,
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

/// Which processes ran at [`SATURATED_SHARE_OF_A_CORE`] of a core or more, given each service node's,
/// each JetStream server's and the load generator's share of one core in percent.
///
/// With one service process and no JetStream server: `server`, `load generator`, `both` or `neither`.
/// Otherwise each saturated process is named, joined by ` + `, or `neither`: `server` for a single
/// node, else `node I`; `nats-server` for a single JetStream server, else `nats-server I`; and `load
/// generator` (indices from 0, in the order of the per-node and per-server lists). Each process is
/// judged on its own: nodes at 60% of a core each are not saturated, however many there are.
fn saturated(nodes: &[f64], jetstream_servers: &[f64], load_generator: f64) -> String {
    let is_saturated = |percent: f64| percent >= 100.0 * SATURATED_SHARE_OF_A_CORE;
    let load_generator = is_saturated(load_generator);
    if nodes.len() <= 1 && jetstream_servers.is_empty() {
        let server = nodes.iter().copied().any(is_saturated);
        return match (server, load_generator) {
            (true, true) => "both",
            (true, false) => "server",
            (false, true) => "load generator",
            (false, false) => "neither",
        }
        .to_owned();
    }
    let named = |percents: &[f64], alone: &str, each: &str| -> Vec<String> {
        percents
            .iter()
            .enumerate()
            .filter(|(_, percent)| is_saturated(**percent))
            .map(|(index, _)| match percents.len() {
                1 => alone.to_owned(),
                _ => format!("{each} {index}"),
            })
            .collect()
    };
    let mut parts = named(nodes, "server", "node");
    parts.extend(named(jetstream_servers, "nats-server", "nats-server"));
    if load_generator {
        parts.push("load generator".to_owned());
    }
    match parts.is_empty() {
        true => "neither".to_owned(),
        false => parts.join(" + "),
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

/// A figure's ratio for each numeric figure both sets have, by JSON name: `ours / theirs`.
pub type Ratios = serde_json::Map<String, serde_json::Value>;

/// `ours / theirs` for each numeric figure both have and whose ratio is a finite number.
fn ratios(ours: &Figures, theirs: &Figures) -> Ratios {
    ours.comparable()
        .into_iter()
        .zip(theirs.comparable())
        .filter_map(|((name, ours), (_, theirs))| {
            let ratio = ours? / theirs?;
            ratio
                .is_finite()
                .then(|| (name.to_owned(), serde_json::json!(ratio)))
        })
        .collect()
}

/// One N on one deployment: Chitty-Chat's figures, NATS's if measured, and the ratios.
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
    pub ratio: Option<Ratios>,
    /// This deployment / the baseline (the first `--nodes` entry) at the same N, for each numeric
    /// figure both have; `null` for the baseline itself.
    pub ratio_to_baseline: Option<Ratios>,
}

impl RunReport {
    /// The report of one N, computing the ratios to NATS.
    pub fn new(n: usize, chitty: Figures, nats: Option<Figures>) -> Self {
        let ratio = nats.as_ref().map(|nats| ratios(&chitty, nats));
        Self {
            n,
            chitty,
            nats,
            ratio,
            ratio_to_baseline: None,
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

/// How the Chitty-Chat service under test was deployed: one entry of `--nodes`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Deployment {
    /// How many service processes served the chat: 1, or K nodes in cluster mode.
    pub nodes: usize,
    /// Whether the nodes ran in cluster mode (through NATS JetStream) rather than as one node with its
    /// embedded store.
    pub cluster: bool,
    /// How many nats-servers with JetStream held the chat in cluster mode; 0 for the embedded store.
    pub nats_servers: usize,
    /// How many copies of the chat JetStream kept in cluster mode; `null` for the embedded store.
    pub replicas: Option<usize>,
}

impl Deployment {
    /// One node with its embedded store: what the harness runs without `--nodes` or `--cluster`.
    pub const SINGLE: Deployment = Deployment {
        nodes: 1,
        cluster: false,
        nats_servers: 0,
        replicas: None,
    };
}

impl std::fmt::Display for Deployment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let plural = |count: usize| if count == 1 { "" } else { "s" };
        if !self.cluster {
            return write!(
                f,
                "{} node{} with the embedded store",
                self.nodes,
                plural(self.nodes)
            );
        }
        let replicas = self.replicas.unwrap_or(1);
        write!(
            f,
            "{} node{} in cluster mode on {} nats-server{} with JetStream, {} replica{}",
            self.nodes,
            plural(self.nodes),
            self.nats_servers,
            plural(self.nats_servers),
            replicas,
            plural(replicas),
        )
    }
}

/// Every N measured on one deployment, with the largest N's figures at its top level.
#[derive(Debug, Clone, Serialize)]
pub struct DeploymentReport {
    /// How the service was deployed: `"nodes"`, `"cluster"`, `"nats_servers"` and `"replicas"`.
    #[serde(flatten)]
    pub deployment: Deployment,
    /// The run at the largest N, flattened to the top level.
    #[serde(flatten)]
    pub headline: Option<RunReport>,
    /// Every run, one per N, in the order given.
    pub runs: Vec<RunReport>,
}

impl DeploymentReport {
    /// The report of `runs` on `deployment`, headlined by the one with the largest N.
    pub fn new(deployment: Deployment, runs: Vec<RunReport>) -> Self {
        Self {
            deployment,
            headline: runs.iter().max_by_key(|run| run.n).cloned(),
            runs,
        }
    }

    /// Sets every run's ratios to the `baseline`'s run at the same N, and the headline's.
    fn compare_with(&mut self, baseline: &DeploymentReport) {
        for run in self.runs.iter_mut().chain(self.headline.as_mut()) {
            run.ratio_to_baseline = baseline
                .runs
                .iter()
                .find(|theirs| theirs.n == run.n)
                .map(|theirs| ratios(&run.chitty, &theirs.chitty));
        }
    }
}

/// The whole invocation: every deployment and every N, with the first deployment's (the baseline's)
/// figures at the top level.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The scenario's name.
    pub scenario: String,
    /// The machine it ran on, since figures compare only within one machine.
    pub machine: Machine,
    /// The flags that shaped the load.
    pub settings: serde_json::Value,
    /// The first deployment, flattened to the top level, as the object was before deployments could be
    /// listed: `"nodes"`, `"cluster"`, the largest N's figures, and `"runs"`.
    #[serde(flatten)]
    pub baseline: DeploymentReport,
    /// Every deployment, in the order of `--nodes`, the baseline first; each but the baseline has
    /// `ratio_to_baseline` in its runs.
    pub deployments: Vec<DeploymentReport>,
}

impl Report {
    /// The report of `deployments` (at least one), comparing each with the first.
    pub fn new(
        scenario: String,
        machine: Machine,
        settings: serde_json::Value,
        mut deployments: Vec<DeploymentReport>,
    ) -> Self {
        let baseline = deployments
            .first()
            .cloned()
            .unwrap_or_else(|| DeploymentReport::new(Deployment::SINGLE, Vec::new()));
        for deployment in deployments.iter_mut().skip(1) {
            deployment.compare_with(&baseline);
        }
        Self {
            scenario,
            machine,
            settings,
            baseline,
            deployments,
        }
    }

    /// The letter that names deployment `index` in the table: A, B, C...
    pub(crate) fn letter(index: usize) -> char {
        char::from(b'A' + (index % 26) as u8)
    }

    /// The table for people: the machine, then which deployment each letter names, then per
    /// deployment one block per N with a row per figure and a column per system; then, with several
    /// deployments, one block per N with the main figures of each side by side and each one's ratio to
    /// the first.
    pub fn table(&self) -> String {
        let mut out = String::new();
        self.machine_line(&mut out);
        self.legend(&mut out);
        self.per_run_blocks(&mut out);
        if self.deployments.len() > 1 {
            self.side_by_side(&mut out);
        }
        out
    }

    /// The machine's first line: figures from a busy or a small machine read differently, so the
    /// reader sees the cores, the CPU and how loaded it was before anything else.
    fn machine_line(&self, out: &mut String) {
        let _ = writeln!(
            out,
            "machine: {} cores, {}, load average {} at start",
            self.machine.cores,
            self.machine.cpu,
            self.machine
                .load_average_at_start
                .map_or_else(|| "unknown".to_owned(), |load| format!("{load:.2}")),
        );
    }

    /// With several deployments, or one in cluster mode, what each letter of the blocks below stands
    /// for, and how the figures of several processes are added up: the blocks name deployments by
    /// letter only. Nothing for the single node alone, whose table reads as it always did.
    fn legend(&self, out: &mut String) {
        let several = self.deployments.len() > 1;
        if !several && !self.baseline.deployment.cluster {
            return;
        }
        for (index, deployment) in self.deployments.iter().enumerate() {
            let _ = writeln!(
                out,
                "Chitty-Chat {}: {}{}",
                Self::letter(index),
                deployment.deployment,
                if index == 0 && several {
                    " (the baseline)"
                } else {
                    ""
                },
            );
        }
        let _ = writeln!(
            out,
            "In cluster mode participants are spread round-robin over the nodes; server figures are \
             summed over the nodes, nats-server figures over the nats-servers."
        );
    }

    /// One block per deployment and N: every figure of Chitty-Chat beside NATS's, with their ratio.
    /// The heading names the deployment's letter where the legend gave letters.
    fn per_run_blocks(&self, out: &mut String) {
        let several = self.deployments.len() > 1;
        for (index, deployment) in self.deployments.iter().enumerate() {
            for run in &deployment.runs {
                let on = match several || deployment.deployment.cluster {
                    true => format!(" on {}", Self::letter(index)),
                    false => String::new(),
                };
                let _ = writeln!(out, "\n{} with N = {}{on}", self.scenario, run.n);
                let _ = writeln!(
                    out,
                    "{}",
                    header(&["Chitty-Chat", "NATS"], &["Chitty/NATS".to_owned()])
                );
                let columns = [Some(&run.chitty), run.nats.as_ref()];
                for row in rows(&columns, &[(0, 1)], false) {
                    let _ = writeln!(out, "{row}");
                }
            }
        }
    }

    /// The main figures of every deployment side by side, one block per N of the baseline, with each
    /// deployment's ratio to the baseline.
    fn side_by_side(&self, out: &mut String) {
        let names: Vec<String> = (0..self.deployments.len())
            .map(|index| Self::letter(index).to_string())
            .collect();
        let ratio_names: Vec<String> = names[1..]
            .iter()
            .map(|name| format!("{name}/{}", names[0]))
            .collect();
        let ratios: Vec<(usize, usize)> = (1..names.len()).map(|index| (index, 0)).collect();
        let name_refs: Vec<&str> = names.iter().map(String::as_str).collect();
        for run in &self.baseline.runs {
            let _ = writeln!(
                out,
                "\n{} with N = {}: the deployments side by side",
                self.scenario, run.n
            );
            let _ = writeln!(out, "{}", header(&name_refs, &ratio_names));
            let columns: Vec<Option<&Figures>> = self
                .deployments
                .iter()
                .map(|deployment| {
                    deployment
                        .runs
                        .iter()
                        .find(|theirs| theirs.n == run.n)
                        .map(|theirs| &theirs.chitty)
                })
                .collect();
            for row in rows(&columns, &ratios, true) {
                let _ = writeln!(out, "{row}");
            }
        }
    }
}

/// How wide the figure's name is in the table, and each column of figures and of ratios.
const NAME_WIDTH: usize = 38;
const COLUMN_WIDTH: usize = 14;
const RATIO_WIDTH: usize = 12;

/// The header line of a table block: `figure`, the columns' names, the ratios' names.
fn header(columns: &[&str], ratios: &[String]) -> String {
    let mut line = format!("{:<NAME_WIDTH$}", "figure");
    for column in columns {
        let _ = write!(line, " {column:>COLUMN_WIDTH$}");
    }
    for ratio in ratios {
        let _ = write!(line, " {ratio:>RATIO_WIDTH$}");
    }
    line
}

/// One numeric row of the table: its name, how to read it, its decimals, and whether it is one of the
/// main figures shown side by side for several deployments.
struct Row {
    /// The row's name in the table's first column, which says the figure's unit too.
    name: &'static str,
    /// Reads the figure from one column's figures; `None` where that run did not measure it.
    read: fn(&Figures) -> Option<f64>,
    /// How many decimals the figure is shown with: enough to compare, no more.
    decimals: usize,
    /// Whether the figure is one of the main ones, also shown when deployments are set side by side,
    /// where only the figures that decide between deployments are worth the space.
    side_by_side: bool,
}

impl Row {
    /// A main figure: shown in every block, and side by side.
    fn main(name: &'static str, read: fn(&Figures) -> Option<f64>, decimals: usize) -> Self {
        Self {
            name,
            read,
            decimals,
            side_by_side: true,
        }
    }

    /// A detail: shown in each deployment's own blocks only.
    fn detail(name: &'static str, read: fn(&Figures) -> Option<f64>, decimals: usize) -> Self {
        Self {
            name,
            read,
            decimals,
            side_by_side: false,
        }
    }

    /// Whether the row counts published messages: where nothing is published (idle) such a count is
    /// a zero that means nothing, so it is left out.
    fn counts_messages(&self) -> bool {
        matches!(
            self.name,
            "messages published" | "deliveries" | "delivery errors"
        )
    }
}

/// The numeric rows, in table order: one section after another, each of a kind of figure.
fn numeric_rows() -> Vec<Row> {
    [
        throughput_rows(),
        latency_rows(),
        count_rows(),
        cpu_cost_rows(),
        cpu_use_rows(),
        memory_rows(),
        churn_rows(),
    ]
    .into_iter()
    .flatten()
    .collect()
}

/// How much the system took in and handed out per second: the headline figures.
fn throughput_rows() -> Vec<Row> {
    vec![
        Row::main("messages accepted/s", |f| f.messages_per_sec, 0),
        Row::main("deliveries/s", |f| f.deliveries_per_sec, 0),
    ]
}

/// Publish-to-delivery latency, from the median to the worst: p99 is the one compared side by side.
fn latency_rows() -> Vec<Row> {
    vec![
        Row::detail("latency p50 (µs)", |f| f.p50_us.map(|v| v as f64), 0),
        Row::main("latency p99 (µs)", |f| f.p99_us.map(|v| v as f64), 0),
        Row::detail("latency p99.9 (µs)", |f| f.p999_us.map(|v| v as f64), 0),
        Row::detail("latency max (µs)", |f| f.max_us.map(|v| v as f64), 0),
    ]
}

/// What was counted over the run: the totals behind the rates, and the errors that must be zero.
/// Joined and left events show only where there were any (Chitty-Chat announces them, NATS has none).
fn count_rows() -> Vec<Row> {
    vec![
        Row::detail("messages published", |f| Some(f.published as f64), 0),
        Row::detail("deliveries", |f| Some(f.deliveries as f64), 0),
        Row::main("delivery errors", |f| Some(f.delivery_errors as f64), 0),
        Row::detail(
            "joined/left events delivered",
            |f| (f.announcements_delivered > 0).then_some(f.announcements_delivered as f64),
            0,
        ),
    ]
}

/// CPU time per unit of work, of each kind of process: what a message or a delivery costs, which does
/// not depend on how long the run was.
fn cpu_cost_rows() -> Vec<Row> {
    vec![
        Row::main(
            "server CPU (µs per message)",
            |f| f.server_cpu_us_per_message,
            3,
        ),
        Row::main(
            "server CPU (µs per delivery)",
            |f| f.server_cpu_us_per_delivery,
            3,
        ),
        Row::main(
            "nats-server CPU (µs per message)",
            |f| f.jetstream_cpu_us_per_message,
            3,
        ),
        Row::main(
            "nats-server CPU (µs per delivery)",
            |f| f.jetstream_cpu_us_per_delivery,
            3,
        ),
        Row::detail(
            "load generator CPU (µs per delivery)",
            |f| f.load_generator_cpu_us_per_delivery,
            3,
        ),
        Row::detail(
            "server write syscalls per delivery",
            |f| f.server_writes_per_delivery,
            3,
        ),
    ]
}

/// CPU used over the run, in seconds and as a share of a core or of the machine: whether a process,
/// or the machine itself, was the bound.
fn cpu_use_rows() -> Vec<Row> {
    vec![
        Row::detail(
            "server CPU (s)",
            |f| f.server_cpu_us.map(|v| v as f64 / 1e6),
            2,
        ),
        Row::detail(
            "load generator CPU (s)",
            |f| f.load_generator_cpu_us.map(|v| v as f64 / 1e6),
            2,
        ),
        Row::main("server CPU (% of one core)", |f| f.server_cpu_percent, 0),
        Row::main(
            "load generator CPU (% of one core)",
            |f| f.load_generator_cpu_percent,
            0,
        ),
        Row::detail(
            "nats-server CPU (s)",
            |f| f.jetstream_cpu_us.map(|v| v as f64 / 1e6),
            2,
        ),
        Row::main(
            "nats-server CPU (% of one core)",
            |f| f.jetstream_cpu_percent,
            0,
        ),
        Row::main(
            "all processes (% of the machine)",
            |f| f.machine_cpu_percent,
            0,
        ),
    ]
}

/// The server's resident memory: per participant, and the before and after it comes from.
fn memory_rows() -> Vec<Row> {
    vec![
        Row::main(
            "server RSS per participant (bytes)",
            |f| f.rss_per_participant_bytes,
            0,
        ),
        Row::detail(
            "server RSS before (MiB)",
            |f| f.rss_before_bytes.map(mib),
            1,
        ),
        Row::detail("server RSS after (MiB)", |f| f.rss_after_bytes.map(mib), 1),
    ]
}

/// What the churn scenario adds: the room without churn, how much churn slows the p99, and the churn
/// achieved.
fn churn_rows() -> Vec<Row> {
    vec![
        Row::detail(
            "calm: deliveries/s",
            |f| f.churn.as_ref().and_then(|c| c.calm.deliveries_per_sec),
            0,
        ),
        Row::detail(
            "calm: latency p50 (µs)",
            |f| {
                f.churn
                    .as_ref()
                    .and_then(|c| c.calm.p50_us.map(|v| v as f64))
            },
            0,
        ),
        Row::main(
            "calm: latency p99 (µs)",
            |f| {
                f.churn
                    .as_ref()
                    .and_then(|c| c.calm.p99_us.map(|v| v as f64))
            },
            0,
        ),
        Row::main(
            "churn p99 / calm p99",
            |f| f.churn.as_ref().and_then(|c| c.p99_ratio_churn_over_calm),
            2,
        ),
        Row::detail(
            "churn: joins+leaves per second",
            |f| f.churn.as_ref().map(|c| c.churn_ops_per_sec),
            0,
        ),
        Row::detail(
            "churn: errors",
            |f| f.churn.as_ref().map(|c| c.churn_errors as f64),
            0,
        ),
    ]
}

/// A row of text rather than a number: its name, and how to read it from one column's figures.
type TextRow = (&'static str, fn(&Figures) -> Option<String>);

/// The text rows, after the numeric ones: how the CPU was shared among several processes, and which
/// of them were saturated, which says what bounded the run.
fn text_rows() -> [TextRow; 3] {
    [
        ("server CPU per node (% of one core)", |f| {
            percents(f.server_cpu_percent_per_node.as_ref())
        }),
        ("nats-server CPU each (% of one core)", |f| {
            percents(f.jetstream_cpu_percent_per_server.as_ref())
        }),
        ("saturated (≥ 90% of a core)", |f| f.saturated.clone()),
    ]
}

/// The rows of one table block: a column per set of figures (absent: `-`), then a column per ratio
/// `(numerator, denominator)` of two columns; with `only_main`, the main figures alone. A row no
/// column has a figure for is left out.
fn rows(columns: &[Option<&Figures>], ratios: &[(usize, usize)], only_main: bool) -> Vec<String> {
    let idle = nothing_published(columns);
    let numeric = numeric_rows()
        .into_iter()
        .filter(|row| row.side_by_side || !only_main)
        .filter(|row| !(idle && row.counts_messages()))
        .filter_map(|row| numeric_line(&row, columns, ratios));
    let mut rows: Vec<String> = numeric.collect();
    // Where nothing is published (idle) there is no load to share out or to saturate a process.
    if !idle {
        rows.extend(
            text_rows()
                .into_iter()
                .filter_map(|(name, read)| text_line(name, read, columns)),
        );
    }
    rows
}

/// Whether no column published anything (the idle scenario): no column has a delivery rate.
fn nothing_published(columns: &[Option<&Figures>]) -> bool {
    columns
        .iter()
        .all(|figures| figures.is_none_or(|f| f.deliveries_per_sec.is_none()))
}

/// The line of `row`: its name, its figure in each column, then each ratio; `None` if no column has
/// the figure.
fn numeric_line(
    row: &Row,
    columns: &[Option<&Figures>],
    ratios: &[(usize, usize)],
) -> Option<String> {
    let values: Vec<Option<f64>> = columns
        .iter()
        .map(|figures| figures.and_then(row.read))
        .collect();
    if values.iter().all(Option::is_none) {
        return None;
    }
    let mut line = format!("{:<NAME_WIDTH$}", row.name);
    for value in &values {
        let _ = write!(line, " {:>COLUMN_WIDTH$}", number(*value, row.decimals));
    }
    for &(numerator, denominator) in ratios {
        let ratio = ratio_cell(&values, numerator, denominator);
        let _ = write!(line, " {ratio:>RATIO_WIDTH$}");
    }
    Some(line.trim_end().to_owned())
}

/// The ratio of column `numerator` to column `denominator`, with two decimals; empty where either
/// figure is missing or the denominator is zero, since no ratio is better than an infinite one.
fn ratio_cell(values: &[Option<f64>], numerator: usize, denominator: usize) -> String {
    match (values.get(numerator), values.get(denominator)) {
        (Some(Some(ours)), Some(Some(theirs))) if *theirs != 0.0 => format!("{:.2}", ours / theirs),
        _ => String::new(),
    }
}

/// The line of a text row: its name and its text in each column (absent: empty); `None` if no
/// column has it.
fn text_line(
    name: &str,
    read: fn(&Figures) -> Option<String>,
    columns: &[Option<&Figures>],
) -> Option<String> {
    let values: Vec<Option<String>> = columns
        .iter()
        .map(|figures| figures.and_then(read))
        .collect();
    if values.iter().all(Option::is_none) {
        return None;
    }
    let mut line = format!("{name:<NAME_WIDTH$}");
    for value in values {
        let _ = write!(line, " {:>COLUMN_WIDTH$}", value.unwrap_or_default());
    }
    Some(line.trim_end().to_owned())
}

/// Shares of a core, `60 / 55 / 12`, where there are several processes.
fn percents(list: Option<&Vec<f64>>) -> Option<String> {
    list.filter(|percents| percents.len() > 1).map(|percents| {
        percents
            .iter()
            .map(|percent| format!("{percent:.0}"))
            .collect::<Vec<_>>()
            .join(" / ")
    })
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
            jetstream_per_server: vec![second.mul_f64(0.95)],
            load_generator: second.mul_f64(0.35),
        };
        let mut figures = Figures::empty(10);
        figures.set_cpu(&cpu, 1_000, 100, 4);
        assert_eq!(figures.server_cpu_us, Some(1_100_000));
        assert_eq!(figures.server_cpu_us_per_node, Some(vec![600_000, 500_000]));
        let per_node = figures.server_cpu_percent_per_node.expect("per node");
        assert!(
            (per_node[0] - 60.0).abs() < 1e-9 && (per_node[1] - 50.0).abs() < 1e-9,
            "got {per_node:?}, want [60, 50]"
        );
        assert_eq!(figures.jetstream_cpu_us, Some(950_000));
        assert_eq!(figures.jetstream_cpu_us_per_delivery, Some(950.0));
        assert_eq!(figures.jetstream_cpu_us_per_message, Some(9_500.0));
        assert_eq!(figures.server_cpu_us_per_message, Some(11_000.0));
        let machine = figures.machine_cpu_percent.expect("machine share");
        assert!(
            (machine - 60.0).abs() < 1e-9,
            "got {machine}% of 4 cores, want 60%"
        );
        // The nodes together use more than a core, but neither node is saturated on its own.
        assert_eq!(figures.saturated.as_deref(), Some("nats-server"));
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
            jetstream_per_server: Vec::new(),
            load_generator: second,
        };
        let mut figures = Figures::empty(10);
        figures.set_cpu(&cpu, 1_000, 1_000, 2);
        assert_eq!(figures.saturated.as_deref(), Some("both"));
        assert_eq!(figures.jetstream_cpu_percent, None);
    }

    #[test]
    fn each_node_and_nats_server_is_named_when_it_alone_is_saturated() {
        assert_eq!(saturated(&[95.0, 20.0, 91.0], &[], 10.0), "node 0 + node 2");
        assert_eq!(
            saturated(&[50.0], &[10.0, 99.0, 10.0], 95.0),
            "nats-server 1 + load generator"
        );
        assert_eq!(saturated(&[95.0], &[95.0], 0.0), "server + nats-server");
        assert_eq!(saturated(&[60.0, 60.0], &[60.0], 60.0), "neither");
        assert_eq!(saturated(&[], &[], 0.0), "neither");
    }

    const THREE_NODES: Deployment = Deployment {
        nodes: 3,
        cluster: true,
        nats_servers: 3,
        replicas: Some(3),
    };

    #[test]
    fn the_json_object_says_how_many_nodes_served() {
        let report = Report::new(
            "room".to_owned(),
            Machine::read(),
            serde_json::json!({}),
            vec![DeploymentReport::new(
                THREE_NODES,
                vec![RunReport::new(5, Figures::empty(5), None)],
            )],
        );
        let json = serde_json::to_value(&report).expect("serialisable");
        assert_eq!(json["nodes"], 3);
        assert_eq!(json["cluster"], true);
        assert_eq!(json["nats_servers"], 3);
        assert_eq!(json["replicas"], 3);
        assert!(json["jetstream_cpu_percent"].is_null());
        assert_eq!(json["deployments"].as_array().map(Vec::len), Some(1));
        let table = report.table();
        assert!(
            table.contains("3 nodes in cluster mode on 3 nats-servers with JetStream, 3 replicas"),
            "got:\n{table}"
        );
    }

    #[test]
    fn each_deployment_is_compared_with_the_first_at_the_same_n() {
        let figures = |messages_per_sec: f64, cpu_per_message: f64| {
            let mut figures = Figures::empty(4);
            figures.messages_per_sec = Some(messages_per_sec);
            figures.server_cpu_us_per_message = Some(cpu_per_message);
            figures.deliveries_per_sec = Some(4.0 * messages_per_sec);
            figures
        };
        let mut on_cluster = figures(500.0, 30.0);
        on_cluster.jetstream_cpu_us_per_message = Some(12.0);
        let report = Report::new(
            "ingest".to_owned(),
            Machine::read(),
            serde_json::json!({}),
            vec![
                DeploymentReport::new(
                    Deployment::SINGLE,
                    vec![RunReport::new(4, figures(2_000.0, 10.0), None)],
                ),
                DeploymentReport::new(THREE_NODES, vec![RunReport::new(4, on_cluster, None)]),
            ],
        );
        let json = serde_json::to_value(&report).expect("serialisable");
        assert_eq!(json["nodes"], 1, "the top level is the baseline");
        assert!(json["ratio_to_baseline"].is_null());
        let cluster = &json["deployments"][1];
        assert_eq!(cluster["nodes"], 3);
        assert_eq!(cluster["ratio_to_baseline"]["messages_per_sec"], 0.25);
        assert_eq!(
            cluster["runs"][0]["ratio_to_baseline"]["server_cpu_us_per_message"],
            3.0
        );
        assert_eq!(cluster["jetstream_cpu_us_per_message"], 12.0);
        assert!(
            cluster["ratio_to_baseline"]["jetstream_cpu_us_per_message"].is_null(),
            "the single node has no nats-server to compare with"
        );
        let table = report.table();
        assert!(
            table.contains("ingest with N = 4: the deployments side by side"),
            "got:\n{table}"
        );
        let ratio_line = table
            .lines()
            .rev()
            .find(|line| line.starts_with("messages accepted/s"))
            .expect("a messages accepted/s row");
        assert!(
            ratio_line.ends_with("0.25"),
            "got {ratio_line:?}, want the ratio B/A of 0.25 at its end"
        );
    }

    #[test]
    fn the_json_object_has_the_figures_of_the_largest_n_at_the_top() {
        let mut small = Figures::empty(5);
        small.deliveries_per_sec = Some(1.0);
        let mut large = Figures::empty(50);
        large.deliveries_per_sec = Some(2.0);
        let report = Report::new(
            "fanout".to_owned(),
            Machine::read(),
            serde_json::json!({}),
            vec![DeploymentReport::new(
                Deployment::SINGLE,
                vec![
                    RunReport::new(50, large, None),
                    RunReport::new(5, small, None),
                ],
            )],
        );
        let json = serde_json::to_value(&report).expect("serialisable");
        assert_eq!(json["n"], 50);
        assert_eq!(json["deliveries_per_sec"], 2.0);
        assert_eq!(json["runs"][1]["n"], 5);
        assert!(json["nats"].is_null());
        assert!(json["p99_us"].is_null());
    }
}
