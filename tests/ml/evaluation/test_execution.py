"""Execution lag: a decision at bar t filled at the close of bar t+L, through the one PnL road."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from plus_ultra_ml.config import CostConfig, ExecutionConfig
from plus_ultra_ml.evaluation import metrics
from plus_ultra_ml.evaluation.backtest import path_returns
from plus_ultra_ml.evaluation.execution import lagged
from plus_ultra_ml.evaluation.report import build_report

COSTS = CostConfig(transaction_bps=1.0, slippage_bps=0.5, holding_bps=0.0)


def predictions(n: int = 400, seed: int = 0) -> pd.DataFrame:
    """Two symbols, two folds; `peek` knows the next return (a look-ahead oracle), `hold` is long."""
    rng = np.random.default_rng(seed)
    times = pd.date_range("2024-01-01", periods=n, freq="1D", tz="UTC")
    frames = []
    for symbol in ("AAA", "BBB"):
        r = rng.normal(0.0003, 0.01, n)
        index = pd.MultiIndex.from_arrays([pd.Categorical([symbol] * n, categories=["AAA", "BBB"]), times],
                                          names=["symbol", "timestamp"])
        frames.append(pd.DataFrame({"fold": np.where(np.arange(n) < n // 2, "f1", "f2"), "next_return": r,
                                    "position__peek": np.sign(r), "position__hold": 1.0,
                                    "reference__oracle": np.sign(r)}, index=index))
    out = pd.concat(frames).sort_index()
    out.attrs["periods_per_year"] = 252.0
    return out


def test_lag_shifts_each_fold_and_symbol_path_and_enters_flat():
    frame = predictions(n=10)
    moved = lagged(frame, 2)
    for (_, symbol), part in frame.groupby(["fold", frame.index.get_level_values("symbol")], observed=True):
        got = moved.loc[part.index, "position__peek"].to_numpy()
        np.testing.assert_array_equal(got[:2], 0.0)  # the first two orders have not filled yet
        np.testing.assert_array_equal(got[2:], part["position__peek"].to_numpy()[:-2])
    pd.testing.assert_frame_equal(lagged(frame, 0), frame.assign(seed=0).sort_index())
    with pytest.raises(ValueError, match=">= 0"):
        lagged(frame, -1)


def test_report_shows_lag_0_and_1_and_a_look_ahead_loses_its_edge():
    frame = predictions()
    report = build_report(frame, COSTS)
    lags = report.lags
    assert list(lags.columns) == ["sharpe_lag0", "sharpe_lag1"]
    assert lags.loc["peek", "sharpe_lag0"] > 20  # knows r[t+1]
    assert abs(lags.loc["peek", "sharpe_lag1"]) < 3  # one bar late it holds yesterday's sign: noise
    assert lags.loc["oracle (reference)", "sharpe_lag0"] == pytest.approx(lags.loc["peek", "sharpe_lag0"])
    np.testing.assert_allclose(lags["sharpe_lag0"].drop("oracle (reference)"),
                               report.overall.loc[lags.index.drop("oracle (reference)"), "sharpe"])
    # by hand: AAA's and BBB's lag-1 paths per fold, entering flat, their mean per bar
    paths = []
    for _, part in frame.groupby(["fold", frame.index.get_level_values("symbol")], observed=True):
        p = np.concatenate([[0.0], part["position__peek"].to_numpy()[:-1]])
        paths.append(pd.Series(path_returns(p, part["next_return"].to_numpy(), COSTS),
                               index=part.index.get_level_values("timestamp")))
    by_hand = pd.concat(paths).groupby(level=0).mean()
    assert lags.loc["peek", "sharpe_lag1"] == pytest.approx(metrics.sharpe_ratio(by_hand.to_numpy(), 252.0), rel=1e-12)


def test_the_report_is_booked_at_the_configured_lag():
    frame = predictions()
    at_one = build_report(frame, COSTS, execution=ExecutionConfig(execution_lag=1))
    np.testing.assert_allclose(at_one.overall.loc[["peek", "hold"], "sharpe"],
                               at_one.lags.loc[["peek", "hold"], "sharpe_lag1"])
    assert any("fill 1 bar(s) after the decision bar" in note for note in at_one.notes)
    assert build_report(frame, COSTS, execution=ExecutionConfig(compare_lags=[0])).lags.empty
