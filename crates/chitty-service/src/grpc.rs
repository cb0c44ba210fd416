//! The gRPC layer: protobuf in, domain calls, protobuf or a status out.
//!
//! # Architecture invariant
//!
//! This is the only module of the service that knows tonic. It converts messages, reads the session token
//! from the `authorization` metadata, calls the [`ChatNode`], and maps every domain error to a
//! [`tonic::Status`] in one place, `status_of`. It makes no decision of its own. [`ChatRoutes`] is what
//! the server runs: the generated routes, with Broadcast served without a copy per recipient.

use std::pin::Pin;
use std::sync::Arc;

use chitty_core::{Event, EventKind};
use chitty_proto::v1;
use chitty_proto::v1::chitty_chat_server::{ChittyChat, ChittyChatServer};
use futures_util::{Stream, StreamExt};
use tonic::metadata::{MetadataMap, MetadataValue};
use tonic::{Code, Request, Response, Status};

use crate::chat::{AuthError, ChatError, Credential, Refused};
use crate::history::HistoryError;
use crate::hub::EndReason;
use crate::node::ChatNode;

/// The metadata entry in which every status carries the service's Lamport time.
pub const LAMPORT_METADATA: &str = "lamport";

/// On `RESOURCE_EXHAUSTED` from a rate limit, the metadata entry with how many milliseconds to wait.
pub const RETRY_AFTER_METADATA: &str = "retry-after-ms";

/// On `OUT_OF_RANGE`, the metadata entry with the oldest seq the service still holds.
pub const FIRST_HELD_METADATA: &str = "first-held-seq";

/// On `OUT_OF_RANGE`, the metadata entry with the newest seq.
pub const LAST_SEQ_METADATA: &str = "last-seq";

/// The `ChittyChat` gRPC service, backed by a [`ChatNode`].
#[derive(Debug, Clone)]
pub struct GrpcChat {
    /// The chat every call is handed to.
    chat: Arc<ChatNode>,
}

impl GrpcChat {
    /// Serves `chat` over gRPC.
    pub fn new(chat: Arc<ChatNode>) -> Self {
        Self { chat }
    }

    /// The tonic service to add to a server.
    pub fn into_server(self) -> ChittyChatServer<Self> {
        ChittyChatServer::new(self)
    }
}

type EventStream = Pin<Box<dyn Stream<Item = Result<v1::Event, Status>> + Send>>;

#[tonic::async_trait]
impl ChittyChat for GrpcChat {
    async fn join(
        &self,
        request: Request<v1::JoinRequest>,
    ) -> Result<Response<v1::JoinResponse>, Status> {
        let peer = request.remote_addr().map(|address| address.ip());
        let request = request.into_inner();
        let joined = self
            .chat
            .join(&request.name, &request.join_secret, peer, request.lamport)
            .await
            .map_err(status_of)?;
        Ok(Response::new(v1::JoinResponse {
            session_token: joined.token.as_str().to_owned(),
            lamport: joined.times.response,
            seq: joined.seq,
        }))
    }

    type BroadcastStream = EventStream;

    async fn broadcast(
        &self,
        request: Request<v1::BroadcastRequest>,
    ) -> Result<Response<Self::BroadcastStream>, Status> {
        // The server runs `ChatRoutes`, which serves Broadcast without building a message per recipient;
        // this generic path, through the generated trait, gives the same stream as messages.
        let events = open_events(&self.chat, request).await?;
        Ok(Response::new(Box::pin(
            events.map(|item| item.map(|event| event_to_proto(&event))),
        )))
    }

    async fn publish(
        &self,
        request: Request<v1::PublishRequest>,
    ) -> Result<Response<v1::PublishResponse>, Status> {
        let credential = credential(request.metadata());
        let request = request.get_ref();
        let published = self
            .chat
            .publish(
                credential,
                &request.text,
                &request.idempotency_key,
                request.lamport,
            )
            .await
            .map_err(status_of)?;
        Ok(Response::new(v1::PublishResponse {
            lamport: published.times.response,
            seq: published.seq,
        }))
    }

    async fn participants(
        &self,
        request: Request<v1::ParticipantsRequest>,
    ) -> Result<Response<v1::ParticipantsResponse>, Status> {
        let credential = credential(request.metadata());
        let presence = self
            .chat
            .participants(credential, request.get_ref().lamport)
            .await
            .map_err(status_of)?;
        Ok(Response::new(v1::ParticipantsResponse {
            names: presence.names,
            seq: presence.seq,
            lamport: presence.times.response,
        }))
    }

    async fn leave(
        &self,
        request: Request<v1::LeaveRequest>,
    ) -> Result<Response<v1::LeaveResponse>, Status> {
        let credential = credential(request.metadata());
        let left = self
            .chat
            .leave(credential, request.get_ref().lamport)
            .await
            .map_err(status_of)?;
        Ok(Response::new(v1::LeaveResponse {
            lamport: left.times.response,
            seq: left.seq,
        }))
    }
}

/// Opens the session's Broadcast stream: its events as the hub shares them, ended by a status when the
/// stream ends abruptly.
async fn open_events(
    chat: &Arc<ChatNode>,
    request: Request<v1::BroadcastRequest>,
) -> Result<impl Stream<Item = Result<Arc<Event>, Status>> + Send + 'static, Status> {
    let credential = credential(request.metadata());
    let request = request.get_ref();
    let subscription = chat
        .open_stream(credential, request.after_seq, request.lamport)
        .await
        .map_err(status_of)?;
    Ok(futures_util::stream::unfold(
        (subscription, Arc::clone(chat)),
        |(mut subscription, chat)| async move {
            let item = match subscription.next().await? {
                Ok(event) => Ok(event),
                Err(reason) => Err(with_lamport(end_status(reason), chat.stamp().await)),
            };
            Some((item, (subscription, chat)))
        },
    ))
}

/// The path of the Broadcast method.
const BROADCAST_PATH: &str = "/chittychat.v1.ChittyChat/Broadcast";

/// The service the server runs: the generated routes for the unary calls, and Broadcast served here.
///
/// Every recipient of an event gets the same bytes. Rather than turning the shared `Arc<Event>` into a
/// `v1::Event` for each recipient (two string copies each) and having prost encode that, the Broadcast
/// route encodes straight from the shared event ([`chitty_proto::codec::encode_event`]), with no
/// allocation per delivery. The wire format is unchanged: the codec's property test checks the bytes
/// against prost's.
#[derive(Debug, Clone)]
pub struct ChatRoutes {
    /// The generated server, for every method but Broadcast.
    generated: ChittyChatServer<GrpcChat>,
    /// The chat Broadcast streams come from.
    chat: Arc<ChatNode>,
    /// The largest request accepted, in bytes.
    max_request_bytes: usize,
}

impl ChatRoutes {
    /// Serves `chat`, refusing requests larger than `max_request_bytes`.
    pub fn new(chat: Arc<ChatNode>, max_request_bytes: usize) -> Self {
        Self {
            generated: GrpcChat::new(Arc::clone(&chat))
                .into_server()
                .max_decoding_message_size(max_request_bytes),
            chat,
            max_request_bytes,
        }
    }
}

impl tonic::server::NamedService for ChatRoutes {
    const NAME: &'static str = <ChittyChatServer<GrpcChat> as tonic::server::NamedService>::NAME;
}

impl tonic::codegen::Service<tonic::codegen::http::Request<tonic::body::Body>> for ChatRoutes {
    type Response = tonic::codegen::http::Response<tonic::body::Body>;
    type Error = std::convert::Infallible;
    type Future = tonic::codegen::BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(
        &mut self,
        _context: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: tonic::codegen::http::Request<tonic::body::Body>) -> Self::Future {
        if request.uri().path() != BROADCAST_PATH {
            return self.generated.call(request);
        }
        let route = BroadcastRoute {
            chat: Arc::clone(&self.chat),
        };
        let max_request_bytes = self.max_request_bytes;
        Box::pin(async move {
            let mut grpc = tonic::server::Grpc::new(SharedEventCodec)
                .apply_max_message_size_config(Some(max_request_bytes), None);
            Ok(grpc.server_streaming(route, request).await)
        })
    }
}

/// The Broadcast method, streaming the hub's shared events.
struct BroadcastRoute {
    /// The chat the stream comes from.
    chat: Arc<ChatNode>,
}

type SharedEventStream = Pin<Box<dyn Stream<Item = Result<Arc<Event>, Status>> + Send>>;

impl tonic::server::ServerStreamingService<v1::BroadcastRequest> for BroadcastRoute {
    type Response = Arc<Event>;
    type ResponseStream = SharedEventStream;
    type Future = tonic::codegen::BoxFuture<Response<Self::ResponseStream>, Status>;

    fn call(&mut self, request: Request<v1::BroadcastRequest>) -> Self::Future {
        let chat = Arc::clone(&self.chat);
        Box::pin(async move {
            let events = open_events(&chat, request).await?;
            Ok(Response::new(Box::pin(events) as SharedEventStream))
        })
    }
}

/// Decodes a `BroadcastRequest` like every other request, and encodes a shared event directly.
#[derive(Debug, Clone, Copy, Default)]
struct SharedEventCodec;

impl tonic::codec::Codec for SharedEventCodec {
    type Encode = Arc<Event>;
    type Decode = v1::BroadcastRequest;
    type Encoder = SharedEventCodec;
    type Decoder = chitty_proto::codec::Decoder<v1::BroadcastRequest>;

    fn encoder(&mut self) -> Self::Encoder {
        SharedEventCodec
    }

    fn decoder(&mut self) -> Self::Decoder {
        tonic::codec::Codec::decoder(&mut chitty_proto::codec::Codec::<
            v1::Event,
            v1::BroadcastRequest,
        >::default())
    }
}

impl tonic::codec::Encoder for SharedEventCodec {
    type Item = Arc<Event>;
    type Error = Status;

    fn encode(
        &mut self,
        event: Arc<Event>,
        buf: &mut tonic::codec::EncodeBuf<'_>,
    ) -> Result<(), Status> {
        chitty_proto::codec::encode_event(
            chitty_proto::codec::EventFields {
                seq: event.seq,
                lamport: event.lamport,
                kind: proto_kind(event.kind) as i32,
                participant: &event.participant,
                text: &event.text,
            },
            buf,
        );
        Ok(())
    }
}

/// Reads `authorization: Bearer <token>` from the request metadata.
fn credential(metadata: &MetadataMap) -> Credential<'_> {
    let Some(value) = metadata.get("authorization") else {
        return Credential::Missing;
    };
    match value
        .to_str()
        .ok()
        .and_then(|value| value.strip_prefix("Bearer "))
    {
        Some(token) if !token.is_empty() => Credential::Bearer(token),
        _ => Credential::Malformed,
    }
}

/// The one place where a refused call becomes a gRPC status.
fn status_of(refused: Refused) -> Status {
    let code = match &refused.error {
        ChatError::LamportTooLarge(_)
        | ChatError::InvalidName(_)
        | ChatError::InvalidMessage(_)
        | ChatError::IdempotencyKeyTooLong(_) => Code::InvalidArgument,
        ChatError::NameTaken(_) => Code::AlreadyExists,
        ChatError::Full(_) | ChatError::RateLimited { .. } | ChatError::TooManyJoinFailures(_) => {
            Code::ResourceExhausted
        }
        ChatError::WrongJoinSecret
        | ChatError::Unauthenticated(
            AuthError::Missing | AuthError::Malformed | AuthError::Unknown,
        ) => Code::Unauthenticated,
        ChatError::History(_) => Code::OutOfRange,
        ChatError::Unavailable(_) => Code::Unavailable,
    };
    let mut status = with_lamport(
        Status::new(code, refused.error.to_string()),
        refused.lamport,
    );
    let retry_after = match &refused.error {
        ChatError::RateLimited { retry_after, .. }
        | ChatError::TooManyJoinFailures(retry_after) => Some(*retry_after),
        _ => None,
    };
    if let Some(retry_after) = retry_after {
        let millis = u64::try_from(retry_after.as_millis())
            .unwrap_or(u64::MAX)
            .max(1);
        status
            .metadata_mut()
            .insert(RETRY_AFTER_METADATA, MetadataValue::from(millis));
    }
    // Say what is still held in a form a participant can act on without parsing the message.
    if let ChatError::History(history) = &refused.error {
        let (first_held, last_seq) = match *history {
            HistoryError::Evicted {
                first_held,
                last_seq,
                ..
            } => (Some(first_held), last_seq),
            HistoryError::Ahead { last_seq, .. } => (None, last_seq),
        };
        let metadata = status.metadata_mut();
        if let Some(first_held) = first_held {
            metadata.insert(FIRST_HELD_METADATA, MetadataValue::from(first_held));
        }
        metadata.insert(LAST_SEQ_METADATA, MetadataValue::from(last_seq));
    }
    status
}

/// The status that ends a stream abruptly.
fn end_status(reason: EndReason) -> Status {
    match reason {
        EndReason::FellBehind { queue_capacity } => Status::resource_exhausted(format!(
            "you fell behind: {queue_capacity} events were waiting unread, so the service stopped this \
             stream; reconnect with after_seq set to the last seq you received"
        )),
        EndReason::Replaced => {
            Status::aborted("this Broadcast stream was replaced by a newer one of the same session")
        }
        EndReason::ShuttingDown => Status::unavailable(
            "the service is shutting down or restarting; reconnect and resume with after_seq",
        ),
        // A clean end is not an error, and a disconnected stream has nobody to tell.
        EndReason::Left | EndReason::Disconnected => Status::cancelled("the stream ended"),
    }
}

fn with_lamport(mut status: Status, lamport: Option<u64>) -> Status {
    if let Some(lamport) = lamport {
        status
            .metadata_mut()
            .insert(LAMPORT_METADATA, MetadataValue::from(lamport));
    }
    status
}

fn proto_kind(kind: EventKind) -> v1::EventKind {
    match kind {
        EventKind::Message => v1::EventKind::Message,
        EventKind::Joined => v1::EventKind::Joined,
        EventKind::Left => v1::EventKind::Left,
    }
}

fn event_to_proto(event: &Event) -> v1::Event {
    v1::Event {
        seq: event.seq,
        lamport: event.lamport,
        kind: proto_kind(event.kind).into(),
        participant: event.participant.to_string(),
        text: event.text.clone(),
    }
}
