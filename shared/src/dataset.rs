//! Datasets as lumibot describes them (`build_remote_cache_payload`), parsed strictly.
//!
//! A payload is `{"provider","asset_type","symbol","timespan","datastyle"}` plus
//! `"expiration","strike","right"` for options. Everything that reaches a key is checked
//! here, so a path can never be built from bad input.

use std::fmt;

use chrono::{Datelike, NaiveDate};
use serde_json::value::RawValue;

use crate::pyfmt;

/// Why a payload or a key does not describe a dataset. The text is meant for a person.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct DatasetError(pub String);

fn bad(message: impl Into<String>) -> DatasetError {
    DatasetError(message.into())
}

/// The upstream a dataset is filled from; also the first segment of its key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Provider {
    ThetaData,
    /// Polygon.io (also sold as Massive): the same REST API.
    Polygon,
    /// Deterministic generated data for demos, load tests and benchmarks (not market data).
    Synthetic,
    /// Binance spot: aggregate trades only ([`crate::trades`]), no bars.
    Binance,
}

impl Provider {
    pub const ALL: [Provider; 4] = [
        Provider::ThetaData,
        Provider::Polygon,
        Provider::Synthetic,
        Provider::Binance,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Provider::ThetaData => "thetadata",
            Provider::Polygon => "polygon",
            Provider::Synthetic => "synthetic",
            Provider::Binance => "binance",
        }
    }

    pub fn parse(text: &str) -> Result<Self, DatasetError> {
        let lowered = text.trim().to_ascii_lowercase();
        if let Some(provider) = Provider::ALL.iter().find(|p| p.as_str() == lowered) {
            return Ok(*provider);
        }
        let supported = Provider::ALL.map(Provider::as_str).join(", ");
        if lowered == "databento" {
            return Err(bad(format!(
                "provider '{text}' is not supported yet (supported: {supported})"
            )));
        }
        Err(bad(format!(
            "unknown provider '{text}' (expected one of: {supported})"
        )))
    }
}

impl fmt::Display for Provider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AssetType {
    Stock,
    Option,
    Index,
}

impl AssetType {
    pub fn as_str(self) -> &'static str {
        match self {
            AssetType::Stock => "stock",
            AssetType::Option => "option",
            AssetType::Index => "index",
        }
    }

    pub fn parse(text: &str) -> Result<Self, DatasetError> {
        match text.trim().to_ascii_lowercase().as_str() {
            "stock" => Ok(AssetType::Stock),
            "option" => Ok(AssetType::Option),
            "index" => Ok(AssetType::Index),
            _ => Err(bad(format!(
                "unknown asset_type '{text}' (expected one of: stock, option, index)"
            ))),
        }
    }
}

impl fmt::Display for AssetType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Bar length of a dataset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BarInterval {
    Minutes(u32),
    Hour,
    Day,
}

impl BarInterval {
    pub fn is_intraday(self) -> bool {
        !matches!(self, BarInterval::Day)
    }

    pub fn seconds(self) -> u32 {
        match self {
            BarInterval::Minutes(n) => n * 60,
            BarInterval::Hour => 3600,
            BarInterval::Day => 86_400,
        }
    }
}

/// The timespan exactly as the payload gave it (it appears verbatim in the file name) and
/// what it means.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Timespan {
    text: String,
    interval: BarInterval,
}

impl Timespan {
    pub fn parse(text: &str) -> Result<Self, DatasetError> {
        check_text_field("timespan", text, 16)?;
        if !text.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Err(bad(format!(
                "timespan '{text}' may contain only letters and digits"
            )));
        }
        let lowered = text.to_ascii_lowercase();
        let interval = match lowered.as_str() {
            "minute" | "1m" | "1min" => BarInterval::Minutes(1),
            "5m" | "5min" => BarInterval::Minutes(5),
            "10m" | "10min" => BarInterval::Minutes(10),
            "15m" | "15min" => BarInterval::Minutes(15),
            "30m" | "30min" => BarInterval::Minutes(30),
            "hour" | "1h" | "60m" => BarInterval::Hour,
            "day" | "1d" => BarInterval::Day,
            _ => {
                return Err(bad(format!(
                    "unknown timespan '{text}' (expected minute, hour, day, or 1m, 5m, 10m, 15m, 30m, 1h, 1D)"
                )));
            }
        };
        Ok(Timespan {
            text: text.to_string(),
            interval,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    pub fn interval(&self) -> BarInterval {
        self.interval
    }

    /// The folder name lumibot uses: lower-cased, spaces replaced by `_`.
    pub fn folder(&self) -> String {
        self.text.to_ascii_lowercase()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DataKind {
    Ohlc,
    Quote,
}

/// The datastyle as given (verbatim in the file name) and its meaning.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Datastyle {
    text: String,
    kind: DataKind,
}

impl Datastyle {
    pub fn parse(text: &str) -> Result<Self, DatasetError> {
        check_text_field("datastyle", text, 16)?;
        let kind = match text.to_ascii_lowercase().as_str() {
            "ohlc" => DataKind::Ohlc,
            "quote" => DataKind::Quote,
            _ => {
                return Err(bad(format!(
                    "unknown datastyle '{text}' (expected ohlc or quote)"
                )));
            }
        };
        Ok(Datastyle {
            text: text.to_string(),
            kind,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    pub fn kind(&self) -> DataKind {
        self.kind
    }

    pub fn folder(&self) -> String {
        self.text.to_ascii_lowercase()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Right {
    Call,
    Put,
}

impl Right {
    pub fn as_str(self) -> &'static str {
        match self {
            Right::Call => "CALL",
            Right::Put => "PUT",
        }
    }

    pub fn parse(text: &str) -> Result<Self, DatasetError> {
        match text.trim().to_ascii_uppercase().as_str() {
            "CALL" => Ok(Right::Call),
            "PUT" => Ok(Right::Put),
            _ => Err(bad(format!("right '{text}' must be CALL or PUT"))),
        }
    }
}

/// An option strike: its value and its text as Python's `str()` prints the number lumibot
/// holds (`100` for an int, `250.0` for a float), which is part of the key.
#[derive(Debug, Clone, PartialEq)]
pub struct Strike {
    text: String,
    value: f64,
}

impl Eq for Strike {}

impl std::hash::Hash for Strike {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.text.hash(state);
    }
}

impl Strike {
    /// From the raw text of a JSON number (`250` and `250.0` are different strikes' keys).
    pub fn from_json_number(raw: &str) -> Result<Self, DatasetError> {
        let raw = raw.trim();
        let value: f64 = match serde_json::from_str::<serde_json::Value>(raw) {
            Ok(serde_json::Value::Number(n)) => n
                .as_f64()
                .ok_or_else(|| bad(format!("strike {raw} is not a finite number")))?,
            Ok(other) => {
                return Err(bad(format!(
                    "strike must be a JSON number, got {}",
                    json_kind(&other)
                )));
            }
            Err(_) => return Err(bad(format!("strike '{raw}' is not a JSON number"))),
        };
        if !value.is_finite() || value <= 0.0 {
            return Err(bad(format!(
                "strike {raw} must be a positive finite number"
            )));
        }
        if value >= 1e7 {
            return Err(bad(format!("strike {raw} is implausibly large")));
        }
        let text = pyfmt::python_str_of_json_number(raw)
            .ok_or_else(|| bad(format!("strike '{raw}' is not a JSON number")))?;
        Ok(Strike { text, value })
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    pub fn value(&self) -> f64 {
        self.value
    }

    /// The strike as a JSON number with the same Python spelling (`250` or `250.0`).
    pub fn as_number(&self) -> serde_json::Number {
        serde_json::from_str(&self.text).expect("a strike's text is a JSON number")
    }
}

/// lumibot's payload of a dataset, in the order `build_remote_cache_payload` builds it and
/// its sidecars record it (`cache_payload`, dates in ISO form).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Payload {
    pub provider: String,
    pub timespan: String,
    pub datastyle: String,
    pub asset_type: String,
    pub symbol: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expiration: Option<NaiveDate>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strike: Option<serde_json::Number>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub right: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quote: Option<String>,
    /// The expiration the provider is asked for (an OCC Saturday for some monthlies); not
    /// part of the dataset's identity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider_expiration: Option<NaiveDate>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct OptionContract {
    pub expiration: NaiveDate,
    pub strike: Strike,
    pub right: Right,
}

/// One cached dataset: what lumibot's payload names.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Dataset {
    pub provider: Provider,
    pub asset_type: AssetType,
    /// Upper-cased, within `[A-Z0-9._-]{1,32}`.
    pub symbol: String,
    pub timespan: Timespan,
    pub datastyle: Datastyle,
    /// Present exactly for options.
    pub contract: Option<OptionContract>,
    /// lumibot's quote asset, part of a Polygon stock's or index's file name
    /// (`stock_SPY_USD_minute.parquet`: lumibot's Polygon backtests always pass USD). Never
    /// set for an option (lumibot's option file names leave it out) or another provider.
    pub quote: Option<String>,
}

pub const MAX_SYMBOL_LEN: usize = 32;

/// The timespans lumibot's Polygon helper names files with (verbatim, lower-case).
pub const POLYGON_TIMESPANS: [&str; 3] = ["minute", "hour", "day"];

/// lumibot keeps Polygon's aggregate bars only, one file per timespan it asks Polygon for.
fn check_polygon(
    symbol: &str,
    timespan: &Timespan,
    datastyle: &Datastyle,
) -> Result<(), DatasetError> {
    // The file name joins symbol, quote and timespan with '_': a symbol holding one could
    // not be read back from its name (Polygon's tickers use '.', as in BRK.B).
    if symbol.contains('_') {
        return Err(bad(format!(
            "symbol '{symbol}' contains '_', which a Polygon file name cannot hold"
        )));
    }
    if !POLYGON_TIMESPANS.contains(&timespan.as_str()) {
        return Err(bad(format!(
            "timespan '{}' is not one lumibot's Polygon cache uses (expected one of: {})",
            timespan.as_str(),
            POLYGON_TIMESPANS.join(", ")
        )));
    }
    if datastyle.as_str() != "ohlc" {
        return Err(bad(format!(
            "datastyle '{}' is not available from polygon (lumibot caches its aggregate bars: ohlc)",
            datastyle.as_str()
        )));
    }
    Ok(())
}

/// Upper-case and check a symbol against `[A-Z0-9._-]{1,32}`.
pub fn normalize_symbol(text: &str) -> Result<String, DatasetError> {
    if text.is_empty() {
        return Err(bad("symbol is empty"));
    }
    if text.chars().any(char::is_control) {
        return Err(bad("symbol contains a control character"));
    }
    if text.contains('/') {
        return Err(bad(format!("symbol '{text}' contains '/'")));
    }
    if text.contains("..") {
        return Err(bad(format!("symbol '{text}' contains '..'")));
    }
    let upper = text.to_ascii_uppercase();
    if let Some(c) = upper
        .chars()
        .find(|c| !(c.is_ascii_uppercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-')))
    {
        return Err(bad(format!(
            "symbol '{text}' contains '{c}', outside the allowed set [A-Z0-9._-]"
        )));
    }
    if upper.len() > MAX_SYMBOL_LEN {
        return Err(bad(format!(
            "symbol '{text}' is longer than {MAX_SYMBOL_LEN} characters"
        )));
    }
    if !upper.chars().any(|c| c.is_ascii_alphanumeric()) {
        return Err(bad(format!("symbol '{text}' has no letter or digit")));
    }
    Ok(upper)
}

fn check_text_field(name: &str, text: &str, max: usize) -> Result<(), DatasetError> {
    if text.is_empty() {
        return Err(bad(format!("{name} is empty")));
    }
    if text.chars().any(char::is_control) {
        return Err(bad(format!("{name} contains a control character")));
    }
    if text.contains('/') || text.contains("..") {
        return Err(bad(format!("{name} '{text}' contains '/' or '..'")));
    }
    if text.len() > max {
        return Err(bad(format!("{name} is longer than {max} characters")));
    }
    Ok(())
}

/// What kind of JSON value this is, for messages (`expected a string, got a number`).
pub(crate) fn json_kind(value: &serde_json::Value) -> &'static str {
    match value {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

/// The fields of a JSON object kept as raw text, so numbers keep their spelling.
#[derive(Debug)]
pub struct RawFields<'a> {
    fields: Vec<(String, &'a RawValue)>,
}

impl<'a> RawFields<'a> {
    pub fn parse(json: &'a str) -> Result<Self, DatasetError> {
        let map: std::collections::BTreeMap<String, &'a RawValue> = serde_json::from_str(json)
            .map_err(|e| {
                if e.is_data() {
                    bad("payload must be a JSON object")
                } else {
                    bad(format!("payload is not valid JSON: {e}"))
                }
            })?;
        Ok(RawFields {
            fields: map.into_iter().collect(),
        })
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.fields.iter().map(|(k, _)| k.as_str())
    }

    /// The raw JSON text of a field, `None` when absent or `null`.
    pub fn raw(&self, name: &str) -> Option<&'a str> {
        self.fields
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.get().trim())
            .filter(|text| *text != "null")
    }

    pub fn string(&self, name: &str) -> Result<Option<String>, DatasetError> {
        match self.raw(name) {
            None => Ok(None),
            Some(text) => match serde_json::from_str::<serde_json::Value>(text) {
                Ok(serde_json::Value::String(s)) => Ok(Some(s)),
                Ok(other) => Err(bad(format!(
                    "field '{name}' must be a string, got {}",
                    json_kind(&other)
                ))),
                Err(e) => Err(bad(format!("field '{name}' is not valid JSON: {e}"))),
            },
        }
    }

    pub fn required_string(&self, name: &str) -> Result<String, DatasetError> {
        self.string(name)?
            .ok_or_else(|| bad(format!("missing field '{name}'")))
    }

    pub fn bool(&self, name: &str) -> Result<Option<bool>, DatasetError> {
        match self.raw(name) {
            None => Ok(None),
            Some("true") => Ok(Some(true)),
            Some("false") => Ok(Some(false)),
            Some(other) => Err(bad(format!(
                "field '{name}' must be true or false, got {other}"
            ))),
        }
    }
}

pub const DATASET_FIELDS: [&str; 10] = [
    "provider",
    "asset_type",
    "symbol",
    "timespan",
    "datastyle",
    "expiration",
    "strike",
    "right",
    "provider_expiration",
    "quote",
];

impl Dataset {
    /// Parse lumibot's payload JSON (only the dataset fields; see [`crate::fill::FillRequest`]
    /// for the miss-handler's request).
    pub fn from_json(json: &str) -> Result<Self, DatasetError> {
        let fields = RawFields::parse(json)?;
        if let Some(unknown) = fields.names().find(|n| !DATASET_FIELDS.contains(n)) {
            return Err(bad(format!(
                "unknown field '{unknown}' (expected: {})",
                DATASET_FIELDS.join(", ")
            )));
        }
        Dataset::from_fields(&fields)
    }

    pub fn from_fields(fields: &RawFields<'_>) -> Result<Self, DatasetError> {
        let provider = Provider::parse(&fields.required_string("provider")?)?;
        let asset_type = AssetType::parse(&fields.required_string("asset_type")?)?;
        let symbol = normalize_symbol(&fields.required_string("symbol")?)?;
        let timespan = Timespan::parse(&fields.required_string("timespan")?)?;
        let datastyle = Datastyle::parse(&fields.required_string("datastyle")?)?;
        let contract = if asset_type == AssetType::Option {
            let expiration = fields.string("expiration")?.ok_or_else(|| {
                bad("option payload requires 'expiration' (YYYY-MM-DD)".to_string())
            })?;
            let strike = fields
                .raw("strike")
                .ok_or_else(|| bad("option payload requires 'strike'"))?;
            let right = fields
                .string("right")?
                .ok_or_else(|| bad("option payload requires 'right' (CALL or PUT)"))?;
            // Checked here so a bad value is refused wherever a payload is read; it names a
            // query parameter, not the dataset, so it is kept by the request, not here.
            provider_expiration(fields)?;
            let expiration = parse_date("expiration", &expiration)?;
            // lumibot's file name holds the expiration as `%y%m%d`: only years 2000–2099
            // name one contract each.
            if !EXPIRATION_YEARS.contains(&expiration.year()) {
                return Err(bad(format!(
                    "expiration {expiration} is outside {}–{}, the years a cache key can name",
                    EXPIRATION_YEARS.start(),
                    EXPIRATION_YEARS.end()
                )));
            }
            Some(OptionContract {
                expiration,
                strike: Strike::from_json_number(strike)?,
                right: Right::parse(&right)?,
            })
        } else {
            for name in ["expiration", "strike", "right", "provider_expiration"] {
                if fields.raw(name).is_some() {
                    return Err(bad(format!(
                        "field '{name}' is only valid for options (asset_type is {asset_type})"
                    )));
                }
            }
            None
        };
        Dataset::new(provider, asset_type, symbol, timespan, datastyle, contract)?
            .with_quote(fields.string("quote")?)
    }

    /// The dataset named with lumibot's quote asset (`None` leaves it as it is). lumibot's
    /// Polygon helper names a stock's or index's file by it and ignores it for an option, so
    /// an option keeps none; other providers' file names have no place for it.
    pub fn with_quote(mut self, quote: Option<String>) -> Result<Self, DatasetError> {
        let Some(quote) = quote else {
            return Ok(self);
        };
        if self.provider != Provider::Polygon {
            return Err(bad(format!(
                "field 'quote' is only valid for polygon datasets (lumibot names {} files without it)",
                self.provider
            )));
        }
        let quote = normalize_symbol(&quote).map_err(|e| bad(format!("quote: {}", e.0)))?;
        if quote.contains('_') {
            return Err(bad(format!(
                "quote '{quote}' contains '_', which a Polygon file name cannot hold"
            )));
        }
        if self.asset_type != AssetType::Option {
            self.quote = Some(quote);
        }
        Ok(self)
    }

    /// Check the combination of parts (used by every constructor).
    pub fn new(
        provider: Provider,
        asset_type: AssetType,
        symbol: String,
        timespan: Timespan,
        datastyle: Datastyle,
        contract: Option<OptionContract>,
    ) -> Result<Self, DatasetError> {
        let symbol = normalize_symbol(&symbol)?;
        if asset_type == AssetType::Index && datastyle.kind() == DataKind::Quote {
            return Err(bad(
                "datastyle 'quote' is not available for index datasets (indices have no quotes)",
            ));
        }
        if (asset_type == AssetType::Option) != contract.is_some() {
            return Err(bad(
                "an option needs expiration, strike and right; other assets must not have them",
            ));
        }
        if provider == Provider::Polygon {
            check_polygon(&symbol, &timespan, &datastyle)?;
        }
        if provider == Provider::Binance {
            return Err(bad(
                "provider 'binance' has no bars: ask for asset_type 'crypto', timespan 'tick', datastyle 'aggtrades'",
            ));
        }
        Ok(Dataset {
            provider,
            asset_type,
            symbol,
            timespan,
            datastyle,
            contract,
            quote: None,
        })
    }

    /// lumibot's payload for this dataset.
    pub fn payload(&self) -> Payload {
        Payload {
            provider: self.provider.as_str().to_string(),
            timespan: self.timespan.as_str().to_string(),
            datastyle: self.datastyle.as_str().to_string(),
            asset_type: self.asset_type.as_str().to_string(),
            symbol: self.symbol.clone(),
            expiration: self.contract.as_ref().map(|c| c.expiration),
            strike: self.contract.as_ref().map(|c| c.strike.as_number()),
            right: self.contract.as_ref().map(|c| c.right.as_str().to_string()),
            quote: self.quote.clone(),
            provider_expiration: None,
        }
    }

    /// The payload as JSON; the strike keeps its spelling (`250` and `250.0` differ).
    pub fn to_json(&self) -> String {
        serde_json::to_string(&self.payload()).expect("a payload serializes")
    }

    pub fn is_intraday(&self) -> bool {
        self.timespan.interval().is_intraday()
    }

    pub fn kind(&self) -> DataKind {
        self.datastyle.kind()
    }

    /// The last session this dataset can have rows for (an option's expiration).
    pub fn last_session(&self) -> Option<NaiveDate> {
        self.contract.as_ref().map(|c| c.expiration)
    }
}

impl fmt::Display for Dataset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} {}", self.provider, self.asset_type, self.symbol)?;
        if let Some(quote) = &self.quote {
            write!(f, "/{quote}")?;
        }
        if let Some(c) = &self.contract {
            write!(
                f,
                " {} {} {}",
                c.expiration,
                c.strike.as_str(),
                c.right.as_str()
            )?;
        }
        write!(f, " {} {}", self.timespan.as_str(), self.datastyle.as_str())
    }
}

/// A payload's `provider_expiration` (lumibot 4.6 adds it to option payloads): the
/// expiration to ask the provider for.
pub fn provider_expiration(fields: &RawFields<'_>) -> Result<Option<NaiveDate>, DatasetError> {
    fields
        .string("provider_expiration")?
        .map(|text| parse_date("provider_expiration", &text))
        .transpose()
}

/// A `YYYY-MM-DD` date.
/// The expiration years an option's cache key can name (`%y` in lumibot's file name).
pub const EXPIRATION_YEARS: std::ops::RangeInclusive<i32> = 2000..=2099;

pub fn parse_date(name: &str, text: &str) -> Result<NaiveDate, DatasetError> {
    let valid_shape = text.len() == 10
        && text.bytes().enumerate().all(|(i, b)| {
            if i == 4 || i == 7 {
                b == b'-'
            } else {
                b.is_ascii_digit()
            }
        });
    if !valid_shape {
        return Err(bad(format!("{name} '{text}' is not a date (YYYY-MM-DD)")));
    }
    NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .map_err(|_| bad(format!("{name} '{text}' is not a valid calendar date")))
}

#[cfg(test)]
mod tests {
    #[test]
    fn an_expiration_a_key_cannot_name_is_refused() {
        // Found by fuzzing: 1012-01-19 would share the key of 2012-01-19.
        let err = Dataset::from_json(
            r#"{"provider":"thetadata","timespan":"day","datastyle":"ohlc","asset_type":"option","symbol":"SPY","expiration":"1012-01-19","strike":470,"right":"CALL"}"#,
        )
        .unwrap_err();
        assert!(err.to_string().contains("2000–2099"), "{err}");
    }

    use super::*;

    fn ok(json: &str) -> Dataset {
        Dataset::from_json(json).unwrap_or_else(|e| panic!("{json}: {e}"))
    }

    #[test]
    fn stock_payload_parses_and_uppercases_symbol() {
        let d = ok(
            r#"{"provider":"thetadata","asset_type":"stock","symbol":"spy","timespan":"minute","datastyle":"ohlc"}"#,
        );
        assert_eq!(d.symbol, "SPY");
        assert_eq!(d.timespan.interval(), BarInterval::Minutes(1));
        assert!(d.contract.is_none());
    }

    #[test]
    fn option_payload_keeps_strike_spelling() {
        let d = ok(
            r#"{"provider":"thetadata","asset_type":"option","symbol":"SPY","timespan":"1D","datastyle":"ohlc","expiration":"2023-08-01","strike":250.0,"right":"call"}"#,
        );
        let c = d.contract.as_ref().unwrap();
        assert_eq!(c.strike.as_str(), "250.0");
        assert_eq!(c.right, Right::Call);
        assert_eq!(d.timespan.interval(), BarInterval::Day);
        // Round trip through our own payload keeps the strike text.
        assert_eq!(Dataset::from_json(&d.to_json()).unwrap(), d);
    }

    #[test]
    fn strikes_print_as_python_str() {
        for (raw, text) in [
            ("100", "100"),
            ("250.0", "250.0"),
            ("412.5", "412.5"),
            ("0.5", "0.5"),
            ("187.55", "187.55"),
            ("250.50", "250.5"),
            ("1e2", "100.0"),
            ("0.0001", "0.0001"),
            ("0.00005", "5e-05"),
        ] {
            assert_eq!(
                Strike::from_json_number(raw).unwrap().as_str(),
                text,
                "{raw}"
            );
        }
    }
}
