//! A whole run: every record read, grouped by the component that wrote it.
//!
//! A run is a directory with one log file per process, but nothing here relies on the file names: each
//! line names its process in its `component` field, so the lines of every file are read in turn and
//! grouped by that field. One combined file (`docker compose logs > run.log`) therefore reads the same as
//! a directory, and a service restarted with its log file appended is one component whose records run
//! through both lives, the second starting at its second `start` line.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::record::{Line, Location, Record, parse_line};
use crate::{LogsError, SERVICE};

/// The records of one run, grouped by component, and how many lines were not records.
///
/// Within a component, records are in the order they were read: the order the process wrote them, as long
/// as a component's lines are in one file, or in files whose names sort in the order they were written.
#[derive(Debug, Clone, Default)]
pub struct Run {
    /// Each component's records, in reading order, by component name.
    components: BTreeMap<String, Vec<Record>>,
    /// How many non-blank lines were not log records.
    skipped_lines: usize,
    /// The directory or file the run was read from, if it was read by [`read_dir`].
    origin: Option<PathBuf>,
}

impl Run {
    /// An empty run, to add text to with [`Run::add_text`].
    pub fn new() -> Run {
        Run::default()
    }

    /// Builds a run from log text, as if it were one log file without a name; unlike [`read_dir`], text
    /// without a single record gives an empty run rather than an error.
    pub fn parse(text: &str) -> Run {
        let mut run = Run::new();
        run.add_text(None, text);
        run
    }

    /// Reads every line of `text` into this run, as the contents of the file named `file` (which only
    /// names the records' [`Location`]s). Records are appended after those of earlier text.
    pub fn add_text(&mut self, file: Option<&str>, text: &str) {
        let file: Option<Arc<str>> = file.map(Arc::from);
        for (index, line) in text.lines().enumerate() {
            let location = Location {
                file: file.clone(),
                line: index + 1,
            };
            match parse_line(line, location) {
                Line::Blank => {}
                Line::Skipped => self.skipped_lines += 1,
                Line::Record(record) => self
                    .components
                    .entry(record.component.clone())
                    .or_default()
                    .push(*record),
            }
        }
    }

    /// The directory or file the run was read from, if [`read_dir`] read it.
    pub fn origin(&self) -> Option<&Path> {
        self.origin.as_deref()
    }

    /// How many non-blank lines were skipped because they are not JSON objects with `component` and
    /// `event`; a caller may warn about them.
    pub fn skipped_lines(&self) -> usize {
        self.skipped_lines
    }

    /// How many records were read, of every component.
    pub fn record_count(&self) -> usize {
        self.components.values().map(Vec::len).sum()
    }

    /// Whether not one record was read.
    pub fn is_empty(&self) -> bool {
        self.components.is_empty()
    }

    /// Every component with its records in reading order, by component name.
    pub fn components(&self) -> impl Iterator<Item = (&str, &[Record])> {
        self.components
            .iter()
            .map(|(name, records)| (name.as_str(), records.as_slice()))
    }

    /// The records of `component` in reading order, if it wrote any.
    pub fn component(&self, component: &str) -> Option<&[Record]> {
        self.components.get(component).map(Vec::as_slice)
    }

    /// The service's records in reading order, if its log was read.
    pub fn service(&self) -> Option<&[Record]> {
        self.component(SERVICE)
    }

    /// Every participant (every component but the service) with its records, by name.
    pub fn participants(&self) -> impl Iterator<Item = (&str, &[Record])> {
        self.components()
            .filter(|(component, _)| *component != SERVICE)
    }

    /// The records of `component` split by the process that wrote them, as far as the logs say: by the
    /// file they were read from and, in a `docker compose logs` file, by container. Each process's
    /// records stay in reading order; processes are in the order of their first record.
    ///
    /// This tells apart processes that share a component, such as the nodes of a cluster, which all log
    /// as `service`. Lives of one process, or several processes appending to one file, stay together.
    pub fn processes_of(&self, component: &str) -> Vec<Process<'_>> {
        let mut processes: Vec<Process<'_>> = Vec::new();
        for record in self.component(component).unwrap_or_default() {
            let file = record.location.file.as_deref();
            let container = record.container.as_deref();
            match processes
                .iter_mut()
                .find(|process| process.file == file && process.container == container)
            {
                Some(process) => process.records.push(record),
                None => processes.push(Process {
                    file,
                    container,
                    records: vec![record],
                }),
            }
        }
        processes
    }
}

/// The records one process wrote, as [`Run::processes_of`] finds them.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Process<'run> {
    /// The file its records were read from, as their [`Location`]s name it.
    pub file: Option<&'run str>,
    /// The `docker compose logs` container its records came from, if they had that prefix.
    pub container: Option<&'run str>,
    /// Its records, in reading order.
    pub records: Vec<&'run Record>,
}

impl Process<'_> {
    /// How to name the process to people: its container, else its file, else `the text`.
    pub fn name(&self) -> &str {
        self.container.or(self.file).unwrap_or("the text")
    }
}

/// Reads the logs of one run: every file in the directory `path`, or the one file `path`.
///
/// In a directory every regular file is read, in the order of its name, except hidden ones (whose name
/// starts with `.`); subdirectories are not entered. Bytes that are not UTF-8 are read as U+FFFD, so a
/// stray binary file only adds skipped lines. Records are grouped by their `component`, whatever file they
/// came from, and each keeps the file name and line number it was read at.
///
/// # Errors
///
/// [`LogsError::Read`] if the directory or a file in it cannot be read, and [`LogsError::NoRecords`] if
/// not one line is a Chitty-Chat log record.
pub fn read_dir(path: impl AsRef<Path>) -> Result<Run, LogsError> {
    let path = path.as_ref();
    let read_error = |at: &Path, error| LogsError::Read {
        path: at.to_path_buf(),
        error,
    };
    let metadata = fs::metadata(path).map_err(|error| read_error(path, error))?;
    // Each file with the name its records' locations carry.
    let files: Vec<(PathBuf, String)> = if metadata.is_dir() {
        let mut files = Vec::new();
        for entry in fs::read_dir(path).map_err(|error| read_error(path, error))? {
            let entry = entry.map_err(|error| read_error(path, error))?;
            let file = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            // `fs::metadata` follows symbolic links, so a link to a log file is read too.
            let is_file = fs::metadata(&file).is_ok_and(|metadata| metadata.is_file());
            if is_file && !name.starts_with('.') {
                files.push((file, name));
            }
        }
        files.sort();
        files
    } else {
        vec![(path.to_path_buf(), path.display().to_string())]
    };

    let mut run = Run::new();
    for (file, name) in &files {
        let bytes = fs::read(file).map_err(|error| read_error(file, error))?;
        run.add_text(Some(name), &String::from_utf8_lossy(&bytes));
    }
    if run.is_empty() {
        return Err(LogsError::NoRecords {
            path: path.to_path_buf(),
            skipped: run.skipped_lines,
        });
    }
    run.origin = Some(path.to_path_buf());
    Ok(run)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events(records: &[Record]) -> Vec<&str> {
        records.iter().map(|record| record.event.as_str()).collect()
    }

    #[test]
    fn garbage_lines_are_skipped_and_counted_and_blank_lines_ignored() {
        let run = Run::parse(concat!(
            "Compiling chitty-chat v0.1.0\n",
            "\n",
            "   \n",
            "[1, 2, 3]\n",
            "{\"component\":\"alice\"}\n",
            "{\"event\":\"join_sent\"}\n",
            "{\"component\":7,\"event\":\"join_sent\"}\n",
            "{not json at all}\n",
            "x | {\"component\":\"alice\",\"event\":\"join_sent\",\"lamport\":1}\n",
            "{\"component\":\"alice\",\"event\":\"join_ok\",\"seq\":\"one\",\"lamport\":3}\n",
        ));
        assert_eq!(run.skipped_lines(), 6, "skipped lines");
        let alice = run.component("alice").unwrap_or_default();
        assert_eq!(events(alice), ["join_sent", "join_ok"]);
        // A field of the wrong type reads as missing; the rest of the record stays.
        assert_eq!((alice[1].seq, alice[1].lamport), (None, Some(3)));
        // Line numbers count every line, blank or not.
        assert_eq!(
            (alice[0].location.line, alice[1].location.line),
            (9, 10),
            "line numbers"
        );
    }

    #[test]
    fn records_are_grouped_by_component_in_the_order_each_wrote_them() {
        let mut run = Run::new();
        run.add_text(
            Some("compose.log"),
            concat!(
                "service-1  | {\"component\":\"service\",\"event\":\"start\"}\n",
                "alice-1    | {\"component\":\"alice\",\"event\":\"connect\"}\n",
                "service-1  | {\"component\":\"service\",\"event\":\"join\",\"seq\":1}\n",
                "alice-1    | {\"component\":\"alice\",\"event\":\"join_ok\",\"seq\":1}\n",
            ),
        );
        let got: Vec<(&str, Vec<&str>)> = run
            .components()
            .map(|(name, records)| (name, events(records)))
            .collect();
        assert_eq!(
            got,
            [
                ("alice", vec!["connect", "join_ok"]),
                ("service", vec!["start", "join"])
            ]
        );
        assert_eq!(run.record_count(), 4);
        assert_eq!(
            run.participants().map(|(name, _)| name).collect::<Vec<_>>(),
            ["alice"]
        );
        let service = run.service().unwrap_or_default();
        assert_eq!(service[1].location.to_string(), "compose.log:3");
    }

    #[test]
    fn reading_a_directory_reads_every_file_whatever_its_name_but_hidden_ones() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let write = |name: &str, text: &str| {
            fs::write(dir.path().join(name), text).expect("the file is written");
        };
        write(
            "whatever.txt",
            "{\"component\":\"alice\",\"event\":\"join_sent\",\"lamport\":1}\nnoise\n",
        );
        write(
            ".hidden",
            "{\"component\":\"mallory\",\"event\":\"join_sent\",\"lamport\":1}\n",
        );
        fs::create_dir(dir.path().join("sub")).expect("the subdirectory is made");
        let run = read_dir(dir.path()).expect("the directory reads");
        assert_eq!(run.skipped_lines(), 1);
        assert_eq!(
            run.components().map(|(name, _)| name).collect::<Vec<_>>(),
            ["alice"]
        );
        assert_eq!(run.origin(), Some(dir.path()));
        let alice = run.component("alice").unwrap_or_default();
        assert_eq!(alice[0].location.to_string(), "whatever.txt:1");
        // One file alone reads the same way, and its records name the file by the path given.
        let file = dir.path().join("whatever.txt");
        let run = read_dir(&file).expect("the file reads");
        let alice = run.component("alice").unwrap_or_default();
        assert_eq!(
            alice[0].location.to_string(),
            format!("{}:1", file.display())
        );
    }

    #[test]
    fn a_directory_without_records_is_an_error_that_says_so() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        fs::write(dir.path().join("a.log"), "hello\nworld\n").expect("the file is written");
        let message = read_dir(dir.path()).err().map(|error| error.to_string());
        let message = message.unwrap_or_default();
        assert!(
            message.starts_with("found no Chitty-Chat log records at ")
                && message.contains("2 lines were skipped"),
            "got {message:?}"
        );
        let missing = read_dir(dir.path().join("nope"))
            .err()
            .map(|error| error.to_string());
        let missing = missing.unwrap_or_default();
        assert!(
            missing.starts_with("cannot read the logs at ") && missing.contains("nope"),
            "a missing directory must be a read error naming it, got {missing:?}"
        );
    }

    #[test]
    fn the_records_of_a_component_split_by_file_and_by_container() {
        let mut run = Run::new();
        run.add_text(
            Some("service-0.log"),
            "{\"component\":\"service\",\"event\":\"start\",\"node\":\"a\"}\n{\"component\":\"service\",\"event\":\"stop\"}\n",
        );
        run.add_text(
            Some("compose.log"),
            concat!(
                "service-1  | {\"component\":\"service\",\"event\":\"start\",\"node\":\"b\"}\n",
                "\u{1b}[36mservice-2  |\u{1b}[0m {\"component\":\"service\",\"event\":\"start\",\"node\":\"c\"}\n",
                "alice-1    | {\"component\":\"alice\",\"event\":\"connect\"}\n",
                "service-1  | {\"component\":\"service\",\"event\":\"stop\"}\n",
            ),
        );
        let processes = run.processes_of(SERVICE);
        let got: Vec<(&str, Vec<String>)> = processes
            .iter()
            .map(|process| {
                let lines = process
                    .records
                    .iter()
                    .map(|record| format!("{} {}", record.location, record.event))
                    .collect();
                (process.name(), lines)
            })
            .collect();
        assert_eq!(
            got,
            [
                (
                    "service-0.log",
                    vec![
                        "service-0.log:1 start".to_owned(),
                        "service-0.log:2 stop".to_owned()
                    ]
                ),
                (
                    "service-1",
                    vec![
                        "compose.log:1 start".to_owned(),
                        "compose.log:4 stop".to_owned()
                    ]
                ),
                ("service-2", vec!["compose.log:2 start".to_owned()]),
            ]
        );
        assert!(run.processes_of("nobody").is_empty());
    }

    #[test]
    fn text_without_records_parses_to_an_empty_run() {
        let run = Run::parse("no records here\n\n");
        assert!(run.is_empty());
        assert_eq!((run.skipped_lines(), run.record_count()), (1, 0));
        assert!(run.service().is_none());
    }
}
