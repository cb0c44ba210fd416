//! The Chitty-Chat service.
//!
//! # Layout
//!
//! - [`hub`]: gives every event its seq and Lamport time, has the writer thread commit it to the [`store`]
//!   (group commit), keeps it in the [`history`], and fans it out to every open Broadcast stream through
//!   bounded queues, cutting off a subscriber that falls behind: a single node's sequencer, behind which
//!   its store sits.
//! - [`mailbox`]: a subscriber's bounded queue, filled and drained a batch at a time.
//! - [`store`]: the durable state in an embedded redb database: events, sessions, and the Lamport floor.
//! - [`fanout`]: the history a node holds and its open Broadcast streams, fed a batch at a time by
//!   whatever orders the events.
//! - [`history`]: the retained window of events that late joiners and reconnecting participants replay.
//! - [`sessions`]: who is present, their names and secret tokens, and whether their stream is open.
//! - [`call`]: the call protocol, written once: what Join, Publish, Broadcast, Leave and Participants
//!   mean, with the Lamport rules of every call, the log line of every call, validation, and the limits
//!   on abuse (publish rate, participants, join secret), over a [`call::Backend`]. It knows nothing of
//!   gRPC.
//! - [`chat`]: the single node's backend: sessions and the [`hub`], under one lock.
//! - [`cluster`]: the backend of one node of several sharing one chat through NATS JetStream, on
//!   [`chitty_cluster`]: the shared event log orders and keeps events, KV buckets share names and sessions,
//!   and a local [`fanout`] serves the node's streams.
//! - [`node`]: the seam: [`ChatNode`] is the protocol over either a single node ([`chat`]) or a cluster
//!   node ([`cluster`]), and the gRPC layer and the server see only it.
//! - [`grpc`]: the thin tonic layer: protobuf to domain types and domain errors to status codes, and the
//!   Broadcast body that sends each batch of events as one chunk.
//! - [`metrics`]: the Prometheus metrics of a node, and the HTTP server of `GET /metrics`.
//! - [`server`]: opens the store, runs the gRPC server (with its transport limits and optional TLS) and
//!   the task that announces vanished participants, and shuts all of it down promptly; on the same port
//!   it serves browsers the participant page at `GET /` and gRPC-Web, with CORS when configured.

#![deny(missing_docs)]

pub mod call;
pub mod chat;
pub mod cluster;
pub mod fanout;
pub mod grpc;
pub mod history;
pub mod hub;
pub mod mailbox;
pub mod metrics;
pub mod node;
pub mod server;
pub mod sessions;
pub mod store;

pub use call::{ChatConfig, Rate};
pub use chat::ChatService;
pub use chitty_cluster::ClusterConfig;
pub use cluster::ClusterChat;
pub use history::Retention;
pub use hub::HubConfig;
pub use node::ChatNode;
pub use server::{
    DEFAULT_MAX_STREAMS_PER_CONNECTION, ServeConfig, ServeError, Storage, TlsFiles, WebOrigin,
    serve, serve_with_metrics,
};
