//! The embedded default: one machine, no AWS. The bucket is a local directory,
//! the miss-handler's fill engine runs in this process, and the object-validator runs after
//! every write the functions make, as the S3 event would trigger it.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use cachefill_core::fill::{EngineConfig, FillEngine};
use cachefill_core::keys::KeyLayout;
use cachefill_core::providers::{Provider, ProviderSet};
use cachefill_core::runtime::{self, InitError};
use cachefill_core::settings::{CacheMode, ProviderSettings};
use cachefill_core::storage::ObjectStore;
use cachefill_core::storage::local::LocalStore;
use cachefill_core::validate::ValidatingStore;

use crate::client::{CacheClient, ClientConfig};
use crate::error::ClientError;
use crate::invoke::InProcessInvoker;

/// Where the embedded default keeps its state by default, relative to the working directory.
pub const STATE_DIR: &str = ".cachefill";

/// A local directory bucket and a local cache folder, with the functions in-process.
#[derive(Debug, Clone)]
pub struct Embedded {
    pub bucket_dir: PathBuf,
    pub cache_dir: PathBuf,
    pub layout: KeyLayout,
    store: LocalStore,
    /// What in-process fills fetch from: every provider, by default with default settings.
    providers: Arc<ProviderSet>,
}

/// The store the in-process functions write through: every write is followed by the
/// object-validator, as an S3 event would follow it.
pub fn function_store(store: LocalStore, bucket: &str, layout: &KeyLayout) -> Arc<dyn ObjectStore> {
    Arc::new(ValidatingStore::new(store, bucket, layout.clone()))
}

impl Embedded {
    /// `<state_dir>/bucket` and `<state_dir>/cache`, keys under `v1/`.
    pub fn open(state_dir: &Path) -> Result<Self, ClientError> {
        Self::open_dirs(
            &state_dir.join("bucket"),
            &state_dir.join("cache"),
            KeyLayout::new("", "v1"),
        )
    }

    pub fn open_dirs(
        bucket_dir: &Path,
        cache_dir: &Path,
        layout: KeyLayout,
    ) -> Result<Self, ClientError> {
        let store = LocalStore::new(bucket_dir)
            .map_err(|e| ClientError::local(bucket_dir, std::io::Error::other(e.to_string())))?;
        let providers = runtime::providers(&ProviderSettings::defaults(ProviderSettings::EMBEDDED))
            .expect("the default provider settings always set up");
        Ok(Embedded {
            bucket_dir: bucket_dir.to_path_buf(),
            cache_dir: cache_dir.to_path_buf(),
            layout,
            store,
            providers: Arc::new(providers),
        })
    }

    /// Serve in-process fills from the providers `settings` describe (the command line passes
    /// the environment's `CACHE_PROVIDERS`, `THETADATA_BASE_URL`, …).
    pub fn with_providers(mut self, settings: &ProviderSettings) -> Result<Self, InitError> {
        self.providers = Arc::new(runtime::providers(settings)?);
        Ok(self)
    }

    /// The providers in-process fills fetch from.
    pub fn providers(&self) -> Arc<ProviderSet> {
        self.providers.clone()
    }

    /// The bucket's name in answers: its directory.
    pub fn bucket_name(&self) -> String {
        self.bucket_dir.display().to_string()
    }

    /// The bucket as readers see it.
    pub fn store(&self) -> Arc<dyn ObjectStore> {
        Arc::new(self.store.clone())
    }

    /// The bucket as the in-process functions write it (validated after every write).
    pub fn function_store(&self) -> Arc<dyn ObjectStore> {
        function_store(self.store.clone(), &self.bucket_name(), &self.layout)
    }

    /// The miss-handler's engine over this bucket and `provider`.
    pub fn engine<P: Provider>(&self, provider: P) -> FillEngine<Arc<dyn ObjectStore>, P> {
        FillEngine::new(
            self.function_store(),
            provider,
            EngineConfig::new(self.bucket_name(), self.layout.clone()),
        )
    }

    /// The readonly client's configuration for this state.
    pub fn config(&self) -> ClientConfig {
        let mut config =
            ClientConfig::new(CacheMode::ReadOnly, &self.cache_dir, self.layout.clone());
        config.bucket = Some(self.bucket_name());
        config
    }

    /// A readonly client whose misses are filled in-process from this state's providers.
    pub fn client(&self) -> CacheClient {
        self.client_with(self.providers(), self.config())
    }

    /// A client with its own provider and configuration (tests, benchmarks).
    pub fn client_with<P: Provider + 'static>(
        &self,
        provider: P,
        config: ClientConfig,
    ) -> CacheClient {
        let invoker = InProcessInvoker::new(self.engine(provider));
        CacheClient::new(config, Some(self.store()), Some(Arc::new(invoker)))
            .expect("a remote mode with a store always builds")
    }
}
