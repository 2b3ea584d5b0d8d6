//! Parquet files and `.meta.json` sidecars exactly as lumibot reads them (`docs/FORMAT.md`).

pub mod conform;
pub mod facts;
pub mod rows;
pub mod schema;
pub mod sidecar;

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow_array::{RecordBatch, RecordBatchReader};
use arrow_schema::SchemaRef;
use bytes::Bytes;
use parquet::arrow::ArrowWriter;
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::{
    ArrowReaderMetadata, ArrowReaderOptions, ParquetRecordBatchReader,
    ParquetRecordBatchReaderBuilder,
};
use parquet::arrow::arrow_writer::{ArrowColumnWriter, ArrowRowGroupWriterFactory, compute_leaves};
use parquet::basic::Compression;
use parquet::column::writer::ColumnCloseResult;
use parquet::file::metadata::{KeyValue, PageIndexPolicy, ParquetMetaData};
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::file::writer::SerializedFileWriter;

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
///
/// [`Encoder::appending`] starts a file with the row groups of an earlier one copied as they
/// are (their column chunks' bytes, statistics and page offsets; nothing decoded or encoded
/// again), so that rows appended after an existing file's last row cost what they add.
pub struct Encoder {
    writer: SerializedFileWriter<Vec<u8>>,
    factory: ArrowRowGroupWriterFactory,
    schema: SchemaRef,
    /// The row group in progress: its column writers and rows so far.
    columns: Option<Vec<ArrowColumnWriter>>,
    in_progress_rows: usize,
    /// Row groups in the file so far, copied and written.
    row_groups: usize,
}

impl std::fmt::Debug for Encoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Encoder")
            .field("bytes_written", &self.writer.bytes_written())
            .field("row_groups", &self.row_groups)
            .field("in_progress_rows", &self.in_progress_rows)
            .finish()
    }
}

impl Encoder {
    pub fn new(schema: SchemaRef) -> Result<Self, CodecError> {
        Encoder::with_capacity(schema, 0)
    }

    /// An encoder whose file has room for `bytes` before it grows.
    fn with_capacity(schema: SchemaRef, bytes: usize) -> Result<Self, CodecError> {
        let file = Vec::with_capacity(bytes);
        let writer = ArrowWriter::try_new(file, Arc::clone(&schema), Some(writer_properties()))?;
        // Nothing is buffered yet: this only takes the writer apart (footer schema included).
        let (writer, factory) = writer.into_serialized_writer()?;
        Ok(Encoder {
            writer,
            factory,
            schema,
            columns: None,
            in_progress_rows: 0,
            row_groups: 0,
        })
    }

    /// A file that starts with every row group of `file` (whose footer is `metadata`, read
    /// with its offset index: [`read_footer`]), copied byte for byte. Fails when `file`'s columns are not
    /// exactly those `schema` encodes.
    pub fn appending(
        schema: SchemaRef,
        file: &Bytes,
        metadata: &ParquetMetaData,
    ) -> Result<Self, CodecError> {
        // Room for the copy and for what an extend usually adds, so that the copy is not
        // moved as the file grows.
        let mut encoder = Encoder::with_capacity(schema, file.len() + file.len() / 8 + (1 << 20))?;
        if metadata.file_metadata().schema_descr() != encoder.writer.schema_descr() {
            return Err(CodecError::Shape(
                "the file's parquet schema is not the one its rows are encoded with".into(),
            ));
        }
        for (index, group) in metadata.row_groups().iter().enumerate() {
            let pages = metadata.page_index_for_row_group(index);
            let mut copy = encoder.writer.next_row_group()?;
            for (column, chunk) in group.columns().iter().enumerate() {
                copy.append_column(
                    file,
                    ColumnCloseResult {
                        bytes_written: u64::try_from(chunk.compressed_size()).unwrap_or(0),
                        rows_written: u64::try_from(group.num_rows()).unwrap_or(0),
                        metadata: chunk.clone(),
                        bloom_filter: None,
                        column_index: None,
                        offset_index: pages.offset_index(column).cloned(),
                    },
                )?;
            }
            copy.close()?;
            encoder.row_groups += 1;
        }
        Ok(encoder)
    }

    /// Append rows (of the schema given to [`Encoder::new`]).
    pub fn write(&mut self, batch: &RecordBatch) -> Result<(), CodecError> {
        let mut offset = 0;
        while offset < batch.num_rows() {
            let room = MAX_ROW_GROUP_ROWS - self.in_progress_rows;
            let take = room.min(batch.num_rows() - offset);
            let part = batch.slice(offset, take);
            if self.columns.is_none() {
                self.columns = Some(self.factory.create_column_writers(self.row_groups)?);
            }
            let columns = self.columns.as_mut().expect("made above");
            let mut writers = columns.iter_mut();
            for (field, array) in self.schema.fields().iter().zip(part.columns()) {
                for leaf in compute_leaves(field, array)? {
                    writers
                        .next()
                        .ok_or_else(|| CodecError::Shape("more columns than the schema".into()))?
                        .write(&leaf)?;
                }
            }
            self.in_progress_rows += take;
            offset += take;
            if self.in_progress_rows == MAX_ROW_GROUP_ROWS {
                self.flush()?;
            }
        }
        Ok(())
    }

    /// Close the row group in progress, if any.
    fn flush(&mut self) -> Result<(), CodecError> {
        let Some(columns) = self.columns.take() else {
            return Ok(());
        };
        let mut group = self.writer.next_row_group()?;
        for column in columns {
            column.close()?.append_to_row_group(&mut group)?;
        }
        group.close()?;
        self.row_groups += 1;
        self.in_progress_rows = 0;
        Ok(())
    }

    /// Write the footer with `metadata` and return the file.
    pub fn finish(mut self, metadata: &BTreeMap<String, String>) -> Result<Bytes, CodecError> {
        self.flush()?;
        for (key, value) in metadata {
            self.writer
                .append_key_value_metadata(KeyValue::new(key.clone(), value.clone()));
        }
        Ok(Bytes::from(self.writer.into_inner()?))
    }
}

/// The key-value metadata of a parquet footer (entries without a value left out).
pub fn footer_metadata(metadata: &ParquetMetaData) -> BTreeMap<String, String> {
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

std::thread_local! {
    /// Set while [`guarded`] runs a read on this thread.
    static GUARDED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Run a read of parquet bytes, turning a panic of the parquet reader into an error.
///
/// The parquet crate panics on some malformed files (a page whose levels run past its
/// buffer, found by the `validator_object` fuzz target) where it should return an error.
/// Bytes the validator judges may come from anyone: such a file is malformed, to be refused
/// and quarantined, and must not take the function down with it. Every read of parquet
/// bytes in this crate goes through here.
pub fn guarded<T, E: From<parquet::errors::ParquetError>>(
    read: impl FnOnce() -> Result<T, E>,
) -> Result<T, E> {
    let outer = GUARDED.with(|g| g.replace(true));
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(read));
    GUARDED.with(|g| g.set(outer));
    result.unwrap_or_else(|panic| {
        let why = panic
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "no message".to_string());
        Err(E::from(parquet::errors::ParquetError::General(format!(
            "malformed file: the parquet reader failed ({why})"
        ))))
    })
}

/// Whether this thread is inside [`guarded`]: a panic hook that aborts on every panic (a
/// fuzzer's) asks this to let a contained one unwind.
pub fn in_guarded_read() -> bool {
    GUARDED.with(std::cell::Cell::get)
}

/// A parquet file's footer (with its offset index, for [`Encoder::appending`]), read once
/// for the decodes of some of its columns and all of them.
pub fn read_footer(file: &Bytes) -> Result<ArrowReaderMetadata, CodecError> {
    let options = ArrowReaderOptions::new()
        .with_column_index_policy(PageIndexPolicy::Skip)
        .with_offset_index_policy(PageIndexPolicy::Optional);
    guarded(|| Ok(ArrowReaderMetadata::load(file, options)?))
}

/// Whether the footer's statistics record no null in the leaf column `name` of any row
/// group (`false` when a row group records none).
pub fn recorded_without_nulls(footer: &ArrowReaderMetadata, name: &str) -> bool {
    let metadata = footer.metadata();
    let Some(index) = metadata
        .file_metadata()
        .schema_descr()
        .columns()
        .iter()
        .position(|c| c.path().string() == name)
    else {
        return false;
    };
    metadata.row_groups().iter().all(|group| {
        group
            .column(index)
            .statistics()
            .and_then(|s| s.null_count_opt())
            == Some(0)
    })
}

/// Decode a whole parquet file into one batch.
pub fn decode(bytes: Bytes) -> Result<Decoded, CodecError> {
    let footer = read_footer(&bytes)?;
    decode_columns(bytes, &footer, None)
}

/// Decode the columns named `only` (those the file has, in file order), or all of them,
/// into one batch.
pub fn decode_columns(
    bytes: Bytes,
    footer: &ArrowReaderMetadata,
    only: Option<&[&str]>,
) -> Result<Decoded, CodecError> {
    let mut builder = ParquetRecordBatchReaderBuilder::new_with_metadata(bytes, footer.clone());
    if let Some(only) = only {
        let roots = footer
            .schema()
            .fields()
            .iter()
            .enumerate()
            .filter(|(_, f)| only.contains(&f.name().as_str()))
            .map(|(i, _)| i);
        let mask = ProjectionMask::roots(builder.parquet_schema(), roots);
        builder = builder.with_projection(mask);
    }
    let metadata = footer_metadata(builder.metadata());
    // One batch for the whole file: reading in pieces and concatenating them would hold
    // the rows twice at the end.
    let rows = usize::try_from(builder.metadata().file_metadata().num_rows()).unwrap_or(0);
    guarded(|| {
        let batch = read_whole(builder.with_batch_size(rows.max(1)).build()?)?;
        Ok(Decoded { batch, metadata })
    })
}

/// Every batch of `reader` as one (counted by [`rows_decoded`]).
fn read_whole(reader: ParquetRecordBatchReader) -> Result<RecordBatch, CodecError> {
    let schema = reader.schema();
    let batches = reader.collect::<Result<Vec<_>, _>>()?;
    let batch = match batches.len() {
        0 => RecordBatch::new_empty(Arc::clone(&schema)),
        1 => batches.into_iter().next().expect("one batch"),
        _ => arrow_select::concat::concat_batches(&schema, &batches)?,
    };
    ROWS_DECODED.fetch_add(
        batch.num_rows() as u64,
        std::sync::atomic::Ordering::Relaxed,
    );
    Ok(batch)
}

/// Some row groups of a parquet file, decoded into one batch.
pub fn decode_row_groups(
    bytes: &Bytes,
    footer: &ArrowReaderMetadata,
    groups: Vec<usize>,
) -> Result<RecordBatch, CodecError> {
    let metadata = footer.metadata();
    let rows: i64 = groups
        .iter()
        .map(|g| metadata.row_group(*g).num_rows())
        .sum();
    guarded(|| {
        read_whole(
            ParquetRecordBatchReaderBuilder::new_with_metadata(bytes.clone(), footer.clone())
                .with_row_groups(groups)
                .with_batch_size(usize::try_from(rows).unwrap_or(0).max(1))
                .build()?,
        )
    })
}

/// Decode a parquet file piece by piece, `rows` rows a batch, in file order.
pub fn decode_batches(
    bytes: Bytes,
    rows: usize,
) -> Result<impl Iterator<Item = Result<RecordBatch, CodecError>>, CodecError> {
    let mut reader = Some(guarded(|| {
        ParquetRecordBatchReaderBuilder::try_new(bytes)?
            .with_batch_size(rows.max(1))
            .build()
    })?);
    Ok(std::iter::from_fn(move || {
        let mut read = reader.take()?;
        // After a failure (or the end) the reader is not put back: the iterator ends there.
        match guarded(|| read.next().transpose()) {
            Ok(Some(batch)) => {
                reader = Some(read);
                Some(Ok(batch))
            }
            Ok(None) => None,
            Err(e) => Some(Err(CodecError::from(e))),
        }
    }))
}

/// Every byte hashed by [`sha256_hex`] since the process started.
static BYTES_HASHED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Hex sha256 of some bytes (the sidecar's `checksum`, the local store's etag).
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    BYTES_HASHED.fetch_add(bytes.len() as u64, std::sync::atomic::Ordering::Relaxed);
    hex::encode(sha2::Sha256::digest(bytes))
}

/// How many bytes this process has hashed through [`sha256_hex`] so far (what the tests of
/// hashing work done once hold down).
pub fn bytes_hashed() -> u64 {
    BYTES_HASHED.load(std::sync::atomic::Ordering::Relaxed)
}

/// Rows decoded by [`decode_columns`] and [`decode_row_groups`] since the process started.
static ROWS_DECODED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// How many rows this process has decoded whole or by row group so far (what the tests of
/// an extend's reading hold down).
pub fn rows_decoded() -> u64 {
    ROWS_DECODED.load(std::sync::atomic::Ordering::Relaxed)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `fuzz/findings/validator_object-parquet-levels-panic`: a chain-shaped parquet whose
    /// page levels run past their buffer; arrow-buffer panics with "offset + len out of
    /// bounds" while the levels are decoded.
    const LEVELS_PAST_THEIR_BUFFER: &[u8] =
        include_bytes!("../../fuzz/findings/validator_object-parquet-levels-panic");

    #[test]
    fn a_file_the_parquet_reader_panics_on_is_an_error() {
        // The finding is a fuzz input: [0xFFFF][the object].
        let bytes = Bytes::from_static(&LEVELS_PAST_THEIR_BUFFER[2..]);
        let read = || {
            ParquetRecordBatchReaderBuilder::try_new(bytes.clone())
                .and_then(|b| b.build())
                .map(|reader| reader.count())
        };
        assert!(
            std::panic::catch_unwind(read).is_err(),
            "the parquet reader no longer panics here"
        );
        let error = guarded(read).unwrap_err();
        assert!(error.to_string().contains("malformed file"), "{error}");
        assert!(!in_guarded_read());
        assert!(decode(bytes.clone()).is_err());
        let batches: Vec<_> = decode_batches(bytes.clone(), 10).unwrap().collect();
        assert!(batches.iter().any(Result::is_err), "{batches:?}");
        assert!(crate::reference::chain::decode(bytes.clone()).is_err());
        // As the validator meets it: an object under a chain's key.
        let chain =
            crate::reference::Reference::of("thetadata/stock/option_chains/SPY_2024-11-15.parquet")
                .unwrap();
        assert!(!crate::rules::check_reference(&chain, &bytes).0.is_empty());
    }
}
