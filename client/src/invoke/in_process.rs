//! The miss-handler run in this process: the embedded default, where the fill engine writes
//! to the local directory bucket as the Lambda would write to S3.

use async_trait::async_trait;

use cachefill_core::fill::{FillAnswer, FillEngine, MissRequest};
use cachefill_core::providers::Provider;
use cachefill_core::storage::ObjectStore;

use super::{InvokeError, Invoker};

/// Wraps a [`FillEngine`]; its failures become the same typed errors a Lambda would raise.
#[derive(Debug)]
pub struct InProcessInvoker<S, P> {
    engine: FillEngine<S, P>,
}

impl<S, P> InProcessInvoker<S, P> {
    pub fn new(engine: FillEngine<S, P>) -> Self {
        InProcessInvoker { engine }
    }

    pub fn engine(&self) -> &FillEngine<S, P> {
        &self.engine
    }
}

#[async_trait]
impl<S, P> Invoker for InProcessInvoker<S, P>
where
    S: ObjectStore + 'static,
    P: Provider + 'static,
{
    async fn invoke(&self, request: &MissRequest) -> Result<FillAnswer, InvokeError> {
        self.engine
            .fill_any(request)
            .await
            .map_err(|e| InvokeError::Function {
                error_type: e.error_type(),
                message: e.to_string(),
            })
    }
}
