"""Test-session isolation: nothing writes to the working directory, nothing reaches the network."""

from __future__ import annotations

import os

import pytest


@pytest.fixture(scope="session", autouse=True)
def _isolated_environment(tmp_path_factory):
    home = tmp_path_factory.mktemp("plus_ultra_home")
    saved = {k: os.environ.get(k) for k in ("PLUS_ULTRA_HOME", "DAGSTER_DISABLE_TELEMETRY", "WANDB_MODE", "WANDB_DIR")}
    os.environ["PLUS_ULTRA_HOME"] = str(home)
    os.environ["DAGSTER_DISABLE_TELEMETRY"] = "1"
    os.environ["WANDB_MODE"] = "disabled"
    os.environ["WANDB_DIR"] = str(home)
    yield
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


# ------------------------------------------------------------------------------------------------
# small hand-made databases for data-contract tests
# ------------------------------------------------------------------------------------------------
import sqlite3  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402


def clean_candles(symbols=("AAA", "BBB"), n=300, freq="15min", seed=0, start="2024-01-01") -> pd.DataFrame:
    """Valid candles in long form: timestamp (ISO text, UTC), symbol, open, high, low, close, volume."""
    rng = np.random.default_rng(seed)
    times = pd.date_range(start, periods=n, freq=freq, tz="UTC").strftime("%Y-%m-%dT%H:%M:%SZ")
    frames = []
    for k, symbol in enumerate(symbols):
        close = (50.0 + 10 * k) * np.exp(np.cumsum(rng.normal(0, 0.002, n)))
        open_ = np.concatenate([[close[0]], close[:-1]]) * np.exp(rng.normal(0, 0.0005, n))
        high = np.maximum(open_, close) * (1 + rng.uniform(0, 0.002, n))
        low = np.minimum(open_, close) * (1 - rng.uniform(0, 0.002, n))
        volume = rng.uniform(1e3, 1e4, n)
        frames.append(pd.DataFrame({"timestamp": times, "symbol": symbol, "open": open_, "high": high,
                                    "low": low, "close": close, "volume": volume}))
    return pd.concat(frames, ignore_index=True)


def write_db(path: Path, candles: pd.DataFrame, *, schema: str = "contract", assets=None,
             indicators: pd.DataFrame | None = None, extra_sql=()) -> Path:
    """Write candles (and indicators) with our DDL ("contract") or a seed-style DDL without keys ("loose")."""
    from plus_ultra_ml.data.schema import create_schema

    with sqlite3.connect(path) as connection:
        if schema == "contract":
            create_schema(connection)
        else:
            connection.execute("CREATE TABLE assets (asset_id INTEGER PRIMARY KEY, symbol TEXT, sector TEXT, "
                               "currency TEXT, exchange TEXT, metadata JSON)")
            connection.execute("CREATE TABLE series (timestamp, symbol, open, high, low, close, volume)")
            connection.execute("CREATE TABLE indicators (timestamp, symbol, name, value, metadata)")
        symbols = sorted(candles["symbol"].astype(str).unique()) if assets is None else assets
        connection.executemany("INSERT INTO assets(symbol) VALUES (?)", [(s,) for s in symbols])
        columns = ["timestamp", "symbol", "open", "high", "low", "close", "volume"]
        connection.executemany(
            f"INSERT INTO series({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})",
            candles[columns].astype(object).where(candles[columns].notna(), None).itertuples(index=False, name=None),
        )
        if indicators is not None:
            connection.executemany("INSERT INTO indicators(timestamp, symbol, name, value) VALUES (?, ?, ?, ?)",
                                   indicators[["timestamp", "symbol", "name", "value"]].itertuples(index=False, name=None))
        for statement in extra_sql:
            connection.execute(statement)
    return path


@pytest.fixture
def candles():
    return clean_candles


@pytest.fixture
def make_db(tmp_path):
    """make_db(candles, name="x.db", **write_db options) -> path of a new database under tmp_path."""

    def _make(frame: pd.DataFrame | None = None, name: str = "market.db", **options) -> Path:
        return write_db(tmp_path / name, clean_candles() if frame is None else frame, **options)

    return _make
