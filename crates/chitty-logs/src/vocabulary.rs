//! The words log lines are written in: every `event` value each component logs, every field name, and
//! the few field values that tools read back (`kind`, `rpc`).
//!
//! The processes that write log lines (the service, a cluster node's link to NATS, a participant, the
//! page in a browser) and the tools that read them (`chitty-check`, `chitty-diagram`) name events and
//! fields from here, so `docs/logs.md`, the writers and the readers cannot drift apart: a renamed event
//! is a compile error in every reader, and a test holds `docs/logs.md` to these lists, name for name.
//!
//! Each list is an enum whose variants spell the names in `snake_case` (strum's derives), so
//! [`ParticipantEvent::JoinOk`] is written and read as `join_ok`:
//!
//! ```
//! use chitty_logs::{Field, ParticipantEvent};
//!
//! assert_eq!(ParticipantEvent::JoinOk.as_str(), "join_ok");
//! assert_eq!("publish_sent".parse(), Ok(ParticipantEvent::PublishSent));
//! assert_eq!(Field::ResponseLamport.as_str(), "response_lamport");
//! ```
//!
//! A writer passes the name to `tracing` as a value (`event = ParticipantEvent::JoinOk.as_str()`); field
//! names are identifiers in `tracing`'s macros, so those the writers spell out, and an end-to-end test
//! reads every line a run writes back against [`Field`].

use strum::{Display, EnumString, IntoStaticStr, VariantArray};

/// The `component` of the service's lines. Every participant's lines carry the participant's name.
pub const SERVICE: &str = "service";
/// The `component` of a cluster node's link to NATS.
pub const CLUSTER: &str = "cluster";
/// The `component` of the `chitty-chat` command's own lines, about the process rather than the chat.
pub const COMMAND: &str = "chitty-chat";

/// Implements `as_str` and `ALL` for a vocabulary enum, whose strum derives give the spelling.
macro_rules! names {
    ($name:ident) => {
        impl $name {
            /// Every name of this list, in the order `docs/logs.md` lists them.
            pub const ALL: &'static [$name] = <$name as VariantArray>::VARIANTS;

            /// The name as it is written in a log line.
            pub fn as_str(self) -> &'static str {
                self.into()
            }
        }
    };
}

/// The `event`s of the service (`component` = `service`), one per row of `docs/logs.md`.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Display, EnumString, IntoStaticStr, VariantArray,
)]
#[strum(serialize_all = "snake_case")]
pub enum ServiceEvent {
    /// Listening.
    Start,
    /// Started on a database that already held a chat.
    Recover,
    /// A Join was accepted.
    Join,
    /// A Publish was accepted.
    Publish,
    /// A Publish repeated an idempotency key; nothing new was broadcast.
    PublishRepeated,
    /// A Leave was accepted.
    Leave,
    /// A call was refused.
    Refused,
    /// A Broadcast stream opened.
    BroadcastOpen,
    /// A presence list was asked for.
    Participants,
    /// An event was ordered and queued to the open streams.
    Broadcast,
    /// One event was handed to one stream (debug).
    Deliver,
    /// A Broadcast stream ended.
    BroadcastEnd,
    /// A stream's queue was full, so it was cut off.
    CutOff,
    /// A participant without a stream for the grace period was announced left.
    CrashLeave,
    /// The metrics server failed.
    Metrics,
    /// Shutdown began.
    Stopping,
    /// Shutdown ended.
    Stop,
    /// A commit to the database failed.
    StoreFailed,
    /// Serving plaintext on a non-loopback address.
    Plaintext,
    /// The health service's answer changed.
    Health,
    /// In cluster mode: the session was ended by the cluster while its join was in flight.
    JoinOvertaken,
}
names!(ServiceEvent);

/// The `event`s of a cluster node's link to NATS (`component` = `cluster`).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Display, EnumString, IntoStaticStr, VariantArray,
)]
#[strum(serialize_all = "snake_case")]
pub enum ClusterEvent {
    /// Connected to NATS, with the stream and buckets in place.
    Connected,
    /// At shutdown: how many appends, conflicts, retries and duplicates.
    AppendStats,
    /// Left the cluster.
    Shutdown,
    /// The event stream's consumer was lost and is being recreated.
    ConsumerLost,
    /// Recreating the consumer failed.
    ConsumerFailed,
    /// Catching up on the event stream failed.
    CatchUpFailed,
    /// A flow-control reply failed.
    FlowControl,
    /// A membership watch failed.
    WatchFailed,
    /// A membership watch went quiet for too long.
    WatchStalled,
    /// A heartbeat failed.
    HeartbeatFailed,
    /// The goodbye at shutdown failed.
    GoodbyeFailed,
    /// A Join waits for its name to be released.
    JoinWaitsForName,
    /// The answer to a joined event's append was lost.
    JoinOutcomeUnknown,
    /// The left event of an overtaken join could not be appended.
    JoinOvertakenFailed,
    /// The join's seq could not be recorded in membership.
    JoinSeqNotRecorded,
    /// Abandoning a session failed.
    AbandonFailed,
    /// Finishing a session's end failed.
    FinishEndFailed,
    /// Recording a crash-leave failed.
    CrashLeaveFailed,
    /// Recording that streams closed failed.
    DetachFailed,
    /// A stored event this version cannot read.
    UndecodableEvent,
    /// A stored session this version cannot read.
    UndecodableSession,
    /// A session key of another format.
    ForeignSessionKey,
    /// The Lamport checkpoint was recorded and the stream purged up to it (debug).
    StreamCut,
    /// Recording the checkpoint or purging failed.
    StreamCutFailed,
    /// Events were cut from the stream before this node read them.
    EventsCutUnread,
    /// Events were removed that no checkpoint covers.
    TimesUnknown,
}
names!(ClusterEvent);

/// The `event`s of a participant (`component` = its name), in a terminal or in a browser.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Display, EnumString, IntoStaticStr, VariantArray,
)]
#[strum(serialize_all = "snake_case")]
pub enum ParticipantEvent {
    /// Before connecting.
    Connect,
    /// Sending Join.
    JoinSent,
    /// Join answered.
    JoinOk,
    /// Joined, and the stream is open.
    Joined,
    /// Opening the Broadcast stream.
    BroadcastOpen,
    /// Asking who is present.
    ParticipantsSent,
    /// The presence list arrived.
    ParticipantsOk,
    /// The service could not say who is present.
    ParticipantsFailed,
    /// An event arrived and was shown.
    Receive,
    /// An event of a kind this version does not know was skipped (debug).
    SkipUnknownKind,
    /// Sending Publish.
    PublishSent,
    /// Publish answered.
    PublishOk,
    /// Publish refused.
    PublishRefused,
    /// Publishing too fast; the message is sent again after the wait.
    PublishThrottled,
    /// The connection or stream broke.
    Disconnected,
    /// Trying to reconnect.
    ReconnectAttempt,
    /// That attempt failed.
    ReconnectFailed,
    /// Connected again, and the stream reopened.
    Reconnected,
    /// The Leave call failed.
    LeaveFailed,
    /// Sending Leave.
    LeaveSent,
    /// Leave answered.
    LeaveOk,
    /// The stream ended.
    BroadcastEnd,
}
names!(ParticipantEvent);

/// The `event`s of the `chitty-chat` command itself (`component` = `chitty-chat`).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Display, EnumString, IntoStaticStr, VariantArray,
)]
#[strum(serialize_all = "snake_case")]
pub enum CommandEvent {
    /// The process cannot listen for a stop signal.
    Signal,
}
names!(CommandEvent);

/// A unary call a participant makes, as its own log shows it: a `*_sent` line, then one answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Call {
    /// Join, first or again after the session ended.
    Join,
    /// Publish one message.
    Publish,
    /// Leave.
    Leave,
    /// Ask who is present.
    Participants,
}

/// Which step of a call a participant's line records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CallStep {
    /// The request was sent (`*_sent`).
    Sent,
    /// The service answered: `accepted` for `*_ok`, not for `publish_refused`.
    Answered {
        /// Whether the service accepted the call.
        accepted: bool,
    },
}

impl Call {
    /// The call's name as the service's `refused` lines (`rpc`) and people spell it.
    pub fn name(self) -> &'static str {
        match self {
            Call::Join => "Join",
            Call::Publish => "Publish",
            Call::Leave => "Leave",
            Call::Participants => "Participants",
        }
    }

    /// The call a service's `rpc` field or accepted-call `event` names, whatever its case.
    pub fn from_name(name: &str) -> Option<Call> {
        [Call::Join, Call::Publish, Call::Leave, Call::Participants]
            .into_iter()
            .find(|call| call.name().eq_ignore_ascii_case(name))
    }

    /// The kind of event an accepted call causes; a Participants call causes none.
    pub fn event_kind(self) -> Option<EventKind> {
        match self {
            Call::Join => Some(EventKind::Joined),
            Call::Publish => Some(EventKind::Message),
            Call::Leave => Some(EventKind::Left),
            Call::Participants => None,
        }
    }
}

impl ParticipantEvent {
    /// The events that tell a participant's component from any other: a component that logged none of
    /// them is not a participant (the lines of the binary itself, say).
    pub const IDENTIFYING: [ParticipantEvent; 9] = [
        ParticipantEvent::Connect,
        ParticipantEvent::JoinSent,
        ParticipantEvent::JoinOk,
        ParticipantEvent::Receive,
        ParticipantEvent::PublishSent,
        ParticipantEvent::PublishOk,
        ParticipantEvent::LeaveSent,
        ParticipantEvent::LeaveOk,
        ParticipantEvent::BroadcastOpen,
    ];

    /// The call this line is a step of, and which step; `None` for a line that is not a call's.
    pub fn call_step(self) -> Option<(Call, CallStep)> {
        use ParticipantEvent as E;
        let answered = |accepted| CallStep::Answered { accepted };
        Some(match self {
            E::JoinSent => (Call::Join, CallStep::Sent),
            E::JoinOk => (Call::Join, answered(true)),
            E::PublishSent => (Call::Publish, CallStep::Sent),
            E::PublishOk => (Call::Publish, answered(true)),
            E::PublishRefused => (Call::Publish, answered(false)),
            E::LeaveSent => (Call::Leave, CallStep::Sent),
            E::LeaveOk => (Call::Leave, answered(true)),
            E::ParticipantsSent => (Call::Participants, CallStep::Sent),
            E::ParticipantsOk => (Call::Participants, answered(true)),
            _ => return None,
        })
    }
}

/// The `kind` of a chat event, on the service's `broadcast` and a participant's `receive`.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Display, EnumString, IntoStaticStr, VariantArray,
)]
#[strum(serialize_all = "snake_case")]
pub enum EventKind {
    /// A participant's message.
    Message,
    /// A participant joined.
    Joined,
    /// A participant left, or was announced left.
    Left,
}
names!(EventKind);

/// Every field name a log line may carry, across all components.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Display, EnumString, IntoStaticStr, VariantArray,
)]
#[strum(serialize_all = "snake_case")]
pub enum Field {
    /// Wall-clock time, RFC 3339, UTC.
    Timestamp,
    /// `INFO`, `WARN`, ...
    Level,
    /// The Rust module (or `chitty_web`) that logged the line.
    Target,
    /// Who logged it: `service`, `cluster`, `chitty-chat`, or the participant's name.
    Component,
    /// What happened: a name from the event lists.
    Event,
    /// The Lamport time of what the line records, at the node that logs it.
    Lamport,
    /// The caller's stamp on a request.
    RequestLamport,
    /// The service's clock right after witnessing a request.
    ReceivedLamport,
    /// The stamp on a response.
    ResponseLamport,
    /// The stamp on a received event.
    EventLamport,
    /// The address the service listens on.
    Address,
    /// The address of the metrics endpoint.
    MetricsAddress,
    /// Where the service keeps its chat.
    Storage,
    /// Whether the service serves TLS.
    Tls,
    /// Whether gRPC reflection is served.
    Reflection,
    /// The origins allowed over CORS.
    WebOrigins,
    /// The cluster node's id.
    Node,
    /// The newest seq a process knew of.
    LastSeq,
    /// The grace period before a participant without a stream is announced left.
    GraceMs,
    /// How many events the history window keeps.
    RetainEvents,
    /// How many bytes the history window keeps.
    RetainBytes,
    /// A stream's queue length.
    QueueCapacity,
    /// How many participants may be present.
    MaxParticipants,
    /// Messages per second each participant may publish.
    PublishRate,
    /// How many messages a participant may publish at once.
    PublishBurst,
    /// How many events a recovered database holds.
    Retained,
    /// How many sessions a recovered database holds.
    Sessions,
    /// The participant a line is about, or an event's author.
    Participant,
    /// An event's place in the one order everyone sees.
    Seq,
    /// The call a `refused` line is about.
    Rpc,
    /// Why something happened.
    Reason,
    /// The seq a stream starts after.
    AfterSeq,
    /// The first seq a stream delivers.
    FromSeq,
    /// How many held events a stream starts with.
    Replay,
    /// Whether a stream replaced an earlier one.
    Replaced,
    /// Who is present.
    Present,
    /// An event's kind.
    Kind,
    /// An event's text.
    Text,
    /// How many open streams an event was queued to.
    Recipients,
    /// The health service's answer.
    Status,
    /// The NATS subject and bucket prefix of a cluster.
    Prefix,
    /// How many copies NATS keeps.
    Replicas,
    /// The version of the NATS server connected to.
    NatsVersion,
    /// How many appends a node made.
    Appends,
    /// How many appends conflicted.
    Conflicts,
    /// How many appends were retried after a transient failure.
    TransientRetries,
    /// How many appends NATS found to be duplicates.
    Duplicates,
    /// The error that happened.
    Error,
    /// The membership bucket a watch is on.
    Bucket,
    /// A stored key this version cannot read.
    Key,
    /// The seq of an overtaken join.
    JoinSeq,
    /// How many stream closings a node still owes.
    Owed,
    /// The last seq a cut removes.
    ThroughSeq,
    /// The last seq of a range.
    ToSeq,
    /// The seq of the Lamport checkpoint.
    CheckpointSeq,
    /// The service a participant talks to.
    Server,
    /// How many characters a message has.
    Chars,
    /// How long to wait before publishing again.
    RetryAfterMs,
    /// The seq a stream will reopen after.
    ResumeAfterSeq,
}
names!(Field);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_snake_case_and_parse_back() {
        assert_eq!(ServiceEvent::PublishRepeated.as_str(), "publish_repeated");
        assert_eq!(
            ClusterEvent::JoinWaitsForName.as_str(),
            "join_waits_for_name"
        );
        assert_eq!(Field::NatsVersion.as_str(), "nats_version");
        for event in ParticipantEvent::ALL {
            assert_eq!(event.as_str().parse::<ParticipantEvent>(), Ok(*event));
        }
        assert!("JoinOk".parse::<ParticipantEvent>().is_err());
    }

    #[test]
    fn every_call_has_one_send_and_its_answers() {
        for call in [Call::Join, Call::Publish, Call::Leave, Call::Participants] {
            let steps: Vec<_> = ParticipantEvent::ALL
                .iter()
                .filter_map(|event| event.call_step())
                .filter(|(of, _)| *of == call)
                .map(|(_, step)| step)
                .collect();
            assert_eq!(
                steps.iter().filter(|step| **step == CallStep::Sent).count(),
                1,
                "{call:?}"
            );
            assert!(steps.contains(&CallStep::Answered { accepted: true }));
            assert_eq!(Call::from_name(&call.name().to_lowercase()), Some(call));
        }
    }
}
