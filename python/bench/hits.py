"""Benchmarks of the Python package (docs/PERFORMANCE.md, "Python package"):

1. `client.get` of a range already local and verified: median and p99 over N calls.
2. lumibot 4.6.30's `get_price_data` on a cache hit, without and with `cachefill.lumibot`
   installed, interleaved in one process, as a ratio.

    ~/.cache/cachefill-venv/bin/python python/bench/hits.py [--calls 2000] [--rounds 5]

Run from the repository after `scripts/setup-venv --package` (or `maturin develop --release
-m python/Cargo.toml` for the release build the numbers in docs/PERFORMANCE.md use). The
replay server (python/tests/terminal.py) serves the recorded TSLA minute bars for the one fill that precedes the
timings; everything timed is a local hit.
"""

import argparse
import datetime as dt
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

from terminal import Terminal, recorded  # noqa: E402

AAPL_DAY = {"provider": "synthetic", "asset_type": "stock", "symbol": "AAPL", "timespan": "day", "datastyle": "ohlc"}


def percentile(values, q):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def bench_client_hit(calls):
    import cachefill

    with tempfile.TemporaryDirectory() as state:
        client = cachefill.Client.embedded(state)
        client.get(AAPL_DAY, "2024-01-02", "2024-06-28")
        client.get(AAPL_DAY, "2024-01-02", "2024-06-28")  # verified once; later hits reuse it
        times = []
        for _ in range(calls):
            started = time.perf_counter_ns()
            client.get(AAPL_DAY, "2024-03-01", "2024-03-28")
            times.append((time.perf_counter_ns() - started) / 1000)
        stats = client.stats()
        assert stats["invocations"] == 1, stats
    return {"median_us": statistics.median(times), "p99_us": percentile(times, 0.99), "calls": calls}


LUMIBOT = r'''
import datetime as dt, json, statistics, sys, time
import pytz
import cachefill, cachefill.lumibot
from lumibot.entities import Asset
from lumibot.tools import thetadata_helper as th

state, rounds, calls = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
client = cachefill.Client.embedded(state)
ny = pytz.timezone("America/New_York")
asset = Asset("TSLA")
start, end = ny.localize(dt.datetime(2024, 11, 15, 9, 30)), ny.localize(dt.datetime(2024, 11, 15, 16, 0))
installed = cachefill.lumibot.install(client)
th.get_price_data(asset, start, end, timespan="minute", datastyle="ohlc")   # the one fill
installed.uninstall()
plain, wrapped = [], []
for _ in range(rounds):
    for label, out in (("plain", plain), ("wrapped", wrapped)):
        handle = cachefill.lumibot.install(client) if label == "wrapped" else None
        for _ in range(calls):
            t = time.perf_counter_ns()
            frame = th.get_price_data(asset, start, end, timespan="minute", datastyle="ohlc")
            out.append((time.perf_counter_ns() - t) / 1000)
            assert frame is not None and len(frame) > 0
        if handle is not None:
            handle.uninstall()
print("BENCH " + json.dumps({"plain_median_us": statistics.median(plain), "cachefill_median_us": statistics.median(wrapped),
                             "ratio": statistics.median(wrapped) / statistics.median(plain), "calls": len(plain)}))
sys.stdout.flush()
import os
os._exit(0)  # skip a teardown lumibot's native pools can abort
'''


def bench_lumibot_hit(rounds, calls):
    import json

    terminal = Terminal()
    terminal.serve("/v3/stock/history/ohlc", recorded("thetadata-v3-columnar/stock_minute_ohlc.json"))
    try:
        with tempfile.TemporaryDirectory() as state:
            state = pathlib.Path(state)
            (state / "home").mkdir()
            env = {
                "PATH": os.environ.get("PATH", ""),
                "HOME": str(state / "home"),
                "LUMIBOT_CACHE_FOLDER": str(state / "cache"),
                "THETADATA_BASE_URL": terminal.base_url,
                "DATADOWNLOADER_SKIP_LOCAL_START": "true",
                "THETADATA_USERNAME": "bench",
                "THETADATA_PASSWORD": "bench",
                "LUMIBOT_LOG_LEVEL": "WARNING",
            }
            done = subprocess.run(
                [sys.executable, "-c", LUMIBOT, str(state), str(rounds), str(calls)],
                env=env, capture_output=True, text=True, timeout=900,
            )
            line = [l for l in done.stdout.splitlines() if l.startswith("BENCH ")]
            if done.returncode != 0 or not line:
                raise SystemExit(f"lumibot bench failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
            return json.loads(line[-1][6:])
    finally:
        terminal.close()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--lumibot-calls", type=int, default=20)
    args = parser.parse_args()
    hit = bench_client_hit(args.calls)
    print(f"client.get local hit: median {hit['median_us']:.1f} us, p99 {hit['p99_us']:.1f} us ({hit['calls']} calls)")
    lumi = bench_lumibot_hit(args.rounds, args.lumibot_calls)
    print(
        f"lumibot get_price_data hit: {lumi['plain_median_us'] / 1000:.2f} ms without, "
        f"{lumi['cachefill_median_us'] / 1000:.2f} ms with cachefill.lumibot: ratio {lumi['ratio']:.3f} "
        f"({lumi['calls']} calls each, interleaved)"
    )


if __name__ == "__main__":
    main()
