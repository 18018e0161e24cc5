"""Per-bar scores -> portfolio weights (T, N): the walk over bars that every consumer calls.

Inputs (T bars, N names):
    scores        (T, N) any units, higher = better next-bar return relative to the others; NaN where
                  the name is not listed or has no score at that bar (it then gets weight 0).
    past_returns  (T, N) r[t] = close[t] / close[t-1] - 1, the return of bar t itself (known at bar t's
                  close); only for `target_volatility`. From a next-bar-return panel: `realised_returns`.
    sectors       (N,) integer sector codes; only for `sector_neutral`.
Output: weights (T, N), fractions of the whole book's capital, w[t] decided at bar t's close and held
to bar t+1's close (the project's fill convention, objectives/pnl.py).

Causal by construction: w[t] reads scores[t], past_returns[t - vol_window + 1 .. t], sectors and
w[t-1] (through the held set and the turnover limit); nothing after t. Rebalance bars are t = 0,
rebalance_every, 2 rebalance_every, ... counted from the first bar given, plus any bar where a held
name stops being listed (a forced rebalance: it must exit). Between rebalances w[t] = w[t-1]: the book
holds constant weights (it does not drift with returns). That is the convention the PnL road books:
p[t] is a fraction of capital at every bar, and the small trades that keep a weight constant as
prices move are not charged (the same convention the per-symbol sleeves use); costs are charged on
|w[t] - w[t-1]| and sum |w[t]| (holding) only.

Invariants (tests/ml/portfolio): long_short sums to 0 at every bar with >= 2 listed names (to 0 within
each sector when sector neutral), sum |w| = gross_leverage unless the cap or vol targeting lowers it;
long_only_topk sums to 1 (0 with no names; s <= 1 with vol targeting, the rest in cash) over at most
k names (k + replaced while a turnover limit binds), at most max_replace replaced per rebalance;
|w_i| <= max_weight; sum |w[t] - w[t-1]| <= max_turnover at unforced rebalances.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from plus_ultra_ml.config import PortfolioConfig
from plus_ultra_ml.errors import PlusUltraError
from plus_ultra_ml.portfolio.limits import limit_turnover, volatility_scale
from plus_ultra_ml.portfolio.rules import long_short_target, topk_dropout


def construct_weights(scores: np.ndarray, cfg: PortfolioConfig, *, sectors: np.ndarray | None = None,
                      past_returns: np.ndarray | None = None, periods_per_year: float | None = None) -> np.ndarray:
    """Weights (T, N) from scores (T, N) under `cfg` (see the module doc for every convention)."""
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim != 2:
        raise PlusUltraError(f"scores must be a (T, N) array of bars x names, got shape {s.shape}")
    if cfg.construction == "per_symbol":
        raise PlusUltraError("portfolio.construction is per_symbol: positions come from each symbol's own "
                             "forecast (evaluation.baselines.ForecastPositions), not from the portfolio room; "
                             "set portfolio.construction to long_short or long_only_topk")
    T, N = s.shape
    if cfg.sector_neutral and (sectors is None or len(sectors) != N):
        raise PlusUltraError("portfolio.sector_neutral needs one sector per name (assets.sector, "
                             "data.store.symbol_sectors); fill the assets table's sector column or set "
                             "portfolio.sector_neutral=false")
    if cfg.target_volatility is not None:
        if past_returns is None or np.shape(past_returns) != (T, N) or not periods_per_year:
            raise PlusUltraError("portfolio.target_volatility needs past_returns shaped like the scores (T, N) "
                                 "and periods_per_year; pass them or set portfolio.target_volatility=null")
        past = np.asarray(past_returns, dtype=np.float64)
    weights = np.zeros((T, N))
    previous = np.zeros(N)
    held = np.zeros(N, dtype=bool)  # long_only_topk: the names the rule holds (the target's set)
    max_replace = cfg.k if cfg.max_replace is None else cfg.max_replace
    for t in range(T):
        row = s[t]
        listed = np.isfinite(row)
        forced = bool(((previous != 0) & ~listed).any())
        if t % cfg.rebalance_every and not forced:
            weights[t] = previous
            continue
        if cfg.construction == "long_short":
            target = long_short_target(row, weighting=cfg.weighting, k=cfg.k, gross=cfg.gross_leverage,
                                       max_weight=cfg.max_weight, groups=sectors if cfg.sector_neutral else None)
        else:
            held = topk_dropout(row, held, k=cfg.k, max_replace=max_replace)
            target = np.where(held, 1.0 / max(1, int(held.sum())), 0.0)
        if cfg.target_volatility is not None:
            window = past[max(0, t - cfg.vol_window + 1): t + 1]
            target = target * volatility_scale(target, window, target_volatility=cfg.target_volatility,
                                               periods_per_year=float(periods_per_year), min_bars=cfg.vol_min_bars)
        previous = limit_turnover(target, previous, cfg.max_turnover, forced)
        weights[t] = previous
    return weights


def realised_returns(next_returns: np.ndarray) -> np.ndarray:
    """r[t] (the return of bar t, known at its close) from r[t+1] placed at bar t: a shift by one bar.

    next_returns (T, N) -> (T, N); row 0 is NaN (the bar before the first is not given).
    """
    nxt = np.asarray(next_returns, dtype=np.float64)
    out = np.full_like(nxt, np.nan)
    out[1:] = nxt[:-1]
    return out


def sector_codes(symbols: pd.Index | list[str], sectors: Mapping[str, str]) -> np.ndarray:
    """(N,) integer codes of each symbol's sector; a symbol without one is an error naming it."""
    missing = [str(s) for s in symbols if not sectors.get(str(s))]
    if missing:
        raise PlusUltraError(f"table assets, column sector: no sector for {len(missing)} symbol(s) "
                             f"({', '.join(missing[:5])}{', ...' if len(missing) > 5 else ''}); fill it or set "
                             "portfolio.sector_neutral=false")
    return pd.factorize(pd.Index([sectors[str(s)] for s in symbols]))[0].astype(np.int64)


def portfolio_weights(scores: pd.DataFrame | pd.Series, cfg: PortfolioConfig, *,
                      sectors: Mapping[str, str] | None = None, next_returns: pd.DataFrame | pd.Series | None = None,
                      periods_per_year: float | None = None) -> pd.DataFrame | pd.Series:
    """`construct_weights` on frames: the entry point of training, RL, backtest, report and serving.

    scores: wide (timestamp x symbol) or a long Series on the panel's (symbol, timestamp) index (rows
            absent = not listed). The bars must be consecutive decision bars of one path (one fold):
            the book starts flat at the first.
    sectors: symbol -> sector (data.store.symbol_sectors), for sector_neutral.
    next_returns: r[t+1] at bar t, in the same form as scores; only for target_volatility (shifted by
            one bar inside, so bar t's estimate uses returns of bars <= t).
    Returns the weights in the form given: wide (same index and columns) or long (the scores' index).
    """
    long = isinstance(scores, pd.Series)
    wide = scores.unstack("symbol").sort_index() if long else scores
    past = None
    if next_returns is not None:
        nxt = next_returns.unstack("symbol") if isinstance(next_returns, pd.Series) else next_returns
        past = realised_returns(nxt.reindex(index=wide.index, columns=wide.columns).to_numpy(np.float64))
    codes = sector_codes(wide.columns, sectors) if cfg.sector_neutral and sectors is not None else None
    w = construct_weights(wide.to_numpy(np.float64), cfg, sectors=codes, past_returns=past,
                          periods_per_year=periods_per_year)
    out = pd.DataFrame(w, index=wide.index, columns=wide.columns)
    if not long:
        return out
    stacked = out.stack(future_stack=True).swaplevel()  # (symbol, timestamp)
    return stacked.reindex(scores.index).rename("weight")
