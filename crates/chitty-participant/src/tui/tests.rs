//! Tests of the terminal UI without a terminal: rendering into ratatui's `TestBackend`, compared with
//! snapshot files in `testdata/snapshots/` (`INSTA_UPDATE=always cargo test -p chitty-participant`, or
//! `cargo insta review`, rewrites them), and the state changes behind it.

use std::time::Duration;

use chitty_core::{Event, EventDraft, LamportTime, Seq};
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::buffer::Buffer;
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers, MouseEvent, MouseEventKind};
use ratatui::layout::Rect;
use ratatui::style::{Color, Modifier};
use tokio::time::Instant;

use super::app::{Action, App, ConnectionState, Entry, SCROLLBACK};
use super::view::{render, wrap};
use crate::client::{ClientError, ErrorKind, Presence};
use crate::session::{Notice, Resumption};

const SERVER: &str = "http://127.0.0.1:50051";

fn message(seq: u64, lamport: u64, author: &str, text: &str) -> Event {
    EventDraft::Message {
        participant: author.into(),
        text: text.into(),
    }
    .into_event(Seq::new(seq), LamportTime::new(lamport))
}

fn joined(seq: u64, lamport: u64, name: &str) -> Event {
    EventDraft::Joined {
        participant: name.into(),
    }
    .into_event(Seq::new(seq), LamportTime::new(lamport))
}

fn left(seq: u64, lamport: u64, name: &str) -> Event {
    EventDraft::Left {
        participant: name.into(),
    }
    .into_event(Seq::new(seq), LamportTime::new(lamport))
}

fn receive(app: &mut App, event: Event) {
    let own_lamport = LamportTime::new(event.lamport.get() + 1);
    app.apply(Notice::Event { event, own_lamport });
}

fn presence(app: &mut App, names: &[&str], seq: u64) {
    app.apply(Notice::Presence(Presence {
        names: names.iter().map(|name| (*name).to_owned()).collect(),
        seq: Seq::new(seq),
        lamport: LamportTime::new(0),
    }));
}

/// Alice, connected, with her own join received.
fn alice(now: Instant) -> App {
    let mut app = App::new("alice", SERVER, now);
    presence(&mut app, &["alice"], 1);
    app.apply(Notice::Connected {
        server: SERVER.to_owned(),
        join_seq: Seq::new(1),
    });
    receive(&mut app, joined(1, 3, "alice"));
    app
}

fn typed(app: &mut App, text: &str) {
    for character in text.chars() {
        app.key(KeyEvent::from(KeyCode::Char(character)));
    }
}

fn press(app: &mut App, code: KeyCode) -> Action {
    app.key(KeyEvent::from(code))
}

fn control(app: &mut App, character: char) -> Action {
    app.key(KeyEvent::new(
        KeyCode::Char(character),
        KeyModifiers::CONTROL,
    ))
}

/// Renders `app` into a terminal of `width` by `height`.
fn draw(app: &mut App, width: u16, height: u16) -> Terminal<TestBackend> {
    app.resize(Rect::new(0, 0, width, height));
    let mut terminal = Terminal::new(TestBackend::new(width, height)).expect("a test terminal");
    terminal
        .draw(|frame| render(app, frame))
        .expect("drawing into a test backend");
    terminal
}

fn snapshot(name: &str, terminal: &Terminal<TestBackend>) {
    insta::with_settings!({
        snapshot_path => "../../testdata/snapshots",
        prepend_module_to_snapshot => false,
        omit_expression => true,
    }, {
        insta::assert_snapshot!(name, terminal.backend());
    });
}

/// The text of row `y`, without wide characters' hidden cells.
fn row(buffer: &Buffer, y: u16) -> String {
    let mut text = String::new();
    let mut skip = 0;
    for x in 0..buffer.area.width {
        let cell = &buffer[(x, y)];
        if skip > 0 {
            skip -= 1;
            continue;
        }
        text.push_str(cell.symbol());
        skip = ratatui::buffer::CellWidth::cell_width(cell.symbol()).saturating_sub(1);
    }
    text
}

fn screen(terminal: &Terminal<TestBackend>) -> String {
    let buffer = terminal.backend().buffer();
    (0..buffer.area.height)
        .map(|y| row(buffer, y))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn an_empty_room() {
    let now = Instant::now();
    let mut app = alice(now);
    app.tick(now, LamportTime::new(4));
    snapshot("empty_room", &draw(&mut app, 80, 14));
}

#[test]
fn a_busy_room() {
    let now = Instant::now();
    let mut app = App::new("alice", SERVER, now);
    presence(&mut app, &["alice", "bob", "carol"], 4);
    app.apply(Notice::Connected {
        server: SERVER.to_owned(),
        join_seq: Seq::new(2),
    });
    receive(&mut app, joined(2, 5, "alice"));
    receive(&mut app, joined(3, 8, "bob"));
    receive(&mut app, joined(4, 11, "carol"));
    receive(&mut app, message(5, 14, "bob", "hi alice"));
    receive(&mut app, message(6, 17, "alice", "hello bob, hello carol"));
    receive(&mut app, joined(7, 20, "dave"));
    receive(&mut app, message(8, 23, "dave", "did I miss anything?"));
    receive(&mut app, message(9, 26, "carol", "only the weather"));
    receive(&mut app, left(10, 29, "dave"));
    receive(&mut app, joined(11, 32, "erin"));
    receive(&mut app, message(12, 35, "erin", "evening all"));
    receive(&mut app, message(13, 38, "bob", "evening erin"));
    typed(&mut app, "see you to");
    app.tick(now, LamportTime::new(41));
    snapshot("busy_room", &draw(&mut app, 100, 20));
}

#[test]
fn a_long_message() {
    let now = Instant::now();
    let mut app = alice(now);
    presence(&mut app, &["alice", "bob"], 2);
    receive(&mut app, joined(2, 6, "bob"));
    receive(
        &mut app,
        message(
            3,
            9,
            "bob",
            "a message long enough to wrap over several rows of the pane, at the spaces between its words, with the rows after the first indented",
        ),
    );
    receive(
        &mut app,
        message(
            4,
            12,
            "bob",
            &format!("{}!", "supercalifragilistic".repeat(5)),
        ),
    );
    app.tick(now, LamportTime::new(13));
    snapshot("long_message", &draw(&mut app, 64, 18));
}

#[test]
fn wide_characters() {
    let now = Instant::now();
    let mut app = alice(now);
    presence(&mut app, &["alice", "太郎"], 2);
    receive(&mut app, joined(2, 6, "太郎"));
    receive(
        &mut app,
        message(
            3,
            9,
            "太郎",
            "こんにちは、世界。日本語の長いメッセージは二列ずつ使います。",
        ),
    );
    receive(
        &mut app,
        message(4, 12, "alice", "🦀🦀🦀 crabs 🎉 and 中文字符 mixed"),
    );
    receive(&mut app, message(5, 15, "太郎", &"漢字".repeat(30)));
    typed(&mut app, "返事は🦀");
    app.tick(now, LamportTime::new(16));
    snapshot("wide_characters", &draw(&mut app, 70, 16));
}

#[test]
fn the_reconnecting_status_counts_down() {
    let now = Instant::now();
    let mut app = alice(now);
    receive(&mut app, message(2, 6, "alice", "anyone there?"));
    let reason = ClientError {
        kind: ErrorKind::Unreachable,
        message:
            "cannot reach the Chitty-Chat service at http://127.0.0.1:50051: connection refused"
                .to_owned(),
        lamport: None,
        last_seq: None,
        retry_after: None,
    };
    app.apply(Notice::Disconnected {
        reason: reason.clone(),
        cut_off: false,
    });
    app.apply(Notice::Reconnecting {
        retry_at: now + Duration::from_millis(2_300),
        attempt: 1,
        reason,
    });
    app.tick(now, LamportTime::new(7));
    let terminal = draw(&mut app, 90, 12);
    assert!(
        screen(&terminal).contains("reconnecting in 3 s (attempt 2)"),
        "{}",
        screen(&terminal)
    );
    snapshot("reconnecting", &terminal);
    app.tick(now + Duration::from_millis(1_500), LamportTime::new(7));
    assert!(screen(&draw(&mut app, 90, 12)).contains("reconnecting in 1 s"));
    app.tick(now + Duration::from_secs(3), LamportTime::new(7));
    assert!(screen(&draw(&mut app, 90, 12)).contains("reconnecting now"));
}

#[test]
fn an_error_under_the_input() {
    let now = Instant::now();
    let mut app = alice(now);
    typed(&mut app, &"x".repeat(130));
    app.tick(now, LamportTime::new(4));
    let terminal = draw(&mut app, 80, 12);
    let shown = screen(&terminal);
    assert!(shown.contains("130/128"), "{shown}");
    assert!(
        shown.contains("message is 130 characters long, over the limit of 128"),
        "{shown}"
    );
    snapshot("input_error", &terminal);
    // Enter refuses it too, and keeps the text to edit.
    assert_eq!(press(&mut app, KeyCode::Enter), Action::None);
    assert_eq!(app.input().text().chars().count(), 130);
}

#[test]
fn enter_sends_what_the_service_would_accept_and_refuses_the_rest_with_the_reason() {
    let mut app = alice(Instant::now());
    typed(&mut app, "   ");
    assert_eq!(press(&mut app, KeyCode::Enter), Action::None);
    let shown = screen(&draw(&mut app, 80, 12));
    assert!(
        shown.contains("cannot send: message is only whitespace"),
        "{shown}"
    );
    // Editing clears the complaint.
    press(&mut app, KeyCode::Backspace);
    assert!(!screen(&draw(&mut app, 80, 12)).contains("cannot send"));
    control(&mut app, 'u');
    typed(&mut app, "hello 世界");
    assert_eq!(
        press(&mut app, KeyCode::Enter),
        Action::Send("hello 世界".to_owned())
    );
    assert!(app.input().is_empty());
    typed(&mut app, "//slash");
    assert_eq!(
        press(&mut app, KeyCode::Enter),
        Action::Send("/slash".to_owned())
    );
    // The service's own refusal shows in the same place.
    app.apply(Notice::NotSent {
        reason: "message contains the control character U+0007".to_owned(),
    });
    let shown = screen(&draw(&mut app, 80, 12));
    assert!(
        shown.contains("not sent: message contains the control"),
        "{shown}"
    );
}

#[test]
fn commands_quit_help_and_unknown() {
    let mut app = alice(Instant::now());
    typed(&mut app, "/help");
    assert_eq!(press(&mut app, KeyCode::Enter), Action::None);
    assert!(app.entries().any(|entry| matches!(
        entry,
        Entry::Note { text, .. } if text.starts_with("Commands: /help")
    )));
    typed(&mut app, "/dance");
    press(&mut app, KeyCode::Enter);
    assert!(screen(&draw(&mut app, 120, 20)).contains("unknown command /dance"));
    control(&mut app, 'u');
    typed(&mut app, "/quit");
    assert_eq!(press(&mut app, KeyCode::Enter), Action::Quit);
    let mut other = alice(Instant::now());
    typed(&mut other, "half a thought");
    assert_eq!(control(&mut other, 'c'), Action::Quit);
}

#[test]
fn shell_editing_keys_work_on_characters() {
    let mut app = alice(Instant::now());
    typed(&mut app, "naïve 日本 text");
    control(&mut app, 'w');
    assert_eq!(app.input().text(), "naïve 日本 ");
    press(&mut app, KeyCode::Home);
    press(&mut app, KeyCode::Right);
    press(&mut app, KeyCode::Right);
    press(&mut app, KeyCode::Delete);
    assert_eq!(app.input().text(), "nave 日本 ");
    press(&mut app, KeyCode::End);
    press(&mut app, KeyCode::Left);
    press(&mut app, KeyCode::Backspace);
    assert_eq!(app.input().text(), "nave 日 ");
    assert_eq!(app.input().cursor(), 6);
    control(&mut app, 'a');
    assert_eq!(app.input().cursor(), 0);
    control(&mut app, 'e');
    assert_eq!(app.input().cursor(), 7);
    assert_eq!(app.counter(), (7, 128));
}

#[test]
fn up_and_down_recall_what_was_sent() {
    let mut app = alice(Instant::now());
    for text in ["first", "second"] {
        typed(&mut app, text);
        press(&mut app, KeyCode::Enter);
    }
    typed(&mut app, "draft");
    press(&mut app, KeyCode::Up);
    assert_eq!(app.input().text(), "second");
    press(&mut app, KeyCode::Up);
    press(&mut app, KeyCode::Up);
    assert_eq!(app.input().text(), "first");
    press(&mut app, KeyCode::Down);
    assert_eq!(app.input().text(), "second");
    press(&mut app, KeyCode::Down);
    assert_eq!(app.input().text(), "");
}

#[test]
fn presence_follows_the_snapshot_and_newer_events_only() {
    let mut app = App::new("alice", SERVER, Instant::now());
    presence(&mut app, &["alice", "bob"], 5);
    // Events the snapshot already reflects change nothing, even when they disagree with it.
    receive(&mut app, left(3, 7, "bob"));
    receive(&mut app, joined(4, 9, "mallory"));
    assert_eq!(app.present().collect::<Vec<_>>(), ["alice", "bob"]);
    receive(&mut app, joined(6, 12, "carol"));
    receive(&mut app, left(7, 14, "bob"));
    // Applying an event twice is harmless.
    receive(&mut app, joined(6, 12, "carol"));
    receive(&mut app, left(7, 14, "bob"));
    assert_eq!(app.present().collect::<Vec<_>>(), ["alice", "carol"]);
    // A new snapshot, after a reconnection, replaces the list.
    presence(&mut app, &["alice", "dave"], 20);
    receive(&mut app, joined(21, 40, "erin"));
    assert_eq!(app.present().collect::<Vec<_>>(), ["alice", "dave", "erin"]);
    let shown = screen(&draw(&mut app, 80, 12));
    assert!(shown.contains("Present (3)"), "{shown}");
    assert!(shown.contains("alice (you)"), "{shown}");
}

#[test]
fn the_scrollback_is_bounded_and_a_burst_renders_quickly() {
    let now = Instant::now();
    let mut app = alice(now);
    for seq in 2..2 + 2 * SCROLLBACK as u64 {
        receive(
            &mut app,
            message(
                seq,
                seq * 2,
                "bob",
                &format!("message number {seq} with some words to wrap over rows"),
            ),
        );
    }
    assert_eq!(app.entries().count(), SCROLLBACK);
    let Some(Entry::Event { event, .. }) = app.entries().next() else {
        panic!("the oldest entry is an event");
    };
    assert_eq!(event.seq, Seq::new(2 + SCROLLBACK as u64));
    // Drawing a full scrollback costs a screenful, however long the history.
    let started = std::time::Instant::now();
    for _ in 0..10 {
        draw(&mut app, 120, 40);
    }
    let took = started.elapsed();
    assert!(took < Duration::from_secs(2), "10 frames took {took:?}");
    let shown = screen(&draw(&mut app, 120, 40));
    assert!(
        shown.contains(&format!("message number {} ", 1 + 2 * SCROLLBACK)),
        "{shown}"
    );
}

#[test]
fn scrolling_by_page_and_wheel_keeps_the_view_while_messages_arrive() {
    let mut app = alice(Instant::now());
    for seq in 2..60 {
        receive(
            &mut app,
            message(seq, seq * 2, "bob", &format!("line {seq}")),
        );
    }
    let shown = screen(&draw(&mut app, 80, 14));
    assert!(shown.contains("line 59"));
    press(&mut app, KeyCode::PageUp);
    let shown = screen(&draw(&mut app, 80, 14));
    assert!(
        !shown.contains("line 59") && shown.contains("rows up"),
        "{shown}"
    );
    let top_before = shown.lines().nth(1).map(str::to_owned);
    receive(&mut app, message(60, 120, "bob", "line 60"));
    let shown = screen(&draw(&mut app, 80, 14));
    assert_eq!(shown.lines().nth(1).map(str::to_owned), top_before);
    for _ in 0..100 {
        app.mouse(MouseEvent {
            kind: MouseEventKind::ScrollUp,
            column: 0,
            row: 0,
            modifiers: KeyModifiers::NONE,
        });
    }
    let shown = screen(&draw(&mut app, 80, 14));
    assert!(shown.contains("Participant alice joined"), "{shown}");
    press(&mut app, KeyCode::Esc);
    let shown = screen(&draw(&mut app, 80, 14));
    assert!(
        shown.contains("line 60") && !shown.contains("rows up"),
        "{shown}"
    );
}

#[test]
fn joins_and_leaves_are_styled_apart_from_messages() {
    let mut app = alice(Instant::now());
    receive(&mut app, message(2, 6, "alice", "a message"));
    receive(&mut app, left(3, 9, "bob"));
    let terminal = draw(&mut app, 80, 12);
    let buffer = terminal.backend().buffer();
    let find = |needle: &str| {
        (0..buffer.area.height)
            .find_map(|y| {
                let text = row(buffer, y);
                text.find(needle)
                    .map(|at| (text[..at].chars().count() as u16, y))
            })
            .unwrap_or_else(|| panic!("{needle:?} is on screen"))
    };
    let joined_at = find("Participant alice joined");
    let left_at = find("Participant bob left");
    let text_at = find("a message");
    assert_eq!(buffer[joined_at].fg, Color::Green);
    assert!(buffer[joined_at].modifier.contains(Modifier::ITALIC));
    assert_eq!(buffer[left_at].fg, Color::Yellow);
    assert!(!buffer[text_at].modifier.contains(Modifier::ITALIC));
    assert_eq!(buffer[text_at].fg, Color::Reset);
}

#[test]
fn other_peoples_control_and_bidi_characters_are_shown_escaped() {
    let mut app = alice(Instant::now());
    presence(&mut app, &["alice", "mal\u{202e}lory"], 1);
    receive(
        &mut app,
        message(2, 6, "mal\u{202e}lory", "clear\u{1b}[2J now \u{2067}x"),
    );
    let shown = screen(&draw(&mut app, 100, 12));
    assert!(
        shown.contains("mal\\u{202e}lory: clear\\u{1b}[2J now \\u{2067}x"),
        "{shown}"
    );
    let unsafe_shown: Vec<char> = shown
        .chars()
        .filter(|character| *character != '\n' && crate::output::is_unsafe_to_show(*character))
        .collect();
    assert!(unsafe_shown.is_empty(), "{unsafe_shown:?}");
}

#[test]
fn resumption_shows_the_missed_events_in_the_status_line() {
    let mut app = alice(Instant::now());
    app.apply(Notice::Reconnected {
        server: SERVER.to_owned(),
        resumption: Resumption::Resumed {
            after_seq: Seq::new(9),
            missed: Some(4),
        },
    });
    assert!(
        matches!(&app.connection, ConnectionState::Connected { note: Some(note) } if note == "resumed, 4 missed events")
    );
    let shown = screen(&draw(&mut app, 100, 12));
    assert!(shown.contains("resumed, 4 missed events"), "{shown}");
    assert!(shown.contains("reconnected to http://127.0.0.1:50051; resuming after seq 9"));
}

#[test]
fn any_size_renders_without_panicking() {
    let mut app = alice(Instant::now());
    presence(
        &mut app,
        &["alice", "太郎", "a-very-long-name-that-will-not-fit"],
        1,
    );
    receive(&mut app, message(2, 6, "太郎", &"漢字🦀".repeat(40)));
    typed(&mut app, &"日本".repeat(70));
    for width in 0..=64 {
        for height in [0, 1, 2, 3, 5, 8, 13] {
            draw(&mut app, width, height);
        }
    }
}

#[test]
fn wrapped_rows_never_exceed_the_width() {
    let text =
        "short words, 漢字かな交じり文、🦀🎉 emoji, and averyveryveryverylongwordwithoutspaces 終";
    let spans = [
        ratatui::text::Span::raw("[L=12 me=13] "),
        ratatui::text::Span::raw(text),
    ];
    for width in 2..50 {
        let rows = wrap(&spans, width);
        for line in &rows {
            assert!(
                line.width() <= usize::from(width),
                "width {width}: {line:?} is {} wide",
                line.width()
            );
        }
        let joined: String = rows
            .iter()
            .flat_map(|line| line.spans.iter().map(|span| span.content.to_string()))
            .collect::<String>()
            .split_whitespace()
            .collect();
        let want: String = format!("[L=12 me=13] {text}").split_whitespace().collect();
        assert_eq!(joined, want, "width {width} loses nothing but spaces");
    }
}
