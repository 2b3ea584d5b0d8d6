//! The composition root: from settings to the running parts. Both Lambda functions, the
//! command line's in-process fill and the embedded default build their store, providers,
//! engine and validator here, from settings read once at start ([`crate::settings`]).
//!
//! Everything that can be wrong with a deployment fails here, before the first request, with
//! a message naming the variable ([`InitError`]); nothing is left to fail later as an answer
//! blamed on a caller.
//!
//! ```
//! # use cachefill_core::runtime;
//! # use cachefill_core::settings::MissHandlerSettings;
//! # use cachefill_core::storage::local::LocalStore;
//! let settings = MissHandlerSettings::from_lookup(|name| match name {
//!     "CACHE_BUCKET" => Some("my-bucket".to_string()),
//!     "CACHE_PROVIDERS" => Some("synthetic".to_string()),
//!     _ => None,
//! })
//! .unwrap();
//! # let dir = tempfile::tempdir().unwrap();
//! let engine = runtime::engine(LocalStore::new(dir.path()).unwrap(), &settings).unwrap();
//! assert_eq!(engine.config().bucket, "my-bucket");
//! ```

use crate::fill::{EngineConfig, FillEngine};
use crate::providers::{ProviderSet, SetupError};
use crate::settings::{
    MissHandlerSettings, ProviderSecretError, ProviderSettings, SettingsError, ValidatorSettings,
};
use crate::storage::ObjectStore;
use crate::validate::{Validator, ValidatorConfig};

/// Why a process could not start. The message names the setting to fix.
#[derive(Debug, thiserror::Error)]
pub enum InitError {
    #[error("invalid configuration: {0}")]
    Settings(#[from] SettingsError),
    #[error("invalid configuration: {0}")]
    Provider(#[from] SetupError),
    /// The provider secret (`CACHE_PROVIDER_SECRET_ID`) could not be read or used.
    #[error("invalid configuration: {0}")]
    ProviderSecret(#[from] ProviderSecretError),
}

/// The providers the settings serve.
pub fn providers(settings: &ProviderSettings) -> Result<ProviderSet, InitError> {
    Ok(ProviderSet::from_settings(settings)?)
}

/// The engine's configuration from the miss-handler's settings.
pub fn engine_config(settings: &MissHandlerSettings) -> EngineConfig {
    let mut config = EngineConfig::new(settings.store.bucket.clone(), settings.store.layout());
    config.lease_ttl = settings.lease_ttl;
    config.fetch_concurrency = Some(settings.providers.fetch_concurrency);
    config
}

/// The miss-handler's fill engine over `store`.
pub fn engine<S: ObjectStore>(
    store: S,
    settings: &MissHandlerSettings,
) -> Result<FillEngine<S, ProviderSet>, InitError> {
    Ok(FillEngine::new(
        store,
        providers(&settings.providers)?,
        engine_config(settings),
    ))
}

/// The object-validator over `store`.
pub fn validator<S: ObjectStore>(store: S, settings: &ValidatorSettings) -> Validator<S> {
    Validator::new(
        store,
        ValidatorConfig::new(settings.store.bucket.clone(), settings.store.layout()),
    )
}

/// The deployed miss-handler: its engine on the S3 bucket the settings name.
#[cfg(feature = "s3")]
pub async fn miss_handler(
    settings: &MissHandlerSettings,
) -> Result<FillEngine<crate::storage::s3::S3Store, ProviderSet>, InitError> {
    let providers = providers(&settings.providers)?;
    let store =
        crate::storage::s3::connect(settings.store.bucket.clone(), &settings.store.s3).await;
    Ok(FillEngine::new(store, providers, engine_config(settings)))
}

/// The deployed object-validator on the S3 bucket the settings name.
#[cfg(feature = "s3")]
pub async fn object_validator(
    settings: &ValidatorSettings,
) -> Validator<crate::storage::s3::S3Store> {
    let store =
        crate::storage::s3::connect(settings.store.bucket.clone(), &settings.store.s3).await;
    validator(store, settings)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataset::Provider as ProviderName;
    use crate::settings::THETADATA_BASE_URL;

    fn settings(pairs: &[(&str, &str)]) -> MissHandlerSettings {
        let pairs: Vec<(String, String)> = [("CACHE_BUCKET", "b")]
            .iter()
            .chain(pairs)
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        MissHandlerSettings::from_lookup(|name| {
            pairs
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        })
        .expect("valid settings")
    }

    #[test]
    fn a_deployment_serves_thetadata_only_unless_told_otherwise() {
        let deployed = providers(&settings(&[]).providers).unwrap();
        assert_eq!(deployed.served(), [ProviderName::ThetaData]);
        let both =
            providers(&settings(&[("CACHE_PROVIDERS", "thetadata,synthetic")]).providers).unwrap();
        assert_eq!(
            both.served(),
            [ProviderName::ThetaData, ProviderName::Synthetic]
        );
    }

    #[test]
    fn an_unusable_provider_setting_fails_at_start_naming_the_variable() {
        let settings = settings(&[(THETADATA_BASE_URL, "https://theta.example")]);
        let error = providers(&settings.providers).unwrap_err();
        assert!(matches!(
            error,
            InitError::Provider(SetupError::ThetaData(
                crate::providers::thetadata::SetupError::Https(_)
            ))
        ));
        assert!(error.to_string().contains(THETADATA_BASE_URL), "{error}");
    }

    #[test]
    fn the_engine_takes_lease_and_concurrency_from_the_settings() {
        let settings = settings(&[
            ("CACHE_LEASE_TTL_SECONDS", "42"),
            ("CACHE_FETCH_CONCURRENCY", "3"),
            ("CACHE_PREFIX", "stage"),
        ]);
        let config = engine_config(&settings);
        assert_eq!(config.lease_ttl.as_secs(), 42);
        assert_eq!(config.fetch_concurrency, Some(3));
        assert_eq!(config.layout.root(), "stage/v1");
    }
}
