//! Headless Chromium, driven over WebDriver, for the browser tests.
//!
//! [`Chromedriver`] is one `chromedriver` process on a free loopback port; [`Chromedriver::open`] starts one
//! headless Chromium for each call, a WebDriver session of its own with its own temporary profile, so two
//! [`Browser`]s share nothing: two people at two computers. Every wait is bounded and polls the page for
//! the state it waits for, never a fixed sleep. chromedriver runs in a process group of its own and the
//! browsers it starts inherit it, so dropping the [`Chromedriver`] kills them all, even when a test fails
//! halfway.
//!
//! The tests skip, saying why, on a machine without Chromium or chromedriver ([`Tools::find`]); `.ci/run`
//! installs Debian's `chromium` and `chromium-driver` so that CI runs them.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use fantoccini::key::Key;
use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};
use tokio::time::Instant;

/// How often a wait looks at the page again.
const POLL: Duration = Duration::from_millis(50);

/// The bound on starting chromedriver, and on one browser starting.
const START: Duration = Duration::from_secs(30);

/// What to install when the tools are missing.
pub const INSTALL_HINT: &str = "install Debian's chromium and chromium-driver (apt-get install chromium chromium-driver; .ci/run does)";

/// The two programs the browser tests need.
#[derive(Debug, Clone)]
pub struct Tools {
    /// The Chromium browser.
    pub chromium: PathBuf,
    /// The WebDriver server that drives it.
    pub chromedriver: PathBuf,
}

impl Tools {
    /// Finds `chromium` and `chromedriver` on `PATH` (Debian installs both in `/usr/bin`), or says which is
    /// missing.
    pub fn find() -> Result<Self, String> {
        let chromium = ["chromium", "chromium-browser"]
            .into_iter()
            .find_map(on_path)
            .ok_or_else(|| format!("no chromium on PATH: {INSTALL_HINT}"))?;
        let chromedriver = on_path("chromedriver")
            .ok_or_else(|| format!("no chromedriver on PATH: {INSTALL_HINT}"))?;
        // A stand-in that only tells how to install the real one (a snap shim, say) counts as missing.
        for program in [&chromium, &chromedriver] {
            let answers = std::process::Command::new(program)
                .arg("--version")
                .stdin(Stdio::null())
                .output()
                .is_ok_and(|output| output.status.success());
            if !answers {
                return Err(format!(
                    "{} --version fails: {INSTALL_HINT}",
                    program.display()
                ));
            }
        }
        Ok(Self {
            chromium,
            chromedriver,
        })
    }

    /// The tools, or `None` after printing `SKIPPED <test>: <why>`.
    pub fn find_or_skip(test: &str) -> Option<Self> {
        match Self::find() {
            Ok(tools) => Some(tools),
            Err(why) => {
                println!("SKIPPED {test}: {why}");
                None
            }
        }
    }
}

/// The executable `name` in a directory of `PATH`, if there is one.
fn on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|directory| directory.join(name))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .is_ok_and(|metadata| metadata.is_file() && metadata.permissions().mode() & 0o111 != 0)
}

/// A running `chromedriver` on a loopback port, and the browsers it started.
#[derive(Debug)]
pub struct Chromedriver {
    /// The chromedriver process, the leader of a process group that its browsers inherit.
    child: Child,
    /// Where it answers WebDriver requests.
    address: SocketAddr,
    /// The Chromium it starts for each session.
    chromium: PathBuf,
    /// The browsers' profiles (`--user-data-dir`), one directory each, removed at the end.
    profiles: tempfile::TempDir,
}

impl Chromedriver {
    /// Starts chromedriver on a free loopback port and waits until it says it is ready.
    pub async fn start(tools: &Tools) -> anyhow::Result<Self> {
        let port = free_port()?;
        let address = SocketAddr::from(([127, 0, 0, 1], port));
        let mut child = Command::new(&tools.chromedriver)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // A group of its own, which the browsers inherit: Drop kills them all with one signal.
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("cannot start {}", tools.chromedriver.display()))?;
        // chromedriver says little on its own; keep reading so it never blocks on a full pipe.
        let stdout = child
            .stdout
            .take()
            .context("chromedriver's stdout is piped")?;
        let stderr = child
            .stderr
            .take()
            .context("chromedriver's stderr is piped")?;
        tokio::spawn(async move {
            let mut lines = BufReader::new(stdout).lines();
            while let Ok(Some(_)) = lines.next_line().await {}
        });
        tokio::spawn(async move {
            let mut lines = BufReader::new(stderr).lines();
            while let Ok(Some(_)) = lines.next_line().await {}
        });
        let driver = Self {
            child,
            address,
            chromium: tools.chromium.clone(),
            profiles: tempfile::Builder::new()
                .prefix("chitty-chromium-")
                .tempdir()
                .context("cannot make a directory for the browser profiles")?,
        };
        driver.wait_until_ready().await?;
        Ok(driver)
    }

    /// The URL of its WebDriver endpoint.
    pub fn url(&self) -> String {
        format!("http://{}", self.address)
    }

    /// Asks `GET /status` until chromedriver answers that it is ready, at most [`START`].
    async fn wait_until_ready(&self) -> anyhow::Result<()> {
        let deadline = Instant::now() + START;
        let mut last = String::from("no answer yet");
        while Instant::now() < deadline {
            match status(self.address).await {
                Ok(body) => {
                    let ready = serde_json::from_str::<Value>(&body)
                        .ok()
                        .and_then(|status| status["value"]["ready"].as_bool());
                    if ready == Some(true) {
                        return Ok(());
                    }
                    last = body;
                }
                Err(error) => last = error.to_string(),
            }
            tokio::time::sleep(POLL).await;
        }
        bail!("chromedriver was not ready within {START:?}; the last answer to /status: {last}")
    }

    /// Starts one more headless Chromium, with a fresh profile of its own, as a new WebDriver session.
    pub async fn open(&self, name: &str) -> anyhow::Result<Browser> {
        let profile = self.profiles.path().join(name);
        let downloads = self.profiles.path().join(format!("{name}-downloads"));
        for directory in [&profile, &downloads] {
            std::fs::create_dir_all(directory)
                .with_context(|| format!("cannot make {}", directory.display()))?;
        }
        let capabilities = json!({
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": self.chromium,
                "args": [
                    "--headless=new",
                    // CI runs as root, where Chromium refuses to start with its sandbox.
                    "--no-sandbox",
                    // Containers have a small /dev/shm.
                    "--disable-dev-shm-usage",
                    "--disable-gpu",
                    "--no-first-run",
                    "--no-default-browser-check",
                    "--window-size=1100,800",
                    format!("--user-data-dir={}", profile.display()),
                ],
                // Downloads land in a directory of this browser's own, without asking.
                "prefs": {
                    "download.default_directory": downloads,
                    "download.prompt_for_download": false,
                },
            },
        });
        let serde_json::Value::Object(capabilities) = capabilities else {
            unreachable!("the capabilities are a JSON object")
        };
        let client = tokio::time::timeout(
            START,
            ClientBuilder::new(HttpConnector::new())
                .capabilities(capabilities)
                .connect(&self.url()),
        )
        .await
        .map_err(|_| anyhow!("{name}'s browser did not start within {START:?}"))?
        .with_context(|| format!("cannot start {name}'s browser"))?;
        Ok(Browser {
            name: name.to_owned(),
            client,
            downloads,
        })
    }
}

impl Drop for Chromedriver {
    fn drop(&mut self) {
        // chromedriver and every browser it started: they share its process group.
        if let Some(pid) = self.child.id().and_then(|pid| i32::try_from(pid).ok()) {
            let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
        }
    }
}

/// A port that was free a moment ago: chromedriver takes a port number, not a listening socket.
fn free_port() -> anyhow::Result<u16> {
    let listener =
        std::net::TcpListener::bind("127.0.0.1:0").context("cannot find a free loopback port")?;
    Ok(listener.local_addr()?.port())
}

/// The body of `GET /status` from the WebDriver server at `address`, each step bounded by 2 s.
async fn status(address: SocketAddr) -> anyhow::Result<String> {
    let bound = Duration::from_secs(2);
    let connection = tokio::time::timeout(bound, TcpStream::connect(address))
        .await
        .map_err(|_| anyhow!("connecting took over 2 s"))??;
    let mut connection = BufReader::new(connection);
    let request = format!("GET /status HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n");
    connection.get_mut().write_all(request.as_bytes()).await?;
    // chromedriver keeps the connection open whatever the request says: read the head, then exactly
    // Content-Length bytes.
    let mut length = None;
    loop {
        let mut header = String::new();
        tokio::time::timeout(bound, connection.read_line(&mut header))
            .await
            .map_err(|_| anyhow!("the answer's head took over 2 s"))??;
        let header = header.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':')
            && name.eq_ignore_ascii_case("content-length")
        {
            length = value.trim().parse::<usize>().ok();
        }
    }
    let length = length.ok_or_else(|| anyhow!("the answer has no Content-Length"))?;
    let mut body = vec![0; length];
    tokio::time::timeout(bound, connection.read_exact(&mut body))
        .await
        .map_err(|_| anyhow!("the answer's body took over 2 s"))??;
    Ok(String::from_utf8_lossy(&body).into_owned())
}

/// One headless Chromium showing one page: a participant at a computer of their own.
#[derive(Debug)]
pub struct Browser {
    /// Who uses it, for failure messages.
    name: String,
    /// Its WebDriver session.
    client: Client,
    /// Where its downloads land.
    downloads: PathBuf,
}

impl Browser {
    /// Who uses it.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The WebDriver session, for what the methods here do not cover.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Opens `url` and waits until it has loaded.
    pub async fn goto(&self, url: &str) -> anyhow::Result<()> {
        self.client
            .goto(url)
            .await
            .with_context(|| format!("{} cannot open {url}", self.name))
    }

    /// Runs `script` (the body of a function; `arguments` holds `args`) in the page and returns its value.
    pub async fn execute(&self, script: &str, args: Vec<Value>) -> anyhow::Result<Value> {
        self.client
            .execute(script, args)
            .await
            .with_context(|| format!("{}'s page cannot run the script {script:?}", self.name))
    }

    /// Runs `script` in the page, which calls `arguments[arguments.length - 1]` with its result when done
    /// (a promise's, say), and returns that result.
    pub async fn execute_async(&self, script: &str, args: Vec<Value>) -> anyhow::Result<Value> {
        self.client
            .execute_async(script, args)
            .await
            .with_context(|| format!("{}'s page cannot run the script {script:?}", self.name))
    }

    /// Polls the page with `script` until `wanted` accepts its value, at most `within`; returns that value.
    /// On timeout the error shows the last value seen.
    pub async fn wait_for(
        &self,
        description: &str,
        script: &str,
        wanted: impl Fn(&Value) -> bool,
        within: Duration,
    ) -> anyhow::Result<Value> {
        let deadline = Instant::now() + within;
        loop {
            let value = self.execute(script, Vec::new()).await?;
            if wanted(&value) {
                return Ok(value);
            }
            if Instant::now() >= deadline {
                bail!(
                    "{}'s page did not show {description} within {within:?}; it last showed: {value}",
                    self.name
                );
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// The text of the first element matching `css`, or `None` if there is none.
    pub async fn text_of(&self, css: &str) -> anyhow::Result<Option<String>> {
        let value = self
            .execute(
                "const element = document.querySelector(arguments[0]); \
                 return element === null ? null : element.textContent;",
                vec![json!(css)],
            )
            .await?;
        Ok(value.as_str().map(str::to_owned))
    }

    /// Waits for an element matching `css`, at most `within`, and types `text` into it as keystrokes
    /// (WebDriver keys such as [`Key::Enter`] included).
    pub async fn type_into(&self, css: &str, text: &str, within: Duration) -> anyhow::Result<()> {
        let element = self
            .client
            .wait()
            .at_most(within)
            .every(POLL)
            .for_element(Locator::Css(css))
            .await
            .with_context(|| format!("{}'s page has no {css} within {within:?}", self.name))?;
        element
            .send_keys(text)
            .await
            .with_context(|| format!("{} cannot type into {css}", self.name))
    }

    /// Types `text` into `css` and presses Enter.
    pub async fn type_and_enter(
        &self,
        css: &str,
        text: &str,
        within: Duration,
    ) -> anyhow::Result<()> {
        self.type_into(css, &format!("{text}{}", &*Key::Enter), within)
            .await
    }

    /// Clicks the element matching `css`.
    pub async fn click(&self, css: &str) -> anyhow::Result<()> {
        self.client
            .find(Locator::Css(css))
            .await
            .with_context(|| format!("{}'s page has no {css}", self.name))?
            .click()
            .await
            .with_context(|| format!("{} cannot click {css}", self.name))
    }

    /// Waits until a download named `file_name` has finished, at most `within`; returns its contents.
    pub async fn wait_for_download(
        &self,
        file_name: &str,
        within: Duration,
    ) -> anyhow::Result<Vec<u8>> {
        let path = self.downloads.join(file_name);
        let deadline = Instant::now() + within;
        // Chromium writes a download under another name and renames it when it is complete.
        while Instant::now() < deadline {
            if let Ok(contents) = std::fs::read(&path) {
                return Ok(contents);
            }
            tokio::time::sleep(POLL).await;
        }
        let present: Vec<String> = std::fs::read_dir(&self.downloads)
            .map(|entries| {
                entries
                    .filter_map(Result::ok)
                    .map(|entry| entry.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        bail!(
            "{} did not download {file_name} within {within:?}; the download directory holds {present:?}",
            self.name
        )
    }

    /// A PNG of what the page shows now.
    pub async fn screenshot(&self) -> anyhow::Result<Vec<u8>> {
        self.client
            .screenshot()
            .await
            .with_context(|| format!("cannot take a screenshot of {}'s page", self.name))
    }

    /// Opens a blank tab next to the page and comes back to the page: then closing the page's tab
    /// ([`Browser::close_tab`]) is a person closing one tab, not quitting the browser.
    pub async fn open_spare_tab(&self) -> anyhow::Result<()> {
        let page = self.client.window().await?;
        self.client
            .new_window(true)
            .await
            .with_context(|| format!("{} cannot open a tab", self.name))?;
        self.client.switch_to_window(page).await?;
        Ok(())
    }

    /// Closes the current tab, as a person does with the tab's close button: the page's `pagehide` and
    /// `unload` handlers run.
    pub async fn close_tab(&self) -> anyhow::Result<()> {
        self.client
            .close_window()
            .await
            .with_context(|| format!("{} cannot close the tab", self.name))?;
        // WebDriver then has no current tab; move to one that is left, if any, so the session stays usable.
        if let Some(other) = self.client.windows().await?.into_iter().next() {
            self.client.switch_to_window(other).await?;
        }
        Ok(())
    }

    /// Kills this browser's main process with SIGKILL: a crash, or a computer switched off, with no
    /// chance for the page to say goodbye.
    pub fn kill(&self) -> anyhow::Result<()> {
        let pid = self
            .client
            .capabilities()
            .and_then(|capabilities| capabilities.get("goog:processID"))
            .and_then(Value::as_i64)
            .and_then(|pid| i32::try_from(pid).ok())
            .ok_or_else(|| anyhow!("chromedriver did not say {}'s browser process", self.name))?;
        nix::sys::signal::kill(Pid::from_raw(pid), Signal::SIGKILL)
            .with_context(|| format!("cannot kill {}'s browser (process {pid})", self.name))
    }

    /// Ends the WebDriver session, which quits this browser.
    pub async fn quit(self) -> anyhow::Result<()> {
        self.client
            .close()
            .await
            .with_context(|| format!("cannot quit {}'s browser", self.name))
    }
}
