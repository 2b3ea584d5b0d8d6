//! Backtest jobs on the stack: `cachefill-client` in readonly mode, configured by lumibot's
//! `LUMIBOT_CACHE_*` settings as a job exports them.

use std::collections::HashMap;
use std::path::Path;

use cachefill_client::CacheClient;
use cachefill_core::settings::LUMIBOT_CACHE_FOLDER;

use crate::error::{Result, StackError};
use crate::stack::{ACCESS_KEY_ID, Function, REGION, SECRET_ACCESS_KEY, Stack};

impl Stack {
    /// The settings of a readonly job whose misses `function` fills and whose local cache is
    /// `cache_root`: [`Stack::client_env`] plus the folder, region and static credentials.
    pub fn readonly_settings_env(
        &self,
        function: Function,
        cache_root: &Path,
    ) -> HashMap<String, String> {
        let mut env: HashMap<String, String> = self.client_env(function).into_iter().collect();
        for (name, value) in [
            (LUMIBOT_CACHE_FOLDER, cache_root.display().to_string()),
            ("LUMIBOT_CACHE_S3_REGION", REGION.to_string()),
            ("LUMIBOT_CACHE_S3_ACCESS_KEY_ID", ACCESS_KEY_ID.to_string()),
            (
                "LUMIBOT_CACHE_S3_SECRET_ACCESS_KEY",
                SECRET_ACCESS_KEY.to_string(),
            ),
        ] {
            env.insert(name.to_string(), value);
        }
        env
    }

    /// A readonly [`CacheClient`] on this stack, with its own local cache at `cache_root`,
    /// configured from [`Stack::readonly_settings_env`] instead of the process environment,
    /// which tests running side by side cannot each set.
    pub async fn readonly_client(
        &self,
        function: Function,
        cache_root: &Path,
    ) -> Result<CacheClient> {
        let env = self.readonly_settings_env(function, cache_root);
        CacheClient::from_lookup(|name| env.get(name).cloned())
            .await
            .map_err(|e| StackError::service("readonly client", e))
    }

    /// `jobs` readonly clients ([`Stack::readonly_client`]), each with its own local cache
    /// in a temporary folder (returned with them, to live as long as they do).
    pub async fn readonly_clients(
        &self,
        function: Function,
        jobs: usize,
    ) -> Result<(Vec<tempfile::TempDir>, Vec<CacheClient>)> {
        let caches: Vec<tempfile::TempDir> = (0..jobs)
            .map(|_| tempfile::tempdir())
            .collect::<std::io::Result<_>>()
            .map_err(|e| StackError::io("creating the jobs' local caches", e))?;
        let mut clients = Vec::with_capacity(jobs);
        for cache in &caches {
            clients.push(self.readonly_client(function, cache.path()).await?);
        }
        Ok((caches, clients))
    }
}
