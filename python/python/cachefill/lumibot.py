"""A lumibot 4.6 process whose ThetaData cache misses are filled by cachefill.

    import cachefill.lumibot
    cachefill.lumibot.install()          # cachefill.Client.from_env(); or install(client)

After `install`, lumibot's ThetaData backtesting reads only its cache folder:

- before `thetadata_helper.get_price_data` reads a dataset's cache file, the range it asks
  for is made local by cachefill (local copy, else the bucket, else the miss-handler);
- before `_ensure_event_cache` (splits, dividends) and `get_chains_cached` (option chains),
  the same for the events and the chain;
- lumibot's `BacktestCacheManager` is replaced by one backed by the same client, so its own
  `ensure_local_file` / `on_local_update` follow cachefill's mode (`readonly` never writes);
- lumibot's downloader (`get_request`, the chain builder) is never called: a call is a
  `DownloaderCalled` error naming what was asked.

Importing this module installs it when the environment asks for it: `CACHEFILL_LUMIBOT=1`,
or `LUMIBOT_CACHE_FILL_FUNCTION` set with `LUMIBOT_CACHE_MODE=readonly`
(`CACHEFILL_LUMIBOT=0` opts out), so `import cachefill.lumibot` at the top of a strategy file
is all a readonly job adds. Only lumibot 4.6.x is known; any
other version is refused with `UnsupportedLumibot`, never silently left fetching on its own.
docs/LUMIBOT.md says exactly what is replaced.
"""

from __future__ import annotations

import datetime as _dt
import functools
import inspect
import os
import threading
from typing import Any, Optional

from . import CacheError, Client, NoData

SUPPORTED = ("4.6",)
"""The lumibot major.minor versions whose functions this module knows."""


class UnsupportedLumibot(CacheError):
    """The installed lumibot is not a version this integration knows."""


class DownloaderCalled(CacheError):
    """lumibot reached its own ThetaData downloader while cachefill fills its cache."""


_LOCK = threading.Lock()
_INSTALLED: Optional["Installed"] = None


def lumibot_version() -> str:
    from importlib import metadata

    try:
        return metadata.version("lumibot")
    except metadata.PackageNotFoundError as exc:
        raise UnsupportedLumibot("lumibot is not installed in this environment") from exc


def check_version(version: Optional[str] = None) -> str:
    """The lumibot version, when this integration knows it; else `UnsupportedLumibot`."""
    version = version or lumibot_version()
    if not any(version == known or version.startswith(known + ".") for known in SUPPORTED):
        raise UnsupportedLumibot(
            f"cachefill.lumibot knows lumibot {', '.join(v + '.x' for v in SUPPORTED)}; this is lumibot "
            f"{version}. Install a supported lumibot, or run without the integration (lumibot then "
            "fetches its misses itself)."
        )
    return version


class Installed:
    """What `install` replaced, and the client behind it."""

    def __init__(self, client: Client, version: str, originals: dict):
        self.client = client
        self.version = version
        self.originals = originals
        self.downloader_calls: list = []

    def uninstall(self) -> None:
        """Put lumibot's functions back (tests)."""
        global _INSTALLED
        with _LOCK:
            for (module, name), original in self.originals.items():
                setattr(module, name, original)
            _INSTALLED = None


def _binder(function):
    """`(args, kwargs) -> {parameter: value}` by `function`'s own signature, defaults applied."""
    signature = inspect.signature(function)

    def bind(args, kwargs) -> dict:
        bound = signature.bind(*args, **kwargs)
        bound.apply_defaults()
        return bound.arguments

    return bind


def _asset_folder(asset) -> str:
    return str(getattr(asset, "asset_type", None) or "stock").strip().lower()


class _CacheManager:
    """lumibot's `BacktestCacheManager`, answered by the cachefill client."""

    def __init__(self, client: Client, cache_mode):
        self._client = client
        self._mode = cache_mode
        self._settings = None

    @property
    def enabled(self) -> bool:
        return self._client.mode != "disabled"

    @property
    def mode(self):
        return self._mode

    def remote_key_for(self, local_path, payload=None):
        return self._client.remote_key_for(local_path)

    def ensure_local_file(self, local_path, payload=None, force_download=False) -> bool:
        return self._client.ensure_local_file(local_path, payload)

    def on_local_update(self, local_path, payload=None) -> bool:
        return self._client.on_local_update(local_path, payload)


def install(client: Optional[Client] = None) -> Installed:
    """Make this lumibot process fill its ThetaData cache through cachefill (see the module
    doc). Idempotent; returns what was installed."""
    global _INSTALLED
    with _LOCK:
        if _INSTALLED is not None:
            return _INSTALLED
        version = check_version()
        client = client or Client.from_env()
        from lumibot.tools import backtest_cache as bc
        from lumibot.tools import thetadata_helper as th

        originals = {}

        def replace(module, name, replacement):
            originals[(module, name)] = getattr(module, name)
            setattr(module, name, replacement)

        installed = Installed(client, version, originals)

        get_price_data = th.get_price_data
        price_arguments = _binder(get_price_data)

        @functools.wraps(get_price_data)
        def get_price_data_through_cachefill(*args, **kwargs):
            a = price_arguments(args, kwargs)
            payload = th.build_remote_cache_payload(a["asset"], a["timespan"], a["datastyle"])
            client.get(payload, a["start"], a["end"], include_after_hours=a["include_after_hours"])
            return get_price_data(*args, **kwargs)

        ensure_event_cache = th._ensure_event_cache
        event_arguments = _binder(ensure_event_cache)

        @functools.wraps(ensure_event_cache)
        def ensure_event_cache_through_cachefill(*args, **kwargs):
            a = event_arguments(args, kwargs)
            asset = a["asset"]
            if _asset_folder(asset) == "stock" and getattr(asset, "symbol", None):
                start, end = sorted([a["start_date"], a["end_date"]])
                client.get(
                    {"provider": "thetadata", "asset_type": "stock", "symbol": asset.symbol, "datastyle": a["event_type"]},
                    start,
                    end,
                )
            return ensure_event_cache(*args, **kwargs)

        get_chains_cached = th.get_chains_cached
        chain_arguments = _binder(get_chains_cached)

        @functools.wraps(get_chains_cached)
        def get_chains_cached_through_cachefill(*args, **kwargs):
            a = chain_arguments(args, kwargs)
            asset, day = a["asset"], a["current_date"]
            if day is not None:
                if isinstance(day, _dt.datetime):
                    day = day.date()
                try:
                    client.get(
                        {"provider": "thetadata", "asset_type": _asset_folder(asset), "symbol": asset.symbol, "datastyle": "option_chains"},
                        day,
                    )
                except NoData:
                    # The root lists no expiration: lumibot's own answer for that case.
                    return {"Multiplier": 100, "Exchange": "SMART", "Chains": {"CALL": {}, "PUT": {}}}
            return get_chains_cached(*args, **kwargs)

        def downloader(name):
            def called(*args, **kwargs):
                described = ", ".join([repr(a) for a in args] + [f"{k}={v!r}" for k, v in kwargs.items()])
                installed.downloader_calls.append((name, described))
                raise DownloaderCalled(
                    f"lumibot called its ThetaData downloader ({name}({described[:300]})) while "
                    "cachefill.lumibot fills its cache: cachefill did not cover this request. "
                    "Report it with the dataset above; nothing was fetched."
                )

            return called

        replace(th, "get_price_data", get_price_data_through_cachefill)
        replace(th, "_ensure_event_cache", ensure_event_cache_through_cachefill)
        replace(th, "get_chains_cached", get_chains_cached_through_cachefill)
        replace(th, "get_request", downloader("get_request"))
        replace(th, "build_historical_chain", downloader("build_historical_chain"))
        cache_mode = {
            "readonly": bc.CacheMode.S3_READONLY,
            "readwrite": bc.CacheMode.S3_READWRITE,
        }.get(client.mode, bc.CacheMode.DISABLED)
        replace(bc, "_MANAGER_INSTANCE", _CacheManager(client, cache_mode))
        _INSTALLED = installed
        return installed


def installed() -> Optional[Installed]:
    return _INSTALLED


def wanted_by_environment(environ=os.environ) -> bool:
    """Whether the environment asks for the integration (see the module doc)."""
    flag = environ.get("CACHEFILL_LUMIBOT", "").strip().lower()
    if flag in {"0", "false", "no", "off"}:
        return False
    if flag in {"1", "true", "yes", "on"}:
        return True
    return bool(environ.get("LUMIBOT_CACHE_FILL_FUNCTION", "").strip()) and (
        environ.get("LUMIBOT_CACHE_MODE", "").strip().lower() == "readonly"
    )


def _install_from_environment() -> None:
    if wanted_by_environment():
        install()


_install_from_environment()

__all__ = [
    "DownloaderCalled",
    "Installed",
    "SUPPORTED",
    "UnsupportedLumibot",
    "check_version",
    "install",
    "installed",
    "lumibot_version",
    "wanted_by_environment",
]
