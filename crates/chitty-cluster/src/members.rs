//! Who is present, shared by every node: names, sessions and node heartbeats in JetStream KV buckets.
//!
//! # Buckets
//!
//! - `<prefix>-names`: key = hex of the name's [`name_key`] (so "Alice" and a Cyrillic "аlice" are one
//!   key, and any name is a valid NATS key), value = hex of the owner's token hash. A name is claimed
//!   with a write conditional on the key being free (KV `create`), which JetStream checks atomically:
//!   of two nodes claiming one name at the same moment, exactly one succeeds and the other gets
//!   [`ClaimError::Taken`] (but see "nats-server before 2.9.21" below).
//! - `<prefix>-sessions`: key = hex of the token hash, value = a [`SessionRecord`] as JSON: the name, the
//!   join seq, the node holding the participant's Broadcast stream, whether it is open, and since when
//!   it is not. Any node can look a token up, so a participant may reconnect to any node.
//! - `<prefix>-nodes`: key = node id, value = the node's wall clock. Each node puts its key every
//!   [`HEARTBEAT_INTERVAL`]; the bucket's `max_age` of [`NODE_TTL`] lets a dead node's entry vanish.
//!
//! # The local mirror, and who vanished
//!
//! Each node keeps a mirror of the sessions and heartbeats, fed by KV watches, so that
//! [`Members::vanished`] is a lookup in memory rather than a scan of the bucket on every sweep. A
//! session counts as vanished when, for at least the grace period:
//!
//! - its stream is closed (the record says `stream_open: false`): measured both by the detaching node's
//!   wall clock (`detached_since_ms`) and by this node's monotonic clock since it saw the record;
//! - or it is attached to another node whose heartbeat is gone: no heartbeat for [`NODE_TTL`], judged
//!   only once this node has seen a later heartbeat of its own, so a stalled watch delays a verdict
//!   rather than condemning live nodes;
//! - or it is attached to this node's id but not by this process: the node restarted under the same
//!   id, and the old process's streams are gone;
//! - or a node claimed to end it and has not finished (see below).
//!
//! **The clock-skew assumption.** `detached_since_ms` is wall-clock time written by the node that saw
//! the stream end. Another node compares it with its own wall clock, so skew between nodes shifts the
//! verdict. Because the local monotonic clock must agree as well (the record must have been seen
//! detached for the grace period), skew can only make an announcement late, by at most the skew,
//! never early. NTP-synchronised machines are off by milliseconds; the grace period is seconds.
//!
//! # Announcing each vanished participant exactly once
//!
//! Every node sweeps, so several notice the same vanished session. Each calls [`Members::claim_end`]
//! with the revision its mirror saw; that is a KV update conditional on the revision (JetStream's
//! expected-last-subject-sequence check), which marks the record as being ended by that node. Exactly
//! one claim per revision succeeds (but see below). The winner appends the left event with the
//! idempotency key [`Ending::left_key`], derived from the token, and then calls
//! [`Members::finish_end`], which deletes the session and releases the name.
//!
//! If the winner dies between its claim and its finish, the record stays marked; once it has been
//! marked for the grace period, other nodes see it as vanished again ([`Why::EndingStalled`]), claim it
//! anew and append the left event with the same key. JetStream's duplicate window stores that event
//! at most once, so it is announced exactly once, provided the takeover happens within
//! [`crate::log::DUPLICATE_WINDOW`] (2 minutes) of the first attempt: it happens a grace period later,
//! unless no node at all is running in between. An explicit Leave takes the same path, so a Leave and
//! a vanishing can never both be announced.
//!
//! # nats-server before 2.9.21
//!
//! Both claims above, of a name and of the right to end a session, rest on the expected-last-subject-
//! sequence check. Versions before 2.9.21 (Debian bookworm ships 2.9.10) make that check only before
//! they propose the write to the replicas, not as part of it (nats-io/nats-server#4320), so two
//! writes expecting the same revision, made within milliseconds of each other, may both be stored:
//! the later overwrites the earlier. Each claim therefore reads the key back from the leader once it
//! is stored and counts as won only if the key still holds it; that makes the loser see its loss,
//! unless it reads before the other write is applied, a window of a replication round trip. In that
//! window two sessions may still hold one name, and two nodes may both end one session: the left
//! event's message id keeps the announcement single even then, so a claim to end is a way to avoid
//! duplicate work, not what keeps the promise to participants. Upgrade the servers to close it.
//!
//! # Reads, writes and failover
//!
//! Reads that decide something (a conditional write, whether a token exists) ask the bucket's
//! stream leader, not any replica: a direct get may be answered by a replica that has not seen the
//! latest write yet (nats-io/nats.docs#815). While a bucket's leader is being elected, after the
//! server holding it died, its reads and writes go unanswered or are refused; every call here
//! retries them within [`crate::ClusterConfig::timeout`] (see the crate documentation). A write
//! whose answer was lost may have been stored, so no write is repeated blindly where that would
//! matter: a conditional write is tried again only under its condition (the same expected revision,
//! or one read afresh), and once the condition fails, a fresh read decides whether the earlier
//! attempt is what changed the key (a name that holds this token, a record that already is what the
//! call would make of it, a record that holds exactly this node's claim, a session already
//! deleted). Only [`Members::put_session`], meant for a token nobody else knows yet, and the
//! heartbeat and the goodbye, which write the same thing again, are repeated as they are.

use chitty_logs::{CLUSTER, ClusterEvent};
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_nats::jetstream::stream::LastRawMessageErrorKind;
use async_nats::jetstream::{self, kv};
use bytes::Bytes;
use chitty_core::validate::name_key;
use chitty_core::{Seq, TokenHash};
use futures_util::{StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};
use thiserror::Error;
use tokio::sync::watch;
use tokio::time::Instant;
use tracing::{info, warn};

use crate::retry::{Backoff, Deadline, is_permanent, is_wrong_last_sequence, retry_until};
use crate::{ClusterConfig, ClusterError, Task, hex, wall_clock_ms};

/// How often a node puts its heartbeat.
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(1);

/// How long a heartbeat lasts: the nodes bucket's `max_age`, and how long after its last heartbeat a
/// node counts as gone.
pub const NODE_TTL: Duration = Duration::from_secs(3);

/// How long the heartbeat watch may go without showing this node's own heartbeat before it is
/// recreated.
const WATCH_STALL: Duration = Duration::from_secs(3);

/// How many times a read-modify-write of a session retries when another node changed it in between.
const MAX_UPDATE_TRIES: u32 = 8;

/// The bucket names for a prefix: names, sessions, nodes.
pub fn bucket_names(prefix: &str) -> [String; 3] {
    [
        format!("{prefix}-names"),
        format!("{prefix}-sessions"),
        format!("{prefix}-nodes"),
    ]
}

/// The names bucket's key for `name`: hex of its name key.
pub fn name_bucket_key(name: &str) -> String {
    hex(name_key(name).as_bytes())
}

/// A participant's session as the cluster shares it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionRecord {
    /// The participant's name.
    pub name: String,
    /// The seq of its joined event; 0 while the join is not yet in the log. A bare number, since this
    /// struct is the JSON the bucket stores (see [`Seq::new`]).
    pub join_seq: u64,
    /// The node that holds (or last held) its Broadcast stream.
    pub node: String,
    /// Whether that stream is open.
    pub stream_open: bool,
    /// While no stream is open: since when, in wall-clock milliseconds of the node that wrote it.
    #[serde(default)]
    pub detached_since_ms: Option<u64>,
    /// The node that claimed to end the session (announce it left), if one has.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ending_by: Option<String>,
}

impl SessionRecord {
    /// A session being admitted on `node`: no join seq yet, no stream yet, detached since now.
    pub fn joining(name: impl Into<String>, node: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            join_seq: 0,
            node: node.into(),
            stream_open: false,
            detached_since_ms: Some(wall_clock_ms()),
            ending_by: None,
        }
    }

    /// Whether a node is ending the session: it no longer admits calls.
    pub fn is_ending(&self) -> bool {
        self.ending_by.is_some()
    }
}

/// A session record and the KV revision it was read at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionEntry {
    /// The session as it was stored: who, which token, which join.
    pub record: SessionRecord,
    /// Its revision: conditional updates name it.
    pub revision: u64,
}

/// Why a session counts as vanished.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Why {
    /// Its Broadcast stream has been closed for the grace period.
    Detached,
    /// The node holding its stream stopped heartbeating a grace period ago.
    NodeGone {
        /// That node.
        node: String,
    },
    /// It was attached to this node's id by an earlier process of this node, which is gone.
    NodeRestarted,
    /// A node claimed to end it a grace period ago and has not finished.
    EndingStalled {
        /// That node.
        node: String,
    },
}

impl Why {
    /// The stable name used in log lines and metric labels.
    pub fn as_str(&self) -> &'static str {
        match self {
            Why::Detached => "detached",
            Why::NodeGone { .. } => "node_gone",
            Why::NodeRestarted => "node_restarted",
            Why::EndingStalled { .. } => "ending_stalled",
        }
    }
}

impl fmt::Display for Why {
    /// The stable name used in log lines.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A session that vanished, as the mirror saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VanishedSession {
    /// The session's token hash.
    pub token_hash: TokenHash,
    /// Its record.
    pub record: SessionRecord,
    /// The revision the mirror saw: pass it to [`Members::claim_end`].
    pub revision: u64,
    /// Why it counts as vanished.
    pub why: Why,
}

/// A session this node won the right to end; see the module documentation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ending {
    /// The session's token hash.
    pub token_hash: TokenHash,
    /// Its record, as claimed.
    pub record: SessionRecord,
    /// The revision of the claim.
    pub revision: u64,
}

impl Ending {
    /// The idempotency key for the session's left event: the same on every node, so a takeover after
    /// a crash cannot announce it twice.
    pub fn left_key(&self) -> String {
        left_key(&self.token_hash)
    }
}

/// The idempotency key of the left event of the session of `token_hash`, whoever appends it: the
/// node that ends the session, one that takes the ending over, or the node whose join the session's
/// ending overtook.
pub fn left_key(token_hash: &TokenHash) -> String {
    format!("session-end/{}", token_hash.to_hex())
}

/// Two clock readings taken together, for [`Members::vanished`].
#[derive(Debug, Clone, Copy)]
pub struct Now {
    /// The monotonic clock.
    pub instant: Instant,
    /// The wall clock, in milliseconds since the Unix epoch.
    pub wall_ms: u64,
}

impl Now {
    /// Both clocks now.
    pub fn current() -> Self {
        Self {
            instant: Instant::now(),
            wall_ms: wall_clock_ms(),
        }
    }
}

/// A name could not be claimed.
#[derive(Debug, Error)]
pub enum ClaimError {
    /// Another session holds the name (or a look-alike of it).
    #[error("the name is taken")]
    Taken,
    /// The cluster could not answer.
    #[error(transparent)]
    Cluster(#[from] ClusterError),
}

/// Names, sessions and node liveness, shared by every node. See the module documentation.
#[derive(Debug)]
pub struct Members {
    /// What the handle and its tasks share.
    shared: Arc<Shared>,
    /// Tells the heartbeat and the watches to stop.
    stop: watch::Sender<bool>,
    /// The heartbeat, the sessions watch and the heartbeat watch.
    tasks: Vec<Task>,
}

#[derive(Debug)]
struct Shared {
    /// This node's id.
    node_id: String,
    /// How long a session may be gone before it counts as vanished.
    grace: Duration,
    /// The bound on each operation, retries included.
    timeout: Duration,
    /// The names bucket.
    names: kv::Store,
    /// The sessions bucket.
    sessions: kv::Store,
    /// The heartbeats bucket.
    nodes: kv::Store,
    /// Sessions this process attached to itself: those of its id not in here belong to an earlier
    /// process of the same node.
    attached_here: Mutex<HashSet<TokenHash>>,
    /// What the watches have seen.
    mirror: Mutex<Mirror>,
    /// When this node's heartbeat was last stored: while that is recent, JetStream answers writes.
    last_beat: Mutex<Instant>,
}

#[derive(Debug)]
struct Mirror {
    /// When the mirror started: the latest a node unheard of can have been seen.
    started: Instant,
    /// Every session record, by token hash.
    sessions: HashMap<TokenHash, Mirrored>,
    /// Every node heard from, by id.
    nodes: HashMap<String, NodeSeen>,
    /// Since when the nodes' watch has been current: it delivered every heartbeat the bucket held
    /// when it (re)started. `None` while it has not. Nobody is judged gone until it has been current
    /// for [`NODE_TTL`]: a watch restarted after a NATS failover delivers the heartbeats one by one,
    /// and after an outage every node's heartbeats resume within a second or so of each other, so
    /// an other node's old heartbeat may still stand when this node's first new one comes through.
    nodes_live_since: Option<Instant>,
}

#[derive(Debug)]
struct Mirrored {
    /// The session as this node last saw it in the bucket, to tell who vanished without asking NATS.
    record: SessionRecord,
    /// Its revision.
    revision: u64,
    /// When this node saw this revision.
    seen_at: Instant,
}

#[derive(Debug, Clone, Copy)]
struct NodeSeen {
    /// When this node last saw its heartbeat.
    heartbeat_at: Instant,
    /// When it said goodbye (deleted its heartbeat), if it did after its last heartbeat.
    left_at: Option<Instant>,
}

impl Mirror {
    /// Since when `node` counts as gone, if it does, judged at `now` from this node's view.
    fn node_gone_since(&self, node: &str, own: &str, now: Instant) -> Option<Instant> {
        let seen = self.nodes.get(node);
        if let Some(left_at) = seen.and_then(|seen| seen.left_at) {
            return Some(left_at);
        }
        let live_since = self.nodes_live_since?;
        if now < live_since + NODE_TTL {
            return None;
        }
        let expired_at = seen.map_or(self.started, |seen| seen.heartbeat_at) + NODE_TTL;
        // Only a heartbeat of this node's own, seen after the other's expired, shows that the watch
        // was live then: without one, silence may be this node's problem.
        let own_seen = self.nodes.get(own).map(|seen| seen.heartbeat_at)?;
        (now >= expired_at && own_seen > expired_at).then_some(expired_at)
    }
}

impl Members {
    /// Gets or creates the buckets, puts the first heartbeat and starts the heartbeat and the watches.
    pub(crate) async fn start(
        jetstream: &jetstream::Context,
        config: &ClusterConfig,
        deadline: Deadline,
    ) -> Result<Self, ClusterError> {
        let [names, sessions, nodes] = bucket_names(&config.prefix);
        let bucket = |name: String, max_age: Duration| kv::Config {
            bucket: name,
            history: 1,
            max_age,
            storage: jetstream::stream::StorageType::File,
            num_replicas: config.replicas,
            ..Default::default()
        };
        let names =
            get_or_create_bucket(jetstream, bucket(names, Duration::ZERO), deadline).await?;
        let sessions =
            get_or_create_bucket(jetstream, bucket(sessions, Duration::ZERO), deadline).await?;
        let nodes = get_or_create_bucket(jetstream, bucket(nodes, NODE_TTL), deadline).await?;
        let shared = Arc::new(Shared {
            node_id: config.node_id.clone(),
            grace: config.grace,
            timeout: config.timeout,
            names,
            sessions,
            nodes,
            attached_here: Mutex::new(HashSet::new()),
            mirror: Mutex::new(Mirror {
                started: Instant::now(),
                sessions: HashMap::new(),
                nodes: HashMap::new(),
                nodes_live_since: None,
            }),
            last_beat: Mutex::new(Instant::now()),
        });
        retry_until(deadline, "put the first heartbeat", || shared.beat()).await?;
        shared.beat_stored();
        let (stop, stopped) = watch::channel(false);
        let tasks = vec![
            Task::spawn(heartbeat_loop(Arc::clone(&shared), stopped.clone())),
            Task::spawn(watch_sessions(Arc::clone(&shared), stopped.clone())),
            Task::spawn(watch_nodes(Arc::clone(&shared), stopped)),
        ];
        Ok(Self {
            shared,
            stop,
            tasks,
        })
    }

    /// This node's id.
    pub fn node_id(&self) -> &str {
        &self.shared.node_id
    }

    /// Whether JetStream stored one of this node's heartbeats within [`NODE_TTL`]. While it does not,
    /// writes are failing (NATS lost its quorum, or this node lost NATS), so the node cannot admit,
    /// publish or end anything, and other nodes may take it for gone.
    pub fn reachable(&self) -> bool {
        let last_beat = *self
            .shared
            .last_beat
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        last_beat.elapsed() < NODE_TTL
    }

    /// Claims `name` for the session with `token_hash`. Atomic across nodes: of concurrent claims of
    /// one name (or look-alikes of it), exactly one succeeds (but see the module documentation on
    /// nats-server before 2.9.21). Claiming a name the same token already holds succeeds, so a retry
    /// after a lost answer is safe; the call itself retries while the bucket has no leader, and a
    /// claim whose answer was lost counts as made when the name turns out to be the token's.
    pub async fn claim_name(&self, name: &str, token_hash: &TokenHash) -> Result<(), ClaimError> {
        let shared = &self.shared;
        let operation = "claim a name";
        let key = name_bucket_key(name);
        let owner = token_hash.to_hex();
        let deadline = shared.deadline();
        let mut backoff = Backoff::default();
        // The revision the claim expects: 0 while the key was never written, or that of the deletion
        // that released the name.
        let mut expected = 0;
        loop {
            let written = shared
                .update_once(
                    &shared.names,
                    &key,
                    owner.as_bytes(),
                    expected,
                    deadline,
                    operation,
                )
                .await?;
            let lost_answer = match written {
                // Read back: on nats-server before 2.9.21 a claim made at the same moment may have
                // overwritten this one (see the module documentation).
                Written::Done(_) => {
                    return match shared.name_owner(&key, deadline).await? {
                        Some(current) if current != owner => Err(ClaimError::Taken),
                        _ => Ok(()),
                    };
                }
                Written::Conflict => None,
                Written::Unknown(error) => Some(error),
            };
            // Refused, or the answer lost: what the name holds now decides. After a lost answer it
            // may hold this very claim.
            match shared.key_state(&shared.names, &key, deadline).await? {
                Some(KeyState {
                    value: Some(current),
                    ..
                }) => {
                    return if current == owner.as_bytes() {
                        Ok(())
                    } else {
                        Err(ClaimError::Taken)
                    };
                }
                Some(KeyState {
                    value: None,
                    revision,
                }) => expected = revision,
                None => expected = 0,
            }
            if !backoff.pause_before(deadline.at).await {
                return Err(match lost_answer {
                    Some(error) => ClusterError::jetstream(operation, error),
                    None => deadline.timed_out(operation),
                }
                .into());
            }
        }
    }

    /// Releases `name` if the session with `token_hash` holds it. Returns whether it did; after a
    /// deletion whose answer was lost, finding the name no longer the token's counts as having done
    /// it.
    pub async fn release_name(
        &self,
        name: &str,
        token_hash: &TokenHash,
    ) -> Result<bool, ClusterError> {
        let shared = &self.shared;
        let operation = "release a name";
        let deadline = shared.deadline();
        let key = name_bucket_key(name);
        let owner = token_hash.to_hex();
        let mut backoff = Backoff::default();
        let mut maybe_released = false;
        loop {
            let revision = match shared.key_state(&shared.names, &key, deadline).await? {
                Some(KeyState {
                    value: Some(current),
                    revision,
                }) if current == owner.as_bytes() => revision,
                _ => return Ok(maybe_released),
            };
            match shared
                .delete_once(&shared.names, &key, revision, deadline, operation)
                .await?
            {
                Written::Done(_) => return Ok(true),
                // Claimed or released in between: look again.
                Written::Conflict => {}
                Written::Unknown(error) => {
                    maybe_released = true;
                    if !backoff.pause_before(deadline.at).await {
                        return Err(ClusterError::jetstream(operation, error));
                    }
                }
            }
        }
    }

    /// Who holds `name` (or a look-alike): the owner's token hash in hex.
    pub async fn name_owner(&self, name: &str) -> Result<Option<String>, ClusterError> {
        let shared = &self.shared;
        shared
            .name_owner(&name_bucket_key(name), shared.deadline())
            .await
    }

    /// Whether `name` (or a look-alike) is on its way to being free: no session holds it, or the one
    /// that holds it is being ended or already deleted, so its release is in progress. A Join of a
    /// taken name waits while this holds, rather than refusing a participant whose own previous
    /// session is just being announced left.
    pub async fn name_being_released(&self, name: &str) -> Result<bool, ClusterError> {
        let shared = &self.shared;
        let deadline = shared.deadline();
        let Some(owner) = shared.name_owner(&name_bucket_key(name), deadline).await? else {
            return Ok(true);
        };
        let Some(owner) = TokenHash::from_hex(&owner) else {
            return Ok(false);
        };
        Ok(shared
            .session(&owner, deadline)
            .await?
            .is_none_or(|entry| entry.record.is_ending()))
    }

    /// Stores `record` as the session of `token_hash`, whatever was there. Returns the revision.
    ///
    /// Meant for a session being created, whose token nobody else knows yet: a put whose answer was
    /// lost is repeated, which stores the same record once more.
    pub async fn put_session(
        &self,
        token_hash: &TokenHash,
        record: &SessionRecord,
    ) -> Result<u64, ClusterError> {
        let shared = &self.shared;
        let value = Bytes::from(encode_record(record)?);
        if record.stream_open && record.node == shared.node_id {
            shared.attached_here().insert(*token_hash);
        }
        let key = token_hash.to_hex();
        retry_until(shared.deadline(), "store a session", || {
            shared.sessions.put(&key, value.clone())
        })
        .await
    }

    /// The session of `token_hash`, read from the bucket (not the mirror), so a token works on any node
    /// as soon as it was stored.
    pub async fn session(
        &self,
        token_hash: &TokenHash,
    ) -> Result<Option<SessionEntry>, ClusterError> {
        let shared = &self.shared;
        shared.session(token_hash, shared.deadline()).await
    }

    /// Records that the session's Broadcast stream is now open on this node. Returns the new entry,
    /// or `None` if the session does not exist or is being ended (the token is no longer valid).
    ///
    /// On an error the record may have been written all the same (the answer was lost). The session
    /// then still counts as this process's own, so that it is not taken for an earlier process's
    /// ([`Why::NodeRestarted`]); the caller must [`Members::detach`] it, since no stream is open.
    pub async fn attach(
        &self,
        token_hash: &TokenHash,
    ) -> Result<Option<SessionEntry>, ClusterError> {
        let node = self.shared.node_id.clone();
        // Noted before the write, so the mirror never sees this process's attachment as an orphan.
        self.shared.attached_here().insert(*token_hash);
        let attached = self
            .shared
            .update_session(token_hash, |record| {
                if record.is_ending() {
                    return Change::Refuse;
                }
                record.node.clone_from(&node);
                record.stream_open = true;
                record.detached_since_ms = None;
                Change::Write
            })
            .await;
        if matches!(attached, Ok(None)) {
            self.shared.attached_here().remove(token_hash);
        }
        attached
    }

    /// Records that the session's stream on this node closed at `now_ms` (wall clock). Does nothing if
    /// the session is attached to another node meanwhile (it reconnected there), is being ended, or if
    /// `attached_here_again()` says that this node is attaching it again or holds an open stream of it.
    /// Returns the entry as it is after the call, or `None` if the session does not exist.
    ///
    /// `attached_here_again` is asked after each read of the record and before the write, which is
    /// conditional on the revision read: an attach that starts after the question changes the
    /// revision if its write lands first, and then this write does not land over it.
    pub async fn detach(
        &self,
        token_hash: &TokenHash,
        now_ms: u64,
        attached_here_again: impl Fn() -> bool,
    ) -> Result<Option<SessionEntry>, ClusterError> {
        let node = self.shared.node_id.clone();
        self.shared
            .update_session(token_hash, |record| {
                if record.node != node
                    || !record.stream_open
                    || record.is_ending()
                    || attached_here_again()
                {
                    return Change::Keep;
                }
                record.stream_open = false;
                record.detached_since_ms = Some(now_ms);
                Change::Write
            })
            .await
    }

    /// Records the seq of the session's joined event, once it is in the log.
    pub async fn set_join_seq(
        &self,
        token_hash: &TokenHash,
        join_seq: Seq,
    ) -> Result<Option<SessionEntry>, ClusterError> {
        self.shared
            .update_session(token_hash, |record| {
                if record.is_ending() {
                    return Change::Refuse;
                }
                record.join_seq = join_seq.get();
                Change::Write
            })
            .await
    }

    /// The sessions that vanished, as of `now`, from the local mirror; see the module documentation.
    /// Cheap: no request is made.
    pub fn vanished(&self, now: Now) -> Vec<VanishedSession> {
        let shared = &self.shared;
        let grace = shared.grace;
        let attached_here = shared.attached_here().clone();
        let mirror = shared.mirror();
        let held_for = |since: Instant| now.instant.saturating_duration_since(since) >= grace;
        mirror
            .sessions
            .iter()
            .filter_map(|(token_hash, mirrored)| {
                let record = &mirrored.record;
                let why = if let Some(node) = &record.ending_by {
                    held_for(mirrored.seen_at).then(|| Why::EndingStalled { node: node.clone() })
                } else if !record.stream_open {
                    let detached_ms = record.detached_since_ms.unwrap_or(0);
                    let wall_elapsed = now.wall_ms.saturating_sub(detached_ms);
                    (u128::from(wall_elapsed) >= grace.as_millis() && held_for(mirrored.seen_at))
                        .then_some(Why::Detached)
                } else if record.node == shared.node_id {
                    (!attached_here.contains(token_hash) && held_for(mirrored.seen_at))
                        .then_some(Why::NodeRestarted)
                } else {
                    mirror
                        .node_gone_since(&record.node, &shared.node_id, now.instant)
                        .filter(|gone| held_for(*gone))
                        .map(|_| Why::NodeGone {
                            node: record.node.clone(),
                        })
                }?;
                Some(VanishedSession {
                    token_hash: *token_hash,
                    record: record.clone(),
                    revision: mirrored.revision,
                    why,
                })
            })
            .collect()
    }

    /// Claims the right to end the session of `token_hash`, if it is still at `revision`: for a
    /// vanished session (the revision from [`Members::vanished`]) or a Leave (the revision from
    /// [`Members::session`]). Of all nodes claiming one revision, exactly one gets `Some` (but see
    /// the module documentation on nats-server before 2.9.21); it then appends the left event (if the
    /// session joined) with [`Ending::left_key`] and calls [`Members::finish_end`].
    ///
    /// A claim whose answer was lost is made again with the same expected revision; if that is
    /// refused because the first one was stored, the record then holds exactly this claim, and the
    /// claim counts as won.
    pub async fn claim_end(
        &self,
        token_hash: &TokenHash,
        revision: u64,
    ) -> Result<Option<Ending>, ClusterError> {
        let shared = &self.shared;
        let operation = "claim to end a session";
        let deadline = shared.deadline();
        let key = token_hash.to_hex();
        let Some(entry) = shared.session(token_hash, deadline).await? else {
            return Ok(None);
        };
        if entry.revision != revision {
            return Ok(None);
        }
        let mut record = entry.record;
        record.ending_by = Some(shared.node_id.clone());
        let value = encode_record(&record)?;
        let mut backoff = Backoff::default();
        let mut lost_answer = false;
        let claimed = loop {
            match shared
                .update_once(
                    &shared.sessions,
                    &key,
                    &value,
                    revision,
                    deadline,
                    operation,
                )
                .await?
            {
                // Read back: on nats-server before 2.9.21 a claim made at the same moment may have
                // overwritten this one (see the module documentation).
                Written::Done(claimed) => {
                    break shared
                        .session(token_hash, deadline)
                        .await?
                        .filter(|current| current.revision == claimed)
                        .map(|_| claimed);
                }
                Written::Conflict if lost_answer => {
                    break shared
                        .session(token_hash, deadline)
                        .await?
                        .filter(|current| current.record == record)
                        .map(|current| current.revision);
                }
                Written::Conflict => break None,
                Written::Unknown(error) => {
                    lost_answer = true;
                    if !backoff.pause_before(deadline.at).await {
                        return Err(ClusterError::jetstream(operation, error));
                    }
                }
            }
        };
        let Some(revision) = claimed else {
            return Ok(None);
        };
        shared.attached_here().remove(token_hash);
        Ok(Some(Ending {
            token_hash: *token_hash,
            record,
            revision,
        }))
    }

    /// Finishes ending a session after its left event is in the log: deletes the session (unless
    /// another node took the ending over meanwhile) and releases its name. If the session is already
    /// gone (deleted by an attempt whose answer was lost, or by a node that took over and finished),
    /// the name is released all the same, if the session still holds it.
    pub async fn finish_end(&self, ending: &Ending) -> Result<(), ClusterError> {
        let shared = &self.shared;
        let operation = "delete a session";
        let deadline = shared.deadline();
        let key = ending.token_hash.to_hex();
        let mut backoff = Backoff::default();
        let over = loop {
            match shared
                .delete_once(&shared.sessions, &key, ending.revision, deadline, operation)
                .await?
            {
                Written::Done(_) => break true,
                Written::Conflict => {
                    let current = shared.key_state(&shared.sessions, &key, deadline).await?;
                    // Still there, claimed anew: taken over. Gone: over, by whoever deleted it.
                    break current.is_none_or(|current| current.value.is_none());
                }
                Written::Unknown(error) => {
                    if !backoff.pause_before(deadline.at).await {
                        return Err(ClusterError::jetstream(operation, error));
                    }
                }
            }
        };
        if over {
            self.release_name(&ending.record.name, &ending.token_hash)
                .await?;
        }
        Ok(())
    }

    /// How many sessions, as the local mirror has them, have no Broadcast stream open on any node and
    /// are not being ended: they wait out their grace period. Cheap: no request is made.
    pub fn in_grace(&self) -> usize {
        self.shared
            .mirror()
            .sessions
            .values()
            .filter(|mirrored| !mirrored.record.stream_open && mirrored.record.ending_by.is_none())
            .count()
    }

    /// The nodes whose heartbeat this node saw within [`NODE_TTL`], itself included.
    pub fn live_nodes(&self, now: Instant) -> Vec<String> {
        let mirror = self.shared.mirror();
        let mut live: Vec<String> = mirror
            .nodes
            .iter()
            .filter(|(_, seen)| seen.left_at.is_none() && now < seen.heartbeat_at + NODE_TTL)
            .map(|(node, _)| node.clone())
            .collect();
        live.sort();
        live
    }

    /// Every session in the bucket, with its token hash: for a node starting up, to learn who is
    /// present from before the events the stream still holds.
    pub async fn sessions(&self) -> Result<Vec<(TokenHash, SessionRecord)>, ClusterError> {
        let shared = &self.shared;
        let deadline = shared.deadline();
        let keys: Vec<String> = retry_until(deadline, "list the sessions", || async {
            let keys = shared.sessions.keys().await?;
            keys.try_collect::<Vec<String>>()
                .await
                .map_err(async_nats::Error::from)
        })
        .await?;
        let mut sessions = Vec::with_capacity(keys.len());
        for key in keys {
            let Some(token_hash) = TokenHash::from_hex(&key) else {
                continue;
            };
            if let Some(entry) = shared.session(&token_hash, deadline).await? {
                sessions.push((token_hash, entry.record));
            }
        }
        Ok(sessions)
    }

    /// Stops the heartbeat and the watches, through a shared handle, and deletes this node's
    /// heartbeat, so others count its sessions' grace period from now.
    pub(crate) async fn stop(&self) {
        let _ = self.stop.send(true);
        self.goodbye().await;
    }

    /// Stops the heartbeat and the watches and deletes this node's heartbeat, so others count its
    /// sessions' grace period from now.
    pub(crate) async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        for task in self.tasks.drain(..) {
            task.stop_within(Duration::from_secs(1)).await;
        }
        self.goodbye().await;
    }

    /// Deletes this node's heartbeat.
    async fn goodbye(&self) {
        let shared = &self.shared;
        // Deleting twice leaves the same tombstone, so a lost answer is simply retried.
        let goodbye = retry_until(shared.deadline(), "say goodbye", || {
            shared.nodes.delete(&shared.node_id)
        })
        .await;
        if let Err(error) = goodbye {
            warn!(component = CLUSTER, event = ClusterEvent::GoodbyeFailed.as_str(), error = %error);
        }
    }
}

/// What a read-modify-write does with the record it read.
enum Change {
    /// Write the changed record.
    Write,
    /// Leave it as it is, and return it.
    Keep,
    /// Leave it, and return `None`.
    Refuse,
}

/// The outcome of one conditional write (a put or a delete expecting a revision).
enum Written {
    /// Stored, at this revision.
    Done(u64),
    /// Refused: the key is no longer at the expected revision, or another conditional write of it
    /// is being stored. Nothing was stored.
    Conflict,
    /// No answer, or an error worth retrying: the write may or may not have been stored.
    Unknown(async_nats::Error),
}

/// A key's latest entry, as the bucket's stream leader holds it.
struct KeyState {
    /// Its revision: the stream seq of the entry.
    revision: u64,
    /// Its value, or `None` if the entry is a deletion.
    value: Option<Bytes>,
}

impl KeyState {
    /// The state a bucket's stream message records. A deletion carries a `KV-Operation` header of
    /// `DEL` or `PURGE` (or a marker reason, on newer servers); a put carries `PUT` or nothing.
    fn from_message(message: jetstream::message::StreamMessage) -> Self {
        let headers = &message.headers;
        let deleted = headers
            .get("KV-Operation")
            .is_some_and(|operation| matches!(operation.as_str(), "DEL" | "PURGE"))
            || headers.get("Nats-Marker-Reason").is_some();
        Self {
            revision: message.sequence,
            value: (!deleted).then_some(message.payload),
        }
    }
}

impl Shared {
    /// The deadline of an operation that starts now.
    fn deadline(&self) -> Deadline {
        Deadline::after(self.timeout)
    }

    fn mirror(&self) -> MutexGuard<'_, Mirror> {
        // The lock guards plain maps that every writer leaves consistent, so a panic elsewhere while
        // holding it cannot leave them half-changed: carry on with the data.
        self.mirror
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn attached_here(&self) -> MutexGuard<'_, HashSet<TokenHash>> {
        self.attached_here
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Notes that a heartbeat was just stored.
    fn beat_stored(&self) {
        *self
            .last_beat
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Instant::now();
    }

    /// Puts this node's heartbeat once.
    async fn beat(&self) -> Result<u64, kv::PutError> {
        let value = format!("{{\"wall_ms\":{}}}", wall_clock_ms());
        self.nodes.put(&self.node_id, value.into()).await
    }

    /// The latest state of `key` in `bucket`, or `None` if it was never written.
    ///
    /// Asked of the bucket's stream leader rather than with a direct get, which any replica may
    /// answer with what it has so far (nats-io/nats.docs#815): a read that decides a conditional
    /// write, or finds a token stored on another node a moment ago, must see the latest write.
    async fn key_state(
        &self,
        bucket: &kv::Store,
        key: &str,
        deadline: Deadline,
    ) -> Result<Option<KeyState>, ClusterError> {
        let subject = format!("{}{key}", bucket.prefix);
        retry_until(deadline, "read a key", || async {
            match bucket
                .stream
                .get_last_raw_message_by_subject(&subject)
                .await
            {
                Ok(message) => Ok(Some(KeyState::from_message(message))),
                Err(error) if error.kind() == LastRawMessageErrorKind::NoMessageFound => Ok(None),
                Err(error) => Err(error),
            }
        })
        .await
    }

    /// Puts `value` at `key` if the key is still at `revision` (0: never written). One attempt.
    async fn update_once(
        &self,
        bucket: &kv::Store,
        key: &str,
        value: &[u8],
        revision: u64,
        deadline: Deadline,
        operation: &'static str,
    ) -> Result<Written, ClusterError> {
        let updated = deadline
            .run(
                operation,
                bucket.update(key, Bytes::copy_from_slice(value), revision),
            )
            .await?;
        written(updated, operation)
    }

    /// Deletes `key` if it is still at `revision`. One attempt.
    async fn delete_once(
        &self,
        bucket: &kv::Store,
        key: &str,
        revision: u64,
        deadline: Deadline,
        operation: &'static str,
    ) -> Result<Written, ClusterError> {
        let deleted = deadline
            .run(
                operation,
                bucket.delete_expect_revision(key, Some(revision)),
            )
            .await?;
        // A deletion's own revision is not reported; nothing needs it.
        written(deleted.map(|()| 0), operation)
    }

    /// The owner of the names-bucket `key`, in hex.
    async fn name_owner(
        &self,
        key: &str,
        deadline: Deadline,
    ) -> Result<Option<String>, ClusterError> {
        let state = self.key_state(&self.names, key, deadline).await?;
        Ok(state
            .and_then(|state| state.value)
            .map(|owner| String::from_utf8_lossy(&owner).into_owned()))
    }

    /// The session of `token_hash`, from the bucket.
    async fn session(
        &self,
        token_hash: &TokenHash,
        deadline: Deadline,
    ) -> Result<Option<SessionEntry>, ClusterError> {
        let key = token_hash.to_hex();
        let Some(KeyState {
            revision,
            value: Some(value),
        }) = self.key_state(&self.sessions, &key, deadline).await?
        else {
            return Ok(None);
        };
        Ok(Some(SessionEntry {
            record: decode_record(&key, &value)?,
            revision,
        }))
    }

    /// Reads the session, lets `change` decide, and writes the result conditionally on the revision
    /// read. When another node wrote in between, reads and decides again (at most
    /// [`MAX_UPDATE_TRIES`] times); when the answer to a write is lost, waits and does the same,
    /// since that write may have been stored: a record that already is what `change` makes of it
    /// is returned without writing, so a stored write is not made twice.
    async fn update_session(
        &self,
        token_hash: &TokenHash,
        mut change: impl FnMut(&mut SessionRecord) -> Change,
    ) -> Result<Option<SessionEntry>, ClusterError> {
        let operation = "update a session";
        let deadline = self.deadline();
        let key = token_hash.to_hex();
        let mut backoff = Backoff::default();
        let mut conflicts = 0;
        loop {
            let Some(mut entry) = self.session(token_hash, deadline).await? else {
                return Ok(None);
            };
            let before = entry.record.clone();
            match change(&mut entry.record) {
                Change::Refuse => return Ok(None),
                Change::Keep => return Ok(Some(entry)),
                Change::Write if entry.record == before => return Ok(Some(entry)),
                Change::Write => {}
            }
            let value = encode_record(&entry.record)?;
            match self
                .update_once(
                    &self.sessions,
                    &key,
                    &value,
                    entry.revision,
                    deadline,
                    operation,
                )
                .await?
            {
                Written::Done(revision) => {
                    entry.revision = revision;
                    return Ok(Some(entry));
                }
                Written::Conflict => {
                    conflicts += 1;
                    if conflicts >= MAX_UPDATE_TRIES {
                        return Err(ClusterError::jetstream(
                            operation,
                            format!("other nodes changed it {MAX_UPDATE_TRIES} times in a row"),
                        ));
                    }
                }
                Written::Unknown(error) => {
                    if !backoff.pause_before(deadline.at).await {
                        return Err(ClusterError::jetstream(operation, error));
                    }
                }
            }
        }
    }

    /// Applies one session entry from the watch to the mirror.
    fn mirror_session(&self, entry: &kv::Entry, seen_at: Instant) {
        let Some(token_hash) = TokenHash::from_hex(&entry.key) else {
            warn!(component = CLUSTER, event = ClusterEvent::ForeignSessionKey.as_str(), key = %entry.key);
            return;
        };
        let mut mirror = self.mirror();
        if entry.operation != kv::Operation::Put {
            mirror.sessions.remove(&token_hash);
            return;
        }
        match decode_record(&entry.key, &entry.value) {
            Ok(record) => {
                mirror.sessions.insert(
                    token_hash,
                    Mirrored {
                        record,
                        revision: entry.revision,
                        seen_at,
                    },
                );
            }
            Err(error) => {
                warn!(component = CLUSTER, event = ClusterEvent::UndecodableSession.as_str(), error = %error);
            }
        }
    }

    /// Applies one heartbeat entry from the watch to the mirror.
    fn mirror_node(&self, entry: &kv::Entry, seen_at: Instant) {
        let mut mirror = self.mirror();
        let seen = mirror.nodes.entry(entry.key.clone()).or_insert(NodeSeen {
            heartbeat_at: seen_at,
            left_at: None,
        });
        if entry.operation == kv::Operation::Put {
            *seen = NodeSeen {
                heartbeat_at: seen_at,
                left_at: None,
            };
        } else {
            seen.left_at = Some(seen_at);
        }
    }
}

/// Gets bucket `config.bucket`, or creates it if no node has yet, retrying until `deadline`.
///
/// The bucket's stream is created here with the configuration async-nats would give it, because
/// async-nats's own `create_key_value` first asks for account information in a form nats-server 2.9
/// does not send.
pub(crate) async fn get_or_create_bucket(
    jetstream: &jetstream::Context,
    config: kv::Config,
    deadline: Deadline,
) -> Result<kv::Store, ClusterError> {
    let stream = jetstream::stream::Config {
        name: format!("KV_{}", config.bucket),
        description: Some(format!("Chitty-Chat {}", config.bucket)),
        subjects: vec![format!("$KV.{}.>", config.bucket)],
        max_messages_per_subject: config.history,
        max_age: config.max_age,
        duplicate_window: if config.max_age.is_zero() {
            Duration::ZERO
        } else {
            config.max_age.min(crate::log::DUPLICATE_WINDOW)
        },
        storage: config.storage,
        num_replicas: config.num_replicas,
        allow_rollup: true,
        deny_delete: true,
        allow_direct: true,
        discard: jetstream::stream::DiscardPolicy::New,
        ..Default::default()
    };
    retry_until(deadline, "get or create a key-value bucket", || async {
        jetstream.get_or_create_stream(stream.clone()).await?;
        Ok::<_, async_nats::Error>(jetstream.get_key_value(config.bucket.clone()).await?)
    })
    .await
}

/// Sorts the answer to one conditional write.
fn written(
    answer: Result<u64, kv::UpdateError>,
    operation: &'static str,
) -> Result<Written, ClusterError> {
    match answer {
        Ok(revision) => Ok(Written::Done(revision)),
        // Refused for the revision, in either of JetStream's two words for it (see
        // `is_wrong_last_sequence`): the other came first, or is being stored.
        Err(error)
            if error.kind() == kv::UpdateErrorKind::WrongLastRevision
                || is_wrong_last_sequence(&error) =>
        {
            Ok(Written::Conflict)
        }
        Err(error) if is_permanent(&error) => Err(ClusterError::jetstream(operation, error)),
        Err(error) => Ok(Written::Unknown(error.into())),
    }
}

/// The JSON of a session record.
fn encode_record(record: &SessionRecord) -> Result<Vec<u8>, ClusterError> {
    serde_json::to_vec(record).map_err(|error| ClusterError::Decode {
        what: "new session record".to_owned(),
        reason: error.to_string(),
    })
}

/// A session record from its JSON.
fn decode_record(key: &str, value: &[u8]) -> Result<SessionRecord, ClusterError> {
    serde_json::from_slice(value).map_err(|error| ClusterError::Decode {
        what: format!("session {key}"),
        reason: error.to_string(),
    })
}

/// Puts this node's heartbeat every [`HEARTBEAT_INTERVAL`] until told to stop.
async fn heartbeat_loop(shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    let mut ticks = tokio::time::interval(HEARTBEAT_INTERVAL);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            _ = stop.changed() => return,
        }
        match tokio::time::timeout(HEARTBEAT_INTERVAL, shared.beat()).await {
            Ok(Ok(_)) => shared.beat_stored(),
            Ok(Err(error)) => {
                warn!(component = CLUSTER, event = ClusterEvent::HeartbeatFailed.as_str(), error = %error);
            }
            Err(_) => warn!(
                component = CLUSTER,
                event = ClusterEvent::HeartbeatFailed.as_str(),
                error = "timed out"
            ),
        }
    }
}

/// Keeps the mirror's sessions current until told to stop, recreating the watch when it fails.
async fn watch_sessions(shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    let mut backoff = Backoff::default();
    loop {
        let watched = tokio::select! {
            watched = shared.sessions.watch_all() => watched,
            _ = stop.changed() => return,
        };
        match watched {
            Ok(mut entries) => loop {
                tokio::select! {
                    next = entries.next() => match next {
                        Some(Ok(entry)) => {
                            shared.mirror_session(&entry, Instant::now());
                            backoff.reset();
                        }
                        Some(Err(error)) => {
                            warn!(component = CLUSTER, event = ClusterEvent::WatchFailed.as_str(), bucket = "sessions", error = %error);
                            break;
                        }
                        None => break,
                    },
                    _ = stop.changed() => return,
                }
            },
            Err(error) => {
                warn!(component = CLUSTER, event = ClusterEvent::WatchFailed.as_str(), bucket = "sessions", error = %error);
            }
        }
        tokio::select! {
            () = backoff.pause() => {}
            _ = stop.changed() => return,
        }
    }
}

/// Keeps the mirror's heartbeats current until told to stop. The watch is recreated when it fails,
/// or when this node's own heartbeat has not come through it for [`WATCH_STALL`].
async fn watch_nodes(shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    let mut backoff = Backoff::default();
    loop {
        let watched = tokio::select! {
            watched = shared.nodes.watch_all() => watched,
            _ = stop.changed() => return,
        };
        let mut stall_at = Instant::now() + WATCH_STALL;
        if watched.is_ok() {
            shared.mirror().nodes_live_since = None;
        }
        match watched {
            Ok(mut entries) => loop {
                tokio::select! {
                    next = entries.next() => match next {
                        Some(Ok(entry)) => {
                            let now = Instant::now();
                            if entry.key == shared.node_id {
                                stall_at = now + WATCH_STALL;
                            }
                            shared.mirror_node(&entry, now);
                            if entry.seen_current || entry.delta == 0 {
                                shared.mirror().nodes_live_since.get_or_insert(now);
                            }
                            backoff.reset();
                        }
                        Some(Err(error)) => {
                            warn!(component = CLUSTER, event = ClusterEvent::WatchFailed.as_str(), bucket = "nodes", error = %error);
                            break;
                        }
                        None => break,
                    },
                    () = tokio::time::sleep_until(stall_at) => {
                        info!(component = CLUSTER, event = ClusterEvent::WatchStalled.as_str(), bucket = "nodes");
                        break;
                    }
                    _ = stop.changed() => return,
                }
            },
            Err(error) => {
                warn!(component = CLUSTER, event = ClusterEvent::WatchFailed.as_str(), bucket = "nodes", error = %error);
            }
        }
        tokio::select! {
            () = backoff.pause() => {}
            _ = stop.changed() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn look_alike_names_share_one_key_and_every_key_is_nats_safe() {
        assert_eq!(name_bucket_key("Alice"), name_bucket_key("alice"));
        assert_eq!(name_bucket_key("alice"), name_bucket_key("\u{0430}lice"));
        assert_ne!(name_bucket_key("alice"), name_bucket_key("bob"));
        for name in ["a.b", "a b", "*", ">", "ü", "名前"] {
            let key = name_bucket_key(name);
            assert!(
                !key.is_empty() && key.bytes().all(|byte| byte.is_ascii_hexdigit()),
                "got key {key:?} for {name:?}, want hex digits only"
            );
        }
    }

    #[test]
    fn token_keys_round_trip_and_foreign_keys_are_ignored() {
        let hash = TokenHash::from_bytes([0xab; 32]);
        assert_eq!(TokenHash::from_hex(&hex(hash.as_bytes())), Some(hash));
        assert_eq!(TokenHash::from_hex("abc"), None);
        assert_eq!(TokenHash::from_hex(&"zz".repeat(32)), None);
    }

    #[test]
    fn a_session_record_is_readable_json() {
        let record = SessionRecord {
            name: "alice".into(),
            join_seq: 4,
            node: "node-1".into(),
            stream_open: false,
            detached_since_ms: Some(1_700_000_000_000),
            ending_by: None,
        };
        let json = String::from_utf8(encode_record(&record).expect("encodes")).expect("utf-8");
        assert_eq!(
            json,
            r#"{"name":"alice","join_seq":4,"node":"node-1","stream_open":false,"detached_since_ms":1700000000000}"#
        );
        assert_eq!(
            decode_record("k", json.as_bytes()).expect("decodes"),
            record
        );
    }

    #[test]
    fn an_endings_left_event_is_keyed_by_the_session() {
        let ending = Ending {
            token_hash: TokenHash::from_bytes([1; 32]),
            record: SessionRecord::joining("alice", "n"),
            revision: 3,
        };
        assert_eq!(
            ending.left_key(),
            format!("session-end/{}", "01".repeat(32))
        );
    }

    fn mirror_at(started: Instant) -> Mirror {
        Mirror {
            started,
            sessions: HashMap::new(),
            nodes: HashMap::new(),
            nodes_live_since: Some(started),
        }
    }

    #[test]
    fn a_node_is_gone_only_once_a_later_own_heartbeat_proves_the_watch_live() {
        let start = Instant::now();
        let mut mirror = mirror_at(start);
        let beat = |at: Instant| NodeSeen {
            heartbeat_at: at,
            left_at: None,
        };
        mirror.nodes.insert("other".into(), beat(start));
        mirror.nodes.insert("me".into(), beat(start));
        let later = start + NODE_TTL + Duration::from_secs(5);
        assert_eq!(
            mirror.node_gone_since("other", "me", later),
            None,
            "no own heartbeat after the other's expiry: the watch may be stalled"
        );
        mirror
            .nodes
            .insert("me".into(), beat(start + NODE_TTL + Duration::from_secs(1)));
        assert_eq!(
            mirror.node_gone_since("other", "me", later),
            Some(start + NODE_TTL)
        );
        // A node never heard of counts from when the mirror started.
        assert_eq!(
            mirror.node_gone_since("stranger", "me", later),
            Some(start + NODE_TTL)
        );
        // While a restarted watch has not delivered every heartbeat, or has for less than the node
        // TTL, nobody counts as gone.
        mirror.nodes_live_since = None;
        assert_eq!(mirror.node_gone_since("other", "me", later), None);
        assert_eq!(mirror.node_gone_since("stranger", "me", later), None);
        mirror.nodes_live_since = Some(later - Duration::from_secs(1));
        assert_eq!(mirror.node_gone_since("other", "me", later), None);
        mirror.nodes_live_since = Some(start);
        // A goodbye counts at once.
        let goodbye = start + Duration::from_millis(500);
        mirror.nodes.insert(
            "polite".into(),
            NodeSeen {
                heartbeat_at: start,
                left_at: Some(goodbye),
            },
        );
        assert_eq!(mirror.node_gone_since("polite", "me", later), Some(goodbye));
    }
}
