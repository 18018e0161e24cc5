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
        assert result.position.notna().all(), name
        if name == "universe_buy_and_hold":  # sleeve multipliers N * weight: in [0, N], mean 1 at every bar
            assert result.position.between(0, 3).all(), name
            assert np.allclose(result.position.groupby(level="timestamp").mean(), 1.0), name
        else:
            assert result.position.between(-1, 1).all(), name


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


# --------------------------------------------------------------------------------------------
# the one forecast -> position mapping
# --------------------------------------------------------------------------------------------
def old_mapping(forecast, train_forecast):  # before issue 15: clip(forecast / (2 * std(train)), -1, 1)
    return np.clip(forecast / (2 * np.std(train_forecast)), -1, 1)


def test_a_constant_forecast_is_flat():
    mapping = baselines.ForecastPositions.fit(np.full(500, 0.03))
    assert (mapping.transform(np.full(200, 0.03)) == 0).all()
    assert (mapping.transform(np.array([0.5, -0.5, np.nan])) == 0).all()  # no dispersion fitted: no view at all


def test_a_near_constant_forecast_is_near_flat_not_full_exposure():
    # LightGBM early-stopped at about one tree: the base score plus leaf values a hundred times smaller
    rng = np.random.default_rng(0)
    train, test = 0.03 + 1e-4 * rng.normal(size=2000), 0.03 + 1e-4 * rng.normal(size=500)
    assert (np.abs(old_mapping(test, train)) == 1).mean() == 1.0  # the degenerate old mapping: buy-and-hold
    position = baselines.ForecastPositions.fit(train).transform(test)
    assert np.abs(position).max() < 1e-4


def test_a_real_signal_gives_positions_that_vary():
    rng = np.random.default_rng(1)
    train, test = rng.normal(0.01, 0.05, 2000), rng.normal(0.01, 0.05, 500)
    position = baselines.ForecastPositions.fit(train).transform(test)
    assert position.std() > 0.25 and (position > 0.2).mean() > 0.2 and (position < -0.2).mean() > 0.2
    assert np.abs(position).max() <= 1
    assert np.corrcoef(position, test)[0, 1] > 0.95  # monotone in the forecast


def test_a_position_depends_only_on_its_own_forecast_and_the_training_fit():
    rng = np.random.default_rng(2)
    train, test = rng.normal(0, 1, 1000), rng.normal(0, 1, 400)
    mapping = baselines.ForecastPositions.fit(train)
    perturbed = test.copy()
    perturbed[200:] = 100 * perturbed[200:] + 7  # the rest of the test window changes wildly
    np.testing.assert_array_equal(mapping.transform(test)[:200], mapping.transform(perturbed)[:200])
    assert baselines.ForecastPositions.fit(train) == mapping  # fitted numbers come from training forecasts only


def test_no_finite_training_forecast_is_a_clear_error():
    with pytest.raises(baselines.PlusUltraError, match="no finite training forecast"):
        baselines.ForecastPositions.fit(np.array([np.nan, np.nan]))


@pytest.mark.parametrize("name", ["ridge", "lightgbm"])
def test_forecaster_positions_ignore_test_window_statistics(market, name):
    """Perturbing the test window's features in its second half leaves every first-half position unchanged."""
    panel, features, targets, split = market
    base = getattr(baselines, name)(features, targets, split)
    times = features.index.get_level_values("timestamp")
    first, last = split.bounds["test"]
    middle = first + (last - first) / 2
    later = np.asarray(times > middle)
    shaken = features.copy()
    shaken.loc[later] = (shaken.loc[later] * 50 + 3).astype(np.float32)
    again = getattr(baselines, name)(shaken, targets, split)
    early = base.position.index.get_level_values("timestamp") <= middle
    np.testing.assert_array_equal(base.position[early].to_numpy(), again.position[early].to_numpy())
    assert not np.allclose(base.position[~early].to_numpy(), again.position[~early].to_numpy())


def test_lightgbm_is_not_pinned_at_full_exposure(market):
    panel, features, targets, split = market
    result = baselines.lightgbm(features, targets, split)
    assert (result.position.abs() >= 1 - 1e-12).mean() < 0.5


# --------------------------------------------------------------------------------------------
# configuration, and the new baselines
# --------------------------------------------------------------------------------------------
def test_lightgbm_threads_come_from_config(market, monkeypatch):
    import lightgbm as lgb

    from plus_ultra_ml.config import BaselinesConfig, ExperimentConfig, config_from_dict

    assert ExperimentConfig().baselines.num_threads == 1
    assert config_from_dict({}, ["baselines.num_threads=3"]).baselines.num_threads == 3
    seen, train = [], lgb.train
    monkeypatch.setattr(lgb, "train",
                        lambda params, *a, **k: seen.append(params["num_threads"]) or train(params, *a, **k))
    panel, features, targets, split = market
    baselines.run_baselines(panel, features, targets, split, names=("lightgbm",), config=BaselinesConfig(num_threads=2))
    assert seen == [2]


def test_unknown_baseline_is_named(market):
    panel, features, targets, split = market
    with pytest.raises(baselines.PlusUltraError, match="unknown baseline.*'oracle'"):
        baselines.run_baselines(panel, features, targets, split, names=("oracle",))


def test_persistence_is_flat(market):
    panel, _, _, split = market
    result = baselines.persistence(panel["close"], split)
    assert (result.position == 0).all() and result.forecast is None


def test_vol_target_is_causal_capped_and_fitted_on_training_bars(market):
    panel, _, _, split = market
    close = panel["close"]
    full = baselines.vol_target(close, split, window=20).position
    assert full.between(0, 1).all() and (full < 1).any() and (full == 1).any()
    cut = split.bounds["test"][0] + pd.Timedelta("2D")
    truncated = baselines.vol_target(close[close.index.get_level_values("timestamp") <= cut], split, window=20).position
    assert (full.reindex(truncated.index) == truncated).all()
    # by hand for one bar: median training volatility over the trailing 20-bar volatility at t
    returns = np.log(close.loc["AAA"]).diff()
    realised = returns.rolling(20).std()
    first, last = split.bounds["train"]
    target = realised[(realised.index >= first) & (realised.index <= last)].median()
    t = split.bounds["test"][0]
    assert full.loc[("AAA", t)] == pytest.approx(min(1.0, target / realised.loc[t]))
    # a wilder test window changes test positions, never the fitted target
    wild = close.copy()
    later = wild.index.get_level_values("timestamp") > cut
    wild[later] = wild[later] * np.exp(np.random.default_rng(0).normal(0, 0.05, int(later.sum())))
    again = baselines.vol_target(wild, split, window=20).position
    assert (again.reindex(truncated.index) == truncated).all()


# --------------------------------------------------------------------------------------------
# equal-weight buy-and-hold of the universe (drifting, never rebalanced)
# --------------------------------------------------------------------------------------------
def _tiny_panel(prices: dict[str, list[float]]) -> tuple[pd.Series, object]:
    from plus_ultra_ml.data.windows import Split

    times = pd.date_range("2024-01-01", periods=len(next(iter(prices.values()))), freq="1D", tz="UTC")
    index = pd.MultiIndex.from_product([pd.CategoricalIndex(list(prices)), times], names=["symbol", "timestamp"])
    close = pd.Series(np.concatenate([prices[s] for s in prices]), index=index, name="close")
    split = Split(bounds={"train": (times[0], times[0]), "test": (times[0], times[-1])}, embargo=0)
    return close, split


def test_universe_buy_and_hold_is_the_drifting_portfolio_by_hand():
    from plus_ultra_ml.config import CostConfig
    from plus_ultra_ml.evaluation.backtest import portfolio_pnl

    close, split = _tiny_panel({"A": [100.0, 110.0, 99.0, 120.0], "B": [50.0, 50.0, 55.0, 44.0]})
    result = baselines.universe_buy_and_hold(close, split)
    # by hand: $0.5 in each at the first bar; A's value 0.5 * (1, 1.1, 0.99, 1.2), B's 0.5 * (1, 1, 1.1, 0.88)
    value = np.array([1.0, 1.05, 1.045, 1.04])
    weight_a = 0.5 * np.array([1.0, 1.1, 0.99, 1.2]) / value
    assert np.allclose(result.position.loc["A"].to_numpy(), 2 * weight_a)
    assert np.allclose(result.position.loc["B"].to_numpy(), 2 * (1 - weight_a))
    next_return = close.groupby(level="symbol", observed=True).shift(-1) / close - 1
    free = CostConfig(transaction_bps=0.0, slippage_bps=0.0, holding_bps=0.0)
    pnl = portfolio_pnl(result.position, next_return, free)  # the one PnL road
    assert np.allclose(pnl.to_numpy()[:3], value[1:] / value[:-1] - 1)  # 0.05, -0.00476, -0.00478
    rebalanced = portfolio_pnl(baselines.buy_and_hold(close, split).position, next_return, free)
    assert not np.allclose(rebalanced.to_numpy()[:3], pnl.to_numpy()[:3])  # the 1/N portfolio is not it


def test_universe_buy_and_hold_on_one_symbol_is_buy_and_hold():
    close, split = _tiny_panel({"A": [100.0, 110.0, 99.0, 120.0, 80.0]})
    held = baselines.universe_buy_and_hold(close, split).position
    assert held.equals(baselines.buy_and_hold(close, split).position)


def test_universe_buy_and_hold_weights_use_only_past_prices(market):
    panel, _, _, split = market
    close = panel["close"]
    base = baselines.universe_buy_and_hold(close, split).position
    times = close.index.get_level_values("timestamp")
    first, last = split.bounds["test"]
    cut = times[(times > first) & (times < last)].unique().sort_values()[100]
    shocked = close.where(times <= cut, close * np.where(close.index.get_level_values("symbol") == "AAA", 3.0, 0.5))
    moved = baselines.universe_buy_and_hold(shocked, split).position
    past = base.index.get_level_values("timestamp") <= cut
    assert np.array_equal(base[past].to_numpy(), moved[past].to_numpy())  # later prices change nothing before
    assert not np.allclose(base[~past].to_numpy(), moved[~past].to_numpy())
