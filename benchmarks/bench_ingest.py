"""CSV -> SQLite ingest throughput: `plus-ultra ingest` against `pandas.read_csv` + `DataFrame.to_sql`.

Writes one long CSV (timestamp, symbol, open, high, low, close, volume; --symbols x --bars rows of
valid candles, business days or --freq intraday bars; cached under --workdir) and times, interleaved in one process, best of
--repeats runs each, into a fresh database every run:
  pandas    pandas.read_csv + to_sql into a table with the contract's DDL (no checks: the floor a
            careless import reaches)
  ingest    plus_ultra_ml.data.ingest.ingest_files: read, map, localise, every validation rule,
            one upserting transaction (what the CLI runs)
and, for ingest, the split between reading + checking (`prepare_rows`) and writing. Wall and CPU
seconds are printed (the machine may be shared); the ratio is ingest / pandas.

Usage: python benchmarks/bench_ingest.py [--symbols 100] [--bars 10000] [--freq 1D|15min] [--repeats 3]
           [--workdir /tmp/bench_ingest]
"""

from __future__ import annotations

import argparse
import sqlite3
import time
from pathlib import Path

import numpy as np
import pandas as pd

from plus_ultra_ml.data.ingest import IngestOptions, ingest_files, prepare_rows, read_source
from plus_ultra_ml.data.schema import create_schema


def write_csv(path: Path, symbols: int, bars: int, freq: str, seed: int = 0) -> Path:
    if path.exists():
        return path
    rng = np.random.default_rng(seed)
    grid = pd.bdate_range("1990-01-01", periods=bars, tz="UTC") if freq == "1D" else \
        pd.date_range("2020-01-01", periods=bars, freq=freq, tz="UTC")
    times = grid.strftime("%Y-%m-%dT%H:%M:%SZ")
    parts = []
    for k in range(symbols):
        close = 50 * np.exp(np.cumsum(rng.normal(0, 0.01, bars)))
        open_ = close * np.exp(rng.normal(0, 0.002, bars))
        high = np.maximum(open_, close) * (1 + rng.uniform(0, 0.003, bars))
        low = np.minimum(open_, close) * (1 - rng.uniform(0, 0.003, bars))
        parts.append(pd.DataFrame({"timestamp": times, "symbol": f"S{k:04d}", "open": open_, "high": high,
                                   "low": low, "close": close, "volume": rng.uniform(1e3, 1e6, bars).round()}))
    pd.concat(parts, ignore_index=True).to_csv(path, index=False, float_format="%.6f")
    return path


def timed(fn) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def pandas_import(csv: Path, db: Path) -> None:
    frame = pd.read_csv(csv)
    with sqlite3.connect(db) as connection:
        create_schema(connection)
        frame.to_sql("series", connection, if_exists="append", index=False, chunksize=100_000)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--symbols", type=int, default=100)
    parser.add_argument("--bars", type=int, default=10_000)
    parser.add_argument("--freq", default="1D", help="1D (business days) or a pandas frequency such as 15min")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/bench_ingest"))
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    csv = write_csv(args.workdir / f"candles_{args.symbols}x{args.bars}_{args.freq}.csv", args.symbols, args.bars,
                    args.freq)
    rows = args.symbols * args.bars
    print(f"{csv}: {rows:,} rows, {csv.stat().st_size / 1e6:.0f} MB")
    best: dict[str, tuple[float, float]] = {}
    for run in range(args.repeats):
        for name, fn in (("pandas", lambda db: pandas_import(csv, db)),
                         ("ingest", lambda db: ingest_files(db, [csv], IngestOptions())),
                         ("ingest: read + check", lambda db: prepare_rows(read_source(csv), IngestOptions(), str(csv)))):
            db = args.workdir / f"run_{name.split(':')[0]}_{run}.db"
            db.unlink(missing_ok=True)
            wall, cpu = timed(lambda: fn(db))
            db.unlink(missing_ok=True)
            if name not in best or wall < best[name][0]:
                best[name] = (wall, cpu)
            print(f"  run {run}: {name:22s} {wall:7.2f} s wall {cpu:7.2f} s CPU", flush=True)
    print(f"best of {args.repeats}, {rows:,} rows:")
    for name, (wall, cpu) in best.items():
        print(f"  {name:22s} {wall:7.2f} s wall {cpu:7.2f} s CPU  ({rows / wall / 1e6:.2f} M rows/s)")
    print(f"  ratio ingest / pandas: {best['ingest'][0] / best['pandas'][0]:.2f} wall, "
          f"{best['ingest'][1] / best['pandas'][1]:.2f} CPU")


if __name__ == "__main__":
    main()
