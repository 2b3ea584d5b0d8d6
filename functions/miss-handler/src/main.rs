//! miss-handler Lambda: reads its provider secret and settings and builds its clients once
//! (`miss_handler::init`), then serves fills. A setting or secret that cannot be used stops
//! the function here, at init, naming the variable or the secret.

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

    let engine = match miss_handler::init().await {
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
