//! The Chitty-Chat service.
//!
//! # Layout
//!
//! - [`hub`]: gives every event its seq and Lamport time, keeps the [`history`], and fans events out to
//!   every open Broadcast stream through bounded queues, cutting off a subscriber that falls behind. It is
//!   the seam behind which a persistent store or a multi-node log will sit.
//! - [`history`]: the bounded ring of recent events that late joiners and reconnecting participants replay.
//! - [`sessions`]: who is present, their names and secret tokens, and whether their stream is open.
//! - [`chat`]: what Join, Publish, Broadcast and Leave mean, with the service's Lamport clock and the log
//!   line of every call. It knows nothing of gRPC.
//! - [`grpc`]: the thin tonic layer: protobuf to domain types and domain errors to status codes.
//! - [`server`]: runs the gRPC server and the task that announces vanished participants, and shuts both
//!   down promptly.

pub mod chat;
pub mod grpc;
pub mod history;
pub mod hub;
pub mod server;
pub mod sessions;

pub use chat::{ChatConfig, ChatService};
pub use hub::HubConfig;
pub use server::{ServeConfig, ServeError, serve};
