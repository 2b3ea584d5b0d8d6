//! miss-handler Lambda: builds its clients once, then serves fills.

use cachefill_core::fill::{EngineConfig, FillEngine};
use cachefill_core::keys::KeyLayout;
use cachefill_core::providers::ProviderSet;
use cachefill_core::settings::FunctionSettings;
use cachefill_core::storage::s3::{S3Config, connect};
use lambda_runtime::{Error, LambdaEvent, service_fn};
use serde_json::value::RawValue;

#[tokio::main]
async fn main() -> Result<(), Error> {
    tracing_subscriber::fmt()
        .json()
        .with_current_span(true)
        .with_target(false)
        .without_time()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("AWS_LAMBDA_LOG_LEVEL")
                .or_else(|_| tracing_subscriber::EnvFilter::try_from_default_env())
                .unwrap_or_else(|_| "info".into()),
        )
        .init();

    let settings = FunctionSettings::from_env()?;
    let s3 = S3Config {
        endpoint_url: settings.endpoint_url.clone(),
        ..Default::default()
    };
    let store = connect(settings.bucket.clone(), &s3).await;
    let providers = ProviderSet::standard();
    let mut config = EngineConfig::new(
        settings.bucket.clone(),
        KeyLayout::new(&settings.prefix, &settings.version),
    );
    config.lease_ttl = settings.lease_ttl;
    config.fetch_concurrency = Some(settings.fetch_concurrency);
    let engine = FillEngine::new(store, providers, config);
    tracing::info!(bucket = %settings.bucket, prefix = %settings.prefix, version = %settings.version, "miss-handler ready");

    let engine = &engine;
    lambda_runtime::run(service_fn(
        move |event: LambdaEvent<Box<RawValue>>| async move {
            miss_handler::handle(engine, event).await
        },
    ))
    .await
}
