//! `cachefill get`: make one dataset's range local and print where it is.

use crate::LocalFile;
use clap::Args;
use serde::Serialize;

use super::args::{ClientArgs, DatasetArgs, RangeArgs};
use super::output::{Failure, print_json};
use super::progress;

#[derive(Debug, Args)]
pub(super) struct GetArgs {
    #[command(flatten)]
    pub dataset: DatasetArgs,
    #[command(flatten)]
    pub range: RangeArgs,
    #[command(flatten)]
    pub client: ClientArgs,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

#[derive(Serialize)]
struct GetOutput<'a> {
    #[serde(flatten)]
    file: &'a LocalFile,
    invocations: u64,
    upstream_requests: u64,
}

pub(super) async fn run(args: GetArgs) -> Result<(), Failure> {
    let request = args.range.request(&args.dataset)?;
    let (client, _bucket) = args.client.open().await?;
    let spinner = progress::spinner(format!("getting {}", request.relative_path()));
    let result = client.get_any(&request).await;
    spinner.finish_and_clear();
    let file = result?;
    let stats = client.stats();
    if args.json {
        return print_json(&GetOutput {
            file: &file,
            invocations: stats.invocations,
            upstream_requests: stats.upstream_requests,
        });
    }
    println!("{:<10} {}", file.source.as_str(), file.path.display());
    // Trade days: one line per day after the first.
    for day in file.paths.iter().skip(1) {
        println!("{:<10} {}", day.source.as_str(), day.path.display());
    }
    println!("  key      {}", file.key);
    println!(
        "  rows     {}  {} .. {}",
        file.rows,
        file.min.as_deref().unwrap_or("-"),
        file.max.as_deref().unwrap_or("-")
    );
    println!(
        "  version  {}  sha256 {}",
        file.version_id.as_deref().unwrap_or("-"),
        file.sha256
    );
    println!(
        "  invocations {}, upstream requests {}",
        stats.invocations, stats.upstream_requests
    );
    Ok(())
}
