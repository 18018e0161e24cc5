"""Bounded, read-only reads of the latest bars: the last N bars per symbol in the panel contract.

Serving never loads a symbol's whole history to predict its latest bar. `read_recent` asks SQLite
for the newest N rows of each symbol (``ORDER BY timestamp DESC LIMIT N`` on the (symbol, timestamp)
index our DDL creates), the indicator rows of the same span, pivots them like
`data.store.load_panel`, and forward-fills short gaps with the same rule (`data.gaps`). The file is
opened with a ``mode=ro`` URI: serving cannot write to the user's database.

`latest_timestamps` is the cheap question asked on every request (one index lookup per symbol):
has any symbol a newer bar than the cached features were computed from?

A database whose timestamps are stored as non-canonical ISO text cannot be ordered by SQLite
reliably (mixed offsets); there the whole history of the requested symbols is read and ordered in
pandas, and a warning says so (ingest the data again to get canonical timestamps).
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from plus_ultra_ml.data.gaps import forward_fill_gaps
from plus_ultra_ml.data.schema import INDICATOR_PREFIX, OHLCV_COLUMNS, OPTIONAL_SERIES_COLUMNS, PANEL_INDEX
from plus_ultra_ml.data.store import (
    TimestampEncoding,
    connect_readonly,
    detect_timestamp_encoding,
    float_sql,
    list_tables,
    parse_timestamps,
    sentinel_to_nan,
    table_columns,
)
from plus_ultra_ml.errors import DataContractError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RecentBars:
    """The newest bars of some symbols, in the panel contract (docs/architecture.md)."""

    panel: pd.DataFrame  # (symbol, timestamp) index, float64 OHLCV [+ vwap, turnover] + ind__* columns
    rows_read: int  # series rows fetched from SQLite (the bounded-read guarantee is about this number)
    filled_bars: int  # bars inserted by forward-filling short gaps
    complete: frozenset[str]  # symbols whose whole history (from `start`) was read: fewer rows than asked


def _to_utc(value: str | pd.Timestamp | None) -> pd.Timestamp | None:
    if value is None:
        return None
    stamp = pd.Timestamp(value)
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


def latest_timestamps(db_path: str | Path, symbols: Sequence[str], timeout_s: float = 10.0) -> dict[str, pd.Timestamp | None]:
    """The last stored bar time of each symbol (None: the symbol has no rows)."""
    out: dict[str, pd.Timestamp | None] = {}
    with connect_readonly(db_path, timeout_s) as connection:
        encoding = detect_timestamp_encoding(connection, "series")
        raw = {s: connection.execute("SELECT max(timestamp) FROM series WHERE symbol = ?", (s,)).fetchone()[0]
               for s in symbols}
    present = [s for s in symbols if raw[s] is not None]
    if present:
        parsed = parse_timestamps(pa.array([raw[s] for s in present]), encoding, "series")
        out.update(zip(present, parsed, strict=True))
    out.update({s: None for s in symbols if raw[s] is None})
    return out


def _series_rows(connection: sqlite3.Connection, symbol: str, columns: list[str], bars: int | None,
                 start: str | int | None) -> list[tuple]:
    """The newest `bars` rows of `symbol` (all rows when None), oldest first; values as REAL or sentinel."""
    values = ", ".join(float_sql(c) for c in columns)
    where, params = "symbol = ?", [symbol]
    if start is not None:
        where += " AND timestamp >= ?"
        params.append(start)
    if bars is None:
        return connection.execute(f"SELECT timestamp, {values} FROM series WHERE {where}", params).fetchall()
    rows = connection.execute(
        f"SELECT timestamp, {values} FROM series WHERE {where} ORDER BY timestamp DESC LIMIT ?", [*params, bars]
    ).fetchall()
    rows.reverse()
    return rows


def _indicator_rows(connection: sqlite3.Connection, symbol: str, names: Sequence[str], first: object) -> list[tuple]:
    marks = ", ".join("?" for _ in names)
    return connection.execute(
        f"SELECT timestamp, name, {float_sql('value')} FROM indicators "
        f"WHERE symbol = ? AND timestamp >= ? AND name IN ({marks})", [symbol, first, *names]
    ).fetchall()


def read_recent(
    db_path: str | Path,
    symbols: Sequence[str],
    bars: int,
    *,
    indicators: Sequence[str] = (),
    start: str | pd.Timestamp | None = None,
    ffill_limit: int = 0,
    spacing: pd.Timedelta | None = None,
    timeout_s: float = 10.0,
) -> RecentBars:
    """The newest `bars` bars of each symbol (fewer when its history is shorter), read-only.

    indicators: indicator names (without the ``ind__`` prefix) to pivot into ``ind__<name>`` columns.
    start: ignore bars before this time (the experiment's ``data.start``).
    ffill_limit / spacing: short gaps are forward-filled as in `data.panel.build_panel`.
    """
    if bars < 1:
        raise ValueError(f"bars must be >= 1, got {bars}")
    start_ts = _to_utc(start)
    frames: list[pd.DataFrame] = []
    rows_read = 0
    complete: set[str] = set()
    with connect_readonly(db_path, timeout_s) as connection:
        tables = {name.lower() for name in list_tables(connection)}
        if "series" not in tables:
            raise DataContractError(f"database {db_path} has no table 'series'; run `plus-ultra validate {db_path}`")
        present = set(table_columns(connection, "series"))
        columns = [*OHLCV_COLUMNS, *(c for c in OPTIONAL_SERIES_COLUMNS if c in present)]
        encoding = detect_timestamp_encoding(connection, "series")
        ordered_in_sql = encoding.kind != "iso_other"
        if not ordered_in_sql:
            logger.warning("database %s stores non-canonical ISO timestamps: SQLite cannot order them, so the whole "
                           "history of %d symbol(s) is read; ingest the data again for bounded reads", db_path, len(symbols))
        bound = encoding.sql_bound(start_ts) if start_ts is not None else None
        wanted_indicators = [n for n in indicators if n]
        ind_encoding = (detect_timestamp_encoding(connection, "indicators")
                        if wanted_indicators and "indicators" in tables else None)
        for symbol in symbols:
            rows = _series_rows(connection, symbol, columns, bars if ordered_in_sql else None, bound)
            rows_read += len(rows)
            if len(rows) < bars or not ordered_in_sql:
                complete.add(symbol)
            if not rows:
                continue
            frame = _frame(rows, columns, encoding, symbol)
            if not ordered_in_sql:
                frame = frame[frame.index >= start_ts] if start_ts is not None else frame
                if len(frame) > bars:
                    complete.discard(symbol)
                frame = frame.sort_index().iloc[-bars:]
            if ind_encoding is not None:
                first = ind_encoding.sql_bound(frame.index[0])
                ind_rows = _indicator_rows(connection, symbol, wanted_indicators, first if first is not None else "")
                frame = frame.join(_pivot(ind_rows, ind_encoding, frame.index), how="left")
            for name in wanted_indicators:
                if INDICATOR_PREFIX + name not in frame:
                    frame[INDICATOR_PREFIX + name] = np.nan
            frame["symbol"] = symbol
            frames.append(frame)
    panel = _panel(frames, columns, [INDICATOR_PREFIX + n for n in wanted_indicators], symbols)
    filled = 0
    if ffill_limit > 0 and len(panel) > 1:
        before = len(panel)
        panel, _ = forward_fill_gaps(panel, ffill_limit, spacing)
        filled = len(panel) - before
    return RecentBars(panel, rows_read, filled, frozenset(complete))


def _frame(rows: list[tuple], columns: list[str], encoding: TimestampEncoding, symbol: str) -> pd.DataFrame:
    stamps = parse_timestamps(pa.array([r[0] for r in rows]), encoding, "series")
    values = sentinel_to_nan(np.asarray([r[1:] for r in rows], dtype=np.float64).reshape(len(rows), len(columns)))
    frame = pd.DataFrame(values, index=pd.DatetimeIndex(stamps, name="timestamp"), columns=columns)
    if frame.index.has_duplicates:
        raise DataContractError(f"table series has duplicate timestamps for symbol {symbol!r}; run `plus-ultra validate`")
    return frame


def _pivot(rows: list[tuple], encoding: TimestampEncoding, index: pd.DatetimeIndex) -> pd.DataFrame:
    if not rows:
        return pd.DataFrame(index=index)
    stamps = parse_timestamps(pa.array([r[0] for r in rows]), encoding, "indicators")
    long = pd.DataFrame({"timestamp": stamps, "name": [INDICATOR_PREFIX + str(r[1]) for r in rows],
                         "value": sentinel_to_nan(np.asarray([r[2] for r in rows], dtype=np.float64))})
    if long.duplicated(["timestamp", "name"]).any():
        raise DataContractError("table indicators has duplicate (symbol, timestamp, name) rows; run `plus-ultra validate`")
    return long.pivot(index="timestamp", columns="name", values="value").reindex(index)


def _panel(frames: list[pd.DataFrame], columns: list[str], indicator_columns: list[str],
           symbols: Sequence[str]) -> pd.DataFrame:
    wanted = [*columns, *indicator_columns]
    if not frames:
        empty = pd.MultiIndex.from_arrays([pd.Categorical([], categories=sorted(symbols)),
                                           pd.DatetimeIndex([], tz="UTC")], names=list(PANEL_INDEX))
        return pd.DataFrame(columns=wanted, index=empty, dtype=np.float64)
    long = pd.concat(frames)
    categories = sorted({str(s) for s in long["symbol"]})
    index = pd.MultiIndex.from_arrays(
        [pd.Categorical(long["symbol"].to_numpy(), categories=categories), long.index], names=list(PANEL_INDEX))
    panel = pd.DataFrame({c: long[c].to_numpy(dtype=np.float64) for c in wanted}, index=index)
    return panel.sort_index()
