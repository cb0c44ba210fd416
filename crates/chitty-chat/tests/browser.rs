//! The participant page in a real headless Chromium (issue 17), driven over WebDriver: two browsers and one
//! `chitty-chat join` chat with each other through a real service, which restarts under them.
//!
//! The page is read only through the DOM contract of the web page (`#messages li.event[data-seq]`,
//! `#counter`, `#status`, `window.chittyLog()`, ...), the same way a person reads it. Without Chromium or
//! chromedriver each test prints `SKIPPED <test>: <why>` and passes; `.ci/run` installs both.

#[path = "common/chromium.rs"]
mod chromium;
mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chitty_chat::harness::{
    ParticipantProcess, ServiceProcess, joined_prefix, left_prefix, message_body,
};
use chitty_participant::output::escaped;
use chromium::{Browser, Chromedriver, Tools};
use common::{WAIT, binary, check, has, log_dir, log_lines, participant, service, service_args};
use fantoccini::key::Key;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

/// The service's grace period in these tests. The pages are kept away from the restarted service while
/// the terminal participant publishes, and then come back after their backoff (at most 5 s): the grace
/// period must outlast that, or the service would rightly announce them left.
const GRACE: Duration = Duration::from_secs(10);

/// How long after a tab closes the others may first see it left, if its Leave were lost: the grace period,
/// the service's sweep of expired sessions, and the event's way to every screen. A closing tab sends a
/// Leave, so they see it at once.
const LEFT_BOUND: Duration = Duration::from_secs(14);

/// Where the screenshot for the README goes when `CHITTY_UPDATE_SCREENSHOT=1`.
fn readme_screenshot() -> PathBuf {
    let crates = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the crate is in crates/");
    crates
        .parent()
        .expect("crates/ is in the workspace")
        .join("docs/browser.png")
}

/// Where screenshots are kept after the test, whatever happens to its log directory.
fn artifact_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("browser")
}

// ---------------------------------------------------------------------------------------------------
// The harness itself, proven on a static page.
// ---------------------------------------------------------------------------------------------------

/// A page that exercises what the chat scenario needs of the harness: typing, reading the DOM, a script
/// that awaits a promise, storage that must not be shared between browsers, and a request sent while its
/// tab closes.
const STATIC_PAGE: &str = r##"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>harness</title></head>
<body>
<input id="text" autocomplete="off"> <span id="counter">0/128</span>
<ul id="messages"></ul>
<a id="download" href="#">download</a>
<script>
  const text = document.querySelector("#text");
  const counter = document.querySelector("#counter");
  text.addEventListener("input", () => {
    const count = [...text.value].length;
    counter.textContent = count + "/128";
    counter.classList.toggle("over", count > 128);
  });
  text.addEventListener("keydown", (event) => {
    if (event.key !== "Enter") return;
    const li = document.createElement("li");
    li.className = "event";
    li.dataset.seq = String(document.querySelectorAll("#messages li").length + 1);
    li.textContent = text.value;
    document.querySelector("#messages").append(li);
    text.value = "";
  });
  document.querySelector("#download").addEventListener("click", (event) => {
    const blob = new Blob(["first line\n", "second line\n"], { type: "application/x-ndjson" });
    event.currentTarget.href = URL.createObjectURL(blob);
    event.currentTarget.download = "saved.log";
  });
  window.later = (value) => new Promise((resolve) => setTimeout(() => resolve(value), 100));
  window.addEventListener("pagehide", () => {
    fetch("/bye", { method: "POST", keepalive: true, body: localStorage.getItem("who") || "nobody" });
  });
</script>
</body></html>"##;

/// A tiny HTTP/1.1 server for [`STATIC_PAGE`]: `GET /` answers the page, `POST /bye` reports its body.
async fn static_server() -> (String, mpsc::UnboundedReceiver<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}/", listener.local_addr().expect("address"));
    let (byes, received) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((connection, _)) = listener.accept().await {
            let byes = byes.clone();
            tokio::spawn(async move {
                let mut reader = BufReader::new(connection);
                let mut request_line = String::new();
                reader.read_line(&mut request_line).await.ok()?;
                let mut length = 0;
                loop {
                    let mut header = String::new();
                    reader.read_line(&mut header).await.ok()?;
                    let header = header.trim_end();
                    if header.is_empty() {
                        break;
                    }
                    if let Some((name, value)) = header.split_once(':')
                        && name.eq_ignore_ascii_case("content-length")
                    {
                        length = value.trim().parse().ok()?;
                    }
                }
                let mut body = vec![0; length];
                reader.read_exact(&mut body).await.ok()?;
                let (status, content) = if request_line.starts_with("GET / ") {
                    ("200 OK", STATIC_PAGE)
                } else if request_line.starts_with("POST /bye ") {
                    byes.send(String::from_utf8_lossy(&body).into_owned())
                        .ok()?;
                    ("200 OK", "")
                } else {
                    ("404 Not Found", "")
                };
                let response = format!(
                    "HTTP/1.1 {status}\r\ncontent-type: text/html; charset=utf-8\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{content}",
                    content.len()
                );
                reader
                    .into_inner()
                    .write_all(response.as_bytes())
                    .await
                    .ok()
            });
        }
    });
    (url, received)
}

#[tokio::test]
async fn the_harness_drives_two_independent_headless_browsers_on_a_static_page() {
    let test = "the_harness_drives_two_independent_headless_browsers_on_a_static_page";
    let Some(tools) = Tools::find_or_skip(test) else {
        return;
    };
    let started = Instant::now();
    let (url, mut byes) = static_server().await;
    let driver = Chromedriver::start(&tools)
        .await
        .expect("chromedriver starts");
    // Both browsers start at once, as they would on two computers.
    let (one, two) = tokio::join!(driver.open("one"), driver.open("two"));
    let one = one.expect("a first browser starts");
    let two = two.expect("a second browser starts");
    for browser in [&one, &two] {
        browser.goto(&url).await.expect("the page loads");
    }

    // Each browser has its own profile: what one stores, the other does not see.
    one.execute("localStorage.setItem('who', 'one');", vec![])
        .await
        .expect("script");
    let seen_by_two = two
        .execute("return localStorage.getItem('who');", vec![])
        .await
        .expect("script");
    assert_eq!(seen_by_two, Value::Null, "two sees one's storage: got/want");
    two.execute("localStorage.setItem('who', 'two');", vec![])
        .await
        .expect("script");

    // Typing, as keystrokes, reaches the page's handlers; non-ASCII letters included.
    one.type_into("#text", "héllo wörld", WAIT)
        .await
        .expect("type");
    let counter = one.text_of("#counter").await.expect("read");
    assert_eq!(counter.as_deref(), Some("11/128"), "the counter: got/want");
    one.type_into("#text", &Key::Enter, WAIT)
        .await
        .expect("Enter");
    let events = one
        .wait_for(
            "the typed line as an event",
            "return [...document.querySelectorAll('#messages li.event')].map(li => [li.dataset.seq, li.textContent]);",
            |value| value.as_array().is_some_and(|events| !events.is_empty()),
            WAIT,
        )
        .await
        .expect("the line appears");
    assert_eq!(
        events,
        json!([["1", "héllo wörld"]]),
        "the events: got/want"
    );

    // A script can await a promise of the page.
    let later = one
        .execute_async(
            "const done = arguments[arguments.length - 1]; window.later(arguments[0]).then(done);",
            vec![json!("resolved")],
        )
        .await
        .expect("async script");
    assert_eq!(later, json!("resolved"), "the promise's value: got/want");

    // A link that downloads what the page made lands in the browser's download directory.
    one.click("#download").await.expect("click");
    let saved = one
        .wait_for_download("saved.log", WAIT)
        .await
        .expect("the download finishes");
    assert_eq!(
        String::from_utf8_lossy(&saved),
        "first line\nsecond line\n",
        "the downloaded file: got/want"
    );

    // A screenshot is a PNG of the page.
    let png = one.screenshot().await.expect("screenshot");
    assert!(
        png.starts_with(b"\x89PNG\r\n\x1a\n"),
        "the screenshot is not a PNG: it starts with {:?}",
        &png[..png.len().min(8)]
    );

    // Closing the page's tab (with another tab open, so the browser stays) runs its pagehide handler, and
    // a keepalive request sent there arrives.
    two.open_spare_tab().await.expect("a spare tab");
    two.close_tab().await.expect("the page's tab closes");
    let bye = tokio::time::timeout(WAIT, byes.recv())
        .await
        .expect("the closed tab's request arrives within the bound")
        .expect("the server runs");
    assert_eq!(bye, "two", "the closed tab's request body: got/want");

    // Quitting a browser leaves the other one working.
    two.quit().await.expect("two quits");
    let title = one.client().title().await.expect("one still answers");
    assert_eq!(title, "harness", "one's title: got/want");
    println!("{test}: took {:?}", started.elapsed());
}

// ---------------------------------------------------------------------------------------------------
// The participant page.
// ---------------------------------------------------------------------------------------------------

/// A TCP proxy between the browsers and the service that the test can shut: while it is shut, the pages
/// cannot reach the service, while a terminal participant, connected directly, can. This is how a page is
/// made to miss events that it must then fetch when it resumes.
struct Gate {
    /// Where the browsers connect.
    address: SocketAddr,
    /// Whether connections pass; shutting it also cuts the connections that are open.
    open: watch::Sender<bool>,
}

impl Gate {
    /// An open gate in front of `upstream`.
    async fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("address");
        let open = watch::Sender::new(true);
        let gate = open.clone();
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let mut is_open = gate.subscribe();
                if !*is_open.borrow_and_update() {
                    // Accepted and closed at once: the browser sees the connection fail.
                    continue;
                }
                tokio::spawn(async move {
                    let Ok(mut outbound) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = is_open.wait_for(|open| !*open) => {}
                    }
                });
            }
        });
        Self { address, open }
    }

    /// The page's URL through the gate.
    fn url(&self) -> String {
        format!("http://{}/", self.address)
    }

    /// Cuts every connection through the gate and refuses new ones.
    fn shut(&self) {
        self.open.send_replace(false);
    }

    /// Lets connections through again.
    fn open(&self) {
        self.open.send_replace(true);
    }
}

/// One `li.event` of `#messages`, as the page shows it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
struct PageEvent {
    /// `data-seq`.
    seq: u64,
    /// `data-lamport`: the event's Lamport time.
    lamport: u64,
    /// `data-me`: the page's clock right after receiving it.
    me: u64,
    /// `data-kind`: `message`, `joined` or `left`.
    kind: String,
    /// The visible text: the body as the terminal prints it.
    text: String,
}

/// What the page shows, read in one script through the DOM contract.
#[derive(Debug, Clone, Deserialize)]
struct PageState {
    /// Whether `#chat` is shown (after joining).
    chat_shown: bool,
    /// `#join-error`'s text.
    join_error: Option<String>,
    /// The events of `#messages`, in the order shown.
    events: Vec<PageEvent>,
    /// The text of each `#participants li`.
    participants: Vec<String>,
    /// `#status`'s text.
    status: Option<String>,
    /// Every text `#status` has shown since [`WATCH_STATUS`] was installed, without repeats in a row.
    statuses: Vec<String>,
    /// `#clock`'s text.
    clock: Option<String>,
    /// `#counter`'s text.
    counter: Option<String>,
    /// Whether `#counter` has the class `over`.
    counter_over: bool,
    /// Whether `#send` is disabled.
    send_disabled: Option<bool>,
    /// `#text`'s value.
    text: Option<String>,
}

/// The script that reads a [`PageState`].
const READ_STATE: &str = r##"
const one = (css) => document.querySelector(css);
const text = (css) => { const element = one(css); return element === null ? null : element.textContent; };
const chat = one("#chat");
return {
  chat_shown: chat !== null && !chat.hidden && getComputedStyle(chat).display !== "none",
  join_error: text("#join-error"),
  events: [...document.querySelectorAll("#messages li.event")].map((li) => ({
    seq: Number(li.dataset.seq),
    lamport: Number(li.dataset.lamport),
    me: Number(li.dataset.me),
    kind: li.dataset.kind,
    text: li.textContent,
  })),
  participants: [...document.querySelectorAll("#participants li")].map((li) => li.textContent),
  status: text("#status"),
  statuses: window.chittyTestStatuses || [],
  clock: text("#clock"),
  counter: text("#counter"),
  counter_over: one("#counter") !== null && one("#counter").classList.contains("over"),
  send_disabled: one("#send") === null ? null : one("#send").disabled,
  text: one("#text") === null ? null : one("#text").value,
};
"##;

/// Records every text `#status` shows into `window.chittyTestStatuses`, so that a short-lived status
/// (`reconnecting in 1 s`) is seen even when no poll falls in its moment.
const WATCH_STATUS: &str = r##"
if (!window.chittyTestStatuses) {
  const status = document.querySelector("#status");
  const seen = (window.chittyTestStatuses = []);
  const record = () => { if (seen[seen.length - 1] !== status.textContent) seen.push(status.textContent); };
  record();
  new MutationObserver(record).observe(status, { childList: true, characterData: true, subtree: true });
}
"##;

/// A browser on the participant page, under one name.
struct PageParticipant {
    /// The browser showing the page.
    browser: Browser,
}

impl PageParticipant {
    /// Opens the page at `url` in a new browser for `name`, without joining yet.
    async fn open(driver: &Chromedriver, url: &str, name: &str) -> Self {
        let browser = driver.open(name).await.expect("the browser starts");
        browser.goto(url).await.expect("the page loads");
        Self { browser }
    }

    /// Types `name` into the join form's `#name` (replacing what is there) and clicks `#join-button`.
    async fn submit_join(&self, name: &str) {
        self.browser
            .wait_for(
                "the join form's #name",
                "return document.querySelector('#name') !== null;",
                |value| value == &Value::Bool(true),
                WAIT,
            )
            .await
            .unwrap_or_else(|error| panic!("{error:#}"));
        self.browser
            .execute("document.querySelector('#name').value = '';", vec![])
            .await
            .expect("the join form has #name");
        self.browser
            .type_into("#name", name, WAIT)
            .await
            .expect("the join form has #name");
        self.browser
            .click("#join-button")
            .await
            .expect("#join-button");
    }

    /// Joins as `name` and waits to see its own join; then watches `#status`.
    async fn join_as(&self, name: &str) {
        self.submit_join(name).await;
        let own = joined_prefix(name);
        self.wait("its own join", |state| {
            state.chat_shown
                && state
                    .events
                    .iter()
                    .any(|event| event.text.starts_with(&own))
        })
        .await;
        self.browser
            .execute(WATCH_STATUS, vec![])
            .await
            .expect("the page has #status");
    }

    /// Tries to join as `name`, which the service refuses; returns the reason `#join-error` shows.
    async fn join_refused(&self, name: &str) -> String {
        self.submit_join(name).await;
        let state = self
            .wait("the refusal's reason", |state| {
                !state.chat_shown
                    && state
                        .join_error
                        .as_deref()
                        .is_some_and(|reason| !reason.trim().is_empty())
            })
            .await;
        state.join_error.unwrap_or_default()
    }

    fn name(&self) -> &str {
        self.browser.name()
    }

    /// What the page shows now.
    async fn state(&self) -> PageState {
        let value = self
            .browser
            .execute(READ_STATE, vec![])
            .await
            .expect("the page can be read");
        serde_json::from_value(value.clone()).unwrap_or_else(|error| {
            panic!(
                "{}'s page does not follow the DOM contract ({error}): {value}",
                self.name()
            )
        })
    }

    /// Waits until the page shows what `wanted` accepts, at most [`WAIT`]; fails showing the last state.
    async fn wait(&self, description: &str, wanted: impl Fn(&PageState) -> bool) -> PageState {
        self.wait_within(description, WAIT, wanted).await
    }

    async fn wait_within(
        &self,
        description: &str,
        within: Duration,
        wanted: impl Fn(&PageState) -> bool,
    ) -> PageState {
        let value = self
            .browser
            .wait_for(
                description,
                READ_STATE,
                |value| {
                    serde_json::from_value::<PageState>(value.clone())
                        .is_ok_and(|state| wanted(&state))
                },
                within,
            )
            .await
            .unwrap_or_else(|error| panic!("{error:#}"));
        serde_json::from_value(value).expect("accepted above")
    }

    /// Waits until the page shows an event whose text is `text`.
    async fn wait_for_text(&self, description: &str, text: &str) -> PageState {
        self.wait(description, |state| {
            state.events.iter().any(|event| event.text == text)
        })
        .await
    }

    /// Waits until the page shows an event whose text starts with `prefix`.
    async fn wait_for_prefix(&self, description: &str, prefix: &str) -> PageState {
        self.wait(description, |state| {
            state
                .events
                .iter()
                .any(|event| event.text.starts_with(prefix))
        })
        .await
    }

    /// Types `text` into `#text` and presses Enter.
    async fn say(&self, text: &str) {
        self.browser
            .type_and_enter("#text", text, WAIT)
            .await
            .expect("the page has #text");
    }

    /// The page's own log, `window.chittyLog()`: JSON lines in the participant vocabulary.
    async fn log(&self) -> Vec<String> {
        let value = self
            .browser
            .execute("return window.chittyLog();", vec![])
            .await
            .expect("the page has window.chittyLog()");
        let lines: Vec<String> = serde_json::from_value(value.clone()).unwrap_or_else(|error| {
            panic!("window.chittyLog() is not a list of strings ({error}): {value}")
        });
        let origin = format!("{}'s page", self.name());
        for line in &lines {
            let record = serde_json::from_str(line).unwrap_or_else(|error| {
                panic!("{origin} logged a line that is not JSON ({error}): {line}")
            });
            common::vocabulary::assert_in_vocabulary(&record, &origin);
        }
        lines
    }

    /// Writes the page's log as `<name>.log` into `dir`, beside the other processes' logs.
    async fn save_log(&self, dir: &Path) -> Vec<String> {
        let lines = self.log().await;
        let mut text = lines.join("\n");
        text.push('\n');
        std::fs::write(dir.join(format!("{}.log", self.name())), text)
            .expect("write the page's log");
        lines
    }

    /// How many lines of the page's log have `"event"` equal to `event`.
    async fn count_logged(&self, event: &str) -> usize {
        self.log()
            .await
            .iter()
            .filter(|line| logged(line, event))
            .count()
    }
}

/// What one participant saw: `(seq, lamport, body)` of each event, in the order shown.
type History = Vec<(u64, u64, String)>;

/// Whether the JSON log line `line` is an `event` line.
fn logged(line: &str, event: &str) -> bool {
    serde_json::from_str::<Value>(line).is_ok_and(|line| line["event"] == event)
}

/// `(seq, lamport, body)` of what a page shows.
fn page_history(state: &PageState) -> History {
    state
        .events
        .iter()
        .map(|event| (event.seq, event.lamport, event.text.clone()))
        .collect()
}

/// `(seq, lamport, body)` of what a terminal participant printed.
fn terminal_history(participant: &ParticipantProcess) -> History {
    participant
        .received()
        .iter()
        .map(|line| (line.seq, line.lamport, line.body.clone()))
        .collect()
}

/// Checks that every history holds each seq once, consecutively from its first, that it starts with the
/// participant's own join, and that any seq two of them hold is the same event in both.
fn assert_one_order(histories: &[(&str, History)]) {
    let mut first_seen: BTreeMap<u64, (&str, (u64, String))> = BTreeMap::new();
    for (name, history) in histories {
        let seqs: Vec<u64> = history.iter().map(|(seq, _, _)| *seq).collect();
        let Some(&first) = seqs.first() else {
            panic!("{name} shows no event at all");
        };
        let consecutive: Vec<u64> = (first..first + seqs.len() as u64).collect();
        assert_eq!(
            seqs, consecutive,
            "{name}'s seqs: got/want every seq once, consecutively"
        );
        assert!(
            history[0].2.starts_with(&joined_prefix(name)),
            "{name}'s first event is {:?}, want its own join",
            history[0].2
        );
        for (seq, lamport, body) in history {
            match first_seen.get(seq) {
                None => {
                    first_seen.insert(*seq, (name, (*lamport, body.clone())));
                }
                Some((other, event)) => assert_eq!(
                    (lamport, body),
                    (&event.0, &event.1),
                    "seq {seq}: {name} got/{other} got a different event"
                ),
            }
        }
    }
}

/// Checks what a page shows of every event: the sentences of joins and leaves exactly, with the event's
/// own Lamport time, messages as `<name> text`, and the page's clock past the event's time.
fn assert_page_shows_events_exactly(name: &str, state: &PageState) {
    for event in &state.events {
        match event.kind.as_str() {
            "joined" | "left" => {
                let (_, rest) = event
                    .text
                    .split_once("*** Participant ")
                    .unwrap_or_else(|| panic!("{name}: {event:?} is not a sentence"));
                let who = rest.split(' ').next().unwrap_or_default();
                let want = if event.kind == "joined" {
                    format!("{}{}", joined_prefix(who), event.lamport)
                } else {
                    format!("{}{}", left_prefix(who), event.lamport)
                };
                assert_eq!(
                    event.text, want,
                    "{name}: a {} sentence got/want",
                    event.kind
                );
            }
            "message" => assert!(
                event.text.starts_with('<') && event.text.contains("> "),
                "{name}: {event:?} is not shown as <name> text"
            ),
            other => panic!("{name}: {event:?} has data-kind {other:?}"),
        }
        assert!(
            event.me > event.lamport,
            "{name}: {event:?}: the page's clock is not past the event's time"
        );
    }
    let mes: Vec<u64> = state.events.iter().map(|event| event.me).collect();
    assert!(
        mes.windows(2).all(|pair| pair[0] < pair[1]),
        "{name}: data-me along the list is {mes:?}, want it strictly increasing (one clock, witnessed in order)"
    );
    let last_me = mes.last().copied().unwrap_or(0);
    let clock = state
        .clock
        .as_deref()
        .and_then(|clock| clock.trim().parse::<u64>().ok());
    assert!(
        clock.is_some_and(|clock| clock >= last_me),
        "{name}: #clock shows {:?}, want a number no less than the last data-me {last_me}",
        state.clock
    );
}

/// Sets `#text` as if pasted, which keystrokes cannot do for characters beyond the Basic Multilingual
/// Waits until both pages and the terminal participant show `body`; `what` names it in a failure.
async fn everyone_sees(
    pages: [&PageParticipant; 2],
    cal: &mut ParticipantProcess,
    what: &str,
    body: &str,
) {
    for page in pages {
        page.wait_for_text(what, body).await;
    }
    cal.wait_for_event(what, |line| line.body == body, WAIT)
        .await
        .unwrap_or_else(|error| panic!("cal does not see {what}: {error}"));
}

/// Asserts that both pages and the terminal participant saw one order, and that each page shows its
/// events exactly; returns the pages' states for further checks.
async fn assert_everyone_agrees(
    ann: &PageParticipant,
    bea: &PageParticipant,
    cal: &ParticipantProcess,
) -> (PageState, PageState) {
    let ann_state = ann.state().await;
    let bea_state = bea.state().await;
    assert_one_order(&[
        ("ann", page_history(&ann_state)),
        ("bea", page_history(&bea_state)),
        ("cal", terminal_history(cal)),
    ]);
    for (name, state) in [("ann", &ann_state), ("bea", &bea_state)] {
        assert_page_shows_events_exactly(name, state);
    }
    (ann_state, bea_state)
}

/// Plane (chromedriver refuses them).
async fn paste_into_text(page: &PageParticipant, value: &str) {
    page.browser
        .execute(
            "const text = document.querySelector('#text'); text.value = arguments[0]; \
             text.dispatchEvent(new Event('input', { bubbles: true }));",
            vec![json!(value)],
        )
        .await
        .expect("the page has #text");
}

#[tokio::test]
async fn two_browsers_and_a_terminal_chat_through_a_restart_and_a_closed_tab_is_announced_left() {
    let test =
        "two_browsers_and_a_terminal_chat_through_a_restart_and_a_closed_tab_is_announced_left";
    let Some(tools) = Tools::find_or_skip(test) else {
        return;
    };
    let started = Instant::now();
    let mut phases: Vec<(&str, Duration)> = Vec::new();
    let mut phase = |name: &'static str, since: &mut Instant| {
        phases.push((name, since.elapsed()));
        *since = Instant::now();
    };
    let mut since = Instant::now();

    let dir = log_dir();
    let grace = format!("{}s", GRACE.as_secs());
    let extra = ["--grace", grace.as_str()];
    let mut service = service(dir.path(), &extra).await;
    let address = service.address();
    // The browsers reach the service through a gate the test can shut; cal connects directly.
    let gate = Gate::start(address).await;
    let url = gate.url();
    let driver = Chromedriver::start(&tools)
        .await
        .expect("chromedriver starts");

    // 1. ann and bea join in their browsers, cal in a terminal; everyone sees the later joins.
    // Both browsers start at once (starting one takes seconds); ann joins first.
    let (ann, bea) = tokio::join!(
        PageParticipant::open(&driver, &url, "ann"),
        PageParticipant::open(&driver, &url, "bea"),
    );
    ann.join_as("ann").await;
    // bea first asks for a name that is taken: the page says why, and she can try another.
    let reason = bea.join_refused("ann").await;
    assert!(
        reason.contains("ann"),
        "#join-error for a taken name: got {reason:?}, want the reason naming it"
    );
    bea.join_as("bea").await;
    let mut cal = participant(&service, dir.path(), "cal").await;
    ann.wait_for_prefix("bea's join", &joined_prefix("bea"))
        .await;
    ann.wait_for_prefix("cal's join", &joined_prefix("cal"))
        .await;
    bea.wait_for_prefix("cal's join", &joined_prefix("cal"))
        .await;
    for page in [&ann, &bea] {
        page.wait("everyone present", |state| {
            ["ann", "bea", "cal"].iter().all(|name| {
                state
                    .participants
                    .iter()
                    .any(|shown| shown.starts_with(name))
            })
        })
        .await;
    }
    phase("three join", &mut since);

    // 2. Everyone says something. The page shows others' text as text, never as markup, and escapes a
    // character that would reorder the line (a right-to-left override) as the terminal does.
    let said = [
        ("ann", "hello from ann's browser"),
        ("bea", "<b>not bold</b> & ünïcödé from bea"),
        ("cal", "hello from cal's terminal, \u{202e}reversed?"),
    ];
    ann.say(said[0].1).await;
    bea.say(said[1].1).await;
    cal.say(said[2].1).await.expect("cal types");
    for (author, text) in said {
        let body = message_body(author, &escaped(text));
        everyone_sees(
            [&ann, &bea],
            &mut cal,
            &format!("{author}'s message"),
            &body,
        )
        .await;
    }
    assert_everyone_agrees(&ann, &bea, &cal).await;
    phase("messages", &mut since);

    // 3. The counter counts Unicode scalar values, and refuses 129 in place.
    paste_into_text(&ann, &"🙂".repeat(100)).await;
    ann.wait("100 emoji counted as 100", |state| {
        state.counter.as_deref() == Some("100/128")
            && !state.counter_over
            && state.send_disabled == Some(false)
    })
    .await;
    paste_into_text(&ann, "").await;
    let typed = format!("{}é", "a".repeat(127));
    ann.browser
        .type_into("#text", &typed, WAIT)
        .await
        .expect("type");
    ann.wait("128 characters allowed", |state| {
        state.counter.as_deref() == Some("128/128")
            && !state.counter_over
            && state.send_disabled == Some(false)
    })
    .await;
    ann.browser
        .type_into("#text", "z", WAIT)
        .await
        .expect("type");
    let over = ann
        .wait("129 characters refused", |state| {
            state.counter.as_deref() == Some("129/128")
                && state.counter_over
                && state.send_disabled == Some(true)
        })
        .await;
    let publishes_before = ann.count_logged("publish_sent").await;
    ann.browser
        .type_into("#text", &Key::Enter, WAIT)
        .await
        .expect("Enter");
    // Something that is sure to arrive after whatever Enter might have sent: cal's next message.
    let marker = message_body("cal", "after ann's refused Enter");
    cal.say("after ann's refused Enter")
        .await
        .expect("cal types");
    let after = ann.wait_for_text("cal's marker", &marker).await;
    assert_eq!(
        after.events.len(),
        over.events.len() + 1,
        "ann's page after Enter on 129 characters: got/want only cal's marker as new: {:?}",
        &after.events[over.events.len()..]
    );
    assert_eq!(
        ann.count_logged("publish_sent").await,
        publishes_before,
        "publish_sent lines in ann's log after Enter on 129 characters: got/want none new"
    );
    let kept = format!("{typed}z");
    assert_eq!(
        after.text.as_deref(),
        Some(kept.as_str()),
        "#text after the refused Enter: got/want the text kept in place"
    );
    phase("counter", &mut since);

    // 4. A screenshot of ann's page mid-chat, with a draft being typed.
    paste_into_text(&ann, "").await;
    ann.browser
        .type_into("#text", "a draft in progress", WAIT)
        .await
        .expect("type");
    ann.wait("the draft counted", |state| {
        state.counter.as_deref() == Some("19/128")
    })
    .await;
    let png = ann.browser.screenshot().await.expect("screenshot");
    // Beside the logs, in a directory of its own: `chitty-chat check` reads every file of the log directory.
    let artifacts = dir.path().join("artifacts");
    std::fs::create_dir_all(&artifacts).expect("the artifacts directory");
    std::fs::write(artifacts.join("ann-mid-chat.png"), &png).expect("write the screenshot");
    std::fs::create_dir_all(artifact_dir()).expect("the artifact directory");
    let artifact = artifact_dir().join("ann-mid-chat.png");
    std::fs::write(&artifact, &png).expect("write the screenshot");
    println!(
        "the screenshot of ann's page mid-chat: {}",
        artifact.display()
    );
    if std::env::var_os("CHITTY_UPDATE_SCREENSHOT").is_some_and(|value| value == "1") {
        std::fs::write(readme_screenshot(), &png).expect("write docs/browser.png");
        println!("updated {}", readme_screenshot().display());
    }
    paste_into_text(&ann, "").await;
    phase("screenshot", &mut since);

    // 5. The service restarts on the same address and data: the pages say they are reconnecting. cal
    // comes back first and says something while the pages are still kept away; then they come back,
    // resume, and show it: nothing lost, nothing twice.
    service.terminate().expect("SIGTERM");
    let status = service.wait(WAIT).await.expect("the service stops");
    assert!(status.success(), "the service exited with {status}");
    for page in [&ann, &bea] {
        page.wait("reconnecting while the service is down", |state| {
            state
                .status
                .as_deref()
                .is_some_and(|status| status.starts_with("reconnecting"))
        })
        .await;
    }
    gate.shut();
    service = ServiceProcess::start_on(binary(), address, &service_args(dir.path(), &extra))
        .await
        .expect("the service restarts on the same address and data");
    cal.wait_for_output(
        "its resumption",
        |line| line.starts_with("--- reconnected to "),
        WAIT,
    )
    .await
    .expect("cal resumes");
    let away = message_body("cal", "said while the pages were away");
    cal.say("said while the pages were away")
        .await
        .expect("cal types");
    cal.wait_for_event("its own message", |line| line.body == away, WAIT)
        .await
        .expect("cal publishes after the restart");
    for page in [&ann, &bea] {
        let state = page.state().await;
        assert!(
            !state.events.iter().any(|event| event.text == away)
                && state
                    .status
                    .as_deref()
                    .is_some_and(|status| status.starts_with("reconnecting")),
            "{}'s page behind the shut gate: got status {:?} and {:?} last, want it still reconnecting",
            page.name(),
            state.status,
            state.events.last()
        );
    }
    gate.open();
    for page in [&ann, &bea] {
        page.wait_for_text("cal's message from while it was away", &away)
            .await;
        page.wait("connected again", |state| {
            state
                .status
                .as_deref()
                .is_some_and(|status| status == "connected" || status.starts_with("resumed with "))
        })
        .await;
    }
    let resumed = [
        ("bea", "back after the restart"),
        ("cal", "so am I"),
        ("ann", "and so am I"),
    ];
    for (author, text) in resumed {
        match author {
            "ann" => ann.say(text).await,
            "bea" => bea.say(text).await,
            _ => cal.say(text).await.expect("cal types"),
        }
        let body = message_body(author, text);
        everyone_sees(
            [&ann, &bea],
            &mut cal,
            &format!("{author}'s message after the restart"),
            &body,
        )
        .await;
    }
    let (ann_state, bea_state) = assert_everyone_agrees(&ann, &bea, &cal).await;
    for (name, state) in [("ann", &ann_state), ("bea", &bea_state)] {
        // It missed cal's message while away, and says how many events it fetched on resuming.
        let reconnecting = state
            .statuses
            .iter()
            .position(|status| status.starts_with("reconnecting"));
        let resumed = state.statuses.iter().rposition(|status| {
            status
                .strip_prefix("resumed with ")
                .and_then(|rest| rest.split(' ').next())
                .and_then(|missed| missed.parse::<u64>().ok())
                .is_some_and(|missed| missed >= 1)
        });
        assert!(
            matches!((reconnecting, resumed), (Some(down), Some(up)) if down < up),
            "{name}'s #status went through {:?}, want reconnecting, then resumed with N missed events (N >= 1)",
            state.statuses
        );
        assert!(
            !state.events.iter().any(|event| event.kind == "left"),
            "{name}'s page shows someone left across the restart: {:?}",
            state.events
        );
    }
    phase("restart", &mut since);

    // 6. bea closes her tab: the others see her leave within the grace bound.
    bea.save_log(dir.path()).await;
    bea.browser.open_spare_tab().await.expect("a spare tab");
    bea.browser.close_tab().await.expect("bea's tab closes");
    let closed = Instant::now();
    let bea_left = left_prefix("bea");
    ann.wait_within("bea's leave", LEFT_BOUND, |state| {
        state
            .events
            .iter()
            .any(|event| event.text.starts_with(&bea_left))
    })
    .await;
    let seen_after = closed.elapsed();
    cal.wait_for_event("bea's leave", |line| line.body.starts_with(&bea_left), WAIT)
        .await
        .expect("cal sees bea leave");
    // bea is no longer listed as present; the left sentence is the same, to the letter and the Lamport
    // time, on the page and in the terminal.
    let ann_state = ann
        .wait("bea no longer present", |state| {
            !state
                .participants
                .iter()
                .any(|shown| shown.starts_with("bea"))
                && state
                    .participants
                    .iter()
                    .any(|shown| shown.starts_with("cal"))
        })
        .await;
    assert_page_shows_events_exactly("ann", &ann_state);
    assert_one_order(&[
        ("ann", page_history(&ann_state)),
        ("cal", terminal_history(&cal)),
    ]);
    let how = if log_lines(&dir.path().join("service.log"))
        .iter()
        .any(|line| has(line, "event", "leave") && has(line, "participant", "bea"))
    {
        "the Leave her closing tab sent"
    } else {
        "the grace period"
    };
    println!("ann saw bea leave {seen_after:?} after her tab closed, through {how}");
    phase("closed tab", &mut since);

    // 7. ann leaves through the page, cal quits; the checker passes on all the logs.
    let left = ann
        .browser
        .execute_async(
            "const done = arguments[arguments.length - 1]; \
             window.chittyLeave().then(() => done(null), (error) => done(String(error)));",
            vec![],
        )
        .await
        .expect("window.chittyLeave() runs");
    assert_eq!(left, Value::Null, "window.chittyLeave(): got/want no error");
    cal.wait_for_event(
        "ann's leave",
        |line| line.body.starts_with(&left_prefix("ann")),
        WAIT,
    )
    .await
    .expect("cal sees ann leave");
    let ann_log = ann.save_log(dir.path()).await;
    for event in ["disconnected", "reconnected", "leave_ok"] {
        assert!(
            ann_log.iter().any(|line| logged(line, event)),
            "ann's log has no {event} line:\n{}",
            ann_log.join("\n")
        );
    }
    // #download-log saves the same lines as <name>.log.
    ann.browser
        .click("#download-log")
        .await
        .expect("#download-log");
    let downloaded = ann
        .browser
        .wait_for_download("ann.log", WAIT)
        .await
        .expect("#download-log downloads ann.log");
    let downloaded = String::from_utf8_lossy(&downloaded);
    assert_eq!(
        downloaded.lines().collect::<Vec<_>>(),
        ann_log,
        "#download-log's ann.log: got/want the lines of window.chittyLog()"
    );
    cal.close_input();
    let status = cal.wait(WAIT).await.expect("cal exits");
    assert!(
        status.success(),
        "cal exited with {status}: {:?}",
        cal.errors()
    );
    service.terminate().expect("SIGTERM");
    service.wait(WAIT).await.expect("the service stops");
    let checked = check(dir.path()).await;
    assert!(
        checked.status.success(),
        "chitty-chat check on a run with browser participants: got {}, want success:\n{}{}",
        checked.status,
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr)
    );
    phase("leave and check", &mut since);
    drop(driver);
    println!(
        "{test}: took {:?}: {}",
        started.elapsed(),
        phases
            .iter()
            .map(|(name, took)| format!("{name} {took:.1?}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
}

#[tokio::test]
async fn a_browser_that_dies_without_leaving_is_announced_left_after_the_grace_period() {
    let test = "a_browser_that_dies_without_leaving_is_announced_left_after_the_grace_period";
    let Some(tools) = Tools::find_or_skip(test) else {
        return;
    };
    let dir = log_dir();
    let grace = Duration::from_secs(2);
    let mut service = service(dir.path(), &["--grace", "2s"]).await;
    let driver = Chromedriver::start(&tools)
        .await
        .expect("chromedriver starts");
    let dan = PageParticipant::open(&driver, &format!("{}/", service.url()), "dan").await;
    dan.join_as("dan").await;
    let mut cal = participant(&service, dir.path(), "cal").await;
    dan.wait_for_prefix("cal's join", &joined_prefix("cal"))
        .await;

    // The browser dies: its page sends no Leave, so only the grace period can announce dan left.
    dan.browser.kill().expect("SIGKILL dan's browser");
    let killed = Instant::now();
    cal.wait_for_event(
        "dan's leave",
        |line| line.body.starts_with(&left_prefix("dan")),
        grace + Duration::from_secs(8),
    )
    .await
    .expect("a browser that dies is announced left after the grace period");
    let after = killed.elapsed();
    println!("cal saw dan leave {after:?} after dan's browser died");
    assert!(
        after >= grace,
        "dan was announced left {after:?} after dying, before the grace period of {grace:?} was over"
    );
    service.terminate().expect("SIGTERM");
    service.wait(WAIT).await.expect("the service stops");
    let service_log = log_lines(&dir.path().join("service.log"));
    assert!(
        service_log
            .iter()
            .any(|line| has(line, "event", "crash_leave") && has(line, "participant", "dan")),
        "the service logged no crash_leave for dan"
    );
}
