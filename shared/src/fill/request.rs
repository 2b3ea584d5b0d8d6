//! The miss-handler's request (`docs/ARCHITECTURE.md` §5): a dataset payload plus the range
//! wanted.

use chrono::{DateTime, NaiveDate};

use crate::calendar;
use crate::dataset::{
    DATASET_FIELDS, Dataset, DatasetError, Datastyle, RawFields, parse_date, provider_expiration,
};
use crate::reference::events::EventType;
use crate::reference::{CHAINS_DATASTYLE, ChainRequest, EventsRequest};
use crate::trades::{AGGTRADES_DATASTYLE, TradesRequest};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FillRequest {
    pub dataset: Dataset,
    /// First and last New York date wanted, inclusive.
    pub start: NaiveDate,
    pub end: NaiveDate,
    pub include_after_hours: bool,
    /// The expiration to ask the provider for, when the caller knows it (lumibot's
    /// `provider_expiration`); else the provider resolves it.
    pub provider_expiration: Option<NaiveDate>,
}

const REQUEST_FIELDS: [&str; 3] = ["start", "end", "include_after_hours"];

fn bad(message: impl Into<String>) -> DatasetError {
    DatasetError(message.into())
}

/// A date (`2024-01-05`) or an RFC 3339 instant, as the New York date it falls on. An `end`
/// instant exactly at New York midnight is exclusive, as lumibot counts it: it ends the day
/// before.
pub fn parse_bound(name: &str, text: &str) -> Result<NaiveDate, DatasetError> {
    if text.len() == 10 {
        return parse_date(name, text);
    }
    let instant = DateTime::parse_from_rfc3339(text).map_err(|_| {
        bad(format!(
            "{name} '{text}' is neither a date (YYYY-MM-DD) nor an RFC 3339 instant"
        ))
    })?;
    let local = instant.to_utc().with_timezone(&calendar::NEW_YORK);
    let date = local.date_naive();
    if name == "end" && local.time() == chrono::NaiveTime::MIN {
        return date
            .pred_opt()
            .ok_or_else(|| bad(format!("{name} '{text}' is out of range")));
    }
    Ok(date)
}

impl FillRequest {
    pub fn new(
        dataset: Dataset,
        start: NaiveDate,
        end: NaiveDate,
        include_after_hours: bool,
    ) -> Result<Self, DatasetError> {
        if start > end {
            return Err(bad(format!("start {start} is after end {end}")));
        }
        // A range may be as long as the calendar: the engine plans it in the provider's units.
        for (name, date) in [("start", start), ("end", end)] {
            calendar::is_session(date).map_err(|e| bad(format!("{name}: {e}")))?;
        }
        Ok(FillRequest {
            dataset,
            start,
            end,
            include_after_hours,
            provider_expiration: None,
        })
    }

    /// The same request asking the provider for `expiration` (options only).
    pub fn with_provider_expiration(mut self, expiration: Option<NaiveDate>) -> Self {
        self.provider_expiration = expiration.filter(|_| self.dataset.contract.is_some());
        self
    }

    pub fn from_json(json: &str) -> Result<Self, DatasetError> {
        let fields = RawFields::parse(json)?;
        if let Some(unknown) = fields
            .names()
            .find(|n| !DATASET_FIELDS.contains(n) && !REQUEST_FIELDS.contains(n))
        {
            return Err(bad(format!(
                "unknown field '{unknown}' (expected: {}, {})",
                DATASET_FIELDS.join(", "),
                REQUEST_FIELDS.join(", ")
            )));
        }
        let dataset = Dataset::from_fields(&fields)?;
        let start = parse_bound("start", &fields.required_string("start")?)?;
        let end = parse_bound("end", &fields.required_string("end")?)?;
        let include_after_hours = fields.bool("include_after_hours")?.unwrap_or(true);
        Ok(FillRequest::new(dataset, start, end, include_after_hours)?
            .with_provider_expiration(provider_expiration(&fields)?))
    }

    /// The request as the miss-handler receives it.
    pub fn to_json(&self) -> String {
        #[derive(serde::Serialize)]
        struct Wire {
            #[serde(flatten)]
            dataset: crate::dataset::Payload,
            start: NaiveDate,
            end: NaiveDate,
            include_after_hours: bool,
        }
        serde_json::to_string(&Wire {
            dataset: crate::dataset::Payload {
                provider_expiration: self.provider_expiration,
                ..self.dataset.payload()
            },
            start: self.start,
            end: self.end,
            include_after_hours: self.include_after_hours,
        })
        .expect("a request serializes")
    }
}

/// Anything the miss-handler fills: price bars, corporate events or an option chain, told
/// apart by the request's `datastyle`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MissRequest {
    Bars(FillRequest),
    Events(EventsRequest),
    Chain(ChainRequest),
    /// Aggregate trades of a time range: one file per UTC day.
    Trades(TradesRequest),
}

impl MissRequest {
    pub fn from_json(json: &str) -> Result<Self, DatasetError> {
        let fields = RawFields::parse(json)?;
        let datastyle = fields.required_string("datastyle")?;
        if let Some(event_type) = EventType::parse(&datastyle) {
            return EventsRequest::from_fields(&fields, event_type).map(MissRequest::Events);
        }
        if datastyle.trim().eq_ignore_ascii_case(CHAINS_DATASTYLE) {
            return ChainRequest::from_fields(&fields).map(MissRequest::Chain);
        }
        if datastyle.trim().eq_ignore_ascii_case(AGGTRADES_DATASTYLE) {
            return TradesRequest::from_fields(&fields).map(MissRequest::Trades);
        }
        Datastyle::parse(&datastyle).map_err(|e| {
            bad(format!(
                "{e}; corporate events are 'splits' or 'dividends', option chains '{CHAINS_DATASTYLE}', trades '{AGGTRADES_DATASTYLE}'"
            ))
        })?;
        FillRequest::from_json(json).map(MissRequest::Bars)
    }

    /// The request as the miss-handler receives it.
    pub fn to_json(&self) -> String {
        match self {
            MissRequest::Bars(r) => r.to_json(),
            MissRequest::Events(r) => r.to_json(),
            MissRequest::Chain(r) => r.to_json(),
            MissRequest::Trades(r) => r.to_json(),
        }
    }

    /// The path, relative to the cache root, of the object the request fills (the first
    /// day's, for trades).
    pub fn relative_path(&self) -> String {
        match self {
            MissRequest::Bars(r) => crate::keys::relative_path(&r.dataset),
            MissRequest::Events(r) => r.set.relative_path(),
            MissRequest::Chain(r) => r.set.relative_path(),
            MissRequest::Trades(r) => r.days()[0].relative_path(),
        }
    }
}

impl From<FillRequest> for MissRequest {
    fn from(request: FillRequest) -> Self {
        MissRequest::Bars(request)
    }
}
