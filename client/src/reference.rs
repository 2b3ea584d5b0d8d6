//! Reference data through the client: corporate events and option chains, in lumibot's
//! files under the cache root (local → bucket → miss-handler, as for bars).
//!
//! - Events are covered when their `.meta.json` ranges cover the dates asked (lumibot's
//!   rule); the parquet is downloaded first, then the ranges file, each with lumibot's
//!   `.s3key` marker, so a reader never sees ranges claiming events the parquet lacks.
//! - A chain is covered when its file is there and lumibot would use it (version 5 or
//!   later).

use std::path::PathBuf;

use bytes::Bytes;

use cachefill_core::codec;
use cachefill_core::fill::{FillAnswer, FillStatus, MissRequest};
use cachefill_core::reference::chain;
use cachefill_core::reference::events::{self, Range};
use cachefill_core::reference::{ChainRequest, EventsRequest};
use cachefill_core::settings::CacheMode;
use cachefill_core::storage::{ObjectStore, StorageError};

use crate::client::{CacheClient, LocalFile, Source};
use crate::error::ClientError;
use crate::request::DataRequest;

/// What decides whether a reference object is there: its files and its coverage rule.
enum Wanted<'a> {
    Events(&'a EventsRequest),
    Chain(&'a ChainRequest),
}

impl Wanted<'_> {
    fn relative(&self) -> String {
        match self {
            Wanted::Events(r) => r.set.relative_path(),
            Wanted::Chain(r) => r.set.relative_path(),
        }
    }

    /// The ranges file, for events.
    fn ranges_relative(&self) -> Option<String> {
        match self {
            Wanted::Events(r) => Some(r.set.ranges_path()),
            Wanted::Chain(_) => None,
        }
    }

    fn miss_request(&self) -> MissRequest {
        match self {
            Wanted::Events(r) => MissRequest::Events((*r).clone()),
            Wanted::Chain(r) => MissRequest::Chain((*r).clone()),
        }
    }

    /// Whether these bytes (the ranges file for events, the chain file for a chain) cover
    /// the request; for events, also the windows missing.
    fn covered_by(&self, bytes: &[u8]) -> Result<(), Vec<Range>> {
        match self {
            Wanted::Events(r) => {
                let missing = events::missing_windows(&events::read_ranges(bytes), r.start, r.end);
                if missing.is_empty() {
                    Ok(())
                } else {
                    Err(missing)
                }
            }
            Wanted::Chain(r) => {
                let usable = chain::decode(Bytes::copy_from_slice(bytes))
                    .is_ok_and(|d| chain::check(&d.chain).is_empty());
                if usable {
                    Ok(())
                } else {
                    Err(vec![(r.set.date, r.set.date)])
                }
            }
        }
    }

    /// The file that says whether the request is covered.
    fn deciding_relative(&self) -> String {
        self.ranges_relative().unwrap_or_else(|| self.relative())
    }

    fn not_covered(&self, key: &str, mode: CacheMode, missing: &[Range]) -> ClientError {
        let days: i64 = missing.iter().map(|(a, b)| (*b - *a).num_days() + 1).sum();
        let (first, last) = match self {
            Wanted::Events(r) => (r.start, r.end),
            Wanted::Chain(r) => (r.set.date, r.set.date),
        };
        ClientError::NotCovered {
            key: key.to_string(),
            mode,
            missing: days as usize,
            first: missing.first().map_or(first, |w| w.0),
            last: missing.last().map_or(last, |w| w.1),
        }
    }
}

impl CacheClient {
    /// Whatever the request names, as local files: bars ([`CacheClient::get`]), events or a
    /// chain.
    pub async fn get_any(&self, request: &MissRequest) -> Result<LocalFile, ClientError> {
        match request {
            MissRequest::Bars(r) => self.get(&DataRequest::from(r.clone())).await,
            MissRequest::Events(r) => self.get_events(r).await,
            MissRequest::Chain(r) => self.get_chain(r).await,
            MissRequest::Trades(r) => self.get_trades(r).await,
        }
    }

    /// Corporate events covering the request's dates, as lumibot's files under the cache
    /// root. The answer's `path` is the events parquet (absent when the symbol has none: the
    /// ranges file alone then says so).
    pub async fn get_events(&self, request: &EventsRequest) -> Result<LocalFile, ClientError> {
        self.get_reference(Wanted::Events(request)).await
    }

    /// An underlying's option chain on a date, as lumibot's file under the cache root.
    pub async fn get_chain(&self, request: &ChainRequest) -> Result<LocalFile, ClientError> {
        self.get_reference(Wanted::Chain(request)).await
    }

    async fn get_reference(&self, wanted: Wanted<'_>) -> Result<LocalFile, ClientError> {
        self.count_request();
        let layout = self.layout().clone();
        let relative = wanted.relative();
        let key = layout.key_for_relative(&relative);
        let deciding = wanted.deciding_relative();
        let local = self.local_bytes(&deciding)?;
        if let Some(bytes) = &local
            && wanted.covered_by(bytes).is_ok()
        {
            self.count_local_hit();
            return self.local_reference(&relative, &key, Source::LocalHit);
        }
        let Some(store) = self.store().cloned() else {
            let missing = match &local {
                Some(bytes) => wanted.covered_by(bytes).err().unwrap_or_default(),
                None => wanted.covered_by(b"").err().unwrap_or_default(),
            };
            return Err(wanted.not_covered(&key, self.mode(), &missing));
        };
        let mut turn = self.flights().enter(&key).await;
        if let Some(error) = turn.failed_while_waiting() {
            return Err(ClientError::Invoke {
                key,
                source: error.clone(),
            });
        }
        if let Some(bytes) = self.local_bytes(&deciding)?
            && wanted.covered_by(&bytes).is_ok()
        {
            self.count_local_hit();
            return self.local_reference(&relative, &key, Source::LocalHit);
        }
        let deciding_key = layout.key_for_relative(&deciding);
        let missing = match get(&*store, &deciding_key).await? {
            Some(bytes) => match wanted.covered_by(&bytes) {
                Ok(()) => {
                    self.download(&*store, &wanted).await?;
                    self.count_remote_hit();
                    return self.local_reference(&relative, &key, Source::RemoteHit);
                }
                Err(missing) => missing,
            },
            None => wanted.covered_by(b"").err().unwrap_or_default(),
        };
        let Some(invoker) = self.invoker().cloned() else {
            return Err(match self.mode() {
                CacheMode::ReadOnly => ClientError::NoFillFunction { key },
                mode => wanted.not_covered(&key, mode, &missing),
            });
        };
        let answer: FillAnswer = match self.invoke(&*invoker, &wanted.miss_request()).await {
            Ok(answer) => answer,
            Err(error) => {
                turn.record_failure(&error);
                return Err(ClientError::Invoke { key, source: error });
            }
        };
        self.count_fill(answer.upstream_requests);
        if answer.key != key {
            return Err(ClientError::WrongKey {
                bucket: answer.bucket.clone(),
                expected: key,
                got: answer.key,
            });
        }
        if matches!(wanted, Wanted::Chain(_)) && answer.status == FillStatus::NoData {
            return Err(ClientError::NoData {
                key,
                start: wanted_date(&wanted),
                end: wanted_date(&wanted),
            });
        }
        self.download(&*store, &wanted).await?;
        self.local_reference(&relative, &key, Source::Filled)
    }

    /// Bring the request's files from the bucket: the data first, then (events) the ranges
    /// that claim it.
    async fn download(
        &self,
        store: &dyn ObjectStore,
        wanted: &Wanted<'_>,
    ) -> Result<(), ClientError> {
        let layout = self.layout();
        let mut relatives = vec![wanted.relative()];
        relatives.extend(wanted.ranges_relative());
        for relative in relatives {
            let key = layout.key_for_relative(&relative);
            match get(store, &key).await? {
                Some(bytes) => {
                    let cache = self.local_cache();
                    cache.publish_file(&relative, &bytes, &key)?;
                }
                None => {
                    self.local_cache().remove_file(&relative)?;
                }
            }
        }
        Ok(())
    }

    fn local_bytes(&self, relative: &str) -> Result<Option<Vec<u8>>, ClientError> {
        let path = self.local_cache().path_of(relative);
        match std::fs::read(&path) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(ClientError::local(path, e)),
        }
    }

    /// The local reference file as a [`LocalFile`]: rows are events or expirations.
    fn local_reference(
        &self,
        relative: &str,
        key: &str,
        source: Source,
    ) -> Result<LocalFile, ClientError> {
        let path: PathBuf = self.local_cache().path_of(relative);
        let bytes = self.local_bytes(relative)?.unwrap_or_default();
        let (rows, min, max) = if bytes.is_empty() {
            (0, None, None)
        } else {
            let reference = cachefill_core::reference::Reference::of(relative);
            match reference
                .map(|r| cachefill_core::rules::check_reference(&r, &Bytes::from(bytes.clone())))
            {
                Some((_, Some(facts))) => (
                    facts.rows,
                    facts.min.map(|d| d.to_string()),
                    facts.max.map(|d| d.to_string()),
                ),
                _ => (0, None, None),
            }
        };
        Ok(LocalFile {
            path,
            key: key.to_string(),
            rows,
            min,
            max,
            version_id: None,
            sha256: codec::sha256_hex(&bytes),
            source,
            paths: Vec::new(),
        })
    }
}

fn wanted_date(wanted: &Wanted<'_>) -> chrono::NaiveDate {
    match wanted {
        Wanted::Events(r) => r.start,
        Wanted::Chain(r) => r.set.date,
    }
}

async fn get(store: &dyn ObjectStore, key: &str) -> Result<Option<Bytes>, ClientError> {
    match store.get(key, None).await {
        Ok(got) => Ok(Some(got.bytes)),
        Err(StorageError::NotFound { .. }) => Ok(None),
        Err(e) => Err(ClientError::storage(key, e)),
    }
}
