"""Validation rules over candle frames, shared by `validate` (a database) and `ingest` (new rows).

Each rule is vectorised over the whole frame and returns at most one `Issue`: the table, column,
rule name, severity, how many rows break it, the first offending rows, and what to do about it.
A rule never repairs data.

The frame a rule sees has columns ``row`` (rowid in the database, or line number in a file),
``symbol``, ``timestamp`` (parsed, UTC; NaT where unparseable) and the OHLCV columns as floats
(NaN where the stored value was missing or not a number; those are reported by other rules).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Literal

import numpy as np
import pandas as pd

from plus_ultra_ml.data.calendar import TradingCalendar, bar_spacing, is_daily, panel_calendars
from plus_ultra_ml.data.gaps import find_gaps
from plus_ultra_ml.data.schema import OHLCV_COLUMNS, PRICE_COLUMNS

Severity = Literal["error", "warning"]
MAX_EXAMPLES = 5
TIME_OFFSET = re.compile(r"(Z|[+-]\d{2}:?\d{2})$")
EPOCH_NS_LIMIT = 9.2e18  # |nanoseconds since 1970| a datetime64[ns] holds (int64 max is 9.22e18)


@dataclass(frozen=True)
class Issue:
    """One broken rule: where, how often, examples, and the fix."""

    table: str
    column: str | None
    rule: str
    severity: Severity
    count: int
    message: str
    examples: list[dict] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def _jsonable(value):
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return None if np.isnan(value) else float(value)
    if value is pd.NaT:
        return None
    return value


def examples_of(frame: pd.DataFrame, mask: np.ndarray, columns: list[str]) -> list[dict]:
    """The first offending rows; a source file's `line` (CSV ingest) follows its `row` wherever shown."""
    if "row" in columns and "line" in frame and "line" not in columns:
        columns = [*columns[:columns.index("row") + 1], "line", *columns[columns.index("row") + 1:]]
    rows = frame.loc[np.asarray(mask), [c for c in columns if c in frame]].head(MAX_EXAMPLES)
    return [{k: _jsonable(v) for k, v in record.items()} for record in rows.to_dict("records")]


def issue_if(
    frame: pd.DataFrame,
    mask: np.ndarray,
    *,
    table: str,
    column: str | None,
    rule: str,
    severity: Severity,
    message: str,
    show: list[str],
) -> list[Issue]:
    count = int(np.count_nonzero(mask))
    if count == 0:
        return []
    return [Issue(table, column, rule, severity, count, message, examples_of(frame, mask, show))]


# --------------------------------------------------------------------------------------------
# timestamps
# --------------------------------------------------------------------------------------------
def utc_offsets(text: pd.Series) -> pd.Series:
    """The UTC offset each time text ends with, in one notation (Z and +00:00 -> +0000); NA when naive."""
    return text.str.extract(TIME_OFFSET, expand=False).str.replace(":", "").replace("Z", "+0000")


def _classify_times(unique: pd.Series) -> tuple[pd.Series, np.ndarray, np.ndarray, pd.Series]:
    """For distinct stored times: parsed UTC value, is-number, has-offset, and the offset text."""
    text = unique.astype("string").str.strip()
    is_number = text.str.fullmatch(r"-?\d+(\.\d+)?").fillna(False).to_numpy(dtype=bool)
    parsed = pd.Series(pd.NaT, index=unique.index, dtype="datetime64[ns, UTC]")
    if is_number.any():
        numbers = text[is_number].astype(float).to_numpy()  # as float: a 21-digit number overflows int64 parsing
        nanos = numbers * np.where(np.abs(numbers) > 1e11, 1e6, 1e9)  # ms -> ns, s -> ns
        representable = np.abs(nanos) < EPOCH_NS_LIMIT  # beyond: no datetime64[ns] (years 1677-2262); stays NaT
        where = np.flatnonzero(is_number)[representable]
        parsed.iloc[where] = pd.to_datetime(nanos[representable].astype(np.int64), utc=True)
    is_text = unique.notna().to_numpy() & ~is_number
    offsets = pd.Series(pd.NA, index=unique.index, dtype="string")
    if is_text.any():
        parsed[is_text] = pd.to_datetime(text[is_text], format="ISO8601", utc=True, errors="coerce")
        offsets[is_text] = utc_offsets(text[is_text])
    return parsed, is_number, offsets.notna().to_numpy(), offsets


def parse_timestamp_column(raw: pd.Series, table: str, row: pd.Series,
                           line: pd.Series | None = None) -> tuple[pd.Series, list[Issue]]:
    """Parse stored times (ISO text or epoch numbers) to UTC, reporting what cannot be trusted.

    Naive ISO text is UTC by contract. Mixing naive and offset-bearing text, or text and numbers,
    in one column is an error: the two halves may not mean the same clock. Epoch numbers above
    1e11 are milliseconds, otherwise seconds. Work is done once per distinct value.
    """
    frame = pd.DataFrame({"row": row, "timestamp": raw, **({} if line is None else {"line": line})})
    codes, uniques = pd.factorize(raw, use_na_sentinel=True)
    unique = pd.Series(uniques, dtype=object)
    parsed_u, number_u, offset_u, offset_text = _classify_times(unique)
    present = codes >= 0
    take = np.where(present, codes, 0)

    def per_row(values: np.ndarray) -> np.ndarray:
        return present & values[take] if len(values) else np.zeros(len(raw), dtype=bool)

    parsed = pd.Series(pd.DatetimeIndex(parsed_u).take(take), index=raw.index)
    parsed[~present] = pd.NaT
    is_number = per_row(number_u)
    is_text = present & ~is_number
    has_offset = per_row(offset_u)
    issues: list[Issue] = []
    naive = is_text & ~has_offset & parsed.notna().to_numpy()
    if has_offset.any() and naive.any():
        issues.append(Issue(
            table, "timestamp", "mixed_timezones", "error", int(naive.sum()),
            f"table {table}: {int(has_offset.sum())} timestamps carry a UTC offset and {int(naive.sum())} do "
            "not, so they may not mean the same clock; write every time in UTC in one notation "
            "(e.g. 2024-01-02T09:30:00Z)",
            examples_of(frame, naive, ["row", "timestamp"]),
        ))
    elif has_offset.any() and offset_text[offset_u].nunique() > 1:
        distinct = sorted(offset_text[offset_u].unique())
        issues.append(Issue(
            table, "timestamp", "mixed_timezones", "warning", len(distinct),
            f"table {table}: timestamps use {len(distinct)} different UTC offsets ({distinct[:4]}); "
            "they were converted to UTC, but check the source",
        ))
    if is_number.any() and is_text.any():
        issues.append(Issue(
            table, "timestamp", "mixed_timestamp_formats", "error", int(is_number.sum()),
            f"table {table}: column timestamp mixes epoch numbers ({int(is_number.sum())} rows) with text "
            f"({int(is_text.sum())} rows); store one encoding (ISO text in UTC is preferred)",
            examples_of(frame, is_number, ["row", "timestamp"]),
        ))
    issues += issue_if(
        frame, is_number & parsed.isna().to_numpy(), table=table, column="timestamp",
        rule="epoch_out_of_range", severity="error",
        message=f"table {table}: epoch numbers that are neither seconds nor milliseconds since 1970 within years "
                "1677-2262 (e.g. 1e20); store seconds or milliseconds since 1970-01-01 UTC, or ISO text",
        show=["row", "timestamp"],
    )
    issues += issue_if(
        frame, (parsed.isna() & raw.notna()).to_numpy() & ~is_number, table=table, column="timestamp",
        rule="unparseable_timestamp", severity="error",
        message=f"table {table}: timestamps that are neither ISO-8601 text nor epoch numbers; fix or delete these rows",
        show=["row", "timestamp"],
    )
    return parsed, issues


# --------------------------------------------------------------------------------------------
# candle rules
# --------------------------------------------------------------------------------------------
def candle_value_issues(frame: pd.DataFrame, table: str = "series") -> list[Issue]:
    """Non-finite, non-positive, OHLC geometry and negative volume."""
    issues: list[Issue] = []
    show = ["row", "symbol", "timestamp"]
    for column in OHLCV_COLUMNS:
        values = frame[column].to_numpy(dtype=float)
        issues += issue_if(
            frame, np.isinf(values), table=table, column=column, rule="non_finite", severity="error",
            message=f"table {table}: column {column} holds +/-inf; replace it with the true value or drop the row",
            show=[*show, column],
        )
    for column in PRICE_COLUMNS:
        values = frame[column].to_numpy(dtype=float)
        issues += issue_if(
            frame, values <= 0, table=table, column=column, rule="non_positive_price", severity="error",
            message=f"table {table}: column {column} must be > 0 (prices, not returns or changes)",
            show=[*show, column],
        )
    o, h, l, c = (frame[k].to_numpy(dtype=float) for k in PRICE_COLUMNS)
    geometry = [*show, "open", "high", "low", "close"]
    with np.errstate(invalid="ignore"):
        issues += issue_if(
            frame, h < np.maximum(o, c), table=table, column="high", rule="high_below_open_close", severity="error",
            message=f"table {table}: high < max(open, close); the high must be the bar's maximum "
            "(columns swapped or mis-mapped?)",
            show=geometry,
        )
        issues += issue_if(
            frame, l > np.minimum(o, c), table=table, column="low", rule="low_above_open_close", severity="error",
            message=f"table {table}: low > min(open, close); the low must be the bar's minimum",
            show=geometry,
        )
        issues += issue_if(
            frame, h < l, table=table, column="high", rule="high_below_low", severity="error",
            message=f"table {table}: high < low; check the column mapping", show=geometry,
        )
        issues += issue_if(
            frame, frame["volume"].to_numpy(dtype=float) < 0, table=table, column="volume", rule="negative_volume",
            severity="error", message=f"table {table}: volume must be >= 0", show=[*show, "volume"],
        )
    return issues


def missing_value_issues(frame: pd.DataFrame, columns: list[str], table: str) -> list[Issue]:
    issues: list[Issue] = []
    for column in columns:
        issues += issue_if(
            frame, frame[column].isna().to_numpy(), table=table, column=column, rule="null", severity="error",
            message=f"table {table}: column {column} is empty (NULL/NaN) in these rows; fill it from the "
            "source or drop the rows (Plus Ultra never guesses prices)",
            show=["row", "symbol", "timestamp"],
        )
    return issues


def duplicate_issues(frame: pd.DataFrame, keys: list[str], table: str) -> list[Issue]:
    mask = frame.duplicated(keys, keep=False).to_numpy() & frame[keys].notna().all(axis=1).to_numpy()
    return issue_if(
        frame, mask, table=table, column=None, rule="duplicate_key", severity="error",
        message=f"table {table}: several rows share ({', '.join(keys)}); keep exactly one row per key",
        show=["row", *keys],
    )


def time_order_issues(frame: pd.DataFrame, table: str) -> list[Issue]:
    """Within a symbol, rows stored out of time order (warning: the loader sorts)."""
    ordered = frame.sort_values("row", kind="stable")
    ns = ordered["timestamp"].to_numpy(dtype="datetime64[ns]").astype(np.int64)
    same = ordered["symbol"].to_numpy()[1:] == ordered["symbol"].to_numpy()[:-1]
    back = np.zeros(len(ordered), dtype=bool)
    back[1:] = same & (np.diff(ns) < 0) & ordered["timestamp"].notna().to_numpy()[1:]
    return issue_if(
        ordered, back, table=table, column="timestamp", rule="unsorted_time", severity="warning",
        message=f"table {table}: rows of a symbol are stored with time going backwards; loading sorts "
        "them, but check the source is not reversed or interleaved",
        show=["row", "symbol", "timestamp"],
    )


def jump_issues(frame: pd.DataFrame, threshold: float, table: str) -> list[Issue]:
    """|log close-to-close| above `threshold`: often an unadjusted split."""
    ordered = frame.sort_values(["symbol", "timestamp"], kind="stable")
    close = ordered["close"].to_numpy(dtype=float)
    same = ordered["symbol"].to_numpy()[1:] == ordered["symbol"].to_numpy()[:-1]
    jump = np.zeros(len(ordered), dtype=bool)
    with np.errstate(divide="ignore", invalid="ignore"):
        jump[1:] = same & (np.abs(np.log(close[1:] / close[:-1])) > threshold)
    return issue_if(
        ordered, jump, table=table, column="close", rule="suspicious_jump", severity="warning",
        message=f"table {table}: close-to-close moves larger than exp({threshold})-1 in one bar; an unadjusted "
        "split or a bad tick? adjust the prices (plus-ultra ingest --adjust-column) or confirm the move",
        show=["row", "symbol", "timestamp", "close"],
    )


def frequency_issues(frame: pd.DataFrame, freq: str | None, table: str,
                     calendars: Mapping[str, TradingCalendar] | None = None) -> list[Issue]:
    """Bars off the expected grid, bars on closed sessions, and missing open sessions (warnings).

    `calendars` maps symbol -> trading calendar (`data.calendar.resolve_calendars`); a symbol not in
    it has its calendar inferred from its timestamps (logged).
    """
    valid = frame[frame["timestamp"].notna()]
    if valid["timestamp"].nunique() < 2:
        return []
    spacing = pd.Timedelta(freq) if freq else bar_spacing(valid["timestamp"])
    ordered = valid.sort_values(["symbol", "timestamp"])
    ns = ordered["timestamp"].to_numpy(dtype="datetime64[ns]").astype(np.int64)
    phase = (ns - ns.min()) % spacing.value
    issues = issue_if(
        ordered, phase != 0, table=table, column="timestamp", rule="off_frequency", severity="warning",
        message=f"table {table}: bars not on the {spacing} grid; resample the source to one bar size",
        show=["row", "symbol", "timestamp"],
    )
    index = pd.MultiIndex.from_arrays([pd.Categorical(ordered["symbol"]), pd.DatetimeIndex(ordered["timestamp"])],
                                      names=["symbol", "timestamp"])
    skeleton = pd.DataFrame(index=index)
    known = dict(calendars or {})
    codes, names = pd.factorize(np.asarray(ordered["symbol"], dtype=object))  # (n,) symbol codes
    unresolved = np.array([name not in known for name in names], dtype=bool)[codes]  # (n,): hashing, not isin
    per_symbol = {**(panel_calendars(skeleton[unresolved]) if unresolved.any() else {}), **known}
    closed = np.zeros(len(ordered), dtype=bool)
    by_calendar: dict[int, list[int]] = {}  # one pass per calendar, not per symbol: linear in the universe
    for k, name in enumerate(names):
        by_calendar.setdefault(id(per_symbol[name]), []).append(k)
    all_times = index.get_level_values("timestamp")
    for members in by_calendar.values():
        cal = per_symbol[names[members[0]]]
        rows = np.isin(codes, members)
        times = all_times[rows]
        if is_daily(spacing):
            closed[rows] = ~times.tz_localize(None).normalize().isin(cal.schedule.index)
        else:
            closed[rows] = ~cal.is_open(times)
    issues += issue_if(
        ordered, closed, table=table, column="timestamp", rule="closed_session", severity="warning",
        message=f"table {table}: bars on sessions the symbol's trading calendar has closed; check assets.exchange "
        "/ data.calendar, or the source's time zone (daily bars are stamped at the session date, 00:00 UTC)",
        show=["row", "symbol", "timestamp"],
    )
    gaps = find_gaps(skeleton, spacing, per_symbol)
    if len(gaps):
        names = sorted({per_symbol[s].name for s in gaps["symbol"]})
        issues.append(
            Issue(table, "timestamp", "gap", "warning", int(len(gaps)),
                  f"table {table}: {len(gaps)} gaps ({int(gaps['missing_bars'].sum())} open bars missing on "
                  f"calendar {', '.join(names)}, longest {int(gaps['missing_bars'].max())}); they are "
                  "forward-filled only up to data.ffill_limit bars and never back-filled; if the market was "
                  "in fact closed, set assets.exchange or data.calendar to its calendar",
                  [{k: _jsonable(v) for k, v in r.items()} for r in gaps.head(MAX_EXAMPLES).to_dict("records")])
        )
    return issues


# --------------------------------------------------------------------------------------------
# incoming rows only (ingest): plausibility and symbol spelling
# --------------------------------------------------------------------------------------------
# A symbol: a letter, digit or ^ first, then letters, digits and . _ - / = : ^ + (BRK.B, BRK-B, ^GSPC,
# EURUSD=X, BTC/USDT, ES=F, GOOG_bt), at most 32 characters. Spaces, quotes, ; , ( ) and control
# characters never belong to one.
SYMBOL_PATTERN = r"[A-Za-z0-9^][A-Za-z0-9._\-/=:^+]{0,31}"


def symbol_issues(frame: pd.DataFrame, table: str = "series") -> list[Issue]:
    """Symbols outside SYMBOL_PATTERN (what a ticker is spelled with)."""
    codes, uniques = pd.factorize(frame["symbol"].astype("string"), use_na_sentinel=True)  # once per symbol
    wrong = ~pd.Series(uniques, dtype="string").str.fullmatch(SYMBOL_PATTERN).fillna(True).to_numpy(dtype=bool)
    bad = (codes >= 0) & wrong[np.maximum(codes, 0)] if len(uniques) else np.zeros(len(frame), dtype=bool)
    return issue_if(
        frame, bad, table=table, column="symbol", rule="symbol_characters", severity="error",
        message=f"table {table}: symbols may hold letters, digits and . _ - / = : ^ + (at most 32, starting with "
                "a letter, digit or ^); fix the symbol column or pass --symbol",
        show=["row", "symbol"],
    )


def plausibility_issues(frame: pd.DataFrame, max_price: float, max_volume: float, table: str = "series") -> list[Issue]:
    """Prices above `max_price` or volumes above `max_volume`: a unit or parsing error, not a market."""
    issues: list[Issue] = []
    for columns, bound, what in ((PRICE_COLUMNS, max_price, "--max-price"), (("volume",), max_volume, "--max-volume")):
        for column in columns:
            values = frame[column].to_numpy(dtype=float)
            with np.errstate(invalid="ignore"):
                issues += issue_if(
                    frame, np.isfinite(values) & (values > bound), table=table, column=column,
                    rule="implausible_value", severity="error",
                    message=f"table {table}: column {column} above {bound:g} is not a plausible market value (a unit "
                            f"or parsing error?); fix the source, or raise {what} if such values are real",
                    show=["row", "symbol", "timestamp", column],
                )
    return issues

