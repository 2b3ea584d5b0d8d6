"""Drives lumibot 4.6.30's Polygon helper (`lumibot.tools.polygon_helper`) for
tests/tests/lumibot_polygon.rs.

    python polygon_driver.py CASES.json

CASES.json is a list of cases, each `{"asset": {"symbol", "asset_type", "expiration"?,
"strike"?, "right"?}, "timespan", "start", "end", "results": [Polygon aggregate results],
"ours": folder, "theirs": folder, "splits_sidecar": bool}`. For each case:

1. lumibot fills `theirs` through its own downloader, its Polygon client replaced by one that
   answers `get_aggs` from `results` (as Polygon would for the dates asked) and `list_splits`
   with no splits; then reads it again, from its cache.
2. lumibot reads `ours` (the folder cachefill filled) with its Polygon client replaced by one
   that records every use and raises a BaseException, which lumibot's `except Exception`
   cannot swallow. With `splits_sidecar`, an empty `_splits.parquet` with today's date is put
   beside the file first, as lumibot's own first read leaves one (cachefill does not write it).

It prints one JSON object: per case, the rows of both frames, whether they are equal
(`pandas.testing.assert_frame_equal`) and the difference if not, the client calls made on
`ours`, and the `get_aggs` calls lumibot made for `theirs`.
"""

import datetime as dt
import json
import os
import sys

import pandas as pd

import lumibot.tools.polygon_helper as ph
from lumibot.entities import Asset
from polygon.rest.models import Agg


class Forbidden(BaseException):
    """A use of the Polygon client while reading cachefill's folder."""


def asset_of(spec):
    kind = spec["asset_type"]
    if kind == "option":
        return Asset(
            spec["symbol"],
            asset_type="option",
            expiration=dt.date.fromisoformat(spec["expiration"]),
            strike=spec["strike"],
            right=spec["right"],
        )
    return Asset(spec["symbol"], asset_type=kind)


class Replaying:
    """The Polygon client lumibot gets while it fills its own folder."""

    def __init__(self, results):
        self.results = results
        self.asked = []

    def get_aggs(self, ticker, multiplier, timespan, from_, to, **kwargs):
        self.asked.append([ticker, str(from_), str(to)])
        day = lambda r: pd.Timestamp(r["t"], unit="ms", tz="UTC").tz_convert("America/New_York").date()
        return [Agg.from_dict(r) for r in self.results if from_ <= day(r) <= to]

    def list_splits(self, *args, **kwargs):
        return iter([])

    def list_options_contracts(self, *args, **kwargs):
        raise Forbidden("list_options_contracts: option cases are not replayed")


def frame(asset, case, root):
    ph.LUMIBOT_CACHE_FOLDER = root
    start = dt.datetime.fromisoformat(case["start"])
    end = dt.datetime.fromisoformat(case["end"])
    return ph.get_price_data_from_polygon("cachefill-e2e", asset, start, end, timespan=case["timespan"])


def run(case):
    asset = asset_of(case["asset"])
    replaying = Replaying(case["results"])
    ph.PolygonClient.create = classmethod(lambda cls, *a, **k: replaying)
    frame(asset, case, case["theirs"])
    theirs = frame(asset, case, case["theirs"])

    calls = []

    def forbidden(cls, *args, **kwargs):
        calls.append(kwargs)
        raise Forbidden("the Polygon client was used on cachefill's folder")

    ph.PolygonClient.create = classmethod(forbidden)
    if case["splits_sidecar"]:
        ph.LUMIBOT_CACHE_FOLDER = case["ours"]
        base = str(ph.build_cache_filename(asset, case["timespan"])).rpartition(".parquet")[0]
        pd.DataFrame([]).to_parquet(base + "_splits.parquet", compression="snappy", engine="pyarrow")
    try:
        ours = frame(asset, case, case["ours"])
        error = None
    except Forbidden as e:
        ours, error = None, str(e)
    out = {
        "theirs_rows": len(theirs),
        "ours_rows": None if ours is None else len(ours),
        "client_calls": len(calls),
        "error": error,
        "get_aggs": replaying.asked,
        "equal": False,
        "difference": None,
    }
    if ours is not None:
        try:
            pd.testing.assert_frame_equal(ours, theirs)
            out["equal"] = True
        except AssertionError as e:
            out["difference"] = str(e)
    return out


def main():
    with open(sys.argv[1]) as f:
        cases = json.load(f)
    print(json.dumps([run(case) for case in cases]))
    sys.stdout.flush()
    # lumibot's import starts native thread pools that can abort an interpreter teardown.
    os._exit(0)


if __name__ == "__main__":
    main()
