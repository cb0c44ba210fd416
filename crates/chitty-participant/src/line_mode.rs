//! Line mode: every line read is published, every event received is printed as one line.
//!
//! Line mode is the plain front end of the [session engine](crate::session): it feeds the engine the
//! lines read from standard input and prints what the engine reports. Events become the lines of
//! [`crate::output::event_line`]; what happens to the connection becomes a line starting with `---` on the
//! same output; what could not be sent, and what was lost when leaving, goes to the error output. Nothing
//! else is printed, so scripts, tests and the demo can read the output line by line. The terminal UI
//! ([`crate::tui`]) shows the same notices on a full screen instead.

use std::sync::Arc;

use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::input::InputLine;
use crate::output::event_line;
pub use crate::session::{Backoff, ParticipantConfig, ParticipantError};
use crate::session::{Frontend, Notice, Resumption, Session};

/// Joins, then publishes each line from `input` and prints each event to `output`, riding out
/// disconnections, until `input` ends or `shutdown` is cancelled; then leaves. Refused messages are
/// reported on `errors` and the participant carries on.
pub async fn run<O, E>(
    config: ParticipantConfig,
    input: mpsc::Receiver<InputLine>,
    output: O,
    errors: E,
    shutdown: CancellationToken,
) -> Result<(), ParticipantError>
where
    O: AsyncWrite + Unpin + Send,
    E: AsyncWrite + Unpin,
{
    let mut printer = Printer {
        name: config.name.as_str().into(),
        output,
        errors,
    };
    Session::new(config)
        .run(input, &mut printer, shutdown)
        .await
}

/// Line mode's front end: prints each notice as a line, or nothing.
struct Printer<O, E> {
    /// The participant's name, for the rejoined note.
    name: Arc<str>,
    /// Where events and status lines are printed.
    output: O,
    /// Where refusals are reported.
    errors: E,
}

impl<O, E> Frontend for Printer<O, E>
where
    O: AsyncWrite + Unpin + Send,
    E: AsyncWrite + Unpin,
{
    async fn notify(&mut self, notice: Notice) -> Result<(), ParticipantError> {
        match notice {
            Notice::Event { event, own_lamport } => {
                let mut line = event_line(&event, own_lamport);
                line.push('\n');
                self.write(&line).await
            }
            Notice::NotSent { reason } => self.report(&format!("not sent: {reason}")).await,
            Notice::Disconnected {
                reason,
                cut_off: false,
            } => {
                self.write(&format!("--- connection lost: {reason}; reconnecting\n"))
                    .await
            }
            Notice::Reconnected { server, resumption } => {
                let note = match resumption {
                    Resumption::Resumed { after_seq, .. } => {
                        format!("--- reconnected to {server}; resuming after seq {after_seq}\n")
                    }
                    Resumption::Rejoined {
                        join_seq,
                        after_seq,
                    } => format!(
                        "--- the session ended while disconnected; joined again as {} at seq {join_seq}; events after seq {after_seq} before that are not shown\n",
                        self.name
                    ),
                    Resumption::Skipped {
                        first_missing,
                        last,
                    } => format!(
                        "--- the service no longer holds events {first_missing} to {last}; carrying on from the present\n"
                    ),
                };
                self.write(&note).await
            }
            Notice::Unsent { count } => {
                self.report(&format!("{count} typed message(s) were not sent"))
                    .await
            }
            Notice::LeftUnannounced => {
                self.report("left without telling the service, which is unreachable; it will announce the leave after its grace period")
                    .await
            }
            Notice::LeaveFailed { reason } => {
                self.report(&format!("could not leave cleanly: {reason}"))
                    .await
            }
            Notice::Connected { .. }
            | Notice::Presence(_)
            | Notice::Published { .. }
            | Notice::Throttled { .. }
            | Notice::Disconnected { cut_off: true, .. }
            | Notice::Reconnecting { .. }
            | Notice::Left => Ok(()),
        }
    }
}

impl<O, E> Printer<O, E>
where
    O: AsyncWrite + Unpin + Send,
    E: AsyncWrite + Unpin,
{
    async fn write(&mut self, text: &str) -> Result<(), ParticipantError> {
        self.output
            .write_all(text.as_bytes())
            .await
            .map_err(ParticipantError::Output)?;
        self.output.flush().await.map_err(ParticipantError::Output)
    }

    async fn report(&mut self, line: &str) -> Result<(), ParticipantError> {
        self.errors
            .write_all(format!("{line}\n").as_bytes())
            .await
            .map_err(ParticipantError::Output)?;
        self.errors.flush().await.map_err(ParticipantError::Output)
    }
}
