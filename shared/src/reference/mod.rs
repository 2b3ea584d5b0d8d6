//! Reference data lumibot keeps beside the price bars and reads in a backtest: corporate
//! events (splits, dividends; [`events`]) and option chains ([`chain`]).
//!
//! Each is filled by the miss-handler like a dataset (`docs/ARCHITECTURE.md` §15). A request
//! names what lumibot's lookup needs, with the `datastyle` saying which:
//!
//! ```text
//! {"provider","asset_type":"stock","symbol","datastyle":"splits"|"dividends","start","end"}
//! {"provider","asset_type":"stock"|"index","symbol","datastyle":"option_chains","date"}
//! ```

pub mod chain;
pub mod events;

use chrono::NaiveDate;

use crate::dataset::{AssetType, DatasetError, Provider, RawFields, normalize_symbol, parse_date};
use crate::format::{CHAINS_FOLDER, PARQUET_SUFFIX};
use events::{EventSet, EventType};

/// The `datastyle` of a chain request (the folder lumibot keeps chains in).
pub const CHAINS_DATASTYLE: &str = CHAINS_FOLDER;

/// One underlying's option chain on one date: one file.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ChainSet {
    pub provider: Provider,
    /// `stock` or `index` (the folder lumibot files it under).
    pub asset_type: AssetType,
    /// Upper-cased, within `[A-Z0-9._-]`.
    pub symbol: String,
    pub date: NaiveDate,
}

impl ChainSet {
    pub fn new(
        provider: Provider,
        asset_type: AssetType,
        symbol: &str,
        date: NaiveDate,
    ) -> Result<Self, DatasetError> {
        if asset_type == AssetType::Option {
            return Err(DatasetError(
                "an option chain belongs to its underlying: asset_type must be stock or index"
                    .into(),
            ));
        }
        let symbol = normalize_symbol(symbol)?;
        if symbol.contains('_') {
            return Err(DatasetError(format!(
                "symbol '{symbol}' contains '_', which lumibot's chain file name cannot hold"
            )));
        }
        Ok(ChainSet {
            provider,
            asset_type,
            symbol,
            date,
        })
    }

    /// `thetadata/<asset>/option_chains/<SYM>_<YYYY-MM-DD>.parquet`.
    pub fn relative_path(&self) -> String {
        format!(
            "{}/{}/{CHAINS_FOLDER}/{}_{}{PARQUET_SUFFIX}",
            self.provider, self.asset_type, self.symbol, self.date
        )
    }

    /// The chain a path names, when it is one and names it exactly.
    pub fn parse_relative(path: &str) -> Option<ChainSet> {
        let segments: Vec<&str> = path.split('/').collect();
        let [provider, asset, folder, file] = segments[..] else {
            return None;
        };
        if folder != CHAINS_FOLDER {
            return None;
        }
        let provider = Provider::parse(provider).ok()?;
        let asset_type = AssetType::parse(asset).ok()?;
        let (symbol, date) = file.strip_suffix(PARQUET_SUFFIX)?.split_once('_')?;
        let date = NaiveDate::parse_from_str(date, "%Y-%m-%d").ok()?;
        let set = ChainSet::new(provider, asset_type, symbol, date).ok()?;
        (set.relative_path() == path).then_some(set)
    }
}

/// A reference object: what a key of events or chains names.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Reference {
    /// An events parquet (`ranges == false`) or its ranges file.
    Events {
        set: EventSet,
        ranges: bool,
    },
    Chain(ChainSet),
    /// A day of aggregate trades ([`crate::trades`]).
    TradeDay(crate::trades::TradeDay),
}

impl Reference {
    /// The reference object at a path relative to the cache root.
    pub fn of(relative: &str) -> Option<Reference> {
        if let Some((set, ranges)) = EventSet::parse_relative(relative) {
            return Some(Reference::Events { set, ranges });
        }
        if let Some(day) = crate::trades::TradeDay::parse_relative(relative) {
            return Some(Reference::TradeDay(day));
        }
        ChainSet::parse_relative(relative).map(Reference::Chain)
    }
}

/// Events of one set wanted over `[start, end]` (calendar dates).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventsRequest {
    pub set: EventSet,
    pub start: NaiveDate,
    pub end: NaiveDate,
}

/// One chain wanted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainRequest {
    pub set: ChainSet,
}

const EVENTS_FIELDS: [&str; 6] = [
    "provider",
    "asset_type",
    "symbol",
    "datastyle",
    "start",
    "end",
];
const CHAIN_FIELDS: [&str; 5] = ["provider", "asset_type", "symbol", "datastyle", "date"];

fn only(fields: &RawFields<'_>, allowed: &[&str], what: &str) -> Result<(), DatasetError> {
    match fields.names().find(|n| !allowed.contains(n)) {
        Some(unknown) => Err(DatasetError(format!(
            "unknown field '{unknown}' for {what} (expected: {})",
            allowed.join(", ")
        ))),
        None => Ok(()),
    }
}

fn common(fields: &RawFields<'_>) -> Result<(Provider, AssetType, String), DatasetError> {
    Ok((
        Provider::parse(&fields.required_string("provider")?)?,
        AssetType::parse(&fields.required_string("asset_type")?)?,
        fields.required_string("symbol")?,
    ))
}

impl EventsRequest {
    pub fn new(set: EventSet, start: NaiveDate, end: NaiveDate) -> Result<Self, DatasetError> {
        if start > end {
            return Err(DatasetError(format!("start {start} is after end {end}")));
        }
        for (name, date) in [("start", start), ("end", end)] {
            if date < events::earliest() || date > events::latest() {
                return Err(DatasetError(format!(
                    "{name} {date} is outside {}..{}, the dates lumibot asks events for",
                    events::earliest(),
                    events::latest()
                )));
            }
        }
        Ok(EventsRequest { set, start, end })
    }

    /// `fields` with a `datastyle` of `splits` or `dividends`.
    pub fn from_fields(
        fields: &RawFields<'_>,
        event_type: EventType,
    ) -> Result<Self, DatasetError> {
        only(fields, &EVENTS_FIELDS, "an events request")?;
        let (provider, asset_type, symbol) = common(fields)?;
        let set = EventSet::new(provider, asset_type, &symbol, event_type)?;
        let start = parse_date("start", &fields.required_string("start")?)?;
        let end = parse_date("end", &fields.required_string("end")?)?;
        EventsRequest::new(set, start, end)
    }

    pub fn to_json(&self) -> String {
        serde_json::json!({
            "provider": self.set.provider.as_str(),
            "asset_type": AssetType::Stock.as_str(),
            "symbol": self.set.symbol,
            "datastyle": self.set.event_type.as_str(),
            "start": self.start.to_string(),
            "end": self.end.to_string(),
        })
        .to_string()
    }
}

impl ChainRequest {
    /// `fields` with a `datastyle` of [`CHAINS_DATASTYLE`].
    pub fn from_fields(fields: &RawFields<'_>) -> Result<Self, DatasetError> {
        only(fields, &CHAIN_FIELDS, "a chain request")?;
        let (provider, asset_type, symbol) = common(fields)?;
        let date = parse_date("date", &fields.required_string("date")?)?;
        crate::calendar::is_session(date).map_err(|e| DatasetError(format!("date: {e}")))?;
        Ok(ChainRequest {
            set: ChainSet::new(provider, asset_type, &symbol, date)?,
        })
    }

    pub fn to_json(&self) -> String {
        serde_json::json!({
            "provider": self.set.provider.as_str(),
            "asset_type": self.set.asset_type.as_str(),
            "symbol": self.set.symbol,
            "datastyle": CHAINS_DATASTYLE,
            "date": self.set.date.to_string(),
        })
        .to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_paths_are_lumibots_and_parse_back() {
        let set = ChainSet::new(
            Provider::ThetaData,
            AssetType::Stock,
            "spy",
            "2024-11-15".parse().unwrap(),
        )
        .unwrap();
        let path = set.relative_path();
        assert_eq!(path, "thetadata/stock/option_chains/SPY_2024-11-15.parquet");
        assert_eq!(Reference::of(&path), Some(Reference::Chain(set)));
        assert_eq!(
            Reference::of("thetadata/stock/option_chains/spy_2024-11-15.parquet"),
            None,
            "only the exact spelling"
        );
        assert!(
            ChainSet::new(
                Provider::ThetaData,
                AssetType::Option,
                "SPY",
                "2024-11-15".parse().unwrap()
            )
            .is_err()
        );
    }

    #[test]
    fn requests_parse_strictly_and_round_trip() {
        let json = r#"{"provider":"thetadata","asset_type":"stock","symbol":"aapl","datastyle":"splits","start":"2024-01-01","end":"2024-12-31"}"#;
        let fields = RawFields::parse(json).unwrap();
        let request = EventsRequest::from_fields(&fields, EventType::Splits).unwrap();
        assert_eq!(request.set.symbol, "AAPL");
        let json = request.to_json();
        let again = RawFields::parse(&json).unwrap();
        assert_eq!(
            EventsRequest::from_fields(&again, EventType::Splits).unwrap(),
            request
        );
        let with_timespan = r#"{"provider":"thetadata","asset_type":"stock","symbol":"AAPL","datastyle":"splits","timespan":"day","start":"2024-01-01","end":"2024-12-31"}"#;
        let err = EventsRequest::from_fields(
            &RawFields::parse(with_timespan).unwrap(),
            EventType::Splits,
        )
        .unwrap_err();
        assert!(err.0.contains("timespan"), "{err}");
        let chain = r#"{"provider":"thetadata","asset_type":"stock","symbol":"SPY","datastyle":"option_chains","date":"2024-11-15"}"#;
        let request = ChainRequest::from_fields(&RawFields::parse(chain).unwrap()).unwrap();
        let json = request.to_json();
        assert_eq!(
            ChainRequest::from_fields(&RawFields::parse(&json).unwrap()).unwrap(),
            request
        );
    }
}
