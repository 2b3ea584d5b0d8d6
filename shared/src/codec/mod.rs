//! Parquet files and `.meta.json` sidecars exactly as lumibot reads them (`docs/FORMAT.md`).

pub mod conform;
pub mod facts;
pub mod rows;
pub mod schema;
pub mod sidecar;

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;
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

fn writer_properties() -> WriterProperties {
    WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .set_max_row_group_row_count(Some(MAX_ROW_GROUP_ROWS))
        .set_statistics_enabled(EnabledStatistics::Chunk)
        .build()
}

/// Encode one batch as a snappy parquet file with the given key-value metadata.
pub fn encode(
    batch: &RecordBatch,
    metadata: &BTreeMap<String, String>,
) -> Result<Bytes, CodecError> {
    let mut encoder = Encoder::new(batch.schema())?;
    encoder.write(batch)?;
    encoder.finish(metadata)
}

/// A parquet file written batch by batch, in the same format as [`encode`]: each batch is
/// encoded as it is written (the row group in progress is held encoded), so a long file
/// never has to be decoded in memory all at once. The footer's key-value metadata is given
/// last, when what it says (coverage) is known.
pub struct Encoder {
    writer: ArrowWriter<Vec<u8>>,
}

impl std::fmt::Debug for Encoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Encoder")
            .field("bytes_written", &self.writer.bytes_written())
            .field("in_progress_rows", &self.writer.in_progress_rows())
            .finish()
    }
}

impl Encoder {
    pub fn new(schema: SchemaRef) -> Result<Self, CodecError> {
        Ok(Encoder {
            writer: ArrowWriter::try_new(Vec::new(), schema, Some(writer_properties()))?,
        })
    }

    /// Append rows (of the schema given to [`Encoder::new`]).
    pub fn write(&mut self, batch: &RecordBatch) -> Result<(), CodecError> {
        Ok(self.writer.write(batch)?)
    }

    /// Write the footer with `metadata` and return the file.
    pub fn finish(mut self, metadata: &BTreeMap<String, String>) -> Result<Bytes, CodecError> {
        for (key, value) in metadata {
            self.writer
                .append_key_value_metadata(KeyValue::new(key.clone(), value.clone()));
        }
        // `into_inner` flushes the last row group and writes the footer.
        Ok(Bytes::from(self.writer.into_inner()?))
    }
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
    // One batch for the whole file: reading in pieces and concatenating them would hold
    // the rows twice at the end.
    let rows = usize::try_from(builder.metadata().file_metadata().num_rows()).unwrap_or(0);
    let reader = builder.with_batch_size(rows.max(1)).build()?;
    let batches = reader.collect::<Result<Vec<_>, _>>()?;
    let batch = match batches.len() {
        0 => RecordBatch::new_empty(Arc::clone(&schema)),
        1 => batches.into_iter().next().expect("one batch"),
        _ => arrow_select::concat::concat_batches(&schema, &batches)?,
    };
    Ok(Decoded { batch, metadata })
}

/// Decode a parquet file piece by piece, `rows` rows a batch, in file order.
pub fn decode_batches(
    bytes: Bytes,
    rows: usize,
) -> Result<impl Iterator<Item = Result<RecordBatch, CodecError>>, CodecError> {
    let reader = ParquetRecordBatchReaderBuilder::try_new(bytes)?
        .with_batch_size(rows.max(1))
        .build()?;
    Ok(reader.map(|batch| batch.map_err(CodecError::from)))
}

/// Hex sha256 of some bytes (the sidecar's `checksum`).
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}
