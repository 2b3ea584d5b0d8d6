//! The sha256 and decoding work of a fill and of an extend on the embedded default: the
//! engine hashes the file it writes once, for its sidecar; the validator and the client get
//! the same version from the local store's memory, with that sha256, and hash nothing more
//! than small objects. An extend decodes none of the rows it copies: the engine reads their
//! coverage and facts from the footer's outline, the validator checks the appended rows.
//! One test in this binary, so no other test's work is counted.

use cachefill_client::DataRequest;
use cachefill_client::embedded::Embedded;
use cachefill_core::codec;
use cachefill_core::dataset::Dataset;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_extend_on_the_embedded_default_hashes_its_file_once_and_decodes_only_new_rows() {
    let dir = tempfile::tempdir().unwrap();
    let embedded = Embedded::open(dir.path()).unwrap();
    let client = embedded.client();
    let dataset = Dataset::from_json(
        r#"{"provider":"synthetic","asset_type":"stock","symbol":"AAPL","timespan":"minute","datastyle":"ohlc"}"#,
    )
    .unwrap();
    let january = DataRequest::parse(dataset.clone(), "2024-01-02", "2024-01-31").unwrap();
    let before = codec::bytes_hashed();
    let first = client.get(&january).await.unwrap();
    let hashed = codec::bytes_hashed() - before;
    let size = std::fs::metadata(&first.path).unwrap().len();
    assert!(
        hashed >= size && hashed < size + size / 4,
        "{hashed} bytes hashed for a fill of {size} bytes"
    );

    // Into February: the file's sessions are all before the new ones, so this appends.
    let before = codec::bytes_hashed();
    let decoded_before = codec::rows_decoded();
    let extended = DataRequest::parse(dataset, "2024-01-02", "2024-02-06").unwrap();
    let file = client.get(&extended).await.unwrap();
    let hashed = codec::bytes_hashed() - before;
    let decoded = codec::rows_decoded() - decoded_before;

    let size = std::fs::metadata(&file.path).unwrap().len();
    assert!(file.rows > first.rows, "{file:?} after {first:?}");
    assert!(
        size >= 1 << 20,
        "a file of {size} bytes is too small to tell"
    );
    // Once the file (the engine's hash for its sidecar), plus sidecars, manifests and audit
    // records of a few KiB. Three times the file before the memo carried its sha256: the
    // validator's and the client's hashes of the version they read.
    assert!(
        hashed >= size && hashed < size + size / 4,
        "{hashed} bytes hashed for an extend to a file of {size} bytes"
    );
    // The validator's check of the appended row groups; before the footer's outline, the
    // engine decoded every row of the file it extends as well.
    let added = file.rows - first.rows;
    assert!(
        decoded <= added,
        "{decoded} rows decoded for an extend of {} rows by {added}",
        first.rows
    );
}
