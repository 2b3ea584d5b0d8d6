//! The corpus of bad objects: each breaks one rule, and each ends quarantined with its
//! reason, the key restored to the previous valid bytes (or deleted when there were none),
//! and an audit record written.

mod validator_support;

use std::sync::Arc;

use arrow_array::{
    ArrayRef, BooleanArray, Float64Array, Int64Array, LargeStringArray, NullArray, RecordBatch,
    StringArray, TimestampMicrosecondArray,
};
use bytes::Bytes;
use cachefill_core::calendar;
use cachefill_core::clock::FixedClock;
use cachefill_core::dataset::Dataset;
use cachefill_core::rules::{Rule, check_object};
use cachefill_core::storage::ObjectStore;
use cachefill_core::storage::local::LocalStore;
use cachefill_core::validate::{Outcome, Restore, Validator, ValidatorConfig};
use chrono::{NaiveTime, TimeZone, Utc};
use parquet::file::metadata::ParquetMetaDataReader;
use validator_support::*;

struct Case {
    name: &'static str,
    dataset: Dataset,
    /// A valid version of the same dataset, written before the bad one.
    good: Bytes,
    bad: Bytes,
    rule: Rule,
}

fn spy_batch() -> RecordBatch {
    batch(&spy_minute(), &["2024-09-16", "2024-09-17"], &[])
}

/// XOR a stretch of the middle of the first data page of column `name`: the footer is
/// untouched and still parses, the page does not decode.
fn corrupt_data_page(bytes: &Bytes, name: &str) -> Bytes {
    let metadata = ParquetMetaDataReader::new()
        .parse_and_finish(bytes)
        .unwrap();
    let row_group = metadata.row_group(0);
    let column = row_group
        .columns()
        .iter()
        .find(|c| c.column_path().string() == name)
        .unwrap();
    let (start, len) = column.byte_range();
    let page = column.data_page_offset() as usize;
    let end = (start + len) as usize;
    assert!(
        end - page > 64,
        "the data page of {name} is too small to corrupt"
    );
    let mut out = bytes.to_vec();
    for byte in &mut out[page + 24..end - 8] {
        *byte ^= 0x5a;
    }
    let out = Bytes::from(out);
    ParquetMetaDataReader::new()
        .parse_and_finish(&out)
        .expect("the footer still parses");
    out
}

fn corpus() -> Vec<Case> {
    let spy = spy_minute();
    let base = spy_batch();
    let good = encode(&batch(&spy, &["2024-09-13"], &[]));
    let valid = encode(&base);
    let n = base.num_rows();
    let mut cases = Vec::new();
    let mut add = |name: &'static str, bad: Bytes, rule: Rule| {
        cases.push(Case {
            name,
            dataset: spy.clone(),
            good: good.clone(),
            bad,
            rule,
        })
    };

    add("zero bytes", Bytes::new(), Rule::Empty);
    let mut zip = valid.to_vec();
    zip[..4].copy_from_slice(b"PK\x03\x04");
    add("wrong magic", Bytes::from(zip), Rule::NotParquet);
    add(
        "truncated footer",
        valid.slice(..valid.len() - 200),
        Rule::Truncated,
    );
    let mut garbled_footer = valid.to_vec();
    let len = garbled_footer.len();
    for byte in &mut garbled_footer[len - 300..len - 8] {
        *byte = 0xff;
    }
    add(
        "garbled footer, magic intact",
        Bytes::from(garbled_footer),
        Rule::Unreadable,
    );
    add(
        "corrupt row group",
        corrupt_data_page(&valid, "high"),
        Rule::Unreadable,
    );
    add(
        "no datetime column",
        encode(&without(&base, "datetime")),
        Rule::Schema,
    );
    add(
        "prices as text",
        encode(&replace(
            &base,
            "open",
            Arc::new(StringArray::from(vec![Some("1.0"); n])),
        )),
        Rule::Schema,
    );
    let epoch_integers: Int64Array = (0..n as i64).map(Some).collect();
    add(
        "datetime as plain integers",
        encode(&replace(&base, "datetime", Arc::new(epoch_integers))),
        Rule::Schema,
    );
    add(
        "unsorted rows",
        encode(&map_times(&base, |i, t| match i {
            10 => t.map(|t| t + 60_000_000_000),
            11 => t.map(|t| t - 60_000_000_000),
            _ => t,
        })),
        Rule::Unsorted,
    );
    let times = cachefill_core::codec::facts::datetimes(&base)
        .unwrap()
        .values()
        .to_vec();
    add(
        "duplicate timestamps",
        encode(&map_times(
            &base,
            |i, t| {
                if i == 21 { Some(times[20]) } else { t }
            },
        )),
        Rule::DuplicateTimestamp,
    );
    add(
        "NaN price",
        encode(&set_f64(&base, "close", 5, Some(f64::NAN))),
        Rule::Price,
    );
    add(
        "negative price",
        encode(&set_f64(&base, "open", 6, Some(-1.5))),
        Rule::Price,
    );
    add(
        "zero price",
        encode(&set_f64(&base, "low", 7, Some(0.0))),
        Rule::Price,
    );
    let high = base
        .column_by_name("high")
        .unwrap()
        .as_any()
        .downcast_ref::<Float64Array>()
        .unwrap()
        .value(8);
    let low = base
        .column_by_name("low")
        .unwrap()
        .as_any()
        .downcast_ref::<Float64Array>()
        .unwrap()
        .value(8);
    add(
        "high < low",
        encode(&set_f64(
            &set_f64(&base, "high", 8, Some(low)),
            "low",
            8,
            Some(high),
        )),
        Rule::OhlcOrder,
    );
    add(
        "negative volume",
        encode(&set_i64(&base, "volume", 9, Some(-100))),
        Rule::NegativeSize,
    );
    let with_placeholder = batch(&spy, &["2024-09-16"], &["2024-09-17"]);
    let last = with_placeholder.num_rows() - 1;
    add(
        "placeholder with a value",
        encode(&set_f64(&with_placeholder, "close", last, Some(500.0))),
        Rule::Placeholder,
    );
    let three_pm = calendar::ny_wall_to_utc(
        date("2024-09-17"),
        NaiveTime::from_hms_opt(15, 0, 0).unwrap(),
    )
    .timestamp_nanos_opt()
    .unwrap();
    add(
        "placeholder at 15:00",
        encode(&map_times(&with_placeholder, |i, t| {
            if i == last { Some(three_pm) } else { t }
        })),
        Rule::Placeholder,
    );
    add(
        "row without a datetime",
        encode(&map_times(&base, |i, t| if i == 3 { None } else { t })),
        Rule::NullDatetime,
    );

    let option = dataset(
        r#"{"provider":"thetadata","asset_type":"option","symbol":"SPY","timespan":"minute","datastyle":"ohlc","expiration":"2024-09-16","strike":560,"right":"CALL"}"#,
    );
    cases.push(Case {
        name: "rows after expiration",
        good: encode(&batch(&option, &["2024-09-13"], &[])),
        bad: encode(&batch(&option, &["2024-09-16", "2024-09-17"], &[])),
        dataset: option,
        rule: Rule::AfterExpiration,
    });
    cases
}

fn rules_of(bytes: &Bytes, dataset: &Dataset) -> Vec<Rule> {
    check_object(dataset, bytes, None, Utc::now())
        .violations
        .iter()
        .map(|v| v.rule)
        .collect()
}

#[test]
fn every_bad_object_breaks_exactly_its_rule() {
    let cases = corpus();
    assert!(cases.len() >= 15, "{} cases", cases.len());
    for case in &cases {
        assert!(
            rules_of(&case.good, &case.dataset).is_empty(),
            "{}: the good version must pass",
            case.name
        );
        let found = rules_of(&case.bad, &case.dataset);
        assert_eq!(found, [case.rule], "{}", case.name);
    }
}

/// `batch` with its columns in `order` (names not listed keep their place at the end).
fn reorder(batch: &RecordBatch, order: &[&str]) -> RecordBatch {
    let schema = batch.schema();
    let mut names: Vec<String> = order.iter().map(|n| n.to_string()).collect();
    names.extend(
        schema
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .filter(|n| !order.contains(&n.as_str())),
    );
    RecordBatch::try_from_iter_with_nullable(
        names
            .iter()
            .map(|n| (n.as_str(), batch.column_by_name(n).unwrap().clone(), true)),
    )
    .unwrap()
}

/// Layouts lumibot 4.6.30 itself writes (`docs/FORMAT.md`, "What is accepted"): each must
/// validate, or the validator would quarantine a shared cache's real files.
#[test]
fn every_layout_lumibot_writes_is_valid() {
    let spy = spy_minute();
    let base = spy_batch();
    let n = base.num_rows();
    let with_placeholder = batch(&spy, &["2024-09-16"], &["2024-09-17"]);
    let micros: TimestampMicrosecondArray = cachefill_core::codec::facts::datetimes(&base)
        .unwrap()
        .iter()
        .map(|t| t.map(|t| t / 1000))
        .collect::<TimestampMicrosecondArray>()
        .with_timezone("UTC");
    let volume_as_double: Float64Array = base
        .column_by_name("volume")
        .unwrap()
        .as_any()
        .downcast_ref::<Int64Array>()
        .unwrap()
        .iter()
        .map(|v| v.map(|v| v as f64))
        .collect();
    let placeholder_session = calendar::session_close_utc(date("2024-09-17"))
        .timestamp_nanos_opt()
        .unwrap();
    let placeholder_only = RecordBatch::try_from_iter_with_nullable([
        (
            "datetime",
            Arc::new(
                arrow_array::TimestampNanosecondArray::from(vec![placeholder_session])
                    .with_timezone("UTC"),
            ) as ArrayRef,
            true,
        ),
        ("open", Arc::new(NullArray::new(1)), true),
        ("high", Arc::new(NullArray::new(1)), true),
        ("low", Arc::new(NullArray::new(1)), true),
        ("close", Arc::new(NullArray::new(1)), true),
        ("volume", Arc::new(NullArray::new(1)), true),
        ("missing", Arc::new(BooleanArray::from(vec![true])), true),
    ])
    .unwrap();
    // lumibot's refetch of a session it had marked empty keeps the old placeholder.
    let stale = {
        let fresh = batch(&spy, &["2024-09-17"], &[]);
        let old = batch(&spy, &[], &["2024-09-17"]);
        let both = arrow_select::concat::concat_batches(&fresh.schema(), [&fresh, &old]).unwrap();
        let order: Vec<u32> = {
            let times = cachefill_core::codec::facts::datetimes(&both).unwrap();
            let mut idx: Vec<u32> = (0..both.num_rows() as u32).collect();
            idx.sort_by_key(|i| times.value(*i as usize));
            idx
        };
        let indices = arrow_array::UInt32Array::from(order);
        RecordBatch::try_new(
            both.schema(),
            both.columns()
                .iter()
                .map(|c| arrow_select::take::take(c.as_ref(), &indices, None).unwrap())
                .collect(),
        )
        .unwrap()
    };
    let layouts: Vec<(&str, RecordBatch)> = vec![
        (
            "provider column order",
            reorder(&base, &["datetime", "open", "close", "missing", "volume"]),
        ),
        (
            "microsecond datetime",
            replace(&base, "datetime", Arc::new(micros)),
        ),
        (
            "volume as double",
            replace(&base, "volume", Arc::new(volume_as_double)),
        ),
        ("no vwap", without(&base, "vwap")),
        (
            "an extra column",
            with_extra(
                &base,
                "ms_of_day",
                Arc::new(Int64Array::from(vec![Some(1); n])),
            ),
        ),
        (
            "large strings",
            with_extra(
                &base,
                "symbol",
                Arc::new(LargeStringArray::from(vec![Some("SPY"); n])),
            ),
        ),
        ("no missing column", without(&base, "missing")),
        ("placeholder-only, null-typed values", placeholder_only),
        ("placeholder beside real rows", stale),
        ("with a placeholder", with_placeholder),
    ];
    for (name, layout) in layouts {
        let report = check_object(&spy, &encode(&layout), None, Utc::now());
        assert!(report.is_valid(), "{name}: {:?}", report.violations);
    }
}

#[test]
fn every_rule_reports_every_violation_not_just_the_first() {
    let base = spy_batch();
    let broken = set_i64(
        &set_f64(
            &set_f64(&base, "open", 4, Some(-2.0)),
            "open",
            40,
            Some(0.0),
        ),
        "count",
        50,
        Some(-1),
    );
    let report = check_object(&spy_minute(), &encode(&broken), None, Utc::now());
    let rules: Vec<Rule> = report.violations.iter().map(|v| v.rule).collect();
    assert_eq!(rules, [Rule::Price, Rule::NegativeSize]);
    assert!(
        report.violations[0].message.starts_with("2 row(s)"),
        "{}",
        report.violations[0].message
    );
}

async fn put_valid(bucket: &Bucket, key: &str, bytes: &Bytes) -> String {
    let put = bucket.put(key, bytes.clone()).await;
    let verdict = bucket
        .validator
        .judge(&bucket.event(key, &put))
        .await
        .unwrap();
    assert_eq!(verdict.outcome, Outcome::Valid);
    put.version_id.unwrap()
}

/// Judge `case.bad` written over `previous` (when given) and check everything a reader
/// and an operator would look at.
async fn quarantine_case(case: &Case, previous: bool) {
    let bucket = Bucket::new();
    let layout = layout();
    let key = layout.data_key(&case.dataset);
    let good_version = if previous {
        Some(put_valid(&bucket, &key, &case.good).await)
    } else {
        None
    };
    let put = bucket.put(&key, case.bad.clone()).await;
    let bad_version = put.version_id.clone().unwrap();
    let verdict = bucket
        .validator
        .judge(&bucket.event(&key, &put))
        .await
        .unwrap();
    let label = format!("{} (previous valid version: {previous})", case.name);

    match (&verdict.outcome, &good_version) {
        (Outcome::Quarantined { restore }, Some(good)) => {
            assert_eq!(restore.restored_to(), Some(good.as_str()), "{label}");
            assert_eq!(
                bucket.bytes(&key).await.as_ref(),
                Some(&case.good),
                "{label}: the key holds the previous valid bytes again"
            );
        }
        (Outcome::Quarantined { restore }, None) => {
            assert_eq!(restore, &Restore::Deleted, "{label}");
            assert_eq!(bucket.bytes(&key).await, None, "{label}: key deleted");
        }
        (other, _) => panic!("{label}: {other:?}"),
    }
    assert!(
        verdict.violations.iter().any(|v| v.rule == case.rule),
        "{label}: {:?}",
        verdict.violations
    );
    assert_eq!(
        bucket.status(&key, Some(&bad_version)).await.as_deref(),
        Some("quarantined"),
        "{label}"
    );

    let folder = layout.quarantine_prefix(&case.dataset);
    assert_eq!(
        bucket
            .bytes(&format!("{folder}{bad_version}.parquet"))
            .await
            .as_ref(),
        Some(&case.bad),
        "{label}: the bad bytes are kept in quarantine"
    );
    let reason: serde_json::Value = serde_json::from_slice(
        &bucket
            .bytes(&format!("{folder}{bad_version}.reason.json"))
            .await
            .unwrap(),
    )
    .unwrap();
    assert_eq!(reason["key"], key, "{label}");
    assert_eq!(reason["version_id"], bad_version.as_str(), "{label}");
    assert_eq!(
        reason["writer"]["principal"], "AWS:AIDAEXAMPLE:backtest-job-7",
        "{label}"
    );
    let rules: Vec<&str> = reason["violations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["rule"].as_str().unwrap())
        .collect();
    let expected = serde_json::to_value(case.rule).unwrap();
    assert!(
        rules.contains(&expected.as_str().unwrap()),
        "{label}: {rules:?}"
    );

    let audits = bucket.audit_records().await;
    let record = audits
        .iter()
        .find(|r| r["key"] == key.as_str() && r["version_id"] == bad_version.as_str())
        .unwrap_or_else(|| panic!("{label}: no audit record in {audits:?}"));
    assert_eq!(record["verdict"], "quarantined", "{label}");
    assert_eq!(record["bytes"], case.bad.len(), "{label}");
    assert_eq!(
        record["sha256"],
        cachefill_core::codec::sha256_hex(&case.bad),
        "{label}"
    );
    assert!(record["elapsed_ms"].is_u64(), "{label}");
    assert!(record["event_time"].is_string(), "{label}");
    assert_eq!(
        bucket.history_len(&case.dataset).await,
        usize::from(previous),
        "{label}: nothing bad enters the manifest"
    );
}

#[tokio::test]
async fn each_bad_object_is_quarantined_and_the_key_restored() {
    for case in corpus() {
        quarantine_case(&case, true).await;
    }
}

#[tokio::test]
async fn each_bad_object_without_a_valid_predecessor_is_quarantined_and_deleted() {
    for case in corpus() {
        quarantine_case(&case, false).await;
    }
}

#[tokio::test]
async fn rows_in_the_future_are_quarantined() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(FixedClock::new(
        Utc.with_ymd_and_hms(2024, 9, 1, 0, 0, 0).unwrap(),
    ));
    let validator = Validator::new(
        LocalStore::new(dir.path()).unwrap(),
        ValidatorConfig::new(BUCKET, layout()),
    )
    .with_clock(clock);
    let key = layout().data_key(&spy_minute());
    let put = validator
        .store()
        .put(&key, encode(&spy_batch()), Default::default())
        .await
        .unwrap();
    let event = cachefill_core::validate::EventRecord::new(BUCKET, &key)
        .with_version(put.version_id.clone(), Some(put.etag));
    let verdict = validator.judge(&event).await.unwrap();
    assert_eq!(
        verdict.outcome,
        Outcome::Quarantined {
            restore: Restore::Deleted
        }
    );
    assert_eq!(
        verdict
            .violations
            .iter()
            .map(|v| v.rule)
            .collect::<Vec<_>>(),
        [Rule::Future]
    );
}

/// The sidecar pair rule: a sidecar whose checksum names no validated parquet is put aside
/// and the sidecar key restored to the previous agreeing bytes.
#[tokio::test]
async fn a_sidecar_with_a_wrong_checksum_is_quarantined_and_the_previous_one_restored() {
    let bucket = Bucket::new();
    let layout = layout();
    let dataset = spy_minute();
    let key = layout.data_key(&dataset);
    let sidecar_key = layout.sidecar_key(&dataset);
    let parquet = encode(&spy_batch());
    put_valid(&bucket, &key, &parquet).await;
    let good_sidecar = sidecar_of(&parquet);
    let put = bucket.put(&sidecar_key, good_sidecar.clone()).await;
    let good_version = put.version_id.clone().unwrap();
    let verdict = bucket
        .validator
        .judge(&bucket.event(&sidecar_key, &put))
        .await
        .unwrap();
    assert_eq!(verdict.outcome, Outcome::Valid);
    assert_eq!(
        bucket
            .status(&sidecar_key, Some(&good_version))
            .await
            .as_deref(),
        Some("valid")
    );

    let wrong = good_sidecar.replace(
        &cachefill_core::codec::sha256_hex(&parquet),
        &"0".repeat(64),
    );
    let put = bucket.put(&sidecar_key, wrong.clone()).await;
    let bad_version = put.version_id.clone().unwrap();
    let verdict = bucket
        .validator
        .judge(&bucket.event(&sidecar_key, &put))
        .await
        .unwrap();
    assert_eq!(
        verdict.outcome,
        Outcome::Quarantined {
            restore: Restore::Restored {
                version_id: good_version.clone(),
                new_version_id: bucket
                    .store()
                    .head(&sidecar_key, None)
                    .await
                    .unwrap()
                    .version_id,
            }
        }
    );
    assert_eq!(
        verdict
            .violations
            .iter()
            .map(|v| v.rule)
            .collect::<Vec<_>>(),
        [Rule::SidecarMismatch]
    );
    assert_eq!(
        bucket.bytes(&sidecar_key).await.unwrap(),
        Bytes::from(good_sidecar),
        "the previous valid sidecar bytes are back"
    );
    let folder = layout.quarantine_prefix(&dataset);
    assert_eq!(
        bucket
            .bytes(&format!("{folder}sidecar-{bad_version}.meta.json"))
            .await
            .unwrap(),
        Bytes::from(wrong)
    );
    assert!(
        bucket
            .bytes(&format!("{folder}sidecar-{bad_version}.reason.json"))
            .await
            .is_some()
    );
    assert_eq!(
        bucket
            .status(&sidecar_key, Some(&bad_version))
            .await
            .as_deref(),
        Some("quarantined")
    );
    let audits = bucket.audit_records().await;
    assert!(audits.iter().any(|r| r["key"] == sidecar_key.as_str()
        && r["verdict"] == "quarantined"
        && r["kind"] == "sidecar"));
    assert_eq!(
        bucket.bytes(&key).await.unwrap(),
        parquet,
        "the parquet is untouched"
    );
}

#[tokio::test]
async fn a_bad_sidecar_without_a_parquet_is_deleted_and_one_without_an_agreeing_predecessor_is_regenerated()
 {
    let bucket = Bucket::new();
    let layout = layout();
    let dataset = spy_minute();
    let sidecar_key = layout.sidecar_key(&dataset);
    let parquet = encode(&spy_batch());

    // No parquet at all: nothing can agree, the sidecar goes.
    let other = encode(&batch(&dataset, &["2024-09-13"], &[]));
    let put = bucket.put(&sidecar_key, sidecar_of(&other)).await;
    let verdict = bucket
        .validator
        .judge(&bucket.event(&sidecar_key, &put))
        .await
        .unwrap();
    assert_eq!(
        verdict.outcome,
        Outcome::Quarantined {
            restore: Restore::Deleted
        }
    );
    assert_eq!(bucket.bytes(&sidecar_key).await, None);

    // A valid parquet, and a sidecar disagreeing on rows: the key gets the sidecar of the
    // parquet, computed in lumibot's format.
    let key = layout.data_key(&dataset);
    put_valid(&bucket, &key, &parquet).await;
    let rows = spy_batch().num_rows();
    let lying = sidecar_of(&parquet).replace(
        &format!("\"rows\": {rows},"),
        &format!("\"rows\": {},", rows + 1),
    );
    assert!(
        lying.contains(&format!("\"rows\": {},", rows + 1)),
        "{lying}"
    );
    let put = bucket.put(&sidecar_key, lying).await;
    let verdict = bucket
        .validator
        .judge(&bucket.event(&sidecar_key, &put))
        .await
        .unwrap();
    assert_eq!(
        verdict.outcome,
        Outcome::Quarantined {
            restore: Restore::Regenerated
        }
    );
    assert_eq!(
        verdict
            .violations
            .iter()
            .map(|v| v.rule)
            .collect::<Vec<_>>(),
        [Rule::SidecarMismatch]
    );
    let restored = bucket.bytes(&sidecar_key).await.unwrap();
    let report = check_object(&dataset, &parquet, Some(&restored), Utc::now());
    assert!(report.is_valid(), "{:?}", report.violations);
}

/// When a bad parquet arrives with its own sidecar, restoring the parquet also restores the
/// sidecar that agrees with it: readers never see a disagreeing pair.
#[tokio::test]
async fn restoring_a_parquet_restores_its_sidecar_too() {
    let bucket = Bucket::new();
    let layout = layout();
    let dataset = spy_minute();
    let key = layout.data_key(&dataset);
    let sidecar_key = layout.sidecar_key(&dataset);
    let good = encode(&spy_batch());
    put_valid(&bucket, &key, &good).await;
    let good_sidecar = sidecar_of(&good);
    let put = bucket.put(&sidecar_key, good_sidecar.clone()).await;
    bucket
        .validator
        .judge(&bucket.event(&sidecar_key, &put))
        .await
        .unwrap();

    let bad = encode(&set_i64(&spy_batch(), "volume", 3, Some(-7)));
    let put_bad = bucket.put(&key, bad.clone()).await;
    // Its writer put the matching sidecar before the validator ran.
    let put_bad_sidecar = bucket.put(&sidecar_key, sidecar_of(&bad)).await;
    let verdict = bucket
        .validator
        .judge(&bucket.event(&key, &put_bad))
        .await
        .unwrap();
    assert!(matches!(verdict.outcome, Outcome::Quarantined { .. }));
    assert_eq!(bucket.bytes(&key).await.unwrap(), good);
    assert_eq!(
        bucket.bytes(&sidecar_key).await.unwrap(),
        Bytes::from(good_sidecar.clone()),
        "the sidecar of the rejected parquet went with it"
    );
    // The bad sidecar's own (late) event is now for a superseded version: nothing more.
    let verdict = bucket
        .validator
        .judge(&bucket.event(&sidecar_key, &put_bad_sidecar))
        .await
        .unwrap();
    assert!(
        matches!(verdict.outcome, Outcome::Skipped(_)),
        "{:?}",
        verdict.outcome
    );
    assert_eq!(
        bucket.bytes(&sidecar_key).await.unwrap(),
        Bytes::from(good_sidecar)
    );
}
