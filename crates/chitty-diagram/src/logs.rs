//! Reading Chitty-Chat's JSON log lines into records.
//!
//! A run is a directory with one log file per process, but nothing here relies on the file names: each
//! line names its process in its `component` field, so the lines of every file are simply read in turn and
//! grouped by that field later. A line may also carry the prefix `docker compose logs` puts in front of it
//! (`alice-1  | {...}`, possibly with colour codes); everything before the first `{` is ignored.
//!
//! A line that is not a JSON object, or lacks a string `component` or `event`, is skipped and counted, so
//! the caller can warn about it. Blank lines are ignored without being counted. A field with an unexpected
//! type (a `seq` that is a string, say) reads as missing, and the record is drawn as far as it can be.

use std::fs;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use crate::DiagramError;
use crate::model::Run;

/// One log line that names its `component` and `event`, with the fields a diagram can use.
///
/// Field names follow `docs/logs.md`; a field a line does not carry is `None`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Record {
    /// `service`, or the participant's name.
    pub component: String,
    /// What happened, such as `publish_sent` or `broadcast`.
    pub event: String,
    /// The event's place in the one order everyone sees.
    pub seq: Option<u64>,
    /// The Lamport time of what the line records, at the process that logged it.
    pub lamport: Option<u64>,
    /// The caller's stamp on a request, as the service logs it.
    pub request_lamport: Option<u64>,
    /// The service's clock right after witnessing a request.
    pub received_lamport: Option<u64>,
    /// The stamp on a response.
    pub response_lamport: Option<u64>,
    /// The stamp on an event a participant received.
    pub event_lamport: Option<u64>,
    /// The participant a service line is about, or the author of a received event.
    pub participant: Option<String>,
    /// The kind of an event: `message`, `joined` or `left`.
    pub kind: Option<String>,
    /// The text of an event.
    pub text: Option<String>,
    /// Why a call was refused or a participant was announced left.
    pub reason: Option<String>,
    /// The call a `refused` line is about: `Join`, `Publish`, `Leave` or `Broadcast`.
    pub rpc: Option<String>,
    /// How many characters a published message has, on `publish_sent`.
    pub chars: Option<u64>,
}

/// What one line of a log turned out to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Line {
    /// A line with nothing but whitespace, ignored.
    Blank,
    /// A line that is not a log record.
    Skipped,
    /// A log record.
    Record(Box<Record>),
}

/// Every record read so far, in reading order, and how many lines were skipped.
#[derive(Debug, Clone, Default)]
pub(crate) struct Logs {
    /// The records, in the order their lines were read.
    pub records: Vec<Record>,
    /// How many non-blank lines were not log records.
    pub skipped: usize,
}

impl Logs {
    /// Reads every line of `text` into these logs.
    pub fn add_text(&mut self, text: &str) {
        for line in text.lines() {
            match parse_line(line) {
                Line::Blank => {}
                Line::Skipped => self.skipped += 1,
                Line::Record(record) => self.records.push(*record),
            }
        }
    }
}

/// Parses one line: a JSON object, possibly behind a `docker compose logs` prefix.
pub(crate) fn parse_line(line: &str) -> Line {
    if line.trim().is_empty() {
        return Line::Blank;
    }
    let Some(start) = line.find('{') else {
        return Line::Skipped;
    };
    let Ok(Value::Object(fields)) = serde_json::from_str::<Value>(line[start..].trim_end()) else {
        return Line::Skipped;
    };
    let (Some(component), Some(event)) = (string(&fields, "component"), string(&fields, "event"))
    else {
        return Line::Skipped;
    };
    Line::Record(Box::new(Record {
        component,
        event,
        seq: number(&fields, "seq"),
        lamport: number(&fields, "lamport"),
        request_lamport: number(&fields, "request_lamport"),
        received_lamport: number(&fields, "received_lamport"),
        response_lamport: number(&fields, "response_lamport"),
        event_lamport: number(&fields, "event_lamport"),
        participant: string(&fields, "participant"),
        kind: string(&fields, "kind"),
        text: string(&fields, "text"),
        reason: string(&fields, "reason"),
        rpc: string(&fields, "rpc"),
        chars: number(&fields, "chars"),
    }))
}

fn string(fields: &Map<String, Value>, name: &str) -> Option<String> {
    fields.get(name)?.as_str().map(str::to_owned)
}

fn number(fields: &Map<String, Value>, name: &str) -> Option<u64> {
    fields.get(name)?.as_u64()
}

/// Reads the logs of one run: every file in the directory `path`, or the one file `path`.
///
/// In a directory every regular file is read, in the order of its name, except hidden ones (whose name
/// starts with `.`); subdirectories are not entered. Bytes that are not UTF-8 are read as U+FFFD, so
/// a stray binary file only adds skipped lines. Records are grouped by their `component`, whatever file
/// they came from, so one combined file (`docker compose logs > run.log`) works as well as a directory.
///
/// # Errors
///
/// [`DiagramError::Read`] if the directory or a file in it cannot be read, and
/// [`DiagramError::NoRecords`] if not one line is a Chitty-Chat log record.
pub fn read_dir(path: impl AsRef<Path>) -> Result<Run, DiagramError> {
    let path = path.as_ref();
    let read_error = |at: &Path, error| DiagramError::Read {
        path: at.to_path_buf(),
        error,
    };
    let metadata = fs::metadata(path).map_err(|error| read_error(path, error))?;
    let files: Vec<PathBuf> = if metadata.is_dir() {
        let mut files = Vec::new();
        for entry in fs::read_dir(path).map_err(|error| read_error(path, error))? {
            let entry = entry.map_err(|error| read_error(path, error))?;
            let file = entry.path();
            let hidden = entry.file_name().to_string_lossy().starts_with('.');
            // `fs::metadata` follows symbolic links, so a link to a log file is read too.
            let is_file = fs::metadata(&file).is_ok_and(|metadata| metadata.is_file());
            if is_file && !hidden {
                files.push(file);
            }
        }
        files.sort();
        files
    } else {
        vec![path.to_path_buf()]
    };

    let mut logs = Logs::default();
    for file in &files {
        let bytes = fs::read(file).map_err(|error| read_error(file, error))?;
        logs.add_text(&String::from_utf8_lossy(&bytes));
    }
    if logs.records.is_empty() {
        return Err(DiagramError::NoRecords {
            path: path.to_path_buf(),
            skipped: logs.skipped,
        });
    }
    Ok(Run::from_logs(logs))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(line: &str) -> Record {
        match parse_line(line) {
            Line::Record(record) => *record,
            other => panic!("got {other:?}, want a record for {line:?}"),
        }
    }

    #[test]
    fn a_plain_json_line_is_a_record_with_its_fields() {
        let got = record(
            r#"{"timestamp":"2026-01-01T00:00:00Z","level":"INFO","component":"bob","event":"receive","seq":7,"kind":"message","participant":"alice","event_lamport":15,"lamport":19,"text":"hi"}"#,
        );
        let want = Record {
            component: "bob".into(),
            event: "receive".into(),
            seq: Some(7),
            lamport: Some(19),
            event_lamport: Some(15),
            participant: Some("alice".into()),
            kind: Some("message".into()),
            text: Some("hi".into()),
            ..Record::default()
        };
        assert_eq!(got, want);
    }

    #[test]
    fn a_docker_compose_prefix_is_stripped() {
        let got = record(r#"alice-1  | {"component":"alice","event":"join_sent","lamport":1}"#);
        assert_eq!((got.component.as_str(), got.lamport), ("alice", Some(1)));
        // With colours, as `docker compose logs` prints to a terminal.
        let got = record(
            "\u{1b}[36mservice-1  |\u{1b}[0m {\"component\":\"service\",\"event\":\"start\"}\r",
        );
        assert_eq!(
            (got.component.as_str(), got.event.as_str()),
            ("service", "start")
        );
    }

    #[test]
    fn garbage_lines_are_skipped_and_counted_and_blank_lines_ignored() {
        let mut logs = Logs::default();
        logs.add_text(concat!(
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
        assert_eq!(logs.skipped, 6, "skipped lines");
        let events: Vec<_> = logs.records.iter().map(|r| r.event.as_str()).collect();
        assert_eq!(events, ["join_sent", "join_ok"]);
        // A field of the wrong type reads as missing; the rest of the record stays.
        assert_eq!(
            (logs.records[1].seq, logs.records[1].lamport),
            (None, Some(3))
        );
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
        assert_eq!(run.participants().collect::<Vec<_>>(), ["alice"]);
        // One file alone reads the same way.
        let run = read_dir(dir.path().join("whatever.txt")).expect("the file reads");
        assert_eq!(run.participants().collect::<Vec<_>>(), ["alice"]);
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
}
