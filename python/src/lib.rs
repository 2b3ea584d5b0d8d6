//! `cachefill._native`: the Rust client (`cachefill-client`) for Python. One implementation
//! of modes, coverage, the local cache, single-flight, widening and invocation: this module
//! only converts arguments and errors. The pure-Python package around it (`python/cachefill`)
//! turns dates into the text forms taken here and adds the lumibot integration.
//!
//! Every call that may wait on I/O releases the GIL and runs on one process-wide tokio
//! runtime, started on first use; a [`Client`] may be shared by many Python threads, which
//! share its single-flight (one invocation per key however many threads miss it).

use std::future::Future;
use std::path::PathBuf;
use std::sync::OnceLock;

use pyo3::create_exception;
use pyo3::exceptions::PyException;
use pyo3::prelude::*;

use cachefill_client::embedded::Embedded;
use cachefill_client::{CacheClient, ClientError, DataRequest, InvokeError, LocalFile as Local};
use cachefill_core::errors::ErrorType;
use cachefill_core::fill::MissRequest;

create_exception!(
    _native,
    CacheError,
    PyException,
    "Every cachefill error; `error_type` names the miss-handler's errorType when there is one."
);
create_exception!(
    _native,
    InvalidRequest,
    CacheError,
    "The dataset, range or path is wrong; asking again will not help."
);
create_exception!(
    _native,
    UpstreamNoPermission,
    CacheError,
    "The provider account may not access this data."
);
create_exception!(
    _native,
    UpstreamRateLimited,
    CacheError,
    "The provider kept rate-limiting the fill; retry later."
);
create_exception!(
    _native,
    UpstreamUnavailable,
    CacheError,
    "The provider could not be reached or kept failing; retry later."
);
create_exception!(
    _native,
    StorageConflict,
    CacheError,
    "Writers kept racing for the object; retry later."
);
create_exception!(
    _native,
    Internal,
    CacheError,
    "A fault a person should look at (a bug, a corrupt object)."
);
create_exception!(
    _native,
    ConfigurationError,
    CacheError,
    "The LUMIBOT_CACHE_* settings cannot be used as they are."
);
create_exception!(
    _native,
    InvocationError,
    CacheError,
    "The fill function could not be invoked or gave no usable answer."
);
create_exception!(
    _native,
    NotCovered,
    CacheError,
    "The mode may not fill what is missing (disabled, or readwrite without a fill function)."
);
create_exception!(
    _native,
    NoData,
    CacheError,
    "The range has no data at the provider (no settled session with data, no expiration listed)."
);

fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("cachefill")
            .enable_all()
            .build()
            .expect("the cachefill runtime starts")
    })
}

/// Run `future` on the runtime with the GIL released.
fn wait<T: Send>(py: Python<'_>, future: impl Future<Output = T> + Send) -> T {
    py.detach(|| runtime().block_on(future))
}

fn error(e: ClientError) -> PyErr {
    let message = e.to_string();
    let typed = e.error_type().map(|t| match t {
        ErrorType::InvalidRequest => InvalidRequest::new_err(message.clone()),
        ErrorType::UpstreamNoPermission => UpstreamNoPermission::new_err(message.clone()),
        ErrorType::UpstreamRateLimited => UpstreamRateLimited::new_err(message.clone()),
        ErrorType::UpstreamUnavailable => UpstreamUnavailable::new_err(message.clone()),
        ErrorType::StorageConflict => StorageConflict::new_err(message.clone()),
        _ => Internal::new_err(message.clone()),
    });
    if let Some(typed) = typed {
        return typed;
    }
    match e {
        ClientError::Settings(_)
        | ClientError::NoBucket { .. }
        | ClientError::NoFillFunction { .. } => ConfigurationError::new_err(message),
        ClientError::Invoke {
            source: InvokeError::Misconfigured { .. } | InvokeError::Refused { .. },
            ..
        } => ConfigurationError::new_err(message),
        ClientError::Invoke { .. }
        | ClientError::PollDeadline { .. }
        | ClientError::WrongKey { .. } => InvocationError::new_err(message),
        ClientError::NotCovered { .. } => NotCovered::new_err(message),
        ClientError::NoData { .. } => NoData::new_err(message),
        _ => CacheError::new_err(message),
    }
}

/// A local file that covers the request, consistent with what the bucket holds.
#[pyclass(frozen, get_all, skip_from_py_object, module = "cachefill._native")]
#[derive(Debug, Clone)]
struct LocalFile {
    path: PathBuf,
    key: String,
    rows: u64,
    min: Option<String>,
    max: Option<String>,
    /// `local_hit`, `remote_hit` or `filled`.
    source: &'static str,
    version_id: Option<String>,
    sha256: String,
}

#[pymethods]
impl LocalFile {
    fn __repr__(&self) -> String {
        let text = |value: &Option<String>| {
            value
                .as_ref()
                .map_or("None".to_string(), |v| format!("{v:?}"))
        };
        format!(
            "LocalFile(path={:?}, source={:?}, rows={}, min={}, max={})",
            self.path.display().to_string(),
            self.source,
            self.rows,
            text(&self.min),
            text(&self.max)
        )
    }
}

impl From<Local> for LocalFile {
    fn from(file: Local) -> Self {
        LocalFile {
            path: file.path,
            key: file.key,
            rows: file.rows,
            min: file.min,
            max: file.max,
            source: file.source.as_str(),
            version_id: file.version_id,
            sha256: file.sha256,
        }
    }
}

/// The cache as a backtest job sees it (see `cachefill.Client` for the documented API).
#[pyclass(frozen, module = "cachefill._native")]
#[derive(Debug)]
struct Client {
    inner: CacheClient,
}

#[pymethods]
impl Client {
    /// A client from lumibot's `LUMIBOT_CACHE_*` settings (and `AWS_ENDPOINT_URL*`).
    #[staticmethod]
    fn from_env(py: Python<'_>) -> PyResult<Client> {
        let inner = wait(py, CacheClient::from_env()).map_err(error)?;
        Ok(Client { inner })
    }

    /// The embedded default under `state_dir` (`bucket/`, `cache/`): misses are filled in
    /// this process from the providers the environment configures (`CACHE_PROVIDERS`,
    /// `THETADATA_BASE_URL`, ...).
    #[staticmethod]
    fn embedded(state_dir: PathBuf) -> PyResult<Client> {
        let settings = cachefill_core::settings::ProviderSettings::from_env(
            cachefill_core::settings::ProviderSettings::EMBEDDED,
        )
        .map_err(|e| ConfigurationError::new_err(e.to_string()))?;
        let embedded = Embedded::open(&state_dir)
            .map_err(error)?
            .with_providers(&settings)
            .map_err(|e| ConfigurationError::new_err(e.to_string()))?;
        Ok(Client {
            inner: embedded.client(),
        })
    }

    /// The miss-handler request `request_json` names, made local.
    fn get(&self, py: Python<'_>, request_json: &str) -> PyResult<LocalFile> {
        let request =
            MissRequest::from_json(request_json).map_err(|e| InvalidRequest::new_err(e.0))?;
        if let MissRequest::Bars(bars) = &request {
            // A range already local and verified is answered here, without the runtime.
            let bars = DataRequest::from(bars.clone());
            let local = py.detach(|| self.inner.get_local(&bars)).map_err(error)?;
            if let Some(file) = local {
                return Ok(file.into());
            }
        }
        let client = self.inner.clone();
        let file = wait(py, async move { client.get_any(&request).await }).map_err(error)?;
        Ok(file.into())
    }

    /// lumibot's `ensure_local_file`.
    fn ensure_local_file(&self, py: Python<'_>, path: PathBuf) -> PyResult<bool> {
        // A local copy its marker vouches for is answered here, without the runtime.
        if let Some(answer) = py
            .detach(|| self.inner.ensure_local_file_here(&path))
            .map_err(error)?
        {
            return Ok(answer);
        }
        let client = self.inner.clone();
        wait(py, async move { client.ensure_local_file(&path).await }).map_err(error)
    }

    /// lumibot's `on_local_update`.
    fn on_local_update(&self, py: Python<'_>, path: PathBuf) -> PyResult<bool> {
        let client = self.inner.clone();
        wait(py, async move { client.on_local_update(&path).await }).map_err(error)
    }

    /// lumibot's `remote_key_for`.
    fn remote_key_for(&self, path: PathBuf) -> Option<String> {
        self.inner.remote_key_for(path)
    }

    /// `disabled`, `readwrite` or `readonly`.
    #[getter]
    fn mode(&self) -> String {
        self.inner.mode().to_string()
    }

    /// The local cache root.
    #[getter]
    fn cache_root(&self) -> PathBuf {
        self.inner.config().cache_root.clone()
    }

    /// What this client has done, as `(name, count)` pairs.
    fn stats(&self) -> Vec<(&'static str, u64)> {
        let s = self.inner.stats();
        vec![
            ("requests", s.requests),
            ("local_hits", s.local_hits),
            ("remote_hits", s.remote_hits),
            ("fills", s.fills),
            ("invocations", s.invocations),
            ("upstream_requests", s.upstream_requests),
        ]
    }
}

/// The `cachefill` command line with `argv` (the program name first); its exit code.
#[pyfunction]
fn main(py: Python<'_>, argv: Vec<String>) -> u8 {
    py.detach(|| cachefill_client::cli::run(argv))
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add_class::<Client>()?;
    m.add_class::<LocalFile>()?;
    m.add_function(wrap_pyfunction!(main, m)?)?;
    for (name, class) in [
        ("CacheError", py.get_type::<CacheError>()),
        ("InvalidRequest", py.get_type::<InvalidRequest>()),
        (
            "UpstreamNoPermission",
            py.get_type::<UpstreamNoPermission>(),
        ),
        ("UpstreamRateLimited", py.get_type::<UpstreamRateLimited>()),
        ("UpstreamUnavailable", py.get_type::<UpstreamUnavailable>()),
        ("StorageConflict", py.get_type::<StorageConflict>()),
        ("Internal", py.get_type::<Internal>()),
        ("ConfigurationError", py.get_type::<ConfigurationError>()),
        ("InvocationError", py.get_type::<InvocationError>()),
        ("NotCovered", py.get_type::<NotCovered>()),
        ("NoData", py.get_type::<NoData>()),
    ] {
        m.add(name, class)?;
    }
    Ok(())
}
