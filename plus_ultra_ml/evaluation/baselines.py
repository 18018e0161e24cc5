"""Baselines a model must beat, fitted on exactly the segments the model is fitted on.

* buy_and_hold: long every symbol.
* momentum: sign of the trailing `lookback`-bar return (time-series momentum); its forecast is
  that trailing log return itself.
* mean_reversion: minus the sign of the trailing `lookback`-bar return; forecast minus that return.
* ridge: ridge regression (scikit-learn) of the volatility-scaled next-bar log return on the
  same features the model sees, fitted on training rows only.
* lightgbm: gradient-boosted trees on the same features and target (the reference Qlib's
  benchmarks use), early-stopped on the validation segment, never on test.

A training row is a bar in the training segment whose next-bar target bar is in it too (the
purge). Forecast baselines turn a forecast into a position with a scale fitted on training
predictions: ``clip(forecast / (2 * std(train forecasts)), -1, 1)``. Every baseline returns its
positions (and forecast, if any) on the requested segment's bars, on the panel's index.

This is the one set of baselines: the walk-forward folds (experiments/fold.py) score their
positions in the report, and the held-out metrics of every supervised fit
(evaluation/heldout.py `baseline_metrics`) score them on the model's own test windows.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from plus_ultra_ml.data.windows import Split, Targets

BASELINES = ("buy_and_hold", "momentum", "mean_reversion", "ridge", "lightgbm")
POSITION_SCALE_STDS = 2.0


@dataclass(frozen=True)
class BaselineResult:
    name: str
    position: pd.Series  # in [-1, 1], panel index restricted to the segment's bars
    forecast: pd.Series | None  # the signal behind the position (ridge / lightgbm: vol-scaled next-bar log
    # return; momentum / mean_reversion: +/- the trailing log return, NaN while unknown), same index


def segment_mask(index: pd.MultiIndex, split: Split, segment: str, horizon: int = 1) -> np.ndarray:
    """Rows whose bar lies in `segment` and whose `horizon`-bar target bar does too."""
    times = index.get_level_values("timestamp")
    first, last = split.bounds[segment]
    grid = pd.DatetimeIndex(times.unique()).sort_values()
    last_target = grid[max(int(grid.searchsorted(last, side="right")) - 1 - horizon, 0)]
    return np.asarray((times >= first) & (times <= last_target))


def _bars_of(index: pd.MultiIndex, split: Split, segment: str) -> np.ndarray:
    times = index.get_level_values("timestamp")
    first, last = split.bounds[segment]
    return np.asarray((times >= first) & (times <= last))


def _trailing_return(close: pd.Series, lookback: int) -> pd.Series:
    log_close = np.log(close)
    return log_close - log_close.groupby(level="symbol", observed=True, sort=False).shift(lookback)


def buy_and_hold(close: pd.Series, split: Split, segment: str = "test") -> BaselineResult:
    rows = _bars_of(close.index, split, segment)
    return BaselineResult("buy_and_hold", pd.Series(1.0, index=close.index[rows]), None)


def momentum(close: pd.Series, split: Split, segment: str = "test", lookback: int = 20) -> BaselineResult:
    rows = _bars_of(close.index, split, segment)
    trailing = _trailing_return(close, lookback)
    signal = np.sign(trailing).fillna(0.0)  # unknown past: flat
    return BaselineResult("momentum", signal[rows], trailing[rows])


def mean_reversion(close: pd.Series, split: Split, segment: str = "test", lookback: int = 5) -> BaselineResult:
    rows = _bars_of(close.index, split, segment)
    trailing = _trailing_return(close, lookback)
    signal = -np.sign(trailing).fillna(0.0)
    return BaselineResult("mean_reversion", signal[rows], -trailing[rows])


def _design(features: pd.DataFrame, targets: Targets) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    x = features.to_numpy(dtype=np.float32)
    y = (targets.forward["fwd_1"] / targets.volatility).to_numpy(dtype=np.float64)
    ok = np.isfinite(x).all(axis=1) & np.isfinite(y)
    return x, y, ok


def _to_positions(name: str, forecast: np.ndarray, train_forecast: np.ndarray, index: pd.Index) -> BaselineResult:
    scale = POSITION_SCALE_STDS * float(np.std(train_forecast)) or 1.0
    position = np.clip(np.nan_to_num(forecast / scale), -1.0, 1.0)
    return BaselineResult(name, pd.Series(position, index=index), pd.Series(forecast, index=index))


def ridge(features: pd.DataFrame, targets: Targets, split: Split, segment: str = "test",
          alpha: float = 10.0) -> BaselineResult:
    from sklearn.linear_model import Ridge
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x, y, ok = _design(features, targets)
    train = ok & segment_mask(features.index, split, "train")
    model = make_pipeline(StandardScaler(), Ridge(alpha=alpha)).fit(x[train], y[train])
    rows = _bars_of(features.index, split, segment)
    usable = np.isfinite(x[rows]).all(axis=1)
    forecast = np.zeros(rows.sum())
    forecast[usable] = model.predict(x[rows][usable])  # rows without features: no view, flat
    return _to_positions("ridge", forecast, model.predict(x[train]), features.index[rows])


def lightgbm(features: pd.DataFrame, targets: Targets, split: Split, segment: str = "test",
             seed: int = 0, rounds: int = 400) -> BaselineResult:
    import lightgbm as lgb

    x, y, ok = _design(features, targets)
    train = ok & segment_mask(features.index, split, "train")
    val = ok & segment_mask(features.index, split, "val")
    params = {"objective": "regression", "learning_rate": 0.05, "num_leaves": 31, "min_data_in_leaf": 200,
              "feature_fraction": 0.8, "bagging_fraction": 0.8, "bagging_freq": 1, "lambda_l2": 1.0,
              "seed": seed, "deterministic": True, "num_threads": 2, "verbosity": -1}
    booster = lgb.train(
        params, lgb.Dataset(x[train], y[train]), num_boost_round=rounds,
        valid_sets=[lgb.Dataset(x[val], y[val])], callbacks=[lgb.early_stopping(30, verbose=False)],
    )
    rows = _bars_of(features.index, split, segment)
    forecast = booster.predict(x[rows], num_iteration=booster.best_iteration)  # NaN features: LightGBM's missing branch
    return _to_positions("lightgbm", forecast, booster.predict(x[train], num_iteration=booster.best_iteration),
                         features.index[rows])


def run_baselines(panel: pd.DataFrame, features: pd.DataFrame, targets: Targets, split: Split,
                  segment: str = "test", seed: int = 0, names: tuple[str, ...] = BASELINES) -> dict[str, BaselineResult]:
    close = panel["close"]
    makers = {
        "buy_and_hold": lambda: buy_and_hold(close, split, segment),
        "momentum": lambda: momentum(close, split, segment),
        "mean_reversion": lambda: mean_reversion(close, split, segment),
        "ridge": lambda: ridge(features, targets, split, segment),
        "lightgbm": lambda: lightgbm(features, targets, split, segment, seed=seed),
    }
    return {name: makers[name]() for name in names}
