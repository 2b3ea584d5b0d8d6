#![no_main]
use std::sync::OnceLock;

use bytes::Bytes;
use cachefill_core::codec::Sidecar;
use cachefill_core::dataset::Dataset;
use cachefill_core::rules;
use chrono::{TimeZone, Utc};
use libfuzzer_sys::fuzz_target;

const DATASETS: &[&str] = &[
    r#"{"provider":"thetadata","timespan":"minute","datastyle":"ohlc","asset_type":"stock","symbol":"AAPL"}"#,
    r#"{"provider":"thetadata","timespan":"minute","datastyle":"quote","asset_type":"option","symbol":"SPY","expiration":"2024-01-19","strike":470,"right":"CALL"}"#,
    r#"{"provider":"thetadata","timespan":"day","datastyle":"ohlc","asset_type":"stock","symbol":"AAPL"}"#,
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

/// libFuzzer's panic hook aborts on every panic. A panic of the parquet reader that
/// `codec::guarded` turns into an error is what the product does on malformed bytes, not a
/// finding: let it unwind to the guard. Any other panic still aborts.
fn contain_guarded_panics() {
    static HOOK: OnceLock<()> = OnceLock::new();
    HOOK.get_or_init(|| {
        let fuzzer = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !cachefill_core::codec::in_guarded_read() {
                fuzzer(info);
            }
        }));
    });
}

// Input: [split: u16 LE][parquet bytes][sidecar bytes]. A split of 0xFFFF means no sidecar.
fuzz_target!(|data: &[u8]| {
    contain_guarded_panics();
    let _ = Sidecar::parse(data);
    let now = Utc.with_ymd_and_hms(2026, 1, 2, 3, 4, 5).unwrap();
    let (object, sidecar) = match data {
        [a, b, rest @ ..] => {
            let split = u16::from_le_bytes([*a, *b]);
            if split == u16::MAX {
                (rest, None)
            } else {
                let at = usize::from(split).min(rest.len());
                (&rest[..at], Some(&rest[at..]))
            }
        }
        _ => (data, None),
    };
    let object = Bytes::copy_from_slice(object);
    for dataset in datasets() {
        let _ = rules::check_object(dataset, &object, sidecar, now);
        let _ = rules::check_object(dataset, &object, None, now);
    }
    // The same bytes as an events parquet, a ranges file and a chain.
    for path in [
        "thetadata/stock/events/splits/AAPL_splits.parquet",
        "thetadata/stock/events/dividends/AAPL_dividends.parquet",
        "thetadata/stock/events/splits/AAPL_splits.meta.json",
        "thetadata/stock/option_chains/SPY_2024-11-15.parquet",
    ] {
        let reference = cachefill_core::reference::Reference::of(path).expect(path);
        let _ = rules::check_reference(&reference, &object);
    }
});
