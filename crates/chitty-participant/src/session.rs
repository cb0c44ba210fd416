//! The session engine: everything a participant does between joining and leaving, whatever shows it.
//!
//! # The engine and its front ends
//!
//! A participant is one [`Session`] driving an explicit connection state machine, and one front end that
//! shows what happens and says what to publish. Line mode ([`crate::line_mode`]) and the terminal UI
//! ([`crate::tui`]) are two front ends of the same engine: they differ only in how they show a
//! [`Notice`] and where the [`Command`]s come from, so reconnection, ordering and the Lamport rules live in
//! this one module and cannot drift apart.
//!
//! - The engine takes commands from a bounded channel and reports what happens to a [`Frontend`], one
//!   [`Notice`] at a time, awaiting each: a front end that cannot keep up slows the engine down, exactly as
//!   a terminal that is not read slows down a program printing to it. The engine then stops reading its
//!   Broadcast stream, the service cuts the stream off as too slow, and the engine resumes after the last
//!   seq it reported, so nothing is lost or shown twice.
//! - A front end that fails to show a notice (line mode: the output was closed) ends the session with
//!   that error.
//!
//! # The connection state machine
//!
//! The session is either **up** (`Link::Up`), with a client and an open Broadcast stream, or **down**
//! (`Link::Down`), waiting for its next reconnection attempt. Around it:
//!
//! - Commands to publish go into an **outbox**. The front message is published when the link is up, one
//!   at a time so that the service receives them in the order they were typed, each with an idempotency
//!   key chosen when it was typed, so a retry after a lost response is never published twice. While the
//!   link is down the outbox keeps what the user types and sends it once back.
//! - Events received are witnessed by the Lamport clock and reported with the participant's own clock
//!   after receiving them. The session remembers the last seq it reported and never reports a seq twice.
//! - When the connection breaks, or the service restarts, the link goes down and reconnection is tried
//!   with exponential backoff and jitter, on the next service address each time. A reconnection resumes
//!   the session with the last seq reported, so the replay bridges the gap exactly. If the session ended
//!   meanwhile, the participant joins again; if the service no longer holds what was missed, the engine
//!   says so and carries on from the present. Either way a [`Notice::Reconnected`] says what happened.
//! - The end of the command channel leaves once the outbox is empty; the shutdown token leaves at once.
//!
//! With [`Session::with_presence`], the engine also asks the service who is present (the `Participants`
//! call) after every join and reconnection, before it opens the stream: the list is true as of its `seq`,
//! and every joined or left event after that seq keeps it current. Line mode does not ask, so its calls
//! and Lamport times are exactly what they always were.
//!
//! Joining the first time is not retried: a participant that cannot reach its service at all says so and
//! exits, since that is usually a wrong address rather than a passing fault.

use std::collections::VecDeque;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use chitty_core::{Event, LamportClock, LamportTime, Seq};
use chitty_logs::ParticipantEvent;
use thiserror::Error;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::client::{ChatClient, ClientError, Connection, ErrorKind, EventStream, Presence, Reply};
use crate::input::InputLine;

/// How long, after its Leave, the participant waits for the events that came before it.
const DRAIN_AFTER_LEAVE: Duration = Duration::from_secs(5);

/// How many typed messages may wait to be published; past it, the engine stops taking commands.
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
    /// The terminal UI could not drive the terminal.
    #[error("cannot drive the terminal: {0}")]
    Terminal(io::Error),
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

/// What a front end asks the engine to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Publish this text, through the outbox.
    Publish(String),
    /// Input that cannot be published, with the reason: the engine reports it back as
    /// [`Notice::NotSent`], in order with everything else (line mode: a line that is not UTF-8).
    Unsendable(String),
}

impl From<InputLine> for Command {
    fn from(line: InputLine) -> Self {
        match line {
            Ok(text) => Command::Publish(text),
            Err(not_utf8) => Command::Unsendable(not_utf8.to_string()),
        }
    }
}

/// How a reconnection went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resumption {
    /// The session was resumed after `after_seq`, the last seq reported.
    Resumed {
        /// The last seq reported before the connection broke.
        after_seq: Seq,
        /// How many events happened meanwhile, which the replay now delivers; known only when the
        /// engine asks for presence.
        missed: Option<u64>,
    },
    /// The session had ended; the participant joined again at `join_seq`, and the events after
    /// `after_seq` before that are not shown.
    Rejoined {
        /// The seq of the new join.
        join_seq: Seq,
        /// The last seq reported before the connection broke.
        after_seq: Seq,
    },
    /// The service no longer held events `first_missing` to `last`; the stream goes on after `last`.
    Skipped {
        /// The first event that will never be shown.
        first_missing: Seq,
        /// The last event that will never be shown, and the seq the stream resumes after.
        last: Seq,
    },
}

/// What happened, as the engine reports it to its front end, in the order it happened.
#[derive(Debug, Clone)]
pub enum Notice {
    /// Joined for the first time, and the Broadcast stream is open.
    Connected {
        /// The service's address.
        server: String,
        /// The seq of the joined event.
        join_seq: Seq,
    },
    /// Who is present, as of `seq`: joined and left events with a greater seq keep it current, and
    /// applying one twice is harmless. Sent only by a session [`with presence`](Session::with_presence),
    /// after every join and reconnection and before any event of the new stream.
    Presence(Presence),
    /// An event arrived, never one with a seq reported before.
    Event {
        /// The event.
        event: Event,
        /// The participant's own Lamport clock right after receiving it.
        own_lamport: LamportTime,
    },
    /// A message was published: the service acknowledged it at `seq`.
    Published {
        /// The seq of the message's event.
        seq: Seq,
    },
    /// A message or an input was not sent, for `reason`; the session carries on.
    NotSent {
        /// Why, in the service's words or the engine's.
        reason: String,
    },
    /// The service throttled publishing; the message is kept and sent again after `retry_after`.
    Throttled {
        /// How long the engine waits before publishing again.
        retry_after: Duration,
    },
    /// The link went down. `cut_off` is set when the service cut the stream off for reading too slowly:
    /// then the engine reopens it at once and nothing needs saying in line mode.
    Disconnected {
        /// Why.
        reason: ClientError,
        /// Whether it was a cut-off for reading too slowly.
        cut_off: bool,
    },
    /// The next reconnection attempt is due at `retry_at`.
    Reconnecting {
        /// When the attempt starts.
        retry_at: Instant,
        /// How many attempts failed so far.
        attempt: u32,
        /// Why the link is down, or why the last attempt failed.
        reason: ClientError,
    },
    /// Connected again to `server`, and the stream is open.
    Reconnected {
        /// The service's address.
        server: String,
        /// How the session was picked up.
        resumption: Resumption,
    },
    /// Leaving with typed messages not yet acknowledged: they are lost.
    Unsent {
        /// How many.
        count: usize,
    },
    /// Leaving while the service is unreachable: it announces the leave after its grace period.
    LeftUnannounced,
    /// The Leave call failed.
    LeaveFailed {
        /// Why.
        reason: ClientError,
    },
    /// The session is over: the Leave was answered and what came before it reported.
    Left,
}

/// Where the engine reports what happens: line mode prints, the terminal UI draws.
pub trait Frontend {
    /// Shows `notice`. The engine awaits it before going on, so a slow front end slows the engine; an
    /// error ends the session with it.
    fn notify(&mut self, notice: Notice) -> impl Future<Output = Result<(), ParticipantError>>;
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

/// A successful reconnection: the client, its open stream, how the session was picked up, and who is
/// present if the engine asked.
struct Reconnection {
    /// The new connection, carrying the session's token (a new one after joining again).
    client: ChatClient,
    /// The Broadcast stream, open on the new connection.
    stream: EventStream,
    /// How the session was picked up, for the front end to say.
    resumption: Resumption,
    /// Who is present, if the engine asks; reported before the stream's first event.
    presence: Option<Presence>,
}

/// A call or an attempt under way, owned by the main loop, which polls it beside everything else.
type Running<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// What the main loop may be waiting for besides its stream and its commands: nothing, or one [`Running`].
type Pending<T> = Option<Running<T>>;

/// What woke the engine up.
enum Step<C> {
    Shutdown,
    Command(Option<C>),
    Published(Answered<Reply>),
    Received(Result<Option<Event>, ClientError>),
    RetryDue,
    Reconnected(Box<Result<Reconnection, ClientError>>),
    PauseOver,
}

/// One participant's session: its configuration and its Lamport clock, ready to [`run`](Session::run).
#[derive(Debug)]
pub struct Session {
    /// Who to be and where to connect.
    config: ParticipantConfig,
    /// The participant's Lamport clock, shared so that a front end can show it.
    clock: Arc<LamportClock>,
    /// Whether to ask the service who is present after every join and reconnection.
    presence: bool,
}

impl Session {
    /// A session for `config`, with a fresh clock, that does not ask for presence.
    pub fn new(config: ParticipantConfig) -> Self {
        Self {
            config,
            clock: Arc::new(LamportClock::new()),
            presence: false,
        }
    }

    /// Whether to ask who is present after every join and reconnection, reporting
    /// [`Notice::Presence`]. It costs one call per connection, and so ticks of the clock.
    pub fn with_presence(mut self, presence: bool) -> Self {
        self.presence = presence;
        self
    }

    /// The participant's Lamport clock, to show it.
    pub fn clock(&self) -> Arc<LamportClock> {
        Arc::clone(&self.clock)
    }

    /// Joins, then publishes each command's text and reports each event to `frontend`, riding out
    /// disconnections, until `commands` closes or `shutdown` is cancelled; then leaves. Refused messages
    /// are reported and the session carries on.
    pub async fn run<C, F>(
        self,
        commands: mpsc::Receiver<C>,
        frontend: &mut F,
        shutdown: CancellationToken,
    ) -> Result<(), ParticipantError>
    where
        C: Into<Command>,
        F: Frontend,
    {
        let Some(first_server) = self.config.servers.first().cloned() else {
            return Err(ParticipantError::NoServer);
        };
        let mut engine = Engine {
            caller: Caller {
                name: self.config.name.as_str().into(),
                clock: self.clock,
            },
            config: self.config,
            presence: self.presence,
            frontend,
            last_seq: Seq::new(0),
            token: String::new(),
            outbox: VecDeque::new(),
            server_index: 0,
        };
        info!(
            component = %engine.caller.name,
            event = ParticipantEvent::Connect.as_str(),
            server = %first_server,
        );
        let mut client = ChatClient::connect(&first_server, &engine.config.connection)
            .await
            .map_err(ParticipantError::Connect)?;
        let joined = engine
            .join(&mut client)
            .await
            .map_err(|error| ParticipantError::Join {
                name: engine.config.name.clone(),
                error,
            })?;
        let presence = if engine.presence {
            presence_of(&engine.caller, &mut client)
                .await
                .map_err(ParticipantError::Lost)?
        } else {
            None
        };
        let stream = open_stream(&engine.caller, &mut client, Seq::new(0))
            .await
            .map_err(ParticipantError::Lost)?;
        info!(
            component = %engine.caller.name,
            event = ParticipantEvent::Joined.as_str(),
            seq = joined.seq.get(),
        );
        if let Some(presence) = presence {
            engine.notify(Notice::Presence(presence)).await?;
        }
        engine
            .notify(Notice::Connected {
                server: client.server().to_owned(),
                join_seq: joined.seq,
            })
            .await?;
        let link = Link::Up { client, stream };
        engine.chat(link, commands, shutdown).await
    }
}

/// The running session.
struct Engine<'f, F> {
    /// Who to be and where to connect.
    config: ParticipantConfig,
    /// The participant's name, for log lines, and its Lamport clock, which stamp and log every call.
    caller: Caller,
    /// Whether to ask who is present after every join and reconnection.
    presence: bool,
    /// Where notices go.
    frontend: &'f mut F,
    /// The seq of the last event reported.
    last_seq: Seq,
    /// The session token.
    token: String,
    /// Messages typed and not yet acknowledged, oldest first.
    outbox: VecDeque<Outgoing>,
    /// Which service address is in use.
    server_index: usize,
}

impl<F: Frontend> Engine<'_, F> {
    /// The main loop: everything between joining and leaving.
    async fn chat<C: Into<Command>>(
        &mut self,
        mut link: Link,
        mut commands: mpsc::Receiver<C>,
        shutdown: CancellationToken,
    ) -> Result<(), ParticipantError> {
        let mut commands_open = true;
        let mut publishing: Pending<Answered<Reply>> = None;
        let mut reconnecting: Pending<Result<Reconnection, ClientError>> = None;
        let mut paused_until: Option<Instant> = None;

        loop {
            if let (Link::Up { client, .. }, None, None, Some(outgoing)) =
                (&link, &publishing, paused_until, self.outbox.front())
            {
                publishing = Some(self.publish(client.clone(), outgoing.clone()));
            }
            // At the end of input, leave once everything typed is sent; with the service unreachable
            // there is nobody to say goodbye to, and it announces the leave itself after its grace period.
            if !commands_open && self.outbox.is_empty() && publishing.is_none() {
                break;
            }
            let retry_at = match &link {
                Link::Down { retry_at, .. } if reconnecting.is_none() => Some(*retry_at),
                _ => None,
            };
            let step = tokio::select! {
                () = shutdown.cancelled() => Step::Shutdown,
                command = commands.recv(), if commands_open && self.outbox.len() < OUTBOX_LIMIT => Step::Command(command),
                result = poll(&mut publishing) => Step::Published(result),
                received = next_event(&mut link), if reconnecting.is_none() => Step::Received(received),
                () = sleep_until(retry_at) => Step::RetryDue,
                result = poll(&mut reconnecting) => Step::Reconnected(Box::new(result)),
                () = sleep_until(paused_until) => Step::PauseOver,
            };
            match step {
                Step::Shutdown => break,
                Step::Command(None) => commands_open = false,
                Step::Command(Some(command)) => match command.into() {
                    Command::Unsendable(reason) => self.notify(Notice::NotSent { reason }).await?,
                    Command::Publish(text) => self.outbox.push_back(Outgoing {
                        text,
                        key: new_key(),
                    }),
                },
                Step::Published(answered) => {
                    publishing = None;
                    match self.published(answered).await? {
                        AfterPublish::Next => {}
                        AfterPublish::Pause(delay) => paused_until = Some(Instant::now() + delay),
                        AfterPublish::LinkLost(reason) => {
                            link = self.lost(link, reason, false).await?
                        }
                    }
                }
                Step::PauseOver => paused_until = None,
                Step::Received(Ok(Some(event))) => self.receive(event).await?,
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
                        // Cut off for reading too slowly: reopen at once, from the last seq reported.
                        ErrorKind::FellBehind => link = self.lost(link, error, true).await?,
                        _ => link = self.lost(link, error, false).await?,
                    }
                }
                Step::RetryDue => {
                    let server = self.next_server();
                    info!(
                        component = %self.caller.name,
                        event = ParticipantEvent::ReconnectAttempt.as_str(),
                        server = %server,
                        after_seq = self.last_seq.get(),
                    );
                    let reconnect = Reconnect {
                        server,
                        connection: self.config.connection.clone(),
                        token: self.token.clone(),
                        join_secret: self.config.join_secret.clone(),
                        after_seq: self.last_seq,
                        presence: self.presence,
                        caller: self.caller.clone(),
                    };
                    reconnecting = Some(Box::pin(reconnect.attempt()));
                }
                Step::Reconnected(result) => {
                    reconnecting = None;
                    link = self.reconnected(link, *result).await?;
                }
            }
        }
        self.leave(link).await
    }

    /// Joins with `client` for the first time, keeping the session token.
    async fn join(&mut self, client: &mut ChatClient) -> Result<Reply, ClientError> {
        let reply = join(&self.caller, client, &self.config.join_secret, None).await?;
        self.token = client.token().unwrap_or_default().to_owned();
        Ok(reply)
    }

    /// Starts publishing one message: it is stamped and logged as sent now, and answered when the main
    /// loop polls the returned future to the end.
    fn publish(&self, mut client: ChatClient, outgoing: Outgoing) -> Running<Answered<Reply>> {
        let chars = outgoing.text.chars().count();
        Box::pin(self.caller.call(
            move |name, stamp| {
                info!(
                    component = name,
                    event = ParticipantEvent::PublishSent.as_str(),
                    lamport = stamp.get(),
                    chars,
                );
            },
            move |stamp| async move { client.publish(&outgoing.text, &outgoing.key, stamp).await },
        ))
    }

    /// Handles the answer to a publish.
    async fn published(
        &mut self,
        answered: Answered<Reply>,
    ) -> Result<AfterPublish, ParticipantError> {
        let Answered {
            answer,
            lamport: now,
        } = answered;
        let error = match answer {
            Ok(reply) => {
                info!(
                    component = %self.caller.name,
                    event = ParticipantEvent::PublishOk.as_str(),
                    seq = reply.seq.get(),
                    response_lamport = reply.lamport.get(),
                    lamport = now.get(),
                );
                self.outbox.pop_front();
                self.notify(Notice::Published { seq: reply.seq }).await?;
                return Ok(AfterPublish::Next);
            }
            Err(error) => error,
        };
        match error.kind {
            ErrorKind::Unreachable | ErrorKind::ServiceStopping | ErrorKind::SessionEnded => {
                // Kept in the outbox, and sent again with the same key once reconnected.
                Ok(AfterPublish::LinkLost(error))
            }
            ErrorKind::RateLimited => {
                let delay = error.retry_after.unwrap_or(Duration::from_millis(100));
                info!(
                    component = %self.caller.name,
                    event = ParticipantEvent::PublishThrottled.as_str(),
                    reason = %error,
                    retry_after_ms = delay.as_millis() as u64,
                    lamport = now.get(),
                );
                self.notify(Notice::Throttled { retry_after: delay })
                    .await?;
                Ok(AfterPublish::Pause(delay))
            }
            _ => {
                info!(
                    component = %self.caller.name,
                    event = ParticipantEvent::PublishRefused.as_str(),
                    reason = %error,
                    response_lamport = error.lamport.map(LamportTime::get),
                    lamport = now.get(),
                );
                self.outbox.pop_front();
                self.notify(Notice::NotSent {
                    reason: error.to_string(),
                })
                .await?;
                Ok(AfterPublish::Next)
            }
        }
    }

    /// Reports an event, unless it was reported already.
    async fn receive(&mut self, event: Event) -> Result<(), ParticipantError> {
        let now = self.caller.clock.witness(event.lamport);
        if event.seq <= self.last_seq {
            return Ok(());
        }
        self.last_seq = event.seq;
        info!(
            component = %self.caller.name,
            event = ParticipantEvent::Receive.as_str(),
            seq = event.seq.get(),
            kind = %event.kind,
            participant = %event.participant,
            event_lamport = event.lamport.get(),
            lamport = now.get(),
            text = %event.text,
        );
        self.notify(Notice::Event {
            event,
            own_lamport: now,
        })
        .await
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
                warn!(
                    component = %self.caller.name,
                    event = ParticipantEvent::Disconnected.as_str(),
                    reason = %reason,
                    last_seq = self.last_seq.get(),
                );
                self.notify(Notice::Disconnected {
                    reason: reason.clone(),
                    cut_off: at_once,
                })
                .await?;
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
        let retry_at = now + delay;
        self.notify(Notice::Reconnecting {
            retry_at,
            attempt,
            reason,
        })
        .await?;
        Ok(Link::Down {
            since,
            attempt,
            retry_at,
        })
    }

    /// Handles the outcome of a reconnection attempt.
    async fn reconnected(
        &mut self,
        link: Link,
        result: Result<Reconnection, ClientError>,
    ) -> Result<Link, ParticipantError> {
        let Reconnection {
            client,
            stream,
            resumption,
            presence,
        } = match result {
            Ok(reconnected) => reconnected,
            Err(error) => {
                self.witness_error(&error);
                info!(
                    component = %self.caller.name,
                    event = ParticipantEvent::ReconnectFailed.as_str(),
                    reason = %error,
                );
                return match error.kind {
                    // Only joining again meets a taken name, and the session that holds it may be
                    // this participant's own, still being announced left (in a cluster that takes a
                    // few round trips, more while NATS recovers): worth a few more tries.
                    ErrorKind::NameTaken if down_for(&link) < REJOIN_PATIENCE => {
                        self.lost(link, error, false).await
                    }
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
        if let Resumption::Skipped { last, .. } = resumption {
            self.last_seq = last;
        }
        info!(
            component = %self.caller.name,
            event = ParticipantEvent::Reconnected.as_str(),
            server = %client.server(),
            after_seq = self.last_seq.get(),
        );
        if let Some(presence) = presence {
            self.notify(Notice::Presence(presence)).await?;
        }
        self.notify(Notice::Reconnected {
            server: client.server().to_owned(),
            resumption,
        })
        .await?;
        Ok(Link::Up { client, stream })
    }

    /// Leaves, if connected, and reports what came before the leave.
    async fn leave(&mut self, link: Link) -> Result<(), ParticipantError> {
        if !self.outbox.is_empty() {
            let count = self.outbox.len();
            self.notify(Notice::Unsent { count }).await?;
        }
        let Link::Up {
            mut client,
            mut stream,
        } = link
        else {
            return self.notify(Notice::LeftUnannounced).await;
        };
        let Answered { answer, lamport } = self
            .caller
            .call(
                |name, stamp| {
                    info!(
                        component = name,
                        event = ParticipantEvent::LeaveSent.as_str(),
                        lamport = stamp.get()
                    );
                },
                |stamp| client.leave(stamp),
            )
            .await;
        match answer {
            Ok(reply) => {
                info!(
                    component = %self.caller.name,
                    event = ParticipantEvent::LeaveOk.as_str(),
                    seq = reply.seq.get(),
                    response_lamport = reply.lamport.get(),
                    lamport = lamport.get(),
                );
            }
            Err(error) => {
                warn!(
                    component = %self.caller.name,
                    event = ParticipantEvent::LeaveFailed.as_str(),
                    reason = %error,
                );
                return self.notify(Notice::LeaveFailed { reason: error }).await;
            }
        }
        // The service ends the stream cleanly once the events before the leave are delivered.
        let deadline = Instant::now() + DRAIN_AFTER_LEAVE;
        loop {
            match tokio::time::timeout_at(deadline, stream.next()).await {
                Ok(Ok(Some(event))) => self.receive(event).await?,
                Ok(Ok(None)) => {
                    info!(
                        component = %self.caller.name,
                        event = ParticipantEvent::BroadcastEnd.as_str(),
                        reason = "left",
                    );
                    break;
                }
                Ok(Err(error)) => {
                    warn!(
                        component = %self.caller.name,
                        event = ParticipantEvent::BroadcastEnd.as_str(),
                        reason = %error,
                    );
                    break;
                }
                Err(_) => {
                    warn!(
                        component = %self.caller.name,
                        event = ParticipantEvent::BroadcastEnd.as_str(),
                        reason = "the stream did not end after the leave; closing it",
                    );
                    break;
                }
            }
        }
        self.notify(Notice::Left).await
    }

    fn next_server(&mut self) -> String {
        self.server_index = (self.server_index + 1) % self.config.servers.len().max(1);
        self.config
            .servers
            .get(self.server_index)
            .cloned()
            .unwrap_or_default()
    }

    /// Witnesses the Lamport time on an error that did not come as the answer to a call the engine made
    /// through [`Caller::call`]: a broken stream's, or a failed reconnection attempt's. An attempt's
    /// calls witnessed their errors already; witnessing the same time again only moves the clock on once
    /// more, which is harmless: a Lamport clock may advance at any time.
    fn witness_error(&self, error: &ClientError) {
        witness(&self.caller.clock, error.lamport);
    }

    async fn notify(&mut self, notice: Notice) -> Result<(), ParticipantError> {
        self.frontend.notify(notice).await
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

/// The participant as the maker of calls: its name, which each of its log lines carries, and its Lamport
/// clock, which stamps each request and witnesses each answer. The engine and a reconnection attempt
/// running beside it hold the same one, so every call follows the same steps on the same clock.
#[derive(Debug, Clone)]
struct Caller {
    /// The participant's name: the `component` of its log lines, and the name it joins under.
    name: Arc<str>,
    /// The participant's Lamport clock, shared with the front end, which shows it.
    clock: Arc<LamportClock>,
}

/// A call's answer, witnessed: what the service answered, and the participant's Lamport time right after
/// witnessing the time the service put on it.
struct Answered<T> {
    /// The reply, or why the call failed.
    answer: Result<T, ClientError>,
    /// The participant's clock after witnessing the answer: later than the request and than the service's
    /// handling of it. The answer's log line carries it as `lamport`.
    lamport: LamportTime,
}

/// A reply that may carry the service's Lamport time, for the participant to witness.
trait Stamped {
    /// The service's time on the reply, if it carries one.
    fn lamport(&self) -> Option<LamportTime>;
}

impl Stamped for Reply {
    fn lamport(&self) -> Option<LamportTime> {
        Some(self.lamport)
    }
}

impl Stamped for Presence {
    fn lamport(&self) -> Option<LamportTime> {
        Some(self.lamport)
    }
}

/// An opened stream carries no time of its own: each of its events does, witnessed as it arrives.
impl Stamped for EventStream {
    fn lamport(&self) -> Option<LamportTime> {
        None
    }
}

impl Caller {
    /// Makes one call by the Lamport rules, in the same steps for every call:
    ///
    /// 1. tick the clock (the send rule): the new time is the request's stamp;
    /// 2. log the call's `*_sent` line with the stamp, by `log_sent(name, stamp)`;
    /// 3. make the call, `call(stamp)`;
    /// 4. witness the time the service put on its answer, the reply's or the error's (the receive rule),
    ///    so that whatever the participant does next comes after the service handled the call.
    ///
    /// The answer's own line is the caller's to log, with [`Answered::lamport`]: each call's answer says
    /// different things, and some failures are not logged at all.
    ///
    /// Steps 1 and 2 happen when `call` is called, not when the returned future is first polled. A
    /// publish is answered later, in the main loop, yet its stamp and its `publish_sent` line must come
    /// before whatever the loop does meanwhile, on the clock and in the log. The returned future holds
    /// neither `self` nor `log_sent`, so a `'static` `call` makes a `'static` future.
    fn call<T, L, C, Fut>(
        &self,
        log_sent: L,
        call: C,
    ) -> impl Future<Output = Answered<T>> + use<T, L, C, Fut>
    where
        T: Stamped,
        L: FnOnce(&str, LamportTime),
        C: FnOnce(LamportTime) -> Fut,
        Fut: Future<Output = Result<T, ClientError>>,
    {
        let stamp = self.clock.tick();
        log_sent(&self.name, stamp);
        let answer = call(stamp);
        let clock = Arc::clone(&self.clock);
        async move {
            let answer = answer.await;
            let seen = match &answer {
                Ok(reply) => reply.lamport(),
                Err(error) => error.lamport,
            };
            Answered {
                answer,
                lamport: witness(&clock, seen),
            }
        }
    }
}

/// The receive rule for something that may carry no time (an error the transport made up rather than
/// the service, say): witnesses `seen` if there is one. Returns the clock after.
fn witness(clock: &LamportClock, seen: Option<LamportTime>) -> LamportTime {
    match seen {
        Some(lamport) => clock.witness(lamport),
        None => clock.now(),
    }
}

/// Joins on `client`, stamping and logging the call. `reason` says why a join is not the first one; it
/// is logged on `join_sent`.
async fn join(
    caller: &Caller,
    client: &mut ChatClient,
    join_secret: &str,
    reason: Option<&str>,
) -> Result<Reply, ClientError> {
    let Answered { answer, lamport } = caller
        .call(
            |name, stamp| {
                info!(
                    component = name,
                    event = ParticipantEvent::JoinSent.as_str(),
                    lamport = stamp.get(),
                    reason
                );
            },
            |stamp| client.join(&caller.name, join_secret, stamp),
        )
        .await;
    let reply = answer?;
    info!(
        component = %caller.name,
        event = ParticipantEvent::JoinOk.as_str(),
        seq = reply.seq.get(),
        response_lamport = reply.lamport.get(),
        lamport = lamport.get(),
    );
    Ok(reply)
}

/// Opens the Broadcast stream after `after_seq`, stamping and logging the call.
async fn open_stream(
    caller: &Caller,
    client: &mut ChatClient,
    after_seq: Seq,
) -> Result<EventStream, ClientError> {
    caller
        .call(
            |name, stamp| {
                info!(
                    component = name,
                    event = ParticipantEvent::BroadcastOpen.as_str(),
                    after_seq = after_seq.get(),
                    lamport = stamp.get()
                );
            },
            |stamp| client.broadcast(after_seq, stamp),
        )
        .await
        .answer
}

/// Asks who is present, stamping and logging the call. A service that cannot answer (an older one
/// without the call, say) is logged and leaves the list unknown; only a failure that also ends the
/// connection or the session is an error.
async fn presence_of(
    caller: &Caller,
    client: &mut ChatClient,
) -> Result<Option<Presence>, ClientError> {
    let Answered { answer, lamport } = caller
        .call(
            |name, stamp| {
                info!(
                    component = name,
                    event = ParticipantEvent::ParticipantsSent.as_str(),
                    lamport = stamp.get()
                );
            },
            |stamp| client.participants(stamp),
        )
        .await;
    match answer {
        Ok(presence) => {
            info!(
                component = %caller.name,
                event = ParticipantEvent::ParticipantsOk.as_str(),
                present = presence.names.len(),
                seq = presence.seq.get(),
                response_lamport = presence.lamport.get(),
                lamport = lamport.get(),
            );
            Ok(Some(presence))
        }
        Err(error) => match error.kind {
            ErrorKind::Unreachable | ErrorKind::ServiceStopping | ErrorKind::SessionEnded => {
                Err(error)
            }
            _ => {
                warn!(
                    component = %caller.name,
                    event = ParticipantEvent::ParticipantsFailed.as_str(),
                    reason = %error,
                );
                Ok(None)
            }
        },
    }
}

/// What one reconnection attempt needs. The attempt runs as a future of its own beside the main loop,
/// which goes on taking commands and publishing meanwhile, so it owns copies rather than borrowing the
/// engine.
struct Reconnect {
    /// The service address to try: the next one in turn.
    server: String,
    /// How to reach it.
    connection: Connection,
    /// The session's token, to resume the session on the new connection.
    token: String,
    /// The service's join secret, to join again if the session ended.
    join_secret: String,
    /// The last seq reported, after which the stream resumes so that nothing is missed or shown twice.
    after_seq: Seq,
    /// Whether to ask who is present before the stream opens.
    presence: bool,
    /// The participant's name and clock, to stamp and log the calls.
    caller: Caller,
}

impl Reconnect {
    /// One reconnection attempt: connect, resume the session after `after_seq`, and if that is not
    /// possible, join again or skip what the service no longer holds. With `presence`, asks who is
    /// present before the stream opens.
    async fn attempt(self) -> Result<Reconnection, ClientError> {
        let mut client = ChatClient::connect(&self.server, &self.connection).await?;
        client.resume(&self.token)?;
        let present = if self.presence {
            match presence_of(&self.caller, &mut client).await {
                Ok(present) => present,
                Err(error) if error.kind == ErrorKind::SessionEnded => {
                    return self.rejoin(client).await;
                }
                Err(error) => return Err(error),
            }
        } else {
            None
        };
        let after_seq = self.after_seq;
        match open_stream(&self.caller, &mut client, after_seq).await {
            Ok(stream) => Ok(Reconnection {
                client,
                stream,
                resumption: Resumption::Resumed {
                    after_seq,
                    missed: present
                        .as_ref()
                        .map(|present| present.seq.get().saturating_sub(after_seq.get())),
                },
                presence: present,
            }),
            Err(error) if error.kind == ErrorKind::SessionEnded => self.rejoin(client).await,
            Err(error) if error.kind == ErrorKind::HistoryGone => {
                let last = error.last_seq.unwrap_or(after_seq);
                let stream = open_stream(&self.caller, &mut client, last).await?;
                Ok(Reconnection {
                    client,
                    stream,
                    resumption: Resumption::Skipped {
                        first_missing: after_seq.next(),
                        last,
                    },
                    presence: present,
                })
            }
            Err(error) => Err(error),
        }
    }

    /// Joins again on `client` after the session ended, then opens the stream from the new join.
    async fn rejoin(&self, mut client: ChatClient) -> Result<Reconnection, ClientError> {
        let reply = join(
            &self.caller,
            &mut client,
            &self.join_secret,
            Some("the session ended"),
        )
        .await?;
        let present = if self.presence {
            presence_of(&self.caller, &mut client).await?
        } else {
            None
        };
        let stream = open_stream(&self.caller, &mut client, Seq::new(0)).await?;
        Ok(Reconnection {
            client,
            stream,
            resumption: Resumption::Rejoined {
                join_seq: reply.seq,
                after_seq: self.after_seq,
            },
            presence: present,
        })
    }
}

/// How long a participant whose session ended keeps trying to join again under its name while the
/// service says the name is taken: its own ended session may hold the name a little longer.
const REJOIN_PATIENCE: Duration = Duration::from_secs(30);

/// How long `link` has been down; zero while it is up.
fn down_for(link: &Link) -> Duration {
    match link {
        Link::Up { .. } => Duration::ZERO,
        Link::Down { since, .. } => since.elapsed(),
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

    #[test]
    fn input_lines_become_commands() {
        assert_eq!(
            Command::from(Ok::<_, crate::input::NotUtf8>("hi".to_owned())),
            Command::Publish("hi".to_owned())
        );
        assert_eq!(
            Command::from(Err::<String, _>(crate::input::NotUtf8)),
            Command::Unsendable("the line is not valid UTF-8".to_owned())
        );
    }
}
