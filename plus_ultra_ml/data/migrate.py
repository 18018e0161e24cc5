"""Bring a seed-style database up to what our writers need, only when asked, never on a broken file.

A seed-style file loads as it is (readers accept keyless tables, ISO text of any notation and epoch
numbers). Writing needs more: ingest upserts by key, so `assets` needs a unique `symbol`, `series` a
unique (timestamp, symbol) and `indicators` a unique (timestamp, symbol, name); and ingest writes
canonical ISO text (``2024-01-02T09:30:00Z``), so a table holding another ISO notation has its times
rewritten in that one (epoch numbers stay: ingest writes epochs into an epoch table).

`plan_migration` lists the steps a file needs (nothing is written); `apply_migration` runs them on a
connection inside the caller's transaction; `migrate_database` validates the file first (any
validation error: refused, nothing written) and then, with ``write=True``, applies every step in one
transaction. `plus-ultra migrate DB [--write]` and `plus-ultra ingest --migrate` are the two doors.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from plus_ultra_ml.config import DataConfig
from plus_ultra_ml.data.schema import TIMESTAMP_FORMAT
from plus_ultra_ml.data.store import check_database_file, detect_timestamp_encoding
from plus_ultra_ml.data.validate import validate_database
from plus_ultra_ml.errors import DatabaseUnreadableError, DataContractError

# table -> the key our writers upsert by
WRITE_KEYS: dict[str, tuple[str, ...]] = {
    "assets": ("symbol",),
    "series": ("timestamp", "symbol"),
    "indicators": ("timestamp", "symbol", "name"),
}


@dataclass(frozen=True)
class MigrationStep:
    table: str
    kind: str  # "key": add a unique index; "times": rewrite timestamps as canonical ISO text
    description: str


@dataclass(frozen=True)
class MigrationResult:
    steps: tuple[MigrationStep, ...]
    written: bool


def has_key(connection: sqlite3.Connection, table: str, key: tuple[str, ...]) -> bool:
    """Whether `table` has a primary key or a full (not partial) unique index on exactly `key`."""
    for _, name, unique, _, partial in connection.execute(f"PRAGMA index_list('{table}')").fetchall():
        columns = {row[2] for row in connection.execute(f"PRAGMA index_info('{name}')")}
        if unique and not partial and columns == set(key):
            return True
    return False


def _tables(connection: sqlite3.Connection) -> set[str]:
    return {row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


def plan_migration(connection: sqlite3.Connection) -> list[MigrationStep]:
    """The steps this database needs before our writers can write it (empty: nothing to do)."""
    tables = _tables(connection)
    steps = [MigrationStep(table, "key", f"add a unique index on {table}({', '.join(key)})")
             for table, key in WRITE_KEYS.items() if table in tables and not has_key(connection, table, key)]
    for table in ("series", "indicators"):
        if table in tables and detect_timestamp_encoding(connection, table).kind == "iso_other":
            (count,) = connection.execute(f'SELECT count(*) FROM "{table}"').fetchone()
            steps.append(MigrationStep(table, "times", f"rewrite {count:,} timestamps as canonical ISO UTC text "
                                                       f"({TIMESTAMP_FORMAT})"))
    return steps


def index_name(table: str) -> str:
    return f"{table}_{'_'.join(WRITE_KEYS[table])}_key"


def apply_migration(connection: sqlite3.Connection, steps: list[MigrationStep], db_path: Path) -> None:
    """Run `steps` on `connection` inside the caller's transaction (the caller commits or rolls back)."""
    for step in steps:
        if step.kind == "times":  # before the keys: rewritten times could otherwise collide mid-update
            _rewrite_times(connection, step.table)
    for step in steps:
        if step.kind != "key":
            continue
        key = WRITE_KEYS[step.table]
        try:
            connection.execute(f'CREATE UNIQUE INDEX "{index_name(step.table)}" ON "{step.table}"({", ".join(key)})')
        except sqlite3.IntegrityError:
            raise DataContractError(
                f"{db_path}: table {step.table} holds several rows with the same ({', '.join(key)}), so the key "
                f"cannot be added; `plus-ultra validate {db_path}` lists them: keep one row per key, then migrate "
                "again; nothing was written") from None


def _rewrite_times(connection: sqlite3.Connection, table: str) -> None:
    rows = connection.execute(f'SELECT rowid, timestamp FROM "{table}"').fetchall()
    frame = pd.DataFrame(rows, columns=["rowid", "timestamp"])
    stamps = pd.to_datetime(frame["timestamp"], format="ISO8601", utc=True)  # validated: every value parses
    connection.executemany(f'UPDATE "{table}" SET timestamp = ? WHERE rowid = ?',
                           zip(stamps.dt.strftime(TIMESTAMP_FORMAT), frame["rowid"].tolist(), strict=True))


def migrate_database(path: str | Path, *, write: bool = False, cfg: DataConfig | None = None) -> MigrationResult:
    """Validate the database, then (with `write`) apply every step of its plan in one transaction."""
    cfg = cfg or DataConfig()
    path = check_database_file(path)
    report = validate_database(path, cfg)
    report.raise_for_errors(f"{path} is not migrated: fix these validation errors first; nothing was written.")
    connection = sqlite3.connect(path, timeout=cfg.busy_timeout_s, isolation_level=None)
    try:
        steps = plan_migration(connection)
        if not write or not steps:
            return MigrationResult(tuple(steps), written=False)
        connection.execute("BEGIN IMMEDIATE")
        try:
            apply_migration(connection, steps, path)
            connection.execute("COMMIT")
        except BaseException:
            connection.execute("ROLLBACK")
            raise
    except sqlite3.OperationalError as error:
        raise DatabaseUnreadableError(f"{path}: cannot migrate ({error}); retry when no other process writes it, "
                                      "and check the file is writable; nothing was written") from None
    finally:
        connection.close()
    return MigrationResult(tuple(steps), written=True)
