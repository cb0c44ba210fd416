//! Line mode: every line read is published, every event received is printed as one line.
//!
//! The participant runs two tasks that share its Lamport clock:
//!
//! - the **input loop** ([`run`]) publishes each line, one at a time so that the service receives them in
//!   the order they were typed, and on end of input or a shutdown signal it leaves;
//! - the **receiver** reads the Broadcast stream, witnesses each event's Lamport time, and prints the event
//!   with that time and the participant's own clock after receiving it. If the service cuts the stream off
//!   because it was read too slowly, the receiver reopens it from the last seq it printed, so nothing is
//!   missed and nothing is printed twice.
//!
//! Every call and every received event is logged with the participant's name as its `component`.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use chitty_core::LamportClock;
use thiserror::Error;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::client::{ChatClient, ClientError, ErrorKind};
use crate::input::InputLine;
use crate::output::event_line;

/// How long, after its Leave, the participant waits for the events that came before it.
const DRAIN_AFTER_LEAVE: Duration = Duration::from_secs(5);

/// Who to be and where to connect.
#[derive(Debug, Clone)]
pub struct ParticipantConfig {
    /// The service's address, such as `http://127.0.0.1:50051`.
    pub server: String,
    /// The name to join under.
    pub name: String,
    /// How long to try reaching the service before giving up.
    pub connect_timeout: Duration,
}

/// Why a participant stopped other than by leaving as asked.
#[derive(Debug, Error)]
pub enum ParticipantError {
    /// The service could not be reached.
    #[error("{0}")]
    Connect(ClientError),
    /// The service refused the Join.
    #[error("could not join as {name:?}: {error}")]
    Join {
        /// The name asked for.
        name: String,
        /// Why the service refused.
        error: ClientError,
    },
    /// The chat ended for this participant before it chose to leave.
    #[error("the chat ended for this participant: {0}")]
    Lost(ClientError),
    /// The Leave call failed.
    #[error("could not leave cleanly: {0}")]
    Leave(ClientError),
    /// Printing failed.
    #[error("cannot write the chat to the output: {0}")]
    Output(io::Error),
    /// The receiver task failed unexpectedly.
    #[error("the receiver stopped unexpectedly: {0}")]
    Receiver(String),
}

/// Joins, then publishes each line from `input` and prints each event to `output`, until `input` ends or
/// `shutdown` is cancelled; then leaves. Refused messages are reported on `errors` and the participant
/// carries on.
pub async fn run<O, E>(
    config: ParticipantConfig,
    mut input: mpsc::Receiver<InputLine>,
    output: O,
    mut errors: E,
    shutdown: CancellationToken,
) -> Result<(), ParticipantError>
where
    O: AsyncWrite + Unpin + Send + 'static,
    E: AsyncWrite + Unpin,
{
    let name: Arc<str> = config.name.as_str().into();
    let clock = Arc::new(LamportClock::new());
    info!(component = %name, event = "connect", server = %config.server);
    let mut client = ChatClient::connect(&config.server, config.connect_timeout)
        .await
        .map_err(ParticipantError::Connect)?;

    let sent = clock.tick();
    info!(component = %name, event = "join_sent", lamport = sent);
    let joined = client.join(&name, sent).await.map_err(|error| {
        witness_error(&clock, &error);
        ParticipantError::Join {
            name: config.name.clone(),
            error,
        }
    })?;
    let now = clock.witness(joined.lamport);
    info!(
        component = %name,
        event = "join_ok",
        seq = joined.seq,
        response_lamport = joined.lamport,
        lamport = now,
    );

    let mut receiver: JoinHandle<Result<(), ParticipantError>> = tokio::spawn(receive(
        client.clone(),
        Arc::clone(&clock),
        Arc::clone(&name),
        output,
    ));

    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            finished = &mut receiver => {
                // The stream ended although this participant did not leave.
                return Err(match finished {
                    Ok(Ok(())) => ParticipantError::Lost(ClientError {
                        kind: ErrorKind::Other,
                        message: "the service ended the Broadcast stream".to_owned(),
                        lamport: None,
                    }),
                    Ok(Err(error)) => error,
                    Err(failed) => ParticipantError::Receiver(failed.to_string()),
                });
            }
            line = input.recv() => match line {
                None => break,
                Some(Err(not_utf8)) => report(&mut errors, &format!("not sent: {not_utf8}")).await?,
                Some(Ok(text)) => publish(&mut client, &clock, &name, &text, &mut errors).await?,
            },
        }
    }

    let sent = clock.tick();
    info!(component = %name, event = "leave_sent", lamport = sent);
    match client.leave(sent).await {
        Ok(reply) => {
            let now = clock.witness(reply.lamport);
            info!(
                component = %name,
                event = "leave_ok",
                seq = reply.seq,
                response_lamport = reply.lamport,
                lamport = now,
            );
        }
        Err(error) => {
            witness_error(&clock, &error);
            receiver.abort();
            return Err(ParticipantError::Leave(error));
        }
    }

    // The service ends the stream cleanly once the events before the leave are delivered.
    match tokio::time::timeout(DRAIN_AFTER_LEAVE, &mut receiver).await {
        Ok(Ok(Ok(()))) => {}
        Ok(Ok(Err(error))) => warn!(component = %name, event = "broadcast_end", reason = %error),
        Ok(Err(failed)) => warn!(component = %name, event = "broadcast_end", reason = %failed),
        Err(_) => {
            warn!(
                component = %name,
                event = "broadcast_end",
                reason = "the stream did not end after the leave; closing it",
            );
            receiver.abort();
        }
    }
    Ok(())
}

/// Publishes one line. A refusal is reported and the participant carries on; any other failure ends it.
async fn publish<E: AsyncWrite + Unpin>(
    client: &mut ChatClient,
    clock: &LamportClock,
    name: &str,
    text: &str,
    errors: &mut E,
) -> Result<(), ParticipantError> {
    let sent = clock.tick();
    info!(
        component = name,
        event = "publish_sent",
        lamport = sent,
        chars = text.chars().count(),
    );
    match client.publish(text, sent).await {
        Ok(reply) => {
            let now = clock.witness(reply.lamport);
            info!(
                component = name,
                event = "publish_ok",
                seq = reply.seq,
                response_lamport = reply.lamport,
                lamport = now,
            );
            Ok(())
        }
        Err(error) if error.kind == ErrorKind::Refused => {
            let now = witness_error(clock, &error);
            info!(
                component = name,
                event = "publish_refused",
                reason = %error,
                response_lamport = error.lamport,
                lamport = now,
            );
            report(errors, &format!("not sent: {error}")).await
        }
        Err(error) => {
            witness_error(clock, &error);
            Err(ParticipantError::Lost(error))
        }
    }
}

/// Reads the Broadcast stream and prints every event, resuming after a cut-off.
async fn receive<O: AsyncWrite + Unpin>(
    mut client: ChatClient,
    clock: Arc<LamportClock>,
    name: Arc<str>,
    mut output: O,
) -> Result<(), ParticipantError> {
    // 0 asks for everything from this participant's own join event on.
    let mut last_seq = 0;
    loop {
        let sent = clock.tick();
        info!(component = %name, event = "broadcast_open", after_seq = last_seq, lamport = sent);
        let mut stream = client.broadcast(last_seq, sent).await.map_err(|error| {
            witness_error(&clock, &error);
            ParticipantError::Lost(error)
        })?;
        loop {
            match stream.next().await {
                Ok(Some(event)) => {
                    let now = clock.witness(event.lamport);
                    last_seq = event.seq;
                    info!(
                        component = %name,
                        event = "receive",
                        seq = event.seq,
                        kind = %event.kind,
                        participant = %event.participant,
                        event_lamport = event.lamport,
                        lamport = now,
                        text = %event.text,
                    );
                    let mut line = event_line(&event, now);
                    line.push('\n');
                    output
                        .write_all(line.as_bytes())
                        .await
                        .map_err(ParticipantError::Output)?;
                    output.flush().await.map_err(ParticipantError::Output)?;
                }
                Ok(None) => {
                    info!(component = %name, event = "broadcast_end", reason = "left");
                    return Ok(());
                }
                Err(error) if error.kind == ErrorKind::FellBehind => {
                    witness_error(&clock, &error);
                    warn!(
                        component = %name,
                        event = "broadcast_end",
                        reason = %error,
                        resume_after_seq = last_seq,
                    );
                    break;
                }
                Err(error) => {
                    witness_error(&clock, &error);
                    return Err(ParticipantError::Lost(error));
                }
            }
        }
    }
}

/// Witnesses the Lamport time on an error, if the service sent one; returns the clock after.
fn witness_error(clock: &LamportClock, error: &ClientError) -> u64 {
    match error.lamport {
        Some(lamport) => clock.witness(lamport),
        None => clock.now(),
    }
}

async fn report<E: AsyncWrite + Unpin>(errors: &mut E, line: &str) -> Result<(), ParticipantError> {
    errors
        .write_all(format!("{line}\n").as_bytes())
        .await
        .map_err(ParticipantError::Output)?;
    errors.flush().await.map_err(ParticipantError::Output)
}
