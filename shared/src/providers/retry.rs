//! The one retry policy of every HTTP provider: bounded attempts, exponential backoff with
//! jitter, `Retry-After` honoured up to a cap, and every attempt counted.
//!
//! A provider judges each attempt (its status codes mean different things); this module
//! decides how often and how long to wait, and what an exhausted retry is reported as.

use std::future::Future;
use std::time::Duration;

use reqwest::header::{HeaderMap, RETRY_AFTER};

use super::ProviderError;

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

/// Why one attempt failed when another attempt may succeed, by what it becomes when none
/// does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transient {
    /// The upstream says it is busy (rate limits): `RateLimited` in the end.
    Busy(String),
    /// No usable answer (5xx, connection refused or reset, timeout): `Unavailable`.
    Unreachable(String),
    /// An answer that could not be read: `Protocol` in the end.
    Garbled(String),
}

impl Transient {
    /// The error reported for `what` after `attempts` attempts ended like this one.
    pub fn into_error(self, what: &str, attempts: u32) -> ProviderError {
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

/// How an attempt that did not deliver ended.
#[derive(Debug, Clone)]
pub enum Failure {
    /// Another attempt cannot help: report this now.
    Fatal(ProviderError),
    /// Another attempt may succeed, not before `retry_after` when the upstream named a wait.
    Retry {
        why: Transient,
        retry_after: Option<Duration>,
    },
}

impl Failure {
    /// A transient failure without a wait named by the upstream.
    pub fn retry(why: Transient) -> Self {
        Failure::Retry {
            why,
            retry_after: None,
        }
    }
}

impl RetryPolicy {
    /// Wait before attempt `attempt + 1`: exponential with jitter in [½, 1] of the step,
    /// and at least the upstream's `Retry-After` (cut to [`RetryPolicy::max_retry_after`]).
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

    /// Run `attempt` until it delivers, fails for good, or [`RetryPolicy::max_attempts`]
    /// attempts have failed; each attempt is added to `requests`. `what` names the request
    /// in errors and logs (never a secret), `upstream` the provider in logs.
    pub async fn run<T, F, Fut>(
        &self,
        upstream: &str,
        what: &str,
        requests: &mut u32,
        mut attempt: F,
    ) -> Result<T, ProviderError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, Failure>>,
    {
        let mut attempts = 0;
        loop {
            attempts += 1;
            *requests += 1;
            let (why, retry_after) = match attempt().await {
                Ok(value) => return Ok(value),
                Err(Failure::Fatal(error)) => return Err(error),
                Err(Failure::Retry { why, retry_after }) => (why, retry_after),
            };
            if attempts >= self.max_attempts {
                return Err(why.into_error(what, attempts));
            }
            let wait = self.delay(attempts, retry_after);
            tracing::warn!(upstream, request = %what, attempt = attempts, ?wait, reason = ?why, "upstream request failed; retrying");
            tokio::time::sleep(wait).await;
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

/// The `Retry-After` of an answer, if it has a readable one.
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
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

    fn quick(max_attempts: u32) -> RetryPolicy {
        RetryPolicy {
            max_attempts,
            base_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(2),
            max_retry_after: Duration::from_millis(5),
        }
    }

    #[tokio::test]
    async fn run_counts_every_attempt_and_stops_at_the_limit() {
        let mut requests = 0;
        let error = quick(3)
            .run("test", "GET /x", &mut requests, || async {
                Err::<(), _>(Failure::retry(Transient::Unreachable("HTTP 503".into())))
            })
            .await
            .unwrap_err();
        assert_eq!(requests, 3);
        assert!(matches!(error, ProviderError::Unavailable(_)), "{error}");
        assert_eq!(
            error.to_string(),
            "upstream unavailable: GET /x: failed 3 attempts: HTTP 503"
        );
    }

    #[tokio::test]
    async fn run_returns_at_the_first_success_or_fatal_failure() {
        let mut requests = 0;
        let mut left = 2;
        let value = quick(5)
            .run("test", "GET /x", &mut requests, || {
                left -= 1;
                let busy = left > 0;
                async move {
                    if busy {
                        Err(Failure::Retry {
                            why: Transient::Busy("HTTP 429".into()),
                            retry_after: Some(Duration::from_millis(1)),
                        })
                    } else {
                        Ok(7)
                    }
                }
            })
            .await
            .unwrap();
        assert_eq!((value, requests), (7, 2));

        let mut requests = 0;
        let error = quick(5)
            .run("test", "GET /x", &mut requests, || async {
                Err::<(), _>(Failure::Fatal(ProviderError::NoPermission("no".into())))
            })
            .await
            .unwrap_err();
        assert_eq!(requests, 1);
        assert!(matches!(error, ProviderError::NoPermission(_)));
    }

    #[test]
    fn exhausted_transients_become_their_errors() {
        let busy = Transient::Busy("HTTP 429".into()).into_error("GET /a", 1);
        assert_eq!(
            busy.to_string(),
            "upstream rate limit: GET /a: still busy after 1 attempt: HTTP 429"
        );
        let garbled = Transient::Garbled("cut".into()).into_error("GET /a", 2);
        assert!(matches!(garbled, ProviderError::Protocol(_)));
        assert!(
            garbled
                .to_string()
                .contains("unreadable answer after 2 attempts: cut")
        );
    }
}
