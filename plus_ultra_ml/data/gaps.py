"""Missing bars: found against the trading calendar, forward-filled only up to a limit, never back-filled.

A gap is a run of bars the symbol's calendar says should exist (an open session for daily bars; a
grid point inside open hours for intraday bars) between the symbol's first and last bar, but that
the data lacks. Nights, weekends and holidays are closed sessions of the calendar, so they are never
gaps and no bar is ever invented on them; every missing open session is a gap. The calendar comes
from `data.calendar.panel_calendars` (what build_panel recorded: assets.exchange or data.calendar),
or is inferred from the timestamps when nothing was recorded.

Filling a gap inserts bars at the missing open times whose open, high, low and close equal the
last close before the gap, with zero volume and indicators carried forward: only the past flows
into the filled bars. Gaps longer than the limit stay open; the first bar of a symbol is never
preceded by invented data.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from plus_ultra_ml.data.calendar import TradingCalendar, bar_spacing, is_daily, panel_calendars, times_by_symbol

GAP_COLUMNS = ["symbol", "after", "before", "missing_bars"]
Calendars = Mapping[str, TradingCalendar] | TradingCalendar | None


def _calendars_for(panel: pd.DataFrame, calendars: Calendars) -> Mapping[str, TradingCalendar]:
    if isinstance(calendars, TradingCalendar):
        return {s: calendars for s in panel.index.get_level_values("symbol").unique()}
    return panel_calendars(panel) if calendars is None else calendars


def _missing(panel: pd.DataFrame, spacing: pd.Timedelta | None, calendars: Calendars):
    """Gap table, plus every missing bar's time and the row of the gap it belongs to."""
    times = panel.index.get_level_values("timestamp")
    empty = pd.DataFrame(columns=GAP_COLUMNS), pd.DatetimeIndex([], tz="UTC"), np.zeros(0, dtype=np.int64)
    if len(panel) < 2 or times.nunique() < 2:
        return empty
    spacing = spacing or bar_spacing(times)
    per_symbol = _calendars_for(panel, calendars)
    rows, missing_times, gap_of = [], [], []
    for symbol, symbol_times in times_by_symbol(panel.index.get_level_values("symbol"), times).items():
        present = symbol_times.unique().sort_values()
        if len(present) < 2:
            continue
        expected = per_symbol[symbol].expected_bars(present[0], present[-1], spacing)
        if is_daily(spacing):  # one bar per session date, whatever its time of day
            missing = expected[~expected.normalize().isin(present.normalize())]
        else:
            missing = expected.difference(present)
        if not len(missing):
            continue
        slot = np.searchsorted(present.asi8, missing.asi8)  # present[slot - 1] < missing < present[slot]
        starts = np.flatnonzero(np.r_[True, slot[1:] != slot[:-1]])
        counts = np.diff(np.r_[starts, len(slot)])
        first_row = len(rows)
        for start, count in zip(starts, counts):
            k = slot[start]
            rows.append((symbol, present[k - 1], present[k], int(count)))
        missing_times.append(missing)
        gap_of.append(first_row + np.repeat(np.arange(len(starts)), counts))
    if not rows:
        return empty
    gaps = pd.DataFrame(rows, columns=GAP_COLUMNS)
    gaps["after"] = pd.DatetimeIndex(gaps["after"]).tz_convert("UTC")
    gaps["before"] = pd.DatetimeIndex(gaps["before"]).tz_convert("UTC")
    gaps["missing_bars"] = gaps["missing_bars"].astype(np.int64)
    return gaps, pd.DatetimeIndex(np.concatenate([m.asi8 for m in missing_times])).tz_localize("UTC"), \
        np.concatenate(gap_of)


def find_gaps(panel: pd.DataFrame, spacing: pd.Timedelta | None = None, calendars: Calendars = None) -> pd.DataFrame:
    """One row per gap: symbol, last bar before it, first bar after it, open bars missing."""
    return _missing(panel, spacing, calendars)[0]


def forward_fill_gaps(
    panel: pd.DataFrame, limit: int, spacing: pd.Timedelta | None = None, calendars: Calendars = None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Insert forward-filled bars into gaps of at most `limit` missing open bars.

    Returns the (possibly) extended panel and the gap table with a `filled` flag per gap.
    """
    gaps, missing_times, gap_of = _missing(panel, spacing, calendars)
    gaps["filled"] = (gaps["missing_bars"] <= limit) & (gaps["missing_bars"] > 0)
    if limit <= 0 or not gaps["filled"].any():
        return panel, gaps
    take = gaps["filled"].to_numpy()[gap_of]
    todo = gaps.iloc[gap_of[take]]
    new_times = missing_times[take]
    source = panel.loc[list(zip(todo["symbol"], todo["after"], strict=True))]  # the bar before each gap
    filled = source.copy()
    last_close = filled["close"].to_numpy()
    for column in ("open", "high", "low", "close", "vwap"):
        if column in filled:
            filled[column] = last_close
    for column in ("volume", "turnover"):
        if column in filled:
            filled[column] = 0.0
    filled.index = pd.MultiIndex.from_arrays([todo["symbol"].to_numpy(), new_times], names=panel.index.names)
    combined = pd.concat([panel, filled]).sort_index()
    symbol_level = combined.index.get_level_values("symbol")
    combined.index = pd.MultiIndex.from_arrays(
        [pd.Categorical(symbol_level, categories=panel.index.get_level_values("symbol").categories),
         combined.index.get_level_values("timestamp")],
        names=panel.index.names,
    )
    combined.attrs = dict(panel.attrs)
    return combined, gaps
