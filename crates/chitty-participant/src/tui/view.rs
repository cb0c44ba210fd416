//! Drawing the terminal UI: a pure function from [`App`] to a frame.
//!
//! ```text
//! ┌ Chitty-Chat ──────────────────────────────────────────┐┌ Present (2) ─────────┐
//! │[L=3 me=4] → Participant alice joined Chitty-Chat at … ││alice (you)           │
//! │[L=9 me=10] bob: hi alice                              ││bob                   │
//! └───────────────────────────────────────────────────────┘└──────────────────────┘
//! ┌ Message ─────────────────────────────────────────────────────────────── 5/128 ┐
//! │hello                                                                          │
//! └───────────────────────────────────────────────────────────────────────────────┘
//!  Enter sends · /help lists the commands · PgUp/PgDn scroll · Ctrl-C leaves
//!  ● connected to http://127.0.0.1:50051                        alice · Lamport 12
//! ```
//!
//! Every message line starts with the event's Lamport time and the participant's own clock right after
//! receiving it. Joins and leaves are green and yellow sentences in italics, apart from messages; the
//! participant's own notes (connection news, help) are grey. Other people's names and text are shown with
//! every control and bidi character escaped ([`crate::output::escaped`]), as in line mode.
//!
//! Lines are wrapped here rather than by ratatui, by grapheme and by ratatui's own cell widths
//! ([`CellWidth`]), so that a CJK character or an emoji takes the two columns the terminal gives it, a word
//! longer than the pane is broken where it must be, and the pane can be scrolled by rows knowing exactly
//! how many each entry takes. Only the rows on screen (and the ones scrolled past) are wrapped per frame,
//! so a full scrollback costs no more to draw than a screenful.

use std::collections::VecDeque;

use chitty_core::EventKind;
use ratatui::Frame;
use ratatui::buffer::CellWidth;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Paragraph};

use super::app::{App, ConnectionState, Entry, Feedback, seconds_until};
use crate::output::escaped;

/// The width of the list of who is present.
const PEOPLE_WIDTH: u16 = 24;

/// The narrowest terminal that still shows the list of who is present.
const PEOPLE_MIN_TERMINAL_WIDTH: u16 = 60;

/// How far wrapped rows of one entry are indented, when the pane is wide enough.
const CONTINUATION_INDENT: usize = 2;

/// Colours for other people's names, chosen by name so that each keeps its colour.
const NAME_COLOURS: [Color; 6] = [
    Color::LightBlue,
    Color::LightMagenta,
    Color::LightRed,
    Color::Blue,
    Color::Magenta,
    Color::Red,
];

/// Where each part of the UI goes in a terminal of a given size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Areas {
    messages: Rect,
    people: Option<Rect>,
    input: Rect,
    feedback: Rect,
    status: Rect,
}

impl Areas {
    fn of(area: Rect) -> Self {
        let [main, input, feedback, status] = Layout::vertical([
            Constraint::Min(1),
            Constraint::Length(3),
            Constraint::Length(1),
            Constraint::Length(1),
        ])
        .areas(area);
        let (messages, people) = if area.width >= PEOPLE_MIN_TERMINAL_WIDTH {
            let [messages, people] =
                Layout::horizontal([Constraint::Min(1), Constraint::Length(PEOPLE_WIDTH)])
                    .areas(main);
            (messages, Some(people))
        } else {
            (main, None)
        };
        Self {
            messages,
            people,
            input,
            feedback,
            status,
        }
    }
}

/// The text area of the message pane in a terminal of size `terminal`.
pub(crate) fn message_area(terminal: Rect) -> Rect {
    Block::bordered().inner(Areas::of(terminal).messages)
}

/// Draws the whole UI.
pub fn render(app: &App, frame: &mut Frame) {
    let areas = Areas::of(frame.area());
    render_messages(app, frame, areas.messages);
    if let Some(people) = areas.people {
        render_people(app, frame, people);
    }
    render_input(app, frame, areas.input);
    render_feedback(app, frame, areas.feedback);
    render_status(app, frame, areas.status);
}

fn render_messages(app: &App, frame: &mut Frame, area: Rect) {
    let mut block = Block::bordered().title(" Chitty-Chat ");
    let inner = block.inner(area);
    let height = usize::from(inner.height);
    // Wrap from the newest entry back until the screen and what is scrolled past are covered.
    let wanted = height + app.scroll;
    let mut rows: VecDeque<Line<'static>> = VecDeque::with_capacity(wanted + 8);
    for entry in app.entries.iter().rev() {
        if rows.len() >= wanted {
            break;
        }
        for row in wrap(&entry_spans(app, entry), inner.width)
            .into_iter()
            .rev()
        {
            rows.push_front(row);
        }
    }
    let scroll = app.scroll.min(rows.len().saturating_sub(height));
    let end = rows.len() - scroll;
    let start = end.saturating_sub(height);
    if scroll > 0 {
        block = block.title_bottom(
            Line::styled(
                format!(" {scroll} rows up · PgDn or Esc returns "),
                Style::new().fg(Color::Yellow),
            )
            .right_aligned(),
        );
    }
    let visible: Vec<Line<'static>> = rows.range(start..end).cloned().collect();
    frame.render_widget(Paragraph::new(visible).block(block), area);
}

fn render_people(app: &App, frame: &mut Frame, area: Rect) {
    let block = Block::bordered().title(format!(" Present ({}) ", app.present.len()));
    let inner = block.inner(area);
    let height = usize::from(inner.height);
    let mut lines: Vec<Line<'static>> = Vec::with_capacity(height);
    let total = app.present.len();
    for (index, name) in app.present.iter().enumerate() {
        if lines.len() + 1 == height && index + 1 < total {
            lines.push(Line::styled(
                format!("… and {} more", total - index),
                Style::new().fg(Color::DarkGray),
            ));
            break;
        }
        let shown = escaped(name).into_owned();
        if *name == app.name {
            lines.push(Line::from(vec![
                Span::styled(shown, own_name_style()),
                Span::styled(" (you)", Style::new().fg(Color::DarkGray)),
            ]));
        } else {
            lines.push(Line::styled(shown, name_style(name)));
        }
    }
    frame.render_widget(Paragraph::new(lines).block(block), area);
}

fn render_input(app: &App, frame: &mut Frame, area: Rect) {
    let (count, limit) = app.counter();
    let problem = app.live_problem().is_some();
    let counter_style = if count > limit {
        Style::new().fg(Color::Red).add_modifier(Modifier::BOLD)
    } else {
        Style::new().fg(Color::DarkGray)
    };
    let block = Block::bordered()
        .title(" Message ")
        .title(Line::styled(format!(" {count}/{limit} "), counter_style).right_aligned())
        .border_style(if problem {
            Style::new().fg(Color::Red)
        } else {
            Style::new()
        });
    let inner = block.inner(area);
    let widths: Vec<usize> = app.input.text().chars().map(char_width).collect();
    let cursor = app.input.cursor().min(widths.len());
    // Scroll sideways just enough to keep the cursor in view.
    let room = usize::from(inner.width).saturating_sub(1);
    let mut start = 0;
    let mut before_cursor: usize = widths[..cursor].iter().sum();
    while before_cursor > room && start < cursor {
        before_cursor -= widths[start];
        start += 1;
    }
    let shown: String = app.input.text().chars().skip(start).collect();
    frame.render_widget(Paragraph::new(shown).block(block), area);
    if !matches!(
        app.connection,
        ConnectionState::Leaving | ConnectionState::Left
    ) && inner.width > 0
        && inner.height > 0
    {
        let x = u16::try_from(before_cursor).unwrap_or(u16::MAX);
        frame.set_cursor_position((inner.x.saturating_add(x), inner.y));
    }
}

fn render_feedback(app: &App, frame: &mut Frame, area: Rect) {
    let line = match (&app.feedback, app.live_problem()) {
        (Some(Feedback::Error(reason)), _) => {
            Line::styled(format!(" ✗ {reason}"), Style::new().fg(Color::Red))
        }
        (_, Some(problem)) => Line::styled(
            format!(" ✗ cannot send: {problem}"),
            Style::new().fg(Color::Red),
        ),
        (Some(Feedback::Info(remark)), None) => {
            Line::styled(format!(" {remark}"), Style::new().fg(Color::Yellow))
        }
        (None, None) => Line::styled(
            " Enter sends · /help lists the commands · PgUp/PgDn scroll · Ctrl-C leaves",
            Style::new().fg(Color::DarkGray),
        ),
    };
    frame.render_widget(Paragraph::new(line), area);
}

fn render_status(app: &App, frame: &mut Frame, area: Rect) {
    let (symbol, state, colour) = match &app.connection {
        ConnectionState::Connecting => {
            ("◌", format!("connecting to {}", app.server), Color::Yellow)
        }
        ConnectionState::Connected { note: None } => {
            ("●", format!("connected to {}", app.server), Color::Green)
        }
        ConnectionState::Connected { note: Some(note) } => (
            "●",
            format!("connected to {} · {note}", app.server),
            Color::Green,
        ),
        ConnectionState::Reconnecting {
            retry_at,
            attempt,
            reason,
        } => {
            let seconds = seconds_until(app.now, *retry_at);
            let when = if seconds == 0 {
                "reconnecting now".to_owned()
            } else {
                format!("reconnecting in {seconds} s")
            };
            (
                "○",
                format!(
                    "{when} (attempt {}) to {} · {reason}",
                    attempt + 1,
                    app.server
                ),
                Color::Red,
            )
        }
        ConnectionState::Leaving => ("◌", "leaving".to_owned(), Color::Yellow),
        ConnectionState::Left => ("○", "left the chat".to_owned(), Color::DarkGray),
    };
    let sending = if app.pending > 0 {
        format!("sending {} · ", app.pending)
    } else {
        String::new()
    };
    // The leading space keeps a long state on the left from running into the name.
    let right = format!(
        " {sending}{} · Lamport {} ",
        escaped(&app.name),
        app.own_lamport
    );
    let right_width = u16::try_from(Line::raw(right.as_str()).width()).unwrap_or(u16::MAX);
    let bar = Style::new().bg(Color::Black).fg(Color::White);
    let [left_area, right_area] =
        Layout::horizontal([Constraint::Min(0), Constraint::Length(right_width)]).areas(area);
    let left = Line::from(vec![
        Span::styled(format!(" {symbol} "), Style::new().fg(colour)),
        Span::raw(state),
    ]);
    frame.render_widget(Paragraph::new(left).style(bar), left_area);
    frame.render_widget(
        Paragraph::new(Line::raw(right).right_aligned()).style(bar),
        right_area,
    );
}

/// The spans of one entry, before wrapping.
fn entry_spans(app: &App, entry: &Entry) -> Vec<Span<'static>> {
    match entry {
        Entry::Event { event, own_lamport } => {
            let times = Span::styled(
                format!("[L={} me={}] ", event.lamport, own_lamport),
                Style::new().fg(Color::DarkGray),
            );
            match event.kind {
                EventKind::Message => {
                    let style = if *event.participant == *app.name {
                        own_name_style()
                    } else {
                        name_style(&event.participant)
                    };
                    vec![
                        times,
                        Span::styled(escaped(&event.participant).into_owned(), style),
                        Span::raw(": "),
                        Span::raw(escaped(&event.text).into_owned()),
                    ]
                }
                EventKind::Joined => vec![
                    times,
                    Span::styled(
                        format!("→ {}", escaped(&event.text)),
                        Style::new().fg(Color::Green).add_modifier(Modifier::ITALIC),
                    ),
                ],
                EventKind::Left => vec![
                    times,
                    Span::styled(
                        format!("← {}", escaped(&event.text)),
                        Style::new()
                            .fg(Color::Yellow)
                            .add_modifier(Modifier::ITALIC),
                    ),
                ],
            }
        }
        Entry::Note { text, warning } => vec![Span::styled(
            format!("-- {text}"),
            if *warning {
                Style::new().fg(Color::Yellow)
            } else {
                Style::new().fg(Color::DarkGray)
            },
        )],
    }
}

/// How many rows `entry` takes at `width`.
pub(crate) fn entry_rows(app: &App, entry: &Entry, width: u16) -> usize {
    wrap(&entry_spans(app, entry), width).len()
}

/// How many rows all entries take at `width`.
pub(crate) fn total_rows(app: &App, width: u16) -> usize {
    app.entries
        .iter()
        .map(|entry| entry_rows(app, entry, width))
        .sum()
}

fn own_name_style() -> Style {
    Style::new().fg(Color::Cyan).add_modifier(Modifier::BOLD)
}

fn name_style(name: &str) -> Style {
    let index = name.chars().fold(0usize, |sum, character| {
        sum.wrapping_mul(31).wrapping_add(character as usize)
    }) % NAME_COLOURS.len();
    Style::new()
        .fg(NAME_COLOURS[index])
        .add_modifier(Modifier::BOLD)
}

/// The columns a character takes, as ratatui counts them.
fn char_width(character: char) -> usize {
    let mut buffer = [0; 4];
    usize::from(character.encode_utf8(&mut buffer).cell_width())
}

/// A run of graphemes of one style that is either all whitespace or all not.
struct Token<'a> {
    style: Style,
    space: bool,
    graphemes: Vec<(&'a str, usize)>,
}

/// Wraps `spans` into rows at most `width` columns wide: at spaces where possible, inside a word only when
/// the word is wider than a row. Rows after the first are indented when the pane is wide enough. Every row
/// is at most `width` columns, counted by grapheme as the buffer counts them, so nothing spills over.
pub(crate) fn wrap(spans: &[Span<'_>], width: u16) -> Vec<Line<'static>> {
    let width = usize::from(width.max(1));
    let indent = if width >= 10 * CONTINUATION_INDENT {
        CONTINUATION_INDENT
    } else {
        0
    };
    let mut tokens: Vec<Token<'_>> = Vec::new();
    for span in spans {
        for grapheme in span.styled_graphemes(Style::default()) {
            let space = grapheme.symbol.chars().all(char::is_whitespace);
            let grapheme_width = usize::from(grapheme.symbol.cell_width());
            match tokens.last_mut() {
                Some(token) if token.space == space && token.style == grapheme.style => {
                    token.graphemes.push((grapheme.symbol, grapheme_width));
                }
                _ => tokens.push(Token {
                    style: grapheme.style,
                    space,
                    graphemes: vec![(grapheme.symbol, grapheme_width)],
                }),
            }
        }
    }
    let mut rows = Vec::new();
    let mut row = Row::new(0);
    for (index, token) in tokens.iter().enumerate() {
        let token_width: usize = token.graphemes.iter().map(|(_, width)| width).sum();
        if token.space {
            if row.at_start() && !rows.is_empty() {
                continue;
            }
            for (symbol, symbol_width) in &token.graphemes {
                if row.used + symbol_width > width {
                    rows.push(row.finish());
                    row = Row::new(indent);
                    break;
                }
                row.push(symbol, *symbol_width, token.style);
            }
            continue;
        }
        // A word continues across spans of different styles ("name" then ":"), so measure the whole run
        // of non-space tokens from here when deciding whether to start a new row.
        let word_width: usize = token_width
            + tokens[index + 1..]
                .iter()
                .take_while(|next| !next.space)
                .flat_map(|next| next.graphemes.iter().map(|(_, width)| width))
                .sum::<usize>();
        let starts_word = index == 0 || tokens[index - 1].space;
        if starts_word
            && row.used + word_width > width
            && !row.at_start()
            && indent + word_width <= width
        {
            rows.push(row.finish());
            row = Row::new(indent);
        }
        for (symbol, symbol_width) in &token.graphemes {
            if row.used + symbol_width > width && !row.at_start() {
                rows.push(row.finish());
                row = Row::new(indent);
            }
            row.push(symbol, *symbol_width, token.style);
        }
    }
    if !row.at_start() || rows.is_empty() {
        rows.push(row.finish());
    }
    rows
}

/// A row being filled.
struct Row {
    spans: Vec<Span<'static>>,
    used: usize,
    indent: usize,
}

impl Row {
    fn new(indent: usize) -> Self {
        let spans = if indent > 0 {
            vec![Span::raw(" ".repeat(indent))]
        } else {
            Vec::new()
        };
        Self {
            spans,
            used: indent,
            indent,
        }
    }

    fn at_start(&self) -> bool {
        self.used == self.indent
    }

    fn push(&mut self, symbol: &str, width: usize, style: Style) {
        let only_indent = self.indent > 0 && self.spans.len() == 1;
        match self.spans.last_mut() {
            Some(last) if last.style == style && !only_indent => {
                last.content.to_mut().push_str(symbol);
            }
            _ => self.spans.push(Span::styled(symbol.to_owned(), style)),
        }
        self.used += width;
    }

    fn finish(self) -> Line<'static> {
        Line::from(self.spans)
    }
}
