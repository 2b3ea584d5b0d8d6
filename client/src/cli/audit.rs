//! `cachefill audit`: every disagreement between the bucket's parquet files, their sidecars
//! and manifests, and the local cache.

use super::inventory::{self, AuditReport};
use crate::local_cache::LocalCache;
use clap::Args;

use super::args::CacheArgs;
use super::output::{EXIT_FINDINGS, Failure, print_json};
use super::progress;

#[derive(Debug, Args)]
pub(super) struct AuditArgs {
    #[command(flatten)]
    pub cache: CacheArgs,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

pub(super) async fn run(args: AuditArgs) -> Result<(), Failure> {
    let bucket = args.cache.bucket.open().await?;
    let local = LocalCache::new(args.cache.cache_root()?);
    let bar = progress::bar(0, "objects");
    bar.set_message("auditing");
    let observer = bar.clone();
    let result = inventory::audit(
        &*bucket.store,
        &bucket.layout,
        &local,
        move |done, total| {
            observer.set_length(total as u64);
            observer.set_position(done as u64);
        },
    )
    .await;
    bar.finish_and_clear();
    let report = result?;
    if args.json {
        print_json(&report)?;
    } else {
        print_text(&report);
    }
    if report.divergences.is_empty() {
        Ok(())
    } else {
        Err(Failure {
            code: EXIT_FINDINGS,
            message: format!("{} divergence(s) found", report.divergences.len()),
        })
    }
}

fn print_text(report: &AuditReport) {
    println!(
        "{} objects in the bucket, {} local files, {} divergence(s)",
        report.objects,
        report.local_files,
        report.divergences.len()
    );
    for (kind, count) in &report.others {
        println!(
            "  {count} other lumibot object(s) of kind {}",
            kind.as_str()
        );
    }
    for note in &report.other_notes {
        println!(
            "  {:<24} {}\n    {}",
            note.kind.as_str(),
            note.key,
            note.notes.join("; ")
        );
    }
    for divergence in &report.divergences {
        let kind = serde_json::to_value(divergence.kind)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        println!("  {kind:<24} {}\n    {}", divergence.key, divergence.detail);
    }
}
