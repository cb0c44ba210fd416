//! The events the service orders and broadcasts.
//!
//! Every event has a `seq`, its position in the one order every participant sees (1, 2, 3, ... with no
//! gaps), and a `lamport` time, stamped by the service when it broadcast the event. Joins and leaves carry
//! the exact sentences the assignment prescribes, with the event's own Lamport time in them.

use std::fmt;
use std::sync::Arc;

use crate::lamport::LamportTime;

/// An event's place in the one order every participant sees: 1, 2, 3, ... with no gaps.
///
/// Seq 0 names the place before any event, so "everything after seq 0" is the whole chat, and a reader
/// that has seen nothing yet is "at seq 0". A seq and a [`LamportTime`] are both numbers that grow as the
/// chat goes on, and every event carries one of each; giving them two types makes passing one for the
/// other a compile error instead of a quietly wrong order.
///
/// A seq moves one step at a time ([`Seq::next`], [`Seq::previous`]), because the order has no gaps; a
/// place in a buffer or a count of events is a plain number, got with [`Seq::get`]. At the edges (protobuf
/// fields, stored records, metrics and log fields) a seq travels as its bare number.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Seq(u64);

impl Seq {
    /// The seq whose number is `seq`, as read from a message, a record or a test.
    pub const fn new(seq: u64) -> Self {
        Self(seq)
    }

    /// The bare number, for a message, a record, a metric, a log field or index arithmetic.
    pub const fn get(self) -> u64 {
        self.0
    }

    /// The seq right after this one: where the next event goes, since the order has no gaps.
    ///
    /// Saturates at `u64::MAX` instead of wrapping; no chat reaches it.
    #[must_use]
    pub const fn next(self) -> Self {
        Self(self.0.saturating_add(1))
    }

    /// The seq right before this one: "everything after `previous()`" starts at `self`.
    ///
    /// Seq 0 is its own predecessor, since nothing comes before the beginning.
    #[must_use]
    pub const fn previous(self) -> Self {
        Self(self.0.saturating_sub(1))
    }
}

impl fmt::Display for Seq {
    /// The bare number.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

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
    pub seq: Seq,
    /// The service's Lamport time when it broadcast the event.
    pub lamport: LamportTime,
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
    pub fn into_event(self, seq: Seq, lamport: LamportTime) -> Event {
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
pub fn joined_sentence(name: &str, lamport: LamportTime) -> String {
    format!("Participant {name} joined Chitty-Chat at Lamport time {lamport}")
}

/// "Participant NAME left Chitty-Chat at Lamport time L".
pub fn left_sentence(name: &str, lamport: LamportTime) -> String {
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
        .into_event(Seq::new(3), LamportTime::new(17));
        assert_eq!(joined.kind, EventKind::Joined);
        assert_eq!(
            joined.text,
            "Participant alice joined Chitty-Chat at Lamport time 17"
        );
        let left = EventDraft::Left {
            participant: "bob".into(),
        }
        .into_event(Seq::new(9), LamportTime::new(40));
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
        .into_event(Seq::new(5), LamportTime::new(8));
        assert_eq!(
            (
                message.seq,
                message.lamport,
                message.kind,
                message.text.as_str()
            ),
            (
                Seq::new(5),
                LamportTime::new(8),
                EventKind::Message,
                "hi there"
            )
        );
        assert_eq!(&*message.participant, "carol");
    }
}
