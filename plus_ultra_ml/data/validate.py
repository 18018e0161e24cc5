"""Validate a candle database against the data contract (DESIGN §2) and explain every failure.

Structure is checked in SQL (tables, columns, storage types), values on columnar frames read
read-only through ADBC (`rules.py` holds the vectorised rules). The result is a
`ValidationReport`: every broken rule with its table, column, count, first offending rows and the
fix. The database is never modified; a file that cannot be read at all raises
`DatabaseUnreadableError` (CLI exit code 2).
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from plus_ultra_ml.config import DataConfig
from plus_ultra_ml.data import rules
from plus_ultra_ml.data.rules import Issue
from plus_ultra_ml.data.schema import NUMERIC_COLUMNS, OHLCV_COLUMNS, REQUIRED_COLUMNS, REQUIRED_TABLES
from plus_ultra_ml.data.calendar import resolve_calendars, times_by_symbol
from plus_ultra_ml.data.store import (
    check_database_file,
    connect_readonly,
    float_sql,
    list_tables,
    read_arrow,
    sentinel_to_nan,
    symbol_exchanges,
    table_columns,
)
from plus_ultra_ml.errors import DataContractError

KEY_COLUMNS: dict[str, tuple[str, ...]] = {
    "series": ("symbol", "timestamp"),
    "indicators": ("symbol", "timestamp", "name"),
    "regimes": ("symbol", "timestamp", "name"),
    "benchmarks": ("symbol", "timestamp"),
}


@dataclass
class ValidationReport:
    """Everything a validation found, plus summary statistics of what was read."""

    source: str
    issues: list[Issue] = field(default_factory=list)
    stats: dict = field(default_factory=dict)

    @property
    def errors(self) -> list[Issue]:
        return [i for i in self.issues if i.severity == "error"]

    @property
    def warnings(self) -> list[Issue]:
        return [i for i in self.issues if i.severity == "warning"]

    def passed(self, strict: bool = False) -> bool:
        return not self.errors and not (strict and self.warnings)

    @property
    def ok(self) -> bool:
        return self.passed()

    def raise_for_errors(self, headline: str | None = None, *, strict: bool = False) -> None:
        """Raise `DataContractError` carrying this report unless it `passed(strict)`.

        The message is `headline` (default "<source> breaks the data contract:") and then `summary()`.
        """
        if not self.passed(strict):
            headline = headline or f"{self.source} breaks the data contract:"
            raise DataContractError(f"{headline}\n{self.summary()}", self)

    def to_dict(self) -> dict:
        return {
            "source": self.source,
            "valid": self.ok,
            "errors": len(self.errors),
            "warnings": len(self.warnings),
            "issues": [i.to_dict() for i in self.issues],
            "stats": self.stats,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, default=str)

    def summary(self) -> str:
        """One line per issue: severity, table.column, rule, count, message."""
        lines = [f"{self.source}: {len(self.errors)} error(s), {len(self.warnings)} warning(s)"]
        for issue in self.issues:
            where = issue.table + (f".{issue.column}" if issue.column else "")
            lines.append(f"  {issue.severity.upper():7} {where} [{issue.rule}] x{issue.count}: {issue.message}")
            for example in issue.examples[:3]:
                lines.append(f"           e.g. {example}")
        return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# structure (SQL)
# --------------------------------------------------------------------------------------------
def _structure_issues(connection: sqlite3.Connection, tables: set[str]) -> tuple[list[Issue], dict[str, list[str]]]:
    issues: list[Issue] = []
    columns: dict[str, list[str]] = {}
    for table in REQUIRED_TABLES:
        if table not in tables:
            issues.append(Issue(
                table, None, "missing_table", "error", 1,
                f"table {table} is missing; create it with the DDL in plus_ultra_ml/data/schema.py "
                "(plus-ultra ingest creates the schema)",
            ))
    for table, required in REQUIRED_COLUMNS.items():
        if table not in tables:
            continue
        columns[table] = table_columns(connection, table)
        missing = [c for c in required if c not in columns[table]]
        for column in missing:
            issues.append(Issue(
                table, column, "missing_column", "error", 1,
                f"table {table} has no column {column}; it has {columns[table]}. Rename or add it "
                "(see plus_ultra_ml/data/schema.py)",
            ))
    return issues, columns


def _type_issues(connection: sqlite3.Connection, table: str, present: list[str]) -> list[Issue]:
    issues: list[Issue] = []
    checks = [(c, ("real", "integer", "null")) for c in NUMERIC_COLUMNS.get(table, ()) if c in present]
    checks += [(c, ("text", "null")) for c in ("symbol", "name") if c in present]
    key = "symbol, timestamp" if "timestamp" in present and "symbol" in present else "rowid"
    for column, allowed in checks:
        allowed_sql = ", ".join(f"'{t}'" for t in allowed)
        where = f'typeof("{column}") NOT IN ({allowed_sql})'
        (count,) = connection.execute(f'SELECT count(*) FROM "{table}" WHERE {where}').fetchone()
        if count:
            rows = connection.execute(
                f'SELECT rowid, {key}, "{column}", typeof("{column}") FROM "{table}" WHERE {where} LIMIT {rules.MAX_EXAMPLES}'
            ).fetchall()
            names = ["row", *[k.strip() for k in key.split(",")], column, "stored_as"]
            issues.append(Issue(
                table, column, "wrong_type", "error", int(count),
                f"table {table}: column {column} must hold {' or '.join(allowed[:-1])} values; these rows "
                "hold something else (text in a number column?). Fix the source and re-ingest",
                [dict(zip(names, [r if r is None or isinstance(r, (int, float)) else str(r) for r in row], strict=False))
                 for row in rows],
            ))
    return issues


# --------------------------------------------------------------------------------------------
# values (columnar)
# --------------------------------------------------------------------------------------------
def _read_table(path: Path, table: str, present: list[str], timeout_s: float) -> pd.DataFrame:
    """Every row of `table` with its rowid, text keys, raw timestamps and numbers as floats."""
    numeric = [c for c in NUMERIC_COLUMNS.get(table, ()) if c in present]
    text = [c for c in ("symbol", "name", "value") if c in present and c not in numeric]
    select = ["rowid AS row", "CAST(timestamp AS TEXT) AS timestamp", *(f'CAST("{c}" AS TEXT) AS "{c}"' for c in text),
              *(float_sql(c) for c in numeric)]
    arrow = read_arrow(path, f'SELECT {", ".join(select)} FROM "{table}"', timeout_s=timeout_s)
    frame = pd.DataFrame({"row": arrow["row"].to_numpy(), "timestamp_raw": arrow["timestamp"].to_pandas()})
    for column in text:
        frame[column] = arrow[column].to_pandas()
    for column in numeric:
        frame[column] = sentinel_to_nan(arrow[column].to_numpy())
    return frame


def _calendar_issues(frame: pd.DataFrame, cfg: DataConfig, exchanges: dict[str, str]) -> tuple[dict, list[Issue]]:
    """Each symbol's trading calendar (assets.exchange, data.calendar, else inferred), or the error naming it."""
    by_symbol = times_by_symbol(frame["symbol"].astype(str).to_numpy(), pd.DatetimeIndex(frame["timestamp"]))
    issues = []
    for symbol in [s for s in by_symbol if s in exchanges]:
        try:
            resolve_calendars({symbol: by_symbol[symbol]}, exchanges)
        except DataContractError as error:
            issues.append(Issue("assets", "exchange", "unknown_calendar", "error", 1, str(error)))
    try:
        return resolve_calendars(by_symbol, exchanges, cfg.calendar) if not issues else {}, issues
    except DataContractError as error:  # data.calendar names no calendar
        return {}, [Issue("series", "timestamp", "unknown_calendar", "error", 1, str(error))]


def _series_issues(frame: pd.DataFrame, cfg: DataConfig, exchanges: dict[str, str] | None = None) -> list[Issue]:
    issues = rules.missing_value_issues(frame, ["symbol", "timestamp_raw", *OHLCV_COLUMNS], "series")
    issues += rules.duplicate_issues(frame, ["symbol", "timestamp"], "series")
    issues += rules.candle_value_issues(frame, "series")
    valid_time = frame[frame["timestamp"].notna()]
    issues += rules.time_order_issues(valid_time, "series")
    issues += rules.jump_issues(valid_time, cfg.jump_threshold, "series")
    if valid_time["timestamp"].nunique() < 2:
        return issues
    calendars, calendar_issues = _calendar_issues(valid_time, cfg, exchanges or {})
    issues += calendar_issues
    if not calendar_issues:
        issues += rules.frequency_issues(valid_time, cfg.freq, "series", calendars)
    return issues


def _unknown_symbol_issues(connection: sqlite3.Connection, table: str) -> list[Issue]:
    rows = connection.execute(
        f'SELECT symbol, count(*) FROM "{table}" WHERE symbol IS NOT NULL '
        "AND symbol NOT IN (SELECT symbol FROM assets WHERE symbol IS NOT NULL) GROUP BY symbol ORDER BY symbol"
    ).fetchall()
    if not rows:
        return []
    return [Issue(
        table, "symbol", "unknown_symbol", "error", int(sum(n for _, n in rows)),
        f"table {table}: {len(rows)} symbol(s) have rows but no entry in assets; add them to assets "
        "(plus-ultra ingest does) or delete their rows",
        [{"symbol": s, "rows": int(n)} for s, n in rows[: rules.MAX_EXAMPLES]],
    )]


def _side_table_issues(frame: pd.DataFrame, table: str, series_keys: pd.MultiIndex | None) -> list[Issue]:
    keys = list(KEY_COLUMNS[table])
    issues = rules.missing_value_issues(frame, [c for c in ("symbol", "timestamp_raw", "name") if c in frame], table)
    issues += rules.duplicate_issues(frame, keys, table)
    for column in [c for c in NUMERIC_COLUMNS.get(table, ()) if c in frame]:
        values = frame[column].to_numpy(dtype=float)
        issues += rules.issue_if(
            frame, np.isinf(values), table=table, column=column, rule="non_finite", severity="error",
            message=f"table {table}: column {column} holds +/-inf; store the true value or NULL",
            show=["row", *keys, column],
        )
    if series_keys is not None and table == "indicators":
        index = pd.MultiIndex.from_arrays([frame["symbol"].astype(str), frame["timestamp"]])
        orphan = ~index.isin(series_keys) & frame["timestamp"].notna().to_numpy()
        issues += rules.issue_if(
            frame, orphan, table=table, column="timestamp", rule="no_matching_candle", severity="warning",
            message=f"table {table}: rows whose (symbol, timestamp) has no candle in series; they are ignored on load",
            show=["row", *keys],
        )
    return issues


def validate_database(path: str | Path, cfg: DataConfig | None = None) -> ValidationReport:
    """Check a database against the contract; never modifies it. Raises DatabaseUnreadableError."""
    cfg = cfg or DataConfig()
    path = check_database_file(path)
    report = ValidationReport(source=str(path))
    with connect_readonly(path, cfg.busy_timeout_s) as connection:
        tables = list_tables(connection)
        structure, columns = _structure_issues(connection, tables)
        report.issues += structure
        broken = {i.table for i in structure}
        for table, present in columns.items():
            report.issues += _type_issues(connection, table, present)
            (report.stats[f"{table}_rows"],) = connection.execute(f'SELECT count(*) FROM "{table}"').fetchone()
        exchanges = symbol_exchanges(connection) if "assets" in columns and "assets" not in broken else {}
        if "assets" in columns and "assets" not in broken:
            for table in ("series", "indicators", "regimes", "benchmarks"):
                if table in columns and table not in broken:
                    report.issues += _unknown_symbol_issues(connection, table)
    series_keys = None
    if "series" in columns and "series" not in broken:
        if report.stats.get("series_rows", 0) == 0:
            report.issues.append(Issue("series", None, "empty_table", "error", 0,
                                       "table series has no rows; ingest candles first (plus-ultra ingest)"))
        else:
            frame = _read_table(path, "series", columns["series"], cfg.busy_timeout_s)
            frame["timestamp"], time_issues = rules.parse_timestamp_column(frame["timestamp_raw"], "series", frame["row"])
            report.issues += time_issues + _series_issues(frame, cfg, exchanges)
            series_keys = pd.MultiIndex.from_arrays([frame["symbol"].astype(str), frame["timestamp"]])
            valid = frame["timestamp"].dropna()
            report.stats.update(
                symbols=int(frame["symbol"].nunique()),
                start=valid.min().isoformat() if len(valid) else None,
                end=valid.max().isoformat() if len(valid) else None,
                rows_per_symbol={str(k): int(v) for k, v in frame["symbol"].value_counts().sort_index().items()},
            )
    for table in ("indicators", "regimes", "benchmarks"):
        if table in columns and table not in broken and report.stats.get(f"{table}_rows", 0):
            frame = _read_table(path, table, columns[table], cfg.busy_timeout_s)
            frame["timestamp"], time_issues = rules.parse_timestamp_column(frame["timestamp_raw"], table, frame["row"])
            report.issues += time_issues + _side_table_issues(frame, table, series_keys)
    report.issues.sort(key=lambda i: (i.severity != "error", i.table, i.rule))
    return report
