//! The HTTP client of Binance's spot REST API: `GET /api/v3/aggTrades` within the weight
//! budget ([`super::limit`]), what each status code means, and the retries.
//!
//! | answer | retried | final error |
//! |---|---|---|
//! | 200 with an array of trades | — | — |
//! | 200 with a cut or non-JSON body, a body cut short | yes | `Unavailable` |
//! | 200 with JSON of another shape | no | `Protocol`, naming the trade and field |
//! | 400 | no | `Protocol` with Binance's `code` and `msg` |
//! | 403 (Binance's web application firewall) | no | `NoPermission` |
//! | 429 | yes, every request of the provider blocked until `Retry-After` | `RateLimited` |
//! | 418 (an IP ban) | as 429 when `Retry-After` is within the policy's cap, else not | `RateLimited` |
//! | 451 (a restricted location) | no | `NoPermission`, naming `BINANCE_BASE_URL` |
//! | 5xx, connection refused or reset, timeout | yes | `Unavailable` |
//! | any other status | no | `Protocol` |
//!
//! Every answer's `X-MBX-USED-WEIGHT-1M` is handed to the limiter, whatever its status.

use reqwest::header::{ACCEPT, HeaderMap, HeaderValue};
use reqwest::{StatusCode, Url};
use tokio::sync::Semaphore;
use tokio::time::Instant;

use super::BinanceConfig;
use super::limit::{AGG_TRADES_WEIGHT, USED_WEIGHT_HEADER, WeightLimiter};
use super::parse::{self, ParseError};
use crate::providers::ProviderError;
use crate::providers::http::{Answer, HttpClient, TransportError, excerpt};
use crate::providers::retry::{Failure, RetryPolicy, Transient, retry_after};
use crate::settings::BINANCE_BASE_URL;
use crate::trades::AggTrade;

/// The most trades one page may hold (Binance's maximum `limit`).
pub const PAGE_LIMIT: u32 = 1000;

/// Binance refuses a `startTime`..`endTime` window of an hour or more; both ends count.
pub const MAX_WINDOW_MS: i64 = 3_600_000 - 1;

/// Why the client could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientError {
    #[error("'{url}' is not a usable base URL: {reason}")]
    BaseUrl { url: String, reason: String },
    #[error("cannot set up the HTTP client: {0}")]
    Http(String),
}

/// What one request asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Query<'a> {
    /// Up to `limit` trades from id `from_id` on.
    FromId {
        symbol: &'a str,
        from_id: i64,
        limit: u32,
    },
    /// The first trade within `[start, start + MAX_WINDOW_MS]`.
    FirstIn { symbol: &'a str, start: i64 },
    /// The most recent trade.
    Latest { symbol: &'a str },
}

impl Query<'_> {
    fn pairs(&self) -> Vec<(&'static str, String)> {
        match *self {
            Query::FromId {
                symbol,
                from_id,
                limit,
            } => vec![
                ("symbol", symbol.to_owned()),
                ("fromId", from_id.to_string()),
                ("limit", limit.to_string()),
            ],
            Query::FirstIn { symbol, start } => vec![
                ("symbol", symbol.to_owned()),
                ("startTime", start.to_string()),
                ("endTime", (start + MAX_WINDOW_MS).to_string()),
                ("limit", "1".to_owned()),
            ],
            Query::Latest { symbol } => {
                vec![("symbol", symbol.to_owned()), ("limit", "1".to_owned())]
            }
        }
    }
}

/// Binance's spot API at one base URL, with one weight budget for all its requests.
pub struct Client {
    http: HttpClient,
    /// Taken before weight is reserved, so a request that got its weight is sent at once
    /// (and never after a block that began while it waited for a connection).
    permits: Semaphore,
    limiter: WeightLimiter,
    base: Url,
    headers: HeaderMap,
    retry: RetryPolicy,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("base", &self.base.as_str())
            .field("weight_budget", &self.limiter.budget())
            .field("concurrency", &self.permits.available_permits())
            .finish_non_exhaustive()
    }
}

impl Client {
    pub fn new(config: &BinanceConfig) -> Result<Self, ClientError> {
        let concurrency = config.concurrency.max(1);
        let base = base(&config.base_url)?;
        Ok(Client {
            // Never the narrower gate: `permits` is.
            http: HttpClient::new(
                &base,
                config.request_timeout,
                config.connect_timeout,
                concurrency,
            )
            .map_err(ClientError::Http)?,
            permits: Semaphore::new(concurrency),
            limiter: WeightLimiter::new(config.weight_budget, config.weight_window),
            base,
            headers: HeaderMap::from_iter([(ACCEPT, HeaderValue::from_static("application/json"))]),
            retry: config.retry.clone(),
        })
    }

    /// The base URL, without a trailing `/`.
    pub fn base_url(&self) -> &str {
        self.base.as_str().trim_end_matches('/')
    }

    pub fn limiter(&self) -> &WeightLimiter {
        &self.limiter
    }

    /// The URL of `query` under the base URL.
    pub fn url(&self, query: &Query<'_>) -> Url {
        let mut url = self.base.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(["api", "v3", "aggTrades"]);
        }
        url.query_pairs_mut()
            .extend_pairs(query.pairs().iter().map(|(k, v)| (*k, v.as_str())));
        url
    }

    /// The trades `query` returns, retried as the policy says; every attempt is added to
    /// `requests`.
    pub async fn agg_trades(
        &self,
        query: &Query<'_>,
        requests: &mut u32,
    ) -> Result<Vec<AggTrade>, ProviderError> {
        let url = self.url(query);
        let what = format!("GET {}?{}", url.path(), url.query().unwrap_or_default());
        let (what, url) = (what.as_str(), &url);
        self.retry
            .run("Binance", what, requests, move || async move {
                let answer = self.send(what, url).await?;
                self.judge(what, answer)
            })
            .await
    }

    /// One attempt: a permit, then the weight, then the request.
    async fn send(&self, what: &str, url: &Url) -> Result<Answer, Failure> {
        let _permit = self
            .permits
            .acquire()
            .await
            .expect("the semaphore is never closed");
        let _weight = self
            .limiter
            .reserve(AGG_TRADES_WEIGHT, self.retry.max_retry_after)
            .await
            .map_err(|blocked| {
                Failure::Fatal(ProviderError::RateLimited(format!(
                    "{what}: Binance blocked this client for {} s more after a 429 or 418; \
                     not asking before then",
                    blocked.remaining.as_secs_f64().ceil()
                )))
            })?;
        let answer = self
            .http
            .get(url, &self.headers)
            .await
            .map_err(|e| Failure::retry(self.transport(e)))?;
        if let Some(used) = answer
            .headers
            .get(USED_WEIGHT_HEADER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u32>().ok())
        {
            self.limiter.reconcile(used);
        }
        Ok(answer)
    }

    /// What a complete answer means for the retry loop.
    fn judge(&self, what: &str, answer: Answer) -> Result<Vec<AggTrade>, Failure> {
        let code = answer.status.as_u16();
        let said = || format!("HTTP {code}: {}", excerpt(&answer.body));
        match answer.status {
            StatusCode::OK => parse::agg_trades(&answer.body).map_err(|e| match e {
                ParseError::Unreadable(_) => {
                    Failure::retry(Transient::Unreachable(format!("HTTP 200: {e}")))
                }
                ParseError::Shape(_) => {
                    Failure::Fatal(ProviderError::Protocol(format!("{what}: {e}")))
                }
            }),
            StatusCode::BAD_REQUEST => Err(Failure::Fatal(ProviderError::Protocol(
                match parse::error_body(&answer.body) {
                    Some((code, msg)) => {
                        format!("{what}: Binance refused the request: {msg} (code {code})")
                    }
                    None => format!("{what}: Binance refused the request ({})", said()),
                },
            ))),
            StatusCode::FORBIDDEN => Err(Failure::Fatal(ProviderError::NoPermission(format!(
                "{what}: Binance's web application firewall refused the request ({})",
                said()
            )))),
            StatusCode::UNAVAILABLE_FOR_LEGAL_REASONS => {
                Err(Failure::Fatal(ProviderError::NoPermission(format!(
                    "{what}: Binance refuses requests from this function's region (HTTP 451, \
                     a restricted location); deploy in another region or set \
                     {BINANCE_BASE_URL} to a mirror reachable from here"
                ))))
            }
            StatusCode::TOO_MANY_REQUESTS => Err(self.busy(said(), &answer.headers, false)),
            StatusCode::IM_A_TEAPOT => Err(self.busy(said(), &answer.headers, true)),
            status if status.is_server_error() => Err(Failure::Retry {
                why: Transient::Unreachable(said()),
                retry_after: retry_after(&answer.headers),
            }),
            _ => Err(Failure::Fatal(ProviderError::Protocol(format!(
                "{what}: unexpected answer ({})",
                said()
            )))),
        }
    }

    /// A 429 or 418: every request of this client waits out `Retry-After`. An IP ban (418)
    /// longer than the policy waits, or without a `Retry-After`, is not retried: asking
    /// during a ban lengthens it.
    fn busy(&self, said: String, headers: &HeaderMap, ban: bool) -> Failure {
        let wait = retry_after(headers);
        let blocked_for = match (wait, ban) {
            (Some(wait), _) => Some(wait),
            (None, true) => Some(self.retry.max_retry_after),
            (None, false) => None,
        };
        if let Some(blocked_for) = blocked_for {
            self.limiter.block_until(Instant::now() + blocked_for);
        }
        match wait {
            Some(wait) if !ban || wait <= self.retry.max_retry_after => Failure::Retry {
                why: Transient::Busy(said),
                retry_after: Some(wait),
            },
            None if !ban => Failure::retry(Transient::Busy(said)),
            _ => Failure::Fatal(ProviderError::RateLimited(format!(
                "Binance banned this IP ({said}, Retry-After {}); not asking again before then",
                wait.map_or("missing".to_owned(), |w| format!("{} s", w.as_secs()))
            ))),
        }
    }

    fn transport(&self, error: TransportError) -> Transient {
        match error {
            TransportError::Connect(causes) => Transient::Unreachable(format!(
                "cannot connect to Binance at {}: {causes}",
                self.base.origin().ascii_serialization()
            )),
            other => Transient::Unreachable(other.to_string()),
        }
    }
}

/// The base URL parsed, without a trailing `/`; http or https only.
pub(super) fn base(base_url: &str) -> Result<Url, ClientError> {
    crate::providers::http::parse_base(base_url).map_err(|bad| ClientError::BaseUrl {
        url: bad.url,
        reason: bad.reason,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(base_url: &str) -> Client {
        Client::new(&BinanceConfig {
            base_url: base_url.into(),
            ..BinanceConfig::default()
        })
        .unwrap()
    }

    #[test]
    fn urls_name_the_three_queries() {
        let plain = client("https://data-api.binance.vision/");
        assert_eq!(plain.base_url(), "https://data-api.binance.vision");
        let symbol = "BTCUSDT";
        assert_eq!(
            plain
                .url(&Query::FromId {
                    symbol,
                    from_id: 966_492_862,
                    limit: PAGE_LIMIT
                })
                .as_str(),
            "https://data-api.binance.vision/api/v3/aggTrades?symbol=BTCUSDT&fromId=966492862&limit=1000"
        );
        let mirrored = client("http://127.0.0.1:9/binance");
        assert_eq!(
            mirrored
                .url(&Query::FirstIn {
                    symbol,
                    start: 1_704_067_200_000
                })
                .as_str(),
            "http://127.0.0.1:9/binance/api/v3/aggTrades?symbol=BTCUSDT&startTime=1704067200000&endTime=1704070799999&limit=1"
        );
        assert_eq!(
            mirrored.url(&Query::Latest { symbol }).as_str(),
            "http://127.0.0.1:9/binance/api/v3/aggTrades?symbol=BTCUSDT&limit=1"
        );
    }

    #[test]
    fn bad_base_urls_are_refused() {
        for url in ["data-api.binance.vision", "ftp://x", "https://x/?a=1"] {
            let error = Client::new(&BinanceConfig {
                base_url: url.into(),
                ..BinanceConfig::default()
            })
            .unwrap_err();
            assert!(
                matches!(error, ClientError::BaseUrl { .. }),
                "{url}: {error}"
            );
        }
    }
}
