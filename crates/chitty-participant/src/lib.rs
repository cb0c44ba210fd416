//! A Chitty-Chat participant.
//!
//! # Layout
//!
//! - [`client`]: the gRPC client, the only module that knows tonic. Calls in, domain types and classified
//!   errors out.
//! - [`session`]: the engine every front end shares, an explicit connection state machine: join, publish
//!   each command through an outbox with idempotency keys, report each received event with both Lamport
//!   times, reconnect with backoff and resume after the last seq reported, and leave. It reports what
//!   happens as typed [`Notice`]s to a [`Frontend`] and knows nothing about screens.
//! - [`line_mode`]: the plain front end: publishes each input line, prints each event as one line, and
//!   leaves at the end of input or on a signal.
//! - [`tui`]: the full-screen front end for a terminal: a message pane, who is present, an input line and
//!   a status line. Its rendering is pure and tested apart from the terminal.
//! - [`input`]: reads standard input on a thread of its own.
//! - [`output`]: the one-line format of a received event, its escaping, and its parser for tests and
//!   scripts.

#![deny(missing_docs)]

pub mod client;
pub mod input;
pub mod line_mode;
pub mod output;
pub mod session;
pub mod tui;

pub use client::Connection;
pub use line_mode::run;
pub use session::{
    Backoff, Command, Frontend, Notice, ParticipantConfig, ParticipantError, Resumption, Session,
};
pub use tui::run_tui;
