//! Option chains as lumibot 4.6.30's `build_historical_chain` builds them from the
//! terminal's expiration and strike lists:
//!
//! - the root's listed expirations (SPX also merges SPXW's), those on or after the date and
//!   at most 730 days out (180 for index-like roots);
//! - strikes of each, in dollars (`>= 100000` read as thousandths), rounded to 4 places;
//!   with more than 50 expirations every one is listed but only the first and last 14 get
//!   their strikes (the others an empty list); with 50 or fewer, an expiration without
//!   strikes is left out;
//! - at most 250 expirations with strikes, and the scan stops after 10 in a row without any;
//! - CALL and PUT list the same strikes.
//!
//! A strike list the terminal could not give for a transient reason fails the build (it is
//! retried by the caller) instead of being cached as missing, as lumibot would.

use std::collections::BTreeMap;

use chrono::{Duration, NaiveDate};

use super::ThetaDataProvider;
use super::request::{self, is_third_friday};
use crate::dataset::AssetType;
use crate::format::CHAIN_CACHE_VERSION;
use crate::providers::{FetchedChain, ProviderError};
use crate::reference::chain::Chain;

/// Expirations listed for each root; beyond this many, strikes only for the ends.
const PREFETCH_ALL_UP_TO: usize = 50;
const PREFETCH_ENDS: usize = 14;
const MAX_EXPIRATIONS: usize = 250;
const MAX_CONSECUTIVE_MISSES: usize = 10;

/// Roots lumibot treats as index-like (a 180-day horizon instead of 730).
const INDEX_LIKE: [&str; 12] = [
    "SPX", "SPXW", "NDX", "NDXP", "RUT", "RUTW", "VIX", "VIXW", "XSP", "DJX", "OEX", "XEO",
];

/// The horizon lumibot builds a chain over, in days after its date.
pub fn horizon_days(symbol: &str, asset_type: AssetType) -> i64 {
    if asset_type == AssetType::Index || INDEX_LIKE.contains(&symbol) {
        180
    } else {
        730
    }
}

/// lumibot's `_normalize_strike_value`.
pub fn normalize_strike(raw: f64) -> Option<f64> {
    if !raw.is_finite() || raw <= 0.0 {
        return None;
    }
    let dollars = if raw >= 100_000.0 { raw / 1000.0 } else { raw };
    Some((dollars * 10_000.0).round() / 10_000.0)
}

/// The expirations a chain lists and the root each one's strikes are asked under.
pub fn candidates(
    symbol: &str,
    asset_type: AssetType,
    as_of: NaiveDate,
    listed: &BTreeMap<String, Vec<NaiveDate>>,
) -> Vec<(NaiveDate, String)> {
    let last = as_of + Duration::days(horizon_days(symbol, asset_type));
    let mut all: Vec<NaiveDate> = listed.values().flatten().copied().collect();
    all.sort();
    all.dedup();
    let listed_under = |root: &str, day: &NaiveDate| {
        listed
            .get(root)
            .is_some_and(|days| days.binary_search(day).is_ok())
    };
    all.into_iter()
        .filter(|day| *day >= as_of)
        .take_while(|day| *day <= last)
        .map(|day| {
            let root = if symbol == "SPX" {
                if is_third_friday(day) && listed_under("SPX", &day) {
                    "SPX"
                } else if listed_under("SPXW", &day) {
                    "SPXW"
                } else {
                    "SPX"
                }
            } else {
                symbol
            };
            (day, root.to_string())
        })
        .collect()
}

impl ThetaDataProvider {
    /// The chain of `symbol` as of `as_of`; `None` when the terminal lists no expiration in
    /// the horizon (lumibot writes no file then).
    pub(super) async fn build_chain(
        &self,
        symbol: &str,
        asset_type: AssetType,
        as_of: NaiveDate,
    ) -> Result<Option<FetchedChain>, ProviderError> {
        let mut requests = 0;
        let mut roots = vec![symbol.to_string()];
        if symbol == "SPX" {
            roots.push("SPXW".into());
        }
        let mut listed = BTreeMap::new();
        for root in roots {
            let call = request::expirations_call(&root);
            let days = self
                .list_counted(
                    &call,
                    super::normalize::expirations,
                    NaiveDate::cmp,
                    &mut requests,
                )
                .await?;
            listed.insert(root, days);
        }
        let candidates = candidates(symbol, asset_type, as_of, &listed);
        let mut calls: BTreeMap<NaiveDate, Vec<f64>> = BTreeMap::new();
        let to_fetch: Vec<&(NaiveDate, String)> = if candidates.len() > PREFETCH_ALL_UP_TO {
            for (day, _) in &candidates {
                calls.insert(*day, Vec::new());
            }
            let head = candidates.iter().take(PREFETCH_ENDS);
            let tail = candidates.iter().skip(candidates.len() - PREFETCH_ENDS);
            let mut picked: Vec<&(NaiveDate, String)> = Vec::new();
            for item in head.chain(tail) {
                if !picked.contains(&item) {
                    picked.push(item);
                }
            }
            picked
        } else {
            candidates.iter().collect()
        };
        let mut added = 0;
        let mut misses = 0;
        let batch = self.concurrency.max(1);
        let mut strikes_fetched = 0;
        'scan: for group in to_fetch.chunks(batch) {
            let remaining = MAX_EXPIRATIONS - added;
            let group = &group[..group.len().min(remaining)];
            let pending = group.iter().map(|(day, root)| async move {
                let mut requests = 0;
                let call = request::strikes_call(root, *day);
                let strikes = self
                    .list_counted(
                        &call,
                        super::normalize::strikes,
                        f64::total_cmp,
                        &mut requests,
                    )
                    .await;
                (strikes, requests)
            });
            for ((day, _), (strikes, made)) in
                group.iter().zip(futures::future::join_all(pending).await)
            {
                requests += made;
                let mut strikes: Vec<f64> =
                    strikes?.into_iter().filter_map(normalize_strike).collect();
                strikes.sort_by(f64::total_cmp);
                strikes.dedup();
                if strikes.is_empty() {
                    misses += 1;
                    if misses >= MAX_CONSECUTIVE_MISSES {
                        break 'scan;
                    }
                    continue;
                }
                calls.insert(*day, strikes);
                added += 1;
                strikes_fetched += 1;
                misses = 0;
                if added >= MAX_EXPIRATIONS {
                    break 'scan;
                }
            }
        }
        if calls.is_empty() {
            return Ok(None);
        }
        let chain = Chain {
            multiplier: 100,
            exchange: "SMART".into(),
            underlying: symbol.to_string(),
            version: CHAIN_CACHE_VERSION,
            puts: calls.clone(),
            calls,
        };
        Ok(Some(FetchedChain {
            chain,
            strikes_fetched,
            requests,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(t: &str) -> NaiveDate {
        t.parse().unwrap()
    }

    #[test]
    fn candidates_keep_lumibots_horizon_and_spx_roots() {
        let listed = BTreeMap::from([
            (
                "SPX".to_string(),
                vec![d("2024-11-01"), d("2024-11-15"), d("2025-06-20")],
            ),
            ("SPXW".to_string(), vec![d("2024-11-14"), d("2024-11-15")]),
        ]);
        let got = candidates("SPX", AssetType::Index, d("2024-11-14"), &listed);
        assert_eq!(
            got,
            vec![
                (d("2024-11-14"), "SPXW".to_string()),
                (d("2024-11-15"), "SPX".to_string()),
            ],
            "past expirations dropped, 2025-06-20 beyond 180 days"
        );
        let spy = BTreeMap::from([(
            "SPY".to_string(),
            vec![d("2024-11-15"), d("2026-11-20"), d("2026-11-13")],
        )]);
        assert_eq!(
            candidates("SPY", AssetType::Stock, d("2024-11-15"), &spy)
                .iter()
                .map(|c| c.0)
                .collect::<Vec<_>>(),
            vec![d("2024-11-15"), d("2026-11-13")],
            "730 days out at most, ascending"
        );
    }

    #[test]
    fn strikes_normalize_as_lumibot_does() {
        assert_eq!(normalize_strike(4_500_000.0), Some(4500.0));
        assert_eq!(normalize_strike(18_000.0), Some(18_000.0));
        assert_eq!(normalize_strike(412.123_456), Some(412.1235));
        assert_eq!(normalize_strike(0.0), None);
        assert_eq!(normalize_strike(f64::NAN), None);
    }
}
