"""Shared fixtures of the library tests: one default synthetic market per session, and a panel reader.

Used by the synthetic-market tests (tests/ml/synthetic) and the regime tests (tests/ml/data). The
reader is written here with sqlite3 + pandas on purpose, independent of data.store, so the fixture
and regime tests check the generator against the contract, not against another reader.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pandas as pd
import pytest

from plus_ultra_ml.config import FixtureConfig
from plus_ultra_ml.synthetic.fixture import FixtureTruth, build_fixture


def read_panel(path: Path, indicators: bool = True) -> pd.DataFrame:
    """The panel contract (docs/architecture.md) read straight from a fixture database."""
    with sqlite3.connect(path) as connection:
        frame = pd.read_sql("SELECT timestamp, symbol, open, high, low, close, volume FROM series", connection)
        if indicators:
            long = pd.read_sql("SELECT timestamp, symbol, name, value FROM indicators", connection)
            wide = long.pivot(index=["timestamp", "symbol"], columns="name", values="value").add_prefix("ind__")
            frame = frame.join(wide, on=["timestamp", "symbol"])
    frame["timestamp"] = pd.to_datetime(frame["timestamp"], format="%Y-%m-%dT%H:%M:%SZ", utc=True)
    frame["symbol"] = frame["symbol"].astype("category")
    panel = frame.set_index(["symbol", "timestamp"]).sort_index()
    panel.columns.name = None
    return panel.astype("float64")


@pytest.fixture(scope="session")
def default_fixture(tmp_path_factory) -> tuple[Path, FixtureTruth]:
    """The default FixtureConfig market (4 symbols x 20,000 15-minute bars), built once."""
    path = tmp_path_factory.mktemp("fixture") / "market.db"
    return path, build_fixture(path, FixtureConfig())


@pytest.fixture(scope="session")
def default_panel(default_fixture) -> pd.DataFrame:
    return read_panel(default_fixture[0])


@pytest.fixture
def panel_reader():
    return read_panel
