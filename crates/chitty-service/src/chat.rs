//! What each service call means, independent of the transport.
//!
//! [`ChatService`] implements Join, Publish, Broadcast and Leave on domain types: the gRPC layer only
//! translates. Every call follows the Lamport rules of the service node:
//!
//! 1. witness the caller's timestamp (refusing one above [`MAX_ACCEPTED_TIME`]);
//! 2. do the work, where the hub stamps any event it broadcasts with a tick of its own;
//! 3. tick once more to stamp the response.
//!
//! Every call is logged here, accepted or refused, with the participant, seq and Lamport times.
//!
//! # Architecture invariant
//!
//! Lock order is sessions, then hub: a method holding the hub lock never takes the sessions lock. Publish,
//! Leave and stream opening hold the sessions lock while they append or subscribe, so a participant's
//! message can never be ordered after its own left event.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use chitty_core::lamport::MAX_ACCEPTED_TIME;
use chitty_core::validate::{self, MessageError, NameError};
use chitty_core::{Event, EventDraft, LamportClock};
use thiserror::Error;
use tokio::time::Instant;
use tracing::info;

use crate::history::HistoryError;
use crate::hub::{EndReason, Hub, HubClosed, HubConfig, SubscribeError, Subscription};
use crate::sessions::{SessionTable, SessionToken};

/// How the chat behaves.
#[derive(Debug, Clone, Copy)]
pub struct ChatConfig {
    /// How long a session may go without an open Broadcast stream before it is announced as left.
    pub grace: Duration,
    /// How the hub is sized.
    pub hub: HubConfig,
}

/// The credential a call presented, as the transport found it.
#[derive(Debug, Clone, Copy)]
pub enum Credential<'a> {
    /// A bearer token.
    Bearer(&'a str),
    /// No credential at all.
    Missing,
    /// Something that is not a bearer token.
    Malformed,
}

/// Why a call presenting a credential was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum AuthError {
    /// No credential.
    #[error("missing session token: send the token from Join as `authorization: Bearer <token>`")]
    Missing,
    /// A credential that is not a bearer token.
    #[error("malformed credential: send the token from Join as `authorization: Bearer <token>`")]
    Malformed,
    /// A token that belongs to no present session.
    #[error("unknown session token: it was never issued, or its session has ended; join again")]
    Unknown,
}

/// Why a call was refused. Each variant maps to one gRPC status code in the gRPC layer.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ChatError {
    /// The request's Lamport time is implausibly large.
    #[error("lamport time {0} is beyond the accepted maximum of {MAX_ACCEPTED_TIME}")]
    LamportTooLarge(u64),
    /// The name is not acceptable.
    #[error(transparent)]
    InvalidName(#[from] NameError),
    /// A present participant already has the name.
    #[error("the name {0:?} is taken by a participant who is present")]
    NameTaken(String),
    /// The message is not acceptable.
    #[error(transparent)]
    InvalidMessage(#[from] MessageError),
    /// The caller has no valid session.
    #[error(transparent)]
    Unauthenticated(#[from] AuthError),
    /// The history cannot serve the requested resume point.
    #[error(transparent)]
    History(#[from] HistoryError),
    /// The service is shutting down.
    #[error("the service is shutting down")]
    ShuttingDown,
}

impl From<HubClosed> for ChatError {
    fn from(_: HubClosed) -> Self {
        ChatError::ShuttingDown
    }
}

impl From<SubscribeError> for ChatError {
    fn from(error: SubscribeError) -> Self {
        match error {
            SubscribeError::History(error) => ChatError::History(error),
            SubscribeError::Closed => ChatError::ShuttingDown,
        }
    }
}

/// The service's Lamport times around one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallTimes {
    /// The caller's timestamp on the request.
    pub request: u64,
    /// The service's clock after witnessing the request.
    pub received: u64,
    /// The timestamp of the response.
    pub response: u64,
}

/// A refused call: why, and the Lamport time the service stamped its answer with.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{error}")]
pub struct Refused {
    /// Why the call was refused.
    pub error: ChatError,
    /// The service's timestamp on the refusal.
    pub lamport: u64,
}

/// The service calls, for log lines.
#[derive(Debug, Clone, Copy)]
enum Call {
    Join,
    Publish,
    Leave,
    Broadcast,
}

impl Call {
    /// The RPC's name in the contract.
    fn rpc(self) -> &'static str {
        match self {
            Call::Join => "Join",
            Call::Publish => "Publish",
            Call::Leave => "Leave",
            Call::Broadcast => "Broadcast",
        }
    }

    /// The `event` field of the line logged when the call is accepted.
    fn event(self) -> &'static str {
        match self {
            Call::Join => "join",
            Call::Publish => "publish",
            Call::Leave => "leave",
            Call::Broadcast => "broadcast_open",
        }
    }
}

/// A successful Join.
#[derive(Debug)]
pub struct Joined {
    /// The new session's secret.
    pub token: SessionToken,
    /// The joined event.
    pub event: Arc<Event>,
    /// The Lamport times of the call.
    pub times: CallTimes,
}

/// A successful Publish or Leave: the event it broadcast.
#[derive(Debug)]
pub struct Broadcasted {
    /// The message or left event.
    pub event: Arc<Event>,
    /// The Lamport times of the call.
    pub times: CallTimes,
}

/// The chat: sessions, the hub and the service clock.
#[derive(Debug)]
pub struct ChatService {
    /// The service node's Lamport clock, shared with the hub.
    clock: Arc<LamportClock>,
    /// Orders, keeps and fans out events.
    hub: Hub,
    /// Who is present. Taken before the hub's lock, never after it.
    sessions: Mutex<SessionTable>,
    /// How long a session may go without an open stream.
    grace: Duration,
}

impl ChatService {
    /// A chat with nobody present and an empty history.
    pub fn new(config: ChatConfig) -> Self {
        let clock = Arc::new(LamportClock::new());
        Self {
            hub: Hub::new(Arc::clone(&clock), config.hub),
            clock,
            sessions: Mutex::new(SessionTable::default()),
            grace: config.grace,
        }
    }

    /// The grace period after which a session without an open stream is announced as left.
    pub fn grace(&self) -> Duration {
        self.grace
    }

    /// Admits `name` and broadcasts its joined event.
    pub fn join(&self, name: &str, request_lamport: u64) -> Result<Joined, Refused> {
        let received = self.receive(Call::Join, request_lamport)?;
        let outcome = self.admit(name);
        let (token, event, times) =
            self.answer(Call::Join, request_lamport, received, outcome, || {
                Some(name.to_owned())
            })?;
        Ok(Joined {
            token,
            event,
            times,
        })
    }

    fn admit(&self, name: &str) -> Result<(SessionToken, Arc<Event>), ChatError> {
        validate::check_name(name)?;
        let mut sessions = self.sessions();
        if sessions.is_present(name) {
            return Err(ChatError::NameTaken(name.to_owned()));
        }
        let participant: Arc<str> = name.into();
        let event = self.hub.append(EventDraft::Joined {
            participant: Arc::clone(&participant),
        })?;
        let token = sessions.admit(participant, event.seq, Instant::now());
        Ok((token, event))
    }

    /// Publishes `text` for the session `credential` proves, and broadcasts it.
    pub fn publish(
        &self,
        credential: Credential<'_>,
        text: &str,
        request_lamport: u64,
    ) -> Result<Broadcasted, Refused> {
        let received = self.receive(Call::Publish, request_lamport)?;
        let outcome = (|| {
            let sessions = self.sessions();
            let session = sessions.get(token(credential)?).ok_or(AuthError::Unknown)?;
            validate::check_message(text)?;
            let event = self.hub.append(EventDraft::Message {
                participant: Arc::clone(&session.name),
                text: text.to_owned(),
            })?;
            Ok(((), event))
        })();
        let ((), event, times) =
            self.answer(Call::Publish, request_lamport, received, outcome, || {
                self.name_of(credential)
            })?;
        Ok(Broadcasted { event, times })
    }

    /// Ends the session `credential` proves and broadcasts its left event to the others.
    pub fn leave(
        &self,
        credential: Credential<'_>,
        request_lamport: u64,
    ) -> Result<Broadcasted, Refused> {
        let received = self.receive(Call::Leave, request_lamport)?;
        let outcome = (|| {
            let mut sessions = self.sessions();
            let session = sessions
                .remove(token(credential)?)
                .ok_or(AuthError::Unknown)?;
            // End the leaver's stream first, so the left event goes to the others only.
            if let Some(subscriber) = session.subscriber() {
                self.hub.end(subscriber, EndReason::Left);
            }
            let event = self.hub.append(EventDraft::Left {
                participant: session.name,
            })?;
            Ok(((), event))
        })();
        let ((), event, times) =
            self.answer(Call::Leave, request_lamport, received, outcome, || {
                self.name_of(credential)
            })?;
        Ok(Broadcasted { event, times })
    }

    /// Stamps the response to a call that broadcast an event, and logs the call, accepted or refused.
    fn answer<T>(
        &self,
        call: Call,
        request_lamport: u64,
        received: u64,
        outcome: Result<(T, Arc<Event>), ChatError>,
        caller: impl FnOnce() -> Option<String>,
    ) -> Result<(T, Arc<Event>, CallTimes), Refused> {
        let times = CallTimes {
            request: request_lamport,
            received,
            response: self.clock.tick(),
        };
        match outcome {
            Ok((value, event)) => {
                info!(
                    component = "service",
                    event = call.event(),
                    participant = %event.participant,
                    seq = event.seq,
                    lamport = event.lamport,
                    request_lamport,
                    received_lamport = received,
                    response_lamport = times.response,
                );
                Ok((value, event, times))
            }
            Err(error) => Err(refused(call, caller().as_deref(), error, times)),
        }
    }

    /// Opens the Broadcast stream of the session `credential` proves, replacing any open one.
    ///
    /// The stream delivers every event after `after_seq`, but none from before the participant's join.
    pub fn open_stream(
        &self,
        credential: Credential<'_>,
        after_seq: u64,
        request_lamport: u64,
    ) -> Result<Subscription, Refused> {
        let received = self.receive(Call::Broadcast, request_lamport)?;
        let outcome = (|| {
            let mut sessions = self.sessions();
            let token = token(credential)?;
            let session = sessions.get(token).ok_or(AuthError::Unknown)?;
            let name = Arc::clone(&session.name);
            let from = after_seq.max(session.join_seq - 1);
            let subscription = self.hub.subscribe(Arc::clone(&name), from)?;
            let replaced = sessions.attach(token, subscription.id(), subscription.end_signal());
            if let Some(replaced) = replaced {
                self.hub.end(replaced, EndReason::Replaced);
            }
            Ok::<_, ChatError>((name, from, subscription, replaced.is_some()))
        })();
        match outcome {
            Ok((name, from, subscription, replaced)) => {
                info!(
                    component = "service",
                    event = Call::Broadcast.event(),
                    participant = %name,
                    after_seq,
                    from_seq = from + 1,
                    replay = subscription.replay_len(),
                    replaced,
                    request_lamport,
                    received_lamport = received,
                );
                Ok(subscription)
            }
            Err(error) => {
                let times = CallTimes {
                    request: request_lamport,
                    received,
                    response: self.clock.tick(),
                };
                let name = self.name_of(credential);
                Err(refused(Call::Broadcast, name.as_deref(), error, times))
            }
        }
    }

    /// Announces as left every session that has had no open Broadcast stream for the grace period.
    /// Returns how many there were.
    pub fn expire_vanished(&self) -> usize {
        let mut sessions = self.sessions();
        let vanished = sessions.remove_vanished(Instant::now(), self.grace);
        let count = vanished.len();
        for (session, why) in vanished {
            let name = Arc::clone(&session.name);
            match self.hub.append(EventDraft::Left {
                participant: session.name,
            }) {
                Ok(event) => info!(
                    component = "service",
                    event = "crash_leave",
                    participant = %name,
                    seq = event.seq,
                    lamport = event.lamport,
                    grace_ms = self.grace.as_millis() as u64,
                    reason = %why,
                ),
                // Shutting down: nobody is listening for the announcement any more.
                Err(HubClosed) => break,
            }
        }
        count
    }

    /// Ends every Broadcast stream with "shutting down" and refuses further events.
    pub fn shutdown(&self) {
        self.hub.close();
    }

    /// How many participants are present.
    pub fn present(&self) -> usize {
        self.sessions().len()
    }

    /// A fresh timestamp for a message that is not the answer to a call, such as the end of a stream.
    pub fn stamp(&self) -> u64 {
        self.clock.tick()
    }

    /// The receive rule for a request stamped `request_lamport`: witness it, or refuse an implausible one.
    fn receive(&self, call: Call, request_lamport: u64) -> Result<u64, Refused> {
        if request_lamport > MAX_ACCEPTED_TIME {
            let response = self.clock.tick();
            let times = CallTimes {
                request: request_lamport,
                received: response,
                response,
            };
            return Err(refused(
                call,
                None,
                ChatError::LamportTooLarge(request_lamport),
                times,
            ));
        }
        Ok(self.clock.witness(request_lamport))
    }

    /// The name behind a credential, for log lines about refused calls.
    fn name_of(&self, credential: Credential<'_>) -> Option<String> {
        let token = token(credential).ok()?;
        Some(self.sessions().get(token)?.name.to_string())
    }

    fn sessions(&self) -> MutexGuard<'_, SessionTable> {
        // No code panics while holding this lock, so a poisoned lock still guards consistent state.
        self.sessions
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

fn token(credential: Credential<'_>) -> Result<&str, AuthError> {
    match credential {
        Credential::Bearer(token) => Ok(token),
        Credential::Missing => Err(AuthError::Missing),
        Credential::Malformed => Err(AuthError::Malformed),
    }
}

/// Logs a refused call and stamps the refusal with the response time.
fn refused(call: Call, participant: Option<&str>, error: ChatError, times: CallTimes) -> Refused {
    info!(
        component = "service",
        event = "refused",
        rpc = call.rpc(),
        participant = participant.unwrap_or(""),
        reason = %error,
        request_lamport = times.request,
        received_lamport = times.received,
        response_lamport = times.response,
    );
    Refused {
        error,
        lamport: times.response,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chat() -> ChatService {
        ChatService::new(ChatConfig {
            grace: Duration::from_secs(5),
            hub: HubConfig {
                history_limit: 100,
                queue_capacity: 16,
            },
        })
    }

    fn bearer(joined: &Joined) -> Credential<'_> {
        Credential::Bearer(joined.token.as_str())
    }

    #[test]
    fn each_call_witnesses_the_request_then_stamps_the_event_then_the_response() {
        let chat = chat();
        let joined = chat.join("alice", 40).expect("join");
        assert_eq!(joined.times.request, 40);
        assert_eq!(joined.times.received, 41, "max(0, 40) + 1");
        assert_eq!(joined.event.lamport, 42, "the broadcast is the next send");
        assert_eq!(
            joined.times.response, 43,
            "the response is the send after that"
        );

        let published = chat.publish(bearer(&joined), "hi", 7).expect("publish");
        assert_eq!(published.times.received, 44, "max(43, 7) + 1");
        assert_eq!(published.event.lamport, 45);
        assert_eq!(published.times.response, 46);
        assert_eq!(published.event.seq, joined.event.seq + 1);
    }

    #[tokio::test]
    async fn leave_reaches_the_others_but_not_the_leaver() {
        let chat = chat();
        let alice = chat.join("alice", 1).expect("join");
        let bob = chat.join("bob", 1).expect("join");
        let mut alice_stream = chat.open_stream(bearer(&alice), 0, 1).expect("open");
        let mut bob_stream = chat.open_stream(bearer(&bob), 0, 1).expect("open");
        let left = chat.leave(bearer(&bob), 1).expect("leave");

        let mut bob_saw = Vec::new();
        while let Some(event) = bob_stream.next().await {
            bob_saw.push(event.expect("a clean end").seq);
        }
        assert_eq!(
            bob_saw,
            vec![bob.event.seq],
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
        assert_eq!(
            alice_saw,
            vec![alice.event.seq, bob.event.seq, left.event.seq]
        );
    }

    #[test]
    fn an_ended_session_can_do_nothing_and_its_name_is_free() {
        let chat = chat();
        let alice = chat.join("alice", 1).expect("join");
        chat.leave(bearer(&alice), 1).expect("leave");
        for refused in [
            chat.publish(bearer(&alice), "still here?", 1).map(|_| ()),
            chat.leave(bearer(&alice), 1).map(|_| ()),
            chat.open_stream(bearer(&alice), 0, 1).map(|_| ()),
        ] {
            assert_eq!(
                refused.map_err(|refused| refused.error),
                Err(ChatError::Unauthenticated(AuthError::Unknown))
            );
        }
        assert!(chat.join("alice", 1).is_ok());
    }

    #[test]
    fn refusals_are_stamped_and_broadcast_nothing() {
        let chat = chat();
        let alice = chat.join("alice", 1).expect("join");
        let refused = chat.publish(bearer(&alice), "   ", 1).expect_err("blank");
        assert_eq!(
            refused.error,
            ChatError::InvalidMessage(MessageError::OnlyWhitespace)
        );
        assert!(refused.lamport > alice.times.response);
        assert_eq!(
            chat.join("alice", 1)
                .map(|_| ())
                .map_err(|refused| refused.error),
            Err(ChatError::NameTaken("alice".into()))
        );
        assert_eq!(
            chat.publish(Credential::Missing, "hi", 1)
                .map(|_| ())
                .map_err(|r| r.error),
            Err(ChatError::Unauthenticated(AuthError::Missing))
        );
        assert_eq!(
            chat.publish(bearer(&alice), "hi", u64::MAX)
                .map(|_| ())
                .map_err(|r| r.error),
            Err(ChatError::LamportTooLarge(u64::MAX))
        );
        assert_eq!(
            chat.hub.last_seq(),
            alice.event.seq,
            "nothing was broadcast"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_participant_without_a_stream_for_the_grace_period_is_announced_left_once() {
        let chat = chat();
        let alice = chat.join("alice", 1).expect("join");
        let bob = chat.join("bob", 1).expect("join");
        let mut alice_stream = chat.open_stream(bearer(&alice), 0, 1).expect("open");
        let bob_stream = chat.open_stream(bearer(&bob), 0, 1).expect("open");
        drop(bob_stream);

        tokio::time::advance(Duration::from_secs(4)).await;
        assert_eq!(chat.expire_vanished(), 0, "still within the grace period");
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(chat.expire_vanished(), 1);
        assert_eq!(chat.expire_vanished(), 0, "announced once");

        let texts: Vec<String> = [
            alice_stream.next().await,
            alice_stream.next().await,
            alice_stream.next().await,
        ]
        .into_iter()
        .map(|event| event.expect("open").expect("an event").text.clone())
        .collect();
        assert!(
            texts[2].starts_with("Participant bob left Chitty-Chat at Lamport time "),
            "{texts:?}"
        );
        assert_eq!(chat.present(), 1);
    }
}
