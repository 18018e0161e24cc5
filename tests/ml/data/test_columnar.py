"""The storage-order panel read (data.columnar): equal to the (symbol, time) index read on every layout."""

from __future__ import annotations

import sqlite3

import numpy as np
import pandas as pd
import pytest

from plus_ultra_ml.data.columnar import rowid_ranges, sort_order
from plus_ultra_ml.data.schema import TIMESTAMP_FORMAT, create_schema
from plus_ultra_ml.data.store import load_panel

COLUMNS = ("timestamp", "symbol", "open", "high", "low", "close", "volume", "vwap")


def rows(symbols: int, bars: int, seed: int = 0) -> pd.DataFrame:
    """Symbol-major candle rows; vwap filled on some rows only (NULL elsewhere)."""
    rng = np.random.default_rng(seed)
    times = pd.date_range("2021-01-04", periods=bars, freq="B", tz="UTC").strftime(TIMESTAMP_FORMAT)
    frames = []
    for k in range(symbols):
        close = 50 * np.exp(np.cumsum(rng.normal(0, 0.01, bars)))
        vwap = np.where(rng.random(bars) < 0.5, close, np.nan)
        frames.append(pd.DataFrame({"timestamp": times, "symbol": f"S{k:02d}", "open": close, "high": close * 1.01,
                                    "low": close * 0.99, "close": close, "volume": rng.uniform(1, 9, bars),
                                    "vwap": vwap}))
    return pd.concat(frames, ignore_index=True)


def write(path, frame: pd.DataFrame, without_rowid: bool = False) -> str:
    with sqlite3.connect(path) as connection:
        if without_rowid:
            connection.execute("CREATE TABLE series (timestamp TEXT NOT NULL, symbol TEXT NOT NULL, open REAL NOT NULL, "
                               "high REAL NOT NULL, low REAL NOT NULL, close REAL NOT NULL, volume REAL NOT NULL, "
                               "vwap REAL, turnover REAL, PRIMARY KEY (symbol, timestamp)) WITHOUT ROWID")
        create_schema(connection)
        values = [tuple(None if isinstance(v, float) and np.isnan(v) else v for v in row)
                  for row in frame[list(COLUMNS)].itertuples(index=False, name=None)]
        connection.executemany(f"INSERT INTO series ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})",
                               values)
    return str(path)


def index_read(path: str) -> pd.DataFrame:
    """The reference: the same load through the (symbol, timestamp) index (a symbol list forces it)."""
    with sqlite3.connect(path) as connection:
        symbols = [s for (s,) in connection.execute("SELECT DISTINCT symbol FROM series")]
    return load_panel(path, symbols=sorted(symbols))


LAYOUTS = {
    "symbol-major (bulk import)": lambda f: f,
    "bar-major (append-only ingest)": lambda f: f.sort_values(["timestamp", "symbol"], kind="stable"),
    "shuffled": lambda f: f.sample(frac=1.0, random_state=1),
}


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_storage_order_read_equals_the_index_read(tmp_path, layout):
    frame = LAYOUTS[layout](rows(symbols=7, bars=300))
    path = write(tmp_path / "db.sqlite", frame)
    panel = load_panel(path)
    assert panel.index.is_monotonic_increasing and panel.index.is_unique
    pd.testing.assert_frame_equal(panel, index_read(path))
    assert list(panel.columns) == ["open", "high", "low", "close", "volume", "vwap"]  # turnover never filled
    assert panel["vwap"].isna().any() and panel["vwap"].notna().any()


def test_an_end_bound_and_deleted_rows_leave_no_hole(tmp_path):
    frame = LAYOUTS["bar-major (append-only ingest)"](rows(symbols=5, bars=200))
    path = write(tmp_path / "db.sqlite", frame)
    with sqlite3.connect(path) as connection:  # rowid holes inside every reader's range
        connection.execute("DELETE FROM series WHERE rowid % 7 = 3")
    end = pd.Timestamp(frame["timestamp"].iloc[len(frame) * 3 // 4])
    panel = load_panel(path, end=end)
    reference = index_read(path)
    reference = reference[reference.index.get_level_values("timestamp") <= end]
    pd.testing.assert_frame_equal(panel, reference)
    assert len(panel) < len(frame) * 3 // 4


def test_more_rows_than_one_batch_across_reader_threads(tmp_path):
    frame = LAYOUTS["bar-major (append-only ingest)"](rows(symbols=30, bars=3000))  # 90,000 rows > 65,536
    path = write(tmp_path / "db.sqlite", frame)
    pd.testing.assert_frame_equal(load_panel(path), index_read(path))


def test_a_without_rowid_table_reads_through_its_key(tmp_path):
    frame = LAYOUTS["bar-major (append-only ingest)"](rows(symbols=3, bars=50))
    path = write(tmp_path / "db.sqlite", frame, without_rowid=True)
    with sqlite3.connect(path) as connection:
        assert rowid_ranges(connection, 2) is None
    panel = load_panel(path)
    assert panel.index.is_monotonic_increasing and len(panel) == 150
    pd.testing.assert_frame_equal(panel, index_read(path))


def test_an_empty_series_table_loads_an_empty_panel(tmp_path):
    path = write(tmp_path / "db.sqlite", rows(symbols=1, bars=1).iloc[:0])
    panel = load_panel(path)
    assert len(panel) == 0 and list(panel.index.names) == ["symbol", "timestamp"]


@pytest.mark.parametrize("codes, times, expected", [
    ([0, 0, 1, 1], [1, 2, 1, 2], None),  # already (symbol, time) sorted
    ([0, 1, 0, 1], [1, 1, 2, 2], [0, 2, 1, 3]),  # time-major: a stable sort by symbol
    ([1, 0, 0, 1], [2, 2, 1, 1], [2, 1, 3, 0]),  # neither: both keys
])
def test_sort_order(codes, times, expected):
    order = sort_order(np.array(codes, dtype=np.int16), np.array(times, dtype=np.int64))
    assert (order is None) if expected is None else order.tolist() == expected
