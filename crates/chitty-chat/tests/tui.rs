//! The terminal UI end to end: the real binary, in real terminals, driven by keys.
//!
//! Each participant runs in a terminal of its own, a window of a [`Tmux`] server the test starts
//! (`common/tmux.rs` says how the screens are typed into and read). Without tmux the test reports
//! itself skipped; CI installs it.

mod common;

use std::path::{Path, PathBuf};

use common::tmux::{POLL, Tmux};
use common::{WAIT, binary, has, log_dir, log_lines, service};
use tokio::time::Instant;

/// What a window's shell prints once `chitty-chat` exits, before its exit status.
const EXITED: &str = "chitty-chat exited with status ";

/// Polls until the program in window `name` has exited, at most [`WAIT`]; returns its exit status. Its
/// log in `dir` is shown if it does not.
///
/// The window's shell command prints the status after the program (see [`join_command`]), so it shows
/// on the screen the program gave back. tmux's own `pane_dead_status` is not used: tmux may see the
/// terminal close well before it reaps the process, and once it does it replaces the screen.
async fn wait_for_exit(tmux: &Tmux, dir: &Path, name: &str) -> String {
    let deadline = Instant::now() + WAIT;
    loop {
        let screen = tmux.screen(name);
        if let Some(status) = screen
            .lines()
            .find_map(|line| line.trim().strip_prefix(EXITED))
        {
            return status.to_owned();
        }
        if Instant::now() >= deadline {
            panic!(
                "{name} did not exit within {WAIT:?}; its screen:\n{screen}\nits log:\n{}",
                std::fs::read_to_string(dir.join(format!("{name}.log"))).unwrap_or_default()
            );
        }
        tokio::time::sleep(POLL).await;
    }
}

/// The shell command that runs `chitty-chat join` as `name` in the terminal UI, logging to `dir`, then
/// prints its exit status and waits (for the server's end) so that the line stays on the screen.
fn join_command(url: &str, dir: &Path, name: &str) -> String {
    let log: PathBuf = dir.join(format!("{name}.log"));
    format!(
        "'{}' join --name {name} --server {url} --log-format json --log-file '{}'; echo \"{EXITED}$?\"; read -r _",
        binary().display(),
        log.display()
    )
}

/// The row of `screen` that contains `needle`.
fn row_with<'a>(screen: &'a str, needle: &str) -> Option<&'a str> {
    screen.lines().find(|line| line.contains(needle))
}

/// The Lamport times `[L=... me=...]` at the start of a message row.
fn times(row: &str) -> Option<(u64, u64)> {
    let rest = row.split_once("[L=")?.1;
    let (lamport, rest) = rest.split_once(" me=")?;
    let (me, _) = rest.split_once(']')?;
    Some((lamport.parse().ok()?, me.parse().ok()?))
}

#[tokio::test]
async fn two_participants_chat_in_terminals_and_see_who_is_present() {
    if !Tmux::available() {
        println!(
            "SKIPPED two_participants_chat_in_terminals_and_see_who_is_present: tmux is not installed; install tmux to run it"
        );
        return;
    }
    let dir = log_dir();
    let service = service(dir.path(), &[]).await;
    let url = service.url();
    let tmux = Tmux::start(
        dir.path(),
        120,
        40,
        "alice",
        &join_command(&url, dir.path(), "alice"),
    );
    tmux.wait_for("alice", "her own join and herself present", |screen| {
        screen.contains("Participant alice joined Chitty-Chat") && screen.contains("alice (you)")
    })
    .await;

    tmux.open("bob", &join_command(&url, dir.path(), "bob"));
    let both = |screen: &str, me: &str, other: &str| {
        screen.contains("Present (2)")
            && row_with(screen, &format!("{me} (you)")).is_some()
            && screen.lines().any(|line| {
                line.trim_end_matches(['│', ' '])
                    .ends_with(&format!("│{other}"))
            })
    };
    tmux.wait_for("bob", "both participants present", |screen| {
        both(screen, "bob", "alice")
    })
    .await;
    tmux.wait_for("alice", "both participants present", |screen| {
        both(screen, "alice", "bob") && screen.contains("Participant bob joined Chitty-Chat")
    })
    .await;

    tmux.type_text("alice", "hello from alice");
    tmux.wait_for("alice", "the typed text and its count", |screen| {
        screen.contains("16/128")
    })
    .await;
    tmux.press("alice", "Enter");
    let screen = tmux
        .wait_for("bob", "alice's message", |screen| {
            row_with(screen, "alice: hello from alice").is_some_and(|row| times(row).is_some())
        })
        .await;
    let row = row_with(&screen, "alice: hello from alice").unwrap_or_default();
    let (lamport, me) = times(row).unwrap_or_default();
    // The Lamport time shown is the one the service stamped on the event, and bob's clock is past it.
    let broadcast = log_lines(&dir.path().join("service.log"))
        .into_iter()
        .find(|line| has(line, "event", "broadcast") && has(line, "text", "hello from alice"))
        .expect("the service logged the broadcast");
    assert_eq!(
        broadcast.get("lamport").and_then(serde_json::Value::as_u64),
        Some(lamport),
        "got/want: the row {row:?} shows the event's Lamport time, as logged by the service: {broadcast}"
    );
    assert!(
        me > lamport,
        "bob's clock {me} is past the event's {lamport}"
    );

    tmux.press("alice", "C-c");
    tmux.wait_for("bob", "alice's left sentence and one present", |screen| {
        screen.contains("Participant alice left Chitty-Chat at Lamport time")
            && screen.contains("Present (1)")
    })
    .await;
    assert_eq!(
        wait_for_exit(&tmux, dir.path(), "alice").await,
        "0",
        "alice exits cleanly"
    );
    // The alternate screen is gone: the terminal is back as it was, with the shell's line on it.
    let after = tmux.screen("alice");
    assert!(
        !after.contains("Chitty-Chat ─"),
        "alice's terminal still shows the UI after she left:\n{after}"
    );
    let alice_log = log_lines(&dir.path().join("alice.log"));
    assert!(
        alice_log.iter().any(|line| has(line, "event", "leave_ok")),
        "alice told the service she left"
    );

    tmux.type_text("bob", "/quit");
    tmux.press("bob", "Enter");
    assert_eq!(
        wait_for_exit(&tmux, dir.path(), "bob").await,
        "0",
        "bob exits cleanly"
    );
}
