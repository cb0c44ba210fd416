//! The participant's gRPC client.
//!
//! # Architecture invariant
//!
//! This is the only module of the participant that knows tonic. It turns calls into requests carrying the
//! session token, responses and events into domain types, and every failure into a [`ClientError`] whose
//! [`ErrorKind`] says what the participant should do about it. It keeps no clock: callers stamp requests and
//! witness what comes back.

use std::error::Error as _;
use std::time::Duration;

use chitty_core::{Event, EventKind, LamportTime, Seq};
use chitty_logs::ParticipantEvent;
use chitty_proto::metadata as wire;
use chitty_proto::v1;
use chitty_proto::v1::chitty_chat_client::ChittyChatClient;
use thiserror::Error;
use tonic::metadata::{AsciiMetadataValue, MetadataMap};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};
use tonic::{Code, Request, Status, Streaming};

/// How long a unary call may take before the participant gives up on it.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// What kind of failure a call met, which decides what the participant does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The service could not be reached, or the connection broke.
    Unreachable,
    /// The service is shutting down or restarting.
    ServiceStopping,
    /// The name is taken by a participant who is present.
    NameTaken,
    /// The service refused the request's content, such as an invalid message.
    Refused,
    /// The participant publishes faster than the service allows; try again later.
    RateLimited,
    /// The service admits nobody else, or this address tried too many wrong join secrets.
    Full,
    /// The session token is missing, unknown or ended, or the join secret is wrong.
    SessionEnded,
    /// The history no longer holds what the participant asked to replay.
    HistoryGone,
    /// The participant read its stream too slowly and was cut off; it may resume.
    FellBehind,
    /// A newer stream of the same session replaced this one.
    Replaced,
    /// Anything else: a bug on one side, or a service this participant does not understand.
    Other,
}

/// A failed call: what kind of failure, the service's own words, and what it attached.
#[derive(Debug, Clone, Error)]
#[error("{message}")]
pub struct ClientError {
    /// What kind of failure it was.
    pub kind: ErrorKind,
    /// What went wrong, in the service's words where it gave any.
    pub message: String,
    /// The service's Lamport time on the error, to witness.
    pub lamport: Option<LamportTime>,
    /// With [`ErrorKind::HistoryGone`]: the newest seq the service has.
    pub last_seq: Option<Seq>,
    /// With [`ErrorKind::RateLimited`]: how long to wait before trying again.
    pub retry_after: Option<Duration>,
}

/// The call that failed, which decides how some status codes read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rpc {
    Join,
    Publish,
    Leave,
    Broadcast,
    Participants,
}

impl ClientError {
    fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            lamport: None,
            last_seq: None,
            retry_after: None,
        }
    }

    fn unreachable(server: &str, cause: impl std::fmt::Display) -> Self {
        Self::new(
            ErrorKind::Unreachable,
            format!("cannot reach the Chitty-Chat service at {server}: {cause}"),
        )
    }

    fn from_status(server: &str, rpc: Rpc, status: &Status) -> Self {
        let kind = match status.code() {
            Code::AlreadyExists => ErrorKind::NameTaken,
            Code::InvalidArgument => ErrorKind::Refused,
            Code::Unauthenticated => ErrorKind::SessionEnded,
            Code::OutOfRange => ErrorKind::HistoryGone,
            Code::ResourceExhausted => match rpc {
                Rpc::Broadcast => ErrorKind::FellBehind,
                Rpc::Publish => ErrorKind::RateLimited,
                Rpc::Join | Rpc::Leave | Rpc::Participants => ErrorKind::Full,
            },
            Code::Aborted => ErrorKind::Replaced,
            // The service's own UNAVAILABLE carries its Lamport time; one that the transport made up
            // (connection refused or broken) does not.
            Code::Unavailable if status.metadata().contains_key(wire::LAMPORT) => {
                ErrorKind::ServiceStopping
            }
            Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled | Code::Unknown => {
                return Self::unreachable(server, describe(status));
            }
            _ => ErrorKind::Other,
        };
        let metadata = status.metadata();
        Self {
            kind,
            message: status.message().to_owned(),
            lamport: number(metadata, wire::LAMPORT).map(LamportTime::new),
            last_seq: number(metadata, wire::LAST_SEQ).map(Seq::new),
            retry_after: number(metadata, wire::RETRY_AFTER_MS).map(Duration::from_millis),
        }
    }
}

/// A status's message, or the deepest cause of a transport failure, which says what actually happened.
fn describe(status: &Status) -> String {
    let mut cause: Option<&dyn std::error::Error> = status.source();
    let mut deepest = None;
    while let Some(error) = cause {
        deepest = Some(error.to_string());
        cause = error.source();
    }
    deepest.unwrap_or_else(|| status.message().to_owned())
}

fn number(metadata: &MetadataMap, key: &str) -> Option<u64> {
    metadata.get(key)?.to_str().ok()?.parse().ok()
}

/// The service's answer to a call: the seq of the event it broadcast and its Lamport time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reply {
    /// The seq of the event the call broadcast.
    pub seq: Seq,
    /// The service's Lamport time on the response.
    pub lamport: LamportTime,
}

impl Reply {
    /// The reply a response's bare `seq` and `lamport` fields make.
    fn of(seq: u64, lamport: u64) -> Self {
        Self {
            seq: Seq::new(seq),
            lamport: LamportTime::new(lamport),
        }
    }
}

/// Who is present, as the service answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Presence {
    /// The names of the participants present, sorted.
    pub names: Vec<String>,
    /// The newest event the list reflects.
    pub seq: Seq,
    /// The service's Lamport time on the response.
    pub lamport: LamportTime,
}

/// How to reach a service.
#[derive(Debug, Clone, Default)]
pub struct Connection {
    /// How long to try before giving up.
    pub timeout: Duration,
    /// A PEM certificate of the authority that signed the service's TLS certificate; the service is
    /// reached over TLS when this is set or the address starts with `https://`.
    pub ca: Option<Vec<u8>>,
}

/// A connection to one Chitty-Chat service, and the session once joined.
#[derive(Debug, Clone)]
pub struct ChatClient {
    /// The generated client over one HTTP/2 connection.
    inner: ChittyChatClient<Channel>,
    /// The connection itself, for the health service.
    channel: Channel,
    /// The service's address, for error messages.
    server: String,
    /// `Bearer <token>`, set by [`ChatClient::join`] or [`ChatClient::resume`].
    authorization: Option<AsciiMetadataValue>,
}

impl ChatClient {
    /// Connects to the service at `server` (such as `http://127.0.0.1:50051`).
    ///
    /// HTTP/2 keepalive pings detect a service that vanished without closing the connection.
    pub async fn connect(server: &str, connection: &Connection) -> Result<Self, ClientError> {
        let mut endpoint = Endpoint::from_shared(server.to_owned())
            .map_err(|error| {
                ClientError::new(
                    ErrorKind::Other,
                    format!("{server:?} is not a valid service address: {error}"),
                )
            })?
            .connect_timeout(connection.timeout)
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(5))
            .keep_alive_timeout(Duration::from_secs(5))
            .keep_alive_while_idle(true);
        if connection.ca.is_some() || server.starts_with("https://") {
            let mut tls = ClientTlsConfig::new();
            if let Some(ca) = &connection.ca {
                tls = tls.ca_certificate(Certificate::from_pem(ca));
            }
            endpoint = endpoint.tls_config(tls).map_err(|error| {
                ClientError::new(
                    ErrorKind::Other,
                    format!("cannot set up TLS for {server}: {error}"),
                )
            })?;
        }
        let channel = match tokio::time::timeout(connection.timeout, endpoint.connect()).await {
            Ok(Ok(channel)) => channel,
            Ok(Err(error)) => {
                let mut cause: &dyn std::error::Error = &error;
                while let Some(source) = cause.source() {
                    cause = source;
                }
                return Err(ClientError::unreachable(server, cause));
            }
            Err(_) => {
                return Err(ClientError::unreachable(
                    server,
                    format!("no answer within {}", humanize(connection.timeout)),
                ));
            }
        };
        Ok(Self {
            inner: ChittyChatClient::new(channel.clone()),
            channel,
            server: server.to_owned(),
            authorization: None,
        })
    }

    /// Asks the service's standard gRPC health service whether it is serving Chitty-Chat.
    pub async fn is_serving(&self) -> Result<bool, ClientError> {
        let mut health = tonic_health::pb::health_client::HealthClient::new(self.channel.clone());
        let request = tonic_health::pb::HealthCheckRequest {
            service: "chittychat.v1.ChittyChat".to_owned(),
        };
        let response = tokio::time::timeout(CALL_TIMEOUT, health.check(request))
            .await
            .map_err(|_| {
                ClientError::unreachable(
                    &self.server,
                    format!("no answer within {}", humanize(CALL_TIMEOUT)),
                )
            })?
            .map_err(|status| ClientError::from_status(&self.server, Rpc::Participants, &status))?;
        Ok(response.into_inner().status
            == tonic_health::pb::health_check_response::ServingStatus::Serving as i32)
    }

    /// The address this client is connected to.
    pub fn server(&self) -> &str {
        &self.server
    }

    /// Joins under `name`, presenting `join_secret` (empty for none) and stamping the request with
    /// `lamport`. Later calls carry the new session's token; [`ChatClient::token`] returns it.
    pub async fn join(
        &mut self,
        name: &str,
        join_secret: &str,
        lamport: LamportTime,
    ) -> Result<Reply, ClientError> {
        let request = Request::new(v1::JoinRequest {
            name: name.to_owned(),
            lamport: lamport.get(),
            join_secret: join_secret.to_owned(),
        });
        let response = self
            .unary(
                Rpc::Join,
                |mut inner| async move { inner.join(request).await },
            )
            .await?;
        self.resume(&response.session_token).map_err(|mut error| {
            error.lamport = Some(LamportTime::new(response.lamport));
            error
        })?;
        Ok(Reply::of(response.seq, response.lamport))
    }

    /// Carries `token` on later calls: to continue a session on a new connection.
    pub fn resume(&mut self, token: &str) -> Result<(), ClientError> {
        self.authorization = Some(wire::bearer(token).parse().map_err(|_| {
            ClientError::new(
                ErrorKind::Other,
                "the service sent a session token that is not valid metadata",
            )
        })?);
        Ok(())
    }

    /// The session token, once joined.
    pub fn token(&self) -> Option<&str> {
        self.authorization
            .as_ref()?
            .to_str()
            .ok()
            .and_then(wire::token_of)
    }

    /// Publishes `text` under `idempotency_key`, stamped with `lamport`.
    pub async fn publish(
        &mut self,
        text: &str,
        idempotency_key: &str,
        lamport: LamportTime,
    ) -> Result<Reply, ClientError> {
        let request = self.authorized(v1::PublishRequest {
            text: text.to_owned(),
            lamport: lamport.get(),
            idempotency_key: idempotency_key.to_owned(),
        });
        let response = self
            .unary(Rpc::Publish, |mut inner| async move {
                inner.publish(request).await
            })
            .await?;
        Ok(Reply::of(response.seq, response.lamport))
    }

    /// Leaves, stamped with `lamport`.
    pub async fn leave(&mut self, lamport: LamportTime) -> Result<Reply, ClientError> {
        let request = self.authorized(v1::LeaveRequest {
            lamport: lamport.get(),
        });
        let response = self
            .unary(
                Rpc::Leave,
                |mut inner| async move { inner.leave(request).await },
            )
            .await?;
        Ok(Reply::of(response.seq, response.lamport))
    }

    /// Who is present, as of the returned seq, stamped with `lamport`.
    pub async fn participants(&mut self, lamport: LamportTime) -> Result<Presence, ClientError> {
        let request = self.authorized(v1::ParticipantsRequest {
            lamport: lamport.get(),
        });
        let response = self
            .unary(Rpc::Participants, |mut inner| async move {
                inner.participants(request).await
            })
            .await?;
        Ok(Presence {
            names: response.names,
            seq: Seq::new(response.seq),
            lamport: LamportTime::new(response.lamport),
        })
    }

    /// Opens the session's Broadcast stream from the first event after `after_seq`, stamped with `lamport`.
    pub async fn broadcast(
        &mut self,
        after_seq: Seq,
        lamport: LamportTime,
    ) -> Result<EventStream, ClientError> {
        let request = self.authorized(v1::BroadcastRequest {
            lamport: lamport.get(),
            after_seq: after_seq.get(),
        });
        let response = self
            .unary(Rpc::Broadcast, |mut inner| async move {
                inner.broadcast(request).await
            })
            .await?;
        Ok(EventStream {
            inner: response,
            server: self.server.clone(),
        })
    }

    fn authorized<T>(&self, message: T) -> Request<T> {
        let mut request = Request::new(message);
        if let Some(authorization) = &self.authorization {
            request
                .metadata_mut()
                .insert(wire::AUTHORIZATION, authorization.clone());
        }
        request
    }

    /// Runs one call with [`CALL_TIMEOUT`], mapping every failure to a [`ClientError`].
    async fn unary<T, F, Fut>(&self, rpc: Rpc, call: F) -> Result<T, ClientError>
    where
        F: FnOnce(ChittyChatClient<Channel>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, Status>>,
    {
        match tokio::time::timeout(CALL_TIMEOUT, call(self.inner.clone())).await {
            Ok(Ok(response)) => Ok(response.into_inner()),
            Ok(Err(status)) => Err(ClientError::from_status(&self.server, rpc, &status)),
            Err(_) => Err(ClientError::unreachable(
                &self.server,
                format!("no answer within {}", humanize(CALL_TIMEOUT)),
            )),
        }
    }
}

/// A session's Broadcast stream.
#[derive(Debug)]
pub struct EventStream {
    /// The gRPC response stream.
    inner: Streaming<v1::Event>,
    /// The service's address, for error messages.
    server: String,
}

impl EventStream {
    /// The next event, or `None` when the service ended the stream cleanly (after a Leave).
    ///
    /// Events of a kind this participant does not know are skipped: a newer service may send them.
    pub async fn next(&mut self) -> Result<Option<Event>, ClientError> {
        loop {
            let Some(event) = self.inner.message().await.map_err(|status| {
                ClientError::from_status(&self.server, Rpc::Broadcast, &status)
            })?
            else {
                return Ok(None);
            };
            let kind = match v1::EventKind::try_from(event.kind) {
                Ok(v1::EventKind::Message) => EventKind::Message,
                Ok(v1::EventKind::Joined) => EventKind::Joined,
                Ok(v1::EventKind::Left) => EventKind::Left,
                Ok(v1::EventKind::Unspecified) | Err(_) => {
                    tracing::debug!(
                        component = "participant",
                        event = ParticipantEvent::SkipUnknownKind.as_str(),
                        seq = event.seq,
                        kind = event.kind,
                    );
                    continue;
                }
            };
            return Ok(Some(Event {
                seq: Seq::new(event.seq),
                lamport: LamportTime::new(event.lamport),
                kind,
                participant: event.participant.into(),
                text: event.text,
            }));
        }
    }
}

fn humanize(duration: Duration) -> String {
    format!("{:.1} s", duration.as_secs_f64())
}
