//! `cachefill warm`: make many symbols' datasets local, continuing past failures: bars,
//! corporate events (`--datastyle splits,dividends`) or option chains (`--datastyle
//! option_chains`, one per session of the range).
//!
//! Re-running it fetches only what is still missing: every dataset already cached is a
//! local hit.

use cachefill_core::fill::MissRequest;
use clap::Args;
use futures::StreamExt;
use serde::Serialize;

use super::args::{ClientArgs, DatasetArgs, RangeArgs};
use super::output::{EXIT_FINDINGS, Failure, print_json};
use super::progress;

#[derive(Debug, Args)]
pub(super) struct WarmArgs {
    /// Symbols, comma-separated: AAPL,GOOGL,MSFT.
    #[arg(long, value_delimiter = ',', required = true, num_args = 1..)]
    pub symbols: Vec<String>,
    /// Upstream provider: thetadata, polygon, binance (aggregate trades), or synthetic
    /// (generated data, not market data).
    #[arg(long)]
    pub provider: String,
    /// stock or index; crypto for binance.
    #[arg(long)]
    pub asset_type: String,
    /// minute, hour, day, 1m, 5m, 1h, 1D … (bars); tick (aggregate trades).
    #[arg(long)]
    pub timespan: Option<String>,
    /// Comma-separated: ohlc or quote (bars), splits, dividends (corporate events),
    /// option_chains, aggtrades (Binance trade days).
    #[arg(long, value_delimiter = ',', required = true, num_args = 1..)]
    pub datastyle: Vec<String>,
    /// Quote asset of polygon stocks and indices, as lumibot names their files (USD).
    #[arg(long)]
    pub quote: Option<String>,
    #[command(flatten)]
    pub range: RangeArgs,
    /// Datasets fetched at once.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub concurrency: u16,
    #[command(flatten)]
    pub client: ClientArgs,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Serialize)]
struct Item {
    symbol: String,
    key: Option<String>,
    /// local_hit, remote_hit, filled or failed.
    status: &'static str,
    rows: Option<u64>,
    path: Option<String>,
    error: Option<String>,
}

#[derive(Debug, Serialize)]
struct WarmOutput {
    datasets: Vec<Item>,
    ok: usize,
    failed: usize,
    /// The symbols that failed, with why, in input order.
    failures: Vec<Failed>,
    invocations: u64,
    upstream_requests: u64,
}

#[derive(Debug, Serialize)]
struct Failed {
    symbol: String,
    error: String,
}

pub(super) async fn run(args: WarmArgs) -> Result<(), Failure> {
    let mut requests: Vec<(String, Result<MissRequest, Failure>)> = Vec::new();
    for symbol in args
        .symbols
        .iter()
        .map(|s| s.trim())
        .filter(|s| !s.is_empty())
    {
        for datastyle in args
            .datastyle
            .iter()
            .map(|s| s.trim())
            .filter(|s| !s.is_empty())
        {
            let dataset = DatasetArgs {
                provider: args.provider.clone(),
                asset_type: args.asset_type.clone(),
                symbol: symbol.to_string(),
                timespan: args.timespan.clone(),
                datastyle: datastyle.to_string(),
                expiration: None,
                strike: None,
                right: None,
                quote: args.quote.clone(),
            };
            match args.range.requests(&dataset) {
                Ok(all) => requests.extend(all.into_iter().map(|r| (symbol.to_string(), Ok(r)))),
                Err(failure) => requests.push((symbol.to_string(), Err(failure))),
            }
        }
    }
    let (client, _bucket) = args.client.open().await?;
    // One bar per symbol, over its datasets; each says how its last one ended.
    let mut per_symbol: Vec<(String, u64)> = Vec::new();
    for (symbol, _) in &requests {
        match per_symbol.iter_mut().find(|(s, _)| s == symbol) {
            Some((_, n)) => *n += 1,
            None => per_symbol.push((symbol.clone(), 1)),
        }
    }
    let bars = progress::bars(per_symbol.iter().map(|(s, n)| (s.as_str(), *n)), "datasets");
    let client_ref = &client;
    let bars_ref = &bars;
    let mut items: Vec<(usize, Item)> = futures::stream::iter(requests.into_iter().enumerate())
        .map(|(i, (symbol, request))| async move {
            let bar = bars_ref
                .iter()
                .find(|(s, _)| *s == symbol)
                .map(|(_, bar)| bar.clone());
            let item = match request {
                Err(failure) => failed(symbol, None, failure.message),
                Ok(request) => {
                    let key = client_ref
                        .layout()
                        .key_for_relative(&request.relative_path());
                    match client_ref.get_any(&request).await {
                        Ok(file) => Item {
                            symbol,
                            key: Some(key),
                            status: file.source.as_str(),
                            rows: Some(file.rows),
                            path: Some(file.path.display().to_string()),
                            error: None,
                        },
                        Err(e) => failed(symbol, Some(key), e.to_string()),
                    }
                }
            };
            if let Some(bar) = bar {
                bar.inc(1);
                bar.set_message(match item.rows {
                    Some(rows) => format!("{} ({rows} rows)", item.status),
                    None => item.status.to_string(),
                });
                if bar.position() == bar.length().unwrap_or(0) {
                    bar.finish();
                }
            }
            (i, item)
        })
        .buffer_unordered(usize::from(args.concurrency))
        .collect()
        .await;
    for (_, bar) in &bars {
        bar.finish_and_clear();
    }
    items.sort_by_key(|(i, _)| *i);
    let datasets: Vec<Item> = items.into_iter().map(|(_, item)| item).collect();
    let failures: Vec<Failed> = datasets
        .iter()
        .filter_map(|item| {
            item.error.as_ref().map(|error| Failed {
                symbol: item.symbol.clone(),
                error: error.clone(),
            })
        })
        .collect();
    let stats = client.stats();
    let output = WarmOutput {
        ok: datasets.len() - failures.len(),
        failed: failures.len(),
        datasets,
        failures,
        invocations: stats.invocations,
        upstream_requests: stats.upstream_requests,
    };
    if args.json {
        print_json(&output)?;
    } else {
        print_text(&output);
    }
    if output.failed > 0 {
        return Err(Failure {
            code: EXIT_FINDINGS,
            message: format!(
                "{} of {} datasets failed: {}",
                output.failed,
                output.ok + output.failed,
                output
                    .failures
                    .iter()
                    .map(|f| f.symbol.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        });
    }
    Ok(())
}

fn failed(symbol: String, key: Option<String>, error: String) -> Item {
    Item {
        symbol,
        key,
        status: "failed",
        rows: None,
        path: None,
        error: Some(error),
    }
}

fn print_text(output: &WarmOutput) {
    for item in &output.datasets {
        match &item.error {
            None => println!(
                "{:<8} {:<10} {:>8} rows  {}",
                item.symbol,
                item.status,
                item.rows.unwrap_or(0),
                item.path.as_deref().unwrap_or("-")
            ),
            Some(_) => println!("{:<8} {:<10}", item.symbol, item.status),
        }
    }
    println!(
        "{} cached, {} failed; {} invocations, {} upstream requests",
        output.ok, output.failed, output.invocations, output.upstream_requests
    );
    if !output.failures.is_empty() {
        println!("failed:");
        for failure in &output.failures {
            println!("  {}: {}", failure.symbol, failure.error);
        }
    }
}
