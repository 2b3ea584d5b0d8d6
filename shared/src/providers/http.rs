//! The HTTP pieces every HTTP provider shares: a client with a per-request timeout and a
//! limit on requests in flight, what went wrong below HTTP, and printable excerpts of
//! answers. What a status code means stays with each provider.

use std::error::Error as StdError;
use std::sync::OnceLock;
use std::time::Duration;

use bytes::Bytes;
use reqwest::header::HeaderMap;
use reqwest::{StatusCode, Url};
use tokio::sync::Semaphore;

/// A complete answer: status, headers and the whole body.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// Why a request got no complete answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransportError {
    /// Nothing complete arrived within the request timeout.
    Timeout(Duration),
    /// No connection could be made (refused, unresolvable, TLS handshake).
    Connect(String),
    /// The body ended before its announced length (the connection closed mid-body).
    BodyCut(String),
    /// Anything else below HTTP (a reset before the answer, …).
    Other(String),
}

impl std::fmt::Display for TransportError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TransportError::Timeout(timeout) => {
                write!(f, "no complete answer within {} s", timeout.as_secs_f64())
            }
            TransportError::Connect(causes) => write!(f, "cannot connect: {causes}"),
            TransportError::BodyCut(causes) => write!(f, "the body was cut short: {causes}"),
            TransportError::Other(causes) => f.write_str(causes),
        }
    }
}

/// An HTTP client for one upstream. Every request holds one of `concurrency` permits while
/// it is in flight, so a process never has more than that many requests open to it.
///
/// What TLS costs is paid only where it is used. An upstream reached over plain http (a
/// ThetaData terminal, a replay server) gets a client without certificate roots. An https
/// upstream's client, whose roots are the system's (read from disk and parsed, a few
/// milliseconds), is built on its first request, so a process that never calls it never
/// reads them.
#[derive(Debug)]
pub struct HttpClient {
    client: OnceLock<Result<reqwest::Client, String>>,
    tls: bool,
    permits: Semaphore,
    timeout: Duration,
    connect_timeout: Duration,
}

impl HttpClient {
    /// A client for the upstream at `base`. `timeout` bounds one request, body included.
    /// `Err` says why the client cannot be built.
    pub fn new(
        base: &Url,
        timeout: Duration,
        connect_timeout: Duration,
        concurrency: usize,
    ) -> Result<Self, String> {
        let client = HttpClient {
            client: OnceLock::new(),
            tls: base.scheme() != "http",
            permits: Semaphore::new(concurrency.max(1)),
            timeout,
            connect_timeout,
        };
        if !client.tls {
            // Cheap without roots: built now, so a bad build fails at start.
            client.client().map_err(|e| e.to_string())?;
        }
        Ok(client)
    }

    /// Whether the reqwest client exists yet (an https one is built on first use).
    pub fn is_built(&self) -> bool {
        self.client.get().is_some()
    }

    fn client(&self) -> Result<&reqwest::Client, TransportError> {
        self.client
            .get_or_init(|| {
                let builder = reqwest::Client::builder()
                    .timeout(self.timeout)
                    .connect_timeout(self.connect_timeout)
                    // Environment proxies are ignored: the upstreams are reached directly.
                    .no_proxy();
                let builder = if self.tls {
                    builder
                } else {
                    builder.tls_certs_only(Vec::new())
                };
                builder.build().map_err(|e| with_causes(&e))
            })
            .as_ref()
            .map_err(|e| TransportError::Connect(format!("cannot set up the HTTP client: {e}")))
    }

    /// GET `url` with `headers` and read the whole answer.
    pub async fn get(&self, url: &Url, headers: &HeaderMap) -> Result<Answer, TransportError> {
        let _permit = self
            .permits
            .acquire()
            .await
            .expect("the semaphore is never closed");
        let response = self
            .client()?
            .get(url.clone())
            .headers(headers.clone())
            .send()
            .await
            .map_err(|e| self.transport(&e, false))?;
        let status = response.status();
        let headers = response.headers().clone();
        let body = response
            .bytes()
            .await
            .map_err(|e| self.transport(&e, true))?;
        Ok(Answer {
            status,
            headers,
            body,
        })
    }

    fn transport(&self, error: &reqwest::Error, reading_body: bool) -> TransportError {
        if error.is_timeout() {
            TransportError::Timeout(self.timeout)
        } else if error.is_connect() {
            TransportError::Connect(with_causes(error))
        } else if reading_body {
            TransportError::BodyCut(with_causes(error))
        } else {
            TransportError::Other(with_causes(error))
        }
    }
}

/// A short, printable excerpt of a body for error messages (400 characters at most).
pub fn excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    let mut out: String = text.chars().take(400).collect();
    if out.len() < text.len() {
        out.push('…');
    }
    out
}

/// An error and its causes, which reqwest keeps apart.
pub fn with_causes(error: &dyn StdError) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn excerpts_are_trimmed_and_cut_at_400_characters() {
        assert_eq!(excerpt(b"  busy \n"), "busy");
        let long = "é".repeat(500);
        let cut = excerpt(long.as_bytes());
        assert_eq!(cut.chars().count(), 401);
        assert!(cut.ends_with('…'));
    }

    fn client_for(base: &str) -> HttpClient {
        let base = parse_base(base).unwrap();
        HttpClient::new(&base, Duration::from_secs(5), Duration::from_secs(1), 2).unwrap()
    }

    #[test]
    fn an_https_client_reads_its_roots_on_its_first_request_not_before() {
        assert!(!client_for("https://api.polygon.io").is_built());
        // A plain-http upstream's client has no roots to read, and is built at once.
        assert!(client_for("http://127.0.0.1:25503").is_built());
    }

    #[tokio::test]
    async fn a_first_request_builds_the_https_client() {
        let client = client_for("https://127.0.0.1:9");
        let url = Url::parse("https://127.0.0.1:9/v1").unwrap();
        let refused = client.get(&url, &HeaderMap::new()).await.unwrap_err();
        assert!(matches!(refused, TransportError::Connect(_)), "{refused:?}");
        assert!(client.is_built());
    }
}

/// Why a provider's base URL cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadBaseUrl {
    pub url: String,
    pub reason: String,
}

/// A provider's base URL parsed, without a trailing `/`; http or https only, no query or
/// fragment.
pub fn parse_base(base_url: &str) -> Result<Url, BadBaseUrl> {
    let trimmed = base_url.trim().trim_end_matches('/');
    let bad = |reason: String| BadBaseUrl {
        url: trimmed.to_string(),
        reason,
    };
    let url = Url::parse(trimmed).map_err(|e| bad(e.to_string()))?;
    if !matches!(url.scheme(), "http" | "https") || url.cannot_be_a_base() {
        return Err(bad("not an http:// or https:// URL".into()));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(bad("a base URL has no query or fragment".into()));
    }
    Ok(url)
}
