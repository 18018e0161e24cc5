"""Bring real candles into the contract: CSV / Parquet files or a DataFrame -> SQLite.

Source columns are matched to the contract by name (``Date``, ``Adj Close``, ``Ticker`` style
headers are recognised; ``column_map`` overrides). Naive source times are read in
``timezone`` and stored in UTC. With ``adjust_column`` (an adjusted close), open/high/low/close
are scaled by adjusted/raw close and volume by its inverse, which removes split and dividend jumps.

Writing is one transaction, after the incoming rows pass the same rules `validate` applies: a bad
row rejects the whole batch with the report, and nothing is written. Upserts are idempotent:
re-running an ingest changes nothing. ``append_only`` keeps only candles newer than the last one
stored for each symbol, which is what new candles look like to the sensor. ``close_only`` takes a
source with closes only: open = high = low = close (volume 0 if absent), flagged in assets.metadata
so the feature pipeline skips what needs real open/high/low (docs/architecture.md).
"""

from __future__ import annotations

import gzip
import json
import logging
import sqlite3
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytz

from plus_ultra_ml.data import rules
from plus_ultra_ml.data.schema import CLOSE_ONLY_KEY, OHLCV_COLUMNS, OPTIONAL_SERIES_COLUMNS, TIMESTAMP_FORMAT, create_schema
from plus_ultra_ml.data.store import check_database_file, detect_timestamp_encoding
from plus_ultra_ml.data.migrate import apply_migration, plan_migration
from plus_ultra_ml.data.validate import ValidationReport, validate_database
from plus_ultra_ml.errors import DatabaseUnreadableError, PlusUltraError, SourceUnreadableError

log = logging.getLogger(__name__)

# lower-cased, separator-free source header -> contract column
KNOWN_HEADERS: dict[str, str] = {
    "date": "timestamp", "datetime": "timestamp", "time": "timestamp", "timestamp": "timestamp",
    "ts": "timestamp", "open": "open", "high": "high", "low": "low", "close": "close",
    "volume": "volume", "vol": "volume", "vwap": "vwap", "turnover": "turnover",
    "symbol": "symbol", "ticker": "symbol", "adjclose": "adj_close",
}


@dataclass(frozen=True)
class IngestOptions:
    """How source columns map onto the contract and how times and prices are interpreted."""

    symbol: str | None = None  # for single-symbol sources without a symbol column (default: file stem)
    column_map: Mapping[str, str] = field(default_factory=dict)  # source header -> contract column
    timezone: str = "UTC"  # zone of naive source timestamps
    adjust_column: str | None = None  # e.g. "Adj Close": scale OHLC (and volume) by adjusted/raw close
    indicator_columns: tuple[str, ...] = ()  # extra numeric columns stored in `indicators`
    append_only: bool = False  # keep only candles newer than the last stored one per symbol
    # A source with closes only (no open/high/low): open = high = low = close is written and the fact is
    # recorded in assets.metadata ({"close_only": true}, and "volume": false when volume is absent too, which
    # is then stored as 0), so the feature pipeline skips every open/high/low (and volume) feature.
    close_only: bool = False
    busy_timeout_s: float = 30.0  # while another process writes the database: wait this long, then fail clearly
    # Plausibility bounds: a price or volume above them is a unit or parsing error (1e308), refused by name.
    max_price: float = 1e9
    max_volume: float = 1e15
    # A seed-style database (keyless tables, other ISO notations): False refuses with the migrate command;
    # True validates it and migrates it inside the ingest's own transaction (data/migrate.py).
    migrate: bool = False


@dataclass(frozen=True)
class IngestResult:
    inserted: int
    updated: int
    unchanged: int
    skipped_not_newer: int
    symbols_added: tuple[str, ...]
    indicator_rows: int

    @property
    def changed(self) -> int:
        return self.inserted + self.updated


# --------------------------------------------------------------------------------------------
# reading and normalising sources
# --------------------------------------------------------------------------------------------
TEXT_SUFFIXES = (".csv", ".txt", ".gz")  # read as CSV (a .gz decompressed first); rows have line numbers
PARQUET_SUFFIXES = (".parquet", ".pq")


def read_source(path: str | Path) -> pd.DataFrame:
    """A CSV (optionally gzipped) or Parquet source as read, or `SourceUnreadableError` naming the file,
    what is wrong with it and the fix (never the reader's own exception)."""
    path = Path(path)
    if not path.is_file():
        raise SourceUnreadableError(f"source file {path} does not exist or is not a file")
    suffix = path.suffix.lower()
    if suffix not in (*PARQUET_SUFFIXES, *TEXT_SUFFIXES):
        raise SourceUnreadableError(f"source file {path}: unsupported type {suffix!r}; use .csv, .csv.gz or .parquet")
    if path.stat().st_size == 0:
        raise SourceUnreadableError(f"source file {path} is empty (0 bytes); export the candles again, with a "
                                    "header line")
    try:
        if suffix in PARQUET_SUFFIXES:
            return pd.read_parquet(path)
        return pd.read_csv(path)
    except pd.errors.EmptyDataError:
        raise SourceUnreadableError(f"source file {path} has no header line and no rows (only blank lines); "
                                    "export the candles again, with a header line") from None
    except UnicodeDecodeError as error:
        line = error.object[:error.start].count(b"\n") + 1  # of the decoded stream (a .gz: after decompression)
        raise SourceUnreadableError(
            f"source file {path}: byte {error.object[error.start]:#04x} at offset {error.start:,} "
            f"(line {line}) is not UTF-8 text; if it is a CSV in another "
            "encoding (e.g. latin-1 or cp1252), re-save it as UTF-8; if it is not a CSV, pass the right file") from None
    except (gzip.BadGzipFile, EOFError, zlib.error) as error:
        raise SourceUnreadableError(f"source file {path} is not a complete gzip file ({error}); compress it again "
                                    "with gzip, or drop the .gz suffix if it is plain text") from None
    except pd.errors.ParserError as error:
        raise SourceUnreadableError(f"source file {path} is not a well-formed CSV ({error}); every line needs the "
                                    "header's number of comma-separated fields") from None
    except (pa.ArrowException, OSError) as error:
        raise SourceUnreadableError(f"source file {path} is not a readable Parquet file ({error}); write it again "
                                    "(e.g. DataFrame.to_parquet) or export it as CSV") from None


def is_text_source(source: str) -> bool:
    """A CSV-like file (its rows have line numbers)."""
    return Path(source).suffix.lower() in TEXT_SUFFIXES


def _normalise_header(name: str) -> str:
    return "".join(ch for ch in str(name).lower() if ch.isalnum())


def to_contract(frame: pd.DataFrame, options: IngestOptions, source: str = "frame") -> pd.DataFrame:
    """Rename, localise and adjust a source frame into contract columns (no validation yet)."""
    frame = frame.reset_index() if not isinstance(frame.index, pd.RangeIndex) else frame.copy()
    source_columns = [str(c) for c in frame.columns]  # the user's own headers, for every message below
    explicit = {src: dst for src, dst in options.column_map.items()}
    adjust_key = options.adjust_column
    renames: dict[str, str] = {}
    for column in frame.columns:
        if column in explicit:
            renames[column] = explicit[column]
        elif adjust_key is not None and column == adjust_key:
            renames[column] = "adj_close"
        elif (target := KNOWN_HEADERS.get(_normalise_header(column))) is not None:
            renames[column] = target
    frame = frame.rename(columns=renames)
    if frame.columns.duplicated().any():
        dupes = sorted(set(frame.columns[frame.columns.duplicated()]))
        raise PlusUltraError(f"{source}: several source columns map to {dupes}; pass an explicit column map")
    if "symbol" not in frame:
        if options.symbol is None:
            raise PlusUltraError(f"{source}: no symbol column among {source_columns}; pass --symbol (one file per "
                                 "symbol) or map the column holding it with --map SOURCE=symbol")
        frame["symbol"] = options.symbol
    if options.close_only:
        frame = _close_only_columns(frame, source)
    missing = [c for c in ("timestamp", *OHLCV_COLUMNS) if c not in frame]
    if missing:
        raise PlusUltraError(
            f"{source}: no column for {missing} (the file's columns are {source_columns}); map them with "
            "--map SOURCE=CONTRACT, e.g. --map 'Adj Close=close'"
        )
    if adjust_key is not None and "adj_close" not in frame:
        raise PlusUltraError(f"{source}: adjust column {adjust_key!r} not found among the file's columns "
                             f"{source_columns}; pass one of them to --adjust-column")
    # row: the 1-based data row (the rowid a fresh database gives it, what validate shows); a CSV's
    # rows also carry their line in the file (the header is line 1)
    out = pd.DataFrame({"row": np.arange(len(frame)) + 1})
    if is_text_source(source):
        out["line"] = out["row"] + 1
    out["symbol"] = frame["symbol"].astype("string")
    out["timestamp_raw"] = frame["timestamp"].astype(object).to_numpy()
    for column in (*OHLCV_COLUMNS, *(c for c in OPTIONAL_SERIES_COLUMNS if c in frame)):
        out[column] = _numbers(frame[column], column, out, source)
    for column in (CLOSE_ONLY, VOLUME_KNOWN):
        if column in frame:
            out[column] = frame[column].astype(bool).to_numpy()
    for column in options.indicator_columns:
        if column not in frame:
            raise PlusUltraError(f"{source}: indicator column {column!r} not found")
        out[f"indicator:{column}"] = _numbers(frame[column], column, out, source)
    if adjust_key is not None:
        factor = pd.to_numeric(frame["adj_close"], errors="coerce").to_numpy(dtype=float) / out["close"].to_numpy()
        for column in ("open", "high", "low", "close", *(c for c in ("vwap",) if c in out)):
            out[column] = out[column] * factor
        out["volume"] = out["volume"] / factor
    return out


def _numbers(values: pd.Series, column: str, rows: pd.DataFrame, source: str) -> np.ndarray:
    """A source column as float64; text that is not a number ('ten', '1,5') is refused by row, not read as
    missing (an empty cell stays NaN, for the missing-value rule to report)."""
    numbers = pd.to_numeric(values, errors="coerce")
    text = values.astype("string").str.strip()
    bad = (numbers.isna() & text.notna() & (text != "") & ~text.str.lower().isin(["nan", "na", "null", "none"])
           ).to_numpy(dtype=bool)
    if bad.any():
        locator = "line" if "line" in rows else "row"
        where = [f"{locator} {rows[locator].iloc[i]}: {values.iloc[i]!r}" for i in np.flatnonzero(bad)[:3]]
        raise PlusUltraError(f"{source}: column {column} holds text that is not a number ({int(bad.sum())} rows; "
                             f"{', '.join(where)}); write plain numbers with a dot for decimals, or map another "
                             "column with --map")
    return numbers.astype(float).to_numpy()


def _close_only_columns(frame: pd.DataFrame, source: str) -> pd.DataFrame:
    """open = high = low = close for a close-only source; volume 0 when it is absent too (both flagged per row)."""
    present = [c for c in ("open", "high", "low") if c in frame]
    if present:
        raise PlusUltraError(f"{source}: --close-only, but the source has {present} columns; drop --close-only "
                             "to ingest its real open/high/low, or drop those columns")
    if "close" not in frame:
        raise PlusUltraError(f"{source}: --close-only needs a close column (columns are {list(frame.columns)}); "
                             "map it with --map SOURCE=close")
    frame = frame.assign(open=frame["close"], high=frame["close"], low=frame["close"], **{CLOSE_ONLY: True})
    return frame.assign(**{VOLUME_KNOWN: "volume" in frame}, **({} if "volume" in frame else {"volume": 0.0}))


# per-row flags a close-only batch carries to the writer, which records them in assets.metadata
CLOSE_ONLY, VOLUME_KNOWN = "flag:close_only", "flag:volume_known"


def _is_daily(stamps: pd.DatetimeIndex) -> bool:
    """Daily bars: every (wall-clock) time shares one time of day, and distinct bars are >= 1 day apart."""
    wall = stamps[~pd.isna(stamps)]
    wall = wall.tz_localize(None) if wall.tz is not None else wall
    distinct = wall.unique().sort_values()
    if len(distinct) < 2 or (wall - wall.normalize()).nunique() != 1:
        return False
    return bool(np.diff(distinct.asi8).min() >= pd.Timedelta("1D").value)


def _localise(raw: pd.Series, timezone: str) -> pd.Series:
    """Naive datetimes / naive ISO text are in `timezone`; produce ISO text with an explicit offset.

    Daily bars follow one convention whatever `timezone` says: a bar is stamped at its session
    date's 00:00 UTC (the date as written in the source), so DST never moves it (docs/architecture.md).
    The work is done once per distinct value (a panel repeats each time once per symbol).
    """
    codes, uniques = pd.factorize(raw, use_na_sentinel=True)
    if len(uniques) == len(raw):
        return _localise_values(raw, timezone)
    local = _localise_values(pd.Series(uniques), timezone).to_numpy(dtype=object)
    out = raw.to_numpy(dtype=object).copy()  # missing values stay as they are, for validation to show
    out[codes >= 0] = local[codes[codes >= 0]]
    return pd.Series(out, index=raw.index, dtype=object)


def _localise_values(raw: pd.Series, timezone: str) -> pd.Series:
    values = raw
    if pd.api.types.is_datetime64_any_dtype(values):
        stamps = pd.DatetimeIndex(values)
    else:
        text = values.astype("string").str.strip()
        if text.str.fullmatch(r"-?\d+(\.\d+)?").fillna(False).all():
            return raw  # epoch numbers are UTC by definition
        offsets = rules.utc_offsets(text)
        aware = offsets.notna().to_numpy()
        if aware.any() and not aware[text.notna().to_numpy()].all():
            return raw  # naive beside offset-bearing times: validation rejects the mix, naming the rows
        several = offsets[aware].nunique() > 1
        # several offsets in one file (Z beside +05:00): each time is converted to UTC by its own offset
        stamps = pd.to_datetime(text, format="ISO8601", errors="coerce", utc=bool(several))
        if not isinstance(stamps, pd.DatetimeIndex):
            stamps = pd.DatetimeIndex(stamps)
    if _is_daily(stamps):
        wall = stamps.tz_localize(None) if stamps.tz is not None else stamps
        stamps = wall.normalize().tz_localize("UTC")
    elif stamps.tz is None:
        try:
            stamps = stamps.tz_localize(timezone, ambiguous="raise", nonexistent="raise")
        except (pytz.exceptions.Error, ValueError) as error:  # unknown zone, DST gap or overlap
            raise PlusUltraError(
                f"timestamps cannot be localised to {timezone!r}: {error!r}; pass a valid --timezone, "
                "or store UTC times in the source"
            ) from None
    out = pd.Series(stamps.tz_convert("UTC").strftime(TIMESTAMP_FORMAT), index=raw.index, dtype=object)
    out[pd.isna(stamps)] = raw[pd.isna(stamps)]  # keep unparseable values so validation can show them
    return out


def check_rows(frame: pd.DataFrame, source: str, options: IngestOptions = IngestOptions()) -> ValidationReport:
    """The validation rules applied to incoming rows (before anything is written), plus the ingest-only
    ones: symbol spelling and the plausibility bounds of `options`."""
    report = ValidationReport(source=source)
    report.issues += rules.symbol_issues(frame, "series")
    report.issues += rules.plausibility_issues(frame, options.max_price, options.max_volume, "series")
    frame["timestamp"], time_issues = rules.parse_timestamp_column(frame["timestamp_raw"], "series", frame["row"],
                                                                     frame.get("line"))
    report.issues += time_issues
    report.issues += rules.missing_value_issues(frame, ["symbol", "timestamp_raw", *OHLCV_COLUMNS], "series")
    report.issues += rules.duplicate_issues(frame, ["symbol", "timestamp"], "series")
    report.issues += rules.candle_value_issues(frame, "series")
    valid = frame[frame["timestamp"].notna()]
    report.issues += rules.jump_issues(valid, 0.4, "series")
    return report


# --------------------------------------------------------------------------------------------
# writing
# --------------------------------------------------------------------------------------------
def _encode_times(stamps: pd.Series, encoding_kind: str) -> list:
    if encoding_kind == "epoch_s":
        return (pd.DatetimeIndex(stamps).asi8 // 10**9).tolist()
    if encoding_kind == "epoch_ms":
        return (pd.DatetimeIndex(stamps).asi8 // 10**6).tolist()
    codes, uniques = pd.factorize(pd.DatetimeIndex(stamps))  # one strftime per distinct time
    return np.asarray(uniques.strftime(TIMESTAMP_FORMAT), dtype=object)[codes].tolist()


def _last_stored(connection: sqlite3.Connection, encoding_kind: str) -> dict[str, pd.Timestamp]:
    rows = connection.execute("SELECT symbol, max(timestamp) FROM series GROUP BY symbol").fetchall()
    out = {}
    for symbol, value in rows:
        if encoding_kind == "epoch_s":
            out[symbol] = pd.Timestamp(int(value), unit="s", tz="UTC")
        elif encoding_kind == "epoch_ms":
            out[symbol] = pd.Timestamp(int(value), unit="ms", tz="UTC")
        else:
            out[symbol] = pd.Timestamp(value).tz_convert("UTC") if pd.Timestamp(value).tzinfo else pd.Timestamp(value, tz="UTC")
    return out


def prepare_rows(frame: pd.DataFrame, options: IngestOptions, source: str) -> pd.DataFrame:
    """Map, localise and check a source frame; raise with the report if any row breaks a rule."""
    rows = to_contract(frame, options, source)
    rows["timestamp_raw"] = _localise(pd.Series(rows["timestamp_raw"]), options.timezone)
    report = check_rows(rows, source, options)
    report.raise_for_errors(f"ingest rejected {source}; nothing was written.")
    for issue in report.warnings:  # accepted, but the user hears about every one
        example = f"; e.g. {issue.examples[0]}" if issue.examples else ""
        log.warning("%s: %s [%s] x%d: %s%s", source, issue.table + (f".{issue.column}" if issue.column else ""),
                    issue.rule, issue.count, issue.message, example)
    return rows


def _begin_writing(connection: sqlite3.Connection, db_path: Path, busy_timeout_s: float) -> None:
    """BEGIN IMMEDIATE (the write lock) at once, or, while another process writes, after saying so and waiting
    up to `busy_timeout_s`; still locked then: `DatabaseUnreadableError` (exit 2), nothing written."""
    try:
        connection.execute("BEGIN IMMEDIATE")
        return
    except sqlite3.OperationalError as error:
        if not _is_busy(error):
            raise DatabaseUnreadableError(f"{db_path}: cannot start writing ({error}); check the file and "
                                          "its directory are writable") from None
    log.warning("%s is being written by another process; waiting up to %g s (--busy-timeout)", db_path,
                busy_timeout_s)
    connection.execute(f"PRAGMA busy_timeout = {int(busy_timeout_s * 1000)}")
    try:
        connection.execute("BEGIN IMMEDIATE")
    except sqlite3.OperationalError as error:
        if not _is_busy(error):
            raise
        raise DatabaseUnreadableError(f"{db_path}: the database is being written by another process (still locked "
                                      f"after {busy_timeout_s:g} s); retry when it has finished, or raise "
                                      "--busy-timeout; nothing was written") from None


def _is_busy(error: sqlite3.OperationalError) -> bool:
    return "locked" in str(error) or "busy" in str(error)


def _prepare_for_writing(connection: sqlite3.Connection, db_path: Path, with_indicators: bool, migrate: bool) -> None:
    """What a seed-style file needs before the upserts (data/migrate.py): done here when `migrate`
    (the file was validated first), else refused with the command that does it."""
    steps = [s for s in plan_migration(connection) if with_indicators or s.table != "indicators"]
    if not steps:
        return
    if migrate:
        apply_migration(connection, steps, db_path)
        log.info("migrated %s: %s", db_path, "; ".join(s.description for s in steps))
        return
    raise PlusUltraError(
        f"{db_path} is a seed-style database that ingest cannot write as it is: "
        f"{'; '.join(s.description for s in steps)} is needed; run `plus-ultra migrate {db_path} --write` "
        "(it validates the file first), or ingest with --migrate to do it in the same transaction; nothing was written")


def write_rows(db_path: str | Path, batches: Sequence[tuple[str, pd.DataFrame]], append_only: bool,
               busy_timeout_s: float = 30.0, migrate: bool = False) -> list[IngestResult]:
    """Upsert checked batches in ONE transaction: all of them are written, or none."""
    db_path = Path(db_path)
    created = not db_path.exists()
    if not created:
        check_database_file(db_path)
        if migrate:  # only a file that passes validation is migrated
            validate_database(db_path).raise_for_errors(
                f"{db_path} is not migrated: fix these validation errors first; nothing was written.")
    connection = sqlite3.connect(db_path, timeout=0.0, isolation_level=None)
    results = []
    try:
        _begin_writing(connection, db_path, busy_timeout_s)
        create_schema(connection)
        _prepare_for_writing(connection, db_path, any(c.startswith("indicator:") for _, rows in batches
                                                      for c in rows.columns), migrate)
        has_rows = connection.execute("SELECT 1 FROM series LIMIT 1").fetchone() is not None
        encoding = detect_timestamp_encoding(connection, "series").kind if has_rows else "iso_canonical"
        last = _last_stored(connection, encoding) if append_only and has_rows else {}
        for source, rows in batches:
            skipped = 0
            if last:
                floor = pd.Timestamp.min.tz_localize("UTC")
                cutoff = pd.DatetimeIndex(rows["symbol"].astype(str).map(lambda s: last.get(s, floor)))
                newer = (pd.DatetimeIndex(rows["timestamp"]) > cutoff)
                skipped = int((~newer).sum())
                rows = rows[np.asarray(newer)]
            results.append(_upsert(connection, rows, encoding, skipped))
            log.info("ingested %s into %s: %s", source, db_path, results[-1])
        connection.execute("COMMIT")
    except BaseException as error:
        if connection.in_transaction:
            connection.execute("ROLLBACK")
        connection.close()
        if created:
            db_path.unlink(missing_ok=True)  # a failed first ingest leaves no empty database behind
        if isinstance(error, sqlite3.Error):
            raise DatabaseUnreadableError(f"{db_path}: writing failed ({error}); nothing was written, check the "
                                          "file with `plus-ultra validate` and its disk space") from None
        raise
    finally:
        connection.close()
    return results


def ingest_frame(db_path: str | Path, frame: pd.DataFrame, options: IngestOptions = IngestOptions(),
                 source: str = "frame") -> IngestResult:
    """Validate `frame` and upsert it into the database at `db_path` (created if absent)."""
    return write_rows(db_path, [(source, prepare_rows(frame, options, source))], options.append_only,
                      options.busy_timeout_s, options.migrate)[0]


def _upsert(connection: sqlite3.Connection, rows: pd.DataFrame, encoding: str, skipped: int) -> IngestResult:
    before_assets = {s for (s,) in connection.execute("SELECT symbol FROM assets")}
    symbols = sorted(set(rows["symbol"].astype(str)))
    connection.executemany("INSERT OR IGNORE INTO assets(symbol) VALUES (?)", [(s,) for s in symbols])
    value_columns = [*OHLCV_COLUMNS, *(c for c in OPTIONAL_SERIES_COLUMNS if c in rows)]
    times = _encode_times(rows["timestamp"], encoding)
    payload = list(zip(times, rows["symbol"].astype(str), *(rows[c].astype(float).tolist() for c in value_columns), strict=True))
    columns = ", ".join(["timestamp", "symbol", *value_columns])
    updates = ", ".join(f"{c} = excluded.{c}" for c in value_columns)
    differs = " OR ".join(f"series.{c} IS NOT excluded.{c}" for c in value_columns)
    existing = _count_existing(connection, times, rows["symbol"].astype(str).tolist())
    changes_before = connection.total_changes
    connection.executemany(
        f"INSERT INTO series({columns}) VALUES ({', '.join('?' for _ in range(len(value_columns) + 2))}) "
        f"ON CONFLICT(timestamp, symbol) DO UPDATE SET {updates} WHERE {differs}",
        payload,
    )
    changed = connection.total_changes - changes_before
    inserted = len(payload) - existing
    if CLOSE_ONLY in rows:
        _record_close_only(connection, rows)
    indicator_rows = 0
    for column in [c for c in rows.columns if c.startswith("indicator:")]:
        name = column.split(":", 1)[1]
        keep = rows[column].notna().to_numpy()
        data = list(zip(np.asarray(times, dtype=object)[keep].tolist(), rows["symbol"].astype(str)[keep], [name] * int(keep.sum()),
                        rows.loc[keep, column].tolist(), strict=True))
        connection.executemany(
            "INSERT INTO indicators(timestamp, symbol, name, value) VALUES (?, ?, ?, ?) "
            "ON CONFLICT(timestamp, symbol, name) DO UPDATE SET value = excluded.value WHERE indicators.value IS NOT excluded.value",
            data,
        )
        indicator_rows += len(data)
    return IngestResult(
        inserted=inserted,
        updated=changed - inserted,
        unchanged=existing - (changed - inserted),
        skipped_not_newer=skipped,
        symbols_added=tuple(s for s in symbols if s not in before_assets),
        indicator_rows=indicator_rows,
    )


def _record_close_only(connection: sqlite3.Connection, rows: pd.DataFrame) -> None:
    """assets.metadata of each close-only symbol gets {"close_only": true, "volume": <had a volume column>}."""
    flags = rows.groupby(rows["symbol"].astype(str))[VOLUME_KNOWN].all()
    for symbol, volume_known in flags.items():
        (raw,) = connection.execute("SELECT metadata FROM assets WHERE symbol = ?", (symbol,)).fetchone()
        try:
            metadata = json.loads(raw) if raw else {}
        except ValueError:
            raise PlusUltraError(f"table assets, column metadata, symbol {symbol}: {raw!r} is not JSON; store a JSON "
                                 "object (or NULL) before ingesting it with --close-only") from None
        metadata.update({CLOSE_ONLY_KEY: True, "volume": bool(volume_known)})
        connection.execute("UPDATE assets SET metadata = ? WHERE symbol = ?", (json.dumps(metadata, sort_keys=True), symbol))


def _count_existing(connection: sqlite3.Connection, times: list, symbols: list[str]) -> int:
    """How many (timestamp, symbol) keys of the batch are already stored (one indexed probe each)."""
    connection.execute("CREATE TEMP TABLE IF NOT EXISTS _incoming(timestamp, symbol)")
    connection.execute("DELETE FROM _incoming")
    connection.executemany("INSERT INTO _incoming VALUES (?, ?)", list(zip(times, symbols, strict=True)))
    (count,) = connection.execute(
        "SELECT count(*) FROM _incoming i JOIN series s ON s.timestamp = i.timestamp AND s.symbol = i.symbol"
    ).fetchone()
    return int(count)


def ingest_files(db_path: str | Path, paths: Sequence[str | Path], options: IngestOptions = IngestOptions()) -> list[IngestResult]:
    """Ingest several files in one transaction; every file is checked before anything is written.

    A file without a symbol column takes `options.symbol`, or else its upper-cased file stem.
    """
    batches = []
    for path in paths:
        frame = read_source(path)
        has_symbol = any(KNOWN_HEADERS.get(_normalise_header(c)) == "symbol" or options.column_map.get(c) == "symbol"
                         for c in frame.columns)
        per_file = options
        if options.symbol is None and not has_symbol:
            stem = source_stem(path)
            if stem.upper() != stem:
                log.warning("%s: symbol %s from the file name %r, upper-cased; pass --symbol to keep another "
                            "spelling", path, stem.upper(), stem)
            per_file = replace(options, symbol=stem.upper())
        batches.append((str(path), prepare_rows(frame, per_file, str(path))))
    _refuse_conflicting_files(batches)
    return write_rows(db_path, batches, options.append_only, options.busy_timeout_s, options.migrate)


def source_stem(path: str | Path) -> str:
    """The file name without its type: BRK.B.csv -> BRK.B, spy.csv.gz -> spy."""
    name = Path(path).name
    return Path(name[:-3] if name.lower().endswith(".gz") else name).stem


def _refuse_conflicting_files(batches: Sequence[tuple[str, pd.DataFrame]]) -> None:
    """The same (symbol, timestamp) in two files of one batch with different values: which one is right is
    the user's call, so nothing is written (equal values are the same candle twice, and fine)."""
    if len(batches) < 2:
        return
    value_columns = [c for c in (*OHLCV_COLUMNS, *OPTIONAL_SERIES_COLUMNS) if all(c in rows for _, rows in batches)]
    keyed = pd.concat([rows[["symbol", "timestamp", "row", *value_columns]].assign(source=source)
                       for source, rows in batches], ignore_index=True)
    keyed["symbol"] = keyed["symbol"].astype(str)
    key = ["symbol", "timestamp"]
    shared = keyed[keyed.duplicated(key, keep=False)]  # across files: check_rows refused repeats within one
    differs = shared.groupby(key, sort=True)[value_columns].nunique(dropna=False).gt(1)  # (keys, columns)
    conflicting = differs.index[differs.any(axis=1)]
    if conflicting.empty:
        return
    first, second = shared.set_index(key).loc[[conflicting[0]]].iloc[:2].reset_index().itertuples(index=False)
    columns = [c for c in value_columns if differs.loc[conflicting[0], c]]
    raise PlusUltraError(
        f"{first.source} row {first.row} and {second.source} row {second.row} both hold {first.symbol} at "
        f"{pd.Timestamp(first.timestamp).isoformat()} with different {columns} "
        f"({[getattr(first, c) for c in columns]} vs {[getattr(second, c) for c in columns]}); keep the candle in one "
        "file (or ingest the files one at a time, the later one updating), nothing was written")
