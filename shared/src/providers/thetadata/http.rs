//! The HTTP client of the terminal: per-request timeout, a limit on requests in flight,
//! bounded retries with exponential backoff and jitter (honouring `Retry-After`), and what
//! each status code means.
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

use std::error::Error as StdError;
use std::time::Duration;

use bytes::Bytes;
use reqwest::header::{ACCEPT, HeaderMap, RETRY_AFTER};
use reqwest::{StatusCode, Url};
use tokio::sync::Semaphore;

use super::parse::ParseError;
use super::request::Call;
use crate::providers::ProviderError;

/// How often and how patiently a request is retried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts per request, the first included.
    pub max_attempts: u32,
    /// Backoff before the second attempt; it doubles per attempt (with jitter).
    pub base_delay: Duration,
    /// Backoff never exceeds this (before `Retry-After` is applied).
    pub max_delay: Duration,
    /// A `Retry-After` longer than this is cut to this.
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 5,
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(20),
            max_retry_after: Duration::from_secs(60),
        }
    }
}

impl RetryPolicy {
    /// Wait before attempt `attempt + 1`: exponential with jitter in [½, 1] of the step,
    /// and at least the terminal's `Retry-After`.
    pub fn delay(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        let step = self
            .base_delay
            .saturating_mul(2u32.saturating_pow(attempt.saturating_sub(1)))
            .min(self.max_delay);
        let jittered = step.mul_f64(0.5 + fastrand::f64() * 0.5);
        match retry_after {
            Some(wait) => wait.min(self.max_retry_after).max(jittered),
            None => jittered,
        }
    }
}

/// `Retry-After` as delta-seconds or an HTTP date.
pub fn parse_retry_after(value: &str, now: chrono::DateTime<chrono::Utc>) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    Some((at.to_utc() - now).to_std().unwrap_or(Duration::ZERO))
}

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

/// Why one attempt failed, when another attempt may succeed.
#[derive(Debug)]
enum Transient {
    Busy(String),
    Unreachable(String),
    Garbled(String),
}

impl Transient {
    fn into_error(self, what: &str, attempts: u32) -> ProviderError {
        let tries = if attempts == 1 {
            "1 attempt".to_string()
        } else {
            format!("{attempts} attempts")
        };
        match self {
            Transient::Busy(m) => {
                ProviderError::RateLimited(format!("{what}: still busy after {tries}: {m}"))
            }
            Transient::Unreachable(m) => {
                ProviderError::Unavailable(format!("{what}: failed {tries}: {m}"))
            }
            Transient::Garbled(m) => {
                ProviderError::Protocol(format!("{what}: unreadable answer after {tries}: {m}"))
            }
        }
    }
}

/// A short, printable excerpt of a body for error messages.
fn excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    let mut out: String = text.chars().take(400).collect();
    if out.len() < text.len() {
        out.push('…');
    }
    out
}

/// An error and its causes, which reqwest keeps apart.
fn with_causes(error: &dyn StdError) -> String {
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

/// The terminal's HTTP API.
#[derive(Debug)]
pub struct Terminal {
    client: reqwest::Client,
    base_url: String,
    permits: Semaphore,
    retry: RetryPolicy,
    timeout: Duration,
}

impl Terminal {
    pub fn new(
        base_url: &str,
        concurrency: usize,
        timeout: Duration,
        connect_timeout: Duration,
        retry: RetryPolicy,
    ) -> Result<Self, String> {
        Url::parse(base_url).map_err(|e| format!("'{base_url}' is not a URL: {e}"))?;
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(connect_timeout)
            // The terminal listens on this machine or a private network; a proxy from the
            // environment would only stand in the way.
            .no_proxy()
            .build()
            .map_err(|e| with_causes(&e))?;
        Ok(Terminal {
            client,
            base_url: base_url.trim_end_matches('/').to_string(),
            permits: Semaphore::new(concurrency.max(1)),
            retry,
            timeout,
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

    /// GET `call`, retrying what may succeed later, and parse a 200 body with `parse`.
    /// Every HTTP request made is added to `requests`.
    pub async fn get<T>(
        &self,
        call: &Call,
        requests: &mut u32,
        parse: impl Fn(&[u8]) -> Result<T, ParseError>,
    ) -> Result<Reply<T>, ProviderError> {
        let url = self.url(call)?;
        let what = format!("GET {}", call.describe());
        let mut attempt = 0;
        loop {
            attempt += 1;
            *requests += 1;
            let (transient, retry_after) = match self.attempt(&url).await {
                Ok((status, _, _)) if call.optional && matches!(status.as_u16(), 404 | 410) => {
                    return Ok(Reply::NoData);
                }
                Ok((status, headers, body)) => match self.judge(&what, status, &body, &parse)? {
                    Ok(reply) => return Ok(reply),
                    Err(transient) => (transient, retry_after(&headers)),
                },
                Err(transient) => (transient, None),
            };
            if attempt >= self.retry.max_attempts {
                return Err(transient.into_error(&what, attempt));
            }
            let wait = self.retry.delay(attempt, retry_after);
            tracing::warn!(request = %what, attempt, ?wait, reason = ?transient, "ThetaData request failed; retrying");
            tokio::time::sleep(wait).await;
        }
    }

    /// One request, holding a concurrency permit while it is in flight.
    async fn attempt(&self, url: &Url) -> Result<(StatusCode, HeaderMap, Bytes), Transient> {
        let _permit = self
            .permits
            .acquire()
            .await
            .expect("the semaphore is never closed");
        let response = self
            .client
            .get(url.clone())
            .header(ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| self.transport(&e, false))?;
        let status = response.status();
        let headers = response.headers().clone();
        let body = response
            .bytes()
            .await
            .map_err(|e| self.transport(&e, true))?;
        Ok((status, headers, body))
    }

    fn transport(&self, error: &reqwest::Error, reading_body: bool) -> Transient {
        if error.is_timeout() {
            return Transient::Unreachable(format!(
                "no complete answer within {} s",
                self.timeout.as_secs_f64()
            ));
        }
        if error.is_connect() {
            return Transient::Unreachable(format!(
                "cannot connect to the ThetaData terminal at {} (is it running?): {}",
                self.base_url,
                with_causes(error)
            ));
        }
        if reading_body {
            Transient::Garbled(format!("the body was cut short: {}", with_causes(error)))
        } else {
            Transient::Unreachable(with_causes(error))
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

fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    headers
        .get(RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| parse_retry_after(v, chrono::Utc::now()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn retry_after_reads_seconds_and_http_dates() {
        let now = chrono::Utc.with_ymd_and_hms(2026, 1, 10, 20, 0, 0).unwrap();
        assert_eq!(parse_retry_after(" 7 ", now), Some(Duration::from_secs(7)));
        assert_eq!(
            parse_retry_after("Sat, 10 Jan 2026 20:00:30 GMT", now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            parse_retry_after("Sat, 10 Jan 2026 19:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", now), None);
    }

    #[test]
    fn backoff_doubles_with_jitter_and_respects_retry_after() {
        let policy = RetryPolicy {
            max_attempts: 5,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(350),
            max_retry_after: Duration::from_secs(2),
        };
        for _ in 0..100 {
            let first = policy.delay(1, None);
            assert!(first >= Duration::from_millis(50) && first <= Duration::from_millis(100));
            let third = policy.delay(3, None);
            assert!(third >= Duration::from_millis(175) && third <= Duration::from_millis(350));
            assert_eq!(
                policy.delay(1, Some(Duration::from_secs(1))),
                Duration::from_secs(1)
            );
            assert_eq!(
                policy.delay(1, Some(Duration::from_secs(90))),
                Duration::from_secs(2)
            );
        }
        assert!(policy.delay(40, None) <= Duration::from_millis(350));
        // Jitter spreads the waits of clients that failed together.
        let waits: std::collections::BTreeSet<Duration> =
            (0..100).map(|_| policy.delay(2, None)).collect();
        assert!(waits.len() > 50, "only {} distinct waits", waits.len());
    }
}
