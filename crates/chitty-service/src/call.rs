//! The call protocol: what Join, Publish, Leave, Broadcast and Participants mean, written once for every
//! way a node keeps the chat.
//!
//! [`Chat`] answers every call on domain types (the gRPC layer only translates), over a [`Backend`]:
//! a single node with its own store ([`crate::chat::SingleNode`]) or a node of a cluster sharing the
//! chat through NATS JetStream ([`crate::cluster::ClusterNode`]). Every call follows one shape,
//! written once in `Chat::call`:
//!
//! 1. **Receive.** Witness the caller's Lamport time on the node's clock, or refuse a time above
//!    [`MAX_ACCEPTED_TIME`] (the refusal is stamped, and nothing else happens).
//! 2. **Work.** Check what the protocol checks (the join secret, the name, the message and its
//!    idempotency key, the publish rate), and have the backend do the rest: admit a name, append a
//!    message, end a session, open a stream, or list who is present. A backend stamps the events it
//!    orders with ticks of its own, and answers once they are durable.
//! 3. **Respond.** Stamp the answer with a fresh tick. An opened stream is the exception: it is not
//!    stamped when it opens, since each of its events carries its own time; a refused one is.
//! 4. **Log.** One line per call: the call's own event when accepted (`join`, `publish`,
//!    `publish_repeated`, `leave`, `broadcast_open`, `participants`), or `refused` with the reason,
//!    each with the participant once its session was found, and the call's Lamport times (see
//!    `docs/logs.md`).
//!
//! Abuse is bounded here too: a publish rate per participant (`PublishLimits`, checked by each node for its
//! own calls), a cap on participants (the backend checks it as it admits, atomically with the joined
//! event; its error is the protocol's), and an optional join secret whose repeated failures from one
//! address are throttled (`JoinGate`).
//!
//! # Backends, and why a trait with static dispatch
//!
//! A [`Backend`] decides nothing about Lamport rules, validation, limits' errors or logging: it only
//! keeps the chat. [`Chat`] is generic over it, so each backend gets its own copy of the protocol,
//! compiled with direct (and inlinable) calls: there is no trait object and no boxed future, and the
//! single node's Publish path costs what it did when the protocol was written inside it. The one
//! dispatch is [`crate::ChatNode`]'s `match` per call, on which of the two a process runs. A trait
//! rather than an enum of backends keeps each backend's code in its own module and the protocol free of
//! `match`es on the kind of node; its methods return `impl Future + Send`, so that every call's future
//! is `Send`, as tonic needs, whatever the backend.
//!
//! A backend reports the session it found for a call through a callback (`found`, or `check` for a
//! Publish), which the protocol uses to name the caller in the call's log line and, for a Publish, to
//! check the message and the rate. The backend calls it while it holds whatever makes its append
//! atomic with the session's state (the single node's sessions lock), so a message is never ordered
//! after its own participant's left event.

use chitty_logs::{SERVICE, ServiceEvent};
use std::collections::HashMap;
use std::future::Future;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use chitty_core::lamport::MAX_ACCEPTED_TIME;
use chitty_core::validate::{self, MessageError, NameError};
use chitty_core::{LamportClock, LamportTime, Seq, TokenHash};
use governor::clock::Clock;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use thiserror::Error;
use tokio::time::Instant;
use tracing::info;

use crate::fanout::{SubscribeError, Subscription};
use crate::history::HistoryError;
use crate::hub::HubConfig;
use crate::metrics::{EventKind, Metrics};
use crate::sessions::SessionToken;

/// The longest idempotency key accepted, in bytes.
pub const MAX_IDEMPOTENCY_KEY_BYTES: usize = 64;

/// How many failed join secrets one address may send per minute before it must wait.
pub(crate) const JOIN_FAILURES_PER_MINUTE: u32 = 5;

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

impl ChatConfig {
    /// A chat roomier than any test asks of it: an hour's grace period, 10,000 events of history with
    /// no byte bound, queues of 1,024 events, 1,000 participants, a million messages a second each, and
    /// no join secret. A test starts from it and sets what it exercises, as
    /// `ChatConfig { max_participants: 3, ..ChatConfig::roomy() }`.
    pub fn roomy() -> Self {
        let unreached = NonZeroU32::new(1_000_000).expect("a million is not zero");
        Self {
            grace: Duration::from_secs(3600),
            hub: HubConfig {
                retention: crate::history::Retention {
                    events: 10_000,
                    bytes: usize::MAX,
                },
                queue_capacity: 1024,
            },
            max_participants: 1000,
            publish_rate: Rate {
                per_second: unreached,
                burst: unreached,
            },
            join_secret: None,
        }
    }
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
    LamportTooLarge(LamportTime),
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

impl ChatError {
    /// Why the call was refused, in one word: the `reason` label of the refusals counter. The log
    /// line's `reason` is the sentence; this is the variant it came from.
    pub fn reason(&self) -> &'static str {
        match self {
            ChatError::LamportTooLarge(_) => "lamport_too_large",
            ChatError::InvalidName(_) => "invalid_name",
            ChatError::NameTaken(_) => "name_taken",
            ChatError::Full(_) => "full",
            ChatError::WrongJoinSecret => "wrong_join_secret",
            ChatError::TooManyJoinFailures(_) => "too_many_join_failures",
            ChatError::InvalidMessage(_) => "invalid_message",
            ChatError::IdempotencyKeyTooLong(_) => "idempotency_key_too_long",
            ChatError::RateLimited { .. } => "rate_limited",
            ChatError::Unauthenticated(_) => "unauthenticated",
            ChatError::History(_) => "history",
            ChatError::Unavailable(_) => "unavailable",
        }
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
    pub request: LamportTime,
    /// The service's clock after witnessing the request.
    pub received: LamportTime,
    /// The timestamp of the response.
    pub response: LamportTime,
}

/// A refused call: why, and the Lamport time the service stamped its answer with, if it could.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{error}")]
pub struct Refused {
    /// Why the call was refused.
    pub error: ChatError,
    /// The service's timestamp on the refusal; `None` only when the service stops and cannot stamp.
    pub lamport: Option<LamportTime>,
}

/// The service calls, for log lines and metric labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Call {
    /// Join.
    Join,
    /// Publish.
    Publish,
    /// Leave.
    Leave,
    /// Broadcast.
    Broadcast,
    /// Participants.
    Participants,
}

impl Call {
    /// The RPC's name in the contract.
    fn rpc(self) -> &'static str {
        match self {
            Call::Join => "Join",
            Call::Publish => "Publish",
            Call::Leave => "Leave",
            Call::Broadcast => "Broadcast",
            Call::Participants => "Participants",
        }
    }

    /// The `call` label of the refusals counter: the RPC's name in lowercase.
    pub fn label(self) -> &'static str {
        match self {
            Call::Join => "join",
            Call::Publish => "publish",
            Call::Leave => "leave",
            Call::Broadcast => "broadcast",
            Call::Participants => "participants",
        }
    }

    /// The `event` field of the line logged when the call is accepted.
    fn event(self) -> &'static str {
        match self {
            Call::Join => ServiceEvent::Join,
            Call::Publish => ServiceEvent::Publish,
            Call::Leave => ServiceEvent::Leave,
            Call::Broadcast => ServiceEvent::BroadcastOpen,
            Call::Participants => ServiceEvent::Participants,
        }
        .as_str()
    }
}

/// A successful Join.
#[derive(Debug)]
pub struct Joined {
    /// The new session's secret.
    pub token: SessionToken,
    /// The seq of the joined event.
    pub seq: Seq,
    /// The Lamport times of the call.
    pub times: CallTimes,
}

/// A successful Publish or Leave.
#[derive(Debug)]
pub struct Done {
    /// The seq of the event the call broadcast (for a repeated Publish, the seq of the first).
    pub seq: Seq,
    /// The Lamport times of the call.
    pub times: CallTimes,
}

/// Who is present, as of an event.
#[derive(Debug)]
pub struct Presence {
    /// The names of the participants present, sorted.
    pub names: Vec<String>,
    /// The newest event the list reflects: later joined and left events keep it current.
    pub seq: Seq,
    /// The Lamport times of the call.
    pub times: CallTimes,
}

/// An event a backend stored for a call, durably.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stored {
    /// The event's seq: for a repeated idempotency key, the seq of the event first stored with it.
    pub seq: Seq,
    /// The event's Lamport time, where the backend knows it: a single node does not keep the times of
    /// the events a repeated key refers to.
    pub lamport: Option<LamportTime>,
    /// Whether the event was stored before under the same idempotency key, so nothing new was.
    pub repeated: bool,
}

/// A name a backend admitted: the new session.
#[derive(Debug)]
pub struct Admitted {
    /// The new session's secret, which only the participant gets.
    pub token: SessionToken,
    /// Its joined event.
    pub joined: Stored,
}

/// Why a backend did not admit a name; the protocol turns it into the caller's error.
#[derive(Debug)]
pub enum NotAdmitted {
    /// A present participant holds the name, or one that looks the same.
    Taken,
    /// As many participants are present as the service admits.
    Full,
    /// The backend could not decide: its store or its cluster failed.
    Failed(ChatError),
}

impl From<ChatError> for NotAdmitted {
    fn from(error: ChatError) -> Self {
        NotAdmitted::Failed(error)
    }
}

/// A Broadcast stream a backend opened.
#[derive(Debug)]
pub struct Opened {
    /// The seq after which the stream starts: what the participant asked for, but not before its join.
    pub from: Seq,
    /// The stream's events.
    pub subscription: Subscription,
    /// Whether it replaced a stream of the same session that was still open.
    pub replaced: bool,
}

/// Who is present, as a backend knows it.
#[derive(Debug)]
pub struct Roster {
    /// Their names, in any order: the protocol sorts them for the answer.
    pub names: Vec<String>,
    /// The newest event the list reflects.
    pub seq: Seq,
}

/// Where the chat is kept: what a [`Chat`] needs of a single node or of a cluster node. See the module
/// documentation.
///
/// Every method that takes a session's `token` resolves it first, refusing an unknown one with
/// [`AuthError::Unknown`], and then hands the session's name to `found` (or `check`), exactly once,
/// before anything else can fail; so the protocol names the caller in its log line whenever the
/// session was found.
pub trait Backend: Send + Sync {
    /// The node's Lamport clock, on which the protocol witnesses every request.
    fn clock(&self) -> &LamportClock;

    /// A fresh tick of the clock for an answer, or an error if the node can no longer stamp safely (a
    /// single node whose store stopped, which could not keep its clock from going back after a
    /// restart).
    fn stamp(&self) -> impl Future<Output = Result<LamportTime, ChatError>> + Send;

    /// The node's id in a cluster, which the `broadcast_open` line names; `None` for a single node.
    fn node_in_cluster(&self) -> Option<&str>;

    /// The node's metrics, which the protocol and the node's fan-out count into.
    fn metrics(&self) -> &Arc<Metrics>;

    /// Admits `name` (valid already) if no present participant has it or a look-alike, and fewer than
    /// `max_participants` are present, and broadcasts its joined event.
    fn admit(
        &self,
        name: &str,
        max_participants: usize,
    ) -> impl Future<Output = Result<Admitted, NotAdmitted>> + Send;

    /// Broadcasts `text` from the session of `token`. `check` gets the participant's name and returns
    /// the message's idempotency key, or refuses the message; a key the participant used before stores
    /// nothing new.
    fn append_message(
        &self,
        token: &TokenHash,
        text: &str,
        check: impl FnOnce(&Arc<str>) -> Result<Option<Arc<str>>, ChatError> + Send,
    ) -> impl Future<Output = Result<Stored, ChatError>> + Send;

    /// Ends the session of `token` and broadcasts its left event to the others; its stream here ends
    /// cleanly just before that event.
    fn end_session(
        &self,
        token: &TokenHash,
        found: impl FnOnce(&Arc<str>) + Send,
    ) -> impl Future<Output = Result<Stored, ChatError>> + Send;

    /// Opens the Broadcast stream of the session of `token` on this node, replacing any open one here:
    /// every event after `after_seq`, but none from before the participant's join.
    fn open_stream(
        &self,
        token: &TokenHash,
        after_seq: Seq,
        found: impl FnOnce(&Arc<str>) + Send,
    ) -> impl Future<Output = Result<Opened, ChatError>> + Send;

    /// Who is present, for the session of `token`.
    fn roster(
        &self,
        token: &TokenHash,
        found: impl FnOnce(&Arc<str>) + Send,
    ) -> impl Future<Output = Result<Roster, ChatError>> + Send;
}

/// The chat: the call protocol over a [`Backend`], with the limits that keep abuse bounded. See the
/// module documentation.
#[derive(Debug)]
pub struct Chat<B> {
    /// Where the chat is kept: a single node or a cluster node.
    backend: B,
    /// The most participants present at once; the backend holds to it as it admits.
    max_participants: usize,
    /// The publish rate each participant is held to, one token bucket per name.
    publish_limits: PublishLimits,
    /// The join secret, if any, and the throttling of wrong ones.
    join_gate: JoinGate,
}

impl<B: Backend> Chat<B> {
    /// The protocol over `backend`, with the limits of `config`.
    pub(crate) fn new(config: &ChatConfig, backend: B) -> Self {
        Self {
            backend,
            max_participants: config.max_participants,
            publish_limits: PublishLimits::new(config.publish_rate),
            join_gate: JoinGate::new(config.join_secret.as_deref()),
        }
    }

    /// The node's metrics.
    pub fn metrics(&self) -> &Arc<Metrics> {
        self.backend.metrics()
    }

    /// The backend, for what is not a call: the sweep, health, shutdown.
    pub fn backend(&self) -> &B {
        &self.backend
    }

    /// Join: admits `name`, presenting `join_secret` from address `peer`, and broadcasts its joined
    /// event.
    pub async fn join(
        &self,
        name: &str,
        join_secret: &str,
        peer: Option<IpAddr>,
        request_lamport: LamportTime,
    ) -> Result<Joined, Refused> {
        let (admitted, times) = self
            .call(Call::Join, request_lamport, async |caller| {
                *caller = Some(name.into());
                self.join_gate.check(join_secret, peer)?;
                validate::check_name(name)?;
                self.backend
                    .admit(name, self.max_participants)
                    .await
                    .map_err(|refusal| match refusal {
                        NotAdmitted::Taken => ChatError::NameTaken(name.to_owned()),
                        NotAdmitted::Full => ChatError::Full(self.max_participants),
                        NotAdmitted::Failed(error) => error,
                    })
            })
            .await?;
        Ok(Joined {
            token: admitted.token,
            seq: admitted.joined.seq,
            times,
        })
    }

    /// Publish: broadcasts `text` for the session `credential` proves, once it is durable.
    ///
    /// A non-empty `idempotency_key` that this participant already used does not publish again: the
    /// answer is the seq of the first publish.
    pub async fn publish(
        &self,
        credential: Credential<'_>,
        text: &str,
        idempotency_key: &str,
        request_lamport: LamportTime,
    ) -> Result<Done, Refused> {
        let started = Instant::now();
        let (stored, times) = self
            .call(Call::Publish, request_lamport, async |caller| {
                let token = token_hash(credential)?;
                let check = |name: &Arc<str>| {
                    *caller = Some(Arc::clone(name));
                    let key = check_publish(text, idempotency_key)?;
                    self.publish_limits.check(name)?;
                    Ok(key)
                };
                self.backend.append_message(&token, text, check).await
            })
            .await?;
        self.metrics()
            .publish_latency
            .observe(started.elapsed().as_secs_f64());
        Ok(Done {
            seq: stored.seq,
            times,
        })
    }

    /// Leave: ends the session `credential` proves and broadcasts its left event to the others.
    pub async fn leave(
        &self,
        credential: Credential<'_>,
        request_lamport: LamportTime,
    ) -> Result<Done, Refused> {
        let (stored, times) = self
            .call(Call::Leave, request_lamport, async |caller| {
                let token = token_hash(credential)?;
                self.backend.end_session(&token, found(caller)).await
            })
            .await?;
        Ok(Done {
            seq: stored.seq,
            times,
        })
    }

    /// Broadcast: opens the stream of the session `credential` proves, replacing any open one.
    ///
    /// The stream delivers every event after `after_seq`, but none from before the participant's join.
    pub async fn open_stream(
        &self,
        credential: Credential<'_>,
        after_seq: Seq,
        request_lamport: LamportTime,
    ) -> Result<Subscription, Refused> {
        let (opening, _times) = self
            .call(Call::Broadcast, request_lamport, async |caller| {
                let token = token_hash(credential)?;
                let opened = self
                    .backend
                    .open_stream(&token, after_seq, found(caller))
                    .await?;
                Ok(Opening { after_seq, opened })
            })
            .await?;
        if opening.opened.replaced {
            self.metrics().streams_replaced.inc();
        }
        Ok(opening.opened.subscription)
    }

    /// Participants: who is present, for the session `credential` proves.
    pub async fn participants(
        &self,
        credential: Credential<'_>,
        request_lamport: LamportTime,
    ) -> Result<Presence, Refused> {
        let (roster, times) = self
            .call(Call::Participants, request_lamport, async |caller| {
                let token = token_hash(credential)?;
                self.backend.roster(&token, found(caller)).await
            })
            .await?;
        let mut names = roster.names;
        names.sort();
        Ok(Presence {
            names,
            seq: roster.seq,
            times,
        })
    }

    /// A fresh timestamp for a message that is not the answer to a call, such as the end of a stream;
    /// `None` if the node can no longer stamp safely.
    pub async fn stamp(&self) -> Option<LamportTime> {
        self.backend.stamp().await.ok()
    }

    /// Forgets the rate-limit and join-secret state of participants and addresses that have been quiet
    /// lately; the sweep calls it.
    pub(crate) fn forget_idle(&self) {
        self.publish_limits.forget_idle();
        self.join_gate.forget_expired();
    }

    /// One call: receive the request's time, do `work`, stamp the response, and log the call once,
    /// accepted or refused. `work` names the caller in its slot once it knows who that is.
    async fn call<A: Answer>(
        &self,
        call: Call,
        request_lamport: LamportTime,
        work: impl AsyncFnOnce(&mut Option<Arc<str>>) -> Result<A, ChatError>,
    ) -> Result<(A, CallTimes), Refused> {
        let received = self.receive(call, request_lamport).await?;
        let mut caller = None;
        let outcome = work(&mut caller).await;
        let participant = caller.as_deref();
        let answered = match outcome {
            // Nothing is sent back but the stream, whose events carry their own times.
            Ok(answer) if !A::STAMPED => Ok((
                answer,
                CallTimes {
                    request: request_lamport,
                    received,
                    response: received,
                },
            )),
            Ok(answer) => match self.respond(request_lamport, received).await {
                Ok(times) => Ok((answer, times)),
                Err(error) => Err(refused(call, participant, error, None)),
            },
            Err(error) => {
                let times = self.respond(request_lamport, received).await.ok();
                Err(refused(call, participant, error, times))
            }
        };
        if let Ok((answer, times)) = &answered {
            if let Some(kind) = answer.appended(call) {
                self.metrics().appended(kind);
            }
            answer.log(
                call,
                participant.unwrap_or(""),
                *times,
                self.backend.node_in_cluster(),
            );
        }
        answered
    }

    /// The receive rule for a request stamped `request_lamport`: witness it, or refuse an implausible one.
    async fn receive(
        &self,
        call: Call,
        request_lamport: LamportTime,
    ) -> Result<LamportTime, Refused> {
        if request_lamport > MAX_ACCEPTED_TIME {
            let error = ChatError::LamportTooLarge(request_lamport);
            let times = self.stamp().await.map(|response| CallTimes {
                request: request_lamport,
                received: response,
                response,
            });
            return Err(refused(call, None, error, times));
        }
        Ok(self.backend.clock().witness(request_lamport))
    }

    /// Stamps a response.
    async fn respond(
        &self,
        request_lamport: LamportTime,
        received: LamportTime,
    ) -> Result<CallTimes, ChatError> {
        let response = self.backend.stamp().await?;
        Ok(CallTimes {
            request: request_lamport,
            received,
            response,
        })
    }
}

/// The callback that names the caller in `caller`'s slot once a backend found its session.
fn found(caller: &mut Option<Arc<str>>) -> impl FnOnce(&Arc<str>) + Send + '_ {
    |name| *caller = Some(Arc::clone(name))
}

/// What an accepted call's work came to, and the line that logs it.
trait Answer {
    /// Whether the answer is stamped with a tick of its own: every call's is but an opened stream's.
    const STAMPED: bool = true;

    /// Logs the accepted call of `participant`, answered at `times`, on node `node` in a cluster. When
    /// the answer is not stamped, `times.response` is the received time.
    fn log(&self, call: Call, participant: &str, times: CallTimes, node: Option<&str>);

    /// The kind of event the accepted call appended, if it appended one.
    fn appended(&self, _call: Call) -> Option<EventKind> {
        None
    }
}

impl Answer for Stored {
    fn log(&self, call: Call, participant: &str, times: CallTimes, _node: Option<&str>) {
        // Only a Publish repeats its caller's key; a Leave whose left event another node stored first
        // still ended the session.
        if self.repeated && call == Call::Publish {
            publish_repeated(participant, self.seq, times);
        } else {
            accepted(call, participant, self, times);
        }
    }

    fn appended(&self, call: Call) -> Option<EventKind> {
        match call {
            _ if self.repeated => None,
            Call::Publish => Some(EventKind::message),
            Call::Leave => Some(EventKind::left),
            Call::Join | Call::Broadcast | Call::Participants => None,
        }
    }
}

impl Answer for Admitted {
    fn log(&self, call: Call, participant: &str, times: CallTimes, node: Option<&str>) {
        self.joined.log(call, participant, times, node);
    }

    fn appended(&self, _call: Call) -> Option<EventKind> {
        Some(EventKind::joined)
    }
}

impl Answer for Roster {
    fn log(&self, call: Call, participant: &str, times: CallTimes, _node: Option<&str>) {
        info!(
            component = SERVICE,
            event = call.event(),
            participant,
            present = self.names.len(),
            seq = self.seq.get(),
            request_lamport = times.request.get(),
            received_lamport = times.received.get(),
            response_lamport = times.response.get(),
        );
    }
}

/// A stream opened for a Broadcast call that asked for the events after `after_seq`.
struct Opening {
    /// The resume point the call asked for.
    after_seq: Seq,
    /// What the backend opened.
    opened: Opened,
}

impl Answer for Opening {
    const STAMPED: bool = false;

    fn log(&self, call: Call, participant: &str, times: CallTimes, node: Option<&str>) {
        info!(
            component = SERVICE,
            event = call.event(),
            participant,
            after_seq = self.after_seq.get(),
            from_seq = self.opened.from.next().get(),
            replay = self.opened.subscription.replay_len(),
            replaced = self.opened.replaced,
            request_lamport = times.request.get(),
            received_lamport = times.received.get(),
            node,
        );
    }
}

/// Logs a refused call and builds its answer.
fn refused(
    call: Call,
    participant: Option<&str>,
    error: ChatError,
    times: Option<CallTimes>,
) -> Refused {
    info!(
        component = SERVICE,
        event = ServiceEvent::Refused.as_str(),
        rpc = call.rpc(),
        participant = participant.unwrap_or(""),
        reason = %error,
        request_lamport = times.map(|times| times.request.get()),
        received_lamport = times.map(|times| times.received.get()),
        response_lamport = times.map(|times| times.response.get()),
    );
    Refused {
        error,
        lamport: times.map(|times| times.response),
    }
}

/// Logs an accepted Join, Publish or Leave, with the seq and, where known, the Lamport time of the
/// event it broadcast.
fn accepted(call: Call, participant: &str, stored: &Stored, times: CallTimes) {
    info!(
        component = SERVICE,
        event = call.event(),
        participant,
        seq = stored.seq.get(),
        lamport = stored.lamport.map(LamportTime::get),
        request_lamport = times.request.get(),
        received_lamport = times.received.get(),
        response_lamport = times.response.get(),
    );
}

/// Logs a Publish that repeated an idempotency key: nothing new was broadcast, and `seq` is the first's.
fn publish_repeated(participant: &str, seq: Seq, times: CallTimes) {
    info!(
        component = SERVICE,
        event = ServiceEvent::PublishRepeated.as_str(),
        participant,
        seq = seq.get(),
        request_lamport = times.request.get(),
        received_lamport = times.received.get(),
        response_lamport = times.response.get(),
    );
}

/// The token hash of a bearer credential.
fn token_hash(credential: Credential<'_>) -> Result<TokenHash, AuthError> {
    match credential {
        Credential::Bearer(token) => Ok(TokenHash::of(token)),
        Credential::Missing => Err(AuthError::Missing),
        Credential::Malformed => Err(AuthError::Malformed),
    }
}

/// Checks a message and its idempotency key as every Publish must, returning the key if one was given.
fn check_publish(text: &str, idempotency_key: &str) -> Result<Option<Arc<str>>, ChatError> {
    validate::check_message(text)?;
    if idempotency_key.len() > MAX_IDEMPOTENCY_KEY_BYTES {
        return Err(ChatError::IdempotencyKeyTooLong(idempotency_key.len()));
    }
    Ok((!idempotency_key.is_empty()).then(|| Arc::from(idempotency_key)))
}

/// The publish rate each participant is held to: one token bucket per name.
#[derive(Debug)]
struct PublishLimits {
    /// The rate, for the error that tells a participant what it is.
    rate: Rate,
    /// One token bucket per participant name, so one chatty participant never slows another.
    limiter: DefaultKeyedRateLimiter<Arc<str>>,
}

impl PublishLimits {
    fn new(rate: Rate) -> Self {
        let quota = Quota::per_second(rate.per_second).allow_burst(rate.burst);
        Self {
            rate,
            limiter: RateLimiter::keyed(quota),
        }
    }

    /// Takes a token from `name`'s bucket, or says how long until there is one.
    fn check(&self, name: &Arc<str>) -> Result<(), ChatError> {
        self.limiter
            .check_key(name)
            .map_err(|not_until| ChatError::RateLimited {
                per_second: self.rate.per_second,
                burst: self.rate.burst,
                retry_after: not_until.wait_time_from(self.limiter.clock().now()),
            })
    }

    /// Forgets the buckets of names that have not published lately.
    fn forget_idle(&self) {
        self.limiter.retain_recent();
    }
}

/// The optional join secret, compared in constant time, with wrong attempts throttled per address.
#[derive(Debug)]
struct JoinGate {
    /// The SHA-256 of the secret; comparing digests takes the same time whatever the lengths.
    secret: Option<[u8; 32]>,
    /// Wrong secrets per address.
    failures: DefaultKeyedRateLimiter<IpAddr>,
    /// Addresses that sent too many wrong secrets, and until when they must wait.
    blocked: Mutex<HashMap<IpAddr, Instant>>,
}

impl JoinGate {
    fn new(secret: Option<&str>) -> Self {
        let per_minute = NonZeroU32::new(JOIN_FAILURES_PER_MINUTE).unwrap_or(NonZeroU32::MIN);
        Self {
            secret: secret.map(|secret| Sha256::digest(secret.as_bytes()).into()),
            failures: RateLimiter::keyed(Quota::per_minute(per_minute)),
            blocked: Mutex::new(HashMap::new()),
        }
    }

    /// Lets a Join through if there is no secret, or it presents the right one from an address that is
    /// not cooling down.
    fn check(&self, offered: &str, peer: Option<IpAddr>) -> Result<(), ChatError> {
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

    /// Forgets the addresses whose cooling down is over, and the failures of quiet ones.
    fn forget_expired(&self) {
        let now = Instant::now();
        self.blocked().retain(|_, until| *until > now);
        self.failures.retain_recent();
    }

    fn blocked(&self) -> MutexGuard<'_, HashMap<IpAddr, Instant>> {
        self.blocked.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
