"""The report's portfolio strategies: each forecaster's scores through the portfolio room, booked as weights.

For each construction of `portfolio.constructions` (`construction` when long_short or long_only_topk, then
each of `portfolio.compare`, so long-short and long-only books stand side by side), every strategy that has a per-bar score in
the predictions frame (the model's forecast__h1, each signal__<strategy>) gets a second strategy,
``<strategy>@<construction>`` (`weights_strategy`), whose ``position__`` column holds portfolio weights
built by `plus_ultra_ml.portfolio.portfolio_weights` from those scores, per (fold, seed) path: each
fold's book enters flat at the fold's first bar, as every strategy's does. A name is listed at a bar
when its row exists and its score is finite; rows exist only where the producer scored the name.

Those strategies are booked as weights through the one PnL road, `evaluation.backtest.portfolio_pnl(...,
book="weights")`: net[t] = sum_i w[t,i] r[t+1,i] - costs on |w[t,i] - w[t-1,i]| and |w[t,i]|, a name's
missing next return earning nothing, so an exit is charged at the bar after its last row. With several
seeds the book of each seed is scored and the returns averaged per bar (an equal split of capital
between the seed models, as for the sleeves).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from plus_ultra_ml.config import CostConfig, ExperimentConfig, PortfolioConfig
from plus_ultra_ml.data.store import database_sectors
from plus_ultra_ml.evaluation.backtest import portfolio_pnl
from plus_ultra_ml.evaluation.predictions import FORECAST, POSITION, SIGNAL, signals_of, strategies_of
from plus_ultra_ml.portfolio import portfolio_weights

WEIGHTS_MARK = "@"  # <strategy>@<construction>: a strategy whose positions are portfolio weights
MODEL = "model"


def weights_strategy(source: str, construction: str) -> str:
    """The name of the portfolio strategy built from `source`'s scores."""
    return f"{source}{WEIGHTS_MARK}{construction}"


def is_weights(strategy: str) -> bool:
    """Whether a strategy's positions are portfolio weights (booked as a sum) rather than sleeves (a mean)."""
    return WEIGHTS_MARK in strategy


def score_columns(frame: pd.DataFrame) -> dict[str, str]:
    """strategy -> the column of its per-bar score: the model's forecast__h1, each signal__<strategy>."""
    columns = {s: SIGNAL + s for s in signals_of(frame) if not is_weights(s)}
    if FORECAST + "h1" in frame and POSITION + MODEL in frame:
        columns = {MODEL: FORECAST + "h1", **columns}
    return columns


def with_portfolio_strategies(frame: pd.DataFrame, cfg: PortfolioConfig, *, sectors: Mapping[str, str] | None,
                              periods_per_year: float) -> tuple[pd.DataFrame, list[str]]:
    """`frame` (with_defaults applied) plus a ``position__<strategy>@<construction>`` column of weights for
    every scored strategy and construction of `cfg.constructions`, and the names added. per_symbol with
    nothing to compare: the frame unchanged, nothing added."""
    if not cfg.constructions:
        return frame, []
    sources = score_columns(frame)
    paths = list(frame.groupby(["fold", "seed"], sort=False).indices.values())
    out = frame.copy()
    added = []
    for construction in cfg.constructions:
        variant = cfg.variant(construction)
        for source, column in sources.items():
            name = weights_strategy(source, construction)
            weights = pd.Series(np.nan, index=frame.index)
            for rows in paths:
                part = frame.iloc[rows]  # one (fold, seed) path: unique (symbol, timestamp) rows
                w = portfolio_weights(part[column], variant, sectors=sectors,
                                      next_returns=part["next_return"] if variant.target_volatility else None,
                                      periods_per_year=periods_per_year)
                weights.iloc[rows] = w.to_numpy()
            out[POSITION + name] = weights.to_numpy()
            added.append(name)
    return out, added


def weights_returns(frame: pd.DataFrame, costs: CostConfig) -> pd.DataFrame:
    """(timestamp x weights strategy) net portfolio returns: per (fold, seed) `portfolio_pnl(book="weights")`,
    then the mean over seeds per bar. Empty frame when no strategy is booked as weights."""
    names = [s for s in strategies_of(frame) if is_weights(s)]
    if not names:
        return pd.DataFrame()
    pieces = []
    for (_, seed), part in frame.groupby(["fold", "seed"], sort=False):
        returns = pd.DataFrame({s: portfolio_pnl(part[POSITION + s], part["next_return"], costs, book="weights")
                                for s in names})
        pieces.append(returns.assign(seed=seed).set_index("seed", append=True))
    by_seed = pd.concat(pieces)
    return by_seed.groupby(level="timestamp").mean().sort_index()


def report_sectors(cfg: ExperimentConfig, db_path: str | Path | None = None) -> dict[str, str] | None:
    """symbol -> assets.sector of the experiment's database when its portfolio is sector neutral, else None
    (the report's `sectors` argument; the database is read only then)."""
    if not cfg.portfolio.sector_neutral:
        return None
    return database_sectors(db_path or cfg.data.db_path, cfg.data.busy_timeout_s)
