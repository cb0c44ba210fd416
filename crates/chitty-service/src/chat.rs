//! What each service call means, independent of the transport.
//!
//! [`ChatService`] implements Join, Publish, Broadcast and Leave on domain types: the gRPC layer only
//! translates. Every call follows the Lamport rules of the service node:
//!
//! 1. witness the caller's timestamp (refusing one above [`MAX_ACCEPTED_TIME`]);
//! 2. do the work, where the hub stamps any event it broadcasts with a tick of its own, and wait until that
//!    event is durable;
//! 3. tick once more to stamp the response.
//!
//! Every call is logged here, accepted or refused, with the participant, seq and Lamport times. Abuse is
//! bounded here too: a publish rate per participant, a cap on participants, and an optional join secret
//! whose repeated failures from one address are throttled.
//!
//! # Architecture invariant
//!
//! Lock order is sessions, then hub: a method holding the hub lock never takes the sessions lock. Publish,
//! Leave and stream opening hold the sessions lock while they append or subscribe, so a participant's
//! message can never be ordered after its own left event. No lock is held across an `.await`.

use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use chitty_core::lamport::MAX_ACCEPTED_TIME;
use chitty_core::validate::{self, MessageError, NameError};
use chitty_core::{EventDraft, LamportClock, TokenHash};
use governor::clock::Clock;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use thiserror::Error;
use tokio::time::Instant;
use tracing::info;

use crate::fanout::{EndReason, SubscribeError, Subscription};
use crate::history::HistoryError;
use crate::hub::{Append, Appended, Hub, HubClosed, HubConfig, SessionChange, WriterStopped};
use crate::sessions::{SessionTable, SessionToken};
use crate::store::{Recovered, Store, StoreError};

/// The longest idempotency key accepted, in bytes.
pub const MAX_IDEMPOTENCY_KEY_BYTES: usize = 64;

/// How many failed join secrets one address may send per minute before it must wait.
const JOIN_FAILURES_PER_MINUTE: u32 = 5;

/// How long an address that sent too many wrong join secrets must wait.
const JOIN_FAILURE_COOLDOWN: Duration = Duration::from_secs(30);

/// A rate: so many per second on average, with bursts up to a bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    /// The sustained rate, per second.
    pub per_second: NonZeroU32,
    /// The most that may come at once.
    pub burst: NonZeroU32,
}

/// How the chat behaves.
#[derive(Debug, Clone)]
pub struct ChatConfig {
    /// How long a session may go without an open Broadcast stream before it is announced as left.
    pub grace: Duration,
    /// How the hub is sized.
    pub hub: HubConfig,
    /// The most participants present at once.
    pub max_participants: usize,
    /// How fast each participant may publish.
    pub publish_rate: Rate,
    /// A secret every Join must present, if set.
    pub join_secret: Option<String>,
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
    /// A present participant already has the name, or one that looks the same.
    #[error(
        "the name {0:?} is taken by a participant who is present, or looks the same as one that is"
    )]
    NameTaken(String),
    /// As many participants are present as the service admits.
    #[error("the chat is full: {0} participants are present, the most this service admits")]
    Full(usize),
    /// The Join did not present the service's join secret.
    #[error("wrong join secret")]
    WrongJoinSecret,
    /// This address sent too many wrong join secrets.
    #[error("too many wrong join secrets from this address; try again in {} s", .0.as_secs().max(1))]
    TooManyJoinFailures(Duration),
    /// The message is not acceptable.
    #[error(transparent)]
    InvalidMessage(#[from] MessageError),
    /// The idempotency key is too long.
    #[error("the idempotency key is {0} bytes long, over the limit of {MAX_IDEMPOTENCY_KEY_BYTES}")]
    IdempotencyKeyTooLong(usize),
    /// The participant publishes faster than allowed.
    #[error(
        "you are publishing too fast: at most {per_second} messages per second, in bursts of up to {burst}; try again in {} ms",
        retry_after.as_millis().max(1)
    )]
    RateLimited {
        /// The sustained rate allowed.
        per_second: NonZeroU32,
        /// The burst allowed.
        burst: NonZeroU32,
        /// How long until the next message would be accepted.
        retry_after: Duration,
    },
    /// The caller has no valid session.
    #[error(transparent)]
    Unauthenticated(#[from] AuthError),
    /// The history cannot serve the requested resume point.
    #[error(transparent)]
    History(#[from] HistoryError),
    /// The service is shutting down, or its store failed.
    #[error("{0}")]
    Unavailable(String),
}

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

impl From<SubscribeError> for ChatError {
    fn from(error: SubscribeError) -> Self {
        match error {
            SubscribeError::History(error) => ChatError::History(error),
            SubscribeError::Closed => ChatError::Unavailable(error.to_string()),
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

/// A refused call: why, and the Lamport time the service stamped its answer with, if it could.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{error}")]
pub struct Refused {
    /// Why the call was refused.
    pub error: ChatError,
    /// The service's timestamp on the refusal; `None` only when the service stops and cannot stamp.
    pub lamport: Option<u64>,
}

/// The service calls, for log lines.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Call {
    Join,
    Publish,
    Leave,
    Broadcast,
    Participants,
}

impl Call {
    /// The RPC's name in the contract.
    pub(crate) fn rpc(self) -> &'static str {
        match self {
            Call::Join => "Join",
            Call::Publish => "Publish",
            Call::Leave => "Leave",
            Call::Broadcast => "Broadcast",
            Call::Participants => "Participants",
        }
    }

    /// The `event` field of the line logged when the call is accepted.
    pub(crate) fn event(self) -> &'static str {
        match self {
            Call::Join => "join",
            Call::Publish => "publish",
            Call::Leave => "leave",
            Call::Broadcast => "broadcast_open",
            Call::Participants => "participants",
        }
    }
}

/// A successful Join.
#[derive(Debug)]
pub struct Joined {
    /// The new session's secret.
    pub token: SessionToken,
    /// The seq of the joined event.
    pub seq: u64,
    /// The Lamport times of the call.
    pub times: CallTimes,
}

/// A successful Publish or Leave.
#[derive(Debug)]
pub struct Done {
    /// The seq of the event the call broadcast (for a repeated Publish, the seq of the first).
    pub seq: u64,
    /// The Lamport times of the call.
    pub times: CallTimes,
}

/// Who is present, as of an event.
#[derive(Debug)]
pub struct Presence {
    /// The names of the participants present, sorted.
    pub names: Vec<String>,
    /// The newest event the list reflects: later joined and left events keep it current.
    pub seq: u64,
    /// The Lamport times of the call.
    pub times: CallTimes,
}

/// The chat: sessions, the hub, the service clock, and the limits that keep abuse bounded.
#[derive(Debug)]
pub struct ChatService {
    /// The service node's Lamport clock, shared with the hub.
    clock: Arc<LamportClock>,
    /// Orders, stores, keeps and fans out events.
    hub: Hub,
    /// Who is present. Taken before the hub's lock, never after it.
    sessions: Mutex<SessionTable>,
    /// How long a session may go without an open stream.
    grace: Duration,
    /// The most participants present at once.
    max_participants: usize,
    /// The publish rate each participant is held to, one token bucket per name.
    publish_limits: PublishLimits,
    /// The join secret, if any, and the throttling of wrong ones.
    join_gate: JoinGate,
}

impl ChatService {
    /// A chat continuing from what `store` recovered: its events, its clock floor, and its sessions, which
    /// each get the grace period to reconnect.
    pub fn open(config: ChatConfig, store: Store, mut recovered: Recovered) -> Self {
        let highest_event = recovered
            .events
            .iter()
            .map(|keyed| keyed.event.lamport)
            .max()
            .unwrap_or(0);
        recovered.lamport_floor = recovered.lamport_floor.max(highest_event);
        let clock = Arc::new(LamportClock::starting_at(recovered.lamport_floor));
        let now = Instant::now();
        let mut sessions = SessionTable::default();
        for (token, stored) in std::mem::take(&mut recovered.sessions) {
            if !sessions.is_present(&stored.name) {
                sessions.admit(token, stored.name.into(), stored.join_seq, now);
            }
        }
        if recovered.last_seq > 0 {
            info!(
                component = "service",
                event = "recover",
                last_seq = recovered.last_seq,
                retained = recovered.events.len(),
                sessions = sessions.len(),
                lamport = recovered.lamport_floor,
            );
        }
        Self {
            hub: Hub::start(Arc::clone(&clock), config.hub, store, recovered),
            clock,
            sessions: Mutex::new(sessions),
            grace: config.grace,
            max_participants: config.max_participants,
            publish_limits: PublishLimits::new(config.publish_rate),
            join_gate: JoinGate::new(config.join_secret.as_deref()),
        }
    }

    /// A chat that keeps nothing on disk.
    pub fn in_memory(config: ChatConfig) -> Result<Self, StoreError> {
        let (store, recovered) = Store::in_memory()?;
        Ok(Self::open(config, store, recovered))
    }

    /// The grace period after which a session without an open stream is announced as left.
    pub fn grace(&self) -> Duration {
        self.grace
    }

    /// Admits `name`, presenting `join_secret` from address `peer`, and broadcasts its joined event.
    pub async fn join(
        &self,
        name: &str,
        join_secret: &str,
        peer: Option<IpAddr>,
        request_lamport: u64,
    ) -> Result<Joined, Refused> {
        let received = self.receive(Call::Join, request_lamport).await?;
        let outcome = self
            .until_durable(self.admit(name, join_secret, peer))
            .await;
        let times = self.respond(request_lamport, received).await;
        match outcome {
            Ok((token, appended)) => {
                let times =
                    times.map_err(|error| self.refuse(Call::Join, Some(name), error, None))?;
                accepted(Call::Join, name, &appended, times);
                Ok(Joined {
                    token,
                    seq: appended.seq(),
                    times,
                })
            }
            Err(error) => Err(self.refuse(Call::Join, Some(name), error, times.ok())),
        }
    }

    fn admit(
        &self,
        name: &str,
        join_secret: &str,
        peer: Option<IpAddr>,
    ) -> Result<(SessionToken, Appended), ChatError> {
        self.join_gate.check(join_secret, peer)?;
        validate::check_name(name)?;
        let mut sessions = self.sessions();
        if sessions.is_present(name) {
            return Err(ChatError::NameTaken(name.to_owned()));
        }
        if sessions.len() >= self.max_participants {
            return Err(ChatError::Full(self.max_participants));
        }
        let participant: Arc<str> = name.into();
        let token = SessionToken::generate();
        let hash = TokenHash::of(token.as_str());
        let appended = self.hub.append(Append {
            session: Some(SessionChange::Joined(hash)),
            ..Append::event(EventDraft::Joined {
                participant: Arc::clone(&participant),
            })
        })?;
        sessions.admit(hash, participant, appended.seq(), Instant::now());
        Ok((token, appended))
    }

    /// Publishes `text` for the session `credential` proves, and broadcasts it once it is durable.
    ///
    /// A non-empty `idempotency_key` that this participant already used does not publish again: the
    /// answer is the seq of the first publish.
    pub async fn publish(
        &self,
        credential: Credential<'_>,
        text: &str,
        idempotency_key: &str,
        request_lamport: u64,
    ) -> Result<Done, Refused> {
        let received = self.receive(Call::Publish, request_lamport).await?;
        let appended = (|| {
            let sessions = self.sessions();
            let session = sessions
                .get(&token_hash(credential)?)
                .ok_or(AuthError::Unknown)?;
            let key = check_publish(text, idempotency_key)?;
            self.publish_limits.check(&session.name)?;
            let appended = self.hub.append(Append {
                idempotency_key: key,
                ..Append::event(EventDraft::Message {
                    participant: Arc::clone(&session.name),
                    text: text.to_owned(),
                })
            })?;
            Ok((Arc::clone(&session.name), appended))
        })();
        let outcome = self.until_durable(appended).await;
        let times = self.respond(request_lamport, received).await;
        match outcome {
            Ok((name, appended)) => {
                let times =
                    times.map_err(|error| self.refuse(Call::Publish, Some(&name), error, None))?;
                let seq = appended.seq();
                if let Appended::Duplicate(_) = appended {
                    publish_repeated(&name, seq, times);
                } else {
                    accepted(Call::Publish, &name, &appended, times);
                }
                Ok(Done { seq, times })
            }
            Err(error) => {
                let name = self.name_of(credential);
                Err(self.refuse(Call::Publish, name.as_deref(), error, times.ok()))
            }
        }
    }

    /// Ends the session `credential` proves and broadcasts its left event to the others.
    pub async fn leave(
        &self,
        credential: Credential<'_>,
        request_lamport: u64,
    ) -> Result<Done, Refused> {
        let received = self.receive(Call::Leave, request_lamport).await?;
        let appended = (|| {
            let mut sessions = self.sessions();
            let hash = token_hash(credential)?;
            let session = sessions.remove(&hash).ok_or(AuthError::Unknown)?;
            let name = Arc::clone(&session.name);
            // The leaver's stream ends cleanly just before its left event, so that event reaches the
            // others only.
            let appended = self.hub.append(Append {
                ends_stream: session.subscriber(),
                session: Some(SessionChange::Ended(hash)),
                ..Append::event(EventDraft::Left {
                    participant: session.name,
                })
            })?;
            Ok((name, appended))
        })();
        let outcome = self.until_durable(appended).await;
        let times = self.respond(request_lamport, received).await;
        match outcome {
            Ok((name, appended)) => {
                let times =
                    times.map_err(|error| self.refuse(Call::Leave, Some(&name), error, None))?;
                accepted(Call::Leave, &name, &appended, times);
                Ok(Done {
                    seq: appended.seq(),
                    times,
                })
            }
            Err(error) => Err(self.refuse(Call::Leave, None, error, times.ok())),
        }
    }

    /// Opens the Broadcast stream of the session `credential` proves, replacing any open one.
    ///
    /// The stream delivers every event after `after_seq`, but none from before the participant's join.
    pub async fn open_stream(
        &self,
        credential: Credential<'_>,
        after_seq: u64,
        request_lamport: u64,
    ) -> Result<Subscription, Refused> {
        let received = self.receive(Call::Broadcast, request_lamport).await?;
        let outcome = (|| {
            let mut sessions = self.sessions();
            let hash = token_hash(credential)?;
            let session = sessions.get(&hash).ok_or(AuthError::Unknown)?;
            let name = Arc::clone(&session.name);
            let from = after_seq.max(session.join_seq - 1);
            let subscription = self.hub.subscribe(Arc::clone(&name), from)?;
            let replaced = sessions.attach(&hash, subscription.id(), subscription.end_signal());
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
                let times = self.respond(request_lamport, received).await.ok();
                let name = self.name_of(credential);
                Err(self.refuse(Call::Broadcast, name.as_deref(), error, times))
            }
        }
    }

    /// Who is present, for the session `credential` proves.
    ///
    /// The sessions table changes when an event is ordered, before it is durable, and the seq given is
    /// the newest durable one. So the list may already include a join, or miss a leave, whose event
    /// comes after that seq: applying those events again changes nothing, which keeps the answer correct.
    pub async fn participants(
        &self,
        credential: Credential<'_>,
        request_lamport: u64,
    ) -> Result<Presence, Refused> {
        let received = self.receive(Call::Participants, request_lamport).await?;
        let outcome = (|| {
            let sessions = self.sessions();
            let session = sessions
                .get(&token_hash(credential)?)
                .ok_or(AuthError::Unknown)?;
            let name = session.name.to_string();
            let seq = self.hub.last_seq();
            Ok::<_, ChatError>((name, sessions.names(), seq))
        })();
        let times = self.respond(request_lamport, received).await;
        match outcome {
            Ok((name, names, seq)) => {
                let times = times
                    .map_err(|error| self.refuse(Call::Participants, Some(&name), error, None))?;
                presence_answered(&name, names.len(), seq, times);
                Ok(Presence { names, seq, times })
            }
            Err(error) => Err(self.refuse(Call::Participants, None, error, times.ok())),
        }
    }

    /// Announces as left every session that has had no open Broadcast stream for the grace period, and
    /// forgets idle rate-limit state. Returns how many were announced.
    pub fn expire_vanished(&self) -> usize {
        self.publish_limits.forget_idle();
        self.join_gate.forget_expired();
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
                Ok(Appended::New(event)) => info!(
                    component = "service",
                    event = "crash_leave",
                    participant = %name,
                    seq = event.seq,
                    lamport = event.lamport,
                    grace_ms = self.grace.as_millis() as u64,
                    reason = %why,
                ),
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

    /// Waits until everything queued before [`ChatService::shutdown`] is on disk.
    pub async fn flushed(&self) {
        self.hub.stopped().await;
    }

    /// The seq of the newest durable event.
    pub fn last_seq(&self) -> u64 {
        self.hub.last_seq()
    }

    /// How many participants are present.
    pub fn present(&self) -> usize {
        self.sessions().len()
    }

    /// A fresh timestamp for a message that is not the answer to a call, such as the end of a stream;
    /// `None` if the service has stopped and can no longer stamp safely.
    pub async fn stamp(&self) -> Option<u64> {
        self.hub.stamp().await.ok()
    }

    /// The receive rule for a request stamped `request_lamport`: witness it, or refuse an implausible one.
    async fn receive(&self, call: Call, request_lamport: u64) -> Result<u64, Refused> {
        if request_lamport > MAX_ACCEPTED_TIME {
            let error = ChatError::LamportTooLarge(request_lamport);
            let times = self.hub.stamp().await.ok().map(|response| CallTimes {
                request: request_lamport,
                received: response,
                response,
            });
            return Err(self.refuse(call, None, error, times));
        }
        Ok(self.clock.witness(request_lamport))
    }

    /// Waits until the event a call appended is durable; the rest of the call's outcome passes through.
    async fn until_durable<T>(
        &self,
        appended: Result<(T, Appended), ChatError>,
    ) -> Result<(T, Appended), ChatError> {
        let (value, appended) = appended?;
        self.hub.durable(appended.seq()).await?;
        Ok((value, appended))
    }

    /// Stamps a response.
    async fn respond(&self, request_lamport: u64, received: u64) -> Result<CallTimes, ChatError> {
        let response = self.hub.stamp().await?;
        Ok(CallTimes {
            request: request_lamport,
            received,
            response,
        })
    }

    /// Logs a refused call and builds its answer.
    fn refuse(
        &self,
        call: Call,
        participant: Option<&str>,
        error: ChatError,
        times: Option<CallTimes>,
    ) -> Refused {
        refused(call, participant, error, times)
    }

    /// The name behind a credential, for log lines about refused calls.
    fn name_of(&self, credential: Credential<'_>) -> Option<String> {
        let hash = token_hash(credential).ok()?;
        Some(self.sessions().get(&hash)?.name.to_string())
    }

    fn sessions(&self) -> MutexGuard<'_, SessionTable> {
        // No code panics while holding this lock, so a poisoned lock still guards consistent state.
        self.sessions.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Logs a refused call and builds its answer.
pub(crate) fn refused(
    call: Call,
    participant: Option<&str>,
    error: ChatError,
    times: Option<CallTimes>,
) -> Refused {
    info!(
        component = "service",
        event = "refused",
        rpc = call.rpc(),
        participant = participant.unwrap_or(""),
        reason = %error,
        request_lamport = times.map(|times| times.request),
        received_lamport = times.map(|times| times.received),
        response_lamport = times.map(|times| times.response),
    );
    Refused {
        error,
        lamport: times.map(|times| times.response),
    }
}

/// Logs an accepted Join, Publish or Leave, with the seq and Lamport time of the event it broadcast.
fn accepted(call: Call, participant: &str, appended: &Appended, times: CallTimes) {
    accepted_event(call, participant, appended.seq(), appended.lamport(), times);
}

/// Logs a Publish that repeated an idempotency key: nothing new was broadcast, and `seq` is the first's.
pub(crate) fn publish_repeated(participant: &str, seq: u64, times: CallTimes) {
    info!(
        component = "service",
        event = "publish_repeated",
        participant,
        seq,
        request_lamport = times.request,
        received_lamport = times.received,
        response_lamport = times.response,
    );
}

/// Logs an answered Participants call: `present` names, as of `seq`.
pub(crate) fn presence_answered(participant: &str, present: usize, seq: u64, times: CallTimes) {
    info!(
        component = "service",
        event = Call::Participants.event(),
        participant,
        present,
        seq,
        request_lamport = times.request,
        received_lamport = times.received,
        response_lamport = times.response,
    );
}

/// Logs an accepted Join, Publish or Leave whose event has `seq` and, unless it repeated an earlier
/// one, `lamport`.
pub(crate) fn accepted_event(
    call: Call,
    participant: &str,
    seq: u64,
    lamport: Option<u64>,
    times: CallTimes,
) {
    info!(
        component = "service",
        event = call.event(),
        participant,
        seq,
        lamport,
        request_lamport = times.request,
        received_lamport = times.received,
        response_lamport = times.response,
    );
}

/// The token hash of a bearer credential.
pub(crate) fn token_hash(credential: Credential<'_>) -> Result<TokenHash, AuthError> {
    match credential {
        Credential::Bearer(token) => Ok(TokenHash::of(token)),
        Credential::Missing => Err(AuthError::Missing),
        Credential::Malformed => Err(AuthError::Malformed),
    }
}

/// Checks a message and its idempotency key as every Publish must, returning the key if one was given.
pub(crate) fn check_publish(
    text: &str,
    idempotency_key: &str,
) -> Result<Option<Arc<str>>, ChatError> {
    validate::check_message(text)?;
    if idempotency_key.len() > MAX_IDEMPOTENCY_KEY_BYTES {
        return Err(ChatError::IdempotencyKeyTooLong(idempotency_key.len()));
    }
    Ok((!idempotency_key.is_empty()).then(|| Arc::from(idempotency_key)))
}

/// The publish rate each participant is held to: one token bucket per name.
#[derive(Debug)]
pub(crate) struct PublishLimits {
    /// The rate.
    rate: Rate,
    /// The buckets.
    limiter: DefaultKeyedRateLimiter<Arc<str>>,
}

impl PublishLimits {
    pub(crate) fn new(rate: Rate) -> Self {
        let quota = Quota::per_second(rate.per_second).allow_burst(rate.burst);
        Self {
            rate,
            limiter: RateLimiter::keyed(quota),
        }
    }

    /// Takes a token from `name`'s bucket, or says how long until there is one.
    pub(crate) fn check(&self, name: &Arc<str>) -> Result<(), ChatError> {
        self.limiter
            .check_key(name)
            .map_err(|not_until| ChatError::RateLimited {
                per_second: self.rate.per_second,
                burst: self.rate.burst,
                retry_after: not_until.wait_time_from(self.limiter.clock().now()),
            })
    }

    /// Forgets the buckets of names that have not published lately.
    pub(crate) fn forget_idle(&self) {
        self.limiter.retain_recent();
    }
}

/// The optional join secret, compared in constant time, with wrong attempts throttled per address.
#[derive(Debug)]
pub(crate) struct JoinGate {
    /// The SHA-256 of the secret; comparing digests takes the same time whatever the lengths.
    secret: Option<[u8; 32]>,
    /// Wrong secrets per address.
    failures: DefaultKeyedRateLimiter<IpAddr>,
    /// Addresses that sent too many wrong secrets, and until when they must wait.
    blocked: Mutex<HashMap<IpAddr, Instant>>,
}

impl JoinGate {
    pub(crate) fn new(secret: Option<&str>) -> Self {
        let per_minute = NonZeroU32::new(JOIN_FAILURES_PER_MINUTE).unwrap_or(NonZeroU32::MIN);
        Self {
            secret: secret.map(|secret| Sha256::digest(secret.as_bytes()).into()),
            failures: RateLimiter::keyed(Quota::per_minute(per_minute)),
            blocked: Mutex::new(HashMap::new()),
        }
    }

    /// Lets a Join through if there is no secret, or it presents the right one from an address that is
    /// not cooling down.
    pub(crate) fn check(&self, offered: &str, peer: Option<IpAddr>) -> Result<(), ChatError> {
        let Some(secret) = &self.secret else {
            return Ok(());
        };
        let now = Instant::now();
        if let Some(peer) = peer
            && let Some(until) = self.blocked().get(&peer).filter(|until| **until > now)
        {
            return Err(ChatError::TooManyJoinFailures(*until - now));
        }
        let offered: [u8; 32] = Sha256::digest(offered.as_bytes()).into();
        if bool::from(offered.ct_eq(secret)) {
            return Ok(());
        }
        if let Some(peer) = peer
            && self.failures.check_key(&peer).is_err()
        {
            self.blocked().insert(peer, now + JOIN_FAILURE_COOLDOWN);
            return Err(ChatError::TooManyJoinFailures(JOIN_FAILURE_COOLDOWN));
        }
        Err(ChatError::WrongJoinSecret)
    }

    pub(crate) fn forget_expired(&self) {
        let now = Instant::now();
        self.blocked().retain(|_, until| *until > now);
        self.failures.retain_recent();
    }

    fn blocked(&self) -> MutexGuard<'_, HashMap<IpAddr, Instant>> {
        self.blocked.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::history::Retention;

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
            publish_rate: Rate {
                per_second: NonZeroU32::new(1000).expect("non-zero"),
                burst: NonZeroU32::new(1000).expect("non-zero"),
            },
            join_secret: None,
        }
    }

    fn chat() -> ChatService {
        ChatService::in_memory(config()).expect("an in-memory store")
    }

    fn bearer(joined: &Joined) -> Credential<'_> {
        Credential::Bearer(joined.token.as_str())
    }

    async fn join(chat: &ChatService, name: &str, lamport: u64) -> Joined {
        chat.join(name, "", None, lamport).await.expect("join")
    }

    fn refusal<T: std::fmt::Debug>(result: Result<T, Refused>) -> ChatError {
        result.expect_err("the call must be refused").error
    }

    #[tokio::test]
    async fn each_call_witnesses_the_request_then_stamps_the_event_then_the_response() {
        let chat = chat();
        let joined = join(&chat, "alice", 40).await;
        assert_eq!(joined.times.request, 40);
        assert_eq!(joined.times.received, 41, "max(0, 40) + 1");
        assert_eq!(
            joined.times.response, 43,
            "the broadcast took 42; the response is the next send"
        );

        let published = chat
            .publish(bearer(&joined), "hi", "", 7)
            .await
            .expect("publish");
        assert_eq!(published.times.received, 44, "max(43, 7) + 1");
        assert_eq!(published.times.response, 46, "the event took 45");
        assert_eq!(published.seq, joined.seq + 1);
    }

    #[tokio::test]
    async fn leave_reaches_the_others_but_not_the_leaver() {
        let chat = chat();
        let alice = join(&chat, "alice", 1).await;
        let bob = join(&chat, "bob", 1).await;
        let mut alice_stream = chat.open_stream(bearer(&alice), 0, 1).await.expect("open");
        let mut bob_stream = chat.open_stream(bearer(&bob), 0, 1).await.expect("open");
        let left = chat.leave(bearer(&bob), 1).await.expect("leave");

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

    #[tokio::test]
    async fn an_ended_session_can_do_nothing_and_its_name_is_free() {
        let chat = chat();
        let alice = join(&chat, "alice", 1).await;
        chat.leave(bearer(&alice), 1).await.expect("leave");
        let unknown = ChatError::Unauthenticated(AuthError::Unknown);
        assert_eq!(
            refusal(chat.publish(bearer(&alice), "still here?", "", 1).await),
            unknown
        );
        assert_eq!(refusal(chat.leave(bearer(&alice), 1).await), unknown);
        assert_eq!(
            refusal(chat.open_stream(bearer(&alice), 0, 1).await),
            unknown
        );
        join(&chat, "alice", 1).await;
    }

    #[tokio::test]
    async fn refusals_are_stamped_and_broadcast_nothing() {
        let chat = chat();
        let alice = join(&chat, "alice", 1).await;
        let refused = chat
            .publish(bearer(&alice), "   ", "", 1)
            .await
            .expect_err("blank");
        assert_eq!(
            refused.error,
            ChatError::InvalidMessage(MessageError::OnlyWhitespace)
        );
        assert!(refused.lamport > Some(alice.times.response));
        assert_eq!(
            refusal(chat.join("ALICE", "", None, 1).await),
            ChatError::NameTaken("ALICE".into())
        );
        assert_eq!(
            refusal(chat.publish(Credential::Missing, "hi", "", 1).await),
            ChatError::Unauthenticated(AuthError::Missing)
        );
        assert_eq!(
            refusal(chat.publish(bearer(&alice), "hi", "", u64::MAX).await),
            ChatError::LamportTooLarge(u64::MAX)
        );
        assert_eq!(
            refusal(chat.publish(bearer(&alice), "hi", &"k".repeat(65), 1).await),
            ChatError::IdempotencyKeyTooLong(65)
        );
        assert_eq!(chat.hub.last_seq(), alice.seq, "nothing was broadcast");
    }

    #[tokio::test]
    async fn a_repeated_idempotency_key_publishes_once() {
        let chat = chat();
        let alice = join(&chat, "alice", 1).await;
        let first = chat
            .publish(bearer(&alice), "once", "key-1", 1)
            .await
            .expect("publish");
        let again = chat
            .publish(bearer(&alice), "once", "key-1", 1)
            .await
            .expect("publish");
        assert_eq!(again.seq, first.seq);
        assert_eq!(
            chat.hub.last_seq(),
            first.seq,
            "the retry broadcast nothing"
        );
        let other = chat
            .publish(bearer(&alice), "twice", "key-2", 1)
            .await
            .expect("publish");
        assert_eq!(other.seq, first.seq + 1);
    }

    #[tokio::test]
    async fn presence_lists_who_is_here_as_of_a_seq() {
        let chat = chat();
        let alice = join(&chat, "alice", 1).await;
        let bob = join(&chat, "bob", 1).await;
        let presence = chat.participants(bearer(&alice), 1).await.expect("present");
        assert_eq!(presence.names, vec!["alice".to_owned(), "bob".to_owned()]);
        assert_eq!(presence.seq, bob.seq);
        chat.leave(bearer(&bob), 1).await.expect("leave");
        let presence = chat.participants(bearer(&alice), 1).await.expect("present");
        assert_eq!(presence.names, vec!["alice".to_owned()]);
        assert_eq!(
            refusal(chat.participants(bearer(&bob), 1).await),
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
            refusal(chat.join("d", "", None, 1).await),
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
            chat.publish(bearer(&flooder), &format!("m{n}"), "", 1)
                .await
                .expect("within the burst");
        }
        assert!(matches!(
            refusal(chat.publish(bearer(&flooder), "one too many", "", 1).await),
            ChatError::RateLimited { .. }
        ));
        chat.publish(bearer(&calm), "hello", "", 1)
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
        chat.join("alice", "sesame", peer, 1)
            .await
            .expect("the right secret");
        for guess in 0..JOIN_FAILURES_PER_MINUTE {
            assert_eq!(
                refusal(
                    chat.join("mallory", &format!("guess {guess}"), peer, 1)
                        .await
                ),
                ChatError::WrongJoinSecret
            );
        }
        assert!(matches!(
            refusal(chat.join("mallory", "one more guess", peer, 1).await),
            ChatError::TooManyJoinFailures(_)
        ));
        assert!(
            matches!(
                refusal(chat.join("mallory", "sesame", peer, 1).await),
                ChatError::TooManyJoinFailures(_)
            ),
            "a blocked address may not try even the right secret"
        );
        chat.join("bob", "sesame", Some(IpAddr::from([192, 0, 2, 8])), 1)
            .await
            .expect("other addresses are unaffected");
    }

    #[tokio::test(start_paused = true)]
    async fn a_participant_without_a_stream_for_the_grace_period_is_announced_left_once() {
        let chat = chat();
        let alice = join(&chat, "alice", 1).await;
        let bob = join(&chat, "bob", 1).await;
        let mut alice_stream = chat.open_stream(bearer(&alice), 0, 1).await.expect("open");
        let bob_stream = chat.open_stream(bearer(&bob), 0, 1).await.expect("open");
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
        assert_eq!(chat.present(), 1);
    }

    #[tokio::test]
    async fn a_reopened_store_continues_seq_clock_and_sessions() {
        let directory = tempfile::tempdir().expect("a temporary directory");
        let (alice_token, last_seq, last_lamport) = {
            let (store, recovered) = Store::open(directory.path()).expect("open");
            let chat = ChatService::open(config(), store, recovered);
            let alice = join(&chat, "alice", 1).await;
            let published = chat
                .publish(bearer(&alice), "before the restart", "k", 1)
                .await
                .expect("publish");
            chat.shutdown();
            chat.flushed().await;
            (alice.token, published.seq, published.times.response)
        };
        let (store, recovered) = Store::open(directory.path()).expect("reopen");
        let chat = ChatService::open(config(), store, recovered);
        let credential = Credential::Bearer(alice_token.as_str());
        let mut stream = chat
            .open_stream(credential, last_seq - 1, 1)
            .await
            .expect("the session survived");
        let replayed = stream.next().await.expect("open").expect("an event");
        assert_eq!(
            (replayed.seq, replayed.text.as_str()),
            (last_seq, "before the restart")
        );
        let again = chat
            .publish(credential, "before the restart", "k", 1)
            .await
            .expect("publish");
        assert_eq!(again.seq, last_seq, "the idempotency key survived too");
        let after = chat
            .publish(credential, "after the restart", "", 1)
            .await
            .expect("publish");
        assert_eq!(after.seq, last_seq + 1, "seq continues without a gap");
        assert!(
            after.times.received > last_lamport,
            "the clock never goes back"
        );
        assert_eq!(
            refusal(chat.join("alice", "", None, 1).await),
            ChatError::NameTaken("alice".into())
        );
    }
}
