//! Real Chitty-Chat processes, started and driven the way a user drives them.
//!
//! The demo and the integration tests both use this: a [`ServiceProcess`] is `chitty-chat serve` on a free
//! loopback port, a [`ParticipantProcess`] is `chitty-chat join` with its standard input, output and error
//! in our hands. Every wait here is bounded and awaits an event (a line, an exit), never a sleep. Children
//! are killed if their handle is dropped, so a failing test leaves no process behind.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use chitty_participant::output::EventLine;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::mpsc;
use tokio::time::{Instant, timeout_at};

/// What the service prints on standard output once it listens, followed by the address.
pub const LISTENING: &str = "chitty-chat service listening on ";

/// What the service prints on standard output after [`LISTENING`] when it serves metrics, followed by
/// the metrics address.
pub const METRICS_LISTENING: &str = "chitty-chat metrics listening on ";

/// `chitty-chat serve`, listening on a free loopback port.
#[derive(Debug)]
pub struct ServiceProcess {
    /// The running process.
    child: Child,
    /// Where it listens.
    address: SocketAddr,
    /// Where it serves metrics, when started with `--metrics-listen`.
    metrics_address: Option<SocketAddr>,
    /// What it wrote to standard error, line by line.
    stderr: mpsc::UnboundedReceiver<String>,
}

impl ServiceProcess {
    /// Starts `binary serve --listen 127.0.0.1:0 EXTRA...` and waits until it listens.
    pub async fn start(binary: &Path, extra: &[String]) -> anyhow::Result<Self> {
        Self::start_on(binary, "127.0.0.1:0".parse()?, extra).await
    }

    /// Starts `binary serve --listen ADDRESS EXTRA...` and waits until it listens: to restart a service
    /// where its participants expect it.
    pub async fn start_on(
        binary: &Path,
        address: SocketAddr,
        extra: &[String],
    ) -> anyhow::Result<Self> {
        let mut child = Command::new(binary)
            .args(["serve", "--listen", &address.to_string()])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("cannot start {}", binary.display()))?;
        let stdout = child
            .stdout
            .take()
            .context("the service's stdout is piped")?;
        let stderr = lines_of(
            child
                .stderr
                .take()
                .context("the service's stderr is piped")?,
        );
        let mut stdout = BufReader::new(stdout).lines();
        let first = tokio::time::timeout(Duration::from_secs(20), stdout.next_line())
            .await
            .map_err(|_| anyhow!("the service did not report its address within 20 s"))?
            .context("cannot read the service's output")?
            .ok_or_else(|| anyhow!("the service exited before listening"))?;
        let address = first
            .strip_prefix(LISTENING)
            .and_then(|address| address.trim().parse().ok())
            .ok_or_else(|| anyhow!("unexpected first line from the service: {first:?}"))?;
        let metrics_address = if extra.iter().any(|arg| arg == "--metrics-listen") {
            let line = tokio::time::timeout(Duration::from_secs(20), stdout.next_line())
                .await
                .map_err(|_| anyhow!("the service did not report its metrics address within 20 s"))?
                .context("cannot read the service's output")?
                .ok_or_else(|| anyhow!("the service exited before serving metrics"))?;
            Some(
                line.strip_prefix(METRICS_LISTENING)
                    .and_then(|address| address.trim().parse().ok())
                    .ok_or_else(|| anyhow!("unexpected second line from the service: {line:?}"))?,
            )
        } else {
            None
        };
        // Keep draining standard output so the service never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = stdout.next_line().await {} });
        Ok(Self {
            child,
            address,
            metrics_address,
            stderr,
        })
    }

    /// The address it listens on.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Where it serves metrics, if it was started with `--metrics-listen`.
    pub fn metrics_address(&self) -> Option<SocketAddr> {
        self.metrics_address
    }

    /// The URL participants connect to.
    pub fn url(&self) -> String {
        format!("http://{}", self.address)
    }

    /// Sends SIGTERM, asking it to shut down.
    pub fn terminate(&self) -> anyhow::Result<()> {
        signal(&self.child, Signal::SIGTERM)
    }

    /// Kills it with SIGKILL.
    pub fn kill(&mut self) -> anyhow::Result<()> {
        self.child.start_kill().context("cannot kill the service")
    }

    /// Waits for it to exit, at most `within`.
    pub async fn wait(&mut self, within: Duration) -> anyhow::Result<ExitStatus> {
        wait_for_exit(&mut self.child, within, "the service").await
    }

    /// Everything it has written to standard error so far.
    pub fn stderr(&mut self) -> Vec<String> {
        std::iter::from_fn(|| self.stderr.try_recv().ok()).collect()
    }
}

/// `chitty-chat join`, with its input, output and error in our hands.
#[derive(Debug)]
pub struct ParticipantProcess {
    /// The name it joined under.
    name: String,
    /// The running process.
    child: Child,
    /// Its standard input, until closed.
    stdin: Option<ChildStdin>,
    /// Its standard output, line by line.
    stdout: mpsc::UnboundedReceiver<String>,
    /// Its standard error, line by line.
    stderr: mpsc::UnboundedReceiver<String>,
    /// Every event line it printed so far, in order.
    received: Vec<EventLine>,
    /// Every other line it printed on standard output.
    other_output: Vec<String>,
    /// Every line it wrote to standard error so far.
    errors: Vec<String>,
}

impl ParticipantProcess {
    /// Starts `binary join --name NAME --server URL EXTRA...`.
    pub async fn start(
        binary: &Path,
        server_url: &str,
        name: &str,
        extra: &[String],
    ) -> anyhow::Result<Self> {
        let mut child = Command::new(binary)
            .args(["join", "--name", name, "--server", server_url])
            .args(extra)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("cannot start participant {name}"))?;
        Ok(Self {
            name: name.to_owned(),
            stdin: child.stdin.take(),
            stdout: lines_of(child.stdout.take().context("stdout is piped")?),
            stderr: lines_of(child.stderr.take().context("stderr is piped")?),
            child,
            received: Vec::new(),
            other_output: Vec::new(),
            errors: Vec::new(),
        })
    }

    /// The name it joined under.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its process id.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// Types a line, which the participant publishes.
    pub async fn say(&mut self, text: &str) -> anyhow::Result<()> {
        let mut line = text.as_bytes().to_vec();
        line.push(b'\n');
        self.type_bytes(&line).await
    }

    /// Writes raw bytes to its standard input.
    pub async fn type_bytes(&mut self, bytes: &[u8]) -> anyhow::Result<()> {
        let stdin = self
            .stdin
            .as_mut()
            .ok_or_else(|| anyhow!("{}'s input is already closed", self.name))?;
        stdin.write_all(bytes).await?;
        stdin.flush().await?;
        Ok(())
    }

    /// Closes its standard input, which makes it leave.
    pub fn close_input(&mut self) {
        self.stdin = None;
    }

    /// Sends SIGTERM, which makes it leave.
    pub fn terminate(&self) -> anyhow::Result<()> {
        signal(&self.child, Signal::SIGTERM)
    }

    /// Kills it with SIGKILL: a crash, with no chance to leave.
    pub fn kill(&mut self) -> anyhow::Result<()> {
        self.child
            .start_kill()
            .context("cannot kill the participant")
    }

    /// Freezes it with SIGSTOP: it neither reads nor writes until [`ParticipantProcess::thaw`].
    pub fn freeze(&self) -> anyhow::Result<()> {
        signal(&self.child, Signal::SIGSTOP)
    }

    /// Lets a frozen participant run again with SIGCONT.
    pub fn thaw(&self) -> anyhow::Result<()> {
        signal(&self.child, Signal::SIGCONT)
    }

    /// Every event line it printed so far.
    pub fn received(&self) -> &[EventLine] {
        &self.received
    }

    /// Every line it wrote to standard error so far.
    pub fn errors(&self) -> &[String] {
        &self.errors
    }

    /// Lines on standard output that were not events.
    pub fn other_output(&self) -> &[String] {
        &self.other_output
    }

    /// Waits until it has printed an event that `wanted` accepts (earlier lines count), at most `within`.
    pub async fn wait_for_event(
        &mut self,
        description: &str,
        wanted: impl Fn(&EventLine) -> bool,
        within: Duration,
    ) -> anyhow::Result<EventLine> {
        let deadline = Instant::now() + within;
        let mut checked = 0;
        loop {
            if let Some(found) = self.received[checked..].iter().find(|line| wanted(line)) {
                return Ok(found.clone());
            }
            checked = self.received.len();
            match timeout_at(deadline, self.stdout.recv()).await {
                Ok(Some(line)) => self.record(line),
                Ok(None) => bail!(
                    "{} ended its output without printing {description}; it printed:\n{}",
                    self.name,
                    self.transcript()
                ),
                Err(_) => {
                    let errors = self.drain_errors().join("\n");
                    bail!(
                        "{} did not print {description} within {within:?}; it printed:\n{}\nand on stderr:\n{errors}",
                        self.name,
                        self.transcript(),
                    )
                }
            }
        }
    }

    /// Waits until it has printed a line that is not an event (a `---` status line, say) that `wanted`
    /// accepts (earlier lines count), at most `within`.
    pub async fn wait_for_output(
        &mut self,
        description: &str,
        wanted: impl Fn(&str) -> bool,
        within: Duration,
    ) -> anyhow::Result<String> {
        let deadline = Instant::now() + within;
        let mut checked = 0;
        loop {
            if let Some(found) = self.other_output[checked..]
                .iter()
                .find(|line| wanted(line))
            {
                return Ok(found.clone());
            }
            checked = self.other_output.len();
            match timeout_at(deadline, self.stdout.recv()).await {
                Ok(Some(line)) => self.record(line),
                Ok(None) | Err(_) => bail!(
                    "{} did not print {description} within {within:?}; it printed:\n{}",
                    self.name,
                    self.transcript()
                ),
            }
        }
    }

    /// Waits until it has written a line to standard error that `wanted` accepts, at most `within`.
    pub async fn wait_for_error(
        &mut self,
        description: &str,
        wanted: impl Fn(&str) -> bool,
        within: Duration,
    ) -> anyhow::Result<String> {
        let deadline = Instant::now() + within;
        let mut checked = 0;
        loop {
            if let Some(found) = self.errors[checked..].iter().find(|line| wanted(line)) {
                return Ok(found.clone());
            }
            checked = self.errors.len();
            match timeout_at(deadline, self.stderr.recv()).await {
                Ok(Some(line)) => self.errors.push(line),
                Ok(None) | Err(_) => bail!(
                    "{} did not write {description} to stderr within {within:?}; it wrote:\n{}",
                    self.name,
                    self.errors.join("\n")
                ),
            }
        }
    }

    /// Waits for it to exit, at most `within`, then collects the rest of its output.
    pub async fn wait(&mut self, within: Duration) -> anyhow::Result<ExitStatus> {
        let deadline = Instant::now() + within;
        let status = wait_for_exit(&mut self.child, within, &self.name).await?;
        // The pipes close when the process exits; what is left in them is bounded.
        while let Ok(Some(line)) = timeout_at(deadline, self.stdout.recv()).await {
            self.record(line);
        }
        self.drain_errors();
        Ok(status)
    }

    /// Everything it printed, as one string, for failure messages.
    pub fn transcript(&self) -> String {
        self.received
            .iter()
            .map(|line| {
                format!(
                    "[seq={} lamport={} me={}] {}",
                    line.seq, line.lamport, line.me, line.body
                )
            })
            .chain(self.other_output.iter().cloned())
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn record(&mut self, line: String) {
        match EventLine::parse(&line) {
            Some(event) => self.received.push(event),
            None => self.other_output.push(line),
        }
    }

    fn drain_errors(&mut self) -> &[String] {
        while let Ok(line) = self.stderr.try_recv() {
            self.errors.push(line);
        }
        &self.errors
    }
}

/// The body of the joined sentence for `name`, up to the Lamport time.
pub fn joined_prefix(name: &str) -> String {
    format!("*** Participant {name} joined Chitty-Chat at Lamport time ")
}

/// The body of the left sentence for `name`, up to the Lamport time.
pub fn left_prefix(name: &str) -> String {
    format!("*** Participant {name} left Chitty-Chat at Lamport time ")
}

/// The body of a message line.
pub fn message_body(author: &str, text: &str) -> String {
    format!("<{author}> {text}")
}

/// Reads `reader` line by line into a channel, on a task of its own, until it closes.
fn lines_of(reader: impl AsyncRead + Unpin + Send + 'static) -> mpsc::UnboundedReceiver<String> {
    // Unbounded because the producer is one child process whose output we read to the end in any case;
    // bounding it would only risk blocking the child on a full pipe while a test is not reading.
    let (sender, receiver) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut lines = BufReader::new(reader).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            if sender.send(line).is_err() {
                return;
            }
        }
    });
    receiver
}

fn signal(child: &Child, signal: Signal) -> anyhow::Result<()> {
    let pid = child
        .id()
        .ok_or_else(|| anyhow!("the process has already exited"))?;
    let pid = i32::try_from(pid).context("process id out of range")?;
    kill(Pid::from_raw(pid), signal)
        .with_context(|| format!("cannot send {signal} to process {pid}"))
}

async fn wait_for_exit(
    child: &mut Child,
    within: Duration,
    what: &str,
) -> anyhow::Result<ExitStatus> {
    tokio::time::timeout(within, child.wait())
        .await
        .map_err(|_| anyhow!("{what} did not exit within {within:?}"))?
        .with_context(|| format!("cannot wait for {what}"))
}
