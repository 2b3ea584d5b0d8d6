//! The storage seam's conformance suite against moto through `S3Store`, exactly as the local
//! store runs it: conditional writes, versions, tags, metadata, copies, listings.

use cachefill_core::storage::conformance;
use cachefill_core::storage::local::LocalStore;
use cachefill_e2e::{Stack, StackConfig};

#[tokio::test]
async fn s3_store_on_moto_passes_the_conformance_suite_like_the_local_store() -> anyhow::Result<()>
{
    let config = StackConfig {
        notifications: false,
        ..StackConfig::default()
    };
    let Some(stack) = Stack::start_or_skip("storage conformance on moto", config).await? else {
        return Ok(());
    };
    let dir = tempfile::tempdir()?;
    let local = LocalStore::new(dir.path())?;
    conformance::run_all(&local, "conformance").await;
    conformance::run_all(&stack.store(), "conformance").await;
    Ok(())
}
