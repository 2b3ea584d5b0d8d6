//! A stand-in Binance spot REST API for tests, on the replay server of [`crate::thetadata`]
//! (the same sockets, so the same faults, request log and counts apply).
//!
//! - **`GET /api/v3/aggTrades`** ([`AGG_TRADES_PATH`]) with Binance's documented parameters
//!   and errors: `symbol` (required, `[A-Z0-9]{2,20}`), `fromId`, `startTime`/`endTime`
//!   (inclusive milliseconds, less than an hour apart when both are sent) and `limit`
//!   (1–1000, default 500). `fromId` pages from that id (up to `endTime`), `startTime` from
//!   the first trade at or after it, neither gives the most recent trades (up to `endTime`).
//!   Answers ascend by id and hold no trade later than "now" (the system clock, or
//!   [`BinanceReplay::set_now`]).
//! - **Generated trades** for any symbol ([`generated_trade`], [`first_id_at`]): aggregate
//!   id `n` trades at `ORIGIN_MS + 600 n + h(symbol, n) % 600`, about 6,000 an hour,
//!   with deterministic prices, quantities and trade ids.
//!   [`BinanceReplay::drop_ids`] leaves a gap of ids; [`BinanceReplay::overlap_pages`]
//!   starts every `fromId` page early, so consecutive pages repeat trades.
//! - **Recorded responses**: each `tests/fixtures/binance/spot-aggtrades-<SYMBOL>-*.json`
//!   is served byte for byte to `symbol=<SYMBOL>&fromId=<its first id>` with a `limit` (or
//!   the default) that covers it and no `startTime`.
//! - **Request weight**: every aggTrades request weighs [`REQUEST_WEIGHT`] in fixed windows
//!   of real time from the start (60 s and 6000 unless
//!   [`BinanceReplay::set_weight_budget`] says otherwise; "now" plays no part) and every
//!   answer reports the window's use in `X-MBX-USED-WEIGHT-1M`. A request over the budget
//!   gets a 429 with `Retry-After` (seconds to the window's end); one that comes back before
//!   that has elapsed gets a 418 (Binance's IP ban). Neither counts weight.
//! - **Daily archives** under [`ARCHIVE_PATH`], as `data.binance.vision` serves them:
//!   `<SYMBOL>/<SYMBOL>-aggTrades-<YYYY-MM-DD>.zip` (one deflated CSV of the day's generated
//!   trades, no header, times in microseconds from 2025-01-01 on and milliseconds before,
//!   booleans `True`/`False`) and `….zip.CHECKSUM` (`<sha256>  <zip name>`), for every day
//!   that has ended by "now"; later days, and days [`BinanceReplay::archive_missing`] names,
//!   are a 404. [`BinanceReplay::archive_corrupt_checksum`] makes a day's CHECKSUM name other
//!   bytes. Dropped ids are left out of archives too. Archives weigh nothing.
//! - **Faults**: [`BinanceReplay::server`]'s `inject_next`/`inject_route` with [`rate_limited`],
//!   [`ip_banned`], [`restricted_location`], [`internal_error`] or the transport faults
//!   (`ShortBody`, `CutJson`, `Reset`). An injected fault replaces the answer after the
//!   weight is counted, and only the server's own 429s lead to 418s.

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::ops::RangeInclusive;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use cachefill_core::trades::{day_of, day_start_ms};
use chrono::NaiveDate;
use serde_json::{Value, json};

use crate::fixtures;
use crate::thetadata::{Fault, Received, ReplayError, ReplayServer, Reply};

/// Where aggregate trades are served.
pub const AGG_TRADES_PATH: &str = "/api/v3/aggTrades";
/// Where the daily archives of aggregate trades are served.
pub const ARCHIVE_PATH: &str = "/data/spot/daily/aggTrades/";
/// The first day Binance writes archive times in microseconds.
pub const ARCHIVE_MICROS_FROM: NaiveDate = NaiveDate::from_ymd_opt(2025, 1, 1).expect("a date");
/// The request weight Binance gives `GET /api/v3/aggTrades`.
pub const REQUEST_WEIGHT: u32 = 4;
/// The header that reports the weight used in the current window.
pub const USED_WEIGHT_HEADER: &str = "X-MBX-USED-WEIGHT-1M";
/// Binance's spot request-weight budget per minute.
pub const DEFAULT_WEIGHT_BUDGET: u32 = 6000;
/// The length of a weight window unless a test says otherwise.
pub const DEFAULT_WEIGHT_WINDOW: Duration = Duration::from_secs(60);
/// The time of generated aggregate id 0: 2017-07-14T00:00:00Z, Binance's launch.
pub const ORIGIN_MS: i64 = 1_499_990_400_000;
/// Generated aggregate `n` trades within `[ORIGIN_MS + n·SPACING_MS, … + SPACING_MS)`.
pub const SPACING_MS: i64 = 600;
/// `limit` when a request names none, and its largest value.
pub const DEFAULT_LIMIT: usize = 500;
pub const MAX_LIMIT: usize = 1000;
/// Binance refuses `startTime`/`endTime` this far apart or more.
const MAX_SPAN_MS: i64 = 3_600_000;
const CONTENT_TYPE: &str = "application/json;charset=UTF-8";
const RECORDED_PREFIX: &str = "spot-aggtrades-";

/// One generated aggregate trade (its wire letters in brackets).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GeneratedTrade {
    /// Aggregate trade id (`a`).
    pub id: i64,
    /// Price, a decimal string with 8 decimals (`p`).
    pub price: String,
    /// Quantity, a decimal string with 8 decimals (`q`).
    pub qty: String,
    /// First and last trade id aggregated (`f`, `l`): the next aggregate starts at
    /// `last_trade_id + 1`.
    pub first_trade_id: i64,
    pub last_trade_id: i64,
    /// Trade time, epoch milliseconds (`T`).
    pub time_ms: i64,
    /// Whether the buyer was the maker (`m`).
    pub buyer_is_maker: bool,
    /// Whether the trade was the best price match (`M`).
    pub best_match: bool,
}

impl GeneratedTrade {
    /// The trade as Binance writes it: `{"a":..,"p":"..","q":"..","f":..,"l":..,"T":..,"m":..,"M":..}`.
    pub fn to_json(&self) -> String {
        let mut out = String::with_capacity(128);
        self.write_json(&mut out);
        out
    }

    fn write_json(&self, out: &mut String) {
        let _ = write!(
            out,
            r#"{{"a":{},"p":"{}","q":"{}","f":{},"l":{},"T":{},"m":{},"M":{}}}"#,
            self.id,
            self.price,
            self.qty,
            self.first_trade_id,
            self.last_trade_id,
            self.time_ms,
            self.buyer_is_maker,
            self.best_match
        );
    }
}

/// The aggregate trade `id` (at least 0) the server generates for `symbol`.
pub fn generated_trade(symbol: &str, id: i64) -> GeneratedTrade {
    let id = id.max(0);
    let seed = fnv1a(symbol.as_bytes());
    // Trades per aggregate: each block of three aggregates holds 1, 2 and 3 trades in an
    // order of its own, so trade ids stay a closed form (six a block) however far `id` is.
    let block = id / 3;
    let order = PERMUTATIONS[(mix(seed ^ SALT_TRADES, block) % 6) as usize];
    let within = (id % 3) as usize;
    let first_trade_id =
        (seed % 1_000_000) as i64 + 6 * block + order[..within].iter().sum::<i64>();
    let last_trade_id = first_trade_id + order[within] - 1;
    // Price: a slow triangle wave (±5 % over about 200 hours) around a price of the symbol,
    // plus a few cents of noise.
    let base_cents = 1_000 + (seed % 5_000_000) as i64;
    let phase = (id / 6_000) % 200;
    let wave = if phase < 100 { phase - 50 } else { 150 - phase };
    let noise = (mix(seed ^ SALT_PRICE, id) % 21) as i64 - 10;
    let cents = (base_cents + base_cents * wave / 1_000 + noise).max(1);
    let lots = 1 + (mix(seed ^ SALT_QTY, id) % 50_000) as i64;
    let flags = mix(seed ^ SALT_FLAGS, id);
    GeneratedTrade {
        id,
        price: format!("{}.{:02}000000", cents / 100, cents % 100),
        qty: format!("{}.{:05}000", lots / 100_000, lots % 100_000),
        first_trade_id,
        last_trade_id,
        time_ms: trade_time(seed, id),
        buyer_is_maker: flags & 1 == 1,
        best_match: !(flags >> 1).is_multiple_of(97),
    }
}

/// The id of the first generated trade of `symbol` at or after `t_ms`.
pub fn first_id_at(symbol: &str, t_ms: i64) -> i64 {
    let seed = fnv1a(symbol.as_bytes());
    if t_ms <= ORIGIN_MS {
        return 0;
    }
    // Trade n lies in its own SPACING_MS slot, so the answer is the slot's trade or the next.
    let slot = (t_ms - ORIGIN_MS) / SPACING_MS;
    if trade_time(seed, slot) >= t_ms {
        slot
    } else {
        slot + 1
    }
}

// One hash stream per generated value, so a trade's price says nothing of its quantity.
const SALT_TRADES: u64 = 0x5452_4144_4553_0001;
const SALT_PRICE: u64 = 0x5052_4943_4500_0002;
const SALT_QTY: u64 = 0x5155_414e_5400_0003;
const SALT_FLAGS: u64 = 0x464c_4147_5300_0004;
const SALT_MICROS: u64 = 0x4d49_4352_4f53_0005;

const PERMUTATIONS: [[i64; 3]; 6] = [
    [1, 2, 3],
    [1, 3, 2],
    [2, 1, 3],
    [2, 3, 1],
    [3, 1, 2],
    [3, 2, 1],
];

fn trade_time(seed: u64, id: i64) -> i64 {
    // Saturating: a `fromId` near i64::MAX is simply far in the future.
    id.saturating_mul(SPACING_MS)
        .saturating_add(ORIGIN_MS + (mix(seed, id) % SPACING_MS as u64) as i64)
}

/// Binance's error shape: `{"code":<code>,"msg":"<msg>"}`.
pub fn binance_error(status: u16, code: i64, msg: &str) -> Reply {
    Reply {
        status,
        ..Reply::json(json!({ "code": code, "msg": msg }).to_string())
    }
    .with_content_type(CONTENT_TYPE)
}

/// A 429 as Binance sends it when the weight budget is spent.
pub fn rate_limited(retry_after_secs: u64) -> Fault {
    Fault::Reply(
        too_many_requests(DEFAULT_WEIGHT_BUDGET, DEFAULT_WEIGHT_WINDOW)
            .with_header("Retry-After", &retry_after_secs.to_string()),
    )
}

/// A 418 as Binance sends it to an IP it has banned.
pub fn ip_banned(retry_after_secs: u64) -> Fault {
    Fault::Reply(ban_reply(retry_after_secs))
}

/// The 451 Binance sends to a restricted location (a US address, for example).
pub fn restricted_location() -> Fault {
    Fault::Reply(binance_error(
        451,
        0,
        "Service unavailable from a restricted location according to 'b. Eligibility' in \
         https://www.binance.com/en/terms. Please contact customer service if you believe you \
         received this message in error.",
    ))
}

/// A 5xx with Binance's internal-error body.
pub fn internal_error(status: u16) -> Fault {
    Fault::Reply(binance_error(
        status,
        -1001,
        "Internal error; unable to process your request. Please try again.",
    ))
}

fn too_many_requests(budget: u32, window: Duration) -> Reply {
    binance_error(
        429,
        -1003,
        &format!(
            "Too many requests; current limit of IP(127.0.0.1) request weight is {budget} per {}.",
            interval_name(window)
        ),
    )
}

fn ban_reply(retry_after_secs: u64) -> Reply {
    let until = system_now_ms() + i64::try_from(retry_after_secs).unwrap_or(0) * 1_000;
    binance_error(
        418,
        -1003,
        &format!(
            "Way too much request weight used; IP banned until {until}. Please use WebSocket \
             Streams for live updates to avoid bans."
        ),
    )
    .with_header("Retry-After", &retry_after_secs.to_string())
}

/// Binance's way of naming a rate-limit interval: `1 MINUTE`, `10 SECOND`, …
fn interval_name(window: Duration) -> String {
    let secs = window.as_secs().max(1);
    match secs {
        s if s.is_multiple_of(86_400) => format!("{} DAY", s / 86_400),
        s if s.is_multiple_of(3_600) => format!("{} HOUR", s / 3_600),
        s if s.is_multiple_of(60) => format!("{} MINUTE", s / 60),
        s => format!("{s} SECOND"),
    }
}

/// One recorded response: its exact body and what selects it.
#[derive(Debug)]
struct Recording {
    symbol: String,
    first_id: i64,
    len: usize,
    last_time_ms: i64,
    body: Bytes,
}

impl Recording {
    fn load(file: &Path, symbol: &str) -> Result<Recording, ReplayError> {
        let bytes = std::fs::read(file).map_err(|source| ReplayError::Io {
            path: file.to_path_buf(),
            source,
        })?;
        let bad = |reason: &str| ReplayError::Fixture {
            path: file.to_path_buf(),
            reason: reason.to_string(),
        };
        let trades: Vec<Value> = serde_json::from_slice(&bytes).map_err(|e| bad(&e.to_string()))?;
        let (Some(first), Some(last)) = (trades.first(), trades.last()) else {
            return Err(bad("no trades"));
        };
        Ok(Recording {
            symbol: symbol.to_string(),
            first_id: first["a"].as_i64().ok_or_else(|| bad("no \"a\""))?,
            len: trades.len(),
            last_time_ms: last["T"].as_i64().ok_or_else(|| bad("no \"T\""))?,
            body: Bytes::from(bytes),
        })
    }
}

/// Weight spent in fixed windows from `origin`, and the ban a 429 arms.
#[derive(Debug)]
struct Limiter {
    budget: u32,
    window: Duration,
    origin: Instant,
    current: u128,
    used: u32,
    max_used: u32,
    banned_until: Option<Instant>,
    bans: u32,
}

impl Limiter {
    fn new(budget: u32, window: Duration) -> Limiter {
        Limiter {
            budget,
            window: window.max(Duration::from_millis(1)),
            origin: Instant::now(),
            current: 0,
            used: 0,
            max_used: 0,
            banned_until: None,
            bans: 0,
        }
    }

    /// Count a request arriving `at`: the weight now used, or the refusal.
    fn admit(&mut self, at: Instant) -> Result<u32, Reply> {
        let elapsed = at.saturating_duration_since(self.origin);
        let index = elapsed.as_nanos() / self.window.as_nanos();
        if index != self.current {
            self.current = index;
            self.used = 0;
        }
        if let Some(until) = self.banned_until.filter(|until| *until > at) {
            self.bans += 1;
            return Err(self.with_used(ban_reply(whole_secs(until - at))));
        }
        if self.used + REQUEST_WEIGHT > self.budget {
            let end_nanos = self.window.as_nanos() * (index + 1);
            let window_end =
                self.origin + Duration::from_nanos(u64::try_from(end_nanos).unwrap_or(u64::MAX));
            let retry_after = whole_secs(window_end.saturating_duration_since(at));
            self.banned_until = Some(at + Duration::from_secs(retry_after));
            let refusal = too_many_requests(self.budget, self.window)
                .with_header("Retry-After", &retry_after.to_string());
            return Err(self.with_used(refusal));
        }
        self.used += REQUEST_WEIGHT;
        self.max_used = self.max_used.max(self.used);
        Ok(self.used)
    }

    fn with_used(&self, reply: Reply) -> Reply {
        reply.with_header(USED_WEIGHT_HEADER, &self.used.to_string())
    }
}

/// Whole seconds, rounded up, at least 1: what `Retry-After` carries.
fn whole_secs(wait: Duration) -> u64 {
    wait.as_millis().div_ceil(1_000).max(1) as u64
}

/// The daily archives: built once per symbol and day, and the days made to fail.
#[derive(Debug, Default)]
struct Archives {
    built: HashMap<(String, NaiveDate), Bytes>,
    missing: HashSet<NaiveDate>,
    corrupt: HashSet<NaiveDate>,
}

#[derive(Debug)]
struct Market {
    /// `None`: the system clock.
    now_ms: Option<i64>,
    dropped: HashMap<String, Vec<RangeInclusive<i64>>>,
    overlap: i64,
    recordings: Vec<Recording>,
    limiter: Limiter,
    archives: Archives,
}

impl Market {
    fn now_ms(&self) -> i64 {
        self.now_ms.unwrap_or_else(system_now_ms)
    }

    /// The end of the dropped range holding `id`, if one does.
    fn dropped_through(&self, symbol: &str, id: i64) -> Option<i64> {
        self.dropped
            .get(symbol)?
            .iter()
            .filter(|range| range.contains(&id))
            .map(|range| *range.end())
            .max()
    }

    /// The start of the dropped range holding `id`, if one does.
    fn dropped_from(&self, symbol: &str, id: i64) -> Option<i64> {
        self.dropped
            .get(symbol)?
            .iter()
            .filter(|range| range.contains(&id))
            .map(|range| *range.start())
            .min()
    }

    fn answer(&mut self, request: &Received) -> Reply {
        let used = match self.limiter.admit(request.at) {
            Ok(used) => used,
            Err(refusal) => return refusal,
        };
        let reply = match AggTrades::parse(request) {
            Ok(asked) => Reply::json(self.body(&asked)).with_content_type(CONTENT_TYPE),
            Err(refusal) => refusal,
        };
        reply.with_header(USED_WEIGHT_HEADER, &used.to_string())
    }

    /// An archive request: the zip or CHECKSUM of a day that has ended, else a 404.
    fn archive(&mut self, path: &str) -> Reply {
        let Some((symbol, date, checksum)) = archive_file(path) else {
            return no_such_key(path);
        };
        let ended = day_start_ms(date) + 86_400_000 <= self.now_ms();
        if !ended || date < day_of(ORIGIN_MS) || self.archives.missing.contains(&date) {
            return no_such_key(path);
        }
        let zip = match self.archive_zip(&symbol, date) {
            Ok(zip) => zip,
            Err(e) => return Reply::text(500, format!("replay server: cannot build {path}: {e}")),
        };
        if !checksum {
            return Reply {
                status: 200,
                content_type: "application/zip".into(),
                headers: Vec::new(),
                body: zip,
            };
        }
        let summed = if self.archives.corrupt.contains(&date) {
            [zip.as_ref(), b"other bytes"].concat()
        } else {
            zip.to_vec()
        };
        let name = format!("{symbol}-aggTrades-{date}.zip");
        Reply::text(
            200,
            format!("{}  {name}\n", cachefill_core::codec::sha256_hex(&summed)),
        )
    }

    /// The day's zip, built on first use.
    fn archive_zip(&mut self, symbol: &str, date: NaiveDate) -> Result<Bytes, String> {
        let key = (symbol.to_string(), date);
        if let Some(zip) = self.archives.built.get(&key) {
            return Ok(zip.clone());
        }
        let csv = self.archive_csv(symbol, date);
        let zip = deflated_zip(&format!("{symbol}-aggTrades-{date}.csv"), csv.as_bytes())?;
        self.archives.built.insert(key, zip.clone());
        Ok(zip)
    }

    /// The day's trades as Binance's archive CSV writes them.
    fn archive_csv(&self, symbol: &str, date: NaiveDate) -> String {
        let start = day_start_ms(date);
        let (first, end) = (
            first_id_at(symbol, start),
            first_id_at(symbol, start + 86_400_000),
        );
        let seed = fnv1a(symbol.as_bytes());
        let micros = date >= ARCHIVE_MICROS_FROM;
        let mut out = String::with_capacity(usize::try_from(end - first).unwrap_or(0) * 96);
        let mut id = first;
        while id < end {
            if let Some(through) = self.dropped_through(symbol, id) {
                id = through.saturating_add(1);
                continue;
            }
            let trade = generated_trade(symbol, id);
            let time = if micros {
                // Binance's microseconds: the millisecond REST reports, and a fraction of it.
                trade.time_ms * 1_000 + (mix(seed ^ SALT_MICROS, id) % 1_000) as i64
            } else {
                trade.time_ms
            };
            let flag = |b: bool| if b { "True" } else { "False" };
            let _ = writeln!(
                out,
                "{},{},{},{},{},{time},{},{}",
                trade.id,
                trade.price,
                trade.qty,
                trade.first_trade_id,
                trade.last_trade_id,
                flag(trade.buyer_is_maker),
                flag(trade.best_match)
            );
            id += 1;
        }
        out
    }

    fn body(&self, asked: &AggTrades) -> Bytes {
        let now = self.now_ms();
        if let Some(recording) = self.recording_for(asked, now) {
            return recording.body.clone();
        }
        let cap = asked.end_ms.map_or(now, |end| end.min(now));
        let ids = match (asked.from_id, asked.start_ms) {
            (Some(from), _) => self.ids_from(
                &asked.symbol,
                (from - self.overlap).max(0),
                cap,
                asked.limit,
            ),
            (None, Some(start)) => self.ids_from(
                &asked.symbol,
                first_id_at(&asked.symbol, start),
                cap,
                asked.limit,
            ),
            (None, None) => self.latest_ids(&asked.symbol, cap, asked.limit),
        };
        let mut out = String::with_capacity(2 + ids.len() * 128);
        out.push('[');
        for (k, id) in ids.into_iter().enumerate() {
            if k > 0 {
                out.push(',');
            }
            generated_trade(&asked.symbol, id).write_json(&mut out);
        }
        out.push(']');
        Bytes::from(out)
    }

    fn recording_for(&self, asked: &AggTrades, now: i64) -> Option<&Recording> {
        self.recordings.iter().find(|r| {
            r.symbol == asked.symbol
                && asked.from_id == Some(r.first_id)
                && asked.start_ms.is_none()
                && asked.limit >= r.len
                && asked.end_ms.is_none_or(|end| end >= r.last_time_ms)
                && r.last_time_ms <= now
        })
    }

    /// Up to `limit` ids from `id` up, none dropped, none trading after `cap`.
    fn ids_from(&self, symbol: &str, mut id: i64, cap: i64, limit: usize) -> Vec<i64> {
        let seed = fnv1a(symbol.as_bytes());
        let mut ids = Vec::with_capacity(limit.min(MAX_LIMIT));
        while ids.len() < limit && trade_time(seed, id) <= cap {
            match self.dropped_through(symbol, id) {
                Some(end) => id = end.saturating_add(1),
                None => {
                    ids.push(id);
                    id += 1;
                }
            }
        }
        ids
    }

    /// The last `limit` ids trading at or before `cap`, none dropped, ascending.
    fn latest_ids(&self, symbol: &str, cap: i64, limit: usize) -> Vec<i64> {
        let mut id = first_id_at(symbol, cap.saturating_add(1)) - 1;
        let mut ids = Vec::with_capacity(limit.min(MAX_LIMIT));
        while ids.len() < limit && id >= 0 {
            match self.dropped_from(symbol, id) {
                Some(start) => id = start - 1,
                None => {
                    ids.push(id);
                    id -= 1;
                }
            }
        }
        ids.reverse();
        ids
    }
}

/// What an aggTrades request asks.
#[derive(Debug)]
struct AggTrades {
    symbol: String,
    from_id: Option<i64>,
    start_ms: Option<i64>,
    end_ms: Option<i64>,
    limit: usize,
}

impl AggTrades {
    fn parse(request: &Received) -> Result<AggTrades, Reply> {
        let symbol = match request.raw_param("symbol") {
            None | Some("") => {
                return Err(binance_error(
                    400,
                    -1102,
                    "Mandatory parameter 'symbol' was not sent, was empty/null, or malformed.",
                ));
            }
            Some(symbol) => symbol,
        };
        let valid = (2..=20).contains(&symbol.len())
            && symbol
                .bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit());
        if !valid {
            return Err(binance_error(400, -1121, "Invalid symbol."));
        }
        let number = |name: &str| -> Result<Option<i64>, Reply> {
            let Some(text) = request.raw_param(name) else {
                return Ok(None);
            };
            let digits =
                !text.is_empty() && text.len() <= 20 && text.bytes().all(|b| b.is_ascii_digit());
            digits
                .then(|| text.parse::<i64>().ok())
                .flatten()
                .map(Some)
                .ok_or_else(|| {
                    binance_error(
                        400,
                        -1100,
                        &format!(
                            "Illegal characters found in parameter '{name}'; legal range is '^[0-9]{{1,20}}$'."
                        ),
                    )
                })
        };
        let limit = match number("limit")? {
            None => DEFAULT_LIMIT,
            Some(limit) if (1..=MAX_LIMIT as i64).contains(&limit) => limit as usize,
            Some(_) => {
                return Err(binance_error(
                    400,
                    -1100,
                    &format!(
                        "Illegal characters found in parameter 'limit'; legal range is '1-{MAX_LIMIT}'."
                    ),
                ));
            }
        };
        let (start_ms, end_ms) = (number("startTime")?, number("endTime")?);
        if let (Some(start), Some(end)) = (start_ms, end_ms)
            && end - start >= MAX_SPAN_MS
        {
            return Err(binance_error(
                400,
                -1127,
                "More than 1 hours between startTime and endTime.",
            ));
        }
        Ok(AggTrades {
            symbol: symbol.to_string(),
            from_id: number("fromId")?,
            start_ms,
            end_ms,
            limit,
        })
    }
}

/// The stand-in Binance API (see the module docs). Stops when dropped.
#[derive(Debug)]
pub struct BinanceReplay {
    server: ReplayServer,
    market: Arc<Mutex<Market>>,
}

impl BinanceReplay {
    /// Serve aggregate trades (generated, and the recordings of `tests/fixtures/binance/`).
    pub async fn start() -> Result<BinanceReplay, ReplayError> {
        let dir = fixtures::dir("binance")?;
        let recordings = load_recordings(&dir)?;
        let server = ReplayServer::empty()
            .await
            .map_err(|source| ReplayError::Io {
                path: dir.clone(),
                source,
            })?;
        let market = Arc::new(Mutex::new(Market {
            now_ms: None,
            dropped: HashMap::new(),
            overlap: 0,
            recordings,
            limiter: Limiter::new(DEFAULT_WEIGHT_BUDGET, DEFAULT_WEIGHT_WINDOW),
            archives: Archives::default(),
        }));
        let serving = market.clone();
        server.respond_under(AGG_TRADES_PATH, move |request| {
            if request.path != AGG_TRADES_PATH || request.method != "GET" {
                return None;
            }
            Some(lock(&serving).answer(request))
        });
        let archiving = market.clone();
        server.respond_under(ARCHIVE_PATH, move |request| {
            (request.method == "GET").then(|| lock(&archiving).archive(&request.path))
        });
        Ok(BinanceReplay { server, market })
    }

    /// `http://127.0.0.1:<port>`: the API's base URL (paths start with `/api/v3`).
    pub fn base_url(&self) -> String {
        self.server.base_url()
    }

    /// The base URL of the daily archives (this same server): what
    /// `BinanceConfig::archive_base_url` is set to.
    pub fn archive_base_url(&self) -> String {
        self.server.base_url()
    }

    /// Answer a 404 for every symbol's archive of `date`, as for a day not archived yet.
    pub fn archive_missing(&self, date: NaiveDate) {
        self.market().archives.missing.insert(date);
    }

    /// Make `date`'s CHECKSUM files name the sha256 of other bytes than the zip.
    pub fn archive_corrupt_checksum(&self, date: NaiveDate) {
        self.market().archives.corrupt.insert(date);
    }

    /// The archive requests received so far (zips and CHECKSUMs, faulted ones too).
    pub fn archive_requests(&self) -> Vec<Received> {
        self.server
            .requests()
            .into_iter()
            .filter(|r| r.path.starts_with(ARCHIVE_PATH))
            .collect()
    }

    /// The replay server underneath: faults, the request log, counts.
    pub fn server(&self) -> &ReplayServer {
        &self.server
    }

    /// "Now", epoch milliseconds: no trade after it is served.
    pub fn set_now(&self, ms: i64) {
        self.market().now_ms = Some(ms);
    }

    /// Follow the system clock again (the default).
    pub fn use_system_clock(&self) {
        self.market().now_ms = None;
    }

    /// `budget` weight per `window`. The windows restart now, with nothing used and no ban.
    pub fn set_weight_budget(&self, budget: u32, window: Duration) {
        let mut market = self.market();
        let (max_used, bans) = (market.limiter.max_used, market.limiter.bans);
        market.limiter = Limiter {
            max_used,
            bans,
            ..Limiter::new(budget, window)
        };
    }

    /// Never serve these aggregate ids of `symbol`, in pages or archives: a gap in the ids.
    pub fn drop_ids(&self, symbol: &str, ids: RangeInclusive<i64>) {
        let mut market = self.market();
        market
            .dropped
            .entry(symbol.to_string())
            .or_default()
            .push(ids);
        market
            .archives
            .built
            .retain(|(built, _), _| built != symbol);
    }

    /// Start every `fromId` page `n` ids early, so consecutive pages repeat trades (0: off).
    pub fn overlap_pages(&self, n: i64) {
        self.market().overlap = n.max(0);
    }

    /// The aggTrades requests received so far (faulted ones too), in arrival order.
    pub fn agg_requests(&self) -> Vec<Received> {
        self.server
            .requests()
            .into_iter()
            .filter(|r| r.path == AGG_TRADES_PATH)
            .collect()
    }

    /// The highest `X-MBX-USED-WEIGHT-1M` sent with an admitted request.
    pub fn max_used_weight(&self) -> u32 {
        self.market().limiter.max_used
    }

    /// The 418s the rate limiter sent (injected ones not counted).
    pub fn banned(&self) -> u32 {
        self.market().limiter.bans
    }

    fn market(&self) -> MutexGuard<'_, Market> {
        lock(&self.market)
    }
}

fn lock(market: &Mutex<Market>) -> MutexGuard<'_, Market> {
    market.lock().unwrap_or_else(|p| p.into_inner())
}

/// Every `spot-aggtrades-<SYMBOL>-*.json` of `dir`, the symbol named by the file.
fn load_recordings(dir: &Path) -> Result<Vec<Recording>, ReplayError> {
    let entries = std::fs::read_dir(dir).map_err(|source| ReplayError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    let mut files: Vec<_> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    let mut recordings = Vec::new();
    for file in files {
        let name = file.file_name().and_then(|n| n.to_str()).unwrap_or("");
        let Some(rest) = name.strip_prefix(RECORDED_PREFIX) else {
            continue;
        };
        let symbol = rest.split(['-', '.']).next().unwrap_or("");
        recordings.push(Recording::load(&file, symbol)?);
    }
    Ok(recordings)
}

/// `(symbol, date, whether the CHECKSUM)` of `…/<SYMBOL>/<SYMBOL>-aggTrades-<YYYY-MM-DD>.zip`
/// or `….zip.CHECKSUM`, spelled exactly so.
fn archive_file(path: &str) -> Option<(String, NaiveDate, bool)> {
    let (symbol, file) = path.strip_prefix(ARCHIVE_PATH)?.split_once('/')?;
    let valid = (2..=20).contains(&symbol.len())
        && symbol
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit());
    let rest = file.strip_prefix(symbol)?.strip_prefix("-aggTrades-")?;
    let (date, checksum) = match rest.strip_suffix(".zip.CHECKSUM") {
        Some(date) => (date, true),
        None => (rest.strip_suffix(".zip")?, false),
    };
    let parsed = NaiveDate::parse_from_str(date, "%Y-%m-%d").ok()?;
    (valid && parsed.to_string() == date).then(|| (symbol.to_string(), parsed, checksum))
}

/// S3's 404, as `data.binance.vision` sends it for a file it does not have.
fn no_such_key(path: &str) -> Reply {
    Reply::text(
        404,
        format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>NoSuchKey</Code>\
             <Message>The specified key does not exist.</Message><Key>{}</Key></Error>",
            path.trim_start_matches('/')
        ),
    )
    .with_content_type("application/xml")
}

/// A zip holding `name`, deflated (fast: tests build whole days).
fn deflated_zip(name: &str, content: &[u8]) -> Result<Bytes, String> {
    use std::io::Write as _;
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .compression_level(Some(1));
    let mut writer = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    writer
        .start_file(name, options)
        .map_err(|e| e.to_string())?;
    writer.write_all(content).map_err(|e| e.to_string())?;
    let cursor = writer.finish().map_err(|e| e.to_string())?;
    Ok(Bytes::from(cursor.into_inner()))
}

fn system_now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn mix(seed: u64, n: i64) -> u64 {
    // splitmix64's finalizer over the seed and the index.
    let mut z = seed ^ (n as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, b| {
        (hash ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_trades_chain_their_trade_ids_and_times() {
        for symbol in ["BTCUSDT", "ETHBTC"] {
            let mut previous = generated_trade(symbol, 1_000_000);
            for id in 1_000_001..1_010_000 {
                let trade = generated_trade(symbol, id);
                assert_eq!(trade.first_trade_id, previous.last_trade_id + 1);
                assert!((1..=3).contains(&(trade.last_trade_id - trade.first_trade_id + 1)));
                assert!(trade.time_ms > previous.time_ms);
                assert_eq!(trade, generated_trade(symbol, id));
                previous = trade;
            }
        }
        assert_eq!(
            generated_trade("BTCUSDT", 0).time_ms / SPACING_MS,
            ORIGIN_MS / SPACING_MS
        );
    }

    #[test]
    fn first_id_at_is_the_first_trade_at_or_after() {
        for t in (0..5_000).map(|k| 1_700_000_000_000 + k * 137) {
            let id = first_id_at("BTCUSDT", t);
            assert!(generated_trade("BTCUSDT", id).time_ms >= t);
            assert!(generated_trade("BTCUSDT", id - 1).time_ms < t);
        }
        assert_eq!(first_id_at("BTCUSDT", 0), 0);
    }

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        assert_eq!(whole_secs(Duration::ZERO), 1);
        assert_eq!(whole_secs(Duration::from_millis(1_001)), 2);
        assert_eq!(whole_secs(Duration::from_secs(3)), 3);
        assert_eq!(interval_name(Duration::from_secs(60)), "1 MINUTE");
        assert_eq!(interval_name(Duration::from_secs(2)), "2 SECOND");
    }
}
