//! Real terminals for the tests of full-screen programs (the chat's terminal UI, `chitty-chat top`).
//!
//! `tmux` gives each program a terminal of a fixed size: `send-keys` types into it and `capture-pane`
//! reads the screen. A screen has no event to await, so [`Tmux::wait_for`] polls it, every [`POLL`] and
//! for at most [`WAIT`]. Each test runs a tmux server of its own (`-L`), which the [`Tmux`] guard kills
//! however the test ends, so tests in parallel and a user's own tmux never see each other's windows.

use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use super::WAIT;

/// How often a screen is read while waiting for something to appear on it.
pub const POLL: Duration = Duration::from_millis(100);

/// The one session of every test's server; windows are named within it.
const SESSION: &str = "test";

/// A tmux server of one test's own, with one session of windows, killed when dropped.
pub struct Tmux {
    /// The server's socket name, unique to this test in this run.
    socket: String,
}

impl Tmux {
    /// Whether tmux can be run here. A test that needs it and finds none says it skipped itself.
    pub fn available() -> bool {
        Command::new("tmux")
            .arg("-V")
            .output()
            .is_ok_and(|output| output.status.success())
    }

    /// Starts a server whose first window, `window`, is `width` by `height` and runs `command`. Windows
    /// stay open after their program exits, so that its last screen can be read. The configuration
    /// file is written to `dir`.
    pub fn start(dir: &Path, width: u16, height: u16, window: &str, command: &str) -> Self {
        let config = dir.join("tmux.conf");
        std::fs::write(&config, "set -g remain-on-exit on\nset -g status off\n")
            .expect("write the tmux configuration");
        let tmux = Self {
            socket: unique_socket(),
        };
        tmux.run(&[
            "-f",
            &config.display().to_string(),
            "new-session",
            "-d",
            "-s",
            SESSION,
            "-x",
            &width.to_string(),
            "-y",
            &height.to_string(),
            "-n",
            window,
            command,
        ]);
        tmux
    }

    /// Opens another window, `window`, running `command`.
    pub fn open(&self, window: &str, command: &str) {
        self.run(&["new-window", "-d", "-t", SESSION, "-n", window, command]);
    }

    /// Types `text` literally into `window`.
    pub fn type_text(&self, window: &str, text: &str) {
        self.run(&["send-keys", "-t", &target(window), "-l", text]);
    }

    /// Presses `key` (tmux's key names: `Enter`, `C-c`, `q`) in `window`.
    pub fn press(&self, window: &str, key: &str) {
        self.run(&["send-keys", "-t", &target(window), key]);
    }

    /// What `window` shows now.
    pub fn screen(&self, window: &str) -> String {
        self.run(&["capture-pane", "-p", "-t", &target(window)])
    }

    /// Polls `window` until `wanted` accepts its screen, at most [`WAIT`]; returns that screen.
    pub async fn wait_for(
        &self,
        window: &str,
        description: &str,
        wanted: impl Fn(&str) -> bool,
    ) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            let screen = self.screen(window);
            if wanted(&screen) {
                return screen;
            }
            assert!(
                Instant::now() < deadline,
                "{window}'s screen did not show {description} within {WAIT:?}; got:\n{screen}\nwanted: {description}"
            );
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

/// tmux's name for `window` of the session.
fn target(window: &str) -> String {
    format!("{SESSION}:{window}")
}

/// A socket name no other server uses: the process (one per test binary), the time now, and a count of
/// the servers this process started, since the tests of one binary run side by side in it.
fn unique_socket() -> String {
    static STARTED: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| since.as_nanos());
    format!(
        "chitty-test-{}-{nanos}-{}",
        std::process::id(),
        STARTED.fetch_add(1, Ordering::Relaxed)
    )
}
