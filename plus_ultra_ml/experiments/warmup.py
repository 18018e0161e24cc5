"""Does feature warm-up leave every fold something to train on? Checked when the plan is made, not after training starts.

A row enters training only when every feature of it is finite (`data.windows.build_windows`), and a
training window needs ``windows.window`` such rows of one symbol (consecutive; the check counts
them, a necessary condition). Warm-up makes the first rows of each symbol non-finite: the regime
codes until ``regimes.min_history`` bars have passed, every feature until its own lookback is
full, a sparse indicator wherever it is missing. When that
eats a fold's whole training segment, `check_training_rows` says so before any fold runs, naming
the setting or the feature that does it, instead of the scaler failing later with "the training
segment has no finite feature rows".
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from plus_ultra_ml.config import ExperimentConfig
from plus_ultra_ml.data.training_data import TrainingData
from plus_ultra_ml.errors import PlusUltraError
from plus_ultra_ml.evaluation.walkforward import Fold

# regime codes whose warm-up is the labeller's regimes.min_history (features/regime.py LABEL_NAMES)
REGIME_CODES = ("regime_volatility", "regime_liquidity", "regime_trend")


class WarmupError(PlusUltraError):
    """Feature warm-up leaves a fold fewer finite training rows than one training window needs."""


def _culprit(cfg: ExperimentConfig, finite: pd.DataFrame) -> tuple[str, str]:
    """(setting or feature that leaves the fewest finite training rows, the fix)."""
    counts = finite.sum()
    worst = counts[counts == counts.min()].index
    regime = [c for c in worst if c in REGIME_CODES]
    if regime:
        return (f"regimes.min_history = {cfg.regimes.min_history}",
                "lower regimes.min_history, lengthen walkforward.min_train_bars, or add history")
    names = ", ".join(map(str, list(worst)[:3])) + (f" and {len(worst) - 3} more" if len(worst) > 3 else "")
    return (f"the warm-up of feature {names}",
            "exclude it (features.exclude), lengthen walkforward.min_train_bars, or add history")


def check_training_rows(cfg: ExperimentConfig, data: TrainingData, folds: list[Fold]) -> None:
    """Raise `WarmupError` when a fold's training segment holds no symbol with `windows.window` finite feature rows.

    Every fold is checked (sliding folds each start elsewhere); in expanding mode the first is the
    one at risk. The count is of rows whose features are all finite, the rows training can use.
    """
    if not folds:
        return
    times = data.features.index.get_level_values("timestamp")
    symbols = data.features.index.get_level_values("symbol")
    cells = pd.DataFrame(np.isfinite(data.features.to_numpy(dtype=np.float64)), index=data.features.index,
                         columns=data.features.columns)
    usable = cells.all(axis=1)
    need = cfg.windows.window
    for fold in folds:
        start, end = fold.split.bounds["train"]
        inside = np.asarray((times >= start) & (times <= end))
        per_symbol = usable[inside].groupby(np.asarray(symbols)[inside], observed=True).sum()
        if len(per_symbol) and int(per_symbol.max()) >= need:
            continue
        setting, fix = _culprit(cfg, cells[inside])
        bars = int(pd.Index(times[inside]).nunique())
        raise WarmupError(
            f"{setting} leaves {int(usable[inside].sum())} finite training rows in {fold.name} (train "
            f"{start:%Y-%m-%d %H:%M} .. {end:%Y-%m-%d %H:%M}, {bars} bars; a training window needs at least {need} "
            f"of one symbol); {fix}")
