//! The terminal UI: a full-screen chat in a terminal, on the same engine as line mode.
//!
//! # Layout
//!
//! - [`app`]: the UI's state ([`App`]): the message pane with a bounded scrollback, who is present, the
//!   input line, the status. Notices, keys and mouse events change it; it does no I/O.
//! - [`view`]: [`render`], a pure function from an [`App`] to a frame, tested with ratatui's
//!   `TestBackend` and snapshot files.
//! - [`input`]: the line being typed, edited as in a shell, with a cursor counted in characters.
//! - This module: [`run_tui`], the thin shell that owns the terminal and runs the loop.
//!
//! # The loop
//!
//! Three tasks cooperate. The [session engine](crate::session) runs as a task of its own and sends its
//! notices to the UI through a bounded channel ([`NOTICE_BACKLOG`]); when the UI falls behind, the engine
//! waits, exactly as line mode waits for a slow terminal, and the service cuts its stream off and lets it
//! resume without loss if that lasts. Terminal events are read on a thread of their own, since reading
//! blocks, and handed over through a bounded channel ([`TERMINAL_EVENT_BACKLOG`]); when it is full the
//! thread waits and the terminal keeps the keys. The UI loop waits for either, or a tick for the
//! reconnection countdown, applies everything that is ready (a burst of a thousand messages is one
//! frame, not a thousand), and draws. Messages typed go to the engine through a bounded channel too
//! ([`COMMAND_BACKLOG`]); when it is full the message stays in the input line with a note to try again.
//!
//! # The terminal is always given back
//!
//! Raw mode, the alternate screen and mouse capture change the user's terminal beyond this process: left
//! on, the shell afterwards would echo nothing, ignore Enter and print mouse movements as garbage. So they
//! are undone on every way out: by the guard's `Drop` on a normal exit and on an error (which `?` returns
//! through it), and by a panic hook, which runs before the panic unwinds or aborts, for a panic anywhere,
//! including in another task or thread. Only then is anything printed, so an error message lands on the
//! normal screen where the user can read it.

pub mod app;
pub mod input;
pub mod view;

#[cfg(test)]
mod tests;

use std::io::{self, Stdout, Write as _};
use std::sync::Once;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use ratatui::Terminal;
use ratatui::backend::CrosstermBackend;
use ratatui::crossterm::event::{self, DisableMouseCapture, EnableMouseCapture, Event};
use ratatui::crossterm::execute;
use ratatui::crossterm::terminal::{
    EnterAlternateScreen, LeaveAlternateScreen, disable_raw_mode, enable_raw_mode,
};
use tokio::sync::mpsc;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

pub use self::app::{Action, App};
pub use self::view::render;
use crate::session::{Command, Frontend, Notice, ParticipantConfig, ParticipantError, Session};

/// How many notices may wait for the UI; past it the engine waits.
pub const NOTICE_BACKLOG: usize = 1024;

/// How many terminal events may wait for the UI; past it the reading thread waits.
pub const TERMINAL_EVENT_BACKLOG: usize = 256;

/// How many typed messages may wait for the engine; past it a message stays in the input line.
pub const COMMAND_BACKLOG: usize = 32;

/// How often the screen is drawn when nothing happens, for the reconnection countdown.
const TICK: Duration = Duration::from_millis(250);

/// How long the terminal-reading thread waits for an event before checking whether anyone still listens.
const POLL: Duration = Duration::from_millis(100);

/// Whether the terminal is in the UI's modes now, so the panic hook knows whether to restore it.
static TERMINAL_TAKEN: AtomicBool = AtomicBool::new(false);

/// Installs the panic hook once per process.
static PANIC_HOOK: Once = Once::new();

/// Runs the participant as a full-screen terminal UI until the user leaves (Ctrl-C, Ctrl-D on an empty
/// line, or `/quit`) or `shutdown` is cancelled (SIGTERM), then leaves and gives the terminal back.
///
/// What the user should still read afterwards (messages typed and never sent, a leave that could not be
/// announced) is printed on standard error once the terminal is restored; errors are returned.
pub async fn run_tui(
    config: ParticipantConfig,
    shutdown: CancellationToken,
) -> Result<(), ParticipantError> {
    let session = Session::new(config.clone()).with_presence(true);
    let clock = session.clock();
    let (command_sender, commands) = mpsc::channel::<Command>(COMMAND_BACKLOG);
    let (notice_sender, mut notices) = mpsc::channel::<Notice>(NOTICE_BACKLOG);
    let leave = shutdown.child_token();
    let engine = tokio::spawn({
        let leave = leave.clone();
        async move {
            let mut frontend = ChannelFrontend(notice_sender);
            session.run(commands, &mut frontend, leave).await
        }
    });

    let server = config.servers.first().cloned().unwrap_or_default();
    let mut app = App::new(&config.name, &server, Instant::now());
    let mut farewell: Vec<String> = Vec::new();
    let looped = {
        let mut terminal = TerminalGuard::enter().map_err(ParticipantError::Terminal)?;
        let mut terminal_events = spawn_terminal_reader().map_err(ParticipantError::Terminal)?;
        ui_loop(
            &mut terminal,
            &mut app,
            UiChannels {
                notices: &mut notices,
                terminal_events: &mut terminal_events,
                commands: &command_sender,
                leave: &leave,
                farewell: &mut farewell,
            },
            &clock,
        )
        .await
        // The guard restores the terminal here, before anything is printed.
    };
    // However the loop ended, the engine leaves; it finishes within its call timeout and drain.
    leave.cancel();
    drop(command_sender);
    // Drain what it still says, so that it never waits on a full channel, and keep what matters.
    let finished = async {
        while let Some(notice) = notices.recv().await {
            if let Some(line) = farewell_line(&notice) {
                farewell.push(line);
            }
        }
        engine.await
    };
    let result = match finished.await {
        Ok(result) => result,
        Err(join_error) => match join_error.try_into_panic() {
            Ok(panic) => std::panic::resume_unwind(panic),
            Err(_) => Ok(()),
        },
    };
    let mut stderr = io::stderr();
    for line in &farewell {
        let _ = writeln!(stderr, "{line}");
    }
    looped?;
    result
}

/// The channels the UI loop works with.
struct UiChannels<'a> {
    notices: &'a mut mpsc::Receiver<Notice>,
    terminal_events: &'a mut mpsc::Receiver<io::Result<Event>>,
    commands: &'a mpsc::Sender<Command>,
    leave: &'a CancellationToken,
    farewell: &'a mut Vec<String>,
}

/// Draws, waits for something to happen, applies it, and again, until the engine is done.
async fn ui_loop(
    terminal: &mut TerminalGuard,
    app: &mut App,
    channels: UiChannels<'_>,
    clock: &chitty_core::LamportClock,
) -> Result<(), ParticipantError> {
    let UiChannels {
        notices,
        terminal_events,
        commands,
        leave,
        farewell,
    } = channels;
    let mut ticker = tokio::time::interval(TICK);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let size = terminal.size()?;
    app.resize(size);
    loop {
        app.tick(Instant::now(), clock.now().get());
        terminal.draw(app)?;
        tokio::select! {
            notice = notices.recv() => {
                let Some(notice) = notice else {
                    // The engine is done: it left, or failed.
                    return Ok(());
                };
                apply(app, notice, farewell);
                // Apply the rest of a burst before drawing again.
                for _ in 0..NOTICE_BACKLOG {
                    match notices.try_recv() {
                        Ok(notice) => apply(app, notice, farewell),
                        Err(_) => break,
                    }
                }
            }
            event = terminal_events.recv() => {
                let Some(event) = event else {
                    return Err(ParticipantError::Terminal(io::Error::other(
                        "the terminal-reading thread stopped",
                    )));
                };
                let mut next = Some(event);
                let mut handled = 0;
                while let Some(event) = next.take() {
                    let event = event.map_err(ParticipantError::Terminal)?;
                    match event {
                        Event::Key(key) => match app.key(key) {
                            Action::None => {}
                            Action::Send(text) => {
                                if let Err(error) = commands.try_send(Command::Publish(text))
                                    && let Command::Publish(text) = error.into_inner()
                                {
                                    app.not_taken(text);
                                }
                            }
                            Action::Quit => {
                                leave.cancel();
                                app.leaving();
                            }
                            Action::Redraw => terminal.clear()?,
                        },
                        Event::Mouse(mouse) => app.mouse(mouse),
                        Event::Resize(..) => app.resize(terminal.size()?),
                        _ => {}
                    }
                    handled += 1;
                    if handled < TERMINAL_EVENT_BACKLOG {
                        next = terminal_events.try_recv().ok();
                    }
                }
            }
            _ = ticker.tick() => {}
            () = leave.cancelled(), if app.connection != app::ConnectionState::Leaving
                && app.connection != app::ConnectionState::Left => app.leaving(),
        }
    }
}

/// Applies a notice, keeping what must still be said once the terminal is back.
fn apply(app: &mut App, notice: Notice, farewell: &mut Vec<String>) {
    if let Some(line) = farewell_line(&notice) {
        farewell.push(line);
    }
    app.apply(notice);
}

/// What to print after the UI closes about `notice`, if anything: the same sentences line mode prints.
fn farewell_line(notice: &Notice) -> Option<String> {
    match notice {
        Notice::Unsent { count } => Some(format!("{count} typed message(s) were not sent")),
        Notice::LeftUnannounced => Some("left without telling the service, which is unreachable; it will announce the leave after its grace period".to_owned()),
        Notice::LeaveFailed { reason } => Some(format!("could not leave cleanly: {reason}")),
        _ => None,
    }
}

/// The engine's front end in the terminal UI: hands every notice to the UI loop, waiting while its
/// channel is full. Once the UI is gone the notices are dropped, and the engine goes on to leave.
struct ChannelFrontend(mpsc::Sender<Notice>);

impl Frontend for ChannelFrontend {
    async fn notify(&mut self, notice: Notice) -> Result<(), ParticipantError> {
        // A closed channel means the UI is gone; the engine still leaves cleanly.
        let _ = self.0.send(notice).await;
        Ok(())
    }
}

/// The terminal in the UI's modes; dropping it gives the terminal back.
struct TerminalGuard {
    terminal: Terminal<CrosstermBackend<Stdout>>,
}

impl TerminalGuard {
    /// Switches to raw mode, the alternate screen and mouse capture.
    fn enter() -> io::Result<Self> {
        PANIC_HOOK.call_once(|| {
            let previous = std::panic::take_hook();
            std::panic::set_hook(Box::new(move |info| {
                restore_terminal();
                previous(info);
            }));
        });
        TERMINAL_TAKEN.store(true, Ordering::SeqCst);
        // From here on every failure returns through `restore_terminal`, by the guard or by hand.
        if let Err(error) = enable_raw_mode()
            .and_then(|()| execute!(io::stdout(), EnterAlternateScreen, EnableMouseCapture))
        {
            restore_terminal();
            return Err(error);
        }
        match Terminal::new(CrosstermBackend::new(io::stdout())) {
            Ok(terminal) => Ok(Self { terminal }),
            Err(error) => {
                restore_terminal();
                Err(error)
            }
        }
    }

    fn size(&self) -> Result<ratatui::layout::Rect, ParticipantError> {
        let size = self.terminal.size().map_err(ParticipantError::Terminal)?;
        Ok(ratatui::layout::Rect::new(0, 0, size.width, size.height))
    }

    fn draw(&mut self, app: &App) -> Result<(), ParticipantError> {
        self.terminal
            .draw(|frame| render(app, frame))
            .map(|_| ())
            .map_err(ParticipantError::Terminal)
    }

    fn clear(&mut self) -> Result<(), ParticipantError> {
        self.terminal.clear().map_err(ParticipantError::Terminal)
    }
}

impl Drop for TerminalGuard {
    fn drop(&mut self) {
        restore_terminal();
    }
}

/// Leaves raw mode, the alternate screen and mouse capture, and shows the cursor, if the UI had taken
/// the terminal. Safe to call more than once, from the panic hook and from the guard.
fn restore_terminal() {
    if TERMINAL_TAKEN.swap(false, Ordering::SeqCst) {
        let _ = execute!(
            io::stdout(),
            DisableMouseCapture,
            LeaveAlternateScreen,
            ratatui::crossterm::cursor::Show
        );
        let _ = disable_raw_mode();
    }
}

/// Reads terminal events on a thread of its own, since reading blocks. The thread ends within [`POLL`]
/// once the receiver is dropped, or after the first read error, which it passes on.
fn spawn_terminal_reader() -> io::Result<mpsc::Receiver<io::Result<Event>>> {
    let (sender, receiver) = mpsc::channel(TERMINAL_EVENT_BACKLOG);
    std::thread::Builder::new()
        .name("chitty-chat-terminal".to_owned())
        .spawn(move || {
            while !sender.is_closed() {
                let event = match event::poll(POLL) {
                    Ok(false) => continue,
                    Ok(true) => event::read(),
                    Err(error) => Err(error),
                };
                let failed = event.is_err();
                if sender.blocking_send(event).is_err() || failed {
                    return;
                }
            }
        })?;
    Ok(receiver)
}
