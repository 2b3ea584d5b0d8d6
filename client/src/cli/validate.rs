//! `cachefill validate <file-or-key>`: run the validator's rules on a parquet of a lumibot
//! cache folder, every parquet under a folder, or a key in the bucket.

use std::path::{Path, PathBuf};

use cachefill_core::settings::ClientSettings;
use cachefill_core::validate::files::{self, FileError, FileReport, OtherReport};
use clap::Args;
use serde::Serialize;

use super::args::BucketArgs;
use super::output::{Failure, print_json};

/// Exit code when at least one file breaks a rule.
const EXIT_INVALID_DATA: u8 = 1;

#[derive(Debug, Args)]
pub(super) struct ValidateArgs {
    /// A parquet file, a folder (every *.parquet and events ranges file under it, e.g. your
    /// lumibot cache folder),
    /// or a key in the bucket (full key or path relative to the cache root).
    pub target: String,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
    /// Read a file's dataset from its last five path segments
    /// (<provider>/<asset_type>/<timespan>/<datastyle>/<file>) instead of its path under
    /// the lumibot cache folder (LUMIBOT_CACHE_FOLDER).
    #[arg(long)]
    pub dataset_from_path: bool,
    #[command(flatten)]
    pub bucket: BucketArgs,
}

#[derive(Debug, Serialize)]
struct Skipped {
    path: String,
    why: String,
}

#[derive(Debug, Default, Serialize)]
struct Summary {
    checked: usize,
    valid: usize,
    invalid: usize,
    files: Vec<FileReport>,
    /// Other objects lumibot keeps (option chains, events, snapshots, …): looked at, never
    /// judged by the dataset rules.
    others: Vec<OtherReport>,
    /// Parquets under a folder that name no dataset (their schema is unknown).
    skipped: Vec<Skipped>,
}

impl Summary {
    /// Another lumibot object; events, ranges and chains count as checked files.
    fn add_other(&mut self, report: OtherReport) {
        match report.valid {
            Some(true) => {
                self.checked += 1;
                self.valid += 1;
            }
            Some(false) => {
                self.checked += 1;
                self.invalid += 1;
            }
            None => {}
        }
        self.others.push(report);
    }

    fn add(&mut self, report: FileReport) {
        self.checked += 1;
        if report.valid {
            self.valid += 1;
        } else {
            self.invalid += 1;
        }
        self.files.push(report);
    }
}

fn failure_of(e: FileError) -> Failure {
    match e {
        FileError::NotACachePath { .. } | FileError::NotFound { .. } => {
            Failure::invalid(e.to_string())
        }
        other => Failure::internal(other.to_string()),
    }
}

pub(super) async fn run(args: ValidateArgs) -> Result<(), Failure> {
    let path = Path::new(&args.target);
    let mut summary = Summary::default();
    let folder = path.is_dir();
    if path.exists() {
        let root = ClientSettings::from_env()
            .map_err(|e| Failure::invalid(e.to_string()))?
            .cache_folder;
        let targets: Vec<PathBuf> = if folder {
            files::parquet_files(path).map_err(failure_of)?
        } else {
            vec![path.to_path_buf()]
        };
        for file in targets {
            match files::dataset_of_path(&file, &root, args.dataset_from_path) {
                Ok((dataset, relative)) => {
                    summary.add(files::check_file(&file, &dataset, &relative).map_err(failure_of)?)
                }
                Err(FileError::NotACachePath { path, why }) => {
                    match files::inspect_other_file(&file, &root).map_err(failure_of)? {
                        Some(other) => summary.add_other(other),
                        None if folder => summary.skipped.push(Skipped { path, why }),
                        None => return Err(failure_of(FileError::NotACachePath { path, why })),
                    }
                }
                Err(e) => return Err(failure_of(e)),
            }
        }
    } else {
        let bucket = args.bucket.open().await?;
        let report = files::check_key(bucket.store.as_ref(), &bucket.layout, &args.target)
            .await
            .map_err(|e| {
                let mut failure = failure_of(e);
                failure.message = format!(
                    "{}: no such file, and not a key in bucket {}: {}",
                    args.target, bucket.name, failure.message
                );
                failure
            })?;
        summary.add(report);
    }

    if args.json {
        print_json(&summary)?;
    } else {
        print_summary(&summary, folder);
    }
    if summary.invalid > 0 {
        return Err(Failure {
            code: EXIT_INVALID_DATA,
            message: format!(
                "{} of {} file(s) break the cache's rules",
                summary.invalid, summary.checked
            ),
        });
    }
    Ok(())
}

fn rule_name(rule: &cachefill_core::rules::Rule) -> String {
    serde_json::to_value(rule)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_else(|| format!("{rule:?}"))
}

fn print_summary(summary: &Summary, folder: bool) {
    for report in &summary.files {
        let verdict = if report.valid { "valid" } else { "INVALID" };
        println!("{verdict:<8} {}", report.path);
        if let Some(sidecar) = &report.sidecar {
            println!("         with {sidecar}");
        }
        for violation in &report.violations {
            println!("  - {}: {}", rule_name(&violation.rule), violation.message);
        }
    }
    for other in &summary.others {
        let verdict = match other.valid {
            Some(true) => "valid",
            Some(false) => "INVALID",
            None => other.kind.as_str(),
        };
        println!("{verdict:<8} {}", other.path);
        for violation in &other.violations {
            println!("  - {}: {}", rule_name(&violation.rule), violation.message);
        }
        for note in &other.notes {
            println!("  - {note}");
        }
    }
    for skipped in &summary.skipped {
        println!("skipped  {}: {}", skipped.path, skipped.why);
    }
    if folder {
        println!(
            "{} file(s) checked: {} valid, {} invalid; {} other lumibot object(s); {} skipped",
            summary.checked,
            summary.valid,
            summary.invalid,
            summary.others.len(),
            summary.skipped.len()
        );
    }
}
