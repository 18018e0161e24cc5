"""Baselines: fitted on training rows only, causal, bounded, and able to find a planted signal."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from plus_ultra_ml.config import FixtureConfig, WindowsConfig
from plus_ultra_ml.data.store import load_panel
from plus_ultra_ml.data.windows import Targets, build_targets, split_by_fraction
from plus_ultra_ml.evaluation import baselines
from plus_ultra_ml.synthetic.fixture import build_fixture


@pytest.fixture(scope="module")
def market(tmp_path_factory):
    path = tmp_path_factory.mktemp("bl") / "m.db"
    build_fixture(path, FixtureConfig(symbols=("AAA", "BBB", "CCC"), rows=4000, alt_features=2, seed=11))
    panel = load_panel(path)
    features = panel[["ind__alt_0", "ind__alt_1"]].astype(np.float32)
    features["mom"] = np.log(panel["close"]).groupby(level=0, observed=True).diff(5).astype(np.float32)
    targets = build_targets(panel, 1)
    split = split_by_fraction(panel.index.get_level_values("timestamp"), WindowsConfig(window=16, horizon=1))
    return panel, features, targets, split


def test_positions_are_bounded_and_cover_the_test_bars(market):
    panel, features, targets, split = market
    results = baselines.run_baselines(panel, features, targets, split)
    first, last = split.bounds["test"]
    for name, result in results.items():
        times = result.position.index.get_level_values("timestamp")
        assert times.min() == first and times.max() == last, name
        assert result.position.between(-1, 1).all() and result.position.notna().all(), name


@pytest.mark.parametrize("name", ["ridge", "lightgbm"])
def test_fitted_models_never_see_validation_or_test_targets(market, name):
    panel, features, targets, split = market
    base = getattr(baselines, name)(features, targets, split)
    later = panel.index.get_level_values("timestamp") > split.bounds["train"][1]
    scrambled = targets.forward.copy()
    scrambled.loc[later, "fwd_1"] = np.random.default_rng(0).normal(size=int(later.sum()))
    poisoned = Targets(scrambled, targets.next_return, targets.volatility)
    if name == "lightgbm":  # LightGBM early-stops on validation by design: poison only the test rows
        test_rows = panel.index.get_level_values("timestamp") >= split.bounds["test"][0]
        scrambled = targets.forward.copy()
        scrambled.loc[test_rows, "fwd_1"] = 0.123
        poisoned = Targets(scrambled, targets.next_return, targets.volatility)
    again = getattr(baselines, name)(features, poisoned, split)
    assert np.allclose(base.forecast.to_numpy(), again.forecast.to_numpy())


@pytest.mark.parametrize("name", ["ridge", "lightgbm"])
def test_forecast_baselines_find_the_planted_signal(market, name):
    panel, features, targets, split = market
    result = getattr(baselines, name)(features, targets, split)
    realised = targets.forward["fwd_1"].reindex(result.forecast.index)
    ic = np.corrcoef(result.forecast, realised.fillna(0))[0, 1]
    assert ic > 0.02, ic


def test_momentum_uses_only_the_past(market):
    panel, _, _, split = market
    close = panel["close"]
    full = baselines.momentum(close, split).position
    cut = split.bounds["test"][0] + pd.Timedelta("2D")
    truncated = baselines.momentum(close[close.index.get_level_values("timestamp") <= cut], split).position
    common = truncated.index
    assert (full.reindex(common) == truncated).all()
    aaa = np.log(close.loc["AAA"])
    t = split.bounds["test"][0]
    expected = np.sign(aaa.loc[t] - aaa.shift(20).loc[t])
    assert full.loc[("AAA", t)] == expected
