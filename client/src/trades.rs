//! Aggregate trades through the client: one local file per UTC day
//! (`binance/crypto/tick/aggtrades/<SYMBOL>/<YYYY-MM-DD>.parquet`), local → bucket →
//! miss-handler as for bars. A day is there when its file is complete (its footer says so,
//! [`cachefill_core::trades::coverage`]); the days that are not are asked of the
//! miss-handler once per run of consecutive days, never once per day.

use serde::Serialize;

use cachefill_core::fill::{FillAnswer, MissRequest};
use cachefill_core::settings::CacheMode;
use cachefill_core::storage::{ObjectStore, StorageError};
use cachefill_core::trades::coverage::DayFacts;
use cachefill_core::trades::{TradeDay, TradesRequest, file};

use crate::client::{CacheClient, LocalFile, Source};
use crate::error::ClientError;

/// One day's local file of a trades answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LocalDay {
    pub path: std::path::PathBuf,
    pub key: String,
    pub date: chrono::NaiveDate,
    pub rows: u64,
    pub first_id: Option<i64>,
    pub last_id: Option<i64>,
    /// Every trade of the day is in the file.
    pub complete: bool,
    pub source: Source,
}

impl CacheClient {
    /// The trades of the request's range as day files under the cache root. The answer's
    /// `path` is the first day's, `paths` lists every day that has begun.
    pub async fn get_trades(&self, request: &TradesRequest) -> Result<LocalFile, ClientError> {
        self.count_request();
        let now = self.now().timestamp_millis();
        let days = request.days_begun(now);
        let mut sources: Vec<Option<Source>> = days
            .iter()
            .map(|d| self.local_day_complete(d).then_some(Source::LocalHit))
            .collect();
        if sources.iter().all(Option::is_some) {
            self.count_local_hit();
            return self.local_days(request, &days, &sources);
        }
        let key_of = |day: &TradeDay| self.layout().key_for_relative(&day.relative_path());
        let Some(store) = self.store().cloned() else {
            let missing: Vec<&TradeDay> = days
                .iter()
                .zip(&sources)
                .filter(|(_, s)| s.is_none())
                .map(|(d, _)| d)
                .collect();
            return Err(ClientError::NotCovered {
                key: key_of(missing[0]),
                mode: self.mode(),
                missing: missing.len(),
                first: missing[0].date,
                last: missing[missing.len() - 1].date,
            });
        };
        for (day, source) in days.iter().zip(sources.iter_mut()) {
            if source.is_none() && self.remote_day_complete(&*store, day).await? {
                self.download_day(&*store, day).await?;
                *source = Some(Source::RemoteHit);
            }
        }
        let runs = missing_runs(&days, &sources);
        if runs.is_empty() {
            self.count_remote_hit();
            return self.local_days(request, &days, &sources);
        }
        let Some(invoker) = self.invoker().cloned() else {
            let (first, last) = (&days[runs[0].0], &days[runs[runs.len() - 1].1]);
            return Err(match self.mode() {
                CacheMode::ReadOnly => ClientError::NoFillFunction { key: key_of(first) },
                mode => ClientError::NotCovered {
                    key: key_of(first),
                    mode,
                    missing: runs.iter().map(|(a, b)| b - a + 1).sum(),
                    first: first.date,
                    last: last.date,
                },
            });
        };
        for (from, to) in runs {
            let span = TradesRequest::new(
                &request.symbol,
                request.start.max(days[from].start_ms()),
                request.end.min(days[to].end_ms()),
            )
            .map_err(|e| ClientError::InvalidRequest(e.0))?;
            let key = key_of(&days[from]);
            let miss = MissRequest::Trades(span);
            let answer: FillAnswer =
                self.invoke(&*invoker, &miss)
                    .await
                    .map_err(|source| ClientError::Invoke {
                        key: key.clone(),
                        source,
                    })?;
            self.count_fill(answer.upstream_requests);
            for part in &answer.parts {
                let Some(i) = days.iter().position(|d| key_of(d) == part.key) else {
                    return Err(ClientError::WrongKey {
                        bucket: answer.bucket.clone(),
                        expected: key.clone(),
                        got: part.key.clone(),
                    });
                };
                self.download_day(&*store, &days[i]).await?;
                sources[i] = Some(Source::Filled);
            }
        }
        self.local_days(request, &days, &sources)
    }

    fn local_day_facts(&self, day: &TradeDay) -> Option<DayFacts> {
        let path = self.local_cache().path_of(&day.relative_path());
        file::footer_facts(std::fs::File::open(path).ok()?)
    }

    fn local_day_complete(&self, day: &TradeDay) -> bool {
        self.local_day_facts(day).is_some_and(|f| f.complete)
    }

    /// Whether the bucket's file of `day` is complete, from its object metadata (a HEAD).
    async fn remote_day_complete(
        &self,
        store: &dyn ObjectStore,
        day: &TradeDay,
    ) -> Result<bool, ClientError> {
        let key = self.layout().key_for_relative(&day.relative_path());
        match store.head(&key, None).await {
            Ok(meta) => Ok(meta
                .metadata
                .get(cachefill_core::format::COVERAGE_METADATA)
                .and_then(|text| DayFacts::parse(text))
                .is_some_and(|f| f.complete)),
            Err(StorageError::NotFound { .. }) => Ok(false),
            Err(e) => Err(ClientError::storage(&key, e)),
        }
    }

    async fn download_day(
        &self,
        store: &dyn ObjectStore,
        day: &TradeDay,
    ) -> Result<(), ClientError> {
        let relative = day.relative_path();
        let key = self.layout().key_for_relative(&relative);
        match store.get(&key, None).await {
            Ok(got) => {
                self.local_cache()
                    .publish_file(&relative, &got.bytes, &key)?;
                Ok(())
            }
            Err(StorageError::NotFound { .. }) => Ok(()),
            Err(e) => Err(ClientError::storage(&key, e)),
        }
    }

    /// The answer over the local day files.
    fn local_days(
        &self,
        request: &TradesRequest,
        days: &[TradeDay],
        sources: &[Option<Source>],
    ) -> Result<LocalFile, ClientError> {
        let mut parts = Vec::new();
        for (day, source) in days.iter().zip(sources) {
            let Some(facts) = self.local_day_facts(day) else {
                continue;
            };
            let relative = day.relative_path();
            parts.push(LocalDay {
                path: self.local_cache().path_of(&relative),
                key: self.layout().key_for_relative(&relative),
                date: day.date,
                rows: facts.rows,
                first_id: facts.first_id,
                last_id: facts.last_id,
                complete: facts.complete,
                source: source.unwrap_or(Source::LocalHit),
            });
        }
        let first = days
            .first()
            .map(TradeDay::relative_path)
            .unwrap_or_else(|| request.days()[0].relative_path());
        let source = if sources.contains(&Some(Source::Filled)) {
            Source::Filled
        } else if sources.contains(&Some(Source::RemoteHit)) {
            Source::RemoteHit
        } else {
            Source::LocalHit
        };
        let iso = |ms: i64| {
            chrono::DateTime::<chrono::Utc>::from_timestamp_millis(ms)
                .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        };
        Ok(LocalFile {
            path: self.local_cache().path_of(&first),
            key: self.layout().key_for_relative(&first),
            rows: parts.iter().map(|p| p.rows).sum(),
            min: iso(request.start),
            max: iso(request.reach(self.now().timestamp_millis())),
            version_id: None,
            sha256: String::new(),
            source,
            paths: parts,
        })
    }
}

/// Runs of consecutive days without a source, as (first, last) indexes.
fn missing_runs(days: &[TradeDay], sources: &[Option<Source>]) -> Vec<(usize, usize)> {
    let mut runs: Vec<(usize, usize)> = Vec::new();
    for (i, _) in days
        .iter()
        .enumerate()
        .filter(|(i, _)| sources[*i].is_none())
    {
        match runs.last_mut() {
            Some(run) if run.1 + 1 == i => run.1 = i,
            _ => runs.push((i, i)),
        }
    }
    runs
}
