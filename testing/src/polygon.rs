//! A stand-in Polygon REST API for tests, on the replay server of [`crate::thetadata`] (the
//! same sockets, so the same faults, request log and counts apply).
//!
//! - **Recorded pages** ([`RECORDED`]): the response bodies of `tests/fixtures/polygon/`
//!   (polygon-io/client-python's mocks) at the paths they answer. A listing's page n + 1
//!   answers the `cursor` of page n's `next_url`; every `https://api.polygon.io` in a body
//!   is rewritten to this server's address so `next_url` leads back here.
//! - **Generated aggregates** for any other `/v2/aggs/ticker/{ticker}/range/{multiplier}/
//!   {timespan}/{from}/{to}` (`minute`, `hour`, `day`; dates `YYYY-MM-DD` or epoch
//!   milliseconds): one bar per NYSE session for days (stamped at midnight New York), bars
//!   over extended hours 04:00–20:00 New York for minutes and hours, deterministic prices
//!   ([`generated_bar`]). Pages hold `min(limit, page size)` results (default
//!   [`DEFAULT_PAGE_SIZE`], [`PolygonReplay::set_page_size`]) and chain with `next_url` as
//!   Polygon's do (the next bar's millisecond timestamp as `from`, a `cursor`).
//!   [`PolygonReplay::list_from`] gives a ticker a first listing date: no bars before it.
//! - **The key**: every request must carry `Authorization: Bearer <key>`; others get a 401
//!   in Polygon's error shape.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use chrono::{NaiveDate, NaiveTime};
use serde_json::{Value, json};

use cachefill_core::calendar;

use crate::fixtures;
use crate::thetadata::{Query, Received, ReplayError, ReplayServer, Reply};

/// Where aggregate paths start.
pub const AGGS_PREFIX: &str = "/v2/aggs/ticker/";
/// Results per page unless a test says otherwise (Polygon's largest `limit`).
pub const DEFAULT_PAGE_SIZE: usize = 50_000;
/// Polygon's `limit` when a request names none.
const DEFAULT_LIMIT: usize = 5_000;
const HOST: &str = "https://api.polygon.io";

/// The recorded pages: the path a listing's first page answers, and the fixture files of
/// its pages in order.
pub const RECORDED: [(&str, &[&str]); 4] = [
    (
        "/v2/aggs/ticker/AAPL/range/1/day/2005-04-01/2005-04-04",
        &["v2-aggs-AAPL-1-day-2005-04-01-2005-04-04.json"],
    ),
    (
        "/v3/quotes/AAPL",
        &["v3-quotes-AAPL-page1.json", "v3-quotes-AAPL-page2.json"],
    ),
    ("/v3/trades/AAPL", &["v3-trades-AAPL-limit2.json"]),
    (
        "/v3/reference/options/contracts",
        &[
            "v3-reference-options-contracts-page1.json",
            "v3-reference-options-contracts-page2.json",
        ],
    ),
];

/// The generated values of one bar.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GeneratedBar {
    /// Bar open, epoch milliseconds.
    pub t: i64,
    pub o: f64,
    pub h: f64,
    pub l: f64,
    pub c: f64,
    pub v: f64,
    pub vw: f64,
    pub n: i64,
}

/// The bar the server generates for `ticker` opening at `t` (epoch ms): prices between 19
/// and 425, `l ≤ o, c ≤ h`.
pub fn generated_bar(ticker: &str, t: i64) -> GeneratedBar {
    let seed = fnv1a(ticker.as_bytes());
    let minute = u64::try_from(t.div_euclid(60_000)).unwrap_or(0);
    let mix = (minute.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ seed) >> 11;
    let wiggle = (mix % 1000) as f64 / 1000.0;
    let base = 20.0 + (seed % 400) as f64;
    let o = cents(base + wiggle * 5.0);
    let c = cents(o + wiggle - 0.5);
    let h = cents(o.max(c) + 0.25);
    let l = cents(o.min(c) - 0.25);
    let v = (100 + mix % 10_000) as f64;
    GeneratedBar {
        t,
        o,
        h,
        l,
        c,
        v,
        vw: cents((o + h + l + c) / 4.0),
        n: 1 + (mix % 10_000) as i64 / 10,
    }
}

/// The bar opens (epoch ms, ascending) the server generates over `from..=to` (New York
/// dates) at `multiplier` × `timespan`, none before `listed`.
pub fn bar_opens(
    multiplier: u32,
    timespan: &str,
    from: NaiveDate,
    to: NaiveDate,
    listed: Option<NaiveDate>,
) -> Result<Vec<i64>, String> {
    let step_minutes = match timespan {
        "minute" => i64::from(multiplier),
        "hour" => 60 * i64::from(multiplier),
        "day" => 0,
        other => return Err(format!("timespan '{other}' is not generated")),
    };
    if multiplier == 0 {
        return Err("multiplier must be at least 1".into());
    }
    let from = from
        .max(listed.unwrap_or(from))
        .max(calendar::FIRST_SUPPORTED);
    let to = to.min(calendar::LAST_SUPPORTED);
    let sessions = calendar::sessions_between(from, to).map_err(|e| e.to_string())?;
    let mut opens = Vec::new();
    for session in sessions {
        if step_minutes == 0 {
            opens.push(ny_ms(session, NaiveTime::MIN));
            continue;
        }
        let start = ny_ms(session, hm(4, 0));
        let end = ny_ms(session, hm(20, 0));
        opens.extend(
            (0..)
                .map(|k| start + k * step_minutes * 60_000)
                .take_while(|t| *t < end),
        );
    }
    Ok(opens)
}

#[derive(Debug)]
struct Generator {
    base_url: String,
    page_size: usize,
    listed: HashMap<String, NaiveDate>,
}

/// The stand-in Polygon API (see the module docs). Stops when dropped.
#[derive(Debug)]
pub struct PolygonReplay {
    server: ReplayServer,
    generator: Arc<Mutex<Generator>>,
}

impl PolygonReplay {
    /// Serve the recordings and generated aggregates to requests carrying `api_key`.
    pub async fn start(api_key: &str) -> Result<PolygonReplay, ReplayError> {
        let dir = fixtures::dir("polygon")?;
        let server = ReplayServer::empty()
            .await
            .map_err(|source| ReplayError::Io {
                path: dir.clone(),
                source,
            })?;
        let base_url = server.base_url();
        server.require_header(
            "authorization",
            &format!("Bearer {api_key}"),
            error_reply(401, "Unknown API Key"),
        );
        let generator = Arc::new(Mutex::new(Generator {
            base_url: base_url.clone(),
            page_size: DEFAULT_PAGE_SIZE,
            listed: HashMap::new(),
        }));
        let generating = generator.clone();
        server.respond_under(AGGS_PREFIX, move |request| {
            let generator = generating.lock().unwrap_or_else(|p| p.into_inner());
            Some(aggregates(&generator, request))
        });
        // Registered after the generator, so asked before it.
        for (path, files) in RECORDED {
            let pages = recorded_pages(&dir, files, &base_url)?;
            server.respond_with(path, move |query| page_for(&pages, query));
        }
        Ok(PolygonReplay { server, generator })
    }

    /// `http://127.0.0.1:<port>`: the API's base URL.
    pub fn base_url(&self) -> String {
        self.server.base_url()
    }

    /// The replay server underneath: faults, the request log, counts.
    pub fn server(&self) -> &ReplayServer {
        &self.server
    }

    /// Results per generated page (at least 1), so a test can force several pages.
    pub fn set_page_size(&self, results: usize) {
        self.generator().page_size = results.max(1);
    }

    /// `ticker` has no bars before `first_session` (its first listing).
    pub fn list_from(&self, ticker: &str, first_session: NaiveDate) {
        self.generator()
            .listed
            .insert(ticker.to_string(), first_session);
    }

    /// The aggregate requests received so far, in arrival order.
    pub fn aggs_requests(&self) -> Vec<Received> {
        self.server
            .requests()
            .into_iter()
            .filter(|r| r.path.starts_with(AGGS_PREFIX))
            .collect()
    }

    fn generator(&self) -> std::sync::MutexGuard<'_, Generator> {
        self.generator.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The pages of one recorded listing, each with the cursor that selects it (`None`: the
/// first page).
fn recorded_pages(
    dir: &std::path::Path,
    files: &[&str],
    base_url: &str,
) -> Result<Vec<(Option<String>, Bytes)>, ReplayError> {
    let mut pages = Vec::new();
    let mut cursor = None;
    for file in files {
        let path = dir.join(file);
        let text = std::fs::read_to_string(&path).map_err(|source| ReplayError::Io {
            path: path.clone(),
            source,
        })?;
        let body: Value = serde_json::from_str(&text).map_err(|e| ReplayError::Fixture {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        let next_cursor = body["next_url"]
            .as_str()
            .and_then(|next| reqwest::Url::parse(next).ok())
            .and_then(|next| {
                next.query_pairs()
                    .find(|(k, _)| k == "cursor")
                    .map(|(_, v)| v.into_owned())
            });
        pages.push((cursor.take(), Bytes::from(text.replace(HOST, base_url))));
        cursor = next_cursor;
    }
    Ok(pages)
}

fn page_for(pages: &[(Option<String>, Bytes)], query: &Query) -> Option<Reply> {
    let asked = query.get("cursor");
    pages
        .iter()
        .find(|(cursor, _)| cursor.as_ref() == asked)
        .map(|(_, body)| Reply::json(body.clone()))
}

/// The answer to one aggregates request.
fn aggregates(generator: &Generator, request: &Received) -> Reply {
    match Aggs::parse(request) {
        Ok(asked) => asked.page(generator),
        Err(reason) => error_reply(400, &reason),
    }
}

/// What an aggregates request asks.
#[derive(Debug)]
struct Aggs {
    ticker: String,
    multiplier: u32,
    timespan: String,
    /// Both inclusive, epoch ms.
    from_ms: i64,
    to_ms: i64,
    limit: usize,
    descending: bool,
    adjusted: bool,
}

impl Aggs {
    fn parse(request: &Received) -> Result<Aggs, String> {
        let rest = request.path.trim_start_matches(AGGS_PREFIX);
        let parts: Vec<&str> = rest.split('/').collect();
        let [ticker, "range", multiplier, timespan, from, to] = parts[..] else {
            return Err(format!("not an aggregates path: {}", request.path));
        };
        let limit = match (request.raw_param("cursor"), request.raw_param("limit")) {
            (Some(cursor), _) => cursor
                .strip_prefix('l')
                .and_then(|l| l.parse().ok())
                .ok_or_else(|| format!("unknown cursor '{cursor}'"))?,
            (None, Some(limit)) => limit
                .parse::<usize>()
                .map_err(|_| format!("limit '{limit}' is not a number"))?,
            (None, None) => DEFAULT_LIMIT,
        };
        Ok(Aggs {
            ticker: ticker.to_string(),
            multiplier: multiplier
                .parse()
                .map_err(|_| format!("multiplier '{multiplier}' is not a number"))?,
            timespan: timespan.to_string(),
            from_ms: bound(from, false)?,
            to_ms: bound(to, true)?,
            limit: limit.clamp(1, DEFAULT_PAGE_SIZE),
            descending: request.raw_param("sort") == Some("desc"),
            adjusted: request.raw_param("adjusted") != Some("false"),
        })
    }

    fn page(&self, generator: &Generator) -> Reply {
        let from = calendar::ny_date(ms_to_utc(self.from_ms));
        let to = calendar::ny_date(ms_to_utc(self.to_ms));
        let listed = generator.listed.get(&self.ticker).copied();
        let mut opens: Vec<i64> = match bar_opens(self.multiplier, &self.timespan, from, to, listed)
        {
            Ok(opens) => opens,
            Err(reason) => return error_reply(400, &reason),
        };
        opens.retain(|t| (self.from_ms..=self.to_ms).contains(t));
        if self.descending {
            opens.reverse();
        }
        let size = self.limit.min(generator.page_size);
        let next_url = opens.get(size).map(|next| self.next_url(generator, *next));
        opens.truncate(size);
        let results: Vec<Value> = opens
            .iter()
            .map(|t| {
                let b = generated_bar(&self.ticker, *t);
                json!({"v": b.v, "vw": b.vw, "o": b.o, "c": b.c, "h": b.h, "l": b.l, "t": b.t, "n": b.n})
            })
            .collect();
        let mut body = json!({
            "ticker": self.ticker,
            "queryCount": results.len(),
            "resultsCount": results.len(),
            "adjusted": self.adjusted,
            "status": "OK",
            "request_id": format!("{:016x}", fnv1a(format!("{self:?}").as_bytes())),
            "count": results.len(),
        });
        if !results.is_empty() {
            body["results"] = Value::Array(results);
        }
        if let Some(next_url) = next_url {
            body["next_url"] = Value::String(next_url);
        }
        Reply::json(body.to_string())
    }

    /// Polygon's shape of a next page: the rest of the range in milliseconds from the first
    /// bar not yet sent, the page size in the cursor.
    fn next_url(&self, generator: &Generator, next: i64) -> String {
        let (from, to) = if self.descending {
            (self.from_ms, next)
        } else {
            (next, self.to_ms)
        };
        format!(
            "{}{AGGS_PREFIX}{}/range/{}/{}/{from}/{to}?cursor=l{}{}",
            generator.base_url,
            self.ticker,
            self.multiplier,
            self.timespan,
            self.limit,
            if self.descending { "&sort=desc" } else { "" }
        )
    }
}

/// A range bound: epoch milliseconds as given, or a date's first (or, for `to`, last)
/// millisecond in New York.
fn bound(text: &str, end: bool) -> Result<i64, String> {
    if text.len() > 10 && text.bytes().all(|b| b.is_ascii_digit()) {
        return text
            .parse()
            .map_err(|_| format!("'{text}' is out of range"));
    }
    let date: NaiveDate = text
        .parse()
        .map_err(|_| format!("'{text}' is neither YYYY-MM-DD nor epoch milliseconds"))?;
    if date < calendar::FIRST_SUPPORTED || date > calendar::LAST_SUPPORTED {
        return Err(format!("'{text}' is outside the calendar"));
    }
    Ok(if end {
        ny_ms(date + chrono::Duration::days(1), NaiveTime::MIN) - 1
    } else {
        ny_ms(date, NaiveTime::MIN)
    })
}

/// Polygon's error shape.
fn error_reply(status: u16, error: &str) -> Reply {
    let body = json!({"status": "ERROR", "request_id": "replay", "error": error});
    Reply {
        status,
        ..Reply::json(body.to_string())
    }
}

fn ny_ms(date: NaiveDate, time: NaiveTime) -> i64 {
    calendar::ny_wall_to_utc(date, time).timestamp_millis()
}

fn ms_to_utc(ms: i64) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

fn hm(hour: u32, minute: u32) -> NaiveTime {
    NaiveTime::from_hms_opt(hour, minute, 0).unwrap_or(NaiveTime::MIN)
}

fn cents(value: f64) -> f64 {
    (value * 100.0).round() / 100.0
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, b| {
        (hash ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(text: &str) -> NaiveDate {
        text.parse().unwrap()
    }

    #[test]
    fn generated_bars_are_sane_and_deterministic() {
        for t in (0..2_000).map(|k| 1_704_186_000_000 + k * 60_000) {
            let bar = generated_bar("AAPL", t);
            assert!(bar.l > 0.0 && bar.l <= bar.o.min(bar.c) && bar.o.max(bar.c) <= bar.h);
            assert_eq!(bar, generated_bar("AAPL", t));
        }
        assert_ne!(
            generated_bar("AAPL", 1_704_186_000_000),
            generated_bar("MSFT", 1_704_186_000_000)
        );
    }

    #[test]
    fn bars_follow_the_calendar_and_extended_hours() {
        // 2024-01-12 (Fri), 2024-01-15 (MLK day, closed), 2024-01-16 (Tue).
        let days = bar_opens(1, "day", d("2024-01-12"), d("2024-01-16"), None).unwrap();
        assert_eq!(
            days,
            [
                ny_ms(d("2024-01-12"), NaiveTime::MIN),
                ny_ms(d("2024-01-16"), NaiveTime::MIN)
            ]
        );
        let minutes = bar_opens(1, "minute", d("2024-01-16"), d("2024-01-16"), None).unwrap();
        assert_eq!(minutes.len(), 960);
        assert_eq!(minutes[0], ny_ms(d("2024-01-16"), hm(4, 0)));
        assert_eq!(*minutes.last().unwrap(), ny_ms(d("2024-01-16"), hm(19, 59)));
        assert_eq!(
            bar_opens(2, "hour", d("2024-01-16"), d("2024-01-16"), None)
                .unwrap()
                .len(),
            8
        );
        let listed = bar_opens(
            1,
            "day",
            d("2023-09-01"),
            d("2023-09-30"),
            Some(d("2023-09-14")),
        );
        assert_eq!(listed.unwrap()[0], ny_ms(d("2023-09-14"), NaiveTime::MIN));
        assert!(bar_opens(1, "week", d("2024-01-16"), d("2024-01-16"), None).is_err());
    }
}
