//! The terminal view: a full-screen table of the nodes, redrawn at each refresh.
//!
//! # Layout
//!
//! - [`view`]: [`render`], a pure function from a [`View`] to a frame, tested with ratatui's
//!   `TestBackend`.
//! - This module: [`run_tui`], the thin shell that owns the terminal and runs the loop, and
//!   [`quits`], which keys end it.
//!
//! # The loop
//!
//! The [watcher](crate::watch) runs as a task of its own and sends each refresh through a bounded
//! channel. Terminal events are read on a thread of their own, since reading blocks, and handed over
//! through a bounded channel ([`TERMINAL_EVENT_BACKLOG`]). The loop waits for either, or for `stop`, and
//! draws. It ends on q, Esc or Ctrl-C, when the watcher is done (after `--count` refreshes), or when
//! `stop` is cancelled (SIGTERM).
//!
//! # The terminal is always given back
//!
//! Raw mode and the alternate screen are undone on every way out: by the guard's `Drop` on a normal exit
//! or an error, and by the panic hook `ratatui::try_init` installs for a panic anywhere.

pub mod view;

use std::io;
use std::time::Duration;

use ratatui::DefaultTerminal;
use ratatui::crossterm::event::{self, Event, KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

pub use self::view::{View, render};
use crate::watch::Refresh;

/// How many terminal events may wait for the loop; past it the reading thread waits.
pub const TERMINAL_EVENT_BACKLOG: usize = 64;

/// How long the terminal-reading thread waits for an event before checking whether anyone still listens.
const POLL: Duration = Duration::from_millis(100);

/// Whether `key` ends the view: q, Esc or Ctrl-C (raw mode turns Ctrl-C into a key, not a signal).
pub fn quits(key: &KeyEvent) -> bool {
    key.kind != KeyEventKind::Release
        && match key.code {
            KeyCode::Char('q') | KeyCode::Esc => true,
            KeyCode::Char('c') => key.modifiers.contains(KeyModifiers::CONTROL),
            _ => false,
        }
}

/// Shows each refresh from `refreshes` full-screen until a quitting key, the end of the refreshes, or
/// `stop`; then gives the terminal back.
pub async fn run_tui(
    mut view: View,
    mut refreshes: mpsc::Receiver<Refresh>,
    stop: &CancellationToken,
) -> io::Result<()> {
    let mut terminal = TerminalGuard::enter()?;
    let mut events = spawn_terminal_reader()?;
    loop {
        terminal.draw(&view)?;
        tokio::select! {
            () = stop.cancelled() => return Ok(()),
            refresh = refreshes.recv() => match refresh {
                Some(refresh) => view.refresh = Some(refresh),
                None => return Ok(()),
            },
            event = events.recv() => match event {
                Some(Ok(Event::Key(key))) if quits(&key) => return Ok(()),
                Some(Ok(Event::Resize(..))) => terminal.clear()?,
                Some(Ok(_)) => {}
                Some(Err(error)) => return Err(error),
                None => return Err(io::Error::other("the terminal-reading thread stopped")),
            },
        }
    }
}

/// The terminal in the view's modes (ratatui's own setup: raw mode, the alternate screen, and a panic
/// hook that restores the terminal); dropping it gives the terminal back.
struct TerminalGuard {
    /// ratatui's terminal over standard output.
    terminal: DefaultTerminal,
}

impl TerminalGuard {
    /// Switches to raw mode and the alternate screen; on failure, gives back what was switched.
    fn enter() -> io::Result<Self> {
        match ratatui::try_init() {
            Ok(terminal) => Ok(Self { terminal }),
            Err(error) => {
                ratatui::restore();
                Err(error)
            }
        }
    }

    fn draw(&mut self, view: &View) -> io::Result<()> {
        self.terminal.draw(|frame| render(view, frame)).map(|_| ())
    }

    fn clear(&mut self) -> io::Result<()> {
        self.terminal.clear()
    }
}

impl Drop for TerminalGuard {
    fn drop(&mut self) {
        ratatui::restore();
    }
}

/// Reads terminal events on a thread of its own. The thread ends within [`POLL`] once the receiver is
/// dropped, or after the first read error, which it passes on.
fn spawn_terminal_reader() -> io::Result<mpsc::Receiver<io::Result<Event>>> {
    let (sender, receiver) = mpsc::channel(TERMINAL_EVENT_BACKLOG);
    std::thread::Builder::new()
        .name("chitty-top-terminal".to_owned())
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
