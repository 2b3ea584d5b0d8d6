#![no_main]
use std::sync::OnceLock;

use cachefill_core::dataset::Dataset;
use cachefill_core::providers::thetadata::parse::{self, Field, RowSink, Scalar};
use cachefill_core::providers::thetadata::{events, normalize};
use libfuzzer_sys::fuzz_target;

struct Discard;

impl RowSink for Discard {
    fn value(&mut self, _row: usize, _field: Field, _value: Scalar<'_>) -> Result<(), String> {
        Ok(())
    }
    fn contract(&mut self, _field: Field, _value: Scalar<'_>) -> Result<(), String> {
        Ok(())
    }
}

const DATASETS: &[&str] = &[
    r#"{"provider":"thetadata","timespan":"minute","datastyle":"ohlc","asset_type":"stock","symbol":"AAPL"}"#,
    r#"{"provider":"thetadata","timespan":"minute","datastyle":"quote","asset_type":"stock","symbol":"AAPL"}"#,
    r#"{"provider":"thetadata","timespan":"day","datastyle":"ohlc","asset_type":"stock","symbol":"AAPL"}"#,
    r#"{"provider":"thetadata","timespan":"minute","datastyle":"ohlc","asset_type":"index","symbol":"SPX"}"#,
    r#"{"provider":"thetadata","timespan":"minute","datastyle":"ohlc","asset_type":"option","symbol":"SPY","expiration":"2024-01-19","strike":470,"right":"CALL"}"#,
    r#"{"provider":"thetadata","timespan":"minute","datastyle":"quote","asset_type":"option","symbol":"SPY","expiration":"2024-01-19","strike":470.5,"right":"PUT"}"#,
    r#"{"provider":"thetadata","timespan":"day","datastyle":"ohlc","asset_type":"option","symbol":"SPY","expiration":"2024-01-19","strike":470,"right":"CALL"}"#,
];

fn datasets() -> &'static [Dataset] {
    static CELL: OnceLock<Vec<Dataset>> = OnceLock::new();
    CELL.get_or_init(|| {
        DATASETS
            .iter()
            .map(|j| Dataset::from_json(j).expect(j))
            .collect()
    })
}

fuzz_target!(|body: &[u8]| {
    let _ = parse::parse(body, &mut Discard);
    for dataset in datasets() {
        let _ = normalize::normalize(dataset, body);
    }
    let _ = normalize::expirations(body);
    let _ = normalize::dates(body);
    let _ = normalize::strikes(body);
    let _ = events::splits(body);
    let _ = events::dividends(body);
    if let Ok(text) = std::str::from_utf8(body) {
        let _ = normalize::parse_stamp(text);
    }
});
