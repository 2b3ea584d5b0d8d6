"""lumibot 4.6.30's side of scripts/bench-vs-lumibot: `lumibot.tools.thetadata_helper.get_price_data`
filling (or reading) its own ThetaData cache of stock minute OHLC from the replay server, and the
check that both sides hold the same bars.

    python thetadata_bench.py fill --symbol SYM --start D --end D --out FILE
    python thetadata_bench.py compare --ours FILE --theirs FILE --out FILE

Each writes one JSON object to FILE (lumibot logs on standard output).

The environment is set by the caller before this process starts, because lumibot reads it at
import time (as for tests/lumibot/driver.py):

    LUMIBOT_CACHE_FOLDER             lumibot's cache root (fresh for a fill, prepared for a hit)
    THETADATA_BASE_URL               the replay server standing in for the ThetaData terminal
    DATADOWNLOADER_SKIP_LOCAL_START  true: lumibot never starts (or probes) a ThetaTerminal
    THETADATA_USERNAME/_PASSWORD     any value: lumibot refuses to make requests without them

Nothing of lumibot is replaced. `fill` calls `get_price_data` once, as a backtest asks for a
stock's minute bars: New York bounds from midnight of the first session to midnight after the
last, extended hours, `dt` the end, outside a backtest (no `IS_BACKTESTING`), so lumibot fetches
every missing session through its own downloader (one request per session, its 30-day chunks
on its 8 chunk threads) and writes its parquet. It reports the seconds of that call (timed
inside the process: the interpreter's start and lumibot's import are reported apart) and the
rows it returned.

`compare` reads two parquet files with pyarrow and reports their rows, placeholder rows
(`missing` true) and whether the real rows' instants and prices are equal, so a benchmark
never compares a fill with one that failed quietly.
"""

import argparse
import json
import os
import sys
import time


def fill(args):
    started = time.perf_counter()
    import datetime as dt

    import pytz
    from lumibot.entities import Asset
    from lumibot.tools import thetadata_helper as th

    imported = time.perf_counter()
    ny = pytz.timezone("America/New_York")
    start = ny.localize(dt.datetime.combine(dt.date.fromisoformat(args.start), dt.time()))
    end = ny.localize(dt.datetime.combine(dt.date.fromisoformat(args.end) + dt.timedelta(days=1), dt.time()))
    asset = Asset(args.symbol, asset_type="stock")
    os.environ.pop("IS_BACKTESTING", None)
    began = time.perf_counter()
    frame = th.get_price_data(
        asset,
        start,
        end,
        timespan="minute",
        dt=end,
        datastyle="ohlc",
        include_after_hours=True,
    )
    seconds = time.perf_counter() - began
    path = th.build_cache_filename(asset, "minute", "ohlc")
    return {
        "seconds": seconds,
        "import_seconds": imported - started,
        "rows": 0 if frame is None else len(frame),
        "file": str(path),
        "network_requests": th.CONNECTION_DIAGNOSTICS.get("network_requests"),
    }


def facts(path):
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    missing = table.column("missing").fill_null(False) if "missing" in table.column_names else None
    real = table if missing is None else table.filter(pc.invert(missing))
    real = real.sort_by("datetime")
    # Instants (UTC nanoseconds, whatever the stored unit or zone) and prices: what a backtest reads.
    instants = pc.cast(pc.cast(real.column("datetime"), pa.timestamp("ns", tz="UTC")), pa.int64()).to_pylist()
    prices = [real.column(c).cast("float64").to_pylist() for c in ("open", "high", "low", "close", "volume")]
    return {
        "rows": table.num_rows,
        "placeholders": 0 if missing is None else table.num_rows - real.num_rows,
        "real": list(zip(instants, *prices)),
    }


def compare(args):
    ours, theirs = facts(args.ours), facts(args.theirs)
    return {
        "ours_rows": ours["rows"],
        "theirs_rows": theirs["rows"],
        "ours_placeholders": ours["placeholders"],
        "theirs_placeholders": theirs["placeholders"],
        "real_rows": len(ours["real"]),
        "theirs_real_rows": len(theirs["real"]),
        "same_real_rows": ours["real"] == theirs["real"],
    }


def main():
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command", required=True)
    f = sub.add_parser("fill")
    for name in ("--symbol", "--start", "--end"):
        f.add_argument(name, required=True)
    c = sub.add_parser("compare")
    for name in ("--ours", "--theirs"):
        c.add_argument(name, required=True)
    for command in (f, c):
        command.add_argument("--out", required=True)
    args = parser.parse_args()
    result = fill(args) if args.command == "fill" else compare(args)
    with open(args.out, "w", encoding="utf-8") as out:
        json.dump(result, out)
    sys.stdout.flush()
    sys.stderr.flush()
    # lumibot's import starts native thread pools that can abort an interpreter teardown.
    os._exit(0)


if __name__ == "__main__":
    main()
