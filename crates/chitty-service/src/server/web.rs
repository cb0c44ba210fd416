//! The browser's way in, on the service's own port: the participant page at `GET /`, gRPC-Web for its
//! calls, and CORS for pages served elsewhere.
//!
//! # Why the same port
//!
//! The page is served where its calls go, rather than on a listener of its own (`serve --web ADDR`):
//! the page and its gRPC-Web calls then share one origin, so the built-in page needs no CORS at all,
//! Docker and firewalls open one port, and every cluster node serves the page with no flag to set.
//!
//! # The page
//!
//! `GET /` (and `/index.html`) answers one self-contained document: `web/index.html` with its markers
//! replaced by `web/style.css`, `web/codec.js` and `web/app.js`, all embedded in the binary at build
//! time and assembled once, when the server starts ([`Page::assemble`]). The page makes no other request
//! than its gRPC-Web calls to the same origin. Its `Content-Security-Policy` allows exactly its own inline
//! `<script>` and `<style>` elements, by their SHA-256 hashes, computed at assembly: no other script,
//! no inline event handler or `style` attribute, no connection to another origin. Any other `GET` or
//! `HEAD` answers 404; nothing else is looked at here. The page's requests are not logged: the calls it
//! makes are, by the call protocol, like every other call.
//!
//! # gRPC-Web
//!
//! tonic-web's `GrpcWebLayer` turns a gRPC-Web request (`application/grpc-web+proto`, over HTTP/1.1 or
//! HTTP/2) into a gRPC request for the same routes as native gRPC, so that nothing about a call differs
//! but its framing; the response's trailers become a trailers frame (flag `0x80`) at the end of the
//! body. A refusal before any message is a trailers-only response: `grpc-status` and `grpc-message` in
//! the response headers and an empty body.
//!
//! # CORS
//!
//! Off unless `serve --web-origin` names origins ([`WebOrigin`]). With them, tower-http's CORS layer
//! answers preflights from those origins and lets their pages read the response metadata
//! ([`EXPOSED_HEADERS`]); other origins get no `Access-Control-Allow-Origin`, so their browsers refuse.
//! The built-in page is same-origin and needs none.
//!
//! # Order of the layers
//!
//! Outermost first: [`WebPageLayer`] (answers `GET` and `HEAD`, passes everything else on), the CORS layer
//! if any (answers `OPTIONS` preflights), `GrpcWebLayer` (translates gRPC-Web, passes native HTTP/2 gRPC
//! through unchanged, answers other HTTP/1.1 requests 400), then the gRPC routes.

use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use futures_util::future::{Either as EitherFuture, MapOk, Ready, TryFutureExt as _, ready};
use http::header::{self, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{Either as EitherBody, Full};
use sha2::{Digest as _, Sha256};
use thiserror::Error;
use tower::Layer;
use tower::Service;
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::grpc::{FIRST_HELD_METADATA, LAMPORT_METADATA, LAST_SEQ_METADATA, RETRY_AFTER_METADATA};

/// The page's template, with the markers below.
const TEMPLATE: &str = include_str!("../../web/index.html");

/// The marker in the template that the style sheet replaces, and the style sheet.
const STYLE: (&str, &str) = ("/*{{style.css}}*/", include_str!("../../web/style.css"));

/// The marker in the template that the protobuf and gRPC-Web codec replaces, and the codec.
const CODEC: (&str, &str) = ("//{{codec.js}}", include_str!("../../web/codec.js"));

/// The marker in the template that the application replaces, and the application.
const APP: (&str, &str) = ("//{{app.js}}", include_str!("../../web/app.js"));

/// The request headers a gRPC-Web page from another origin may send.
pub const ALLOWED_HEADERS: [&str; 5] = [
    "content-type",
    "x-grpc-web",
    "x-user-agent",
    chitty_proto::metadata::AUTHORIZATION,
    "grpc-timeout",
];

/// The response headers a page from another origin may read: the status of a trailers-only response
/// and the metadata the service sends with statuses.
pub const EXPOSED_HEADERS: [&str; 7] = [
    "grpc-status",
    "grpc-message",
    "grpc-status-details-bin",
    LAMPORT_METADATA,
    RETRY_AFTER_METADATA,
    FIRST_HELD_METADATA,
    LAST_SEQ_METADATA,
];

/// How long a browser may keep a preflight's answer.
const PREFLIGHT_MAX_AGE: Duration = Duration::from_secs(600);

/// Why the page could not be assembled from its files: a fault of the files, caught by the tests.
#[derive(Debug, Error)]
pub enum PageError {
    /// A marker is missing from the template, or is there more than once.
    #[error(
        "the page template must contain the marker {marker} exactly once; it has it {count} times"
    )]
    Marker {
        /// The marker.
        marker: &'static str,
        /// How many times the template has it.
        count: usize,
    },
    /// An embedded file would end its element early, which would let the rest run as markup.
    #[error("an embedded file of the page contains {0}, which would end its element early")]
    EarlyEnd(&'static str),
    /// An inline element has no end.
    #[error("the page has a <{0}> element without its end")]
    Unclosed(&'static str),
}

/// The participant page, assembled, with the `Content-Security-Policy` that allows exactly it.
#[derive(Debug, Clone)]
pub struct Page {
    /// The whole document.
    html: Bytes,
    /// The policy, with the hashes of the page's inline scripts and styles.
    content_security_policy: HeaderValue,
}

impl Page {
    /// The page the binary embeds.
    pub fn embedded() -> Result<Self, PageError> {
        Self::assemble(TEMPLATE, &[STYLE, CODEC, APP])
    }

    /// `template` with each of its markers replaced by its file, each marker found exactly once in the
    /// template (never in a file put in its place), and the policy for the result.
    pub fn assemble(
        template: &str,
        files: &[(&'static str, &'static str)],
    ) -> Result<Self, PageError> {
        let mut places = Vec::with_capacity(files.len());
        for &(marker, contents) in files {
            let count = template.matches(marker).count();
            let Some(at) = template.find(marker).filter(|_| count == 1) else {
                return Err(PageError::Marker { marker, count });
            };
            for end in ["</script", "</style"] {
                if contents.to_ascii_lowercase().contains(end) {
                    return Err(PageError::EarlyEnd(end));
                }
            }
            places.push((at, marker.len(), contents));
        }
        places.sort_unstable_by_key(|&(at, _, _)| at);
        let mut html = String::with_capacity(
            template.len()
                + files
                    .iter()
                    .map(|(_, contents)| contents.len())
                    .sum::<usize>(),
        );
        let mut copied = 0;
        for (at, marker_len, contents) in places {
            html.push_str(&template[copied..at]);
            html.push_str(contents);
            copied = at + marker_len;
        }
        html.push_str(&template[copied..]);
        let (script_hashes, style_hashes) = inline_hashes(&html)?;
        let policy = format!(
            "default-src 'none'; script-src {}; style-src {}; connect-src 'self'; img-src data:; \
             base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
            sources(&script_hashes),
            sources(&style_hashes),
        );
        let content_security_policy =
            HeaderValue::try_from(policy).expect("hashes and keywords are visible ASCII");
        Ok(Self {
            html: Bytes::from(html),
            content_security_policy,
        })
    }

    /// The whole document.
    pub fn html(&self) -> &[u8] {
        &self.html
    }

    /// The `Content-Security-Policy` it is served with.
    pub fn content_security_policy(&self) -> &str {
        self.content_security_policy
            .to_str()
            .expect("built from a string")
    }

    /// The response to `GET /`.
    fn response(&self) -> Response<Full<Bytes>> {
        let mut response = Response::new(Full::new(self.html.clone()));
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/html; charset=utf-8"),
        );
        headers.insert(
            header::CONTENT_SECURITY_POLICY,
            self.content_security_policy.clone(),
        );
        insert_common_headers(headers);
        response
    }
}

/// The headers of every answer here: revalidate before reuse, no sniffing, no referrer.
fn insert_common_headers(headers: &mut http::HeaderMap) {
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
}

/// The answer to any other `GET`.
fn not_found() -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(
        b"not found: the Chitty-Chat page is at /\n",
    )));
    *response.status_mut() = StatusCode::NOT_FOUND;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    insert_common_headers(headers);
    response
}

/// The CSP sources of these hashes: `'sha256-…'` each, separated by spaces, or `'none'` for none.
fn sources(hashes: &[String]) -> String {
    if hashes.is_empty() {
        return "'none'".to_owned();
    }
    hashes
        .iter()
        .map(|hash| format!("'sha256-{hash}'"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The base64 SHA-256 of the text of every inline `<script>` and of every `<style>` in `html`, in that
/// order, as a browser hashes them for its policy: everything between the start tag's `>` and the end
/// tag. The elements are found in document order, so that what one contains is never taken for
/// another.
fn inline_hashes(html: &str) -> Result<(Vec<String>, Vec<String>), PageError> {
    const ELEMENTS: [&str; 2] = ["script", "style"];
    let lower = html.to_ascii_lowercase();
    let mut hashes = (Vec::new(), Vec::new());
    let mut from = 0;
    loop {
        let next = ELEMENTS
            .iter()
            .filter_map(|&element| {
                let mut search = from;
                // `<scripts>` or `<style-x>` are other elements.
                while let Some(found) = lower[search..].find(&format!("<{element}")) {
                    let after_name = search + found + 1 + element.len();
                    if lower[after_name..].starts_with(['>', ' ', '\t', '\n', '\r', '/']) {
                        return Some((after_name, element));
                    }
                    search = after_name;
                }
                None
            })
            .min();
        let Some((after_name, element)) = next else {
            return Ok(hashes);
        };
        let end_tag = format!("</{element}");
        let open_end = lower[after_name..]
            .find('>')
            .map(|at| after_name + at + 1)
            .ok_or(PageError::Unclosed(element))?;
        let close = lower[open_end..]
            .find(&end_tag)
            .map(|at| open_end + at)
            .ok_or(PageError::Unclosed(element))?;
        let digest = Sha256::digest(&html.as_bytes()[open_end..close]);
        let hash = base64::engine::general_purpose::STANDARD.encode(digest);
        match element {
            "script" => hashes.0.push(hash),
            _ => hashes.1.push(hash),
        }
        from = close + end_tag.len();
    }
}

/// An origin whose pages may call the service (`serve --web-origin`): `http` or `https`, a host and an
/// optional port, nothing else, as a browser sends it in its `Origin` header.
#[derive(Clone, PartialEq, Eq)]
pub struct WebOrigin(HeaderValue);

impl WebOrigin {
    /// Reads an origin such as `https://chat.example.com` or `http://localhost:8080`, lowercased and
    /// without the scheme's default port, as browsers write it.
    pub fn parse(given: &str) -> Result<Self, String> {
        let uri: http::Uri = given.parse().map_err(|error| {
            format!("not an origin ({error}): want e.g. https://chat.example.com")
        })?;
        let scheme = uri.scheme_str().map(str::to_ascii_lowercase);
        let default_port = match scheme.as_deref() {
            Some("http") => 80,
            Some("https") => 443,
            _ => return Err("an origin starts with http:// or https://".to_owned()),
        };
        let Some(authority) = uri.authority() else {
            return Err("an origin names a host: want e.g. https://chat.example.com".to_owned());
        };
        if authority.as_str().contains('@')
            || uri
                .path_and_query()
                .is_some_and(|path| !matches!(path.as_str(), "" | "/"))
            || given.ends_with('/')
        {
            return Err(
                "an origin is a scheme, a host and an optional port only: no user, path or \
                 trailing slash"
                    .to_owned(),
            );
        }
        let host = authority.host().to_ascii_lowercase();
        let origin = match authority.port_u16() {
            Some(port) if port != default_port => {
                format!("{}://{host}:{port}", scheme.unwrap_or_default())
            }
            _ => format!("{}://{host}", scheme.unwrap_or_default()),
        };
        HeaderValue::try_from(origin)
            .map(Self)
            .map_err(|error| format!("not an origin: {error}"))
    }

    /// The origin as browsers send it.
    pub fn as_str(&self) -> &str {
        self.0.to_str().expect("built from a string")
    }
}

impl fmt::Debug for WebOrigin {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.as_str())
    }
}

impl fmt::Display for WebOrigin {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.as_str())
    }
}

/// The CORS layer for pages of `origins`, or `None` when there are none: then no cross-origin page may
/// call the service.
pub fn cors(origins: &[WebOrigin]) -> Option<CorsLayer> {
    if origins.is_empty() {
        return None;
    }
    Some(
        CorsLayer::new()
            .allow_origin(AllowOrigin::list(
                origins.iter().map(|origin| origin.0.clone()),
            ))
            .allow_methods([Method::POST])
            .allow_headers(ALLOWED_HEADERS.map(HeaderName::from_static))
            .expose_headers(EXPOSED_HEADERS.map(HeaderName::from_static))
            .max_age(PREFLIGHT_MAX_AGE),
    )
}

/// Answers `GET /` with the page and any other `GET` or `HEAD` with 404, and hands every other request
/// to the service it wraps.
#[derive(Debug, Clone)]
pub struct WebPageLayer {
    /// The page, assembled once.
    page: Arc<Page>,
}

impl WebPageLayer {
    /// Serves `page`.
    pub fn new(page: Page) -> Self {
        Self {
            page: Arc::new(page),
        }
    }
}

impl<S> Layer<S> for WebPageLayer {
    type Service = WebPage<S>;

    fn layer(&self, inner: S) -> Self::Service {
        WebPage {
            inner,
            page: Arc::clone(&self.page),
        }
    }
}

/// The service of [`WebPageLayer`].
#[derive(Debug, Clone)]
pub struct WebPage<S> {
    /// Where every request but a `GET` or `HEAD` goes.
    inner: S,
    /// The page, assembled once.
    page: Arc<Page>,
}

/// A response of the wrapped service, or of the page.
type EitherResponse<B> = Response<EitherBody<B, Full<Bytes>>>;

/// Turns a response of the wrapped service into one of [`WebPage`].
type Wrap<B> = fn(Response<B>) -> EitherResponse<B>;

impl<S, RequestBody, ResponseBody> Service<Request<RequestBody>> for WebPage<S>
where
    S: Service<Request<RequestBody>, Response = Response<ResponseBody>>,
{
    type Response = EitherResponse<ResponseBody>;
    type Error = S::Error;
    type Future =
        EitherFuture<Ready<Result<Self::Response, S::Error>>, MapOk<S::Future, Wrap<ResponseBody>>>;

    fn poll_ready(&mut self, context: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(context)
    }

    fn call(&mut self, request: Request<RequestBody>) -> Self::Future {
        if request.method() != Method::GET && request.method() != Method::HEAD {
            let wrap: Wrap<ResponseBody> = |response| response.map(EitherBody::Left);
            return EitherFuture::Right(self.inner.call(request).map_ok(wrap));
        }
        let response = match request.uri().path() {
            "/" | "/index.html" => self.page.response(),
            _ => not_found(),
        };
        EitherFuture::Left(ready(Ok(response.map(EitherBody::Right))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_page_has_every_file_in_place_of_its_marker() {
        let page = Page::embedded().expect("the embedded files assemble");
        let html = std::str::from_utf8(page.html()).expect("UTF-8");
        assert!(!html.contains("{{"), "a marker is left in:\n{html}");
        for (marker, contents) in [STYLE, CODEC, APP] {
            assert!(
                html.contains(contents),
                "the page lacks the contents of the file of {marker}"
            );
        }
        assert!(html.starts_with("<!doctype html>"), "got {html:.40}");
    }

    #[test]
    fn the_policy_allows_exactly_the_pages_inline_scripts_and_styles() {
        let page = Page::assemble(
            "<style>\n/*{{style.css}}*/\n</style><script>\n//{{codec.js}}\n</script>\
             <SCRIPT type=\"text/javascript\">//{{app.js}}</SCRIPT>",
            &[
                ("/*{{style.css}}*/", "body { color: red }"),
                ("//{{codec.js}}", "const codec = '<style>';"),
                ("//{{app.js}}", "const app = '//{{codec.js}}';"),
            ],
        )
        .expect("assembles");
        let hash = |text: &str| {
            format!(
                "'sha256-{}'",
                base64::engine::general_purpose::STANDARD.encode(Sha256::digest(text))
            )
        };
        let policy = page.content_security_policy();
        assert_eq!(
            policy,
            format!(
                "default-src 'none'; script-src {} {}; style-src {}; connect-src 'self'; \
                 img-src data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
                hash("\nconst codec = '<style>';\n"),
                hash("const app = '//{{codec.js}}';"),
                hash("\nbody { color: red }\n"),
            )
        );
        assert!(
            std::str::from_utf8(page.html())
                .expect("UTF-8")
                .contains("const app = '//{{codec.js}}';"),
            "a marker inside a file is left alone"
        );
    }

    #[test]
    fn a_missing_or_repeated_marker_or_an_early_end_is_refused() {
        let files = [("//{{app.js}}", "ok")];
        assert!(matches!(
            Page::assemble("<script></script>", &files),
            Err(PageError::Marker { count: 0, .. })
        ));
        assert!(matches!(
            Page::assemble("<script>//{{app.js}}//{{app.js}}</script>", &files),
            Err(PageError::Marker { count: 2, .. })
        ));
        assert!(matches!(
            Page::assemble(
                "<script>//{{app.js}}</script>",
                &[("//{{app.js}}", "x = '</SCRIPT>'")]
            ),
            Err(PageError::EarlyEnd(_))
        ));
        assert!(matches!(
            Page::assemble("<script>//{{app.js}}", &files),
            Err(PageError::Unclosed("script"))
        ));
    }

    #[test]
    fn origins_are_read_as_browsers_send_them() {
        for (given, want) in [
            ("http://example.test", "http://example.test"),
            ("HTTPS://Chat.Example.com", "https://chat.example.com"),
            ("http://localhost:8080", "http://localhost:8080"),
            ("http://localhost:80", "http://localhost"),
            ("https://[::1]:8443", "https://[::1]:8443"),
        ] {
            let origin = WebOrigin::parse(given).unwrap_or_else(|error| panic!("{given}: {error}"));
            assert_eq!(origin.as_str(), want, "{given}");
        }
        for given in [
            "example.test",
            "ftp://example.test",
            "http://example.test/",
            "http://example.test/page",
            "http://user@example.test",
            "*",
            "",
        ] {
            assert!(WebOrigin::parse(given).is_err(), "{given} was accepted");
        }
    }
}
