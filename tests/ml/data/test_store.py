"""The read-only panel loader: contract shape, encodings the seed wrote, filters, and clear failures."""

from __future__ import annotations

import hashlib
import sqlite3
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from plus_ultra_ml.data.store import connect_readonly, data_version, load_panel, series_summary
from plus_ultra_ml.errors import DatabaseUnreadableError


def sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_panel_matches_the_contract(make_db, candles):
    frame = candles(symbols=("BBB", "AAA"), n=50)
    panel = load_panel(make_db(frame))
    assert list(panel.index.names) == ["symbol", "timestamp"]
    assert isinstance(panel.index.get_level_values("symbol").dtype, pd.CategoricalDtype)
    assert str(panel.index.get_level_values("timestamp").dtype) == "datetime64[ns, UTC]"
    assert panel.index.is_monotonic_increasing and panel.index.is_unique
    assert list(panel.columns) == ["open", "high", "low", "close", "volume"]  # never-filled optional columns dropped
    assert all(dtype == np.float64 for dtype in panel.dtypes)
    assert len(panel) == 100
    expected = frame.set_index(["symbol", "timestamp"]).loc[("AAA", frame["timestamp"].iloc[3]), "close"]
    assert panel.loc[("AAA", pd.Timestamp(frame["timestamp"].iloc[3]))]["close"] == pytest.approx(expected, abs=0)


def test_indicators_pivot_without_multiplying_rows(make_db, candles):
    frame = candles(n=40)
    long = pd.concat(
        [frame[["timestamp", "symbol"]].assign(name=name, value=np.arange(len(frame)) * k)
         for k, name in enumerate(["sentiment", "flow", "truth_oracle"], start=1)],
        ignore_index=True,
    ).iloc[5:]  # a few missing values: they must become NaN, not drop candles
    panel = load_panel(make_db(frame, indicators=long))
    assert len(panel) == len(frame)
    assert {"ind__sentiment", "ind__flow", "ind__truth_oracle"} <= set(panel.columns)
    assert panel["ind__sentiment"].isna().sum() == 5
    assert load_panel(make_db(frame, name="b.db", indicators=long), include_indicators=False).shape[1] == 5


@pytest.mark.parametrize("encoding", ["epoch_s", "epoch_ms", "iso_space", "iso_offset"])
def test_seed_style_timestamps_load(make_db, candles, encoding):
    frame = candles(n=30)
    stamps = pd.to_datetime(frame["timestamp"], utc=True)
    stored = {
        "epoch_s": stamps.astype("int64") // 10**9,
        "epoch_ms": stamps.astype("int64") // 10**6,
        "iso_space": stamps.dt.strftime("%Y-%m-%d %H:%M:%S"),
        "iso_offset": stamps.dt.strftime("%Y-%m-%dT%H:%M:%S+00:00"),
    }[encoding]
    panel = load_panel(make_db(frame.assign(timestamp=stored), schema="loose"))
    assert len(panel) == len(frame)
    assert panel.index.get_level_values("timestamp").min() == stamps.min()
    window = load_panel(make_db(frame.assign(timestamp=stored), name="w.db", schema="loose"),
                        symbols=["BBB"], start=stamps.iloc[5], end=stamps.iloc[9])
    assert len(window) == 5 and set(window.index.get_level_values("symbol")) == {"BBB"}


def test_symbol_and_time_filters(make_db, candles):
    frame = candles(symbols=("AAA", "BBB", "CCC"), n=100)
    path = make_db(frame)
    panel = load_panel(path, symbols=["CCC", "AAA"], start="2024-01-01T01:00:00Z", end="2024-01-01 02:00")
    assert sorted(panel.index.get_level_values("symbol").unique()) == ["AAA", "CCC"]
    times = panel.index.get_level_values("timestamp")
    assert times.min() == pd.Timestamp("2024-01-01T01:00Z") and times.max() == pd.Timestamp("2024-01-01T02:00Z")
    assert len(panel) == 2 * 5


def test_mixed_integer_and_real_storage_loads(make_db, candles):
    frame = candles(n=70_000 // 2)  # more rows than one ADBC batch
    frame["volume"] = frame["volume"].round().astype(object)
    frame.loc[len(frame) - 1, "volume"] = 1234.5  # INTEGER rows first, a REAL later
    panel = load_panel(make_db(frame))
    assert panel["volume"].iloc[-1] == 1234.5


def test_loader_never_writes(make_db):
    path = make_db()
    before = sha256(path)
    load_panel(path)
    series_summary(path)
    with connect_readonly(path) as connection, pytest.raises(sqlite3.OperationalError):
        connection.execute("DELETE FROM series")
    assert sha256(path) == before


def test_data_version_changes_only_with_new_candles(make_db, candles):
    frame = candles(n=20)
    path = make_db(frame)
    version = data_version(series_summary(path))
    assert data_version(series_summary(path)) == version
    with sqlite3.connect(path) as connection:
        connection.execute("INSERT INTO series VALUES ('2030-01-01T00:00:00Z', 'AAA', 1, 1, 1, 1, 1, NULL, NULL)")
    assert data_version(series_summary(path)) != version


@pytest.mark.parametrize(
    ("make_bad", "phrase"),
    [
        (lambda p: p, "does not exist"),
        (lambda p: (p.mkdir(), p)[1], "is a directory"),
        (lambda p: (p.write_bytes(b""), p)[1], "is empty"),
        (lambda p: (p.write_text("symbol,close\nAAA,1\n"), p)[1], "is not a SQLite database"),
    ],
    ids=["missing", "directory", "empty", "not-sqlite"],
)
def test_unreadable_paths_give_one_sentence(tmp_path, make_bad, phrase):
    with pytest.raises(DatabaseUnreadableError, match=phrase):
        load_panel(make_bad(tmp_path / "x.db"))


def test_truncated_database(make_db, candles):
    path = make_db(candles(n=3000))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(DatabaseUnreadableError, match="truncated"):
        load_panel(path)


def test_database_locked_by_a_writer(make_db):
    path = make_db()
    writer = subprocess.Popen(
        [sys.executable, "-c",
         "import sqlite3, sys, time; c = sqlite3.connect(sys.argv[1], isolation_level=None); "
         "c.execute('BEGIN EXCLUSIVE'); print('locked', flush=True); time.sleep(30)", str(path)],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert writer.stdout.readline().strip() == "locked"
        with pytest.raises(DatabaseUnreadableError, match="locked by another process"):
            load_panel(path, timeout_s=0.2)
    finally:
        writer.kill()
        writer.wait()
