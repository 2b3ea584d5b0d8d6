//! Filling aggregate-trade days (`docs/BINANCE.md`): each day of the request that has begun
//! is made as complete as the upstream allows, asking only for what its file lacks
//! ([`coverage::needs`]), and written with a conditional put that merges again, without a
//! second fetch, when another writer got there first. Days are filled in order, so one day
//! is held in memory at a time and a day's end (the next day's first id) becomes the next
//! day's start without another request.

use std::collections::BTreeMap;
use std::time::Instant;

use bytes::Bytes;

use super::answer::{FillAnswer, FillError, FillStatus, PartAnswer};
use super::engine::FillEngine;
use super::reference::Written;
use crate::format::{COVERAGE_METADATA, PARQUET_CONTENT_TYPE, SHA256_METADATA};
use crate::providers::Provider;
use crate::storage::{ObjectStore, PutMode, PutOptions, StorageError};
use crate::trades::coverage::{self, DayCoverage, DayFacts};
use crate::trades::{AggTrade, TRADES_FOLDER, TradeDay, TradesRequest, file};

/// A day's file as the store holds it.
#[derive(Debug, Clone)]
struct DayFile {
    trades: Vec<AggTrade>,
    coverage: DayCoverage,
    written: Written,
}

/// A day after the fill looked at it.
#[derive(Debug, Clone)]
struct DayOutcome {
    key: String,
    facts: DayFacts,
    written: Option<Written>,
}

impl<S: ObjectStore, P: Provider> FillEngine<S, P> {
    /// Make the files of every day the request touches that has begun hold its trades.
    pub async fn fill_trades(&self, request: &TradesRequest) -> Result<FillAnswer, FillError> {
        let started = Instant::now();
        let now = self.now().timestamp_millis();
        let days = request.days_begun(now);
        let mut outcomes = Vec::with_capacity(days.len());
        let mut requests = 0u64;
        let mut fetched_any = false;
        let mut missing = Vec::new();
        for day in &days {
            match self.complete_day(day).await? {
                Some(done) => outcomes.push(Some(done)),
                None => {
                    outcomes.push(None);
                    missing.push(day.clone());
                }
            }
        }
        if !missing.is_empty() {
            // One fill of a symbol at a time per bucket: a peer filling the same days
            // makes this one wait and then find them done instead of fetching them twice.
            let lease_key = self
                .config()
                .layout
                .lease_key_of(&format!("{TRADES_FOLDER}/{}", request.symbol));
            let lease = self
                .hold(&lease_key, || async {
                    for day in &missing {
                        if self.complete_day(day).await?.is_none() {
                            return Ok(false);
                        }
                    }
                    Ok(true)
                })
                .await?;
            if let Some(lease) = lease {
                let result = self.fill_days(&days, &mut outcomes, &mut requests).await;
                self.release(&lease).await;
                fetched_any = result?;
            }
            for (day, outcome) in days.iter().zip(outcomes.iter_mut()) {
                if outcome.is_none() {
                    *outcome = Some(self.outcome_of(day).await?);
                }
            }
        }
        let parts: Vec<PartAnswer> = outcomes
            .into_iter()
            .flatten()
            .filter(|o| o.written.is_some())
            .map(|o| PartAnswer {
                key: o.key,
                version_id: o.written.as_ref().and_then(|w| w.version_id.clone()),
                etag: o.written.as_ref().map(|w| w.etag.clone()),
                sha256: o.written.as_ref().map(|w| w.sha256.clone()),
                rows: o.facts.rows,
                first_id: o.facts.first_id,
                last_id: o.facts.last_id,
                complete: o.facts.complete,
            })
            .collect();
        let rows: u64 = parts.iter().map(|p| p.rows).sum();
        let status = if rows == 0 {
            FillStatus::NoData
        } else if fetched_any {
            FillStatus::Filled
        } else {
            FillStatus::Hit
        };
        let first = parts.first();
        let iso = |ms: i64| {
            chrono::DateTime::<chrono::Utc>::from_timestamp_millis(ms)
                .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        };
        Ok(FillAnswer {
            status,
            bucket: self.config().bucket.clone(),
            key: first.map_or_else(
                || {
                    self.config()
                        .layout
                        .key_for_relative(&days.first().map_or_else(
                            || request.days()[0].relative_path(),
                            TradeDay::relative_path,
                        ))
                },
                |p| p.key.clone(),
            ),
            version_id: first.and_then(|p| p.version_id.clone()),
            etag: first.and_then(|p| p.etag.clone()),
            sha256: first.and_then(|p| p.sha256.clone()),
            rows,
            real_rows: rows,
            placeholders: 0,
            min: iso(request.start),
            max: iso(request.reach(now)),
            sessions_fetched: 0,
            upstream_requests: requests,
            elapsed_ms: started.elapsed().as_millis() as u64,
            parts,
        })
    }

    /// The outcome of a day whose object metadata says it is complete (a HEAD, no body).
    async fn complete_day(&self, day: &TradeDay) -> Result<Option<DayOutcome>, FillError> {
        let key = self.config().layout.key_for_relative(&day.relative_path());
        let meta = match self.store().head(&key, None).await {
            Ok(meta) => meta,
            Err(StorageError::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let facts = meta
            .metadata
            .get(COVERAGE_METADATA)
            .and_then(|text| DayFacts::parse(text));
        Ok(match (facts, meta.metadata.get(SHA256_METADATA)) {
            (Some(facts), Some(sha256)) if facts.complete => Some(DayOutcome {
                key,
                facts,
                written: Some(Written {
                    etag: meta.etag,
                    version_id: meta.version_id,
                    sha256: sha256.clone(),
                }),
            }),
            _ => None,
        })
    }

    /// The `start_id` a day's file records in its object metadata (a HEAD), if any.
    async fn known_start(&self, day: &TradeDay) -> Result<Option<i64>, FillError> {
        let key = self.config().layout.key_for_relative(&day.relative_path());
        match self.store().head(&key, None).await {
            Ok(meta) => Ok(meta
                .metadata
                .get(COVERAGE_METADATA)
                .and_then(|text| DayFacts::parse(text))
                .and_then(|f| f.coverage.start_id)),
            Err(StorageError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// What a day's file holds now (after a fill, or a peer's).
    async fn outcome_of(&self, day: &TradeDay) -> Result<DayOutcome, FillError> {
        let key = self.config().layout.key_for_relative(&day.relative_path());
        Ok(match self.read_day(&key).await? {
            Some(held) => DayOutcome {
                key,
                facts: DayFacts::of(held.coverage, &held.trades),
                written: Some(held.written),
            },
            None => DayOutcome {
                key,
                facts: DayFacts::default(),
                written: None,
            },
        })
    }

    /// Fill the days still missing, in order; whether anything was fetched.
    async fn fill_days(
        &self,
        days: &[TradeDay],
        outcomes: &mut [Option<DayOutcome>],
        requests: &mut u64,
    ) -> Result<bool, FillError> {
        let mut fetched_any = false;
        // The next day's first id, once a day's end has been found.
        let mut carried: Option<i64> = None;
        for (day, outcome) in days.iter().zip(outcomes.iter_mut()) {
            if let Some(done) = outcome {
                carried = done.facts.coverage.end_id;
                continue;
            }
            let key = self.config().layout.key_for_relative(&day.relative_path());
            let held = self.read_day(&key).await?;
            let mut known = held.as_ref().map(|h| h.coverage).unwrap_or_default();
            known.start_id = known.start_id.or(carried);
            if known.end_id.is_none() {
                // The next day's first id, when its file knows it, is where this day ends.
                known.end_id = self.known_start(&day.next()).await?;
            }
            let spans = coverage::join(coverage::needs(
                day,
                match &held {
                    Some(h) => Some((&known, h.trades.as_slice())),
                    None if known != DayCoverage::default() => Some((&known, &[])),
                    None => None,
                },
            ));
            let mut fresh: Vec<AggTrade> = Vec::new();
            for span in &spans {
                let got = self.provider().agg_trades(&day.symbol, *span).await?;
                *requests += u64::from(got.requests);
                fetched_any = true;
                let day_trades = file::within(&got.trades, day.start_ms(), day.end_ms());
                if known.start_id.is_none() {
                    known.start_id =
                        coverage::boundary_id(span, &got.trades, got.next_id, day.start_ms());
                }
                if known.end_id.is_none() {
                    known.end_id =
                        coverage::boundary_id(span, &got.trades, got.next_id, day.end_ms());
                }
                fresh = coverage::merge(&fresh, day_trades);
            }
            let written = self.write_day(day, &key, held, known, &fresh).await?;
            carried = written.facts.coverage.end_id;
            *outcome = Some(written);
        }
        Ok(fetched_any)
    }

    /// Merge `fresh` into the day's file with a conditional put, merging again into whatever
    /// a peer wrote meanwhile.
    async fn write_day(
        &self,
        day: &TradeDay,
        key: &str,
        mut held: Option<DayFile>,
        learnt: DayCoverage,
        fresh: &[AggTrade],
    ) -> Result<DayOutcome, FillError> {
        let extra = self.reference_facts(&day.relative_path());
        for _ in 0..self.config().max_write_attempts {
            let (base, mut known, mode) = match &held {
                Some(h) => (
                    h.trades.as_slice(),
                    h.coverage,
                    PutMode::IfMatch(h.written.etag.clone()),
                ),
                None => (&[][..], DayCoverage::default(), PutMode::IfAbsent),
            };
            known.start_id = known.start_id.or(learnt.start_id);
            known.end_id = known.end_id.or(learnt.end_id);
            let merged = coverage::merge(base, fresh);
            // Nothing new (a peer wrote it all meanwhile): leave the file as it is.
            if let Some(h) = &held
                && merged.len() == base.len()
                && h.coverage == known
            {
                return Ok(DayOutcome {
                    key: key.to_string(),
                    facts: DayFacts::of(h.coverage, &h.trades),
                    written: Some(h.written.clone()),
                });
            }
            let (bytes, facts) = file::encode(&merged, known, &extra)
                .map_err(FillError::codec("encoding trades"))?;
            match self.put_day(key, bytes, mode, &facts).await {
                Ok(written) => {
                    return Ok(DayOutcome {
                        key: key.to_string(),
                        facts,
                        written: Some(written),
                    });
                }
                Err(StorageError::PreconditionFailed { .. }) => {
                    held = self.read_day(key).await?;
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(FillError::Contended {
            key: key.to_string(),
            attempts: self.config().max_write_attempts,
        })
    }

    async fn put_day(
        &self,
        key: &str,
        bytes: Bytes,
        mode: PutMode,
        facts: &DayFacts,
    ) -> Result<Written, StorageError> {
        let sha256 = crate::codec::sha256_hex(&bytes);
        let options = PutOptions {
            mode,
            metadata: BTreeMap::from([
                (SHA256_METADATA.to_string(), sha256.clone()),
                (COVERAGE_METADATA.to_string(), facts.to_json()),
            ]),
            content_type: Some(PARQUET_CONTENT_TYPE.into()),
            sha256: Some(sha256.clone()),
        };
        let put = self.store().put(key, bytes, options).await?;
        Ok(Written {
            etag: put.etag,
            version_id: put.version_id,
            sha256,
        })
    }

    /// The day's file, decoded; `None` when there is none. A file that does not decode is
    /// read as an empty one, so the fill fetches the whole day and replaces it (conditionally
    /// on its etag); the validator has put the bad version aside already.
    async fn read_day(&self, key: &str) -> Result<Option<DayFile>, FillError> {
        let got = match self.store().get(key, None).await {
            Ok(got) => got,
            Err(StorageError::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let written = Written::of(&got.meta, &got.bytes);
        Ok(Some(match file::decode(got.bytes) {
            Ok(decoded) => DayFile {
                written,
                trades: decoded.trades,
                coverage: decoded.coverage,
            },
            Err(e) => {
                tracing::warn!(key, error = %e, "unreadable trade day; filling it again");
                DayFile {
                    written,
                    trades: Vec::new(),
                    coverage: DayCoverage::default(),
                }
            }
        }))
    }
}
