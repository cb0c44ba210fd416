//! How a participant shows what it receives, one line per event.
//!
//! ```text
//! [seq=3 lamport=5 me=6] *** Participant bob joined Chitty-Chat at Lamport time 5
//! [seq=4 lamport=8 me=9] <alice> hello, bob
//! ```
//!
//! `seq` is the event's place in the one order everyone sees, `lamport` the service's Lamport time of the
//! event, and `me` the participant's own clock right after receiving it. Joins and leaves are marked `***`,
//! messages show their author in angle brackets. Any control character that reaches this point, although
//! the service refuses them, is shown escaped (`\u{1b}`), so no text can drive the terminal.

use std::fmt::Write as _;

use chitty_core::{Event, EventKind};

/// One event as line mode prints it, without the newline.
pub fn event_line(event: &Event, own_lamport: u64) -> String {
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

fn push_escaped(line: &mut String, text: &str) {
    for character in text.chars() {
        if character.is_control() {
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
    use chitty_core::EventDraft;

    #[test]
    fn messages_and_announcements_look_as_documented() {
        let joined = EventDraft::Joined {
            participant: "bob".into(),
        }
        .into_event(3, 5);
        assert_eq!(
            event_line(&joined, 6),
            "[seq=3 lamport=5 me=6] *** Participant bob joined Chitty-Chat at Lamport time 5"
        );
        let message = EventDraft::Message {
            participant: "alice".into(),
            text: "hello, bob".into(),
        }
        .into_event(4, 8);
        assert_eq!(
            event_line(&message, 9),
            "[seq=4 lamport=8 me=9] <alice> hello, bob"
        );
    }

    #[test]
    fn control_characters_are_shown_escaped() {
        let hostile = EventDraft::Message {
            participant: "eve\u{7}".into(),
            text: "clear\u{1b}[2J\nscreen\u{9b}".into(),
        }
        .into_event(1, 1);
        assert_eq!(
            event_line(&hostile, 2),
            "[seq=1 lamport=1 me=2] <eve\\u{7}> clear\\u{1b}[2J\\u{a}screen\\u{9b}"
        );
    }

    #[test]
    fn printed_lines_read_back() {
        let message = EventDraft::Message {
            participant: "alice".into(),
            text: "a ] tricky [seq=1 lamport=1 me=1] text".into(),
        }
        .into_event(12, 40);
        let line = event_line(&message, 41);
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
