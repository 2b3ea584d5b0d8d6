//! The `cachefill` command line (feature `cli`): parsing and dispatch, each command in its
//! own file, and what only the command line needs: the project's main job ([`job`]), bucket
//! listings and audits ([`inventory`]), and which bucket a command works on ([`bucket`]).

mod args;
mod audit;
pub mod bucket;
mod clear;
mod demo;
mod fill;
mod get;
mod invalidate;
pub mod inventory;
pub mod job;
mod key;
mod ls;
mod output;
mod progress;
mod validate;
mod warm;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

pub use output::Failure;

/// cachefill: fill and read lumibot-compatible market-data caches.
///
/// Exit codes: 0 success; 1 internal, storage or invocation error; 2 invalid usage, request
/// or configuration; 3 upstream (provider) error; 4 storage conflict or inconsistent object
/// (retry later); 5 the command ran and found problems (audit divergences, warm failures).
/// `validate` exits 1 when any file breaks a rule.
///
/// Start with `cachefill demo`: the main job on the embedded default (no AWS).
#[derive(Debug, Parser)]
#[command(name = "cachefill", version, about, long_about)]
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
    /// Make a dataset's range local (local cache, else bucket, else fill) and print where.
    Get(Box<get::GetArgs>),
    /// Make many symbols' datasets local; continues past failures and lists them.
    Warm(Box<warm::WarmArgs>),
    /// List the datasets in the bucket: rows, bounds, size, validated version, local copy.
    Ls(Box<ls::LsArgs>),
    /// List every divergence between the bucket's files, sidecars, manifests and the local cache.
    Audit(Box<audit::AuditArgs>),
    /// Remove local dataset files not modified for N days.
    Clear(Box<clear::ClearArgs>),
    /// Remove a symbol's datasets from the local cache (never from the bucket).
    Invalidate(Box<invalidate::InvalidateArgs>),
    /// The main job on the embedded default: a 62-session sliding-window backtest.
    Demo(demo::DemoArgs),
    /// Check parquet files (a lumibot cache folder) or a bucket key against the cache's rules.
    Validate(Box<validate::ValidateArgs>),
}

pub fn main() -> ExitCode {
    ExitCode::from(run(std::env::args_os()))
}

/// The command line with these arguments (the first is the program's name), as
/// `python -m cachefill` runs it; its exit code.
pub fn run<I, T>(args: I) -> u8
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return u8::try_from(e.exit_code()).unwrap_or(2);
        }
    };
    // A process that already set up logging (an embedding one) keeps its own.
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("CACHEFILL_LOG")
                .unwrap_or_else(|_| "warn".into()),
        )
        .try_init();
    // One thread drives the command: a fill parses, encodes and does its file I/O on the
    // blocking pool, so worker threads would only add their start and stop to every
    // command, a hit's above all (docs/PERFORMANCE.md).
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => return output::report(Failure::internal(format!("cannot start: {e}"))),
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Key(args) => key::run(args),
            Command::Fill(args) => fill::run(*args).await,
            Command::Get(args) => get::run(*args).await,
            Command::Warm(args) => warm::run(*args).await,
            Command::Ls(args) => ls::run(*args).await,
            Command::Audit(args) => audit::run(*args).await,
            Command::Clear(args) => clear::run(*args),
            Command::Invalidate(args) => invalidate::run(*args),
            Command::Demo(args) => demo::run(args).await,
            Command::Validate(args) => validate::run(*args).await,
        }
    });
    match result {
        Ok(()) => 0,
        Err(failure) => output::report(failure),
    }
}
