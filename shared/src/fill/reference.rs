//! Filling reference data (`docs/ARCHITECTURE.md` §15): corporate events and option chains,
//! under the same lease, conditional writes and answer as price bars.
//!
//! - **Events**: the ranges file says which dates were asked; the missing windows are
//!   fetched padded as lumibot pads them, merged into the parquet (written only when there
//!   are events, as lumibot does), then the ranges file records the padded windows, cut at
//!   today (lumibot records them whole, claiming the next 60 days too; a ranges file that
//!   claims less is read the same way and lets a later lookup see a split announced since).
//!   A crash between the two writes leaves the old ranges, so the window is asked again and
//!   merged without duplicates.
//! - **Chains**: built once per underlying and date and never refetched while a file of
//!   version 5 or later is there; strikes are divided by the splits after the date (from the
//!   splits file) as lumibot's builder divides them.
//! - **Day bars** take their splits and dividends from the events files, so a fill asks the
//!   provider for events only where the files do not cover the dates yet.

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Instant;

use bytes::Bytes;
use chrono::{Duration, NaiveDate};

use super::answer::{FillAnswer, FillError, FillStatus};
use super::engine::FillEngine;
use super::lease::{self, Acquire, Lease};
use super::request::MissRequest;
use crate::codec;
use crate::corporate::{self, CorporateActions};
use crate::dataset::{AssetType, Dataset};
use crate::format::{self, JSON_CONTENT_TYPE, PARQUET_CONTENT_TYPE, SHA256_METADATA};
use crate::providers::{Provider, ProviderError};
use crate::pyfmt;
use crate::reference::chain::{self, Chain};
use crate::reference::events::{self, Event, EventSet, EventType, Range};
use crate::reference::{ChainRequest, ChainSet, EventsRequest};
use crate::storage::{ObjectMeta, ObjectStore, PutMode, PutOptions, StorageError};

/// Splits and dividends for a day-bar adjustment, and the upstream requests they cost.
#[derive(Debug, Clone)]
pub(super) struct Actions {
    pub(super) actions: CorporateActions,
    pub(super) requests: u64,
}

/// The events of a set after making its files cover a range.
#[derive(Debug, Clone)]
struct EventsState {
    /// Every event in the file.
    events: Vec<Event>,
    /// The parquet at the key, when there is one.
    parquet: Option<Written>,
    requests: u64,
    fetched: bool,
}

#[derive(Debug, Clone)]
pub(super) struct Written {
    pub(super) etag: String,
    pub(super) version_id: Option<String>,
    pub(super) sha256: String,
}

impl Written {
    pub(super) fn of(meta: &ObjectMeta, bytes: &[u8]) -> Self {
        Written {
            etag: meta.etag.clone(),
            version_id: meta.version_id.clone(),
            sha256: codec::sha256_hex(bytes),
        }
    }
}

fn utc_midnight(date: NaiveDate) -> String {
    let nanos = (date - NaiveDate::from_ymd_opt(1970, 1, 1).expect("epoch")).num_days()
        * 86_400
        * 1_000_000_000;
    pyfmt::pandas_utc_isoformat(nanos)
}

fn unsupported(what: String) -> FillError {
    FillError::Upstream(ProviderError::Unsupported(what))
}

impl<S: ObjectStore, P: Provider> FillEngine<S, P> {
    /// Fill whatever the request names.
    pub async fn fill_any(&self, request: &MissRequest) -> Result<FillAnswer, FillError> {
        match request {
            MissRequest::Bars(r) => self.fill(r).await,
            MissRequest::Events(r) => self.fill_events(r).await,
            MissRequest::Chain(r) => self.fill_chain(r).await,
            MissRequest::Trades(r) => self.fill_trades(r).await,
        }
    }

    /// Make a set's event files cover the request's dates.
    pub async fn fill_events(&self, request: &EventsRequest) -> Result<FillAnswer, FillError> {
        let started = Instant::now();
        let set = &request.set;
        let state = self
            .ensure_events(set, request.start, request.end)
            .await?
            .ok_or_else(|| {
                unsupported(format!(
                    "provider '{}' has no corporate events",
                    set.provider
                ))
            })?;
        let key = self.config().layout.key_for_relative(&set.relative_path());
        let status = match (&state.parquet, state.fetched) {
            (None, _) => FillStatus::NoData,
            (Some(_), true) => FillStatus::Filled,
            (Some(_), false) => FillStatus::Hit,
        };
        let rows = state.events.len() as u64;
        Ok(FillAnswer {
            status,
            bucket: self.config().bucket.clone(),
            key,
            version_id: state.parquet.as_ref().and_then(|p| p.version_id.clone()),
            etag: state.parquet.as_ref().map(|p| p.etag.clone()),
            sha256: state.parquet.as_ref().map(|p| p.sha256.clone()),
            rows,
            real_rows: rows,
            placeholders: 0,
            min: state.events.first().map(|e| utc_midnight(e.date)),
            max: state.events.last().map(|e| utc_midnight(e.date)),
            sessions_fetched: 0,
            upstream_requests: state.requests,
            elapsed_ms: started.elapsed().as_millis() as u64,
            parts: Vec::new(),
        })
    }

    /// The splits and dividends day bars of `dataset` from `from` need as of `as_of`, from
    /// the events files (filled where they do not cover the dates); `None` when lumibot does
    /// not adjust the dataset or its provider has no events.
    pub(super) async fn corporate_actions(
        &self,
        dataset: &Dataset,
        from: NaiveDate,
        as_of: NaiveDate,
    ) -> Result<Option<Actions>, FillError> {
        if !corporate::adjusts(dataset) {
            return Ok(None);
        }
        let set = |event_type| {
            EventSet::new(
                dataset.provider,
                AssetType::Stock,
                &dataset.symbol,
                event_type,
            )
        };
        let (Ok(splits_set), Ok(dividends_set)) =
            (set(EventType::Splits), set(EventType::Dividends))
        else {
            return Ok(None);
        };
        // lumibot asks splits up to today and dividends up to the end of the range.
        let Some(splits) = self.ensure_events(&splits_set, from, as_of).await? else {
            return Ok(None);
        };
        let Some(dividends) = self.ensure_events(&dividends_set, from, as_of).await? else {
            return Ok(None);
        };
        Ok(Some(Actions {
            actions: CorporateActions {
                splits: events::splits_of(&splits.events),
                dividends: events::dividends_of(&dividends.events),
                as_of,
            },
            requests: splits.requests + dividends.requests,
        }))
    }

    /// Make the set's files cover `[start, end]`; `None` when the provider has no events.
    async fn ensure_events(
        &self,
        set: &EventSet,
        start: NaiveDate,
        end: NaiveDate,
    ) -> Result<Option<EventsState>, FillError> {
        if !self.provider().serves_events(set) {
            return Ok(None);
        }
        let layout = &self.config().layout;
        let key = layout.key_for_relative(&set.relative_path());
        let ranges_key = layout.key_for_relative(&set.ranges_path());
        let covered = |ranges: &[Range]| events::covers(ranges, start, end);
        if covered(&self.read_ranges(&ranges_key).await?.0) {
            return Ok(Some(self.events_state(set, &key).await?));
        }
        let lease_key = layout.lease_key_of(&set.relative_path());
        let Some(lease) = self
            .hold(&lease_key, || async {
                Ok(covered(&self.read_ranges(&ranges_key).await?.0))
            })
            .await?
        else {
            return Ok(Some(self.events_state(set, &key).await?));
        };
        let result = self
            .ensure_events_holding(set, &key, &ranges_key, start, end)
            .await;
        self.release(&lease).await;
        result.map(Some)
    }

    async fn ensure_events_holding(
        &self,
        set: &EventSet,
        key: &str,
        ranges_key: &str,
        start: NaiveDate,
        end: NaiveDate,
    ) -> Result<EventsState, FillError> {
        let (ranges, _) = self.read_ranges(ranges_key).await?;
        let missing = events::missing_windows(&ranges, start, end);
        if missing.is_empty() {
            return self.events_state(set, key).await;
        }
        let mut fresh = Vec::new();
        let mut fetched: Vec<Range> = Vec::new();
        let mut requests = 0;
        // What the provider answers for dates after today may still change (a split not yet
        // announced): the window is asked padded as lumibot asks it, but recorded only up to
        // today, so the next day's lookup asks again for the days since.
        let today = crate::calendar::ny_date(self.now());
        for window in missing {
            let (from, to) = events::pad(window);
            let got = self
                .provider()
                .events(set, from, to)
                .await?
                .ok_or_else(|| {
                    unsupported(format!(
                        "provider '{}' has no corporate events",
                        set.provider
                    ))
                })?;
            requests += u64::from(got.requests);
            fresh.extend(got.events);
            if from <= today {
                fetched.push((from, to.min(today)));
            }
        }
        let mut state = self.events_state(set, key).await?;
        if !fresh.is_empty() {
            state = self.write_events(set, key, state, &fresh).await?;
        }
        self.extend_ranges(ranges_key, &fetched).await?;
        state.requests = requests;
        state.fetched = true;
        Ok(state)
    }

    /// Merge `fresh` into the parquet at `key` with a conditional write, merging again when
    /// another writer got there first.
    async fn write_events(
        &self,
        set: &EventSet,
        key: &str,
        mut state: EventsState,
        fresh: &[Event],
    ) -> Result<EventsState, FillError> {
        for _ in 0..self.config().max_write_attempts {
            let merged = events::merge_events(&state.events, fresh);
            let metadata = self.reference_facts(&set.relative_path());
            let bytes = events::encode(set, &merged, &metadata)
                .map_err(FillError::codec("encoding events"))?;
            let mode = match &state.parquet {
                Some(p) => PutMode::IfMatch(p.etag.clone()),
                None => PutMode::IfAbsent,
            };
            match self
                .put_object(key, bytes.clone(), mode, PARQUET_CONTENT_TYPE)
                .await
            {
                Ok(written) => {
                    return Ok(EventsState {
                        events: merged,
                        parquet: Some(written),
                        requests: 0,
                        fetched: true,
                    });
                }
                Err(StorageError::PreconditionFailed { .. }) => {
                    state = self.events_state(set, key).await?;
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(FillError::Contended {
            key: key.to_string(),
            attempts: self.config().max_write_attempts,
        })
    }

    /// Add `fetched` to the ranges file, never dropping a range another writer added.
    async fn extend_ranges(&self, ranges_key: &str, fetched: &[Range]) -> Result<(), FillError> {
        for _ in 0..self.config().max_write_attempts {
            let (mut ranges, etag) = self.read_ranges(ranges_key).await?;
            ranges.extend_from_slice(fetched);
            let json = events::ranges_json(&events::merge_ranges(&ranges));
            let mode = match etag {
                Some(etag) => PutMode::IfMatch(etag),
                None => PutMode::IfAbsent,
            };
            match self
                .put_object(ranges_key, Bytes::from(json), mode, JSON_CONTENT_TYPE)
                .await
            {
                Ok(_) => return Ok(()),
                Err(StorageError::PreconditionFailed { .. }) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(FillError::Contended {
            key: ranges_key.to_string(),
            attempts: self.config().max_write_attempts,
        })
    }

    /// The ranges a ranges file lists (read as lumibot reads them) and its etag.
    async fn read_ranges(&self, key: &str) -> Result<(Vec<Range>, Option<String>), FillError> {
        match self.store().get(key, None).await {
            Ok(got) => Ok((events::read_ranges(&got.bytes), Some(got.meta.etag))),
            Err(StorageError::NotFound { .. }) => Ok((Vec::new(), None)),
            Err(e) => Err(e.into()),
        }
    }

    async fn events_state(&self, set: &EventSet, key: &str) -> Result<EventsState, FillError> {
        let got = match self.store().get(key, None).await {
            Ok(got) => got,
            Err(StorageError::NotFound { .. }) => {
                return Ok(EventsState {
                    events: Vec::new(),
                    parquet: None,
                    requests: 0,
                    fetched: false,
                });
            }
            Err(e) => return Err(e.into()),
        };
        let unreadable = |source| FillError::Unreadable {
            key: key.to_string(),
            source,
        };
        let decoded = codec::decode(got.bytes.clone()).map_err(unreadable)?;
        let events = events::from_batch(set.event_type, &decoded.batch).map_err(unreadable)?;
        Ok(EventsState {
            events,
            parquet: Some(Written::of(&got.meta, &got.bytes)),
            requests: 0,
            fetched: false,
        })
    }

    /// Make the chain file of the request's underlying and date exist.
    pub async fn fill_chain(&self, request: &ChainRequest) -> Result<FillAnswer, FillError> {
        let started = Instant::now();
        let set = &request.set;
        let relative = set.relative_path();
        let key = self.config().layout.key_for_relative(&relative);
        let answer = |status, chain: Option<&(Chain, Written)>, requests| FillAnswer {
            status,
            bucket: self.config().bucket.clone(),
            key: key.clone(),
            version_id: chain.and_then(|c| c.1.version_id.clone()),
            etag: chain.map(|c| c.1.etag.clone()),
            sha256: chain.map(|c| c.1.sha256.clone()),
            rows: chain.map_or(0, |c| c.0.calls.len() as u64),
            real_rows: chain.map_or(0, |c| c.0.calls.len() as u64),
            placeholders: 0,
            min: chain.and_then(|c| c.0.calls.keys().next().map(ToString::to_string)),
            max: chain.and_then(|c| c.0.calls.keys().next_back().map(ToString::to_string)),
            sessions_fetched: 0,
            upstream_requests: requests,
            elapsed_ms: started.elapsed().as_millis() as u64,
            parts: Vec::new(),
        };
        let (current, outdated) = self.read_chain(&key).await?;
        if let Some(current) = &current {
            return Ok(answer(FillStatus::Hit, Some(current), 0));
        }
        let lease_key = self.config().layout.lease_key_of(&relative);
        let Some(lease) = self
            .hold(&lease_key, || async {
                Ok(self.read_chain(&key).await?.0.is_some())
            })
            .await?
        else {
            let current = self.read_chain(&key).await?.0;
            return Ok(answer(FillStatus::Hit, current.as_ref(), 0));
        };
        let result = self.build_chain_holding(set, &key, outdated).await;
        self.release(&lease).await;
        let (written, requests) = result?;
        Ok(match written {
            Some(written) => answer(FillStatus::Filled, Some(&written), requests),
            None => answer(FillStatus::NoData, None, requests),
        })
    }

    async fn build_chain_holding(
        &self,
        set: &ChainSet,
        key: &str,
        outdated: Option<String>,
    ) -> Result<(Option<(Chain, Written)>, u64), FillError> {
        if let (Some(current), _) = self.read_chain(key).await? {
            return Ok((Some(current), 0));
        }
        let Some(fetched) = self.provider().chain(set).await? else {
            return Ok((None, 0));
        };
        let mut requests = u64::from(fetched.requests);
        let mut built = fetched.chain;
        if fetched.strikes_fetched > 0 && set.asset_type == AssetType::Stock {
            requests += self.adjust_chain(set, &mut built).await?;
        }
        let metadata = self.reference_facts(&set.relative_path());
        let bytes = chain::encode(&built, &metadata).map_err(|e| FillError::Codec {
            stage: "encoding the chain",
            source: codec::CodecError::Shape(e.to_string()),
        })?;
        let mode = match outdated {
            Some(etag) => PutMode::IfMatch(etag),
            None => PutMode::IfAbsent,
        };
        match self
            .put_object(key, bytes, mode, PARQUET_CONTENT_TYPE)
            .await
        {
            Ok(written) => Ok((Some((built, written)), requests)),
            // Another writer made the chain meanwhile: a chain is written once.
            Err(StorageError::PreconditionFailed { .. }) => {
                Ok((self.read_chain(key).await?.0, requests))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// lumibot's strike normalization: for splits after the chain's date (up to today), each
    /// strike becomes `strike / factor`, rounded to 5 places, once each. (lumibot's builder
    /// would keep a raw strike closer to the underlying's close on the date, but the close it
    /// asks for, a day range from midnight to midnight, is always empty, so it divides
    /// every strike; cachefill does what it does.) Returns the upstream requests made.
    async fn adjust_chain(&self, set: &ChainSet, built: &mut Chain) -> Result<u64, FillError> {
        let today = crate::calendar::ny_date(self.now());
        let Ok(splits_set) = EventSet::new(
            set.provider,
            AssetType::Stock,
            &set.symbol,
            EventType::Splits,
        ) else {
            return Ok(0);
        };
        let Some(splits) = self.ensure_events(&splits_set, set.date, today).await? else {
            return Ok(0);
        };
        let factor: f64 = splits
            .events
            .iter()
            .filter(|e| e.date > set.date && e.date <= today)
            .map(|e| e.value)
            .product();
        if factor != 1.0 {
            for side in [&mut built.calls, &mut built.puts] {
                for strikes in side.values_mut() {
                    let mut normalized: Vec<f64> = strikes
                        .iter()
                        .map(|s| (s / factor * 100_000.0).round() / 100_000.0)
                        .collect();
                    normalized.sort_by(f64::total_cmp);
                    normalized.dedup();
                    *strikes = normalized;
                }
            }
        }
        Ok(splits.requests)
    }

    /// The chain at `key` when it is one lumibot uses (version 5 or later), and else the etag
    /// of whatever is there (an outdated chain is replaced).
    async fn read_chain(
        &self,
        key: &str,
    ) -> Result<(Option<(Chain, Written)>, Option<String>), FillError> {
        let got = match self.store().get(key, None).await {
            Ok(got) => got,
            Err(StorageError::NotFound { .. }) => return Ok((None, None)),
            Err(e) => return Err(e.into()),
        };
        match chain::decode(got.bytes.clone()) {
            Ok(decoded) if chain::check(&decoded.chain).is_empty() => Ok((
                Some((decoded.chain, Written::of(&got.meta, &got.bytes))),
                None,
            )),
            _ => Ok((None, Some(got.meta.etag))),
        }
    }

    /// Our footer facts on a reference file.
    pub(super) fn reference_facts(&self, relative: &str) -> BTreeMap<String, String> {
        [
            (
                format::FACT_SCHEMA_VERSION,
                format::SCHEMA_VERSION.to_string(),
            ),
            (format::FACT_DATASET, relative.to_string()),
            (
                format::FACT_FILLED_AT,
                self.now()
                    .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            ),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }

    pub(super) async fn put_object(
        &self,
        key: &str,
        bytes: Bytes,
        mode: PutMode,
        content_type: &str,
    ) -> Result<Written, StorageError> {
        let sha256 = codec::sha256_hex(&bytes);
        let options = PutOptions {
            mode,
            metadata: BTreeMap::from([(SHA256_METADATA.to_string(), sha256.clone())]),
            content_type: Some(content_type.into()),
            sha256: Some(sha256.clone()),
        };
        let put = self.store().put(key, bytes, options).await?;
        Ok(Written {
            etag: put.etag,
            version_id: put.version_id,
            sha256,
        })
    }

    /// Take the lease at `lease_key`, or wait (bounded by the lease's expiry) until `done`
    /// says a peer finished the work. `None`: done by a peer.
    pub(super) async fn hold<F, Fut>(
        &self,
        lease_key: &str,
        mut done: F,
    ) -> Result<Option<Lease>, FillError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<bool, FillError>>,
    {
        let config = self.config();
        let ttl = Duration::from_std(config.lease_ttl).unwrap_or(Duration::minutes(16));
        let owner = format!("{}-{:08x}", config.owner, fastrand::u32(..));
        let mut delay = config.poll_initial;
        loop {
            match lease::try_acquire(self.store(), lease_key, &owner, ttl, self.now()).await? {
                Acquire::Acquired(lease) => return Ok(Some(lease)),
                Acquire::Held { owner, expires_at } => {
                    tracing::debug!(lease_key, holder = %owner, %expires_at, "lease held; waiting");
                }
            }
            let jitter = 0.75 + fastrand::f64() * 0.5;
            tokio::time::sleep(delay.mul_f64(jitter)).await;
            delay = delay.mul_f64(1.5).min(config.poll_max);
            if done().await? {
                return Ok(None);
            }
        }
    }

    pub(super) async fn release(&self, lease: &Lease) {
        if let Err(e) = lease::release(self.store(), lease, self.now()).await {
            tracing::warn!(lease = %lease.key, error = %e, "could not release the lease; it will expire");
        }
    }
}
