//! The event log: one JetStream stream shared by every node, whose sequence number is the event's seq.
//!
//! Every event (joined, message, left) of the chat is one message of the stream `<prefix>-events`,
//! on a subject of its participant's (see below): file storage, [`crate::ClusterConfig::replicas`]
//! copies, and a duplicate window of [`DUPLICATE_WINDOW`]. JetStream numbers the messages 1, 2, 3, ...
//! with no gaps, and that number is the event's `seq`: the one order that every participant on every
//! node sees.
//!
//! # Lamport time is computed where events are applied
//!
//! With one node, seq and Lamport time are assigned under one lock, so Lamport times strictly increase
//! along seq. Nodes of a cluster share no lock, and none needs one: a stored event carries only the
//! *stamp* its appending node gave it (a tick of its clock, which witnessed the request), and every
//! node computes the event's time as it applies the stream in order, as `max(previous time, stamp) +
//! 1` (see [`crate::timeline`]). Every node computes the same time, strictly increasing along seq and
//! above everything the appender had witnessed. So an append needs no condition on the stream's
//! tail, and a node may have many in flight: JetStream acknowledges them in the order it stores them.
//!
//! # Conditions per participant
//!
//! What an append still has to be sure of concerns one participant: a name is admitted once, a
//! participant's message is never stored after its own left event, and a session is announced left
//! once. Each participant (by name key) has two subjects, `<prefix>.events.p.<id>` for its joined and
//! left events ([`presence_subject`]) and `<prefix>.events.m.<id>` for its messages
//! ([`message_subject`]). [`EventLog::append_if`] asks the caller's check, answered from the events
//! this node applied, which joined or left event of the participant it relies on (its seq, 0 for none),
//! and publishes with `Nats-Expected-Last-Subject-Sequence` set to that seq on the presence subject
//! (for a message, `Nats-Expected-Last-Subject-Sequence-Subject` names the presence subject). JetStream
//! stores the event only if no joined or left event of the participant came in between, so the check's
//! verdict still holds; otherwise it answers with the subject's real last seq, and the append waits
//! until this node applied it, checks again and expects that seq, at most [`MAX_CONFLICTS`] times.
//!
//! Only appends of the same participant can conflict, and messages do not change the presence
//! subject, so a participant's messages do not conflict with each other. With more than one replica,
//! nats-server refuses a check of a subject while another check of it is being replicated ("wrong last
//! sequence" with no seq), so a node takes one participant's conditional appends one at a time until
//! JetStream answers; with one replica it need not. [`EventLog::stats`] counts the conflicts. The
//! header `Nats-Expected-Last-Subject-Sequence-Subject` needs nats-server 2.11 or later.
//!
//! # Compaction
//!
//! The rule above needs the time of the event before the first one a node applies. The stream has no
//! limit that would discard events on its own (its limits, four times the retention, refuse new events
//! instead, should cutting ever stop working). A node cuts it: once the events it applied that the
//! stream still holds are more than twice `retain_events` (or their payloads more than twice
//! `retain_bytes`), it records in the bucket `<prefix>-checkpoint` the seq and time of the last event
//! it will cut ([`crate::timeline::Checkpoint`], written only if it moves the checkpoint forward), and
//! then purges the stream up to it. A node that starts applies from just after the checkpoint, first
//! finishing a cut that a node recorded but did not make; a node that lagged so far behind that events
//! were cut before it read them (`events_cut_unread`) goes on from the checkpoint.
//!
//! # Durability and duplicates
//!
//! `append` returns only after JetStream acknowledged the store (with replicas, a quorum has it: the
//! durability point) and this node's consumer has applied the event, so the node's own history already
//! holds it, with its time, when the caller answers. Each message carries a `Nats-Msg-Id`: for an
//! event with an idempotency key, a digest of the kind, the participant's name key and the key, so a
//! publisher's retry, on this node or any other, is stored once within [`DUPLICATE_WINDOW`] and
//! answered with the first seq ([`Appended::duplicate`]); otherwise an id unique to this append, so
//! that the node's own retry after a lost acknowledgment cannot store an event twice either.
//!
//! # The stored message
//!
//! The payload is JSON, self-describing and small, for example
//!
//! ```json
//! {"v":2,"stamp":17,"kind":"message","participant":"alice","text":"hi","key":"k-41","origin":"node-1.4f2a9c0d1e3b5a77.12"}
//! ```
//!
//! `v` is the format version (2; version 1 stored final times on one subject, and a node refuses its
//! stream), `stamp` the appending node's stamp, `kind` is `message`, `joined` or `left`, `text` is the
//! chat text (joined and left events have none: their sentence names the computed time), `key` the
//! idempotency key (absent without one), and `origin` names the append call that made it (node,
//! process incarnation, counter), so a node that retried after a lost acknowledgment can tell its own
//! event from an earlier publisher's. The seq is not in the payload: it comes from the stream.
//!
//! # Applying events
//!
//! [`crate::Cluster::start_log`] starts one consumer task per node. It reads the stream in order
//! from a start seq through an ephemeral push consumer with flow control and a heartbeat every
//! second (a `Delivery`). async-nats's ordered consumer is not used: its own recovery pauses up to
//! 10 s between attempts, and recreates a consumer that has delivered nothing yet from the stream's
//! first event. For each event the task computes the event's Lamport time and witnesses it on the
//! node clock; then it hands the node's `on_event` callback every event that has arrived so far (at
//! most [`MAX_APPLY_BATCH`]) as one batch, in seq order, and only then advances the applied seq
//! ([`EventLog::watch_applied`]) to the batch's last. The callback runs on the consumer task and
//! must not block: it is where the service pushes the events into its history and fans them out, as
//! the single node's writer does after a commit, so that a burst of events costs one lock and one
//! wake-up per subscriber rather than one per event. Seqs handed over strictly increase; a jump means
//! the events in between were cut from the stream before this node read them (see "Compaction").
//! How the task replaces a consumer that is lost is under "When a nats-server dies".
//!
//! # Replicas agree with nats-server 2.11 and later
//!
//! A consumer reads the store of the one server it was placed on, which JetStream picks among the
//! stream's replicas, leader or not. A replica holds a prefix of what the quorum committed. nats-server
//! 2.9.10 (Debian's) broke that after a quorum outage: the server that led the stream when it lost its
//! quorum could keep, at one seq, an append it took during the outage and never committed, where the
//! others hold the event committed there afterwards, and a node whose consumer lived on it delivered
//! that event (Chitty-Chat's outage test saw it in 5 of 24 runs). nats-server fixed its Raft layer in
//! 2.11.0 (nats-io/nats-server#5957 and #6027), which is also the oldest version this log works with
//! (see "Conditions per participant"), so a node reads whichever replica its consumer is on, and
//! reads single events ([`EventLog::read`], catch-ups) with direct gets, which the stream's leader
//! answers.
//!
//! # When a nats-server dies
//!
//! The consumer lives on one server, and the client reaches it through one server; either may die.
//! The consumer counts as lost, and is replaced by a new one from the next seq to apply, when
//!
//! - nothing at all (not even a heartbeat) arrived for 2 s;
//! - a consumer sequence arrived out of turn, or a heartbeat reports more events sent than arrived:
//!   events were lost in transit, for example while the client reconnected to another server;
//! - an event known to exist (an append was acknowledged past it) has not arrived after
//!   [`STALL_TIMEOUT`].
//!
//! Creating a consumer needs the JetStream meta leader; if that was on the dead server, none can be
//! created until the survivors elect a new one, seconds later (a Raft follower waits out an
//! election timeout of 4 to 9 s in current nats-server before it campaigns). So after losing a
//! consumer the task first catches up by reading the events past the applied seq one at a time from
//! the stream's leader, then creates the new consumer, pausing between rounds with a short backoff.
//! A node therefore keeps applying for as long as the stream has a leader, and so can keep
//! appending (an append waits until the node has applied every event up to its own). When the
//! stream's own leader dies, nothing can be appended or read until its replacement is elected:
//! appends in flight keep retrying, and with nats-server 2.9.10 on loopback the first of them
//! succeeded 4.2 to 8.5 s after the kill (about 20 kills), which is why
//! [`crate::ClusterConfig::timeout`] must stay well above that. Transient errors (no answer, no
//! responders, no leader) are retried within that bound; a refusal that another try cannot change
//! fails the append at once.
//!
//! The consumer task is a state machine of four phases. One function runs each phase and returns
//! the next; the stop signal (or the log's handle dropped) ends the task in any phase.
//!
//! - **Starting**: creates a consumer from the next seq to apply. While that is under way, each time
//!   an append waits for an event not yet applied, the task catches up from the stream's leader
//!   (`catch_up_failed` if a read fails). Next: Following once the consumer exists; CatchingUp if it
//!   could not be created (`consumer_failed`).
//! - **Following**: applies what the consumer delivered, as above, and resets the backoff after each
//!   batch. Next: Following; or CatchingUp once the consumer counts as lost (`consumer_lost`, its
//!   `reason` one of the three above, or that the checkpoint covering a gap in what it delivered
//!   could not be read).
//! - **CatchingUp**: reads up to 256 events past the applied seq from the stream's leader, one at a
//!   time (`catch_up_failed` if a read fails). Next: Pausing.
//! - **Pausing**: waits out the backoff, 20 ms doubling to 500 ms, with jitter. Next: Starting.

use chitty_logs::{CLUSTER, ClusterEvent};
use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use async_nats::jetstream::stream::LastRawMessageErrorKind;
use async_nats::jetstream::{self, consumer, context::PublishErrorKind, kv, stream};
use async_nats::{HeaderMap, StatusCode};
use bytes::Bytes;
use chitty_core::validate::name_key;
use chitty_core::{Event, EventDraft, LamportClock, LamportTime, Seq};
use futures_util::{FutureExt, StreamExt};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::sync::{Mutex, watch};
use tokio::time::Instant;
use tracing::{debug, error, warn};

use crate::retry::{Backoff, Deadline, is_in_flight_conflict, is_permanent, retry_until};
use crate::timeline::{Checkpoint, Timeline};
use crate::{ClusterConfig, ClusterError, Task, hex};

/// How long JetStream remembers message ids to drop duplicates.
pub const DUPLICATE_WINDOW: Duration = Duration::from_secs(120);

/// How many times in a row one append may find its participant's presence changed under it (or, with
/// more than one replica, another check of it in flight) before it gives up with
/// [`ClusterError::Contended`].
pub const MAX_CONFLICTS: u32 = 100;

/// How long the consumer may deliver nothing while an event it should deliver is known to exist
/// before it counts as lost and is replaced; see "When a nats-server dies" above.
pub const STALL_TIMEOUT: Duration = Duration::from_secs(1);

/// The version written in every stored event's `v`. Version 1 stored the event's final Lamport time
/// and used one subject for the whole stream; version 2 stores the appender's stamp.
const FORMAT_VERSION: u32 = 2;

/// The stream's name for a prefix.
pub fn stream_name(prefix: &str) -> String {
    format!("{prefix}-events")
}

/// The subjects of the stream, for a prefix: every participant's presence and messages.
pub fn subjects(prefix: &str) -> String {
    format!("{prefix}.events.>")
}

/// The subject of a participant's joined and left events, for a prefix: `<prefix>.events.p.<id>`,
/// where the id is the same for look-alike names (a digest of the name key). An append that depends on
/// whether the participant is present expects this subject's last seq to be what the node last
/// applied on it.
pub fn presence_subject(prefix: &str, participant: &str) -> String {
    format!("{prefix}.events.p.{}", participant_id(participant))
}

/// The subject of a participant's messages, for a prefix: `<prefix>.events.m.<id>`. Kept apart from
/// the presence subject so that the participant's messages do not conflict with each other.
pub fn message_subject(prefix: &str, participant: &str) -> String {
    format!("{prefix}.events.m.{}", participant_id(participant))
}

/// A participant's token in subjects: hex of the first 16 bytes of the SHA-256 of its name key, the
/// same for look-alike names and safe in a subject whatever the name holds.
fn participant_id(participant: &str) -> String {
    let digest = Sha256::digest(format!("chitty-chat/1\0{}", name_key(participant)).as_bytes());
    hex(&digest[..16])
}

/// The checkpoint bucket's name, for a prefix: where the time of the last event cut from the stream
/// is kept (see "Compaction" in the module documentation).
pub fn checkpoint_bucket(prefix: &str) -> String {
    format!("{prefix}-checkpoint")
}

/// The key of the checkpoint in its bucket.
const CHECKPOINT_KEY: &str = "lamport";

/// The seqs the stream holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bounds {
    /// The oldest seq still held; `last_seq + 1` when the stream holds nothing.
    pub first_seq: Seq,
    /// The newest seq ever stored, or 0 before the first.
    pub last_seq: Seq,
}

impl Bounds {
    /// The bounds a stream's state reports.
    fn of(state: &stream::State) -> Self {
        Self {
            // The stream sequence is the event's seq.
            first_seq: Seq::new(if state.messages == 0 {
                state.last_sequence + 1
            } else {
                state.first_sequence
            }),
            last_seq: Seq::new(state.last_sequence),
        }
    }

    /// Whether every event after `after_seq` is still held, so a replay from there has no gap.
    pub fn holds_after(&self, after_seq: Seq) -> bool {
        after_seq >= self.last_seq || after_seq.next() >= self.first_seq
    }
}

/// An event as the log holds it: the event and the idempotency key it was published with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEvent {
    /// The event, with its seq from the stream.
    pub event: Event,
    /// The publisher's idempotency key, if it gave one.
    pub idempotency_key: Option<Arc<str>>,
}

/// The outcome of [`EventLog::append`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Appended {
    /// The stored event: the new one, or for a duplicate the one first stored with the same key.
    pub event: Event,
    /// Whether the idempotency key was already used, so nothing new was stored.
    pub duplicate: bool,
}

/// Counters of a node's appends since its log started, to measure what the ordering costs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AppendStats {
    /// Appends that returned successfully, duplicates included.
    pub appends: u64,
    /// Publishes refused because another node appended first (each one cost a retry).
    pub conflicts: u64,
    /// Publishes retried after a timeout or a NATS failover.
    pub transient_retries: u64,
    /// Appends answered as duplicates of an earlier one with the same idempotency key.
    pub duplicates: u64,
}

/// A node's handle on the event log. See the module documentation.
///
/// Dropping it stops the consumer; [`EventLog::shutdown`] stops it and waits.
#[derive(Debug)]
pub struct EventLog {
    /// What the handle and the consumer task share.
    shared: Arc<Shared>,
    /// Tells the consumer task to stop.
    stop: watch::Sender<bool>,
    /// The consumer task.
    consumer: Task,
}

#[derive(Debug)]
struct Shared {
    /// For publishing and requests.
    jetstream: jetstream::Context,
    /// The event stream.
    stream: stream::Stream,
    /// The prefix of subjects: events are published on each participant's own subjects.
    prefix: String,
    /// Where the time of the last event cut from the stream is kept.
    checkpoints: kv::Store,
    /// The node clock: ticked for each event stamped, witnessing each event's time as it is applied.
    clock: Arc<LamportClock>,
    /// The bound on each append or read, retries included.
    timeout: Duration,
    /// This node's id, then a number unique to this process, for the `origin` of each event.
    origin_prefix: String,
    /// Numbers the appends of this process.
    next_origin: AtomicU64,
    /// With more than one replica, one lock per participant (by [`participant_id`]) that an append
    /// depending on the participant's presence holds until JetStream answered: a replicated stream
    /// refuses a second check of one subject while the first is in flight, so appends of one
    /// participant would only conflict with each other. `None` with one replica, where they need not
    /// wait for each other. An entry is removed when nobody holds or waits for its lock.
    per_participant: Option<std::sync::Mutex<HashMap<String, Arc<Mutex<()>>>>>,
    /// The time of each event this node applied that the stream still holds, for the answers to
    /// appends and reads, and to decide when to cut the stream.
    times: std::sync::Mutex<Times>,
    /// The first seq the stream is known to hold: an append expecting a participant's last presence
    /// event before it expects none, since the stream was cut after that event.
    first_held: AtomicU64,
    /// The stream is cut once it holds more than twice this many events or bytes, down to this many.
    retain_events: u64,
    /// See `retain_events`.
    retain_bytes: u64,
    /// Whether a cut is in progress on this node, so that only one is.
    cutting: AtomicBool,
    /// The last seq the consumer applied; the sender lives in the consumer task.
    applied: watch::Receiver<Seq>,
    /// The highest seq known to exist (acknowledged or reported by JetStream): the consumer is
    /// recreated if it stays silent while it has not applied this far.
    wanted: watch::Sender<Seq>,
    /// The stream's last seq as the consumer's deliveries last reported it: with `wanted`, how far
    /// the consumer is behind ([`EventLog::lag`]).
    stream_last_seen: AtomicU64,
    /// Counters for [`AppendStats`].
    appends: AtomicU64,
    conflicts: AtomicU64,
    transient_retries: AtomicU64,
    duplicates: AtomicU64,
}

/// The stored form of an event; see the module documentation.
#[derive(Debug, Serialize, Deserialize)]
struct Record {
    v: u32,
    stamp: u64,
    kind: RecordKind,
    participant: String,
    /// A message's text; joined and left events have none, since their sentence names the time
    /// every node computes when it applies them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    text: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    key: Option<String>,
    origin: String,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum RecordKind {
    Message,
    Joined,
    Left,
}

impl Record {
    /// The payload of `draft` stamped `stamp`.
    fn encode(
        draft: &EventDraft,
        stamp: LamportTime,
        key: Option<&str>,
        origin: &str,
    ) -> Result<Vec<u8>, ClusterError> {
        let (kind, text) = match draft {
            EventDraft::Message { text, .. } => (RecordKind::Message, Some(text.clone())),
            EventDraft::Joined { .. } => (RecordKind::Joined, None),
            EventDraft::Left { .. } => (RecordKind::Left, None),
        };
        serde_json::to_vec(&Record {
            v: FORMAT_VERSION,
            stamp: stamp.get(),
            kind,
            participant: draft.participant().to_string(),
            text,
            key: key.map(str::to_owned),
            origin: origin.to_owned(),
        })
        .map_err(|error| ClusterError::Decode {
            what: "new event".to_owned(),
            reason: error.to_string(),
        })
    }

    /// Decodes the message stored at `seq`.
    fn decode(seq: Seq, payload: &[u8]) -> Result<Self, ClusterError> {
        let decode_error = |reason: String| ClusterError::Decode {
            what: format!("event {seq}"),
            reason,
        };
        let record: Record =
            serde_json::from_slice(payload).map_err(|error| decode_error(error.to_string()))?;
        if record.v != FORMAT_VERSION {
            return Err(decode_error(format!(
                "format version {} is not {FORMAT_VERSION}",
                record.v
            )));
        }
        if matches!(record.kind, RecordKind::Message) && record.text.is_none() {
            return Err(decode_error("a message without text".to_owned()));
        }
        Ok(record)
    }

    /// The event at `seq`, whose time the node computed as `lamport`.
    /// The stamp the appending node gave the event.
    fn stamp(&self) -> LamportTime {
        LamportTime::new(self.stamp)
    }

    /// The event at `seq`, whose time the node computed as `lamport`.
    fn into_log_event(self, seq: Seq, lamport: LamportTime) -> LogEvent {
        let participant: Arc<str> = self.participant.into();
        let draft = match self.kind {
            RecordKind::Message => EventDraft::Message {
                participant,
                text: self.text.unwrap_or_default(),
            },
            RecordKind::Joined => EventDraft::Joined { participant },
            RecordKind::Left => EventDraft::Left { participant },
        };
        LogEvent {
            event: draft.into_event(seq, lamport),
            idempotency_key: self.key.map(Into::into),
        }
    }
}

/// The `Nats-Msg-Id` of an event with an idempotency key: the same on every node for the same
/// participant (by name key), kind and key, and safe in a header whatever the key contains.
fn keyed_message_id(draft: &EventDraft, key: &str) -> String {
    let mut digest = Sha256::new();
    for part in [
        "chitty-chat/1",
        &draft.kind().to_string(),
        &name_key(draft.participant()),
        key,
    ] {
        digest.update(part.as_bytes());
        digest.update([0]);
    }
    hex(&digest.finalize())
}

/// Finds the stream's real last seq in a "wrong last sequence: N" answer.
fn reported_last_sequence(error: &str) -> Option<u64> {
    let marker = "wrong last sequence: ";
    let start = error.rfind(marker)? + marker.len();
    let digits: String = error[start..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

/// What one publish of an append came to.
enum Attempt {
    /// Stored as new at `seq`.
    Stored { seq: Seq },
    /// The message id was already stored, at `seq`.
    Duplicate { seq: Seq },
    /// The participant's presence subject did not end where the append expected: its last seq, if
    /// JetStream said (a replicated stream refuses a check of a subject that another check in flight
    /// holds without saying more).
    Conflict { last_seq: Option<Seq> },
    /// Failed in a way worth retrying; `maybe_stored` if the message may have been stored anyway.
    Transient {
        maybe_stored: bool,
        error: async_nats::Error,
    },
    /// Refused in a way that another try cannot change; nothing was stored.
    Refused { error: async_nats::Error },
}

/// Gets the event stream, or creates it if no node has yet. Retries until `deadline`: a cluster that
/// has just started may not have elected a JetStream leader yet. Refuses a stream made by a version of
/// Chitty-Chat that stored another format.
///
/// The stream has no limit that discards events: nodes cut its head themselves, after recording the
/// checkpoint (see "Compaction" in the module documentation). Its limits, four times the retention,
/// only refuse new events if cutting stopped working, rather than let JetStream discard events whose
/// time no checkpoint records.
pub(crate) async fn get_or_create_stream(
    jetstream: &jetstream::Context,
    config: &ClusterConfig,
    deadline: Deadline,
) -> Result<stream::Stream, ClusterError> {
    let name = stream_name(&config.prefix);
    let stream_config = stream::Config {
        name: name.clone(),
        description: Some(
            "Chitty-Chat events; the stream sequence is the event's seq (format 2)".to_owned(),
        ),
        subjects: vec![subjects(&config.prefix)],
        storage: stream::StorageType::File,
        num_replicas: config.replicas,
        max_messages: i64::try_from(config.retain_events.saturating_mul(4)).unwrap_or(i64::MAX),
        max_bytes: i64::try_from(config.retain_bytes.saturating_mul(4)).unwrap_or(i64::MAX),
        discard: stream::DiscardPolicy::New,
        duplicate_window: DUPLICATE_WINDOW,
        allow_direct: true,
        ..Default::default()
    };
    let stream = retry_until(deadline, "get or create the event stream", || {
        jetstream.get_or_create_stream(stream_config.clone())
    })
    .await?;
    let made_with = &stream.cached_info().config.subjects;
    if *made_with != stream_config.subjects {
        return Err(ClusterError::Config(format!(
            "the event stream {name} was made by an older Chitty-Chat (its subjects are {made_with:?}, \
             not {:?}); give the nodes another --nats-prefix, or delete the stream and its buckets",
            stream_config.subjects
        )));
    }
    Ok(stream)
}

/// Gets the checkpoint bucket, or creates it if no node has yet, retrying until `deadline`.
pub(crate) async fn get_or_create_checkpoints(
    jetstream: &jetstream::Context,
    config: &ClusterConfig,
    deadline: Deadline,
) -> Result<kv::Store, ClusterError> {
    crate::members::get_or_create_bucket(
        jetstream,
        kv::Config {
            bucket: checkpoint_bucket(&config.prefix),
            history: 1,
            storage: stream::StorageType::File,
            num_replicas: config.replicas,
            ..Default::default()
        },
        deadline,
    )
    .await
}

/// The checkpoint the bucket holds, with its revision (0 if there is none yet), retrying until
/// `deadline`.
async fn read_checkpoint(
    checkpoints: &kv::Store,
    deadline: Deadline,
) -> Result<(Checkpoint, u64), ClusterError> {
    let entry = retry_until(deadline, "read the Lamport checkpoint", || {
        checkpoints.entry(CHECKPOINT_KEY)
    })
    .await?;
    match entry {
        None => Ok((Checkpoint::default(), 0)),
        Some(entry) if entry.value.is_empty() => Ok((Checkpoint::default(), entry.revision)),
        Some(entry) => {
            let checkpoint =
                serde_json::from_slice(&entry.value).map_err(|error| ClusterError::Decode {
                    what: "the Lamport checkpoint".to_owned(),
                    reason: error.to_string(),
                })?;
            Ok((checkpoint, entry.revision))
        }
    }
}

/// What the stream holds now, asked of its leader, retrying until `deadline`.
pub(crate) async fn bounds(
    stream: &stream::Stream,
    deadline: Deadline,
) -> Result<Bounds, ClusterError> {
    Ok(Bounds::of(&stream_info(stream, deadline).await?.state))
}

/// Where a node may start applying the stream, once any cut a checkpoint records is done: the first
/// seq the stream holds and the time of the event before it. A node that finds the checkpoint ahead of
/// the stream's head (a node recorded it and has not cut yet, or died before it could) cuts the stream
/// there itself. Fails if the stream lost events that no checkpoint covers.
pub(crate) async fn settle(
    stream: &stream::Stream,
    checkpoints: &kv::Store,
    deadline: Deadline,
) -> Result<(Bounds, Checkpoint), ClusterError> {
    let (checkpoint, _) = read_checkpoint(checkpoints, deadline).await?;
    let mut held = bounds(stream, deadline).await?;
    if checkpoint.last_cut().next() > held.first_seq {
        cut_through(stream, checkpoint.last_cut(), deadline).await?;
        held = bounds(stream, deadline).await?;
    }
    if checkpoint.last_cut().next() < held.first_seq {
        return Err(ClusterError::TimesUnknown {
            checkpoint: checkpoint.last_cut(),
            first_seq: held.first_seq,
        });
    }
    Ok((held, checkpoint))
}

/// Removes every event up to and including `seq` from the stream, retrying until `deadline`.
async fn cut_through(
    stream: &stream::Stream,
    seq: Seq,
    deadline: Deadline,
) -> Result<(), ClusterError> {
    retry_until(deadline, "cut the event stream's head", || async move {
        stream.purge().sequence(seq.next().get()).await
    })
    .await?;
    Ok(())
}

/// The stream's configuration and state, asked of its leader, retrying until `deadline`.
async fn stream_info(
    stream: &stream::Stream,
    deadline: Deadline,
) -> Result<stream::Info, ClusterError> {
    retry_until(deadline, "read the event stream's state", || {
        stream.get_info()
    })
    .await
}

impl EventLog {
    /// Starts the consumer; see [`crate::Cluster::start_log`].
    pub(crate) async fn start<F>(
        jetstream: jetstream::Context,
        stream: stream::Stream,
        checkpoints: kv::Store,
        config: &ClusterConfig,
        clock: Arc<LamportClock>,
        from_seq: Seq,
        on_event: F,
    ) -> Result<Self, ClusterError>
    where
        F: FnMut(Vec<LogEvent>) + Send + 'static,
    {
        let deadline = Deadline::after(config.timeout);
        let (held, checkpoint) = settle(&stream, &checkpoints, deadline).await?;
        let info = stream_info(&stream, deadline).await?;
        let from_seq = from_seq.clamp(held.first_seq, held.last_seq.next());
        let (applied_sender, applied) = watch::channel(from_seq.previous());
        let replicated = info.config.num_replicas > 1;
        let shared = Arc::new(Shared {
            prefix: config.prefix.clone(),
            checkpoints,
            clock,
            timeout: config.timeout,
            origin_prefix: format!("{}.{:016x}", config.node_id, rand::random::<u64>()),
            next_origin: AtomicU64::new(0),
            per_participant: replicated.then(|| std::sync::Mutex::new(HashMap::new())),
            times: std::sync::Mutex::new(Times::default()),
            first_held: AtomicU64::new(held.first_seq.get()),
            retain_events: config.retain_events,
            retain_bytes: config.retain_bytes,
            cutting: AtomicBool::new(false),
            applied,
            wanted: watch::Sender::new(from_seq.previous()),
            appends: AtomicU64::new(0),
            stream_last_seen: AtomicU64::new(0),
            conflicts: AtomicU64::new(0),
            transient_retries: AtomicU64::new(0),
            duplicates: AtomicU64::new(0),
            jetstream,
            stream,
        });
        // The events from the checkpoint to `from_seq` are not applied here, but their times are
        // needed for the first event that is: they are read and placed on the timeline.
        let mut timeline = Timeline::after(checkpoint.time());
        for seq in (held.first_seq.get()..from_seq.get()).map(Seq::new) {
            let (record, bytes) = shared.record_at(seq, deadline).await?;
            let lamport = timeline.place(record.stamp());
            shared.times().push(seq, lamport, bytes);
        }
        shared.clock.witness(timeline.last());
        let (stop, stopped) = watch::channel(false);
        let applier = Applier {
            shared: Arc::clone(&shared),
            next_seq: from_seq,
            timeline,
            applied: applied_sender,
            on_event,
            batch: Vec::new(),
            timed: Vec::new(),
            cut: None,
        };
        let consumer = Task::spawn(apply_loop(applier, stopped));
        Ok(Self {
            shared,
            stop,
            consumer,
        })
    }

    /// Stores `draft` as an event of the chat, stamped with a tick of the node clock, with no condition
    /// on the chat's state. Returns once JetStream has stored it and this node has applied it (and so
    /// computed its time). While the stream has no leader (its server died and the others are electing
    /// a new one) the append keeps trying, within [`crate::ClusterConfig::timeout`].
    ///
    /// With an `idempotency_key` that the same participant already used for the same kind of event
    /// within [`DUPLICATE_WINDOW`], on any node, nothing new is stored and the first event comes back
    /// with [`Appended::duplicate`] set.
    ///
    /// On [`ClusterError::TimedOut`] the event may or may not have been stored; if it was, the
    /// consumer applies it like any other. A retry with the same idempotency key is safe.
    pub async fn append(
        &self,
        draft: EventDraft,
        idempotency_key: Option<&str>,
    ) -> Result<Appended, ClusterError> {
        let appended = self
            .append_checked(
                draft,
                idempotency_key,
                None::<&mut (dyn FnMut() -> Result<Seq, ()> + Send)>,
            )
            .await?;
        Ok(
            appended
                .unwrap_or_else(|()| unreachable!("an append without a check is never refused")),
        )
    }

    /// Like [`EventLog::append`], but only if `check` passes, and only if what it checked of the
    /// draft's participant still holds when JetStream stores the event: a condition on the
    /// participant's presence (present with this join, or absent) that holds across all nodes.
    /// Returns `Ok(Err(refusal))`, with nothing stored, when `check` refuses.
    ///
    /// `check` answers from what this node applied, and returns the seq of the participant's last
    /// joined or left event it relied on (0 if none). The event is published with the condition that
    /// this is still the last event on the participant's presence subject (see "Conditions per
    /// participant" in the module documentation), so no joined or left event of the participant can
    /// have come in between the check and the append. If one did, JetStream says which seq is last;
    /// the append waits until this node applied it, runs `check` again, and expects that seq. `check`
    /// must be quick and must not block.
    pub async fn append_if<E: Send>(
        &self,
        draft: EventDraft,
        idempotency_key: Option<&str>,
        mut check: impl FnMut() -> Result<Seq, E> + Send,
    ) -> Result<Result<Appended, E>, ClusterError> {
        self.append_checked(draft, idempotency_key, Some(&mut check))
            .await
    }

    /// The loop of [`EventLog::append`] and [`EventLog::append_if`]: publishes, and retries what can
    /// be retried, until the event is stored and applied, `check` refuses, or the deadline passes.
    async fn append_checked<E>(
        &self,
        draft: EventDraft,
        idempotency_key: Option<&str>,
        mut check: Option<&mut (dyn FnMut() -> Result<Seq, E> + Send)>,
    ) -> Result<Result<Appended, E>, ClusterError> {
        let shared = &self.shared;
        let deadline = Deadline::after(shared.timeout);
        let origin = format!(
            "{}.{}",
            shared.origin_prefix,
            shared.next_origin.fetch_add(1, Ordering::Relaxed)
        );
        let message_id = match idempotency_key {
            Some(key) => keyed_message_id(&draft, key),
            None => origin.clone(),
        };
        // Held until JetStream stored the event; see `Shared::per_participant`.
        let mut turn = match (&check, &shared.per_participant) {
            (Some(_), Some(_)) => Some(
                shared
                    .participant_turn(draft.participant(), deadline)
                    .await?,
            ),
            _ => None,
        };
        // The last seq of the participant's presence subject as JetStream reported it, once it did.
        let mut reported: Option<Seq> = None;
        let mut conflicts = 0;
        let mut maybe_stored_before = false;
        let mut backoff = Backoff::default();
        loop {
            let condition = match check.as_mut() {
                None => None,
                Some(check) => {
                    if let Some(reported) = reported {
                        shared.wait_applied(reported, deadline).await?;
                    }
                    match check() {
                        Err(refusal) => return Ok(Err(refusal)),
                        Ok(relied_on) => Some(reported.unwrap_or_else(|| {
                            // Cut from the stream since: the participant has no presence event left.
                            if relied_on.get() < shared.first_held.load(Ordering::Relaxed) {
                                Seq::new(0)
                            } else {
                                relied_on
                            }
                        })),
                    }
                }
            };
            let attempt = shared
                .publish(
                    &draft,
                    idempotency_key,
                    &origin,
                    &message_id,
                    condition,
                    deadline,
                )
                .await?;
            if matches!(attempt, Attempt::Stored { .. } | Attempt::Duplicate { .. }) {
                drop(turn.take());
            }
            match attempt {
                Attempt::Stored { seq } => {
                    shared.wait_applied(seq, deadline).await?;
                    shared.appends.fetch_add(1, Ordering::Relaxed);
                    let lamport = shared.time_of(seq)?;
                    return Ok(Ok(Appended {
                        event: draft.into_event(seq, lamport),
                        duplicate: false,
                    }));
                }
                Attempt::Duplicate { seq } => {
                    shared.wait_applied(seq, deadline).await?;
                    let (stored, stored_origin) = shared.stored_at(seq, deadline).await?;
                    // After an attempt whose answer was lost, the "duplicate" may be that attempt.
                    let ours = maybe_stored_before && stored_origin == origin;
                    shared.appends.fetch_add(1, Ordering::Relaxed);
                    if !ours {
                        shared.duplicates.fetch_add(1, Ordering::Relaxed);
                    }
                    return Ok(Ok(Appended {
                        event: stored.event,
                        duplicate: !ours,
                    }));
                }
                Attempt::Conflict { last_seq } => {
                    conflicts += 1;
                    shared.conflicts.fetch_add(1, Ordering::Relaxed);
                    if conflicts > MAX_CONFLICTS {
                        return Err(ClusterError::Contended { conflicts });
                    }
                    match last_seq {
                        Some(last_seq) => reported = Some(last_seq),
                        // Another check of the subject is in flight: try again shortly.
                        None => {
                            if !backoff.pause_before(deadline.at).await {
                                return Err(ClusterError::Contended { conflicts });
                            }
                        }
                    }
                }
                Attempt::Transient {
                    maybe_stored,
                    error,
                } => {
                    maybe_stored_before |= maybe_stored;
                    shared.transient_retries.fetch_add(1, Ordering::Relaxed);
                    if !backoff.pause_before(deadline.at).await {
                        // An attempt whose answer was lost may have stored the event: say so.
                        return Err(if maybe_stored_before {
                            deadline.timed_out("append the event")
                        } else {
                            ClusterError::jetstream("append the event", error)
                        });
                    }
                }
                Attempt::Refused { error } => {
                    return Err(ClusterError::jetstream("append the event", error));
                }
            }
        }
    }

    /// Up to `limit` events after `after_seq`, in order, read from the stream's leader (at most
    /// [`LEADER_READS_IN_FLIGHT`] requests at a time): for a replay beyond what the node holds in
    /// memory. Fails with [`ClusterError::OutOfRange`] if some of them are no longer retained, or
    /// are older than the first event this node applied (their times are computed where they are
    /// applied). Waits until this node applied the last of them.
    pub async fn read(&self, after_seq: Seq, limit: usize) -> Result<Vec<LogEvent>, ClusterError> {
        let shared = &self.shared;
        let deadline = Deadline::after(shared.timeout);
        let held = shared.bounds(deadline).await?;
        if !held.holds_after(after_seq) {
            return Err(ClusterError::OutOfRange {
                after_seq,
                bounds: held,
            });
        }
        let limit = u64::try_from(limit).unwrap_or(u64::MAX);
        let end = held
            .last_seq
            .min(Seq::new(after_seq.get().saturating_add(limit)));
        shared.wait_applied(end, deadline).await?;
        let seqs = (after_seq.get().saturating_add(1)..=end.get()).map(Seq::new);
        let mut reads = futures_util::stream::iter(seqs)
            .map(|seq| async move { (seq, shared.held_by_leader(seq, deadline).await) })
            .buffered(LEADER_READS_IN_FLIGHT);
        let mut events = Vec::new();
        while let Some((seq, payload)) = reads.next().await {
            match payload? {
                Some(payload) => {
                    let lamport = shared.time_of(seq)?;
                    events.push(Record::decode(seq, &payload)?.into_log_event(seq, lamport));
                }
                // Retention discarded events between the check above and the read.
                None => {
                    return Err(ClusterError::OutOfRange {
                        after_seq,
                        bounds: shared.bounds(deadline).await?,
                    });
                }
            }
        }
        Ok(events)
    }

    /// The event stored at `seq`, read from the stream.
    pub async fn event_at(&self, seq: Seq) -> Result<LogEvent, ClusterError> {
        let deadline = Deadline::after(self.shared.timeout);
        self.shared.event_at(seq, deadline).await
    }

    /// The first and last seq the stream holds now, for `OUT_OF_RANGE` answers.
    pub async fn bounds(&self) -> Result<Bounds, ClusterError> {
        let deadline = Deadline::after(self.shared.timeout);
        self.shared.bounds(deadline).await
    }

    /// The last seq this node has applied: every event up to it was witnessed and handed over.
    pub fn applied_seq(&self) -> Seq {
        *self.shared.applied.borrow()
    }

    /// Follows the applied seq. The sender is dropped when the consumer stops.
    pub fn watch_applied(&self) -> watch::Receiver<Seq> {
        self.shared.applied.clone()
    }

    /// Waits until this node has applied `seq`, at most [`crate::ClusterConfig::timeout`].
    pub async fn wait_applied(&self, seq: Seq) -> Result<(), ClusterError> {
        let deadline = Deadline::after(self.shared.timeout);
        self.shared.wait_applied(seq, deadline).await
    }

    /// How many events this node knows the stream holds beyond the last one it applied: from its own
    /// appends' acknowledgments and from what its consumer's deliveries report. 0 when it has caught
    /// up.
    pub fn lag(&self) -> u64 {
        let shared = &self.shared;
        let known = shared
            .stream_last_seen
            .load(Ordering::Relaxed)
            .max(shared.wanted.borrow().get());
        known.saturating_sub(shared.applied.borrow().get())
    }

    /// The counters of this node's appends so far.
    pub fn stats(&self) -> AppendStats {
        let shared = &self.shared;
        AppendStats {
            appends: shared.appends.load(Ordering::Relaxed),
            conflicts: shared.conflicts.load(Ordering::Relaxed),
            transient_retries: shared.transient_retries.load(Ordering::Relaxed),
            duplicates: shared.duplicates.load(Ordering::Relaxed),
        }
    }

    /// Stops the consumer, through a shared handle, and waits (at most 1 s) until it has: appends and
    /// waits that were in progress fail with [`ClusterError::Stopped`] or time out.
    pub async fn stop(&self) {
        let _ = self.stop.send(true);
        let mut applied = self.shared.applied.clone();
        let _ = tokio::time::timeout(Duration::from_secs(1), async {
            while applied.changed().await.is_ok() {}
        })
        .await;
    }

    /// Stops the consumer and waits (at most 1 s) until it has.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        self.consumer.stop_within(Duration::from_secs(1)).await;
    }
}

impl Shared {
    /// One publish of an append: stamps `draft` with a tick of the node clock and publishes it on its
    /// participant's subject, with the `condition` that the participant's presence subject still ends
    /// at that seq, if there is one.
    async fn publish(
        &self,
        draft: &EventDraft,
        key: Option<&str>,
        origin: &str,
        message_id: &str,
        condition: Option<Seq>,
        deadline: Deadline,
    ) -> Result<Attempt, ClusterError> {
        let participant = draft.participant();
        let presence = presence_subject(&self.prefix, participant);
        let subject = match draft {
            EventDraft::Message { .. } => message_subject(&self.prefix, participant),
            EventDraft::Joined { .. } | EventDraft::Left { .. } => presence.clone(),
        };
        let stamp = self.clock.tick();
        let payload = Record::encode(draft, stamp, key, origin)?;
        let mut headers = HeaderMap::new();
        headers.insert(async_nats::header::NATS_MESSAGE_ID, message_id);
        if let Some(last_seq) = condition {
            headers.insert(
                async_nats::header::NATS_EXPECTED_LAST_SUBJECT_SEQUENCE,
                last_seq.get().to_string().as_str(),
            );
            if subject != presence {
                headers.insert(EXPECTED_LAST_SUBJECT_SEQUENCE_SUBJECT, presence.as_str());
            }
        }
        // Each publish waits for its acknowledgment at most the request timeout (see
        // `crate::request_timeout`); only the deadline of the whole append is checked here.
        let acknowledged = deadline
            .run("append the event", async {
                self.jetstream
                    .publish_with_headers(subject, headers, payload.into())
                    .await?
                    .await
            })
            .await?;
        let ack = match acknowledged {
            Ok(ack) => ack,
            Err(error) => return Ok(classify(error)),
        };
        // The stream sequence JetStream acknowledged is the event's seq.
        let seq = Seq::new(ack.sequence);
        self.want(seq);
        Ok(if ack.duplicate {
            Attempt::Duplicate { seq }
        } else {
            Attempt::Stored { seq }
        })
    }

    /// Waits for this node's turn to append for `participant`; see `Shared::per_participant`. Only
    /// called with more than one replica.
    async fn participant_turn(
        &self,
        participant: &str,
        deadline: Deadline,
    ) -> Result<ParticipantTurn<'_>, ClusterError> {
        let id = participant_id(participant);
        let lock = {
            let mut locks = self.participant_locks();
            Arc::clone(locks.entry(id.clone()).or_default())
        };
        let guard = deadline
            .run(
                "wait for this participant's append",
                lock.clone().lock_owned(),
            )
            .await?;
        Ok(ParticipantTurn {
            shared: self,
            id,
            guard: Some(guard),
        })
    }

    /// The per-participant locks; only with more than one replica.
    fn participant_locks(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Mutex<()>>>> {
        self.per_participant
            .as_ref()
            .expect("per-participant locks exist with more than one replica")
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The times of the events this node applied.
    fn times(&self) -> std::sync::MutexGuard<'_, Times> {
        // Nothing panics while holding this lock, so a poisoned lock still guards consistent times.
        self.times
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The time this node computed for the event at `seq`, which it applied; fails with
    /// [`ClusterError::OutOfRange`] for an event before the first it applied, or cut since.
    fn time_of(&self, seq: Seq) -> Result<LamportTime, ClusterError> {
        let times = self.times();
        times.time_of(seq).ok_or(ClusterError::OutOfRange {
            after_seq: seq.previous(),
            bounds: times.bounds(),
        })
    }

    /// The record stored at `seq` and its size, read from the stream's leader.
    async fn record_at(&self, seq: Seq, deadline: Deadline) -> Result<(Record, u64), ClusterError> {
        match self.held_by_leader(seq, deadline).await? {
            Some(payload) => Ok((Record::decode(seq, &payload)?, payload_size(&payload))),
            None => Err(ClusterError::OutOfRange {
                after_seq: seq.previous(),
                bounds: self.bounds(deadline).await?,
            }),
        }
    }

    /// Records the checkpoint `checkpoint` (unless one at least as far is there), then cuts the
    /// stream through its seq; see "Compaction" in the module documentation.
    async fn cut(&self, checkpoint: Checkpoint, deadline: Deadline) -> Result<(), ClusterError> {
        let value = serde_json::to_vec(&checkpoint).map_err(|error| ClusterError::Decode {
            what: "the Lamport checkpoint".to_owned(),
            reason: error.to_string(),
        })?;
        let mut backoff = Backoff::default();
        loop {
            let (stored, revision) = read_checkpoint(&self.checkpoints, deadline).await?;
            if stored.seq >= checkpoint.seq {
                break;
            }
            let written: Result<u64, async_nats::Error> = deadline
                .run("record the Lamport checkpoint", async {
                    if revision == 0 {
                        Ok(self
                            .checkpoints
                            .create(CHECKPOINT_KEY, value.clone().into())
                            .await?)
                    } else {
                        Ok(self
                            .checkpoints
                            .update(CHECKPOINT_KEY, value.clone().into(), revision)
                            .await?)
                    }
                })
                .await?;
            match written {
                Ok(_) => break,
                // Another node wrote first, or the answer was lost, or NATS failed: read it again.
                Err(error) => {
                    if !backoff.pause_before(deadline.at).await {
                        return Err(ClusterError::jetstream(
                            "record the Lamport checkpoint",
                            error,
                        ));
                    }
                }
            }
        }
        cut_through(&self.stream, checkpoint.last_cut(), deadline).await?;
        self.first_held
            .fetch_max(checkpoint.last_cut().next().get(), Ordering::Relaxed);
        self.times().cut_through(checkpoint.last_cut());
        Ok(())
    }

    /// Tells the consumer that `seq` exists, so that it is recreated if it stays silent.
    fn want(&self, seq: Seq) {
        self.wanted.send_if_modified(|wanted| {
            let raise = seq > *wanted;
            if raise {
                *wanted = seq;
            }
            raise
        });
    }

    /// Waits until the consumer has applied `seq`.
    async fn wait_applied(&self, seq: Seq, deadline: Deadline) -> Result<(), ClusterError> {
        self.want(seq);
        let mut applied = self.applied.clone();
        deadline
            .run(
                "apply the event on this node",
                applied.wait_for(|applied| *applied >= seq),
            )
            .await?
            .map(|_| ())
            .map_err(|_closed| ClusterError::Stopped)
    }

    /// What the stream holds now, bounded by `deadline`.
    async fn bounds(&self, deadline: Deadline) -> Result<Bounds, ClusterError> {
        bounds(&self.stream, deadline).await
    }

    /// The event stored at `seq`.
    async fn event_at(&self, seq: Seq, deadline: Deadline) -> Result<LogEvent, ClusterError> {
        Ok(self.stored_at(seq, deadline).await?.0)
    }

    /// The event stored at `seq`, which this node applied, and the origin of the append that stored
    /// it. Asked of the stream's leader, which holds every acknowledged event.
    async fn stored_at(
        &self,
        seq: Seq,
        deadline: Deadline,
    ) -> Result<(LogEvent, String), ClusterError> {
        let message = retry_until(deadline, "read an event", || {
            self.stream.get_raw_message(seq.get())
        })
        .await?;
        let mut record = Record::decode(seq, &message.payload)?;
        let origin = std::mem::take(&mut record.origin);
        let lamport = self.time_of(seq)?;
        Ok((record.into_log_event(seq, lamport), origin))
    }

    /// The payload the stream's leader holds at `seq`, or `None` if it holds nothing there (a cut
    /// removed it, or the leader has not stored it yet). A request for a message by seq is
    /// answered by the stream's leader only. Other failures are retried until `deadline`.
    async fn held_by_leader(
        &self,
        seq: Seq,
        deadline: Deadline,
    ) -> Result<Option<Bytes>, ClusterError> {
        let operation = "read an event from the stream's leader";
        let mut backoff = Backoff::default();
        loop {
            let error = match deadline
                .run(operation, self.stream.get_raw_message(seq.get()))
                .await?
            {
                Ok(message) => return Ok(Some(message.payload)),
                Err(error) if error.kind() == LastRawMessageErrorKind::NoMessageFound => {
                    return Ok(None);
                }
                Err(error) => error,
            };
            if is_permanent(&error) || !backoff.pause_before(deadline.at).await {
                return Err(ClusterError::jetstream(operation, error));
            }
        }
    }
}

/// The header that makes `Nats-Expected-Last-Subject-Sequence` check another subject than the one
/// published on (nats-server 2.11 and later).
const EXPECTED_LAST_SUBJECT_SEQUENCE_SUBJECT: &str = "Nats-Expected-Last-Subject-Sequence-Subject";

/// Sorts a failed publish into what the append does next.
fn classify(error: jetstream::context::PublishError) -> Attempt {
    match error.kind() {
        PublishErrorKind::WrongLastSequence => Attempt::Conflict {
            last_seq: reported_last_sequence(&error.to_string()).map(Seq::new),
        },
        // A replicated stream's "wrong last sequence" with no seq: another check of the subject is
        // in flight.
        _ if is_in_flight_conflict(&error) => Attempt::Conflict { last_seq: None },
        // The acknowledgment was lost: the message may be stored.
        PublishErrorKind::TimedOut | PublishErrorKind::BrokenPipe => Attempt::Transient {
            maybe_stored: true,
            error: error.into(),
        },
        _ if is_permanent(&error) => Attempt::Refused {
            error: error.into(),
        },
        // No stream answered (a leader election), too many acknowledgments are pending, or
        // "JetStream system temporarily unavailable" and the like: refused, not stored.
        _ => Attempt::Transient {
            maybe_stored: false,
            error: error.into(),
        },
    }
}

/// How often a consumer with nothing to deliver sends a heartbeat.
const HEARTBEAT: Duration = Duration::from_secs(1);

/// How long a consumer may send nothing at all, not even a heartbeat, before it counts as lost.
const SILENCE: Duration = Duration::from_secs(2);

/// How long the server keeps a consumer that nobody listens to any more: one this node replaced.
const ABANDONED_AFTER: Duration = Duration::from_secs(10);

/// One push consumer of the event stream, delivering every event from a start seq on, in order, to a
/// subscription of this node's; see "Applying events" in the module documentation. It does not
/// repair itself: on any sign of loss, [`Delivery::next`] says so and the caller starts a new one
/// from the next seq it needs.
struct Delivery {
    /// For the metadata of delivered messages and for flow-control answers.
    context: jetstream::Context,
    /// Where the consumer delivers.
    subscription: async_nats::Subscriber,
    /// The consumer sequence of the last event delivered: the next one must be one more.
    consumer_seq: u64,
    /// When anything (an event, a heartbeat, a flow-control request) last arrived.
    heard_at: Instant,
    /// A flow-control request not yet answered: the consumer sends nothing more until it is.
    unanswered: Option<async_nats::Subject>,
    /// The stream's last seq as the last event delivered reported it (its seq plus the events still
    /// pending after it): how far behind the consumer is, for the lag metric.
    stream_last: u64,
}

/// Why a [`Delivery`] is given up: what [`Delivery::next`] found, or what the consumer task found
/// while following it. Logged as the `reason` of `consumer_lost`.
#[derive(Debug)]
enum Lost {
    /// Nothing arrived for [`SILENCE`]: the consumer, or the way to it, is gone.
    Silent,
    /// The consumer sequence was `got` where `expected` was due: messages were lost in transit,
    /// for example while the client reconnected.
    Gap {
        /// The consumer sequence due (for a heartbeat: the last one that arrived).
        expected: u64,
        /// The consumer sequence the message or heartbeat carried.
        got: u64,
    },
    /// The subscription ended: the client is closed.
    Closed,
    /// The server ended the consumer, with this status.
    Ended(String),
    /// A message came without the metadata of a delivered event.
    Unreadable(String),
    /// An event known to exist has not arrived within [`STALL_TIMEOUT`], though heartbeats may
    /// have: the consumer lives on a server that lags, or is cut off from, the stream's leader.
    Stalled {
        /// The highest seq known to exist when the consumer was given up.
        wanted: Seq,
    },
    /// The consumer delivered past a gap (events cut from the stream before this node read them),
    /// and the checkpoint that covers the gap could not be read (see [`Applier::resync`]).
    Resync(ClusterError),
}

impl fmt::Display for Lost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Lost::Silent => write!(f, "the consumer sent nothing for {SILENCE:?}"),
            Lost::Gap { expected, got } => {
                write!(f, "got consumer sequence {got}, expected {expected}")
            }
            Lost::Closed => f.write_str("the subscription closed"),
            Lost::Ended(status) => write!(f, "the server ended the consumer: {status}"),
            Lost::Unreadable(reason) => write!(f, "a delivered message is unreadable: {reason}"),
            Lost::Stalled { wanted } => write!(
                f,
                "seq {wanted} exists but nothing arrived for {STALL_TIMEOUT:?}"
            ),
            Lost::Resync(error) => write!(f, "cannot resume after a gap: {error}"),
        }
    }
}

impl Delivery {
    /// Creates an ephemeral consumer of the stream from `start_seq` on (or from the first seq held, if
    /// a cut removed `start_seq`) and subscribes to it. One attempt, bounded by the request
    /// timeout: creating a consumer needs the JetStream meta leader, which may be being elected.
    async fn start(shared: &Shared, start_seq: u64) -> Result<Self, ClusterError> {
        let client = shared.jetstream.client();
        let inbox = client.new_inbox();
        // Subscribed before the consumer exists, so that nothing it delivers first is missed.
        let subscription = client
            .subscribe(inbox.clone())
            .await
            .map_err(|error| ClusterError::jetstream("subscribe to a consumer", error))?;
        shared
            .stream
            .create_consumer(consumer::push::Config {
                deliver_subject: inbox,
                deliver_policy: consumer::DeliverPolicy::ByStartSequence {
                    start_sequence: start_seq.max(1),
                },
                ack_policy: consumer::AckPolicy::None,
                max_deliver: 1,
                replay_policy: consumer::ReplayPolicy::Instant,
                flow_control: true,
                idle_heartbeat: HEARTBEAT,
                inactive_threshold: ABANDONED_AFTER,
                num_replicas: 1,
                memory_storage: true,
                ..Default::default()
            })
            .await
            .map_err(|error| ClusterError::jetstream("create a consumer", error))?;
        Ok(Self {
            context: shared.jetstream.clone(),
            subscription,
            consumer_seq: 0,
            heard_at: Instant::now(),
            unanswered: None,
            stream_last: 0,
        })
    }

    /// The next event: its seq and payload. Answers flow control and checks heartbeats on the way.
    /// Cancel-safe: dropping the future loses nothing, so it may race other events in a `select!`.
    async fn next(&mut self) -> Result<(Seq, Bytes), Lost> {
        loop {
            if let Some(reply) = self.unanswered.clone() {
                self.context
                    .client()
                    .publish(reply, Bytes::new())
                    .await
                    .map_err(|_| Lost::Closed)?;
                self.unanswered = None;
            }
            let message =
                match tokio::time::timeout_at(self.heard_at + SILENCE, self.subscription.next())
                    .await
                {
                    Err(_silent) => return Err(Lost::Silent),
                    Ok(None) => return Err(Lost::Closed),
                    Ok(Some(message)) => message,
                };
            self.heard_at = Instant::now();
            match message.status {
                None => return self.event(message),
                Some(StatusCode::IDLE_HEARTBEAT) => self.control(&message)?,
                Some(status) => {
                    return Err(Lost::Ended(format!(
                        "{status} {}",
                        message.description.unwrap_or_default()
                    )));
                }
            }
        }
    }

    /// Takes in an event: its consumer sequence must follow the last one.
    fn event(&mut self, message: async_nats::Message) -> Result<(Seq, Bytes), Lost> {
        let message = jetstream::Message {
            message,
            context: self.context.clone(),
        };
        let (seq, consumer_seq, pending) = message
            .info()
            .map(|info| (info.stream_sequence, info.consumer_sequence, info.pending))
            .map_err(|error| Lost::Unreadable(error.to_string()))?;
        if consumer_seq != self.consumer_seq + 1 {
            return Err(Lost::Gap {
                expected: self.consumer_seq + 1,
                got: consumer_seq,
            });
        }
        self.consumer_seq = consumer_seq;
        self.stream_last = seq.saturating_add(pending);
        // The stream sequence is the event's seq.
        Ok((Seq::new(seq), message.message.payload))
    }

    /// Takes in a heartbeat or a flow-control request (status 100).
    fn control(&mut self, message: &async_nats::Message) -> Result<(), Lost> {
        // A flow-control request wants an answer on its reply subject; the heartbeat of a consumer
        // whose flow control stalled names the subject to answer in a header.
        if let Some(reply) = &message.reply {
            debug!(
                component = CLUSTER,
                event = ClusterEvent::FlowControl.as_str(),
                consumer_seq = self.consumer_seq
            );
            self.unanswered = Some(reply.clone());
        }
        let Some(headers) = &message.headers else {
            return Ok(());
        };
        if let Some(stalled) = headers.get_last(CONSUMER_STALLED) {
            self.unanswered = Some(stalled.as_str().into());
        }
        // A heartbeat says how many events the consumer sent: more than arrived means some were lost.
        if let Some(last) = headers.get_last(async_nats::header::NATS_LAST_CONSUMER) {
            let got = last
                .as_str()
                .parse::<u64>()
                .map_err(|error| Lost::Unreadable(error.to_string()))?;
            if got != self.consumer_seq {
                return Err(Lost::Gap {
                    expected: self.consumer_seq,
                    got,
                });
            }
        }
        Ok(())
    }
}

/// The header of a heartbeat that names where to answer a stalled flow control.
const CONSUMER_STALLED: &str = "Nats-Consumer-Stalled";

/// How many events the consumer hands to the node's callback at most in one batch: what has arrived
/// beyond it waits for the next batch, so one callback stays short.
pub const MAX_APPLY_BATCH: usize = 256;

/// How many requests for single events a node has in flight at most when it reads from the stream's
/// leader: to confirm a consumer's batch, or for [`EventLog::read`].
pub const LEADER_READS_IN_FLIGHT: usize = 32;

/// How many events one catch-up reads one at a time at most: past that, a consumer is the faster
/// way, and the consumer task tries to create one before it catches up further.
const CATCH_UP_BATCH: u64 = 256;

/// The consumer task's state: what it applies events to, and how far it got.
struct Applier<F> {
    /// The log's shared state: the stream, the clock, the seq wanted.
    shared: Arc<Shared>,
    /// The seq of the next event to apply.
    next_seq: Seq,
    /// The time of the last event applied, from which the next one's follows.
    timeline: Timeline,
    /// The last seq applied; the log's `applied` receiver follows it.
    applied: watch::Sender<Seq>,
    /// The node's callback.
    on_event: F,
    /// Events taken in but not yet handed to the callback, in seq order.
    batch: Vec<LogEvent>,
    /// The seq, time and stored size of each event in `batch`, added to the shared [`Times`] under one
    /// lock when the batch is handed over.
    timed: Vec<Timed>,
    /// The last cut of the stream this node started, if any; aborted when the applier goes.
    cut: Option<Task>,
}

/// The time of each event a node applied that the stream still holds, oldest first, and their sizes:
/// what an append answers with, and what tells when to cut the stream.
#[derive(Debug, Default)]
struct Times {
    /// The events, in seq order.
    events: VecDeque<Timed>,
    /// The sum of their sizes.
    bytes: u64,
}

/// One event in [`Times`].
#[derive(Debug, Clone, Copy)]
struct Timed {
    /// Its seq.
    seq: Seq,
    /// The time computed for it.
    lamport: LamportTime,
    /// The size of its stored payload.
    bytes: u64,
}

impl Times {
    /// Adds the event at `seq`, after every event held.
    fn push(&mut self, seq: Seq, lamport: LamportTime, bytes: u64) {
        self.events.push_back(Timed {
            seq,
            lamport,
            bytes,
        });
        self.bytes += bytes;
    }

    /// The time of the event at `seq`, if held.
    fn time_of(&self, seq: Seq) -> Option<LamportTime> {
        let index = self
            .events
            .binary_search_by_key(&seq, |timed| timed.seq)
            .ok()?;
        Some(self.events[index].lamport)
    }

    /// The seqs held, as [`Bounds`].
    fn bounds(&self) -> Bounds {
        let last_seq = self.events.back().map_or(Seq::new(0), |timed| timed.seq);
        Bounds {
            first_seq: self
                .events
                .front()
                .map_or(last_seq.next(), |timed| timed.seq),
            last_seq,
        }
    }

    /// Where to cut the stream once it holds more than twice `keep_events` events or `keep_bytes`
    /// bytes: the checkpoint of the last event to cut so that at most that many remain. `None` while
    /// it holds no more than twice as much, so that the stream is cut now and then, not after every
    /// event.
    fn cut_point(&self, keep_events: u64, keep_bytes: u64) -> Option<Checkpoint> {
        let mut count = u64::try_from(self.events.len()).unwrap_or(u64::MAX);
        let mut bytes = self.bytes;
        if count <= keep_events.saturating_mul(2) && bytes <= keep_bytes.saturating_mul(2) {
            return None;
        }
        let mut last = None;
        for timed in &self.events {
            if count <= keep_events && bytes <= keep_bytes {
                break;
            }
            count -= 1;
            bytes -= timed.bytes;
            last = Some(Checkpoint {
                seq: timed.seq.get(),
                lamport: timed.lamport.get(),
            });
        }
        last
    }

    /// Forgets every event up to and including `seq`.
    fn cut_through(&mut self, seq: Seq) {
        while let Some(first) = self.events.front()
            && first.seq <= seq
        {
            self.bytes -= first.bytes;
            self.events.pop_front();
        }
    }
}

/// The size of a stored payload, as [`Times`] counts it.
fn payload_size(payload: &[u8]) -> u64 {
    u64::try_from(payload.len()).unwrap_or(u64::MAX)
}

/// Holds this node's turn to append for one participant (see `Shared::per_participant`), and removes
/// the participant's lock when nobody else holds or waits for it.
struct ParticipantTurn<'a> {
    /// Where the lock lives.
    shared: &'a Shared,
    /// The participant's id.
    id: String,
    /// The turn; taken on drop, before the lock's entry may be removed.
    guard: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl Drop for ParticipantTurn<'_> {
    fn drop(&mut self) {
        drop(self.guard.take());
        let mut locks = self.shared.participant_locks();
        // Only the map holds it: nobody waits for it.
        if locks
            .get(&self.id)
            .is_some_and(|lock| Arc::strong_count(lock) == 1)
        {
            locks.remove(&self.id);
        }
    }
}

impl<F> Applier<F>
where
    F: FnMut(Vec<LogEvent>),
{
    /// Takes in the event stored at `seq`: computes its time (see [`crate::timeline`]), witnesses it
    /// on the node clock and adds the event to the batch for [`Applier::hand_over`]. An event before
    /// the next seq (delivered twice) is ignored. The caller has called [`Applier::resync`] if `seq`
    /// is past the next seq.
    fn apply(&mut self, seq: Seq, payload: &[u8]) {
        if seq < self.next_seq {
            return;
        }
        match Record::decode(seq, payload) {
            Ok(record) => {
                let lamport = self.timeline.place(record.stamp());
                self.shared.clock.witness(lamport);
                self.timed.push(Timed {
                    seq,
                    lamport,
                    bytes: payload_size(payload),
                });
                self.batch.push(record.into_log_event(seq, lamport));
            }
            // A message this version cannot read is skipped rather than stopping the chat for every
            // node; it is logged for the operator.
            Err(error) => error!(
                component = CLUSTER,
                event = ClusterEvent::UndecodableEvent.as_str(),
                seq = seq.get(),
                error = %error,
            ),
        }
        self.next_seq = seq.next();
    }

    /// Makes the event at `seq`, past the next seq, the next one to apply: the events in between were
    /// cut from the stream before this node read them (it lagged behind the other nodes by more than
    /// the stream keeps). Their times are lost with them, so the timeline goes on from the checkpoint
    /// recorded before the cut, skipping any event up to it. Fails if the checkpoint cannot be read
    /// (the consumer is then replaced and this is tried again); logs an error if it does not cover the
    /// gap, which only an operator cutting the stream by hand can cause.
    async fn resync(&mut self, seq: Seq) -> Result<(), ClusterError> {
        if seq <= self.next_seq {
            return Ok(());
        }
        self.hand_over();
        let deadline = Deadline::after(self.shared.timeout);
        let (checkpoint, _) = read_checkpoint(&self.shared.checkpoints, deadline).await?;
        let last_cut = checkpoint.last_cut();
        if last_cut.next() >= seq {
            warn!(
                component = CLUSTER,
                event = ClusterEvent::EventsCutUnread.as_str(),
                from_seq = self.next_seq.get(),
                to_seq = last_cut.get(),
            );
            self.timeline = Timeline::after(checkpoint.time());
            self.next_seq = self.next_seq.max(last_cut.next());
            self.shared.times().cut_through(last_cut);
            self.shared
                .first_held
                .fetch_max(last_cut.next().get(), Ordering::Relaxed);
        } else {
            error!(
                component = CLUSTER,
                event = ClusterEvent::TimesUnknown.as_str(),
                from_seq = self.next_seq.get(),
                to_seq = seq.previous().get(),
                checkpoint_seq = last_cut.get(),
            );
            self.next_seq = seq;
        }
        Ok(())
    }

    /// Starts cutting the stream if it holds more than twice what it keeps and no cut is under way;
    /// see "Compaction" in the module documentation.
    fn maybe_cut(&mut self) {
        if self.shared.cutting.load(Ordering::Acquire) {
            return;
        }
        let Some(checkpoint) = self
            .shared
            .times()
            .cut_point(self.shared.retain_events, self.shared.retain_bytes)
        else {
            return;
        };
        self.shared.cutting.store(true, Ordering::Release);
        let shared = Arc::clone(&self.shared);
        self.cut = Some(Task::spawn(async move {
            let deadline = Deadline::after(shared.timeout);
            match shared.cut(checkpoint, deadline).await {
                Ok(()) => debug!(
                    component = CLUSTER,
                    event = ClusterEvent::StreamCut.as_str(),
                    through_seq = checkpoint.seq,
                    lamport = checkpoint.lamport,
                ),
                Err(error) => warn!(
                    component = CLUSTER,
                    event = ClusterEvent::StreamCutFailed.as_str(),
                    through_seq = checkpoint.seq,
                    error = %error,
                ),
            }
            shared.cutting.store(false, Ordering::Release);
        }));
    }

    /// Whether the batch is as large as one callback may take.
    fn batch_full(&self) -> bool {
        self.batch.len() >= MAX_APPLY_BATCH
    }

    /// Takes in what a consumer delivered, in seq order, after a gap if the stream was cut past the
    /// next seq (see [`Applier::resync`]). Fails if the checkpoint that covers the gap cannot be read:
    /// the consumer is then replaced ([`Lost::Resync`]), and a catch-up tries again.
    async fn apply_delivered(&mut self, delivered: Vec<(Seq, Bytes)>) -> Result<(), ClusterError> {
        let delivered: Vec<(Seq, Bytes)> = delivered
            .into_iter()
            .filter(|(seq, _)| *seq >= self.next_seq)
            .collect();
        if let Some((first, _)) = delivered.first() {
            self.resync(*first).await?;
        }
        let delivered: Vec<(Seq, Bytes)> = delivered
            .into_iter()
            .filter(|(seq, _)| *seq >= self.next_seq)
            .collect();
        for (seq, payload) in delivered {
            self.apply(seq, &payload);
        }
        Ok(())
    }

    /// Hands the batch to the callback, then advances the applied seq past everything taken in
    /// (undecodable events included), so that whoever waits for a seq finds the callback's work done.
    fn hand_over(&mut self) {
        if !self.timed.is_empty() {
            let mut times = self.shared.times();
            for timed in self.timed.drain(..) {
                times.push(timed.seq, timed.lamport, timed.bytes);
            }
        }
        if !self.batch.is_empty() {
            (self.on_event)(std::mem::take(&mut self.batch));
        }
        let taken = self.next_seq.previous();
        if *self.applied.borrow() < taken {
            self.applied.send_replace(taken);
        }
        self.maybe_cut();
    }

    /// Applies what the stream holds past the applied seq (at most [`CATCH_UP_BATCH`] events), one
    /// event per request to the stream's leader: how the node keeps up while no consumer can be
    /// created, since creating one needs the meta leader, which may be being elected. Stops at the
    /// first failure; each request is bounded by the request timeout.
    async fn catch_up(&mut self) -> Result<(), ClusterError> {
        let info = self
            .shared
            .stream
            .get_info()
            .await
            .map_err(|error| ClusterError::jetstream("read the event stream's state", error))?;
        let held = Bounds::of(&info.state);
        // Cut from the stream before this node read them.
        self.resync(held.first_seq).await?;
        let last_seq = held.last_seq.min(Seq::new(
            self.next_seq.get().saturating_add(CATCH_UP_BATCH - 1),
        ));
        while self.next_seq <= last_seq {
            let message = self
                .shared
                .stream
                .get_raw_message(self.next_seq.get())
                .await
                .map_err(|error| ClusterError::jetstream("read an event", error));
            let message = match message {
                Ok(message) => message,
                Err(error) => {
                    self.hand_over();
                    return Err(error);
                }
            };
            self.apply(Seq::new(message.sequence), &message.payload);
            if self.batch_full() {
                self.hand_over();
            }
        }
        self.hand_over();
        Ok(())
    }
}

/// Where the consumer task is: see "When a nats-server dies" in the module documentation for the
/// phases and the transitions between them. [`ConsumerTask::run`] runs one phase and returns the
/// next; [`apply_loop`] ends the task on the stop signal, whatever the phase. One value of it lives
/// at a time, moved once per step, so its size does not matter.
#[allow(clippy::large_enum_variant)]
enum Phase {
    /// Creating a consumer from the next seq to apply, and meanwhile catching up from the stream's
    /// leader whenever an append waits for an event not yet applied: creating a consumer needs the
    /// meta leader, which may be being elected.
    Starting,
    /// Applying what a consumer delivers, one batch per step.
    Following {
        /// The consumer followed.
        delivery: Delivery,
        /// When the consumer counts as stalled: set while an event known to exist has not arrived
        /// (see [`stall_deadline`]), cleared by progress.
        stall_at: Option<Instant>,
    },
    /// Reading the events past the applied seq from the stream's leader, one at a time, because
    /// there is no consumer to follow.
    CatchingUp {
        /// Why there is no consumer: logged as the phase begins.
        reason: Interruption,
    },
    /// Waiting out the backoff before creating a consumer again, so that a cluster without a meta
    /// leader is not asked for a consumer in a tight loop.
    Pausing,
}

/// Why the consumer task has no consumer to follow, as it starts catching up.
enum Interruption {
    /// The consumer followed was given up: logged as `consumer_lost`, with the reason.
    Lost(Lost),
    /// No consumer could be created: logged as `consumer_failed`, with the error.
    Failed(ClusterError),
}

/// The consumer task's state that lives across phases.
struct ConsumerTask<F> {
    /// Applies the events and hands them to the node's callback.
    applier: Applier<F>,
    /// Follows the highest seq known to exist (`Shared::wanted`): an append is waiting for its event
    /// while this is at or past the next seq to apply.
    wanted: watch::Receiver<Seq>,
    /// The pause of [`Phase::Pausing`]: it grows with each round that made no progress, and starts
    /// again from the shortest once a consumer delivers.
    backoff: Backoff,
}

impl<F> ConsumerTask<F>
where
    F: FnMut(Vec<LogEvent>),
{
    /// Runs `phase` and returns the next one.
    async fn run(&mut self, phase: Phase) -> Phase {
        match phase {
            Phase::Starting => self.start().await,
            Phase::Following { delivery, stall_at } => self.follow(delivery, stall_at).await,
            Phase::CatchingUp { reason } => self.catch_up_after(reason).await,
            Phase::Pausing => self.pause().await,
        }
    }

    /// Starting: creates a consumer from the next seq to apply; Following once it exists,
    /// CatchingUp if it could not be created. Creating it may take a request timeout, or fail, while
    /// the meta leader is being elected, so meanwhile each append that waits for an event not yet
    /// applied is served by catching up from the stream's leader. The new consumer may then deliver
    /// events already applied; they are skipped.
    async fn start(&mut self) -> Phase {
        let shared = Arc::clone(&self.applier.shared);
        let start = Delivery::start(&shared, self.applier.next_seq.get());
        tokio::pin!(start);
        loop {
            tokio::select! {
                started = &mut start => {
                    return match started {
                        Ok(delivery) => Phase::Following {
                            delivery,
                            stall_at: None,
                        },
                        Err(error) => Phase::CatchingUp {
                            reason: Interruption::Failed(error),
                        },
                    };
                }
                _ = self.wanted.changed() => {
                    if is_behind(*self.wanted.borrow_and_update(), self.applier.next_seq) {
                        self.catch_up().await;
                    }
                }
            }
        }
    }

    /// Following, one step: waits for the consumer to deliver, and applies what it delivered as one
    /// batch; Following again, or CatchingUp once the consumer counts as lost. An append waiting for
    /// an event arms the stall deadline; see [`stall_deadline`].
    async fn follow(&mut self, mut delivery: Delivery, stall_at: Option<Instant>) -> Phase {
        let stall_at = stall_deadline(
            *self.wanted.borrow_and_update(),
            self.applier.next_seq,
            stall_at,
            Instant::now(),
        );
        tokio::select! {
            next = delivery.next() => match next {
                Ok(first) => self.apply_batch(delivery, first).await,
                Err(lost) => Phase::CatchingUp {
                    reason: Interruption::Lost(lost),
                },
            },
            // An append waits for a later event: the next step arms the stall deadline if needed.
            _ = self.wanted.changed() => Phase::Following { delivery, stall_at },
            () = sleep_until_some(stall_at) => Phase::CatchingUp {
                reason: Interruption::Lost(Lost::Stalled {
                    wanted: *self.wanted.borrow(),
                }),
            },
        }
    }

    /// Applies `first` and whatever else `delivery` has delivered already (see [`gather`]) as one
    /// batch, and hands it over; Following again, or CatchingUp if the consumer turned out lost on
    /// the way or the checkpoint covering a gap could not be read. Progress resets the backoff.
    async fn apply_batch(&mut self, mut delivery: Delivery, first: (Seq, Bytes)) -> Phase {
        // `next` is cancel-safe, so polling it once and dropping it loses nothing.
        let (delivered, lost) = gather(first, || delivery.next().now_or_never());
        self.applier
            .shared
            .stream_last_seen
            .fetch_max(delivery.stream_last, Ordering::Relaxed);
        let applied = self.applier.apply_delivered(delivered).await;
        self.applier.hand_over();
        match applied.err().map(Lost::Resync).or(lost) {
            Some(lost) => Phase::CatchingUp {
                reason: Interruption::Lost(lost),
            },
            None => {
                self.backoff.reset();
                // Progress: a stall is counted from the last event delivered.
                Phase::Following {
                    delivery,
                    stall_at: None,
                }
            }
        }
    }

    /// CatchingUp: says why there is no consumer, then catches up once from the stream's leader;
    /// Pausing next.
    async fn catch_up_after(&mut self, reason: Interruption) -> Phase {
        match reason {
            Interruption::Lost(lost) => warn!(
                component = CLUSTER,
                event = ClusterEvent::ConsumerLost.as_str(),
                next_seq = self.applier.next_seq.get(),
                reason = %lost,
            ),
            Interruption::Failed(error) => warn!(
                component = CLUSTER,
                event = ClusterEvent::ConsumerFailed.as_str(),
                next_seq = self.applier.next_seq.get(),
                error = %error,
            ),
        }
        self.catch_up().await;
        Phase::Pausing
    }

    /// Pausing: waits out the backoff; Starting next.
    async fn pause(&mut self) -> Phase {
        self.backoff.pause().await;
        Phase::Starting
    }

    /// Catches up once from the stream's leader (see [`Applier::catch_up`]). A failure is logged
    /// and left to the next round.
    async fn catch_up(&mut self) {
        if let Err(error) = self.applier.catch_up().await {
            warn!(
                component = CLUSTER,
                event = ClusterEvent::CatchUpFailed.as_str(),
                next_seq = self.applier.next_seq.get(),
                error = %error,
            );
        }
    }
}

/// Whether an event known to exist (`wanted`, the highest seq an append was acknowledged at or
/// waits for) has not been applied yet, `next_seq` being the next to apply.
fn is_behind(wanted: Seq, next_seq: Seq) -> bool {
    wanted >= next_seq
}

/// When a followed consumer counts as stalled, at `now`: never while no event known to exist is
/// missing (`wanted` below `next_seq`); otherwise at the deadline already `armed`, or
/// [`STALL_TIMEOUT`] from `now` if none is. An event that becomes known later does not postpone an
/// armed deadline: the stall is counted from when the first missing event became known, or from the
/// last progress, which disarms it.
fn stall_deadline(
    wanted: Seq,
    next_seq: Seq,
    armed: Option<Instant>,
    now: Instant,
) -> Option<Instant> {
    is_behind(wanted, next_seq).then(|| armed.unwrap_or(now + STALL_TIMEOUT))
}

/// Sleeps until `deadline`, or forever without one.
async fn sleep_until_some(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// One batch of what a consumer delivered: `first`, then what `ready` has without waiting, until
/// it has nothing more, reports a loss, or the batch holds [`MAX_APPLY_BATCH`] (the rest waits for
/// the next batch). Returns the batch, which is applied either way, and the loss if there was one.
fn gather<T, E>(first: T, mut ready: impl FnMut() -> Option<Result<T, E>>) -> (Vec<T>, Option<E>) {
    let mut batch = vec![first];
    while batch.len() < MAX_APPLY_BATCH {
        match ready() {
            Some(Ok(next)) => batch.push(next),
            Some(Err(lost)) => return (batch, Some(lost)),
            None => break,
        }
    }
    (batch, None)
}

/// The consumer task: applies every event from the applier's next seq on, in order, until told to
/// stop or the log's handle is dropped. It runs the [`Phase`]s one after another from
/// [`Phase::Starting`], and ends at once on the stop signal, whatever the phase.
async fn apply_loop<F>(applier: Applier<F>, mut stop: watch::Receiver<bool>)
where
    F: FnMut(Vec<LogEvent>),
{
    let mut task = ConsumerTask {
        wanted: applier.shared.wanted.subscribe(),
        applier,
        backoff: Backoff::default(),
    };
    let mut phase = Phase::Starting;
    loop {
        phase = tokio::select! {
            biased;
            // Told to stop, or the sender dropped with the log's handle.
            _ = stop.wait_for(|stopped| *stopped) => return,
            next = task.run(phase) => next,
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(participant: &str, text: &str) -> EventDraft {
        EventDraft::Message {
            participant: participant.into(),
            text: text.into(),
        }
    }

    #[test]
    fn an_event_survives_encoding_with_its_key_and_the_sentence_of_its_computed_time() {
        let joined = EventDraft::Joined {
            participant: "alice".into(),
        };
        let payload =
            Record::encode(&joined, LamportTime::new(17), Some("k"), "n.1.2").expect("encodes");
        let decoded = Record::decode(Seq::new(5), &payload).expect("decodes");
        assert_eq!(decoded.origin, "n.1.2");
        assert_eq!(decoded.stamp, 17);
        // The sentence names the time the node computed, not the stamp.
        let logged = decoded.into_log_event(Seq::new(5), LamportTime::new(23));
        assert_eq!(
            logged.event,
            joined.into_event(Seq::new(5), LamportTime::new(23))
        );
        assert!(logged.event.text.ends_with("Lamport time 23"));
        assert_eq!(logged.idempotency_key.as_deref(), Some("k"));
    }

    #[test]
    fn the_stored_format_is_the_documented_json() {
        let payload = Record::encode(
            &message("alice", "hi"),
            LamportTime::new(17),
            Some("k-41"),
            "node-1.4f.12",
        )
        .expect("encodes");
        let text = String::from_utf8(payload).expect("json is utf-8");
        assert_eq!(
            text,
            r#"{"v":2,"stamp":17,"kind":"message","participant":"alice","text":"hi","key":"k-41","origin":"node-1.4f.12"}"#
        );
        let without_key =
            Record::encode(&message("bob", "yo"), LamportTime::new(3), None, "o").expect("encodes");
        assert!(!String::from_utf8_lossy(&without_key).contains("key"));
        let left = EventDraft::Left {
            participant: "bob".into(),
        };
        let left = Record::encode(&left, LamportTime::new(4), None, "o").expect("encodes");
        assert_eq!(
            String::from_utf8(left).expect("json is utf-8"),
            r#"{"v":2,"stamp":4,"kind":"left","participant":"bob","origin":"o"}"#
        );
    }

    #[test]
    fn a_record_of_another_version_a_message_without_text_or_garbage_is_refused() {
        let old =
            br#"{"v":1,"lamport":1,"kind":"message","participant":"a","text":"t","origin":"o"}"#;
        assert!(matches!(
            Record::decode(Seq::new(9), old),
            Err(ClusterError::Decode { .. })
        ));
        let textless = br#"{"v":2,"stamp":1,"kind":"message","participant":"a","origin":"o"}"#;
        assert!(Record::decode(Seq::new(9), textless).is_err());
        assert!(Record::decode(Seq::new(9), b"not json").is_err());
    }

    #[test]
    fn a_participants_subjects_are_shared_by_look_alike_names_and_safe_whatever_the_name() {
        let presence = presence_subject("chat", "Alice");
        assert_eq!(presence, presence_subject("chat", "alice"));
        assert_ne!(presence, presence_subject("chat", "bob"));
        assert_ne!(presence, message_subject("chat", "alice"));
        assert!(presence.starts_with("chat.events.p."));
        assert!(message_subject("chat", "alice").starts_with("chat.events.m."));
        let hostile = presence_subject("chat", "a.b *>\r\n");
        let token = hostile.rsplit('.').next().expect("a last token");
        assert_eq!(token.len(), 32);
        assert!(token.bytes().all(|byte| byte.is_ascii_hexdigit()));
    }

    #[test]
    fn times_answer_by_seq_and_say_where_to_cut_once_twice_the_retention_is_held() {
        let mut times = Times::default();
        for seq in 1..=20 {
            times.push(Seq::new(seq), LamportTime::new(seq * 10), 100);
        }
        assert_eq!(times.time_of(Seq::new(7)), Some(LamportTime::new(70)));
        assert_eq!(times.time_of(Seq::new(21)), None);
        // 20 events of 100 bytes: twice 10 events is not exceeded, nor twice 1,000 bytes.
        assert_eq!(times.cut_point(10, 1_000), None);
        // Over twice 8 events: cut down to 8, through seq 12.
        assert_eq!(
            times.cut_point(8, 10_000),
            Some(Checkpoint {
                seq: 12,
                lamport: 120
            })
        );
        // Over twice 900 bytes: cut down to 9 events (900 bytes), through seq 11.
        assert_eq!(
            times.cut_point(100, 900),
            Some(Checkpoint {
                seq: 11,
                lamport: 110
            })
        );
        times.cut_through(Seq::new(12));
        assert_eq!(times.time_of(Seq::new(12)), None);
        assert_eq!(times.time_of(Seq::new(13)), Some(LamportTime::new(130)));
        assert_eq!(
            times.bounds(),
            Bounds {
                first_seq: Seq::new(13),
                last_seq: Seq::new(20)
            }
        );
        assert_eq!(times.bytes, 800);
    }

    #[test]
    fn keyed_message_ids_match_across_look_alike_names_and_differ_by_key_and_kind() {
        let id = keyed_message_id(&message("Alice", "hi"), "k1");
        assert_eq!(id, keyed_message_id(&message("alice", "other text"), "k1"));
        assert_ne!(id, keyed_message_id(&message("alice", "hi"), "k2"));
        assert_ne!(id, keyed_message_id(&message("bob", "hi"), "k1"));
        let left = EventDraft::Left {
            participant: "alice".into(),
        };
        assert_ne!(id, keyed_message_id(&left, "k1"));
        assert_eq!(id.len(), 64);
        assert!(id.bytes().all(|byte| byte.is_ascii_hexdigit()));
        // A key with line breaks cannot leak into the header.
        let hostile = keyed_message_id(&message("alice", "hi"), "k\r\nNats-Expected-Stream: x");
        assert!(hostile.bytes().all(|byte| byte.is_ascii_hexdigit()));
    }

    #[test]
    fn the_real_last_sequence_is_read_from_the_refusal() {
        assert_eq!(
            reported_last_sequence(
                "wrong last sequence: wrong last sequence: 412 (code 400, error code 10071)"
            ),
            Some(412)
        );
        assert_eq!(reported_last_sequence("wrong last sequence"), None);
        assert_eq!(reported_last_sequence("timed out"), None);
    }

    #[test]
    fn the_stall_deadline_is_armed_only_while_a_known_event_is_missing_and_never_postponed() {
        let start = Instant::now();
        let later = start + Duration::from_millis(600);
        // Everything known is applied: no deadline, and an armed one is dropped.
        assert_eq!(stall_deadline(Seq::new(4), Seq::new(5), None, start), None);
        assert_eq!(
            stall_deadline(Seq::new(4), Seq::new(5), Some(start), later),
            None
        );
        // Seq 5 is known and not applied: armed from now.
        let armed = stall_deadline(Seq::new(5), Seq::new(5), None, start);
        assert_eq!(armed, Some(start + STALL_TIMEOUT));
        // A later append does not postpone it.
        assert_eq!(
            stall_deadline(Seq::new(9), Seq::new(5), armed, later),
            armed
        );
        // Progress disarms it (the caller passes none); still behind, it counts from then.
        assert_eq!(
            stall_deadline(Seq::new(9), Seq::new(7), None, later),
            Some(later + STALL_TIMEOUT)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_stalled_consumer_is_given_up_exactly_a_stall_timeout_after_the_event_became_known() {
        let known_at = Instant::now();
        let stall_at = stall_deadline(Seq::new(5), Seq::new(5), None, known_at);
        tokio::time::advance(Duration::from_millis(600)).await;
        let stall_at = stall_deadline(Seq::new(6), Seq::new(5), stall_at, Instant::now());
        sleep_until_some(stall_at).await;
        assert_eq!(known_at.elapsed(), STALL_TIMEOUT);
        // Without a deadline it never fires (paused time jumps the whole hour at once).
        let never = tokio::time::timeout(Duration::from_secs(3600), sleep_until_some(None)).await;
        assert!(never.is_err(), "got a wake-up without a deadline");
    }

    #[test]
    fn a_batch_takes_what_has_arrived_up_to_the_limit_and_stops_at_a_loss() {
        // What has arrived: taken up to the first thing not ready, which is not polled further.
        let mut arrived = VecDeque::from([Some(Ok(2)), Some(Ok(3)), None, Some(Ok(4))]);
        let (batch, lost) = gather::<u64, &str>(1, || arrived.pop_front().flatten());
        assert_eq!((batch, lost), (vec![1, 2, 3], None));
        assert_eq!(arrived.len(), 1, "got {arrived:?} left, want only seq 4");
        // A loss ends the batch; what came before it is still applied.
        let mut arrived = VecDeque::from([Ok(2), Err("gap"), Ok(3)]);
        let (batch, lost) = gather(1, || arrived.pop_front());
        assert_eq!((batch, lost), (vec![1, 2], Some("gap")));
        // No more than MAX_APPLY_BATCH: the rest waits for the next batch.
        let mut next = 1;
        let (batch, lost) = gather::<usize, ()>(0, || {
            next += 1;
            Some(Ok(next - 1))
        });
        assert_eq!(batch.len(), MAX_APPLY_BATCH);
        assert_eq!(batch.last(), Some(&(MAX_APPLY_BATCH - 1)));
        assert_eq!(lost, None);
    }

    #[test]
    fn the_reasons_a_consumer_is_lost_read_as_before() {
        assert_eq!(
            Lost::Stalled {
                wanted: Seq::new(12)
            }
            .to_string(),
            format!("seq 12 exists but nothing arrived for {STALL_TIMEOUT:?}")
        );
        assert_eq!(
            Lost::Resync(ClusterError::Stopped).to_string(),
            format!("cannot resume after a gap: {}", ClusterError::Stopped)
        );
        assert_eq!(
            Lost::Gap {
                expected: 3,
                got: 5
            }
            .to_string(),
            "got consumer sequence 5, expected 3"
        );
    }

    #[test]
    fn bounds_say_whether_a_replay_has_no_gap() {
        let held = Bounds {
            first_seq: Seq::new(10),
            last_seq: Seq::new(20),
        };
        assert!(held.holds_after(Seq::new(9)));
        assert!(held.holds_after(Seq::new(15)));
        assert!(held.holds_after(Seq::new(25)));
        assert!(!held.holds_after(Seq::new(8)));
        let empty = Bounds {
            first_seq: Seq::new(21),
            last_seq: Seq::new(20),
        };
        assert!(empty.holds_after(Seq::new(20)));
        assert!(!empty.holds_after(Seq::new(3)));
    }
}
