//! `cachefill ls`: the datasets in the bucket, with their facts, validated version and
//! whether the local cache holds them.

use std::path::PathBuf;

use super::inventory::{self, LocalCopy};
use crate::local_cache::LocalCache;
use clap::Args;

use super::args::{BucketArgs, CacheArgs};
use super::output::{Failure, print_json};

#[derive(Debug, Args)]
pub(super) struct LsArgs {
    /// Only datasets whose path under the cache root starts with this
    /// (e.g. `synthetic/stock/day`); a leading `<prefix>/<version>/` is accepted too.
    #[arg(long, default_value = "")]
    pub prefix: String,
    /// S3 bucket (default: LUMIBOT_CACHE_S3_BUCKET when LUMIBOT_CACHE_BACKEND=s3).
    #[arg(long, conflicts_with = "bucket_dir")]
    pub bucket: Option<String>,
    /// Local directory bucket of the embedded default.
    #[arg(long, value_name = "DIR")]
    pub bucket_dir: Option<PathBuf>,
    /// Key prefix of the cache in the bucket (default: LUMIBOT_CACHE_S3_PREFIX, else none).
    #[arg(long)]
    pub key_prefix: Option<String>,
    /// Cache version segment (default: LUMIBOT_CACHE_S3_VERSION, else v1).
    #[arg(long)]
    pub version: Option<String>,
    /// Local cache folder to compare with (see `cachefill get --help`).
    #[arg(long, value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

pub(super) async fn run(args: LsArgs) -> Result<(), Failure> {
    let cache = CacheArgs {
        bucket: BucketArgs {
            bucket: args.bucket.clone(),
            bucket_dir: args.bucket_dir.clone(),
            prefix: args.key_prefix.clone(),
            version: args.version.clone(),
        },
        cache_dir: args.cache_dir.clone(),
    };
    let bucket = cache.bucket.open().await?;
    let local = LocalCache::new(cache.cache_root()?);
    let root = format!("{}/", bucket.layout.root());
    let filter = args.prefix.strip_prefix(&root).unwrap_or(&args.prefix);
    let listing = inventory::list(&*bucket.store, &bucket.layout, Some(&local), filter).await?;
    if args.json {
        return print_json(&listing);
    }
    let objects = &listing.objects;
    print_others(&listing.others);
    if objects.is_empty() {
        println!(
            "no datasets under {}",
            bucket.layout.key_for_relative(filter)
        );
        return Ok(());
    }
    println!(
        "{:>8} {:>10}  {:<25} {:<25} {:<6} {:<5} key",
        "rows", "bytes", "min", "max", "valid", "local"
    );
    for object in objects {
        let validated = match (&object.validated_version, &object.version_id) {
            (Some(valid), Some(current)) if valid == current => "yes",
            (Some(_), _) => "older",
            (None, _) => "-",
        };
        let local = match object.local {
            LocalCopy::Absent => "-",
            LocalCopy::Current => "yes",
            LocalCopy::Other => "stale",
            LocalCopy::Inconsistent => "bad",
        };
        println!(
            "{:>8} {:>10}  {:<25} {:<25} {:<6} {:<5} {}",
            object.rows.map_or("-".to_string(), |r| r.to_string()),
            object.size,
            object.min.as_deref().unwrap_or("-"),
            object.max.as_deref().unwrap_or("-"),
            validated,
            local,
            object.key
        );
    }
    Ok(())
}

/// The other objects lumibot keeps, by kind, before the datasets.
fn print_others(others: &[inventory::ListedOther]) {
    if others.is_empty() {
        return;
    }
    println!(
        "{:<14} {:>10} {:>6}  {:<23}  key",
        "other", "bytes", "rows", "validated"
    );
    for other in others {
        let (rows, span) = match &other.validated {
            Some(v) => (
                v.rows.to_string(),
                format!(
                    "{}..{}",
                    v.min.as_deref().unwrap_or("-"),
                    v.max.as_deref().unwrap_or("-")
                ),
            ),
            None => ("-".into(), "-".into()),
        };
        println!(
            "{:<14} {:>10} {:>6}  {:<23}  {}",
            other.kind.as_str(),
            other.size,
            rows,
            span,
            other.key
        );
    }
    println!();
}
