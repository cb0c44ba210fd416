//! The `chitty-chat` binary's library: the command line and everything the binary does beyond the
//! service and participant crates.
//!
//! # Layout
//!
//! - [`cli`]: the commands (`serve`, `join`, `demo`, `top` and the rest) and their flags. `main.rs`
//!   only calls [`cli::run`].
//! - [`logging`]: text or JSON log lines, to standard error or a file.
//! - [`demo`]: the whole assignment demonstrated with real processes, and checked.
//! - [`harness`]: starting and driving real `chitty-chat` processes, for the demo and the tests.
//! - [`script`]: scripted participants, for containers: messages from flags or a file, paced.

#![deny(missing_docs)]

pub mod cli;
pub mod demo;
pub mod harness;
pub mod logging;
pub mod script;
