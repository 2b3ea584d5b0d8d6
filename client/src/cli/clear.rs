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
    #[arg(long)]
    pub max_age_days: u32,
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
        Removed {
            cache_dir: cache.root().display().to_string(),
            dry_run,
            bytes: found.iter().map(|f| f.size).sum(),
            removed: found
                .into_iter()
                .map(|f| RemovedFile {
                    relative_path: f.relative_path,
                    size: f.size,
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
    let max_age = Duration::from_secs(u64::from(args.max_age_days) * 86_400);
    let removed = cache.clear_older_than(max_age, args.dry_run)?;
    Removed::new(&cache, args.dry_run, removed).print(args.json)
}
