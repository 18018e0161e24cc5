"""Offline inference: a served checkpoint's (supervised or PPO) prediction at every bar of a panel (`plus-ultra predict`).

The reference the service is tested against, computed the way training saw the data: regime labels
and features over each symbol's whole history (serving/featurise.py `full_history_features`), the
checkpoint's scaler, one window of the model's length ending at every bar whose window is complete,
and the forecast scale from data/windows.py. Unlike the training room's held-out evaluation
(training/evaluate.py, scored by evaluation/heldout.py), a bar needs no known future to be
predicted, so the newest bars get predictions too (their targets and next return are NaN).

The output is the predictions frame of evaluation/predictions.py (what evaluation/report.py
reads): one row per (symbol, bar) with ``next_return``, ``position__model``,
``position__buy_and_hold``, ``forecast__h<k>`` (return units), ``target__h<k>`` and
``regime__<name>``, plus ``volatility``. Bars at or before the checkpoint's data cutoff were seen by
training (fit, early stopping, scaler): `after_cutoff` keeps only the bars after it, and metrics
must be computed on those alone.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from plus_ultra_ml.data.regimes import label_regimes
from plus_ultra_ml.data.windows import build_targets
from plus_ultra_ml.evaluation.predictions import FORECAST, POSITION, REGIME, TARGET
from plus_ultra_ml.serving.featurise import FeatureRecipe, compute_model_features
from plus_ultra_ml.serving.predictor import return_units, run_network
from plus_ultra_ml.checkpoints.supervised import TrainedModel
from plus_ultra_ml.rl.trained import TrainedPolicy
from plus_ultra_ml.serving.policy import served_positions


def window_ends(finite_rows: np.ndarray, symbol_codes: np.ndarray, window: int) -> np.ndarray:
    """Row positions t whose rows t-window+1..t are all finite and of one symbol (prefix sums, no loop)."""
    run = np.zeros(len(finite_rows) + 1, dtype=np.int64)  # (N + 1,)
    np.cumsum(finite_rows, out=run[1:])
    t = np.arange(window - 1, len(finite_rows))
    full = (run[t + 1] - run[t + 1 - window]) == window
    return t[full & (symbol_codes[t] == symbol_codes[t - window + 1])]


@dataclass(frozen=True)
class HistoryPredictions:
    frame: pd.DataFrame  # report format (see the module docstring), sorted by (symbol, timestamp)
    cutoff: pd.Timestamp  # the checkpoint's data cutoff
    features: pd.DataFrame  # the full-history feature frame the windows came from (unscaled)
    fingerprint: str  # of the feature definitions computed (compare with the checkpoint's lineage)

    def after_cutoff(self) -> pd.DataFrame:
        times = self.frame.index.get_level_values("timestamp")
        return self.frame[times > self.cutoff]

    def latest(self) -> pd.DataFrame:
        """The newest row of every symbol (the signal a live service would give at that bar)."""
        return self.frame.groupby(level="symbol", observed=True).tail(1)


def predict_history(model: TrainedModel, recipe: FeatureRecipe, panel: pd.DataFrame, *,
                    after: pd.Timestamp | None = None, batch_size: int = 512, policy: TrainedPolicy | None = None,
                    replay_bars: int | None = None) -> HistoryPredictions:
    """Predictions at every bar (after `after`, when given) whose window is complete. With a PPO
    `policy` (and `model` its network), `position__model` is the policy's served position
    (serving/policy.py: replayed from flat over `replay_bars` decision bars), as the service gives it."""
    labels = label_regimes(panel, recipe.regimes)
    result = compute_model_features(panel, recipe, labels if recipe.uses_regimes else None)
    features = result.frame[list(recipe.feature_names)]
    raw = features.to_numpy(dtype=np.float32)  # (N, F)
    scaled = model.scaler.transform(raw)
    symbols = panel.index.get_level_values("symbol")
    codes = pd.Categorical(symbols).codes.astype(np.int64)
    categories = pd.Categorical(symbols).categories
    times = panel.index.get_level_values("timestamp")
    targets = build_targets(panel, model.horizon)
    volatility = targets.volatility.to_numpy(dtype=np.float64)
    ends = window_ends(np.isfinite(raw).all(axis=1), codes, model.window)
    ends = ends[np.isfinite(volatility[ends])]
    if after is not None:
        ends = ends[times[ends] > after]
    windows = np.lib.stride_tricks.sliding_window_view(scaled, model.window, axis=0)  # (N - T + 1, F, T) view
    ids = model.net.encode_symbols([str(c) for c in categories])  # (S,) model id per data code
    H = model.horizon
    forecast = np.empty((len(ends), H))
    position = np.empty(len(ends))
    with torch.inference_mode():
        for a in range(0, len(ends), batch_size):
            rows = ends[a:a + batch_size]
            x = windows[rows - model.window + 1].transpose(0, 2, 1)  # (B, T, F)
            out = run_network(model.net, x, ids[codes[rows]])
            forecast[a:a + len(rows)] = return_units(out.forecast, volatility[rows])
            position[a:a + len(rows)] = out.position
    index = pd.MultiIndex.from_arrays([pd.Categorical.from_codes(codes[ends], categories=categories), times[ends]],
                                      names=["symbol", "timestamp"])
    if policy is not None:
        replayed = served_positions(policy, features, panel, replay_bars or 1)
        position = replayed.reindex(index).to_numpy(np.float64)
    columns: dict[str, np.ndarray] = {
        "next_return": targets.next_return.to_numpy(dtype=np.float64)[ends],
        POSITION + "model": position,
        POSITION + "buy_and_hold": np.ones(len(ends)),
        "volatility": volatility[ends],
    }
    forward = targets.forward.to_numpy(dtype=np.float64)
    for h in range(H):
        columns[f"{FORECAST}h{h + 1}"] = forecast[:, h]
        columns[f"{TARGET}h{h + 1}"] = forward[ends, h]
    for name in labels.columns:
        columns[REGIME + str(name)] = labels[name].astype("string").to_numpy()[ends]
    frame = pd.DataFrame(columns, index=index).sort_index()
    return HistoryPredictions(frame, pd.Timestamp(model.lineage.data_cutoff), features, result.fingerprint)
