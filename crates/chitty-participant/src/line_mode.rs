//! Line mode: every line read is published, every event received is printed as one line.
//!
//! The participant is one task driving an explicit connection state machine ([`Link`]): it is either
//! **up**, with a client and an open Broadcast stream, or **down**, waiting for its next reconnection
//! attempt. Around it:
//!
//! - Lines read go into an **outbox**. The front message is published when the link is up, one at a time
//!   so that the service receives them in the order they were typed, each with an idempotency key chosen
//!   when it was typed, so a retry after a lost response is never published twice. While the link is down
//!   the outbox keeps what the user types and sends it once back.
//! - Events received are witnessed by the Lamport clock and printed with the event's time and the
//!   participant's own clock after receiving it. The participant remembers the last seq it printed and
//!   never prints a seq twice.
//! - When the connection breaks, or the service restarts, the link goes down and reconnection is tried
//!   with exponential backoff and jitter, on the next service address each time. A reconnection resumes
//!   the session with the last seq printed, so the replay bridges the gap exactly. If the session ended
//!   meanwhile, the participant joins again; if the service no longer holds what was missed, it says so and
//!   carries on from the present. Either way a line starting with `---` says what happened.
//! - End of input leaves once the outbox is empty; a shutdown signal leaves at once.
//!
//! Joining the first time is not retried: a participant that cannot reach its service at all says so and
//! exits, since that is usually a wrong address rather than a passing fault.

use std::collections::VecDeque;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use chitty_core::{Event, LamportClock};
use thiserror::Error;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::client::{ChatClient, ClientError, Connection, ErrorKind, EventStream, Reply};
use crate::input::InputLine;
use crate::output::event_line;

/// How long, after its Leave, the participant waits for the events that came before it.
const DRAIN_AFTER_LEAVE: Duration = Duration::from_secs(5);

/// How many typed messages may wait to be published; past it, reading input pauses.
const OUTBOX_LIMIT: usize = 1000;

/// Who to be and where to connect.
#[derive(Debug, Clone)]
pub struct ParticipantConfig {
    /// The service addresses, such as `http://127.0.0.1:50051`; reconnection tries them in turn.
    pub servers: Vec<String>,
    /// The name to join under.
    pub name: String,
    /// How to reach a service.
    pub connection: Connection,
    /// The service's join secret, or empty.
    pub join_secret: String,
    /// How long to keep trying to reconnect before giving up.
    pub reconnect_for: Duration,
    /// The delays between reconnection attempts.
    pub backoff: Backoff,
}

/// Why a participant stopped other than by leaving as asked.
#[derive(Debug, Error)]
pub enum ParticipantError {
    /// No service address was given.
    #[error("no service address given")]
    NoServer,
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
    /// The chat ended for this participant and cannot be resumed.
    #[error("the chat ended for this participant: {0}")]
    Lost(ClientError),
    /// Reconnection kept failing for too long.
    #[error("gave up reconnecting after {} s: {last_error}", .after.as_secs())]
    GaveUp {
        /// How long it tried.
        after: Duration,
        /// The last reason it failed.
        last_error: ClientError,
    },
    /// Printing failed.
    #[error("cannot write the chat to the output: {0}")]
    Output(io::Error),
}

/// Exponential backoff with jitter: attempt `n` waits between half and all of `initial * 2^n`, capped at
/// `max`, so that many participants reconnecting after one restart spread out instead of arriving at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// The base delay of the first retry.
    pub initial: Duration,
    /// The largest base delay.
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(5),
        }
    }
}

impl Backoff {
    /// The delay before retry number `attempt` (0 for the first), with `jitter` drawn from 0 to 1.
    pub fn delay(&self, attempt: u32, jitter: f64) -> Duration {
        let base = self
            .initial
            .saturating_mul(2u32.saturating_pow(attempt.min(20)))
            .min(self.max);
        base / 2 + base.mul_f64(jitter.clamp(0.0, 1.0) / 2.0)
    }
}

/// A message typed but not yet acknowledged by the service.
#[derive(Debug, Clone)]
struct Outgoing {
    /// The text.
    text: String,
    /// Chosen when typed and kept across retries, so the service publishes it once.
    key: String,
}

/// The connection state. One value of it lives for the whole session, so its size does not matter.
#[allow(clippy::large_enum_variant)]
enum Link {
    /// Connected, with the Broadcast stream open.
    Up {
        /// The client, carrying the session token.
        client: ChatClient,
        /// The open stream.
        stream: EventStream,
    },
    /// Not connected; the next attempt is due at `retry_at`.
    Down {
        /// Since when.
        since: Instant,
        /// How many attempts failed so far.
        attempt: u32,
        /// When to try next.
        retry_at: Instant,
    },
}

/// How a reconnection went.
enum Resumption {
    /// The session was resumed after the last seq printed.
    Resumed,
    /// The session had ended; the participant joined again, with this join seq.
    Rejoined(u64),
    /// The service no longer held what was missed; the stream goes on after this seq.
    Skipped(u64),
}

type Pending<T> = Option<Pin<Box<dyn Future<Output = T> + Send>>>;

/// What woke the participant up.
enum Step {
    Shutdown,
    Input(Option<InputLine>),
    Published(Result<Reply, ClientError>),
    Received(Result<Option<Event>, ClientError>),
    RetryDue,
    Reconnected(Box<Result<(ChatClient, EventStream, Resumption), ClientError>>),
    PauseOver,
}

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
    let Some(first_server) = config.servers.first().cloned() else {
        return Err(ParticipantError::NoServer);
    };
    let mut participant = Participant {
        name: config.name.as_str().into(),
        clock: Arc::new(LamportClock::new()),
        config,
        output,
        errors,
        last_seq: 0,
        token: String::new(),
        outbox: VecDeque::new(),
        server_index: 0,
    };
    info!(component = %participant.name, event = "connect", server = %first_server);
    let mut client = ChatClient::connect(&first_server, &participant.config.connection)
        .await
        .map_err(ParticipantError::Connect)?;
    let joined = participant
        .join(&mut client)
        .await
        .map_err(|error| ParticipantError::Join {
            name: participant.config.name.clone(),
            error,
        })?;
    let stream = participant
        .open_stream(&mut client, 0)
        .await
        .map_err(ParticipantError::Lost)?;
    info!(component = %participant.name, event = "joined", seq = joined.seq);
    let link = Link::Up { client, stream };
    participant.chat(link, input, shutdown).await
}

struct Participant<O, E> {
    /// Who to be and where to connect.
    config: ParticipantConfig,
    /// The name, for log lines.
    name: Arc<str>,
    /// The participant's Lamport clock.
    clock: Arc<LamportClock>,
    /// Where events and status lines are printed.
    output: O,
    /// Where refusals are reported.
    errors: E,
    /// The seq of the last event printed.
    last_seq: u64,
    /// The session token.
    token: String,
    /// Messages typed and not yet acknowledged, oldest first.
    outbox: VecDeque<Outgoing>,
    /// Which service address is in use.
    server_index: usize,
}

impl<O, E> Participant<O, E>
where
    O: AsyncWrite + Unpin + Send,
    E: AsyncWrite + Unpin,
{
    /// The main loop: everything between joining and leaving.
    async fn chat(
        &mut self,
        mut link: Link,
        mut input: mpsc::Receiver<InputLine>,
        shutdown: CancellationToken,
    ) -> Result<(), ParticipantError> {
        let mut input_open = true;
        let mut publishing: Pending<Result<Reply, ClientError>> = None;
        let mut reconnecting: Pending<Result<(ChatClient, EventStream, Resumption), ClientError>> =
            None;
        let mut paused_until: Option<Instant> = None;

        loop {
            if let (Link::Up { client, .. }, None, None, Some(outgoing)) =
                (&link, &publishing, paused_until, self.outbox.front())
            {
                publishing = Some(self.publish(client.clone(), outgoing.clone()));
            }
            // At the end of input, leave once everything typed is sent; with the service unreachable
            // there is nobody to say goodbye to, and it announces the leave itself after its grace period.
            if !input_open && self.outbox.is_empty() && publishing.is_none() {
                break;
            }
            let retry_at = match &link {
                Link::Down { retry_at, .. } if reconnecting.is_none() => Some(*retry_at),
                _ => None,
            };
            let step = tokio::select! {
                () = shutdown.cancelled() => Step::Shutdown,
                line = input.recv(), if input_open && self.outbox.len() < OUTBOX_LIMIT => Step::Input(line),
                result = poll(&mut publishing) => Step::Published(result),
                received = next_event(&mut link), if reconnecting.is_none() => Step::Received(received),
                () = sleep_until(retry_at) => Step::RetryDue,
                result = poll(&mut reconnecting) => Step::Reconnected(Box::new(result)),
                () = sleep_until(paused_until) => Step::PauseOver,
            };
            match step {
                Step::Shutdown => break,
                Step::Input(None) => input_open = false,
                Step::Input(Some(Err(not_utf8))) => {
                    self.report(&format!("not sent: {not_utf8}")).await?;
                }
                Step::Input(Some(Ok(text))) => self.outbox.push_back(Outgoing {
                    text,
                    key: new_key(),
                }),
                Step::Published(result) => {
                    publishing = None;
                    match self.published(result).await? {
                        AfterPublish::Next => {}
                        AfterPublish::Pause(delay) => paused_until = Some(Instant::now() + delay),
                        AfterPublish::LinkLost(reason) => {
                            link = self.lost(link, reason, false).await?
                        }
                    }
                }
                Step::PauseOver => paused_until = None,
                Step::Received(Ok(Some(event))) => self.print(&event).await?,
                Step::Received(Ok(None)) => {
                    let reason = ClientError {
                        kind: ErrorKind::Unreachable,
                        message: "the service ended the Broadcast stream".to_owned(),
                        lamport: None,
                        last_seq: None,
                        retry_after: None,
                    };
                    link = self.lost(link, reason, false).await?;
                }
                Step::Received(Err(error)) => {
                    self.witness_error(&error);
                    match error.kind {
                        ErrorKind::Replaced => return Err(ParticipantError::Lost(error)),
                        // Cut off for reading too slowly: reopen at once, from the last seq printed.
                        ErrorKind::FellBehind => link = self.lost(link, error, true).await?,
                        _ => link = self.lost(link, error, false).await?,
                    }
                }
                Step::RetryDue => {
                    let server = self.next_server();
                    info!(component = %self.name, event = "reconnect_attempt", server = %server, after_seq = self.last_seq);
                    reconnecting = Some(Box::pin(reconnect(
                        server,
                        self.config.connection.clone(),
                        self.token.clone(),
                        Arc::clone(&self.name),
                        self.config.join_secret.clone(),
                        self.last_seq,
                        Arc::clone(&self.clock),
                    )));
                }
                Step::Reconnected(result) => {
                    reconnecting = None;
                    link = self.reconnected(link, *result).await?;
                }
            }
        }
        self.leave(link).await
    }

    /// Joins with `client`, keeping the session token.
    async fn join(&mut self, client: &mut ChatClient) -> Result<Reply, ClientError> {
        let sent = self.clock.tick();
        info!(component = %self.name, event = "join_sent", lamport = sent);
        let reply = client
            .join(&self.name, &self.config.join_secret, sent)
            .await
            .inspect_err(|error| {
                self.witness_error(error);
            })?;
        let now = self.clock.witness(reply.lamport);
        info!(
            component = %self.name,
            event = "join_ok",
            seq = reply.seq,
            response_lamport = reply.lamport,
            lamport = now,
        );
        self.token = client.token().unwrap_or_default().to_owned();
        Ok(reply)
    }

    /// Opens the Broadcast stream after `after_seq`.
    async fn open_stream(
        &self,
        client: &mut ChatClient,
        after_seq: u64,
    ) -> Result<EventStream, ClientError> {
        open_stream(client, &self.name, &self.clock, after_seq).await
    }

    /// Starts publishing one message.
    fn publish(
        &self,
        mut client: ChatClient,
        outgoing: Outgoing,
    ) -> Pin<Box<dyn Future<Output = Result<Reply, ClientError>> + Send>> {
        let sent = self.clock.tick();
        info!(
            component = %self.name,
            event = "publish_sent",
            lamport = sent,
            chars = outgoing.text.chars().count(),
        );
        Box::pin(async move { client.publish(&outgoing.text, &outgoing.key, sent).await })
    }

    /// Handles the answer to a publish.
    async fn published(
        &mut self,
        result: Result<Reply, ClientError>,
    ) -> Result<AfterPublish, ParticipantError> {
        let error = match result {
            Ok(reply) => {
                let now = self.clock.witness(reply.lamport);
                info!(
                    component = %self.name,
                    event = "publish_ok",
                    seq = reply.seq,
                    response_lamport = reply.lamport,
                    lamport = now,
                );
                self.outbox.pop_front();
                return Ok(AfterPublish::Next);
            }
            Err(error) => error,
        };
        let now = self.witness_error(&error);
        match error.kind {
            ErrorKind::Unreachable | ErrorKind::ServiceStopping | ErrorKind::SessionEnded => {
                // Kept in the outbox, and sent again with the same key once reconnected.
                Ok(AfterPublish::LinkLost(error))
            }
            ErrorKind::RateLimited => {
                let delay = error.retry_after.unwrap_or(Duration::from_millis(100));
                info!(
                    component = %self.name,
                    event = "publish_throttled",
                    reason = %error,
                    retry_after_ms = delay.as_millis() as u64,
                    lamport = now,
                );
                Ok(AfterPublish::Pause(delay))
            }
            _ => {
                info!(
                    component = %self.name,
                    event = "publish_refused",
                    reason = %error,
                    response_lamport = error.lamport,
                    lamport = now,
                );
                self.outbox.pop_front();
                self.report(&format!("not sent: {error}")).await?;
                Ok(AfterPublish::Next)
            }
        }
    }

    /// Prints an event, unless it was printed already.
    async fn print(&mut self, event: &Event) -> Result<(), ParticipantError> {
        let now = self.clock.witness(event.lamport);
        if event.seq <= self.last_seq {
            return Ok(());
        }
        self.last_seq = event.seq;
        info!(
            component = %self.name,
            event = "receive",
            seq = event.seq,
            kind = %event.kind,
            participant = %event.participant,
            event_lamport = event.lamport,
            lamport = now,
            text = %event.text,
        );
        let mut line = event_line(event, now);
        line.push('\n');
        self.write(&line).await
    }

    /// The link broke for `reason`: report it and schedule a reconnection, at once or after a backoff.
    async fn lost(
        &mut self,
        link: Link,
        reason: ClientError,
        at_once: bool,
    ) -> Result<Link, ParticipantError> {
        let now = Instant::now();
        let (since, attempt) = match link {
            Link::Up { .. } => {
                warn!(component = %self.name, event = "disconnected", reason = %reason, last_seq = self.last_seq);
                if !at_once {
                    self.write(&format!("--- connection lost: {reason}; reconnecting\n"))
                        .await?;
                }
                (now, 0)
            }
            Link::Down { since, attempt, .. } => (since, attempt + 1),
        };
        if now.saturating_duration_since(since) >= self.config.reconnect_for {
            return Err(ParticipantError::GaveUp {
                after: now.saturating_duration_since(since),
                last_error: reason,
            });
        }
        let delay = if at_once {
            Duration::ZERO
        } else {
            self.config.backoff.delay(attempt, rand::random::<f64>())
        };
        Ok(Link::Down {
            since,
            attempt,
            retry_at: now + delay,
        })
    }

    /// Handles the outcome of a reconnection attempt.
    async fn reconnected(
        &mut self,
        link: Link,
        result: Result<(ChatClient, EventStream, Resumption), ClientError>,
    ) -> Result<Link, ParticipantError> {
        let (client, stream, resumption) = match result {
            Ok(reconnected) => reconnected,
            Err(error) => {
                self.witness_error(&error);
                info!(component = %self.name, event = "reconnect_failed", reason = %error);
                return match error.kind {
                    ErrorKind::NameTaken | ErrorKind::Replaced => {
                        Err(ParticipantError::Lost(error))
                    }
                    _ => self.lost(link, error, false).await,
                };
            }
        };
        if let Some(token) = client.token() {
            self.token = token.to_owned();
        }
        let note = match resumption {
            Resumption::Resumed => {
                format!(
                    "--- reconnected to {}; resuming after seq {}\n",
                    client.server(),
                    self.last_seq
                )
            }
            Resumption::Rejoined(seq) => format!(
                "--- the session ended while disconnected; joined again as {} at seq {seq}; events after seq {} before that are not shown\n",
                self.name, self.last_seq
            ),
            Resumption::Skipped(last) => {
                let note = format!(
                    "--- the service no longer holds events {} to {last}; carrying on from the present\n",
                    self.last_seq + 1
                );
                self.last_seq = last;
                note
            }
        };
        info!(component = %self.name, event = "reconnected", server = %client.server(), after_seq = self.last_seq);
        self.write(&note).await?;
        Ok(Link::Up { client, stream })
    }

    /// Leaves, if connected, and prints what came before the leave.
    async fn leave(&mut self, link: Link) -> Result<(), ParticipantError> {
        if !self.outbox.is_empty() {
            let unsent = self.outbox.len();
            self.report(&format!("{unsent} typed message(s) were not sent"))
                .await?;
        }
        let Link::Up {
            mut client,
            mut stream,
        } = link
        else {
            self.report("left without telling the service, which is unreachable; it will announce the leave after its grace period")
                .await?;
            return Ok(());
        };
        let sent = self.clock.tick();
        info!(component = %self.name, event = "leave_sent", lamport = sent);
        match client.leave(sent).await {
            Ok(reply) => {
                let now = self.clock.witness(reply.lamport);
                info!(
                    component = %self.name,
                    event = "leave_ok",
                    seq = reply.seq,
                    response_lamport = reply.lamport,
                    lamport = now,
                );
            }
            Err(error) => {
                self.witness_error(&error);
                warn!(component = %self.name, event = "leave_failed", reason = %error);
                self.report(&format!("could not leave cleanly: {error}"))
                    .await?;
                return Ok(());
            }
        }
        // The service ends the stream cleanly once the events before the leave are delivered.
        let deadline = Instant::now() + DRAIN_AFTER_LEAVE;
        loop {
            match tokio::time::timeout_at(deadline, stream.next()).await {
                Ok(Ok(Some(event))) => self.print(&event).await?,
                Ok(Ok(None)) => {
                    info!(component = %self.name, event = "broadcast_end", reason = "left");
                    return Ok(());
                }
                Ok(Err(error)) => {
                    warn!(component = %self.name, event = "broadcast_end", reason = %error);
                    return Ok(());
                }
                Err(_) => {
                    warn!(
                        component = %self.name,
                        event = "broadcast_end",
                        reason = "the stream did not end after the leave; closing it",
                    );
                    return Ok(());
                }
            }
        }
    }

    fn next_server(&mut self) -> String {
        self.server_index = (self.server_index + 1) % self.config.servers.len().max(1);
        self.config
            .servers
            .get(self.server_index)
            .cloned()
            .unwrap_or_default()
    }

    /// Witnesses the Lamport time on an error, if the service sent one; returns the clock after.
    fn witness_error(&self, error: &ClientError) -> u64 {
        match error.lamport {
            Some(lamport) => self.clock.witness(lamport),
            None => self.clock.now(),
        }
    }

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

/// What to do after a publish was answered.
enum AfterPublish {
    /// Go on with the next message.
    Next,
    /// Wait this long before publishing again.
    Pause(Duration),
    /// The link is gone; reconnect.
    LinkLost(ClientError),
}

/// Opens the Broadcast stream after `after_seq`, stamping and logging the call.
async fn open_stream(
    client: &mut ChatClient,
    name: &str,
    clock: &LamportClock,
    after_seq: u64,
) -> Result<EventStream, ClientError> {
    let sent = clock.tick();
    info!(
        component = name,
        event = "broadcast_open",
        after_seq,
        lamport = sent
    );
    client
        .broadcast(after_seq, sent)
        .await
        .inspect_err(|error| {
            if let Some(lamport) = error.lamport {
                clock.witness(lamport);
            }
        })
}

/// One reconnection attempt: connect, resume the session after `after_seq`, and if that is not possible,
/// join again or skip what the service no longer holds.
async fn reconnect(
    server: String,
    connection: Connection,
    token: String,
    name: Arc<str>,
    join_secret: String,
    after_seq: u64,
    clock: Arc<LamportClock>,
) -> Result<(ChatClient, EventStream, Resumption), ClientError> {
    let mut client = ChatClient::connect(&server, &connection).await?;
    client.resume(&token)?;
    match open_stream(&mut client, &name, &clock, after_seq).await {
        Ok(stream) => Ok((client, stream, Resumption::Resumed)),
        Err(error) if error.kind == ErrorKind::SessionEnded => {
            let sent = clock.tick();
            info!(component = %name, event = "join_sent", lamport = sent, reason = "the session ended");
            let reply = client
                .join(&name, &join_secret, sent)
                .await
                .inspect_err(|error| {
                    if let Some(lamport) = error.lamport {
                        clock.witness(lamport);
                    }
                })?;
            let now = clock.witness(reply.lamport);
            info!(component = %name, event = "join_ok", seq = reply.seq, response_lamport = reply.lamport, lamport = now);
            let stream = open_stream(&mut client, &name, &clock, 0).await?;
            Ok((client, stream, Resumption::Rejoined(reply.seq)))
        }
        Err(error) if error.kind == ErrorKind::HistoryGone => {
            let last = error.last_seq.unwrap_or(after_seq);
            let stream = open_stream(&mut client, &name, &clock, last).await?;
            Ok((client, stream, Resumption::Skipped(last)))
        }
        Err(error) => Err(error),
    }
}

/// A fresh idempotency key: 128 random bits in hex.
fn new_key() -> String {
    let bytes: [u8; 16] = rand::random();
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// The next event on the link's stream; never completes while the link is down.
async fn next_event(link: &mut Link) -> Result<Option<Event>, ClientError> {
    match link {
        Link::Up { stream, .. } => stream.next().await,
        Link::Down { .. } => std::future::pending().await,
    }
}

/// The output of a pending future; never completes when there is none.
async fn poll<T>(pending: &mut Pending<T>) -> T {
    match pending {
        Some(future) => future.await,
        None => std::future::pending().await,
    }
}

/// Completes at `deadline`; never completes without one.
async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_exponentially_within_half_and_all_of_its_base_and_is_capped() {
        let backoff = Backoff {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(2),
        };
        assert_eq!(backoff.delay(0, 0.0), Duration::from_millis(50));
        assert_eq!(backoff.delay(0, 1.0), Duration::from_millis(100));
        assert_eq!(backoff.delay(3, 0.0), Duration::from_millis(400));
        assert_eq!(backoff.delay(3, 1.0), Duration::from_millis(800));
        assert_eq!(backoff.delay(10, 1.0), Duration::from_secs(2));
        assert_eq!(backoff.delay(u32::MAX, 0.5), Duration::from_millis(1500));
        for attempt in 0..30 {
            let low = backoff.delay(attempt, 0.0);
            let high = backoff.delay(attempt, 1.0);
            assert!(low <= high && high <= backoff.max && low >= backoff.initial / 2);
        }
    }

    #[test]
    fn keys_are_unique() {
        let keys: std::collections::HashSet<String> = (0..1000).map(|_| new_key()).collect();
        assert_eq!(keys.len(), 1000);
        assert!(keys.iter().all(|key| key.len() == 32));
    }
}
