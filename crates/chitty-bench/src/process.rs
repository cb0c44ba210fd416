//! The processes under test: a `chitty-chat serve` started from the current binary, and a nats-server.
//!
//! Both are children of the load generator, killed if their handle is dropped, so an interrupted run leaves
//! no process behind. Every wait here is bounded. The service is started the way the project's own test
//! harness (`chitty-chat`'s `harness::ServiceProcess`) starts it, reading the address from the first line
//! it prints; that harness lives in the binary's crate, which depends on this one, so this module repeats
//! its few lines and adds what a benchmark needs: the process id, for `/proc`.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};

use crate::BenchError;

/// How many of a child's last standard-error lines are kept, to explain a failure.
const STDERR_TAIL_LINES: usize = 20;

/// A child process under test.
#[derive(Debug)]
pub struct ChildProcess {
    /// What it is, for messages.
    what: &'static str,
    /// The running process.
    child: Child,
    /// Its last lines of standard error.
    stderr_tail: Arc<Mutex<VecDeque<String>>>,
}

impl ChildProcess {
    fn spawn(what: &'static str, command: &mut Command) -> Result<Self, BenchError> {
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|source| BenchError::Io {
                what: format!("cannot start {what}"),
                source,
            })?;
        let stderr_tail = Arc::new(Mutex::new(VecDeque::new()));
        if let Some(stderr) = child.stderr.take() {
            keep_tail(stderr, Arc::clone(&stderr_tail));
        }
        Ok(Self {
            what,
            child,
            stderr_tail,
        })
    }

    /// Its process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// Its last lines of standard error, for an error message.
    pub fn stderr_tail(&self) -> String {
        let tail = self
            .stderr_tail
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        tail.iter().cloned().collect::<Vec<_>>().join("\n")
    }

    /// Asks it to stop with SIGTERM, waits up to 5 s, then kills it.
    pub async fn stop(mut self) {
        if let Some(pid) = self.child.id().and_then(|pid| i32::try_from(pid).ok()) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
        }
        if tokio::time::timeout(Duration::from_secs(5), self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.start_kill();
            let _ = tokio::time::timeout(Duration::from_secs(5), self.child.wait()).await;
        }
    }

    fn failed(&self, why: impl std::fmt::Display) -> BenchError {
        BenchError::Process {
            what: self.what,
            why: why.to_string(),
            stderr: self.stderr_tail(),
        }
    }
}

/// Drains `reader` line by line, keeping the last [`STDERR_TAIL_LINES`] lines.
fn keep_tail(reader: impl AsyncRead + Unpin + Send + 'static, tail: Arc<Mutex<VecDeque<String>>>) {
    tokio::spawn(async move {
        let mut lines = BufReader::new(reader).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            let mut tail = tail.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            if tail.len() == STDERR_TAIL_LINES {
                tail.pop_front();
            }
            tail.push_back(line);
        }
    });
}

/// A Chitty-Chat service started by the harness.
#[derive(Debug)]
pub struct ServiceProcess {
    /// The process.
    pub process: ChildProcess,
    /// Where it listens.
    pub address: SocketAddr,
}

impl ServiceProcess {
    /// Starts `binary serve --listen 127.0.0.1:0 EXTRA...` and waits (at most 20 s) for the line that
    /// starts with `listening_prefix` and ends with its address.
    pub async fn start(
        binary: &Path,
        listening_prefix: &str,
        extra: &[String],
    ) -> Result<Self, BenchError> {
        let mut process = ChildProcess::spawn(
            "the chitty-chat service",
            Command::new(binary)
                .args(["serve", "--listen", "127.0.0.1:0"])
                .args(extra),
        )?;
        let stdout = process
            .child
            .stdout
            .take()
            .ok_or_else(|| process.failed("its standard output is not piped"))?;
        let mut stdout = BufReader::new(stdout).lines();
        let first = match tokio::time::timeout(Duration::from_secs(20), stdout.next_line()).await {
            Err(_) => return Err(process.failed("it did not print its address within 20 s")),
            Ok(Err(error)) => {
                return Err(process.failed(format!("cannot read its output: {error}")));
            }
            Ok(Ok(None)) => {
                // Give its standard error a moment to arrive, to say why it exited.
                let _ = tokio::time::timeout(Duration::from_secs(1), process.child.wait()).await;
                return Err(process.failed("it exited before listening"));
            }
            Ok(Ok(Some(line))) => line,
        };
        let address = first
            .strip_prefix(listening_prefix)
            .and_then(|address| address.trim().parse().ok())
            .ok_or_else(|| process.failed(format!("unexpected first line {first:?}")))?;
        // Keep draining standard output so the service never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = stdout.next_line().await {} });
        Ok(Self { process, address })
    }
}

/// A nats-server started by the harness on a free loopback port.
#[derive(Debug)]
pub struct NatsProcess {
    /// The process.
    pub process: ChildProcess,
    /// Where it listens for clients.
    pub address: SocketAddr,
}

impl NatsProcess {
    /// Starts `binary -a 127.0.0.1 -p PORT` on a free port and waits (at most 10 s) until it accepts
    /// connections.
    pub async fn start(binary: &Path) -> Result<Self, BenchError> {
        let address = free_loopback_port()?;
        let process = ChildProcess::spawn(
            "nats-server",
            Command::new(binary).args([
                "-a",
                "127.0.0.1",
                "-p",
                &address.port().to_string(),
                // No monitoring port, no cluster: NATS core pub/sub and nothing else.
                "-m",
                "0",
            ]),
        )?;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            if tokio::net::TcpStream::connect(address).await.is_ok() {
                return Ok(Self { process, address });
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(process.failed(format!(
                    "it did not accept connections on {address} within 10 s"
                )));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// A loopback address with a port that was free a moment ago.
fn free_loopback_port() -> Result<SocketAddr, BenchError> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map_err(|source| BenchError::Io {
            what: "cannot find a free loopback port".to_owned(),
            source,
        })
}

/// Finds nats-server: `explicit` if given, else on `PATH`, else where Debian's package installs it.
pub fn find_nats_server(explicit: Option<&Path>) -> Option<PathBuf> {
    if let Some(path) = explicit {
        return path.is_file().then(|| path.to_owned());
    }
    let on_path = std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .unwrap_or_default();
    on_path
        .into_iter()
        .chain(["/usr/sbin", "/usr/bin", "/usr/local/bin"].map(PathBuf::from))
        .map(|directory| directory.join("nats-server"))
        .find(|candidate| candidate.is_file())
}
