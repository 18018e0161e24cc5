"""Bounded, read-only reads of the latest bars: the last N bars per symbol in the panel contract.

Serving never loads a symbol's whole history to predict its latest bar. `read_recent` asks SQLite
for the newest N rows of each symbol (one query: a ``UNION ALL`` of per-symbol
``ORDER BY timestamp DESC LIMIT N`` selects, each a range scan of the (symbol, timestamp) index our
DDL creates), then the indicator rows of the same spans, through the Arrow-native ADBC driver
(columnar, like `data.store.load_panel`), pivots the indicators like the loader does, and
forward-fills short gaps with the same rule (`data.gaps`). Gaps are judged against the symbols'
trading calendars as training resolved them (serving/calendars.py: assets.exchange, data.calendar,
the calendar lineage recorded), never guessed from the few bars read: a missing open session is a
gap, a closed session (night, weekend, holiday) is not. The file is opened with a ``mode=ro``
URI: serving cannot write to the user's database.

`latest_timestamps` is the cheap question asked on every request (one index lookup per symbol):
has any symbol a newer bar than the cached features were computed from?

A database whose timestamps are stored as non-canonical ISO text cannot be ordered by SQLite
reliably (mixed offsets); there the whole history of the requested symbols is read and ordered in
pandas, and a warning says so (ingest the data again to get canonical timestamps).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from plus_ultra_ml.data.calendar import CALENDAR_ATTR, TradingCalendar, resolve_calendars, times_by_symbol
from plus_ultra_ml.data.gaps import forward_fill_gaps
from plus_ultra_ml.data.schema import INDICATOR_PREFIX, OHLCV_COLUMNS, OPTIONAL_SERIES_COLUMNS, PANEL_INDEX
from plus_ultra_ml.data.store import (
    TimestampEncoding,
    as_float,
    connect_readonly,
    detect_timestamp_encoding,
    list_tables,
    parse_timestamps,
    read_numeric,
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
    gaps: pd.DataFrame | None = None  # data.gaps table of the read (missing open sessions), `filled` flag per gap


def _to_utc(value: str | pd.Timestamp | None) -> pd.Timestamp | None:
    if value is None:
        return None
    stamp = pd.Timestamp(value)
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


def latest_timestamps(db_path: str | Path, symbols: Sequence[str],
                      timeout_s: float = 10.0) -> dict[str, pd.Timestamp | None]:
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


def _newest_rows_query(symbols: Sequence[str], columns: Sequence[str], bars: int | None,
                       start: str | int | None) -> tuple[str, list]:
    """One statement: per symbol, its newest `bars` rows (all rows when None) from `start` on."""
    parts, params = [], []
    for symbol in symbols:
        where = "symbol = ?" + (" AND timestamp >= ?" if start is not None else "")
        limit = " ORDER BY timestamp DESC LIMIT ?" if bars is not None else ""
        parts.append(f"SELECT * FROM (SELECT symbol, timestamp, {', '.join(columns)} FROM series WHERE {where}{limit})")
        params += [symbol, *([start] if start is not None else []), *([bars] if bars is not None else [])]
    return " UNION ALL ".join(parts), params


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
    calendars: Mapping[str, str] | None = None,
) -> RecentBars:
    """The newest `bars` bars of each symbol (fewer when its history is shorter), read-only.

    indicators: indicator names (without the ``ind__`` prefix) to pivot into ``ind__<name>`` columns.
    start: ignore bars before this time (the experiment's ``data.start``).
    ffill_limit / spacing: short gaps are forward-filled as in `data.panel.build_panel`.
    calendars: symbol -> trading calendar name (serving/calendars.py); recorded on the panel
    (``attrs["calendars"]``) and used for the gaps. A symbol without one has it inferred from the bars
    read, with a log line (a last resort: pass the resolved calendars).
    """
    if bars < 1:
        raise ValueError(f"bars must be >= 1, got {bars}")
    symbols = list(dict.fromkeys(symbols))
    start_ts = _to_utc(start)
    wanted = [n for n in dict.fromkeys(indicators) if n]
    with connect_readonly(db_path, timeout_s) as connection:
        tables = {name.lower() for name in list_tables(connection)}
        if "series" not in tables:
            raise DataContractError(f"database {db_path} has no table 'series'; run `plus-ultra validate {db_path}`")
        present = set(table_columns(connection, "series"))
        encoding = detect_timestamp_encoding(connection, "series")
        has_indicators = bool(wanted) and "indicators" in tables
        ind_encoding = detect_timestamp_encoding(connection, "indicators") if has_indicators else None
    columns = [*OHLCV_COLUMNS, *(c for c in OPTIONAL_SERIES_COLUMNS if c in present)]
    ordered_in_sql = encoding.kind != "iso_other"
    if not ordered_in_sql:
        logger.warning("database %s stores non-canonical ISO timestamps: SQLite cannot order them, so the whole "
                       "history of %d symbol(s) is read; ingest the data again for bounded reads",
                       db_path, len(symbols))
    bound = encoding.sql_bound(start_ts) if start_ts is not None else None
    query, params = _newest_rows_query(symbols, columns, bars if ordered_in_sql else None, bound)
    table = read_numeric(Path(db_path), ["symbol", "timestamp"], columns, f" FROM ({query})", params, timeout_s)
    frame = _series_frame(table, columns, encoding)
    rows_read = len(frame)
    if not ordered_in_sql:
        if start_ts is not None:
            frame = frame[frame["timestamp"] >= start_ts]
        frame = frame.sort_values(["symbol", "timestamp"])
    counts = frame["symbol"].value_counts()
    complete = {s for s in symbols if counts.get(s, 0) < bars or (not ordered_in_sql and counts.get(s, 0) == bars)}
    if not ordered_in_sql:
        frame = frame.groupby("symbol", sort=False).tail(bars)
    panel = _panel(frame, columns, symbols)
    indicator_columns = [INDICATOR_PREFIX + n for n in wanted]
    if ind_encoding is not None and len(panel):
        panel = panel.join(_indicators(db_path, panel, wanted, ind_encoding, timeout_s), how="left")
    for column in indicator_columns:
        if column not in panel:
            panel[column] = np.nan
    panel = panel[[*columns, *indicator_columns]]
    filled, gaps = 0, None
    if len(panel):
        resolved = calendars_of(panel, calendars)
        panel.attrs[CALENDAR_ATTR] = {s: c.name for s, c in resolved.items()}
        if panel.index.get_level_values("timestamp").nunique() > 1:
            before = len(panel)
            panel, gaps = forward_fill_gaps(panel, ffill_limit, spacing, resolved)
            filled = len(panel) - before
    return RecentBars(panel, rows_read, filled, frozenset(complete), gaps)


def calendars_of(panel: pd.DataFrame, names: Mapping[str, str] | None) -> dict[str, TradingCalendar]:
    """Each read symbol's calendar: the one given, else inferred from the bars read (logged)."""
    by_symbol = times_by_symbol(panel.index.get_level_values("symbol").astype(str),
                                panel.index.get_level_values("timestamp"))
    return resolve_calendars(by_symbol, recorded=dict(names or {}))


def _series_frame(table: pa.Table, columns: Sequence[str], encoding: TimestampEncoding) -> pd.DataFrame:
    frame = pd.DataFrame({c: as_float(table[c]) for c in columns})
    frame.insert(0, "timestamp", parse_timestamps(table["timestamp"], encoding, "series") if table.num_rows
                 else pd.DatetimeIndex([], tz="UTC"))
    frame.insert(0, "symbol", pc.cast(table["symbol"], pa.string()).to_numpy(zero_copy_only=False).astype(object))
    if frame.duplicated(["symbol", "timestamp"]).any():
        first = frame[frame.duplicated(["symbol", "timestamp"])].iloc[0]
        raise DataContractError(f"table series has duplicate (symbol, timestamp) rows, first {first['symbol']!r} at "
                                f"{first['timestamp']}; run `plus-ultra validate`")
    return frame


def _panel(frame: pd.DataFrame, columns: Sequence[str], symbols: Sequence[str]) -> pd.DataFrame:
    present = sorted({str(s) for s in frame["symbol"]})
    index = pd.MultiIndex.from_arrays(
        [pd.Categorical(frame["symbol"].to_numpy(), categories=present or sorted(symbols)),
         pd.DatetimeIndex(frame["timestamp"])], names=list(PANEL_INDEX))
    panel = pd.DataFrame({c: frame[c].to_numpy(dtype=np.float64) for c in columns}, index=index)
    return panel.sort_index()


def _indicators(db_path: str | Path, panel: pd.DataFrame, names: Sequence[str], encoding: TimestampEncoding,
                timeout_s: float) -> pd.DataFrame:
    """The named indicators over each symbol's span of `panel`, pivoted to ind__<name> columns."""
    firsts = panel.index.to_frame(index=False).groupby("symbol", observed=True)["timestamp"].min()
    marks = ", ".join("?" for _ in names)
    parts, params = [], []
    for symbol, first in firsts.items():
        bound = encoding.sql_bound(first)
        clause = " AND timestamp >= ?" if bound is not None else ""
        parts.append(f"SELECT * FROM (SELECT symbol, timestamp, name, value FROM indicators "
                     f"WHERE symbol = ?{clause} AND name IN ({marks}))")
        params += [str(symbol), *([bound] if bound is not None else []), *names]
    table = read_numeric(Path(db_path), ["symbol", "timestamp", "name"], ["value"],
                         " FROM (" + " UNION ALL ".join(parts) + ")", params, timeout_s)
    if table.num_rows == 0:
        return pd.DataFrame(index=panel.index)
    long = pd.DataFrame({
        "symbol": pc.cast(table["symbol"], pa.string()).to_numpy(zero_copy_only=False).astype(object),
        "timestamp": parse_timestamps(table["timestamp"], encoding, "indicators"),
        "name": INDICATOR_PREFIX + pd.Series(pc.cast(table["name"], pa.string()).to_numpy(zero_copy_only=False)),
        "value": as_float(table["value"]),
    })
    if long.duplicated(["symbol", "timestamp", "name"]).any():
        raise DataContractError(
            "table indicators has duplicate (symbol, timestamp, name) rows; run `plus-ultra validate`")
    wide = long.pivot(index=["symbol", "timestamp"], columns="name", values="value")
    wide.columns = wide.columns.astype(str)
    return wide.reindex(pd.MultiIndex.from_arrays([panel.index.get_level_values(0).astype(str),
                                                   panel.index.get_level_values(1)])).set_axis(panel.index)
