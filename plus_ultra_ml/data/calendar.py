"""Trading calendars: which sessions are open, and the annualisation that follows from them.

A symbol's calendar is resolved once, before anything is fitted, in this order:

1. ``assets.exchange`` when it is set (an exchange code such as ``XNYS``, ``NYSE``, ``NASDAQ``),
2. else ``data.calendar`` in the config (``XNYS``, ``24/7``, ``FX``, any `exchange_calendars` name),
3. else it is inferred from the timestamps, with a log line naming what was inferred and how to pin it.

Exchange calendars come from the maintained `exchange_calendars` library (holidays and early closes
are computed in code, nothing is downloaded at run time). ``FX`` is built in: a session runs from
17:00 New York on the previous day to 17:00 New York, Monday to Friday (so the week opens Sunday
17:00 and closes Friday 17:00 New York), with no holidays.

Annualisation is a property of the calendar, never of the panel being scored: bars per year are
the bars the calendar opens over a fixed 28-year reference window (1996-2023, a whole leap-year and
weekday cycle), so 24/7 15-minute bars give 365.25 * 96 = 35,064 and XNYS daily bars about 252.
Every room that annualises (realised volatility, Sharpe, CAGR) calls `periods_per_year`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import pandas as pd

from plus_ultra_ml.errors import DataContractError

log = logging.getLogger(__name__)

SECONDS_PER_YEAR = 365.25 * 24 * 3600
DAY = pd.Timedelta("1D")
CALENDAR_ATTR = "calendars"  # panel.attrs key: {symbol: calendar name}, set by data.panel.build_panel
SCHEDULE_START, SCHEDULE_END = "1990-01-01", "2035-12-31"  # the sessions every calendar is built over
REFERENCE_START, REFERENCE_END = "1996-01-01", "2023-12-31"  # 28 years: the annualisation window
REFERENCE_YEARS = 28.0
# exchange codes seen in `assets.exchange` that `exchange_calendars` lacks or maps elsewhere (it aliases
# NASDAQ to XNYS; the Nasdaq has its own calendar, XNAS). Matched case-insensitively.
ALIASES = {"24/7": "24/7", "CRYPTO": "24/7", "24/5": "24/5", "FX": "FX", "FOREX": "FX",
           "NYSEARCA": "ARCX", "NYSE ARCA": "ARCX", "ARCA": "ARCX", "AMEX": "XASE", "NYSE AMERICAN": "XASE",
           "NASDAQ": "XNAS", "NASDAQGS": "XNAS", "NASDAQGM": "XNAS", "NASDAQCM": "XNAS", "NMS": "XNAS", "NYQ": "XNYS"}


def _as_utc_index(timestamps) -> pd.DatetimeIndex:
    index = pd.DatetimeIndex(timestamps)
    return index.tz_localize("UTC") if index.tz is None else index.tz_convert("UTC")


def bar_spacing(timestamps) -> pd.Timedelta:
    """The most common positive gap between consecutive timestamps (the nominal bar size)."""
    index = _as_utc_index(timestamps).unique().sort_values()
    if len(index) < 2:
        raise ValueError("need at least two distinct timestamps to infer the bar spacing")
    gaps = np.diff(index.asi8)
    values, counts = np.unique(gaps[gaps > 0], return_counts=True)
    return pd.Timedelta(int(values[np.argmax(counts)]), unit="ns")


def is_daily(spacing: pd.Timedelta) -> bool:
    """Daily (or longer) bars: one bar per session, stamped at the session date's 00:00 UTC."""
    return spacing >= DAY


# --------------------------------------------------------------------------------------------
# calendars
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class TradingCalendar:
    """A named schedule: one row per session (its date) with open/close (and break) times in UTC."""

    name: str
    schedule: pd.DataFrame  # index: session dates (naive midnight); open, close, break_start, break_end (UTC)

    def sessions(self, start: pd.Timestamp, end: pd.Timestamp) -> pd.DatetimeIndex:
        """Session dates (naive, midnight) from start's date to end's date, inclusive."""
        dates = self.schedule.index
        self._check_range(start, end)
        return dates[(dates >= _naive_date(start)) & (dates <= _naive_date(end))]

    def is_open(self, times) -> np.ndarray:
        """For each UTC time: is the market open at that instant (open <= t < close, outside a break)?"""
        ns = _as_utc_index(times).asi8
        opens = self.schedule["open"].to_numpy(dtype="datetime64[ns]").astype(np.int64)
        closes = self.schedule["close"].to_numpy(dtype="datetime64[ns]").astype(np.int64)
        i = np.searchsorted(opens, ns, side="right") - 1
        ok = i >= 0
        j = np.where(ok, i, 0)
        ok &= ns < closes[j]
        if self.schedule["break_start"].notna().any():
            b0 = self.schedule["break_start"].to_numpy(dtype="datetime64[ns]").astype(np.int64)
            b1 = self.schedule["break_end"].to_numpy(dtype="datetime64[ns]").astype(np.int64)
            has = ~np.isnat(self.schedule["break_start"].to_numpy(dtype="datetime64[ns]"))
            ok &= ~(has[j] & (ns >= b0[j]) & (ns < b1[j]))
        return ok

    def expected_bars(self, first: pd.Timestamp, last: pd.Timestamp, spacing: pd.Timedelta) -> pd.DatetimeIndex:
        """The bars an open market should have produced from `first` to `last` (both UTC, inclusive).

        Daily: one bar per session, at the time of day of `first` (00:00 UTC by convention).
        Intraday: the grid first + k * spacing, kept where the market is open.
        """
        first, last = _as_utc_index([first])[0], _as_utc_index([last])[0]
        if is_daily(spacing):
            time_of_day = first - first.normalize()
            return pd.DatetimeIndex(self.sessions(first, last)).tz_localize("UTC") + time_of_day
        self._check_range(first, last)
        grid = pd.date_range(first, last, freq=spacing)
        return grid[self.is_open(grid)]

    @property
    def periods_per_year(self) -> float:
        return self.bars_per_year(DAY)

    def bars_per_year(self, spacing: pd.Timedelta) -> float:
        """Bars per year of this calendar at `spacing`, over the fixed reference window (never the data)."""
        return _bars_per_year(self.name, int(pd.Timedelta(spacing).value))

    def _check_range(self, start: pd.Timestamp, end: pd.Timestamp) -> None:
        dates = self.schedule.index
        if _naive_date(start) < dates[0] or _naive_date(end) > dates[-1]:
            raise DataContractError(
                f"calendar {self.name} covers {dates[0].date()} to {dates[-1].date()}, the data runs "
                f"{start} to {end}; set data.calendar to a calendar that covers it (e.g. 24/7)"
            )

    def __repr__(self) -> str:
        return f"TradingCalendar({self.name!r})"


def _naive_date(value) -> pd.Timestamp:
    stamp = pd.Timestamp(value)
    return (stamp.tz_convert("UTC").tz_localize(None) if stamp.tzinfo else stamp).normalize()


def _fx_schedule() -> pd.DataFrame:
    dates = pd.bdate_range(SCHEDULE_START, SCHEDULE_END)  # Monday..Friday, no holidays
    new_york = dates.tz_localize("America/New_York")
    close = (new_york + pd.Timedelta("17h")).tz_convert("UTC")
    open_ = (new_york - pd.Timedelta("7h")).tz_convert("UTC")  # 17:00 New York the day before
    return pd.DataFrame({"open": open_, "close": close, "break_start": pd.NaT, "break_end": pd.NaT}, index=dates)


def calendar_names() -> list[str]:
    import exchange_calendars as xcals

    return sorted({*xcals.get_calendar_names(include_aliases=True), *ALIASES})


def canonical_name(code: str) -> str | None:
    """The calendar an exchange code or calendar name means, or None when it is unknown."""
    import exchange_calendars as xcals

    text = str(code).strip()
    if text.upper() in ALIASES:
        return ALIASES[text.upper()]
    names = {n.upper(): n for n in xcals.get_calendar_names(include_aliases=True)}
    name = names.get(text.upper())
    return xcals.resolve_alias(name) if name else None


@lru_cache(maxsize=32)
def get_calendar(name: str) -> TradingCalendar:
    """The calendar called `name` (an exchange code, `24/7`, `24/5` or `FX`), built once per process."""
    canonical = canonical_name(name)
    if canonical is None:
        raise DataContractError(
            f"unknown trading calendar {name!r}; use an exchange code such as XNYS, XNAS, XLON, or 24/7, "
            "24/5, FX (plus_ultra_ml.data.calendar.calendar_names() lists them all)"
        )
    if canonical == "FX":
        return TradingCalendar("FX", _fx_schedule())
    import exchange_calendars as xcals

    try:
        xcal = xcals.get_calendar(canonical, start=SCHEDULE_START, end=SCHEDULE_END)
    except ValueError:  # a calendar whose rules do not reach back to 1990: its own earliest session
        xcal = xcals.get_calendar(canonical, end=SCHEDULE_END)
    schedule = xcal.schedule.copy()
    schedule.index = pd.DatetimeIndex(schedule.index).tz_localize(None) if schedule.index.tz else schedule.index
    return TradingCalendar(canonical, schedule)


@lru_cache(maxsize=128)
def _bars_per_year(name: str, spacing_ns: int) -> float:
    calendar = get_calendar(name)
    spacing = pd.Timedelta(spacing_ns, unit="ns")
    window = calendar.schedule.loc[REFERENCE_START:REFERENCE_END]
    if spacing > DAY:  # weekly-style bars: calendar time
        return SECONDS_PER_YEAR / spacing.total_seconds()
    if spacing == DAY:
        return len(window) / REFERENCE_YEARS
    open_seconds = (window["close"] - window["open"]).dt.total_seconds()
    breaks = (window["break_end"] - window["break_start"]).dt.total_seconds().fillna(0.0)
    bars = np.ceil((open_seconds - breaks).to_numpy() / spacing.total_seconds())
    return float(bars.sum() / REFERENCE_YEARS)


# --------------------------------------------------------------------------------------------
# resolution
# --------------------------------------------------------------------------------------------
def infer_calendar(timestamps, symbol: str | None = None) -> TradingCalendar:
    """Guess the calendar from the timestamps alone, and say so (pin it with data.calendar).

    Saturday bars: 24/7. Intraday Sunday bars but none on Saturday: FX. Intraday bars spanning
    under a week (no weekend seen yet): 24/7. Otherwise weekdays only: XNYS when the US holidays in
    the span have no bars (or intraday bars cover under 20 of the 24 hours), else 24/5.
    """
    index = _as_utc_index(timestamps).unique().sort_values()
    weekday = index.dayofweek
    spacing = bar_spacing(index) if len(index) > 1 else DAY
    if (weekday == 5).any():
        name = "24/7"
    elif (weekday == 6).any() and not is_daily(spacing):
        name = "FX"
    elif not is_daily(spacing) and (len(index) < 2 or index[-1] - index[0] < pd.Timedelta("7D")):
        name = "24/7"
    else:
        xnys = get_calendar("XNYS")
        dates = pd.DatetimeIndex(index.tz_localize(None).normalize().unique())
        in_range = (len(index) > 0 and _naive_date(index[0]) >= xnys.schedule.index[0]
                    and _naive_date(index[-1]) <= xnys.schedule.index[-1])
        holidays = (pd.bdate_range(dates[0], dates[-1]).difference(xnys.schedule.index)
                    if in_range and len(dates) else pd.DatetimeIndex([]))
        partial_day = not is_daily(spacing) and index.hour.nunique() < 20
        traded_holidays = dates.isin(holidays).sum()
        name = "XNYS" if in_range and ((len(holidays) and traded_holidays == 0) or partial_day) else "24/5"
    where = f"symbol {symbol}" if symbol else "the panel"
    log.info("trading calendar of %s inferred from its timestamps: %s; pin it with data.calendar: %s "
             "(or set assets.exchange)", where, name, name)
    return get_calendar(name)


def resolve_calendars(
    times_by_symbol: Mapping[str, pd.DatetimeIndex],
    exchanges: Mapping[str, str | None] | None = None,
    configured: str | None = None,
    recorded: Mapping[str, str] | None = None,
) -> dict[str, TradingCalendar]:
    """Each symbol's calendar: assets.exchange, else data.calendar, else `recorded` (the calendar a
    model's lineage says it was trained with: serving), else inferred once from the pooled timestamps
    of the symbols left (more history than any one symbol, and stable as it grows)."""
    exchanges = exchanges or {}
    recorded = {s: n for s, n in (recorded or {}).items() if n}
    out: dict[str, TradingCalendar] = {}
    unresolved = [s for s in times_by_symbol if not str(exchanges.get(s) or "").strip() and configured is None
                  and s not in recorded]
    inferred = None
    if unresolved:
        pooled = pd.DatetimeIndex(np.unique(np.concatenate([_as_utc_index(times_by_symbol[s]).asi8
                                                             for s in unresolved]))).tz_localize("UTC")
        inferred = infer_calendar(pooled, unresolved[0] if len(unresolved) == 1 else None)
    for symbol, times in times_by_symbol.items():
        exchange = exchanges.get(symbol)
        if exchange is not None and str(exchange).strip():
            if canonical_name(exchange) is None:
                raise DataContractError(
                    f"symbol {symbol}: assets.exchange is {exchange!r}, which names no known trading calendar; "
                    "set it to an exchange code such as XNYS, XNAS, XLON (or 24/7, FX), or clear it and "
                    "set data.calendar"
                )
            out[symbol] = get_calendar(str(exchange))
        elif configured is not None:
            out[symbol] = get_calendar(configured)
        elif symbol in recorded:
            out[symbol] = get_calendar(recorded[symbol])
        else:
            out[symbol] = inferred
    return out


def times_by_symbol(symbols, times: pd.DatetimeIndex) -> dict[str, pd.DatetimeIndex]:
    """Each symbol's timestamps, symbols in order of first appearance, rows in their given order.

    One hash factorisation and one stable argsort: O(n log n) in rows, whatever the number of symbols
    (a mask per symbol would be O(rows x symbols), minutes for a 2,000-name universe).
    """
    codes, names = pd.factorize(np.asarray(symbols, dtype=object))  # (n,) codes in 0..S-1, first-seen order
    order = np.argsort(codes, kind="stable")
    bounds = np.searchsorted(codes[order], np.arange(len(names) + 1))  # (S+1,) run edges in `order`
    times = pd.DatetimeIndex(times)
    return {name: times[order[bounds[k]:bounds[k + 1]]] for k, name in enumerate(names)}


def panel_calendars(panel: pd.DataFrame) -> dict[str, TradingCalendar]:
    """The calendars recorded on the panel by build_panel, else one inferred from all its timestamps."""
    recorded = panel.attrs.get(CALENDAR_ATTR) or {}
    by_symbol = times_by_symbol(panel.index.get_level_values("symbol"), panel.index.get_level_values("timestamp"))
    return resolve_calendars(by_symbol, recorded)


def periods_per_year(timestamps, calendar: TradingCalendar | str | None = None,
                     spacing: pd.Timedelta | None = None) -> float:
    """Bars per year of `calendar` at the bar spacing (given, or the timestamps' most common step).

    The calendar is given (a name or a TradingCalendar) or inferred from the timestamps; either way
    the count comes from the calendar's reference window, not from how many bars the data holds,
    so a truncated or appended panel annualises the same way.
    """
    index = _as_utc_index(timestamps).unique().sort_values()
    if spacing is None:
        if len(index) < 2:
            raise ValueError("need at least two distinct timestamps to annualise")
        spacing = bar_spacing(index)
    if calendar is None:
        calendar = infer_calendar(index)
    elif isinstance(calendar, str):
        calendar = get_calendar(calendar)
    return calendar.bars_per_year(pd.Timedelta(spacing))


def common_periods_per_year(calendars: Mapping[str, TradingCalendar], spacing: pd.Timedelta) -> float:
    """One annualisation for a panel: its symbols' calendars must agree on bars per year within 1%."""
    values = {c.name: c.bars_per_year(spacing) for c in calendars.values()}
    if not values:
        raise ValueError("no symbols to annualise")
    low, high = min(values.values()), max(values.values())
    if high > 1.01 * low:
        raise DataContractError(
            f"the panel's symbols trade on calendars with different bars per year {values}; annualise one "
            "way by setting data.calendar for all of them, or features.periods_per_year"
        )
    return float(np.mean(list(values.values())))


def panel_periods_per_year(panel: pd.DataFrame, pinned: float | None = None,
                           spacing: pd.Timedelta | None = None) -> float:
    """The one annualisation of a panel (its features, held-out metrics and reports): `pinned`
    (``features.periods_per_year``) when set, else the bars per year its symbols' calendars agree on
    at the bar spacing (given, else the timestamps' most common step). The calendars are the ones
    build_panel resolved and recorded in ``panel.attrs["calendars"]``; a panel that carries none has
    them inferred from all its timestamps (the documented last resort, logged)."""
    if pinned is not None:
        return float(pinned)
    if not panel.attrs.get(CALENDAR_ATTR):
        log.warning("the panel carries no resolved trading calendars (build_panel records them): inferring them "
                    "from its timestamps; pin data.calendar or features.periods_per_year")
    times = panel.index.get_level_values("timestamp")
    return common_periods_per_year(panel_calendars(panel), spacing if spacing is not None else bar_spacing(times))


def calendar_record(panel: pd.DataFrame, pinned: float | None = None) -> dict:
    """What lineage keeps of a panel's calendars, so serving annualises as training did: each symbol's
    calendar name, the bar spacing and the bars per year (None where the calendars disagree and
    nothing is pinned: training would have refused to annualise)."""
    calendars = panel_calendars(panel)
    spacing = bar_spacing(panel.index.get_level_values("timestamp"))
    try:
        ppy: float | None = panel_periods_per_year(panel, pinned, spacing)
    except DataContractError:
        ppy = None
    return {"calendars": {str(s): c.name for s, c in calendars.items()}, "bar_spacing": str(spacing),
            "periods_per_year": ppy}
