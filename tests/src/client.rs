//! Backtest jobs on the stack: `cachefill-client` in readonly mode, configured by lumibot's
//! `LUMIBOT_CACHE_*` settings as a job exports them.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use cachefill_client::{CacheClient, ClientConfig, LambdaInvoker, LambdaOptions};
use cachefill_core::keys::KeyLayout;
use cachefill_core::settings::{ClientSettings, LUMIBOT_CACHE_FOLDER};
use cachefill_core::storage::ObjectStore;
use cachefill_core::storage::s3::{S3Config, connect};

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

    /// A readonly [`CacheClient`] on this stack, with its own local cache at `cache_root`.
    ///
    /// Built as `CacheClient::from_settings` builds it, except that the settings (the Lambda
    /// endpoint included) come from [`Stack::readonly_settings_env`] instead of the process
    /// environment, which tests running side by side cannot each set.
    pub async fn readonly_client(
        &self,
        function: Function,
        cache_root: &Path,
    ) -> Result<CacheClient> {
        let env = self.readonly_settings_env(function, cache_root);
        let lookup = |name: &str| env.get(name).cloned();
        let settings = ClientSettings::from_lookup(lookup)
            .map_err(|e| StackError::service("client settings", e))?;
        let remote = settings
            .remote
            .as_ref()
            .ok_or_else(|| StackError::service("client settings", "the remote cache is off"))?;
        let s3 = S3Config {
            region: remote.region.clone(),
            endpoint_url: settings.endpoint_url.clone(),
            access_key_id: remote.access_key_id.clone(),
            secret_access_key: remote.secret_access_key.clone(),
            session_token: remote.session_token.clone(),
        };
        let store: Arc<dyn ObjectStore> = Arc::new(connect(remote.bucket.clone(), &s3).await);
        let function_name = settings
            .fill_function
            .clone()
            .unwrap_or_else(|| function.name().to_string());
        let invoker = LambdaInvoker::connect(LambdaOptions::from_settings_and_lookup(
            &settings,
            function_name,
            lookup,
        ))
        .await;
        let mut config = ClientConfig::new(
            remote.mode,
            settings.cache_folder.clone(),
            KeyLayout::new(&remote.prefix, &remote.version),
        );
        config.bucket = Some(remote.bucket.clone());
        CacheClient::new(config, Some(store), Some(Arc::new(invoker)))
            .map_err(|e| StackError::service("readonly client", e))
    }
}
