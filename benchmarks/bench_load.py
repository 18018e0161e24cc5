"""SQLite -> panel throughput and memory: `load_panel` against `pandas.read_sql` and a raw ADBC read, on two layouts.

Builds databases of N symbols x M bars with the contract's DDL (once, cached under --workdir) in
two storage layouts:
  symbol   rows inserted symbol by symbol (a bulk import): storage order is (symbol, time)
  append   rows inserted bar by bar, every symbol at each bar (what daily `ingest --append-only`
           produces): storage order is (time, symbol), so a (symbol, time) read through the
           secondary index fetches scattered pages
and times, interleaved in one process, best of --repeats runs each:
  read_sql         pandas.read_sql of the candle columns: a raw frame, timestamps still text
  adbc raw         one ADBC connection, the same SELECT in storage order, fetch_arrow_table: the floor
  load_panel       plus_ultra_ml.data.store.load_panel: the finished panel (UTC times, categorical
                   symbol, sorted (symbol, timestamp) index)
Wall and CPU seconds are printed (the machine may be shared). Peak memory: the peak RSS of a child
process that only imports and reads, minus that of a child that only imports, against the finished
panel's own bytes (values + index).

Usage: python benchmarks/bench_load.py [--symbols 10] [--bars 100000] [--layout both|symbol|append] [--repeats 3]
"""

from __future__ import annotations

import argparse
import resource
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from plus_ultra_ml.data.schema import TIMESTAMP_FORMAT, create_schema
from plus_ultra_ml.data.store import load_panel, readonly_uri

QUERY = "SELECT symbol, timestamp, open, high, low, close, volume FROM series"
LAYOUTS = ("symbol", "append")


def build(path: Path, symbols: int, bars: int, layout: str) -> None:
    """Write `symbols` x `bars` seeded random-walk candles in the given storage layout."""
    rng = np.random.default_rng(0)
    times = np.asarray(pd.date_range("2000-01-03", periods=bars, freq="B", tz="UTC").strftime(TIMESTAMP_FORMAT))
    names = np.array([f"S{k:04d}" for k in range(symbols)])
    close = 100 * np.exp(np.cumsum(rng.normal(0, 1e-2, (symbols, bars)), axis=1))  # (N, M)
    open_ = close * np.exp(rng.normal(0, 5e-3, (symbols, bars)))
    volume = rng.uniform(1e3, 1e4, (symbols, bars))
    columns = [np.broadcast_to(times, (symbols, bars)), np.broadcast_to(names[:, None], (symbols, bars)),
               open_, np.maximum(open_, close) * 1.001, np.minimum(open_, close) * 0.999, close, volume]
    order = "C" if layout == "symbol" else "F"  # C: symbol-major rows; F: bar-major rows
    flat = [np.ravel(c, order=order).tolist() for c in columns]
    partial = path.with_suffix(".partial")
    partial.unlink(missing_ok=True)
    with sqlite3.connect(partial) as connection:
        create_schema(connection)
        connection.executemany("INSERT INTO assets(symbol) VALUES (?)", ((n,) for n in names))
        connection.executemany("INSERT INTO series(timestamp, symbol, open, high, low, close, volume) "
                               "VALUES (?, ?, ?, ?, ?, ?, ?)", zip(*flat, strict=True))
    partial.rename(path)


def read_sql_raw(path: Path) -> int:
    with sqlite3.connect(readonly_uri(path), uri=True) as connection:
        return len(pd.read_sql(QUERY, connection))


def adbc_raw(path: Path) -> int:
    import adbc_driver_sqlite.dbapi as adbc

    with adbc.connect(readonly_uri(path)) as connection, connection.cursor() as cursor:
        cursor.execute(QUERY)
        return cursor.fetch_arrow_table().num_rows


def panel_rows(path: Path) -> int:
    return len(load_panel(path))


READERS = {"read_sql": read_sql_raw, "adbc raw": adbc_raw, "load_panel": panel_rows}


def interleaved(path: Path, repeats: int) -> dict[str, tuple[float, float]]:
    """{reader: (best wall s, CPU s of that run)}, the readers taking turns within each repeat."""
    best = {name: (float("inf"), float("inf")) for name in READERS}
    for _ in range(repeats):
        for name, fn in READERS.items():
            wall, cpu = time.perf_counter(), time.process_time()
            fn(path)
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            if wall < best[name][0]:
                best[name] = (wall, cpu)
    return best


def child_peak(path: Path | None) -> tuple[float, float]:
    """(peak RSS MiB of a child that loads `path` (None: imports only), finished panel MiB)."""
    # VmHWM, not ru_maxrss: Linux carries ru_maxrss across fork + exec, so a child would report the parent's peak
    code = ("import sys; from plus_ultra_ml.data.store import load_panel; n = 0.0\n"
            "if len(sys.argv) > 1:\n"
            "    p = load_panel(sys.argv[1]); n = p.memory_usage(index=True, deep=True).sum() / 2**20\n"
            "hwm = [line for line in open('/proc/self/status') if line.startswith('VmHWM')][0].split()[1]\n"
            "print(int(hwm) / 1024, n)")
    out = subprocess.run([sys.executable, "-c", code, *([str(path)] if path else [])], check=True,
                         capture_output=True, text=True).stdout.split()
    return float(out[0]), float(out[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--symbols", type=int, default=10)
    parser.add_argument("--bars", type=int, default=100_000)
    parser.add_argument("--layout", choices=("both", *LAYOUTS), default="both")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "plus_ultra_bench")
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    base_rss, _ = child_peak(None)
    rows = args.symbols * args.bars
    print(f"{rows:,} rows ({args.symbols} symbols x {args.bars:,} bars), best of {args.repeats}, wall s [CPU s]")
    print(f"{'layout':<8}{'read_sql':>16}{'adbc raw':>16}{'load_panel':>16}{'vs read_sql':>13}{'vs adbc':>9}"
          f"{'peak MiB':>10}{'panel MiB':>11}{'peak/panel':>12}")
    for layout in LAYOUTS if args.layout == "both" else (args.layout,):
        path = args.workdir / f"load_{layout}_{args.symbols}x{args.bars}.db"
        if not path.exists():
            print(f"building {path} ...", flush=True)
            build(path, args.symbols, args.bars, layout)
        load_panel(path)  # page cache and imports warm
        best = interleaved(path, args.repeats)
        peak, panel_mib = child_peak(path)
        peak -= base_rss
        cells = {name: f"{w:.2f} [{c:.2f}]" for name, (w, c) in best.items()}
        ours = best["load_panel"][0]
        print(f"{layout:<8}{cells['read_sql']:>16}{cells['adbc raw']:>16}{cells['load_panel']:>16}"
              f"{best['read_sql'][0] / ours:>12.2f}x{ours / best['adbc raw'][0]:>8.2f}x"
              f"{peak:>10.0f}{panel_mib:>11.0f}{peak / panel_mib:>11.1f}x")
    print(f"\nimport-only child peak RSS {base_rss:.0f} MiB (subtracted); own process peak "
          f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")


if __name__ == "__main__":
    main()
