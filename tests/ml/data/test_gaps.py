"""Gaps: irregular holes reported, short ones forward-filled from the past, calendar breaks left alone."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from plus_ultra_ml.data.gaps import find_gaps, forward_fill_gaps


def panel_from(times: pd.DatetimeIndex, symbol: str = "AAA") -> pd.DataFrame:
    n = len(times)
    close = 100 + np.arange(n, dtype=float)
    index = pd.MultiIndex.from_arrays([pd.Categorical([symbol] * n), times], names=["symbol", "timestamp"])
    return pd.DataFrame({"open": close - 0.5, "high": close + 1, "low": close - 1, "close": close,
                         "volume": 10.0, "ind__flow": np.arange(n, dtype=float)}, index=index)


def hourly(n=40):
    return pd.date_range("2024-01-01", periods=n, freq="1h", tz="UTC")


def test_irregular_gaps_are_found_with_their_size():
    panel = panel_from(hourly().delete([5, 6, 20]))
    gaps = find_gaps(panel)
    assert gaps["missing_bars"].tolist() == [2, 1]
    assert gaps["after"].iloc[0] == pd.Timestamp("2024-01-01 04:00", tz="UTC")


def test_weekends_of_daily_bars_are_calendar_not_gaps():
    days = pd.bdate_range("2024-01-01", periods=120, tz="UTC")
    assert find_gaps(panel_from(days)).empty
    assert len(find_gaps(panel_from(days.delete([50])))) == 1  # a missing Wednesday is a gap


@pytest.mark.parametrize(("limit", "filled_rows"), [(0, 0), (1, 1), (2, 3), (5, 3)])
def test_forward_fill_up_to_limit(limit, filled_rows):
    panel = panel_from(hourly().delete([5, 6, 20]))
    out, gaps = forward_fill_gaps(panel, limit)
    assert len(out) == len(panel) + filled_rows
    assert out.index.is_monotonic_increasing and out.index.is_unique


def test_filled_bars_copy_the_past_only():
    panel = panel_from(hourly().delete([5, 6]))
    out, _ = forward_fill_gaps(panel, 2)
    before = out.loc[("AAA", pd.Timestamp("2024-01-01 04:00", tz="UTC"))]
    for hour in (5, 6):
        bar = out.loc[("AAA", pd.Timestamp(f"2024-01-01 {hour:02d}:00", tz="UTC"))]
        assert (bar[["open", "high", "low", "close"]] == before["close"]).all()
        assert bar["volume"] == 0.0 and bar["ind__flow"] == before["ind__flow"]


def test_never_back_filled_and_symbols_never_mix():
    late = panel_from(hourly()[10:], "BBB")
    early = panel_from(hourly()[:5], "AAA")
    panel = pd.concat([early, late])
    panel.index = pd.MultiIndex.from_arrays(
        [pd.Categorical(panel.index.get_level_values(0).astype(str)), panel.index.get_level_values(1)],
        names=["symbol", "timestamp"])
    out, gaps = forward_fill_gaps(panel.sort_index(), 20)
    assert gaps.empty  # AAA ending and BBB starting later is not a gap of either
    assert out.loc["BBB"].index.min() == hourly()[10]  # nothing invented before a symbol's first bar
