//! The single node: the chat kept by one service process in its own store, as a [`Backend`] of the
//! call protocol ([`crate::call`]).
//!
//! [`SingleNode`] holds the sessions table and the [`Hub`], which orders every event, has the writer
//! make it durable and fans it out. The protocol ([`ChatService`], a [`Chat`] over this backend)
//! witnesses each request, checks it, stamps the answer and logs the call; what is left here is what
//! only this node can do: admit a name, append a message, end a session and open a stream, each under
//! the sessions lock, and answer once the event is durable.
//!
//! # Architecture invariant
//!
//! Lock order is sessions, then hub: a method holding the hub lock never takes the sessions lock.
//! Admitting, appending, ending and stream opening hold the sessions lock while they append or
//! subscribe (the protocol's checks of a message run under it too, through the backend's callback), so
//! a participant's message can never be ordered after its own left event. No lock is held across an
//! `.await`.

use chitty_logs::{SERVICE, ServiceEvent};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use chitty_core::{EventDraft, LamportClock, LamportTime, Seq, TokenHash};
use tokio::time::Instant;
use tracing::info;

use crate::call::{
    Admitted, AuthError, Backend, Chat, ChatConfig, ChatError, NotAdmitted, Opened, Roster, Stored,
};
use crate::fanout::EndReason;
use crate::hub::{Append, Appended, Hub, HubClosed, SessionChange, WriterStopped};
use crate::metrics::{Metrics, NodeKind, NodeSnapshot};
use crate::sessions::{SessionTable, SessionToken};
use crate::store::{Recovered, Store, StoreError};

/// The chat of a single node: the call protocol over [`SingleNode`].
pub type ChatService = Chat<SingleNode>;

impl From<HubClosed> for ChatError {
    fn from(closed: HubClosed) -> Self {
        ChatError::Unavailable(closed.to_string())
    }
}

impl From<WriterStopped> for ChatError {
    fn from(stopped: WriterStopped) -> Self {
        ChatError::Unavailable(stopped.to_string())
    }
}

/// A chat kept by this node alone: its sessions, and the hub that orders, stores and fans out events.
#[derive(Debug)]
pub struct SingleNode {
    /// The node's Lamport clock, shared with the hub, which stamps each event it orders.
    clock: Arc<LamportClock>,
    /// Orders, stores, keeps and fans out events.
    hub: Hub,
    /// Who is present. Taken before the hub's lock, never after it.
    sessions: Mutex<SessionTable>,
    /// How long a session may go without an open stream before the sweep announces it left.
    grace: Duration,
    /// The node's metrics, shared with the hub's fan-out.
    metrics: Arc<Metrics>,
}

impl Chat<SingleNode> {
    /// A chat continuing from what `store` recovered: its events, its clock floor, and its sessions, which
    /// each get the grace period to reconnect.
    pub fn open(config: ChatConfig, store: Store, recovered: Recovered) -> Self {
        Chat::new(&config, SingleNode::open(&config, store, recovered))
    }

    /// A chat that keeps nothing on disk.
    pub fn in_memory(config: ChatConfig) -> Result<Self, StoreError> {
        let (store, recovered) = Store::in_memory()?;
        Ok(Self::open(config, store, recovered))
    }

    /// Announces as left every session that has had no open Broadcast stream for the grace period, and
    /// forgets idle rate-limit state. Returns how many were announced.
    pub fn expire_vanished(&self) -> usize {
        self.forget_idle();
        self.backend().expire_vanished()
    }
}

impl SingleNode {
    /// The node continuing from what `store` recovered.
    fn open(config: &ChatConfig, store: Store, mut recovered: Recovered) -> Self {
        let highest_event = recovered
            .events
            .iter()
            .map(|keyed| keyed.event.lamport)
            .max()
            .unwrap_or_default();
        recovered.lamport_floor = recovered.lamport_floor.max(highest_event);
        let clock = Arc::new(LamportClock::starting_at(recovered.lamport_floor));
        let now = Instant::now();
        let mut sessions = SessionTable::default();
        for (token, stored) in std::mem::take(&mut recovered.sessions) {
            if !sessions.is_present(&stored.name) {
                sessions.admit(token, stored.name.into(), Seq::new(stored.join_seq), now);
            }
        }
        if recovered.last_seq > Seq::new(0) {
            info!(
                component = SERVICE,
                event = ServiceEvent::Recover.as_str(),
                last_seq = recovered.last_seq.get(),
                retained = recovered.events.len(),
                sessions = sessions.len(),
                lamport = recovered.lamport_floor.get(),
            );
        }
        let metrics = Arc::new(Metrics::new(NodeKind::Single));
        Self {
            hub: Hub::start(
                Arc::clone(&clock),
                config.hub,
                store,
                recovered,
                Arc::clone(&metrics),
            ),
            clock,
            sessions: Mutex::new(sessions),
            grace: config.grace,
            metrics,
        }
    }

    /// The grace period after which a session without an open stream is announced as left.
    pub fn grace(&self) -> Duration {
        self.grace
    }

    /// How many Broadcast streams are open.
    pub fn streams_open(&self) -> usize {
        self.hub.streams_open()
    }

    /// Announces as left every session that has had no open Broadcast stream for the grace period.
    /// Returns how many were announced.
    pub fn expire_vanished(&self) -> usize {
        let mut sessions = self.sessions();
        let vanished = sessions.remove_vanished(Instant::now(), self.grace);
        let count = vanished.len();
        for (hash, session, why) in vanished {
            let name = Arc::clone(&session.name);
            let appended = self.hub.append(Append {
                session: Some(SessionChange::Ended(hash)),
                ..Append::event(EventDraft::Left {
                    participant: session.name,
                })
            });
            match appended {
                Ok(Appended::New(event)) => {
                    self.metrics.swept(why.as_str());
                    info!(
                        component = SERVICE,
                        event = ServiceEvent::CrashLeave.as_str(),
                        participant = %name,
                        seq = event.seq.get(),
                        lamport = event.lamport.get(),
                        grace_ms = self.grace.as_millis() as u64,
                        reason = %why,
                    );
                }
                Ok(Appended::Duplicate(_)) => {}
                // Shutting down: the session stays stored, and gets its grace period after the restart.
                Err(HubClosed) => break,
            }
        }
        count
    }

    /// Ends every Broadcast stream with "shutting down", refuses further events, and lets the writer
    /// commit what is queued. Sessions stay stored, so participants can resume after a restart.
    pub fn shutdown(&self) {
        self.hub.close();
    }

    /// Waits until everything queued before [`SingleNode::shutdown`] is on disk.
    pub async fn flushed(&self) {
        self.hub.stopped().await;
    }

    /// The seq of the newest durable event.
    pub fn last_seq(&self) -> Seq {
        self.hub.last_seq()
    }

    /// How many participants are present.
    pub fn present(&self) -> usize {
        self.sessions().len()
    }

    /// What the node holds now, for a scrape of its metrics.
    pub fn snapshot(&self) -> NodeSnapshot {
        let (present, in_grace) = {
            let sessions = self.sessions();
            (sessions.len(), sessions.in_grace())
        };
        let (history_events, history_bytes) = self.hub.window();
        NodeSnapshot {
            present: present as u64,
            streams_open: self.streams_open() as u64,
            in_grace: in_grace as u64,
            lamport: self.clock.now(),
            last_seq: self.last_seq(),
            history_events: history_events as u64,
            history_bytes: history_bytes as u64,
            cluster: None,
        }
    }

    /// Waits until the event a call appended is durable, and says what it stored.
    async fn durable(&self, appended: Appended) -> Result<Stored, ChatError> {
        self.hub.durable(appended.seq()).await?;
        Ok(match appended {
            Appended::New(event) => Stored {
                seq: event.seq,
                lamport: Some(event.lamport),
                repeated: false,
            },
            Appended::Duplicate(seq) => Stored {
                seq,
                lamport: None,
                repeated: true,
            },
        })
    }

    fn sessions(&self) -> MutexGuard<'_, SessionTable> {
        // No code panics while holding this lock, so a poisoned lock still guards consistent state.
        self.sessions.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Backend for SingleNode {
    fn clock(&self) -> &LamportClock {
        &self.clock
    }

    async fn stamp(&self) -> Result<LamportTime, ChatError> {
        Ok(self.hub.stamp().await?)
    }

    fn node_in_cluster(&self) -> Option<&str> {
        None
    }

    fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    async fn admit(&self, name: &str, max_participants: usize) -> Result<Admitted, NotAdmitted> {
        let (token, appended) = {
            let mut sessions = self.sessions();
            if sessions.is_present(name) {
                return Err(NotAdmitted::Taken);
            }
            if sessions.len() >= max_participants {
                return Err(NotAdmitted::Full);
            }
            let participant: Arc<str> = name.into();
            let token = SessionToken::generate();
            let hash = TokenHash::of(token.as_str());
            let appended = self
                .hub
                .append(Append {
                    session: Some(SessionChange::Joined(hash)),
                    ..Append::event(EventDraft::Joined {
                        participant: Arc::clone(&participant),
                    })
                })
                .map_err(ChatError::from)?;
            sessions.admit(hash, participant, appended.seq(), Instant::now());
            (token, appended)
        };
        let joined = self.durable(appended).await?;
        Ok(Admitted { token, joined })
    }

    async fn append_message(
        &self,
        token: &TokenHash,
        text: &str,
        check: impl FnOnce(&Arc<str>) -> Result<Option<Arc<str>>, ChatError> + Send,
    ) -> Result<Stored, ChatError> {
        let appended = {
            let sessions = self.sessions();
            let session = sessions.get(token).ok_or(AuthError::Unknown)?;
            let idempotency_key = check(&session.name)?;
            self.hub.append(Append {
                idempotency_key,
                ..Append::event(EventDraft::Message {
                    participant: Arc::clone(&session.name),
                    text: text.to_owned(),
                })
            })?
        };
        self.durable(appended).await
    }

    async fn end_session(
        &self,
        token: &TokenHash,
        found: impl FnOnce(&Arc<str>) + Send,
    ) -> Result<Stored, ChatError> {
        let appended = {
            let mut sessions = self.sessions();
            let session = sessions.remove(token).ok_or(AuthError::Unknown)?;
            found(&session.name);
            // The leaver's stream ends cleanly just before its left event, so that event reaches the
            // others only.
            self.hub.append(Append {
                ends_stream: session.subscriber(),
                session: Some(SessionChange::Ended(*token)),
                ..Append::event(EventDraft::Left {
                    participant: session.name,
                })
            })?
        };
        self.durable(appended).await
    }

    async fn open_stream(
        &self,
        token: &TokenHash,
        after_seq: Seq,
        found: impl FnOnce(&Arc<str>) + Send,
    ) -> Result<Opened, ChatError> {
        let mut sessions = self.sessions();
        let session = sessions.get(token).ok_or(AuthError::Unknown)?;
        found(&session.name);
        let from = after_seq.max(session.join_seq.previous());
        let subscription = self.hub.subscribe(Arc::clone(&session.name), from)?;
        let replaced = sessions.attach(token, subscription.id(), subscription.end_signal());
        if let Some(replaced) = replaced {
            self.hub.end(replaced, EndReason::Replaced);
        }
        Ok(Opened {
            from,
            subscription,
            replaced: replaced.is_some(),
        })
    }

    /// The sessions table changes when an event is ordered, before it is durable, and the seq given is
    /// the newest durable one. So the list may already include a join, or miss a leave, whose event
    /// comes after that seq: applying those events again changes nothing, which keeps the answer correct.
    async fn roster(
        &self,
        token: &TokenHash,
        found: impl FnOnce(&Arc<str>) + Send,
    ) -> Result<Roster, ChatError> {
        let sessions = self.sessions();
        let session = sessions.get(token).ok_or(AuthError::Unknown)?;
        found(&session.name);
        Ok(Roster {
            names: sessions.names().map(str::to_owned).collect(),
            seq: self.hub.last_seq(),
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::net::IpAddr;
    use std::num::NonZeroU32;

    use chitty_core::validate::MessageError;

    use crate::call::{Credential, JOIN_FAILURES_PER_MINUTE, Joined, Rate, Refused};
    use crate::history::Retention;
    use crate::hub::HubConfig;

    /// A small chat for tests: 3 participants, a 5 s grace period, 100 events of history, queues of
    /// 16, and a publish rate no test reaches.
    pub(crate) fn config() -> ChatConfig {
        ChatConfig {
            grace: Duration::from_secs(5),
            hub: HubConfig {
                retention: Retention {
                    events: 100,
                    bytes: usize::MAX,
                },
                queue_capacity: 16,
            },
            max_participants: 3,
            ..ChatConfig::roomy()
        }
    }

    fn chat() -> ChatService {
        ChatService::in_memory(config()).expect("an in-memory store")
    }

    fn bearer(joined: &Joined) -> Credential<'_> {
        Credential::Bearer(joined.token.as_str())
    }

    async fn join(chat: &ChatService, name: &str, lamport: u64) -> Joined {
        chat.join(name, "", None, LamportTime::new(lamport))
            .await
            .expect("join")
    }

    fn refusal<T: std::fmt::Debug>(result: Result<T, Refused>) -> ChatError {
        result.expect_err("the call must be refused").error
    }

    #[tokio::test]
    async fn each_call_witnesses_the_request_then_stamps_the_event_then_the_response() {
        let chat = chat();
        let joined = join(&chat, "alice", 40).await;
        assert_eq!(joined.times.request, LamportTime::new(40));
        assert_eq!(
            joined.times.received,
            LamportTime::new(41),
            "max(0, 40) + 1"
        );
        assert_eq!(
            joined.times.response,
            LamportTime::new(43),
            "the broadcast took 42; the response is the next send"
        );

        let published = chat
            .publish(bearer(&joined), "hi", "", LamportTime::new(7))
            .await
            .expect("publish");
        assert_eq!(
            published.times.received,
            LamportTime::new(44),
            "max(43, 7) + 1"
        );
        assert_eq!(
            published.times.response,
            LamportTime::new(46),
            "the event took 45"
        );
        assert_eq!(published.seq, joined.seq.next());
    }

    #[tokio::test]
    async fn leave_reaches_the_others_but_not_the_leaver() {
        let chat = chat();
        let alice = join(&chat, "alice", 1).await;
        let bob = join(&chat, "bob", 1).await;
        let mut alice_stream = chat
            .open_stream(bearer(&alice), Seq::new(0), LamportTime::new(1))
            .await
            .expect("open");
        let mut bob_stream = chat
            .open_stream(bearer(&bob), Seq::new(0), LamportTime::new(1))
            .await
            .expect("open");
        let left = chat
            .leave(bearer(&bob), LamportTime::new(1))
            .await
            .expect("leave");

        let mut bob_saw = Vec::new();
        while let Some(event) = bob_stream.next().await {
            bob_saw.push(event.expect("a clean end").seq);
        }
        assert_eq!(
            bob_saw,
            vec![bob.seq],
            "bob sees his join, then his stream ends cleanly"
        );

        let mut alice_saw = Vec::new();
        for _ in 0..3 {
            alice_saw.push(
                alice_stream
                    .next()
                    .await
                    .expect("open")
                    .expect("an event")
                    .seq,
            );
        }
        assert_eq!(alice_saw, vec![alice.seq, bob.seq, left.seq]);
    }

    /// Where a test's log lines go: the JSON lines written while it holds the subscriber.
    #[derive(Clone, Default)]
    struct LogLines(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for LogLines {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .extend_from_slice(bytes);
            Ok(bytes.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl LogLines {
        /// The lines logged so far.
        fn lines(&self) -> Vec<String> {
            let bytes = self.0.lock().unwrap_or_else(PoisonError::into_inner);
            String::from_utf8_lossy(&bytes)
                .lines()
                .map(str::to_owned)
                .collect()
        }
    }

    #[tokio::test]
    async fn a_refused_leave_names_its_participant_as_every_refused_call_does() {
        let chat = chat();
        let alice = join(&chat, "alice", 1).await;
        chat.backend().shutdown();
        let logged = LogLines::default();
        let subscriber = tracing_subscriber::fmt()
            .json()
            .with_writer({
                let logged = logged.clone();
                move || logged.clone()
            })
            .finish();
        let refused = {
            // The test runs on one thread, so the subscriber sees every line of the call.
            let _default = tracing::subscriber::set_default(subscriber);
            refusal(chat.leave(bearer(&alice), LamportTime::new(1)).await)
        };
        assert!(
            matches!(refused, ChatError::Unavailable(_)),
            "got {refused:?}, want the Leave refused as unavailable: the hub is closed"
        );
        let lines = logged.lines();
        let line = lines
            .iter()
            .find(|line| line.contains(r#""event":"refused""#))
            .unwrap_or_else(|| panic!("got lines {lines:?}, want a refused line"));
        assert!(
            line.contains(r#""rpc":"Leave""#) && line.contains(r#""participant":"alice""#),
            "got {line}, want the refused Leave to name alice, whose session was found"
        );
    }

    #[tokio::test]
    async fn an_ended_session_can_do_nothing_and_its_name_is_free() {
        let chat = chat();
        let alice = join(&chat, "alice", 1).await;
        chat.leave(bearer(&alice), LamportTime::new(1))
            .await
            .expect("leave");
        let unknown = ChatError::Unauthenticated(AuthError::Unknown);
        assert_eq!(
            refusal(
                chat.publish(bearer(&alice), "still here?", "", LamportTime::new(1))
                    .await
            ),
            unknown
        );
        assert_eq!(
            refusal(chat.leave(bearer(&alice), LamportTime::new(1)).await),
            unknown
        );
        assert_eq!(
            refusal(
                chat.open_stream(bearer(&alice), Seq::new(0), LamportTime::new(1))
                    .await
            ),
            unknown
        );
        join(&chat, "alice", 1).await;
    }

    #[tokio::test]
    async fn refusals_are_stamped_and_broadcast_nothing() {
        let chat = chat();
        let alice = join(&chat, "alice", 1).await;
        let refused = chat
            .publish(bearer(&alice), "   ", "", LamportTime::new(1))
            .await
            .expect_err("blank");
        assert_eq!(
            refused.error,
            ChatError::InvalidMessage(MessageError::OnlyWhitespace)
        );
        assert!(refused.lamport > Some(alice.times.response));
        assert_eq!(
            refusal(chat.join("ALICE", "", None, LamportTime::new(1)).await),
            ChatError::NameTaken("ALICE".into())
        );
        assert_eq!(
            refusal(
                chat.publish(Credential::Missing, "hi", "", LamportTime::new(1))
                    .await
            ),
            ChatError::Unauthenticated(AuthError::Missing)
        );
        assert_eq!(
            refusal(
                chat.publish(bearer(&alice), "hi", "", LamportTime::new(u64::MAX))
                    .await
            ),
            ChatError::LamportTooLarge(LamportTime::new(u64::MAX))
        );
        assert_eq!(
            refusal(
                chat.publish(bearer(&alice), "hi", &"k".repeat(65), LamportTime::new(1))
                    .await
            ),
            ChatError::IdempotencyKeyTooLong(65)
        );
        assert_eq!(
            chat.backend().last_seq(),
            alice.seq,
            "nothing was broadcast"
        );
    }

    #[tokio::test]
    async fn a_repeated_idempotency_key_publishes_once() {
        let chat = chat();
        let alice = join(&chat, "alice", 1).await;
        let first = chat
            .publish(bearer(&alice), "once", "key-1", LamportTime::new(1))
            .await
            .expect("publish");
        let again = chat
            .publish(bearer(&alice), "once", "key-1", LamportTime::new(1))
            .await
            .expect("publish");
        assert_eq!(again.seq, first.seq);
        assert_eq!(
            chat.backend().last_seq(),
            first.seq,
            "the retry broadcast nothing"
        );
        let other = chat
            .publish(bearer(&alice), "twice", "key-2", LamportTime::new(1))
            .await
            .expect("publish");
        assert_eq!(other.seq, first.seq.next());
    }

    #[tokio::test]
    async fn presence_lists_who_is_here_as_of_a_seq() {
        let chat = chat();
        let alice = join(&chat, "alice", 1).await;
        let bob = join(&chat, "bob", 1).await;
        let presence = chat
            .participants(bearer(&alice), LamportTime::new(1))
            .await
            .expect("present");
        assert_eq!(presence.names, vec!["alice".to_owned(), "bob".to_owned()]);
        assert_eq!(presence.seq, bob.seq);
        chat.leave(bearer(&bob), LamportTime::new(1))
            .await
            .expect("leave");
        let presence = chat
            .participants(bearer(&alice), LamportTime::new(1))
            .await
            .expect("present");
        assert_eq!(presence.names, vec!["alice".to_owned()]);
        assert_eq!(
            refusal(chat.participants(bearer(&bob), LamportTime::new(1)).await),
            ChatError::Unauthenticated(AuthError::Unknown)
        );
    }

    #[tokio::test]
    async fn the_chat_admits_at_most_its_maximum() {
        let chat = chat();
        for name in ["a", "b", "c"] {
            join(&chat, name, 1).await;
        }
        assert_eq!(
            refusal(chat.join("d", "", None, LamportTime::new(1)).await),
            ChatError::Full(3)
        );
    }

    #[tokio::test]
    async fn a_participant_past_its_burst_is_refused_and_others_are_not() {
        let chat = ChatService::in_memory(ChatConfig {
            publish_rate: Rate {
                per_second: NonZeroU32::new(1).expect("non-zero"),
                burst: NonZeroU32::new(3).expect("non-zero"),
            },
            ..config()
        })
        .expect("an in-memory store");
        let flooder = join(&chat, "flooder", 1).await;
        let calm = join(&chat, "calm", 1).await;
        for n in 0..3 {
            chat.publish(bearer(&flooder), &format!("m{n}"), "", LamportTime::new(1))
                .await
                .expect("within the burst");
        }
        assert!(matches!(
            refusal(
                chat.publish(bearer(&flooder), "one too many", "", LamportTime::new(1))
                    .await
            ),
            ChatError::RateLimited { .. }
        ));
        chat.publish(bearer(&calm), "hello", "", LamportTime::new(1))
            .await
            .expect("others are unaffected");
    }

    #[tokio::test]
    async fn a_join_secret_is_required_and_wrong_guesses_are_throttled() {
        let chat = ChatService::in_memory(ChatConfig {
            join_secret: Some("sesame".into()),
            max_participants: 10,
            ..config()
        })
        .expect("an in-memory store");
        let peer = Some(IpAddr::from([192, 0, 2, 7]));
        chat.join("alice", "sesame", peer, LamportTime::new(1))
            .await
            .expect("the right secret");
        for guess in 0..JOIN_FAILURES_PER_MINUTE {
            assert_eq!(
                refusal(
                    chat.join(
                        "mallory",
                        &format!("guess {guess}"),
                        peer,
                        LamportTime::new(1)
                    )
                    .await
                ),
                ChatError::WrongJoinSecret
            );
        }
        assert!(matches!(
            refusal(
                chat.join("mallory", "one more guess", peer, LamportTime::new(1))
                    .await
            ),
            ChatError::TooManyJoinFailures(_)
        ));
        assert!(
            matches!(
                refusal(
                    chat.join("mallory", "sesame", peer, LamportTime::new(1))
                        .await
                ),
                ChatError::TooManyJoinFailures(_)
            ),
            "a blocked address may not try even the right secret"
        );
        chat.join(
            "bob",
            "sesame",
            Some(IpAddr::from([192, 0, 2, 8])),
            LamportTime::new(1),
        )
        .await
        .expect("other addresses are unaffected");
    }

    #[tokio::test(start_paused = true)]
    async fn a_participant_without_a_stream_for_the_grace_period_is_announced_left_once() {
        let chat = chat();
        let alice = join(&chat, "alice", 1).await;
        let bob = join(&chat, "bob", 1).await;
        let mut alice_stream = chat
            .open_stream(bearer(&alice), Seq::new(0), LamportTime::new(1))
            .await
            .expect("open");
        let bob_stream = chat
            .open_stream(bearer(&bob), Seq::new(0), LamportTime::new(1))
            .await
            .expect("open");
        drop(bob_stream);

        tokio::time::advance(Duration::from_secs(4)).await;
        assert_eq!(chat.expire_vanished(), 0, "still within the grace period");
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(chat.expire_vanished(), 1);
        assert_eq!(chat.expire_vanished(), 0, "announced once");

        let mut texts = Vec::new();
        for _ in 0..3 {
            texts.push(
                alice_stream
                    .next()
                    .await
                    .expect("open")
                    .expect("an event")
                    .text
                    .clone(),
            );
        }
        assert!(
            texts[2].starts_with("Participant bob left Chitty-Chat at Lamport time "),
            "{texts:?}"
        );
        assert_eq!(chat.backend().present(), 1);
    }

    #[tokio::test]
    async fn a_reopened_store_continues_seq_clock_and_sessions() {
        let directory = tempfile::tempdir().expect("a temporary directory");
        let (alice_token, last_seq, last_lamport) = {
            let (store, recovered) = Store::open(directory.path()).expect("open");
            let chat = ChatService::open(config(), store, recovered);
            let alice = join(&chat, "alice", 1).await;
            let published = chat
                .publish(
                    bearer(&alice),
                    "before the restart",
                    "k",
                    LamportTime::new(1),
                )
                .await
                .expect("publish");
            chat.backend().shutdown();
            chat.backend().flushed().await;
            (alice.token, published.seq, published.times.response)
        };
        let (store, recovered) = Store::open(directory.path()).expect("reopen");
        let chat = ChatService::open(config(), store, recovered);
        let credential = Credential::Bearer(alice_token.as_str());
        let mut stream = chat
            .open_stream(credential, last_seq.previous(), LamportTime::new(1))
            .await
            .expect("the session survived");
        let replayed = stream.next().await.expect("open").expect("an event");
        assert_eq!(
            (replayed.seq, replayed.text.as_str()),
            (last_seq, "before the restart")
        );
        let again = chat
            .publish(credential, "before the restart", "k", LamportTime::new(1))
            .await
            .expect("publish");
        assert_eq!(again.seq, last_seq, "the idempotency key survived too");
        let after = chat
            .publish(credential, "after the restart", "", LamportTime::new(1))
            .await
            .expect("publish");
        assert_eq!(after.seq, last_seq.next(), "seq continues without a gap");
        assert!(
            after.times.received > last_lamport,
            "the clock never goes back"
        );
        assert_eq!(
            refusal(chat.join("alice", "", None, LamportTime::new(1)).await),
            ChatError::NameTaken("alice".into())
        );
    }
}
