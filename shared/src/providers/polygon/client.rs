//! The HTTP client of Polygon's REST API: the bearer key on every request, what each
//! status code means, and pages followed along `next_url`.
//!
//! | answer | retried | final error |
//! |---|---|---|
//! | 200 with a page (`status` `OK` or `DELAYED`) | — | — |
//! | 200 with a cut or non-JSON body, a body cut short | yes | `Unavailable` |
//! | 200 with JSON of another shape, or another `status` | no | `Protocol` |
//! | 401, 403 | no | `NoPermission` (the key or its plan does not cover the data) |
//! | 429 | yes, honouring `Retry-After` | `RateLimited` |
//! | 5xx, connection refused or reset, timeout | yes | `Unavailable` |
//! | 404 and any other status | no | `Protocol` (we asked for something that does not exist) |
//!
//! The key never appears in a URL, a log line or an error: it travels in a sensitive
//! `Authorization` header, and every message is scrubbed of it before it leaves.

use std::collections::HashSet;
use std::time::Duration;

use reqwest::header::{ACCEPT, AUTHORIZATION, HeaderMap, HeaderValue};
use reqwest::{StatusCode, Url};
use serde::de::DeserializeOwned;

use super::parse::{self, Page, ParseError};
use crate::providers::ProviderError;
use crate::providers::http::{Answer, HttpClient, TransportError, excerpt};
use crate::providers::retry::{Failure, RetryPolicy, Transient, retry_after};
use crate::settings::Secret;

/// Why the client could not be built; never quotes the key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientError {
    #[error("'{url}' is not a usable base URL: {reason}")]
    BaseUrl { url: String, reason: String },
    #[error(
        "the API key cannot be sent in an HTTP header (it has control or non-ASCII characters)"
    )]
    Key,
    #[error("cannot set up the HTTP client: {0}")]
    Http(String),
}

/// Polygon's REST API at one base URL, as one key.
pub struct Client {
    http: HttpClient,
    base: Url,
    headers: HeaderMap,
    key: Secret,
    retry: RetryPolicy,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("base", &self.base.as_str())
            .field("key", &self.key)
            .field("retry", &self.retry)
            .finish_non_exhaustive()
    }
}

impl Client {
    pub fn new(
        base_url: &str,
        key: Secret,
        concurrency: usize,
        timeout: Duration,
        connect_timeout: Duration,
        retry: RetryPolicy,
    ) -> Result<Self, ClientError> {
        let base = base(base_url)?;
        let mut authorization = HeaderValue::from_str(&format!("Bearer {}", key.expose()))
            .map_err(|_| ClientError::Key)?;
        authorization.set_sensitive(true);
        let headers = HeaderMap::from_iter([
            (AUTHORIZATION, authorization),
            (ACCEPT, HeaderValue::from_static("application/json")),
        ]);
        Ok(Client {
            http: HttpClient::new(&base, timeout, connect_timeout, concurrency)
                .map_err(ClientError::Http)?,
            base,
            headers,
            key,
            retry,
        })
    }

    /// The base URL, without a trailing `/`.
    pub fn base_url(&self) -> &str {
        self.base.as_str().trim_end_matches('/')
    }

    /// `{base}/{segments…}?{query}`; each segment is percent-encoded as a path segment.
    pub fn url<S: AsRef<str>>(&self, segments: &[S], query: &[(&str, String)]) -> Url {
        let mut url = self.base.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(segments);
        }
        if !query.is_empty() {
            url.query_pairs_mut()
                .extend_pairs(query.iter().map(|(k, v)| (*k, v.as_str())));
        }
        url
    }

    /// Every page from `first` along `next_url`, each page's results handed to `each` in
    /// order. Every HTTP request made (pages and retries) is added to `requests`.
    pub async fn pages<T: DeserializeOwned>(
        &self,
        first: Url,
        requests: &mut u32,
        mut each: impl FnMut(Vec<T>) -> Result<(), ProviderError>,
    ) -> Result<(), ProviderError> {
        let mut seen = HashSet::new();
        let mut next = Some(first);
        while let Some(url) = next.take() {
            if !seen.insert(url.clone()) {
                return Err(self.scrub(ProviderError::Protocol(format!(
                    "GET {}: next_url leads back to a page already read",
                    url.path()
                ))));
            }
            let page: Page<T> = self.page(&url, requests).await.map_err(|e| self.scrub(e))?;
            each(page.results)?;
            next = page
                .next_url
                .map(|n| self.follow(&url, &n))
                .transpose()
                .map_err(|e| self.scrub(e))?;
        }
        Ok(())
    }

    /// One page, retried as the policy says. Each failed attempt is scrubbed before the
    /// retry loop sees it, because the loop logs why it retries.
    async fn page<T: DeserializeOwned>(
        &self,
        url: &Url,
        requests: &mut u32,
    ) -> Result<Page<T>, ProviderError> {
        let what = format!("GET {}", url.path());
        let (what, headers) = (what.as_str(), &self.headers);
        self.retry
            .run("Polygon", what, requests, move || async move {
                let answer = self
                    .http
                    .get(url, headers)
                    .await
                    .map_err(|e| self.scrub_failure(Failure::retry(self.transport(e))))?;
                judge(what, answer).map_err(|f| self.scrub_failure(f))
            })
            .await
    }

    /// The URL of the page `next_url` names, always at the configured origin: a next_url
    /// there is followed as it is; one elsewhere (Polygon's own host behind a proxy, a
    /// renamed host) is followed with its path and query under the base URL, so the key only
    /// ever goes where it was configured to go.
    fn follow(&self, current: &Url, next_url: &str) -> Result<Url, ProviderError> {
        let next = Url::parse(next_url)
            .or_else(|_| current.join(next_url))
            .map_err(|e| {
                ProviderError::Protocol(format!(
                    "GET {}: next_url is not a URL: {e}",
                    current.path()
                ))
            })?;
        let path = if next.origin() == self.base.origin() {
            next.path().to_string()
        } else {
            format!("{}{}", self.base.path().trim_end_matches('/'), next.path())
        };
        let mut url = self.base.clone();
        url.set_path(&path);
        url.set_query(next.query());
        Ok(url)
    }

    fn transport(&self, error: TransportError) -> Transient {
        match error {
            TransportError::Connect(causes) => Transient::Unreachable(format!(
                "cannot connect to Polygon at {}: {causes}",
                self.base.origin().ascii_serialization()
            )),
            other => Transient::Unreachable(other.to_string()),
        }
    }

    /// `text` with every occurrence of the key replaced, as is or percent-encoded (an
    /// upstream may quote it either way).
    fn clean(&self, text: String) -> String {
        let key = self.key.expose();
        if key.is_empty() {
            return text;
        }
        key_spellings(key)
            .iter()
            .fold(text, |text, spelling| text.replace(spelling, "<redacted>"))
    }

    /// The error with every occurrence of the key replaced.
    fn scrub(&self, error: ProviderError) -> ProviderError {
        let clean = |text: String| self.clean(text);
        match error {
            ProviderError::NoPermission(m) => ProviderError::NoPermission(clean(m)),
            ProviderError::RateLimited(m) => ProviderError::RateLimited(clean(m)),
            ProviderError::Unavailable(m) => ProviderError::Unavailable(clean(m)),
            ProviderError::Unsupported(m) => ProviderError::Unsupported(clean(m)),
            ProviderError::Protocol(m) => ProviderError::Protocol(clean(m)),
        }
    }

    /// A failed attempt with every occurrence of the key replaced.
    fn scrub_failure(&self, failure: Failure) -> Failure {
        match failure {
            Failure::Fatal(error) => Failure::Fatal(self.scrub(error)),
            Failure::Retry { why, retry_after } => Failure::Retry {
                why: match why {
                    Transient::Busy(m) => Transient::Busy(self.clean(m)),
                    Transient::Unreachable(m) => Transient::Unreachable(self.clean(m)),
                    Transient::Garbled(m) => Transient::Garbled(self.clean(m)),
                },
                retry_after,
            },
        }
    }
}

/// `key` as is and percent-encoded: every byte but the unreserved ones (or but letters and
/// digits), in upper- and lower-case hex; longest first, so no spelling is cut by another.
fn key_spellings(key: &str) -> Vec<String> {
    let encode = |keep: &[u8], upper: bool| -> String {
        key.bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() || keep.contains(&b) {
                    char::from(b).to_string()
                } else if upper {
                    format!("%{b:02X}")
                } else {
                    format!("%{b:02x}")
                }
            })
            .collect()
    };
    let mut spellings = vec![key.to_string()];
    for keep in [&b"-._~"[..], &[]] {
        for upper in [true, false] {
            spellings.push(encode(keep, upper));
        }
    }
    spellings.sort_by_key(|s| std::cmp::Reverse(s.len()));
    spellings.dedup();
    spellings
}

/// What a complete answer means for the retry loop.
fn judge<T: DeserializeOwned>(what: &str, answer: Answer) -> Result<Page<T>, Failure> {
    let code = answer.status.as_u16();
    let said = || format!("HTTP {code}: {}", excerpt(&answer.body));
    match answer.status {
        StatusCode::OK => parse::page(&answer.body).map_err(|e| match e {
            ParseError::Unreadable(_) => Failure::retry(Transient::Unreachable(e.to_string())),
            ParseError::Shape(_) => Failure::Fatal(ProviderError::Protocol(format!("{what}: {e}"))),
        }),
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
            Err(Failure::Fatal(ProviderError::NoPermission(format!(
                "{what}: Polygon refused the request ({}); the API key or its plan does not \
                 cover this data",
                said()
            ))))
        }
        StatusCode::TOO_MANY_REQUESTS => Err(Failure::Retry {
            why: Transient::Busy(said()),
            retry_after: retry_after(&answer.headers),
        }),
        status if status.is_server_error() => Err(Failure::Retry {
            why: Transient::Unreachable(said()),
            retry_after: retry_after(&answer.headers),
        }),
        // The aggregates endpoint answers an unknown ticker or an empty range with 200 and no
        // results; a 404 means the route itself does not exist (a wrong base URL or path),
        // which placeholders would hide for good.
        StatusCode::NOT_FOUND => Err(Failure::Fatal(ProviderError::Protocol(format!(
            "{what}: no such endpoint ({})",
            said()
        )))),
        _ => Err(Failure::Fatal(ProviderError::Protocol(format!(
            "{what}: unexpected answer ({})",
            said()
        )))),
    }
}

/// The base URL parsed, without a trailing `/`; http or https only.
fn base(base_url: &str) -> Result<Url, ClientError> {
    crate::providers::http::parse_base(base_url).map_err(|bad| ClientError::BaseUrl {
        url: bad.url,
        reason: bad.reason,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(base_url: &str) -> Client {
        Client::new(
            base_url,
            Secret::new("pk-secret-123"),
            1,
            Duration::from_secs(1),
            Duration::from_secs(1),
            RetryPolicy::default(),
        )
        .unwrap()
    }

    #[test]
    fn urls_are_built_under_the_base_path() {
        let plain = client("https://api.polygon.io/");
        assert_eq!(plain.base_url(), "https://api.polygon.io");
        let url = plain.url(
            &["v2", "aggs", "ticker", "O:SPY241122C00340000"],
            &[("limit", "50000".into())],
        );
        assert_eq!(
            url.as_str(),
            "https://api.polygon.io/v2/aggs/ticker/O:SPY241122C00340000?limit=50000"
        );
        let proxied = client("http://127.0.0.1:9/polygon/");
        assert_eq!(
            proxied.url(&["v3", "quotes", "AAPL"], &[]).as_str(),
            "http://127.0.0.1:9/polygon/v3/quotes/AAPL"
        );
    }

    #[test]
    fn next_url_is_always_followed_at_the_configured_origin() {
        let proxied = client("http://127.0.0.1:9/polygon");
        let current = proxied.url(&["v3", "quotes", "AAPL"], &[]);
        let same = proxied
            .follow(
                &current,
                "http://127.0.0.1:9/polygon/v3/quotes/AAPL?cursor=abc",
            )
            .unwrap();
        assert_eq!(
            same.as_str(),
            "http://127.0.0.1:9/polygon/v3/quotes/AAPL?cursor=abc"
        );
        let elsewhere = proxied
            .follow(&current, "https://api.polygon.io/v3/quotes/AAPL?cursor=abc")
            .unwrap();
        assert_eq!(
            elsewhere.as_str(),
            "http://127.0.0.1:9/polygon/v3/quotes/AAPL?cursor=abc"
        );
        // A port that merely starts like the base's is another origin.
        let lookalike = proxied
            .follow(&current, "http://127.0.0.1:90/v3/quotes/AAPL?cursor=x")
            .unwrap();
        assert_eq!(
            lookalike.as_str(),
            "http://127.0.0.1:9/polygon/v3/quotes/AAPL?cursor=x"
        );
    }

    #[test]
    fn bad_base_urls_and_keys_are_refused_without_quoting_the_key() {
        for url in ["api.polygon.io", "ftp://x", "https://api.polygon.io/?a=1"] {
            let error = Client::new(
                url,
                Secret::new("k"),
                1,
                Duration::from_secs(1),
                Duration::from_secs(1),
                RetryPolicy::default(),
            )
            .unwrap_err();
            assert!(
                matches!(error, ClientError::BaseUrl { .. }),
                "{url}: {error}"
            );
        }
        let error = Client::new(
            "https://api.polygon.io",
            Secret::new("pk-secret\n123"),
            1,
            Duration::from_secs(1),
            Duration::from_secs(1),
            RetryPolicy::default(),
        )
        .unwrap_err();
        assert_eq!(error, ClientError::Key);
        assert!(!error.to_string().contains("pk-secret"));
    }

    #[test]
    fn errors_are_scrubbed_of_the_key() {
        let client = client("https://api.polygon.io");
        let error = client.scrub(ProviderError::NoPermission(
            "HTTP 401: key pk-secret-123 unknown".into(),
        ));
        assert_eq!(
            error.to_string(),
            "upstream refused permission: HTTP 401: key <redacted> unknown"
        );
        let debug = format!("{client:?}");
        assert!(!debug.contains("pk-secret-123"), "{debug}");
    }

    #[test]
    fn a_retried_attempt_and_an_encoded_key_are_scrubbed_too() {
        let client = Client::new(
            "https://api.polygon.io",
            Secret::new("pk/e2e+key=1"),
            1,
            Duration::from_secs(1),
            Duration::from_secs(1),
            RetryPolicy::default(),
        )
        .expect("a client");
        // What the retry loop logs before it tries again.
        let retried = client.scrub_failure(Failure::retry(Transient::Unreachable(
            "HTTP 500: echo pk/e2e+key=1 and pk%2Fe2e%2Bkey%3D1 and pk%2fe2e%2bkey%3d1".into(),
        )));
        let Failure::Retry { why, .. } = retried else {
            panic!("a retry stays a retry");
        };
        assert_eq!(
            format!("{why:?}"),
            r#"Unreachable("HTTP 500: echo <redacted> and <redacted> and <redacted>")"#
        );
        let fatal = client.scrub_failure(Failure::Fatal(ProviderError::NoPermission(
            "HTTP 401: pk%2Fe2e%2Bkey%3D1".into(),
        )));
        let Failure::Fatal(error) = fatal else {
            panic!("a fatal failure stays fatal");
        };
        assert_eq!(
            error.to_string(),
            "upstream refused permission: HTTP 401: <redacted>"
        );
    }
}
