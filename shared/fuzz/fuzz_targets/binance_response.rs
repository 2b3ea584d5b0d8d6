#![no_main]
// Binance's answers: a page of `GET /api/v3/aggTrades` and the `{"code","msg"}` refusal
// (`providers::binance::parse`), and a daily archive (`providers::binance::archive`): its
// CHECKSUM file, its CSV and the zip holding the CSV. The whole input is given to each.
use bytes::Bytes;
use cachefill_core::providers::binance::{archive, parse};
use cachefill_core::trades::{AggTrade, day_start_ms};
use chrono::NaiveDate;
use libfuzzer_sys::fuzz_target;

const MS_PER_DAY: i64 = 86_400_000;

/// The fixture's day (times in ms) and a day after 2025-01-01 (times in µs).
const DAYS: [(&str, (i32, u32, u32)); 2] = [
    ("BTCUSDT-aggTrades-2021-10-22", (2021, 10, 22)),
    ("BTCUSDT-aggTrades-2025-11-07", (2025, 11, 7)),
];

fn check_trade(trade: &AggTrade) {
    assert!(trade.id >= 0 && trade.time >= 0, "{trade:?}");
    assert!(
        trade.first_trade >= 0 && trade.first_trade <= trade.last_trade,
        "{trade:?}"
    );
    assert!(trade.price.is_finite() && trade.price >= 0.0, "{trade:?}");
    assert!(trade.qty.is_finite() && trade.qty >= 0.0, "{trade:?}");
}

fn check_day(trades: &[AggTrade], date: NaiveDate) {
    assert!(!trades.is_empty(), "an accepted day has trades");
    let start = day_start_ms(date);
    for (i, trade) in trades.iter().enumerate() {
        check_trade(trade);
        assert!(
            (start..start + MS_PER_DAY).contains(&trade.time),
            "{trade:?} on {date}"
        );
        if i > 0 {
            assert_eq!(
                trades[i - 1].id.checked_add(1),
                Some(trade.id),
                "ids run without a gap"
            );
        }
    }
}

fuzz_target!(|body: &[u8]| {
    if let Ok(trades) = parse::agg_trades(body) {
        trades.iter().for_each(check_trade);
    }
    let _ = parse::error_body(body);
    for (stem, (y, m, d)) in DAYS {
        let date = NaiveDate::from_ymd_opt(y, m, d).unwrap();
        let zip = format!("{stem}.zip");
        if let Ok(hex) = archive::parse_checksum(body, &zip) {
            assert_eq!(hex.len(), 64);
            assert!(
                hex.bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
            );
        }
        if let Ok(trades) = archive::parse_day(body, date) {
            check_day(&trades, date);
        }
        let csv = format!("{stem}.csv");
        if let Ok(trades) = archive::read_day(Bytes::copy_from_slice(body), &csv, date) {
            check_day(&trades, date);
        }
    }
});
