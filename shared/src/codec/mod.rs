//! Parquet files and `.meta.json` sidecars exactly as lumibot reads them (`docs/FORMAT.md`).

pub mod conform;
pub mod facts;
pub mod rows;
pub mod schema;
pub mod sidecar;

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow_array::RecordBatch;
use bytes::Bytes;
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::basic::Compression;
use parquet::file::metadata::KeyValue;
use parquet::file::properties::{EnabledStatistics, WriterProperties};

pub use facts::BatchFacts;
pub use rows::{EodBar, OhlcBar, QuoteBar, Rows};
pub use sidecar::Sidecar;

/// lumibot's limit: one row group per at most a million rows.
pub const MAX_ROW_GROUP_ROWS: usize = 1_000_000;

#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("parquet: {0}")]
    Parquet(#[from] parquet::errors::ParquetError),
    #[error("arrow: {0}")]
    Arrow(#[from] arrow_schema::ArrowError),
    #[error("{0}")]
    Shape(String),
    #[error("sidecar: {0}")]
    Sidecar(String),
}

/// A decoded parquet file: all rows in one batch, and its key-value metadata.
#[derive(Debug, Clone)]
pub struct Decoded {
    pub batch: RecordBatch,
    pub metadata: BTreeMap<String, String>,
}

impl Decoded {
    /// One of our own footer facts (`format::FACT_*`).
    pub fn fact(&self, key: &str) -> Option<&str> {
        self.metadata.get(key).map(String::as_str)
    }
}

fn writer_properties(metadata: &BTreeMap<String, String>) -> WriterProperties {
    WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .set_max_row_group_row_count(Some(MAX_ROW_GROUP_ROWS))
        .set_statistics_enabled(EnabledStatistics::Chunk)
        .set_key_value_metadata(Some(
            metadata
                .iter()
                .map(|(k, v)| KeyValue::new(k.clone(), v.clone()))
                .collect(),
        ))
        .build()
}

/// Encode one batch as a snappy parquet file with the given key-value metadata.
pub fn encode(
    batch: &RecordBatch,
    metadata: &BTreeMap<String, String>,
) -> Result<Bytes, CodecError> {
    let mut out = Vec::with_capacity(batch.get_array_memory_size() / 3 + 4096);
    let mut writer =
        ArrowWriter::try_new(&mut out, batch.schema(), Some(writer_properties(metadata)))?;
    writer.write(batch)?;
    writer.close()?;
    Ok(Bytes::from(out))
}

/// The key-value metadata of a parquet footer (entries without a value left out).
pub fn footer_metadata(
    metadata: &parquet::file::metadata::ParquetMetaData,
) -> BTreeMap<String, String> {
    metadata
        .file_metadata()
        .key_value_metadata()
        .map(|kvs| {
            kvs.iter()
                .filter_map(|kv| kv.value.clone().map(|v| (kv.key.clone(), v)))
                .collect()
        })
        .unwrap_or_default()
}

/// Decode a whole parquet file into one batch.
pub fn decode(bytes: Bytes) -> Result<Decoded, CodecError> {
    let builder = ParquetRecordBatchReaderBuilder::try_new(bytes)?;
    let metadata = footer_metadata(builder.metadata());
    let schema = builder.schema().clone();
    let reader = builder.with_batch_size(64 * 1024).build()?;
    let batches = reader.collect::<Result<Vec<_>, _>>()?;
    let batch = match batches.len() {
        0 => RecordBatch::new_empty(Arc::clone(&schema)),
        1 => batches.into_iter().next().expect("one batch"),
        _ => arrow_select::concat::concat_batches(&schema, &batches)?,
    };
    Ok(Decoded { batch, metadata })
}

/// Hex sha256 of some bytes (the sidecar's `checksum`).
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}
