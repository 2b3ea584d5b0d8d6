//! `cachefill fill`: the miss-handler's fill, run in this process.

use cachefill_core::fill::{EngineConfig, FillAnswer, FillEngine, Progress};
use cachefill_core::runtime;
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};

use super::args::{BucketArgs, DatasetArgs, RangeArgs, embedded_providers};
use super::output::{Failure, print_json};

#[derive(Debug, Args)]
pub(super) struct FillArgs {
    #[command(flatten)]
    pub dataset: DatasetArgs,
    #[command(flatten)]
    pub range: RangeArgs,
    #[command(flatten)]
    pub bucket: BucketArgs,
    /// Print the miss-handler's answer as one JSON object.
    #[arg(long)]
    pub json: bool,
}

fn progress_bar() -> ProgressBar {
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template("{spinner} {msg} [{bar:30}] {pos}/{len} requests {elapsed}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    super::progress::tick_steadily(&bar);
    bar
}

pub(super) async fn run(args: FillArgs) -> Result<(), Failure> {
    let request = args.range.request(&args.dataset)?;
    let bucket = args.bucket.open().await?;
    let bar = progress_bar();
    bar.set_message(format!("filling {}", request.relative_path()));
    let observer = bar.clone();
    let store = bucket
        .function_store()
        .map_err(|e| Failure::internal(format!("cannot open the bucket: {e}")))?;
    let providers =
        runtime::providers(&embedded_providers()?).map_err(|e| Failure::invalid(e.to_string()))?;
    let engine = FillEngine::new(
        store,
        providers,
        EngineConfig::new(bucket.name.clone(), bucket.layout.clone()),
    )
    .with_observer(move |progress| match progress {
        Progress::Fetching { done, total } => {
            observer.set_length(total as u64);
            observer.set_position(done as u64);
        }
        Progress::Writing => observer.set_message("writing"),
    });
    let result = engine.fill_any(&request).await;
    bar.finish_and_clear();
    let answer = result?;
    if args.json {
        return print_json(&answer);
    }
    print_answer(&answer);
    Ok(())
}

fn print_answer(answer: &FillAnswer) {
    println!("{:<8} {}", answer.status.as_str(), answer.key);
    println!(
        "  rows {} (real {}, placeholders {})  {} .. {}",
        answer.rows,
        answer.real_rows,
        answer.placeholders,
        answer.min.as_deref().unwrap_or("-"),
        answer.max.as_deref().unwrap_or("-")
    );
    println!(
        "  sessions fetched {}, upstream requests {}, {} ms",
        answer.sessions_fetched, answer.upstream_requests, answer.elapsed_ms
    );
    if let Some(version) = &answer.version_id {
        println!(
            "  version {version}  sha256 {}",
            answer.sha256.as_deref().unwrap_or("-")
        );
    }
}
