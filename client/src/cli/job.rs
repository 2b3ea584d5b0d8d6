//! The project's main job on the embedded default: a 62-session backtest of AAPL daily bars
//! (synthetic provider: generated data, not market data) that asks, at every session, for
//! the last 30 sessions, then once for the whole backtest range.
//!
//! Widening misses to whole months turns the 63 requests into three fills (one per month
//! the backtest runs through); a second run is all local hits.

use std::time::Instant;

use chrono::NaiveDate;
use serde::Serialize;

use cachefill_core::calendar;
use cachefill_core::dataset::Dataset;

use crate::client::{CacheClient, LocalFile, Source};
use crate::error::ClientError;
use crate::request::DataRequest;

pub const SYMBOL: &str = "AAPL";
/// Sessions the backtest steps through.
pub const SESSIONS: usize = 62;
/// Sessions of history asked for at every step (the window ends on the step's session).
pub const WINDOW: usize = 30;

/// The backtest's first session: April, May and June 2024 hold 63 sessions, so the
/// backtest (April 1 to June 27) and its history fit in three widened fills.
pub fn first_session() -> NaiveDate {
    NaiveDate::from_ymd_opt(2024, 4, 1).expect("valid date")
}

pub fn dataset() -> Dataset {
    Dataset::from_json(&format!(
        r#"{{"provider":"synthetic","asset_type":"stock","symbol":"{SYMBOL}","timespan":"day","datastyle":"ohlc"}}"#
    ))
    .expect("the demo dataset is valid")
}

/// The backtest's sessions.
pub fn sessions() -> Vec<NaiveDate> {
    let mut out = vec![first_session()];
    while out.len() < SESSIONS {
        let last = *out.last().expect("not empty");
        out.push(calendar::next_session(last).expect("inside the calendar"));
    }
    out
}

/// Every request of the workload, in order.
pub fn requests() -> Vec<DataRequest> {
    let sessions = sessions();
    let mut window_start = sessions[0];
    for _ in 1..WINDOW {
        window_start = calendar::previous_session(window_start).expect("inside the calendar");
    }
    let history = calendar::sessions_between(window_start, sessions[SESSIONS - 1])
        .expect("inside the calendar");
    let dataset = dataset();
    // Each window of WINDOW consecutive sessions ends on one backtest session.
    let mut out: Vec<DataRequest> = history
        .windows(WINDOW)
        .map(|window| {
            DataRequest::new(dataset.clone(), window[0], window[WINDOW - 1]).expect("valid request")
        })
        .collect();
    out.push(
        DataRequest::new(dataset, sessions[0], sessions[SESSIONS - 1]).expect("valid request"),
    );
    out
}

/// What one run of the workload saw.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Outcome {
    pub requests: u64,
    pub local_hits: u64,
    pub remote_hits: u64,
    pub fills: u64,
}

/// Run the workload's requests one after the other, as a backtest does.
pub async fn run_workload(client: &CacheClient) -> Result<Outcome, ClientError> {
    run_workload_observed(client, |_| {}).await
}

/// [`run_workload`], telling `observe` about every file served.
pub async fn run_workload_observed(
    client: &CacheClient,
    observe: impl Fn(&LocalFile),
) -> Result<Outcome, ClientError> {
    let mut outcome = Outcome::default();
    for request in requests() {
        let file = client.get(&request).await?;
        observe(&file);
        outcome.requests += 1;
        match file.source {
            Source::LocalHit => outcome.local_hits += 1,
            Source::RemoteHit => outcome.remote_hits += 1,
            Source::Filled => outcome.fills += 1,
        }
    }
    Ok(outcome)
}

/// The demo's report (the `--json` output of `cachefill demo`).
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub requests: u64,
    pub local_hits: u64,
    pub remote_hits: u64,
    pub fills: u64,
    pub invocations: u64,
    pub upstream_requests: u64,
    pub elapsed_ms: u64,
    pub dataset: String,
    pub key: String,
    pub first_session: NaiveDate,
    pub last_session: NaiveDate,
    pub window: usize,
}

/// Run the workload on `client` and report it with the client's invocation counts.
pub async fn run(
    client: &CacheClient,
    observe: impl Fn(&LocalFile),
) -> Result<Report, ClientError> {
    let before = client.stats();
    let started = Instant::now();
    let outcome = run_workload_observed(client, observe).await?;
    let elapsed_ms = started.elapsed().as_millis() as u64;
    let after = client.stats();
    let sessions = sessions();
    Ok(Report {
        requests: outcome.requests,
        local_hits: outcome.local_hits,
        remote_hits: outcome.remote_hits,
        fills: outcome.fills,
        invocations: after.invocations - before.invocations,
        upstream_requests: after.upstream_requests - before.upstream_requests,
        elapsed_ms,
        dataset: dataset().to_json(),
        key: client.layout().data_key(&dataset()),
        first_session: sessions[0],
        last_session: sessions[SESSIONS - 1],
        window: WINDOW,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_workload_slides_a_30_session_window_over_62_sessions() {
        let requests = requests();
        assert_eq!(requests.len(), SESSIONS + 1);
        let sessions = sessions();
        assert_eq!(
            sessions.last(),
            Some(&NaiveDate::from_ymd_opt(2024, 6, 27).unwrap())
        );
        for (request, session) in requests.iter().zip(&sessions) {
            assert_eq!(request.end, *session);
            let window = calendar::sessions_between(request.start, request.end).unwrap();
            assert_eq!(window.len(), WINDOW);
        }
        let whole = requests.last().unwrap();
        assert_eq!(
            (whole.start, whole.end),
            (sessions[0], sessions[SESSIONS - 1])
        );
    }
}
