//! The terminal UI's state, and how notices, keys and the mouse change it.
//!
//! [`App`] is plain data with no I/O: the engine's [`Notice`]s and the terminal's key and mouse events go
//! in, and [`Action`]s (send this text, leave) come out. The terminal loop in [`super`] feeds it; the
//! rendering tests build one by hand.

use std::collections::{BTreeSet, VecDeque};

use chitty_core::validate::{MAX_MESSAGE_CHARS, MessageError, check_message};
use chitty_core::{Event, EventKind, LamportTime, Seq};
use ratatui::crossterm::event::{
    KeyCode, KeyEvent, KeyEventKind, KeyModifiers, MouseEvent, MouseEventKind,
};
use ratatui::layout::Rect;
use tokio::time::Instant;

use super::input::InputLine;
use super::view;
use crate::client::Presence;
use crate::session::{Notice, Resumption};

/// How many entries the message pane keeps; older ones are dropped.
pub const SCROLLBACK: usize = 2000;

/// How many sent messages Up and Down recall.
const HISTORY: usize = 100;

/// How many rows the mouse wheel scrolls at a time.
const WHEEL_ROWS: usize = 3;

/// What the help command lists.
const HELP: [&str; 4] = [
    "Commands: /help lists these; /quit leaves (so does Ctrl-C). Start a message with // to send one that starts with /.",
    "Editing: Left/Right and Home/End move; Backspace and Delete erase; Ctrl-W erases a word, Ctrl-U to the start, Ctrl-K to the end; Up/Down recall what you sent.",
    "Scrolling: PgUp/PgDn and the mouse wheel; Esc returns to the newest message.",
    "Each line starts with [L=the event's Lamport time me=your own clock right after receiving it].",
];

/// One line of the message pane, before wrapping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    /// An event the service broadcast.
    Event {
        /// The event.
        event: Event,
        /// The participant's own clock right after receiving it.
        own_lamport: LamportTime,
    },
    /// Something the participant itself says: connection news, help.
    Note {
        /// What it says.
        text: String,
        /// Whether it is a warning, shown apart.
        warning: bool,
    },
}

/// The state of the connection, as the status line shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnectionState {
    /// Joining for the first time.
    Connecting,
    /// Connected; `note` says how, after a reconnection.
    Connected {
        /// "resumed, 3 missed events", or the like.
        note: Option<String>,
    },
    /// The connection is lost; the next attempt is due at `retry_at`.
    Reconnecting {
        /// When the next attempt starts.
        retry_at: Instant,
        /// How many attempts failed so far.
        attempt: u32,
        /// Why the connection is down.
        reason: String,
    },
    /// Leaving: the Leave is under way.
    Leaving,
    /// Left.
    Left,
}

/// The line under the input: why a message was refused, or a passing remark.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Feedback {
    /// Why the message cannot be or was not sent.
    Error(String),
    /// A remark.
    Info(String),
}

/// What the terminal loop must do after a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Nothing beyond drawing again.
    None,
    /// Publish this text; it passed the service's checks.
    Send(String),
    /// Leave the chat and close the UI.
    Quit,
    /// Clear the screen and draw everything again (Ctrl-L).
    Redraw,
}

/// Everything the terminal UI shows.
#[derive(Debug, Clone)]
pub struct App {
    /// The participant's own name, to mark its messages and its place in the list.
    pub(crate) name: String,
    /// The service address in use.
    pub(crate) server: String,
    /// The message pane's entries, oldest first, at most [`SCROLLBACK`].
    pub(crate) entries: VecDeque<Entry>,
    /// Who is present now.
    pub(crate) present: BTreeSet<String>,
    /// The seq the presence list is true as of: joined and left events up to it are already in it.
    presence_seq: Seq,
    /// The line being typed.
    pub(crate) input: InputLine,
    /// The line under the input.
    pub(crate) feedback: Option<Feedback>,
    /// The connection, for the status line.
    pub(crate) connection: ConnectionState,
    /// How many rows the message pane is scrolled up from the newest; 0 follows new messages.
    pub(crate) scroll: usize,
    /// The participant's own Lamport clock, for the status line.
    pub(crate) own_lamport: LamportTime,
    /// The time now, for the reconnection countdown; set by the terminal loop so rendering stays pure.
    pub(crate) now: Instant,
    /// Messages sent and not yet acknowledged or refused.
    pub(crate) pending: usize,
    /// The size of the message pane's text area at the last resize, to scroll by pages and keep the
    /// view still while scrolled up.
    pane: Rect,
    /// What was sent, newest last, for Up and Down.
    history: VecDeque<String>,
    /// Where Up and Down are in the history, if recalling.
    recalled: Option<usize>,
}

impl App {
    /// A UI for participant `name` connecting to `server`, at time `now`.
    pub fn new(name: &str, server: &str, now: Instant) -> Self {
        Self {
            name: name.to_owned(),
            server: server.to_owned(),
            entries: VecDeque::new(),
            present: BTreeSet::new(),
            presence_seq: Seq::new(0),
            input: InputLine::default(),
            feedback: None,
            connection: ConnectionState::Connecting,
            scroll: 0,
            own_lamport: LamportTime::new(0),
            now,
            pending: 0,
            pane: Rect::default(),
            history: VecDeque::new(),
            recalled: None,
        }
    }

    /// Sets the time and the participant's clock, before drawing.
    pub fn tick(&mut self, now: Instant, own_lamport: LamportTime) {
        self.now = now;
        self.own_lamport = own_lamport;
    }

    /// Tells the app the size of the whole terminal, so it knows the message pane's.
    pub fn resize(&mut self, terminal: Rect) {
        let pane = view::message_area(terminal);
        if pane.width != self.pane.width {
            // Rows wrap differently at a new width; scrolling is by rows, so start again at the bottom.
            self.scroll = 0;
        }
        self.pane = pane;
    }

    /// The line being typed.
    pub fn input(&self) -> &InputLine {
        &self.input
    }

    /// Who is present now, sorted.
    pub fn present(&self) -> impl Iterator<Item = &str> {
        self.present.iter().map(String::as_str)
    }

    /// The message pane's entries, oldest first.
    pub fn entries(&self) -> impl Iterator<Item = &Entry> {
        self.entries.iter()
    }

    /// Applies what the engine reported.
    pub fn apply(&mut self, notice: Notice) {
        match notice {
            Notice::Connected { server, .. } => {
                self.server = server;
                self.connection = ConnectionState::Connected { note: None };
            }
            Notice::Presence(presence) => self.set_presence(presence),
            Notice::Event { event, own_lamport } => {
                self.update_presence(&event);
                self.push(Entry::Event { event, own_lamport });
            }
            Notice::Published { .. } => self.pending = self.pending.saturating_sub(1),
            Notice::NotSent { reason } => {
                self.pending = self.pending.saturating_sub(1);
                self.feedback = Some(Feedback::Error(format!("not sent: {reason}")));
            }
            Notice::Throttled { retry_after } => {
                self.feedback = Some(Feedback::Info(format!(
                    "sending too fast; the service asked to wait {} ms",
                    retry_after.as_millis()
                )));
            }
            Notice::Disconnected { reason, cut_off } => {
                if !cut_off {
                    self.note(format!("connection lost: {reason}; reconnecting"), true);
                }
            }
            Notice::Reconnecting {
                retry_at,
                attempt,
                reason,
            } => {
                self.connection = ConnectionState::Reconnecting {
                    retry_at,
                    attempt,
                    reason: reason.to_string(),
                };
            }
            Notice::Reconnected { server, resumption } => {
                let (note, status) = match resumption {
                    Resumption::Resumed { after_seq, missed } => (
                        format!("reconnected to {server}; resuming after seq {after_seq}"),
                        match missed {
                            Some(1) => "resumed, 1 missed event".to_owned(),
                            Some(missed) => format!("resumed, {missed} missed events"),
                            None => "resumed".to_owned(),
                        },
                    ),
                    Resumption::Rejoined {
                        join_seq,
                        after_seq,
                    } => (
                        format!(
                            "the session ended while disconnected; joined again at seq {join_seq}; events after seq {after_seq} before that are not shown"
                        ),
                        format!("joined again at seq {join_seq}"),
                    ),
                    Resumption::Skipped {
                        first_missing,
                        last,
                    } => (
                        format!(
                            "the service no longer holds events {first_missing} to {last}; carrying on from the present"
                        ),
                        format!("events {first_missing} to {last} are lost"),
                    ),
                };
                self.note(note, false);
                self.server = server;
                self.connection = ConnectionState::Connected { note: Some(status) };
            }
            Notice::Unsent { count } => {
                self.note(format!("{count} typed message(s) were not sent"), true);
            }
            Notice::LeftUnannounced => self.note(
                "left without telling the service, which is unreachable".to_owned(),
                true,
            ),
            Notice::LeaveFailed { reason } => {
                self.note(format!("could not leave cleanly: {reason}"), true);
            }
            Notice::Left => self.connection = ConnectionState::Left,
        }
    }

    /// Marks the UI as leaving, once the terminal loop asked the engine to leave.
    pub fn leaving(&mut self) {
        if self.connection != ConnectionState::Left {
            self.connection = ConnectionState::Leaving;
        }
    }

    /// The engine did not take a message (its queue is full): put it back in the input line.
    pub fn not_taken(&mut self, text: String) {
        self.pending = self.pending.saturating_sub(1);
        self.input = InputLine::from(text.as_str());
        self.feedback = Some(Feedback::Error(
            "not sent: too many messages are waiting to be sent; try again in a moment".to_owned(),
        ));
    }

    /// Handles a key press.
    pub fn key(&mut self, key: KeyEvent) -> Action {
        if key.kind == KeyEventKind::Release {
            return Action::None;
        }
        let control = key.modifiers.contains(KeyModifiers::CONTROL);
        let alt = key.modifiers.contains(KeyModifiers::ALT);
        let before = self.input.text().to_owned();
        let action = match key.code {
            KeyCode::Char('c') if control => return Action::Quit,
            KeyCode::Char('d') if control && self.input.is_empty() => return Action::Quit,
            KeyCode::Char('l') if control => return Action::Redraw,
            KeyCode::Enter => return self.submit(),
            KeyCode::Char('a') if control => {
                self.input.home();
                Action::None
            }
            KeyCode::Char('e') if control => {
                self.input.end();
                Action::None
            }
            KeyCode::Char('b') if control => {
                self.input.left();
                Action::None
            }
            KeyCode::Char('f') if control => {
                self.input.right();
                Action::None
            }
            KeyCode::Char('w') if control => {
                self.input.delete_word_before();
                Action::None
            }
            KeyCode::Char('h') if control => {
                self.input.backspace();
                Action::None
            }
            KeyCode::Char('u') if control => {
                self.input.delete_to_start();
                Action::None
            }
            KeyCode::Char('k') if control => {
                self.input.delete_to_end();
                Action::None
            }
            KeyCode::Char(character) if !control && !alt => {
                self.input.insert(character);
                Action::None
            }
            KeyCode::Backspace if alt || control => {
                self.input.delete_word_before();
                Action::None
            }
            KeyCode::Backspace => {
                self.input.backspace();
                Action::None
            }
            KeyCode::Delete => {
                self.input.delete();
                Action::None
            }
            KeyCode::Left => {
                self.input.left();
                Action::None
            }
            KeyCode::Right => {
                self.input.right();
                Action::None
            }
            KeyCode::Home => {
                self.input.home();
                Action::None
            }
            KeyCode::End => {
                self.input.end();
                Action::None
            }
            KeyCode::Up => {
                self.recall_older();
                Action::None
            }
            KeyCode::Down => {
                self.recall_newer();
                Action::None
            }
            KeyCode::PageUp => {
                self.scroll_up(self.page());
                Action::None
            }
            KeyCode::PageDown => {
                self.scroll_down(self.page());
                Action::None
            }
            KeyCode::Esc => {
                self.scroll = 0;
                self.feedback = None;
                Action::None
            }
            _ => Action::None,
        };
        if self.input.text() != before {
            // Whatever was said about the previous text no longer applies.
            self.feedback = None;
        }
        action
    }

    /// Handles a mouse event: the wheel scrolls the message pane.
    pub fn mouse(&mut self, mouse: MouseEvent) {
        match mouse.kind {
            MouseEventKind::ScrollUp => self.scroll_up(WHEEL_ROWS),
            MouseEventKind::ScrollDown => self.scroll_down(WHEEL_ROWS),
            _ => {}
        }
    }

    /// Why the text typed so far cannot be sent, when that is already certain while typing: too long,
    /// or a control character. An empty line is only refused when Enter is pressed.
    pub fn live_problem(&self) -> Option<MessageError> {
        let text = self.input.message();
        match check_message(text) {
            Err(error @ (MessageError::TooLong { .. } | MessageError::ControlCharacter { .. })) => {
                Some(error)
            }
            _ => None,
        }
    }

    /// The character count the counter shows, and the limit.
    pub fn counter(&self) -> (usize, usize) {
        (self.input.message().chars().count(), MAX_MESSAGE_CHARS)
    }

    fn submit(&mut self) -> Action {
        let text = self.input.text().trim_end().to_owned();
        if text.starts_with('/') && !text.starts_with("//") {
            let command = text.split_whitespace().next().unwrap_or_default();
            return match command {
                "/quit" | "/exit" => Action::Quit,
                "/help" => {
                    self.input.clear();
                    self.feedback = None;
                    for line in HELP {
                        self.note(line.to_owned(), false);
                    }
                    self.scroll = 0;
                    Action::None
                }
                _ => {
                    self.feedback = Some(Feedback::Error(format!(
                        "unknown command {command}; /help lists the commands, and // starts a message with /"
                    )));
                    Action::None
                }
            };
        }
        let message = self.input.message().to_owned();
        if let Err(error) = check_message(&message) {
            self.feedback = Some(Feedback::Error(format!("cannot send: {error}")));
            return Action::None;
        }
        if self.history.back() != Some(&message) {
            if self.history.len() == HISTORY {
                self.history.pop_front();
            }
            self.history.push_back(message.clone());
        }
        self.recalled = None;
        self.input.clear();
        self.feedback = None;
        self.scroll = 0;
        self.pending += 1;
        Action::Send(message)
    }

    fn recall_older(&mut self) {
        let index = match self.recalled {
            Some(0) => return,
            Some(index) => index - 1,
            None if self.history.is_empty() => return,
            None => self.history.len() - 1,
        };
        if let Some(text) = self.history.get(index) {
            self.input = InputLine::from(text.as_str());
            self.recalled = Some(index);
        }
    }

    fn recall_newer(&mut self) {
        let Some(index) = self.recalled else {
            return;
        };
        match self.history.get(index + 1) {
            Some(text) => {
                self.input = InputLine::from(text.as_str());
                self.recalled = Some(index + 1);
            }
            None => {
                self.input.clear();
                self.recalled = None;
            }
        }
    }

    fn page(&self) -> usize {
        usize::from(self.pane.height).saturating_sub(1).max(1)
    }

    fn scroll_up(&mut self, rows: usize) {
        let total = view::total_rows(self, self.pane.width);
        let most = total.saturating_sub(usize::from(self.pane.height));
        self.scroll = (self.scroll + rows).min(most);
    }

    fn scroll_down(&mut self, rows: usize) {
        self.scroll = self.scroll.saturating_sub(rows);
    }

    fn note(&mut self, text: String, warning: bool) {
        self.push(Entry::Note { text, warning });
    }

    /// Adds an entry, dropping the oldest past [`SCROLLBACK`]. While scrolled up, the view stays where it
    /// is: the offset from the bottom grows by the new entry's rows.
    fn push(&mut self, entry: Entry) {
        if self.scroll > 0 {
            self.scroll += view::entry_rows(self, &entry, self.pane.width);
        }
        if self.entries.len() == SCROLLBACK {
            self.entries.pop_front();
        }
        self.entries.push_back(entry);
    }

    /// Replaces the presence list with one true as of `presence.seq`.
    fn set_presence(&mut self, presence: Presence) {
        self.present = presence.names.into_iter().collect();
        self.presence_seq = presence.seq;
    }

    /// Keeps the presence list current with a joined or left event newer than the list.
    fn update_presence(&mut self, event: &Event) {
        if event.seq <= self.presence_seq {
            return;
        }
        match event.kind {
            EventKind::Joined => {
                self.present.insert(event.participant.to_string());
            }
            EventKind::Left => {
                self.present.remove(&*event.participant);
            }
            EventKind::Message => {}
        }
    }
}

/// How long until `deadline`, rounded up to whole seconds, for the countdown.
pub(crate) fn seconds_until(now: Instant, deadline: Instant) -> u64 {
    let left = deadline.saturating_duration_since(now);
    left.as_secs() + u64::from(left.subsec_nanos() > 0)
}
