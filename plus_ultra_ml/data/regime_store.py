"""`plus-ultra regimes`: validate a database strictly, label causal regimes, optionally store them.

This is the only code that writes the `regimes` table, and only when asked (``write=True``): the
labels replace earlier rows of the same regime names, in one transaction.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from plus_ultra_ml.config import ExperimentConfig
from plus_ultra_ml.data.regimes import label_regimes, regimes_to_long
from plus_ultra_ml.data.schema import create_schema
from plus_ultra_ml.data.store import load_panel
from plus_ultra_ml.data.validate import validate_database


@dataclass(frozen=True)
class RegimeSummary:
    counts: dict[str, dict[str, int]]  # regime name -> label -> bars
    rows_written: int


def label_database(db_path: str | Path, cfg: ExperimentConfig, *, write: bool = False, strict: bool = False) -> RegimeSummary:
    report = validate_database(db_path, cfg.data)
    report.raise_for_errors("regimes refused: the database is not valid.", strict=strict)
    data = cfg.data
    panel = load_panel(db_path, data.symbols, data.start, data.end, include_indicators=False, timeout_s=data.busy_timeout_s)
    labels = label_regimes(panel, cfg.regimes)
    counts = {
        name: {str(k): int(v) for k, v in labels[name].value_counts(dropna=False).items()}
        for name in labels.columns
    }
    written = 0
    if write:
        long = regimes_to_long(labels)
        written = _replace_regimes(Path(db_path), long, list(labels.columns))
    return RegimeSummary(counts=counts, rows_written=written)


def _replace_regimes(db_path: Path, long: pd.DataFrame, names: list[str]) -> int:
    connection = sqlite3.connect(db_path, timeout=30.0, isolation_level=None)
    try:
        connection.execute("BEGIN IMMEDIATE")
        create_schema(connection)
        connection.execute(f"DELETE FROM regimes WHERE name IN ({', '.join('?' for _ in names)})", names)
        rows = list(long[["timestamp", "symbol", "name", "value"]].itertuples(index=False, name=None))
        connection.executemany("INSERT INTO regimes(timestamp, symbol, name, value) VALUES (?, ?, ?, ?)", rows)
        connection.execute("COMMIT")
        return len(rows)
    except BaseException:
        if connection.in_transaction:
            connection.execute("ROLLBACK")
        raise
    finally:
        connection.close()
