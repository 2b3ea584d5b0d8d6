//! `cachefill clear`: remove local dataset files not modified for a number of days.

use std::time::Duration;

use crate::local_cache::{Found, LocalCache};
use clap::Args;
use serde::Serialize;

use super::args::CacheArgs;
use super::output::{Failure, print_json};

#[derive(Debug, Args)]
pub(super) struct ClearArgs {
    /// Remove files not modified for this many days (0: every dataset file).
    #[arg(
        long,
        required_unless_present = "keep_days",
        conflicts_with = "keep_days"
    )]
    pub max_age_days: Option<u32>,
    /// Keep the trade-day files (aggregate trades) of the last N UTC days, today included,
    /// and remove older ones.
    #[arg(long, value_name = "N")]
    pub keep_days: Option<u32>,
    /// Only list what would be removed.
    #[arg(long)]
    pub dry_run: bool,
    #[command(flatten)]
    pub cache: CacheArgs,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

#[derive(Serialize)]
pub(super) struct Removed {
    pub cache_dir: String,
    pub dry_run: bool,
    pub removed: Vec<RemovedFile>,
    pub bytes: u64,
}

#[derive(Serialize)]
pub(super) struct RemovedFile {
    pub relative_path: String,
    pub size: u64,
}

impl Removed {
    pub(super) fn new(cache: &LocalCache, dry_run: bool, found: Vec<Found>) -> Self {
        Self::of_files(
            cache,
            dry_run,
            found
                .into_iter()
                .map(|f| (f.relative_path, f.size))
                .collect(),
        )
    }

    fn of_files(cache: &LocalCache, dry_run: bool, files: Vec<(String, u64)>) -> Self {
        Removed {
            cache_dir: cache.root().display().to_string(),
            dry_run,
            bytes: files.iter().map(|f| f.1).sum(),
            removed: files
                .into_iter()
                .map(|(relative_path, size)| RemovedFile {
                    relative_path,
                    size,
                })
                .collect(),
        }
    }

    pub(super) fn print(&self, json: bool) -> Result<(), Failure> {
        if json {
            return print_json(self);
        }
        let verb = if self.dry_run {
            "would remove"
        } else {
            "removed"
        };
        for file in &self.removed {
            println!("{verb} {}", file.relative_path);
        }
        println!(
            "{verb} {} dataset(s), {} bytes, from {}",
            self.removed.len(),
            self.bytes,
            self.cache_dir
        );
        Ok(())
    }
}

pub(super) fn run(args: ClearArgs) -> Result<(), Failure> {
    let cache = LocalCache::new(args.cache.cache_root()?);
    if let Some(keep) = args.keep_days {
        if keep == 0 {
            return Err(Failure::invalid(
                "--keep-days must be at least 1 (today's file is kept)",
            ));
        }
        let today = chrono::Utc::now().date_naive();
        let cutoff = today - chrono::Days::new(u64::from(keep - 1));
        let removed = cache.clear_trade_days_before(cutoff, args.dry_run)?;
        return Removed::of_files(&cache, args.dry_run, removed).print(args.json);
    }
    let max_age = Duration::from_secs(u64::from(args.max_age_days.unwrap_or(0)) * 86_400);
    let removed = cache.clear_older_than(max_age, args.dry_run)?;
    Removed::new(&cache, args.dry_run, removed).print(args.json)
}
