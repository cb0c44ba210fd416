//! Writes a diagram as Mermaid `sequenceDiagram` text.
//!
//! Requests are `->>` (solid), responses and deliveries `-->>` (dotted), and each message's text ends
//! with the Lamport times of its two ends, `(L12 → L13)`. A crash-leave is a note over the service.
//!
//! Mermaid draws messages one below the other in the order they are written, so they are written in
//! the order of their send points (then of their receive points), which is the diagram's row order.
//!
//! Text from the logs is made safe for Mermaid by [`escape`]: `;` would end a statement and `#` starts
//! an entity, so both are written as Mermaid entity codes, as are `<`, `>` and `&` (which the HTML
//! Mermaid renders would read as markup); line breaks and other control characters become spaces.

use std::collections::BTreeSet;
use std::fmt::Write;

use crate::model::{Diagram, MarkKind};

/// Words Mermaid's sequence diagram grammar reserves, which cannot be a participant id.
const KEYWORDS: [&str; 31] = [
    "activate",
    "actor",
    "alt",
    "and",
    "as",
    "autonumber",
    "box",
    "break",
    "create",
    "critical",
    "deactivate",
    "destroy",
    "details",
    "else",
    "end",
    "left",
    "link",
    "links",
    "loop",
    "note",
    "of",
    "opt",
    "over",
    "par",
    "participant",
    "properties",
    "rect",
    "right",
    "sequencediagram",
    "title",
    "option",
];

/// Writes `diagram` as a Mermaid `sequenceDiagram`.
pub(crate) fn write(diagram: &Diagram) -> String {
    let mut text = String::from("sequenceDiagram\n");
    // Writing to a String cannot fail, so the results of `write!` below are ignored on purpose.
    let _ = writeln!(text, "    %% {}", escape(&diagram.title));

    let ids = participant_ids(diagram);
    for (lifeline, id) in diagram.lifelines.iter().zip(&ids) {
        if *id == lifeline.name {
            let _ = writeln!(text, "    participant {id}");
        } else {
            let _ = writeln!(text, "    participant {id} as {}", escape(&lifeline.name));
        }
    }

    // Every statement with the rows that order it: its send point's, then its receive point's.
    let mut statements: Vec<((usize, usize), String)> = Vec::new();
    for arrow in &diagram.arrows {
        let (Some(from), Some(to)) = (diagram.points.get(arrow.from), diagram.points.get(arrow.to))
        else {
            continue;
        };
        let (Some(sender), Some(receiver)) = (ids.get(from.lifeline), ids.get(to.lifeline)) else {
            continue;
        };
        let line = if arrow.kind.is_request() {
            "->>"
        } else {
            "-->>"
        };
        statements.push((
            (arrow.from, arrow.to),
            format!(
                "    {sender}{line}{receiver}: {} (L{} → L{})",
                escape(&arrow.label),
                from.lamport,
                to.lamport
            ),
        ));
    }
    for mark in diagram
        .marks
        .iter()
        .filter(|mark| mark.kind == MarkKind::CrashLeave)
    {
        let Some(point) = diagram.points.get(mark.point) else {
            continue;
        };
        let Some(over) = ids.get(point.lifeline) else {
            continue;
        };
        statements.push((
            (mark.point, mark.point),
            format!(
                "    Note over {over}: {} (L{})",
                escape(&mark.label),
                point.lamport
            ),
        ));
    }
    // A stable sort keeps the diagram's own order between statements with the same rows.
    statements.sort_by_key(|(rows, _)| *rows);
    for (_, statement) in statements {
        text.push_str(&statement);
        text.push('\n');
    }
    text
}

/// A Mermaid id for every lifeline: its name where that is a plain word, otherwise `p` and its index.
fn participant_ids(diagram: &Diagram) -> Vec<String> {
    let plain: Vec<bool> = diagram
        .lifelines
        .iter()
        .map(|lifeline| is_plain_id(&lifeline.name))
        .collect();
    let taken: BTreeSet<&str> = diagram
        .lifelines
        .iter()
        .zip(&plain)
        .filter(|(_, plain)| **plain)
        .map(|(lifeline, _)| lifeline.name.as_str())
        .collect();
    let mut used = BTreeSet::new();
    diagram
        .lifelines
        .iter()
        .zip(plain)
        .enumerate()
        .map(|(index, (lifeline, plain))| {
            let mut id = if plain {
                lifeline.name.clone()
            } else {
                format!("p{index}")
            };
            // Two lifelines with one name, or a made-up id that is someone's name, get a fresh one.
            let mut suffix = 0;
            while used.contains(&id) || (!plain && taken.contains(id.as_str())) {
                suffix += 1;
                id = format!("p{index}_{suffix}");
            }
            used.insert(id.clone());
            id
        })
        .collect()
}

/// Whether `name` can be a Mermaid participant id as it is: an ASCII word that is not a keyword.
fn is_plain_id(name: &str) -> bool {
    let mut characters = name.chars();
    let starts_with_letter = characters
        .next()
        .is_some_and(|first| first.is_ascii_alphabetic());
    starts_with_letter
        && characters.all(|character| character.is_ascii_alphanumeric() || character == '_')
        && !KEYWORDS.contains(&name.to_ascii_lowercase().as_str())
}

/// Makes `text` safe inside a Mermaid message, note or alias.
pub(crate) fn escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for character in text.chars() {
        match character {
            '#' => escaped.push_str("#35;"),
            '&' => escaped.push_str("#38;"),
            ';' => escaped.push_str("#59;"),
            '<' => escaped.push_str("#lt;"),
            '>' => escaped.push_str("#gt;"),
            control if control.is_control() => escaped.push(' '),
            // Line and paragraph separators end a line too.
            '\u{2028}' | '\u{2029}' => escaped.push(' '),
            other => escaped.push(other),
        }
    }
    escaped.trim().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn semicolons_hashes_angle_brackets_and_line_breaks_are_escaped() {
        assert_eq!(escape("a;b"), "a#59;b");
        assert_eq!(escape("Event #7"), "Event #35;7");
        assert_eq!(
            escape("#59;"),
            "#35;59#59;",
            "an entity in the text stays text"
        );
        assert_eq!(escape("<b>x</b>"), "#lt;b#gt;x#lt;/b#gt;");
        assert_eq!(
            escape("&amp;"),
            "#38;amp#59;",
            "an HTML entity in the text stays text"
        );
        assert_eq!(
            escape("one\ntwo\r\nthree\u{2028}four"),
            "one two  three four"
        );
        assert_eq!(escape("  padded\n"), "padded");
    }

    #[test]
    fn plain_names_are_ids_and_others_get_aliases() {
        assert!(is_plain_id("alice"));
        assert!(is_plain_id("participant_3"));
        assert!(!is_plain_id("end"), "a keyword");
        assert!(!is_plain_id("Note"), "a keyword in any case");
        assert!(!is_plain_id("mary ann"));
        assert!(!is_plain_id("3po"));
        assert!(!is_plain_id("a;b"));
        assert!(!is_plain_id(""));
    }
}
