//! Reads the JSON log lines of a Chitty-Chat run into typed records, grouped by the process that wrote them.
//!
//! Every process of a run, the service and each participant, logs one JSON object per line with stable
//! field names (`docs/logs.md`). The tools that look at a run afterwards, the space-time diagram
//! (`chitty-diagram`) and the history checker (`chitty-check`), all start the same way: read every line,
//! keep the ones that are log records, and group them by the `component` that wrote them. This crate is
//! that first step, and nothing more.
//!
//! ```no_run
//! # fn main() -> Result<(), chitty_logs::LogsError> {
//! let run = chitty_logs::read_dir("demo-logs")?;
//! if run.skipped_lines() > 0 {
//!     eprintln!("skipped {} lines that are not Chitty-Chat log records", run.skipped_lines());
//! }
//! for (component, records) in run.components() {
//!     if let Some(first) = records.first() {
//!         println!("{component}: {} records, the first at {}", records.len(), first.location);
//!     }
//! }
//! # Ok(())
//! # }
//! ```
//!
//! # Layout
//!
//! - `record`: one line on its own. [`parse_line`] turns a line, plain or behind a `docker compose logs`
//!   prefix, into a [`Line`]: blank, skipped, or a [`Record`] with the documented fields typed and the
//!   [`Location`] it was read from.
//! - `vocabulary`: the words lines are written in, shared by the processes that write them and the
//!   tools that read them: [`ServiceEvent`], [`ClusterEvent`], [`ParticipantEvent`] and
//!   [`CommandEvent`] name every `event`, [`Field`] every field, [`EventKind`] the kinds of chat event,
//!   and [`Call`] with [`CallStep`] how a participant's lines make up its calls.
//! - `run`: a whole run. [`read_dir`] reads a directory of log files (or one combined file) into a [`Run`],
//!   which holds each component's records in the order that component wrote them, and counts the lines
//!   that were skipped. [`Run::processes_of`] splits one component's records by the [`Process`] that
//!   wrote them (file, or `docker compose logs` container): the nodes of a cluster all log as `service`.
//! - `testing` (feature `testing`, for the tools' tests only): the golden-file comparison that
//!   `chitty-check` and `chitty-diagram` hold their output to.
//!
//! Nothing here panics on bad input: a line that is not a log record is skipped and counted, a field of an
//! unexpected type reads as missing, and the only errors are the [`LogsError`]s of reading files.

#![deny(missing_docs)]

mod record;
mod run;
#[cfg(feature = "testing")]
pub mod testing;
mod vocabulary;

use std::path::PathBuf;

pub use record::{Line, Location, Record, parse_line};
pub use run::{Process, Run, read_dir};
pub use vocabulary::{
    CLUSTER, COMMAND, Call, CallStep, ClusterEvent, CommandEvent, EventKind, Field,
    ParticipantEvent, SERVICE, ServiceEvent,
};

/// Everything that can go wrong while reading the logs of a run.
#[derive(Debug, thiserror::Error)]
pub enum LogsError {
    /// A log directory or file could not be read.
    #[error("cannot read the logs at {}: {error}", path.display())]
    Read {
        /// The directory or file that could not be read.
        path: PathBuf,
        /// Why it could not be read.
        error: std::io::Error,
    },
    /// The logs were read, but not one line in them is a Chitty-Chat log record.
    #[error(
        "found no Chitty-Chat log records at {}: {skipped} lines were skipped because they are not JSON objects with `component` and `event` fields",
        path.display()
    )]
    NoRecords {
        /// The directory or file that was read.
        path: PathBuf,
        /// How many non-blank lines were skipped.
        skipped: usize,
    },
}
