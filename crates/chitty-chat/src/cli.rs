//! The command line: `chitty-chat serve`, `join`, `demo`, `diagram`, `check`, `health`, `bench` and
//! `top`, and what each does.

use chitty_logs::{COMMAND, CommandEvent, SERVICE, ServiceEvent};
use std::io::Write as _;
use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use chitty_diagram::{Format, Window};
use chitty_participant::{Backoff, Connection, ParticipantConfig};
use chitty_service::{
    ChatConfig, ClusterConfig, HubConfig, Rate, Retention, ServeConfig, Storage, TlsFiles,
    WebOrigin,
};
use clap::{Args, Parser, Subcommand};
use directories::ProjectDirs;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use crate::demo::DemoArgs;
use crate::logging::LogArgs;
use crate::script::ScriptArgs;

/// Chitty-Chat: a chat service over gRPC that keeps logical time with Lamport clocks.
#[derive(Debug, Parser)]
#[command(name = "chitty-chat", version, max_term_width = 100)]
pub struct Cli {
    #[command(flatten)]
    log: LogArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the Chitty-Chat service.
    Serve(ServeArgs),
    /// Join a chat as one participant: each line typed is published, each event received is shown.
    ///
    /// In a terminal it opens a full-screen chat (unless --plain). Otherwise, in line mode, every output
    /// line shows the event's seq, the service's Lamport time of the event, and this participant's own
    /// Lamport time after receiving it; end of input, Ctrl-C or SIGTERM leaves. With --say or --script it
    /// is scripted, for containers.
    Join(JoinArgs),
    /// Demonstrate the whole system: a service and several participants, each its own process.
    Demo(DemoArgs),
    /// Draw the space-time diagram of a run from its JSON logs: a lifeline per process, an arrow per
    /// message, the Lamport time at both ends.
    Diagram(DiagramArgs),
    /// Ask a service whether it is serving, through the standard gRPC health service: exits 0 if it is.
    /// For container health checks.
    Health(HealthArgs),
    /// Check a run's history from its JSON logs: nothing lost, nothing duplicated or invented, one order
    /// everywhere, no gap in seq, and the Lamport clock condition on every message. Exits 1 on any
    /// violation.
    Check(CheckArgs),
    /// Measure a service under load, optionally side by side with NATS and across deployments
    /// (`--nodes 1,3`): `fanout`, `ingest`, `room`, `idle` or `churn`, with a table, `--json` figures
    /// and a `--plot` chart.
    Bench(chitty_bench::BenchArgs),
    /// Watch running services live, from their metrics endpoints (`serve --metrics-listen`): per node and
    /// in total, whether it is up, participants present, messages and deliveries per second, the p99 of
    /// Publish latency over the interval, slow readers cut off, refusals, the Lamport clock and last seq,
    /// and in cluster mode each node's lag.
    ///
    /// In a terminal it is a full-screen table (q, Esc or Ctrl-C quits); otherwise, or with --plain, one
    /// block of plain lines per refresh, a column per figure, `-` where there is none.
    Top(TopArgs),
}

#[derive(Debug, Args)]
struct TopArgs {
    /// A node's metrics endpoint: a URL, or host:port (`http://` and `/metrics` are added). Repeat it, or
    /// separate URLs by commas, to watch every node of a cluster.
    #[arg(
        long = "metrics",
        value_name = "URL",
        default_value = "http://127.0.0.1:9464/metrics",
        value_delimiter = ',',
        value_parser = chitty_top::metrics_url
    )]
    metrics: Vec<chitty_top::Uri>,
    /// How often to scrape every node; rates and the p99 are over this interval.
    #[arg(long, default_value = "1s", value_parser = positive_duration)]
    interval: Duration,
    /// Stop after this many refreshes, for scripts and tests. Without it, run until q, Esc or Ctrl-C in
    /// the terminal, or until SIGINT or SIGTERM.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    count: Option<u64>,
    /// Plain lines even in a terminal.
    #[arg(long)]
    plain: bool,
}

impl TopArgs {
    /// Whether to open the full-screen view rather than print plain lines.
    fn wants_terminal_ui(&self) -> bool {
        use std::io::IsTerminal as _;
        !self.plain && std::io::stdout().is_terminal()
    }
}

/// A duration of at least a millisecond, in humantime's words (`200ms`, `2s`).
fn positive_duration(given: &str) -> Result<Duration, String> {
    let duration = humantime::parse_duration(given).map_err(|error| error.to_string())?;
    if duration < Duration::from_millis(1) {
        return Err("must be at least 1ms".to_owned());
    }
    Ok(duration)
}

#[derive(Debug, Args)]
struct CheckArgs {
    /// A directory of JSON logs (one file per process, as the demo writes them), or one file of
    /// `docker compose logs` output.
    #[arg(value_name = "DIR")]
    logs: PathBuf,
}

#[derive(Debug, Args)]
struct HealthArgs {
    /// The service's address.
    #[arg(long, default_value = "http://127.0.0.1:50051")]
    server: String,
    /// Trust the certificate authority in this PEM file, for a service serving TLS.
    #[arg(long, value_name = "PEM")]
    ca: Option<PathBuf>,
    /// How long to wait for an answer.
    #[arg(long, default_value = "3s", value_parser = humantime::parse_duration)]
    timeout: Duration,
}

#[derive(Debug, Args)]
struct DiagramArgs {
    /// A directory of JSON logs (one file per process, as the demo writes them), or one file of
    /// `docker compose logs` output.
    #[arg(value_name = "DIR")]
    logs: PathBuf,
    /// Write the diagram here instead of to standard output.
    #[arg(short, long, value_name = "FILE")]
    output: Option<PathBuf>,
    /// `svg` for a picture, `mermaid` for a `sequenceDiagram` to embed in Markdown.
    #[arg(long, default_value = "svg", value_parser = ["svg", "mermaid"])]
    format: String,
    /// Draw only the events from this seq on (with --to), and the calls and deliveries behind them.
    #[arg(long, requires = "to", conflicts_with = "participant")]
    from: Option<u64>,
    /// Draw only the events up to this seq (with --from).
    #[arg(long, requires = "from")]
    to: Option<u64>,
    /// Draw only what this participant did and received, and who received its messages.
    #[arg(long, value_name = "NAME")]
    participant: Option<String>,
}

#[derive(Debug, Args)]
struct ServeArgs {
    /// Address to listen on. Port 0 picks a free port; the chosen address is printed on standard output.
    #[arg(long, default_value = "127.0.0.1:50051")]
    listen: SocketAddr,
    /// Directory for the service's database: history, sessions and clock survive restarts there.
    /// Defaults to the platform's data directory (on Linux, ~/.local/share/chitty-chat).
    #[arg(long, value_name = "DIR", conflicts_with_all = ["in_memory", "nats"])]
    data_dir: Option<PathBuf>,
    /// Keep everything in memory: history and sessions are lost when the service stops.
    #[arg(long, conflicts_with = "nats")]
    in_memory: bool,
    /// Cluster mode: serve one chat together with every node given the same NATS servers (and
    /// --nats-prefix), keeping history, names and sessions in NATS JetStream instead of --data-dir.
    /// Several URLs, separated by commas, are tried in turn.
    #[arg(long, value_name = "URLS", value_delimiter = ',')]
    nats: Vec<String>,
    /// In cluster mode, this node's name, unique among the nodes: letters, digits, '-' and '_'. A node
    /// restarted under the same id takes its streams over at once. Defaults to the host name and port.
    #[arg(long, requires = "nats")]
    node_id: Option<String>,
    /// In cluster mode, how many JetStream servers keep a copy of the history and the membership (1 to
    /// 5); with 3, the chat goes on while any one server is down.
    #[arg(long, default_value_t = 1, requires = "nats", value_parser = clap::value_parser!(u8).range(1..=5))]
    replicas: u8,
    /// In cluster mode, the prefix of the JetStream stream and buckets: nodes with the same prefix serve
    /// the same chat.
    #[arg(long, default_value = "chitty", requires = "nats")]
    nats_prefix: String,
    /// How long a participant may go without an open Broadcast stream before it is announced as left.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    grace: Duration,
    /// How many of the latest events the service keeps for participants that reconnect.
    #[arg(long, default_value_t = 100_000, value_parser = clap::value_parser!(u32).range(1..))]
    retain_events: u32,
    /// How many mebibytes of the latest events the service keeps, estimated; whichever bound is reached
    /// first applies.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..))]
    retain_mib: u32,
    /// How many unread events a participant's stream may queue before it is cut off as too slow.
    #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..))]
    stream_queue: u32,
    /// The most participants present at once.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1..))]
    max_participants: u32,
    /// How many messages per second each participant may publish, on average.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..))]
    publish_rate: u32,
    /// How many messages a participant may publish in a burst.
    #[arg(long, default_value_t = 40, value_parser = clap::value_parser!(u32).range(1..))]
    publish_burst: u32,
    /// A secret every participant must present to join. Prefer the environment variable, which other
    /// users of the machine cannot read from the process list.
    #[arg(long, env = "CHITTY_CHAT_JOIN_SECRET", hide_env_values = true)]
    join_secret: Option<String>,
    /// Serve TLS with this PEM certificate chain (requires --tls-key).
    #[arg(long, value_name = "PEM", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert.
    #[arg(long, value_name = "PEM", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// How often to ping each participant's connection to find out whether it is still there.
    #[arg(long, default_value = "3s", value_parser = humantime::parse_duration)]
    keepalive_interval: Duration,
    /// How long a ping may go unanswered before the connection is declared dead.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    keepalive_timeout: Duration,
    /// The most calls one connection may have in flight at once (concurrent HTTP/2 streams). A
    /// participant needs two; raise it for clients that pipeline calls, such as the load harness.
    #[arg(
        long,
        default_value_t = chitty_service::DEFAULT_MAX_STREAMS_PER_CONNECTION,
        value_parser = clap::value_parser!(u32).range(2..=1024)
    )]
    max_streams_per_connection: u32,
    /// Do not serve gRPC server reflection. By default the service describes itself and the health
    /// service over reflection (v1 and v1alpha), so that grpcurl and similar tools work without the
    /// proto files; with this flag reflection calls answer UNIMPLEMENTED.
    #[arg(long)]
    no_reflection: bool,
    /// Serve Prometheus metrics on `GET /metrics` at this address (for example 127.0.0.1:9464); off by
    /// default. Port 0 picks a free port; the chosen address is printed on standard output, on the line
    /// after the gRPC address. The endpoint has no authentication: keep it on loopback or a private
    /// network.
    #[arg(long, value_name = "ADDR")]
    metrics_listen: Option<SocketAddr>,
    /// Let pages served from this origin (for example https://chat.example.com) call the service over
    /// gRPC-Web (CORS); repeat it for several. None by default: the page the service serves itself at
    /// http://ADDRESS/ needs none.
    #[arg(long, value_name = "ORIGIN", value_parser = WebOrigin::parse)]
    web_origin: Vec<WebOrigin>,
}

#[derive(Debug, Args)]
struct JoinArgs {
    /// The name to join under: 1 to 32 printable characters, unique among those present.
    #[arg(long)]
    name: String,
    /// The service's address; several, separated by commas, are tried in turn when reconnecting.
    #[arg(long, default_value = "http://127.0.0.1:50051", value_delimiter = ',')]
    server: Vec<String>,
    /// Connect with TLS, trusting the certificate authority in this PEM file.
    #[arg(long, value_name = "PEM")]
    ca: Option<PathBuf>,
    /// The service's join secret, if it has one.
    #[arg(long, env = "CHITTY_CHAT_JOIN_SECRET", hide_env_values = true)]
    join_secret: Option<String>,
    /// How long to try reaching the service before giving up, for the first connection and each attempt.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    connect_timeout: Duration,
    /// How long to keep trying to reconnect after the connection is lost.
    #[arg(long, default_value = "5min", value_parser = humantime::parse_duration)]
    reconnect_for: Duration,
    /// Keep line mode even in a terminal. Without it, a participant whose standard input and output are
    /// both a terminal opens the full-screen chat (Enter sends, PgUp/PgDn scroll, /help lists the
    /// commands, Ctrl-C or /quit leaves); otherwise it reads lines and prints one line per event.
    #[arg(long)]
    plain: bool,
    #[command(flatten)]
    script: ScriptArgs,
}

impl JoinArgs {
    /// Whether to open the full-screen terminal UI rather than line mode.
    fn wants_terminal_ui(&self) -> bool {
        use std::io::IsTerminal as _;
        !self.plain
            && !self.script.is_scripted()
            && std::io::stdin().is_terminal()
            && std::io::stdout().is_terminal()
    }
}

/// Runs the command line; errors come back to `main`, which prints them on one line.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    // A participant without a log file shares its terminal with the chat: keep that readable. The
    // full-screen UI owns the whole terminal, where any log line would corrupt the screen, so without
    // --log-file it logs nothing at all; what matters shows in its status line.
    let default_level = match (&cli.command, &cli.log.log_file) {
        (Command::Join(args), None) if args.wants_terminal_ui() => None,
        (Command::Join(_), None) => Some("warn"),
        // The same holds for the full-screen `top`; its plain lines are for scripts.
        (Command::Top(args), None) if args.wants_terminal_ui() => None,
        (Command::Top(_), _) => Some("warn"),
        // The load generator's own clients (async-nats among them) would log every connection.
        (Command::Bench(_), _) => Some("warn"),
        _ => Some("info"),
    };
    if let Some(default_level) = default_level {
        crate::logging::init(&cli.log, default_level)?;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        match cli.command {
            Command::Serve(args) => serve(args).await,
            Command::Join(args) => join(args).await,
            Command::Demo(args) => crate::demo::run(args).await,
            Command::Diagram(args) => diagram(args),
            Command::Health(args) => health(args).await,
            Command::Check(args) => check(&args.logs),
            Command::Bench(args) => Ok(chitty_bench::run(args, crate::harness::LISTENING).await?),
            Command::Top(args) => top(args).await,
        }
    })
}

async fn serve(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let storage = if !args.nats.is_empty() {
        let node_id = match &args.node_id {
            Some(node_id) => node_id.clone(),
            None => default_node_id(args.listen.port()),
        };
        let mut cluster = ClusterConfig::new(args.nats.clone(), node_id);
        cluster.replicas = usize::from(args.replicas);
        cluster.retain_events = u64::from(args.retain_events);
        cluster.retain_bytes = u64::from(args.retain_mib) * 1024 * 1024;
        cluster.prefix.clone_from(&args.nats_prefix);
        Storage::Cluster(cluster)
    } else if args.in_memory {
        Storage::Memory
    } else {
        Storage::Directory(match args.data_dir {
            Some(directory) => directory,
            None => ProjectDirs::from("", "", "chitty-chat")
                .context("cannot find the platform's data directory; pass --data-dir")?
                .data_dir()
                .to_owned(),
        })
    };
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(certificate), Some(key)) => Some(TlsFiles {
            certificate: std::fs::read(certificate)
                .with_context(|| format!("cannot read {}", certificate.display()))?,
            key: std::fs::read(key).with_context(|| format!("cannot read {}", key.display()))?,
        }),
        _ => None,
    };
    let listener = TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let address = listener
        .local_addr()
        .context("cannot read the listening address")?;
    if !address.ip().is_loopback() && tls.is_none() {
        warn!(
            component = SERVICE,
            event = ServiceEvent::Plaintext.as_str(),
            address = %address,
            reason = "serving plaintext gRPC on a non-loopback address: anyone on the network can read the chat; use --tls-cert and --tls-key",
        );
    }
    let config = ServeConfig {
        chat: ChatConfig {
            grace: args.grace,
            hub: HubConfig {
                retention: Retention {
                    events: args.retain_events as usize,
                    bytes: args.retain_mib as usize * 1024 * 1024,
                },
                queue_capacity: args.stream_queue as usize,
            },
            max_participants: args.max_participants as usize,
            publish_rate: Rate {
                per_second: NonZeroU32::new(args.publish_rate)
                    .context("--publish-rate must be positive")?,
                burst: NonZeroU32::new(args.publish_burst)
                    .context("--publish-burst must be positive")?,
            },
            join_secret: args.join_secret.filter(|secret| !secret.is_empty()),
        },
        storage,
        tls,
        keepalive_interval: args.keepalive_interval,
        keepalive_timeout: args.keepalive_timeout,
        max_streams_per_connection: args.max_streams_per_connection,
        reflection: !args.no_reflection,
        web_origins: args.web_origin,
    };
    let metrics_listener = match args.metrics_listen {
        Some(metrics_address) => Some(
            TcpListener::bind(metrics_address)
                .await
                .with_context(|| format!("cannot listen for metrics on {metrics_address}"))?,
        ),
        None => None,
    };
    let mut stdout = std::io::stdout();
    writeln!(stdout, "{}{address}", crate::harness::LISTENING)
        .and_then(|()| match &metrics_listener {
            Some(metrics_listener) => writeln!(
                stdout,
                "{}{}",
                crate::harness::METRICS_LISTENING,
                metrics_listener.local_addr()?
            ),
            None => Ok(()),
        })
        .and_then(|()| stdout.flush())
        .context("cannot write to standard output")?;
    chitty_service::serve_with_metrics(listener, metrics_listener, config, shutdown_signal())
        .await?;
    Ok(ExitCode::SUCCESS)
}

/// A node id from the host name and the port: unique among nodes on different hosts, or on different
/// ports of one host, and the same when the node restarts.
fn default_node_id(port: u16) -> String {
    let host = nix::unistd::gethostname()
        .ok()
        .and_then(|host| host.into_string().ok())
        .unwrap_or_default();
    let host: String = host
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .take(48)
        .collect();
    if host.is_empty() {
        format!("node-{port}")
    } else {
        format!("{host}-{port}")
    }
}

async fn join(args: JoinArgs) -> anyhow::Result<ExitCode> {
    let ca = match &args.ca {
        Some(path) => {
            Some(std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?)
        }
        None => None,
    };
    let terminal_ui = args.wants_terminal_ui();
    let shutdown = CancellationToken::new();
    let signalled = shutdown.clone();
    tokio::spawn(async move {
        shutdown_signal().await;
        signalled.cancel();
    });
    // A scripted participant leaves at --leave-after by ending its input, after sending what it has; any
    // other leaves then as if signalled.
    if let (false, Some(after)) = (args.script.is_scripted(), args.script.leave_after) {
        let leave = shutdown.clone();
        tokio::spawn(async move {
            tokio::time::sleep(after).await;
            leave.cancel();
        });
    }
    let config = ParticipantConfig {
        servers: args.server,
        name: args.name,
        connection: Connection {
            timeout: args.connect_timeout,
            ca,
        },
        join_secret: args.join_secret.unwrap_or_default(),
        reconnect_for: args.reconnect_for,
        backoff: Backoff::default(),
    };
    if terminal_ui {
        chitty_participant::run_tui(config, shutdown).await?;
    } else {
        let input = if args.script.is_scripted() {
            args.script.spawn()?
        } else {
            chitty_participant::input::spawn_reader(std::io::BufReader::new(std::io::stdin()))
        };
        chitty_participant::run(
            config,
            input,
            tokio::io::stdout(),
            tokio::io::stderr(),
            shutdown,
        )
        .await?;
    }
    Ok(ExitCode::SUCCESS)
}

async fn health(args: HealthArgs) -> anyhow::Result<ExitCode> {
    let ca = match &args.ca {
        Some(path) => {
            Some(std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?)
        }
        None => None,
    };
    let connection = Connection {
        timeout: args.timeout,
        ca,
    };
    let client = chitty_participant::client::ChatClient::connect(&args.server, &connection).await?;
    if client.is_serving().await? {
        println!("serving");
        Ok(ExitCode::SUCCESS)
    } else {
        println!("not serving");
        Ok(ExitCode::FAILURE)
    }
}

async fn top(args: TopArgs) -> anyhow::Result<ExitCode> {
    let output = if args.wants_terminal_ui() {
        chitty_top::Output::Terminal
    } else {
        chitty_top::Output::Plain
    };
    let config = chitty_top::TopConfig {
        urls: args.metrics,
        interval: args.interval,
        count: args.count,
    };
    let stop = CancellationToken::new();
    let signalled = stop.clone();
    let signals = tokio::spawn(async move {
        shutdown_signal().await;
        signalled.cancel();
    });
    let shown = chitty_top::run(config, output, stop).await;
    signals.abort();
    shown?;
    Ok(ExitCode::SUCCESS)
}

fn check(logs: &std::path::Path) -> anyhow::Result<ExitCode> {
    let run = chitty_logs::read_dir(logs)?;
    let report = chitty_check::check(&run);
    // A reader that stops early (`check DIR | head`) is not an error; the verdict is the exit status.
    let mut stdout = std::io::stdout().lock();
    if let Err(error) = write!(stdout, "{report}").and_then(|()| stdout.flush())
        && error.kind() != std::io::ErrorKind::BrokenPipe
    {
        return Err(anyhow::Error::new(error).context("cannot write the report"));
    }
    Ok(if report.is_ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn diagram(args: DiagramArgs) -> anyhow::Result<ExitCode> {
    let run = chitty_diagram::read_dir(&args.logs)?;
    if run.skipped_lines() > 0 {
        eprintln!(
            "chitty-chat: skipped {} lines that are not Chitty-Chat log records",
            run.skipped_lines()
        );
    }
    let window = match (args.from, args.to, args.participant) {
        (Some(from), Some(to), _) => Window::Seqs { from, to },
        (_, _, Some(name)) => Window::Participant(name),
        _ => Window::All,
    };
    let format: Format = args.format.parse()?;
    let drawn = run.diagram(&window)?.render(format);
    match &args.output {
        Some(path) => std::fs::write(path, drawn)
            .with_context(|| format!("cannot write {}", path.display()))?,
        None => std::io::stdout()
            .write_all(drawn.as_bytes())
            .context("cannot write to standard output")?,
    }
    Ok(ExitCode::SUCCESS)
}

/// Completes on Ctrl-C (SIGINT) or SIGTERM.
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut terminate) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = terminate.recv() => {}
            }
        }
        Err(error) => {
            warn!(
                component = COMMAND,
                event = CommandEvent::Signal.as_str(),
                reason = %format!("cannot listen for SIGTERM, so only Ctrl-C stops this process: {error}"),
            );
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
