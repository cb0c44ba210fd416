//! Where log lines go and what they look like.
//!
//! Every line is a `tracing` event with stable field names: `component` (`service`, or the participant's
//! name), `event` (what happened: `join`, `publish`, `broadcast`, `receive`, ...), and where they apply
//! `participant`, `seq`, `lamport` and the other Lamport times of a call. `docs/logs.md` lists them all.
//!
//! `--log-format json` writes one JSON object per line, with those fields at the top level next to
//! `timestamp`, `level` and `target`; it is what the diagram and checker tools read. `--log-file` appends
//! to a file instead of standard error (`-` is standard output, for containers). `RUST_LOG` chooses levels
//! as usual. The default is `info`, except for a participant in line mode logging to standard error, which
//! shares the terminal with the chat: there it is `warn`; and the full-screen chat, which owns the whole
//! terminal, installs no logger at all unless given `--log-file`.

use std::fs::OpenOptions;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Mutex;

use anyhow::Context;
use clap::{Args, ValueEnum};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::writer::BoxMakeWriter;

/// The format of log lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line, for tools.
    Json,
}

/// The logging flags every command accepts.
#[derive(Debug, Clone, Args)]
pub struct LogArgs {
    /// Log line format: `text` for people, `json` (one object per line, stable field names) for tools.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Append log lines to this file instead of writing them to standard error; `-` is standard output.
    #[arg(long, global = true, value_name = "PATH")]
    pub log_file: Option<PathBuf>,
}

/// Installs the global logger described by `args`. Without `RUST_LOG`, lines of `default_level` and above
/// are written.
pub fn init(args: &LogArgs, default_level: &str) -> anyhow::Result<()> {
    let (writer, ansi) = match &args.log_file {
        // `-` is standard output: what a container's log collector reads.
        Some(path) if path.as_os_str() == "-" => (BoxMakeWriter::new(std::io::stdout), false),
        Some(path) => {
            let file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .with_context(|| format!("cannot open the log file {}", path.display()))?;
            // Each line is written with one unbuffered write, so a process killed with SIGKILL loses none.
            (BoxMakeWriter::new(Mutex::new(file)), false)
        }
        None => (
            BoxMakeWriter::new(std::io::stderr),
            std::io::stderr().is_terminal(),
        ),
    };
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_ansi(ansi);
    let installed = match args.log_format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .try_init(),
    };
    installed.map_err(|error| anyhow::anyhow!("cannot install the logger: {error}"))
}
