//! An extended parquet (an earlier validated version's row groups copied byte for byte, new
//! row groups appended) is judged on its appended rows alone, with the verdict the whole
//! check gives; anything else is judged whole.

mod validator_support;

use std::collections::BTreeMap;

use arrow_array::RecordBatch;
use bytes::Bytes;
use cachefill_core::codec::{self, BatchFacts};
use cachefill_core::coverage::{self, Outline};
use cachefill_core::dataset::Dataset;
use cachefill_core::format::{FACT_OUTLINE, FACT_SCHEMA_VERSION};
use cachefill_core::rules::{Report, Rule, check_extension, check_object};
use cachefill_core::storage::PutResult;
use cachefill_core::validate::validator::Checked;
use cachefill_core::validate::{Outcome, Verdict};
use chrono::{DateTime, Utc};
use validator_support::*;

const EARLIER: [&str; 4] = ["2024-01-02", "2024-01-03", "2024-01-04", "2024-01-05"];
const LATER: [&str; 2] = ["2024-01-08", "2024-01-09"];

/// `file` with `rows` appended as the fill engine extends a file: its row groups copied.
fn extend(file: &Bytes, rows: &RecordBatch) -> Bytes {
    extend_with(file, rows, &BTreeMap::new())
}

/// [`extend`] with the footer facts `metadata`.
fn extend_with(file: &Bytes, rows: &RecordBatch, metadata: &BTreeMap<String, String>) -> Bytes {
    let footer = codec::read_footer(file).unwrap();
    let mut encoder = codec::Encoder::appending(rows.schema(), file, footer.metadata()).unwrap();
    encoder.write(rows).unwrap();
    encoder.finish(metadata).unwrap()
}

/// Our footer facts, claiming `outline`.
fn claiming(outline: &Outline) -> BTreeMap<String, String> {
    BTreeMap::from([
        (FACT_SCHEMA_VERSION.to_string(), "1".to_string()),
        (FACT_OUTLINE.to_string(), outline.to_fact().unwrap()),
    ])
}

fn facts_of(file: &Bytes) -> BatchFacts {
    BatchFacts::of(&codec::decode(file.clone()).unwrap().batch).unwrap()
}

/// What a verdict is made of, comparable.
/// `check_extension` of `extended` as the extension of `earlier`, with their true checksum
/// and facts.
fn extension_check(
    dataset: &Dataset,
    extended: &Bytes,
    earlier: &Bytes,
    now: DateTime<Utc>,
) -> Option<Report> {
    check_extension(
        dataset,
        extended,
        &codec::sha256_hex(extended),
        earlier,
        &facts_of(earlier),
        now,
    )
}

fn verdict(report: &Report) -> (Vec<(Rule, String)>, String, usize, Option<BatchFacts>) {
    (
        report
            .violations
            .iter()
            .map(|v| (v.rule, v.message.clone()))
            .collect(),
        report.sha256.clone(),
        report.bytes,
        report.facts,
    )
}

fn last_time(file: &Bytes) -> i64 {
    facts_of(file).max.unwrap()
}

/// The earlier file and rows to append: each case one way the appended part can be.
fn cases(dataset: &Dataset, earlier: &Bytes) -> Vec<(&'static str, RecordBatch)> {
    let later = batch(dataset, &LATER, &[]);
    let last = last_time(earlier);
    vec![
        ("valid", later.clone()),
        ("negative price", set_f64(&later, "open", 3, Some(-1.0))),
        ("null close", set_f64(&later, "close", 7, None)),
        ("negative volume", set_i64(&later, "volume", 5, Some(-10))),
        (
            "first at the earlier last row",
            map_times(&later, |i, t| if i == 0 { Some(last) } else { t }),
        ),
        (
            "first before the earlier last row",
            map_times(&later, |i, t| {
                if i == 0 {
                    Some(last - 60_000_000_000)
                } else {
                    t
                }
            }),
        ),
        (
            "back in time inside the appended rows",
            map_times(&later, |i, t| if i == 10 { Some(last + 1) } else { t }),
        ),
        (
            "no datetime",
            map_times(&later, |i, t| (i != 4).then_some(t).flatten()),
        ),
    ]
}

#[test]
fn an_extension_gets_the_report_the_whole_check_gives() {
    let dataset = spy_minute();
    let earlier = encode(&batch(&dataset, &EARLIER, &[]));
    let now = Utc::now();
    let mut incremental = Vec::new();
    for (case, rows) in cases(&dataset, &earlier) {
        let extended = extend(&earlier, &rows);
        let whole = check_object(&dataset, &extended, None, now);
        match extension_check(&dataset, &extended, &earlier, now) {
            Some(report) => {
                assert_eq!(verdict(&report), verdict(&whole), "{case}");
                incremental.push(case);
            }
            // Only rows going back in time need the earlier rows (to name every repeat).
            None => assert!(
                whole.violations.iter().any(|v| v.rule == Rule::Unsorted),
                "{case}: {:?}",
                whole.violations
            ),
        }
        assert_eq!(
            whole.is_valid(),
            case == "valid",
            "{case}: {:?}",
            whole.violations
        );
    }
    assert_eq!(
        incremental,
        [
            "valid",
            "negative price",
            "null close",
            "negative volume",
            "first at the earlier last row",
            "no datetime"
        ]
    );
}

#[test]
fn a_footer_outline_the_rows_do_not_have_is_refused_whole_and_extended() {
    let dataset = spy_minute();
    let edges = coverage::checks_edges(&dataset);
    let now = Utc::now();
    let rules = |report: &Report| report.violations.iter().map(|v| v.rule).collect::<Vec<_>>();
    let rows = batch(&dataset, &EARLIER, &["2024-01-08"]);
    let truth = Outline::of_batch(&rows, edges).unwrap();
    assert_eq!(truth.coverage.placeholders.len(), 1);
    let earlier = codec::encode(&rows, &claiming(&truth)).unwrap();
    assert!(check_object(&dataset, &earlier, None, now).is_valid());

    // One session with real rows said to be a placeholder; a row more than there is.
    let mut moved = truth.clone();
    let first = *moved.coverage.real.first().unwrap();
    moved.coverage.real.remove(&first);
    moved.coverage.placeholders.insert(first);
    let mut counted = truth.clone();
    counted.facts.rows += 1;
    for lie in [moved, counted] {
        let lying = codec::encode(&rows, &claiming(&lie)).unwrap();
        assert_eq!(
            rules(&check_object(&dataset, &lying, None, now)),
            [Rule::FooterOutline]
        );
    }
    let garbled = BTreeMap::from([
        (FACT_SCHEMA_VERSION.to_string(), "1".to_string()),
        (FACT_OUTLINE.to_string(), "{\"rows\":".to_string()),
    ]);
    let garbled = codec::encode(&rows, &garbled).unwrap();
    assert_eq!(
        rules(&check_object(&dataset, &garbled, None, now)),
        [Rule::FooterOutline]
    );

    // Extended: the earlier outline followed by the appended rows' is the only true one,
    // and the check of the appended rows alone says what the whole check says.
    let later = batch(&dataset, &["2024-01-09", "2024-01-10"], &[]);
    let whole_truth = truth
        .clone()
        .followed_by(Outline::of_batch(&later, edges).unwrap());
    for (claim, valid) in [(&whole_truth, true), (&truth, false)] {
        let extended = extend_with(&earlier, &later, &claiming(claim));
        let whole = check_object(&dataset, &extended, None, now);
        let appended = extension_check(&dataset, &extended, &earlier, now).expect("an extension");
        assert_eq!(verdict(&appended), verdict(&whole));
        assert_eq!(whole.is_valid(), valid, "{:?}", whole.violations);
        if !valid {
            assert_eq!(rules(&whole), [Rule::FooterOutline]);
        }
    }
    // An outline without our other facts is no claim of ours, to either check.
    let mut foreign = claiming(&truth);
    foreign.remove(FACT_SCHEMA_VERSION);
    let extended = extend_with(&earlier, &later, &foreign);
    let whole = check_object(&dataset, &extended, None, now);
    let appended = extension_check(&dataset, &extended, &earlier, now).expect("an extension");
    assert!(whole.is_valid(), "{:?}", whole.violations);
    assert_eq!(verdict(&appended), verdict(&whole));
}

#[test]
fn an_extension_with_a_repeated_boundary_is_named_as_the_whole_check_names_it() {
    let dataset = spy_minute();
    let earlier = encode(&batch(&dataset, &EARLIER, &[]));
    let last = last_time(&earlier);
    let rows = map_times(&batch(&dataset, &LATER, &[]), |i, t| {
        if i == 0 { Some(last) } else { t }
    });
    let extended = extend(&earlier, &rows);
    let report = extension_check(&dataset, &extended, &earlier, Utc::now()).expect("an extension");
    let rules: Vec<Rule> = report.violations.iter().map(|v| v.rule).collect();
    assert_eq!(rules, [Rule::DuplicateTimestamp]);
    let earlier_rows = facts_of(&earlier).rows;
    assert!(
        report.violations[0]
            .message
            .contains(&format!("row {earlier_rows} at")),
        "{}",
        report.violations[0].message
    );
}

#[test]
fn anything_but_an_extension_is_left_to_the_whole_check() {
    let dataset = spy_minute();
    let earlier = encode(&batch(&dataset, &EARLIER, &[]));
    let facts = facts_of(&earlier);
    let now = Utc::now();
    let later = batch(&dataset, &LATER, &[]);
    let extended = extend(&earlier, &later);

    // Written afresh: the same rows, but not the earlier row groups kept.
    let all = batch(&dataset, &[&EARLIER[..], &LATER[..]].concat(), &[]);
    let merged = encode(&all);
    assert!(
        check_extension(
            &dataset,
            &merged,
            &codec::sha256_hex(&merged),
            &earlier,
            &facts,
            now
        )
        .is_none()
    );
    // One byte of a kept column chunk differs.
    let flipped = flip_kept_byte(&extended);
    assert!(
        check_extension(
            &dataset,
            &flipped,
            &codec::sha256_hex(&flipped),
            &earlier,
            &facts,
            now
        )
        .is_none()
    );
    // Facts that are not the earlier file's.
    let wrong = BatchFacts {
        rows: facts.rows + 1,
        real_rows: facts.real_rows + 1,
        ..facts
    };
    assert!(
        check_extension(
            &dataset,
            &extended,
            &codec::sha256_hex(&extended),
            &earlier,
            &wrong,
            now
        )
        .is_none()
    );
    // Fewer row groups than the earlier file.
    assert!(
        check_extension(
            &dataset,
            &earlier,
            &codec::sha256_hex(&earlier),
            &extended,
            &facts_of(&extended),
            now
        )
        .is_none()
    );
    // A truncated object.
    let truncated = extended.slice(..extended.len() - 3);
    assert!(
        check_extension(
            &dataset,
            &truncated,
            &codec::sha256_hex(&truncated),
            &earlier,
            &facts,
            now
        )
        .is_none()
    );
    // The earlier file itself, untouched: nothing appended, still an extension of itself.
    let same = check_extension(
        &dataset,
        &earlier,
        &codec::sha256_hex(&earlier),
        &earlier,
        &facts,
        now,
    )
    .unwrap();
    assert_eq!(
        verdict(&same),
        verdict(&check_object(&dataset, &earlier, None, now))
    );
}

/// `file` with one byte flipped in the middle of its first row group's first column chunk.
fn flip_kept_byte(file: &Bytes) -> Bytes {
    let footer = codec::read_footer(file).unwrap();
    let chunk = footer.metadata().row_group(0).column(0);
    let at = usize::try_from(chunk.data_page_offset() + chunk.compressed_size() / 2).unwrap();
    let mut bytes = file.to_vec();
    bytes[at] ^= 0x01;
    Bytes::from(bytes)
}

/// Put `body` at `key` and have the validator judge its event.
async fn put_and_judge(bucket: &Bucket, key: &str, body: &Bytes) -> (PutResult, Verdict) {
    let put = bucket.put(key, body.clone()).await;
    let verdict = bucket
        .validator
        .judge(&bucket.event(key, &put))
        .await
        .unwrap();
    (put, verdict)
}

/// Put the earlier file at the dataset's key and have it judged valid.
async fn validated(bucket: &Bucket, dataset: &Dataset, earlier: &Bytes) {
    let key = layout().data_key(dataset);
    let (_, verdict) = put_and_judge(bucket, &key, earlier).await;
    assert_eq!(verdict.outcome, Outcome::Valid, "{:?}", verdict.violations);
    assert_eq!(verdict.checked, Some(Checked::Whole));
}

#[tokio::test]
async fn the_validator_records_an_extension_judged_on_its_appended_rows() {
    let bucket = Bucket::new();
    let dataset = spy_minute();
    let key = layout().data_key(&dataset);
    let earlier = encode(&batch(&dataset, &EARLIER, &[]));
    validated(&bucket, &dataset, &earlier).await;

    let extended = extend(&earlier, &batch(&dataset, &LATER, &[]));
    let (put, verdict) = put_and_judge(&bucket, &key, &extended).await;
    assert_eq!(verdict.outcome, Outcome::Valid, "{:?}", verdict.violations);
    assert_eq!(verdict.checked, Some(Checked::Appended));

    let facts = facts_of(&extended);
    assert_eq!(verdict.rows, Some(facts.rows as u64));
    let current = &bucket.manifest(&dataset).await.unwrap()["current"];
    assert_eq!(current["version_id"], put.version_id.unwrap().as_str());
    assert_eq!(current["sha256"], codec::sha256_hex(&extended).as_str());
    assert_eq!(current["rows"], facts.rows);
    assert_eq!(current["real_rows"], facts.real_rows);
    assert_eq!(current["placeholders"], facts.placeholders);
    let min = cachefill_core::pyfmt::pandas_utc_isoformat(facts.min.unwrap());
    let max = cachefill_core::pyfmt::pandas_utc_isoformat(facts.max.unwrap());
    assert_eq!(current["min"], min.as_str());
    assert_eq!(current["max"], max.as_str());
    assert_eq!(current["bytes"], extended.len());
}

#[tokio::test]
async fn a_bad_appended_row_is_quarantined_as_the_whole_check_would() {
    let bucket = Bucket::new();
    let dataset = spy_minute();
    let key = layout().data_key(&dataset);
    let earlier = encode(&batch(&dataset, &EARLIER, &[]));
    validated(&bucket, &dataset, &earlier).await;

    let bad = set_f64(&batch(&dataset, &LATER, &[]), "low", 12, Some(-3.5));
    let extended = extend(&earlier, &bad);
    let (_, verdict) = put_and_judge(&bucket, &key, &extended).await;
    assert_eq!(verdict.checked, Some(Checked::Appended));
    assert!(
        matches!(verdict.outcome, Outcome::Quarantined { .. }),
        "{:?}",
        verdict.outcome
    );
    let whole = check_object(&dataset, &extended, None, Utc::now());
    assert!(!whole.is_valid());
    assert_eq!(verdict.violations, whole.violations);
    // The validated version is back at the key.
    assert_eq!(bucket.bytes(&key).await.unwrap(), earlier);
}

#[tokio::test]
async fn an_object_whose_kept_bytes_differ_is_judged_whole() {
    let bucket = Bucket::new();
    let dataset = spy_minute();
    let key = layout().data_key(&dataset);
    let earlier = encode(&batch(&dataset, &EARLIER, &[]));
    validated(&bucket, &dataset, &earlier).await;

    let altered = flip_kept_byte(&extend(&earlier, &batch(&dataset, &LATER, &[])));
    let (_, verdict) = put_and_judge(&bucket, &key, &altered).await;
    assert_eq!(verdict.checked, Some(Checked::Whole));
    let whole = check_object(&dataset, &altered, None, Utc::now());
    assert_eq!(verdict.violations, whole.violations);
    if whole.is_valid() {
        assert_eq!(verdict.outcome, Outcome::Valid);
    } else {
        assert!(matches!(verdict.outcome, Outcome::Quarantined { .. }));
        assert_eq!(bucket.bytes(&key).await.unwrap(), earlier);
    }
}
