//! The events the service orders and broadcasts.
//!
//! Every event has a `seq`, its position in the one order every participant sees (1, 2, 3, ... with no
//! gaps), and a `lamport` time, stamped by the service when it broadcast the event. Joins and leaves carry
//! the exact sentences the assignment prescribes, with the event's own Lamport time in them.

use std::fmt;
use std::sync::Arc;

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventKind {
    /// A participant published a chat message.
    Message,
    /// A participant joined.
    Joined,
    /// A participant left, by saying so or by vanishing.
    Left,
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            EventKind::Message => "message",
            EventKind::Joined => "joined",
            EventKind::Left => "left",
        })
    }
}

/// An event as the service broadcast it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// The event's position in the one order every participant sees: 1, 2, 3, ... with no gaps.
    pub seq: u64,
    /// The service's Lamport time when it broadcast the event.
    pub lamport: u64,
    /// What happened.
    pub kind: EventKind,
    /// Who published, joined or left.
    pub participant: Arc<str>,
    /// The chat text, or the joined or left sentence.
    pub text: String,
}

/// An event before the service has placed it in the order: everything but `seq` and `lamport`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventDraft {
    /// A participant published `text`.
    Message {
        /// The publisher.
        participant: Arc<str>,
        /// The validated chat text.
        text: String,
    },
    /// A participant joined.
    Joined {
        /// The newcomer.
        participant: Arc<str>,
    },
    /// A participant left.
    Left {
        /// The leaver.
        participant: Arc<str>,
    },
}

impl EventDraft {
    /// The kind of event this draft becomes.
    pub fn kind(&self) -> EventKind {
        match self {
            EventDraft::Message { .. } => EventKind::Message,
            EventDraft::Joined { .. } => EventKind::Joined,
            EventDraft::Left { .. } => EventKind::Left,
        }
    }

    /// The participant the event is about.
    pub fn participant(&self) -> &Arc<str> {
        match self {
            EventDraft::Message { participant, .. }
            | EventDraft::Joined { participant }
            | EventDraft::Left { participant } => participant,
        }
    }

    /// Places the draft in the order at `seq`, stamped with Lamport time `lamport`.
    pub fn into_event(self, seq: u64, lamport: u64) -> Event {
        let kind = self.kind();
        let (participant, text) = match self {
            EventDraft::Message { participant, text } => (participant, text),
            EventDraft::Joined { participant } => {
                let text = joined_sentence(&participant, lamport);
                (participant, text)
            }
            EventDraft::Left { participant } => {
                let text = left_sentence(&participant, lamport);
                (participant, text)
            }
        };
        Event {
            seq,
            lamport,
            kind,
            participant,
            text,
        }
    }
}

/// "Participant NAME joined Chitty-Chat at Lamport time L".
pub fn joined_sentence(name: &str, lamport: u64) -> String {
    format!("Participant {name} joined Chitty-Chat at Lamport time {lamport}")
}

/// "Participant NAME left Chitty-Chat at Lamport time L".
pub fn left_sentence(name: &str, lamport: u64) -> String {
    format!("Participant {name} left Chitty-Chat at Lamport time {lamport}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn joined_and_left_carry_the_exact_sentences_with_their_own_time() {
        let joined = EventDraft::Joined {
            participant: "alice".into(),
        }
        .into_event(3, 17);
        assert_eq!(joined.kind, EventKind::Joined);
        assert_eq!(
            joined.text,
            "Participant alice joined Chitty-Chat at Lamport time 17"
        );
        let left = EventDraft::Left {
            participant: "bob".into(),
        }
        .into_event(9, 40);
        assert_eq!(left.kind, EventKind::Left);
        assert_eq!(
            left.text,
            "Participant bob left Chitty-Chat at Lamport time 40"
        );
    }

    #[test]
    fn messages_keep_their_text() {
        let message = EventDraft::Message {
            participant: "carol".into(),
            text: "hi there".into(),
        }
        .into_event(5, 8);
        assert_eq!(
            (
                message.seq,
                message.lamport,
                message.kind,
                message.text.as_str()
            ),
            (5, 8, EventKind::Message, "hi there")
        );
        assert_eq!(&*message.participant, "carol");
    }
}
