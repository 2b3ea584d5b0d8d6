//! Builders shared by the validator tests: real parquet bytes made with the codec, and
//! ways to break them one rule at a time.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_schema::{Field, Schema};
use bytes::Bytes;
use cachefill_core::codec::rows::rows_to_batch;
use cachefill_core::codec::{self, BatchFacts, Sidecar};
use cachefill_core::dataset::Dataset;
use cachefill_core::fill::merge;
use cachefill_core::keys::KeyLayout;
use cachefill_core::providers::synthetic;
use cachefill_core::storage::local::LocalStore;
use cachefill_core::storage::{ObjectStore, PutOptions, PutResult};
use cachefill_core::validate::{EventRecord, Validator, ValidatorConfig};
use chrono::{NaiveDate, Utc};

pub(crate) const BUCKET: &str = "cache-bucket";

pub(crate) fn layout() -> KeyLayout {
    KeyLayout::new("stage/cache", "v3")
}

pub(crate) fn dataset(json: &str) -> Dataset {
    Dataset::from_json(json).unwrap_or_else(|e| panic!("{json}: {e}"))
}

pub(crate) fn spy_minute() -> Dataset {
    dataset(
        r#"{"provider":"thetadata","asset_type":"stock","symbol":"SPY","timespan":"minute","datastyle":"ohlc"}"#,
    )
}

pub(crate) fn date(text: &str) -> NaiveDate {
    text.parse().unwrap()
}

/// Rows of `dataset` for `sessions` (regular hours) plus placeholders for `empty`, sorted,
/// exactly as the fill engine would write them.
pub(crate) fn batch(dataset: &Dataset, sessions: &[&str], empty: &[&str]) -> RecordBatch {
    let sessions: Vec<NaiveDate> = sessions.iter().map(|s| date(s)).collect();
    let empty: Vec<NaiveDate> = empty.iter().map(|s| date(s)).collect();
    let rows = synthetic::generate(dataset, &sessions, false);
    let fresh = rows_to_batch(dataset, rows).unwrap();
    merge::merge(dataset, None, &fresh, &empty).unwrap()
}

pub(crate) fn encode(batch: &RecordBatch) -> Bytes {
    codec::encode(batch, &BTreeMap::new()).unwrap()
}

/// The lumibot sidecar of a parquet.
pub(crate) fn sidecar_of(bytes: &Bytes) -> String {
    let decoded = codec::decode(bytes.clone()).unwrap();
    let facts = BatchFacts::of(&decoded.batch).unwrap();
    Sidecar::new(&facts, &codec::sha256_hex(bytes), Utc::now()).to_json()
}

/// `batch` with column `name` replaced by `column` (same field name, the column's type).
pub(crate) fn replace(batch: &RecordBatch, name: &str, column: ArrayRef) -> RecordBatch {
    let schema = batch.schema();
    let index = schema.index_of(name).unwrap();
    let mut fields: Vec<Field> = schema.fields().iter().map(|f| f.as_ref().clone()).collect();
    fields[index] = Field::new(name, column.data_type().clone(), true);
    let mut columns = batch.columns().to_vec();
    columns[index] = column;
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).unwrap()
}

pub(crate) fn without(batch: &RecordBatch, name: &str) -> RecordBatch {
    let schema = batch.schema();
    let index = schema.index_of(name).unwrap();
    let mut b = batch.clone();
    b.remove_column(index);
    b
}

pub(crate) fn with_extra(batch: &RecordBatch, name: &str, column: ArrayRef) -> RecordBatch {
    let schema = batch.schema();
    let mut fields: Vec<Field> = schema.fields().iter().map(|f| f.as_ref().clone()).collect();
    fields.push(Field::new(name, column.data_type().clone(), true));
    let mut columns = batch.columns().to_vec();
    columns.push(column);
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).unwrap()
}

/// A float column of `batch` with `row` set to `value`.
pub(crate) fn set_f64(
    batch: &RecordBatch,
    name: &str,
    row: usize,
    value: Option<f64>,
) -> RecordBatch {
    let col = batch
        .column_by_name(name)
        .unwrap()
        .as_any()
        .downcast_ref::<arrow_array::Float64Array>()
        .unwrap();
    let values: arrow_array::Float64Array = (0..col.len())
        .map(|i| {
            if i == row {
                value
            } else {
                col.is_valid(i).then(|| col.value(i))
            }
        })
        .collect();
    replace(batch, name, Arc::new(values))
}

pub(crate) fn set_i64(
    batch: &RecordBatch,
    name: &str,
    row: usize,
    value: Option<i64>,
) -> RecordBatch {
    let col = batch
        .column_by_name(name)
        .unwrap()
        .as_any()
        .downcast_ref::<arrow_array::Int64Array>()
        .unwrap();
    let values: arrow_array::Int64Array = (0..col.len())
        .map(|i| {
            if i == row {
                value
            } else {
                col.is_valid(i).then(|| col.value(i))
            }
        })
        .collect();
    replace(batch, name, Arc::new(values))
}

/// `datetime` rewritten by `f(row, nanos)`.
pub(crate) fn map_times(
    batch: &RecordBatch,
    f: impl Fn(usize, Option<i64>) -> Option<i64>,
) -> RecordBatch {
    let col = codec::facts::datetimes(batch).unwrap();
    let values: Vec<Option<i64>> = (0..col.len())
        .map(|i| f(i, col.is_valid(i).then(|| col.value(i))))
        .collect();
    let array = arrow_array::TimestampNanosecondArray::from(values).with_timezone("UTC");
    replace(batch, "datetime", Arc::new(array))
}

/// A fresh versioned local bucket and a validator on it.
pub(crate) struct Bucket {
    pub dir: tempfile::TempDir,
    pub validator: Validator<LocalStore>,
}

impl Bucket {
    pub(crate) fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::new(dir.path()).unwrap();
        Bucket {
            validator: Validator::new(store, ValidatorConfig::new(BUCKET, layout())),
            dir,
        }
    }

    pub(crate) fn store(&self) -> &LocalStore {
        self.validator.store()
    }

    /// Write bytes straight to the bucket (as any writer would; nothing is judged).
    pub(crate) async fn put(&self, key: &str, body: impl Into<Bytes>) -> PutResult {
        self.store()
            .put(key, body.into(), PutOptions::default())
            .await
            .unwrap()
    }

    /// The S3 event of a write.
    pub(crate) fn event(&self, key: &str, put: &PutResult) -> EventRecord {
        EventRecord::new(BUCKET, key)
            .with_version(put.version_id.clone(), Some(put.etag.clone()))
            .with_event("ObjectCreated:Put", Utc::now())
            .with_principal("AWS:AIDAEXAMPLE:backtest-job-7")
    }

    /// Every key in the bucket.
    pub(crate) async fn keys(&self) -> Vec<String> {
        self.store()
            .list("")
            .await
            .unwrap()
            .into_iter()
            .map(|m| m.key)
            .collect()
    }

    pub(crate) async fn keys_under(&self, prefix: &str) -> Vec<String> {
        self.store()
            .list(prefix)
            .await
            .unwrap()
            .into_iter()
            .map(|m| m.key)
            .collect()
    }

    pub(crate) async fn bytes(&self, key: &str) -> Option<Bytes> {
        match self.store().get(key, None).await {
            Ok(got) => Some(got.bytes),
            Err(e) if e.is_not_found() => None,
            Err(e) => panic!("{e}"),
        }
    }

    pub(crate) async fn manifest(&self, dataset: &Dataset) -> Option<serde_json::Value> {
        self.bytes(&layout().manifest_key(dataset))
            .await
            .map(|b| serde_json::from_slice(&b).unwrap())
    }

    pub(crate) async fn history_len(&self, dataset: &Dataset) -> usize {
        self.manifest(dataset)
            .await
            .map_or(0, |m| m["history"].as_array().unwrap().len())
    }

    pub(crate) async fn status(&self, key: &str, version: Option<&str>) -> Option<String> {
        self.store()
            .get_tags(key, version)
            .await
            .unwrap()
            .get("cachefill-status")
            .cloned()
    }

    /// Every audit record written so far, parsed.
    pub(crate) async fn audit_records(&self) -> Vec<serde_json::Value> {
        let mut out = Vec::new();
        for key in self.keys_under("stage/cache/_audit/").await {
            let bytes = self.bytes(&key).await.unwrap();
            assert!(bytes.ends_with(b"\n"), "one newline-terminated line: {key}");
            assert_eq!(
                bytes.iter().filter(|b| **b == b'\n').count(),
                1,
                "exactly one line: {key}"
            );
            out.push(serde_json::from_slice(&bytes).unwrap());
        }
        out
    }
}
