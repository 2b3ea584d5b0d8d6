//! `S3Store` without a server: what it answers when the endpoint cannot be reached. The
//! checks that need an S3 API server run against moto in the end-to-end crate
//! (`tests/tests/storage.rs`).
#![cfg(feature = "s3")]

use std::time::Duration;

use cachefill_core::settings::Secret;
use cachefill_core::storage::s3::{S3Config, connect};
use cachefill_core::storage::{ObjectStore, StorageError};

fn test_config(endpoint: &str) -> S3Config {
    S3Config {
        region: Some("us-east-1".into()),
        endpoint_url: Some(endpoint.into()),
        access_key_id: Some("test".into()),
        secret_access_key: Some(Secret::new("test")),
        session_token: None,
    }
}

#[tokio::test]
async fn an_unreachable_endpoint_is_unavailable() {
    // Port 9 (discard) is closed on any test machine, so this needs no server.
    let store = connect("bucket", &test_config("http://127.0.0.1:9")).await;
    let started = std::time::Instant::now();
    let err = store.get("k", None).await.unwrap_err();
    assert!(
        matches!(err, StorageError::Unavailable { .. }),
        "connection refused must be retryable: {err:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(60));
}
