//! A bare tonic broadcast server that speaks Chitty-Chat's protocol and does nothing else: the floor
//! under the service's figures in `docs/benchmarks.md`.
//!
//! It has no Lamport clock, no validation, no sessions, no history, no durability and no cut-off of slow
//! readers: Join hands out one shared token, Publish numbers the message and sends it into a
//! `tokio::sync::broadcast` channel, and every Broadcast stream forwards what that channel gives it,
//! built into a `v1::Event` and encoded by tonic for each recipient, as the simplest tonic server would.
//! A stream that lags behind the channel skips what it missed instead of being cut off.
//!
//! Measuring it with the same harness, on the same machine, in the same way as the service separates
//! what tonic, hyper, h2 and the kernel cost from what Chitty-Chat adds:
//!
//! ```sh
//! cargo build --release -p chitty-bench --example bare_tonic
//! ./target/release/examples/bare_tonic 127.0.0.1:50060 &
//! RUST_LOG=warn ./target/release/chitty-chat bench fanout --n 1000 --vs-nats \
//!     --server http://127.0.0.1:50060 --server-pid $!
//! ```

use std::net::SocketAddr;
use std::pin::Pin;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::Context as _;
use chitty_proto::v1;
use chitty_proto::v1::chitty_chat_server::{ChittyChat, ChittyChatServer};
use futures_util::Stream;
use tokio::sync::broadcast;
use tonic::{Request, Response, Status};

/// How many events the broadcast channel keeps for a stream that has not read them yet, as the service's
/// default `--stream-queue`.
const CHANNEL_CAPACITY: usize = 1024;

/// The chat: a counter for seq numbers and the channel every stream listens to.
#[derive(Clone)]
struct BareChat {
    /// The seq of the latest event; each Join and Publish takes the next one.
    last_seq: Arc<AtomicU64>,
    /// Every event goes to every stream subscribed at the time.
    events: broadcast::Sender<Arc<v1::Event>>,
}

impl BareChat {
    /// Numbers an event of `kind` by `participant` and sends it to every stream; returns its seq.
    fn broadcast(&self, kind: v1::EventKind, participant: String, text: String) -> u64 {
        let seq = self.last_seq.fetch_add(1, Ordering::Relaxed) + 1;
        // Nobody listening is not an error for a broadcast.
        let _ = self.events.send(Arc::new(v1::Event {
            seq,
            lamport: seq,
            kind: kind.into(),
            participant,
            text,
        }));
        seq
    }
}

type EventStream = Pin<Box<dyn Stream<Item = Result<v1::Event, Status>> + Send>>;

#[tonic::async_trait]
impl ChittyChat for BareChat {
    async fn join(
        &self,
        request: Request<v1::JoinRequest>,
    ) -> Result<Response<v1::JoinResponse>, Status> {
        let name = request.into_inner().name;
        let seq = self.broadcast(v1::EventKind::Joined, name, "joined".to_owned());
        Ok(Response::new(v1::JoinResponse {
            session_token: "bare".to_owned(),
            lamport: seq,
            seq,
        }))
    }

    type BroadcastStream = EventStream;

    async fn broadcast(
        &self,
        _request: Request<v1::BroadcastRequest>,
    ) -> Result<Response<Self::BroadcastStream>, Status> {
        let events = self.events.subscribe();
        let stream = futures_util::stream::unfold(events, |mut events| async move {
            loop {
                match events.recv().await {
                    Ok(event) => return Some((Ok(v1::Event::clone(&event)), events)),
                    Err(broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(broadcast::error::RecvError::Closed) => return None,
                }
            }
        });
        Ok(Response::new(Box::pin(stream)))
    }

    async fn publish(
        &self,
        request: Request<v1::PublishRequest>,
    ) -> Result<Response<v1::PublishResponse>, Status> {
        let text = request.into_inner().text;
        let seq = self.broadcast(v1::EventKind::Message, "publisher".to_owned(), text);
        Ok(Response::new(v1::PublishResponse { lamport: seq, seq }))
    }

    async fn leave(
        &self,
        _request: Request<v1::LeaveRequest>,
    ) -> Result<Response<v1::LeaveResponse>, Status> {
        let seq = self.last_seq.load(Ordering::Relaxed);
        Ok(Response::new(v1::LeaveResponse { lamport: seq, seq }))
    }

    async fn participants(
        &self,
        _request: Request<v1::ParticipantsRequest>,
    ) -> Result<Response<v1::ParticipantsResponse>, Status> {
        let seq = self.last_seq.load(Ordering::Relaxed);
        Ok(Response::new(v1::ParticipantsResponse {
            names: Vec::new(),
            seq,
            lamport: seq,
        }))
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("bare_tonic: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// Serves on the address given as the first argument (by default 127.0.0.1:50060) until Ctrl-C.
async fn run() -> anyhow::Result<()> {
    let address: SocketAddr = std::env::args()
        .nth(1)
        .as_deref()
        .unwrap_or("127.0.0.1:50060")
        .parse()
        .context("the first argument must be an address to listen on, such as 127.0.0.1:50060")?;
    let (events, _) = broadcast::channel(CHANNEL_CAPACITY);
    let chat = BareChat {
        last_seq: Arc::new(AtomicU64::new(0)),
        events,
    };
    println!("bare tonic broadcast server listening on {address}");
    tonic::transport::Server::builder()
        .add_service(ChittyChatServer::new(chat))
        .serve_with_shutdown(address, async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
        .with_context(|| format!("cannot serve on {address}"))
}
