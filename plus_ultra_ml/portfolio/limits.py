"""The limits a rebalance obeys after its rule chose a target: turnover and volatility.

- `limit_turnover`: turnover is sum_i |w_new,i - w_old,i| (the quantity the PnL road charges costs on).
  When the move to the target would exceed `max_turnover`, the book moves part way along the straight
  line: w_new = w_old + lam (target - w_old), lam = max_turnover / sum_i |target_i - w_old,i|. A point
  on that line keeps every linear property both ends have (sum 0, sum 1, sum 0 within a sector, |w_i|
  <= max_weight), so the limits of the rule still hold. The one exception is a name that can no
  longer be held (not listed, no score): it must go to 0, which only lam = 1 does, so such a bar
  makes the whole move (a forced rebalance; the turnover limit binds at every other rebalance).
- `volatility_scale`: the factor s in (0, 1] the target is multiplied by so that the book's
  estimated annual volatility is at most `target_volatility`: s = min(1, target / (sigma sqrt(P))),
  sigma the sample std of the target weights' returns on the trailing bars r[t-w+1 .. t] (bars known
  at t's close; nothing after t). Fewer than `min_bars` returns: s = 0 (flat until it can estimate).
  It only scales down: the book never levers up beyond its rule's gross.
"""

from __future__ import annotations

import math

import numpy as np


def turnover(new: np.ndarray, old: np.ndarray) -> float:
    """sum_i |new_i - old_i|: the weight traded at one bar (both legs counted)."""
    return float(np.abs(np.asarray(new) - np.asarray(old)).sum())


def limit_turnover(target: np.ndarray, previous: np.ndarray, max_turnover: float | None,
                   forced: bool = False) -> np.ndarray:
    """The weights after one rebalance: `target`, or part way to it when the move trades more than
    `max_turnover` (see the module doc); `forced`: a held name must exit, so the whole move is made."""
    if max_turnover is None or forced:
        return target
    traded = turnover(target, previous)
    if traded <= max_turnover:
        return target
    lam = max_turnover / traded
    return previous + lam * (target - previous)


def volatility_scale(target: np.ndarray, past_returns: np.ndarray, *, target_volatility: float,
                     periods_per_year: float, min_bars: int) -> float:
    """Scale in [0, 1] for the target (N,) from trailing per-name returns (W, N), rows = bars <= t.

    past_returns[s, i]: the simple return of name i over bar s (close[s] / close[s-1] - 1), NaN where
    unknown (not listed then): it counts as 0 in the estimate. Rows that are NaN for every name (before
    the data starts) are not bars and are dropped.
    """
    rows = past_returns[np.isfinite(past_returns).any(axis=1)]
    if len(rows) < min_bars:
        return 0.0
    book = np.nan_to_num(rows) @ target  # (W,) the target's return on each trailing bar
    sigma = float(np.std(book, ddof=1)) * math.sqrt(periods_per_year)
    if not sigma > 0:
        return 1.0  # a book that did not move on any trailing bar: nothing to scale down
    return min(1.0, target_volatility / sigma)
