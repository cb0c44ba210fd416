//! How a participant shows what it receives, one line per event.
//!
//! ```text
//! [seq=3 lamport=5 me=6] *** Participant bob joined Chitty-Chat at Lamport time 5
//! [seq=4 lamport=8 me=9] <alice> hello, bob
//! ```
//!
//! `seq` is the event's place in the one order everyone sees, `lamport` the service's Lamport time of the
//! event, and `me` the participant's own clock right after receiving it. Joins and leaves are marked `***`,
//! messages show their author in angle brackets.
//!
//! Other people's text is shown safely: any character that could move the cursor, change the terminal or
//! reorder the line is shown escaped as `\u{...}`. That is every control character (C0, DEL, C1), which
//! the service refuses anyway, and the bidirectional formatting characters (embeddings, overrides,
//! isolates and marks), which it accepts because right-to-left text may use them, but which could
//! otherwise make a message display as something it is not. The escaping holds even if a future service
//! let a control character through.

use std::borrow::Cow;
use std::fmt::Write as _;

use chitty_core::{Event, EventKind, LamportTime};

/// One event as line mode prints it, without the newline.
pub fn event_line(event: &Event, own_lamport: LamportTime) -> String {
    let mut line = format!(
        "[seq={} lamport={} me={}] ",
        event.seq, event.lamport, own_lamport
    );
    match event.kind {
        EventKind::Message => {
            line.push('<');
            push_escaped(&mut line, &event.participant);
            line.push_str("> ");
        }
        EventKind::Joined | EventKind::Left => line.push_str("*** "),
    }
    push_escaped(&mut line, &event.text);
    line
}

/// Whether showing `character` as itself could move the cursor, change the terminal, or reorder the line.
pub fn is_unsafe_to_show(character: char) -> bool {
    character.is_control()
        || matches!(
            character,
            // Arabic letter mark, left-to-right and right-to-left marks.
            '\u{061c}' | '\u{200e}' | '\u{200f}'
            // Embeddings, overrides and their terminator.
            | '\u{202a}'..='\u{202e}'
            // Isolates and their terminator.
            | '\u{2066}'..='\u{2069}'
        )
}

/// `text` with every character that [`is_unsafe_to_show`] shown escaped as `\u{...}`: how any front end
/// shows other people's text.
pub fn escaped(text: &str) -> Cow<'_, str> {
    if text.chars().any(is_unsafe_to_show) {
        let mut shown = String::with_capacity(text.len() + 8);
        push_escaped(&mut shown, text);
        Cow::Owned(shown)
    } else {
        Cow::Borrowed(text)
    }
}

fn push_escaped(line: &mut String, text: &str) {
    for character in text.chars() {
        if is_unsafe_to_show(character) {
            let _ = write!(line, "\\u{{{:x}}}", u32::from(character));
        } else {
            line.push(character);
        }
    }
}

/// A line printed by [`event_line`], read back: for tests, the demo and scripts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventLine {
    /// The event's seq.
    pub seq: u64,
    /// The event's Lamport time.
    pub lamport: u64,
    /// The participant's clock after receiving it.
    pub me: u64,
    /// Everything after the prefix: `*** sentence` or `<name> text`.
    pub body: String,
}

impl EventLine {
    /// Reads a line printed by [`event_line`]; `None` if it is not one.
    pub fn parse(line: &str) -> Option<Self> {
        let rest = line.strip_prefix("[seq=")?;
        let (seq, rest) = rest.split_once(" lamport=")?;
        let (lamport, rest) = rest.split_once(" me=")?;
        let (me, body) = rest.split_once("] ")?;
        Some(Self {
            seq: seq.parse().ok()?,
            lamport: lamport.parse().ok()?,
            me: me.parse().ok()?,
            body: body.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chitty_core::{EventDraft, LamportTime, Seq};

    #[test]
    fn messages_and_announcements_look_as_documented() {
        let joined = EventDraft::Joined {
            participant: "bob".into(),
        }
        .into_event(Seq::new(3), LamportTime::new(5));
        assert_eq!(
            event_line(&joined, LamportTime::new(6)),
            "[seq=3 lamport=5 me=6] *** Participant bob joined Chitty-Chat at Lamport time 5"
        );
        let message = EventDraft::Message {
            participant: "alice".into(),
            text: "hello, bob".into(),
        }
        .into_event(Seq::new(4), LamportTime::new(8));
        assert_eq!(
            event_line(&message, LamportTime::new(9)),
            "[seq=4 lamport=8 me=9] <alice> hello, bob"
        );
    }

    #[test]
    fn control_characters_are_shown_escaped() {
        let hostile = EventDraft::Message {
            participant: "eve\u{7}".into(),
            text: "clear\u{1b}[2J\nscreen\u{9b}".into(),
        }
        .into_event(Seq::new(1), LamportTime::new(1));
        assert_eq!(
            event_line(&hostile, LamportTime::new(2)),
            "[seq=1 lamport=1 me=2] <eve\\u{7}> clear\\u{1b}[2J\\u{a}screen\\u{9b}"
        );
    }

    /// The golden file shows how hostile text is displayed; `UPDATE_GOLDEN=1` rewrites it (`chitty_logs::testing`).
    #[test]
    fn hostile_text_is_displayed_escaped_as_in_the_golden_file() {
        let cases: [(&str, &str); 8] = [
            ("eve", "plain text stays plain: ünïcödé, 日本語, 🦀"),
            ("eve", "\u{1b}[2J\u{1b}[Hcleared your screen"),
            ("eve", "bell\u{7} and backspace\u{8}\u{8}\u{8}"),
            ("eve", "C1 CSI \u{9b}31m and NEL \u{85}"),
            ("eve", "invoice_\u{202e}fdp.exe"),
            (
                "eve",
                "isolate \u{2067}RTL\u{2069} and marks \u{200f}\u{200e}\u{61c}",
            ),
            (
                "eve",
                "embedding \u{202b}x\u{202c} override \u{202d}y\u{202c}",
            ),
            ("mal\u{202e}lory", "a name that reorders itself"),
        ];
        let rendered: String = cases
            .iter()
            .enumerate()
            .map(|(index, (author, text))| {
                let event = EventDraft::Message {
                    participant: (*author).into(),
                    text: (*text).into(),
                }
                .into_event(
                    Seq::new(index as u64 + 1),
                    LamportTime::new(index as u64 * 2 + 1),
                );
                let line = event_line(&event, LamportTime::new(index as u64 * 2 + 2));
                assert!(!line.chars().any(is_unsafe_to_show), "{line:?}");
                line + "\n"
            })
            .collect();
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/hostile.golden");
        chitty_logs::testing::assert_golden(&path, &rendered);
    }

    #[test]
    fn escaped_text_is_borrowed_when_safe_and_escaped_otherwise() {
        assert!(matches!(escaped("plain 日本語 🦀"), Cow::Borrowed(_)));
        assert_eq!(escaped("a\u{1b}[2Jb\u{202e}c"), "a\\u{1b}[2Jb\\u{202e}c");
    }

    #[test]
    fn printed_lines_read_back() {
        let message = EventDraft::Message {
            participant: "alice".into(),
            text: "a ] tricky [seq=1 lamport=1 me=1] text".into(),
        }
        .into_event(Seq::new(12), LamportTime::new(40));
        let line = event_line(&message, LamportTime::new(41));
        assert_eq!(
            EventLine::parse(&line),
            Some(EventLine {
                seq: 12,
                lamport: 40,
                me: 41,
                body: "<alice> a ] tricky [seq=1 lamport=1 me=1] text".into()
            })
        );
        assert_eq!(EventLine::parse("message not sent: too long"), None);
    }
}
