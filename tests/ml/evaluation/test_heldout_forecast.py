"""The held-out forecast metric: forecast 1 through ForecastPositions fitted on training forecasts only."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from plus_ultra_ml.config import CostConfig
from plus_ultra_ml.evaluation import metrics as M
from plus_ultra_ml.evaluation.backtest import portfolio_pnl
from plus_ultra_ml.evaluation.baselines import ForecastPositions
from plus_ultra_ml.evaluation.heldout import SegmentPredictions, forecast_positions, heldout_metrics

COSTS = CostConfig(transaction_bps=1.0, slippage_bps=0.5, holding_bps=0.0)
PPY = 252.0


def _segment(seed: int = 0, n: int = 300) -> SegmentPredictions:
    rng = np.random.default_rng(seed)
    times = pd.date_range("2024-01-01", periods=n, freq="1D", tz="UTC")
    index = pd.MultiIndex.from_product([pd.CategoricalIndex(["AAA", "BBB"]), times], names=["symbol", "timestamp"])
    r = rng.normal(0, 0.01, len(index))
    frame = pd.DataFrame({"forecast_1": 0.3 * r + rng.normal(0, 0.01, len(index)), "target_1": np.log1p(r),
                          "position": rng.uniform(-1, 1, len(index)), "next_return": r,
                          "volatility": 0.01}, index=index)
    return SegmentPredictions(frame, loss=0.1, parts={}, segment="test")


def test_forecast_metric_is_the_training_fitted_mapping_through_the_pnl_road():
    pred = _segment()
    train = np.random.default_rng(1).normal(0.002, 0.004, 1000)
    out = heldout_metrics(pred, COSTS, PPY, train)
    mapping = ForecastPositions.fit(train)
    positions = pd.Series(mapping.transform(pred.frame["forecast_1"].to_numpy()), index=pred.frame.index)
    expected = M.sharpe_ratio(portfolio_pnl(positions, pred.frame["next_return"], COSTS).to_numpy(), PPY)
    assert out["forecast_sharpe_net"] == pytest.approx(expected)
    assert "forecast_sign_sharpe_net" not in out  # the sign rule is gone, not renamed in place
    assert "forecast_sharpe_net" not in heldout_metrics(pred, COSTS, PPY)  # no training forecasts: not claimed


def test_the_mapping_is_fitted_on_training_forecasts_only():
    pred = _segment()
    train = np.random.default_rng(1).normal(0.002, 0.004, 1000)
    base = forecast_positions(pred.frame, train)
    perturbed = pred.frame.copy()
    bar = perturbed.index[17]
    perturbed.loc[bar, "forecast_1"] = 50.0  # one wild test forecast: a test-fitted z-score would move every bar
    perturbed.iloc[200:, perturbed.columns.get_loc("forecast_1")] *= 10  # and a regime of larger test forecasts
    moved = forecast_positions(perturbed, train)
    untouched = np.ones(len(base), dtype=bool)
    untouched[[17, *range(200, len(base))]] = False
    assert np.array_equal(base.to_numpy()[untouched], moved.to_numpy()[untouched])
    # the training forecasts do decide the mapping
    assert not np.allclose(forecast_positions(pred.frame, train * 3 + 0.01).to_numpy(), base.to_numpy())
