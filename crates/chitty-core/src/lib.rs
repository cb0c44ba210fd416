//! The pure core of Chitty-Chat.
//!
//! Everything here is plain data and arithmetic: it performs no I/O, spawns no tasks and cannot fail for
//! network reasons, so it is tested exhaustively, with property tests where the input space is large.
//!
//! # Layout
//!
//! - [`lamport`]: the one Lamport clock type every node uses, the service and every participant, and the
//!   [`LamportTime`] it hands out.
//! - [`validate`]: what makes a participant name and a chat message acceptable, with errors that say why.
//! - [`event`]: the events the service orders and broadcasts (joined, message, left), and the exact
//!   sentences the assignment prescribes for joins and leaves, and the [`Seq`] that places an event in
//!   the order.
//! - [`token`]: the hash of a session token, the one form in which the service keeps and shares tokens.

#![deny(missing_docs)]

pub mod event;
pub mod lamport;
pub mod token;
pub mod validate;

pub use event::{Event, EventDraft, EventKind, Seq};
pub use lamport::{LamportClock, LamportTime};
pub use token::TokenHash;
