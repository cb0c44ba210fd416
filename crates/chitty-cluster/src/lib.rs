//! Cluster mode for Chitty-Chat: several service nodes serving one chat through NATS JetStream.
//!
//! A single Chitty-Chat node orders events under one lock and keeps them in its own database. In cluster
//! mode that job moves to JetStream, an existing replicated log, and this crate is the JetStream side of
//! it, with no knowledge of gRPC or of the service's internals: it depends on `chitty-core` (events,
//! the Lamport clock, name keys) and `async-nats`, and the service adapts it behind its own seams.
//!
//! # Layout
//!
//! - [`Cluster`]: one node's connection. [`Cluster::connect`] gets or creates the stream and the
//!   key-value buckets (idempotently, so every node may start first), starts the node's heartbeat and
//!   the local mirror of the membership, and hands out the two halves below.
//! - [`log`]: the event log, one JetStream stream whose sequence number *is* the event's seq.
//!   [`EventLog::append`] stamps and stores an event, with a condition on its participant's presence
//!   where the caller needs one, and a consumer task applies every event in order to the node, as the
//!   stream's leader holds it: it computes the event's Lamport time, witnesses it on the node clock and
//!   hands the event over. Nodes cut the stream's head as it grows, after recording a checkpoint.
//! - [`timeline`]: the rule that gives each event its Lamport time where it is applied, the same on
//!   every node and strictly increasing along seq.
//! - [`members`]: who is present, in three buckets: names (claimed with an atomic create, so two nodes
//!   never admit one name twice), sessions (a token works on any node) and node heartbeats. From a
//!   local mirror kept by KV watches it computes which sessions vanished, and lets exactly one node
//!   announce each of them left.
//! - [`version`]: which nats-server versions cluster mode runs on: [`version::OLDEST_NATS_SERVER`]
//!   (2.11.0) and newer; [`Cluster::connect`] refuses an older server.
//! - [`testing`] (feature `testing`): a harness that runs a real 3-server JetStream cluster of
//!   nats-server processes on loopback ports, for this crate's tests and for the service's.
//!
//! # Names in NATS
//!
//! With [`ClusterConfig::prefix`] `P`, the node uses the stream `P-events` on the subjects
//! `P.events.>` (each participant's presence and messages), and the buckets `P-names`, `P-sessions`,
//! `P-nodes` and `P-checkpoint`. Tests use a unique prefix each, so they can
//! share a NATS cluster without seeing each other.
//!
//! # Timeouts and failover
//!
//! Every operation that talks to NATS is bounded by [`ClusterConfig::timeout`] as a whole, retries
//! included, and fails with [`ClusterError::TimedOut`] past it. Within that bound each request waits
//! at most a tenth of it (between 250 ms and 1 s) for an answer, and transient failures (no answer,
//! no responders, no leader) are retried after pauses of at most half a second; a refusal that
//! another try cannot change fails at once. [`ClusterError::is_transient`] tells the caller which
//! failures may pass.
//!
//! When a nats-server dies, every stream and bucket whose Raft leader it held, and the JetStream
//! meta leader if it held that, must elect a new leader, and until then requests to them go
//! unanswered. With nats-server 2.9.10 on loopback the first write to a stream whose leader was
//! killed succeeded 4.2 to 8.5 s after the kill (about 20 kills), so an operation that starts as a
//! server dies may take that long, and [`ClusterConfig::timeout`] must stay well above it.
//! Background tasks (the consumer, the watches, the heartbeat) retry on their own with a bounded
//! backoff for as long as the [`Cluster`] or [`EventLog`] that owns them lives, and stop when it is
//! shut down or dropped. See [`log`] for how a node keeps applying events through a failover, and
//! [`members`] for how writes whose answer was lost are told apart.

#![deny(missing_docs)]

pub mod log;
pub mod members;
mod retry;
#[cfg(feature = "testing")]
pub mod testing;
pub mod timeline;
pub mod version;

use chitty_logs::{CLUSTER, ClusterEvent};
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream;
use thiserror::Error;
use tokio::task::JoinHandle;
use tracing::info;

use chitty_core::{LamportClock, Seq};

pub use log::{AppendStats, Appended, Bounds, EventLog, LogEvent};
pub use members::{
    ClaimError, Ending, Members, Now, SessionEntry, SessionRecord, VanishedSession, Why,
};

/// How a node joins the cluster.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// NATS server URLs (`nats://host:4222`). The client connects to one of them and fails over to the
    /// others, and to any server the cluster tells it about, when its connection breaks.
    pub servers: Vec<String>,
    /// How many JetStream servers keep a copy of the stream and buckets (1 to 5). With 3, the chat goes
    /// on while any one server is down: a write needs a quorum of 2.
    pub replicas: usize,
    /// The stream keeps about this many events: once a node applied twice as many that it still holds,
    /// it cuts the oldest (see "Compaction" in [`log`]).
    pub retain_events: u64,
    /// The stream keeps about this many bytes of events, cut as `retain_events` is.
    pub retain_bytes: u64,
    /// How long a session may be without a Broadcast stream, or on a node that stopped heartbeating,
    /// before it counts as vanished and is announced left.
    pub grace: Duration,
    /// This node's name, unique in the cluster: letters, digits, `-` and `_`, at most 64 bytes.
    pub node_id: String,
    /// The prefix of the stream, subject and bucket names: letters, digits, `-` and `_`, at most 32
    /// bytes. Nodes of one chat share it; tests use a unique one each.
    pub prefix: String,
    /// The bound on each operation that talks to NATS, retries included. Each request within it waits
    /// a tenth of it, between 250 ms and 1 s. It must stay well above a JetStream leader election
    /// (see "Timeouts and failover" in the crate documentation), or operations that start as a
    /// nats-server dies fail.
    pub timeout: Duration,
}

impl ClusterConfig {
    /// A configuration for node `node_id` on `servers`, with the single-node service's defaults for the
    /// rest: 1 replica, 100,000 events and 64 MiB retained, a 5 s grace period, prefix `chitty`, a 10 s
    /// timeout.
    pub fn new(servers: Vec<String>, node_id: impl Into<String>) -> Self {
        Self {
            servers,
            replicas: 1,
            retain_events: 100_000,
            retain_bytes: 64 << 20,
            grace: Duration::from_secs(5),
            node_id: node_id.into(),
            prefix: "chitty".to_owned(),
            timeout: Duration::from_secs(10),
        }
    }

    /// Refuses a configuration NATS would refuse later, or that would make names ambiguous.
    fn validate(&self) -> Result<(), ClusterError> {
        let invalid = |reason: String| Err(ClusterError::Config(reason));
        if self.servers.is_empty() {
            return invalid("no nats server is given".to_owned());
        }
        if !(1..=5).contains(&self.replicas) {
            return invalid(format!("replicas is {}, not 1 to 5", self.replicas));
        }
        if self.retain_events == 0 || self.retain_bytes == 0 {
            return invalid("retention must keep at least one event and one byte".to_owned());
        }
        if self.timeout.is_zero() {
            return invalid("the timeout is zero".to_owned());
        }
        for (what, value, longest) in [("node id", &self.node_id, 64), ("prefix", &self.prefix, 32)]
        {
            if value.is_empty() || value.len() > longest || !value.bytes().all(is_name_byte) {
                return invalid(format!(
                    "the {what} {value:?} must be 1 to {longest} letters, digits, '-' or '_'"
                ));
            }
        }
        Ok(())
    }
}

/// Whether `byte` may appear in a node id or prefix: safe in stream, bucket, subject and key names.
fn is_name_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_'
}

/// What can go wrong between a node and JetStream.
#[derive(Debug, Error)]
pub enum ClusterError {
    /// The configuration cannot work.
    #[error("invalid cluster configuration: {0}")]
    Config(String),
    /// No NATS server could be reached.
    #[error("cannot connect to nats at {servers}: {source}")]
    Connect {
        /// The servers tried, comma-separated.
        servers: String,
        /// Why.
        source: async_nats::ConnectError,
    },
    /// The nats-server connected to is older than [`version::OLDEST_NATS_SERVER`].
    #[error("nats-server {found} is older than {oldest}, the oldest supported: {why}", why = version::WHY_OLDEST)]
    ServerTooOld {
        /// The version the server announced.
        found: semver::Version,
        /// The oldest version supported, [`version::OLDEST_NATS_SERVER`].
        oldest: semver::Version,
    },
    /// The version the nats-server connected to announced is not a version (see [`version::parse`]),
    /// so whether it is supported cannot be told.
    #[error(
        "cannot tell whether nats-server is {oldest} or newer: it announced the version {found:?}, which does not parse: {source}",
        oldest = version::OLDEST_NATS_SERVER
    )]
    ServerVersion {
        /// What the server announced.
        found: String,
        /// Why it does not parse.
        source: semver::Error,
    },
    /// A JetStream request failed or was refused.
    #[error("jetstream failed to {operation}: {source}")]
    JetStream {
        /// What was being done, as a verb phrase ("create the stream").
        operation: &'static str,
        /// The error from the client or the server.
        source: async_nats::Error,
    },
    /// An operation did not finish within [`ClusterConfig::timeout`], retries included.
    #[error("could not {operation} within {timeout:?}")]
    TimedOut {
        /// What was being done.
        operation: &'static str,
        /// The bound that was reached, so an operator can tell a slow cluster from a dead one.
        timeout: Duration,
    },
    /// Other nodes appended first this many times in a row; see [`log::MAX_CONFLICTS`].
    #[error("gave up appending after {conflicts} conflicts with other nodes' appends")]
    Contended {
        /// How many times the expected last sequence was wrong.
        conflicts: u32,
    },
    /// A stored record cannot be decoded: written by an incompatible version, or corrupt.
    #[error("the stored record {what} cannot be decoded: {reason}")]
    Decode {
        /// Which record.
        what: String,
        /// Why.
        reason: String,
    },
    /// Some of the events asked for are no longer retained.
    #[error(
        "events after seq {after_seq} are no longer all retained: the stream holds {} to {}",
        bounds.first_seq, bounds.last_seq
    )]
    OutOfRange {
        /// The seq the read was to continue after.
        after_seq: Seq,
        /// What the stream holds.
        bounds: Bounds,
    },
    /// The event log's consumer stopped, so nothing can be confirmed as applied any more.
    #[error("the event log stopped")]
    Stopped,
    /// The stream lost events that no checkpoint covers, so the times of the events after them cannot
    /// be computed: someone cut the stream by hand, or deleted the checkpoint bucket.
    #[error(
        "the event stream starts at seq {first_seq}, but the Lamport checkpoint covers only up to seq \
         {checkpoint}: the times of the events in between are lost; start the chat afresh with \
         another --nats-prefix"
    )]
    TimesUnknown {
        /// The last seq the checkpoint covers.
        checkpoint: Seq,
        /// The first seq the stream holds.
        first_seq: Seq,
    },
}

impl ClusterError {
    /// Whether the same call may succeed if made again later: it ran out of time (the cluster may
    /// have been electing a leader), NATS failed in a way that passes (no answer, no responders, no
    /// leader, a lost connection), or other nodes kept appending first. A configuration, a nats-server
    /// too old or of an unknown version, a refusal by JetStream, an undecodable record, a range no
    /// longer retained or a stopped log stay as they are.
    pub fn is_transient(&self) -> bool {
        match self {
            ClusterError::TimedOut { .. } | ClusterError::Contended { .. } => true,
            ClusterError::JetStream { source, .. } => !retry::is_permanent(&**source),
            ClusterError::Config(_)
            | ClusterError::Connect { .. }
            | ClusterError::ServerTooOld { .. }
            | ClusterError::ServerVersion { .. }
            | ClusterError::Decode { .. }
            | ClusterError::OutOfRange { .. }
            | ClusterError::Stopped
            | ClusterError::TimesUnknown { .. } => false,
        }
    }

    /// A [`ClusterError::JetStream`] for `operation`.
    pub(crate) fn jetstream(operation: &'static str, source: impl Into<async_nats::Error>) -> Self {
        ClusterError::JetStream {
            operation,
            source: source.into(),
        }
    }
}

/// One node's connection to the cluster. See the crate documentation.
///
/// Dropping it stops the heartbeat and the membership mirror (other nodes then see the node as gone
/// after [`members::NODE_TTL`]); [`Cluster::shutdown`] also tells them at once.
#[derive(Debug)]
pub struct Cluster {
    /// The configuration it was connected with.
    config: ClusterConfig,
    /// The JetStream context every part shares.
    jetstream: jetstream::Context,
    /// The event stream.
    events: jetstream::stream::Stream,
    /// Where the time of the last event cut from the stream is kept.
    checkpoints: jetstream::kv::Store,
    /// Names, sessions and nodes.
    members: Members,
}

impl Cluster {
    /// Connects to NATS and gets or creates the stream and the buckets, then starts the heartbeat and
    /// the membership mirror. Every node may do this at the same time: whoever creates an asset first
    /// wins, and the others use it.
    ///
    /// Refuses a nats-server older than [`version::OLDEST_NATS_SERVER`] with
    /// [`ClusterError::ServerTooOld`], or one whose version does not parse with
    /// [`ClusterError::ServerVersion`], before it creates anything (see [`version`]).
    pub async fn connect(config: ClusterConfig) -> Result<Self, ClusterError> {
        config.validate()?;
        // Each request (and each publish's acknowledgment, below) waits at most the request timeout:
        // while a Raft leader is being elected, requests go unanswered, and a short attempt finds
        // the new leader sooner. Operations retry within `config.timeout` as a whole.
        let client = async_nats::ConnectOptions::new()
            .name(format!("chitty-chat node {}", config.node_id))
            .connection_timeout(config.timeout)
            .request_timeout(Some(request_timeout(config.timeout)))
            .connect(config.servers.as_slice())
            .await
            .map_err(|source| ClusterError::Connect {
                servers: config.servers.join(","),
                source,
            })?;
        let nats_version = version::check(&client.server_info().version)?;
        let jetstream = jetstream::ContextBuilder::new()
            .timeout(request_timeout(config.timeout))
            .build(client);
        let deadline = retry::Deadline::after(config.timeout);
        let events = log::get_or_create_stream(&jetstream, &config, deadline).await?;
        let checkpoints = log::get_or_create_checkpoints(&jetstream, &config, deadline).await?;
        let members = Members::start(&jetstream, &config, deadline).await?;
        info!(
            component = CLUSTER,
            event = ClusterEvent::Connected.as_str(),
            node = %config.node_id,
            prefix = %config.prefix,
            replicas = config.replicas,
            nats_version = %nats_version,
        );
        Ok(Self {
            config,
            jetstream,
            events,
            checkpoints,
            members,
        })
    }

    /// How many times the connection to NATS was made again after it was lost (the client counts
    /// every connect, the first included).
    pub fn nats_reconnects(&self) -> u64 {
        self.jetstream
            .client()
            .statistics()
            .connects
            .load(std::sync::atomic::Ordering::Relaxed)
            .saturating_sub(1)
    }

    /// The shared membership: names, sessions, node liveness.
    pub fn members(&self) -> &Members {
        &self.members
    }

    /// The configuration the node connected with.
    pub fn config(&self) -> &ClusterConfig {
        &self.config
    }

    /// The first and last seq the stream holds now.
    pub async fn bounds(&self) -> Result<Bounds, ClusterError> {
        log::bounds(&self.events, retry::Deadline::after(self.config.timeout)).await
    }

    /// What the stream holds once any cut that the Lamport checkpoint records is done: its first seq
    /// is then the first event whose time a node can compute, where a new node starts applying. See
    /// "Compaction" in [`log`].
    pub async fn settled_bounds(&self) -> Result<Bounds, ClusterError> {
        let deadline = retry::Deadline::after(self.config.timeout);
        Ok(log::settle(&self.events, &self.checkpoints, deadline)
            .await?
            .0)
    }

    /// Starts the node's event log: a consumer that applies every event from `from_seq` on, in order,
    /// by computing its Lamport time, witnessing it on `clock` and then calling `on_event` with it, in
    /// batches of what has arrived together; and the [`EventLog`] handle to append and read with. See
    /// [`log`] for what `on_event` may do.
    ///
    /// `from_seq` is clamped to what the stream holds once any recorded cut is done (see
    /// [`Cluster::settled_bounds`]), at most its last seq + 1. The times of the events between the
    /// checkpoint and `from_seq` are read and computed first, and the clock witnesses the last of them,
    /// so the node never stamps an event below one it did not apply.
    pub async fn start_log<F>(
        &self,
        clock: Arc<LamportClock>,
        from_seq: Seq,
        on_event: F,
    ) -> Result<EventLog, ClusterError>
    where
        F: FnMut(Vec<LogEvent>) + Send + 'static,
    {
        EventLog::start(
            self.jetstream.clone(),
            self.events.clone(),
            self.checkpoints.clone(),
            &self.config,
            clock,
            from_seq,
            on_event,
        )
        .await
    }

    /// Leaves the cluster cleanly: stops the heartbeat and the mirror and deletes the node's heartbeat,
    /// so other nodes start the grace period of its sessions now rather than after
    /// [`members::NODE_TTL`].
    pub async fn shutdown(self) {
        self.members.shutdown().await;
        info!(component = CLUSTER, event = ClusterEvent::Shutdown.as_str(), node = %self.config.node_id);
    }

    /// Like [`Cluster::shutdown`], through a shared handle: the watches stop at once and their tasks
    /// end when the handle is dropped.
    pub async fn stop(&self) {
        self.members.stop().await;
        info!(component = CLUSTER, event = ClusterEvent::Shutdown.as_str(), node = %self.config.node_id);
    }
}

/// How long one request or publish acknowledgment may take: a tenth of the whole operation's bound,
/// between 250 ms and 1 s, so that an operation that outlasts a leader election tries again soon
/// after the new leader is there. An answer normally takes milliseconds.
fn request_timeout(timeout: Duration) -> Duration {
    (timeout / 10)
        .clamp(Duration::from_millis(250), Duration::from_secs(1))
        .min(timeout)
}

/// A background task that is aborted when its owner drops it.
#[derive(Debug)]
struct Task(Option<JoinHandle<()>>);

impl Task {
    /// Spawns `future` on the current runtime.
    fn spawn(future: impl Future<Output = ()> + Send + 'static) -> Self {
        Self(Some(tokio::spawn(future)))
    }

    /// Waits at most `bound` for the task to finish after it was told to stop, then aborts it.
    async fn stop_within(mut self, bound: Duration) {
        if let Some(mut handle) = self.0.take()
            && tokio::time::timeout(bound, &mut handle).await.is_err()
        {
            handle.abort();
        }
    }
}

impl Drop for Task {
    fn drop(&mut self) {
        if let Some(handle) = self.0.take() {
            handle.abort();
        }
    }
}

/// Milliseconds since the Unix epoch by this machine's wall clock (0 if the clock is before 1970).
pub fn wall_clock_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| {
            u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX)
        })
}

/// Lower-case hex of `bytes`: the NATS-safe form of name keys and token hashes.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut out, byte| {
            let _ = write!(out, "{byte:02x}");
            out
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_valid_configuration_passes() {
        let config = ClusterConfig::new(vec!["nats://127.0.0.1:4222".into()], "node-1");
        assert!(config.validate().is_ok());
    }

    #[test]
    fn names_that_nats_would_refuse_are_refused_early() {
        for (node_id, prefix) in [
            ("", "chitty"),
            ("node.1", "chitty"),
            ("node 1", "chitty"),
            ("node-1", "chitty.events"),
            ("node-1", "*"),
            ("node-1", &"p".repeat(33)),
        ] {
            let mut config = ClusterConfig::new(vec!["nats://127.0.0.1:4222".into()], node_id);
            config.prefix = prefix.to_owned();
            let error = config.validate().expect_err("an invalid name was accepted");
            assert!(
                matches!(error, ClusterError::Config(_)),
                "got {error:?}, want a configuration error for {node_id:?} {prefix:?}"
            );
        }
    }

    #[test]
    fn replicas_and_retention_are_bounded() {
        let mut config = ClusterConfig::new(vec!["nats://127.0.0.1:4222".into()], "n");
        config.replicas = 6;
        assert!(config.validate().is_err());
        config.replicas = 3;
        config.retain_events = 0;
        assert!(config.validate().is_err());
    }

    #[test]
    fn hex_is_lower_case_and_two_digits_per_byte() {
        assert_eq!(hex(&[0x00, 0x0f, 0xab]), "000fab");
        assert_eq!(hex(&[]), "");
    }

    #[test]
    fn a_request_gets_a_tenth_of_the_operation_between_a_quarter_second_and_a_second() {
        assert_eq!(
            request_timeout(Duration::from_secs(5)),
            Duration::from_millis(500)
        );
        assert_eq!(
            request_timeout(Duration::from_secs(30)),
            Duration::from_secs(1)
        );
        assert_eq!(
            request_timeout(Duration::from_secs(1)),
            Duration::from_millis(250)
        );
        assert_eq!(
            request_timeout(Duration::from_millis(100)),
            Duration::from_millis(100)
        );
    }
}
