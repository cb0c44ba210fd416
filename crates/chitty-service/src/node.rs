//! The seam between the calls and where the chat lives: one node with its own store, or one node of a
//! cluster sharing the chat through NATS JetStream.
//!
//! [`ChatNode`] answers every call the gRPC layer makes, and hands it to the call protocol
//! ([`crate::call::Chat`]) over the backend this process runs: [`ChatService`] or [`ClusterChat`].
//! Neither the gRPC layer nor the server's tasks know which one runs. Each call is one `match` here,
//! after which the protocol runs with direct calls to its backend. What is not a call (the sweep,
//! health, shutdown) goes to the backend itself.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use chitty_core::{LamportTime, Seq};

use crate::call::{Credential, Done, Joined, Presence, Refused};
use crate::chat::ChatService;
use crate::cluster::ClusterChat;
use crate::fanout::Subscription;
use crate::metrics::{EventKind, KindLabels, Metrics, NodeSnapshot};

/// One Chitty-Chat service node. See the module documentation.
#[derive(Debug)]
#[allow(
    clippy::large_enum_variant,
    reason = "one value per process, behind an Arc: boxing a variant would save nothing"
)]
pub enum ChatNode {
    /// The chat lives on this node alone, in its embedded store.
    Single(ChatService),
    /// The chat is shared with other nodes through NATS JetStream.
    Cluster(ClusterChat),
}

impl ChatNode {
    /// Join: admits `name` and broadcasts its joined event.
    pub async fn join(
        &self,
        name: &str,
        join_secret: &str,
        peer: Option<IpAddr>,
        request_lamport: LamportTime,
    ) -> Result<Joined, Refused> {
        match self {
            ChatNode::Single(chat) => chat.join(name, join_secret, peer, request_lamport).await,
            ChatNode::Cluster(chat) => chat.join(name, join_secret, peer, request_lamport).await,
        }
    }

    /// Publish: broadcasts a message once it is durable.
    pub async fn publish(
        &self,
        credential: Credential<'_>,
        text: &str,
        idempotency_key: &str,
        request_lamport: LamportTime,
    ) -> Result<Done, Refused> {
        match self {
            ChatNode::Single(chat) => {
                chat.publish(credential, text, idempotency_key, request_lamport)
                    .await
            }
            ChatNode::Cluster(chat) => {
                chat.publish(credential, text, idempotency_key, request_lamport)
                    .await
            }
        }
    }

    /// Leave: ends the session and broadcasts its left event to the others.
    pub async fn leave(
        &self,
        credential: Credential<'_>,
        request_lamport: LamportTime,
    ) -> Result<Done, Refused> {
        match self {
            ChatNode::Single(chat) => chat.leave(credential, request_lamport).await,
            ChatNode::Cluster(chat) => chat.leave(credential, request_lamport).await,
        }
    }

    /// Broadcast: opens the session's stream of events after `after_seq`.
    pub async fn open_stream(
        &self,
        credential: Credential<'_>,
        after_seq: Seq,
        request_lamport: LamportTime,
    ) -> Result<Subscription, Refused> {
        match self {
            ChatNode::Single(chat) => {
                chat.open_stream(credential, after_seq, request_lamport)
                    .await
            }
            ChatNode::Cluster(chat) => {
                chat.open_stream(credential, after_seq, request_lamport)
                    .await
            }
        }
    }

    /// Participants: who is present, as of a seq.
    pub async fn participants(
        &self,
        credential: Credential<'_>,
        request_lamport: LamportTime,
    ) -> Result<Presence, Refused> {
        match self {
            ChatNode::Single(chat) => chat.participants(credential, request_lamport).await,
            ChatNode::Cluster(chat) => chat.participants(credential, request_lamport).await,
        }
    }

    /// A fresh timestamp for a message that is not the answer to a call; `None` if the node has
    /// stopped and can no longer stamp safely.
    pub async fn stamp(&self) -> Option<LamportTime> {
        match self {
            ChatNode::Single(chat) => chat.stamp().await,
            ChatNode::Cluster(chat) => chat.stamp().await,
        }
    }

    /// The grace period after which a session without an open stream is announced as left.
    pub fn grace(&self) -> Duration {
        match self {
            ChatNode::Single(chat) => chat.backend().grace(),
            ChatNode::Cluster(chat) => chat.backend().grace(),
        }
    }

    /// Announces as left every session that vanished for the grace period; returns how many.
    pub async fn expire_vanished(&self) -> usize {
        let ended = match self {
            ChatNode::Single(chat) => chat.expire_vanished(),
            ChatNode::Cluster(chat) => chat.expire_vanished().await,
        };
        if ended > 0 {
            self.metrics()
                .events_appended
                .get_or_create(&KindLabels {
                    kind: EventKind::left,
                })
                .inc_by(ended as u64);
        }
        ended
    }

    /// Ends every Broadcast stream with "shutting down" and accepts no more events.
    pub fn shutdown(&self) {
        match self {
            ChatNode::Single(chat) => chat.backend().shutdown(),
            ChatNode::Cluster(chat) => chat.backend().shutdown(),
        }
    }

    /// Waits until what was accepted before [`ChatNode::shutdown`] is safe: on disk, or for a cluster
    /// node, until it has left the cluster.
    pub async fn flushed(&self) {
        match self {
            ChatNode::Single(chat) => chat.backend().flushed().await,
            ChatNode::Cluster(chat) => chat.backend().flushed().await,
        }
    }

    /// The seq of the newest event this node holds.
    pub fn last_seq(&self) -> Seq {
        match self {
            ChatNode::Single(chat) => chat.backend().last_seq(),
            ChatNode::Cluster(chat) => chat.backend().last_seq(),
        }
    }

    /// Whether the node can serve calls now: always for a single node; for a cluster node, while
    /// JetStream stores its writes (see [`crate::cluster::ClusterNode::reachable`]).
    pub fn serving(&self) -> bool {
        match self {
            ChatNode::Single(_) => true,
            ChatNode::Cluster(chat) => chat.backend().reachable(),
        }
    }

    /// The node's metrics, which `/metrics` serves.
    pub fn metrics(&self) -> &Arc<Metrics> {
        match self {
            ChatNode::Single(chat) => chat.metrics(),
            ChatNode::Cluster(chat) => chat.metrics(),
        }
    }

    /// What the node holds now, for a scrape of its metrics.
    pub fn snapshot(&self) -> NodeSnapshot {
        match self {
            ChatNode::Single(chat) => chat.backend().snapshot(),
            ChatNode::Cluster(chat) => chat.backend().snapshot(),
        }
    }

    /// How many participants are present.
    pub fn present(&self) -> usize {
        match self {
            ChatNode::Single(chat) => chat.backend().present(),
            ChatNode::Cluster(chat) => chat.backend().present(),
        }
    }
}
