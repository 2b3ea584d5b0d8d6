//! Configuration read from environment variables: the one module that reads the process
//! environment (`docs/ARCHITECTURE.md` §12). Each binary reads the settings it uses
//! once, at start, and hands them to the composition root ([`crate::runtime`]).
//!
//! Client side (backtest jobs). The `LUMIBOT_CACHE_*` variables follow
//! lumibot's `BacktestCacheSettings.from_env` exactly: same defaults, same
//! trimming and lower-casing, same check order (backend, off-values, unknown
//! mode, bucket) and byte-identical error messages, so a job configured for
//! lumibot behaves the same here.
//!
//! | variable | default | meaning |
//! |---|---|---|
//! | `LUMIBOT_CACHE_BACKEND` | `local` | `s3` turns the remote cache on; anything else leaves it off |
//! | `LUMIBOT_CACHE_MODE` | `disabled` | `disabled`/`off`/`local` → off; `readwrite`/`rw`/`s3_readwrite`; `readonly`/`ro`/`s3_readonly`; anything else is an error |
//! | `LUMIBOT_CACHE_S3_BUCKET` | — | bucket of the remote cache; required when it is on |
//! | `LUMIBOT_CACHE_S3_PREFIX` | empty | key prefix; surrounding whitespace, then surrounding `/`, removed |
//! | `LUMIBOT_CACHE_S3_REGION` | AWS chain | region of the bucket |
//! | `LUMIBOT_CACHE_S3_ACCESS_KEY_ID` | AWS chain | static credentials; unset means the standard AWS credential chain |
//! | `LUMIBOT_CACHE_S3_SECRET_ACCESS_KEY` | AWS chain | static credentials (never logged) |
//! | `LUMIBOT_CACHE_S3_SESSION_TOKEN` | none | session token of temporary credentials (never logged) |
//! | `LUMIBOT_CACHE_S3_VERSION` | `v1` | namespace under the prefix; trimmed like the prefix, empty means `v1` |
//! | `LUMIBOT_CACHE_FILL_FUNCTION` | none | Lambda function name or ARN invoked on a readonly miss (ours) |
//! | `LUMIBOT_CACHE_FOLDER` | lumibot's cache dir | local cache root, used verbatim like lumibot does (ours) |
//! | `AWS_ENDPOINT_URL_S3`, then `AWS_ENDPOINT_URL` | AWS | S3-compatible endpoint, addressed path-style |
//! | `AWS_ENDPOINT_URL_LAMBDA`, then `AWS_ENDPOINT_URL` | AWS | Lambda-compatible endpoint of the fill function |
//!
//! lumibot's default cache folder is `$XDG_CACHE_HOME/lumibot/1.0` (falling back
//! to `~/.cache/lumibot/1.0`) on Linux, `~/Library/Caches/lumibot/1.0` on macOS
//! and `%LOCALAPPDATA%\LumiWealth\lumibot\Cache\1.0` on Windows.
//!
//! Function side (the Lambdas):
//!
//! | variable | read by | default | meaning |
//! |---|---|---|---|
//! | `CACHE_BUCKET` | both | — | bucket holding the cache; required |
//! | `CACHE_PREFIX` | both | empty | key prefix, trimmed like `LUMIBOT_CACHE_S3_PREFIX` |
//! | `CACHE_VERSION` | both | `v1` | namespace under the prefix, trimmed like `LUMIBOT_CACHE_S3_VERSION` |
//! | `AWS_ENDPOINT_URL_S3`, then `AWS_ENDPOINT_URL` | both | AWS | S3-compatible endpoint, addressed path-style (ignored when `AWS_IGNORE_CONFIGURED_ENDPOINT_URLS=true`) |
//! | `CACHE_PROVIDERS` | miss-handler | `thetadata` | providers this deployment serves, comma-separated (`thetadata`, `polygon`, `synthetic`, `binance`); the embedded default serves all (polygon only when `POLYGON_API_KEY` is set) |
//! | `THETADATA_BASE_URL` | miss-handler | `http://127.0.0.1:25503` | ThetaData terminal; a trailing `/` or `/v3` is dropped |
//! | `POLYGON_API_KEY` | miss-handler | — | Polygon API key, sent as `Authorization: Bearer`; required when `CACHE_PROVIDERS` names `polygon` (never logged) |
//! | `POLYGON_BASE_URL` | miss-handler | `https://api.polygon.io` | Polygon REST API; a trailing `/` is dropped |
//! | `BINANCE_BASE_URL` | miss-handler | `https://data-api.binance.vision` | Binance spot REST API (the market-data-only host, or a mirror); a trailing `/` is dropped |
//! | `BINANCE_ARCHIVE_URL` | miss-handler | `https://data.binance.vision` | Binance's public daily archives, read for whole days that ended more than a day ago (REST when a day's archive is missing or bad); a trailing `/` is dropped; set but blank turns archives off (the one variable where blank is not unset) |
//! | `BINANCE_WEIGHT_BUDGET` | miss-handler | `6000` | request weight per minute the Binance provider of one function instance stays within (4–1000000) |
//! | `CACHE_PROVIDER_SECRET_ID` | miss-handler | none | Secrets Manager secret (name or ARN) read once at start: a JSON object of provider credentials by variable name (`{"POLYGON_API_KEY": "..."}`, [`PROVIDER_CREDENTIALS`]); each fills its variable when the environment leaves it unset or blank, so the environment wins |
//! | `AWS_ENDPOINT_URL_SECRETS_MANAGER`, then `AWS_ENDPOINT_URL` | miss-handler | AWS | Secrets Manager-compatible endpoint of that secret (ignored like the S3 one) |
//! | `CACHE_LEASE_TTL_SECONDS` | miss-handler | `960` | lifetime of a fill lease: the 900 s function timeout plus 60 s margin (1–86400) |
//! | `CACHE_FETCH_CONCURRENCY` | miss-handler | `4` | upstream requests in flight per fill (1–64) |
//! | `CACHE_UPSTREAM_TIMEOUT_SECONDS` | miss-handler | `30` | timeout of one upstream request (1–900) |
//!
//! A missing or invalid value fails the function's start (its init) with a message naming
//! the variable; it never becomes an answer to a caller.
//!
//! Blank values count as unset, as Python's `value or default` does. Variables
//! whose value is not valid UTF-8 are treated as unset.

use crate::dataset::json_kind;
use std::collections::BTreeMap;
use std::fmt;
use std::ops::RangeInclusive;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use crate::dataset::Provider as ProviderName;
use crate::keys::KeyLayout;

pub const LUMIBOT_CACHE_BACKEND: &str = "LUMIBOT_CACHE_BACKEND";
pub const LUMIBOT_CACHE_MODE: &str = "LUMIBOT_CACHE_MODE";
pub const LUMIBOT_CACHE_S3_BUCKET: &str = "LUMIBOT_CACHE_S3_BUCKET";
pub const LUMIBOT_CACHE_S3_PREFIX: &str = "LUMIBOT_CACHE_S3_PREFIX";
pub const LUMIBOT_CACHE_S3_REGION: &str = "LUMIBOT_CACHE_S3_REGION";
pub const LUMIBOT_CACHE_S3_ACCESS_KEY_ID: &str = "LUMIBOT_CACHE_S3_ACCESS_KEY_ID";
pub const LUMIBOT_CACHE_S3_SECRET_ACCESS_KEY: &str = "LUMIBOT_CACHE_S3_SECRET_ACCESS_KEY";
pub const LUMIBOT_CACHE_S3_SESSION_TOKEN: &str = "LUMIBOT_CACHE_S3_SESSION_TOKEN";
pub const LUMIBOT_CACHE_S3_VERSION: &str = "LUMIBOT_CACHE_S3_VERSION";
pub const LUMIBOT_CACHE_FILL_FUNCTION: &str = "LUMIBOT_CACHE_FILL_FUNCTION";
pub const LUMIBOT_CACHE_FOLDER: &str = "LUMIBOT_CACHE_FOLDER";
pub const AWS_ENDPOINT_URL_S3: &str = "AWS_ENDPOINT_URL_S3";
pub const AWS_ENDPOINT_URL: &str = "AWS_ENDPOINT_URL";
pub const AWS_ENDPOINT_URL_LAMBDA: &str = "AWS_ENDPOINT_URL_LAMBDA";
pub const AWS_IGNORE_CONFIGURED_ENDPOINT_URLS: &str = "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS";
pub const CACHE_PROVIDERS: &str = "CACHE_PROVIDERS";
pub const CACHE_BUCKET: &str = "CACHE_BUCKET";
pub const CACHE_PREFIX: &str = "CACHE_PREFIX";
pub const CACHE_VERSION: &str = "CACHE_VERSION";
pub const THETADATA_BASE_URL: &str = "THETADATA_BASE_URL";
pub const POLYGON_API_KEY: &str = "POLYGON_API_KEY";
pub const POLYGON_BASE_URL: &str = "POLYGON_BASE_URL";
pub const BINANCE_BASE_URL: &str = "BINANCE_BASE_URL";
pub const BINANCE_ARCHIVE_URL: &str = "BINANCE_ARCHIVE_URL";
pub const BINANCE_WEIGHT_BUDGET: &str = "BINANCE_WEIGHT_BUDGET";
pub const CACHE_PROVIDER_SECRET_ID: &str = "CACHE_PROVIDER_SECRET_ID";
pub const AWS_ENDPOINT_URL_SECRETS_MANAGER: &str = "AWS_ENDPOINT_URL_SECRETS_MANAGER";
pub const CACHE_LEASE_TTL_SECONDS: &str = "CACHE_LEASE_TTL_SECONDS";
pub const CACHE_FETCH_CONCURRENCY: &str = "CACHE_FETCH_CONCURRENCY";
pub const CACHE_UPSTREAM_TIMEOUT_SECONDS: &str = "CACHE_UPSTREAM_TIMEOUT_SECONDS";

/// The variables a provider secret may set: providers' credentials only. What shapes a
/// deployment (its bucket, the providers it serves) stays in the template, where it is seen.
pub const PROVIDER_CREDENTIALS: &[&str] = &[POLYGON_API_KEY];

/// Where a ThetaData terminal listens by default.
pub const DEFAULT_THETADATA_BASE_URL: &str = "http://127.0.0.1:25503";
/// Polygon's REST API.
pub const DEFAULT_POLYGON_BASE_URL: &str = "https://api.polygon.io";
/// Binance's market-data-only host.
pub const DEFAULT_BINANCE_BASE_URL: &str = "https://data-api.binance.vision";
/// Binance's public archive of daily files.
pub const DEFAULT_BINANCE_ARCHIVE_URL: &str = "https://data.binance.vision";
/// Binance's request weight per minute for one IP.
pub const DEFAULT_BINANCE_WEIGHT_BUDGET: u64 = 6_000;
const BINANCE_WEIGHT_BUDGET_RANGE: RangeInclusive<u64> = 4..=1_000_000;
/// Default namespace under the prefix, as in lumibot.
pub const DEFAULT_VERSION: &str = "v1";

const DEFAULT_LEASE_TTL_SECONDS: u64 = 960;
const LEASE_TTL_SECONDS: RangeInclusive<u64> = 1..=86_400;
const DEFAULT_FETCH_CONCURRENCY: u64 = 4;
const FETCH_CONCURRENCY: RangeInclusive<u64> = 1..=64;
const DEFAULT_UPSTREAM_TIMEOUT_SECONDS: u64 = 30;
// A request cannot usefully outlive the 900 s Lambda timeout.
const UPSTREAM_TIMEOUT_SECONDS: RangeInclusive<u64> = 1..=900;

/// How a backtest job uses the remote cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CacheMode {
    /// Local cache only.
    Disabled,
    /// Read from S3 and upload what was fetched locally.
    ReadWrite,
    /// Read from S3 only; misses are filled by the fill function.
    ReadOnly,
}

impl CacheMode {
    pub fn as_str(self) -> &'static str {
        match self {
            CacheMode::Disabled => "disabled",
            CacheMode::ReadWrite => "readwrite",
            CacheMode::ReadOnly => "readonly",
        }
    }
}

impl fmt::Display for CacheMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Accepts every alias lumibot accepts, ignoring case and surrounding whitespace.
impl FromStr for CacheMode {
    type Err = SettingsError;

    fn from_str(raw: &str) -> Result<Self, Self::Err> {
        let mode = py_strip(raw).to_lowercase();
        match mode.as_str() {
            "disabled" | "off" | "local" => Ok(CacheMode::Disabled),
            "readwrite" | "rw" | "s3_readwrite" => Ok(CacheMode::ReadWrite),
            "readonly" | "ro" | "s3_readonly" => Ok(CacheMode::ReadOnly),
            _ => Err(SettingsError::UnsupportedMode(mode)),
        }
    }
}

/// A configuration value that cannot be used.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum SettingsError {
    #[error(
        "Unsupported LUMIBOT_CACHE_MODE '{0}'. Expected one of: disabled, readwrite, readonly."
    )]
    UnsupportedMode(String),
    #[error("LUMIBOT_CACHE_S3_BUCKET must be set when using the S3 cache backend.")]
    MissingBucket,
    #[error("{name} must be {expected}, got {value:?}")]
    Invalid {
        name: String,
        expected: String,
        value: String,
    },
    #[error("{0} must be set")]
    Missing(String),
    #[error(
        "{name} must be set, in the environment or in provider secret {secret_id} ({})",
        CACHE_PROVIDER_SECRET_ID
    )]
    MissingCredential { name: String, secret_id: String },
}

/// A secret value (a secret access key, a session token, an API key). `Debug` shows only
/// that it is set, so settings can be logged whole; [`Secret::expose`] hands it to the one
/// client that needs it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Where and as whom to reach S3. Built here and only here (from the function's or the
/// client's settings); `storage::s3::connect` turns it into a client. Every field is
/// optional: unset ones come from the standard AWS chain.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct S3Config {
    pub region: Option<String>,
    /// A custom S3 API (moto, MinIO): addressed path-style.
    pub endpoint_url: Option<String>,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<Secret>,
    pub session_token: Option<Secret>,
}

impl S3Config {
    /// The AWS chain's region and credentials, and the endpoint the environment names.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Self {
        S3Config {
            endpoint_url: endpoint_url(&get, AWS_ENDPOINT_URL_S3),
            ..S3Config::default()
        }
    }

    /// An explicit endpoint (tests, the dev stack).
    pub fn with_endpoint(endpoint_url: impl Into<String>) -> Self {
        S3Config {
            endpoint_url: Some(endpoint_url.into()),
            ..S3Config::default()
        }
    }
}

/// lumibot's remote cache settings; present only when the S3 cache is on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteCacheSettings {
    pub backend: String,
    pub mode: CacheMode,
    pub bucket: String,
    pub prefix: String,
    pub region: Option<String>,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<Secret>,
    pub session_token: Option<Secret>,
    pub version: String,
}

impl RemoteCacheSettings {
    /// lumibot's `BacktestCacheSettings.from_env`: `Ok(None)` when the remote
    /// cache is off.
    pub fn from_lookup(
        get: impl Fn(&str) -> Option<String>,
    ) -> Result<Option<Self>, SettingsError> {
        let backend = py_strip(&or_default(&get, LUMIBOT_CACHE_BACKEND, "local")).to_lowercase();
        let mode_raw = or_default(&get, LUMIBOT_CACHE_MODE, "disabled");
        if backend != "s3" {
            return Ok(None);
        }
        let mode = match mode_raw.parse::<CacheMode>()? {
            CacheMode::Disabled => return Ok(None),
            mode => mode,
        };
        let bucket = py_strip(&or_default(&get, LUMIBOT_CACHE_S3_BUCKET, "")).to_owned();
        if bucket.is_empty() {
            return Err(SettingsError::MissingBucket);
        }
        Ok(Some(RemoteCacheSettings {
            backend,
            mode,
            bucket,
            prefix: prefix(&get, LUMIBOT_CACHE_S3_PREFIX),
            region: stripped(&get, LUMIBOT_CACHE_S3_REGION),
            access_key_id: stripped(&get, LUMIBOT_CACHE_S3_ACCESS_KEY_ID),
            secret_access_key: stripped(&get, LUMIBOT_CACHE_S3_SECRET_ACCESS_KEY).map(Secret),
            session_token: stripped(&get, LUMIBOT_CACHE_S3_SESSION_TOKEN).map(Secret),
            version: version(&get, LUMIBOT_CACHE_S3_VERSION),
        }))
    }

    /// [`RemoteCacheSettings::from_lookup`] over the process environment.
    pub fn from_env() -> Result<Option<Self>, SettingsError> {
        Self::from_lookup(env_lookup)
    }

    pub fn layout(&self) -> KeyLayout {
        KeyLayout::new(&self.prefix, &self.version)
    }
}

/// Everything a backtest job needs to reach the cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientSettings {
    pub remote: Option<RemoteCacheSettings>,
    pub fill_function: Option<String>,
    pub cache_folder: PathBuf,
    /// `AWS_ENDPOINT_URL_S3`, else `AWS_ENDPOINT_URL`.
    pub endpoint_url: Option<String>,
    /// `AWS_ENDPOINT_URL_LAMBDA`, else `AWS_ENDPOINT_URL`.
    pub lambda_endpoint_url: Option<String>,
}

impl ClientSettings {
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, SettingsError> {
        let remote = RemoteCacheSettings::from_lookup(&get)?;
        let cache_folder = match non_empty(&get, LUMIBOT_CACHE_FOLDER) {
            Some(folder) => PathBuf::from(folder),
            None => default_cache_folder(&get),
        };
        Ok(ClientSettings {
            remote,
            fill_function: stripped(&get, LUMIBOT_CACHE_FILL_FUNCTION),
            cache_folder,
            endpoint_url: endpoint_url(&get, AWS_ENDPOINT_URL_S3),
            lambda_endpoint_url: endpoint_url(&get, AWS_ENDPOINT_URL_LAMBDA),
        })
    }

    /// [`ClientSettings::from_lookup`] over the process environment.
    pub fn from_env() -> Result<Self, SettingsError> {
        Self::from_lookup(env_lookup)
    }

    /// The remote cache mode; `Disabled` when the remote cache is off.
    pub fn mode(&self) -> CacheMode {
        self.remote
            .as_ref()
            .map_or(CacheMode::Disabled, |remote| remote.mode)
    }

    /// How this job reaches S3: lumibot's region and static credentials (when set) and the
    /// S3 endpoint.
    pub fn s3(&self) -> S3Config {
        let remote = self.remote.as_ref();
        S3Config {
            region: remote.and_then(|r| r.region.clone()),
            endpoint_url: self.endpoint_url.clone(),
            access_key_id: remote.and_then(|r| r.access_key_id.clone()),
            secret_access_key: remote.and_then(|r| r.secret_access_key.clone()),
            session_token: remote.and_then(|r| r.session_token.clone()),
        }
    }
}

/// lumibot's default local cache root on the platform this was built for.
pub fn default_cache_folder(get: impl Fn(&str) -> Option<String>) -> PathBuf {
    cache_folder_for(Platform::current(), &get)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Platform {
    Linux,
    MacOs,
    Windows,
}

impl Platform {
    fn current() -> Self {
        if cfg!(target_os = "macos") {
            Platform::MacOs
        } else if cfg!(windows) {
            Platform::Windows
        } else {
            Platform::Linux
        }
    }
}

fn cache_folder_for(platform: Platform, get: &impl Fn(&str) -> Option<String>) -> PathBuf {
    match platform {
        Platform::Linux => non_empty(get, "XDG_CACHE_HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|| home(get, "HOME").join(".cache"))
            .join("lumibot")
            .join("1.0"),
        Platform::MacOs => home(get, "HOME")
            .join("Library")
            .join("Caches")
            .join("lumibot")
            .join("1.0"),
        Platform::Windows => non_empty(get, "LOCALAPPDATA")
            .map(PathBuf::from)
            .unwrap_or_else(|| home(get, "USERPROFILE").join("AppData").join("Local"))
            .join("LumiWealth")
            .join("lumibot")
            .join("Cache")
            .join("1.0"),
    }
}

/// The home directory from `variable`, else the operating system's idea of it,
/// as Python's `expanduser` does.
fn home(get: &impl Fn(&str) -> Option<String>, variable: &str) -> PathBuf {
    non_empty(get, variable)
        .map(PathBuf::from)
        .or_else(std::env::home_dir)
        .unwrap_or_default()
}

/// The bucket both functions work on, and how to reach it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreSettings {
    pub bucket: String,
    pub prefix: String,
    pub version: String,
    pub s3: S3Config,
}

impl StoreSettings {
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, SettingsError> {
        let bucket = stripped(&get, CACHE_BUCKET)
            .ok_or_else(|| SettingsError::Missing(CACHE_BUCKET.to_owned()))?;
        Ok(StoreSettings {
            bucket,
            prefix: prefix(&get, CACHE_PREFIX),
            version: version(&get, CACHE_VERSION),
            s3: S3Config::from_lookup(&get),
        })
    }

    pub fn layout(&self) -> KeyLayout {
        KeyLayout::new(&self.prefix, &self.version)
    }
}

/// Which providers a process serves and how it reaches them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderSettings {
    /// In the order `CACHE_PROVIDERS` names them, without repeats.
    pub served: Vec<ProviderName>,
    /// Without a trailing `/` or `/v3`; callers append `/v3/...`.
    pub thetadata_base_url: String,
    /// Without a trailing `/`; callers append `/v2/...`.
    pub polygon_base_url: String,
    /// Set whenever polygon is served.
    pub polygon_api_key: Option<Secret>,
    /// Without a trailing `/`; callers append `/api/v3/...`.
    pub binance_base_url: String,
    /// Without a trailing `/`; `None`: archives are off, every day comes from the REST API.
    pub binance_archive_url: Option<String>,
    /// Request weight per minute the Binance provider stays within.
    pub binance_weight_budget: u32,
    /// Upstream requests in flight per fill.
    pub fetch_concurrency: usize,
    /// Timeout of one upstream request, body included.
    pub upstream_timeout: Duration,
}

impl ProviderSettings {
    /// What a deployed miss-handler serves unless `CACHE_PROVIDERS` says otherwise.
    pub const DEPLOYED: &[ProviderName] = &[ProviderName::ThetaData];
    /// What the embedded default and the command line serve unless `CACHE_PROVIDERS` says
    /// otherwise: every provider, the synthetic one included.
    pub const EMBEDDED: &[ProviderName] = &ProviderName::ALL;

    /// The settings from `get`, serving `default_served` when `CACHE_PROVIDERS` is unset.
    pub fn from_lookup(
        get: impl Fn(&str) -> Option<String>,
        default_served: &[ProviderName],
    ) -> Result<Self, SettingsError> {
        let fetch_concurrency = whole_number(
            &get,
            CACHE_FETCH_CONCURRENCY,
            DEFAULT_FETCH_CONCURRENCY,
            FETCH_CONCURRENCY,
            "",
        )?;
        let mut served = served(&get, default_served)?;
        let polygon_api_key = polygon_api_key(&get, &mut served)?;
        Ok(ProviderSettings {
            served,
            thetadata_base_url: thetadata_base_url(&get)?,
            polygon_base_url: polygon_base_url(&get)?,
            polygon_api_key,
            binance_base_url: http_base_url(&get, BINANCE_BASE_URL, DEFAULT_BINANCE_BASE_URL)?,
            binance_archive_url: binance_archive_url(&get)?,
            binance_weight_budget: u32::try_from(whole_number(
                &get,
                BINANCE_WEIGHT_BUDGET,
                DEFAULT_BINANCE_WEIGHT_BUDGET,
                BINANCE_WEIGHT_BUDGET_RANGE,
                " of request weight",
            )?)
            .expect("the weight range fits in u32"),
            fetch_concurrency: usize::try_from(fetch_concurrency)
                .expect("the concurrency range fits in usize"),
            upstream_timeout: Duration::from_secs(whole_number(
                &get,
                CACHE_UPSTREAM_TIMEOUT_SECONDS,
                DEFAULT_UPSTREAM_TIMEOUT_SECONDS,
                UPSTREAM_TIMEOUT_SECONDS,
                " of seconds",
            )?),
        })
    }

    /// [`ProviderSettings::from_lookup`] over the process environment.
    pub fn from_env(default_served: &[ProviderName]) -> Result<Self, SettingsError> {
        Self::from_lookup(env_lookup, default_served)
    }

    /// Every default, serving `served` (no environment read).
    pub fn defaults(served: &[ProviderName]) -> Self {
        Self::from_lookup(|_| None, served).expect("the defaults are valid")
    }
}

/// Settings of the miss-handler.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MissHandlerSettings {
    pub store: StoreSettings,
    pub providers: ProviderSettings,
    pub lease_ttl: Duration,
}

impl MissHandlerSettings {
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, SettingsError> {
        Ok(MissHandlerSettings {
            store: StoreSettings::from_lookup(&get)?,
            providers: ProviderSettings::from_lookup(&get, ProviderSettings::DEPLOYED)?,
            lease_ttl: Duration::from_secs(whole_number(
                &get,
                CACHE_LEASE_TTL_SECONDS,
                DEFAULT_LEASE_TTL_SECONDS,
                LEASE_TTL_SECONDS,
                " of seconds",
            )?),
        })
    }

    /// [`MissHandlerSettings::from_lookup`] over the process environment.
    pub fn from_env() -> Result<Self, SettingsError> {
        Self::from_lookup(env_lookup)
    }

    /// [`MissHandlerSettings::from_lookup`] over `get`, with `credentials` (read from the
    /// provider secret) filling the variables `get` leaves unset or blank.
    pub fn from_lookup_with(
        get: impl Fn(&str) -> Option<String>,
        credentials: &ProviderCredentials,
    ) -> Result<Self, SettingsError> {
        Self::from_lookup(credentials.fill(get)).map_err(|e| match (e, &credentials.secret_id) {
            // Say where else the value could have come from.
            (SettingsError::Missing(name), Some(secret_id))
                if PROVIDER_CREDENTIALS.contains(&name.as_str()) =>
            {
                SettingsError::MissingCredential {
                    name,
                    secret_id: secret_id.clone(),
                }
            }
            (e, _) => e,
        })
    }

    /// [`MissHandlerSettings::from_lookup_with`] over the process environment.
    pub fn from_env_with(credentials: &ProviderCredentials) -> Result<Self, SettingsError> {
        Self::from_lookup_with(env_lookup, credentials)
    }
}

/// Where the miss-handler's provider credentials are kept. Read before its other settings,
/// since the secret's values fill some of them ([`MissHandlerSettings::from_env_with`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderSecretSettings {
    /// `CACHE_PROVIDER_SECRET_ID`: a Secrets Manager secret's name or ARN.
    pub secret_id: String,
    /// `AWS_ENDPOINT_URL_SECRETS_MANAGER`, else `AWS_ENDPOINT_URL` (a stand-in such as moto).
    pub endpoint_url: Option<String>,
}

impl ProviderSecretSettings {
    /// `None` when `CACHE_PROVIDER_SECRET_ID` is unset or blank: no secret is read.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Option<Self> {
        Some(ProviderSecretSettings {
            secret_id: stripped(&get, CACHE_PROVIDER_SECRET_ID)?,
            endpoint_url: endpoint_url(&get, AWS_ENDPOINT_URL_SECRETS_MANAGER),
        })
    }

    /// [`ProviderSecretSettings::from_lookup`] over the process environment.
    pub fn from_env() -> Option<Self> {
        Self::from_lookup(env_lookup)
    }
}

/// The form a provider secret takes, for messages.
const SECRET_EXAMPLE: &str = r#"{"POLYGON_API_KEY": "..."}"#;

/// A provider secret that cannot be used. Every message names the secret and, where one is
/// at fault, the key; none quotes a value.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum ProviderSecretError {
    #[error(
        "cannot read provider secret {secret_id} ({}): {reason}",
        CACHE_PROVIDER_SECRET_ID
    )]
    Unreadable { secret_id: String, reason: String },
    #[error(
        "provider secret {secret_id} ({}) has no SecretString: store the credentials as a JSON object such as {}",
        CACHE_PROVIDER_SECRET_ID,
        SECRET_EXAMPLE
    )]
    NoSecretString { secret_id: String },
    #[error(
        "provider secret {secret_id} ({}) is not JSON (syntax error at line {line}, column {column}): expected an object such as {}",
        CACHE_PROVIDER_SECRET_ID,
        SECRET_EXAMPLE
    )]
    NotJson {
        secret_id: String,
        line: usize,
        column: usize,
    },
    #[error(
        "provider secret {secret_id} ({}) holds {found}, not a JSON object such as {}",
        CACHE_PROVIDER_SECRET_ID,
        SECRET_EXAMPLE
    )]
    NotAnObject {
        secret_id: String,
        found: &'static str,
    },
    #[error(
        "provider secret {secret_id} ({}): key {key:?} is not a provider credential (expected: {expected})",
        CACHE_PROVIDER_SECRET_ID
    )]
    UnknownKey {
        secret_id: String,
        key: String,
        expected: String,
    },
    #[error(
        "provider secret {secret_id} ({}): {key} must be a non-empty string, not {found}",
        CACHE_PROVIDER_SECRET_ID
    )]
    NotAString {
        secret_id: String,
        key: String,
        found: &'static str,
    },
}

/// Provider credentials read from a secret, by variable name. `Debug` shows the names only.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProviderCredentials {
    /// The secret they came from; `None` when no secret was read.
    secret_id: Option<String>,
    values: BTreeMap<String, Secret>,
}

impl ProviderCredentials {
    /// The credentials in `text`, the secret string of `secret_id`: a JSON object whose keys
    /// are [`PROVIDER_CREDENTIALS`] and whose values are non-empty strings. An empty object
    /// is valid (the secret holds nothing yet).
    pub fn parse(secret_id: &str, text: &str) -> Result<Self, ProviderSecretError> {
        let secret_id = secret_id.to_owned();
        // Only the position of a syntax error is kept: serde's messages may quote input.
        let value: serde_json::Value =
            serde_json::from_str(text).map_err(|e| ProviderSecretError::NotJson {
                secret_id: secret_id.clone(),
                line: e.line(),
                column: e.column(),
            })?;
        let serde_json::Value::Object(object) = value else {
            return Err(ProviderSecretError::NotAnObject {
                secret_id,
                found: json_kind(&value),
            });
        };
        let mut values = BTreeMap::new();
        for (key, value) in object {
            if !PROVIDER_CREDENTIALS.contains(&key.as_str()) {
                return Err(ProviderSecretError::UnknownKey {
                    secret_id,
                    key,
                    expected: PROVIDER_CREDENTIALS.join(", "),
                });
            }
            match value {
                serde_json::Value::String(text) if !py_strip(&text).is_empty() => {
                    values.insert(key, Secret(text));
                }
                serde_json::Value::String(_) => {
                    return Err(ProviderSecretError::NotAString {
                        secret_id,
                        key,
                        found: "an empty string",
                    });
                }
                other => {
                    return Err(ProviderSecretError::NotAString {
                        secret_id,
                        key,
                        found: json_kind(&other),
                    });
                }
            }
        }
        Ok(ProviderCredentials {
            secret_id: Some(secret_id),
            values,
        })
    }

    /// The variables the secret sets, in name order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.values.keys().map(String::as_str)
    }

    /// The variables the secret sets that the process environment sets too: for them the
    /// environment's value is used and the secret's is not.
    pub fn shadowed_by_env(&self) -> Vec<&str> {
        self.shadowed_by(env_lookup)
    }

    fn shadowed_by(&self, get: impl Fn(&str) -> Option<String>) -> Vec<&str> {
        self.names()
            .filter(|name| stripped(&get, name).is_some())
            .collect()
    }

    /// `get`, with these credentials for the variables it leaves unset or blank (blank
    /// counts as unset everywhere in this module).
    fn fill<'a>(
        &'a self,
        get: impl Fn(&str) -> Option<String> + 'a,
    ) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| {
            get(name)
                .filter(|value| !py_strip(value).is_empty())
                .or_else(|| self.values.get(name).map(|v| v.expose().to_owned()))
        }
    }
}

/// What a JSON value is, in words, without its content.
/// Settings of the object-validator: only its bucket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidatorSettings {
    pub store: StoreSettings,
}

impl ValidatorSettings {
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, SettingsError> {
        Ok(ValidatorSettings {
            store: StoreSettings::from_lookup(get)?,
        })
    }

    /// [`ValidatorSettings::from_lookup`] over the process environment.
    pub fn from_env() -> Result<Self, SettingsError> {
        Self::from_lookup(env_lookup)
    }
}

fn env_lookup(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// Python's `str.isspace`, which also counts the ASCII separators U+001C–U+001F.
fn is_py_whitespace(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// Python's `str.strip()`.
fn py_strip(value: &str) -> &str {
    value.trim_matches(is_py_whitespace)
}

fn non_empty(get: &impl Fn(&str) -> Option<String>, name: &str) -> Option<String> {
    get(name).filter(|value| !value.is_empty())
}

/// Python's `env.get(name) or default`.
fn or_default(get: &impl Fn(&str) -> Option<String>, name: &str, default: &str) -> String {
    non_empty(get, name).unwrap_or_else(|| default.to_owned())
}

/// Python's `(env.get(name) or "").strip() or None`.
fn stripped(get: &impl Fn(&str) -> Option<String>, name: &str) -> Option<String> {
    Some(py_strip(&or_default(get, name, "")).to_owned()).filter(|value| !value.is_empty())
}

/// Python's `(env.get(name) or "").strip().strip("/")`.
fn prefix(get: &impl Fn(&str) -> Option<String>, name: &str) -> String {
    py_strip(&or_default(get, name, ""))
        .trim_matches('/')
        .to_owned()
}

/// Python's `(env.get(name) or "v1").strip().strip("/") or "v1"`.
fn version(get: &impl Fn(&str) -> Option<String>, name: &str) -> String {
    let raw = or_default(get, name, DEFAULT_VERSION);
    match py_strip(&raw).trim_matches('/') {
        "" => DEFAULT_VERSION.to_owned(),
        version => version.to_owned(),
    }
}

/// A service's endpoint: its own variable, else `AWS_ENDPOINT_URL`; none when
/// `AWS_IGNORE_CONFIGURED_ENDPOINT_URLS` is `true`, as the AWS SDKs decide it.
fn endpoint_url(get: &impl Fn(&str) -> Option<String>, service_variable: &str) -> Option<String> {
    let ignored = stripped(get, AWS_IGNORE_CONFIGURED_ENDPOINT_URLS)
        .is_some_and(|v| v.eq_ignore_ascii_case("true"));
    if ignored {
        return None;
    }
    stripped(get, service_variable).or_else(|| stripped(get, AWS_ENDPOINT_URL))
}

/// `CACHE_PROVIDERS`: provider names, comma-separated; unset or blank serves `default`.
fn served(
    get: &impl Fn(&str) -> Option<String>,
    default: &[ProviderName],
) -> Result<Vec<ProviderName>, SettingsError> {
    let Some(raw) = stripped(get, CACHE_PROVIDERS) else {
        return Ok(default.to_vec());
    };
    let mut out = Vec::new();
    for name in raw.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        let provider = ProviderName::parse(name).map_err(|_| SettingsError::Invalid {
            name: CACHE_PROVIDERS.to_owned(),
            expected: format!(
                "provider names separated by commas (from: {})",
                ProviderName::ALL.map(ProviderName::as_str).join(", ")
            ),
            value: raw.clone(),
        })?;
        if !out.contains(&provider) {
            out.push(provider);
        }
    }
    Ok(out)
}

/// `POLYGON_API_KEY`: required when `CACHE_PROVIDERS` names polygon. A default list (unset
/// `CACHE_PROVIDERS`: the embedded default's "every provider") serves polygon only when the
/// key is set, so a process without one still serves the other providers.
fn polygon_api_key(
    get: &impl Fn(&str) -> Option<String>,
    served: &mut Vec<ProviderName>,
) -> Result<Option<Secret>, SettingsError> {
    let key = stripped(get, POLYGON_API_KEY).map(Secret);
    if key.is_none() && served.contains(&ProviderName::Polygon) {
        if stripped(get, CACHE_PROVIDERS).is_some() {
            return Err(SettingsError::Missing(POLYGON_API_KEY.to_owned()));
        }
        served.retain(|p| *p != ProviderName::Polygon);
    }
    Ok(key)
}

/// `BINANCE_ARCHIVE_URL`: set but blank turns archives off, which unset cannot say.
fn binance_archive_url(
    get: &impl Fn(&str) -> Option<String>,
) -> Result<Option<String>, SettingsError> {
    if get(BINANCE_ARCHIVE_URL).is_some_and(|value| py_strip(&value).is_empty()) {
        return Ok(None);
    }
    http_base_url(get, BINANCE_ARCHIVE_URL, DEFAULT_BINANCE_ARCHIVE_URL).map(Some)
}

fn polygon_base_url(get: &impl Fn(&str) -> Option<String>) -> Result<String, SettingsError> {
    http_base_url(get, POLYGON_BASE_URL, DEFAULT_POLYGON_BASE_URL)
}

/// An `http://` or `https://` base URL from `name`, without a trailing `/`.
fn http_base_url(
    get: &impl Fn(&str) -> Option<String>,
    name: &str,
    default: &str,
) -> Result<String, SettingsError> {
    let Some(raw) = stripped(get, name) else {
        return Ok(default.to_owned());
    };
    let base = raw.trim_end_matches('/');
    if has_http_host(base) {
        Ok(base.to_owned())
    } else {
        Err(SettingsError::Invalid {
            name: name.to_owned(),
            expected: "an http:// or https:// URL".to_owned(),
            value: raw,
        })
    }
}

/// Whether `base` is `http://` or `https://` followed by something.
fn has_http_host(base: &str) -> bool {
    base.strip_prefix("http://")
        .or_else(|| base.strip_prefix("https://"))
        .is_some_and(|host| !host.is_empty())
}

fn thetadata_base_url(get: &impl Fn(&str) -> Option<String>) -> Result<String, SettingsError> {
    let Some(raw) = stripped(get, THETADATA_BASE_URL) else {
        return Ok(DEFAULT_THETADATA_BASE_URL.to_owned());
    };
    let trimmed = raw.trim_end_matches('/');
    let base = trimmed
        .strip_suffix("/v3")
        .unwrap_or(trimmed)
        .trim_end_matches('/');
    if has_http_host(base) {
        Ok(base.to_owned())
    } else {
        Err(SettingsError::Invalid {
            name: THETADATA_BASE_URL.to_owned(),
            expected: "an http:// or https:// URL".to_owned(),
            value: raw,
        })
    }
}

/// A decimal integer within `range`; blank means `default`.
fn whole_number(
    get: &impl Fn(&str) -> Option<String>,
    name: &str,
    default: u64,
    range: RangeInclusive<u64>,
    unit: &str,
) -> Result<u64, SettingsError> {
    let Some(raw) = get(name) else {
        return Ok(default);
    };
    let text = py_strip(&raw);
    if text.is_empty() {
        return Ok(default);
    }
    match text.parse::<u64>() {
        Ok(number) if range.contains(&number) => Ok(number),
        _ => Err(SettingsError::Invalid {
            name: name.to_owned(),
            expected: format!(
                "a whole number{unit} from {} to {}",
                range.start(),
                range.end()
            ),
            value: raw,
        }),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::path::Path;

    use super::*;

    fn lookup(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(name, value)| (name.to_string(), value.to_string()))
            .collect();
        move |name| map.get(name).cloned()
    }

    fn remote(pairs: &[(&str, &str)]) -> Result<Option<RemoteCacheSettings>, SettingsError> {
        RemoteCacheSettings::from_lookup(lookup(pairs))
    }

    fn s3_with_mode(mode: &str) -> Result<Option<RemoteCacheSettings>, SettingsError> {
        remote(&[
            (LUMIBOT_CACHE_BACKEND, "s3"),
            (LUMIBOT_CACHE_MODE, mode),
            (LUMIBOT_CACHE_S3_BUCKET, "cache-bucket"),
        ])
    }

    fn function(pairs: &[(&str, &str)]) -> Result<MissHandlerSettings, SettingsError> {
        let mut all = vec![(CACHE_BUCKET, "fill-bucket")];
        all.extend_from_slice(pairs);
        MissHandlerSettings::from_lookup(lookup(&all))
    }

    const UNSUPPORTED_BOGUS: &str =
        "Unsupported LUMIBOT_CACHE_MODE 'bogus'. Expected one of: disabled, readwrite, readonly.";
    const MISSING_BUCKET: &str =
        "LUMIBOT_CACHE_S3_BUCKET must be set when using the S3 cache backend.";

    #[test]
    fn off_values_disable_the_remote_cache() {
        for mode in ["disabled", "off", "local", " OFF ", "Disabled", "LOCAL\n"] {
            assert_eq!(s3_with_mode(mode), Ok(None), "{mode:?}");
        }
        assert_eq!(
            remote(&[(LUMIBOT_CACHE_BACKEND, "s3")]),
            Ok(None),
            "mode defaults to disabled"
        );
        assert_eq!(
            remote(&[(LUMIBOT_CACHE_BACKEND, "s3"), (LUMIBOT_CACHE_MODE, "")]),
            Ok(None)
        );
    }

    #[test]
    fn readwrite_aliases_enable_readwrite() {
        for mode in ["readwrite", "rw", "s3_readwrite", " RW ", "S3_ReadWrite"] {
            let settings = s3_with_mode(mode).expect("valid").expect("enabled");
            assert_eq!(settings.mode, CacheMode::ReadWrite, "{mode:?}");
            assert_eq!(settings.backend, "s3");
            assert_eq!(settings.bucket, "cache-bucket");
        }
    }

    #[test]
    fn readonly_aliases_enable_readonly() {
        for mode in ["readonly", "ro", "s3_readonly", " ReadOnly ", "RO"] {
            let settings = s3_with_mode(mode).expect("valid").expect("enabled");
            assert_eq!(settings.mode, CacheMode::ReadOnly, "{mode:?}");
        }
    }

    #[test]
    fn backend_is_checked_before_the_mode() {
        for backend in ["local", "gcs", "s3x", ""] {
            let settings = remote(&[
                (LUMIBOT_CACHE_BACKEND, backend),
                (LUMIBOT_CACHE_MODE, "bogus"),
            ]);
            assert_eq!(settings, Ok(None), "{backend:?}");
        }
        assert_eq!(
            remote(&[(LUMIBOT_CACHE_MODE, "bogus")]),
            Ok(None),
            "backend defaults to local"
        );
        let settings = remote(&[
            (LUMIBOT_CACHE_BACKEND, " S3 "),
            (LUMIBOT_CACHE_MODE, "ro"),
            (LUMIBOT_CACHE_S3_BUCKET, "b"),
        ]);
        assert_eq!(settings.expect("valid").expect("enabled").backend, "s3");
    }

    #[test]
    fn off_values_are_checked_before_the_bucket() {
        let settings = remote(&[(LUMIBOT_CACHE_BACKEND, "s3"), (LUMIBOT_CACHE_MODE, "off")]);
        assert_eq!(settings, Ok(None));
    }

    #[test]
    fn unknown_mode_is_rejected_with_lumibots_message() {
        let error = s3_with_mode(" BoGus ").expect_err("unknown mode");
        assert_eq!(error, SettingsError::UnsupportedMode("bogus".to_owned()));
        assert_eq!(error.to_string(), UNSUPPORTED_BOGUS);
        // The mode is checked before the bucket, so a missing bucket does not hide it.
        let error = remote(&[(LUMIBOT_CACHE_BACKEND, "s3"), (LUMIBOT_CACHE_MODE, "BOGUS")]);
        assert_eq!(
            error.expect_err("unknown mode").to_string(),
            UNSUPPORTED_BOGUS
        );
        assert_eq!(
            "write".parse::<CacheMode>(),
            Err(SettingsError::UnsupportedMode("write".to_owned()))
        );
    }

    #[test]
    fn missing_or_blank_bucket_is_rejected_with_lumibots_message() {
        for bucket in [None, Some(""), Some("  \t")] {
            let mut pairs = vec![
                (LUMIBOT_CACHE_BACKEND, "s3"),
                (LUMIBOT_CACHE_MODE, "readonly"),
            ];
            pairs.extend(bucket.map(|bucket| (LUMIBOT_CACHE_S3_BUCKET, bucket)));
            let error = remote(&pairs).expect_err("bucket required");
            assert_eq!(error, SettingsError::MissingBucket, "{bucket:?}");
            assert_eq!(error.to_string(), MISSING_BUCKET);
        }
        let settings = remote(&[
            (LUMIBOT_CACHE_BACKEND, "s3"),
            (LUMIBOT_CACHE_MODE, "readonly"),
            (LUMIBOT_CACHE_S3_BUCKET, " my-bucket "),
        ]);
        assert_eq!(
            settings.expect("valid").expect("enabled").bucket,
            "my-bucket"
        );
    }

    #[test]
    fn prefix_strips_whitespace_then_slashes() {
        let with_prefix = |value: &str| {
            remote(&[
                (LUMIBOT_CACHE_BACKEND, "s3"),
                (LUMIBOT_CACHE_MODE, "rw"),
                (LUMIBOT_CACHE_S3_BUCKET, "b"),
                (LUMIBOT_CACHE_S3_PREFIX, value),
            ])
            .expect("valid")
            .expect("enabled")
            .prefix
        };
        assert_eq!(with_prefix(" /stage/cache/ "), "stage/cache");
        assert_eq!(with_prefix("///"), "");
        // Like Python, whitespace inside the slashes survives.
        assert_eq!(with_prefix(" / a / "), " a ");
        // Python's strip() also removes the ASCII unit separator.
        assert_eq!(with_prefix("\u{1f}/p/\u{1f}"), "p");
        let unset = s3_with_mode("rw").expect("valid").expect("enabled");
        assert_eq!(unset.prefix, "");
    }

    #[test]
    fn version_defaults_to_v1_and_strips_slashes() {
        let with_version = |value: Option<&str>| {
            let mut pairs = vec![
                (LUMIBOT_CACHE_BACKEND, "s3"),
                (LUMIBOT_CACHE_MODE, "rw"),
                (LUMIBOT_CACHE_S3_BUCKET, "b"),
            ];
            pairs.extend(value.map(|value| (LUMIBOT_CACHE_S3_VERSION, value)));
            remote(&pairs).expect("valid").expect("enabled").version
        };
        assert_eq!(with_version(None), "v1");
        assert_eq!(with_version(Some("")), "v1");
        assert_eq!(with_version(Some(" / ")), "v1");
        assert_eq!(with_version(Some("/v3/")), "v3");
        assert_eq!(with_version(Some(" v44 ")), "v44");
    }

    #[test]
    fn optional_values_are_trimmed_and_blank_means_unset() {
        let settings = remote(&[
            (LUMIBOT_CACHE_BACKEND, "s3"),
            (LUMIBOT_CACHE_MODE, "rw"),
            (LUMIBOT_CACHE_S3_BUCKET, "b"),
            (LUMIBOT_CACHE_S3_REGION, " us-east-1 "),
            (LUMIBOT_CACHE_S3_ACCESS_KEY_ID, "   "),
            (LUMIBOT_CACHE_S3_SECRET_ACCESS_KEY, " secret "),
        ])
        .expect("valid")
        .expect("enabled");
        assert_eq!(settings.region.as_deref(), Some("us-east-1"));
        assert_eq!(settings.access_key_id, None);
        assert_eq!(
            settings.secret_access_key.as_ref().map(Secret::expose),
            Some("secret")
        );
        assert_eq!(settings.session_token, None);
    }

    #[test]
    fn debug_output_redacts_secrets() {
        let settings = remote(&[
            (LUMIBOT_CACHE_BACKEND, "s3"),
            (LUMIBOT_CACHE_MODE, "rw"),
            (LUMIBOT_CACHE_S3_BUCKET, "b"),
            (LUMIBOT_CACHE_S3_ACCESS_KEY_ID, "AKIAEXAMPLE"),
            (LUMIBOT_CACHE_S3_SECRET_ACCESS_KEY, "wJalrXUtnFEMI-secret"),
            (LUMIBOT_CACHE_S3_SESSION_TOKEN, "FwoGZXIvYXdz-token"),
        ])
        .expect("valid")
        .expect("enabled");
        for text in [format!("{settings:?}"), format!("{settings:#?}")] {
            assert!(!text.contains("wJalrXUtnFEMI-secret"), "{text}");
            assert!(!text.contains("FwoGZXIvYXdz-token"), "{text}");
            assert_eq!(text.matches("<redacted>").count(), 2, "{text}");
            assert!(text.contains("AKIAEXAMPLE"), "{text}");
        }
        let client = ClientSettings {
            remote: Some(settings),
            fill_function: None,
            cache_folder: PathBuf::from("/c"),
            endpoint_url: None,
            lambda_endpoint_url: None,
        };
        assert!(!format!("{client:?}").contains("wJalrXUtnFEMI-secret"));
    }

    #[test]
    fn cache_mode_displays_and_serializes_lowercase() {
        assert_eq!(CacheMode::Disabled.to_string(), "disabled");
        assert_eq!(CacheMode::ReadWrite.to_string(), "readwrite");
        assert_eq!(CacheMode::ReadOnly.to_string(), "readonly");
        assert_eq!(
            serde_json::to_string(&CacheMode::ReadOnly).expect("serializes"),
            "\"readonly\""
        );
        for mode in [
            CacheMode::Disabled,
            CacheMode::ReadWrite,
            CacheMode::ReadOnly,
        ] {
            assert_eq!(mode.to_string().parse::<CacheMode>(), Ok(mode));
        }
    }

    #[test]
    fn client_settings_read_extensions() {
        let settings = ClientSettings::from_lookup(lookup(&[
            ("HOME", "/home/u"),
            (LUMIBOT_CACHE_BACKEND, "s3"),
            (LUMIBOT_CACHE_MODE, "readonly"),
            (LUMIBOT_CACHE_S3_BUCKET, "b"),
            (
                LUMIBOT_CACHE_FILL_FUNCTION,
                " arn:aws:lambda:us-east-1:123456789012:function:fill ",
            ),
            (AWS_ENDPOINT_URL, "http://127.0.0.1:5000"),
            (AWS_ENDPOINT_URL_S3, " http://127.0.0.1:5001 "),
        ]))
        .expect("valid");
        assert_eq!(settings.mode(), CacheMode::ReadOnly);
        assert_eq!(
            settings.fill_function.as_deref(),
            Some("arn:aws:lambda:us-east-1:123456789012:function:fill")
        );
        assert_eq!(
            settings.endpoint_url.as_deref(),
            Some("http://127.0.0.1:5001")
        );

        let settings = ClientSettings::from_lookup(lookup(&[
            ("HOME", "/home/u"),
            (LUMIBOT_CACHE_FILL_FUNCTION, "  "),
            (AWS_ENDPOINT_URL_S3, ""),
            (AWS_ENDPOINT_URL, "http://127.0.0.1:5000"),
        ]))
        .expect("valid");
        assert_eq!(settings.remote, None);
        assert_eq!(settings.mode(), CacheMode::Disabled);
        assert_eq!(settings.fill_function, None);
        assert_eq!(
            settings.endpoint_url.as_deref(),
            Some("http://127.0.0.1:5000")
        );
    }

    #[test]
    fn client_settings_propagate_lumibot_errors() {
        let error = ClientSettings::from_lookup(lookup(&[
            ("HOME", "/home/u"),
            (LUMIBOT_CACHE_BACKEND, "s3"),
            (LUMIBOT_CACHE_MODE, "rw"),
        ]));
        assert_eq!(error, Err(SettingsError::MissingBucket));
    }

    #[test]
    fn default_cache_folder_on_linux_follows_xdg() {
        let without_xdg = lookup(&[("HOME", "/home/u")]);
        let with_xdg = lookup(&[("HOME", "/home/u"), ("XDG_CACHE_HOME", "/var/cache/u")]);
        let blank_xdg = lookup(&[("HOME", "/home/u"), ("XDG_CACHE_HOME", "")]);
        assert_eq!(
            cache_folder_for(Platform::Linux, &without_xdg),
            Path::new("/home/u/.cache/lumibot/1.0")
        );
        assert_eq!(
            cache_folder_for(Platform::Linux, &with_xdg),
            Path::new("/var/cache/u/lumibot/1.0")
        );
        assert_eq!(
            cache_folder_for(Platform::Linux, &blank_xdg),
            Path::new("/home/u/.cache/lumibot/1.0")
        );
        if cfg!(target_os = "linux") {
            assert_eq!(
                default_cache_folder(&without_xdg),
                Path::new("/home/u/.cache/lumibot/1.0")
            );
            assert_eq!(
                default_cache_folder(&with_xdg),
                Path::new("/var/cache/u/lumibot/1.0")
            );
        }
    }

    #[test]
    fn default_cache_folder_on_macos_and_windows() {
        let get = lookup(&[
            ("HOME", "/Users/u"),
            ("LOCALAPPDATA", r"C:\Users\u\AppData\Local"),
        ]);
        assert_eq!(
            cache_folder_for(Platform::MacOs, &get),
            Path::new("/Users/u/Library/Caches/lumibot/1.0")
        );
        let windows = cache_folder_for(Platform::Windows, &get);
        assert!(
            windows.starts_with(r"C:\Users\u\AppData\Local"),
            "{windows:?}"
        );
        assert!(
            windows.ends_with(Path::new("LumiWealth/lumibot/Cache/1.0")),
            "{windows:?}"
        );
        let get = lookup(&[("USERPROFILE", "/profile")]);
        let windows = cache_folder_for(Platform::Windows, &get);
        assert_eq!(
            windows,
            Path::new("/profile/AppData/Local/LumiWealth/lumibot/Cache/1.0")
        );
    }

    #[test]
    fn cache_folder_override_is_used_verbatim() {
        let settings = ClientSettings::from_lookup(lookup(&[
            ("HOME", "/home/u"),
            (LUMIBOT_CACHE_FOLDER, "/mnt/cache dir/"),
        ]))
        .expect("valid");
        assert_eq!(settings.cache_folder, Path::new("/mnt/cache dir/"));
        let settings =
            ClientSettings::from_lookup(lookup(&[("HOME", "/home/u"), (LUMIBOT_CACHE_FOLDER, "")]))
                .expect("valid");
        assert_eq!(
            settings.cache_folder,
            default_cache_folder(lookup(&[("HOME", "/home/u")]))
        );
    }

    #[test]
    fn function_settings_defaults() {
        let settings = function(&[]).expect("valid");
        assert_eq!(
            settings,
            MissHandlerSettings {
                store: StoreSettings {
                    bucket: "fill-bucket".to_owned(),
                    prefix: String::new(),
                    version: "v1".to_owned(),
                    s3: S3Config::default(),
                },
                providers: ProviderSettings {
                    served: vec![ProviderName::ThetaData],
                    thetadata_base_url: "http://127.0.0.1:25503".to_owned(),
                    polygon_base_url: "https://api.polygon.io".to_owned(),
                    polygon_api_key: None,
                    binance_base_url: "https://data-api.binance.vision".to_owned(),
                    binance_archive_url: Some("https://data.binance.vision".to_owned()),
                    binance_weight_budget: 6_000,
                    fetch_concurrency: 4,
                    upstream_timeout: Duration::from_secs(30),
                },
                lease_ttl: Duration::from_secs(960),
            }
        );
    }

    #[test]
    fn function_settings_read_every_variable() {
        let settings = function(&[
            (CACHE_PREFIX, " /stage/cache/ "),
            (CACHE_VERSION, "/v3/"),
            (THETADATA_BASE_URL, "http://theta:25503/v3/"),
            (CACHE_LEASE_TTL_SECONDS, " 120 "),
            (CACHE_FETCH_CONCURRENCY, "64"),
            (CACHE_UPSTREAM_TIMEOUT_SECONDS, "1"),
            (AWS_ENDPOINT_URL, "http://127.0.0.1:5000"),
        ])
        .expect("valid");
        assert_eq!(settings.store.prefix, "stage/cache");
        assert_eq!(settings.store.version, "v3");
        assert_eq!(settings.providers.thetadata_base_url, "http://theta:25503");
        assert_eq!(settings.lease_ttl, Duration::from_secs(120));
        assert_eq!(settings.providers.fetch_concurrency, 64);
        assert_eq!(settings.providers.upstream_timeout, Duration::from_secs(1));
        assert_eq!(
            settings.store.s3.endpoint_url.as_deref(),
            Some("http://127.0.0.1:5000")
        );
        for (url, expected) in [
            ("https://theta.example/", "https://theta.example"),
            ("http://theta:25503/v3", "http://theta:25503"),
            ("http://theta:25503/api", "http://theta:25503/api"),
            ("  ", "http://127.0.0.1:25503"),
        ] {
            let settings = function(&[(THETADATA_BASE_URL, url)]).expect("valid");
            assert_eq!(settings.providers.thetadata_base_url, expected, "{url:?}");
        }
    }

    #[test]
    fn function_settings_require_a_bucket() {
        for pairs in [vec![], vec![(CACHE_BUCKET, " ")]] {
            for error in [
                MissHandlerSettings::from_lookup(lookup(&pairs)).expect_err("bucket required"),
                ValidatorSettings::from_lookup(lookup(&pairs)).expect_err("bucket required"),
            ] {
                assert_eq!(error, SettingsError::Missing("CACHE_BUCKET".to_owned()));
                assert_eq!(error.to_string(), "CACHE_BUCKET must be set");
            }
        }
    }

    #[test]
    fn the_validator_reads_only_its_bucket() {
        let settings = ValidatorSettings::from_lookup(lookup(&[
            (CACHE_BUCKET, "b"),
            (CACHE_PREFIX, "/p/"),
            (THETADATA_BASE_URL, "not a url"),
            (CACHE_FETCH_CONCURRENCY, "zero"),
            (CACHE_PROVIDERS, "nobody"),
        ]))
        .expect("provider settings are not the validator's");
        assert_eq!(settings.store.layout().root(), "p/v1");
    }

    #[test]
    fn served_providers_come_from_cache_providers() {
        assert_eq!(
            function(&[]).unwrap().providers.served,
            [ProviderName::ThetaData]
        );
        assert_eq!(
            function(&[(CACHE_PROVIDERS, " synthetic , thetadata,synthetic ")])
                .unwrap()
                .providers
                .served,
            [ProviderName::Synthetic, ProviderName::ThetaData]
        );
        // Every provider but polygon, which needs its key.
        assert_eq!(
            ProviderSettings::defaults(ProviderSettings::EMBEDDED).served,
            [
                ProviderName::ThetaData,
                ProviderName::Synthetic,
                ProviderName::Binance
            ]
        );
        let error = function(&[(CACHE_PROVIDERS, "thetadata,polygonx")]).unwrap_err();
        assert!(
            matches!(&error, SettingsError::Invalid { name, .. } if name == CACHE_PROVIDERS),
            "{error}"
        );
    }

    #[test]
    fn endpoints_follow_the_sdk_rules() {
        let get = lookup(&[
            (AWS_ENDPOINT_URL, "http://127.0.0.1:5000"),
            (AWS_ENDPOINT_URL_LAMBDA, "http://127.0.0.1:9000"),
        ]);
        assert_eq!(
            S3Config::from_lookup(&get).endpoint_url.as_deref(),
            Some("http://127.0.0.1:5000")
        );
        let client = ClientSettings::from_lookup(&get).unwrap();
        assert_eq!(
            client.lambda_endpoint_url.as_deref(),
            Some("http://127.0.0.1:9000")
        );
        let ignored = lookup(&[
            (AWS_ENDPOINT_URL, "http://127.0.0.1:5000"),
            (AWS_IGNORE_CONFIGURED_ENDPOINT_URLS, "TRUE"),
        ]);
        assert_eq!(S3Config::from_lookup(&ignored).endpoint_url, None);
    }

    #[test]
    fn function_settings_reject_invalid_numbers() {
        let cases = [
            (
                CACHE_LEASE_TTL_SECONDS,
                "soon",
                "a whole number of seconds from 1 to 86400",
            ),
            (
                CACHE_LEASE_TTL_SECONDS,
                "0",
                "a whole number of seconds from 1 to 86400",
            ),
            (
                CACHE_LEASE_TTL_SECONDS,
                "86401",
                "a whole number of seconds from 1 to 86400",
            ),
            (
                CACHE_LEASE_TTL_SECONDS,
                "-5",
                "a whole number of seconds from 1 to 86400",
            ),
            (
                CACHE_FETCH_CONCURRENCY,
                "four",
                "a whole number from 1 to 64",
            ),
            (CACHE_FETCH_CONCURRENCY, "0", "a whole number from 1 to 64"),
            (CACHE_FETCH_CONCURRENCY, "65", "a whole number from 1 to 64"),
            (
                CACHE_FETCH_CONCURRENCY,
                "2.5",
                "a whole number from 1 to 64",
            ),
            (
                CACHE_UPSTREAM_TIMEOUT_SECONDS,
                "30s",
                "a whole number of seconds from 1 to 900",
            ),
            (
                CACHE_UPSTREAM_TIMEOUT_SECONDS,
                "0",
                "a whole number of seconds from 1 to 900",
            ),
            (
                CACHE_UPSTREAM_TIMEOUT_SECONDS,
                "901",
                "a whole number of seconds from 1 to 900",
            ),
            (
                CACHE_UPSTREAM_TIMEOUT_SECONDS,
                "99999999999999999999999",
                "a whole number of seconds from 1 to 900",
            ),
        ];
        for (name, value, expected) in cases {
            let error = function(&[(name, value)]).expect_err("invalid number");
            assert_eq!(
                error,
                SettingsError::Invalid {
                    name: name.to_owned(),
                    expected: expected.to_owned(),
                    value: value.to_owned(),
                },
                "{name}={value}"
            );
            assert_eq!(
                error.to_string(),
                format!("{name} must be {expected}, got {value:?}")
            );
        }
    }

    #[test]
    fn function_settings_reject_a_base_url_without_http_scheme() {
        for url in ["127.0.0.1:25503", "ftp://theta", "http://", "http:///v3/"] {
            let error = function(&[(THETADATA_BASE_URL, url)]).expect_err("invalid url");
            assert_eq!(
                error,
                SettingsError::Invalid {
                    name: THETADATA_BASE_URL.to_owned(),
                    expected: "an http:// or https:// URL".to_owned(),
                    value: url.to_owned(),
                }
            );
        }
    }

    #[test]
    fn polygon_needs_its_key_when_named_and_is_left_out_of_defaults_without_it() {
        let error = function(&[(CACHE_PROVIDERS, "thetadata,polygon")]).unwrap_err();
        assert_eq!(error, SettingsError::Missing(POLYGON_API_KEY.to_owned()));
        assert_eq!(error.to_string(), "POLYGON_API_KEY must be set");
        let blank = function(&[(CACHE_PROVIDERS, "polygon"), (POLYGON_API_KEY, "  ")]);
        assert_eq!(
            blank,
            Err(SettingsError::Missing(POLYGON_API_KEY.to_owned()))
        );

        let served = function(&[(CACHE_PROVIDERS, "polygon"), (POLYGON_API_KEY, " pk-1 ")])
            .expect("valid")
            .providers;
        assert_eq!(served.served, [ProviderName::Polygon]);
        assert_eq!(
            served.polygon_api_key.as_ref().map(Secret::expose),
            Some("pk-1")
        );
        assert_eq!(served.polygon_base_url, DEFAULT_POLYGON_BASE_URL);

        let embedded = ProviderSettings::from_lookup(
            lookup(&[(POLYGON_API_KEY, "pk-1")]),
            ProviderSettings::EMBEDDED,
        )
        .expect("valid");
        assert_eq!(embedded.served, ProviderName::ALL);
    }

    #[test]
    fn polygon_base_url_is_an_http_url_without_trailing_slash() {
        for (url, expected) in [
            ("https://api.polygon.io/", "https://api.polygon.io"),
            (" http://127.0.0.1:8080// ", "http://127.0.0.1:8080"),
            (
                "https://proxy.example/polygon",
                "https://proxy.example/polygon",
            ),
            ("", DEFAULT_POLYGON_BASE_URL),
        ] {
            let settings = function(&[(POLYGON_BASE_URL, url)]).expect("valid");
            assert_eq!(settings.providers.polygon_base_url, expected, "{url:?}");
        }
        for url in ["api.polygon.io", "ftp://polygon", "https://"] {
            let error = function(&[(POLYGON_BASE_URL, url)]).expect_err("invalid url");
            assert!(
                matches!(&error, SettingsError::Invalid { name, .. } if name == POLYGON_BASE_URL),
                "{error}"
            );
        }
    }

    #[test]
    fn the_polygon_key_is_redacted() {
        let settings = function(&[
            (CACHE_PROVIDERS, "polygon"),
            (POLYGON_API_KEY, "pk-very-secret"),
        ])
        .expect("valid");
        for text in [format!("{settings:?}"), format!("{settings:#?}")] {
            assert!(!text.contains("pk-very-secret"), "{text}");
            assert!(text.contains("<redacted>"), "{text}");
        }
    }

    const SECRET_ID: &str = "cachefill/prod/providers";
    const SECRET_VALUE: &str = "pk-from-the-secret";

    fn credentials(text: &str) -> ProviderCredentials {
        ProviderCredentials::parse(SECRET_ID, text).expect("a valid secret")
    }

    fn function_with(
        pairs: &[(&str, &str)],
        credentials: &ProviderCredentials,
    ) -> Result<MissHandlerSettings, SettingsError> {
        let mut all = vec![(CACHE_BUCKET, "fill-bucket")];
        all.extend_from_slice(pairs);
        MissHandlerSettings::from_lookup_with(lookup(&all), credentials)
    }

    fn served_key(settings: &MissHandlerSettings) -> Option<&str> {
        settings
            .providers
            .polygon_api_key
            .as_ref()
            .map(Secret::expose)
    }

    #[test]
    fn a_secret_supplies_the_polygon_key_the_environment_lacks() {
        let from_secret = credentials(&format!(r#"{{"POLYGON_API_KEY": "{SECRET_VALUE}"}}"#));
        assert_eq!(from_secret.names().collect::<Vec<_>>(), [POLYGON_API_KEY]);
        for env in [vec![], vec![(POLYGON_API_KEY, "  ")]] {
            let mut pairs = vec![(CACHE_PROVIDERS, "thetadata,polygon")];
            pairs.extend(env);
            let settings = function_with(&pairs, &from_secret).expect("valid");
            assert_eq!(
                settings.providers.served,
                [ProviderName::ThetaData, ProviderName::Polygon]
            );
            assert_eq!(served_key(&settings), Some(SECRET_VALUE), "{pairs:?}");
        }
    }

    #[test]
    fn the_environment_wins_over_the_secret() {
        let from_secret = credentials(&format!(r#"{{"POLYGON_API_KEY": "{SECRET_VALUE}"}}"#));
        let env = [(CACHE_PROVIDERS, "polygon"), (POLYGON_API_KEY, " pk-env ")];
        let settings = function_with(&env, &from_secret).expect("valid");
        assert_eq!(served_key(&settings), Some("pk-env"));
        assert_eq!(
            from_secret.shadowed_by(lookup(&env)),
            [POLYGON_API_KEY],
            "the secret's value is reported as unused"
        );
        assert!(
            from_secret
                .shadowed_by(lookup(&[(POLYGON_API_KEY, "")]))
                .is_empty()
        );
        // Without a secret the environment is read as before.
        let settings = function_with(&env, &ProviderCredentials::default()).expect("valid");
        assert_eq!(served_key(&settings), Some("pk-env"));
    }

    #[test]
    fn a_key_in_neither_place_is_named_with_the_secret_it_could_be_in() {
        let empty = credentials("{}");
        assert_eq!(empty.names().count(), 0);
        let error = function_with(&[(CACHE_PROVIDERS, "polygon")], &empty).unwrap_err();
        assert_eq!(
            error.to_string(),
            "POLYGON_API_KEY must be set, in the environment or in provider secret \
             cachefill/prod/providers (CACHE_PROVIDER_SECRET_ID)"
        );
        // No secret read: the message is the plain one.
        let error = function_with(
            &[(CACHE_PROVIDERS, "polygon")],
            &ProviderCredentials::default(),
        )
        .unwrap_err();
        assert_eq!(error, SettingsError::Missing(POLYGON_API_KEY.to_owned()));
        // A secret without polygon's key does not change a deployment that does not serve it.
        let settings = function_with(&[], &empty).expect("valid");
        assert_eq!(settings.providers.served, [ProviderName::ThetaData]);
    }

    #[test]
    fn a_malformed_secret_names_the_secret_and_the_key_but_never_a_value() {
        let v = SECRET_VALUE;
        let cases: Vec<(String, Option<&str>, &str)> = vec![
            (
                v.to_owned(),
                None,
                "is not JSON (syntax error at line 1, column 1)",
            ),
            (
                format!(r#"{{"POLYGON_API_KEY": "{v}""#),
                None,
                "is not JSON",
            ),
            (
                format!(r#""{v}""#),
                None,
                "holds a string, not a JSON object",
            ),
            (format!(r#"["{v}"]"#), None, "holds an array"),
            ("null".to_owned(), None, "holds null"),
            (
                format!(r#"{{"POLYGON_KEY": "{v}"}}"#),
                Some("POLYGON_KEY"),
                "is not a provider credential (expected: POLYGON_API_KEY)",
            ),
            (
                r#"{"CACHE_BUCKET": "elsewhere"}"#.to_owned(),
                Some("CACHE_BUCKET"),
                "is not a provider credential",
            ),
            (
                r#"{"POLYGON_API_KEY": 12345}"#.to_owned(),
                Some("POLYGON_API_KEY"),
                "must be a non-empty string, not a number",
            ),
            (
                r#"{"POLYGON_API_KEY": " "}"#.to_owned(),
                Some("POLYGON_API_KEY"),
                "not an empty string",
            ),
            (
                format!(r#"{{"POLYGON_API_KEY": {{"value": "{v}"}}}}"#),
                Some("POLYGON_API_KEY"),
                "not an object",
            ),
        ];
        for (text, key, expected) in cases {
            let error = ProviderCredentials::parse(SECRET_ID, &text).expect_err(&text);
            let message = error.to_string();
            assert!(
                message.starts_with(
                    "provider secret cachefill/prod/providers (CACHE_PROVIDER_SECRET_ID)"
                ),
                "{message}"
            );
            assert!(message.contains(expected), "{text}: {message}");
            if let Some(key) = key {
                assert!(message.contains(key), "{text}: {message}");
            }
            for shown in [message, format!("{error:?}")] {
                assert!(!shown.contains(v), "{text}: {shown}");
            }
        }
    }

    #[test]
    fn credentials_from_a_secret_are_redacted() {
        let from_secret = credentials(&format!(r#"{{"POLYGON_API_KEY": "{SECRET_VALUE}"}}"#));
        let settings = function_with(&[(CACHE_PROVIDERS, "polygon")], &from_secret).expect("valid");
        for text in [
            format!("{from_secret:?}"),
            format!("{from_secret:#?}"),
            format!("{settings:?}"),
        ] {
            assert!(!text.contains(SECRET_VALUE), "{text}");
            assert!(text.contains("<redacted>"), "{text}");
        }
        assert!(format!("{from_secret:?}").contains(POLYGON_API_KEY));
    }

    #[test]
    fn the_secret_is_named_by_cache_provider_secret_id() {
        for unset in [vec![], vec![(CACHE_PROVIDER_SECRET_ID, " ")]] {
            assert_eq!(ProviderSecretSettings::from_lookup(lookup(&unset)), None);
        }
        let settings = ProviderSecretSettings::from_lookup(lookup(&[
            (CACHE_PROVIDER_SECRET_ID, " cachefill/prod/providers "),
            (AWS_ENDPOINT_URL, "http://127.0.0.1:5000"),
        ]))
        .expect("a secret is named");
        assert_eq!(settings.secret_id, SECRET_ID);
        assert_eq!(
            settings.endpoint_url.as_deref(),
            Some("http://127.0.0.1:5000")
        );
        let settings = ProviderSecretSettings::from_lookup(lookup(&[
            (CACHE_PROVIDER_SECRET_ID, SECRET_ID),
            (AWS_ENDPOINT_URL, "http://127.0.0.1:5000"),
            (AWS_ENDPOINT_URL_SECRETS_MANAGER, "http://127.0.0.1:5001"),
        ]))
        .expect("a secret is named");
        assert_eq!(
            settings.endpoint_url.as_deref(),
            Some("http://127.0.0.1:5001")
        );
    }
}
