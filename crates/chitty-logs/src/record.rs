//! One log line: what it turned out to be, and the typed fields of a record.
//!
//! A line may carry the prefix `docker compose logs` puts in front of it (`alice-1  | {...}`, possibly
//! with colour codes); everything before the first `{` is not part of the record, but the container name
//! in it is kept ([`Record::container`]), since it tells apart the processes of one combined file. A line that is not a JSON object, or
//! lacks a string `component` or `event`, is skipped, so the caller can count it. A field with an
//! unexpected type (a `seq` that is a string, say) reads as missing, and the rest of the record stays.

use std::fmt;
use std::sync::Arc;

use serde_json::{Map, Value};

use crate::vocabulary::{Field, ParticipantEvent};

/// Where a record was read: the file, if it came from one, and the line number in it.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Location {
    /// The file, named as [`read_dir`](crate::read_dir) found it: the file name inside the directory
    /// that was read, or the path of the one file that was read. `None` for text given directly.
    pub file: Option<Arc<str>>,
    /// The line number in that file or text, counting from 1 and counting blank lines too.
    pub line: usize,
}

impl fmt::Display for Location {
    /// Writes `alice.log:12`, or `line 12` for text that came from no file.
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.file {
            Some(file) => write!(formatter, "{file}:{}", self.line),
            None => write!(formatter, "line {}", self.line),
        }
    }
}

/// One log line that names its `component` and `event`, with the documented fields typed.
///
/// Field names follow `docs/logs.md`; a field a line does not carry, or carries with another type, is
/// `None`. New fields may be added, so records are only built by [`parse_line`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Record {
    /// `service`, or the participant's name.
    pub component: String,
    /// What happened, such as `publish_sent` or `broadcast`.
    pub event: String,
    /// Where the line was read.
    pub location: Location,
    /// The container a `docker compose logs` line came from (`service-1` in `service-1  | {...}`),
    /// without colour codes; `None` for a line without that prefix.
    pub container: Option<String>,
    /// The wall-clock time of the line, RFC 3339, as written.
    pub timestamp: Option<String>,
    /// The level of the line: `INFO`, `WARN`, ...
    pub level: Option<String>,
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
    /// Why a call was refused, a stream ended, or a participant was announced left or joined again.
    pub reason: Option<String>,
    /// The call a `refused` line is about: `Join`, `Publish`, `Leave` or `Broadcast`.
    pub rpc: Option<String>,
    /// How many characters a published message has, on `publish_sent`.
    pub chars: Option<u64>,
    /// The seq a Broadcast stream was asked to start after, or a participant resumed after.
    pub after_seq: Option<u64>,
    /// The newest seq a process knew of: at a service's `start`, `recover` and `stop`, or at a
    /// participant's `disconnected`.
    pub last_seq: Option<u64>,
    /// The first seq a Broadcast stream delivers, on the service's `broadcast_open`.
    pub from_seq: Option<u64>,
    /// How many open streams an event was queued to, on the service's `broadcast`.
    pub recipients: Option<u64>,
    /// The id of the cluster node that logged the line, on a service's `start` (and some other lines)
    /// in cluster mode; empty or absent for a single service.
    pub node: Option<String>,
}

impl Record {
    /// Whether the line's `event` is `event`, from any component's list: `record.is(ParticipantEvent::JoinOk)`.
    pub fn is(&self, event: impl Into<&'static str>) -> bool {
        self.event == event.into()
    }

    /// The line's `event` as a participant's, if it is one of a participant's names.
    pub fn participant_event(&self) -> Option<ParticipantEvent> {
        self.event.parse().ok()
    }
}

/// What one line of a log turned out to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Line {
    /// A line with nothing but whitespace, ignored.
    Blank,
    /// A line that is not a log record.
    Skipped,
    /// A log record.
    Record(Box<Record>),
}

/// Parses one line, a JSON object possibly behind a `docker compose logs` prefix, read at `location`.
pub fn parse_line(line: &str, location: Location) -> Line {
    if line.trim().is_empty() {
        return Line::Blank;
    }
    let Some(start) = line.find('{') else {
        return Line::Skipped;
    };
    let Ok(Value::Object(fields)) = serde_json::from_str::<Value>(line[start..].trim_end()) else {
        return Line::Skipped;
    };
    let (Some(component), Some(event)) = (
        string(&fields, Field::Component),
        string(&fields, Field::Event),
    ) else {
        return Line::Skipped;
    };
    Line::Record(Box::new(Record {
        component,
        event,
        location,
        container: container(&line[..start]),
        timestamp: string(&fields, Field::Timestamp),
        level: string(&fields, Field::Level),
        seq: number(&fields, Field::Seq),
        lamport: number(&fields, Field::Lamport),
        request_lamport: number(&fields, Field::RequestLamport),
        received_lamport: number(&fields, Field::ReceivedLamport),
        response_lamport: number(&fields, Field::ResponseLamport),
        event_lamport: number(&fields, Field::EventLamport),
        participant: string(&fields, Field::Participant),
        kind: string(&fields, Field::Kind),
        text: string(&fields, Field::Text),
        reason: string(&fields, Field::Reason),
        rpc: string(&fields, Field::Rpc),
        chars: number(&fields, Field::Chars),
        after_seq: number(&fields, Field::AfterSeq),
        last_seq: number(&fields, Field::LastSeq),
        from_seq: number(&fields, Field::FromSeq),
        recipients: number(&fields, Field::Recipients),
        node: string(&fields, Field::Node),
    }))
}

/// The container name in the text before a line's JSON object, as `docker compose logs` writes it:
/// `name  | `, possibly wrapped in ANSI colour codes. `None` without a `|`, or with nothing before it.
fn container(prefix: &str) -> Option<String> {
    let mut plain = String::with_capacity(prefix.len());
    let mut characters = prefix.chars();
    while let Some(character) = characters.next() {
        if character == '\u{1b}' {
            // A CSI sequence: ESC, '[', parameters, and one final byte in '@'..='~'.
            if characters.next() == Some('[') {
                for following in characters.by_ref() {
                    if ('@'..='~').contains(&following) {
                        break;
                    }
                }
            }
            continue;
        }
        plain.push(character);
    }
    let (name, _) = plain.rsplit_once('|')?;
    let name = name.trim();
    (!name.is_empty()).then(|| name.to_owned())
}

fn string(fields: &Map<String, Value>, field: Field) -> Option<String> {
    fields.get(field.as_str())?.as_str().map(str::to_owned)
}

fn number(fields: &Map<String, Value>, field: Field) -> Option<u64> {
    fields.get(field.as_str())?.as_u64()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(line: &str) -> Record {
        match parse_line(line, Location::default()) {
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
            timestamp: Some("2026-01-01T00:00:00Z".into()),
            level: Some("INFO".into()),
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
        assert_eq!(got.container.as_deref(), Some("alice-1"));
        // With colours, as `docker compose logs` prints to a terminal.
        let got = record(
            "\u{1b}[36mservice-1  |\u{1b}[0m {\"component\":\"service\",\"event\":\"start\"}\r",
        );
        assert_eq!(
            (got.component.as_str(), got.event.as_str()),
            ("service", "start")
        );
        assert_eq!(got.container.as_deref(), Some("service-1"));
        // A plain line names no container.
        let got = record(r#"{"component":"alice","event":"join_sent","lamport":1}"#);
        assert_eq!(got.container, None);
    }

    #[test]
    fn the_fields_of_restarts_and_reconnections_are_read() {
        let got = record(
            r#"{"component":"service","event":"recover","last_seq":12,"lamport":4096,"retained":12}"#,
        );
        assert_eq!((got.last_seq, got.lamport), (Some(12), Some(4096)));
        let got = record(
            r#"{"component":"bob","event":"reconnected","server":"http://x","after_seq":9}"#,
        );
        assert_eq!(got.after_seq, Some(9));
        let got = record(
            r#"{"component":"bob","event":"join_sent","lamport":30,"reason":"the session ended"}"#,
        );
        assert_eq!(got.reason.as_deref(), Some("the session ended"));
    }

    #[test]
    fn a_cluster_node_names_itself_on_its_start_line() {
        let got = record(
            r#"{"component":"service","event":"start","node":"node-1","last_seq":0,"address":"127.0.0.1:50051"}"#,
        );
        assert_eq!(got.node.as_deref(), Some("node-1"));
        let got = record(r#"{"component":"service","event":"start","node":"","last_seq":0}"#);
        assert_eq!(got.node.as_deref(), Some(""));
    }

    #[test]
    fn a_location_names_its_file_and_line() {
        let in_file = Location {
            file: Some("alice.log".into()),
            line: 12,
        };
        assert_eq!(in_file.to_string(), "alice.log:12");
        let in_text = Location {
            file: None,
            line: 3,
        };
        assert_eq!(in_text.to_string(), "line 3");
    }
}
