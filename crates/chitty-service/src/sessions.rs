//! Who is present: names, session tokens, and the state of each session's Broadcast stream.
//!
//! The table is plain data with no lock and no I/O; [`crate::chat::SingleNode`] owns it behind its lock
//! and decides what to broadcast. A session is *present* from its Join until it leaves or vanishes. It
//! vanishes when it has had no open Broadcast stream for the grace period: it never opened one, or its
//! stream ended (connection closed, cut off for reading too slowly, replaced and then dropped) and no new
//! one came.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use chitty_core::validate::name_key;
use chitty_core::{Seq, TokenHash};
use tokio::time::Instant;

use crate::fanout::{EndReason, StreamEnd, SubscriberId};

/// The secret that proves a caller is a session's participant.
///
/// 32 bytes from the operating system's cryptographically secure generator (through `rand`'s thread
/// generator, which it seeds), written as 64 hex digits. Its `Debug` form hides the value, so a token never
/// reaches a log line by accident, and the service keeps only its [`TokenHash`].
#[derive(Clone, PartialEq, Eq)]
pub struct SessionToken(String);

impl SessionToken {
    /// A fresh, unguessable token.
    pub fn generate() -> Self {
        let bytes: [u8; 32] = rand::random();
        Self(bytes.iter().map(|byte| format!("{byte:02x}")).collect())
    }

    /// The token as sent on the wire.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SessionToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SessionToken(<secret>)")
    }
}

/// One participant's session.
#[derive(Debug)]
pub struct Session {
    /// The participant's name, unique among those present.
    pub name: Arc<str>,
    /// The seq of the participant's join event: its Broadcast stream never starts before it.
    pub join_seq: Seq,
    /// Whether a Broadcast stream is open, and if not, since when.
    stream: StreamState,
}

#[derive(Debug)]
enum StreamState {
    /// No Broadcast stream has been opened since the Join.
    NeverOpened {
        /// When the participant joined.
        since: Instant,
    },
    /// A Broadcast stream was opened. It may have ended since; `end` says.
    Opened {
        /// The hub's subscription behind the stream.
        subscriber: SubscriberId,
        /// Shared with the subscription: set when the stream ends, for whatever reason.
        end: Arc<StreamEnd>,
    },
}

impl Session {
    /// The subscription of the session's Broadcast stream, if one was opened.
    pub fn subscriber(&self) -> Option<SubscriberId> {
        match &self.stream {
            StreamState::Opened { subscriber, .. } => Some(*subscriber),
            StreamState::NeverOpened { .. } => None,
        }
    }

    /// Since when the session has had no open stream, and why; `None` while a stream is open.
    fn detached(&self) -> Option<(Instant, Vanished)> {
        match &self.stream {
            StreamState::NeverOpened { since } => Some((*since, Vanished::NeverOpened)),
            StreamState::Opened { end, .. } => {
                Some((end.ended_at()?, Vanished::StreamEnded(end.reason()?)))
            }
        }
    }
}

/// Why a session was declared gone without a Leave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Vanished {
    /// It joined but never opened a Broadcast stream.
    NeverOpened,
    /// Its stream ended for this reason and was not reopened.
    StreamEnded(EndReason),
}

impl Vanished {
    /// The stable name of why, for the `reason` label of `chitty_chat_sessions_swept_total`.
    pub fn as_str(self) -> &'static str {
        match self {
            Vanished::NeverOpened => "never_opened",
            Vanished::StreamEnded(reason) => reason.as_str(),
        }
    }
}

impl fmt::Display for Vanished {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Vanished::NeverOpened => "it never opened a Broadcast stream",
            Vanished::StreamEnded(EndReason::Disconnected) => {
                "its connection closed and it did not reconnect"
            }
            Vanished::StreamEnded(EndReason::FellBehind { .. }) => {
                "it was cut off for reading too slowly and did not reconnect"
            }
            Vanished::StreamEnded(EndReason::Replaced) => {
                "its stream was replaced and the new one closed"
            }
            Vanished::StreamEnded(EndReason::Left | EndReason::ShuttingDown) => {
                "its stream ended and it did not reconnect"
            }
        })
    }
}

/// Every present session, by token, and the names they hold.
#[derive(Debug, Default)]
pub struct SessionTable {
    /// The sessions, found by the hash of their token.
    sessions: HashMap<TokenHash, Session>,
    /// The [`name_key`]s of the present participants' names, to refuse a second participant whose name
    /// is the same or looks the same.
    names: HashSet<String>,
}

impl SessionTable {
    /// Whether a present participant has this name, or one that looks the same.
    pub fn is_present(&self, name: &str) -> bool {
        self.names.contains(&name_key(name))
    }

    /// How many participants are present.
    pub fn len(&self) -> usize {
        self.sessions.len()
    }

    /// How many sessions have no open Broadcast stream: they wait out their grace period, after which
    /// [`SessionTable::remove_vanished`] ends them.
    pub fn in_grace(&self) -> usize {
        self.sessions
            .values()
            .filter(|session| session.detached().is_some())
            .count()
    }

    /// The names of everyone present, in no particular order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.sessions.values().map(|session| &*session.name)
    }

    /// Whether nobody is present.
    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }

    /// Admits a participant whose join event has seq `join_seq`; the name must not be present.
    pub fn admit(&mut self, token: TokenHash, name: Arc<str>, join_seq: Seq, now: Instant) {
        debug_assert!(!self.is_present(&name), "admit needs a free name");
        self.names.insert(name_key(&name));
        self.sessions.insert(
            token,
            Session {
                name,
                join_seq,
                stream: StreamState::NeverOpened { since: now },
            },
        );
    }

    /// The session a token belongs to.
    pub fn get(&self, token: &TokenHash) -> Option<&Session> {
        self.sessions.get(token)
    }

    /// Records the session's new Broadcast stream and returns the one it replaces, if any is still open.
    pub fn attach(
        &mut self,
        token: &TokenHash,
        subscriber: SubscriberId,
        end: Arc<StreamEnd>,
    ) -> Option<SubscriberId> {
        let session = self.sessions.get_mut(token)?;
        let previous =
            std::mem::replace(&mut session.stream, StreamState::Opened { subscriber, end });
        match previous {
            StreamState::Opened { subscriber, end } if end.reason().is_none() => Some(subscriber),
            _ => None,
        }
    }

    /// Ends a session, freeing its name.
    pub fn remove(&mut self, token: &TokenHash) -> Option<Session> {
        let session = self.sessions.remove(token)?;
        self.names.remove(&name_key(&session.name));
        Some(session)
    }

    /// Ends every session that has had no open stream for at least `grace`, and returns them with their
    /// token's hash and why.
    pub fn remove_vanished(
        &mut self,
        now: Instant,
        grace: Duration,
    ) -> Vec<(TokenHash, Session, Vanished)> {
        let gone: Vec<(TokenHash, Vanished)> = self
            .sessions
            .iter()
            .filter_map(|(token, session)| {
                let (since, why) = session.detached()?;
                (now.saturating_duration_since(since) >= grace).then_some((*token, why))
            })
            .collect();
        gone.into_iter()
            .filter_map(|(token, why)| Some((token, self.remove(&token)?, why)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::Retention;
    use crate::hub::{Hub, HubConfig};
    use chitty_core::LamportClock;

    const GRACE: Duration = Duration::from_secs(5);

    fn hub() -> Hub {
        Hub::in_memory(
            Arc::new(LamportClock::new()),
            HubConfig {
                retention: Retention {
                    events: 10,
                    bytes: usize::MAX,
                },
                queue_capacity: 4,
            },
        )
        .expect("an in-memory store")
    }

    #[test]
    fn tokens_are_long_hex_secrets_that_never_repeat_and_never_print() {
        let first = SessionToken::generate();
        let second = SessionToken::generate();
        assert_ne!(first, second);
        assert_eq!(first.as_str().len(), 64);
        assert!(first.as_str().chars().all(|c| c.is_ascii_hexdigit()));
        assert!(!format!("{first:?}").contains(first.as_str()));
        assert_eq!(TokenHash::of(first.as_str()), TokenHash::of(first.as_str()));
        assert_ne!(
            TokenHash::of(first.as_str()),
            TokenHash::of(second.as_str())
        );
    }

    #[test]
    fn names_are_held_while_present_and_freed_on_removal() {
        let mut table = SessionTable::default();
        let token = TokenHash::of("secret");
        table.admit(token, "alice".into(), Seq::new(1), Instant::now());
        assert!(table.is_present("alice"));
        assert!(
            table.is_present("Alice"),
            "names are compared case-insensitively"
        );
        assert!(
            table.is_present("\u{430}lice"),
            "and by their confusable skeleton"
        );
        assert_eq!(table.get(&token).map(|s| s.join_seq), Some(Seq::new(1)));
        assert!(table.get(&TokenHash::of("not a token")).is_none());
        let session = table.remove(&token).expect("present");
        assert_eq!(&*session.name, "alice");
        assert!(!table.is_present("alice"));
        assert!(table.get(&token).is_none(), "an ended token is unknown");
    }

    #[tokio::test(start_paused = true)]
    async fn a_session_that_never_opens_a_stream_vanishes_after_the_grace_period() {
        let mut table = SessionTable::default();
        let start = Instant::now();
        table.admit(TokenHash::of("t"), "alice".into(), Seq::new(1), start);
        assert!(table.remove_vanished(start + GRACE / 2, GRACE).is_empty());
        let gone = table.remove_vanished(start + GRACE, GRACE);
        assert_eq!(gone.len(), 1);
        assert_eq!(gone[0].2, Vanished::NeverOpened);
        assert!(table.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn an_open_stream_keeps_a_session_present_and_its_end_starts_the_grace_period() {
        let hub = hub();
        let mut table = SessionTable::default();
        let token = TokenHash::of("t");
        table.admit(token, "alice".into(), Seq::new(1), Instant::now());
        let subscription = hub
            .subscribe("alice".into(), Seq::new(0))
            .expect("subscribe");
        assert_eq!(
            table.attach(&token, subscription.id(), subscription.end_signal()),
            None
        );
        tokio::time::advance(GRACE * 3).await;
        assert!(table.remove_vanished(Instant::now(), GRACE).is_empty());

        drop(subscription);
        let closed_at = Instant::now();
        assert!(
            table
                .remove_vanished(closed_at + GRACE / 2, GRACE)
                .is_empty()
        );
        let gone = table.remove_vanished(closed_at + GRACE, GRACE);
        assert_eq!(
            gone.iter()
                .map(|(_, s, why)| (&*s.name, *why))
                .collect::<Vec<_>>(),
            vec![("alice", Vanished::StreamEnded(EndReason::Disconnected))]
        );
    }

    #[test]
    fn a_new_stream_reports_the_open_one_it_replaces() {
        let hub = hub();
        let mut table = SessionTable::default();
        let token = TokenHash::of("t");
        table.admit(token, "alice".into(), Seq::new(1), Instant::now());
        let first = hub
            .subscribe("alice".into(), Seq::new(0))
            .expect("subscribe");
        let second = hub
            .subscribe("alice".into(), Seq::new(0))
            .expect("subscribe");
        table.attach(&token, first.id(), first.end_signal());
        assert_eq!(
            table.attach(&token, second.id(), second.end_signal()),
            Some(first.id())
        );
    }
}
