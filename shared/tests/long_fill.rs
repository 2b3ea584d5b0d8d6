//! Long fills, which the engine merges and encodes a chunk of fetched rows at a time: the
//! file written must be the one a single merge of everything would give (ThetaData's and
//! Polygon's layouts, with a cached file, placeholders and sessions that stop short), also
//! after a lost write race, and a unit failing after several chunks must publish nothing.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use cachefill_core::calendar::{self, NyDates};
use cachefill_core::clock::{Clock, FixedClock};
use cachefill_core::codec::facts::datetimes;
use cachefill_core::codec::rows::rows_to_batch;
use cachefill_core::codec::{self, Rows, conform};
use cachefill_core::coverage::{self, Coverage};
use cachefill_core::dataset::Dataset;
use cachefill_core::fill::merge;
use cachefill_core::fill::{EngineConfig, FillEngine, FillRequest, FillStatus};
use cachefill_core::format;
use cachefill_core::keys::KeyLayout;
use cachefill_core::providers::synthetic::generate;
use cachefill_core::providers::{
    FetchRequest, Fetched, Provider, ProviderError, one_per_session, runs,
};
use cachefill_core::pyfmt;
use cachefill_core::storage::ObjectStore;
use cachefill_core::storage::local::LocalStore;
use cachefill_testing::doubles::RacingStore;
use chrono::{DateTime, Datelike, NaiveDate, NaiveTime, TimeZone, Utc};

const AAPL_MINUTE: &str = r#"{"provider":"synthetic","asset_type":"stock","symbol":"AAPL","timespan":"minute","datastyle":"ohlc"}"#;
const AAPL_POLYGON_MINUTE: &str = r#"{"provider":"polygon","asset_type":"stock","symbol":"AAPL","timespan":"minute","datastyle":"ohlc"}"#;

/// The engine merges this many fetched rows at a time (`MERGE_CHUNK_ROWS` in
/// `fill/engine.rs`); the fills here fetch several times as many.
const CHUNK_ROWS: usize = 64 * 1024;

fn d(text: &str) -> NaiveDate {
    text.parse().unwrap()
}

fn config() -> EngineConfig {
    let mut config = EngineConfig::new("test-bucket", KeyLayout::new("stage/cache", "v1"));
    config.lease_ttl = Duration::from_secs(30);
    config.poll_initial = Duration::from_millis(5);
    config.poll_max = Duration::from_millis(50);
    config
}

fn clock() -> Arc<FixedClock> {
    Arc::new(FixedClock::new(
        Utc.with_ymd_and_hms(2024, 7, 1, 12, 0, 0).unwrap(),
    ))
}

fn request(json: &str, start: &str, end: &str) -> FillRequest {
    FillRequest::new(Dataset::from_json(json).unwrap(), d(start), d(end), true).unwrap()
}

/// How a provider double splits sessions into units.
#[derive(Debug, Clone, Copy)]
enum Units {
    /// One per session, as ThetaData's intraday endpoints.
    PerSession,
    /// Runs of consecutive sessions, as Polygon's ranges.
    Runs(usize),
}

/// Synthetic bars with some sessions empty and some cut short (so the merge has
/// placeholders and edge markers to place), chosen by `salt`; failing for sessions from
/// `fail_from` on.
#[derive(Debug)]
struct Shaped {
    salt: u32,
    units: Units,
    fail_from: Mutex<Option<NaiveDate>>,
}

impl Shaped {
    fn new(salt: u32, units: Units) -> Self {
        Shaped {
            salt,
            units,
            fail_from: Mutex::new(None),
        }
    }

    fn fail_from(&self, session: NaiveDate) {
        *self.fail_from.lock().unwrap() = Some(session);
    }

    /// Whether a bar of `session` opening at `time` (UTC nanoseconds) is served.
    fn serves(&self, session: NaiveDate, time: i64) -> bool {
        let n = session.ordinal() + self.salt;
        let wall = DateTime::from_timestamp_nanos(time)
            .with_timezone(&calendar::NEW_YORK)
            .time();
        let at = |h, m| NaiveTime::from_hms_opt(h, m, 0).unwrap();
        if n.is_multiple_of(11) {
            false
        } else if n.is_multiple_of(7) {
            wall < at(14, 0)
        } else if n.is_multiple_of(5) {
            wall >= at(10, 30)
        } else {
            true
        }
    }

    fn rows(&self, dataset: &Dataset, sessions: &[NaiveDate], after_hours: bool) -> Rows {
        let mut dates = NyDates::new();
        match generate(dataset, sessions, after_hours) {
            Rows::Ohlc(mut bars) => {
                bars.retain(|b| self.serves(dates.date_of(b.time), b.time));
                Rows::Ohlc(bars)
            }
            Rows::Aggs(mut bars) => {
                bars.retain(|b| self.serves(dates.date_of(b.time), b.time));
                Rows::Aggs(bars)
            }
            other => other,
        }
    }
}

#[async_trait]
impl Provider for Shaped {
    fn supports(&self, _dataset: &Dataset) -> Result<(), ProviderError> {
        Ok(())
    }

    fn plan(&self, _dataset: &Dataset, sessions: &[NaiveDate]) -> Vec<Vec<NaiveDate>> {
        match self.units {
            Units::PerSession => one_per_session(sessions),
            Units::Runs(n) => runs(sessions, n),
        }
    }

    async fn fetch(&self, request: FetchRequest<'_>) -> Result<Fetched, ProviderError> {
        let failing = *self.fail_from.lock().unwrap();
        if failing.is_some_and(|from| request.sessions.iter().any(|s| *s >= from)) {
            return Err(ProviderError::Unavailable("503 after 5 tries".into()));
        }
        Ok(Fetched {
            rows: self.rows(
                request.dataset,
                request.sessions,
                request.include_after_hours,
            ),
            requests: 1,
        })
    }
}

/// The object at `key`, decoded and conformed, and its coverage.
async fn conformed(
    store: &impl ObjectStore,
    dataset: &Dataset,
    key: &str,
) -> (Bytes, arrow_array::RecordBatch, Coverage) {
    let got = store.get(key, None).await.unwrap();
    let decoded = codec::decode(got.bytes.clone()).unwrap();
    let batch = conform::conform(dataset, &decoded.batch).unwrap();
    let coverage = coverage::of_decoded(dataset, &decoded, &batch, got.meta.last_modified).unwrap();
    (got.bytes, batch, coverage)
}

/// What one merge of everything gives: the rows `provider` serves for the sessions
/// `base` lacks in `[start, end]`, merged into `base` (or into `other`, the object a
/// writer put there meanwhile, when given).
fn expected(
    dataset: &Dataset,
    provider: &Shaped,
    base: Option<(&arrow_array::RecordBatch, &Coverage)>,
    other: Option<&arrow_array::RecordBatch>,
    start: &str,
    end: &str,
) -> (arrow_array::RecordBatch, usize) {
    let wanted = calendar::sessions_between(d(start), d(end)).unwrap();
    let missing = match base {
        Some((_, coverage)) => coverage.missing(&wanted),
        None => wanted,
    };
    let fresh = rows_to_batch(dataset, provider.rows(dataset, &missing, true)).unwrap();
    let mut dates = NyDates::new();
    let with_rows: BTreeSet<NaiveDate> = datetimes(&fresh)
        .unwrap()
        .iter()
        .flatten()
        .map(|t| dates.date_of(t))
        .collect();
    let empty: Vec<NaiveDate> = missing
        .iter()
        .copied()
        .filter(|s| !with_rows.contains(s))
        .collect();
    let into = other.or(base.map(|(b, _)| b));
    let merged = merge::merge(dataset, into, &fresh, &empty).unwrap();
    (merged, fresh.num_rows())
}

/// The written object holds exactly `expected`'s rows, and its footer says their coverage.
async fn assert_written(
    store: &impl ObjectStore,
    dataset: &Dataset,
    key: &str,
    expected: &arrow_array::RecordBatch,
) {
    let got = store.get(key, None).await.unwrap();
    let written = codec::decode(got.bytes).unwrap();
    let want = codec::decode(codec::encode(expected, &Default::default()).unwrap()).unwrap();
    assert_eq!(written.batch.schema(), want.batch.schema());
    assert_eq!(written.batch.num_rows(), want.batch.num_rows());
    for (i, field) in want.batch.schema().fields().iter().enumerate() {
        assert_eq!(
            written.batch.column(i),
            want.batch.column(i),
            "column '{}' differs",
            field.name()
        );
    }
    let coverage =
        Coverage::of_batch(expected, BTreeSet::new(), coverage::checks_edges(dataset)).unwrap();
    assert_eq!(
        written.fact(format::FACT_COVERAGE),
        Some(coverage::format_ranges(&coverage.all_sessions()).as_str())
    );
}

/// Eighteen months of minute bars with extended hours into a file holding two months of them:
/// several chunks, sessions without rows and sessions cut short, cached sessions between.
async fn a_long_extension_is_one_merge(json: &str, units: Units) {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStore::new(dir.path()).unwrap();
    let dataset = Dataset::from_json(json).unwrap();
    let key = config().layout.data_key(&dataset);
    let first = FillEngine::new(store.clone(), Shaped::new(0, units), config()).with_clock(clock());
    first
        .fill(&request(json, "2023-03-01", "2023-03-31"))
        .await
        .unwrap();
    first
        .fill(&request(json, "2023-08-01", "2023-08-15"))
        .await
        .unwrap();
    let (_, base, base_coverage) = conformed(&store, &dataset, &key).await;

    let provider = Shaped::new(3, units);
    let (want, fetched) = expected(
        &dataset,
        &provider,
        Some((&base, &base_coverage)),
        None,
        "2022-07-01",
        "2023-12-31",
    );
    assert!(fetched > 2 * CHUNK_ROWS, "{fetched} rows: a long fill");
    let engine = FillEngine::new(store.clone(), provider, config()).with_clock(clock());
    let answer = engine
        .fill(&request(json, "2022-07-01", "2023-12-31"))
        .await
        .unwrap();
    assert_eq!(answer.status, FillStatus::Filled);
    assert_eq!(answer.rows as usize, want.num_rows());
    assert_written(&store, &dataset, &key, &want).await;
}

#[tokio::test]
async fn a_long_thetadata_layout_fill_writes_what_one_merge_would() {
    a_long_extension_is_one_merge(AAPL_MINUTE, Units::PerSession).await;
}

#[tokio::test]
async fn a_long_polygon_layout_fill_writes_what_one_merge_would() {
    // Polygon's placeholders sit at 04:56 UTC, the evening before in New York in winter,
    // and its units span many sessions.
    a_long_extension_is_one_merge(AAPL_POLYGON_MINUTE, Units::Runs(20)).await;
}

#[tokio::test]
async fn a_unit_failing_after_several_chunks_publishes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStore::new(dir.path()).unwrap();
    let dataset = Dataset::from_json(AAPL_MINUTE).unwrap();
    let key = config().layout.data_key(&dataset);
    let sidecar_key = format!("{key}{}", format::SIDECAR_SUFFIX);
    let provider = Arc::new(Shaped::new(0, Units::PerSession));
    let engine = FillEngine::new(store.clone(), provider.clone(), config()).with_clock(clock());
    engine
        .fill(&request(AAPL_MINUTE, "2023-03-01", "2023-03-31"))
        .await
        .unwrap();
    let parquet_before = store.get(&key, None).await.unwrap();
    let sidecar_before = store.get(&sidecar_key, None).await.unwrap().bytes;

    // Every session before November is served: well over two chunks merged and encoded
    // before the unit that fails.
    let served = provider.rows(
        &dataset,
        &calendar::sessions_between(d("2022-07-01"), d("2023-10-31")).unwrap(),
        true,
    );
    assert!(served.len() > 2 * CHUNK_ROWS, "{} rows", served.len());
    provider.fail_from(d("2023-11-01"));
    let err = engine
        .fill(&request(AAPL_MINUTE, "2022-07-01", "2023-12-31"))
        .await
        .unwrap_err();
    assert_eq!(err.error_type().as_str(), "UpstreamUnavailable", "{err}");
    let parquet_after = store.get(&key, None).await.unwrap();
    assert_eq!(parquet_after.bytes, parquet_before.bytes);
    assert_eq!(parquet_after.meta.etag, parquet_before.meta.etag);
    assert_eq!(
        store.get(&sidecar_key, None).await.unwrap().bytes,
        sidecar_before
    );
    assert_eq!(store.list_versions(&key).await.unwrap().len(), 1);
}

#[tokio::test]
async fn a_long_fill_that_loses_its_write_merges_the_same_rows_into_the_newer_object() {
    let dir = tempfile::tempdir().unwrap();
    let dataset = Dataset::from_json(AAPL_MINUTE).unwrap();
    let key = config().layout.data_key(&dataset);
    // The other writer's object, made in a scratch bucket: other sessions, other rows.
    let scratch = LocalStore::new(dir.path().join("scratch")).unwrap();
    let other_writer =
        FillEngine::new(scratch.clone(), Shaped::new(5, Units::PerSession), config())
            .with_clock(clock());
    other_writer
        .fill(&request(AAPL_MINUTE, "2023-05-01", "2023-06-30"))
        .await
        .unwrap();
    other_writer
        .fill(&request(AAPL_MINUTE, "2024-01-02", "2024-01-05"))
        .await
        .unwrap();
    let (other_bytes, other, _) = conformed(&scratch, &dataset, &key).await;

    let store = Arc::new(RacingStore::new(
        LocalStore::new(dir.path().join("bucket")).unwrap(),
        &key,
    ));
    let first = FillEngine::new(store.clone(), Shaped::new(0, Units::PerSession), config())
        .with_clock(clock());
    first
        .fill(&request(AAPL_MINUTE, "2023-03-01", "2023-03-31"))
        .await
        .unwrap();
    let (_, base, base_coverage) = conformed(store.as_ref(), &dataset, &key).await;

    let provider = Shaped::new(3, Units::PerSession);
    let (want, fetched) = expected(
        &dataset,
        &provider,
        Some((&base, &base_coverage)),
        Some(&other),
        "2022-07-01",
        "2023-12-31",
    );
    assert!(fetched > 2 * CHUNK_ROWS, "{fetched} rows: a long fill");
    store.race_with(other_bytes);
    let engine = FillEngine::new(store.clone(), provider, config()).with_clock(clock());
    let answer = engine
        .fill(&request(AAPL_MINUTE, "2022-07-01", "2023-12-31"))
        .await
        .unwrap();
    assert!(store.raced(), "the race happened");
    assert_eq!(answer.status, FillStatus::Filled);
    assert_eq!(answer.rows as usize, want.num_rows());
    assert_written(store.as_ref(), &dataset, &key, &want).await;
}

/// The row counts of a parquet's row groups.
fn row_groups(bytes: &Bytes) -> Vec<i64> {
    let footer = codec::read_footer(bytes).unwrap();
    footer
        .metadata()
        .row_groups()
        .iter()
        .map(|g| g.num_rows())
        .collect()
}

/// Where a parquet's last column chunk ends: its bytes before that are its row groups.
fn data_end(bytes: &Bytes) -> usize {
    let footer = codec::read_footer(bytes).unwrap();
    footer
        .metadata()
        .row_groups()
        .iter()
        .flat_map(|g| g.columns())
        .map(|c| {
            let start = c.dictionary_page_offset().unwrap_or(c.data_page_offset());
            (start + c.compressed_size()) as usize
        })
        .max()
        .unwrap()
}

#[tokio::test]
async fn an_extension_after_the_last_session_copies_the_row_groups_and_appends_its_own() {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStore::new(dir.path()).unwrap();
    let dataset = Dataset::from_json(AAPL_MINUTE).unwrap();
    let key = config().layout.data_key(&dataset);
    let engine = FillEngine::new(store.clone(), Shaped::new(0, Units::PerSession), config())
        .with_clock(clock());
    engine
        .fill(&request(AAPL_MINUTE, "2023-03-01", "2023-03-31"))
        .await
        .unwrap();
    let (before, base, base_coverage) = conformed(&store, &dataset, &key).await;
    let (want, _) = expected(
        &dataset,
        &Shaped::new(0, Units::PerSession),
        Some((&base, &base_coverage)),
        None,
        "2023-03-01",
        "2023-04-28",
    );

    let answer = engine
        .fill(&request(AAPL_MINUTE, "2023-03-01", "2023-04-28"))
        .await
        .unwrap();
    assert_eq!(answer.status, FillStatus::Filled);
    assert_written(&store, &dataset, &key, &want).await;
    // The file's row groups were copied as they were, and April's follow as one more.
    let after = store.get(&key, None).await.unwrap().bytes;
    let end = data_end(&before);
    assert_eq!(
        after[..end],
        before[..end],
        "the old row groups' bytes begin the file"
    );
    let mut groups = row_groups(&before);
    groups.push((want.num_rows() - base.num_rows()) as i64);
    assert_eq!(row_groups(&after), groups);

    // Sessions before the file's last one are merged into it: the file is rewritten whole.
    let (now, now_batch, now_coverage) = conformed(&store, &dataset, &key).await;
    let (want, _) = expected(
        &dataset,
        &Shaped::new(0, Units::PerSession),
        Some((&now_batch, &now_coverage)),
        None,
        "2023-02-01",
        "2023-04-28",
    );
    engine
        .fill(&request(AAPL_MINUTE, "2023-02-01", "2023-04-28"))
        .await
        .unwrap();
    assert_written(&store, &dataset, &key, &want).await;
    let rewritten = store.get(&key, None).await.unwrap().bytes;
    assert_eq!(row_groups(&rewritten), [want.num_rows() as i64]);
    assert_ne!(rewritten[..data_end(&now)], now[..data_end(&now)]);
}

#[tokio::test]
async fn small_row_groups_are_merged_into_one_when_sixteen_have_been_appended() {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStore::new(dir.path()).unwrap();
    let dataset = Dataset::from_json(AAPL_MINUTE).unwrap();
    let key = config().layout.data_key(&dataset);
    let engine = FillEngine::new(store.clone(), Shaped::new(1, Units::PerSession), config())
        .with_clock(clock());
    engine
        .fill(&request(AAPL_MINUTE, "2023-03-01", "2023-03-31"))
        .await
        .unwrap();
    // A sliding window: one more session a day.
    let sessions = calendar::sessions_between(d("2023-04-03"), d("2023-04-28")).unwrap();
    let mut groups = Vec::new();
    for session in &sessions[..17] {
        let end = session.to_string();
        let answer = engine
            .fill(&request(AAPL_MINUTE, "2023-03-01", &end))
            .await
            .unwrap();
        let (bytes, batch, _) = conformed(&store, &dataset, &key).await;
        groups.push(row_groups(&bytes).len());
        // The footer's coverage and the answer's facts, carried over from the copied row
        // groups, are those of every row.
        let all = Coverage::of_batch(&batch, BTreeSet::new(), true).unwrap();
        assert_eq!(
            codec::decode(bytes).unwrap().fact(format::FACT_COVERAGE),
            Some(coverage::format_ranges(&all.all_sessions()).as_str()),
            "the coverage after the extend to {session}"
        );
        let facts = codec::facts::BatchFacts::of(&batch).unwrap();
        assert_eq!(
            (answer.rows, answer.real_rows, answer.placeholders),
            (
                facts.rows as u64,
                facts.real_rows as u64,
                facts.placeholders as u64
            )
        );
        assert_eq!(answer.min, facts.min.map(pyfmt::pandas_utc_isoformat));
        assert_eq!(answer.max, facts.max.map(pyfmt::pandas_utc_isoformat));
    }
    let appended: Vec<usize> = (2..=16).collect();
    assert_eq!(
        groups[..15],
        appended[..],
        "each extend appends a row group"
    );
    assert_eq!(
        groups[15..],
        [1, 2],
        "the 16th small group's next extend rewrites the file"
    );
    let (_, batch, coverage) = conformed(&store, &dataset, &key).await;
    let wanted = calendar::sessions_between(d("2023-03-01"), sessions[16]).unwrap();
    assert!(coverage.missing(&wanted).is_empty());
    assert!(cachefill_core::rules::check_batch(&dataset, &batch, clock().now()).is_empty());
}

#[tokio::test]
async fn a_hit_is_decided_by_a_head_and_the_sidecar_without_reading_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(cachefill_testing::doubles::CountingStore::new(
        LocalStore::new(dir.path()).unwrap(),
    ));
    let dataset = Dataset::from_json(AAPL_MINUTE).unwrap();
    let key = config().layout.data_key(&dataset);
    let engine = FillEngine::new(
        Arc::clone(&store),
        Shaped::new(0, Units::PerSession),
        config(),
    )
    .with_clock(clock());
    let filled = engine
        .fill(&request(AAPL_MINUTE, "2023-03-01", "2023-03-31"))
        .await
        .unwrap();
    store.take_calls();

    let hit = engine
        .fill(&request(AAPL_MINUTE, "2023-03-10", "2023-03-20"))
        .await
        .unwrap();
    let sidecar = format!("{key}{}", format::SIDECAR_SUFFIX);
    assert_eq!(
        store.take_calls(),
        [("head", key.clone()), ("get", sidecar.clone())]
    );
    assert_eq!(hit.status, FillStatus::Hit);
    assert_eq!(hit.upstream_requests, 0);
    for (what, got, want) in [
        ("etag", &hit.etag, &filled.etag),
        ("version", &hit.version_id, &filled.version_id),
        ("sha256", &hit.sha256, &filled.sha256),
        ("min", &hit.min, &filled.min),
        ("max", &hit.max, &filled.max),
    ] {
        assert_eq!(got, want, "{what}");
    }
    assert_eq!(
        (hit.rows, hit.real_rows, hit.placeholders),
        (filled.rows, filled.real_rows, filled.placeholders)
    );

    // 2023-03-07 had no bars (a placeholder): no data, still from the HEAD.
    let empty = engine
        .fill(&request(AAPL_MINUTE, "2023-03-07", "2023-03-07"))
        .await
        .unwrap();
    assert_eq!(empty.status, FillStatus::NoData);
    assert_eq!(
        store.take_calls(),
        [("head", key.clone()), ("get", sidecar)]
    );

    // A session the file lacks: the body decides, and the fill fetches it.
    let extended = engine
        .fill(&request(AAPL_MINUTE, "2023-03-10", "2023-04-03"))
        .await
        .unwrap();
    assert_eq!(extended.status, FillStatus::Filled);
    // The body is read once: under the lease a HEAD says it is still the object read.
    let reads = store
        .take_calls()
        .iter()
        .filter(|call| **call == ("get", key.clone()))
        .count();
    assert_eq!(reads, 1);
}
