//! The storage seam's conformance suite on the local directory store, the same test bodies
//! the S3 store passes against moto in the end-to-end crate.

use cachefill_core::storage::local::LocalStore;
use cachefill_testing::conformance;

fn store_in(dir: &tempfile::TempDir) -> LocalStore {
    LocalStore::new(dir.path().join("bucket")).expect("open the store")
}

#[tokio::test]
async fn conformance_on_a_current_thread_runtime() {
    let dir = tempfile::tempdir().expect("temp dir");
    conformance::run_all(&store_in(&dir), "conformance/current-thread").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_on_two_workers_without_a_prefix() {
    let dir = tempfile::tempdir().expect("temp dir");
    conformance::run_all(&store_in(&dir), "").await;
}
