//! `cachefill invalidate`: remove one symbol's datasets from the local cache (never from the
//! bucket), so the next request downloads or fills them again.

use crate::local_cache::LocalCache;
use cachefill_core::dataset::{AssetType, Dataset, normalize_symbol};
use clap::Args;

use super::args::CacheArgs;
use super::clear::Removed;
use super::output::Failure;

#[derive(Debug, Args)]
pub(super) struct InvalidateArgs {
    /// The symbol whose local files go (any provider, asset type, timespan and style unless
    /// narrowed by the flags below).
    #[arg(long)]
    pub symbol: String,
    #[arg(long)]
    pub provider: Option<String>,
    /// stock, option or index.
    #[arg(long)]
    pub asset_type: Option<String>,
    /// As in the file name (minute, day, 1D …; case-insensitive).
    #[arg(long)]
    pub timespan: Option<String>,
    /// ohlc or quote.
    #[arg(long)]
    pub datastyle: Option<String>,
    /// Only list what would be removed.
    #[arg(long)]
    pub dry_run: bool,
    #[command(flatten)]
    pub cache: CacheArgs,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

pub(super) fn run(args: InvalidateArgs) -> Result<(), Failure> {
    let symbol = normalize_symbol(&args.symbol).map_err(|e| Failure::invalid(e.0))?;
    let asset_type = args
        .asset_type
        .as_deref()
        .map(AssetType::parse)
        .transpose()
        .map_err(|e| Failure::invalid(e.0))?;
    let same = |wanted: &Option<String>, actual: &str| {
        wanted
            .as_deref()
            .is_none_or(|w| w.trim().eq_ignore_ascii_case(actual))
    };
    let matches = |d: &Dataset| {
        d.symbol == symbol
            && asset_type.is_none_or(|a| a == d.asset_type)
            && same(&args.provider, d.provider.as_str())
            && same(&args.timespan, d.timespan.as_str())
            && same(&args.datastyle, d.datastyle.as_str())
    };
    let cache = LocalCache::new(args.cache.cache_root()?);
    let removed = cache.invalidate(matches, args.dry_run)?;
    Removed::new(&cache, args.dry_run, removed).print(args.json)
}
