//! The `synthetic` provider: deterministic generated bars and quotes for any symbol and
//! range. **Not market data.** It exists for demos, load tests and benchmarks.
//!
//! - Each symbol has a smooth price path (a level from the symbol's hash, slow cycles and a
//!   little day-to-day noise), so any session can be generated on its own and the same
//!   session always yields the same rows, whatever else is fetched with it.
//! - A session's one-minute path is a seeded random walk pinned to that session's open and
//!   close; longer bars and end-of-day records aggregate it, so minute, hour and day data of
//!   one symbol agree.
//! - It follows the NYSE calendar and session hours (early closes at 13:00), trades thinly
//!   in extended hours (empty bars with `count == 0`, which the row rules drop), and quotes
//!   a cent-wide-or-more spread.
//! - Options are priced from the underlying's path (intrinsic value plus time value).
//! - It counts one upstream request per session for intraday data and one per window of
//!   up to 365 days for end-of-day data, like ThetaData.

use std::f64::consts::TAU;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{Datelike, NaiveDate, NaiveTime};

use super::{FetchRequest, Fetched, Provider, ProviderError, one_per_session, windows};
use crate::calendar;
use crate::codec::rows::AggBar;
use crate::codec::schema::Layout;
use crate::codec::{EodBar, OhlcBar, QuoteBar, Rows};
use crate::dataset::{AssetType, BarInterval, Dataset, Provider as ProviderName, Right};

const MINUTE_NS: i64 = 60_000_000_000;

/// Deterministic generated data (see the module docs).
#[derive(Debug, Clone, Default)]
pub struct SyntheticProvider {
    latency: Duration,
}

impl SyntheticProvider {
    pub fn new() -> Self {
        Self::default()
    }

    /// Sleep this long per request, to behave like a remote upstream in demos and tests.
    pub fn with_latency(mut self, latency: Duration) -> Self {
        self.latency = latency;
        self
    }
}

fn fnv1a(parts: &[&[u8]]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for byte in *part {
            hash ^= u64::from(*byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
        hash ^= 0xff;
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

/// Price level of a symbol at a (fractional) day number: slow cycles around a base level.
fn level(symbol: &str, day: f64) -> f64 {
    let h = fnv1a(&[symbol.as_bytes()]);
    let base = 20.0 + (h % 48_000) as f64 / 100.0;
    let phase1 = (h >> 16 & 0xffff) as f64 / 65_536.0 * TAU;
    let phase2 = (h >> 32 & 0xffff) as f64 / 65_536.0 * TAU;
    let noise = {
        let d = day.floor() as i64;
        let mut rng = fastrand::Rng::with_seed(fnv1a(&[symbol.as_bytes(), &d.to_le_bytes()]));
        (rng.f64() - 0.5) * 0.03
    };
    base * (0.25 * (TAU * day / 400.0 + phase1).sin()
        + 0.08 * (TAU * day / 37.0 + phase2).sin()
        + noise)
        .exp()
}

fn round_cents(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

fn day_number(date: NaiveDate) -> f64 {
    f64::from(date.num_days_from_ce())
}

/// One-minute bars of the underlying on a session.
#[derive(Debug, Clone, Copy)]
struct MinuteBar {
    time: i64,
    open: f64,
    high: f64,
    low: f64,
    close: f64,
    volume: i64,
    count: i64,
}

/// Minute-by-minute path of `symbol` on `session`, from `from` to `to` New York time.
fn minute_path(symbol: &str, session: NaiveDate, after_hours: bool) -> Vec<MinuteBar> {
    let hours = calendar::session_hours(session)
        .ok()
        .flatten()
        .unwrap_or(calendar::SessionHours {
            open: NaiveTime::from_hms_opt(9, 30, 0).expect("valid"),
            close: NaiveTime::from_hms_opt(16, 0, 0).expect("valid"),
        });
    let day = day_number(session);
    let open_price = level(symbol, day);
    let close_price = level(symbol, day + 1.0);
    let regular_open = calendar::ny_wall_to_utc(session, hours.open)
        .timestamp_nanos_opt()
        .expect("in range");
    let regular_close = calendar::ny_wall_to_utc(session, hours.close)
        .timestamp_nanos_opt()
        .expect("in range");
    let (first, last) = if after_hours {
        let pre =
            calendar::ny_wall_to_utc(session, NaiveTime::from_hms_opt(4, 0, 0).expect("valid"));
        // Extended trading lasts four hours past the close (20:00, or 17:00 on early closes).
        (
            pre.timestamp_nanos_opt().expect("in range"),
            regular_close + 4 * 60 * MINUTE_NS,
        )
    } else {
        (regular_open, regular_close)
    };
    let minutes = ((last - first) / MINUTE_NS) as usize;
    let mut rng = fastrand::Rng::with_seed(fnv1a(&[
        symbol.as_bytes(),
        &session.num_days_from_ce().to_le_bytes(),
    ]));
    let sigma = 0.0009;
    // A random walk, then pinned so the regular session runs from its open to its close.
    let mut walk = Vec::with_capacity(minutes + 1);
    let mut x: f64 = 0.0;
    walk.push(x);
    for _ in 0..minutes {
        x += sigma * (rng.f64() + rng.f64() + rng.f64() - 1.5) * 2.0;
        walk.push(x);
    }
    let index_of = |t: i64| ((t - first) / MINUTE_NS).clamp(0, minutes as i64) as usize;
    let (i_open, i_close) = (index_of(regular_open), index_of(regular_close));
    let span = (i_close - i_open).max(1) as f64;
    let drift = (close_price / open_price).ln();
    let (w_open, w_close) = (walk[i_open], walk[i_close]);
    let price_at = |i: usize| {
        let progress = ((i as f64 - i_open as f64) / span).clamp(0.0, 1.0);
        let pinned = walk[i] - w_open - (w_close - w_open) * progress + drift * progress;
        open_price * pinned.exp()
    };
    (0..minutes)
        .map(|i| {
            let time = first + i as i64 * MINUTE_NS;
            let regular = time >= regular_open && time < regular_close;
            let open = round_cents(price_at(i));
            let close = round_cents(price_at(i + 1));
            let wiggle = 1.0 + rng.f64() * sigma;
            let high = round_cents(open.max(close) * wiggle);
            let low = round_cents(open.min(close) / wiggle);
            let active = regular || rng.f64() < 0.6;
            let (volume, count) = if active {
                let scale = if regular { 4_000 } else { 300 };
                let count = 1 + rng.i64(0..scale / 20);
                (count * rng.i64(20..120), count)
            } else {
                (0, 0)
            };
            MinuteBar {
                time,
                open,
                high,
                low,
                close,
                volume,
                count,
            }
        })
        .collect()
}

/// Aggregate one-minute bars into bars of `minutes` minutes (aligned to the first bar).
fn aggregate(bars: &[MinuteBar], minutes: usize) -> Vec<OhlcBar> {
    bars.chunks(minutes.max(1))
        .map(|chunk| {
            let traded: Vec<&MinuteBar> = chunk.iter().filter(|b| b.count > 0).collect();
            let volume: i64 = traded.iter().map(|b| b.volume).sum();
            let count: i64 = traded.iter().map(|b| b.count).sum();
            if traded.is_empty() {
                // The terminal's empty bar: zero prices, zero count, last vwap.
                return OhlcBar {
                    time: chunk[0].time,
                    volume: Some(0),
                    count: Some(0),
                    open: Some(0.0),
                    high: Some(0.0),
                    low: Some(0.0),
                    close: Some(0.0),
                    vwap: Some(0.0),
                };
            }
            let notional: f64 = traded
                .iter()
                .map(|b| (b.high + b.low + b.close) / 3.0 * b.volume as f64)
                .sum();
            let high = traded.iter().map(|b| b.high).fold(f64::MIN, f64::max);
            let low = traded.iter().map(|b| b.low).fold(f64::MAX, f64::min);
            OhlcBar {
                time: chunk[0].time,
                volume: Some(volume),
                count: Some(count),
                open: Some(traded[0].open),
                high: Some(high),
                low: Some(low),
                close: Some(traded[traded.len() - 1].close),
                vwap: Some(round_cents(notional / volume.max(1) as f64).clamp(low, high)),
            }
        })
        .collect()
}

/// Price an option bar from the underlying's bar (intrinsic plus time value).
fn option_bar(bar: &OhlcBar, strike: f64, right: Right, days_left: f64, thin: bool) -> OhlcBar {
    let price = |s: f64| {
        let intrinsic = match right {
            Right::Call => (s - strike).max(0.0),
            Right::Put => (strike - s).max(0.0),
        };
        let moneyness = ((s - strike) / s).abs();
        let time_value = s * 0.25 * (days_left.max(0.5) / 365.0).sqrt() * (-moneyness * 8.0).exp();
        round_cents(intrinsic + time_value).max(0.01)
    };
    let (Some(o), Some(h), Some(l), Some(c)) = (bar.open, bar.high, bar.low, bar.close) else {
        return bar.clone();
    };
    if thin || bar.count == Some(0) {
        return OhlcBar {
            count: Some(0),
            volume: Some(0),
            open: Some(0.0),
            high: Some(0.0),
            low: Some(0.0),
            close: Some(0.0),
            ..bar.clone()
        };
    }
    let (po, pc) = (price(o), price(c));
    let (ph, pl) = (price(h), price(l));
    let high = po.max(pc).max(ph).max(pl);
    let low = po.min(pc).min(ph).min(pl);
    OhlcBar {
        time: bar.time,
        open: Some(po),
        close: Some(pc),
        high: Some(high),
        low: Some(low),
        vwap: Some(round_cents((po + pc + high + low) / 4.0).clamp(low, high)),
        volume: bar.count.map(|c| (c / 40).max(1)),
        count: bar.count.map(|c| (c / 200).max(1)),
    }
}

fn quote_of(bar: &OhlcBar, rng: &mut fastrand::Rng) -> QuoteBar {
    let mid = bar.close.filter(|c| *c > 0.0).or(bar.vwap).unwrap_or(0.0);
    let spread = round_cents((mid * 0.0002).max(0.01));
    let bid = round_cents(mid - spread / 2.0).max(0.0);
    QuoteBar {
        time: bar.time,
        ask_size: Some(rng.i64(1..40)),
        bid_size: Some(rng.i64(1..40)),
        ask_exchange: Some([1, 7, 65][rng.usize(0..3)]),
        ask_condition: Some(0),
        bid_exchange: Some([1, 7, 65][rng.usize(0..3)]),
        ask: Some(round_cents(bid + spread)),
        bid: Some(bid),
        bid_condition: Some(0),
    }
}

/// Bars of the dataset's instrument on one session at `minutes` per bar.
fn session_bars(
    dataset: &Dataset,
    session: NaiveDate,
    minutes: usize,
    after_hours: bool,
) -> Vec<OhlcBar> {
    let path = minute_path(&dataset.symbol, session, after_hours);
    let bars = aggregate(&path, minutes);
    match (&dataset.contract, dataset.asset_type) {
        (Some(c), _) => {
            let days_left = (c.expiration - session).num_days() as f64;
            let mut rng = fastrand::Rng::with_seed(fnv1a(&[
                b"option",
                c.strike.as_str().as_bytes(),
                &session.num_days_from_ce().to_le_bytes(),
            ]));
            bars.iter()
                .map(|b| option_bar(b, c.strike.value(), c.right, days_left, rng.f64() < 0.3))
                .collect()
        }
        // Indices have prices but no trade counts.
        (None, AssetType::Index) => bars
            .into_iter()
            .map(|b| OhlcBar {
                volume: Some(0),
                count: Some(0),
                ..b
            })
            .filter(|b| b.open.is_some_and(|o| o > 0.0))
            .collect(),
        (None, _) => bars,
    }
}

fn eod_of(dataset: &Dataset, session: NaiveDate) -> EodBar {
    let bars = session_bars(dataset, session, 390, false);
    let traded: Vec<&OhlcBar> = bars
        .iter()
        .filter(|b| b.open.is_some_and(|o| o > 0.0))
        .collect();
    let hours = calendar::session_hours(session).ok().flatten();
    let last_minute = hours
        .map(|h| h.close - chrono::Duration::seconds(1))
        .unwrap_or_else(|| NaiveTime::from_hms_opt(15, 59, 59).expect("valid"));
    let mut rng = fastrand::Rng::with_seed(fnv1a(&[
        dataset.symbol.as_bytes(),
        b"eod",
        &session.num_days_from_ce().to_le_bytes(),
    ]));
    let mut eod = EodBar {
        session,
        last_trade: Some(format!("{session}T{}.000", last_minute.format("%H:%M:%S"))),
        created: Some(format!(
            "{session}T17:15:{:02}.{:03}",
            rng.u32(0..60),
            rng.u32(0..1000)
        )),
        ..Default::default()
    };
    if let (Some(first), Some(last)) = (traded.first(), traded.last()) {
        eod.open = first.open;
        eod.close = last.close;
        eod.high = traded.iter().filter_map(|b| b.high).reduce(f64::max);
        eod.low = traded.iter().filter_map(|b| b.low).reduce(f64::min);
        eod.volume = Some(traded.iter().filter_map(|b| b.volume).sum());
        eod.count = Some(traded.iter().filter_map(|b| b.count).sum());
        let quote = quote_of(last, &mut rng);
        eod.bid = quote.bid;
        eod.ask = quote.ask;
        eod.bid_size = quote.bid_size;
        eod.ask_size = quote.ask_size;
        eod.bid_exchange = quote.bid_exchange;
        eod.ask_exchange = quote.ask_exchange;
        eod.bid_condition = quote.bid_condition;
        eod.ask_condition = quote.ask_condition;
    } else {
        eod.count = Some(0);
        eod.volume = Some(0);
    }
    eod
}

/// Generate the rows of `dataset` for `sessions` (what [`SyntheticProvider::fetch`] returns).
pub fn generate(dataset: &Dataset, sessions: &[NaiveDate], include_after_hours: bool) -> Rows {
    let minutes = match dataset.timespan.interval() {
        BarInterval::Minutes(n) => n as usize,
        BarInterval::Hour => 60,
        BarInterval::Day => 390,
    };
    match Layout::of(dataset) {
        Layout::IntradayOhlc => Rows::Ohlc(
            sessions
                .iter()
                .flat_map(|s| session_bars(dataset, *s, minutes, include_after_hours))
                .collect(),
        ),
        Layout::IntradayQuote => Rows::Quote(
            sessions
                .iter()
                .flat_map(|s| {
                    let mut rng = fastrand::Rng::with_seed(fnv1a(&[
                        dataset.symbol.as_bytes(),
                        b"quote",
                        &s.num_days_from_ce().to_le_bytes(),
                    ]));
                    session_bars(dataset, *s, minutes, include_after_hours)
                        .iter()
                        .map(|b| quote_of(b, &mut rng))
                        .collect::<Vec<_>>()
                })
                .collect(),
        ),
        Layout::DayOhlc | Layout::DayQuote => {
            Rows::Eod(sessions.iter().map(|s| eod_of(dataset, *s)).collect())
        }
        // Polygon's shape of the same bars: day bars open at midnight New York.
        Layout::Aggs if dataset.is_intraday() => Rows::Aggs(
            sessions
                .iter()
                .flat_map(|s| session_bars(dataset, *s, minutes, include_after_hours))
                .map(|b| {
                    agg_of(
                        b.time, b.open, b.high, b.low, b.close, b.volume, b.vwap, b.count,
                    )
                })
                .collect(),
        ),
        Layout::Aggs => Rows::Aggs(
            sessions
                .iter()
                .map(|s| {
                    let e = eod_of(dataset, *s);
                    let midnight = calendar::ny_wall_to_utc(*s, NaiveTime::MIN);
                    let time = midnight.timestamp_nanos_opt().unwrap_or(0);
                    let vwap = e.open.zip(e.close).map(|(o, c)| (o + c) / 2.0);
                    agg_of(
                        time, e.open, e.high, e.low, e.close, e.volume, vwap, e.count,
                    )
                })
                .collect(),
        ),
    }
}

#[allow(clippy::too_many_arguments)]
fn agg_of(
    time: i64,
    open: Option<f64>,
    high: Option<f64>,
    low: Option<f64>,
    close: Option<f64>,
    volume: Option<i64>,
    vwap: Option<f64>,
    count: Option<i64>,
) -> AggBar {
    AggBar {
        time,
        open,
        high,
        low,
        close,
        volume: volume.map(|v| v as f64),
        vwap,
        transactions: count,
        otc: None,
    }
}

#[async_trait]
impl Provider for SyntheticProvider {
    fn supports(&self, dataset: &Dataset) -> Result<(), ProviderError> {
        if dataset.provider == ProviderName::Synthetic {
            Ok(())
        } else {
            Err(ProviderError::Unsupported(format!(
                "the synthetic provider only fills 'synthetic' datasets, not '{}'",
                dataset.provider
            )))
        }
    }

    fn plan(&self, dataset: &Dataset, sessions: &[NaiveDate]) -> Vec<Vec<NaiveDate>> {
        if dataset.is_intraday() {
            one_per_session(sessions)
        } else {
            windows(sessions, 365)
        }
    }

    async fn fetch(&self, request: FetchRequest<'_>) -> Result<Fetched, ProviderError> {
        if !self.latency.is_zero() {
            tokio::time::sleep(self.latency).await;
        }
        Ok(Fetched {
            rows: generate(
                request.dataset,
                request.sessions,
                request.include_after_hours,
            ),
            requests: 1,
        })
    }

    fn concurrency(&self, _dataset: &Dataset) -> usize {
        4
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::rows::rows_to_batch;

    fn dataset(json: &str) -> Dataset {
        Dataset::from_json(json).unwrap()
    }

    fn d(text: &str) -> NaiveDate {
        text.parse().unwrap()
    }

    #[test]
    fn same_session_same_rows_whatever_is_fetched_with_it() {
        let ds = dataset(
            r#"{"provider":"synthetic","asset_type":"stock","symbol":"AAPL","timespan":"minute","datastyle":"ohlc"}"#,
        );
        let alone = generate(&ds, &[d("2024-01-05")], true);
        let together = generate(&ds, &[d("2024-01-04"), d("2024-01-05")], true);
        let Rows::Ohlc(alone) = alone else { panic!() };
        let Rows::Ohlc(together) = together else {
            panic!()
        };
        assert_eq!(&together[together.len() - alone.len()..], &alone[..]);
        // 04:00–20:00 is 960 minutes; regular hours always trade.
        assert_eq!(alone.len(), 960);
        let batch = rows_to_batch(&ds, Rows::Ohlc(alone)).unwrap();
        assert!(
            batch.num_rows() >= 390 && batch.num_rows() < 960,
            "{}",
            batch.num_rows()
        );
    }

    #[test]
    fn early_close_sessions_are_shorter() {
        let ds = dataset(
            r#"{"provider":"synthetic","asset_type":"stock","symbol":"AAPL","timespan":"minute","datastyle":"ohlc"}"#,
        );
        let Rows::Ohlc(bars) = generate(&ds, &[d("2024-11-29")], false) else {
            panic!()
        };
        assert_eq!(bars.len(), 210); // 09:30–13:00
    }

    #[test]
    fn every_generated_real_row_passes_the_row_rules() {
        for json in [
            r#"{"provider":"synthetic","asset_type":"stock","symbol":"MSFT","timespan":"5m","datastyle":"quote"}"#,
            r#"{"provider":"synthetic","asset_type":"index","symbol":"SPX","timespan":"hour","datastyle":"ohlc"}"#,
            r#"{"provider":"synthetic","asset_type":"option","symbol":"SPY","timespan":"minute","datastyle":"ohlc","expiration":"2024-02-16","strike":480.0,"right":"PUT"}"#,
            r#"{"provider":"synthetic","asset_type":"stock","symbol":"AAPL","timespan":"day","datastyle":"ohlc"}"#,
            r#"{"provider":"synthetic","asset_type":"stock","symbol":"AAPL","timespan":"1D","datastyle":"quote"}"#,
        ] {
            let ds = dataset(json);
            let sessions = calendar::sessions_between(d("2024-01-02"), d("2024-01-31")).unwrap();
            let rows = generate(&ds, &sessions, true);
            let generated = rows.len();
            let batch = rows_to_batch(&ds, rows).unwrap();
            assert!(batch.num_rows() > 0, "{json}");
            assert!(batch.num_rows() <= generated);
        }
    }
}
