"""cachefill: lumibot's market-data cache, filled by the miss-handler.

The client is the Rust `cachefill-client` (modes, coverage, the local cache, single-flight,
widening, invocation); this package converts Python values into its requests.

    import cachefill
    client = cachefill.Client.from_env()           # LUMIBOT_CACHE_* settings
    client = cachefill.Client.embedded(".cachefill")  # one machine, no AWS
    f = client.get({"provider": "thetadata", "asset_type": "stock", "symbol": "TSLA",
                    "timespan": "minute", "datastyle": "ohlc"}, "2024-11-15", "2024-11-15")
    f.path, f.rows, f.source

`start` and `end` take a `datetime.date`, a `datetime.datetime` (naive means New York, as
lumibot holds it) or an ISO string. Errors are `CacheError` subclasses, one per miss-handler
`errorType` plus `ConfigurationError`, `InvocationError`, `NotCovered` and `NoData`.
"""

from __future__ import annotations

import datetime as _dt
import json as _json
from typing import Any, Mapping, Optional, Union

from . import _native
from ._native import (
    CacheError,
    ConfigurationError,
    Internal,
    InvalidRequest,
    InvocationError,
    LocalFile,
    NoData,
    NotCovered,
    StorageConflict,
    UpstreamNoPermission,
    UpstreamRateLimited,
    UpstreamUnavailable,
)

__all__ = [
    "CacheError",
    "Client",
    "ConfigurationError",
    "Internal",
    "InvalidRequest",
    "InvocationError",
    "LocalFile",
    "NoData",
    "NotCovered",
    "StorageConflict",
    "UpstreamNoPermission",
    "UpstreamRateLimited",
    "UpstreamUnavailable",
]

Bound = Union[_dt.date, _dt.datetime, str]

_NEW_YORK = None


def _new_york():
    global _NEW_YORK
    if _NEW_YORK is None:
        from zoneinfo import ZoneInfo

        _NEW_YORK = ZoneInfo("America/New_York")
    return _NEW_YORK


def bound_text(value: Bound, name: str = "bound") -> str:
    """A date or instant as the miss-handler's request takes it: `YYYY-MM-DD`, or an RFC 3339
    instant (a naive datetime is New York wall-clock time, as lumibot holds it)."""
    if isinstance(value, _dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=_new_york())
        return value.isoformat()
    if isinstance(value, _dt.date):
        return value.isoformat()
    if isinstance(value, str):
        return value
    raise InvalidRequest(f"{name} must be a date, a datetime or an ISO string, not {type(value).__name__}")


_EVENT_STYLES = ("splits", "dividends")
_CHAIN_STYLE = "option_chains"


def request_json(payload: Mapping[str, Any], start: Bound, end: Optional[Bound] = None, include_after_hours: bool = True) -> str:
    """The miss-handler request for `payload` over `start..end` (a chain takes `start` only)."""
    if not isinstance(payload, Mapping):
        raise InvalidRequest(f"payload must be a dict, not {type(payload).__name__}")
    fields = dict(payload)
    style = str(fields.get("datastyle", "")).lower()
    if style == _CHAIN_STYLE:
        fields["date"] = bound_text(start, "start")[:10]
    else:
        fields["start"] = bound_text(start, "start")
        fields["end"] = bound_text(start if end is None else end, "end")
        if style not in _EVENT_STYLES:
            fields["include_after_hours"] = bool(include_after_hours)
    return _json.dumps(fields, default=str)


class Client:
    """The cache as a backtest job sees it: local cache, then the bucket, then the
    miss-handler, in lumibot's mode. Safe to share between threads."""

    def __init__(self, native: "_native.Client"):
        self._native = native

    @classmethod
    def from_env(cls) -> "Client":
        """lumibot's `LUMIBOT_CACHE_*` settings, `LUMIBOT_CACHE_FILL_FUNCTION`, `AWS_ENDPOINT_URL*`."""
        return cls(_native.Client.from_env())

    @classmethod
    def embedded(cls, state_dir) -> "Client":
        """The embedded default under `state_dir` (`bucket/`, `cache/`), filling in-process."""
        return cls(_native.Client.embedded(str(state_dir)))

    @property
    def mode(self) -> str:
        return self._native.mode

    @property
    def cache_root(self):
        return self._native.cache_root

    def get(self, payload: Mapping[str, Any], start: Bound, end: Optional[Bound] = None, include_after_hours: bool = True) -> LocalFile:
        """Make the dataset (lumibot's payload: bars, `splits`/`dividends`, or `option_chains`)
        local over `start..end` and return where it is."""
        return self._native.get(request_json(payload, start, end, include_after_hours))

    def ensure_local_file(self, path, payload: Optional[Mapping[str, Any]] = None) -> bool:
        """lumibot's `BacktestCacheManager.ensure_local_file`: `True` when a download replaced
        the local file."""
        return self._native.ensure_local_file(str(path))

    def on_local_update(self, path, payload: Optional[Mapping[str, Any]] = None) -> bool:
        """lumibot's `on_local_update`: `True` when the file was uploaded (readwrite only)."""
        return self._native.on_local_update(str(path))

    def remote_key_for(self, path) -> Optional[str]:
        return self._native.remote_key_for(str(path))

    def stats(self) -> dict:
        """`requests`, `local_hits`, `remote_hits`, `fills`, `invocations`, `upstream_requests`."""
        return dict(self._native.stats())
