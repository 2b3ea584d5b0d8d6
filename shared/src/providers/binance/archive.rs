//! Binance's public daily archives of spot aggregate trades (`docs/BINANCE.md`, "Archives"):
//! a whole past UTC day in two requests instead of one per 1,000 trades, and no request
//! weight spent.
//!
//! `{base}/data/spot/daily/aggTrades/<SYMBOL>/<SYMBOL>-aggTrades-<YYYY-MM-DD>.zip` holds one
//! CSV, `<SYMBOL>-aggTrades-<YYYY-MM-DD>.csv`, without a header:
//! `aggTradeId,price,quantity,firstTradeId,lastTradeId,transactTime,isBuyerMaker,isBestMatch`.
//! Its sibling `….zip.CHECKSUM` reads `<sha256 hex>  <zip name>`. Binance writes the times of
//! days from 2025-01-01 on in microseconds and earlier ones in milliseconds; a time is taken
//! as microseconds by its magnitude ([`MICROS_FROM`]), so a file that does not follow the
//! calendar rule is read right too. A day is archived the day after it ends; until then its
//! files are a 404.
//!
//! A day is accepted only when its zip matches the CHECKSUM, every row parses, the ids run
//! without a gap and every time lies inside the day; anything else is an [`ArchiveError`] and
//! the provider asks the REST API instead.

use std::io::{BufRead, BufReader, Cursor, Read};
use std::time::Duration;

use bytes::Bytes;
use chrono::NaiveDate;
use reqwest::header::HeaderMap;
use reqwest::{StatusCode, Url};

use super::BinanceConfig;
use super::client::{self, ClientError};
use super::parse::is_decimal;
use crate::providers::ProviderError;
use crate::providers::http::{HttpClient, excerpt};
use crate::providers::retry::{Failure, RetryPolicy, Transient, retry_after};
use crate::trades::{AggTrade, MAX_WIRE_INTEGER, TradeBound, TradeSpan, day_of, day_start_ms};

/// Where the daily aggregate-trade archives of spot symbols live under the base URL.
pub const ARCHIVE_FOLDER: &str = "data/spot/daily/aggTrades";

/// Times at or above this are microseconds: as milliseconds it would be the year 5138, as
/// microseconds it is 1973, before any trade.
pub const MICROS_FROM: i64 = 100_000_000_000_000;

/// A day's zip is tens of megabytes for the busiest symbols: more than one REST page may
/// take, so its timeout is at least this.
const MIN_ARCHIVE_TIMEOUT: Duration = Duration::from_secs(120);

const MS_PER_DAY: i64 = 86_400_000;

/// Why an archive could not give a day; the provider asks the REST API instead.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ArchiveError {
    /// Not archived (yet): a 404.
    #[error("{file}: not archived (HTTP 404)")]
    Missing { file: String },
    /// No answer after the retry policy's attempts, or an answer that is not a file.
    #[error("{0}")]
    Unavailable(ProviderError),
    /// The zip is not the one its CHECKSUM names.
    #[error("{file}: sha256 {actual}, but its CHECKSUM says {expected}")]
    Checksum {
        file: String,
        expected: String,
        actual: String,
    },
    /// A CHECKSUM, zip or CSV that does not say what an archive says.
    #[error("{file}: {reason}")]
    Invalid { file: String, reason: String },
}

/// The archive's file names of one symbol's day.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchiveFiles {
    /// `<SYMBOL>-aggTrades-<YYYY-MM-DD>.zip`
    pub zip: String,
    /// `<SYMBOL>-aggTrades-<YYYY-MM-DD>.zip.CHECKSUM`
    pub checksum: String,
    /// `<SYMBOL>-aggTrades-<YYYY-MM-DD>.csv`, inside the zip.
    pub csv: String,
}

impl ArchiveFiles {
    pub fn of(symbol: &str, date: NaiveDate) -> Self {
        let stem = format!("{symbol}-aggTrades-{date}");
        ArchiveFiles {
            zip: format!("{stem}.zip"),
            checksum: format!("{stem}.zip.CHECKSUM"),
            csv: format!("{stem}.csv"),
        }
    }
}

/// The day an archive can answer `span` with at `now_ms`: a span that ends at a midnight
/// at least a day past, starting at that day's 00:00 or at an id (which the day must hold).
pub fn archived_day(span: &TradeSpan, now_ms: i64) -> Option<NaiveDate> {
    let TradeBound::Time(until) = span.until else {
        return None;
    };
    let date = day_of(until - 1);
    let day_start = day_start_ms(date);
    let whole = match span.from {
        TradeBound::Time(from) => from == day_start,
        TradeBound::Id(_) => true,
    };
    (whole && until == day_start + MS_PER_DAY && until + MS_PER_DAY <= now_ms).then_some(date)
}

/// Binance's archive host: its own HTTP client, since archives spend no request weight.
pub struct Archive {
    http: HttpClient,
    base: Url,
    headers: HeaderMap,
    retry: RetryPolicy,
}

impl std::fmt::Debug for Archive {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Archive")
            .field("base", &self.base.as_str())
            .finish_non_exhaustive()
    }
}

impl Archive {
    /// The archive of `config`, `None` when archives are off.
    pub fn new(config: &BinanceConfig) -> Result<Option<Self>, ClientError> {
        let Some(base_url) = &config.archive_base_url else {
            return Ok(None);
        };
        let base = client::base(base_url)?;
        Ok(Some(Archive {
            http: HttpClient::new(
                &base,
                config.request_timeout.max(MIN_ARCHIVE_TIMEOUT),
                config.connect_timeout,
                config.concurrency,
            )
            .map_err(ClientError::Http)?,
            base,
            headers: HeaderMap::new(),
            retry: config.retry.clone(),
        }))
    }

    /// The base URL, without a trailing `/`.
    pub fn base_url(&self) -> &str {
        self.base.as_str().trim_end_matches('/')
    }

    /// The URL of `file` of `symbol`'s archive folder.
    pub fn url(&self, symbol: &str, file: &str) -> Url {
        let mut url = self.base.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty()
                .extend(ARCHIVE_FOLDER.split('/'))
                .extend([symbol, file]);
        }
        url
    }

    /// Every trade of `symbol` on `date`, ascending, each id once: the CHECKSUM, then the
    /// zip. Each attempt is added to `requests`.
    pub async fn day(
        &self,
        symbol: &str,
        date: NaiveDate,
        requests: &mut u32,
    ) -> Result<Vec<AggTrade>, ArchiveError> {
        let files = ArchiveFiles::of(symbol, date);
        let checksum = self.get(symbol, &files.checksum, requests).await?;
        let expected =
            parse_checksum(&checksum, &files.zip).map_err(|reason| ArchiveError::Invalid {
                file: files.checksum.clone(),
                reason,
            })?;
        let zip = self.get(symbol, &files.zip, requests).await?;
        let actual = crate::codec::sha256_hex(&zip);
        if actual != expected {
            return Err(ArchiveError::Checksum {
                file: files.zip,
                expected,
                actual,
            });
        }
        // Inflating and parsing a busy day takes a while: off the async threads.
        let csv = files.csv.clone();
        let read = tokio::task::spawn_blocking(move || read_day(zip, &csv, date)).await;
        match read {
            Ok(Ok(trades)) => Ok(trades),
            Ok(Err(reason)) => Err(ArchiveError::Invalid {
                file: files.zip,
                reason,
            }),
            Err(join) => Err(ArchiveError::Invalid {
                file: files.zip,
                reason: format!("reading stopped: {join}"),
            }),
        }
    }

    /// One file, retried as the policy says; `Missing` on a 404.
    async fn get(
        &self,
        symbol: &str,
        file: &str,
        requests: &mut u32,
    ) -> Result<Bytes, ArchiveError> {
        let url = self.url(symbol, file);
        let what = format!("GET {}", url.path());
        let (what, url) = (what.as_str(), &url);
        let body = self
            .retry
            .run("Binance archive", what, requests, move || async move {
                let answer = self
                    .http
                    .get(url, &self.headers)
                    .await
                    .map_err(|e| Failure::retry(Transient::Unreachable(e.to_string())))?;
                let said = || format!("HTTP {}: {}", answer.status.as_u16(), excerpt(&answer.body));
                match answer.status {
                    StatusCode::OK => Ok(Some(answer.body)),
                    StatusCode::NOT_FOUND => Ok(None),
                    StatusCode::TOO_MANY_REQUESTS => Err(Failure::Retry {
                        why: Transient::Busy(said()),
                        retry_after: retry_after(&answer.headers),
                    }),
                    status if status.is_server_error() => Err(Failure::Retry {
                        why: Transient::Unreachable(said()),
                        retry_after: retry_after(&answer.headers),
                    }),
                    _ => Err(Failure::Fatal(ProviderError::Protocol(format!(
                        "{what}: unexpected answer ({})",
                        said()
                    )))),
                }
            })
            .await
            .map_err(ArchiveError::Unavailable)?;
        body.ok_or_else(|| ArchiveError::Missing {
            file: file.to_string(),
        })
    }
}

/// The sha256 a CHECKSUM file names for `zip`: `<64 hex digits>  <zip>`, lower-cased.
pub fn parse_checksum(body: &[u8], zip: &str) -> Result<String, String> {
    let text = std::str::from_utf8(body).map_err(|_| "not text".to_string())?;
    let mut words = text.split_whitespace();
    let (Some(hex), name) = (words.next(), words.next()) else {
        return Err("empty".into());
    };
    if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!("'{}' is not a sha256", excerpt(hex.as_bytes())));
    }
    if let Some(name) = name.filter(|name| *name != zip) {
        return Err(format!("names '{}', not {zip}", excerpt(name.as_bytes())));
    }
    Ok(hex.to_ascii_lowercase())
}

/// The trades of `date` in the zip's `csv`: checked as the module docs say.
pub fn read_day(zip: Bytes, csv: &str, date: NaiveDate) -> Result<Vec<AggTrade>, String> {
    let mut archive =
        zip::ZipArchive::new(Cursor::new(zip)).map_err(|e| format!("not a zip: {e}"))?;
    let file = archive
        .by_name(csv)
        .map_err(|e| format!("no {csv} inside: {e}"))?;
    parse_day(BufReader::new(file), date).map_err(|reason| format!("{csv}: {reason}"))
}

/// The rows of a day's CSV as trades, times in milliseconds: every id one more than the
/// last, every time inside `date`.
pub fn parse_day(csv: impl Read, date: NaiveDate) -> Result<Vec<AggTrade>, String> {
    let (start, end) = (day_start_ms(date), day_start_ms(date) + MS_PER_DAY);
    let mut trades: Vec<AggTrade> = Vec::new();
    for (index, line) in BufReader::new(csv).lines().enumerate() {
        let number = index + 1;
        let line = line.map_err(|e| format!("line {number}: {e}"))?;
        let line = line.trim_end_matches('\r');
        // Binance's spot files have no header, some of its other archives do.
        if line.is_empty() || (number == 1 && line.starts_with(|c: char| c.is_ascii_alphabetic())) {
            continue;
        }
        let trade = row(line).map_err(|reason| format!("line {number}: {reason}"))?;
        if !(start..end).contains(&trade.time) {
            return Err(format!(
                "line {number}: trade {} at {} ms is outside {date}",
                trade.id, trade.time
            ));
        }
        if let Some(last) = trades.last()
            && trade.id != last.id + 1
        {
            return Err(format!(
                "line {number}: trade {} follows trade {}: the ids have a gap",
                trade.id, last.id
            ));
        }
        trades.push(trade);
    }
    if trades.is_empty() {
        return Err("no trades".into());
    }
    Ok(trades)
}

/// One row: `a,p,q,f,l,T,m,M` (columns after these are ignored, as REST fields are).
fn row(line: &str) -> Result<AggTrade, String> {
    let mut fields = line.split(',');
    let mut next = |name: &str| {
        fields
            .next()
            .map(str::trim)
            .ok_or_else(|| format!("no {name} column"))
    };
    let id = |name: &str, text: &str| {
        text.parse::<i64>()
            .ok()
            .filter(|n| (0..=MAX_WIRE_INTEGER).contains(n))
            .ok_or_else(|| format!("{name} '{text}' is not a non-negative integer up to 2^53"))
    };
    let decimal = |name: &str, text: &str| {
        Some(text)
            .filter(|t| is_decimal(t))
            .and_then(|t| t.parse::<f64>().ok())
            .filter(|n| n.is_finite())
            .ok_or_else(|| format!("{name} '{text}' is not a decimal"))
    };
    let boolean = |name: &str, text: &str| match text {
        "True" | "true" => Ok(true),
        "False" | "false" => Ok(false),
        _ => Err(format!("{name} '{text}' is neither True nor False")),
    };
    let trade = AggTrade {
        id: id("aggTradeId", next("aggTradeId")?)?,
        price: decimal("price", next("price")?)?,
        qty: decimal("quantity", next("quantity")?)?,
        first_trade: id("firstTradeId", next("firstTradeId")?)?,
        last_trade: id("lastTradeId", next("lastTradeId")?)?,
        time: to_ms(id("transactTime", next("transactTime")?)?),
        buyer_maker: boolean("isBuyerMaker", next("isBuyerMaker")?)?,
        best_match: boolean("isBestMatch", next("isBestMatch")?)?,
    };
    if trade.first_trade > trade.last_trade {
        return Err(format!(
            "trade {}: first trade id {} is after last trade id {}",
            trade.id, trade.first_trade, trade.last_trade
        ));
    }
    Ok(trade)
}

/// An archive's time in milliseconds (see [`MICROS_FROM`]).
pub fn to_ms(time: i64) -> i64 {
    if time >= MICROS_FROM {
        time / 1_000
    } else {
        time
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn date(text: &str) -> NaiveDate {
        text.parse().unwrap()
    }

    const DAY_MS: i64 = 1_762_473_600_000; // 2025-11-07

    #[test]
    fn only_whole_days_a_day_past_go_to_the_archive() {
        let day = date("2025-11-07");
        let (start, end) = (DAY_MS, DAY_MS + MS_PER_DAY);
        let whole = TradeSpan {
            from: TradeBound::Time(start),
            until: TradeBound::Time(end),
        };
        let tail = TradeSpan {
            from: TradeBound::Id(437_500_000),
            until: TradeBound::Time(end),
        };
        let archived = end + MS_PER_DAY;
        assert_eq!(archived_day(&whole, archived), Some(day));
        assert_eq!(archived_day(&tail, archived), Some(day));
        // Yesterday (ended less than a day ago) and today are not archived yet.
        assert_eq!(archived_day(&whole, archived - 1), None);
        assert_eq!(archived_day(&whole, start + 1), None);
        for span in [
            TradeSpan {
                from: TradeBound::Time(start + 1),
                until: TradeBound::Time(end),
            },
            TradeSpan {
                from: TradeBound::Time(start),
                until: TradeBound::Time(end - 1),
            },
            TradeSpan {
                from: TradeBound::Time(start - MS_PER_DAY),
                until: TradeBound::Time(end),
            },
            TradeSpan {
                from: TradeBound::Time(start),
                until: TradeBound::Id(437_600_000),
            },
        ] {
            assert_eq!(archived_day(&span, archived), None, "{span:?}");
        }
    }

    #[test]
    fn rows_parse_with_microseconds_or_milliseconds() {
        let csv = "437472000,60759.60000000,0.00841000,1111480471,1111480471,1762473600123456,False,True\r\n\
                   437472001,60759.59000000,0.10000000,1111480472,1111480474,1762473600200999,true,false\n";
        let trades = parse_day(csv.as_bytes(), date("2025-11-07")).unwrap();
        assert_eq!(
            trades[0],
            AggTrade {
                time: 1_762_473_600_123,
                id: 437_472_000,
                price: 60_759.6,
                qty: 0.00841,
                first_trade: 1_111_480_471,
                last_trade: 1_111_480_471,
                buyer_maker: false,
                best_match: true,
            }
        );
        assert_eq!(trades[1].time, 1_762_473_600_200);
        assert!(trades[1].buyer_maker && !trades[1].best_match);
        // 2024 and before: milliseconds, kept as they are.
        let old = "1000,1.5,2,7,8,1704067200001,False,True\n";
        assert_eq!(
            parse_day(old.as_bytes(), date("2024-01-01")).unwrap()[0].time,
            1_704_067_200_001
        );
        let headed = format!(
            "agg_trade_id,price,quantity,first_trade_id,last_trade_id,transact_time,is_buyer_maker,is_best_match\n{old}"
        );
        assert_eq!(
            parse_day(headed.as_bytes(), date("2024-01-01"))
                .unwrap()
                .len(),
            1
        );
    }

    #[test]
    fn gaps_strays_and_bad_rows_are_refused_with_their_line() {
        let day = date("2024-01-01");
        let cases = [
            (
                "1,1.5,2,7,8,1704067200001,False,True\n3,1.5,2,9,9,1704067200002,False,True\n",
                "line 2: trade 3 follows trade 1: the ids have a gap",
            ),
            (
                "1,1.5,2,7,8,1704153600000,False,True\n",
                "line 1: trade 1 at 1704153600000 ms is outside 2024-01-01",
            ),
            ("1,1e5,2,7,8,1704067200001,False,True\n", "price '1e5'"),
            ("1,1.5,2,9,8,1704067200001,False,True\n", "first trade id 9"),
            ("1,1.5,2,7,8,1704067200001,no,True\n", "isBuyerMaker 'no'"),
            ("1,1.5,2,7,8,1704067200001,False\n", "no isBestMatch column"),
            ("x1,1.5,2,7,8,1704067200001,False,True\n", "no trades"),
            ("", "no trades"),
            // Found by the binance_response fuzz target: the largest id, then the next id
            // computed from it, overflowed.
            (
                "9223372036854775807,607,0.1,1,1,1634944096633,True,True\n",
                "aggTradeId '9223372036854775807' is not a non-negative integer up to 2^53",
            ),
            (
                "9007199254740993,1.5,2,7,8,1704067200001,False,True\n",
                "aggTradeId '9007199254740993'",
            ),
        ];
        for (csv, needle) in cases {
            let error = parse_day(csv.as_bytes(), day).unwrap_err();
            assert!(error.contains(needle), "{csv:?}: {error}");
        }
    }

    #[test]
    fn checksums_name_the_zip() {
        let hex = "a".repeat(64);
        let zip = "BTCUSDT-aggTrades-2025-11-07.zip";
        assert_eq!(
            parse_checksum(format!("{}  {zip}\n", hex.to_uppercase()).as_bytes(), zip),
            Ok(hex.clone())
        );
        assert_eq!(parse_checksum(hex.as_bytes(), zip), Ok(hex.clone()));
        assert!(parse_checksum(b"", zip).unwrap_err().contains("empty"));
        assert!(
            parse_checksum(b"abc  x.zip", zip)
                .unwrap_err()
                .contains("not a sha256")
        );
        assert!(
            parse_checksum(format!("{hex}  other.zip").as_bytes(), zip)
                .unwrap_err()
                .contains("other.zip")
        );
    }

    #[test]
    fn urls_and_file_names() {
        let config = BinanceConfig {
            archive_base_url: Some("http://127.0.0.1:9/mirror/".into()),
            ..BinanceConfig::default()
        };
        let archive = Archive::new(&config).unwrap().unwrap();
        assert_eq!(archive.base_url(), "http://127.0.0.1:9/mirror");
        let files = ArchiveFiles::of("BTCUSDT", date("2025-11-07"));
        assert_eq!(files.csv, "BTCUSDT-aggTrades-2025-11-07.csv");
        assert_eq!(
            archive.url("BTCUSDT", &files.checksum).as_str(),
            "http://127.0.0.1:9/mirror/data/spot/daily/aggTrades/BTCUSDT/BTCUSDT-aggTrades-2025-11-07.zip.CHECKSUM"
        );
        assert!(Archive::new(&BinanceConfig::default()).unwrap().is_none());
        let bad = BinanceConfig {
            archive_base_url: Some("ftp://x".into()),
            ..BinanceConfig::default()
        };
        assert!(matches!(
            Archive::new(&bad),
            Err(ClientError::BaseUrl { .. })
        ));
    }
}
