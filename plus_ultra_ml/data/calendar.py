"""Bar spacing and annualisation, inferred from the timestamps themselves.

Annualisation follows the data, not a constant: daily equity bars give about 252 a year, 15-minute
bars of a market that trades around the clock give 35,040. Every room that annualises (realised
volatility, Sharpe, CAGR) calls `periods_per_year` so they all agree.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

SECONDS_PER_YEAR = 365.25 * 24 * 3600


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


def periods_per_year(timestamps) -> float:
    """Bars per year implied by the data: distinct bars divided by the span in years.

    For a calendar with closed periods (weekends, nights) this counts the bars that actually
    occur, which is what annualisation needs. Spans shorter than ~30 bars fall back to the
    nominal spacing (no session gaps can be measured on so little data).
    """
    index = _as_utc_index(timestamps).unique().sort_values()
    if len(index) < 2:
        raise ValueError("need at least two distinct timestamps to annualise")
    span_s = (index[-1] - index[0]).total_seconds()
    if len(index) < 30:
        return SECONDS_PER_YEAR / bar_spacing(index).total_seconds()
    return (len(index) - 1) / (span_s / SECONDS_PER_YEAR)
