//! Getting a node's metrics over HTTP: the endpoint's URL, and one bounded `GET`.
//!
//! The request goes through hyper's client (hyper-util's pooled client over plain TCP), which keeps the
//! connection to each node open from one scrape to the next. A failure of any kind comes back as a
//! [`FetchError`] whose text is short enough for a table cell: `top` shows it in the node's row and
//! tries again at the next refresh.

use std::time::Duration;

use http::{StatusCode, Uri};
use http_body_util::{BodyExt as _, Empty, Limited};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

/// The metrics endpoint's path, added to a URL given without one.
pub const METRICS_PATH: &str = "/metrics";

/// The most bytes of one answer read; a node's metrics are a few kilobytes.
pub const MAX_BODY_BYTES: usize = 4 * 1024 * 1024;

/// Why a `--metrics` value is not a URL `top` can scrape.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    /// It does not parse as a URL or as `host:port`.
    #[error("{given:?} is not a URL or host:port: {reason}")]
    Invalid {
        /// What was given.
        given: String,
        /// Why it does not parse.
        reason: String,
    },
    /// It asks for a scheme other than plain HTTP, which the service's metrics endpoint speaks.
    #[error("{given:?}: the metrics endpoint serves plain http://, not {scheme}://")]
    Scheme {
        /// What was given.
        given: String,
        /// The scheme it asked for.
        scheme: String,
    },
}

/// The URL of a node's metrics endpoint from what the operator typed: `host:port` becomes
/// `http://host:port/metrics`, and a URL without a path gets `/metrics`.
pub fn metrics_url(given: &str) -> Result<Uri, UrlError> {
    let given = given.trim();
    let with_scheme = if given.contains("://") {
        given.to_owned()
    } else {
        format!("http://{given}")
    };
    let invalid = |reason: String| UrlError::Invalid {
        given: given.to_owned(),
        reason,
    };
    let uri: Uri = with_scheme
        .parse()
        .map_err(|error: http::uri::InvalidUri| invalid(error.to_string()))?;
    match uri.scheme_str() {
        Some("http") => {}
        Some(scheme) => {
            return Err(UrlError::Scheme {
                given: given.to_owned(),
                scheme: scheme.to_owned(),
            });
        }
        None => return Err(invalid("no scheme".to_owned())),
    }
    let Some(authority) = uri.authority() else {
        return Err(invalid("no host".to_owned()));
    };
    let path_and_query = match uri.path_and_query().map(|path| path.as_str()) {
        None | Some("") | Some("/") => METRICS_PATH,
        Some(path) => path,
    };
    Uri::builder()
        .scheme("http")
        .authority(authority.as_str())
        .path_and_query(path_and_query)
        .build()
        .map_err(|error| invalid(error.to_string()))
}

/// Why a scrape failed, in a few words for the node's row.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// No answer within the bound.
    #[error("no answer within {}", humantime::format_duration(*.0))]
    TimedOut(Duration),
    /// The connection or the exchange failed; the text is the innermost cause (`connection refused`).
    #[error("{0}")]
    Transport(String),
    /// The endpoint answered, but not with 200 OK.
    #[error("HTTP {0}")]
    Status(StatusCode),
    /// The answer was larger than [`MAX_BODY_BYTES`] or not UTF-8 text.
    #[error("{0}")]
    Body(String),
}

/// An HTTP client for metrics endpoints, shared by every node's scrape.
#[derive(Debug, Clone)]
pub struct Fetcher {
    /// hyper's pooled client: one kept-alive connection per node between scrapes.
    client: Client<HttpConnector, Empty<Bytes>>,
    /// The bound on one scrape, connection included.
    timeout: Duration,
}

impl Fetcher {
    /// A client whose every scrape is bounded by `timeout`.
    pub fn new(timeout: Duration) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(timeout));
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new()).build(connector);
        Self { client, timeout }
    }

    /// The body of `GET url`, as text.
    pub async fn get(&self, url: &Uri) -> Result<String, FetchError> {
        tokio::time::timeout(self.timeout, self.get_unbounded(url))
            .await
            .map_err(|_| FetchError::TimedOut(self.timeout))?
    }

    async fn get_unbounded(&self, url: &Uri) -> Result<String, FetchError> {
        let response = self
            .client
            .get(url.clone())
            .await
            .map_err(|error| FetchError::Transport(innermost_reason(&error)))?;
        if response.status() != StatusCode::OK {
            return Err(FetchError::Status(response.status()));
        }
        let body = Limited::new(response.into_body(), MAX_BODY_BYTES)
            .collect()
            .await
            .map_err(|error| FetchError::Body(format!("cannot read the answer: {error}")))?
            .to_bytes();
        String::from_utf8(body.to_vec())
            .map_err(|_| FetchError::Body("the answer is not UTF-8 text".to_owned()))
    }
}

/// The innermost cause of `error`: an I/O error's kind (`connection refused`), else the deepest
/// source's text. hyper's own outer layers ("client error (Connect)") say little to an operator.
fn innermost_reason(error: &(dyn std::error::Error + 'static)) -> String {
    let mut deepest: &(dyn std::error::Error + 'static) = error;
    let mut current = Some(error);
    while let Some(cause) = current {
        if let Some(io) = cause.downcast_ref::<std::io::Error>() {
            return io.kind().to_string();
        }
        deepest = cause;
        current = cause.source();
    }
    deepest.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_url_completes_host_port_and_bare_urls() {
        let cases = [
            ("127.0.0.1:9464", "http://127.0.0.1:9464/metrics"),
            ("localhost:9464", "http://localhost:9464/metrics"),
            ("http://127.0.0.1:9464", "http://127.0.0.1:9464/metrics"),
            ("http://127.0.0.1:9464/", "http://127.0.0.1:9464/metrics"),
            (
                "http://127.0.0.1:9464/metrics",
                "http://127.0.0.1:9464/metrics",
            ),
            ("http://node-1:9000/other", "http://node-1:9000/other"),
        ];
        for (given, want) in cases {
            let got = metrics_url(given).map(|uri| uri.to_string());
            assert_eq!(got.as_deref(), Ok(want), "metrics_url({given:?}): got/want");
        }
    }

    #[test]
    fn metrics_url_refuses_https_and_nonsense() {
        assert!(
            matches!(
                metrics_url("https://127.0.0.1:9464"),
                Err(UrlError::Scheme { .. })
            ),
            "got {:?}, want a scheme error",
            metrics_url("https://127.0.0.1:9464")
        );
        let got = metrics_url("not a url");
        assert!(
            matches!(got, Err(UrlError::Invalid { .. })),
            "got {got:?}, want invalid"
        );
    }

    #[tokio::test]
    async fn a_refused_connection_says_connection_refused() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
        let address = listener.local_addr().expect("its address");
        drop(listener);
        let fetcher = Fetcher::new(Duration::from_secs(5));
        let url = metrics_url(&address.to_string()).expect("a valid URL");
        let error = fetcher
            .get(&url)
            .await
            .expect_err("nothing listens on a dropped listener's port");
        assert_eq!(error.to_string(), "connection refused", "got {error:?}");
    }
}
