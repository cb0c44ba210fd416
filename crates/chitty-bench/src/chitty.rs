//! Chitty-Chat participants as the load generator drives them: the generated gRPC client over one HTTP/2
//! connection each, and nothing more.
//!
//! A participant here is what `chitty-chat join` is on the wire (Join, a Broadcast stream, Publish, Leave,
//! each request stamped with its Lamport clock, every response and event witnessed) without the outbox,
//! the screen or the logs, so that the load generator stays light. A stream that ends with an error (cut
//! off for reading too slowly, say) is counted and resumed from the last seq seen, as a real participant
//! would, a few times at most.

use std::sync::Arc;
use std::time::Duration;

use chitty_core::{LamportClock, LamportTime, Seq};
use chitty_proto::v1;
use chitty_proto::v1::chitty_chat_client::ChittyChatClient;
use tokio_util::sync::CancellationToken;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::transport::{Channel, Endpoint};

use crate::load::LoadError;
use crate::measure::Deliveries;

/// The bound on every call and on connecting.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// How many times a listener reopens a stream that failed before it gives up.
const REOPEN_ATTEMPTS: u32 = 5;

/// The HTTP/2 stream window of a stalled participant: small, so the network buffers little for it and
/// its queue at the service fills within a short run.
const STALLED_WINDOW: u32 = 16 * 1024;

/// Opens a connection of its own to the service at `url`; `window` sets its HTTP/2 stream window.
async fn connect_with(
    url: &str,
    window: Option<u32>,
) -> Result<ChittyChatClient<Channel>, LoadError> {
    let endpoint = Endpoint::from_shared(url.to_owned())
        .map_err(|error| LoadError::Connect(format!("bad service address {url}: {error}")))?
        .connect_timeout(CALL_TIMEOUT)
        .initial_stream_window_size(window)
        .tcp_nodelay(true);
    let channel = tokio::time::timeout(CALL_TIMEOUT, endpoint.connect())
        .await
        .map_err(|_| LoadError::Timeout("connecting"))?
        .map_err(|error| LoadError::Connect(format!("{url}: {error}")))?;
    Ok(ChittyChatClient::new(channel))
}

/// Opens a connection of its own to the service at `url`.
async fn connect(url: &str) -> Result<ChittyChatClient<Channel>, LoadError> {
    connect_with(url, None).await
}

/// A joined participant: its connection, its session and its clock. Clones share all three.
#[derive(Debug, Clone)]
pub struct Participant {
    /// The client over the participant's own connection.
    client: ChittyChatClient<Channel>,
    /// `Bearer <session token>`.
    authorization: MetadataValue<Ascii>,
    /// The participant's Lamport clock.
    clock: Arc<LamportClock>,
    /// The seq of its joined event.
    pub join_seq: Seq,
}

impl Participant {
    /// Connects to `url` and joins as `name`.
    pub async fn join(url: &str, name: &str) -> Result<Self, LoadError> {
        Self::join_over(connect(url).await?, name).await
    }

    /// Joins as `name` over a connection with a small window, to stall: see [`Participant::stall`].
    pub async fn join_to_stall(url: &str, name: &str) -> Result<Self, LoadError> {
        Self::join_over(connect_with(url, Some(STALLED_WINDOW)).await?, name).await
    }

    async fn join_over(
        mut client: ChittyChatClient<Channel>,
        name: &str,
    ) -> Result<Self, LoadError> {
        let clock = Arc::new(LamportClock::new());
        let request = v1::JoinRequest {
            name: name.to_owned(),
            lamport: clock.tick().get(),
            join_secret: String::new(),
        };
        let response = bounded("Join", client.join(request)).await?;
        clock.witness(LamportTime::new(response.lamport));
        let authorization = chitty_proto::metadata::bearer(&response.session_token)
            .parse()
            .map_err(|_| LoadError::Connect("the session token is not ASCII".to_owned()))?;
        Ok(Self {
            client,
            authorization,
            clock,
            join_seq: Seq::new(response.seq),
        })
    }

    fn request<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        request.metadata_mut().insert(
            chitty_proto::metadata::AUTHORIZATION,
            self.authorization.clone(),
        );
        request
    }

    /// Publishes `text` and waits for the service's answer.
    pub async fn publish(&self, text: String) -> Result<(), LoadError> {
        let request = self.request(v1::PublishRequest {
            text,
            lamport: self.clock.tick().get(),
            idempotency_key: String::new(),
        });
        let response = bounded("Publish", self.client.clone().publish(request)).await?;
        self.clock.witness(LamportTime::new(response.lamport));
        Ok(())
    }

    /// Leaves the chat.
    pub async fn leave(&self) -> Result<(), LoadError> {
        let request = self.request(v1::LeaveRequest {
            lamport: self.clock.tick().get(),
        });
        let response = bounded("Leave", self.client.clone().leave(request)).await?;
        self.clock.witness(LamportTime::new(response.lamport));
        Ok(())
    }

    /// Opens the Broadcast stream with every event after `after_seq`.
    async fn open(&self, after_seq: Seq) -> Result<tonic::Streaming<v1::Event>, LoadError> {
        let request = self.request(v1::BroadcastRequest {
            lamport: self.clock.tick().get(),
            after_seq: after_seq.get(),
        });
        bounded("Broadcast", self.client.clone().broadcast(request)).await
    }

    /// Listens as listener `index` from `after_seq` until `stop`, recording every benchmark message in
    /// `deliveries`.
    pub async fn listen(
        self,
        index: usize,
        after_seq: Seq,
        deliveries: Arc<Deliveries>,
        stop: CancellationToken,
    ) {
        let mut after_seq = after_seq;
        let mut failures = 0;
        let mut announced = false;
        'reopen: while failures <= REOPEN_ATTEMPTS {
            let opened = tokio::select! {
                () = stop.cancelled() => return,
                opened = self.open(after_seq) => opened,
            };
            let mut stream = match opened {
                Ok(stream) => stream,
                Err(_) => {
                    deliveries.error();
                    failures += 1;
                    continue 'reopen;
                }
            };
            if !announced {
                announced = true;
                deliveries.listening();
            }
            loop {
                let next = tokio::select! {
                    biased;
                    () = stop.cancelled() => return,
                    next = stream.message() => next,
                };
                match next {
                    Ok(Some(event)) => {
                        self.clock.witness(LamportTime::new(event.lamport));
                        after_seq = Seq::new(event.seq);
                        if event.kind == v1::EventKind::Message as i32 {
                            deliveries.deliver(index, event.text.as_bytes());
                        } else {
                            deliveries.announce(index);
                        }
                    }
                    // A clean end: this participant left.
                    Ok(None) => return,
                    Err(_) => {
                        deliveries.error();
                        failures += 1;
                        continue 'reopen;
                    }
                }
            }
        }
    }

    /// Opens its stream and never reads it, until `stop`: a participant that stopped reading, which the
    /// service must cut off without slowing anyone else.
    pub async fn stall(&self, stop: CancellationToken) -> Result<(), LoadError> {
        let stream = self.open(Seq::new(0)).await?;
        stop.cancelled().await;
        drop(stream);
        Ok(())
    }

    /// Reads its stream until it ends or `stop`, discarding what arrives: a churning participant.
    pub async fn drain_stream(&self, stop: CancellationToken) -> Result<(), LoadError> {
        let mut stream = self.open(Seq::new(0)).await?;
        loop {
            tokio::select! {
                () = stop.cancelled() => return Ok(()),
                next = stream.message() => match next {
                    Ok(Some(event)) => {
                        self.clock.witness(LamportTime::new(event.lamport));
                    }
                    Ok(None) => return Ok(()),
                    Err(status) => return Err(LoadError::rpc("Broadcast", &status)),
                },
            }
        }
    }
}

/// Awaits a unary call for at most [`CALL_TIMEOUT`].
async fn bounded<T>(
    call: &'static str,
    future: impl Future<Output = Result<tonic::Response<T>, tonic::Status>>,
) -> Result<T, LoadError> {
    tokio::time::timeout(CALL_TIMEOUT, future)
        .await
        .map_err(|_| LoadError::Timeout(call))?
        .map(tonic::Response::into_inner)
        .map_err(|status| LoadError::rpc(call, &status))
}
