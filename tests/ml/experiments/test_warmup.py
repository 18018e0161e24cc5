"""The warm-up check: a plan whose feature warm-up eats a fold's training segment is refused, naming the cause."""

from __future__ import annotations

import numpy as np
import pytest

from plus_ultra_ml.data.training_data import TrainingData
from plus_ultra_ml.experiments.warmup import WarmupError, check_training_rows
from tests.ml.experiments.test_fold_files import CFG, folds_of, make_data


def with_nan_start(data: TrainingData, column: str, bars: int) -> TrainingData:
    """`column` NaN for each symbol's first `bars` bars (a warm-up of that length)."""
    features = data.features.copy()
    features[column] = features[column].astype(float)
    first = features.groupby(level="symbol").cumcount().to_numpy() < bars
    features.loc[first, column] = np.nan
    return TrainingData(features, data.panel, data.feature_fingerprint)


def test_a_normal_plan_passes():
    data = make_data()
    check_training_rows(CFG, data, folds_of(data))
    check_training_rows(CFG, with_nan_start(data, "f1", 50), folds_of(data))  # warm-up shorter than training


def test_regime_warmup_that_eats_the_first_training_segment_names_regimes_min_history():
    data = make_data()
    features = data.features.assign(regime_volatility=1.0)
    data = with_nan_start(TrainingData(features, data.panel, "v"), "regime_volatility", 700)
    folds = folds_of(data)
    first_train_end = folds[0].split.bounds["train"][1]
    cfg = CFG.model_copy(update={"regimes": CFG.regimes.model_copy(update={"min_history": 700})})
    with pytest.raises(WarmupError, match=rf"regimes.min_history = 700 leaves 0 finite training rows in "
                                          rf"{folds[0].name} \(train .* \.\. {first_train_end:%Y-%m-%d %H:%M}"):
        check_training_rows(cfg, data, folds)


def test_a_feature_warmup_is_named_and_so_is_too_few_rows_for_one_window():
    data = with_nan_start(make_data(), "f2", 10_000)  # never finite
    with pytest.raises(WarmupError, match="feature f2 leaves 0 finite training rows.*features.exclude"):
        check_training_rows(CFG, data, folds_of(data))
    folds = folds_of(make_data())
    train_bars = int((data.features.index.get_level_values("timestamp") <= folds[0].split.bounds["train"][1]).sum() / 2)
    short = with_nan_start(make_data(), "f0", train_bars - CFG.windows.window + 2)  # one row short of a window
    with pytest.raises(WarmupError, match=rf"leaves {2 * (CFG.windows.window - 2)} finite training rows"):
        check_training_rows(CFG, short, folds)
    check_training_rows(CFG, with_nan_start(make_data(), "f0", train_bars - CFG.windows.window), folds)
