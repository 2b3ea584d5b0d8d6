//! Which bucket to work on: the embedded default (a directory under `./.cachefill/`) or an
//! S3 bucket named by flags or by lumibot's `LUMIBOT_CACHE_*` settings.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use cachefill_core::keys::KeyLayout;
use cachefill_core::storage::ObjectStore;
use cachefill_core::storage::StorageError;
use cachefill_core::storage::local::LocalStore;
use cachefill_core::storage::s3::{S3Config, connect};

use crate::embedded::STATE_DIR;

/// The embedded default bucket directory: `./.cachefill/bucket`.
pub fn default_bucket_dir() -> PathBuf {
    Path::new(STATE_DIR).join("bucket")
}

/// A bucket and the key layout used in it.
#[derive(Debug, Clone)]
pub struct Bucket {
    pub store: Arc<dyn ObjectStore>,
    /// Bucket name for answers: the S3 bucket, or the directory of a local one.
    pub name: String,
    pub layout: KeyLayout,
    /// The directory of a local (embedded default) bucket; `None` for S3.
    pub local_dir: Option<PathBuf>,
}

impl Bucket {
    /// A local directory bucket.
    pub fn local(dir: &Path, layout: KeyLayout) -> Result<Self, StorageError> {
        Ok(Bucket {
            store: Arc::new(LocalStore::new(dir)?),
            name: dir.display().to_string(),
            layout,
            local_dir: Some(dir.to_path_buf()),
        })
    }

    /// An S3 bucket (credentials from the standard chain unless `config` names them).
    pub async fn s3(bucket: &str, config: &S3Config, layout: KeyLayout) -> Self {
        Bucket {
            store: Arc::new(connect(bucket, config).await),
            name: bucket.to_string(),
            layout,
            local_dir: None,
        }
    }

    /// The store the miss-handler's logic writes through when it runs in this process: on
    /// a local bucket the object-validator judges every write, as S3 events trigger it on
    /// AWS; on S3 the deployed validator does.
    pub fn function_store(&self) -> Result<Arc<dyn ObjectStore>, StorageError> {
        match &self.local_dir {
            Some(dir) => Ok(crate::embedded::function_store(
                LocalStore::new(dir)?,
                &self.name,
                &self.layout,
            )),
            None => Ok(self.store.clone()),
        }
    }
}
