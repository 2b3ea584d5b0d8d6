//! `cachefill key <payload-json>`: where lumibot keeps a dataset.

use cachefill_core::dataset::Dataset;
use cachefill_core::keys::{KeyLayout, relative_path};
use clap::Args;
use serde::Serialize;

use super::output::{Failure, print_json};

#[derive(Debug, Args)]
pub(super) struct KeyArgs {
    /// lumibot's payload, e.g. '{"provider":"thetadata","asset_type":"stock","symbol":"SPY","timespan":"minute","datastyle":"ohlc"}'
    pub payload: String,
    /// Remote key prefix (spaces and slashes stripped as lumibot does).
    #[arg(long, default_value = "")]
    pub prefix: String,
    /// Cache version segment.
    #[arg(long, default_value = "v1")]
    pub version: String,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

#[derive(Serialize)]
struct KeyOutput {
    relative_path: String,
    remote_key: String,
    sidecar_key: String,
}

pub(super) fn run(args: KeyArgs) -> Result<(), Failure> {
    let dataset = Dataset::from_json(&args.payload).map_err(|e| Failure::invalid(e.0))?;
    let layout = KeyLayout::new(&args.prefix, &args.version);
    let out = KeyOutput {
        relative_path: relative_path(&dataset),
        remote_key: layout.data_key(&dataset),
        sidecar_key: layout.sidecar_key(&dataset),
    };
    if args.json {
        return print_json(&out);
    }
    println!("relative path  {}", out.relative_path);
    println!("remote key     {}", out.remote_key);
    println!("sidecar key    {}", out.sidecar_key);
    Ok(())
}
