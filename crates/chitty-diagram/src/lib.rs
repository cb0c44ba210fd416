//! Space-time (Lamport) diagrams of a Chitty-Chat run, drawn from the JSON logs its processes wrote.
//!
//! Every process of a run, the service and each participant, logs one JSON object per line with stable
//! field names (`docs/logs.md`). A call appears in two logs, once where it was sent and once where it
//! was received, and each side records its own Lamport time. This crate pairs those lines up again and
//! draws the run the way a distributed-systems textbook does: one vertical lifeline per process, time
//! flowing downwards, and an arrow for every message, with the Lamport time written at both ends.
//!
//! ```no_run
//! use chitty_diagram::{Window, read_dir};
//!
//! # fn main() -> Result<(), chitty_diagram::DiagramError> {
//! let run = read_dir("demo-logs")?;
//! if run.skipped_lines() > 0 {
//!     eprintln!("skipped {} lines that are not Chitty-Chat log records", run.skipped_lines());
//! }
//! let diagram = run.diagram(&Window::Participant("alice".to_owned()))?;
//! std::fs::write("alice.svg", diagram.to_svg()).ok();
//! # Ok(())
//! # }
//! ```
//!
//! # Layout
//!
//! - [`read_dir`] (here): reads a directory (or one file) of log lines with the `chitty-logs` crate, in
//!   the format of `docs/logs.md` or prefixed the way `docker compose logs` prints them, into records
//!   grouped by their `component`, and pairs them into a [`Run`].
//! - `model`: pairs the records into calls (Join, Publish, Leave), events and their deliveries, and
//!   crash-leaves ([`Run`]); selects what a [`Window`] asks for and turns it into a [`Diagram`] of
//!   lifelines, points and arrows. The service is one lifeline, or for a cluster (`serve --nats`) one
//!   lifeline per node.
//! - `layout`: gives every point a row and every lifeline a column, and places every label so that no
//!   two overlap.
//! - `svg`: writes a laid-out diagram as a standalone SVG document, by hand, with XML escaping.
//! - `mermaid`: writes a diagram as Mermaid `sequenceDiagram` text.
//!
//! Nothing here panics on bad input: a line that is not a log record is skipped and counted, a call
//! whose other side is missing is drawn as far as it is known, and every failure is a [`DiagramError`].

#![deny(missing_docs)]

mod layout;
mod mermaid;
mod model;
mod svg;
#[cfg(test)]
mod testing;

use std::fmt;
use std::path::Path;
use std::str::FromStr;

use chitty_logs::LogsError;

pub use model::{Diagram, Run, Window};

/// Reads the logs of one run: every file in the directory `path`, or the one file `path`.
///
/// In a directory every regular file is read, in the order of its name, except hidden ones (whose name
/// starts with `.`); subdirectories are not entered. Bytes that are not UTF-8 are read as U+FFFD, so
/// a stray binary file only adds skipped lines. Records are grouped by their `component`, whatever file
/// they came from, so one combined file (`docker compose logs > run.log`) works as well as a directory.
/// [`chitty_logs::read_dir`] does the reading.
///
/// # Errors
///
/// [`DiagramError::Logs`] if the directory or a file in it cannot be read, or not one line is a
/// Chitty-Chat log record.
pub fn read_dir(path: impl AsRef<Path>) -> Result<Run, DiagramError> {
    let logs = chitty_logs::read_dir(path)?;
    Ok(Run::from_logs(&logs))
}

/// Everything that can go wrong while reading logs or drawing a diagram.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DiagramError {
    /// The logs could not be read, or hold no Chitty-Chat log record.
    #[error(transparent)]
    Logs(#[from] LogsError),
    /// A [`Window::Participant`] names someone who does not appear in the logs.
    #[error("no participant named {name:?} appears in the logs; the participants are: {known}")]
    UnknownParticipant {
        /// The name that was asked for.
        name: String,
        /// The participants that do appear, comma-separated.
        known: String,
    },
    /// A [`Window::Seqs`] whose start is after its end.
    #[error("the seq range {from} to {to} is empty because its start is greater than its end")]
    EmptyRange {
        /// The first seq asked for.
        from: u64,
        /// The last seq asked for.
        to: u64,
    },
    /// A window that is valid but selects no call, event or delivery of the run.
    #[error(
        "the window {window} selects nothing: no call, event or delivery of the run falls in it"
    )]
    EmptyWindow {
        /// The window, described in words.
        window: String,
    },
    /// A format name that [`Format::from_str`] does not know.
    #[error("unknown diagram format {0:?}: the formats are `svg` and `mermaid`")]
    UnknownFormat(String),
}

/// The output formats a [`Diagram`] can be written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    /// A standalone SVG picture ([`Diagram::to_svg`]).
    #[default]
    Svg,
    /// Mermaid `sequenceDiagram` text ([`Diagram::to_mermaid`]).
    Mermaid,
}

impl FromStr for Format {
    type Err = DiagramError;

    /// Parses `svg` or `mermaid` (also `mmd`), ignoring ASCII case.
    fn from_str(name: &str) -> Result<Self, Self::Err> {
        match name.to_ascii_lowercase().as_str() {
            "svg" => Ok(Format::Svg),
            "mermaid" | "mmd" => Ok(Format::Mermaid),
            _ => Err(DiagramError::UnknownFormat(name.to_owned())),
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(match self {
            Format::Svg => "svg",
            Format::Mermaid => "mermaid",
        })
    }
}

impl Diagram {
    /// Writes the diagram in `format`: [`Diagram::to_svg`] or [`Diagram::to_mermaid`].
    pub fn render(&self, format: Format) -> String {
        match format {
            Format::Svg => self.to_svg(),
            Format::Mermaid => self.to_mermaid(),
        }
    }

    /// Writes the diagram as a standalone SVG document.
    pub fn to_svg(&self) -> String {
        svg::write(&layout::Layout::of(self))
    }

    /// Writes the diagram as Mermaid `sequenceDiagram` text.
    pub fn to_mermaid(&self) -> String {
        mermaid::write(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{Simulation, Step, check_mermaid_statements, check_svg_markup};

    #[test]
    fn hostile_names_and_messages_stay_text_in_both_formats() {
        let name = "<b>&amp;";
        let run = Run::parse(&Simulation::run(&[
            Step::Join(name.to_owned()),
            Step::Publish(name.to_owned(), "<script>\"x\"&'y';#\nz".to_owned()),
        ]));
        let diagram = run
            .diagram(&Window::Participant(name.to_owned()))
            .unwrap_or_else(|error| panic!("{error}"));

        let svg = diagram.to_svg();
        check_svg_markup(&svg).unwrap_or_else(|problem| panic!("{problem}"));
        assert!(
            !svg.contains("<script") && !svg.contains("<b>"),
            "raw markup in {svg}"
        );
        assert!(
            svg.contains(
                "4. Publish &quot;&lt;script&gt;&quot;x&quot;&amp;&apos;y&apos;;# z&quot;"
            ),
            "the message is escaped, its line break a space: {svg}"
        );
        assert!(
            svg.contains(">&lt;b&gt;&amp;amp;</text>"),
            "the name is escaped: {svg}"
        );

        let mermaid = diagram.to_mermaid();
        check_mermaid_statements(&mermaid).unwrap_or_else(|problem| panic!("{problem}"));
        assert!(
            mermaid.contains("    participant p1 as #lt;b#gt;#38;amp#59;\n"),
            "got {mermaid}"
        );
        assert!(
            mermaid.contains(
                "    p1->>service: 4. Publish \"#lt;script#gt;\"x\"#38;'y'#59;#35; z\" (L"
            ),
            "got {mermaid}"
        );
    }

    #[test]
    fn reading_errors_keep_their_variant_and_message() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        std::fs::write(dir.path().join("a.log"), "hello\nworld\n").expect("the file is written");
        let error = read_dir(dir.path()).err();
        assert!(
            matches!(
                error,
                Some(DiagramError::Logs(LogsError::NoRecords { skipped: 2, .. }))
            ),
            "got {error:?}, want NoRecords with 2 skipped lines"
        );
        let message = error.map(|error| error.to_string()).unwrap_or_default();
        assert!(
            message.starts_with("found no Chitty-Chat log records at "),
            "got {message:?}"
        );
        let error = read_dir(dir.path().join("nope")).err();
        assert!(
            matches!(&error, Some(DiagramError::Logs(LogsError::Read { path, .. })) if path.ends_with("nope")),
            "got {error:?}, want a read error naming the missing directory"
        );
    }

    #[test]
    fn formats_parse_by_name_and_reject_others() {
        assert_eq!("svg".parse::<Format>().ok(), Some(Format::Svg));
        assert_eq!("Mermaid".parse::<Format>().ok(), Some(Format::Mermaid));
        assert_eq!("mmd".parse::<Format>().ok(), Some(Format::Mermaid));
        let error = "png".parse::<Format>().err().map(|error| error.to_string());
        assert_eq!(
            error.as_deref(),
            Some("unknown diagram format \"png\": the formats are `svg` and `mermaid`")
        );
    }
}
