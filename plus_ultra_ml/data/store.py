"""Read-only access to the user's SQLite database, and the panel loader.

The user's file is opened with a ``file:...?mode=ro`` URI: nothing here can write to it. Reads go
through the Arrow-native ADBC SQLite driver (Apache Arrow project), which returns columnar batches
straight from SQLite; see benchmarks/bench_load.py for its speed against ``pandas.read_sql``.

Before any query the file itself is checked, so a missing path, a directory, an empty or
truncated file, something that is not SQLite, or a database locked by a writer each produce one
clear `DatabaseUnreadableError`, never a driver traceback.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from plus_ultra_ml.data import columnar
from plus_ultra_ml.data.schema import (
    CLOSE_ONLY_KEY,
    INDICATOR_PREFIX,
    OHLCV_COLUMNS,
    OPTIONAL_SERIES_COLUMNS,
    PANEL_INDEX,
    TIMESTAMP_FORMAT,
)
from plus_ultra_ml.errors import DatabaseUnreadableError, DataContractError

log = logging.getLogger(__name__)

SQLITE_MAGIC = b"SQLite format 3\x00"
# ADBC infers a column's Arrow type from its first batch; a batch of NULLs followed by REALs (or
# INTEGER volumes followed by REAL ones) would be a type mismatch. Numeric columns are therefore
# read as `float_sql(column)`: always REAL, with NULL and non-numeric storage mapped to this
# sentinel, which `sentinel_to_nan` turns back into NaN. No real price or volume is -DBL_MAX.
NULL_SENTINEL = float(np.finfo(np.float64).min)
READ_THREADS = min(4, os.cpu_count() or 1)


def float_sql(column: str) -> str:
    quoted = f'"{column}"'
    return (
        f"IFNULL(CASE WHEN typeof({quoted}) IN ('real', 'integer') THEN CAST({quoted} AS REAL) END, "
        f"{NULL_SENTINEL!r}) AS {quoted}"
    )


def sentinel_to_nan(values: np.ndarray) -> np.ndarray:
    values = np.array(values, dtype=np.float64, copy=True)
    values[values == NULL_SENTINEL] = np.nan
    return values


# --------------------------------------------------------------------------------------------
# opening the file
# --------------------------------------------------------------------------------------------
def check_database_file(path: str | Path) -> Path:
    """Check that `path` is a complete SQLite file before a driver touches it."""
    path = Path(path).expanduser()
    if not path.exists():
        raise DatabaseUnreadableError(
            f"database {path} does not exist; build one with `plus-ultra fixture {path}` "
            "or `plus-ultra ingest`, or fix data.db_path"
        )
    if path.is_dir():
        raise DatabaseUnreadableError(f"database path {path} is a directory, not a SQLite file")
    size = path.stat().st_size
    if size == 0:
        raise DatabaseUnreadableError(
            f"database {path} is empty (0 bytes); build one with `plus-ultra fixture` or `plus-ultra ingest`"
        )
    with open(path, "rb") as handle:
        header = handle.read(100)
    if not header.startswith(SQLITE_MAGIC):
        raise DatabaseUnreadableError(
            f"{path} is not a SQLite database (it starts with {header[:16]!r}, not 'SQLite format 3')"
        )
    if len(header) < 100:
        raise DatabaseUnreadableError(f"database {path} is truncated: its 100-byte header is incomplete")
    page_size = int.from_bytes(header[16:18], "big")
    page_size = 65536 if page_size == 1 else page_size
    change_counter = int.from_bytes(header[24:28], "big")
    page_count = int.from_bytes(header[28:32], "big")
    valid_for = int.from_bytes(header[92:96], "big")
    if page_count and valid_for == change_counter and size < page_count * page_size:
        raise DatabaseUnreadableError(
            f"database {path} is truncated: its header promises {page_count * page_size} bytes "
            f"but the file has {size}; restore it from the source or rebuild it"
        )
    return path


def readonly_uri(path: str | Path) -> str:
    return f"file:{quote(str(Path(path).resolve()))}?mode=ro"


def _explain_sqlite_error(path: Path, error: Exception) -> DatabaseUnreadableError:
    text = str(error)
    if "locked" in text or "busy" in text:
        return DatabaseUnreadableError(
            f"database {path} is locked by another process writing to it; retry when the write "
            "finishes, or raise data.busy_timeout_s"
        )
    if "malformed" in text or "not a database" in text or "disk image" in text:
        return DatabaseUnreadableError(f"database {path} is corrupt or truncated ({text}); restore or rebuild it")
    return DatabaseUnreadableError(f"cannot read database {path}: {text}")


@contextmanager
def connect_readonly(path: str | Path, timeout_s: float = 10.0) -> Iterator[sqlite3.Connection]:
    """A read-only sqlite3 connection to a checked file; driver errors become user errors."""
    path = check_database_file(path)
    try:
        connection = sqlite3.connect(readonly_uri(path), uri=True, timeout=timeout_s)
    except sqlite3.Error as error:
        raise _explain_sqlite_error(path, error) from None
    try:
        connection.execute("PRAGMA query_only = ON")
        connection.execute("SELECT count(*) FROM sqlite_master").fetchone()  # forces the header read
        yield connection
    except sqlite3.Error as error:
        raise _explain_sqlite_error(path, error) from None
    finally:
        connection.close()


def list_tables(connection: sqlite3.Connection) -> set[str]:
    rows = connection.execute("SELECT name FROM sqlite_master WHERE type IN ('table', 'view')").fetchall()
    return {name for (name,) in rows}


def table_columns(connection: sqlite3.Connection, table: str) -> list[str]:
    return [row[1] for row in connection.execute(f'PRAGMA table_info("{table}")').fetchall()]


class MixedTypesError(DataContractError):
    """A column's storage types change part-way (ADBC types a column from its first batch)."""


@contextmanager
def _adbc_cursor(path: Path, timeout_s: float):
    """A read-only ADBC cursor on `path`; driver errors come out as the project's own errors."""
    import adbc_driver_manager
    import adbc_driver_sqlite.dbapi as adbc

    try:
        with adbc.connect(readonly_uri(path)) as connection, connection.cursor() as cursor:
            cursor.adbc_statement.set_options(**{"adbc.sqlite.query.batch_rows": "65536"})
            cursor.execute(f"PRAGMA busy_timeout = {int(timeout_s * 1000)}")
            yield cursor
    except adbc_driver_manager.Error as error:
        text = str(error)
        if "type mismatch" in text.lower():
            raise MixedTypesError(
                f"database {path}: a column holds mixed types ({text}); run `plus-ultra validate {path}`"
            ) from None
        raise _explain_sqlite_error(path, error) from None


def read_arrow(path: str | Path, query: str, params: Sequence = (), timeout_s: float = 10.0) -> pa.Table:
    """Run a read-only query through ADBC and return an Arrow table."""
    with _adbc_cursor(check_database_file(path), timeout_s) as cursor:
        cursor.execute(query, parameters=list(params) if params else None)
        return cursor.fetch_arrow_table()


def stream_arrow(path: str | Path, query: str, params: Sequence, on_batch: Callable[[pa.RecordBatch], None],
                 timeout_s: float = 10.0) -> None:
    """Run a read-only query through ADBC and hand each record batch to `on_batch` as it arrives."""
    with _adbc_cursor(check_database_file(path), timeout_s) as cursor:
        cursor.execute(query, parameters=list(params) if params else None)
        for batch in cursor.fetch_record_batch():
            on_batch(batch)


def as_float(values: pa.ChunkedArray) -> np.ndarray:
    """An Arrow number column as float64 with NaN for NULL and for the NULL sentinel."""
    floats = pc.cast(values, pa.float64())
    if floats.null_count:
        floats = floats.fill_null(np.nan)
    array = floats.to_numpy()
    return sentinel_to_nan(array) if pc.any(pc.equal(floats, NULL_SENTINEL)).as_py() else array


def read_numeric(path: Path, keys: Sequence[str], values: Sequence[str], tail: str, params: Sequence,
                 timeout_s: float) -> pa.Table:
    """SELECT keys + number columns. Fast path reads the columns as stored; if their storage types
    change part-way (INTEGER then REAL, a NULL batch then REAL, stray text), the query is re-run with
    every number normalised by `float_sql` (text -> NaN, which validation reports)."""
    columns = ", ".join(keys)
    try:
        return read_arrow(path, f"SELECT {columns}, {', '.join(values)}{tail}", params, timeout_s)
    except MixedTypesError:
        normalised = ", ".join(float_sql(v) for v in values)
        return read_arrow(path, f"SELECT {columns}, {normalised}{tail}", params, timeout_s)


def stream_numeric(path: Path, keys: Sequence[str], values: Sequence[str], tail: str, params: Sequence,
                   make: Callable[[], Callable[[pa.RecordBatch], None]], timeout_s: float) -> None:
    """`read_numeric` batch by batch: `make()` gives a fresh batch sink for each attempt (the
    normalised re-run starts over, so nothing half-read is kept)."""
    columns = ", ".join(keys)
    try:
        stream_arrow(path, f"SELECT {columns}, {', '.join(values)}{tail}", params, make(), timeout_s)
    except MixedTypesError:
        normalised = ", ".join(float_sql(v) for v in values)
        stream_arrow(path, f"SELECT {columns}, {normalised}{tail}", params, make(), timeout_s)


def read_partitioned(path: Path, symbols: Sequence[str], make: Callable[[list[str]], pa.Table],
                     threads: int = READ_THREADS) -> pa.Table:
    """Run `make(symbol_group)` over contiguous groups of sorted symbols in parallel threads.

    SQLite serves concurrent read-only connections and ADBC releases the GIL while it fetches, so
    the groups load side by side; concatenating them in order keeps the (symbol, time) order."""
    ordered = sorted(symbols)
    n = max(1, min(threads, len(ordered)))
    bounds = np.linspace(0, len(ordered), n + 1).astype(int)
    groups = [ordered[a:b] for a, b in zip(bounds[:-1], bounds[1:], strict=True) if b > a]
    if len(groups) == 1:
        return make(groups[0])
    with ThreadPoolExecutor(max_workers=len(groups)) as pool:
        tables = list(pool.map(make, groups))
    return pa.concat_tables(tables)


# --------------------------------------------------------------------------------------------
# timestamps
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TimestampEncoding:
    """How a table stores its times: our ISO text, other ISO text, or integer epochs."""

    kind: str  # "iso_canonical" | "iso_other" | "epoch_s" | "epoch_ms"

    def sql_bound(self, value: pd.Timestamp) -> str | int | None:
        """`value` in the table's own encoding, for index-friendly range filters (None: filter later)."""
        if self.kind == "iso_canonical":
            return value.strftime(TIMESTAMP_FORMAT)
        if self.kind == "epoch_s":
            return int(value.timestamp())
        if self.kind == "epoch_ms":
            return int(value.timestamp() * 1000)
        return None


def detect_timestamp_encoding(connection: sqlite3.Connection, table: str) -> TimestampEncoding:
    row = connection.execute(f'SELECT timestamp, typeof(timestamp) FROM "{table}" LIMIT 1').fetchone()
    if row is None:
        return TimestampEncoding("iso_canonical")
    value, storage = row
    if storage in ("integer", "real"):
        return TimestampEncoding("epoch_ms" if abs(float(value)) > 1e11 else "epoch_s")
    text = str(value)
    try:
        pd.Timestamp(text)
    except ValueError:
        raise DataContractError(
            f"table {table}: column timestamp holds {text!r}, which is not an ISO-8601 time or an "
            "epoch; store ISO text (2024-01-02T09:30:00Z) or integer epoch seconds"
        ) from None
    canonical = len(text) == 20 and text.endswith("Z") and text[10] == "T"
    return TimestampEncoding("iso_canonical" if canonical else "iso_other")


def timestamp_ns(values: pa.ChunkedArray | pa.Array, encoding: TimestampEncoding, table: str) -> np.ndarray:
    """Arrow timestamps column -> (rows,) int64 nanoseconds since the epoch, UTC (no pandas objects
    on the fast paths: the loader calls this per record batch)."""
    if encoding.kind in ("epoch_s", "epoch_ms"):
        scale = 1_000_000_000 if encoding.kind == "epoch_s" else 1_000_000
        return pc.cast(values, pa.int64()).to_numpy() * scale
    try:  # Arrow parses canonical ISO text in C; other ISO variants go through pandas
        parsed = pc.cast(pc.cast(values, pa.timestamp("ns", tz="UTC")), pa.int64())
        return np.asarray(parsed.to_numpy() if isinstance(parsed, pa.ChunkedArray) else parsed.to_numpy(zero_copy_only=False))
    except pa.ArrowInvalid:
        pass
    try:
        return pd.DatetimeIndex(pd.to_datetime(values.to_pandas(), format="ISO8601", utc=True)).asi8
    except (ValueError, TypeError) as error:
        raise DataContractError(
            f"table {table}: column timestamp has values that are not ISO-8601 times ({error}); "
            f"run `plus-ultra validate` to list them"
        ) from None


def parse_timestamps(values: pa.ChunkedArray | pa.Array, encoding: TimestampEncoding, table: str) -> pd.DatetimeIndex:
    """Arrow timestamps column -> tz-aware UTC DatetimeIndex (ns)."""
    return pd.DatetimeIndex(pd.to_datetime(timestamp_ns(values, encoding, table), utc=True))


# --------------------------------------------------------------------------------------------
# the panel
# --------------------------------------------------------------------------------------------
def _to_utc(value: str | pd.Timestamp | None) -> pd.Timestamp | None:
    if value is None:
        return None
    stamp = pd.Timestamp(value)
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


def distinct_symbols(connection: sqlite3.Connection) -> list[str]:
    """The symbols of `series`, by a skip-scan of its (symbol, timestamp) index: one seek per symbol,
    not a scan of every row as SELECT DISTINCT does (SQLite's recursive-CTE idiom)."""
    rows = connection.execute(
        "WITH RECURSIVE s(x) AS (SELECT min(symbol) FROM series "
        "UNION ALL SELECT (SELECT min(symbol) FROM series WHERE symbol > x) FROM s WHERE x IS NOT NULL) "
        "SELECT x FROM s WHERE x IS NOT NULL"
    ).fetchall()
    return [symbol for (symbol,) in rows]


def symbol_exchanges(connection: sqlite3.Connection) -> dict[str, str]:
    """assets.exchange per symbol, where it is set (the symbol's trading calendar; data.calendar)."""
    if "assets" not in list_tables(connection) or "exchange" not in table_columns(connection, "assets"):
        return {}
    rows = connection.execute(
        "SELECT symbol, exchange FROM assets WHERE symbol IS NOT NULL AND exchange IS NOT NULL "
        "AND trim(exchange) != ''"
    ).fetchall()
    return {str(symbol): str(exchange).strip() for symbol, exchange in rows}


def symbol_sectors(connection: sqlite3.Connection) -> dict[str, str]:
    """assets.sector per symbol, where it is set (a universe's per-sector attribution and the portfolio
    room's sector neutrality read it; the universe fixture writes one of its sectors per name)."""
    if "assets" not in list_tables(connection) or "sector" not in table_columns(connection, "assets"):
        return {}
    rows = connection.execute(
        "SELECT symbol, sector FROM assets WHERE symbol IS NOT NULL AND sector IS NOT NULL AND trim(sector) != ''"
    ).fetchall()
    return {str(symbol): str(sector).strip() for symbol, sector in rows}


def database_sectors(path: str | Path | None, timeout_s: float = 10.0) -> dict[str, str]:
    """`symbol_sectors` of the database at `path` (read-only); {} for None."""
    if path is None:
        return {}
    with connect_readonly(path, timeout_s) as connection:
        return symbol_sectors(connection)


def symbol_close_only(connection: sqlite3.Connection) -> dict[str, bool]:
    """Close-only symbols (assets.metadata {"close_only": true}, written by ingest --close-only) -> whether
    their volume is real. A symbol absent here has real open/high/low."""
    if "assets" not in list_tables(connection) or "metadata" not in table_columns(connection, "assets"):
        return {}
    out = {}
    for symbol, raw in connection.execute("SELECT symbol, metadata FROM assets WHERE metadata IS NOT NULL"):
        try:
            metadata = json.loads(raw)
        except (TypeError, ValueError):
            raise DataContractError(f"table assets, column metadata, symbol {symbol}: {raw!r} is not JSON; "
                                 "store a JSON object (or NULL)") from None
        if isinstance(metadata, dict) and metadata.get(CLOSE_ONLY_KEY) is True:
            out[str(symbol)] = bool(metadata.get("volume", True))
    return out


def _where_clause(
    symbols: Sequence[str] | None,
    start: pd.Timestamp | None,
    end: pd.Timestamp | None,
    encoding: TimestampEncoding,
) -> tuple[str, list]:
    clauses, params = [], []
    if symbols:
        clauses.append(f"symbol IN ({', '.join('?' for _ in symbols)})")
        params.extend(symbols)
    for bound, op in ((start, ">="), (end, "<=")):
        if bound is not None and (sql_value := encoding.sql_bound(bound)) is not None:
            clauses.append(f"timestamp {op} ?")
            params.append(sql_value)
    return (" WHERE " + " AND ".join(clauses)) if clauses else "", params


def sorted_categorical(values: pa.ChunkedArray) -> pd.Categorical:
    """Arrow strings -> pandas Categorical whose categories are sorted (so sorting is alphabetical)."""
    encoded = pc.cast(values, pa.string()).dictionary_encode().combine_chunks()
    names = np.asarray(encoded.dictionary.to_pylist(), dtype=object)
    order = np.argsort(names, kind="stable")
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    codes = encoded.indices.to_numpy(zero_copy_only=False)
    return pd.Categorical.from_codes(rank[codes], names[order].tolist())


def panel_index(symbols: pd.Categorical, timestamps: pd.DatetimeIndex) -> pd.MultiIndex:
    """The (symbol, timestamp) MultiIndex built from codes: what `MultiIndex.from_arrays` makes, about 3x faster.

    The symbol level is the categorical's (sorted) categories as a CategoricalIndex; the time level
    is the sorted distinct times (one hash factorisation of the int64 nanoseconds).
    """
    time_codes, times = pd.factorize(timestamps.asi8, sort=True)
    levels = [pd.CategoricalIndex(symbols.categories, categories=symbols.categories, ordered=symbols.ordered),
              pd.DatetimeIndex(pd.to_datetime(times, utc=True)).tz_convert(timestamps.tz)]
    return pd.MultiIndex(levels=levels, codes=[symbols.codes, time_codes], names=list(PANEL_INDEX),
                         verify_integrity=False)


def _frame_from_arrow(table: pa.Table, encoding: TimestampEncoding, name: str, value_columns: Sequence[str],
                     drop_if_empty: Sequence[str] = ()) -> pd.DataFrame:
    """Number columns as float64 on the (symbol, timestamp) index; columns of `drop_if_empty` that hold
    no value at all are left out (before the frame exists, so nothing is copied to remove them)."""
    columns = {column: as_float(table[column]) for column in value_columns}
    frame = pd.DataFrame({c: v for c, v in columns.items() if c not in drop_if_empty or not np.isnan(v).all()})
    frame.index = panel_index(sorted_categorical(table["symbol"]), parse_timestamps(table["timestamp"], encoding, name))
    return frame


def _pivot_indicators(
    path: Path, where: str, params: list, encoding: TimestampEncoding, timeout_s: float
) -> pd.DataFrame:
    table = read_numeric(path, ["symbol", "timestamp", "name"], ["value"], f" FROM indicators{where}", params, timeout_s)
    if table.num_rows == 0:
        return pd.DataFrame()
    long = _frame_from_arrow(table, encoding, "indicators", ["value"])
    long["name"] = sorted_categorical(pc.binary_join_element_wise(INDICATOR_PREFIX, table["name"], ""))
    long = long.set_index("name", append=True)
    if long.index.has_duplicates:
        raise DataContractError(
            "table indicators has duplicate (symbol, timestamp, name) rows; run `plus-ultra validate` to list them"
        )
    wide = long["value"].unstack("name")
    wide.columns = wide.columns.astype(str)
    return wide.sort_index(axis=1)


def _panel_in_storage_order(path: Path, ranges: list[tuple[int, int]], value_columns: list[str],
                            end_ts: pd.Timestamp | None, encoding: TimestampEncoding, timeout_s: float) -> pd.DataFrame:
    """Every series row (up to `end_ts`), one rowid range per thread, as the sorted panel frame."""
    end = encoding.sql_bound(end_ts) if end_ts is not None else None
    tail = " FROM series NOT INDEXED WHERE rowid BETWEEN ? AND ?" + (" AND timestamp <= ?" if end is not None else "")

    def read_range(region: columnar.Region, first: int, last: int) -> None:
        def make():
            region.restart()
            return lambda batch: region.add(batch, lambda v: timestamp_ns(v, encoding, "series"), as_float,
                                            value_columns)

        stream_numeric(path, ["symbol", "timestamp"], value_columns, tail,
                       [first, last, *([end] if end is not None else [])], make, timeout_s)

    block, regions = columnar.read_in_storage_order(ranges, len(value_columns), read_range)
    return columnar.frame_from_regions(block, regions, value_columns, drop_if_empty=OPTIONAL_SERIES_COLUMNS)


def load_panel(
    db_path: str | Path,
    symbols: Sequence[str] | None = None,
    start: str | pd.Timestamp | None = None,
    end: str | pd.Timestamp | None = None,
    include_indicators: bool = True,
    timeout_s: float = 10.0,
) -> pd.DataFrame:
    """Load the (symbol, timestamp) panel of candles (and pivoted indicators) read-only.

    Returns the panel described in docs/architecture.md. Range filters run in SQL on the
    (symbol, timestamp) index when the stored encoding allows it, otherwise after the read.
    """
    path = check_database_file(db_path)
    start_ts, end_ts = _to_utc(start), _to_utc(end)
    with connect_readonly(path, timeout_s) as connection:
        tables = {name.lower() for name in list_tables(connection)}
        if "series" not in tables:
            raise DataContractError(f"database {path} has no table 'series'; run `plus-ultra validate {path}`")
        present = set(table_columns(connection, "series"))
        missing = [c for c in ("timestamp", "symbol", *OHLCV_COLUMNS) if c not in present]
        if missing:
            raise DataContractError(f"table series lacks column(s) {missing}; run `plus-ultra validate {path}`")
        encoding = detect_timestamp_encoding(connection, "series")
        has_indicators = include_indicators and "indicators" in tables
        ind_encoding = detect_timestamp_encoding(connection, "indicators") if has_indicators else encoding
        # a symbol subset or a lower time bound reads through the (symbol, timestamp) index; the whole
        # table (or all of it up to `end`) is scanned in storage order, where rowids allow it
        ranges = columnar.rowid_ranges(connection, READ_THREADS) if not symbols and start_ts is None else None
        wanted = list(symbols) if symbols else ([] if ranges is not None else distinct_symbols(connection))
    value_columns = [*OHLCV_COLUMNS, *(c for c in OPTIONAL_SERIES_COLUMNS if c in present)]
    if ranges is not None:  # the whole table: storage-order scans, sorted in numpy (data.columnar)
        panel = _panel_in_storage_order(path, ranges, value_columns, end_ts, encoding, timeout_s)
    else:
        order = " ORDER BY symbol, timestamp" if encoding.kind != "iso_other" else ""

        def read_group(group: list[str]) -> pa.Table:
            where, params = _where_clause(group, start_ts, end_ts, encoding)
            return read_numeric(path, ["symbol", "timestamp"], value_columns, f" FROM series{where}{order}", params,
                                timeout_s)

        table = read_partitioned(path, [str(s) for s in wanted if s is not None], read_group)
        # optional columns the database never filled are left out
        panel = _frame_from_arrow(table, encoding, "series", value_columns, drop_if_empty=OPTIONAL_SERIES_COLUMNS)
        del table
    if has_indicators:
        ind_where, ind_params = _where_clause(symbols, start_ts, end_ts, ind_encoding)
        wide = _pivot_indicators(path, ind_where, ind_params, ind_encoding, timeout_s)
        if not wide.empty:
            panel = panel.join(wide, how="left")  # left join: indicators never add or multiply rows
    timestamps = panel.index.get_level_values("timestamp")
    keep = np.ones(len(panel), dtype=bool)
    if start_ts is not None:
        keep &= timestamps >= start_ts
    if end_ts is not None:
        keep &= timestamps <= end_ts
    if not keep.all():
        panel = panel[keep]
    if not panel.index.is_monotonic_increasing:
        panel = panel.sort_index()
    log.info("loaded panel from %s: %d rows, %d columns", path, len(panel), panel.shape[1])
    return panel


# --------------------------------------------------------------------------------------------
# data version (what the sensor and the observable source watch)
# --------------------------------------------------------------------------------------------
def series_summary(db_path: str | Path, timeout_s: float = 10.0) -> dict[str, dict[str, int | str]]:
    """Per symbol: row count and last stored timestamp (raw), read from the (symbol, timestamp) index."""
    with connect_readonly(db_path, timeout_s) as connection:
        if "series" not in list_tables(connection):
            raise DataContractError(f"database {db_path} has no table 'series'")
        rows = connection.execute(
            "SELECT symbol, count(*), max(timestamp) FROM series GROUP BY symbol ORDER BY symbol"
        ).fetchall()
    return {str(symbol): {"rows": int(count), "last": str(last)} for symbol, count, last in rows}


def data_version(summary: dict[str, dict[str, int | str]]) -> str:
    """A short, stable version string for a series summary: changes iff any count or last bar does."""
    blob = json.dumps(summary, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:16]
