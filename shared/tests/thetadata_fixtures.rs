//! Every recorded ThetaData response parsed and normalized, and the same data in every
//! other shape a terminal sends giving the same rows.

use std::path::PathBuf;

use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int64Type, TimestampNanosecondType};
use arrow_array::{Array, RecordBatch};
use cachefill_core::codec::rows::rows_to_batch;
use cachefill_core::codec::{EodBar, OhlcBar, QuoteBar, Rows};
use cachefill_core::dataset::Dataset;
use cachefill_core::providers::thetadata::normalize::{self, normalize};
use cachefill_core::providers::thetadata::parse::ParseError;
use cachefill_testing::thetadata::Exchange;
use chrono::{DateTime, NaiveDate};
use serde_json::{Map, Value, json};

fn fixture(name: &str) -> PathBuf {
    cachefill_testing::fixtures::root().unwrap().join(name)
}

fn exchange(name: &str) -> Exchange {
    Exchange::load(&fixture(&format!("thetadata-v3/{name}.json"))).unwrap()
}

fn columnar(name: &str) -> Vec<u8> {
    std::fs::read(fixture(&format!("thetadata-v3-columnar/{name}.json"))).unwrap()
}

fn dataset(json: &str) -> Dataset {
    Dataset::from_json(json).unwrap()
}

fn d(text: &str) -> NaiveDate {
    text.parse().unwrap()
}

fn utc(text: &str) -> i64 {
    DateTime::parse_from_rfc3339(text)
        .unwrap()
        .timestamp_nanos_opt()
        .unwrap()
}

fn ohlc(rows: Rows) -> Vec<OhlcBar> {
    match rows {
        Rows::Ohlc(r) => r,
        other => panic!("expected OHLC rows, got {other:?}"),
    }
}

fn quotes(rows: Rows) -> Vec<QuoteBar> {
    match rows {
        Rows::Quote(r) => r,
        other => panic!("expected quote rows, got {other:?}"),
    }
}

fn eod(rows: Rows) -> Vec<EodBar> {
    match rows {
        Rows::Eod(r) => r,
        other => panic!("expected end-of-day rows, got {other:?}"),
    }
}

fn to_batch(ds: &Dataset, rows: Rows) -> RecordBatch {
    rows_to_batch(ds, rows).unwrap()
}

fn times(batch: &RecordBatch) -> Vec<i64> {
    batch
        .column_by_name("datetime")
        .unwrap()
        .as_primitive::<TimestampNanosecondType>()
        .values()
        .to_vec()
}

fn floats(batch: &RecordBatch, name: &str) -> Vec<Option<f64>> {
    batch
        .column_by_name(name)
        .unwrap()
        .as_primitive::<Float64Type>()
        .iter()
        .collect()
}

const OPTION_OHLC_HOUR: &str = r#"{"provider":"thetadata","asset_type":"option","symbol":"AAPL","timespan":"hour","datastyle":"ohlc","expiration":"2025-01-03","strike":275,"right":"CALL"}"#;
const OPTION_QUOTE_HOUR: &str = r#"{"provider":"thetadata","asset_type":"option","symbol":"AAPL","timespan":"hour","datastyle":"quote","expiration":"2025-01-17","strike":150,"right":"CALL"}"#;
const OPTION_EOD: &str = r#"{"provider":"thetadata","asset_type":"option","symbol":"AAPL","timespan":"day","datastyle":"ohlc","expiration":"2025-01-17","strike":220,"right":"CALL"}"#;
const STOCK_QUOTE_HOUR: &str = r#"{"provider":"thetadata","asset_type":"stock","symbol":"AAPL","timespan":"hour","datastyle":"quote"}"#;
const STOCK_EOD: &str = r#"{"provider":"thetadata","asset_type":"stock","symbol":"AAPL","timespan":"day","datastyle":"ohlc"}"#;
const STOCK_EOD_QUOTE: &str = r#"{"provider":"thetadata","asset_type":"stock","symbol":"AAPL","timespan":"1D","datastyle":"quote"}"#;
const TSLA_MINUTE_OHLC: &str = r#"{"provider":"thetadata","asset_type":"stock","symbol":"TSLA","timespan":"minute","datastyle":"ohlc"}"#;
const TSLA_MINUTE_QUOTE: &str = r#"{"provider":"thetadata","asset_type":"stock","symbol":"TSLA","timespan":"minute","datastyle":"quote"}"#;
const TSLA_DAY: &str = r#"{"provider":"thetadata","asset_type":"stock","symbol":"TSLA","timespan":"day","datastyle":"ohlc"}"#;
const TSLA_OPTION_OHLC: &str = r#"{"provider":"thetadata","asset_type":"option","symbol":"TSLA","timespan":"minute","datastyle":"ohlc","expiration":"2024-11-22","strike":340,"right":"CALL"}"#;
const TSLA_OPTION_QUOTE: &str = r#"{"provider":"thetadata","asset_type":"option","symbol":"TSLA","timespan":"minute","datastyle":"quote","expiration":"2024-11-22","strike":340,"right":"CALL"}"#;

#[test]
fn option_hourly_ohlc_fixture() {
    let ex = exchange("option-history-ohlc");
    let ds = dataset(OPTION_OHLC_HOUR);
    let bars = ohlc(normalize(&ds, &ex.reply.body).unwrap());
    assert_eq!(bars.len(), 7);
    assert_eq!(
        bars[0],
        OhlcBar {
            time: utc("2024-12-24T14:30:00Z"),
            volume: Some(103),
            high: Some(0.03),
            low: Some(0.02),
            vwap: Some(0.02),
            count: Some(23),
            close: Some(0.03),
            open: Some(0.03),
        }
    );
    assert_eq!(
        bars[6],
        OhlcBar {
            time: utc("2024-12-24T20:30:00Z"),
            volume: Some(0),
            high: Some(0.0),
            low: Some(0.0),
            vwap: Some(0.02),
            count: Some(0),
            close: Some(0.0),
            open: Some(0.0),
        }
    );
    let batch = to_batch(&ds, Rows::Ohlc(bars));
    // Three empty bars (count 0) after the 13:00 early close are dropped.
    assert_eq!(batch.num_rows(), 4);
    assert_eq!(times(&batch).last(), Some(&utc("2024-12-24T17:30:00Z")));
    let strike = floats(&batch, "strike");
    assert!(strike.iter().all(|s| *s == Some(275.0)));
    let right = batch.column_by_name("right").unwrap().as_string::<i32>();
    assert_eq!(right.value(0), "CALL");
}

#[test]
fn option_hourly_quote_fixture() {
    let ex = exchange("option-history-quote");
    let ds = dataset(OPTION_QUOTE_HOUR);
    let rows = quotes(normalize(&ds, &ex.reply.body).unwrap());
    assert_eq!(rows.len(), 7);
    assert_eq!(
        rows[0],
        QuoteBar {
            time: utc("2024-01-05T14:30:00Z"),
            ask_size: Some(0),
            bid_size: Some(0),
            ask_exchange: Some(1),
            ask_condition: Some(50),
            bid_exchange: Some(1),
            ask: Some(0.0),
            bid: Some(0.0),
            bid_condition: Some(50),
        }
    );
    assert_eq!(
        rows[6],
        QuoteBar {
            time: utc("2024-01-05T20:30:00Z"),
            ask_size: Some(54),
            bid_size: Some(67),
            ask_exchange: Some(9),
            ask_condition: Some(50),
            bid_exchange: Some(11),
            ask: Some(42.5),
            bid: Some(42.3),
            bid_condition: Some(50),
        }
    );
    // The 09:30 quote has neither side and is dropped.
    let batch = to_batch(&ds, Rows::Quote(rows));
    assert_eq!(batch.num_rows(), 6);
    assert_eq!(times(&batch)[0], utc("2024-01-05T15:30:00Z"));
}

#[test]
fn option_end_of_day_fixture() {
    let ex = exchange("option-history-eod");
    let ds = dataset(OPTION_EOD);
    let rows = eod(normalize(&ds, &ex.reply.body).unwrap());
    assert_eq!(rows.len(), 6);
    assert_eq!(
        rows[0],
        EodBar {
            session: d("2024-11-01"),
            last_trade: Some("2024-11-01T15:59:31.528".into()),
            created: Some("2024-11-01T17:15:55.428".into()),
            count: Some(274),
            volume: Some(1393),
            high: Some(13.85),
            low: Some(11.17),
            close: Some(12.5),
            open: Some(11.5),
            ask_size: Some(9),
            bid_size: Some(2),
            ask_exchange: Some(4),
            ask_condition: Some(50),
            bid_exchange: Some(1),
            ask: Some(12.55),
            bid: Some(12.35),
            bid_condition: Some(50),
        }
    );
    assert_eq!(
        rows[5],
        EodBar {
            session: d("2024-11-08"),
            last_trade: Some("2024-11-08T15:59:52.113".into()),
            created: Some("2024-11-08T17:17:41.982".into()),
            count: Some(129),
            volume: Some(534),
            high: Some(14.33),
            low: Some(12.72),
            close: Some(13.17),
            open: Some(13.5),
            ask_size: Some(16),
            bid_size: Some(76),
            ask_exchange: Some(7),
            ask_condition: Some(50),
            bid_exchange: Some(69),
            ask: Some(13.3),
            bid: Some(13.0),
            bid_condition: Some(50),
        }
    );
    let batch = to_batch(&ds, Rows::Eod(rows));
    assert_eq!(batch.num_rows(), 6);
    // 16:00 New York: EDT before 2024-11-03, EST after.
    assert_eq!(times(&batch)[0], utc("2024-11-01T20:00:00Z"));
    assert_eq!(times(&batch)[5], utc("2024-11-08T21:00:00Z"));
    let adjusted = batch
        .column_by_name("_split_adjusted")
        .unwrap()
        .as_boolean();
    assert!(adjusted.iter().all(|v| v == Some(false)));
    assert!(
        floats(&batch, "stock_splits")
            .iter()
            .all(|v| *v == Some(0.0))
    );
}

#[test]
fn stock_end_of_day_fixture_as_ohlc_and_as_day_quotes() {
    let ex = exchange("stock-history-eod");
    let ds = dataset(STOCK_EOD);
    let rows = eod(normalize(&ds, &ex.reply.body).unwrap());
    assert_eq!(rows.len(), 7);
    let sessions: Vec<NaiveDate> = rows.iter().map(|r| r.session).collect();
    assert_eq!(
        sessions,
        [
            "2024-01-02",
            "2024-01-03",
            "2024-01-04",
            "2024-01-05",
            "2024-01-08",
            "2024-01-09",
            "2024-01-10"
        ]
        .map(d)
    );
    assert_eq!(
        rows[0],
        EodBar {
            session: d("2024-01-02"),
            last_trade: Some("2024-01-02T17:17:51.877".into()),
            created: Some("2024-01-02T17:17:53.606".into()),
            count: Some(1_003_582),
            volume: Some(80_680_243),
            high: Some(188.44),
            low: Some(183.885),
            close: Some(185.64),
            open: Some(187.03),
            ask_size: Some(2),
            bid_size: Some(2),
            ask_exchange: Some(1),
            ask_condition: Some(0),
            bid_exchange: Some(7),
            ask: Some(185.36),
            bid: Some(185.34),
            bid_condition: Some(0),
        }
    );
    assert_eq!(
        rows[6],
        EodBar {
            session: d("2024-01-10"),
            last_trade: Some("2024-01-10T17:15:10.004".into()),
            created: Some("2024-01-10T17:15:17.022".into()),
            count: Some(551_340),
            volume: Some(46_046_017),
            high: Some(186.4),
            low: Some(183.92),
            close: Some(186.19),
            open: Some(184.28),
            ask_size: Some(3),
            bid_size: Some(3),
            ask_exchange: Some(1),
            ask_condition: Some(0),
            bid_exchange: Some(1),
            ask: Some(186.72),
            bid: Some(186.68),
            bid_condition: Some(0),
        }
    );
    let ohlc_batch = to_batch(&ds, Rows::Eod(rows));
    assert_eq!(ohlc_batch.num_rows(), 7);
    assert_eq!(floats(&ohlc_batch, "open")[0], Some(187.03));

    let quote_ds = dataset(STOCK_EOD_QUOTE);
    let rows = eod(normalize(&quote_ds, &ex.reply.body).unwrap());
    let quote_batch = to_batch(&quote_ds, Rows::Eod(rows));
    assert_eq!(quote_batch.num_rows(), 7);
    assert_eq!(floats(&quote_batch, "bid")[0], Some(185.34));
    assert_eq!(floats(&quote_batch, "ask")[6], Some(186.72));
}

#[test]
fn stock_hourly_quote_fixture() {
    let ex = exchange("stock-history-quote");
    let ds = dataset(STOCK_QUOTE_HOUR);
    let rows = quotes(normalize(&ds, &ex.reply.body).unwrap());
    assert_eq!(rows.len(), 7);
    assert_eq!(
        rows[0],
        QuoteBar {
            time: utc("2024-01-05T14:30:00Z"),
            ask_size: Some(6),
            bid_size: Some(17),
            ask_exchange: Some(1),
            ask_condition: Some(0),
            bid_exchange: Some(7),
            ask: Some(181.94),
            bid: Some(181.92),
            bid_condition: Some(0),
        }
    );
    assert_eq!(
        rows[6],
        QuoteBar {
            time: utc("2024-01-05T20:30:00Z"),
            ask_size: Some(9),
            bid_size: Some(2),
            ask_exchange: Some(3),
            ask_condition: Some(0),
            bid_exchange: Some(1),
            ask: Some(180.28),
            bid: Some(180.27),
            bid_condition: Some(0),
        }
    );
    let batch = to_batch(&ds, Rows::Quote(rows));
    assert_eq!(batch.num_rows(), 7);
    let bid_times = batch
        .column_by_name("last_bid_time")
        .unwrap()
        .as_primitive::<TimestampNanosecondType>();
    assert_eq!(bid_times.value(0), utc("2024-01-05T14:30:00Z"));
    assert_eq!(
        batch
            .column_by_name("last_trade_time")
            .unwrap()
            .null_count(),
        7
    );
}

#[test]
fn option_listings_fixtures() {
    let expirations =
        normalize::expirations(&exchange("option-list-expirations").reply.body).unwrap();
    assert_eq!(expirations.len(), 1957);
    assert_eq!(expirations[0], d("2012-06-01"));
    assert_eq!(expirations.last(), Some(&d("2028-12-15")));
    let dates = normalize::dates(&exchange("option-list-dates-quote").reply.body).unwrap();
    assert_eq!(dates.len(), 170);
    assert_eq!(dates[0], d("2023-08-17"));
    assert_eq!(dates.last(), Some(&d("2024-04-19")));
    let strikes = normalize::strikes(
        br#"{"response":[{"symbol":"AAPL","strike":220.0},{"symbol":"AAPL","strike":222.5}]}"#,
    )
    .unwrap();
    assert_eq!(strikes, [220.0, 222.5]);
}

#[test]
fn text_fixtures_are_what_the_terminal_said() {
    let status = exchange("terminal-status-check");
    assert_eq!(
        (status.reply.status, &status.reply.body[..]),
        (200, &b"CONNECTED"[..])
    );
    let strikes = exchange("option-list-strikes");
    assert_eq!(strikes.reply.status, 410);
    assert!(String::from_utf8_lossy(&strikes.reply.body).contains("exp -> expiration"));
}

#[test]
fn raw_text_and_parsed_body_of_a_recording_agree() {
    // The recordings keep the terminal's bytes (`rawText`, e.g. `"strike":275.000`) and a
    // parsed copy (`body`); both must normalize the same.
    for (name, json) in [
        ("option-history-ohlc", OPTION_OHLC_HOUR),
        ("option-history-quote", OPTION_QUOTE_HOUR),
        ("option-history-eod", OPTION_EOD),
        ("stock-history-eod", STOCK_EOD),
        ("stock-history-quote", STOCK_QUOTE_HOUR),
    ] {
        let file: Value = serde_json::from_slice(
            &std::fs::read(fixture(&format!("thetadata-v3/{name}.json"))).unwrap(),
        )
        .unwrap();
        let parsed = serde_json::to_vec(&file["response"]["body"]).unwrap();
        let raw = file["response"]["rawText"].as_str().unwrap().as_bytes();
        let ds = dataset(json);
        assert_eq!(
            normalize(&ds, raw).unwrap(),
            normalize(&ds, &parsed).unwrap(),
            "{name}"
        );
    }
}

/// A bar from its open, high, low and close, volume, count and vwap.
fn ohlc_bar(time: &str, prices: [f64; 4], volume: i64, count: i64, vwap: f64) -> OhlcBar {
    let [open, high, low, close] = prices.map(Some);
    OhlcBar {
        time: utc(time),
        volume: Some(volume),
        high,
        low,
        vwap: Some(vwap),
        count: Some(count),
        close,
        open,
    }
}

#[test]
fn columnar_stock_minute_ohlc_fixture() {
    let ds = dataset(TSLA_MINUTE_OHLC);
    let bars = ohlc(normalize(&ds, &columnar("stock_minute_ohlc")).unwrap());
    assert_eq!(bars.len(), 7);
    assert_eq!(
        bars[0],
        ohlc_bar(
            "2024-11-15T14:30:00Z",
            [310.57, 311.6, 310.02, 310.26],
            1_978_146,
            20_544,
            310.6
        )
    );
    assert_eq!(bars[5].high, Some(316.482312));
    assert_eq!(
        bars[6],
        ohlc_bar("2024-11-15T14:36:00Z", [0.0; 4], 0, 0, 313.17)
    );
    let batch = to_batch(&ds, Rows::Ohlc(bars));
    assert_eq!(batch.num_rows(), 6, "the trailing empty bar is dropped");
    assert_eq!(times(&batch)[0], utc("2024-11-15T14:30:00Z"));
    assert_eq!(times(&batch)[5], utc("2024-11-15T14:35:00Z"));
    let trade_times = batch
        .column_by_name("last_trade_time")
        .unwrap()
        .as_primitive::<TimestampNanosecondType>();
    assert_eq!(trade_times.value(5), utc("2024-11-15T14:35:00Z"));
    assert_eq!(
        batch.column_by_name("last_bid_time").unwrap().null_count(),
        6
    );
}

#[test]
fn columnar_stock_minute_quote_fixture() {
    let ds = dataset(TSLA_MINUTE_QUOTE);
    let rows = quotes(normalize(&ds, &columnar("stock_minute_quote")).unwrap());
    assert_eq!(rows.len(), 4);
    assert_eq!(
        rows[0],
        QuoteBar {
            time: utc("2024-11-15T14:30:00Z"),
            ask_size: Some(1),
            bid_size: Some(4),
            ask_exchange: Some(65),
            ask_condition: Some(0),
            bid_exchange: Some(7),
            ask: Some(311.29),
            bid: Some(310.52),
            bid_condition: Some(0),
        }
    );
    assert_eq!(
        rows[3],
        QuoteBar {
            time: utc("2024-11-15T14:33:00Z"),
            ask_size: Some(1),
            bid_size: Some(11),
            ask_exchange: Some(1),
            ask_condition: Some(0),
            bid_exchange: Some(7),
            ask: Some(315.24),
            bid: Some(315.21),
            bid_condition: Some(0),
        }
    );
    let batch = to_batch(&ds, Rows::Quote(rows));
    assert_eq!(batch.num_rows(), 4);
    assert_eq!(times(&batch)[3], utc("2024-11-15T14:33:00Z"));
}

#[test]
#[allow(clippy::approx_constant)] // 3.14 is the recorded vwap, not π
fn columnar_option_minute_ohlc_fixture() {
    let ds = dataset(TSLA_OPTION_OHLC);
    let bars = ohlc(normalize(&ds, &columnar("option_minute_ohlc")).unwrap());
    assert_eq!(bars.len(), 4);
    assert_eq!(
        bars[0],
        ohlc_bar("2024-11-15T14:30:00Z", [3.15, 3.3, 3.0, 3.0], 105, 28, 3.14)
    );
    assert_eq!((bars[2].open, bars[2].close), (Some(3.67), Some(4.0)));
    assert_eq!(
        bars[3],
        ohlc_bar("2024-11-15T14:33:00Z", [0.0; 4], 0, 0, 3.5)
    );
    let batch = to_batch(&ds, Rows::Ohlc(bars));
    assert_eq!(batch.num_rows(), 3, "the trailing empty bar is dropped");
    assert_eq!(times(&batch)[2], utc("2024-11-15T14:32:00Z"));
    assert!(floats(&batch, "strike").iter().all(|s| *s == Some(340.0)));
    let expiration = batch
        .column_by_name("expiration")
        .unwrap()
        .as_string::<i32>();
    assert_eq!(expiration.value(2), "2024-11-22");
}

#[test]
fn columnar_option_minute_quote_fixture() {
    let ds = dataset(TSLA_OPTION_QUOTE);
    let rows = quotes(normalize(&ds, &columnar("option_minute_quote")).unwrap());
    assert_eq!(rows.len(), 3);
    assert_eq!(
        rows[0],
        QuoteBar {
            time: utc("2024-11-15T14:30:00Z"),
            ask_size: Some(0),
            bid_size: Some(0),
            ask_exchange: Some(5),
            ask_condition: Some(50),
            bid_exchange: Some(5),
            ask: Some(0.0),
            bid: Some(0.0),
            bid_condition: Some(50),
        }
    );
    assert_eq!(rows[1].ask_size, Some(47));
    assert_eq!(
        rows[2],
        QuoteBar {
            time: utc("2024-11-15T14:32:00Z"),
            ask_size: Some(210),
            bid_size: Some(119),
            ask_exchange: Some(5),
            ask_condition: Some(50),
            bid_exchange: Some(65),
            ask: Some(3.75),
            bid: Some(3.6),
            bid_condition: Some(50),
        }
    );
    let batch = to_batch(&ds, Rows::Quote(rows));
    assert_eq!(batch.num_rows(), 2, "the quote with no side is dropped");
    assert_eq!(times(&batch)[0], utc("2024-11-15T14:31:00Z"));
}

#[test]
fn columnar_stock_day_fixture() {
    let ds = dataset(TSLA_DAY);
    let rows = eod(normalize(&ds, &columnar("stock_day_ohlc")).unwrap());
    assert_eq!(rows.len(), 2);
    assert_eq!(
        rows[0],
        EodBar {
            session: d("2024-11-15"),
            last_trade: Some("2024-11-15T17:15:12.759".into()),
            created: Some("2024-11-15T17:15:14.615".into()),
            count: Some(1_488_837),
            volume: Some(114_034_638),
            high: Some(324.6799),
            low: Some(309.22),
            close: Some(320.72),
            open: Some(310.52),
            ask_size: Some(9),
            bid_size: Some(3),
            ask_exchange: Some(1),
            ask_condition: Some(0),
            bid_exchange: Some(65),
            ask: Some(320.53),
            bid: Some(320.47),
            bid_condition: Some(0),
        }
    );
    assert_eq!(
        rows[1],
        EodBar {
            session: d("2024-11-18"),
            last_trade: Some("2024-11-18T17:15:33.591".into()),
            created: Some("2024-11-18T17:15:34.35".into()),
            count: Some(1_747_916),
            volume: Some(125_744_908),
            high: Some(348.5499),
            low: Some(330.01),
            close: Some(338.74),
            open: Some(340.68),
            ask_size: Some(1),
            bid_size: Some(1),
            ask_exchange: Some(7),
            ask_condition: Some(0),
            bid_exchange: Some(65),
            ask: Some(339.4),
            bid: Some(339.35),
            bid_condition: Some(0),
        }
    );
    let batch = to_batch(&ds, Rows::Eod(rows));
    assert_eq!(batch.num_rows(), 2);
    assert_eq!(
        times(&batch),
        [utc("2024-11-15T21:00:00Z"), utc("2024-11-18T21:00:00Z")]
    );
    let volume = batch
        .column_by_name("volume")
        .unwrap()
        .as_primitive::<Int64Type>();
    assert_eq!(volume.value(1), 125_744_908);
}

#[test]
fn columnar_recordings_in_the_rows_shape_normalize_identically() {
    for (name, json) in [
        ("stock_minute_ohlc", TSLA_MINUTE_OHLC),
        ("stock_minute_quote", TSLA_MINUTE_QUOTE),
        ("option_minute_ohlc", TSLA_OPTION_OHLC),
        ("option_minute_quote", TSLA_OPTION_QUOTE),
        ("stock_day_ohlc", TSLA_DAY),
    ] {
        let body = columnar(name);
        let columns: Map<String, Value> = serde_json::from_slice(&body).unwrap();
        let n = columns.values().next().unwrap().as_array().unwrap().len();
        let rows: Vec<Value> = (0..n)
            .map(|i| {
                Value::Object(
                    columns
                        .iter()
                        .map(|(k, v)| (k.clone(), v[i].clone()))
                        .collect(),
                )
            })
            .collect();
        let ds = dataset(json);
        let as_rows = serde_json::to_vec(&json!({ "response": rows })).unwrap();
        let from_columns = normalize(&ds, &body).unwrap();
        assert_eq!(from_columns.len(), n, "{name}");
        assert_eq!(normalize(&ds, &as_rows).unwrap(), from_columns, "{name}");
    }
}

#[test]
fn every_recorded_fixture_is_spot_checked_here() {
    // Adding a recording without checking it here fails this test.
    let checked: [(&str, &[&str]); 2] = [
        (
            "thetadata-v3",
            &[
                "option-history-eod.json",
                "option-history-ohlc.json",
                "option-history-quote.json",
                "option-list-dates-quote.json",
                "option-list-expirations.json",
                "option-list-strikes.json",
                "stock-history-eod.json",
                "stock-history-quote.json",
                "terminal-status-check.json",
            ],
        ),
        (
            "thetadata-v3-columnar",
            &[
                "option_minute_ohlc.json",
                "option_minute_quote.json",
                "stock_day_ohlc.json",
                "stock_minute_ohlc.json",
                "stock_minute_quote.json",
            ],
        ),
    ];
    for (folder, names) in checked {
        let mut found: Vec<String> = std::fs::read_dir(fixture(folder))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        found.sort();
        assert_eq!(found, names, "{folder}");
    }
}

// ---- the same data in every shape ------------------------------------------------------

/// Rows of a recording (flattened out of the nested option shape) and its contract.
fn rows_of(name: &str) -> (Vec<Map<String, Value>>, Option<Value>) {
    let file: Value = serde_json::from_slice(
        &std::fs::read(fixture(&format!("thetadata-v3/{name}.json"))).unwrap(),
    )
    .unwrap();
    let response = file["response"]["body"]["response"].as_array().unwrap();
    match response.first() {
        Some(first) if first.get("contract").is_some() => (
            first["data"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r.as_object().unwrap().clone())
                .collect(),
            Some(first["contract"].clone()),
        ),
        _ => (
            response
                .iter()
                .map(|r| r.as_object().unwrap().clone())
                .collect(),
            None,
        ),
    }
}

fn csv_cell(value: &Value) -> String {
    match value {
        Value::String(s) => format!("\"{}\"", s.replace('"', "\"\"")),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// The rows in every shape: (name, body).
fn shapes(rows: &[Map<String, Value>], contract: Option<&Value>) -> Vec<(&'static str, Vec<u8>)> {
    let mut columns: Vec<String> = rows[0].keys().cloned().collect();
    // Option rows in the flat shapes carry their contract as columns.
    let flat: Vec<Map<String, Value>> = rows
        .iter()
        .map(|r| {
            let mut r = r.clone();
            if let Some(Value::Object(c)) = contract {
                r.extend(c.clone());
            }
            r
        })
        .collect();
    if let Some(Value::Object(c)) = contract {
        columns.extend(c.keys().cloned());
    }
    let rows_shape = json!({ "response": flat });
    let bare = json!(flat);
    let columnar: Map<String, Value> = columns
        .iter()
        .map(|c| {
            (
                c.clone(),
                Value::Array(flat.iter().map(|r| r[c].clone()).collect()),
            )
        })
        .collect();
    let positional: Vec<Value> = flat
        .iter()
        .map(|r| Value::Array(columns.iter().map(|c| r[c].clone()).collect()))
        .collect();
    let header_first = json!({"header": {"format": columns, "next_page": null, "error_type": "null"}, "response": positional});
    let header_last = json!({"response": positional, "header": {"format": columns}});
    let mut csv = columns.join(",");
    csv.push('\n');
    for r in &flat {
        let cells: Vec<String> = columns.iter().map(|c| csv_cell(&r[c])).collect();
        csv.push_str(&cells.join(","));
        csv.push_str("\r\n");
    }
    let mut out = vec![
        ("rows", serde_json::to_vec(&rows_shape).unwrap()),
        ("bare array", serde_json::to_vec(&bare).unwrap()),
        (
            "columnar",
            serde_json::to_vec(&Value::Object(columnar)).unwrap(),
        ),
        ("header first", serde_json::to_vec(&header_first).unwrap()),
        ("header last", serde_json::to_vec(&header_last).unwrap()),
        ("csv", csv.into_bytes()),
    ];
    if let Some(contract) = contract {
        let nested = json!({"response": [{"contract": contract, "data": rows}]});
        out.push(("nested", serde_json::to_vec(&nested).unwrap()));
    }
    out
}

#[test]
fn every_shape_of_the_same_data_normalizes_identically() {
    for (name, json) in [
        ("option-history-ohlc", OPTION_OHLC_HOUR),
        ("option-history-quote", OPTION_QUOTE_HOUR),
        ("option-history-eod", OPTION_EOD),
        ("stock-history-eod", STOCK_EOD),
        ("stock-history-quote", STOCK_QUOTE_HOUR),
    ] {
        let ds = dataset(json);
        let recorded = normalize(&ds, &exchange(name).reply.body).unwrap();
        let (rows, contract) = rows_of(name);
        let shapes = shapes(&rows, contract.as_ref());
        assert!(shapes.len() >= 6);
        for (shape, body) in shapes {
            let got = normalize(&ds, &body).unwrap_or_else(|e| {
                panic!("{name} as {shape}: {e}\n{}", String::from_utf8_lossy(&body))
            });
            assert_eq!(got, recorded, "{name} as {shape}");
        }
    }
}

#[test]
fn v2_rows_with_date_and_ms_of_day_give_the_same_bars() {
    let ds = dataset(STOCK_QUOTE_HOUR);
    let recorded = normalize(&ds, &exchange("stock-history-quote").reply.body).unwrap();
    let (rows, _) = rows_of("stock-history-quote");
    let format = [
        "ms_of_day",
        "bid_size",
        "bid_exchange",
        "bid",
        "bid_condition",
        "ask_size",
        "ask_exchange",
        "ask",
        "ask_condition",
        "date",
    ];
    let positional: Vec<Value> = rows
        .iter()
        .map(|r| {
            let ts = r["timestamp"].as_str().unwrap();
            let ms = (ts[11..13].parse::<i64>().unwrap() * 60 + ts[14..16].parse::<i64>().unwrap())
                * 60_000;
            let date: i64 = ts[..10].replace('-', "").parse().unwrap();
            Value::Array(
                format
                    .iter()
                    .map(|c| match *c {
                        "ms_of_day" => json!(ms),
                        "date" => json!(date),
                        c => r[c].clone(),
                    })
                    .collect(),
            )
        })
        .collect();
    let body = json!({"header": {"format": format}, "response": positional});
    assert_eq!(
        normalize(&ds, &serde_json::to_vec(&body).unwrap()).unwrap(),
        recorded
    );
}

// ---- missing and extra fields ----------------------------------------------------------

fn edited(name: &str, edit: impl Fn(usize, &mut Map<String, Value>)) -> Vec<u8> {
    let (mut rows, contract) = rows_of(name);
    for (i, row) in rows.iter_mut().enumerate() {
        edit(i, row);
    }
    let body = match contract {
        Some(c) => json!({"response": [{"contract": c, "data": rows}]}),
        None => json!({ "response": rows }),
    };
    serde_json::to_vec(&body).unwrap()
}

#[test]
fn unknown_fields_are_ignored_and_missing_optional_fields_are_null() {
    let ds = dataset(OPTION_OHLC_HOUR);
    let recorded = ohlc(normalize(&ds, &exchange("option-history-ohlc").reply.body).unwrap());
    let extra = edited("option-history-ohlc", |_, r| {
        r.insert("condition_flags".into(), json!([1, 2, {"a": null}]));
        r.insert("venue".into(), json!("nqb"));
        r.insert("bid".into(), json!(0.01));
    });
    assert_eq!(ohlc(normalize(&ds, &extra).unwrap()), recorded);

    let without_vwap = edited("option-history-ohlc", |_, r| {
        r.remove("vwap");
        r.remove("count");
    });
    let bars = ohlc(normalize(&ds, &without_vwap).unwrap());
    assert!(bars.iter().all(|b| b.vwap.is_none() && b.count.is_none()));
    assert_eq!(bars[0].open, recorded[0].open);
    assert_eq!(bars[0].time, recorded[0].time);
}

#[test]
fn a_missing_required_field_is_an_error_naming_it() {
    let ds = dataset(OPTION_OHLC_HOUR);
    let one_row = edited("option-history-ohlc", |i, r| {
        if i == 3 {
            r.remove("close");
        }
    });
    let err = normalize(&ds, &one_row).unwrap_err();
    assert!(
        matches!(&err, ParseError::Content(m) if m.contains("row 3") && m.contains("'close'")),
        "{err}"
    );

    let no_column = edited("option-history-ohlc", |_, r| {
        r.remove("timestamp");
    });
    let err = normalize(&ds, &no_column).unwrap_err();
    assert!(err.to_string().contains("no 'timestamp' field"), "{err}");

    let ds = dataset(STOCK_EOD);
    let no_created = edited("stock-history-eod", |_, r| {
        r.remove("created");
        r.remove("last_trade");
    });
    let err = normalize(&ds, &no_created).unwrap_err();
    assert!(err.to_string().contains("'created'"), "{err}");

    let ds = dataset(STOCK_QUOTE_HOUR);
    let bad_type = edited("stock-history-quote", |i, r| {
        if i == 1 {
            r.insert("bid".into(), json!("n/a"));
        }
    });
    let err = normalize(&ds, &bad_type).unwrap_err();
    assert!(err.to_string().contains("'bid' is not a number"), "{err}");
}

#[test]
fn rows_of_another_contract_are_refused() {
    let ds = dataset(OPTION_OHLC_HOUR);
    let (rows, _) = rows_of("option-history-ohlc");
    for contract in [
        json!({"symbol": "AAPL", "expiration": "2025-01-03", "right": "CALL", "strike": 280}),
        json!({"symbol": "AAPL", "expiration": "2025-01-03", "right": "PUT", "strike": 275}),
        json!({"symbol": "AAPL", "expiration": "2025-01-10", "right": "CALL", "strike": 275}),
        json!({"symbol": "MSFT", "expiration": "2025-01-03", "right": "CALL", "strike": 275}),
    ] {
        let body = json!({"response": [{"contract": contract, "data": rows}]});
        let err = normalize(&ds, &serde_json::to_vec(&body).unwrap()).unwrap_err();
        assert!(
            err.to_string().contains("another contract"),
            "{contract}: {err}"
        );
    }
    // v2 spellings of the right contract are accepted.
    let v2 = json!({"response": [{"contract": {"root": "aapl", "expiration": 20250103, "right": "C", "strike": 275000}, "data": rows}]});
    assert!(normalize(&ds, &serde_json::to_vec(&v2).unwrap()).is_ok());
}
