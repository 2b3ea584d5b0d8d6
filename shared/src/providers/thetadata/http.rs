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

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
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
    pub async fn get<T, F>(
        &self,
        call: &Call,
        requests: &mut u32,
        parse: F,
    ) -> Result<Reply<T>, ProviderError>
    where
        T: Send + 'static,
        F: Fn(&[u8]) -> Result<T, ParseError> + Send + Sync + 'static,
    {
        let url = self.url(call)?;
        let what = format!("GET {}", call.describe());
        let headers =
            HeaderMap::from_iter([(ACCEPT, HeaderValue::from_static("application/json"))]);
        let parse = Arc::new(parse);
        let (url, what, headers, parse) = (&url, what.as_str(), &headers, &parse);
        self.retry
            .run("ThetaData", what, requests, move || async move {
                let answer = self
                    .http
                    .get(url, headers)
                    .await
                    .map_err(|e| Failure::retry(self.transport(e)))?;
                self.answered(call, what, answer, parse).await
            })
            .await
    }

    /// What a complete answer to `call` means for the retry loop.
    async fn answered<T, F>(
        &self,
        call: &Call,
        what: &str,
        answer: Answer,
        parse: &Arc<F>,
    ) -> Result<Reply<T>, Failure>
    where
        T: Send + 'static,
        F: Fn(&[u8]) -> Result<T, ParseError> + Send + Sync + 'static,
    {
        if call.optional && matches!(answer.status.as_u16(), 404 | 410) {
            return Ok(Reply::NoData);
        }
        let verdict = if answer.status == StatusCode::OK {
            read(what, parse_body(answer.body, parse).await)
        } else {
            self.judge(what, answer.status, &answer.body)
        };
        match verdict {
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

    /// What an answer other than 200 means: `Ok(Ok(reply))` done, `Ok(Err(_))` try again,
    /// `Err(_)` give up now.
    fn judge<T>(
        &self,
        what: &str,
        status: StatusCode,
        body: &[u8],
    ) -> Result<Result<Reply<T>, Transient>, ProviderError> {
        let code = status.as_u16();
        let said = || format!("HTTP {code}: {}", excerpt(body));
        match code {
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

/// What a 200 body read as: its value, a transfer to try again (malformed), or an answer
/// that will not change (unusable content).
fn read<T>(
    what: &str,
    parsed: Result<T, ParseError>,
) -> Result<Result<Reply<T>, Transient>, ProviderError> {
    match parsed {
        Ok(value) => Ok(Ok(Reply::Data(value))),
        Err(e @ ParseError::Malformed(_)) => Ok(Err(Transient::Garbled(e.to_string()))),
        Err(e @ ParseError::Content(_)) => Err(ProviderError::Protocol(format!("{what}: {e}"))),
    }
}

/// Bodies at least this long are parsed on the blocking pool, so the units a fill has in
/// flight are parsed on other cores while its own task merges the units before them; shorter
/// ones (lists, a day-bar window) are parsed in place, cheaper than the hand-off.
const PARSE_ELSEWHERE_BYTES: usize = 64 * 1024;

async fn parse_body<T, F>(body: Bytes, parse: &Arc<F>) -> Result<T, ParseError>
where
    T: Send + 'static,
    F: Fn(&[u8]) -> Result<T, ParseError> + Send + Sync + 'static,
{
    if body.len() < PARSE_ELSEWHERE_BYTES {
        return parse(&body);
    }
    let parse = Arc::clone(parse);
    match tokio::task::spawn_blocking(move || parse(&body)).await {
        Ok(parsed) => parsed,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(e) => Err(ParseError::Malformed(format!(
            "the body was not parsed: {e}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn thread_of_parse(
        len: usize,
    ) -> impl Fn(&[u8]) -> Result<(usize, std::thread::ThreadId), ParseError> {
        move |body| {
            assert_eq!(body.len(), len);
            Ok((body.len(), std::thread::current().id()))
        }
    }

    /// A long body is parsed on the blocking pool, off the task's thread; a short one in place.
    #[tokio::test]
    async fn long_bodies_are_parsed_off_the_task_and_short_ones_in_place() {
        let here = std::thread::current().id();
        for (len, elsewhere) in [
            (PARSE_ELSEWHERE_BYTES - 1, false),
            (PARSE_ELSEWHERE_BYTES, true),
        ] {
            let body = Bytes::from(vec![b' '; len]);
            let (read, thread) = parse_body(body, &Arc::new(thread_of_parse(len)))
                .await
                .unwrap();
            assert_eq!(read, len);
            assert_eq!(thread != here, elsewhere, "{len} bytes");
        }
        let malformed =
            |_: &[u8]| -> Result<(), ParseError> { Err(ParseError::Malformed("cut short".into())) };
        let body = Bytes::from(vec![b'{'; PARSE_ELSEWHERE_BYTES]);
        assert_eq!(
            parse_body(body, &Arc::new(malformed)).await,
            Err(ParseError::Malformed("cut short".into()))
        );
    }

    #[tokio::test]
    #[should_panic(expected = "a parser bug")]
    async fn a_parse_that_panics_off_the_task_panics_the_task() {
        let body = Bytes::from(vec![b'['; PARSE_ELSEWHERE_BYTES]);
        let buggy = |_: &[u8]| -> Result<(), ParseError> { panic!("a parser bug") };
        let _ = parse_body(body, &Arc::new(buggy)).await;
    }
}
