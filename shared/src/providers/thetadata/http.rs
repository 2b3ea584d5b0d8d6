//! The HTTP client of the terminal: what each status code means. The client, its timeout
//! and limit on requests in flight ([`crate::providers::http`]) and the bounded retries with
//! backoff, jitter and `Retry-After` ([`crate::providers::retry`]) are shared with every
//! HTTP provider.
//!
//! | answer | meaning | retried | final error |
//! |---|---|---|---|
//! | 200 with a readable body | data | — | — |
//! | 200 with a cut or malformed body, or a body cut short | transfer went wrong | yes | `Protocol` |
//! | 472 `NO_DATA` | nothing for this request | no | none: no rows |
//! | 471 `PERMISSION` | the account may not see this | no | `NoPermission` |
//! | 429 `OS_LIMIT`, 474 `DISCONNECTED`, 570 `LARGE_REQUEST`, 571 `SERVER_STARTING` | busy | yes | `RateLimited` |
//! | 500, 502, 503, 504, connection refused/reset, timeout | unreachable | yes | `Unavailable` |
//! | 410 (v2 parameter names) and any other status | we asked wrongly | no | `Protocol`, quoting the terminal |
//! | 404 or 410 from an endpoint a terminal may not serve ([`Call::optional`]: corporate events) | not served | no | none: no rows |

use std::time::Duration;

use reqwest::header::{ACCEPT, HeaderMap, HeaderValue};
use reqwest::{StatusCode, Url};

use super::parse::ParseError;
use super::request::Call;
use crate::providers::ProviderError;
use crate::providers::http::{Answer, HttpClient, TransportError, excerpt};
pub use crate::providers::retry::RetryPolicy;
use crate::providers::retry::{Failure, Transient, retry_after};

/// What a successful request returned.
#[derive(Debug)]
pub enum Reply<T> {
    Data(T),
    /// 472: the terminal has nothing for this request.
    NoData,
}

impl<T> Reply<Vec<T>> {
    /// The values, none on `NoData`.
    pub fn or_empty(self) -> Vec<T> {
        match self {
            Reply::Data(values) => values,
            Reply::NoData => Vec::new(),
        }
    }
}

/// The terminal's HTTP API.
#[derive(Debug)]
pub struct Terminal {
    http: HttpClient,
    base_url: String,
    retry: RetryPolicy,
}

impl Terminal {
    pub fn new(
        base_url: &str,
        concurrency: usize,
        timeout: Duration,
        connect_timeout: Duration,
        retry: RetryPolicy,
    ) -> Result<Self, String> {
        let base = Url::parse(base_url).map_err(|e| format!("'{base_url}' is not a URL: {e}"))?;
        Ok(Terminal {
            http: HttpClient::new(&base, timeout, connect_timeout, concurrency)?,
            base_url: base_url.trim_end_matches('/').to_string(),
            retry,
        })
    }

    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    fn url(&self, call: &Call) -> Result<Url, ProviderError> {
        let mut url = Url::parse(&format!("{}{}", self.base_url, call.path))
            .map_err(|e| ProviderError::Protocol(format!("bad request URL: {e}")))?;
        if !call.query.is_empty() {
            url.query_pairs_mut()
                .extend_pairs(call.query.iter().map(|(k, v)| (*k, v.as_str())));
        }
        Ok(url)
    }

    /// GET `call`, retrying what may succeed later ([`RetryPolicy`]), and parse a 200 body
    /// with `parse`. Every HTTP request made is added to `requests`.
    pub async fn get<T>(
        &self,
        call: &Call,
        requests: &mut u32,
        parse: impl Fn(&[u8]) -> Result<T, ParseError>,
    ) -> Result<Reply<T>, ProviderError> {
        let url = self.url(call)?;
        let what = format!("GET {}", call.describe());
        let headers =
            HeaderMap::from_iter([(ACCEPT, HeaderValue::from_static("application/json"))]);
        let (url, what, headers, parse) = (&url, what.as_str(), &headers, &parse);
        self.retry
            .run("ThetaData", what, requests, move || async move {
                let answer = self
                    .http
                    .get(url, headers)
                    .await
                    .map_err(|e| Failure::retry(self.transport(e)))?;
                self.answered(call, what, answer, parse)
            })
            .await
    }

    /// What a complete answer to `call` means for the retry loop.
    fn answered<T>(
        &self,
        call: &Call,
        what: &str,
        answer: Answer,
        parse: &impl Fn(&[u8]) -> Result<T, ParseError>,
    ) -> Result<Reply<T>, Failure> {
        if call.optional && matches!(answer.status.as_u16(), 404 | 410) {
            return Ok(Reply::NoData);
        }
        match self.judge(what, answer.status, &answer.body, parse) {
            Ok(Ok(reply)) => Ok(reply),
            Ok(Err(why)) => Err(Failure::Retry {
                why,
                retry_after: retry_after(&answer.headers),
            }),
            Err(error) => Err(Failure::Fatal(error)),
        }
    }

    fn transport(&self, error: TransportError) -> Transient {
        match error {
            TransportError::Connect(causes) => Transient::Unreachable(format!(
                "cannot connect to the ThetaData terminal at {} (is it running?): {causes}",
                self.base_url
            )),
            cut @ TransportError::BodyCut(_) => Transient::Garbled(cut.to_string()),
            other => Transient::Unreachable(other.to_string()),
        }
    }

    /// What a complete answer means: `Ok(Ok(reply))` done, `Ok(Err(_))` try again,
    /// `Err(_)` give up now.
    fn judge<T>(
        &self,
        what: &str,
        status: StatusCode,
        body: &[u8],
        parse: &impl Fn(&[u8]) -> Result<T, ParseError>,
    ) -> Result<Result<Reply<T>, Transient>, ProviderError> {
        let code = status.as_u16();
        let said = || format!("HTTP {code}: {}", excerpt(body));
        match code {
            200 => match parse(body) {
                Ok(value) => Ok(Ok(Reply::Data(value))),
                Err(e @ ParseError::Malformed(_)) => Ok(Err(Transient::Garbled(e.to_string()))),
                Err(e @ ParseError::Content(_)) => {
                    Err(ProviderError::Protocol(format!("{what}: {e}")))
                }
            },
            472 => Ok(Ok(Reply::NoData)),
            471 => Err(ProviderError::NoPermission(format!(
                "{what}: the ThetaData account lacks the subscription for this data ({})",
                said()
            ))),
            429 | 474 | 570 | 571 => Ok(Err(Transient::Busy(said()))),
            500 | 502 | 503 | 504 => Ok(Err(Transient::Unreachable(said()))),
            410 => Err(ProviderError::Protocol(format!(
                "{what}: the terminal rejected the request ({})",
                said()
            ))),
            _ => Err(ProviderError::Protocol(format!(
                "{what}: unexpected answer ({})",
                said()
            ))),
        }
    }
}
