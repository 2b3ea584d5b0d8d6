//! Waiting for something the stack does asynchronously (a relayed event judged, a lease
//! expired), by polling with a deadline rather than sleeping a fixed time.

use std::fmt::Debug;
use std::future::Future;
use std::time::{Duration, Instant};

use crate::error::{Result, StackError};

/// How long to wait between two looks.
const POLL: Duration = Duration::from_millis(100);

/// What one look found.
#[derive(Debug)]
pub enum Seen<T, S> {
    /// Done: the value waited for.
    Ready(T),
    /// Not yet; what was seen instead (reported when the wait times out).
    NotYet(S),
}

/// Look with `probe` every 100 ms until it is [`Seen::Ready`], failing with
/// [`StackError::Timeout`] (carrying the last observation) after `timeout`. An error of the
/// probe ends the wait.
pub async fn eventually<T, S, E, F, Fut>(what: &str, timeout: Duration, mut probe: F) -> Result<T>
where
    S: Debug,
    E: std::fmt::Display,
    F: FnMut() -> Fut,
    Fut: Future<Output = std::result::Result<Seen<T, S>, E>>,
{
    let started = Instant::now();
    loop {
        match probe().await {
            Ok(Seen::Ready(value)) => return Ok(value),
            Ok(Seen::NotYet(last)) if started.elapsed() >= timeout => {
                return Err(StackError::Timeout {
                    what: what.to_string(),
                    waited: started.elapsed(),
                    last: format!("{last:?}"),
                });
            }
            Ok(Seen::NotYet(_)) => tokio::time::sleep(POLL).await,
            Err(e) => return Err(StackError::service(what, e)),
        }
    }
}
