//! `docs/logs.md` and the page's `app.js` hold to the log vocabulary, name for name.
//!
//! The Rust writers and readers name events and fields through `chitty_logs`'s enums, so the compiler
//! keeps them together; these two texts it cannot see. Each table of `docs/logs.md` must list exactly
//! its component's events, all the tables together exactly the fields, and every line the page's
//! `app.js` logs must use a participant's event and known fields.

use std::collections::BTreeSet;

use chitty_logs::{ClusterEvent, CommandEvent, Field, ParticipantEvent, ServiceEvent};

const LOGS_MD: &str = include_str!("../../../docs/logs.md");
const APP_JS: &str = include_str!("../../chitty-service/web/app.js");

/// One row of an event table: its events, and the field names its fields column lists.
#[derive(Debug)]
struct Row {
    events: Vec<String>,
    fields: BTreeSet<String>,
}

/// One `## ` section of `docs/logs.md`: its heading and the rows of its tables.
#[derive(Debug, Default)]
struct Section {
    heading: String,
    /// Names in the first column of a two-column table (`| field | meaning |`).
    field_rows: BTreeSet<String>,
    /// Rows of a four-column event table (`| event | level | fields | when |`).
    event_rows: Vec<Row>,
}

/// The names in backticks in `text`, outside any parentheses: `` `a` (`b`), `c` `` gives a and c.
fn names_outside_parentheses(text: &str) -> Vec<String> {
    let mut outside = String::new();
    let mut depth = 0usize;
    for character in text.chars() {
        match character {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            _ if depth == 0 => outside.push(character),
            _ => {}
        }
    }
    outside
        .split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_owned)
        .collect()
}

fn sections() -> Vec<Section> {
    let mut sections = vec![Section::default()];
    for line in LOGS_MD.lines() {
        if let Some(heading) = line.strip_prefix("## ") {
            sections.push(Section {
                heading: heading.to_owned(),
                ..Section::default()
            });
            continue;
        }
        let Some(row) = line.strip_prefix("| `") else {
            continue;
        };
        let row = format!("`{row}");
        let cells: Vec<&str> = row.split(" | ").collect();
        let section = sections.last_mut().expect("there is always a section");
        if cells.len() == 2 {
            section
                .field_rows
                .extend(names_outside_parentheses(cells[0]));
            continue;
        }
        assert_eq!(cells.len(), 4, "an event row has four cells: {line}");
        if cells[1] == "level" {
            continue; // the table's header
        }
        let events = names_outside_parentheses(cells[0]);
        let fields_cell = cells[2];
        let fields = if let Some(same) = fields_cell.strip_prefix("the same") {
            // `the same` is the row above; `the same as `join`` is that event's row.
            let like = names_outside_parentheses(same);
            let row = match like.first() {
                Some(event) => section
                    .event_rows
                    .iter()
                    .find(|row| row.events.contains(event))
                    .unwrap_or_else(|| panic!("no row for {event}, named in {line}")),
                None => section.event_rows.last().expect("a row above `the same`"),
            };
            row.fields.clone()
        } else {
            names_outside_parentheses(fields_cell).into_iter().collect()
        };
        section.event_rows.push(Row { events, fields });
    }
    sections
}

fn section(heading_starts: &str) -> Section {
    sections()
        .into_iter()
        .find(|section| section.heading.starts_with(heading_starts))
        .unwrap_or_else(|| panic!("docs/logs.md has no section \"{heading_starts}...\""))
}

fn documented_events(heading_starts: &str) -> BTreeSet<String> {
    section(heading_starts)
        .event_rows
        .into_iter()
        .flat_map(|row| row.events)
        .collect()
}

fn names(all: impl IntoIterator<Item = &'static str>) -> BTreeSet<String> {
    all.into_iter().map(str::to_owned).collect()
}

#[test]
fn each_table_lists_exactly_its_components_events() {
    let tables = [
        (
            "The service",
            names(ServiceEvent::ALL.iter().map(|event| event.as_str())),
        ),
        (
            "A cluster node",
            names(ClusterEvent::ALL.iter().map(|event| event.as_str())),
        ),
        (
            "A participant",
            names(ParticipantEvent::ALL.iter().map(|event| event.as_str())),
        ),
        (
            "The command",
            names(CommandEvent::ALL.iter().map(|event| event.as_str())),
        ),
    ];
    for (heading, vocabulary) in tables {
        let documented = documented_events(heading);
        assert_eq!(
            documented,
            vocabulary,
            "docs/logs.md's \"{heading}\" table (left) and the vocabulary (right) differ: \
             documented only {:?}, in the vocabulary only {:?}",
            documented.difference(&vocabulary).collect::<Vec<_>>(),
            vocabulary.difference(&documented).collect::<Vec<_>>(),
        );
    }
}

#[test]
fn the_tables_together_list_exactly_the_fields() {
    let mut documented = BTreeSet::new();
    for section in sections() {
        documented.extend(section.field_rows);
        for row in section.event_rows {
            documented.extend(row.fields);
        }
    }
    let vocabulary = names(Field::ALL.iter().map(|field| field.as_str()));
    assert_eq!(
        documented,
        vocabulary,
        "docs/logs.md's fields (left) and the vocabulary's (right) differ: documented only {:?}, \
         in the vocabulary only {:?}",
        documented.difference(&vocabulary).collect::<Vec<_>>(),
        vocabulary.difference(&documented).collect::<Vec<_>>(),
    );
}

/// Every `log("LEVEL", "event", { fields })` call in `app.js`: the event and the field names.
fn page_log_calls() -> Vec<(String, Vec<String>)> {
    let mut calls = Vec::new();
    let mut rest = APP_JS;
    while let Some(start) = rest.find("log(\"") {
        rest = &rest[start + "log(".len()..];
        // The arguments, up to the parenthesis that closes the call.
        let mut depth = 1usize;
        let mut in_string = None;
        let mut end = rest.len();
        for (index, character) in rest.char_indices() {
            match (in_string, character) {
                (Some(quote), _) if character == quote => in_string = None,
                (Some(_), _) => {}
                (None, '"' | '\'' | '`') => in_string = Some(character),
                (None, '(' | '{' | '[') => depth += 1,
                (None, ')' | '}' | ']') => {
                    depth -= 1;
                    if depth == 0 {
                        end = index;
                        break;
                    }
                }
                _ => {}
            }
        }
        let arguments = split_top_level(&rest[..end]);
        let event = arguments
            .get(1)
            .map(|event| event.trim().trim_matches('"').to_owned())
            .expect("log() has an event argument");
        let fields = arguments
            .get(2)
            .map(|object| {
                let body = object.trim().trim_start_matches('{').trim_end_matches('}');
                split_top_level(body)
                    .iter()
                    .map(|entry| entry.split(':').next().unwrap_or("").trim().to_owned())
                    .filter(|name| !name.is_empty())
                    .collect()
            })
            .unwrap_or_default();
        calls.push((event, fields));
        rest = &rest[end..];
    }
    calls
}

/// `text` split at the commas that are not inside parentheses, braces, brackets or strings.
fn split_top_level(text: &str) -> Vec<String> {
    let mut parts = vec![String::new()];
    let mut depth = 0usize;
    let mut in_string = None;
    for character in text.chars() {
        match (in_string, character) {
            (Some(quote), _) if character == quote => in_string = None,
            (Some(_), _) => {}
            (None, '"' | '\'' | '`') => in_string = Some(character),
            (None, '(' | '{' | '[') => depth += 1,
            (None, ')' | '}' | ']') => depth = depth.saturating_sub(1),
            (None, ',') if depth == 0 => {
                parts.push(String::new());
                continue;
            }
            _ => {}
        }
        parts.last_mut().expect("never empty").push(character);
    }
    parts
}

#[test]
fn the_page_logs_a_participants_events_with_known_fields() {
    let calls = page_log_calls();
    let events: BTreeSet<&str> = calls.iter().map(|(event, _)| event.as_str()).collect();
    // The scan found the page's calls: at least every step of Join, Publish and Leave, and receive.
    for needed in [
        ParticipantEvent::JoinSent,
        ParticipantEvent::JoinOk,
        ParticipantEvent::PublishSent,
        ParticipantEvent::PublishOk,
        ParticipantEvent::LeaveSent,
        ParticipantEvent::LeaveOk,
        ParticipantEvent::Receive,
    ] {
        assert!(
            events.contains(needed.as_str()),
            "app.js never logs {needed}: {events:?}"
        );
    }
    for (event, fields) in &calls {
        assert!(
            event.parse::<ParticipantEvent>().is_ok(),
            "app.js logs `{event}`, which is not a participant's event"
        );
        for field in fields {
            assert!(
                field.parse::<Field>().is_ok(),
                "app.js logs `{event}` with a field `{field}` the vocabulary does not know"
            );
        }
    }
}
