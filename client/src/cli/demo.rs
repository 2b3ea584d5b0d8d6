//! `cachefill demo`: the project's main job on the embedded default (see
//! `cachefill_client::cli::job`). Its state stays in `./.cachefill/`, so a second run is all
//! local hits: no fill, no upstream request.

use std::path::{Path, PathBuf};

use super::job::{self as demo, Report};
use crate::embedded::{Embedded, STATE_DIR};
use clap::Args;

use super::output::{Failure, print_json};
use super::progress;

#[derive(Debug, Args)]
pub(super) struct DemoArgs {
    /// Where the bucket (`bucket/`) and the local cache (`cache/`) live.
    #[arg(long, value_name = "DIR", default_value = STATE_DIR)]
    pub state_dir: PathBuf,
    /// Start over: remove the demo's bucket and local cache first.
    #[arg(long)]
    pub fresh: bool,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

fn remove_dir(dir: &Path) -> Result<(), Failure> {
    match std::fs::remove_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Failure::internal(format!(
            "cannot remove {}: {e}",
            dir.display()
        ))),
    }
}

pub(super) async fn run(args: DemoArgs) -> Result<(), Failure> {
    if args.fresh {
        // Only the two folders the demo owns, never the whole state directory.
        remove_dir(&args.state_dir.join("bucket"))?;
        remove_dir(&args.state_dir.join("cache"))?;
    }
    let embedded = Embedded::open(&args.state_dir)?;
    let client = embedded.client();
    let bar = progress::bar(demo::requests().len() as u64, "requests");
    bar.set_message("backtesting");
    let observer = bar.clone();
    let result = demo::run(&client, move |file| {
        observer.set_message(file.source.as_str());
        observer.inc(1);
    })
    .await;
    bar.finish_and_clear();
    let report = result?;
    if args.json {
        return print_json(&report);
    }
    print_text(&report, &embedded);
    Ok(())
}

fn print_text(report: &Report, embedded: &Embedded) {
    println!(
        "demo: {}-session backtest of {} daily bars, {} .. {}",
        demo::SESSIONS,
        demo::SYMBOL,
        report.first_session,
        report.last_session
    );
    println!(
        "      every session asks for the last {} sessions, then once for the whole range",
        report.window
    );
    println!("      provider `synthetic`: generated data, not market data");
    println!("  requests           {:>6}", report.requests);
    println!("  local hits         {:>6}", report.local_hits);
    println!("  remote hits        {:>6}", report.remote_hits);
    println!("  fills              {:>6}", report.fills);
    println!("  upstream requests  {:>6}", report.upstream_requests);
    println!("  elapsed            {:>6} ms", report.elapsed_ms);
    println!(
        "  bucket {}  local cache {}",
        embedded.bucket_dir.display(),
        embedded.cache_dir.display()
    );
    if report.fills > 0 {
        println!(
            "Run it again: every request is a local hit, with no fill and no upstream request."
        );
    }
}
