//! `cachefill key <payload-json>`: where lumibot keeps a dataset, a symbol's corporate
//! events or an option chain.

use cachefill_core::dataset::{Dataset, RawFields};
use cachefill_core::keys::{KeyLayout, relative_path};
use cachefill_core::reference::events::{EventSet, EventType};
use cachefill_core::reference::{CHAINS_DATASTYLE, ChainRequest};
use clap::Args;
use serde::Serialize;

use super::output::{Failure, print_json};

#[derive(Debug, Args)]
pub(super) struct KeyArgs {
    /// lumibot's payload, e.g. '{"provider":"thetadata","asset_type":"stock","symbol":"SPY","timespan":"minute","datastyle":"ohlc"}';
    /// for events '{"provider":"thetadata","asset_type":"stock","symbol":"AAPL","datastyle":"splits"}',
    /// for a chain '{"provider":"thetadata","asset_type":"stock","symbol":"SPY","datastyle":"option_chains","date":"2024-11-15"}'
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
    /// The `.meta.json` beside it: a dataset's sidecar, or the ranges file of events
    /// (chains have none).
    sidecar_key: Option<String>,
}

/// The relative paths of the payload's file and of its `.meta.json`.
fn paths(payload: &str) -> Result<(String, Option<String>), Failure> {
    let invalid = |e: cachefill_core::dataset::DatasetError| Failure::invalid(e.0);
    let fields = RawFields::parse(payload).map_err(invalid)?;
    let datastyle = fields
        .string("datastyle")
        .map_err(invalid)?
        .unwrap_or_default();
    if let Some(event_type) = EventType::parse(&datastyle) {
        let field = |name: &str| fields.required_string(name).map_err(invalid);
        let set = EventSet::new(
            cachefill_core::dataset::Provider::parse(&field("provider")?).map_err(invalid)?,
            cachefill_core::dataset::AssetType::parse(&field("asset_type")?).map_err(invalid)?,
            &field("symbol")?,
            event_type,
        )
        .map_err(invalid)?;
        return Ok((set.relative_path(), Some(set.ranges_path())));
    }
    if datastyle.eq_ignore_ascii_case(CHAINS_DATASTYLE) {
        let request = ChainRequest::from_fields(&fields).map_err(invalid)?;
        return Ok((request.set.relative_path(), None));
    }
    let dataset = Dataset::from_json(payload).map_err(invalid)?;
    let relative = relative_path(&dataset);
    Ok((
        relative.clone(),
        Some(format!(
            "{relative}{}",
            cachefill_core::format::SIDECAR_SUFFIX
        )),
    ))
}

pub(super) fn run(args: KeyArgs) -> Result<(), Failure> {
    let (relative, sidecar) = paths(&args.payload)?;
    let layout = KeyLayout::new(&args.prefix, &args.version);
    let out = KeyOutput {
        remote_key: layout.key_for_relative(&relative),
        sidecar_key: sidecar.map(|s| layout.key_for_relative(&s)),
        relative_path: relative,
    };
    if args.json {
        return print_json(&out);
    }
    println!("relative path  {}", out.relative_path);
    println!("remote key     {}", out.remote_key);
    if let Some(sidecar) = &out.sidecar_key {
        println!("sidecar key    {sidecar}");
    }
    Ok(())
}
