//! The fill engine end to end on the local directory store.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use arrow_array::cast::AsArray;
use arrow_array::types::Float64Type;
use bytes::Bytes;
use cachefill_core::calendar;
use cachefill_core::clock::FixedClock;
use cachefill_core::codec::schema::schema_for;
use cachefill_core::codec::{self, BatchFacts, OhlcBar, Rows, Sidecar};
use cachefill_core::dataset::Dataset;
use cachefill_core::fill::{EngineConfig, FillEngine, FillError, FillRequest, FillStatus};
use cachefill_core::format;
use cachefill_core::keys::KeyLayout;
use cachefill_core::providers::synthetic::SyntheticProvider;
use cachefill_core::providers::{Provider, ProviderError};
use cachefill_core::rules;
use cachefill_core::storage::ObjectStore;
use cachefill_core::storage::local::LocalStore;
use cachefill_testing::doubles::{CountingProvider, FailingStore, RacingStore, ScriptedProvider};
use chrono::{DateTime, NaiveDate, TimeZone, Utc};

const AAPL_MINUTE: &str = r#"{"provider":"synthetic","asset_type":"stock","symbol":"AAPL","timespan":"minute","datastyle":"ohlc"}"#;

fn d(text: &str) -> NaiveDate {
    text.parse().unwrap()
}

fn july_2024() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2024, 7, 1, 12, 0, 0).unwrap()
}

fn request(json: &str, start: &str, end: &str) -> FillRequest {
    FillRequest::new(Dataset::from_json(json).unwrap(), d(start), d(end), true).unwrap()
}

fn config() -> EngineConfig {
    let mut config = EngineConfig::new("test-bucket", KeyLayout::new("stage/cache", "v1"));
    config.lease_ttl = Duration::from_secs(30);
    config.poll_initial = Duration::from_millis(5);
    config.poll_max = Duration::from_millis(50);
    config
}

struct Fixture<S, P> {
    engine: Arc<FillEngine<S, Arc<P>>>,
    provider: Arc<P>,
    clock: Arc<FixedClock>,
    _dir: tempfile::TempDir,
}

fn engine_with<P: Provider + 'static>(provider: P) -> Fixture<LocalStore, P> {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStore::new(dir.path().join("bucket")).unwrap();
    let provider = Arc::new(provider);
    let clock = Arc::new(FixedClock::new(july_2024()));
    let engine = FillEngine::new(store, provider.clone(), config()).with_clock(clock.clone());
    Fixture {
        engine: Arc::new(engine),
        provider,
        clock,
        _dir: dir,
    }
}

fn counting() -> Fixture<LocalStore, CountingProvider<SyntheticProvider>> {
    engine_with(CountingProvider::new(SyntheticProvider::new()))
}

fn sessions(start: &str, end: &str) -> Vec<NaiveDate> {
    calendar::sessions_between(d(start), d(end)).unwrap()
}

async fn object(store: &impl ObjectStore, key: &str) -> (Bytes, codec::Decoded) {
    let got = store.get(key, None).await.unwrap();
    let decoded = codec::decode(got.bytes.clone()).unwrap();
    (got.bytes, decoded)
}

#[tokio::test]
async fn first_fill_writes_then_identical_request_is_a_hit() {
    let f = counting();
    let req = request(AAPL_MINUTE, "2024-01-02", "2024-01-31");
    let first = f.engine.fill(&req).await.unwrap();
    assert_eq!(first.status, FillStatus::Filled);
    assert_eq!(first.sessions_fetched, 21);
    assert_eq!(first.upstream_requests, 21);
    assert_eq!(
        first.key,
        "stage/cache/v1/synthetic/stock/minute/ohlc/stock_AAPL_minute_ohlc.parquet"
    );
    assert!(first.version_id.is_some());

    f.provider.reset();
    let second = f.engine.fill(&req).await.unwrap();
    assert_eq!(second.status, FillStatus::Hit);
    assert_eq!(second.upstream_requests, 0);
    assert_eq!(second.sessions_fetched, 0);
    assert_eq!(f.provider.calls(), 0);
    assert_eq!(second.sha256, first.sha256);
    assert_eq!(second.version_id, first.version_id);
}

#[tokio::test]
async fn written_parquet_has_the_exact_schema_and_a_matching_sidecar() {
    let f = counting();
    let req = request(AAPL_MINUTE, "2024-03-01", "2024-03-08");
    let answer = f.engine.fill(&req).await.unwrap();
    let (bytes, decoded) = object(f.engine.store(), &answer.key).await;
    assert_eq!(decoded.batch.schema(), schema_for(&req.dataset));
    assert_eq!(decoded.fact(format::FACT_PROVIDER), Some("synthetic"));
    assert_eq!(
        decoded.fact(format::FACT_COVERAGE),
        Some("2024-03-01..2024-03-08")
    );

    let sidecar_bytes = f
        .engine
        .store()
        .get(&format!("{}.meta.json", answer.key), None)
        .await
        .unwrap()
        .bytes;
    let sidecar = Sidecar::parse(&sidecar_bytes).unwrap();
    let facts = BatchFacts::of(&decoded.batch).unwrap();
    assert_eq!(
        sidecar.checksum.as_deref(),
        Some(codec::sha256_hex(&bytes).as_str())
    );
    assert_eq!(sidecar.rows, facts.rows as u64);
    assert_eq!(sidecar.placeholders, 0);
    assert_eq!(sidecar.min.as_deref(), Some("2024-03-01T09:00:00+00:00")); // 04:00 EST
    assert_eq!(sidecar.max, answer.max);
    assert_eq!(Some(sidecar.checksum.clone().unwrap()), answer.sha256);
    // lumibot's own formatting: json.dumps(indent=2).
    assert!(
        std::str::from_utf8(&sidecar_bytes)
            .unwrap()
            .starts_with("{\n  \"version\": 2,\n  \"rows\": ")
    );

    // Sorted, unique timestamps.
    let times = codec::facts::datetimes(&decoded.batch).unwrap();
    let times = times.values();
    assert!(times.windows(2).all(|w| w[0] < w[1]));
}

#[tokio::test]
async fn partial_overlap_fetches_only_the_missing_sessions() {
    let f = counting();
    f.engine
        .fill(&request(AAPL_MINUTE, "2024-01-02", "2024-01-12"))
        .await
        .unwrap();
    f.provider.reset();
    let answer = f
        .engine
        .fill(&request(AAPL_MINUTE, "2024-01-08", "2024-01-19"))
        .await
        .unwrap();
    let fetched: Vec<NaiveDate> = f.provider.per_session().into_keys().collect();
    // 2024-01-15 is Martin Luther King Jr. Day.
    assert_eq!(fetched, sessions("2024-01-16", "2024-01-19"));
    assert_eq!(answer.sessions_fetched, 4);
    assert!(f.provider.per_session().values().all(|n| *n == 1));
}

#[tokio::test]
async fn a_gap_in_the_middle_is_filled_and_nothing_else() {
    let f = counting();
    f.engine
        .fill(&request(AAPL_MINUTE, "2024-01-02", "2024-01-05"))
        .await
        .unwrap();
    f.engine
        .fill(&request(AAPL_MINUTE, "2024-01-22", "2024-01-26"))
        .await
        .unwrap();
    f.provider.reset();
    let answer = f
        .engine
        .fill(&request(AAPL_MINUTE, "2024-01-02", "2024-01-26"))
        .await
        .unwrap();
    let fetched: Vec<NaiveDate> = f.provider.per_session().into_keys().collect();
    assert_eq!(fetched, sessions("2024-01-08", "2024-01-19"));
    assert_eq!(answer.status, FillStatus::Filled);
    let (_, decoded) = object(f.engine.store(), &answer.key).await;
    assert_eq!(
        decoded.fact(format::FACT_COVERAGE),
        Some("2024-01-02..2024-01-26")
    );
}

#[tokio::test]
async fn holidays_and_weekends_are_never_requested() {
    let f = counting();
    f.engine
        .fill(&request(AAPL_MINUTE, "2024-03-27", "2024-04-02"))
        .await
        .unwrap();
    f.engine
        .fill(&request(AAPL_MINUTE, "2024-06-18", "2024-06-20"))
        .await
        .unwrap();
    let fetched: BTreeSet<NaiveDate> = f.provider.per_session().into_keys().collect();
    for closed in ["2024-03-29", "2024-03-30", "2024-03-31", "2024-06-19"] {
        assert!(!fetched.contains(&d(closed)), "{closed} was requested");
    }
    assert_eq!(fetched.len(), 4 + 2);
}

#[tokio::test]
async fn sessions_that_have_not_ended_are_not_fetched() {
    let f = counting();
    // 2024-07-01 12:00Z is during that session: it cannot be complete yet.
    let answer = f
        .engine
        .fill(&request(AAPL_MINUTE, "2024-06-27", "2024-07-05"))
        .await
        .unwrap();
    let fetched: Vec<NaiveDate> = f.provider.per_session().into_keys().collect();
    assert_eq!(fetched, vec![d("2024-06-27"), d("2024-06-28")]);
    assert_eq!(answer.sessions_fetched, 2);
}

#[tokio::test]
async fn option_requests_stop_at_expiration() {
    let f = counting();
    let option = r#"{"provider":"synthetic","asset_type":"option","symbol":"SPY","timespan":"hour","datastyle":"ohlc","expiration":"2024-02-09","strike":480,"right":"CALL"}"#;
    f.engine
        .fill(&request(option, "2024-02-05", "2024-02-20"))
        .await
        .unwrap();
    let fetched: Vec<NaiveDate> = f.provider.per_session().into_keys().collect();
    assert_eq!(fetched, sessions("2024-02-05", "2024-02-09"));
}

fn bar(time: DateTime<Utc>, close: f64) -> OhlcBar {
    OhlcBar {
        time: time.timestamp_nanos_opt().unwrap(),
        volume: Some(100),
        high: Some(close + 1.0),
        low: Some(close - 1.0),
        vwap: Some(close),
        count: Some(10),
        close: Some(close),
        open: Some(close),
    }
}

fn at(date: &str, hh: u32, mm: u32) -> DateTime<Utc> {
    calendar::ny_wall_to_utc(d(date), chrono::NaiveTime::from_hms_opt(hh, mm, 0).unwrap())
}

/// Bars at a session's first and last regular minute: rows that reach both edges.
fn whole_session(date: &str, close: f64) -> Rows {
    Rows::Ohlc(vec![
        bar(at(date, 9, 30), close),
        bar(at(date, 15, 59), close),
    ])
}

/// The placeholder instants of a file.
async fn placeholder_times(store: &impl ObjectStore, key: &str) -> Vec<DateTime<Utc>> {
    let (_, decoded) = object(store, key).await;
    let times = codec::facts::datetimes(&decoded.batch).unwrap();
    let missing = codec::facts::placeholder_mask(&decoded.batch);
    (0..times.len())
        .filter(|i| missing[*i])
        .map(|i| DateTime::from_timestamp_nanos(times.value(i)))
        .collect()
}

/// lumibot refetches the first or last day of a request when the file's rows stop more than
/// two minutes short of the session's open or close. A fetched session whose bars stop short
/// is marked with placeholders at its open and at 16:00, which lumibot reads as reached edges
/// and drops from the frames it returns; a file without them is short and fetched again.
#[tokio::test]
async fn sessions_that_stop_short_of_their_edges_are_marked_for_lumibot() {
    let f = engine_with(ScriptedProvider::new());
    f.clock
        .set(Utc.with_ymd_and_hms(2024, 1, 10, 3, 0, 0).unwrap());
    // 2024-01-02 trades from 10:15 to 14:00 only; 2024-01-03 reaches both edges.
    f.provider.set(
        d("2024-01-02"),
        Rows::Ohlc(vec![
            bar(at("2024-01-02", 10, 15), 100.0),
            bar(at("2024-01-02", 14, 0), 100.0),
        ]),
    );
    f.provider
        .set(d("2024-01-03"), whole_session("2024-01-03", 101.0));
    let req = request(AAPL_MINUTE, "2024-01-02", "2024-01-03");
    let first = f.engine.fill(&req).await.unwrap();
    assert_eq!((first.real_rows, first.placeholders), (4, 2));
    assert_eq!(
        placeholder_times(f.engine.store(), &first.key).await,
        [at("2024-01-02", 9, 30), at("2024-01-02", 16, 0)]
    );
    let dataset = Dataset::from_json(AAPL_MINUTE).unwrap();
    let (bytes, decoded) = object(f.engine.store(), &first.key).await;
    assert!(
        rules::check_object(&dataset, &bytes, None, july_2024()).is_valid(),
        "edge markers are valid placeholders"
    );
    let again = f.engine.fill(&req).await.unwrap();
    assert_eq!(again.status, FillStatus::Hit, "a marked session is covered");

    // The same rows without the markers (as lumibot writes them) are short: fetched again,
    // once, and marked.
    let times = codec::facts::datetimes(&decoded.batch).unwrap();
    let missing = codec::facts::placeholder_mask(&decoded.batch);
    let keep: arrow_array::BooleanArray = (0..times.len()).map(|i| Some(!missing[i])).collect();
    let unmarked = arrow_select::filter::filter_record_batch(&decoded.batch, &keep).unwrap();
    f.engine
        .store()
        .put(
            &first.key,
            codec::encode(&unmarked, &Default::default()).unwrap(),
            Default::default(),
        )
        .await
        .unwrap();
    let refetched = f.engine.fill(&req).await.unwrap();
    assert_eq!(refetched.status, FillStatus::Filled);
    assert_eq!(refetched.sessions_fetched, 1, "only the short session");
    assert_eq!(refetched.placeholders, 2);
    assert_eq!(f.engine.fill(&req).await.unwrap().status, FillStatus::Hit);
}

#[tokio::test]
async fn young_placeholders_are_refetched_and_replaced_by_data() {
    let f = engine_with(ScriptedProvider::new());
    let req = request(AAPL_MINUTE, "2024-01-02", "2024-01-03");
    f.provider
        .set(d("2024-01-02"), whole_session("2024-01-02", 100.0));
    // The day after 2024-01-03: the provider has nothing for it yet.
    f.clock
        .set(Utc.with_ymd_and_hms(2024, 1, 4, 3, 0, 0).unwrap());
    let first = f.engine.fill(&req).await.unwrap();
    assert_eq!(first.placeholders, 1);
    assert_eq!(first.real_rows, 2);

    // A day later the placeholder is still young: it is fetched again, not trusted.
    f.clock
        .set(Utc.with_ymd_and_hms(2024, 1, 5, 3, 0, 0).unwrap());
    f.provider
        .set(d("2024-01-03"), whole_session("2024-01-03", 101.0));
    let second = f.engine.fill(&req).await.unwrap();
    assert_eq!(second.status, FillStatus::Filled);
    assert_eq!(second.sessions_fetched, 1);
    assert_eq!(second.placeholders, 0, "the placeholder gave way to data");
    assert_eq!(second.real_rows, 4);
}

#[tokio::test]
async fn old_placeholders_are_trusted() {
    let f = engine_with(ScriptedProvider::new());
    let req = request(AAPL_MINUTE, "2024-01-02", "2024-01-03");
    let first = f.engine.fill(&req).await.unwrap();
    assert_eq!(first.status, FillStatus::NoData);
    assert_eq!(first.placeholders, 2);
    let second = f.engine.fill(&req).await.unwrap();
    assert_eq!(second.status, FillStatus::NoData);
    assert_eq!(second.upstream_requests, 0);
    assert_eq!(second.sha256, first.sha256);
}

#[tokio::test]
async fn the_newest_row_wins_on_the_same_timestamp() {
    let f = engine_with(ScriptedProvider::new());
    let t = at("2024-01-02", 9, 30);
    f.provider.set(
        d("2024-01-02"),
        Rows::Ohlc(vec![bar(t, 100.0), bar(at("2024-01-02", 15, 59), 100.5)]),
    );
    f.clock
        .set(Utc.with_ymd_and_hms(2024, 1, 3, 3, 0, 0).unwrap());
    let first = f
        .engine
        .fill(&request(AAPL_MINUTE, "2024-01-02", "2024-01-02"))
        .await
        .unwrap();
    assert_eq!(first.real_rows, 2);

    // Upstream now reports a corrected bar at the same instant, and duplicates within one
    // response: the last one wins.
    let (_, before) = object(f.engine.store(), &first.key).await;
    let merged = cachefill_core::fill::merge::merge(
        &request(AAPL_MINUTE, "2024-01-02", "2024-01-02").dataset,
        Some(&before.batch),
        &codec::rows::rows_to_batch(
            &Dataset::from_json(AAPL_MINUTE).unwrap(),
            Rows::Ohlc(vec![bar(t, 105.0), bar(t, 106.0)]),
        )
        .unwrap(),
        &[],
    )
    .unwrap();
    assert_eq!(merged.num_rows(), 2);
    let close = merged
        .column_by_name("close")
        .unwrap()
        .as_primitive::<Float64Type>();
    assert_eq!(close.value(0), 106.0);
    assert_eq!(close.value(1), 100.5);
}

#[tokio::test]
async fn sixteen_concurrent_fills_fetch_each_session_once() {
    let f = counting();
    let req = Arc::new(request(AAPL_MINUTE, "2024-02-01", "2024-02-29"));
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let (engine, req) = (f.engine.clone(), req.clone());
        tasks.push(tokio::spawn(async move { engine.fill(&req).await }));
    }
    let mut hashes = BTreeSet::new();
    for task in tasks {
        let answer = task.await.unwrap().expect("no fill fails");
        hashes.insert(answer.sha256.unwrap());
    }
    assert_eq!(hashes.len(), 1, "every caller sees the same bytes");
    let counts = f.provider.per_session();
    assert_eq!(counts.len(), 20);
    assert!(counts.values().all(|n| *n == 1), "{counts:?}");
    let (bytes, _) = object(f.engine.store(), &config().layout.data_key(&req.dataset)).await;
    assert_eq!(Some(codec::sha256_hex(&bytes)), hashes.into_iter().next());
}

#[tokio::test]
async fn concurrent_fills_of_different_ranges_keep_both() {
    let f = counting();
    let a = request(AAPL_MINUTE, "2024-04-01", "2024-04-12");
    let b = request(AAPL_MINUTE, "2024-05-01", "2024-05-10");
    let (ra, rb) = tokio::join!(f.engine.fill(&a), f.engine.fill(&b));
    ra.unwrap();
    rb.unwrap();
    let (_, decoded) = object(f.engine.store(), &config().layout.data_key(&a.dataset)).await;
    assert_eq!(
        decoded.fact(format::FACT_COVERAGE),
        Some("2024-04-01..2024-04-12,2024-05-01..2024-05-10")
    );
    f.provider.reset();
    let both = f
        .engine
        .fill(&request(AAPL_MINUTE, "2024-04-01", "2024-05-10"))
        .await
        .unwrap();
    // Only the sessions between the two ranges are new.
    assert_eq!(
        both.sessions_fetched as usize,
        sessions("2024-04-15", "2024-04-30").len()
    );
}

#[tokio::test]
async fn rows_another_writer_added_are_kept_when_the_put_races() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(FixedClock::new(july_2024()));
    let key = config()
        .layout
        .data_key(&Dataset::from_json(AAPL_MINUTE).unwrap());
    // The other writer's object: 2024-01-02..05 plus 2024-01-12, made in a scratch bucket.
    let scratch = FillEngine::new(
        LocalStore::new(dir.path().join("scratch")).unwrap(),
        SyntheticProvider::new(),
        config(),
    )
    .with_clock(clock.clone());
    scratch
        .fill(&request(AAPL_MINUTE, "2024-01-02", "2024-01-05"))
        .await
        .unwrap();
    scratch
        .fill(&request(AAPL_MINUTE, "2024-01-12", "2024-01-12"))
        .await
        .unwrap();
    let other = scratch.store().get(&key, None).await.unwrap().bytes;

    let store = RacingStore::new(LocalStore::new(dir.path().join("bucket")).unwrap(), &key);
    let engine = FillEngine::new(store, SyntheticProvider::new(), config()).with_clock(clock);
    engine
        .fill(&request(AAPL_MINUTE, "2024-01-02", "2024-01-05"))
        .await
        .unwrap();
    engine.store().race_with(other);
    let answer = engine
        .fill(&request(AAPL_MINUTE, "2024-01-02", "2024-01-10"))
        .await
        .unwrap();
    assert_eq!(answer.status, FillStatus::Filled);
    assert!(engine.store().raced(), "the race happened");
    let (_, after) = object(engine.store(), &key).await;
    assert_eq!(
        after.fact(format::FACT_COVERAGE),
        Some("2024-01-02..2024-01-10,2024-01-12"),
        "our sessions and the other writer's are both there"
    );
}

/// A put that landed but whose answer was lost meets its own version on the client's retry
/// (a 412): the engine takes that version as the one it wrote, instead of merging again and
/// putting the same bytes a second time.
#[tokio::test]
async fn a_write_whose_answer_was_lost_is_taken_as_written_not_put_again() {
    let dir = tempfile::tempdir().unwrap();
    let key = config()
        .layout
        .data_key(&Dataset::from_json(AAPL_MINUTE).unwrap());
    let store = RacingStore::new(LocalStore::new(dir.path()).unwrap(), &key);
    let engine = FillEngine::new(store, SyntheticProvider::new(), config())
        .with_clock(Arc::new(FixedClock::new(july_2024())));
    engine
        .fill(&request(AAPL_MINUTE, "2024-01-02", "2024-01-05"))
        .await
        .unwrap();
    let versions = engine.store().list_versions(&key).await.unwrap().len();

    engine.store().lose_next_answer();
    let answer = engine
        .fill(&request(AAPL_MINUTE, "2024-01-02", "2024-01-10"))
        .await
        .unwrap();
    assert_eq!(answer.status, FillStatus::Filled);
    assert_eq!(answer.sessions_fetched, 3);
    let now = engine.store().head(&key, None).await.unwrap();
    assert_eq!(
        answer.version_id, now.version_id,
        "the version answered is the one at the key"
    );
    assert_eq!(
        engine.store().list_versions(&key).await.unwrap().len(),
        versions + 1,
        "one new version, not the same bytes twice"
    );
    let (bytes, decoded) = object(engine.store(), &key).await;
    assert_eq!(answer.sha256, Some(codec::sha256_hex(&bytes)));
    assert_eq!(
        decoded.fact(format::FACT_COVERAGE),
        Some("2024-01-02..2024-01-10")
    );
    let sidecar = Sidecar::parse(
        &engine
            .store()
            .get(&format!("{key}.meta.json"), None)
            .await
            .unwrap()
            .bytes,
    )
    .unwrap();
    assert_eq!(sidecar.checksum, answer.sha256);
}

#[tokio::test]
async fn a_fill_aborted_before_its_write_leaves_the_previous_object_intact() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(FailingStore::new(LocalStore::new(dir.path()).unwrap()));
    let clock = Arc::new(FixedClock::new(july_2024()));
    let engine = FillEngine::new(store.clone(), SyntheticProvider::new(), config())
        .with_clock(clock.clone());
    let first = engine
        .fill(&request(AAPL_MINUTE, "2024-01-02", "2024-01-05"))
        .await
        .unwrap();
    let key = first.key.clone();
    let sidecar_key = format!("{key}.meta.json");
    let parquet_before = store.get(&key, None).await.unwrap().bytes;
    let sidecar_before = store.get(&sidecar_key, None).await.unwrap().bytes;

    // The data write fails after the upstream fetch succeeded.
    let data_key = key.clone();
    store.fail_writes_where(move |k| k == data_key);
    let failed = engine
        .fill(&request(AAPL_MINUTE, "2024-01-02", "2024-01-12"))
        .await;
    assert!(matches!(failed, Err(FillError::Storage(_))), "{failed:?}");
    assert!(store.failed() >= 1);
    assert_eq!(store.get(&key, None).await.unwrap().bytes, parquet_before);
    assert_eq!(
        store.get(&sidecar_key, None).await.unwrap().bytes,
        sidecar_before
    );
    codec::decode(parquet_before.clone()).expect("still readable");

    // The lease was released, so the next fill goes ahead at once.
    store.heal();
    let next = tokio::time::timeout(
        Duration::from_secs(10),
        engine.fill(&request(AAPL_MINUTE, "2024-01-02", "2024-01-12")),
    )
    .await
    .expect("not blocked by a stale lease")
    .unwrap();
    assert_eq!(next.status, FillStatus::Filled);
    assert_eq!(next.sessions_fetched, 5);
}

/// A fill whose parquet landed but whose sidecar write failed leaves the previous version's
/// sidecar at the key; the next fill that finds the file covered (a hit) writes the sidecar
/// of the parquet there, for minute bars (decided from the HEAD first) and for day bars
/// lumibot adjusts (decided from the body).
#[tokio::test]
async fn a_hit_writes_the_sidecar_a_failed_fill_left_out() {
    const AAPL_DAY: &str = r#"{"provider":"synthetic","asset_type":"stock","symbol":"AAPL","timespan":"day","datastyle":"ohlc"}"#;
    for dataset in [AAPL_MINUTE, AAPL_DAY] {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(FailingStore::new(LocalStore::new(dir.path()).unwrap()));
        let engine = FillEngine::new(store.clone(), SyntheticProvider::new(), config())
            .with_clock(Arc::new(FixedClock::new(july_2024())));
        let first = engine
            .fill(&request(dataset, "2024-01-02", "2024-01-05"))
            .await
            .unwrap();
        let sidecar_key = format!("{}.meta.json", first.key);
        let sidecar_before = store.get(&sidecar_key, None).await.unwrap().bytes;

        store.fail_writes_where(|k| k.ends_with(".meta.json"));
        let extend = request(dataset, "2024-01-02", "2024-01-12");
        let failed = engine.fill(&extend).await;
        assert!(matches!(failed, Err(FillError::Storage(_))), "{failed:?}");
        let (bytes, decoded) = object(store.as_ref(), &first.key).await;
        assert_ne!(
            Some(codec::sha256_hex(&bytes)),
            first.sha256,
            "the parquet landed"
        );
        assert_eq!(
            store.get(&sidecar_key, None).await.unwrap().bytes,
            sidecar_before,
            "{dataset}: the sidecar still describes the first version"
        );

        store.heal();
        let hit = engine.fill(&extend).await.unwrap();
        assert_eq!(hit.status, FillStatus::Hit, "{dataset}");
        assert_eq!(hit.sha256, Some(codec::sha256_hex(&bytes)));
        let sidecar = store.get(&sidecar_key, None).await.unwrap().bytes;
        let facts = BatchFacts::of(&decoded.batch).unwrap();
        assert_eq!(
            rules::sidecar_standing(&sidecar, Some((&codec::sha256_hex(&bytes), &facts)), &[]),
            rules::SidecarStanding::Agrees,
            "{dataset}: {}",
            String::from_utf8_lossy(&sidecar)
        );
        // The sidecar that agrees is not written again.
        let versions = store.list_versions(&sidecar_key).await.unwrap().len();
        engine.fill(&extend).await.unwrap();
        assert_eq!(
            store.list_versions(&sidecar_key).await.unwrap().len(),
            versions
        );
    }
}

#[tokio::test]
async fn upstream_failures_write_nothing_and_keep_their_type() {
    let f = engine_with(ScriptedProvider::new());
    f.provider
        .fail_with(Some(ProviderError::RateLimited("429 after 5 tries".into())));
    let err = f
        .engine
        .fill(&request(AAPL_MINUTE, "2024-01-02", "2024-01-05"))
        .await
        .unwrap_err();
    assert_eq!(err.error_type().as_str(), "UpstreamRateLimited");
    let written: Vec<String> = f
        .engine
        .store()
        .list("stage/cache/v1/synthetic/")
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.key)
        .collect();
    assert!(written.is_empty(), "{written:?}");
}

/// A file lumibot wrote (its column order, a double volume, microsecond timestamps, a column
/// we do not write) is extended in its own layout: nothing of it is lost or reordered.
#[tokio::test]
async fn a_file_in_lumibots_layout_is_extended_in_that_layout() {
    use arrow_array::{ArrayRef, Float64Array, Int64Array, RecordBatch, TimestampMicrosecondArray};
    let f = counting();
    let dataset = Dataset::from_json(AAPL_MINUTE).unwrap();
    let key = config().layout.data_key(&dataset);
    let first = request(AAPL_MINUTE, "2024-01-02", "2024-01-02");
    f.engine.fill(&first).await.unwrap();
    let (_, ours) = object(f.engine.store(), &key).await;
    let b = &ours.batch;
    let column = |name: &str| b.column_by_name(name).unwrap().clone();
    let micros: TimestampMicrosecondArray = codec::facts::datetimes(b)
        .unwrap()
        .iter()
        .map(|t| t.map(|t| t / 1000))
        .collect::<TimestampMicrosecondArray>()
        .with_timezone("UTC");
    let volume: Float64Array = column("volume")
        .as_primitive::<arrow_array::types::Int64Type>()
        .iter()
        .map(|v| v.map(|v| v as f64))
        .collect();
    let n = b.num_rows();
    let names = [
        "datetime",
        "open",
        "close",
        "high",
        "low",
        "volume",
        "missing",
        "ms_of_day",
    ];
    let theirs = RecordBatch::try_from_iter_with_nullable([
        ("datetime", Arc::new(micros) as ArrayRef, true),
        ("open", column("open"), true),
        ("close", column("close"), true),
        ("high", column("high"), true),
        ("low", column("low"), true),
        ("volume", Arc::new(volume) as ArrayRef, true),
        ("missing", column("missing"), true),
        (
            "ms_of_day",
            Arc::new(Int64Array::from(vec![Some(7); n])) as ArrayRef,
            true,
        ),
    ])
    .unwrap();
    let bytes = codec::encode(&theirs, &Default::default()).unwrap();
    f.engine
        .store()
        .put(&key, bytes, Default::default())
        .await
        .unwrap();

    let answer = f
        .engine
        .fill(&request(AAPL_MINUTE, "2024-01-02", "2024-01-03"))
        .await
        .unwrap();
    assert_eq!(answer.status, FillStatus::Filled);
    assert_eq!(
        answer.sessions_fetched, 1,
        "the lumibot file's session is covered"
    );
    let (_, extended) = object(f.engine.store(), &key).await;
    let schema = extended.batch.schema();
    let written: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    assert_eq!(
        &written[..names.len()],
        names,
        "the file's own columns keep their order"
    );
    assert_eq!(
        schema.field_with_name("volume").unwrap().data_type(),
        &arrow_schema::DataType::Float64
    );
    let extra = extended.batch.column_by_name("ms_of_day").unwrap();
    assert_eq!(
        extra.len() - extra.null_count(),
        n,
        "the old rows keep their extra column"
    );
    assert!(extended.batch.num_rows() > n);
    assert_eq!(answer.rows as usize, extended.batch.num_rows());
    assert!(rules::check_batch(&dataset, &extended.batch, july_2024()).is_empty());
}
