//! Command-line parsing and dispatch. Each command lives in its own file.

mod args;
mod fill;
mod key;
mod output;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

pub use output::Failure;

/// cachefill: fill and read lumibot-compatible market-data caches.
///
/// Exit codes: 0 success; 1 internal or storage error; 2 invalid usage or request;
/// 3 upstream (provider) error; 4 storage conflict (retry later).
#[derive(Debug, Parser)]
#[command(name = "cachefill", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print the relative path and remote key of a dataset payload.
    Key(key::KeyArgs),
    /// Run the miss-handler's fill in-process (embedded default bucket, or S3).
    Fill(Box<fill::FillArgs>),
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("CACHEFILL_LOG")
                .unwrap_or_else(|_| "warn".into()),
        )
        .init();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => return output::report(Failure::internal(format!("cannot start: {e}"))),
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Key(args) => key::run(args),
            Command::Fill(args) => fill::run(*args).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => output::report(failure),
    }
}
