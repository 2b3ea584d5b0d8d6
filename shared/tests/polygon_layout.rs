//! Polygon datasets through the fill engine on the local directory store: lumibot's flat
//! `polygon/` paths, its columns, its placeholders at 04:56 UTC, no edge markers, no
//! corporate-action columns, and a second request that is a hit.

use std::sync::Arc;
use std::time::Duration;

use arrow_array::RecordBatch;
use arrow_array::cast::AsArray;
use arrow_array::types::TimestampNanosecondType;
use cachefill_core::calendar;
use cachefill_core::clock::FixedClock;
use cachefill_core::codec::facts::placeholder_mask;
use cachefill_core::codec::schema::schema_for;
use cachefill_core::codec::{self, Rows};
use cachefill_core::dataset::Dataset;
use cachefill_core::fill::{EngineConfig, FillEngine, FillRequest, FillStatus};
use cachefill_core::format;
use cachefill_core::keys::KeyLayout;
use cachefill_core::providers::synthetic;
use cachefill_core::rules;
use cachefill_core::storage::ObjectStore;
use cachefill_core::storage::local::LocalStore;
use cachefill_testing::doubles::{CountingProvider, ScriptedProvider};
use chrono::{DateTime, NaiveDate, TimeZone, Utc};

const SPY_DAY: &str = r#"{"provider":"polygon","asset_type":"stock","symbol":"SPY","timespan":"day","datastyle":"ohlc"}"#;
const SPY_MINUTE: &str = r#"{"provider":"polygon","asset_type":"stock","symbol":"SPY","timespan":"minute","datastyle":"ohlc"}"#;

fn d(text: &str) -> NaiveDate {
    text.parse().unwrap()
}

type Engine = FillEngine<LocalStore, Arc<CountingProvider<ScriptedProvider>>>;

/// An engine whose provider serves synthetic bars in Polygon's shape for every session of
/// `start..=end` but `gaps`.
fn engine(
    json: &str,
    start: &str,
    end: &str,
    gaps: &[&str],
) -> (
    Engine,
    Arc<CountingProvider<ScriptedProvider>>,
    tempfile::TempDir,
) {
    let dataset = Dataset::from_json(json).unwrap();
    let scripted = ScriptedProvider::new();
    for session in calendar::sessions_between(d(start), d(end)).unwrap() {
        if !gaps.contains(&session.to_string().as_str()) {
            scripted.set(session, synthetic::generate(&dataset, &[session], true));
        }
    }
    let provider = Arc::new(CountingProvider::new(scripted));
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStore::new(dir.path().join("bucket")).unwrap();
    let mut config = EngineConfig::new("test-bucket", KeyLayout::new("stage/cache", "v1"));
    config.lease_ttl = Duration::from_secs(30);
    let now = Utc.with_ymd_and_hms(2024, 7, 1, 12, 0, 0).unwrap();
    let engine =
        FillEngine::new(store, provider.clone(), config).with_clock(Arc::new(FixedClock::new(now)));
    (engine, provider, dir)
}

fn request(json: &str, start: &str, end: &str) -> FillRequest {
    FillRequest::new(Dataset::from_json(json).unwrap(), d(start), d(end), true).unwrap()
}

async fn stored(engine: &Engine, key: &str) -> RecordBatch {
    let got = engine.store().get(key, None).await.unwrap();
    codec::decode(got.bytes).unwrap().batch
}

fn times(batch: &RecordBatch) -> Vec<DateTime<Utc>> {
    let column = batch.column(0).as_primitive::<TimestampNanosecondType>();
    (0..column.len())
        .map(|i| DateTime::from_timestamp_nanos(column.value(i)))
        .collect()
}

#[test]
fn synthetic_bars_come_in_polygons_shape_for_polygon_datasets() {
    let dataset = Dataset::from_json(SPY_DAY).unwrap();
    let Rows::Aggs(bars) = synthetic::generate(&dataset, &[d("2024-01-03")], false) else {
        panic!("aggregate rows");
    };
    // Polygon stamps a day bar at midnight New York: 05:00 UTC in winter.
    assert_eq!(
        DateTime::from_timestamp_nanos(bars[0].time),
        Utc.with_ymd_and_hms(2024, 1, 3, 5, 0, 0).unwrap()
    );
}

#[tokio::test]
async fn a_day_fill_writes_lumibots_polygon_file_with_its_placeholders() {
    // 2024-01-03 has no bar: in winter its 04:56 UTC placeholder is 23:56 New York the day
    // before, yet it covers 2024-01-03.
    let (engine, provider, _dir) = engine(SPY_DAY, "2024-01-02", "2024-01-31", &["2024-01-03"]);
    let req = request(SPY_DAY, "2024-01-02", "2024-01-31");
    let first = engine.fill(&req).await.unwrap();
    assert_eq!(first.status, FillStatus::Filled);
    assert_eq!(first.key, "stage/cache/v1/polygon/stock_SPY_day.parquet");
    let batch = stored(&engine, &first.key).await;
    assert_eq!(batch.schema(), schema_for(&req.dataset));
    let names: Vec<String> = batch
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    assert_eq!(
        names,
        [
            "datetime",
            "open",
            "high",
            "low",
            "close",
            "volume",
            "vwap",
            "timestamp",
            "transactions",
            "otc",
            "missing"
        ]
    );
    let sessions = calendar::sessions_between(d("2024-01-02"), d("2024-01-31")).unwrap();
    assert_eq!(batch.num_rows(), sessions.len());
    let missing = placeholder_mask(&batch);
    let at = times(&batch);
    let placeholders: Vec<DateTime<Utc>> = (0..at.len())
        .filter(|i| missing[*i])
        .map(|i| at[i])
        .collect();
    assert_eq!(
        placeholders,
        [Utc.with_ymd_and_hms(2024, 1, 3, 4, 56, 0).unwrap()]
    );
    // Real bars at midnight New York; `timestamp` is Polygon's `t` in milliseconds.
    assert_eq!(at[0], Utc.with_ymd_and_hms(2024, 1, 2, 5, 0, 0).unwrap());
    let t = batch
        .column_by_name("timestamp")
        .unwrap()
        .as_primitive::<arrow_array::types::Int64Type>();
    assert_eq!(t.value(0), at[0].timestamp_millis());

    provider.reset();
    let again = engine.fill(&req).await.unwrap();
    assert_eq!(
        again.status,
        FillStatus::Hit,
        "the placeholder covers its session"
    );
    assert_eq!(provider.calls(), 0);
}

#[tokio::test]
async fn a_minute_fill_has_no_edge_markers_and_no_corporate_columns() {
    let (engine, _provider, _dir) = engine(SPY_MINUTE, "2024-01-02", "2024-01-05", &["2024-01-04"]);
    let req = request(SPY_MINUTE, "2024-01-02", "2024-01-05");
    let answer = engine.fill(&req).await.unwrap();
    assert_eq!(
        answer.key,
        "stage/cache/v1/polygon/stock_SPY_minute.parquet"
    );
    let batch = stored(&engine, &answer.key).await;
    let missing = placeholder_mask(&batch);
    let at = times(&batch);
    let placeholders: Vec<DateTime<Utc>> = (0..at.len())
        .filter(|i| missing[*i])
        .map(|i| at[i])
        .collect();
    assert_eq!(
        placeholders,
        [Utc.with_ymd_and_hms(2024, 1, 4, 4, 56, 0).unwrap()],
        "one placeholder for the empty session, none at sessions' edges"
    );
    assert!(batch.column_by_name("stock_splits").is_none());
    let got = engine.store().get(&answer.key, None).await.unwrap();
    let decoded = codec::decode(got.bytes).unwrap();
    assert_eq!(decoded.fact(format::FACT_PROVIDER), Some("polygon"));
    assert_eq!(
        decoded.fact(format::FACT_COVERAGE),
        Some("2024-01-02..2024-01-05")
    );
}

#[tokio::test]
async fn the_validator_passes_a_polygon_file_and_knows_where_its_placeholders_go() {
    let (engine, _provider, _dir) = engine(SPY_DAY, "2024-01-02", "2024-01-12", &["2024-01-03"]);
    let req = request(SPY_DAY, "2024-01-02", "2024-01-12");
    let answer = engine.fill(&req).await.unwrap();
    let body = engine.store().get(&answer.key, None).await.unwrap().bytes;
    let sidecar = engine
        .store()
        .get(&format!("{}.meta.json", answer.key), None)
        .await
        .unwrap()
        .bytes;
    let now = Utc.with_ymd_and_hms(2024, 7, 1, 12, 0, 0).unwrap();
    let report = rules::check_object(&req.dataset, &body, Some(&sidecar), now);
    assert!(report.violations.is_empty(), "{:?}", report.violations);

    // A placeholder at 16:00 New York is where lumibot's ThetaData files put one, not its
    // Polygon files.
    let at_close = calendar::session_close_utc(d("2024-01-03"))
        .timestamp_nanos_opt()
        .unwrap();
    let misplaced = codec::rows::placeholders_at(&req.dataset, vec![at_close]).unwrap();
    let violations = rules::check_batch(&req.dataset, &misplaced, now);
    assert!(
        violations
            .iter()
            .any(|v| v.to_string().contains("neither where lumibot puts one")),
        "{violations:?}"
    );
}
