//! What a browser sees of the real service, over real HTTP/1.1 on the service's own port: the page at
//! `GET /`, gRPC-Web calls (Join accepted and refused, a Broadcast stream that delivers each event as it
//! comes), and CORS, off by default and on for the origins of `serve --web-origin`.
//!
//! The client is hyper's HTTP/1.1 connection, one per call as a browser's would be when a stream holds
//! one, and a few lines of gRPC-Web framing below: a message is a flag byte, a 4-byte big-endian length
//! and the protobuf; the trailers come last as a frame flagged `0x80`, HTTP/1-style header lines.

mod common;

use std::net::SocketAddr;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use chitty_chat::harness::ServiceProcess;
use chitty_proto::v1;
use common::{WAIT, authorized, has, log_dir, log_lines, raw_client, raw_join, service};
use http_body_util::{BodyExt as _, Empty, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode, Version};
use hyper_util::rt::TokioIo;
use prost::Message as _;
use tokio::net::TcpStream;
use tonic::Code;

/// The path of a ChittyChat method.
fn method(name: &str) -> String {
    format!("/chittychat.v1.ChittyChat/{name}")
}

/// Sends `request` on a new HTTP/1.1 connection to `address` and returns the response head, its body
/// still to be read; the connection lives as long as the body is read.
async fn send<B>(address: SocketAddr, request: Request<B>) -> Response<Incoming>
where
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    send_on_own_connection(address, request).await.0
}

/// [`send`], and the handle of the task that drives the connection: aborting it closes the connection,
/// as closing a browser's tab does.
async fn send_on_own_connection<B>(
    address: SocketAddr,
    request: Request<B>,
) -> (Response<Incoming>, tokio::task::AbortHandle)
where
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    tokio::time::timeout(WAIT, async {
        let stream = TcpStream::connect(address)
            .await
            .expect("the service accepts connections");
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .expect("an HTTP/1.1 handshake");
        let connection = tokio::spawn(connection).abort_handle();
        let response = sender
            .send_request(request)
            .await
            .expect("an HTTP/1.1 response");
        (response, connection)
    })
    .await
    .expect("a response head within the bound")
}

/// `GET path` over HTTP/1.1: the response and its whole body.
async fn get(address: SocketAddr, path: &str) -> (Response<()>, Bytes) {
    let request = Request::get(path)
        .header("host", address.to_string())
        .body(Empty::<Bytes>::new())
        .expect("a request");
    let response = send(address, request).await;
    let (head, body) = response.into_parts();
    let body = tokio::time::timeout(WAIT, body.collect())
        .await
        .expect("the body within the bound")
        .expect("a whole body")
        .to_bytes();
    (Response::from_parts(head, ()), body)
}

/// A gRPC-Web request for `name` with `message`, as a browser's fetch sends it, with the token if any and
/// these extra headers.
fn grpc_web_request(
    address: SocketAddr,
    name: &str,
    message: &impl prost::Message,
    token: Option<&str>,
    extra: &[(&str, &str)],
) -> Request<Full<Bytes>> {
    let encoded = message.encode_to_vec();
    let mut body = BytesMut::with_capacity(5 + encoded.len());
    body.put_u8(0);
    body.put_u32(u32::try_from(encoded.len()).expect("a small message"));
    body.put_slice(&encoded);
    let mut request = Request::post(method(name))
        .header("host", address.to_string())
        .header("content-type", "application/grpc-web+proto")
        .header("accept", "application/grpc-web+proto")
        .header("x-grpc-web", "1")
        .header("x-user-agent", "chitty-chat-test");
    if let Some(token) = token {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    for (name, value) in extra {
        request = request.header(*name, *value);
    }
    request.body(Full::new(body.freeze())).expect("a request")
}

/// What a gRPC-Web response body holds, frame by frame.
#[derive(Debug)]
enum WebFrame {
    /// A message, its protobuf bytes.
    Message(Bytes),
    /// The trailers, lowercased names and their values.
    Trailers(Vec<(String, String)>),
}

/// Reads a gRPC-Web response: its head, then its frames as their bytes arrive.
struct WebResponse {
    /// The response head.
    head: Response<()>,
    /// The body, read as its chunks arrive.
    body: Incoming,
    /// Bytes read and not yet taken as a frame.
    buffered: BytesMut,
    /// A frame read and put back, to be read again.
    pending: Option<WebFrame>,
    /// The task that drives the connection.
    connection: tokio::task::AbortHandle,
}

impl WebResponse {
    /// Sends `request` and reads its head.
    async fn send(address: SocketAddr, request: Request<Full<Bytes>>) -> Self {
        let (response, connection) = send_on_own_connection(address, request).await;
        let (head, body) = response.into_parts();
        Self {
            connection,
            head: Response::from_parts(head, ()),
            body,
            buffered: BytesMut::new(),
            pending: None,
        }
    }

    /// Closes the connection, as a browser does when its tab closes.
    fn close(self) {
        self.connection.abort();
    }

    /// A response header as text.
    fn header(&self, name: &str) -> Option<String> {
        self.head
            .headers()
            .get(name)
            .map(|value| value.to_str().expect("ASCII").to_owned())
    }

    /// The next frame within the bound, or `None` once the body has ended.
    async fn next(&mut self) -> Option<WebFrame> {
        if let Some(frame) = self.pending.take() {
            return Some(frame);
        }
        tokio::time::timeout(WAIT, async {
            loop {
                if self.buffered.len() >= 5 {
                    let len =
                        u32::from_be_bytes(self.buffered[1..5].try_into().expect("four bytes"))
                            as usize;
                    if self.buffered.len() >= 5 + len {
                        let flag = self.buffered.get_u8();
                        self.buffered.advance(4);
                        let payload = self.buffered.split_to(len).freeze();
                        return Some(match flag {
                            0 => WebFrame::Message(payload),
                            0x80 => WebFrame::Trailers(trailer_lines(&payload)),
                            other => panic!("got frame flag {other:#04x}, want 0x00 or 0x80"),
                        });
                    }
                }
                match self.body.frame().await {
                    Some(frame) => {
                        let frame = frame.expect("the body reads without error");
                        if let Ok(data) = frame.into_data() {
                            self.buffered.put(data);
                        }
                    }
                    None => {
                        assert!(
                            self.buffered.is_empty(),
                            "the body ended inside a frame: {:?}",
                            self.buffered
                        );
                        return None;
                    }
                }
            }
        })
        .await
        .expect("a frame or the end within the bound")
    }

    /// The next message, decoded as `T`; fails on trailers or the end.
    async fn message<T: prost::Message + Default>(&mut self) -> T {
        match self.next().await {
            Some(WebFrame::Message(bytes)) => {
                T::decode(bytes).expect("a message of the right type")
            }
            other => panic!("got {other:?}, want a message"),
        }
    }

    /// The call's status and message: from the trailers frame that ends the body, or, for a
    /// trailers-only response, from the head. Then the body must have ended.
    async fn status(&mut self) -> (i32, String) {
        let trailers = match self.next().await {
            Some(WebFrame::Trailers(trailers)) => {
                assert!(self.next().await.is_none(), "nothing after the trailers");
                trailers
            }
            None => ["grpc-status", "grpc-message"]
                .iter()
                .filter_map(|name| Some(((*name).to_owned(), self.header(name)?)))
                .collect(),
            Some(WebFrame::Message(message)) => panic!("got message {message:?}, want the status"),
        };
        let read = |name: &str| {
            trailers
                .iter()
                .find(|(key, _)| key == name)
                .map(|(_, value)| value.clone())
        };
        let code = read("grpc-status")
            .unwrap_or_else(|| panic!("no grpc-status in {trailers:?}"))
            .parse()
            .expect("a numeric grpc-status");
        (
            code,
            percent_decoded(&read("grpc-message").unwrap_or_default()),
        )
    }
}

/// A `grpc-message` as written, without gRPC's percent-encoding.
fn percent_decoded(message: &str) -> String {
    let mut bytes = Vec::with_capacity(message.len());
    let mut rest = message.as_bytes();
    while let Some((&byte, tail)) = rest.split_first() {
        let escaped = (byte == b'%')
            .then(|| tail.get(..2))
            .flatten()
            .and_then(|hex| u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok());
        match escaped {
            Some(decoded) => {
                bytes.push(decoded);
                rest = &tail[2..];
            }
            None => {
                bytes.push(byte);
                rest = tail;
            }
        }
    }
    String::from_utf8(bytes).expect("a UTF-8 message")
}

/// The lines of a trailers frame, `name:value` each, names lowercased.
fn trailer_lines(payload: &[u8]) -> Vec<(String, String)> {
    std::str::from_utf8(payload)
        .expect("trailers are text")
        .split("\r\n")
        .filter(|line| !line.is_empty())
        .map(|line| {
            let (name, value) = line.split_once(':').expect("a name:value line");
            (name.trim().to_ascii_lowercase(), value.trim().to_owned())
        })
        .collect()
}

/// Joins as `name` over gRPC-Web: the response, and the status that ends it.
async fn web_join(address: SocketAddr, name: &str) -> (WebResponse, Option<v1::JoinResponse>) {
    let request = v1::JoinRequest {
        name: name.to_owned(),
        lamport: 1,
        ..Default::default()
    };
    let mut response = WebResponse::send(
        address,
        grpc_web_request(address, "Join", &request, None, &[]),
    )
    .await;
    let joined = match response.next().await {
        Some(WebFrame::Message(bytes)) => {
            Some(v1::JoinResponse::decode(bytes).expect("a JoinResponse"))
        }
        // A refusal: the trailers go back, for `status`.
        other => {
            response.pending = other;
            None
        }
    };
    (response, joined)
}

/// A service for one test, started with `extra` flags and a JSON log in its own directory, reached at
/// its address as a browser reaches it: the first lines of most tests here.
struct Served {
    /// The service's HTTP/1.1 and gRPC address, where every request of the test goes.
    address: SocketAddr,
    /// The service, for native gRPC clients beside the browser's calls.
    service: ServiceProcess,
    /// Its data and its log, which tests read to see how a call was logged.
    dir: tempfile::TempDir,
}

impl Served {
    /// Starts a service with `extra` flags.
    async fn start(extra: &[&str]) -> Self {
        let dir = log_dir();
        let service = service(dir.path(), extra).await;
        Self {
            address: service.address(),
            service,
            dir,
        }
    }

    /// Joins as `name` over gRPC-Web and opens its Broadcast stream from the first event, with its
    /// Lamport time after the join: a browser's page once it is in the chat. Returns the session token
    /// and the stream, its head read.
    async fn join_and_listen(&self, name: &str) -> (String, WebResponse) {
        let (_, joined) = web_join(self.address, name).await;
        let token = joined
            .unwrap_or_else(|| panic!("{name} joins"))
            .session_token;
        let request = v1::BroadcastRequest {
            after_seq: 0,
            lamport: 2,
        };
        let stream = WebResponse::send(
            self.address,
            grpc_web_request(self.address, "Broadcast", &request, Some(&token), &[]),
        )
        .await;
        (token, stream)
    }
}

#[tokio::test]
async fn get_slash_answers_the_self_contained_page_with_its_security_headers() {
    let served = Served::start(&[]).await;
    let address = served.address;

    for path in ["/", "/index.html"] {
        let (response, body) = get(address, path).await;
        assert_eq!(response.status(), StatusCode::OK, "GET {path}");
        assert_eq!(response.version(), Version::HTTP_11);
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .map(|value| value.to_str().expect("ASCII").to_owned())
                .unwrap_or_else(|| panic!("no {name} header on GET {path}"))
        };
        assert_eq!(header("content-type"), "text/html; charset=utf-8");
        assert_eq!(header("cache-control"), "no-cache");
        assert_eq!(header("x-content-type-options"), "nosniff");
        assert_eq!(header("referrer-policy"), "no-referrer");
        let policy = header("content-security-policy");
        for want in [
            "default-src 'none'",
            "script-src 'sha256-",
            "style-src 'sha256-",
            "connect-src 'self'",
        ] {
            assert!(policy.contains(want), "got policy {policy:?}, want {want}");
        }
        assert!(!policy.contains("unsafe-inline"), "got policy {policy:?}");
        let html = std::str::from_utf8(&body).expect("the page is UTF-8");
        assert!(
            html.to_ascii_lowercase().starts_with("<!doctype html>"),
            "got {html:.60}"
        );
        assert!(!html.contains("{{"), "a marker is left in:\n{html}");
    }

    let (response, body) = get(address, "/favicon.ico").await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert!(
        std::str::from_utf8(&body)
            .expect("text")
            .starts_with("not found"),
        "got {body:?}"
    );
}

#[tokio::test]
async fn a_grpc_web_join_is_answered_and_a_refused_one_says_why() {
    let served = Served::start(&[]).await;
    let address = served.address;

    let (mut response, joined) = web_join(address, "webby").await;
    assert_eq!(response.head.status(), StatusCode::OK);
    assert_eq!(response.head.version(), Version::HTTP_11);
    assert_eq!(
        response.header("content-type").as_deref(),
        Some("application/grpc-web+proto")
    );
    let joined = joined.expect("a JoinResponse");
    assert!(!joined.session_token.is_empty());
    assert_eq!(joined.seq, 1, "the first event");
    assert!(joined.lamport > 1, "got lamport {}", joined.lamport);
    assert_eq!(response.status().await, (Code::Ok as i32, String::new()));

    // Refused: the name is taken, or invalid. The status comes in the headers of a trailers-only
    // response or in the trailers frame; either way it says why.
    for (name, code, says) in [
        ("webby", Code::AlreadyExists, "the name \"webby\" is taken"),
        ("", Code::InvalidArgument, "name"),
    ] {
        let (mut response, joined) = web_join(address, name).await;
        assert!(joined.is_none(), "{name:?} was accepted");
        assert_eq!(
            response.head.status(),
            StatusCode::OK,
            "gRPC errors are in-band"
        );
        let (got, message) = response.status().await;
        assert_eq!(
            got, code as i32,
            "{name:?}: got/want code, message {message:?}"
        );
        assert!(message.contains(says), "{name:?}: got message {message:?}");
    }

    // The calls went through the call protocol like any other, and were logged by it.
    let logs = log_lines(&served.dir.path().join("service.log"));
    assert!(
        logs.iter()
            .any(|line| has(line, "event", "join") && has(line, "participant", "webby")),
        "no join of webby logged"
    );
    assert!(
        logs.iter()
            .any(|line| has(line, "event", "refused") && has(line, "rpc", "Join")),
        "no refused Join logged"
    );
}

#[tokio::test]
async fn a_grpc_web_broadcast_over_http1_delivers_each_event_as_it_comes() {
    let served = Served::start(&[]).await;
    let address = served.address;
    let (token, mut stream) = served.join_and_listen("webby").await;
    assert_eq!(stream.head.status(), StatusCode::OK);
    assert_eq!(stream.head.version(), Version::HTTP_11);
    assert_eq!(
        stream.header("content-type").as_deref(),
        Some("application/grpc-web+proto")
    );
    let first: v1::Event = stream.message().await;
    assert_eq!(
        (first.seq, first.kind(), first.participant.as_str()),
        (1, v1::EventKind::Joined, "webby"),
        "got {first:?}"
    );

    // Another participant, over native gRPC on the same port, joins and publishes while the stream is
    // open: each event reaches the browser's stream without it ending.
    let mut native = raw_client(&served.service).await;
    let (native_token, _) = raw_join(&mut native, "native").await;
    let event: v1::Event = stream.message().await;
    assert_eq!(
        (event.seq, event.kind(), event.participant.as_str()),
        (2, v1::EventKind::Joined, "native"),
        "got {event:?}"
    );
    native
        .publish(authorized(
            v1::PublishRequest {
                text: "hello, browser".to_owned(),
                lamport: 5,
                ..Default::default()
            },
            &native_token,
        ))
        .await
        .expect("publish succeeds");
    let event: v1::Event = stream.message().await;
    assert_eq!(
        (
            event.seq,
            event.kind(),
            event.participant.as_str(),
            event.text.as_str()
        ),
        (3, v1::EventKind::Message, "native", "hello, browser"),
        "got {event:?}"
    );
    assert!(event.lamport > 5, "got lamport {}", event.lamport);

    // Leaving over gRPC-Web ends the leaver's stream cleanly (its left event goes to the others).
    let mut leave = WebResponse::send(
        address,
        grpc_web_request(
            address,
            "Leave",
            &v1::LeaveRequest { lamport: 10 },
            Some(&token),
            &[],
        ),
    )
    .await;
    let left: v1::LeaveResponse = leave.message().await;
    assert_eq!(left.seq, 4, "got {left:?}");
    assert_eq!(leave.status().await, (Code::Ok as i32, String::new()));
    assert_eq!(stream.status().await, (Code::Ok as i32, String::new()));
}

#[tokio::test]
async fn a_browser_that_closes_its_http1_stream_without_leaving_is_announced_left() {
    let served = Served::start(&["--grace", "1s"]).await;
    let (_, mut stream) = served.join_and_listen("webby").await;
    let _: v1::Event = stream.message().await;

    let mut native = raw_client(&served.service).await;
    let (native_token, _) = raw_join(&mut native, "native").await;
    let mut events = native
        .broadcast(authorized(
            v1::BroadcastRequest {
                after_seq: 2,
                lamport: 3,
            },
            &native_token,
        ))
        .await
        .expect("the native stream opens")
        .into_inner();
    // The browser's stream sees the native join, so the service has both streams open.
    let _: v1::Event = stream.message().await;
    stream.close();

    let left = tokio::time::timeout(WAIT, events.message())
        .await
        .expect("webby announced left within the bound")
        .expect("the native stream is healthy")
        .expect("the native stream is open");
    assert_eq!(
        (left.kind(), left.participant.as_str()),
        (v1::EventKind::Left, "webby"),
        "got {left:?}"
    );
}

#[tokio::test]
async fn a_refused_grpc_web_broadcast_says_unauthenticated() {
    let served = Served::start(&[]).await;
    let address = served.address;
    let request = v1::BroadcastRequest {
        after_seq: 0,
        lamport: 1,
    };
    let mut stream = WebResponse::send(
        address,
        grpc_web_request(address, "Broadcast", &request, Some("forged"), &[]),
    )
    .await;
    assert_eq!(stream.status().await.0, Code::Unauthenticated as i32);
}

/// A CORS preflight for a gRPC-Web call from `origin`.
fn preflight(address: SocketAddr, origin: &str) -> Request<Empty<Bytes>> {
    Request::options(method("Join"))
        .header("host", address.to_string())
        .header("origin", origin)
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "content-type,x-grpc-web,x-user-agent,authorization",
        )
        .body(Empty::new())
        .expect("a request")
}

/// The value of a response header, if any.
fn header_of<B>(response: &Response<B>, name: &str) -> Option<String> {
    response
        .headers()
        .get(name)
        .map(|value| value.to_str().expect("ASCII").to_owned())
}

#[tokio::test]
async fn cors_is_off_by_default_and_on_for_the_origins_named() {
    let closed = Served::start(&[]).await;
    let response = send(
        closed.address,
        preflight(closed.address, "http://example.test"),
    )
    .await;
    assert_eq!(
        header_of(&response, "access-control-allow-origin"),
        None,
        "without --web-origin, got status {}",
        response.status()
    );

    let open = Served::start(&["--web-origin", "http://example.test"]).await;
    let address = open.address;
    let response = send(address, preflight(address, "http://example.test")).await;
    assert!(response.status().is_success(), "got {}", response.status());
    assert_eq!(
        header_of(&response, "access-control-allow-origin").as_deref(),
        Some("http://example.test")
    );
    let allowed = header_of(&response, "access-control-allow-headers")
        .unwrap_or_default()
        .to_ascii_lowercase();
    for want in ["content-type", "x-grpc-web", "authorization"] {
        assert!(
            allowed.contains(want),
            "got allowed headers {allowed:?}, want {want}"
        );
    }
    let response = send(address, preflight(address, "http://elsewhere.test")).await;
    assert_eq!(header_of(&response, "access-control-allow-origin"), None);

    // The call itself: its origin is allowed, and the page may read the status and the metadata.
    let request = v1::JoinRequest {
        name: "corsy".to_owned(),
        lamport: 1,
        ..Default::default()
    };
    let mut call = WebResponse::send(
        address,
        grpc_web_request(
            address,
            "Join",
            &request,
            None,
            &[("origin", "http://example.test")],
        ),
    )
    .await;
    assert_eq!(
        call.header("access-control-allow-origin").as_deref(),
        Some("http://example.test")
    );
    let exposed = call
        .header("access-control-expose-headers")
        .unwrap_or_default()
        .to_ascii_lowercase();
    for want in ["grpc-status", "grpc-message", "lamport", "retry-after-ms"] {
        assert!(
            exposed.contains(want),
            "got exposed headers {exposed:?}, want {want}"
        );
    }
    let joined: v1::JoinResponse = call.message().await;
    assert!(!joined.session_token.is_empty());
    assert_eq!(call.status().await.0, Code::Ok as i32);
}

#[tokio::test]
async fn a_cluster_node_serves_the_page_and_answers_grpc_web_too() {
    let Some(nats) = chitty_cluster::testing::NatsCluster::start_or_skip(
        "a_cluster_node_serves_the_page_and_answers_grpc_web_too",
        1,
    )
    .await
    else {
        return;
    };
    let dir = log_dir();
    let log = dir.path().join("service.log").display().to_string();
    let node = ServiceProcess::start(
        common::binary(),
        &common::args(&[
            "--nats",
            &nats.url(0),
            "--node-id",
            "web-node",
            "--nats-prefix",
            &chitty_cluster::testing::unique_prefix(),
            "--log-format",
            "json",
            "--log-file",
            &log,
        ]),
    )
    .await
    .expect("the cluster node starts");
    let address = node.address();

    let (response, body) = get(address, "/").await;
    assert_eq!(response.status(), StatusCode::OK);
    let html = std::str::from_utf8(&body).expect("the page is UTF-8");
    assert!(
        html.to_ascii_lowercase().starts_with("<!doctype html>"),
        "got {html:.60}"
    );

    // The node logs its start line once it has joined the cluster, so its calls are served from then.
    let (mut response, joined) = web_join(address, "clustered").await;
    let joined = joined.expect("the cluster node answers the Join");
    assert!(!joined.session_token.is_empty());
    assert_eq!(response.status().await, (Code::Ok as i32, String::new()));
    let logs = log_lines(&dir.path().join("service.log"));
    assert!(
        logs.iter()
            .any(|line| has(line, "event", "join") && has(line, "participant", "clustered")),
        "no join of clustered logged by the node"
    );
}
