"""SQLite -> panel throughput: `load_panel` (ADBC, Arrow-native) against `pandas.read_sql`.

Builds a database of N symbols x M bars with the contract's DDL (once, cached under --workdir),
then times, best of --repeats runs each:
  read_sql         pandas.read_sql of the same query: a raw frame, timestamps still text
  read_sql+panel   the same, then the work that makes it the panel (UTC parse, categorical symbol,
                   sorted (symbol, timestamp) index) -- the like-for-like comparison
  connectorx       connectorx.read_sql (Arrow-native, Rust), raw frame, if installed
  load_panel       plus_ultra_ml.data.store.load_panel: the finished panel

Usage: python benchmarks/bench_load.py [--symbols 10] [--bars 100000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import sqlite3
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from plus_ultra_ml.data.schema import TIMESTAMP_FORMAT, create_schema
from plus_ultra_ml.data.store import load_panel, readonly_uri

QUERY = "SELECT symbol, timestamp, open, high, low, close, volume FROM series"


def build(path: Path, symbols: int, bars: int) -> None:
    rng = np.random.default_rng(0)
    times = pd.date_range("2020-01-01", periods=bars, freq="15min", tz="UTC").strftime(TIMESTAMP_FORMAT)
    with sqlite3.connect(path) as connection:
        create_schema(connection)
        for k in range(symbols):
            close = 100 * np.exp(np.cumsum(rng.normal(0, 1e-3, bars)))
            open_ = close * np.exp(rng.normal(0, 5e-4, bars))
            frame = pd.DataFrame({"timestamp": times, "symbol": f"S{k:02d}", "open": open_,
                                  "high": np.maximum(open_, close) * 1.001, "low": np.minimum(open_, close) * 0.999,
                                  "close": close, "volume": rng.uniform(1e3, 1e4, bars)})
            connection.executemany("INSERT INTO series(timestamp, symbol, open, high, low, close, volume) "
                                   "VALUES (?, ?, ?, ?, ?, ?, ?)", frame.itertuples(index=False, name=None))
            connection.execute("INSERT INTO assets(symbol) VALUES (?)", (f"S{k:02d}",))


def read_sql_raw(path: Path) -> pd.DataFrame:
    with sqlite3.connect(readonly_uri(path), uri=True) as connection:
        return pd.read_sql(QUERY, connection)


def read_sql_panel(path: Path) -> pd.DataFrame:
    frame = read_sql_raw(path)
    frame["timestamp"] = pd.to_datetime(frame["timestamp"], format=TIMESTAMP_FORMAT, utc=True)
    frame["symbol"] = frame["symbol"].astype("category")
    return frame.set_index(["symbol", "timestamp"]).sort_index()


def connectorx_raw(path: Path) -> pd.DataFrame:
    import connectorx

    return connectorx.read_sql(f"sqlite://{path.resolve()}", QUERY)


def best_of(fn, path: Path, repeats: int) -> tuple[float, int]:
    times, rows = [], 0
    for _ in range(repeats):
        started = time.perf_counter()
        rows = len(fn(path))
        times.append(time.perf_counter() - started)
    return min(times), rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--symbols", type=int, default=10)
    parser.add_argument("--bars", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "plus_ultra_bench")
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    path = args.workdir / f"load_{args.symbols}x{args.bars}.db"
    if not path.exists():
        print(f"building {path} ({args.symbols} x {args.bars:,} rows) ...", flush=True)
        build(path, args.symbols, args.bars)
    load_panel(path)  # warm the page cache and imports once
    candidates = {"read_sql": read_sql_raw, "read_sql+panel": read_sql_panel, "load_panel": load_panel}
    try:
        import connectorx  # noqa: F401

        candidates["connectorx"] = connectorx_raw
    except ImportError:
        pass
    results = {name: best_of(fn, path, args.repeats) for name, fn in candidates.items()}
    base = results["read_sql"][0]
    print(f"\n{args.symbols * args.bars:,} rows, best of {args.repeats} (2-core CPU):")
    print(f"{'reader':<16}{'seconds':>10}{'rows/s':>14}{'vs read_sql':>14}")
    for name, (seconds, rows) in results.items():
        print(f"{name:<16}{seconds:>10.3f}{rows / seconds:>14,.0f}{base / seconds:>13.2f}x")
    like = results["read_sql+panel"][0] / results["load_panel"][0]
    print(f"\nload_panel vs read_sql (raw frame): {base / results['load_panel'][0]:.2f}x; "
          f"vs read_sql building the same panel: {like:.2f}x")



if __name__ == "__main__":
    main()
