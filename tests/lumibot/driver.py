"""The lumibot side of tests/tests/lumibot.rs: the real lumibot 4.6.30 package, driven the way a
backtest drives it, writing and reading cache files beside cachefill's.

Run by the Rust test with the project venv's python (scripts/setup-venv installs lumibot).
Every subcommand prints one JSON object on stdout; logs (lumibot's included, which it writes to
stdout) go to stderr. The environment is set
by the caller before this process starts, because lumibot reads it at import time:

    LUMIBOT_CACHE_FOLDER             the cache root lumibot writes to and reads from
    THETADATA_BASE_URL               the replay server standing in for the ThetaData terminal
    DATADOWNLOADER_SKIP_LOCAL_START  true: lumibot never starts a ThetaTerminal of its own
    THETADATA_USERNAME/_PASSWORD     any value: lumibot refuses to make requests without them

Subcommands:

    write CASES            lumibot fetches every case through its own downloader (a cache miss)
                           and writes its cache files.
    read CASES OUT         lumibot reads every case from the cache folder as a backtest does,
                           with its downloader and its split/dividend lookups replaced; the
                           frames it returns go to OUT (a pickle), the calls made to the
                           replacements are reported.
    compare A B            the frames of two `read` runs, case by case.
    pandas3 SRC DST        lumibot's files under SRC rewritten as pandas 3 writes them under DST.
    s3key CASES            lumibot's BacktestCacheManager on files our client downloaded from S3.

CASES is a JSON file: a list of {"name", "asset": {"asset_type", "symbol", ["expiration",
"strike", "right"]}, "timespan", "datastyle", "start", "end", "dt"}; start, end and dt are New
York wall-clock times (ISO 8601 without offset), as a backtest holds them.
"""

import datetime as dt
import json
import os
import pickle
import sys
import traceback


def log(*args):
    print(*args, file=sys.stderr, flush=True)


def ny(text):
    import pytz

    return pytz.timezone("America/New_York").localize(dt.datetime.fromisoformat(text))


def load_cases(path):
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def asset_of(case):
    from lumibot.entities import Asset

    spec = case["asset"]
    if spec["asset_type"] == "option":
        return Asset(
            spec["symbol"],
            asset_type="option",
            expiration=dt.date.fromisoformat(spec["expiration"]),
            strike=spec["strike"],
            right=spec["right"],
        )
    return Asset(spec["symbol"], asset_type=spec["asset_type"])


def relative_cache_path(case):
    """Where lumibot keeps the case's file, relative to LUMIBOT_CACHE_FOLDER."""
    from lumibot.tools import thetadata_helper as th

    path = th.build_cache_filename(asset_of(case), case["timespan"], case["datastyle"])
    return os.path.relpath(path, th.LUMIBOT_CACHE_FOLDER)


def set_backtesting(on):
    if on:
        os.environ["IS_BACKTESTING"] = "true"
    else:
        os.environ.pop("IS_BACKTESTING", None)


def get_price_data(case, *, backtesting):
    """lumibot's get_price_data as ThetaDataBacktestingPandas calls it: New York bounds, the
    simulation time as `dt`, extended hours, and full history for options and day bars
    (`preserve_full_history = is_option_asset or ts_unit == "day"`) when backtesting."""
    from lumibot.tools import thetadata_helper as th

    asset = asset_of(case)
    set_backtesting(backtesting)
    preserve = backtesting and (asset.asset_type == "option" or case["timespan"] == "day")
    return th.get_price_data(
        asset,
        ny(case["start"]),
        ny(case["end"]),
        timespan=case["timespan"],
        dt=ny(case["dt"]),
        datastyle=case["datastyle"],
        include_after_hours=True,
        preserve_full_history=preserve,
    )


def cmd_write(cases_path):
    cases = load_cases(cases_path)
    out = {"files": {}}
    for case in cases:
        frame = get_price_data(case, backtesting=False)
        rows = 0 if frame is None else len(frame)
        relative = relative_cache_path(case)
        absolute = os.path.join(os.environ["LUMIBOT_CACHE_FOLDER"], relative)
        if not os.path.isfile(absolute):
            raise SystemExit(f"{case['name']}: lumibot wrote no file at {absolute}")
        out["files"][case["name"]] = {"path": relative, "rows_returned": rows}
        log(f"write {case['name']}: {relative} ({rows} rows returned)")
    return out


class Recorder:
    """Stand-ins for what a cache read must never need: each records its call. The downloader
    stand-ins then raise (lumibot must not reach the terminal); the split and dividend lookups
    answer "no events", which is what lumibot's own lookups got from the replay server while it
    wrote its files, so a read that does look them up returns what it would have."""

    DOWNLOADER = [
        "get_request",
        "get_historical_data",
        "get_historical_eod_data",
        "_download_corporate_events",
        "check_connection",
        "start_theta_data_client",
    ]
    LOOKUPS = ["_get_theta_splits", "_get_theta_dividends"]

    def __init__(self):
        self.calls = []
        self.case = None

    def install(self):
        import pandas as pd
        import requests
        from lumibot.tools import thetadata_helper as th

        def downloader(name):
            def replacement(*args, **kwargs):
                self.calls.append({"case": self.case, "function": name, "args": _describe(args, kwargs)})
                raise AssertionError(f"lumibot called {name} while reading its cache")

            return replacement

        def lookup(name):
            def replacement(*args, **kwargs):
                self.calls.append({"case": self.case, "function": name, "args": _describe(args, kwargs)})
                return pd.DataFrame()

            return replacement

        for name in self.DOWNLOADER:
            setattr(th, name, downloader(name))
        for name in self.LOOKUPS:
            setattr(th, name, lookup(name))
        # Below the helpers: any HTTP request at all.
        requests.get = downloader("requests.get")
        requests.Session.request = downloader("requests.Session.request")


def _describe(args, kwargs):
    parts = [str(a) for a in args] + [f"{k}={v}" for k, v in kwargs.items()]
    return ", ".join(parts)[:300]


def cmd_read(cases_path, out_path):
    cases = load_cases(cases_path)
    recorder = Recorder()
    recorder.install()
    frames = {}
    errors = {}
    summary = {}
    for case in cases:
        for backtesting in (False, True):
            label = f"{case['name']}{' backtesting' if backtesting else ''}"
            recorder.case = label
            try:
                frame = get_price_data(case, backtesting=backtesting)
            except Exception:
                errors[label] = traceback.format_exc()
                continue
            frames[label] = frame
            summary[label] = {
                "rows": 0 if frame is None else len(frame),
                "columns": [] if frame is None else [str(c) for c in frame.columns],
            }
    with open(out_path, "wb") as handle:
        pickle.dump(frames, handle)
    return {"frames": summary, "calls": recorder.calls, "errors": errors}


def cmd_compare(a_path, b_path, allow="exact"):
    """Compare two reads case by case: the same index, columns and values.

    With `allow` = `edge-markers`, the two effects of cachefill's session-edge placeholder
    (FORMAT.md, "Parquet") on the second read are taken out and reported under `allowed`,
    so that anything else still counts: rows only in the second read that are placeholders
    (`missing` true; lumibot keeps them for options in a backtest), and integer columns of
    the first read that the second has as float64 with the same whole values (pandas reads an
    int64 parquet column holding a null as float64).

    The index and timestamp columns are compared at nanosecond resolution: lumibot's files
    hold `timestamp[ns]` (pandas 2 writes nanoseconds), a file written at another resolution
    (pandas 3 writes microseconds) reads back at that resolution with pandas 2.3's
    `read_parquet`, and the instants are what lumibot computes with. Column order is reported
    but not compared: lumibot's own order is the order of the keys in ThetaData's JSON answer,
    and everything downstream addresses columns by name.
    """
    import pandas as pd

    with open(a_path, "rb") as handle:
        a = pickle.load(handle)
    with open(b_path, "rb") as handle:
        b = pickle.load(handle)
    result = {"compared": [], "differences": {}, "column_order": {}, "allowed": {}}
    for label in sorted(set(a) | set(b)):
        if label not in a or label not in b:
            result["differences"][label] = f"only in {'first' if label in a else 'second'} read"
            continue
        fa, fb = a[label], b[label]
        result["compared"].append(label)
        if fa is None or fb is None:
            if not (fa is None and fb is None):
                result["differences"][label] = f"one frame is None: {fa is None} / {fb is None}"
            continue
        if list(fa.columns) != list(fb.columns):
            result["column_order"][label] = {"first": list(map(str, fa.columns)), "second": list(map(str, fb.columns))}
        problems = []
        if set(fa.columns) != set(fb.columns):
            problems.append(
                f"columns differ: only in first {sorted(set(fa.columns) - set(fb.columns))}, "
                f"only in second {sorted(set(fb.columns) - set(fa.columns))}"
            )
        common = [c for c in fa.columns if c in set(fb.columns)]
        if allow == "edge-markers":
            fb, allowed = _without_edge_effects(fa, fb, common)
            if allowed:
                result["allowed"][label] = allowed
        na, nb = _at_ns(fa[common]), _at_ns(fb[common])
        try:
            pd.testing.assert_index_equal(na.index, nb.index, exact=True)
        except AssertionError as exc:
            problems.append(f"index: {exc}")
        else:
            for column in common:
                try:
                    pd.testing.assert_series_equal(na[column], nb[column], check_exact=True, check_names=True)
                except AssertionError as exc:
                    problems.append(f"column {column}: {exc}")
        if problems:
            result["differences"][label] = problems
    return result


def _without_edge_effects(fa, fb, common):
    import pandas as pd

    allowed = {}
    extra = fb.index.difference(fa.index)
    if len(extra) and "missing" in fb.columns:
        rows = fb.loc[extra]
        if rows["missing"].fillna(False).astype(bool).all():
            allowed["placeholder_rows"] = [str(t) for t in extra]
            fb = fb.drop(index=extra)
    fb = fb.copy()
    for column in common:
        if pd.api.types.is_integer_dtype(fa[column].dtype) and pd.api.types.is_float_dtype(fb[column].dtype):
            values = fb[column]
            if values.notna().all() and (values == values.round()).all():
                fb[column] = values.astype(fa[column].dtype)
                allowed.setdefault("int_as_float", []).append(column)
    return fb, allowed


def _at_ns(frame):
    import pandas as pd

    frame = frame.copy()
    if isinstance(frame.index, pd.DatetimeIndex):
        frame.index = frame.index.as_unit("ns")
    for column in frame.columns:
        if isinstance(frame[column].dtype, pd.DatetimeTZDtype) or str(frame[column].dtype).startswith("datetime64"):
            frame[column] = frame[column].dt.as_unit("ns")
    return frame


def cmd_pandas3(src, dst):
    """Write every dataset file of lumibot's cache under SRC again under DST, as lumibot 4.6.30
    writes it under pandas 3: its own `update_cache` (parquet through pyarrow, then the
    `.meta.json` sidecar) with pandas 3's defaults, text as the Arrow-backed `str` dtype
    (pandas 2.3's `future.infer_string`, which pandas 3 turns on; parquet `large_string`) and
    timestamps at microseconds (`timestamp[us, tz=...]`). pandas 3 itself cannot be installed
    beside lumibot in the project venv, which keeps pandas 2.3.3 (scripts/requirements-dev.txt)."""
    import pathlib

    import pandas as pd
    import pyarrow.parquet as pq
    from lumibot.tools import thetadata_helper as th

    written = []
    for root, _dirs, files in os.walk(src):
        for name in sorted(files):
            if not name.endswith(".parquet") or os.sep + "events" + os.sep in root + os.sep:
                continue
            source = pathlib.Path(root) / name
            relative = os.path.relpath(source, src)
            target = pathlib.Path(dst) / relative
            with pd.option_context("future.infer_string", True):
                frame = pd.read_parquet(source, engine="pyarrow")
                for column in frame.columns:
                    if str(frame[column].dtype).startswith("datetime64"):
                        frame[column] = frame[column].dt.as_unit("us")
                frame = frame.set_index("datetime")
                payload = (th._load_cache_sidecar(source) or {}).get("cache_payload")
                th.update_cache(target, frame, None, remote_payload=payload)
            schema = pq.read_schema(target).remove_metadata()
            written.append({"path": relative, "schema": schema.to_string()})
    return {"written": written}


class CountingS3:
    """A boto3 S3 client on moto that counts every call lumibot makes through it."""

    def __init__(self, inner):
        self.inner = inner
        self.calls = []

    def __getattr__(self, name):
        attribute = getattr(self.inner, name)
        if not callable(attribute):
            return attribute

        def counted(*args, **kwargs):
            self.calls.append(name)
            return attribute(*args, **kwargs)

        return counted


def cmd_s3key(cases_path):
    """lumibot's BacktestCacheManager (S3 backend, the mode of LUMIBOT_CACHE_MODE) on the files
    our client downloaded, with the `.s3key` markers it wrote beside them: ensure_local_file
    must reuse each file with no S3 call, then get_price_data must read it with no S3 call and
    no request to the terminal. Finally, as a control, a file whose marker is removed must be
    downloaded from moto again by lumibot itself (one get_object)."""
    import boto3
    from lumibot.tools import backtest_cache as bc
    from lumibot.tools import thetadata_helper as th

    cases = load_cases(cases_path)
    clients = []

    def factory(settings):
        client = CountingS3(
            boto3.client(
                "s3",
                endpoint_url=os.environ["MOTO_ENDPOINT"],
                region_name=settings.region,
                aws_access_key_id=settings.access_key_id,
                aws_secret_access_key=settings.secret_access_key,
            )
        )
        clients.append(client)
        return client

    settings = bc.BacktestCacheSettings.from_env(bc.CACHE_REMOTE_CONFIG)
    if settings is None:
        raise SystemExit("LUMIBOT_CACHE_BACKEND=s3 and a LUMIBOT_CACHE_MODE are required")
    manager = bc.BacktestCacheManager(settings, client_factory=factory)
    # get_price_data asks get_backtest_cache() for the manager; this is the one it gets.
    bc._MANAGER_INSTANCE = manager

    def s3_calls():
        return [call for client in clients for call in client.calls]

    out = {"mode": str(manager.mode.value), "cases": {}}
    recorder = Recorder()
    recorder.install()
    for case in cases:
        asset = asset_of(case)
        path = th.build_cache_filename(asset, case["timespan"], case["datastyle"])
        payload = th.build_remote_cache_payload(asset, case["timespan"], case["datastyle"])
        marker = path.with_suffix(path.suffix + ".s3key")
        before = len(s3_calls())
        fetched = manager.ensure_local_file(path, payload=payload)
        after_ensure = len(s3_calls())
        recorder.case = case["name"]
        frame = get_price_data(case, backtesting=True)
        out["cases"][case["name"]] = {
            "remote_key": manager.remote_key_for(path, payload),
            "marker": marker.read_text(encoding="utf-8").strip() if marker.exists() else None,
            "fetched": fetched,
            "s3_calls_ensure": after_ensure - before,
            "s3_calls_read": len(s3_calls()) - after_ensure,
            "rows": 0 if frame is None else len(frame),
            "stats": manager.stats_snapshot(),
        }
    out["downloader_calls"] = [c for c in recorder.calls if c["function"] not in Recorder.LOOKUPS]

    # The control: without its marker, lumibot downloads the same file from moto.
    case = cases[0]
    path = th.build_cache_filename(asset_of(case), case["timespan"], case["datastyle"])
    payload = th.build_remote_cache_payload(asset_of(case), case["timespan"], case["datastyle"])
    path.with_suffix(path.suffix + ".s3key").unlink()
    fresh = bc.BacktestCacheManager(settings, client_factory=factory)
    before = list(s3_calls())
    fetched = fresh.ensure_local_file(path, payload=payload)
    out["control"] = {
        "case": case["name"],
        "fetched": fetched,
        "s3_calls": s3_calls()[len(before):],
        "marker": path.with_suffix(path.suffix + ".s3key").read_text(encoding="utf-8").strip(),
        "exists": path.is_file(),
    }
    return out


def serve(argv, commands, doc):
    """Run the subcommand `argv[1]` of `commands` and print its result as one JSON object."""
    # lumibot's logger writes to stdout: keep the real stdout for the one JSON answer and send
    # everything else printed on it to stderr.
    answer = os.fdopen(os.dup(1), "w", encoding="utf-8")
    sys.stdout.flush()
    os.dup2(2, 1)
    if len(argv) < 2:
        raise SystemExit(doc)
    command, args = argv[1], argv[2:]
    if command not in commands:
        raise SystemExit(f"unknown command {command!r}\n{doc}")
    result = commands[command](*args)
    sys.stdout.flush()
    answer.write(json.dumps(result, default=str) + "\n")
    answer.close()
    sys.stderr.flush()
    # The answer is out. lumibot leaves background threads (its downloader queue, native
    # pools) that can abort the interpreter's teardown ("terminate called without an active
    # exception"); nothing is left to clean up, so skip it.
    os._exit(0)


def main(argv):
    serve(
        argv,
        {
            "write": cmd_write,
            "read": cmd_read,
            "compare": cmd_compare,
            "pandas3": cmd_pandas3,
            "s3key": cmd_s3key,
        },
        __doc__,
    )


if __name__ == "__main__":
    main(sys.argv)
