"""The lumibot side of tests/tests/lumibot_reference.rs: the real lumibot 4.6.30 package's
corporate-event cache and option-chain cache, driven offline against the replay server.

Run with the project venv's python, with the environment of driver.py (LUMIBOT_CACHE_FOLDER,
THETADATA_BASE_URL, DATADOWNLOADER_SKIP_LOCAL_START, THETADATA_USERNAME/_PASSWORD). Every
subcommand prints one JSON object on stdout; logs go to stderr.

Subcommands (SPECS is a JSON file):

    events-write SPECS   lumibot's `_ensure_event_cache` for each {"name", "symbol",
                         "event_type": "splits"|"dividends", "start", "end"}, through its own
                         downloader; prints {"files": {name: {"parquet", "meta"}}, "frames"}.
    events-read SPECS    the same lookups with every downloader replaced by a stand-in that
                         records the call and fails; prints {"frames", "calls", "errors"}.
    chains-write SPECS   lumibot's `get_chains_cached` for each {"name", "symbol",
                         "asset_type", "date"}; prints {"files": {name: path}, "chains"}.
    chains-read SPECS    the same with the downloader forbidden; prints {"chains", "calls",
                         "errors"}.

`parquet` is null when lumibot wrote no events file (a symbol without events). A frame is
{"columns", "dtypes", "records"} with timestamps in ISO form and NaN/NaT as null.

lumibot's chain builder always asks its strike lists through the Data Downloader's queue
client (`queue_client.check_or_submit` / `wait_for_result`), even with a local terminal; the
writes route those two calls through lumibot's own `get_request` to THETADATA_BASE_URL, the
way the downloader would forward them. That queue client is the one part isolated here.
"""

import datetime as dt
import json
import math
import os
import sys
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from driver import log, serve  # noqa: E402


def load(path):
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def relative(path):
    return os.path.relpath(str(path), os.environ["LUMIBOT_CACHE_FOLDER"])


def plain(value):
    """A value lumibot returns, as JSON: numpy scalars and arrays, timestamps, NaN."""
    import numpy as np
    import pandas as pd

    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [plain(v) for v in value]
    if value is None:
        return None
    if isinstance(value, pd.Timestamp):
        return None if pd.isna(value) else value.isoformat()
    if isinstance(value, (np.floating, float)):
        return None if math.isnan(float(value)) else float(value)
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, np.bool_):
        return bool(value)
    try:
        if pd.isna(value):
            return None
    except (TypeError, ValueError):
        pass
    return value


def frame(df):
    if df is None:
        return None
    columns = [str(c) for c in df.columns]
    return {
        "columns": columns,
        "dtypes": {str(c): str(t) for c, t in df.dtypes.items()},
        "records": [
            {c: plain(v) for c, v in zip(columns, row)} for row in df.itertuples(index=False)
        ],
    }


def asset(symbol, asset_type="stock"):
    from lumibot.entities import Asset

    return Asset(symbol, asset_type=asset_type)


class Forbidden:
    """Every way lumibot reaches a provider, replaced by a stand-in that records and fails."""

    def __init__(self):
        self.calls = []
        self.spec = None

    def install(self):
        import requests
        from lumibot.tools import data_downloader_queue_client as queue
        from lumibot.tools import thetadata_helper as th

        def forbidden(name):
            def replacement(*args, **kwargs):
                described = ", ".join([str(a) for a in args] + [f"{k}={v}" for k, v in kwargs.items()])
                self.calls.append({"spec": self.spec, "function": name, "args": described[:300]})
                raise AssertionError(f"lumibot called {name} while reading its cache")

            return replacement

        for name in [
            "get_request",
            "_download_corporate_events",
            "build_historical_chain",
            "check_connection",
            "start_theta_data_client",
        ]:
            setattr(th, name, forbidden(name))
        client = queue.get_queue_client()
        client.check_or_submit = forbidden("queue.check_or_submit")
        client.wait_for_result = forbidden("queue.wait_for_result")
        requests.get = forbidden("requests.get")
        requests.Session.request = forbidden("requests.Session.request")


def route_queue_to_terminal():
    """The queue client's two calls answered by lumibot's own get_request (see the module doc)."""
    from lumibot.tools import data_downloader_queue_client as queue
    from lumibot.tools import thetadata_helper as th

    client = queue.get_queue_client()
    answers = {}

    def check_or_submit(method, path, query_params=None, headers=None, **_):
        request_id = f"local-{len(answers)}"
        url = f"{th._current_base_url()}/{path.lstrip('/')}"
        try:
            answers[request_id] = (th.get_request(url=url, headers=headers or {}, querystring=query_params or {}), 200)
        except th.ThetaRequestError as exc:
            answers[request_id] = (None, exc.status_code or 500)
        return request_id, "completed", False

    def wait_for_result(request_id, timeout=None, **_):
        return answers.pop(request_id)

    client.check_or_submit = check_or_submit
    client.wait_for_result = wait_for_result


def ensure_events(spec):
    from lumibot.tools import thetadata_helper as th

    th._event_cache_memory.clear()
    return th._ensure_event_cache(
        asset(spec["symbol"]),
        spec["event_type"],
        dt.date.fromisoformat(spec["start"]),
        dt.date.fromisoformat(spec["end"]),
    )


def cmd_events_write(specs_path):
    from lumibot.tools import thetadata_helper as th

    out = {"files": {}, "frames": {}}
    for spec in load(specs_path):
        df = ensure_events(spec)
        parquet, meta = th._event_cache_paths(asset(spec["symbol"]), spec["event_type"])
        out["files"][spec["name"]] = {
            "parquet": relative(parquet) if parquet.exists() else None,
            "meta": relative(meta),
        }
        out["frames"][spec["name"]] = frame(df)
        log(f"events-write {spec['name']}: {0 if df is None else len(df)} events")
    return out


def cmd_events_read(specs_path):
    forbidden = Forbidden()
    forbidden.install()
    out = {"frames": {}, "calls": forbidden.calls, "errors": {}}
    for spec in load(specs_path):
        forbidden.spec = spec["name"]
        try:
            out["frames"][spec["name"]] = frame(ensure_events(spec))
        except Exception:
            out["errors"][spec["name"]] = traceback.format_exc()
    return out


def chain_of(spec):
    from lumibot.tools import thetadata_helper as th

    return th.get_chains_cached(asset(spec["symbol"], spec.get("asset_type", "stock")), dt.date.fromisoformat(spec["date"]))


def chain_path(spec):
    from lumibot.tools import thetadata_helper as th

    folder = os.path.join(th.LUMIBOT_CACHE_FOLDER, "thetadata", spec.get("asset_type", "stock"), "option_chains")
    return os.path.join(folder, f"{spec['symbol']}_{spec['date']}.parquet")


def cmd_chains_write(specs_path):
    route_queue_to_terminal()
    out = {"files": {}, "chains": {}}
    for spec in load(specs_path):
        chain = chain_of(spec)
        path = chain_path(spec)
        out["files"][spec["name"]] = relative(path) if os.path.isfile(path) else None
        out["chains"][spec["name"]] = plain(chain)
        log(f"chains-write {spec['name']}: {len((chain or {}).get('Chains', {}).get('CALL', {}))} expirations")
    return out


def cmd_chains_read(specs_path):
    forbidden = Forbidden()
    forbidden.install()
    out = {"chains": {}, "calls": forbidden.calls, "errors": {}}
    for spec in load(specs_path):
        forbidden.spec = spec["name"]
        try:
            out["chains"][spec["name"]] = plain(chain_of(spec))
        except Exception:
            out["errors"][spec["name"]] = traceback.format_exc()
    return out


if __name__ == "__main__":
    serve(
        sys.argv,
        {
            "events-write": cmd_events_write,
            "events-read": cmd_events_read,
            "chains-write": cmd_chains_write,
            "chains-read": cmd_chains_read,
        },
        __doc__,
    )
