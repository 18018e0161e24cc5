"""The SQLite data contract: DDL for every table and pandera models for what loads from them.

Table and column names are the seed's, so a database written by the seed's tools loads. Times are
UTC. Our writers store them as ISO-8601 text (``2024-01-02T09:30:00Z``); readers also accept other
ISO text and integer epochs (seconds or milliseconds).

The in-memory panel (what `store.load_panel` returns) is a DataFrame indexed by
``(symbol, timestamp)``: symbol a category, timestamp ``datetime64[ns, UTC]``, rows sorted by
symbol then time, every column float64. Indicators arrive pivoted as ``ind__<name>`` columns.
"""

from __future__ import annotations

import pandas as pd
import pandera.pandas as pa
from pandera.typing import Index, Series

TIMESTAMP_FORMAT = "%Y-%m-%dT%H:%M:%SZ"  # how our writers store times
PRICE_COLUMNS = ("open", "high", "low", "close")
OHLCV_COLUMNS = (*PRICE_COLUMNS, "volume")
OPTIONAL_SERIES_COLUMNS = ("vwap", "turnover")
INDICATOR_PREFIX = "ind__"
PANEL_INDEX = ("symbol", "timestamp")
CLOSE_ONLY_KEY = "close_only"  # assets.metadata key: true when the symbol's open/high/low are its close (ingest --close-only)
CLOSE_ONLY_ATTR = "close_only"  # panel.attrs key: {close-only symbol: whether its volume is real}, set by build_panel

DDL: dict[str, str] = {
    "assets": """
        CREATE TABLE IF NOT EXISTS assets (
            asset_id INTEGER PRIMARY KEY,
            symbol   TEXT NOT NULL UNIQUE,
            sector   TEXT,
            currency TEXT,
            exchange TEXT,
            metadata JSON
        )""",
    "series": """
        CREATE TABLE IF NOT EXISTS series (
            timestamp TEXT NOT NULL,
            symbol    TEXT NOT NULL,
            open      REAL NOT NULL,
            high      REAL NOT NULL,
            low       REAL NOT NULL,
            close     REAL NOT NULL,
            volume    REAL NOT NULL,
            vwap      REAL,
            turnover  REAL,
            PRIMARY KEY (timestamp, symbol)
        )""",
    "indicators": """
        CREATE TABLE IF NOT EXISTS indicators (
            timestamp TEXT NOT NULL,
            symbol    TEXT NOT NULL,
            name      TEXT NOT NULL,
            value     REAL,
            metadata  JSON,
            PRIMARY KEY (timestamp, symbol, name)
        )""",
    "regimes": """
        CREATE TABLE IF NOT EXISTS regimes (
            timestamp TEXT NOT NULL,
            symbol    TEXT NOT NULL,
            name      TEXT NOT NULL,
            value     TEXT NOT NULL,
            PRIMARY KEY (timestamp, symbol, name)
        )""",
    "benchmarks": """
        CREATE TABLE IF NOT EXISTS benchmarks (
            timestamp TEXT NOT NULL,
            symbol    TEXT NOT NULL,
            "return"  REAL NOT NULL,
            level     REAL,
            PRIMARY KEY (timestamp, symbol)
        )""",
}

# Symbol-first indexes make "one symbol, a time range" reads index range scans; the primary keys
# already serve "all symbols at a time".
INDEXES: tuple[str, ...] = (
    "CREATE INDEX IF NOT EXISTS idx_series_symbol_time ON series(symbol, timestamp)",
    "CREATE INDEX IF NOT EXISTS idx_indicators_symbol_time ON indicators(symbol, timestamp)",
    "CREATE INDEX IF NOT EXISTS idx_regimes_symbol_time ON regimes(symbol, timestamp)",
)

REQUIRED_TABLES = ("assets", "series")
OPTIONAL_TABLES = ("indicators", "regimes", "benchmarks")

# Columns a table must have, and the storage class each must hold (SQLite typeof()).
REQUIRED_COLUMNS: dict[str, tuple[str, ...]] = {
    "assets": ("symbol",),
    "series": ("timestamp", "symbol", *OHLCV_COLUMNS),
    "indicators": ("timestamp", "symbol", "name", "value"),
    "regimes": ("timestamp", "symbol", "name", "value"),
    "benchmarks": ("timestamp", "symbol", "return"),
}
NUMERIC_COLUMNS: dict[str, tuple[str, ...]] = {
    "series": (*OHLCV_COLUMNS, *OPTIONAL_SERIES_COLUMNS),
    "indicators": ("value",),
    "benchmarks": ("return", "level"),
}


def create_schema(connection) -> None:
    """Create every table and index that is absent (idempotent)."""
    for statement in DDL.values():
        connection.execute(statement)
    for statement in INDEXES:
        connection.execute(statement)


# --------------------------------------------------------------------------------------------
# pandera models for frames in memory
# --------------------------------------------------------------------------------------------
class PanelSchema(pa.DataFrameModel):
    """The validated OHLCV panel, indexed by (symbol, timestamp)."""

    symbol: Index[pd.CategoricalDtype] = pa.Field(coerce=True)
    timestamp: Index[pd.DatetimeTZDtype] = pa.Field(dtype_kwargs={"unit": "ns", "tz": "UTC"})
    open: Series[float] = pa.Field(gt=0)
    high: Series[float] = pa.Field(gt=0)
    low: Series[float] = pa.Field(gt=0)
    close: Series[float] = pa.Field(gt=0)
    volume: Series[float] = pa.Field(ge=0)

    class Config:
        strict = False  # vwap/turnover/ind__* columns may follow
        multiindex_unique = True
        multiindex_strict = True

    @pa.dataframe_check(error="high < max(open, close) or low > min(open, close)")
    @classmethod
    def ohlc_geometry(cls, frame: pd.DataFrame) -> Series[bool]:
        top = frame[["open", "close"]].max(axis=1)
        bottom = frame[["open", "close"]].min(axis=1)
        return (frame["high"] >= top) & (frame["low"] <= bottom)


class RegimeLabelSchema(pa.DataFrameModel):
    """Per-bar regime labels: one categorical column per regime kind."""

    symbol: Index[pd.CategoricalDtype] = pa.Field(coerce=True)
    timestamp: Index[pd.DatetimeTZDtype] = pa.Field(dtype_kwargs={"unit": "ns", "tz": "UTC"})
    volatility: Series[pd.CategoricalDtype] = pa.Field(nullable=True)
    liquidity: Series[pd.CategoricalDtype] = pa.Field(nullable=True)
    trend: Series[pd.CategoricalDtype] = pa.Field(nullable=True)

    class Config:
        strict = True
        multiindex_unique = True


class BenchmarkSchema(pa.DataFrameModel):
    symbol: Series[str]
    timestamp: Series[pd.DatetimeTZDtype] = pa.Field(dtype_kwargs={"unit": "ns", "tz": "UTC"})
    return_: Series[float] = pa.Field(alias="return")
