//! A Chitty-Chat participant.
//!
//! # Layout
//!
//! - [`client`]: the gRPC client, the only module that knows tonic. Calls in, domain types and classified
//!   errors out.
//! - [`line_mode`]: the participant itself: join, publish each input line, print each received event with
//!   both Lamport times, and leave at the end of input or on a signal.
//! - [`input`]: reads standard input on a thread of its own.
//! - [`output`]: the one-line format of a received event, and its parser for tests and scripts.

pub mod client;
pub mod input;
pub mod line_mode;
pub mod output;

pub use line_mode::{ParticipantConfig, ParticipantError, run};
