//! The participant page (`crates/chitty-service/web/app.js`) shows text and refuses input exactly as this
//! crate and the service do.
//!
//! The page's pure part (`ChittyPage`) is loaded with Node, given events, names and messages, and its answers
//! are compared with [`output::event_line`] (after its `[seq=.. lamport=.. me=..] ` prefix) and with
//! `chitty_core::validate`: the escaping over every Unicode scalar value, and the refusal messages word for
//! word. Without `node` on the PATH (Debian's `nodejs` package) the test says it skipped and why.

use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};

use chitty_core::validate::{check_message, check_name};
use chitty_core::{Event, EventDraft, LamportTime, Seq};
use chitty_participant::output;
use serde_json::{Value, json};

/// Runs `script` with Node, `app.js` loaded as `page`, `input` as the global `input`; returns what it
/// prints as JSON, or `None` (having said why) without Node.
fn node(script: &str, input: &Value) -> Option<Value> {
    let app = Path::new(env!("CARGO_MANIFEST_DIR")).join("../chitty-service/web/app.js");
    let program = format!(
        "const page = require({app:?});\nconst input = JSON.parse(require('fs').readFileSync(0, 'utf8'));\n{script}",
        app = app.display().to_string(),
    );
    let mut child = match Command::new("node")
        .args(["-e", &program])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(child) => child,
        Err(error) => {
            eprintln!("skipped: `node` is not on the PATH ({error}); install Debian's `nodejs`");
            return None;
        }
    };
    child
        .stdin
        .take()
        .expect("node's standard input")
        .write_all(input.to_string().as_bytes())
        .expect("node reads its input");
    let output = child.wait_with_output().expect("node runs");
    assert!(
        output.status.success(),
        "node failed ({}):\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    Some(serde_json::from_slice(&output.stdout).expect("node prints JSON"))
}

/// The body the terminal prints for `event`: its line without the `[seq=.. lamport=.. me=..] ` prefix.
fn terminal_body(event: &Event) -> String {
    let line = output::event_line(event, LamportTime::new(0));
    let (_, body) = line.split_once("] ").expect("a line has its prefix");
    body.to_owned()
}

fn message(participant: &str, text: &str) -> Event {
    EventDraft::Message {
        participant: participant.into(),
        text: text.into(),
    }
    .into_event(Seq::new(1), LamportTime::new(1))
}

#[test]
fn the_page_shows_events_exactly_as_the_terminal_prints_them() {
    // Every Unicode scalar value, in messages of a few thousand characters, as text and as an author.
    let every_char: Vec<char> = (0..=0x10ffff).filter_map(char::from_u32).collect();
    let mut events: Vec<Event> = every_char
        .chunks(4096)
        .map(|chunk| message("eve", &chunk.iter().collect::<String>()))
        .collect();
    events.extend(
        every_char
            .chunks(97)
            .take(40)
            .map(|chunk| message(&chunk.iter().collect::<String>(), "x")),
    );
    for name in ["bob", "mal\u{202e}lory", "\u{1b}[31mred"] {
        events.push(
            EventDraft::Joined {
                participant: name.into(),
            }
            .into_event(Seq::new(2), LamportTime::new(9)),
        );
        events.push(
            EventDraft::Left {
                participant: name.into(),
            }
            .into_event(Seq::new(3), LamportTime::new(12)),
        );
    }
    let kind = |event: &Event| match event.kind {
        chitty_core::EventKind::Message => 1,
        chitty_core::EventKind::Joined => 2,
        chitty_core::EventKind::Left => 3,
    };
    let input: Value = events
        .iter()
        .map(|event| json!({"kind": kind(event), "participant": &*event.participant, "text": event.text}))
        .collect();
    let Some(shown) = node(
        "process.stdout.write(JSON.stringify(input.map((event) => page.eventBody(event))));",
        &input,
    ) else {
        return;
    };
    let shown = shown.as_array().expect("one body per event");
    assert_eq!(shown.len(), events.len());
    for (event, shown) in events.iter().zip(shown) {
        let want = terminal_body(event);
        let got = shown.as_str().expect("a body is a string");
        if got != want {
            let at = got
                .chars()
                .zip(want.chars())
                .position(|(got, want)| got != want)
                .unwrap_or(0);
            let around = |text: &str| {
                text.chars()
                    .skip(at.saturating_sub(8))
                    .take(24)
                    .collect::<String>()
            };
            panic!(
                "the page shows an event unlike the terminal, from character {at}:\n  got  {:?}\n  want {:?}",
                around(got),
                around(&want)
            );
        }
    }
}

#[test]
fn the_page_refuses_names_and_messages_in_the_service_s_words() {
    let names = [
        "alice",
        "",
        " alice",
        "alice ",
        "al ice",
        "al\u{a0}ice",
        "al\u{200b}ice",
        "\u{202e}alice",
        "ali\tce",
        "zoë 🦀",
        "x\u{7f}",
        "\u{85}",
        "ＡＬＩＣＥ",
        "\u{3000}wide",
        "a\u{feff}",
        &"n".repeat(32),
        &"n".repeat(33),
        &"🦀".repeat(33),
    ];
    let messages = [
        "hello",
        "",
        " ",
        "\u{3000}\u{2003}",
        "  padded  ",
        "line\nbreak",
        "\u{1b}[2J",
        "bidi \u{202e} is fine in a message",
        "zero\u{200b}width is fine too",
        &"é".repeat(128),
        &"é".repeat(129),
        &"🦀".repeat(129),
        "nul \u{0}",
        "c1 \u{9f}",
    ];
    let input = json!({"names": names, "messages": messages});
    let Some(answers) = node(
        "process.stdout.write(JSON.stringify({\
           names: input.names.map((name) => page.nameProblem(name)),\
           messages: input.messages.map((text) => page.messageProblem(text)),\
           counts: input.messages.map((text) => page.charCount(text)),\
         }));",
        &input,
    ) else {
        return;
    };
    let mut failures = Vec::new();
    for (name, got) in names
        .iter()
        .zip(answers["names"].as_array().expect("names"))
    {
        let want = check_name(name).err().map(|error| error.to_string());
        if got.as_str().map(str::to_owned) != want {
            failures.push(format!("name {name:?}: got {got}, want {want:?}"));
        }
    }
    for ((text, got), count) in messages
        .iter()
        .zip(answers["messages"].as_array().expect("messages"))
        .zip(answers["counts"].as_array().expect("counts"))
    {
        let want = check_message(text).err().map(|error| error.to_string());
        if got.as_str().map(str::to_owned) != want {
            failures.push(format!("message {text:?}: got {got}, want {want:?}"));
        }
        if count.as_u64() != Some(text.chars().count() as u64) {
            failures.push(format!(
                "message {text:?}: the counter says {count}, want {}",
                text.chars().count()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
