//! Objects lumibot 4.6.30 keeps in the cache namespace beside the price datasets
//! (`docs/FORMAT.md`, "Other objects lumibot keeps"): recognised by their path, checked for
//! what is cheap and sure, and never judged by the dataset rules, so the validator never
//! quarantines or replaces them.
//!
//! | kind | path under the cache root |
//! |---|---|
//! | `option_chain` | `thetadata/<asset>/option_chains/<SYM>_<YYYY-MM-DD>.parquet` |
//! | `events` | `thetadata/<asset>/events/{splits,dividends}/<SYM>_<type>.parquet` |
//! | `event_ranges` | `thetadata/<asset>/events/{splits,dividends}/<SYM>_<type>.meta.json` |
//! | `snapshot` | `thetadata/<asset>/snapshot/<datastyle>/<file>.parquet[.meta.json]` |
//! | `ibkr`, `yahoo` | `ibkr/…`, `yahoo/…` (those providers' caches) |
//! | `shared_bars` | `bars/v<N>/<provider>/…` (lumibot's shared bar cache) |
//! | `polygon_splits` | `polygon/<file>_splits.parquet` (the splits `polygon_helper` keeps beside a price file) |
//! | `polygon_chain` | `polygon/option_chains/<SYM>_<YYYY-MM-DD>[_max<N>d].parquet` |
//! | `aggtrades` | `binance/crypto/tick/aggtrades/<SYMBOL>/<YYYY-MM-DD>.parquet` (cachefill's own trade days, [`crate::trades`]; judged by their rules like events and chains) |

use std::fmt;

use arrow_array::cast::AsArray;
use arrow_array::types::Int64Type;
use arrow_array::{Array, RecordBatch};
use arrow_schema::DataType;
use bytes::Bytes;
use chrono::NaiveDate;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde::Serialize;

use crate::dataset::Provider;
use crate::format::{
    CHAIN_CACHE_VERSION, CHAIN_CACHE_VERSION_FIELD, CHAIN_DATA_COLUMN, CHAINS_FOLDER, EVENT_TYPES,
    EVENTS_FOLDER, EVENTS_RANGES_FIELD, IBKR_ROOT, PARQUET_SUFFIX, POLYGON_CHAINS_FOLDER,
    POLYGON_SPLITS_SUFFIX, SHARED_BARS_ROOT, SIDECAR_SUFFIX, SNAPSHOT_FOLDER, YAHOO_ROOT,
};

/// A kind of object lumibot keeps that is not a price dataset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OtherKind {
    OptionChain,
    Events,
    EventRanges,
    Snapshot,
    Ibkr,
    Yahoo,
    SharedBars,
    PolygonSplits,
    PolygonChain,
    AggTrades,
}

impl OtherKind {
    pub const ALL: [OtherKind; 10] = [
        OtherKind::OptionChain,
        OtherKind::Events,
        OtherKind::EventRanges,
        OtherKind::Snapshot,
        OtherKind::Ibkr,
        OtherKind::Yahoo,
        OtherKind::SharedBars,
        OtherKind::PolygonSplits,
        OtherKind::PolygonChain,
        OtherKind::AggTrades,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            OtherKind::OptionChain => "option_chain",
            OtherKind::Events => "events",
            OtherKind::EventRanges => "event_ranges",
            OtherKind::Snapshot => "snapshot",
            OtherKind::Ibkr => "ibkr",
            OtherKind::Yahoo => "yahoo",
            OtherKind::SharedBars => "shared_bars",
            OtherKind::PolygonSplits => "polygon_splits",
            OtherKind::PolygonChain => "polygon_chain",
            OtherKind::AggTrades => "aggtrades",
        }
    }

    /// The kind of a path relative to the cache root, when lumibot keeps such objects there.
    pub fn of(relative: &str) -> Option<OtherKind> {
        let segments: Vec<&str> = relative.split('/').collect();
        if segments
            .iter()
            .any(|s| s.is_empty() || *s == "." || *s == "..")
        {
            return None;
        }
        if crate::trades::TradeDay::parse_relative(relative).is_some() {
            return Some(OtherKind::AggTrades);
        }
        let thetadata = Provider::ThetaData.as_str();
        let polygon = Provider::Polygon.as_str();
        match segments[..] {
            [root, folder, _] if root == polygon && folder == POLYGON_CHAINS_FOLDER => {
                Some(OtherKind::PolygonChain)
            }
            [root, file] if root == polygon && file.ends_with(POLYGON_SPLITS_SUFFIX) => {
                Some(OtherKind::PolygonSplits)
            }
            [root, _, ..] if root == IBKR_ROOT => Some(OtherKind::Ibkr),
            [root, _, ..] if root == YAHOO_ROOT => Some(OtherKind::Yahoo),
            [root, version, _, ..] if root == SHARED_BARS_ROOT && is_schema_version(version) => {
                Some(OtherKind::SharedBars)
            }
            [root, _asset, folder, file] if root == thetadata && folder == CHAINS_FOLDER => {
                is_chain_file(file).then_some(OtherKind::OptionChain)
            }
            [root, _asset, folder, event_type, file]
                if root == thetadata
                    && folder == EVENTS_FOLDER
                    && EVENT_TYPES.contains(&event_type) =>
            {
                let stem_of = |suffix: &str| file.strip_suffix(suffix);
                let named = |stem: &str| {
                    stem.strip_suffix(event_type)
                        .and_then(|s| s.strip_suffix('_'))
                        .is_some_and(|symbol| !symbol.is_empty())
                };
                if stem_of(PARQUET_SUFFIX).is_some_and(named) {
                    Some(OtherKind::Events)
                } else if stem_of(SIDECAR_SUFFIX).is_some_and(named) {
                    Some(OtherKind::EventRanges)
                } else {
                    None
                }
            }
            [root, _asset, folder, _datastyle, file]
                if root == thetadata
                    && folder == SNAPSHOT_FOLDER
                    && (file.ends_with(PARQUET_SUFFIX)
                        || file.ends_with(&format!("{PARQUET_SUFFIX}{SIDECAR_SUFFIX}"))) =>
            {
                Some(OtherKind::Snapshot)
            }
            _ => None,
        }
    }
}

impl fmt::Display for OtherKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

fn is_schema_version(segment: &str) -> bool {
    segment
        .strip_prefix('v')
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// `<SYM>_<YYYY-MM-DD>.parquet`, as lumibot names a chain (and parses it back).
fn is_chain_file(file: &str) -> bool {
    let Some(stem) = file.strip_suffix(PARQUET_SUFFIX) else {
        return false;
    };
    stem.split_once('_').is_some_and(|(symbol, date)| {
        !symbol.is_empty() && NaiveDate::parse_from_str(date, "%Y-%m-%d").is_ok()
    })
}

/// What the validator saw in a other object: its rows when it is a parquet, and every
/// problem found by the checks that are cheap and sure. Problems are reported, never acted on.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Inspection {
    pub rows: Option<u64>,
    pub notes: Vec<String>,
}

/// Check an object of `kind` at `relative`: a parquet must decode (an option chain must
/// carry lumibot's current `_chain_cache_version`, or lumibot ignores it), a sidecar or ranges
/// file must be JSON (ranges: `{"ranges": [["YYYY-MM-DD", "YYYY-MM-DD"], …]}`).
pub fn inspect(kind: OtherKind, relative: &str, bytes: &Bytes) -> Inspection {
    let mut seen = Inspection::default();
    if relative.ends_with(PARQUET_SUFFIX) {
        match decode(bytes) {
            Ok(batches) => {
                seen.rows = Some(batches.iter().map(|b| b.num_rows() as u64).sum());
                if kind == OtherKind::OptionChain {
                    seen.notes.extend(chain_version_note(&batches));
                }
            }
            Err(e) => seen.notes.push(format!("unreadable parquet: {e}")),
        }
    } else if relative.ends_with(".json") {
        match serde_json::from_slice::<serde_json::Value>(bytes) {
            Ok(value) if kind == OtherKind::EventRanges => {
                seen.notes.extend(ranges_notes(&value));
            }
            Ok(_) => {}
            Err(e) => seen.notes.push(format!("not JSON: {e}")),
        }
    }
    seen
}

fn decode(bytes: &Bytes) -> Result<Vec<RecordBatch>, parquet::errors::ParquetError> {
    crate::codec::guarded(|| {
        ParquetRecordBatchReaderBuilder::try_new(bytes.clone())?
            .build()?
            .map(|batch| batch.map_err(parquet::errors::ParquetError::from))
            .collect()
    })
}

/// Why lumibot ignores a chain file of an older layout (its `_chain_cache_version` below the
/// current one, or none), read without requiring the current layout; `None` for a chain of
/// the current version and for bytes that are no chain at all.
pub fn outdated_chain(bytes: &Bytes) -> Option<String> {
    let batches = decode(bytes).ok()?;
    let first = batches.iter().find(|b| b.num_rows() > 0)?;
    first.column_by_name(CHAIN_DATA_COLUMN)?.as_struct_opt()?;
    chain_version_note(&batches)
}

/// lumibot reads `data[0]._chain_cache_version` and skips a chain below its current version.
fn chain_version_note(batches: &[RecordBatch]) -> Option<String> {
    let first = batches.iter().find(|b| b.num_rows() > 0);
    let Some(data) = first.and_then(|b| b.column_by_name(CHAIN_DATA_COLUMN)) else {
        return Some(format!("no '{CHAIN_DATA_COLUMN}' column with a chain"));
    };
    let Some(fields) = data.as_struct_opt() else {
        return Some(format!("'{CHAIN_DATA_COLUMN}' is not a struct"));
    };
    let version = fields
        .column_by_name(CHAIN_CACHE_VERSION_FIELD)
        .filter(|v| v.is_valid(0))
        .and_then(|v| arrow_cast::cast(v, &DataType::Int64).ok())
        .map(|v| v.as_primitive::<Int64Type>().value(0));
    match version {
        Some(v) if v >= CHAIN_CACHE_VERSION => None,
        Some(v) => Some(format!(
            "{CHAIN_CACHE_VERSION_FIELD} {v} < {CHAIN_CACHE_VERSION}: lumibot ignores this chain"
        )),
        None => Some(format!(
            "no {CHAIN_CACHE_VERSION_FIELD}: lumibot ignores this chain"
        )),
    }
}

/// lumibot's `_load_event_metadata`: entries that are not a pair of ISO dates are skipped.
fn ranges_notes(value: &serde_json::Value) -> Vec<String> {
    let Some(ranges) = value.get(EVENTS_RANGES_FIELD) else {
        return vec![format!(
            "no '{EVENTS_RANGES_FIELD}': lumibot sees no coverage"
        )];
    };
    let Some(ranges) = ranges.as_array() else {
        return vec![format!("'{EVENTS_RANGES_FIELD}' is not a list")];
    };
    let date = |v: &serde_json::Value| {
        v.as_str()
            .is_some_and(|s| NaiveDate::parse_from_str(s, "%Y-%m-%d").is_ok())
    };
    ranges
        .iter()
        .enumerate()
        .filter(|(_, range)| {
            !range
                .as_array()
                .is_some_and(|pair| pair.len() == 2 && pair.iter().all(date))
        })
        .map(|(i, range)| format!("range {i} ({range}) is not a pair of dates: lumibot skips it"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_is_recognised_by_its_path_and_nothing_else_is() {
        let cases = [
            (
                "thetadata/stock/option_chains/SPY_2024-01-02.parquet",
                Some(OtherKind::OptionChain),
            ),
            (
                "thetadata/index/option_chains/SPX_2024-01-02.parquet",
                Some(OtherKind::OptionChain),
            ),
            (
                "thetadata/stock/events/splits/AAPL_splits.parquet",
                Some(OtherKind::Events),
            ),
            (
                "thetadata/stock/events/dividends/BRK_B_dividends.meta.json",
                Some(OtherKind::EventRanges),
            ),
            (
                "thetadata/option/snapshot/quote/option_SPY_240119_470.0_CALL_snapshot_20240102_1m_093000_093500_quote.parquet",
                Some(OtherKind::Snapshot),
            ),
            (
                "thetadata/stock/snapshot/quote/stock_SPY_snapshot_20240102_1m_093000_093500_quote.parquet.meta.json",
                Some(OtherKind::Snapshot),
            ),
            ("ibkr/stock/minute/bars/AAPL.parquet", Some(OtherKind::Ibkr)),
            ("yahoo/AAPL_1d.pickle", Some(OtherKind::Yahoo)),
            (
                "bars/v1/polygon/ab/abcdef.parquet",
                Some(OtherKind::SharedBars),
            ),
            // Not lumibot's objects, or not named as lumibot names them.
            ("thetadata/stock/option_chains/SPY.parquet", None),
            ("thetadata/stock/events/splits/AAPL_dividends.parquet", None),
            ("thetadata/stock/events/mergers/AAPL_mergers.parquet", None),
            ("thetadata/stock/events/splits/_splits.parquet", None),
            ("bars/latest/x.parquet", None),
            ("ibkr/../x", None),
            (
                "thetadata/stock/minute/ohlc/stock_SPY_minute_ohlc.parquet",
                None,
            ),
        ];
        for (path, kind) in cases {
            assert_eq!(OtherKind::of(path), kind, "{path}");
        }
    }

    #[test]
    fn ranges_are_checked_as_lumibot_reads_them() {
        let seen = |text: &str| {
            inspect(
                OtherKind::EventRanges,
                "thetadata/stock/events/splits/AAPL_splits.meta.json",
                &Bytes::from(text.to_string()),
            )
            .notes
        };
        assert!(seen(r#"{"ranges": [["2020-01-01", "2026-12-01"]]}"#).is_empty());
        assert_eq!(seen(r#"{"ranges": [["2020-01-01", "soon"]]}"#).len(), 1);
        assert_eq!(seen(r#"{"other": 1}"#).len(), 1);
        assert!(seen("not json")[0].starts_with("not JSON"));
    }

    #[test]
    fn a_parquet_that_does_not_decode_is_noted_not_judged() {
        let seen = inspect(
            OtherKind::OptionChain,
            "thetadata/stock/option_chains/SPY_2024-01-02.parquet",
            &Bytes::from_static(b"PAR1 torn"),
        );
        assert_eq!(seen.rows, None);
        assert!(seen.notes[0].starts_with("unreadable parquet"), "{seen:?}");
    }
}
