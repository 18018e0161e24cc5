"""Cross-sectional evaluation: how well a score ranks names against each other at each date.

What the field reports for a universe (Qlib's users, the factor literature): per-date IC, rank IC
and ICIR; quantile portfolios (decile by default) of the score at each date, their mean next-bar
returns, the top-minus-bottom spread with its Sharpe, and how much the extreme buckets turn over;
and, with sectors, where the IC and the spread come from.

Inputs (shapes): `scores` a frame on the panel's long (symbol, timestamp) index, one column per
scored strategy (the model's forecast__h1, every signal__<strategy>: any units, every number here
is scale-free in the score); `next_return` on the same index, close[t+1] / close[t] - 1 (what a
position held from bar t earns); `sectors` optional, symbol -> sector name (assets.sector).

Definitions (per date t, over the names with a finite score and next return at t)
    per-date IC / rank IC   `metrics.cross_sectional_ic` (Pearson / Spearman) of the score at t with
                            the next return; ICIR = mean / std (ddof 1) of that series, per date,
                            not annualised; the interval is a 95% stationary block bootstrap of the
                            mean over dates (`metrics.block_bootstrap_ci`).
    quantile bucket         with n names and q buckets, a name of average rank r (1..n) is in bucket
                            floor((r - 1) q / n) (0 = lowest score, q - 1 = highest); a date with
                            fewer than q names has no buckets. Ties share their average rank.
    bucket return           the equal-weight mean next return of the bucket's names.
    spread                  top bucket's return minus the bottom's (a dollar-neutral long-short
                            return per unit of each leg, gross of costs); its Sharpe annualised with
                            the report's bars per year, interval as above.
    turnover                per date, the share of the top (bottom) bucket's names that were not
                            in it at the previous scored date; the mean over dates.
    sector attribution      IC per sector: the mean per-date IC within the sector's names (at
                            least `MIN_SECTOR_NAMES`). Spread contribution of sector k at t:
                            sum over top names in k of r / n_top minus the same over bottom names /
                            n_bottom; summed over sectors it is the spread at t, so the sectors'
                            mean contributions add up to the mean spread exactly.

A universe (`is_universe`): more than `symbol_summary.MANY_SYMBOLS` symbols, or at least two distinct
sectors known (the small fixture labels every symbol "synthetic": one sector is no universe). Only
then does the report lead with this; a few single series keep the report they had.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from plus_ultra_ml.errors import PlusUltraError
from plus_ultra_ml.evaluation import metrics
from plus_ultra_ml.symbol_summary import many_symbols

DEFAULT_QUANTILES = 10
MIN_SECTOR_NAMES = 3  # names a sector needs at a date for its per-date IC
BOOTSTRAP_RESAMPLES = 500


def is_universe(n_symbols: int, n_sectors: int = 0) -> bool:
    """True for a universe run: more than MANY_SYMBOLS symbols, or at least two distinct sectors."""
    return many_symbols(n_symbols) or n_sectors >= 2


def _wide(series: pd.Series) -> pd.DataFrame:
    """Long (symbol, timestamp) -> (T, N) timestamp x symbol, sorted."""
    return series.unstack("symbol").sort_index()


def quantile_buckets(score: pd.DataFrame, quantiles: int = DEFAULT_QUANTILES) -> pd.DataFrame:
    """(T, N) bucket of each name at each date (float: NaN where no score or too few names)."""
    if quantiles < 2:
        raise PlusUltraError(f"quantiles must be >= 2 (got {quantiles}); use 10 for deciles, 5 for quintiles")
    ranks = score.rank(axis=1, method="average")  # 1..n among the finite scores of the date
    n = ranks.notna().sum(axis=1).to_numpy()[:, None]
    with np.errstate(invalid="ignore", divide="ignore"):
        bucket = np.floor((ranks.to_numpy() - 1.0) * quantiles / n)
    bucket = np.where(n >= quantiles, bucket, np.nan)
    return pd.DataFrame(bucket, index=score.index, columns=score.columns)


def bucket_returns(buckets: pd.DataFrame, returns: pd.DataFrame, quantiles: int) -> pd.DataFrame:
    """(T, q) equal-weight mean next return of each bucket's names; NaN for an empty bucket."""
    b, r = buckets.to_numpy(), returns.reindex_like(buckets).to_numpy(np.float64)
    out = np.full((len(buckets), quantiles), np.nan)
    for k in range(quantiles):  # q buckets, not rows
        member = (b == k) & np.isfinite(r)
        count = member.sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            out[:, k] = np.where(member, r, 0.0).sum(axis=1) / np.where(count > 0, count, np.nan)
    return pd.DataFrame(out, index=buckets.index, columns=[f"q{k + 1}" for k in range(quantiles)])


def bucket_turnover(buckets: pd.DataFrame, k: int) -> pd.Series:
    """Per date: the share of bucket k's names not in bucket k at the previous date (NaN at the first)."""
    member = (buckets.to_numpy() == k)
    previous = np.vstack([np.zeros((1, member.shape[1]), dtype=bool), member[:-1]])
    size = member.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        share = (member & ~previous).sum(axis=1) / np.where(size > 0, size, np.nan)
    had = np.r_[False, member[:-1].any(axis=1)]
    return pd.Series(np.where(had, share, np.nan), index=buckets.index)


def sector_contributions(buckets: pd.DataFrame, returns: pd.DataFrame, sector_of: pd.Series,
                         quantiles: int) -> pd.DataFrame:
    """(T, sectors) each sector's part of the spread at each date; rows sum to the spread (NaN rows where none)."""
    b, r = buckets.to_numpy(), returns.reindex_like(buckets).to_numpy(np.float64)
    top, bottom = (b == quantiles - 1) & np.isfinite(r), (b == 0) & np.isfinite(r)
    n_top, n_bottom = top.sum(axis=1, keepdims=True), bottom.sum(axis=1, keepdims=True)
    ok = (n_top[:, 0] > 0) & (n_bottom[:, 0] > 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        per_name = np.where(top, r, 0.0) / n_top - np.where(bottom, r, 0.0) / n_bottom  # (T, N)
    labels = sector_of.reindex(buckets.columns).fillna("unknown").astype(str).to_numpy()
    out = {s: np.where(ok, per_name[:, labels == s].sum(axis=1), np.nan) for s in sorted(set(labels))}
    return pd.DataFrame(out, index=buckets.index)


def _mean_ci(values: pd.Series, seed: int) -> tuple[float, float, float]:
    v = values.dropna().to_numpy()
    if len(v) < 3:
        return (float(v.mean()) if len(v) else np.nan), np.nan, np.nan
    ci = metrics.block_bootstrap_ci(v, lambda x: np.mean(x, axis=0), n_resamples=BOOTSTRAP_RESAMPLES, seed=seed)
    return ci.estimate, ci.low, ci.high


def _ir(values: pd.Series) -> float:
    v = values.dropna()
    return float(v.mean() / v.std(ddof=1)) if len(v) > 2 and v.std(ddof=1) > 0 else np.nan


@dataclass(frozen=True)
class CrossSection:
    """The cross-sectional evaluation of every scored strategy (module docstring for definitions)."""

    quantiles: int
    ic: pd.DataFrame  # strategy x (ic, ic_low, ic_high, icir, rank_ic, rank_ic_low, rank_ic_high, rank_icir, dates)
    buckets: pd.DataFrame  # strategy x (q1..qQ mean next return, spread, spread_low, spread_high, spread_sharpe,
    #                        spread_sharpe_low, spread_sharpe_high, top_turnover, bottom_turnover, dates)
    spread: pd.DataFrame  # timestamp x strategy: the top-minus-bottom return per date
    sectors: pd.DataFrame  # sector x (<strategy>:ic, <strategy>:spread) (empty without sectors)


def evaluate_cross_section(scores: pd.DataFrame, next_return: pd.Series, periods_per_year: float, *,
                           quantiles: int = DEFAULT_QUANTILES, sectors: pd.Series | None = None,
                           seed: int = 0) -> CrossSection:
    """Per-date IC, quantile portfolios, spread, turnover and (with `sectors`) sector attribution per score column."""
    if not scores.index.equals(next_return.index):
        next_return = next_return.reindex(scores.index)
    returns = _wide(next_return.astype(np.float64))
    ic_rows, bucket_rows, spreads, sector_cols = {}, {}, {}, {}
    for name in scores.columns:  # a handful of strategies, not rows
        score = _wide(scores[name].astype(np.float64)).reindex_like(returns)
        score = score.where(returns.notna())
        ic = metrics.cross_sectional_ic(score, returns, "pearson")
        ric = metrics.cross_sectional_ic(score, returns, "spearman")
        (m, lo, hi), (rm, rlo, rhi) = _mean_ci(ic, seed), _mean_ci(ric, seed)
        ic_rows[name] = {"ic": m, "ic_low": lo, "ic_high": hi, "icir": _ir(ic), "rank_ic": rm, "rank_ic_low": rlo,
                         "rank_ic_high": rhi, "rank_icir": _ir(ric), "dates": float(ic.notna().sum())}
        buckets = quantile_buckets(score, quantiles)
        per_bucket = bucket_returns(buckets, returns, quantiles)
        spread = (per_bucket.iloc[:, -1] - per_bucket.iloc[:, 0]).rename(name)
        spreads[name] = spread
        s_mean, s_lo, s_hi = _mean_ci(spread, seed)
        row = {**per_bucket.mean().to_dict(), "spread": s_mean, "spread_low": s_lo, "spread_high": s_hi}
        valid = spread.dropna().to_numpy()
        if len(valid) >= 3 and valid.std() > 0:
            ci = metrics.block_bootstrap_ci(valid, lambda x: metrics.sharpe_ratio(x, periods_per_year),
                                            n_resamples=BOOTSTRAP_RESAMPLES, seed=seed)
            row.update(spread_sharpe=ci.estimate, spread_sharpe_low=ci.low, spread_sharpe_high=ci.high)
        row.update(top_turnover=float(bucket_turnover(buckets, quantiles - 1).mean()),
                   bottom_turnover=float(bucket_turnover(buckets, 0).mean()), dates=float(spread.notna().sum()))
        bucket_rows[name] = row
        if sectors is not None:
            sector_of = sectors.reindex(returns.columns)
            for sector in sorted(sector_of.dropna().astype(str).unique()):
                names = sector_of.index[sector_of.astype(str).to_numpy() == sector]
                inside = metrics.cross_sectional_ic(score[names], returns[names], "pearson", MIN_SECTOR_NAMES)
                sector_cols.setdefault(f"{name}:ic", {})[sector] = float(inside.mean())
            contribution = sector_contributions(buckets, returns, sector_of, quantiles).mean()
            for sector, value in contribution.items():
                sector_cols.setdefault(f"{name}:spread", {})[sector] = float(value)
    columns = [f"q{k + 1}" for k in range(quantiles)] + ["spread", "spread_low", "spread_high", "spread_sharpe",
                                                          "spread_sharpe_low", "spread_sharpe_high", "top_turnover",
                                                          "bottom_turnover", "dates"]
    return CrossSection(
        quantiles=quantiles,
        ic=pd.DataFrame.from_dict(ic_rows, orient="index").rename_axis("strategy"),
        buckets=pd.DataFrame.from_dict(bucket_rows, orient="index").reindex(columns=columns).rename_axis("strategy"),
        spread=pd.DataFrame(spreads).sort_index(),
        sectors=pd.DataFrame(sector_cols).rename_axis("sector"),
    )
