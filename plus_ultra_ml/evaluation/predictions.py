"""The predictions frame: the one format every out-of-sample producer writes and every report reads.

Producers: `plus-ultra predict` (serving/offline.py), every walk-forward fold (experiments/fold.py).
Reader: evaluation/report.py. One row per (symbol, timestamp) decision bar, on the panel's index:

    fold, seed             optional: which fold / model seed made the row (default "all" / 0)
    next_return            close[t+1] / close[t] - 1, what a position held from bar t earns
    position__<strategy>   positions in [-1, 1] of each strategy (model, ppo, buy_and_hold, ...)
    forecast__h<k>         optional forecasts of the k-bar forward log return (the model's)
    signal__<strategy>     optional per-bar forecast behind another strategy's position (baselines:
                           ridge / lightgbm the vol-scaled next-bar log return, momentum /
                           mean_reversion +/- the trailing log return); any units: the report scores
                           it by IC against target__h1, which is scale-free
    target__h<k>           optional realised k-bar forward log returns (for IC)
    regime__<name>         optional regime labels at bar t (for attribution)
    sector                 optional, the symbol's assets.sector (a universe's per-sector attribution,
                           evaluation/cross_section.py); NaN where unknown
    reference__<name>      optional positions of a reference that is not a strategy (the fixture's
                           oracle, evaluation.oracle): scored on the same rows as the strategies,
                           and kept out of every ranking, trial count, paired comparison and gate
    reference_score__<name> optional per-bar score of a reference (the fixture's true expected next
                           return): on a universe the cross-sectional section scores it beside the
                           strategies' scores (the IC ceiling on the same bars), out of every ranking
    raw__ppo, ppo_kept     optional, walk-forward folds with PPO: PPO's own positions and whether the
                           validation-only selection (rl/select.py) kept them (1) or the supervised
                           head (0); position__ppo is the selected policy's. Not a strategy: only the
                           report's PPO selection section reads them

``predictions.attrs["periods_per_year"]`` (`PERIODS_PER_YEAR`): the bars per year of the trading
calendars of the panel the rows come from (data.calendar.panel_periods_per_year), set by the
producer; it travels inside the parquet file and is what the report annualises with.
"""

from __future__ import annotations

import pandas as pd

from plus_ultra_ml.errors import PlusUltraError

POSITION = "position__"
FORECAST = "forecast__"
SIGNAL = "signal__"
TARGET = "target__"
REGIME = "regime__"
PERIODS_PER_YEAR = "periods_per_year"  # predictions.attrs key: the panel calendars' bars per year
RAW = "raw__"  # a strategy's positions before a selection replaced them (raw__ppo)
PPO_KEPT = "ppo_kept"
REFERENCE = "reference__"
REFERENCE_SCORE = "reference_score__"
SECTOR = "sector"


def strategies_of(predictions: pd.DataFrame) -> list[str]:
    """The strategy names of the `position__<strategy>` columns, in column order."""
    return [c[len(POSITION):] for c in predictions.columns if c.startswith(POSITION)]


def references_of(predictions: pd.DataFrame) -> list[str]:
    """The names of the `reference__<name>` columns (positions that are references, not strategies)."""
    return [c[len(REFERENCE):] for c in predictions.columns if c.startswith(REFERENCE)]


def reference_scores_of(predictions: pd.DataFrame) -> list[str]:
    """The names of the `reference_score__<name>` columns (per-bar scores of references, not strategies)."""
    return [c[len(REFERENCE_SCORE):] for c in predictions.columns if c.startswith(REFERENCE_SCORE)]


def signals_of(predictions: pd.DataFrame) -> list[str]:
    """The strategy names of the `signal__<strategy>` columns, in column order."""
    return [c[len(SIGNAL):] for c in predictions.columns if c.startswith(SIGNAL)]


def with_defaults(predictions: pd.DataFrame) -> pd.DataFrame:
    """A sorted copy with the optional fold / seed columns filled in; errors if a required column is missing."""
    if not strategies_of(predictions):
        raise PlusUltraError(f"predictions have no '{POSITION}<strategy>' column; columns: {list(predictions.columns)}")
    if "next_return" not in predictions:
        raise PlusUltraError("predictions need a next_return column (close[t+1] / close[t] - 1)")
    frame = predictions.copy()
    if "fold" not in frame:
        frame["fold"] = "all"
    if "seed" not in frame:
        frame["seed"] = 0
    return frame.sort_index()
