//! Running the service: the gRPC server, the task that announces vanished participants, and shutdown.
//!
//! [`serve`] owns every task it starts and waits for them before it returns. On shutdown it ends every
//! Broadcast stream itself (tonic's graceful shutdown would otherwise wait for open streams forever), lets
//! in-flight calls finish, and gives up on stragglers after [`SHUTDOWN_BACKSTOP`], so the whole service
//! stops well within 5 seconds.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use thiserror::Error;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;
use tracing::{info, warn};

use crate::chat::{ChatConfig, ChatService};
use crate::grpc::GrpcChat;

/// How long shutdown waits for connections to close after every stream was ended.
pub const SHUTDOWN_BACKSTOP: Duration = Duration::from_secs(3);

/// Everything [`serve`] needs to know.
#[derive(Debug, Clone, Copy)]
pub struct ServeConfig {
    /// How the chat behaves.
    pub chat: ChatConfig,
    /// How often the server pings an idle connection to learn whether the participant is still there.
    pub keepalive_interval: Duration,
    /// How long a ping may go unanswered before the connection is declared dead and closed.
    pub keepalive_timeout: Duration,
}

/// Why the service stopped other than by being asked to.
#[derive(Debug, Error)]
pub enum ServeError {
    /// The listener's address could not be read.
    #[error("cannot read the listening address: {0}")]
    Address(#[source] std::io::Error),
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
    let address: SocketAddr = listener.local_addr().map_err(ServeError::Address)?;
    let chat = Arc::new(ChatService::new(config.chat));
    let stop = CancellationToken::new();
    let tasks = TaskTracker::new();

    tasks.spawn(announce_vanished(Arc::clone(&chat), stop.clone()));

    let router = Server::builder()
        .http2_keepalive_interval(Some(config.keepalive_interval))
        .http2_keepalive_timeout(Some(config.keepalive_timeout))
        .add_service(GrpcChat::new(Arc::clone(&chat)).into_server());
    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
    let mut server =
        tasks.spawn(router.serve_with_incoming_shutdown(incoming, stop.clone().cancelled_owned()));
    tasks.close();
    info!(
        component = "service",
        event = "start",
        address = %address,
        grace_ms = config.chat.grace.as_millis() as u64,
        history_limit = config.chat.hub.history_limit,
        queue_capacity = config.chat.hub.queue_capacity,
    );

    tokio::select! {
        result = &mut server => {
            // The server stopped without being asked to: clean up, then report why.
            stop.cancel();
            tasks.wait().await;
            info!(component = "service", event = "stop", present = chat.present());
            return match result {
                Ok(result) => result.map_err(ServeError::Transport),
                Err(failed) => Err(ServeError::Crashed(failed.to_string())),
            };
        }
        () = shutdown => {}
    }

    info!(
        component = "service",
        event = "stopping",
        present = chat.present()
    );
    chat.shutdown();
    stop.cancel();
    if tokio::time::timeout(SHUTDOWN_BACKSTOP, tasks.wait())
        .await
        .is_err()
    {
        warn!(
            component = "service",
            event = "stopping",
            reason = "connections still open after the backstop; closing them",
        );
        server.abort();
    }
    info!(component = "service", event = "stop");
    Ok(())
}

/// Announces as left every participant that has had no open Broadcast stream for the grace period,
/// checking a few times per grace period, until `stop` is cancelled.
async fn announce_vanished(chat: Arc<ChatService>, stop: CancellationToken) {
    let period = (chat.grace() / 4).clamp(Duration::from_millis(50), Duration::from_secs(1));
    let mut ticks = tokio::time::interval(period);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticks.tick() => {
                chat.expire_vanished();
            }
            () = stop.cancelled() => return,
        }
    }
}
