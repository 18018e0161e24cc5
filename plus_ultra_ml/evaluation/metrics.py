"""Performance, risk and signal metrics: pure functions over per-period returns (empyrical style).

Conventions (docs/metrics.md has the full table):

- Inputs are *per-period simple returns*, not annualised, not cumulative: a 1-D array or
  `pd.Series` (one strategy), or a 2-D array / `pd.DataFrame` with time along axis 0 and one
  column per strategy (every function then answers per column, as empyrical does). NaN marks a
  missing period: it is left out of means and deviations and compounds as 0.
- Annualisation follows the trading calendar: pass `periods_per_year`, or pass returns indexed by
  a `DatetimeIndex` and `plus_ultra_ml.data.calendar.periods_per_year` gives the bars per year of
  the calendar those timestamps trade on (inferred, logged), not a count of the returns given. It
  is never assumed to be 252; neither given nor inferable is a `ValueError`.
- Drawdowns come from compounded equity, starting at 1 before the first period; they are
  reported as negative fractions (-0.25 is a 25% fall from the running peak), as in empyrical.
- Benchmark-relative metrics align the two series by an inner join on their index (timestamps),
  never by truncating arrays; plain arrays must already have equal shapes.
- Too little data answers NaN (stated per function); so does a zero denominator unless stated.

Rolling variants come from one wrapper, `rolling`, which evaluates a metric once on the matrix of
all windows (every metric here reduces along axis 0), never from copies of each metric.
References: Bailey & Lopez de Prado (2014), "The Deflated Sharpe Ratio"; Politis & Romano (1994),
"The Stationary Bootstrap"; Kunsch (1989) for the moving-block bootstrap.
"""

from __future__ import annotations

import inspect
import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from statistics import NormalDist
from typing import Literal

import numpy as np
import pandas as pd
from numpy.lib.stride_tricks import sliding_window_view

from plus_ultra_ml.data import calendar

ArrayLike = np.ndarray | pd.Series | pd.DataFrame
EULER_GAMMA = 0.5772156649015329
_NORMAL = NormalDist()


# --------------------------------------------------------------------------------------------
# plumbing: arrays in, float / per-column answers out
# --------------------------------------------------------------------------------------------
def _values(data: ArrayLike | list) -> np.ndarray:
    values = np.asarray(data, dtype=np.float64)
    if values.ndim not in (1, 2):
        raise ValueError(f"expected 1-D (time) or 2-D (time x columns) data, got shape {values.shape}")
    return values


def _answer(result: np.ndarray, like: ArrayLike | list) -> float | np.ndarray | pd.Series:
    """A float for 1-D input, a Series over the columns of a DataFrame, an array otherwise."""
    result = np.asarray(result, dtype=np.float64)
    if result.ndim == 0:
        return float(result)
    if isinstance(like, pd.DataFrame):
        return pd.Series(result, index=like.columns)
    return result


def _like(values: np.ndarray, template: ArrayLike) -> ArrayLike:
    """Wrap a per-period array like the input: same index (and columns) for pandas, else the array."""
    if isinstance(template, pd.DataFrame):
        return pd.DataFrame(values, index=template.index, columns=template.columns)
    if isinstance(template, pd.Series):
        return pd.Series(values, index=template.index, name=template.name)
    return values


def annualisation(returns: ArrayLike, periods_per_year: float | None = None) -> float:
    """Bars per year: the explicit value, else that of the trading calendar of the returns' DatetimeIndex."""
    if periods_per_year is not None:
        if not periods_per_year > 0:
            raise ValueError(f"periods_per_year must be > 0, got {periods_per_year!r}")
        return float(periods_per_year)
    index = getattr(returns, "index", None)
    if isinstance(index, pd.DatetimeIndex):
        return calendar.periods_per_year(index)
    raise ValueError(
        "cannot annualise: pass periods_per_year= (bars per year, e.g. from "
        "plus_ultra_ml.data.calendar.periods_per_year) or returns indexed by timestamps; it is never assumed"
    )


def _count(x: np.ndarray) -> np.ndarray:
    return np.isfinite(x).sum(axis=0)


def _mean(x: np.ndarray) -> np.ndarray:
    """NaN-ignoring mean along axis 0; NaN where a column has no value (no warning)."""
    n = _count(x)
    total = np.where(np.isfinite(x), x, 0.0).sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, total / np.maximum(n, 1), np.nan)


def _std(x: np.ndarray, ddof: int = 1) -> np.ndarray:
    """NaN-ignoring standard deviation along axis 0; NaN with fewer than ddof + 1 values.

    Exactly 0 when every present value of a column is equal (no floating residue).
    """
    n = _count(x)
    if x.shape[0] == 0:
        return np.full(x.shape[1:], np.nan)
    finite = np.isfinite(x)
    centred = np.where(finite, x - _mean(x), 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        var = (centred**2).sum(axis=0) / (n - ddof)
    std = np.where(n > ddof, np.sqrt(np.maximum(var, 0.0)), np.nan)
    with np.errstate(invalid="ignore"):
        hi = np.where(finite, x, -np.inf).max(axis=0)
        lo = np.where(finite, x, np.inf).min(axis=0)
    return np.where((n > ddof) & (hi == lo), 0.0, std)


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.asarray(num, dtype=np.float64) / den


# --------------------------------------------------------------------------------------------
# returns: growth, risk, risk-adjusted
# --------------------------------------------------------------------------------------------
def equity_curve(returns: ArrayLike, start: float = 1.0) -> ArrayLike:
    """Compounded equity after each period, start * prod(1 + r); NaN periods compound as 0."""
    r = _values(returns)
    return _like(start * np.cumprod(1.0 + np.where(np.isfinite(r), r, 0.0), axis=0), returns)


def total_return(returns: ArrayLike) -> float | np.ndarray | pd.Series:
    """prod(1 + r) - 1 over the whole period. No value: NaN."""
    r = _values(returns)
    growth = np.prod(1.0 + np.where(np.isfinite(r), r, 0.0), axis=0) - 1.0
    return _answer(np.where(_count(r) > 0, growth, np.nan), returns)


def cagr(returns: ArrayLike, periods_per_year: float | None = None) -> float | np.ndarray | pd.Series:
    """Compound annual growth rate: (1 + total return) ** (periods_per_year / n) - 1.

    n is the number of (non-NaN) periods. No value: NaN. Equity at or below 0 (a wipe-out): -1.
    """
    ppy = annualisation(returns, periods_per_year)
    r = _values(returns)
    n = _count(r)
    ending = 1.0 + np.asarray(total_return(r))
    solvent = ending > 0
    growth = np.where(solvent, np.where(solvent, ending, 1.0) ** (ppy / np.maximum(n, 1)) - 1.0, -1.0)
    return _answer(np.where(n > 0, growth, np.nan), returns)


def annual_volatility(returns: ArrayLike, periods_per_year: float | None = None) -> float | np.ndarray | pd.Series:
    """std(r, ddof=1) * sqrt(periods_per_year). Fewer than 2 periods: NaN."""
    ppy = annualisation(returns, periods_per_year)
    return _answer(_std(_values(returns)) * math.sqrt(ppy), returns)


def sharpe_ratio(
    returns: ArrayLike, periods_per_year: float | None = None, risk_free: float = 0.0
) -> float | np.ndarray | pd.Series:
    """Annualised Sharpe: mean(r - rf) / std(r - rf, ddof=1) * sqrt(periods_per_year).

    risk_free is per period. Fewer than 2 periods: NaN. Zero dispersion: +/-inf (NaN if the mean is 0 too).
    """
    ppy = annualisation(returns, periods_per_year)
    excess = _values(returns) - risk_free
    ratio = _ratio(_mean(excess), _std(excess)) * math.sqrt(ppy)
    return _answer(np.where(_count(excess) >= 2, ratio, np.nan), returns)


def downside_risk(
    returns: ArrayLike, periods_per_year: float | None = None, required_return: float = 0.0
) -> float | np.ndarray | pd.Series:
    """sqrt(mean(min(r - required, 0) ** 2)) * sqrt(periods_per_year), the mean over all periods."""
    ppy = annualisation(returns, periods_per_year)
    shortfall = np.minimum(_values(returns) - required_return, 0.0)
    return _answer(np.sqrt(_mean(shortfall**2)) * math.sqrt(ppy), returns)


def sortino_ratio(
    returns: ArrayLike, periods_per_year: float | None = None, required_return: float = 0.0
) -> float | np.ndarray | pd.Series:
    """Annualised Sortino: mean(r - required) * periods_per_year / downside_risk.

    Fewer than 2 periods: NaN. No period below the required return: +inf (NaN if the mean is 0 too).
    """
    ppy = annualisation(returns, periods_per_year)
    r = _values(returns)
    numerator = _mean(r - required_return) * ppy
    ratio = _ratio(numerator, np.asarray(downside_risk(r, ppy, required_return)))
    return _answer(np.where(_count(r) >= 2, ratio, np.nan), returns)


def drawdown_series(returns: ArrayLike) -> ArrayLike:
    """equity / running peak - 1 after each period (<= 0); the peak includes the starting 1."""
    r = _values(returns)
    equity = np.asarray(equity_curve(r))
    peak = np.maximum(np.maximum.accumulate(equity, axis=0), 1.0)
    return _like(equity / peak - 1.0, returns)


def max_drawdown(returns: ArrayLike) -> float | np.ndarray | pd.Series:
    """Worst fall from a running peak of compounded equity, as a negative fraction. No value: NaN."""
    r = _values(returns)
    if r.shape[0] == 0:
        return _answer(np.full(r.shape[1:], np.nan), returns)
    worst = np.asarray(drawdown_series(r)).min(axis=0)
    return _answer(np.where(_count(r) > 0, worst, np.nan), returns)


def max_drawdown_duration(returns: ArrayLike) -> float | np.ndarray | pd.Series:
    """Longest spell, in periods, that equity spent below its running peak (0: never). No value: NaN.

    A spell runs from the first period under water to the last one before the peak is regained (or
    to the end of the data if it never is).
    """
    r = _values(returns)
    if r.shape[0] == 0:
        return _answer(np.full(r.shape[1:], np.nan), returns)
    under = np.asarray(drawdown_series(r)) < 0
    steps = np.arange(r.shape[0]).reshape((-1,) + (1,) * (r.ndim - 1))
    last_dry = np.maximum.accumulate(np.where(under, -1, steps), axis=0)  # last period at a peak
    spell = np.where(under, steps - last_dry, 0)
    return _answer(np.where(_count(r) > 0, spell.max(axis=0), np.nan), returns)


def calmar_ratio(returns: ArrayLike, periods_per_year: float | None = None) -> float | np.ndarray | pd.Series:
    """CAGR / |max drawdown|. No drawdown (or no data): NaN."""
    r = _values(returns)
    ppy = annualisation(returns, periods_per_year)
    mdd = np.asarray(max_drawdown(r))
    ratio = _ratio(np.asarray(cagr(r, ppy)), np.abs(mdd))
    return _answer(np.where(mdd < 0, ratio, np.nan), returns)


def ulcer_index(returns: ArrayLike) -> float | np.ndarray | pd.Series:
    """sqrt(mean(drawdown ** 2)) over all periods, drawdowns as fractions (Martin, 1987). No value: NaN."""
    r = _values(returns)
    if r.shape[0] == 0:
        return _answer(np.full(r.shape[1:], np.nan), returns)
    ulcer = np.sqrt(np.mean(np.asarray(drawdown_series(r)) ** 2, axis=0))
    return _answer(np.where(_count(r) > 0, ulcer, np.nan), returns)


def value_at_risk(returns: ArrayLike, level: float = 0.05) -> float | np.ndarray | pd.Series:
    """Historical VaR: the `level` quantile of per-period returns (linear interpolation), a negative
    number for a loss. No value: NaN."""
    r = _values(returns)
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level!r}")
    if r.shape[0] == 0 or not np.isfinite(r).any():
        return _answer(np.full(r.shape[1:], np.nan), returns)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns answer NaN
        return _answer(np.nanpercentile(r, 100 * level, axis=0), returns)


def expected_shortfall(returns: ArrayLike, level: float = 0.05) -> float | np.ndarray | pd.Series:
    """Historical expected shortfall (CVaR): the mean of the k worst returns, k = floor((n - 1) *
    level) + 1 with n the non-NaN count (empyrical's convention). No value: NaN."""
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level!r}")
    r = _values(returns)
    if r.shape[0] == 0:
        return _answer(np.full(r.shape[1:], np.nan), returns)
    table = r.reshape(r.shape[0], -1)  # (T, C)
    n = _count(table)
    worst_first = np.sort(np.where(np.isfinite(table), table, np.inf), axis=0)  # NaN sorted last
    running = np.cumsum(np.where(np.isfinite(worst_first), worst_first, 0.0), axis=0)
    k = np.floor(np.maximum(n - 1, 0) * level).astype(np.int64) + 1
    tail_sum = running[np.minimum(k, table.shape[0]) - 1, np.arange(table.shape[1])]
    result = np.where(n > 0, tail_sum / k, np.nan)
    return _answer(result.reshape(r.shape[1:]), returns)


def tail_ratio(returns: ArrayLike) -> float | np.ndarray | pd.Series:
    """|95th percentile| / |5th percentile| of per-period returns. No value: NaN."""
    r = _values(returns)
    return _answer(
        _ratio(np.abs(np.asarray(value_at_risk(r, 0.95))), np.abs(np.asarray(value_at_risk(r, 0.05)))), returns
    )


def hit_rate(returns: ArrayLike) -> float | np.ndarray | pd.Series:
    """Share of active periods (return != 0) with a positive return. No active period: NaN.

    Flat periods (no position, return exactly 0) are neither hits nor misses.
    """
    r = _values(returns)
    wins = (r > 0).sum(axis=0)
    active = ((r != 0) & np.isfinite(r)).sum(axis=0)
    return _answer(np.where(active > 0, _ratio(wins, active), np.nan), returns)


def profit_factor(returns: ArrayLike) -> float | np.ndarray | pd.Series:
    """Sum of gains / |sum of losses|. No loss: +inf if there are gains, NaN if neither."""
    r = _values(returns)
    gains = np.where(r > 0, r, 0.0).sum(axis=0)
    losses = -np.where(r < 0, r, 0.0).sum(axis=0)
    result = np.where(losses > 0, _ratio(gains, losses), np.where(gains > 0, np.inf, np.nan))
    return _answer(result, returns)


def turnover(positions: ArrayLike) -> float | np.ndarray | pd.Series:
    """Mean |p[t] - p[t-1]| per period with p[-1] = 0 (the entry counts, as in the cost model).

    positions: per-period positions (fractions of capital), one column per symbol. NaN is flat (0).
    Multiply by periods_per_year for an annual figure. Empty: NaN.
    """
    p = _values(positions)
    if p.shape[0] == 0:
        return _answer(np.full(p.shape[1:], np.nan), positions)
    p = np.where(np.isfinite(p), p, 0.0)
    return _answer(np.abs(np.diff(p, axis=0, prepend=0.0)).mean(axis=0), positions)


def exposure(positions: ArrayLike) -> float | np.ndarray | pd.Series:
    """Mean gross exposure mean(|p|) per period; NaN positions are left out. No value: NaN."""
    return _answer(_mean(np.abs(_values(positions))), positions)


def time_in_market(positions: ArrayLike) -> float | np.ndarray | pd.Series:
    """Share of periods with a non-zero position; NaN positions are left out. No value: NaN."""
    p = _values(positions)
    invested = np.where(np.isfinite(p), (p != 0).astype(np.float64), np.nan)
    return _answer(_mean(invested), positions)


# --------------------------------------------------------------------------------------------
# relative to a benchmark (aligned by timestamp)
# --------------------------------------------------------------------------------------------
def align(returns: ArrayLike, benchmark: ArrayLike) -> tuple[np.ndarray, np.ndarray, pd.Index | None]:
    """Pair returns with benchmark returns by an inner join on the index; mask pairs with a NaN.

    Series/DataFrames join on their index (duplicates are an error); plain arrays must already have
    the same length and are paired by position, never truncated. A DataFrame of strategies may be
    paired with one benchmark Series. Returns (r, b, index) with NaN wherever either side is NaN.
    """
    pandas_in = [isinstance(x, pd.Series | pd.DataFrame) for x in (returns, benchmark)]
    if any(pandas_in) and not all(pandas_in):
        raise ValueError(
            "pass both returns and benchmark as pandas objects indexed by timestamp (to align them), or both as "
            "arrays of the same length; one of each cannot be aligned"
        )
    index = None
    if all(pandas_in):
        for name, x in (("returns", returns), ("benchmark", benchmark)):
            if not x.index.is_unique:
                raise ValueError(f"{name} has duplicate index labels; aggregate them before comparing")
        index = returns.index.intersection(benchmark.index, sort=True)
        if len(index) == 0:
            raise ValueError("returns and benchmark share no timestamp; nothing to compare")
        returns, benchmark = returns.loc[index], benchmark.loc[index]
    r, b = _values(returns), _values(benchmark)
    if r.shape[0] != b.shape[0]:
        raise ValueError(
            f"returns ({r.shape[0]} periods) and benchmark ({b.shape[0]} periods) differ in length; pass them as "
            "Series indexed by timestamp so they are aligned, never truncated"
        )
    if b.ndim == 1 and r.ndim == 2:
        b = np.repeat(b[:, None], r.shape[1], axis=1)
    if b.shape != r.shape:
        raise ValueError(f"returns {r.shape} and benchmark {b.shape} cannot be paired column by column")
    both = np.isfinite(r) & np.isfinite(b)
    return np.where(both, r, np.nan), np.where(both, b, np.nan), index


def active_returns(returns: ArrayLike, benchmark: ArrayLike) -> ArrayLike:
    """r - b per period on the common timestamps (NaN where either is missing)."""
    r, b, index = align(returns, benchmark)
    active = r - b
    if index is None:
        return active
    if active.ndim == 2:
        return pd.DataFrame(active, index=index, columns=getattr(returns, "columns", None))
    return pd.Series(active, index=index)


def excess_return(
    returns: ArrayLike, benchmark: ArrayLike, periods_per_year: float | None = None
) -> float | np.ndarray | pd.Series:
    """CAGR(r) - CAGR(b) over the common timestamps."""
    ppy = annualisation(returns, periods_per_year)
    r, b, _ = align(returns, benchmark)
    return _answer(np.asarray(cagr(r, ppy)) - np.asarray(cagr(b, ppy)), returns)


def tracking_error(
    returns: ArrayLike, benchmark: ArrayLike, periods_per_year: float | None = None
) -> float | np.ndarray | pd.Series:
    """std(r - b, ddof=1) * sqrt(periods_per_year) on the common timestamps. < 2 pairs: NaN."""
    ppy = annualisation(returns, periods_per_year)
    r, b, _ = align(returns, benchmark)
    return _answer(_std(r - b) * math.sqrt(ppy), returns)


def information_ratio(
    returns: ArrayLike, benchmark: ArrayLike, periods_per_year: float | None = None
) -> float | np.ndarray | pd.Series:
    """mean(r - b) / std(r - b, ddof=1) * sqrt(periods_per_year) (annualised; empyrical's
    `excess_sharpe` is the same without the sqrt). < 2 pairs: NaN."""
    ppy = annualisation(returns, periods_per_year)
    r, b, _ = align(returns, benchmark)
    active = r - b
    ratio = _ratio(_mean(active), _std(active)) * math.sqrt(ppy)
    return _answer(np.where(_count(active) >= 2, ratio, np.nan), returns)


def beta(returns: ArrayLike, benchmark: ArrayLike, risk_free: float = 0.0) -> float | np.ndarray | pd.Series:
    """cov(r, b) / var(b) over the common timestamps (OLS slope). < 2 pairs or flat benchmark: NaN."""
    r, b, _ = align(returns, benchmark)
    r, b = r - risk_free, b - risk_free
    b_centred = np.where(np.isfinite(b), b - _mean(b), np.nan)
    r_centred = r - _mean(r)
    covariance = _mean(b_centred * r_centred)
    variance = _mean(b_centred**2)
    result = np.where((_count(b) >= 2) & (variance > 1e-30), _ratio(covariance, variance), np.nan)
    return _answer(result, returns)


def alpha(
    returns: ArrayLike, benchmark: ArrayLike, periods_per_year: float | None = None, risk_free: float = 0.0
) -> float | np.ndarray | pd.Series:
    """Annualised Jensen's alpha: (1 + mean(r - rf - beta (b - rf))) ** periods_per_year - 1
    (empyrical's compounding convention). < 2 pairs: NaN."""
    ppy = annualisation(returns, periods_per_year)
    r, b, _ = align(returns, benchmark)
    slope = np.asarray(beta(r, b, risk_free))
    residual = (r - risk_free) - slope * (b - risk_free)
    with np.errstate(invalid="ignore"):
        result = (1.0 + _mean(residual)) ** ppy - 1.0
    return _answer(np.where(_count(residual) >= 2, result, np.nan), returns)


# --------------------------------------------------------------------------------------------
# signal quality: information coefficient by horizon
# --------------------------------------------------------------------------------------------
def _wide(frame: pd.Series | pd.DataFrame, name: str) -> pd.DataFrame:
    """Long (symbol, timestamp) Series -> wide (timestamp x symbol); a wide DataFrame passes through."""
    if isinstance(frame, pd.Series):
        if not isinstance(frame.index, pd.MultiIndex) or "symbol" not in frame.index.names:
            raise ValueError(f"{name}: a Series needs the panel's MultiIndex (symbol, timestamp)")
        return frame.unstack("symbol")
    if isinstance(frame, pd.DataFrame):
        return frame
    raise ValueError(
        f"{name} must be a wide DataFrame (timestamp x symbol) or a long Series, got {type(frame).__name__}"
    )


def _rowwise_corr(x: np.ndarray, y: np.ndarray, min_count: int) -> np.ndarray:
    """Pearson correlation of each row of x with the same row of y over pairs both finite."""
    both = np.isfinite(x) & np.isfinite(y)
    n = both.sum(axis=1)
    x = np.where(both, x, 0.0)
    y = np.where(both, y, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        xc = np.where(both, x - x.sum(axis=1, keepdims=True) / n[:, None], 0.0)
        yc = np.where(both, y - y.sum(axis=1, keepdims=True) / n[:, None], 0.0)
        denom = np.sqrt((xc**2).sum(axis=1) * (yc**2).sum(axis=1))
        corr = (xc * yc).sum(axis=1) / denom
    return np.where((n >= min_count) & (denom > 0), corr, np.nan)


def cross_sectional_ic(
    signal: pd.Series | pd.DataFrame,
    target: pd.Series | pd.DataFrame,
    method: Literal["pearson", "spearman"] = "pearson",
    min_assets: int = 3,
) -> pd.Series:
    """IC per timestamp: the correlation across symbols between the signal at t and its target.

    signal, target: wide frames (timestamp x symbol) or long Series on the panel's (symbol,
    timestamp) index, aligned by an inner join on timestamps and symbols. The target must be the
    forward return the signal at t predicts (e.g. close[t+h]/close[t] - 1), stored at t.
    method "spearman" gives the rank IC. A timestamp with fewer than `min_assets` finite pairs,
    or no dispersion, is NaN.
    """
    s, y = _wide(signal, "signal"), _wide(target, "target")
    s, y = s.align(y, join="inner")
    if method == "spearman":
        both = s.notna() & y.notna()
        s, y = s.where(both).rank(axis=1), y.where(both).rank(axis=1)
    elif method != "pearson":
        raise ValueError(f"method must be 'pearson' or 'spearman', got {method!r}")
    corr = _rowwise_corr(s.to_numpy(np.float64), y.to_numpy(np.float64), min_assets)
    return pd.Series(corr, index=s.index, name=f"{method}_ic")


def pooled_ic(
    signal: pd.Series | pd.DataFrame,
    target: pd.Series | pd.DataFrame,
    method: Literal["pearson", "spearman"] = "pearson",
) -> float:
    """One correlation over every finite (symbol, timestamp) pair together. < 3 pairs: NaN.

    Pooling mixes symbols: a signal that only ranks volatile symbols apart from calm ones can score
    here without predicting any one symbol; read it next to the per-timestamp IC.
    """
    s, y = _wide(signal, "signal"), _wide(target, "target")
    s, y = s.align(y, join="inner")
    x, z = s.to_numpy(np.float64).ravel(), y.to_numpy(np.float64).ravel()
    both = np.isfinite(x) & np.isfinite(z)
    x, z = x[both], z[both]
    if method == "spearman":
        x, z = pd.Series(x).rank().to_numpy(), pd.Series(z).rank().to_numpy()
    elif method != "pearson":
        raise ValueError(f"method must be 'pearson' or 'spearman', got {method!r}")
    return float(_rowwise_corr(x[None, :], z[None, :], 3)[0])


def ic_by_horizon(forecasts: pd.DataFrame, targets: pd.DataFrame, min_assets: int = 3) -> pd.DataFrame:
    """IC, rank IC and ICIR for each horizon column.

    forecasts, targets: frames on the panel's long (symbol, timestamp) index with one column per
    horizon and the same column names (target column h = the forward return over h bars, at t).
    Per horizon: `ic`, `rank_ic` (means of the per-timestamp cross-sectional ICs), `icir`,
    `rank_icir` (mean / std, ddof 1, of those series; per period, not annualised),
    `n_timestamps` (cross-sections with at least `min_assets` pairs), `pooled_ic` and
    `pooled_rank_ic` (every (symbol, timestamp) pair together).
    """
    missing = [c for c in forecasts.columns if c not in targets.columns]
    if missing:
        raise ValueError(f"targets have no column for forecast horizon(s) {missing}; name both frames' columns alike")
    rows = {}
    for horizon in forecasts.columns:  # a handful of horizons, not rows
        ic = cross_sectional_ic(forecasts[horizon], targets[horizon], "pearson", min_assets).dropna()
        ric = cross_sectional_ic(forecasts[horizon], targets[horizon], "spearman", min_assets).dropna()
        rows[horizon] = {
            "ic": ic.mean() if len(ic) else np.nan,
            "icir": float(_ratio(_mean(ic.to_numpy()), _std(ic.to_numpy()))),
            "rank_ic": ric.mean() if len(ric) else np.nan,
            "rank_icir": float(_ratio(_mean(ric.to_numpy()), _std(ric.to_numpy()))),
            "n_timestamps": len(ic),
            "pooled_ic": pooled_ic(forecasts[horizon], targets[horizon], "pearson"),
            "pooled_rank_ic": pooled_ic(forecasts[horizon], targets[horizon], "spearman"),
        }
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis("horizon")


# --------------------------------------------------------------------------------------------
# multiple testing: probabilistic and deflated Sharpe ratio (Bailey & Lopez de Prado, 2014)
# --------------------------------------------------------------------------------------------
def _sharpe_moments(returns: ArrayLike) -> tuple[float, int, float, float]:
    """(per-period Sharpe with ddof 1, n, skewness, kurtosis (not excess)) of the non-NaN returns."""
    r = _values(returns)
    if r.ndim != 1:
        raise ValueError("the probabilistic/deflated Sharpe ratio takes one strategy's returns (1-D)")
    r = r[np.isfinite(r)]
    n = len(r)
    if n < 3:
        return np.nan, n, np.nan, np.nan
    centred = r - r.mean()
    m2 = np.mean(centred**2)
    sd = r.std(ddof=1)
    if m2 == 0 or sd == 0:
        return np.nan, n, np.nan, np.nan
    return float(r.mean() / sd), n, float(np.mean(centred**3) / m2**1.5), float(np.mean(centred**4) / m2**2)


def _psr(sharpe: float, n: int, skew: float, kurt: float, benchmark: float) -> float:
    variance = 1.0 - skew * sharpe + (kurt - 1.0) / 4.0 * sharpe**2
    if not (np.isfinite(variance) and variance > 0 and n >= 3):
        return np.nan
    return _NORMAL.cdf((sharpe - benchmark) * math.sqrt(n - 1) / math.sqrt(variance))


def probabilistic_sharpe_ratio(returns: ArrayLike, benchmark_sharpe: float = 0.0) -> float:
    """P(true Sharpe > benchmark_sharpe) given the observed one, its length, skew and kurtosis.

    Sharpe ratios here are per period (not annualised): divide an annual benchmark by
    sqrt(periods_per_year). Fewer than 3 returns or zero dispersion: NaN.
    """
    sharpe, n, skew, kurt = _sharpe_moments(returns)
    return _psr(sharpe, n, skew, kurt, benchmark_sharpe)


def expected_max_sharpe(n_trials: int, sharpe_variance: float, mean_sharpe: float = 0.0) -> float:
    """Expected maximum of `n_trials` independent Sharpe estimates under the null (Bailey et al.):
    mean + sqrt(V) ((1 - g) Z^-1(1 - 1/N) + g Z^-1(1 - 1/(N e))), g the Euler-Mascheroni constant.
    One trial: the mean (no selection happened)."""
    if n_trials < 1:
        raise ValueError(f"n_trials must be >= 1, got {n_trials}")
    if sharpe_variance < 0:
        raise ValueError(f"sharpe_variance must be >= 0, got {sharpe_variance}")
    if n_trials == 1:
        return float(mean_sharpe)
    z1 = _NORMAL.inv_cdf(1.0 - 1.0 / n_trials)
    z2 = _NORMAL.inv_cdf(1.0 - 1.0 / (n_trials * math.e))
    return float(mean_sharpe + math.sqrt(sharpe_variance) * ((1 - EULER_GAMMA) * z1 + EULER_GAMMA * z2))


def deflated_sharpe_ratio(returns: ArrayLike, n_trials: int, sharpe_variance: float) -> float:
    """Probability that the selected strategy's true Sharpe beats the best of `n_trials` lucky ones.

    returns:         per-period returns of the configuration that was selected.
    n_trials:        how many configurations were tried (independent trials, or an estimate of
                     their effective number).
    sharpe_variance: variance across the trials' *per-period* Sharpe ratios (e.g.
                     np.var(trial_sharpes, ddof=1)); an annualised variance divided by periods_per_year.
    DSR = PSR(SR0) with SR0 = expected_max_sharpe(n_trials, sharpe_variance). One trial: PSR(0).
    """
    benchmark = expected_max_sharpe(n_trials, sharpe_variance)
    return probabilistic_sharpe_ratio(returns, benchmark)


# --------------------------------------------------------------------------------------------
# block bootstrap confidence intervals
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ConfidenceInterval:
    estimate: float  # the statistic on the original series
    low: float
    high: float
    confidence: float
    block_length: int
    n_resamples: int
    method: str


def bootstrap_indices(
    n: int, n_resamples: int, block_length: int, method: Literal["stationary", "moving"], rng: np.random.Generator
) -> np.ndarray:
    """Resampled time indices, shape (n, n_resamples): runs of consecutive bars (wrapping around).

    stationary (Politis & Romano): each bar starts a new block with probability 1 / block_length
    (block lengths geometric with that mean). moving (Kunsch): blocks of exactly block_length bars
    starting uniformly in [0, n - block_length], concatenated and cut to n.
    """
    if n < 1 or block_length < 1:
        raise ValueError(f"need n >= 1 and block_length >= 1, got n={n}, block_length={block_length}")
    steps = np.arange(n)[:, None]  # (n, 1)
    if method == "stationary":
        new_block = rng.random((n, n_resamples)) < 1.0 / block_length
        new_block[0] = True
        starts = rng.integers(0, n, (n, n_resamples))
        block_start_step = np.maximum.accumulate(np.where(new_block, steps, 0), axis=0)  # (n, R)
        start_value = np.take_along_axis(starts, block_start_step, axis=0)
        return (start_value + steps - block_start_step) % n
    if method == "moving":
        if block_length > n:
            raise ValueError(f"block_length {block_length} is longer than the series ({n} bars)")
        n_blocks = -(-n // block_length)
        starts = rng.integers(0, n - block_length + 1, (n_blocks, n_resamples))  # (K, R)
        block = steps // block_length  # (n, 1)
        return np.take_along_axis(starts, np.broadcast_to(block, (n, n_resamples)), axis=0) + steps % block_length
    raise ValueError(f"method must be 'stationary' or 'moving', got {method!r}")


def block_bootstrap_ci(
    returns: ArrayLike,
    statistic: Callable[[np.ndarray], np.ndarray | float],
    *,
    confidence: float = 0.95,
    n_resamples: int = 1000,
    block_length: int | None = None,
    method: Literal["stationary", "moving"] = "stationary",
    seed: int = 0,
) -> ConfidenceInterval:
    """Percentile confidence interval of `statistic` under a block bootstrap of the periods.

    statistic: reduces along axis 0 and accepts a 2-D (n, k) matrix of k resampled series at once
               (every metric in this module does, e.g. ``lambda x: sharpe_ratio(x, 35040)``).
    block_length: mean (stationary) or fixed (moving) block length in periods; None: round(n ** (1/3)),
               the usual order for variance-type statistics. Blocks keep serial dependence
               (volatility clustering) that an i.i.d. bootstrap would destroy.
    Fewer than 2 non-NaN periods: a ValueError.
    """
    r = _values(returns)
    if r.ndim != 1:
        raise ValueError("block_bootstrap_ci takes one series (1-D)")
    r = r[np.isfinite(r)]
    n = len(r)
    if n < 2:
        raise ValueError(f"need at least 2 non-NaN periods to bootstrap, got {n}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")
    length = max(1, round(n ** (1 / 3))) if block_length is None else int(block_length)
    rng = np.random.default_rng(seed)
    chunk = max(1, min(n_resamples, 4_000_000 // n))  # bound memory to ~32 MB per chunk
    stats = []
    for done in range(0, n_resamples, chunk):  # chunks of resamples, not rows
        k = min(chunk, n_resamples - done)
        stats.append(np.asarray(statistic(r[bootstrap_indices(n, k, length, method, rng)]), dtype=np.float64))
    values = np.concatenate(stats)
    tail = (1.0 - confidence) / 2.0
    low, high = np.nanquantile(values, [tail, 1.0 - tail])
    return ConfidenceInterval(
        estimate=float(np.asarray(statistic(r))),
        low=float(low),
        high=float(high),
        confidence=confidence,
        block_length=length,
        n_resamples=n_resamples,
        method=method,
    )


# --------------------------------------------------------------------------------------------
# rolling: one wrapper for every metric
# --------------------------------------------------------------------------------------------
def rolling(metric: Callable, window: int, *inputs: ArrayLike, **kwargs) -> pd.Series | np.ndarray:
    """Any metric above over a trailing window: value at t uses periods t - window + 1 .. t.

    inputs: one series (unary metrics) or two (returns, benchmark for beta, alpha, ...), 1-D;
    pandas inputs are aligned by timestamp first. The metric is evaluated once on the (window, n)
    matrix of all windows. The first window - 1 values are NaN. When the metric takes
    `periods_per_year` and none is given, it is inferred once from the first input's index.
    """
    if not inputs:
        raise ValueError("rolling needs at least one input series")
    if window < 1:
        raise ValueError(f"window must be >= 1, got {window}")
    first = inputs[0]
    if "periods_per_year" in inspect.signature(metric).parameters and kwargs.get("periods_per_year") is None:
        kwargs["periods_per_year"] = annualisation(first, None)
    index = getattr(first, "index", None)
    if len(inputs) == 2:
        a, b, joined = align(inputs[0], inputs[1])
        arrays, index = [a, b], joined if joined is not None else index
    else:
        arrays = [_values(x) for x in inputs]
    if any(a.ndim != 1 for a in arrays):
        raise ValueError("rolling takes 1-D series")
    n = len(arrays[0])
    out = np.full(n, np.nan)
    if n >= window:
        windows = [sliding_window_view(a, window).T for a in arrays]  # each (window, n - window + 1), a view
        out[window - 1 :] = np.asarray(metric(*windows, **kwargs), dtype=np.float64)
    if index is not None:
        return pd.Series(out, index=index, name=getattr(metric, "__name__", "metric"))
    return out


# --------------------------------------------------------------------------------------------
# one-stop summary for reports
# --------------------------------------------------------------------------------------------
def performance_summary(
    returns: pd.Series | np.ndarray,
    *,
    periods_per_year: float | None = None,
    positions: ArrayLike | None = None,
    benchmark: pd.Series | np.ndarray | None = None,
) -> pd.Series:
    """Every headline metric of one strategy's per-period returns as a named Series.

    positions (optional): the positions behind the returns (time x symbols) for turnover/exposure,
    averaged over symbols. benchmark (optional): benchmark per-period returns, aligned by timestamp.
    """
    ppy = annualisation(returns, periods_per_year)
    out = {
        "periods": int(_count(_values(returns))),
        "periods_per_year": ppy,
        "total_return": total_return(returns),
        "cagr": cagr(returns, ppy),
        "annual_volatility": annual_volatility(returns, ppy),
        "sharpe": sharpe_ratio(returns, ppy),
        "sortino": sortino_ratio(returns, ppy),
        "calmar": calmar_ratio(returns, ppy),
        "max_drawdown": max_drawdown(returns),
        "max_drawdown_duration": max_drawdown_duration(returns),
        "ulcer_index": ulcer_index(returns),
        "value_at_risk_5": value_at_risk(returns, 0.05),
        "expected_shortfall_5": expected_shortfall(returns, 0.05),
        "hit_rate": hit_rate(returns),
        "profit_factor": profit_factor(returns),
        "probabilistic_sharpe": probabilistic_sharpe_ratio(returns),
    }
    if positions is not None:
        out["turnover"] = float(np.mean(turnover(positions)))
        out["exposure"] = float(np.nanmean(np.asarray(exposure(positions), dtype=np.float64)))
    if benchmark is not None:
        out.update(
            excess_return=excess_return(returns, benchmark, ppy),
            tracking_error=tracking_error(returns, benchmark, ppy),
            information_ratio=information_ratio(returns, benchmark, ppy),
            beta=beta(returns, benchmark),
            alpha=alpha(returns, benchmark, ppy),
        )
    return pd.Series(out, dtype=np.float64)
