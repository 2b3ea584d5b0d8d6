"""Drives lumibot 4.6.30's Polygon helper (`lumibot.tools.polygon_helper`) for
tests/tests/lumibot_polygon.rs.

    python polygon_driver.py CASES.json

CASES.json is a list of cases, each `{"asset": {"symbol", "asset_type", "quote"?,
"expiration"?, "strike"?, "right"?}, "timespan", "start", "end", "base_url", "api_key",
"ours": folder, "theirs": folder, "splits_sidecar": bool}`. For each case:

1. lumibot fills `theirs` through its own downloader, with its own Polygon client
   (`PolygonClient`, polygon-api-client's `RESTClient`) pointed at `base_url`, the Polygon
   replay server cachefill filled from; then reads it again, from its cache.
2. lumibot reads `ours` (the folder cachefill filled) with its Polygon client replaced by one
   that records every use and raises a BaseException, which lumibot's `except Exception`
   cannot swallow. With `splits_sidecar`, an empty `_splits.parquet` with today's date is put
   beside the file first, as lumibot's own first read leaves one (cachefill does not write it).

It prints one JSON object: per case, the rows of both frames, whether they are equal
(`pandas.testing.assert_frame_equal`) and the difference if not, the client calls made on
`ours`, the `get_aggs` calls lumibot made for `theirs`, and the file lumibot reads (relative
to its cache folder).
"""

import datetime as dt
import json
import os
import sys

import pandas as pd

import lumibot.tools.polygon_helper as ph
from lumibot.entities import Asset


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


REAL_CREATE = ph.PolygonClient.create.__func__


def replaying(case, asked):
    """lumibot's own client factory, at the replay server, counting `get_aggs`."""

    def create(cls, *args, **kwargs):
        kwargs.update(api_key=case["api_key"], base=case["base_url"])
        client = REAL_CREATE(cls, *args, **kwargs)
        get_aggs = client.get_aggs

        def counted(ticker, multiplier, timespan, from_, to, **rest):
            asked.append([ticker, str(from_), str(to)])
            return get_aggs(ticker, multiplier, timespan, from_, to, **rest)

        client.get_aggs = counted
        return client

    return classmethod(create)


def quote_of(spec):
    return Asset(spec["quote"], asset_type="forex") if spec.get("quote") else None


def frame(asset, case, root):
    ph.LUMIBOT_CACHE_FOLDER = root
    start = dt.datetime.fromisoformat(case["start"])
    end = dt.datetime.fromisoformat(case["end"])
    return ph.get_price_data_from_polygon(
        case["api_key"], asset, start, end, timespan=case["timespan"], quote_asset=quote_of(case["asset"])
    )


def run(case):
    asset = asset_of(case["asset"])
    asked = []
    ph.PolygonClient.create = replaying(case, asked)
    frame(asset, case, case["theirs"])
    theirs = frame(asset, case, case["theirs"])

    calls = []

    def forbidden(cls, *args, **kwargs):
        calls.append(kwargs)
        raise Forbidden("the Polygon client was used on cachefill's folder")

    ph.PolygonClient.create = classmethod(forbidden)
    ph.LUMIBOT_CACHE_FOLDER = case["ours"]
    lumibot_file = ph.build_cache_filename(asset, case["timespan"], quote_of(case["asset"]))
    if case["splits_sidecar"]:
        base = str(lumibot_file).rpartition(".parquet")[0]
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
        "get_aggs": asked,
        "lumibot_file": lumibot_file.relative_to(case["ours"]).as_posix(),
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
