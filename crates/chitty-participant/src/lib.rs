//! A Chitty-Chat participant.
//!
//! # Layout
//!
//! - [`client`]: the gRPC client, the only module that knows tonic. Calls in, domain types and classified
//!   errors out.
//! - [`line_mode`]: the participant itself, an explicit connection state machine: join, publish each input
//!   line through an outbox with idempotency keys, print each received event with both Lamport times,
//!   reconnect with backoff and resume after the last seq printed, and leave at the end of input or on a
//!   signal.
//! - [`input`]: reads standard input on a thread of its own.
//! - [`output`]: the one-line format of a received event, and its parser for tests and scripts.

pub mod client;
pub mod input;
pub mod line_mode;
pub mod output;

pub use client::Connection;
pub use line_mode::{Backoff, ParticipantConfig, ParticipantError, run};
