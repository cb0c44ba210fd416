//! The gRPC layer: protobuf in, domain calls, protobuf or a status out.
//!
//! # Architecture invariant
//!
//! This is the only module of the service that knows tonic. It converts messages, reads the session token
//! from the `authorization` metadata, calls the [`ChatNode`], and maps every domain error to a
//! [`tonic::Status`] in one place, `status_of`. It makes no decision of its own. [`ChatRoutes`] is what
//! the server runs: the generated routes, with Broadcast served without a copy per recipient and a batch
//! of events per HTTP/2 DATA frame.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use chitty_core::{Event, EventKind, LamportTime, Seq};
use chitty_proto::codec::EventFields;
use chitty_proto::v1;
use chitty_proto::v1::chitty_chat_server::{ChittyChat, ChittyChatServer};
use futures_util::{Stream, StreamExt};
use http_body::Frame;
use tokio::sync::oneshot;
use tonic::metadata::{MetadataMap, MetadataValue};
use tonic::{Code, Request, Response, Status};

use crate::call::{AuthError, Call, ChatError, Credential, Refused};
use crate::fanout::{EndReason, Subscription};
use crate::history::HistoryError;
use crate::node::ChatNode;

pub use chitty_proto::metadata::{
    FIRST_HELD_SEQ as FIRST_HELD_METADATA, LAMPORT as LAMPORT_METADATA,
    LAST_SEQ as LAST_SEQ_METADATA, RETRY_AFTER_MS as RETRY_AFTER_METADATA,
};

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
            .join(
                &request.name,
                &request.join_secret,
                peer,
                LamportTime::new(request.lamport),
            )
            .await
            .map_err(refusal(&self.chat, Call::Join))?;
        Ok(Response::new(v1::JoinResponse {
            session_token: joined.token.as_str().to_owned(),
            lamport: joined.times.response.get(),
            seq: joined.seq.get(),
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
                LamportTime::new(request.lamport),
            )
            .await
            .map_err(refusal(&self.chat, Call::Publish))?;
        Ok(Response::new(v1::PublishResponse {
            lamport: published.times.response.get(),
            seq: published.seq.get(),
        }))
    }

    async fn participants(
        &self,
        request: Request<v1::ParticipantsRequest>,
    ) -> Result<Response<v1::ParticipantsResponse>, Status> {
        let credential = credential(request.metadata());
        let presence = self
            .chat
            .participants(credential, LamportTime::new(request.get_ref().lamport))
            .await
            .map_err(refusal(&self.chat, Call::Participants))?;
        Ok(Response::new(v1::ParticipantsResponse {
            names: presence.names,
            seq: presence.seq.get(),
            lamport: presence.times.response.get(),
        }))
    }

    async fn leave(
        &self,
        request: Request<v1::LeaveRequest>,
    ) -> Result<Response<v1::LeaveResponse>, Status> {
        let credential = credential(request.metadata());
        let left = self
            .chat
            .leave(credential, LamportTime::new(request.get_ref().lamport))
            .await
            .map_err(refusal(&self.chat, Call::Leave))?;
        Ok(Response::new(v1::LeaveResponse {
            lamport: left.times.response.get(),
            seq: left.seq.get(),
        }))
    }
}

/// Opens the session's subscription to the chat's events.
async fn open_subscription(
    chat: &ChatNode,
    request: &Request<v1::BroadcastRequest>,
) -> Result<Subscription, Status> {
    let credential = credential(request.metadata());
    let message = request.get_ref();
    chat.open_stream(
        credential,
        Seq::new(message.after_seq),
        LamportTime::new(message.lamport),
    )
    .await
    .map_err(refusal(chat, Call::Broadcast))
}

/// Opens the session's Broadcast stream: its events as the hub shares them, ended by a status when the
/// stream ends abruptly.
async fn open_events(
    chat: &Arc<ChatNode>,
    request: Request<v1::BroadcastRequest>,
) -> Result<impl Stream<Item = Result<Arc<Event>, Status>> + Send + 'static, Status> {
    let subscription = open_subscription(chat, &request).await?;
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

/// The most events one chunk of a Broadcast body carries: one HTTP/2 DATA frame when it fits in the
/// peer's largest frame (16 KiB by default), as 64 events of 128 ASCII characters (about 9.5 KiB) do;
/// h2 splits a larger chunk into several frames.
const BATCH_EVENTS: usize = 64;

/// The service the server runs: the generated routes for the unary calls, and Broadcast served here.
///
/// Every recipient of an event gets the same bytes. Rather than turning the shared `Arc<Event>` into a
/// `v1::Event` for each recipient (two string copies each) and having prost encode that, the Broadcast
/// route encodes straight from the shared event ([`chitty_proto::codec::encode_event`]), with one
/// allocation per chunk of events rather than per event. The wire format is unchanged: the codec's property test checks the bytes
/// against prost's.
///
/// # A batch per frame
///
/// The body of a Broadcast response is [`EventBatches`]: each time it is polled it takes every event
/// waiting for the stream (up to [`BATCH_EVENTS`], under one lock of the mailbox) and encodes them as
/// consecutive length-prefixed gRPC messages in one chunk, which hyper hands to h2 as one DATA frame. The
/// client's decoder splits the messages again. tonic's own body would put the same messages in one chunk
/// too (it encodes whatever its stream has ready before yielding), but it polls the stream, frames and
/// checks each message one by one, and keeps an 8 KiB buffer per stream from the start.
///
/// tonic's public API has no way to put several messages into one item: its encoder writes one length
/// prefix around whatever an item encodes to. So the route lets tonic do everything but the body:
/// [`tonic::server::Grpc::server_streaming`] decodes the request (with its size limit), answers a refused
/// request with a status, and builds the response head; [`BroadcastRoute`] opens the subscription and hands
/// it back through a oneshot channel, answering tonic with an empty stream; and the route then swaps the
/// response's body for [`EventBatches`]. The trailers are what tonic's body sends: `grpc-status` 0 after a
/// clean end, or the ending status with its metadata.
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

    fn poll_ready(&mut self, _context: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: tonic::codegen::http::Request<tonic::body::Body>) -> Self::Future {
        if request.uri().path() != BROADCAST_PATH {
            return self.generated.call(request);
        }
        let (opened, mut handed_over) = oneshot::channel();
        let route = BroadcastRoute {
            chat: Arc::clone(&self.chat),
            opened: Some(opened),
        };
        let max_request_bytes = self.max_request_bytes;
        Box::pin(async move {
            let mut grpc = tonic::server::Grpc::new(chitty_proto::codec::Codec::<
                v1::Event,
                v1::BroadcastRequest,
            >::default())
            .apply_max_message_size_config(Some(max_request_bytes), None);
            let response = grpc.server_streaming(route, request).await;
            // Without a body handed over, the request was refused, and tonic's response says why.
            Ok(match handed_over.try_recv() {
                Ok(body) => {
                    let (head, _empty) = response.into_parts();
                    tonic::codegen::http::Response::from_parts(head, tonic::body::Body::new(body))
                }
                Err(_) => response,
            })
        })
    }
}

/// The Broadcast method as tonic calls it: opens the subscription and hands its body to [`ChatRoutes`].
struct BroadcastRoute {
    /// The chat the stream comes from.
    chat: Arc<ChatNode>,
    /// Where the opened stream's body goes; taken by the one call.
    opened: Option<oneshot::Sender<EventBatches>>,
}

type NoEvents = futures_util::stream::Empty<Result<v1::Event, Status>>;

impl tonic::server::ServerStreamingService<v1::BroadcastRequest> for BroadcastRoute {
    type Response = v1::Event;
    type ResponseStream = NoEvents;
    type Future = tonic::codegen::BoxFuture<Response<Self::ResponseStream>, Status>;

    fn call(&mut self, request: Request<v1::BroadcastRequest>) -> Self::Future {
        let chat = Arc::clone(&self.chat);
        let opened = self.opened.take();
        Box::pin(async move {
            let Some(opened) = opened else {
                return Err(Status::internal("the Broadcast route was called twice"));
            };
            let subscription = open_subscription(&chat, &request).await?;
            // The receiver waits in `ChatRoutes::call` until this call returns, so the send succeeds.
            let _ = opened.send(EventBatches::new(subscription, chat));
            Ok(Response::new(futures_util::stream::empty()))
        })
    }
}

type ChunkStream = Pin<Box<dyn Stream<Item = Result<Bytes, Status>> + Send>>;

/// The body of a Broadcast response: chunks of events, each several gRPC messages, then the trailers.
struct EventBatches {
    /// The subscription's batches, encoded, or the status that ends the stream abruptly.
    chunks: ChunkStream,
    /// Set once the trailers are out: nothing follows them.
    ended: bool,
}

impl EventBatches {
    /// The body of the stream of `subscription`, which `chat` stamps the ending status of.
    fn new(subscription: Subscription, chat: Arc<ChatNode>) -> Self {
        let chunks = futures_util::stream::unfold(
            (subscription, chat, Vec::new()),
            |(mut subscription, chat, mut batch)| async move {
                let item = match subscription.next_batch(&mut batch, BATCH_EVENTS).await? {
                    Ok(()) => encode_batch(&batch).inspect(|chunk| {
                        chat.metrics()
                            .stream_bytes_written
                            .inc_by(chunk.len() as u64);
                    }),
                    Err(reason) => Err(with_lamport(end_status(reason), chat.stamp().await)),
                };
                // Hold no events between batches: the history decides how long they live.
                batch.clear();
                Some((item, (subscription, chat, batch)))
            },
        );
        Self {
            chunks: Box::pin(chunks),
            ended: false,
        }
    }
}

impl http_body::Body for EventBatches {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        self: Pin<&mut Self>,
        context: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        let this = self.get_mut();
        if this.ended {
            return Poll::Ready(None);
        }
        let status = match ready!(this.chunks.as_mut().poll_next(context)) {
            Some(Ok(chunk)) => return Poll::Ready(Some(Ok(Frame::data(chunk)))),
            Some(Err(status)) => status,
            None => Status::ok(""),
        };
        // As tonic's body does: the stream's status goes out as trailers, and the body ends with them.
        this.ended = true;
        let mut trailers =
            tonic::codegen::http::HeaderMap::with_capacity(3 + status.metadata().len());
        Poll::Ready(Some(
            status
                .add_header(&mut trailers)
                .map(|()| Frame::trailers(trailers)),
        ))
    }

    fn is_end_stream(&self) -> bool {
        self.ended
    }
}

/// The length of a gRPC message's prefix: a compression flag and a 4-byte big-endian length.
const MESSAGE_PREFIX_BYTES: usize = 5;

/// Encodes `events` as consecutive gRPC messages in one chunk: for each, an uncompressed flag, its length,
/// and the event in protobuf. The chunk is allocated once, at its exact size.
fn encode_batch(events: &[Arc<Event>]) -> Result<Bytes, Status> {
    let size = events
        .iter()
        .map(|event| MESSAGE_PREFIX_BYTES + event_fields(event).encoded_len())
        .sum();
    let mut chunk = Vec::with_capacity(size);
    for event in events {
        let fields = event_fields(event);
        let len = u32::try_from(fields.encoded_len()).map_err(|_| {
            // As tonic answers a message over 4 GiB; a validated event is a few hundred bytes.
            Status::resource_exhausted("an event is over 4 GiB long and cannot be sent")
        })?;
        chunk.push(0);
        chunk.extend_from_slice(&len.to_be_bytes());
        chitty_proto::codec::encode_event(fields, &mut chunk);
    }
    Ok(Bytes::from(chunk))
}

/// The fields of `event` as the codec writes them.
fn event_fields(event: &Event) -> EventFields<'_> {
    EventFields {
        seq: event.seq.get(),
        lamport: event.lamport.get(),
        kind: proto_kind(event.kind) as i32,
        participant: &event.participant,
        text: &event.text,
    }
}

/// Reads `authorization: Bearer <token>` from the request metadata.
fn credential(metadata: &MetadataMap) -> Credential<'_> {
    let Some(value) = metadata.get(chitty_proto::metadata::AUTHORIZATION) else {
        return Credential::Missing;
    };
    match value
        .to_str()
        .ok()
        .and_then(chitty_proto::metadata::token_of)
    {
        Some(token) => Credential::Bearer(token),
        None => Credential::Malformed,
    }
}

/// What turns a refused `call` into its status, counting it in the node's metrics by call, status code
/// and reason.
fn refusal(chat: &ChatNode, call: Call) -> impl FnOnce(Refused) -> Status + '_ {
    move |refused| {
        let reason = refused.error.reason();
        let status = status_of(refused);
        chat.metrics()
            .refused(call.label(), code_name(status.code()), reason);
        status
    }
}

/// A status code as gRPC spells it (`INVALID_ARGUMENT`), for the `code` label of the refusals counter.
fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
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
            metadata.insert(FIRST_HELD_METADATA, MetadataValue::from(first_held.get()));
        }
        metadata.insert(LAST_SEQ_METADATA, MetadataValue::from(last_seq.get()));
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

fn with_lamport(mut status: Status, lamport: Option<LamportTime>) -> Status {
    if let Some(lamport) = lamport {
        status
            .metadata_mut()
            .insert(LAMPORT_METADATA, MetadataValue::from(lamport.get()));
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
        seq: event.seq.get(),
        lamport: event.lamport.get(),
        kind: proto_kind(event.kind).into(),
        participant: event.participant.to_string(),
        text: event.text.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::task::{Context, Poll};
    use std::time::Duration;

    use bytes::{Buf, Bytes};
    use http_body::{Body as _, Frame};
    use proptest::prelude::*;
    use prost::Message as _;
    use tonic::codegen::Service as _;

    use crate::call::ChatConfig;
    use crate::chat::ChatService;
    use crate::hub::HubConfig;

    /// A request body of one chunk.
    struct OneChunk(Option<Bytes>);

    impl http_body::Body for OneChunk {
        type Data = Bytes;
        type Error = std::convert::Infallible;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            _context: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
            Poll::Ready(self.0.take().map(|chunk| Ok(Frame::data(chunk))))
        }
    }

    fn chat(queue_capacity: usize) -> Arc<ChatNode> {
        let roomy = ChatConfig::roomy();
        let config = ChatConfig {
            grace: Duration::from_secs(60),
            hub: HubConfig {
                queue_capacity,
                ..roomy.hub
            },
            max_participants: 10,
            ..roomy
        };
        Arc::new(ChatNode::Single(
            ChatService::in_memory(config).expect("an in-memory store"),
        ))
    }

    /// Joins `name` and returns its session token.
    async fn join(chat: &ChatNode, name: &str) -> String {
        chat.join(name, "", None, LamportTime::new(0))
            .await
            .expect("join")
            .token
            .as_str()
            .to_owned()
    }

    async fn publish(chat: &ChatNode, token: &str, text: &str) -> Seq {
        chat.publish(Credential::Bearer(token), text, "", LamportTime::new(0))
            .await
            .expect("publish")
            .seq
    }

    /// Opens a Broadcast stream through the routes the server runs and returns its response.
    async fn open_broadcast(
        routes: &mut ChatRoutes,
        token: &str,
        after_seq: u64,
    ) -> tonic::codegen::http::Response<tonic::body::Body> {
        let message = v1::BroadcastRequest {
            after_seq,
            lamport: 0,
        }
        .encode_to_vec();
        let mut framed = vec![0];
        framed.extend_from_slice(&u32::try_from(message.len()).expect("small").to_be_bytes());
        framed.extend_from_slice(&message);
        let request = tonic::codegen::http::Request::builder()
            .method("POST")
            .uri(format!("http://localhost{BROADCAST_PATH}"))
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .header("authorization", format!("Bearer {token}"))
            .body(tonic::body::Body::new(OneChunk(Some(framed.into()))))
            .expect("a request");
        routes.call(request).await.expect("infallible")
    }

    /// The next frame of a response body, within 5 s.
    async fn next_frame(body: &mut tonic::body::Body) -> Option<Frame<Bytes>> {
        tokio::time::timeout(
            Duration::from_secs(5),
            std::future::poll_fn(|context| Pin::new(&mut *body).poll_frame(context)),
        )
        .await
        .expect("a frame within 5 s")
        .map(|frame| frame.expect("no body error"))
    }

    /// Splits a chunk of the body into the events of its gRPC messages, checking every length prefix.
    fn decode_chunk(mut chunk: Bytes) -> Vec<v1::Event> {
        let mut events = Vec::new();
        while chunk.has_remaining() {
            assert!(chunk.remaining() >= 5, "a partial message header");
            assert_eq!(chunk.get_u8(), 0, "not compressed");
            let len = chunk.get_u32() as usize;
            assert!(chunk.remaining() >= len, "a message longer than its chunk");
            let message = chunk.split_to(len);
            events.push(v1::Event::decode(message).expect("an event"));
        }
        events
    }

    /// The events of the data frames that come next, up to `count` of them, a `Vec` of seqs per chunk.
    async fn chunks_of(body: &mut tonic::body::Body, count: usize) -> Vec<Vec<u64>> {
        let mut chunks = Vec::new();
        let mut got = 0;
        while got < count {
            let frame = next_frame(body).await.expect("a frame before the end");
            let chunk = frame.into_data().expect("data before the trailers");
            let seqs: Vec<u64> = decode_chunk(chunk).iter().map(|event| event.seq).collect();
            got += seqs.len();
            chunks.push(seqs);
        }
        chunks
    }

    /// The trailers that come next, as (`grpc-status`, `grpc-message`, `lamport`).
    async fn trailers_of(body: &mut tonic::body::Body) -> (String, String, Option<String>) {
        let frame = next_frame(body).await.expect("the trailers");
        let trailers = frame.into_trailers().expect("trailers, not data");
        let read = |name: &str| {
            trailers
                .get(name)
                .map(|value| value.to_str().expect("ASCII").to_owned())
        };
        assert!(
            next_frame(body).await.is_none(),
            "nothing after the trailers"
        );
        assert!(body.is_end_stream());
        (
            read("grpc-status").expect("a grpc-status"),
            read("grpc-message").unwrap_or_default(),
            read(LAMPORT_METADATA),
        )
    }

    fn seqs(range: std::ops::RangeInclusive<u64>) -> Vec<u64> {
        range.collect()
    }

    #[tokio::test]
    async fn replayed_and_live_events_arrive_in_order_everything_waiting_in_one_chunk() {
        let chat = chat(1024);
        let mut routes = ChatRoutes::new(Arc::clone(&chat), 4096);
        let token = join(&chat, "alice").await;
        let text = "x".repeat(128);
        for _ in 0..100 {
            publish(&chat, &token, &text).await;
        }
        let response = open_broadcast(&mut routes, &token, 0).await;
        assert_eq!(
            response
                .headers()
                .get("content-type")
                .map(|value| value.as_bytes()),
            Some(&b"application/grpc"[..])
        );
        let mut body = response.into_body();
        assert_eq!(
            chunks_of(&mut body, 101).await,
            [seqs(1..=64), seqs(65..=101)],
            "the join and 100 messages, replayed 64 at a time"
        );
        // Published while nobody polls the body, so all of them wait in the mailbox.
        for _ in 0..50 {
            publish(&chat, &token, &text).await;
        }
        assert_eq!(chunks_of(&mut body, 50).await, [seqs(102..=151)]);
        publish(&chat, &token, &text).await;
        assert_eq!(chunks_of(&mut body, 1).await, [[152]]);
    }

    #[tokio::test]
    async fn a_stream_ends_with_the_trailers_tonic_would_send() {
        let chat = chat(16);
        let mut routes = ChatRoutes::new(Arc::clone(&chat), 4096);
        let alice = join(&chat, "alice").await;
        let bob = join(&chat, "bob").await;
        let mut alice_body = open_broadcast(&mut routes, &alice, 0).await.into_body();
        let mut bob_body = open_broadcast(&mut routes, &bob, 0).await.into_body();
        assert_eq!(chunks_of(&mut alice_body, 2).await, [seqs(1..=2)]);
        assert_eq!(
            chunks_of(&mut bob_body, 1).await,
            [[2]],
            "from his own join"
        );

        // Replaced: ABORTED at once, with the service's Lamport time.
        let mut replacement = open_broadcast(&mut routes, &alice, 2).await.into_body();
        let (code, message, lamport) = trailers_of(&mut alice_body).await;
        assert_eq!(code, (Code::Aborted as i32).to_string(), "{message}");
        assert!(message.contains("replaced"), "{message}");
        assert!(lamport.is_some(), "an abrupt end carries a Lamport time");

        // Left: every event before the leave, then OK.
        publish(&chat, &alice, "bye").await;
        chat.leave(Credential::Bearer(&alice), LamportTime::new(0))
            .await
            .expect("leave");
        assert_eq!(chunks_of(&mut replacement, 1).await, [[3]]);
        let (code, message, _) = trailers_of(&mut replacement).await;
        assert_eq!(code, "0", "{message}");
        assert_eq!(
            chunks_of(&mut bob_body, 2).await,
            [seqs(3..=4)],
            "bob sees the leave"
        );

        // Fell behind: bob reads nothing while 17 events come, one more than his queue holds.
        let carol = join(&chat, "carol").await;
        for _ in 0..16 {
            publish(&chat, &carol, "hello").await;
        }
        let (code, message, lamport) = trailers_of(&mut bob_body).await;
        assert_eq!(
            code,
            (Code::ResourceExhausted as i32).to_string(),
            "{message}"
        );
        assert!(
            message.contains("fell%20behind"),
            "percent-encoded: {message}"
        );
        assert!(lamport.is_some());
    }

    #[tokio::test]
    async fn a_refused_stream_is_answered_by_tonic_with_its_status() {
        let chat = chat(16);
        let mut routes = ChatRoutes::new(Arc::clone(&chat), 4096);
        let response = open_broadcast(&mut routes, "not-a-token", 0).await;
        let code = response
            .headers()
            .get("grpc-status")
            .map(|value| value.to_str().expect("ASCII").to_owned());
        assert_eq!(code, Some((Code::Unauthenticated as i32).to_string()));
        let mut body = response.into_body();
        assert!(
            next_frame(&mut body).await.is_none(),
            "a trailers-only response"
        );
    }

    fn event_strategy() -> impl Strategy<Value = Event> {
        (
            any::<u64>(),
            any::<u64>(),
            prop_oneof![
                Just(EventKind::Message),
                Just(EventKind::Joined),
                Just(EventKind::Left)
            ],
            ".{0,40}",
            prop_oneof![".{0,10}", ".{0,140}", "[a-z]{0,3000}"],
        )
            .prop_map(|(seq, lamport, kind, participant, text)| Event {
                seq: Seq::new(seq),
                lamport: LamportTime::new(lamport),
                kind,
                participant: participant.into(),
                text,
            })
    }

    proptest! {
        /// A batch decodes back, message by message, into the same events in the same order, and every
        /// length prefix ends exactly where the next message starts.
        #[test]
        fn a_batch_decodes_into_its_events_in_order(events in prop::collection::vec(event_strategy(), 1..80)) {
            let shared: Vec<Arc<Event>> = events.iter().cloned().map(Arc::new).collect();
            let chunk = encode_batch(&shared).expect("small events");
            let expected_len: usize = events
                .iter()
                .map(|event| 5 + event_to_proto(event).encoded_len())
                .sum();
            prop_assert_eq!(chunk.len(), expected_len);
            let decoded = decode_chunk(chunk);
            let expected: Vec<v1::Event> = events.iter().map(event_to_proto).collect();
            prop_assert_eq!(decoded, expected);
        }
    }
}
