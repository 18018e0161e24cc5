"""Missing bars: found and reported, forward-filled only up to a limit, never back-filled.

A gap is a step between consecutive bars of a symbol that is longer than the nominal bar spacing
and is not one of the calendar's regular breaks. Regular breaks (nights, weekends, holidays) are
learnt from the data: a step length that recurs in at least 1% of a symbol's steps (and at least
three times) is the calendar, not a hole. Everything else is an irregular gap.

Filling a gap inserts bars whose open, high, low and close equal the last close before the gap,
with zero volume and indicators carried forward: only the past flows into the filled bars.
Gaps longer than the limit stay open; the first bar of a symbol is never preceded by invented data.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from plus_ultra_ml.data.calendar import bar_spacing

REGULAR_BREAK_SHARE = 0.01
REGULAR_BREAK_MIN_COUNT = 3
GAP_COLUMNS = ["symbol", "after", "before", "missing_bars"]


def find_gaps(panel: pd.DataFrame, spacing: pd.Timedelta | None = None) -> pd.DataFrame:
    """One row per irregular gap: symbol, last bar before it, first bar after it, bars missing."""
    symbols = panel.index.get_level_values("symbol")
    times = panel.index.get_level_values("timestamp")
    if len(panel) < 2:
        return pd.DataFrame(columns=GAP_COLUMNS)
    spacing = spacing or bar_spacing(times)
    step_ns = np.int64(spacing.value)
    ns = times.asi8
    codes = pd.Categorical(symbols).codes
    same_symbol = codes[1:] == codes[:-1]
    steps = np.diff(ns)
    candidate = same_symbol & (steps > step_ns)
    if not candidate.any():
        return pd.DataFrame(columns=GAP_COLUMNS)
    # steps that recur often enough within a symbol are the calendar's regular breaks
    step_table = pd.DataFrame({"code": codes[1:][same_symbol], "step": steps[same_symbol]})
    per_symbol_steps = step_table.groupby("code")["step"].transform("size")
    step_counts = step_table.groupby(["code", "step"])["step"].transform("size")
    regular = (step_counts >= np.maximum(REGULAR_BREAK_MIN_COUNT, REGULAR_BREAK_SHARE * per_symbol_steps)).to_numpy()
    is_regular = np.zeros_like(candidate)
    is_regular[np.flatnonzero(same_symbol)] = regular
    irregular = candidate & ~is_regular
    where = np.flatnonzero(irregular)
    return pd.DataFrame(
        {
            "symbol": np.asarray(symbols[where], dtype=object),
            "after": times[where],
            "before": times[where + 1],
            "missing_bars": (steps[where] // step_ns - (steps[where] % step_ns == 0)).astype(np.int64),
        }
    )


def forward_fill_gaps(
    panel: pd.DataFrame, limit: int, spacing: pd.Timedelta | None = None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Insert forward-filled bars into irregular gaps of at most `limit` missing bars.

    Returns the (possibly) extended panel and the gap table with a `filled` flag per gap.
    """
    gaps = find_gaps(panel, spacing)
    gaps["filled"] = (gaps["missing_bars"] <= limit) & (gaps["missing_bars"] > 0)
    if limit <= 0 or not gaps["filled"].any():
        return panel, gaps
    spacing = spacing or bar_spacing(panel.index.get_level_values("timestamp"))
    todo = gaps[gaps["filled"]]
    counts = todo["missing_bars"].to_numpy()
    # (n_new,) the k-th inserted bar of a gap sits k steps after the bar before the gap
    offsets = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts) + 1
    after_ns = np.repeat(pd.DatetimeIndex(todo["after"]).asi8, counts)
    new_times = pd.to_datetime(after_ns + offsets * np.int64(spacing.value), utc=True)
    new_symbols = np.repeat(todo["symbol"].to_numpy(), counts)
    source = panel.loc[list(zip(todo["symbol"], todo["after"], strict=True))]  # the bar before each gap
    filled = source.loc[source.index.repeat(counts)].copy()
    last_close = filled["close"].to_numpy()
    for column in ("open", "high", "low", "close", "vwap"):
        if column in filled:
            filled[column] = last_close
    for column in ("volume", "turnover"):
        if column in filled:
            filled[column] = 0.0
    filled.index = pd.MultiIndex.from_arrays([new_symbols, new_times], names=panel.index.names)
    combined = pd.concat([panel, filled]).sort_index()
    symbol_level = combined.index.get_level_values("symbol")
    combined.index = pd.MultiIndex.from_arrays(
        [pd.Categorical(symbol_level, categories=panel.index.get_level_values("symbol").categories),
         combined.index.get_level_values("timestamp")],
        names=panel.index.names,
    )
    return combined, gaps
