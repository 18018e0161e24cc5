"""Baselines a model must beat, fitted on exactly the segments the model is fitted on.

* buy_and_hold: long every symbol. The report's portfolio is the mean over symbols of each
  symbol's path, so on a panel this is the equal-weight (1/N, rebalanced every bar) portfolio
  of the universe.
* universe_buy_and_hold: the true buy-and-hold of the universe: equal weights at the segment's
  first bar (the start of the scored window), then left to drift with prices, never rebalanced.
  In the portfolio convention above (the mean over symbols of position x next return) it is the
  position ``p_i[t] = N * g_i[t] / sum_j g_j[t]`` with ``g_i[t] = close_i[t] / close_i[first]``
  (closes <= t only), so the mean of ``p_i[t] r_i[t+1]`` is the drifting portfolio's return. The
  positions sum to N (exposure 1) and a winner's may exceed 1. On one symbol it is buy_and_hold.
  Costs: the PnL road charges changes of p, so the weight drift is charged as if traded (it is
  not: an upper bound, the cross-sectional dispersion of one bar's returns times the cost rate).
* persistence: the no-change forecast (expected next return zero), i.e. flat everywhere: what
  doing nothing earns after costs (exactly zero), the floor every strategy must clear.
* vol_target: volatility-targeted buy-and-hold, ``min(1, target / trailing realised volatility)``
  per symbol; the realised volatility at bar t is the std of the last `vol_window` log returns
  up to bar t (causal), the target is the median of that volatility over the symbol's training
  bars (fitted on training data only). Flat while the volatility is unknown.
* momentum: sign of the trailing `lookback`-bar return (time-series momentum); its forecast is
  that trailing log return itself.
* mean_reversion: minus the sign of the trailing `lookback`-bar return; forecast minus that return.
* ridge: ridge regression (scikit-learn) of the volatility-scaled next-bar log return on the
  same features the model sees, fitted on training rows only.
* lightgbm: gradient-boosted trees on the same features and target (the reference Qlib's
  benchmarks use), early-stopped on the validation segment, never on test; `num_threads` from
  `baselines.num_threads` (default 1).

Cross-sectional baselines (scores that rank names against each other at each date; added by
`run_baselines` by default only for a universe, `cross_section.is_universe`; any can be named):
* xs_ridge / xs_lightgbm: ridge / LightGBM on the pooled (date, name) training rows of the same
  features, predicting the per-date rank of the next-bar log return among the names with one at
  that date, centred to (-0.5, 0.5) (`per_date_rank`): the label sees only other names' returns at
  the same date, so it is a training row's own future and nothing else. LightGBM early-stops on the
  validation rows (same label), never on test.
* momentum_12_1: the 12-1 month momentum of the factor literature, in bars of the daily calendar:
  log close[t - 21] - log close[t - 252] (bars <= t; NaN until 252 bars exist). Daily data only:
  on intraday bars `run_baselines` leaves it out (a month is not 21 bars there).
* reversal_1m: the 1-month reversal, minus the last 21 bars' log return, log close[t - 21] - log close[t].
* the equal-weight universe is universe_buy_and_hold above.
Their forecast (the signal__ column) is the raw score; their position is `ForecastPositions` of
the score demeaned per date (names against each other, not a bet on the market), fitted on the
training rows' demeaned scores.

A training row is a bar in the training segment whose next-bar target bar is in it too (the
purge). Every forecaster's forecast becomes a position through `ForecastPositions`, fitted on its
training forecasts only (see there: a constant or near-constant forecast maps to a near-flat
position, not to full exposure). Every baseline returns its positions (and forecast, if any) on the
requested segment's bars, on the panel's index.

This is the one set of baselines: the walk-forward folds (experiments/fold.py) score their
positions in the report, and the held-out metrics of every supervised fit
(evaluation/heldout.py `baseline_metrics`) score them on the model's own test windows.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from plus_ultra_ml.config import BaselinesConfig
from plus_ultra_ml.data.windows import Split, Targets
from plus_ultra_ml.errors import PlusUltraError

BASELINES = ("buy_and_hold", "universe_buy_and_hold", "persistence", "vol_target", "momentum", "mean_reversion", "ridge", "lightgbm")
CROSS_SECTIONAL_BASELINES = ("xs_ridge", "xs_lightgbm", "momentum_12_1", "reversal_1m")
MONTH_BARS = 21  # one month of daily sessions
YEAR_BARS = 252  # one year of daily sessions
POSITION_SCALE_STDS = 2.0  # a forecast this many training stds above the training mean is full exposure


@dataclass(frozen=True)
class BaselineResult:
    name: str
    position: pd.Series  # in [-1, 1], panel index restricted to the segment's bars
    forecast: pd.Series | None  # the signal behind the position (ridge / lightgbm: vol-scaled next-bar log
    # return; momentum / mean_reversion: +/- the trailing log return, NaN while unknown), same index


@dataclass(frozen=True)
class ForecastPositions:
    """The one mapping from a forecast to a position in [-1, 1], fitted on training forecasts only.

    ``position = clip((f - mean) / (2 * std), -1, 1) * materiality``, with mean and std (ddof 0) of
    the forecaster's own forecasts on its training rows, and
    ``materiality = std**2 / (std**2 + mean**2)``: the share of the training forecasts' mean square
    (around zero) that is variation across bars rather than one constant offset.

    Why both parts. Demeaning: a forecaster's bar-to-bar view is its deviation from its usual
    forecast; a constant offset is a bet on the drift, which buy_and_hold / vol_target already
    are. Materiality: a near-constant forecast (LightGBM early-stopped at one tree: the base score
    plus one tree's leaf values times the 0.05 learning rate; on the S&P 500 sample's first fold a
    mean of -0.040 with a std of 0.009) z-scores to O(1) positions on noise; the weight (0.047 there)
    shrinks it to near flat, where ``clip(f / (2 std))`` held -1 on every test bar. A constant
    forecast (std 0) is flat. A real signal (spread comparable to or larger than its mean) keeps
    positions close to its z-score. Nothing is fitted on the bars
    being scored: `fit` sees training forecasts, `transform` applies the fitted numbers.
    NaN forecasts (no view) are flat.
    """

    mean: float
    std: float

    @classmethod
    def fit(cls, train_forecast: np.ndarray) -> ForecastPositions:
        f = np.asarray(train_forecast, dtype=np.float64)
        f = f[np.isfinite(f)]
        if len(f) == 0:
            raise PlusUltraError("ForecastPositions.fit: no finite training forecast; the forecaster has no "
                                 "training rows with finite features (check the training segment and feature warm-up)")
        mean, std = float(f.mean()), float(f.std())
        if std <= 64 * np.finfo(np.float64).eps * abs(mean):  # a constant, up to the rounding of its mean
            std = 0.0
        return cls(mean, std)

    @property
    def materiality(self) -> float:
        second_moment = self.std**2 + self.mean**2
        return self.std**2 / second_moment if second_moment > 0 else 0.0

    def transform(self, forecast: np.ndarray) -> np.ndarray:
        f = np.asarray(forecast, dtype=np.float64)
        if self.std == 0.0:
            return np.zeros_like(f)
        z = np.nan_to_num((f - self.mean) / (POSITION_SCALE_STDS * self.std))
        return np.clip(z, -1.0, 1.0) * self.materiality


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


def universe_buy_and_hold(close: pd.Series, split: Split, segment: str = "test") -> BaselineResult:
    """Equal weights at the segment's first bar, then drifting with prices (module docstring).

    close: the panel's close on its (symbol, timestamp) index. A symbol's value grows with its own
    close from its first bar in the segment; over a bar where it has no close its value is held
    (forward-filled), and a symbol that starts later joins at its then-current weight.
    """
    rows = _bars_of(close.index, split, segment)
    part = close[rows]
    wide = part.unstack("symbol").sort_index()  # (T, N) closes, NaN where a symbol has no bar
    growth = (wide / wide.bfill().iloc[0]).ffill().fillna(1.0)  # (T, N) g_i[t]: closes <= t (and the first)
    position = wide.shape[1] * growth.div(growth.sum(axis=1), axis=0)  # (T, N), rows sum to N
    long = position.stack(future_stack=True).rename("position")  # (timestamp, symbol)
    long = long.reorder_levels(["symbol", "timestamp"]).reindex(part.index)
    return BaselineResult("universe_buy_and_hold", long.astype(np.float64), None)


def persistence(close: pd.Series, split: Split, segment: str = "test") -> BaselineResult:
    rows = _bars_of(close.index, split, segment)
    return BaselineResult("persistence", pd.Series(0.0, index=close.index[rows]), None)


def vol_target(close: pd.Series, split: Split, segment: str = "test", window: int = 20) -> BaselineResult:
    by_symbol = np.log(close).groupby(level="symbol", observed=True, sort=False)
    returns = by_symbol.diff()
    realised = returns.groupby(level="symbol", observed=True, sort=False).transform(
        lambda r: r.rolling(window, min_periods=window).std())  # bars <= t only
    train = _bars_of(close.index, split, "train")
    target = realised[train].groupby(level="symbol", observed=True).median()  # training bars only
    symbols = close.index.get_level_values("symbol")
    level = target.reindex(symbols).to_numpy()
    with np.errstate(divide="ignore", invalid="ignore"):
        position = np.minimum(1.0, level / realised.to_numpy())
    position = np.where(np.isfinite(position), position, 0.0)  # unknown volatility: flat
    rows = _bars_of(close.index, split, segment)
    return BaselineResult("vol_target", pd.Series(position[rows], index=close.index[rows]), None)


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
    position = ForecastPositions.fit(train_forecast).transform(forecast)
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


def _fit_lightgbm(x: np.ndarray, y: np.ndarray, train: np.ndarray, val: np.ndarray, seed: int, rounds: int,
                  num_threads: int):
    """The baselines' one LightGBM recipe: fitted on the training rows, early-stopped on the validation rows."""
    import lightgbm as lgb

    params = {"objective": "regression", "learning_rate": 0.05, "num_leaves": 31, "min_data_in_leaf": 200,
              "feature_fraction": 0.8, "bagging_fraction": 0.8, "bagging_freq": 1, "lambda_l2": 1.0,
              "seed": seed, "deterministic": True, "num_threads": num_threads, "verbosity": -1}
    return lgb.train(
        params, lgb.Dataset(x[train], y[train]), num_boost_round=rounds,
        valid_sets=[lgb.Dataset(x[val], y[val])], callbacks=[lgb.early_stopping(30, verbose=False)],
    )


def lightgbm(features: pd.DataFrame, targets: Targets, split: Split, segment: str = "test",
             seed: int = 0, rounds: int = 400, num_threads: int = 1) -> BaselineResult:
    x, y, ok = _design(features, targets)
    train = ok & segment_mask(features.index, split, "train")
    val = ok & segment_mask(features.index, split, "val")
    booster = _fit_lightgbm(x, y, train, val, seed, rounds, num_threads)
    rows = _bars_of(features.index, split, segment)
    forecast = booster.predict(x[rows], num_iteration=booster.best_iteration)  # NaN features: LightGBM's missing branch
    return _to_positions("lightgbm", forecast, booster.predict(x[train], num_iteration=booster.best_iteration),
                         features.index[rows])


def per_date_rank(values: pd.Series) -> pd.Series:
    """Per timestamp, the average rank of each finite value among that timestamp's, scaled to
    (-0.5, 0.5): (rank - 0.5) / n - 0.5. NaN stays NaN; a date with one value gives 0."""
    times = values.index.get_level_values("timestamp")
    grouped = values.groupby(times)
    return (grouped.rank(method="average") - 0.5) / grouped.transform("count") - 0.5


def _demeaned_per_date(values: pd.Series) -> pd.Series:
    return values - values.groupby(values.index.get_level_values("timestamp")).transform("mean")


def _xs_positions(name: str, score: pd.Series, split: Split, segment: str) -> BaselineResult:
    """Score -> position through `ForecastPositions` of the per-date demeaned score, fitted on training rows."""
    relative = _demeaned_per_date(score)
    train = segment_mask(score.index, split, "train")
    rows = _bars_of(score.index, split, segment)
    mapping = ForecastPositions.fit(relative[train].to_numpy())
    position = mapping.transform(relative[rows].to_numpy())
    return BaselineResult(name, pd.Series(position, index=score.index[rows]), score[rows])


def momentum_12_1(close: pd.Series, split: Split, segment: str = "test") -> BaselineResult:
    """12-1 month momentum: log close[t - 21] - log close[t - 252] (daily bars, module docstring)."""
    log_close = np.log(close)
    by_symbol = log_close.groupby(level="symbol", observed=True, sort=False)
    return _xs_positions("momentum_12_1", by_symbol.shift(MONTH_BARS) - by_symbol.shift(YEAR_BARS), split, segment)


def reversal_1m(close: pd.Series, split: Split, segment: str = "test") -> BaselineResult:
    """1-month reversal: minus the last 21 bars' log return."""
    return _xs_positions("reversal_1m", -_trailing_return(close, MONTH_BARS), split, segment)


def _xs_design(features: pd.DataFrame, targets: Targets) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    x = features.to_numpy(dtype=np.float32)
    y = per_date_rank(targets.forward["fwd_1"]).to_numpy(dtype=np.float64)
    ok = np.isfinite(x).all(axis=1) & np.isfinite(y)
    return x, y, ok


def xs_ridge(features: pd.DataFrame, targets: Targets, split: Split, segment: str = "test",
             alpha: float = 10.0) -> BaselineResult:
    """Ridge on pooled (date, name) training rows predicting the per-date rank of the next return."""
    from sklearn.linear_model import Ridge
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x, y, ok = _xs_design(features, targets)
    train = ok & segment_mask(features.index, split, "train")
    model = make_pipeline(StandardScaler(), Ridge(alpha=alpha)).fit(x[train], y[train])
    usable = np.isfinite(x).all(axis=1)
    score = np.full(len(x), np.nan)  # no features: no view (NaN score, flat position)
    score[usable] = model.predict(x[usable])
    return _xs_positions("xs_ridge", pd.Series(score, index=features.index), split, segment)


def xs_lightgbm(features: pd.DataFrame, targets: Targets, split: Split, segment: str = "test",
                seed: int = 0, rounds: int = 400, num_threads: int = 1) -> BaselineResult:
    """LightGBM on pooled (date, name) training rows predicting the per-date rank, early-stopped on validation."""
    x, y, ok = _xs_design(features, targets)
    train = ok & segment_mask(features.index, split, "train")
    val = ok & segment_mask(features.index, split, "val")
    booster = _fit_lightgbm(x, y, train, val, seed, rounds, num_threads)
    score = booster.predict(x, num_iteration=booster.best_iteration)  # NaN features: LightGBM's missing branch
    return _xs_positions("xs_lightgbm", pd.Series(score, index=features.index), split, segment)


def default_baselines(panel: pd.DataFrame, cross_sectional: bool | None = None) -> tuple[str, ...]:
    """BASELINES, plus the cross-sectional ones on a universe (`cross_sectional` None) or when asked (True),
    never when False (momentum_12_1 only on daily bars)."""
    from plus_ultra_ml.data.calendar import bar_spacing, is_daily
    from plus_ultra_ml.evaluation.cross_section import is_universe

    if cross_sectional is None:
        cross_sectional = is_universe(panel.index.get_level_values("symbol").nunique())
    if not cross_sectional:
        return BASELINES
    daily = is_daily(bar_spacing(panel.index.get_level_values("timestamp")))
    return BASELINES + tuple(n for n in CROSS_SECTIONAL_BASELINES if daily or n != "momentum_12_1")


def run_baselines(panel: pd.DataFrame, features: pd.DataFrame, targets: Targets, split: Split,
                  segment: str = "test", seed: int = 0, names: tuple[str, ...] | None = None,
                  config: BaselinesConfig = BaselinesConfig()) -> dict[str, BaselineResult]:
    """The named baselines (None: `default_baselines(panel, config.cross_sectional)`) on `segment`'s bars."""
    names = default_baselines(panel, config.cross_sectional) if names is None else names
    known = BASELINES + CROSS_SECTIONAL_BASELINES
    unknown = [n for n in names if n not in known]
    if unknown:
        raise PlusUltraError(f"unknown baseline(s) {unknown}; the baselines are {list(known)}")
    close = panel["close"]
    makers = {
        "buy_and_hold": lambda: buy_and_hold(close, split, segment),
        "universe_buy_and_hold": lambda: universe_buy_and_hold(close, split, segment),
        "persistence": lambda: persistence(close, split, segment),
        "vol_target": lambda: vol_target(close, split, segment, window=config.vol_window),
        "momentum": lambda: momentum(close, split, segment),
        "mean_reversion": lambda: mean_reversion(close, split, segment),
        "ridge": lambda: ridge(features, targets, split, segment),
        "lightgbm": lambda: lightgbm(features, targets, split, segment, seed=seed,
                                     num_threads=config.num_threads),
        "xs_ridge": lambda: xs_ridge(features, targets, split, segment),
        "xs_lightgbm": lambda: xs_lightgbm(features, targets, split, segment, seed=seed,
                                           num_threads=config.num_threads),
        "momentum_12_1": lambda: momentum_12_1(close, split, segment),
        "reversal_1m": lambda: reversal_1m(close, split, segment),
    }
    return {name: makers[name]() for name in names}
