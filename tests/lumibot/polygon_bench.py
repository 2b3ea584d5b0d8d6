"""lumibot 4.6.30's side of scripts/bench-polygon: `lumibot.tools.polygon_helper` filling its
own Polygon cache from the replay server, and the check that both sides hold the same data.

    python polygon_bench.py fill --base URL --key KEY --cache DIR --symbols A,B --start D --end D [--out FILE]
    python polygon_bench.py compare --ours DIR --theirs DIR --symbols A,B [--out FILE]

Each prints one JSON object to FILE (default: standard output, where lumibot logs too).

`fill` calls `get_price_data_from_polygon` for each symbol in turn (daily bars, lumibot's
defaults otherwise: 31-day chunks, 10 download threads), as a backtest asks for each asset,
with lumibot's cache folder at DIR. The Polygon client is lumibot's own `PolygonClient` (the
real `polygon.RESTClient` with lumibot's rate-limit handling), made by the only thing
replaced: `PolygonClient.create`, which gives it `base=URL` and the key. It reports
the seconds the fills took (timed inside the process, so the interpreter's start and
lumibot's import are not counted; they are reported apart) and the rows each call returned.

`compare` reads both cache folders' `polygon/stock_<SYM>_day.parquet` with pyarrow and reports,
per symbol, the rows, the placeholder rows (`missing` true) and whether the real rows' dates
and prices are equal, so a benchmark never compares a fill with one that silently failed:
lumibot swallows every download error of a chunk (`except Exception: pass`) and records its
sessions as placeholders.
"""

import argparse
import json
import os
import sys
import time


def fill(args):
    started = time.perf_counter()
    import datetime as dt

    import lumibot.tools.polygon_helper as ph
    from lumibot.entities import Asset

    imported = time.perf_counter()
    ph.LUMIBOT_CACHE_FOLDER = args.cache
    base, key = args.base, args.key
    ph.PolygonClient.create = classmethod(lambda cls, *a, **k: cls(api_key=key, base=base))
    start = dt.datetime.fromisoformat(args.start)
    end = dt.datetime.fromisoformat(args.end)
    rows = {}
    began = time.perf_counter()
    for symbol in args.symbols.split(","):
        frame = ph.get_price_data_from_polygon(key, Asset(symbol, asset_type="stock"), start, end, timespan="day")
        rows[symbol] = 0 if frame is None else len(frame)
    seconds = time.perf_counter() - began
    return {"seconds": seconds, "import_seconds": imported - started, "rows": rows}


def facts(path):
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    missing = table.column("missing").fill_null(False) if "missing" in table.column_names else None
    real = table if missing is None else table.filter(pc.invert(missing))
    real = real.sort_by("datetime")
    # Real rows by their New York date (a day bar opens at midnight there) and their prices:
    # what a backtest reads.
    ny = real.column("datetime").cast(pa.timestamp("ns", tz="America/New_York"))
    dates = [d.date().isoformat() for d in ny.to_pylist()]
    prices = [real.column(c).to_pylist() for c in ("open", "high", "low", "close", "volume")]
    return {
        "rows": table.num_rows,
        "placeholders": 0 if missing is None else table.num_rows - real.num_rows,
        "real": list(zip(dates, *prices)),
    }


def compare(args):
    out = {}
    for symbol in args.symbols.split(","):
        name = os.path.join("polygon", f"stock_{symbol}_day.parquet")
        ours, theirs = facts(os.path.join(args.ours, name)), facts(os.path.join(args.theirs, name))
        out[symbol] = {
            "ours_rows": ours["rows"],
            "theirs_rows": theirs["rows"],
            "ours_placeholders": ours["placeholders"],
            "theirs_placeholders": theirs["placeholders"],
            "real_rows": len(ours["real"]),
            "same_real_rows": ours["real"] == theirs["real"],
        }
    return out


def main():
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command", required=True)
    f = sub.add_parser("fill")
    for name in ("--base", "--key", "--cache", "--symbols", "--start", "--end"):
        f.add_argument(name, required=True)
    c = sub.add_parser("compare")
    for name in ("--ours", "--theirs", "--symbols"):
        c.add_argument(name, required=True)
    for command in (f, c):
        command.add_argument("--out")
    args = parser.parse_args()
    result = fill(args) if args.command == "fill" else compare(args)
    if args.out:
        with open(args.out, "w") as out:
            json.dump(result, out)
    else:
        print(json.dumps(result))
        sys.stdout.flush()
    # lumibot's import starts native thread pools that can abort an interpreter teardown.
    os._exit(0)


if __name__ == "__main__":
    main()
