//! miss-handler Lambda: reads its settings and builds its clients once, then serves fills.
//! A setting that cannot be used stops the function here, at init, naming the variable.

use cachefill_core::runtime;
use cachefill_core::settings::MissHandlerSettings;
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

    let engine = match init().await {
        Ok(engine) => engine,
        Err(e) => {
            tracing::error!(error = %e, "miss-handler cannot start");
            return Err(e.into());
        }
    };
    let engine = &engine;
    lambda_runtime::run(service_fn(
        move |event: LambdaEvent<Box<RawValue>>| async move {
            miss_handler::handle(engine, event).await
        },
    ))
    .await
}

async fn init() -> Result<miss_handler::Engine, runtime::InitError> {
    let settings = MissHandlerSettings::from_env()?;
    let engine = runtime::miss_handler(&settings).await?;
    tracing::info!(
        bucket = %settings.store.bucket,
        root = %settings.store.layout().root(),
        providers = ?settings.providers.served,
        "miss-handler ready"
    );
    Ok(engine)
}
