//! Where a dataset lives: lumibot's relative path, the remote key, the reserved areas, and
//! the strict way back from a key to its dataset.
//!
//! ```text
//! <provider>/<asset_type>/<timespan lower>/<datastyle lower>/
//!     <asset_type>_<UNIQ>_<timespan as given>_<datastyle as given>.parquet
//! UNIQ = SYMBOL | SYMBOL_<expiration %y%m%d>_<strike as Python str()>_<RIGHT>
//! ```
//!
//! lumibot keeps Polygon's files flat (`polygon_helper.build_cache_filename`), without the
//! datastyle, which is always `ohlc` there:
//!
//! ```text
//! polygon/<asset_type>_<UNIQ>_<timespan>.parquet
//! UNIQ = SYMBOL | SYMBOL_<QUOTE> | the option's UNIQ above
//! ```

use chrono::{Datelike, NaiveDate};

use crate::dataset::{
    AssetType, Dataset, DatasetError, Datastyle, OptionContract, Provider, Right, Strike, Timespan,
};
use crate::format::{
    AUDIT_AREA, LEASE_AREA, MANIFEST_AREA, PARQUET_SUFFIX, QUARANTINE_AREA, SIDECAR_SUFFIX,
    TEMP_MARKER, VERSION_AREAS,
};
use crate::others::OtherKind;

fn uniq(dataset: &Dataset) -> String {
    match &dataset.contract {
        None => match &dataset.quote {
            None => dataset.symbol.clone(),
            Some(quote) => format!("{}_{quote}", dataset.symbol),
        },
        Some(c) => format!(
            "{}_{}_{}_{}",
            dataset.symbol,
            c.expiration.format("%y%m%d"),
            c.strike.as_str(),
            c.right.as_str()
        ),
    }
}

/// Whether lumibot keeps this dataset's files flat under its provider's folder.
fn is_flat(provider: Provider) -> bool {
    provider == Provider::Polygon
}

/// The file name of a dataset's parquet.
pub fn file_name(dataset: &Dataset) -> String {
    let (asset, uniq, timespan) = (
        dataset.asset_type.as_str(),
        uniq(dataset),
        dataset.timespan.as_str(),
    );
    if is_flat(dataset.provider) {
        format!("{asset}_{uniq}_{timespan}{PARQUET_SUFFIX}")
    } else {
        let datastyle = dataset.datastyle.as_str();
        format!("{asset}_{uniq}_{timespan}_{datastyle}{PARQUET_SUFFIX}")
    }
}

/// The path under the lumibot cache root (and under `<prefix>/<version>/` remotely).
pub fn relative_path(dataset: &Dataset) -> String {
    if is_flat(dataset.provider) {
        return format!("{}/{}", dataset.provider.as_str(), file_name(dataset));
    }
    format!(
        "{}/{}/{}/{}/{}",
        dataset.provider.as_str(),
        dataset.asset_type.as_str(),
        dataset.timespan.folder(),
        dataset.datastyle.folder(),
        file_name(dataset)
    )
}

/// lumibot's `"/".join(c.strip("/") for c in [prefix or None, version, rel] if c)`.
pub fn join_key(parts: &[&str]) -> String {
    parts
        .iter()
        .filter(|part| !part.is_empty())
        .map(|part| part.trim_matches('/'))
        .collect::<Vec<_>>()
        .join("/")
}

/// The prefix and version every key of one cache lives under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyLayout {
    prefix: String,
    version: String,
}

/// What a key in the bucket is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyKind {
    /// A dataset's parquet.
    Data(Dataset),
    /// A dataset's `.meta.json` sidecar.
    Sidecar(Dataset),
    /// `_manifest/`, `_quarantine/`, `_leases/` or `_audit/`: never data.
    Reserved(&'static str),
    /// A lumibot upload in flight (`.tmp-` in the key).
    Temporary,
    /// Outside this layout's prefix and version.
    Foreign,
    /// Another object lumibot keeps under the layout (chains, events, snapshots, …).
    Other(OtherKind),
}

impl KeyLayout {
    /// Prefix and version are cleaned as lumibot cleans its settings (spaces and `/` stripped;
    /// an empty version means `v1`).
    pub fn new(prefix: &str, version: &str) -> Self {
        let version = version.trim().trim_matches('/');
        KeyLayout {
            prefix: prefix.trim().trim_matches('/').to_string(),
            version: if version.is_empty() { "v1" } else { version }.to_string(),
        }
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    pub fn version(&self) -> &str {
        &self.version
    }

    /// `<prefix>/<version>`, the root of data and reserved areas.
    pub fn root(&self) -> String {
        join_key(&[&self.prefix, &self.version])
    }

    /// The remote key of a path relative to the cache root.
    pub fn key_for_relative(&self, relative: &str) -> String {
        join_key(&[&self.prefix, &self.version, relative])
    }

    pub fn data_key(&self, dataset: &Dataset) -> String {
        self.key_for_relative(&relative_path(dataset))
    }

    pub fn sidecar_key(&self, dataset: &Dataset) -> String {
        format!("{}{SIDECAR_SUFFIX}", self.data_key(dataset))
    }

    pub fn manifest_key(&self, dataset: &Dataset) -> String {
        self.manifest_key_of(&relative_path(dataset))
    }

    pub fn lease_key(&self, dataset: &Dataset) -> String {
        self.lease_key_of(&relative_path(dataset))
    }

    /// Folder (ending in `/`) of a dataset's quarantined versions.
    pub fn quarantine_prefix(&self, dataset: &Dataset) -> String {
        self.quarantine_prefix_of(&relative_path(dataset))
    }

    /// The manifest of the object at `relative` (any object the validator records).
    pub fn manifest_key_of(&self, relative: &str) -> String {
        join_key(&[&self.root(), MANIFEST_AREA, &format!("{relative}.json")])
    }

    /// The lease of a fill of the object at `relative`.
    pub fn lease_key_of(&self, relative: &str) -> String {
        join_key(&[&self.root(), LEASE_AREA, &format!("{relative}.lease")])
    }

    /// Folder (ending in `/`) of the quarantined versions of the object at `relative`.
    pub fn quarantine_prefix_of(&self, relative: &str) -> String {
        format!("{}/", join_key(&[&self.root(), QUARANTINE_AREA, relative]))
    }

    /// Folder (ending in `/`) of the audit records of day `date`.
    pub fn audit_prefix(&self, date: NaiveDate) -> String {
        format!(
            "{}/",
            join_key(&[
                &self.prefix,
                AUDIT_AREA,
                &format!("dt={}", date.format("%Y-%m-%d"))
            ])
        )
    }

    /// The path relative to the cache root of a key under this layout.
    pub fn relative_of<'k>(&self, key: &'k str) -> Option<&'k str> {
        let root = self.root();
        key.strip_prefix(root.as_str())?.strip_prefix('/')
    }

    /// Say what a key is. Data and sidecar keys must parse back to exactly themselves.
    pub fn classify(&self, key: &str) -> Result<KeyKind, DatasetError> {
        if !self.prefix.is_empty() {
            let audit = join_key(&[&self.prefix, AUDIT_AREA]);
            if key.starts_with(&format!("{audit}/")) {
                return Ok(KeyKind::Reserved(AUDIT_AREA));
            }
        } else if key.starts_with(&format!("{AUDIT_AREA}/")) {
            return Ok(KeyKind::Reserved(AUDIT_AREA));
        }
        let Some(relative) = self.relative_of(key) else {
            return Ok(KeyKind::Foreign);
        };
        for area in VERSION_AREAS {
            if relative.starts_with(&format!("{area}/")) {
                return Ok(KeyKind::Reserved(area));
            }
        }
        if key.contains(TEMP_MARKER) {
            return Ok(KeyKind::Temporary);
        }
        if let Some(kind) = OtherKind::of(relative) {
            return Ok(KeyKind::Other(kind));
        }
        if let Some(data) = relative.strip_suffix(SIDECAR_SUFFIX) {
            return parse_relative_path(data).map(KeyKind::Sidecar);
        }
        parse_relative_path(relative).map(KeyKind::Data)
    }

    /// The dataset of a data key under this layout.
    pub fn parse_data_key(&self, key: &str) -> Result<Dataset, DatasetError> {
        match self.classify(key)? {
            KeyKind::Data(dataset) => Ok(dataset),
            KeyKind::Foreign => Err(DatasetError(format!(
                "key '{key}' is not under '{}/'",
                self.root()
            ))),
            other => Err(DatasetError(format!(
                "key '{key}' is not a dataset's parquet ({other:?})"
            ))),
        }
    }
}

fn key_error(path: &str, why: impl std::fmt::Display) -> DatasetError {
    DatasetError(format!("'{path}' is not a cache path: {why}"))
}

/// Parse `<provider>/<asset_type>/<timespan>/<datastyle>/<file>.parquet` strictly: the
/// result rebuilds exactly the same path, or the path is rejected.
pub fn parse_relative_path(path: &str) -> Result<Dataset, DatasetError> {
    if path.chars().any(char::is_control) {
        return Err(key_error(path, "contains a control character"));
    }
    let segments: Vec<&str> = path.split('/').collect();
    if segments.iter().any(|s| s.is_empty()) {
        return Err(key_error(path, "empty path segment"));
    }
    if segments.contains(&"..") || segments.contains(&".") {
        return Err(key_error(path, "'.' or '..' segment"));
    }
    let provider = Provider::parse(segments[0]).map_err(|e| key_error(path, e))?;
    if provider.as_str() != segments[0] {
        return Err(key_error(path, "provider folder must be lower-case"));
    }
    let (file, folders) = if is_flat(provider) {
        let [_, file] = segments[..] else {
            return Err(key_error(
                path,
                format!("expected {provider}/<asset_type>_<UNIQ>_<timespan>.parquet"),
            ));
        };
        (file, None)
    } else {
        // The timespan and datastyle folders are checked by rebuilding the path.
        let [_, asset_folder, _, _, file] = segments[..] else {
            return Err(key_error(
                path,
                "expected <provider>/<asset_type>/<timespan>/<datastyle>/<file>.parquet",
            ));
        };
        (file, Some(asset_folder))
    };
    let asset_text = match folders {
        Some(asset_folder) => asset_folder,
        None => file.split('_').next().unwrap_or_default(),
    };
    let asset_type = AssetType::parse(asset_text).map_err(|e| key_error(path, e))?;
    if asset_type.as_str() != asset_text {
        return Err(key_error(path, "asset type must be lower-case"));
    }
    let stem = file
        .strip_suffix(PARQUET_SUFFIX)
        .ok_or_else(|| key_error(path, "file name must end in .parquet"))?;
    let stem = stem
        .strip_prefix(asset_type.as_str())
        .and_then(|s| s.strip_prefix('_'))
        .ok_or_else(|| {
            key_error(
                path,
                format!("file name must start with '{}_'", asset_type.as_str()),
            )
        })?;
    // Timespan and datastyle have no '_', so they are the last parts; the symbol may.
    let (uniq, timespan_text, datastyle_text) = if folders.is_some() {
        let mut parts: Vec<&str> = stem.rsplitn(3, '_').collect();
        if parts.len() != 3 {
            return Err(key_error(path, "file name lacks timespan or datastyle"));
        }
        let (datastyle, timespan) = (parts.remove(0), parts.remove(0));
        (parts.remove(0), timespan, datastyle)
    } else {
        let Some((uniq, timespan)) = stem.rsplit_once('_') else {
            return Err(key_error(path, "file name lacks the timespan"));
        };
        (uniq, timespan, "ohlc")
    };
    let timespan = Timespan::parse(timespan_text).map_err(|e| key_error(path, e))?;
    let datastyle = Datastyle::parse(datastyle_text).map_err(|e| key_error(path, e))?;
    let (symbol, contract) = if asset_type == AssetType::Option {
        let mut parts: Vec<&str> = uniq.rsplitn(4, '_').collect();
        if parts.len() != 4 {
            return Err(key_error(
                path,
                "an option file name needs SYMBOL_YYMMDD_STRIKE_RIGHT",
            ));
        }
        let (right, strike, expiry, symbol) = (
            parts.remove(0),
            parts.remove(0),
            parts.remove(0),
            parts.remove(0),
        );
        let expiration = parse_yymmdd(expiry)
            .ok_or_else(|| key_error(path, format!("expiration '{expiry}' is not YYMMDD")))?;
        if right != right.to_ascii_uppercase() {
            return Err(key_error(path, "right must be upper-case"));
        }
        let contract = OptionContract {
            expiration,
            strike: Strike::from_json_number(strike).map_err(|e| key_error(path, e))?,
            right: Right::parse(right).map_err(|e| key_error(path, e))?,
        };
        (symbol, Some(contract))
    } else {
        (uniq, None)
    };
    // A flat (Polygon) stock or index name may carry lumibot's quote asset after the symbol;
    // neither holds a '_'.
    let (symbol, quote) = match symbol.split_once('_') {
        Some((symbol, quote)) if is_flat(provider) && contract.is_none() => {
            (symbol, Some(quote.to_string()))
        }
        _ => (symbol, None),
    };
    let dataset = Dataset::new(
        provider,
        asset_type,
        symbol.to_string(),
        timespan,
        datastyle,
        contract,
    )
    .and_then(|d| d.with_quote(quote))
    .map_err(|e| key_error(path, e))?;
    let rebuilt = relative_path(&dataset);
    if rebuilt != path {
        return Err(key_error(
            path,
            format!("not in canonical form (expected '{rebuilt}')"),
        ));
    }
    Ok(dataset)
}

fn parse_yymmdd(text: &str) -> Option<NaiveDate> {
    if text.len() != 6 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let yy: i32 = text[..2].parse().ok()?;
    let date =
        NaiveDate::from_ymd_opt(2000 + yy, text[2..4].parse().ok()?, text[4..].parse().ok()?)?;
    debug_assert!(crate::dataset::EXPIRATION_YEARS.contains(&date.year()));
    Some(date)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dataset(json: &str) -> Dataset {
        Dataset::from_json(json).unwrap_or_else(|e| panic!("{json}: {e}"))
    }

    #[test]
    fn design_examples_byte_for_byte() {
        let staged = KeyLayout::new("stage/cache", "v3");
        let cases = [
            (
                r#"{"provider":"thetadata","asset_type":"stock","symbol":"SPY","timespan":"minute","datastyle":"ohlc"}"#,
                "stage/cache/v3/thetadata/stock/minute/ohlc/stock_SPY_minute_ohlc.parquet",
            ),
            (
                r#"{"provider":"thetadata","asset_type":"stock","symbol":"SPY","timespan":"1D","datastyle":"quote"}"#,
                "stage/cache/v3/thetadata/stock/1d/quote/stock_SPY_1D_quote.parquet",
            ),
            (
                r#"{"provider":"thetadata","asset_type":"option","symbol":"SPY","timespan":"1D","datastyle":"ohlc","expiration":"2023-08-01","strike":100,"right":"CALL"}"#,
                "stage/cache/v3/thetadata/option/1d/ohlc/option_SPY_230801_100_CALL_1D_ohlc.parquet",
            ),
            (
                r#"{"provider":"thetadata","asset_type":"option","symbol":"tsla","timespan":"minute","datastyle":"quote","expiration":"2024-11-22","strike":340,"right":"put"}"#,
                "stage/cache/v3/thetadata/option/minute/quote/option_TSLA_241122_340_PUT_minute_quote.parquet",
            ),
        ];
        for (json, key) in cases {
            let d = dataset(json);
            assert_eq!(staged.data_key(&d), key);
            assert_eq!(staged.parse_data_key(key).unwrap(), d, "{key}");
            assert_eq!(staged.sidecar_key(&d), format!("{key}.meta.json"));
        }
        let index = dataset(
            r#"{"provider":"thetadata","asset_type":"index","symbol":"SPX","timespan":"day","datastyle":"ohlc"}"#,
        );
        let bare = KeyLayout::new("", "v1");
        assert_eq!(
            bare.data_key(&index),
            "v1/thetadata/index/day/ohlc/index_SPX_day_ohlc.parquet"
        );
    }
}

#[cfg(test)]
mod polygon_tests {
    use super::*;

    fn dataset(json: &str) -> Dataset {
        Dataset::from_json(json).unwrap_or_else(|e| panic!("{json}: {e}"))
    }

    /// lumibot 4.6.30's `polygon_helper.build_cache_filename` for the same assets.
    #[test]
    fn polygon_files_are_flat_as_lumibot_names_them() {
        let cases = [
            (
                r#"{"provider":"polygon","asset_type":"stock","symbol":"spy","timespan":"day","datastyle":"ohlc"}"#,
                "polygon/stock_SPY_day.parquet",
            ),
            (
                r#"{"provider":"polygon","asset_type":"stock","symbol":"BRK.B","timespan":"minute","datastyle":"ohlc"}"#,
                "polygon/stock_BRK.B_minute.parquet",
            ),
            (
                r#"{"provider":"polygon","asset_type":"index","symbol":"SPX","timespan":"hour","datastyle":"ohlc"}"#,
                "polygon/index_SPX_hour.parquet",
            ),
            (
                r#"{"provider":"polygon","asset_type":"option","symbol":"SPY","timespan":"day","datastyle":"ohlc","expiration":"2024-11-22","strike":340,"right":"call"}"#,
                "polygon/option_SPY_241122_340_CALL_day.parquet",
            ),
            (
                r#"{"provider":"polygon","asset_type":"option","symbol":"SPY","timespan":"minute","datastyle":"ohlc","expiration":"2024-11-22","strike":342.5,"right":"PUT"}"#,
                "polygon/option_SPY_241122_342.5_PUT_minute.parquet",
            ),
            // lumibot's Polygon backtests pass the quote asset (USD): it joins the name,
            // except an option's.
            (
                r#"{"provider":"polygon","asset_type":"stock","symbol":"SPY","timespan":"minute","datastyle":"ohlc","quote":"USD"}"#,
                "polygon/stock_SPY_USD_minute.parquet",
            ),
            (
                r#"{"provider":"polygon","asset_type":"index","symbol":"SPX","timespan":"day","datastyle":"ohlc","quote":"usd"}"#,
                "polygon/index_SPX_USD_day.parquet",
            ),
            (
                r#"{"provider":"polygon","asset_type":"option","symbol":"SPY","timespan":"day","datastyle":"ohlc","expiration":"2024-11-22","strike":340,"right":"CALL","quote":"USD"}"#,
                "polygon/option_SPY_241122_340_CALL_day.parquet",
            ),
        ];
        let layout = KeyLayout::new("cache", "v1");
        for (json, relative) in cases {
            let d = dataset(json);
            assert_eq!(relative_path(&d), relative);
            assert_eq!(parse_relative_path(relative).unwrap(), d, "{relative}");
            let key = format!("cache/v1/{relative}");
            assert_eq!(layout.classify(&key).unwrap(), KeyKind::Data(d.clone()));
            assert_eq!(
                layout.classify(&format!("{key}.meta.json")).unwrap(),
                KeyKind::Sidecar(d)
            );
        }
    }

    #[test]
    fn polygon_paths_parse_back_strictly() {
        for (path, why) in [
            (
                "polygon/stock/day/ohlc/stock_SPY_day_ohlc.parquet",
                "expected polygon/",
            ),
            ("polygon/stock_SPY_1d.parquet", "timespan '1d' is not one"),
            ("polygon/stock_SPY_Day.parquet", "timespan 'Day' is not one"),
            ("polygon/Stock_SPY_day.parquet", "lower-case"),
            ("polygon/stock_spy_day.parquet", "canonical form"),
            ("Polygon/stock_SPY_day.parquet", "lower-case"),
            ("polygon/stock_SPY.parquet", "lacks the timespan"),
            ("thetadata/stock_SPY_day.parquet", "expected <provider>/"),
            (
                "polygon/stock_SPY_USD_EUR_day.parquet",
                "quote 'USD_EUR' contains '_'",
            ),
            ("polygon/stock_SPY__day.parquet", "quote: symbol is empty"),
            ("polygon/stock_SPY_usd_day.parquet", "canonical form"),
        ] {
            let err = parse_relative_path(path).unwrap_err().0;
            assert!(err.contains(why), "{path}: {err}");
        }
        let quote = Dataset::from_json(
            r#"{"provider":"polygon","asset_type":"stock","symbol":"SPY","timespan":"day","datastyle":"quote"}"#,
        )
        .unwrap_err();
        assert!(quote.0.contains("not available from polygon"), "{quote}");
        for (json, why) in [
            (
                r#"{"provider":"thetadata","asset_type":"stock","symbol":"SPY","timespan":"day","datastyle":"ohlc","quote":"USD"}"#,
                "only valid for polygon datasets",
            ),
            (
                r#"{"provider":"polygon","asset_type":"stock","symbol":"BRK_B","timespan":"day","datastyle":"ohlc"}"#,
                "contains '_'",
            ),
            (
                r#"{"provider":"polygon","asset_type":"stock","symbol":"SPY","timespan":"day","datastyle":"ohlc","quote":"US/D"}"#,
                "quote: symbol 'US/D' contains '/'",
            ),
        ] {
            let err = Dataset::from_json(json).unwrap_err().0;
            assert!(err.contains(why), "{json}: {err}");
        }
    }

    #[test]
    fn lumibots_other_polygon_objects_are_recognised() {
        let layout = KeyLayout::new("", "v1");
        for (key, kind) in [
            (
                "v1/polygon/stock_SPY_day_splits.parquet",
                OtherKind::PolygonSplits,
            ),
            (
                "v1/polygon/option_chains/SPY_2024-11-15.parquet",
                OtherKind::PolygonChain,
            ),
        ] {
            assert_eq!(layout.classify(key).unwrap(), KeyKind::Other(kind), "{key}");
        }
    }
}
