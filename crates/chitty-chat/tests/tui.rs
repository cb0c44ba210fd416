//! The terminal UI end to end: the real binary, in real terminals, driven by keys.
//!
//! `tmux` gives each participant a terminal of a fixed size: `send-keys` types into it and
//! `capture-pane` reads the screen. A screen has no event to await, so the test polls it, every 100 ms
//! and for at most [`common::WAIT`]. Each run uses a tmux server of its own (`-L`), which a guard kills
//! however the test ends. Without tmux the test reports itself skipped; CI installs it.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::{WAIT, binary, has, log_dir, log_lines, service};
use tokio::time::Instant;

/// How often a screen is read while waiting for something to appear on it.
const POLL: Duration = Duration::from_millis(100);

/// What a window's shell prints once `chitty-chat` exits, before its exit status.
const EXITED: &str = "chitty-chat exited with status ";

/// A tmux server of this test's own, killed when dropped.
struct Tmux {
    /// The server's socket name, unique to this run.
    socket: String,
    /// Where the participants' logs are, to show them when something fails.
    dir: PathBuf,
}

impl Tmux {
    /// Whether tmux can be run here.
    fn available() -> bool {
        Command::new("tmux")
            .arg("-V")
            .output()
            .is_ok_and(|output| output.status.success())
    }

    /// Starts a server with one session `chat` of `width` by `height`, whose first window `name` runs
    /// `command`. Panes stay open after their program exits, so that its last screen can be read.
    fn start(dir: &Path, width: u16, height: u16, name: &str, command: &str) -> Self {
        let config = dir.join("tmux.conf");
        std::fs::write(&config, "set -g remain-on-exit on\nset -g status off\n")
            .expect("write the tmux configuration");
        let tmux = Self {
            socket: format!("chitty-tui-{}-{}", std::process::id(), unique()),
            dir: dir.to_owned(),
        };
        tmux.run(&[
            "-f",
            &config.display().to_string(),
            "new-session",
            "-d",
            "-s",
            "chat",
            "-x",
            &width.to_string(),
            "-y",
            &height.to_string(),
            "-n",
            name,
            command,
        ]);
        tmux
    }

    /// Opens another window `name` running `command`.
    fn open(&self, name: &str, command: &str) {
        self.run(&["new-window", "-d", "-t", "chat", "-n", name, command]);
    }

    /// Types `text` literally into window `name`.
    fn type_text(&self, name: &str, text: &str) {
        self.run(&["send-keys", "-t", &target(name), "-l", text]);
    }

    /// Presses `key` (tmux's key names: `Enter`, `C-c`) in window `name`.
    fn press(&self, name: &str, key: &str) {
        self.run(&["send-keys", "-t", &target(name), key]);
    }

    /// What window `name` shows now.
    fn screen(&self, name: &str) -> String {
        self.run(&["capture-pane", "-p", "-t", &target(name)])
    }

    /// Polls window `name` until `wanted` accepts its screen, at most [`WAIT`]; returns that screen.
    async fn wait_for(
        &self,
        name: &str,
        description: &str,
        wanted: impl Fn(&str) -> bool,
    ) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            let screen = self.screen(name);
            if wanted(&screen) {
                return screen;
            }
            if Instant::now() >= deadline {
                panic!(
                    "{name}'s screen did not show {description} within {WAIT:?}; got:\n{screen}\nwanted: {description}"
                );
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Polls until the program in window `name` has exited, at most [`WAIT`]; returns its exit status.
    ///
    /// The window's shell command prints the status after the program (see [`join_command`]), so it
    /// shows on the screen the program gave back. tmux's own `pane_dead_status` is not used: tmux may
    /// see the terminal close well before it reaps the process, and once it does it replaces the screen.
    async fn wait_for_exit(&self, name: &str) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            let screen = self.screen(name);
            if let Some(status) = screen
                .lines()
                .find_map(|line| line.trim().strip_prefix(EXITED))
            {
                return status.to_owned();
            }
            if Instant::now() >= deadline {
                panic!(
                    "{name} did not exit within {WAIT:?}; its screen:\n{screen}\nits log:\n{}",
                    std::fs::read_to_string(self.dir.join(format!("{name}.log")))
                        .unwrap_or_default()
                );
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Runs `tmux -L SOCKET ARGS...` and returns its standard output; panics with its error otherwise.
    fn run(&self, args: &[&str]) -> String {
        let output = Command::new("tmux")
            .args(["-L", &self.socket])
            .args(args)
            .output()
            .expect("tmux runs");
        assert!(
            output.status.success(),
            "tmux {args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["-L", &self.socket, "kill-server"])
            .output();
    }
}

fn target(name: &str) -> String {
    format!("chat:{name}")
}

/// A number that differs between runs, for the socket name.
fn unique() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| since.as_nanos())
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
        tmux.wait_for_exit("alice").await,
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
    assert_eq!(tmux.wait_for_exit("bob").await, "0", "bob exits cleanly");
}
