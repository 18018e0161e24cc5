"""Bulk writing of a generated panel into a fresh SQLite file, in primary-key order, through ADBC.

Millions of (timestamp, symbol[, name]) rows are built as Arrow columns straight from numpy (no
Python tuple per row) and ingested with ADBC's SQLite driver (a prepared insert bound per row in C),
into the tables `data.schema.create_schema` made, so the schema and the key order are those of
every other writer. Rows go in key order, so each B-tree insert appends; the same rows in the same
order give the same bytes.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from plus_ultra_ml.data.schema import DDL, OHLCV_COLUMNS, create_schema

INDEX_CACHE_KIB = 256 * 1024  # page cache while the indexes are built (SQLite's sorter spills past it)
PAGE_SIZE = 16384  # bytes per page: fewer, fuller B-tree pages for millions of rows (SQLite's default is 4096)
BATCH_ROWS = 1 << 20  # about this many rows per record batch: whole bars, bounding the Arrow memory held at once


def key_columns(timestamps: Sequence[str], symbols: Sequence[str], listed: np.ndarray,
                repeat: int = 1) -> tuple[pa.Array, pa.Array]:
    """(timestamp, symbol) text columns of the listed cells in row-major (t, symbol) order, each cell
    repeated `repeat` times (once per indicator name). listed: (T, N) bool; symbols sorted."""
    t_index, s_index = np.nonzero(listed)  # row-major: t first, then symbol: the primary-key order
    if repeat > 1:
        t_index, s_index = np.repeat(t_index, repeat), np.repeat(s_index, repeat)
    ts = pc.take(pa.array(list(timestamps), pa.string()), pa.array(t_index))
    sym = pc.take(pa.array(list(symbols), pa.string()), pa.array(s_index))
    return ts, sym


def write_panel(db_path: Path, *, timestamps: Sequence[str], symbols: Sequence[str], listed: np.ndarray,
                ohlcv: Sequence[np.ndarray], indicators: dict[str, np.ndarray],
                assets: list[tuple], side_tables: dict[str, tuple[str, list[tuple]]]) -> None:
    """Write assets, series, indicators and small side tables into the new file `db_path`.

    timestamps (T,) ISO text; symbols (N,) sorted; listed (T, N): the cells that have a candle;
    ohlcv: open, high, low, close, volume arrays (T, N); indicators: name -> (T, N), written for the
    listed cells only, names in sorted order (the key order); assets: rows of (asset_id, symbol,
    sector, currency, exchange, metadata JSON); side_tables: name -> (DDL, rows) for key/value
    tables such as fixture_truth.
    """
    if list(symbols) != sorted(symbols):
        raise ValueError("write_panel: symbols must be sorted (the primary-key order)")
    connection = sqlite3.connect(db_path)
    try:
        connection.execute("PRAGMA journal_mode=OFF")  # a fresh temp file: atomicity comes from rename
        connection.execute("PRAGMA synchronous=OFF")
        connection.execute(f"PRAGMA page_size={PAGE_SIZE}")
        for statement in DDL.values():  # the tables; their secondary indexes are built after the rows
            connection.execute(statement)
        connection.executemany(
            "INSERT INTO assets (asset_id, symbol, sector, currency, exchange, metadata) VALUES (?, ?, ?, ?, ?, ?)",
            assets,
        )
        for ddl, rows in side_tables.values():
            connection.execute(ddl)
        for name, (_, rows) in side_tables.items():
            if rows:
                marks = ", ".join("?" * len(rows[0]))
                connection.executemany(f'INSERT INTO "{name}" VALUES ({marks})', rows)
        connection.commit()
    finally:
        connection.close()

    names = sorted(indicators)
    block = max(1, BATCH_ROWS // max(1, len(symbols) * len(names)))  # bars per record batch

    def series_batches():
        for t0 in range(0, len(timestamps), block):
            sl, cells = slice(t0, t0 + block), listed[t0:t0 + block]
            ts, sym = key_columns(timestamps[sl], symbols, cells)
            yield pa.record_batch({"timestamp": ts, "symbol": sym, **{
                c: pa.array(v[sl][cells], pa.float64()) for c, v in zip(OHLCV_COLUMNS, ohlcv, strict=True)}})

    def indicator_batches():
        for t0 in range(0, len(timestamps), block):
            sl, cells = slice(t0, t0 + block), listed[t0:t0 + block]
            ts, sym = key_columns(timestamps[sl], symbols, cells, repeat=len(names))
            values = np.stack([indicators[n][sl][cells] for n in names], axis=1).ravel()  # name fastest
            name = pc.take(pa.array(names, pa.string()), pa.array(np.tile(np.arange(len(names)), int(cells.sum()))))
            yield pa.record_batch({"timestamp": ts, "symbol": sym, "name": name, "value": pa.array(values, pa.float64())})

    series_schema = pa.schema([("timestamp", pa.string()), ("symbol", pa.string()),
                               *[(c, pa.float64()) for c in OHLCV_COLUMNS]])
    indicator_schema = pa.schema([("timestamp", pa.string()), ("symbol", pa.string()), ("name", pa.string()),
                                  ("value", pa.float64())])
    _ingest(db_path, {"series": pa.RecordBatchReader.from_batches(series_schema, series_batches()),
                      "indicators": pa.RecordBatchReader.from_batches(indicator_schema, indicator_batches())})
    connection = sqlite3.connect(db_path)
    try:  # the symbol-first indexes, sorted once instead of updated row by row; the schema is create_schema's
        connection.execute("PRAGMA journal_mode=OFF")
        connection.execute("PRAGMA synchronous=OFF")
        connection.execute(f"PRAGMA cache_size=-{INDEX_CACHE_KIB}")
        create_schema(connection)
        connection.commit()
    finally:
        connection.close()


def _ingest(db_path: Path, readers: dict[str, pa.RecordBatchReader]) -> None:
    import adbc_driver_sqlite.dbapi as adbc

    with adbc.connect(str(db_path), autocommit=True) as connection:
        with connection.cursor() as cursor:
            cursor.execute("PRAGMA journal_mode=OFF")  # a fresh temp file: atomicity comes from rename
            cursor.execute("PRAGMA synchronous=OFF")
            cursor.execute("BEGIN")
            for name, reader in readers.items():
                cursor.adbc_ingest(name, reader, mode="append")
            cursor.execute("COMMIT")
