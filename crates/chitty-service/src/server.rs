//! Running the service: the store, the gRPC server, the task that announces vanished participants, and
//! shutdown.
//!
//! Next to Chitty-Chat it serves the standard `grpc.health.v1.Health` service: `SERVING` while it
//! accepts calls, `NOT_SERVING` from the moment shutdown begins, and for a cluster node also while
//! NATS does not store its writes. Unless turned off, it also serves gRPC server reflection for all of
//! them (`server/reflection.rs`). With a metrics listener ([`serve_with_metrics`]) it serves Prometheus
//! metrics on `GET /metrics` (`metrics.rs`), a task owned and stopped like the others.
//!
//! The same port serves browsers (`server/web.rs`): the participant page at `GET /`, and gRPC-Web,
//! over HTTP/1.1 or HTTP/2, for the same routes as native gRPC, with CORS for the origins configured.
//!
//! [`serve`] owns every task it starts and waits for them before it returns. On shutdown it stops
//! accepting connections, ends every Broadcast stream itself with `UNAVAILABLE` (tonic's graceful
//! shutdown would otherwise wait for open streams forever), lets in-flight calls finish, waits until the
//! store has everything on disk, and gives up on stragglers after [`SHUTDOWN_BACKSTOP`], so the whole
//! service stops well within 5 seconds.
//!
//! # Limits against abuse
//!
//! The transport limits below bound what one connection can cost, whatever it sends. They are chosen so
//! that a well-behaved participant never meets them:
//!
//! - [`MAX_REQUEST_BYTES`]: a request larger than this is refused before it is decoded. The largest valid
//!   request (128 characters of 4 bytes, a 64-byte key) is about 600 bytes.
//! - [`ServeConfig::max_streams_per_connection`] (by default [`DEFAULT_MAX_STREAMS_PER_CONNECTION`]):
//!   concurrent HTTP/2 streams per connection. A participant uses two, its Broadcast stream and one call
//!   at a time. A client that pipelines many calls on one connection (the load harness's publisher)
//!   needs more, and the operator who runs one raises it.
//! - [`MAX_HEADER_LIST_BYTES`]: the size of a request's headers, which bounds CONTINUATION floods: h2 stops
//!   reading a header block past this size and resets the stream.
//! - [`MAX_PENDING_RESETS`] and [`MAX_LOCAL_ERROR_RESETS`]: how many streams a client may reset, or make the
//!   server reset, before the connection is closed; this is hyper's defence against Rapid Reset
//!   (CVE-2023-44487), set explicitly here rather than left to defaults.

use chitty_logs::{SERVICE, ServiceEvent};
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use thiserror::Error;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Identity, Server, ServerTlsConfig};
use tracing::{info, warn};

use crate::call::ChatConfig;
use crate::chat::ChatService;
use crate::cluster::ClusterChat;
use crate::node::ChatNode;
use chitty_proto::v1::chitty_chat_server::ChittyChatServer;

use crate::grpc::{ChatRoutes, GrpcChat};
use crate::store::{Store, StoreError};

mod reflection;
mod web;

pub use web::{Page, PageError, WebOrigin};

/// How long shutdown waits for connections to close and the store to flush after every stream ended.
pub const SHUTDOWN_BACKSTOP: Duration = Duration::from_secs(3);

/// The largest request accepted, in bytes.
pub const MAX_REQUEST_BYTES: usize = 4 * 1024;

/// The most concurrent HTTP/2 streams on one connection, unless configured otherwise: a participant
/// needs two, and every stream in flight holds up to [`MAX_REQUEST_BYTES`] of its request.
pub const DEFAULT_MAX_STREAMS_PER_CONNECTION: u32 = 16;

/// The most bytes of headers one request may carry.
pub const MAX_HEADER_LIST_BYTES: u32 = 16 * 1024;

/// The most streams a client may reset before they are accepted, per connection.
pub const MAX_PENDING_RESETS: usize = 20;

/// The most streams the server may reset because of client errors, per connection.
pub const MAX_LOCAL_ERROR_RESETS: usize = 256;

/// Where the service keeps its state.
#[derive(Debug, Clone)]
pub enum Storage {
    /// In a redb database in this directory: survives restarts.
    Directory(PathBuf),
    /// In memory only: everything is lost when the process ends.
    Memory,
    /// In a NATS JetStream cluster, shared with every other node configured alike.
    Cluster(chitty_cluster::ClusterConfig),
}

/// A certificate chain and private key, PEM-encoded, to serve TLS with.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// The certificate chain.
    pub certificate: Vec<u8>,
    /// The private key.
    pub key: Vec<u8>,
}

/// Everything [`serve`] needs to know.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// How the chat behaves.
    pub chat: ChatConfig,
    /// Where the state is kept.
    pub storage: Storage,
    /// Serve TLS with these, or plaintext if `None`.
    pub tls: Option<TlsFiles>,
    /// How often the server pings an idle connection to learn whether the participant is still there.
    pub keepalive_interval: Duration,
    /// How long a ping may go unanswered before the connection is declared dead and closed.
    pub keepalive_timeout: Duration,
    /// The most concurrent HTTP/2 streams (calls) one connection may have open.
    pub max_streams_per_connection: u32,
    /// Whether to serve gRPC server reflection (v1 and v1alpha) for every service served.
    pub reflection: bool,
    /// The origins whose pages may call the service over gRPC-Web (CORS); none by default, and the
    /// page the service serves itself needs none.
    pub web_origins: Vec<WebOrigin>,
}

/// Why the service could not start, or stopped other than by being asked to.
#[derive(Debug, Error)]
pub enum ServeError {
    /// The listener's address could not be read.
    #[error("cannot read the listening address: {0}")]
    Address(#[source] std::io::Error),
    /// The store could not be opened.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The NATS cluster could not be joined. Its message includes the cluster error's causes, so the
    /// error is not also given as the source, which would print them twice.
    #[error("cannot join the cluster: {0}")]
    Cluster(chitty_cluster::ClusterError),
    /// The TLS certificate or key is not usable.
    #[error("cannot use the TLS certificate and key: {0}")]
    Tls(#[source] tonic::transport::Error),
    /// The reflection service could not be built from the committed descriptor sets.
    #[error("cannot build the gRPC reflection service: {0}")]
    Reflection(#[source] tonic_reflection::server::Error),
    /// The participant page could not be assembled from the files embedded in the binary.
    #[error("cannot assemble the participant page: {0}")]
    Page(#[source] PageError),
    /// The gRPC server failed.
    #[error("the gRPC server failed: {0}")]
    Transport(#[from] tonic::transport::Error),
    /// The gRPC server's task ended abnormally.
    #[error("the gRPC server stopped abnormally: {0}")]
    Crashed(String),
}

/// Serves Chitty-Chat on `listener` until `shutdown` completes, then stops within 5 seconds.
pub async fn serve(
    listener: TcpListener,
    config: ServeConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServeError> {
    serve_with_metrics(listener, None, config, shutdown).await
}

/// [`serve`], and also `GET /metrics` (Prometheus) on `metrics_listener` if there is one, until the
/// same shutdown.
pub async fn serve_with_metrics(
    listener: TcpListener,
    metrics_listener: Option<TcpListener>,
    config: ServeConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServeError> {
    let address: SocketAddr = listener.local_addr().map_err(ServeError::Address)?;
    let metrics_address = metrics_listener
        .as_ref()
        .map(TcpListener::local_addr)
        .transpose()
        .map_err(ServeError::Address)?;
    let (reflection_v1, reflection_v1alpha) =
        reflection::services(config.reflection).map_err(ServeError::Reflection)?;
    let page = Page::embedded().map_err(ServeError::Page)?;
    let chat = Arc::new(match &config.storage {
        Storage::Directory(directory) => {
            let (store, recovered) = Store::open(directory)?;
            ChatNode::Single(ChatService::open(config.chat.clone(), store, recovered))
        }
        Storage::Memory => {
            let (store, recovered) = Store::in_memory()?;
            ChatNode::Single(ChatService::open(config.chat.clone(), store, recovered))
        }
        Storage::Cluster(cluster) => ChatNode::Cluster(
            ClusterChat::connect(config.chat.clone(), cluster.clone())
                .await
                .map_err(ServeError::Cluster)?,
        ),
    });
    let stop = CancellationToken::new();
    let tasks = TaskTracker::new();

    tasks.spawn(announce_vanished(Arc::clone(&chat), stop.clone()));
    if let Some(metrics_listener) = metrics_listener {
        tasks.spawn(serve_metrics_until(
            metrics_listener,
            Arc::clone(&chat),
            stop.clone(),
        ));
    }

    let mut builder = Server::builder();
    if let Some(tls) = &config.tls {
        let identity = Identity::from_pem(&tls.certificate, &tls.key);
        builder = builder
            .tls_config(ServerTlsConfig::new().identity(identity))
            .map_err(ServeError::Tls)?;
    }
    let service = ChatRoutes::new(Arc::clone(&chat), MAX_REQUEST_BYTES);
    // The standard gRPC health service, for container health checks and load balancers.
    let (health_reporter, health) = tonic_health::server::health_reporter();
    health_reporter
        .set_serving::<ChittyChatServer<GrpcChat>>()
        .await;
    tasks.spawn(report_health(
        Arc::clone(&chat),
        health_reporter.clone(),
        stop.clone(),
    ));
    let router = builder
        // Browsers: the page, CORS when configured, and gRPC-Web over HTTP/1.1 as well as HTTP/2.
        .accept_http1(true)
        .layer(web::WebPageLayer::new(page))
        .layer(tower::util::option_layer(web::cors(&config.web_origins)))
        .layer(tonic_web::GrpcWebLayer::new())
        .http2_keepalive_interval(Some(config.keepalive_interval))
        .http2_keepalive_timeout(Some(config.keepalive_timeout))
        .max_concurrent_streams(config.max_streams_per_connection)
        .http2_max_header_list_size(MAX_HEADER_LIST_BYTES)
        .http2_max_pending_accept_reset_streams(Some(MAX_PENDING_RESETS))
        .http2_max_local_error_reset_streams(Some(MAX_LOCAL_ERROR_RESETS))
        .add_service(service)
        .add_service(health)
        .add_optional_service(reflection_v1)
        .add_optional_service(reflection_v1alpha);
    // HTTP/1.1 has no ping: a browser's Broadcast stream over it would outlive a vanished peer until
    // a write failed. TCP keepalive probes its idle connections at the same pace as HTTP/2's pings.
    let keepalive_probes = config
        .keepalive_timeout
        .as_millis()
        .div_ceil(config.keepalive_interval.as_millis().max(1))
        .clamp(1, 10) as u32;
    let incoming = TcpIncoming::from(listener)
        .with_nodelay(Some(true))
        .with_keepalive(Some(config.keepalive_interval))
        .with_keepalive_interval(Some(config.keepalive_interval))
        .with_keepalive_retries(Some(keepalive_probes));
    let mut server =
        tasks.spawn(router.serve_with_incoming_shutdown(incoming, stop.clone().cancelled_owned()));
    tasks.close();
    info!(
        component = SERVICE,
        event = ServiceEvent::Start.as_str(),
        address = %address,
        metrics_address = metrics_address.map(|address| address.to_string()),
        storage = %match &config.storage {
            Storage::Directory(directory) => directory.display().to_string(),
            Storage::Memory => "memory".to_owned(),
            Storage::Cluster(cluster) => format!(
                "nats {} as node {} ({} replicas)",
                cluster.servers.join(","),
                cluster.node_id,
                cluster.replicas
            ),
        },
        tls = config.tls.is_some(),
        reflection = config.reflection,
        web_origins = config
            .web_origins
            .iter()
            .map(WebOrigin::as_str)
            .collect::<Vec<_>>()
            .join(","),
        node = match &config.storage {
            Storage::Cluster(cluster) => cluster.node_id.as_str(),
            Storage::Directory(_) | Storage::Memory => "",
        },
        last_seq = chat.last_seq().get(),
        grace_ms = config.chat.grace.as_millis() as u64,
        retain_events = config.chat.hub.retention.events,
        retain_bytes = config.chat.hub.retention.bytes,
        queue_capacity = config.chat.hub.queue_capacity,
        max_participants = config.chat.max_participants,
        publish_rate = config.chat.publish_rate.per_second.get(),
        publish_burst = config.chat.publish_rate.burst.get(),
    );

    tokio::select! {
        result = &mut server => {
            // The server stopped without being asked to: clean up, then report why.
            chat.shutdown();
            stop.cancel();
            tasks.wait().await;
            chat.flushed().await;
            info!(component = SERVICE, event = ServiceEvent::Stop.as_str(), present = chat.present());
            return match result {
                Ok(result) => result.map_err(ServeError::Transport),
                Err(failed) => Err(ServeError::Crashed(failed.to_string())),
            };
        }
        () = shutdown => {}
    }

    info!(
        component = SERVICE,
        event = ServiceEvent::Stopping.as_str(),
        present = chat.present()
    );
    stop.cancel();
    health_reporter
        .set_not_serving::<ChittyChatServer<GrpcChat>>()
        .await;
    chat.shutdown();
    let finished = tokio::time::timeout(SHUTDOWN_BACKSTOP, async {
        tasks.wait().await;
        chat.flushed().await;
    })
    .await;
    if finished.is_err() {
        warn!(
            component = SERVICE,
            event = ServiceEvent::Stopping.as_str(),
            reason = "connections still open after the backstop; closing them",
        );
        server.abort();
        // Whatever the connections do, what was queued for the disk must get there.
        let _ = tokio::time::timeout(SHUTDOWN_BACKSTOP / 3, chat.flushed()).await;
    }
    info!(
        component = SERVICE,
        event = ServiceEvent::Stop.as_str(),
        last_seq = chat.last_seq().get()
    );
    Ok(())
}

/// How often the health service's answer is brought up to date with [`ChatNode::serving`].
/// Serves `/metrics` until `stop`; a failure of the metrics server is logged and stops only it.
async fn serve_metrics_until(listener: TcpListener, chat: Arc<ChatNode>, stop: CancellationToken) {
    let scrape = move || chat.metrics().scrape(chat.snapshot());
    if let Err(error) = crate::metrics::serve_metrics(listener, scrape, stop).await {
        warn!(
            component = SERVICE,
            event = ServiceEvent::Metrics.as_str(),
            reason = %format!("the metrics server failed: {error}"),
        );
    }
}

const HEALTH_PERIOD: Duration = Duration::from_millis(500);

/// Keeps the health service's answer true to [`ChatNode::serving`] until `stop` is cancelled, and logs
/// each change: a cluster node whose NATS lost its quorum says `NOT_SERVING`, so that a load balancer
/// or a participant with several addresses goes elsewhere.
async fn report_health(
    chat: Arc<ChatNode>,
    reporter: tonic_health::server::HealthReporter,
    stop: CancellationToken,
) {
    let mut ticks = tokio::time::interval(HEALTH_PERIOD);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut serving = true;
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            () = stop.cancelled() => return,
        }
        let now_serving = chat.serving();
        if now_serving == serving {
            continue;
        }
        serving = now_serving;
        if serving {
            info!(
                component = SERVICE,
                event = ServiceEvent::Health.as_str(),
                status = "serving"
            );
            reporter.set_serving::<ChittyChatServer<GrpcChat>>().await;
        } else {
            warn!(
                component = SERVICE,
                event = ServiceEvent::Health.as_str(),
                status = "not_serving",
                reason = "the cluster does not store this node's writes"
            );
            reporter
                .set_not_serving::<ChittyChatServer<GrpcChat>>()
                .await;
        }
    }
}

/// Announces as left every participant that has had no open Broadcast stream for the grace period,
/// checking a few times per grace period, until `stop` is cancelled.
async fn announce_vanished(chat: Arc<ChatNode>, stop: CancellationToken) {
    let period = (chat.grace() / 4).clamp(Duration::from_millis(50), Duration::from_secs(1));
    let mut ticks = tokio::time::interval(period);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticks.tick() => {
                chat.expire_vanished().await;
            }
            () = stop.cancelled() => return,
        }
    }
}
