"""The Python baseline of `cargo bench -p cachefill-core --bench trades`: what a user would
otherwise write to read and keep Binance aggregate trades, on the same files the bench wrote.

    python trades_bench.py --day DAY.parquet --start MS --end MS --expect-rows N \
        --cached CACHED.parquet --fresh FRESH.parquet --expect-merged N [--reps 30]

- read + filter: `pq.read_table(DAY)` and the rows with `start <= T < end` (pyarrow compute);
- merge + write: the cached and fresh trades (read into pandas beforehand, not timed)
  concatenated, `drop_duplicates("a")`, sorted by `a` and written with `to_parquet` to memory.

Each runs three times unmeasured, then `--reps` times; the median and minimum are printed as
one JSON object on standard output. The results are checked against the counts the bench
expects (rows in the range; merged rows, ids unique and ascending), so a baseline that does
less cannot look fast. Without pyarrow or pandas it prints `{"skipped": "..."}`.
"""

import argparse
import io
import json
import statistics
import sys
import time


def timed(work, reps):
    for _ in range(3):
        work()
    samples = []
    for _ in range(reps):
        started = time.perf_counter()
        work()
        samples.append((time.perf_counter() - started) * 1e3)
    return {"median_ms": statistics.median(samples), "min_ms": min(samples), "reps": reps}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--day", required=True)
    parser.add_argument("--start", type=int, required=True)
    parser.add_argument("--end", type=int, required=True)
    parser.add_argument("--expect-rows", type=int, required=True)
    parser.add_argument("--cached", required=True)
    parser.add_argument("--fresh", required=True)
    parser.add_argument("--expect-merged", type=int, required=True)
    parser.add_argument("--reps", type=int, default=30)
    args = parser.parse_args()
    try:
        import pandas as pd
        import pyarrow as pa
        import pyarrow.compute as pc
        import pyarrow.parquet as pq
    except ImportError as e:
        print(json.dumps({"skipped": f"no {e.name} in {sys.executable}"}))
        return

    kept = {}

    def read_filter():
        table = pq.read_table(args.day)
        t = table.column("T")
        mask = pc.and_(pc.greater_equal(t, pa.scalar(args.start, pa.int64())), pc.less(t, pa.scalar(args.end, pa.int64())))
        kept["rows"] = table.filter(mask).num_rows

    cached = pq.read_table(args.cached).to_pandas()
    fresh = pq.read_table(args.fresh).to_pandas()
    written = {}

    def merge_write():
        merged = pd.concat([cached, fresh], ignore_index=True)
        merged = merged.drop_duplicates("a", keep="first").sort_values("a", kind="stable")
        out = io.BytesIO()
        merged.to_parquet(out, index=False)
        written["frame"], written["bytes"] = merged, out.getvalue()

    read = timed(read_filter, args.reps)
    merge = timed(merge_write, args.reps)
    if kept["rows"] != args.expect_rows:
        sys.exit(f"read + filter kept {kept['rows']} rows, the bench expects {args.expect_rows}")
    ids = pq.read_table(io.BytesIO(written["bytes"])).column("a").to_pylist()
    if len(ids) != args.expect_merged or any(b <= a for a, b in zip(ids, ids[1:])):
        sys.exit(f"merge wrote {len(ids)} rows (ids ascending once each: expected {args.expect_merged})")
    print(
        json.dumps(
            {
                "read_filter": read,
                "merge_write": merge,
                "pyarrow": pa.__version__,
                "pandas": pd.__version__,
            }
        )
    )


if __name__ == "__main__":
    main()
