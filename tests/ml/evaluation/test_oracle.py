"""The oracle policy (evaluation/oracle.py) is a ceiling on the fixture, is causal, and the report
scores it on exactly the rows it scores.

The ceiling tests run on a long fixture of a seed used nowhere else (seed 31; the rule's cost
horizon was chosen on seeds 101-103, the default fixture is seed 7): every strategy is scored on the
last 35% of the bars through the one PnL road (`evaluation.backtest.portfolio_pnl`), the
forecasters fitted on the first 50% and validated on the next 15%. "Beats beyond noise" means the
95% paired stationary block-bootstrap interval of (its net Sharpe - the oracle's), both read on the
same resampled blocks of bars, lies above zero.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from plus_ultra_ml.config import CostConfig, FixtureConfig
from plus_ultra_ml.data.store import load_panel
from plus_ultra_ml.data.windows import build_targets, split_by_bounds
from plus_ultra_ml.evaluation import metrics
from plus_ultra_ml.evaluation.backtest import portfolio_pnl
from plus_ultra_ml.evaluation.baselines import ForecastPositions, run_baselines
from plus_ultra_ml.evaluation.oracle import (MU_INDICATOR, SIGMA_INDICATOR, OracleRule, frictionless_targets,
                                             oracle_positions, panel_oracle_positions)
from plus_ultra_ml.evaluation.predictions import POSITION, REFERENCE
from plus_ultra_ml.evaluation.report import build_report
from plus_ultra_ml.synthetic.fixture import build_fixture, oracle_reference

COSTS = CostConfig()
MU, SIGMA = f"ind__{MU_INDICATOR}", f"ind__{SIGMA_INDICATOR}"


def wide(series: pd.Series) -> pd.DataFrame:
    return series.unstack("symbol").sort_index()


def long(frame: pd.DataFrame, like: pd.Index) -> pd.Series:
    return frame.stack().reorder_levels(like.names).reindex(like)


# --------------------------------------------------------------------------------------------
# the long fixture and everything scored on its test bars
# --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def market(tmp_path_factory):
    path = tmp_path_factory.mktemp("oracle") / "long.db"
    truth = build_fixture(path, FixtureConfig(rows=20_000, seed=31))
    panel = load_panel(path)
    times = panel.index.get_level_values("timestamp").unique().sort_values()
    n = len(times)
    split = split_by_bounds(times, {"train": times[int(0.50 * n)], "val": times[int(0.65 * n)], "test": times[-1]},
                            embargo=2)
    targets = build_targets(panel, 1)
    test_rows = np.asarray(panel.index.get_level_values("timestamp") >= split.bounds["test"][0])
    return path, truth, panel, split, targets, test_rows


def cheap_features(panel: pd.DataFrame) -> pd.DataFrame:
    """Observable, causal features (alt indicators, trailing returns and volatility) for ridge / LightGBM."""
    log_close = np.log(panel["close"])
    by_symbol = log_close.groupby(level="symbol", observed=True, sort=False)
    features = {f"alt_{k}": panel[f"ind__alt_{k}"] for k in (0, 1)}
    for lag in (1, 5, 20, 60):
        features[f"ret_{lag}"] = log_close - by_symbol.shift(lag)
    one = by_symbol.diff()
    features["rvol_20"] = one.groupby(level="symbol", observed=True, sort=False).transform(
        lambda r: r.rolling(20).std())
    return pd.DataFrame(features, index=panel.index)


def scored(market, positions: pd.Series) -> np.ndarray:
    """Per-bar portfolio net PnL of positions (panel index) on the test bars."""
    _, _, panel, _, targets, test_rows = market
    index = panel.index[test_rows]
    next_return = targets.next_return.reindex(index)
    keep = np.isfinite(next_return.to_numpy())
    return portfolio_pnl(positions.reindex(index)[keep].fillna(0.0), next_return[keep], COSTS).to_numpy()


def paired_difference(other: np.ndarray, oracle: np.ndarray, ppy: float) -> metrics.ConfidenceInterval:
    """95% paired stationary block-bootstrap interval of Sharpe(other) - Sharpe(oracle), same blocks."""
    def sharpe(x):
        return np.nan_to_num(metrics.sharpe_ratio(x, ppy))  # a flat strategy (no variance) counts as 0

    def statistic(idx):
        i = idx.astype(np.intp)
        return sharpe(other[i]) - sharpe(oracle[i])

    return metrics.block_bootstrap_ci(np.arange(len(oracle), dtype=np.float64), statistic, n_resamples=300, seed=0)


def rule_on(market, mu: pd.DataFrame, rule: OracleRule) -> pd.Series:
    _, _, panel, _, _, _ = market
    sigma = wide(panel[SIGMA]).reindex_like(mu)
    return long(pd.DataFrame(oracle_positions(mu.to_numpy(), sigma.to_numpy(), COSTS, rule), mu.index, mu.columns),
                panel.index)


@pytest.fixture(scope="module")
def contenders(market) -> dict[str, pd.Series]:
    """Every strategy the project makes cheaply, and positions from noisy versions of the true mu."""
    _, truth, panel, split, targets, _ = market
    out = {name: result.position for name, result in
           run_baselines(panel, cheap_features(panel), targets, split, "test", seed=0).items()}
    out["sign_oracle"] = np.sign(panel[MU])
    mu = wide(panel[MU])
    train = np.asarray(mu.index <= split.bounds["train"][1])
    rng = np.random.default_rng(5)
    for noise in (0.5, 1.0):  # noise sd in units of mu's sd: corr(noisy, mu) ~0.89 / ~0.71
        persistent = pd.DataFrame(rng.standard_normal(mu.shape)).ewm(alpha=0.05, adjust=False).mean().to_numpy()
        persistent /= persistent.std()  # AR(1) noise as persistent as the planted factor, unit sd
        noisy = mu + noise * float(np.nanstd(mu.to_numpy())) * persistent
        out[f"rule_on_noisy_mu_{noise}"] = rule_on(market, noisy, truth.rule)
        mapping = ForecastPositions.fit(noisy.to_numpy()[train].ravel())
        out[f"forecast_positions_of_noisy_mu_{noise}"] = long(
            pd.DataFrame(mapping.transform(noisy.to_numpy()), mu.index, mu.columns), panel.index)
    out["forecast_positions_of_mu"] = long(pd.DataFrame(
        ForecastPositions.fit(mu.to_numpy()[train].ravel()).transform(mu.to_numpy()), mu.index, mu.columns), panel.index)
    return out


def rescalings(market) -> dict[str, pd.Series]:
    """The oracle rule rescaled: position scale, band width, correlation ignored, an exponent on the target."""
    _, truth, panel, _, _, _ = market
    rule = truth.rule
    mu = wide(panel[MU])
    sigma = wide(panel[SIGMA]).reindex_like(mu)

    def variant(**changes) -> pd.Series:
        return rule_on(market, mu, OracleRule(**{**rule.to_dict(), **changes}))

    out = {
        "scale_x0.5": variant(risk_aversion=2 * rule.risk_aversion),
        "scale_x2_clipped": variant(risk_aversion=rule.risk_aversion / 2),
        "band_x0.5": variant(cost_horizon=2 * rule.cost_horizon),  # band half-width ~ cost / horizon
        "band_x2": variant(cost_horizon=rule.cost_horizon / 2),
        "no_band": variant(cost_horizon=1e9),
        "ignore_correlation": variant(correlation=0.0),
    }
    # an exponent a on the frictionless target x = M^-1 mu: mu' = M (sign(x) |x|^a) c, c matching x's scale
    x = frictionless_targets(mu.to_numpy(), sigma.to_numpy(), rule.correlation)
    corr = np.full((mu.shape[1],) * 2, rule.correlation) + (1 - rule.correlation) * np.eye(mu.shape[1])
    second = sigma.to_numpy()[:, :, None] * sigma.to_numpy()[:, None, :] * corr + \
        mu.to_numpy()[:, :, None] * mu.to_numpy()[:, None, :]
    for a in (0.5, 1.5):
        bent = np.sign(x) * np.abs(x) ** a
        bent *= np.abs(x).max() / np.abs(bent).max()
        shaped = pd.DataFrame(np.einsum("tij,tj->ti", second, bent), mu.index, mu.columns)
        out[f"exponent_{a}"] = rule_on(market, shaped, rule)
    return out


@pytest.mark.slow
def test_no_cheap_strategy_beats_the_oracle_beyond_noise(market, contenders):
    _, truth, panel, _, _, _ = market
    oracle = scored(market, panel_oracle_positions(panel, COSTS, truth.rule))
    ppy = truth.bars_per_year
    oracle_sharpe = metrics.sharpe_ratio(oracle, ppy)
    assert oracle_sharpe > 20  # the test segment's oracle: 24.3
    for name, positions in contenders.items():
        ci = paired_difference(scored(market, positions), oracle, ppy)
        assert ci.low < 0, f"{name} beats the oracle beyond noise: Sharpe difference {ci}"
        assert ci.high < 0, f"{name} is not significantly below the oracle: Sharpe difference {ci}"


@pytest.mark.slow
def test_no_rescaling_of_the_oracle_beats_it_beyond_noise(market):
    _, truth, panel, _, _, _ = market
    oracle = scored(market, panel_oracle_positions(panel, COSTS, truth.rule))
    ppy = truth.bars_per_year
    results = {}
    for name, positions in rescalings(market).items():
        ci = paired_difference(scored(market, positions), oracle, ppy)
        results[name] = ci
        assert ci.low < 0, f"{name} beats the oracle beyond noise: Sharpe difference {ci}"
    # the test has power: dropping the band loses significantly (ignoring the correlation loses about 1
    # Sharpe point on these bars, inside the noise)
    assert results["no_band"].high < 0, results
    # without clipping the scale is irrelevant (gross PnL and costs both scale with the position)
    assert results["scale_x0.5"].estimate == pytest.approx(0.0, abs=1e-6)


# --------------------------------------------------------------------------------------------
# causality and the rule itself (small inputs)
# --------------------------------------------------------------------------------------------
def random_truth(seed: int, bars: int = 400, symbols: int = 3) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    sigma = 1e-3 * np.exp(0.3 * rng.standard_normal((bars, symbols)))
    mu = pd.DataFrame(rng.standard_normal((bars, symbols))).ewm(alpha=0.1).mean().to_numpy() * 2e-4
    return mu, sigma


def test_positions_depend_only_on_this_bar_and_the_previous_position():
    mu, sigma = random_truth(0)
    rule = OracleRule(correlation=0.5, risk_aversion=300.0)
    positions = oracle_positions(mu, sigma, COSTS, rule)
    assert np.abs(np.diff(positions, axis=0)).max() > 0 and (np.diff(positions, axis=0) == 0).any()  # trades and waits
    for t in (0, 1, 57, 200, 399):  # one bar at a time from the previous position: the same decision
        previous = positions[t - 1] if t else np.zeros(3)
        step = oracle_positions(mu[t:t + 1], sigma[t:t + 1], COSTS, rule, previous=previous)[0]
        np.testing.assert_allclose(step, positions[t], atol=1e-12)
    future = mu.copy(), sigma.copy()
    future[0][250:] = -future[0][250:]
    future[1][250:] *= 3.0
    changed = oracle_positions(*future, COSTS, rule)
    np.testing.assert_array_equal(changed[:250], positions[:250])  # the future changes nothing before it
    assert not np.allclose(changed[250:], positions[250:])


def test_without_costs_the_rule_is_the_sharpe_optimal_target_and_the_band_holds_still():
    mu, sigma = random_truth(1)
    rule = OracleRule(correlation=0.3, risk_aversion=1e4)  # large enough that the limit never binds
    free = CostConfig(transaction_bps=0.0, slippage_bps=0.0, holding_bps=0.0)
    np.testing.assert_allclose(oracle_positions(mu, sigma, free, rule),
                               frictionless_targets(mu, sigma, 0.3) / rule.risk_aversion, rtol=1e-9, atol=1e-12)  # ascent tolerance
    dear = oracle_positions(mu, sigma, CostConfig(transaction_bps=50.0), rule)
    cheap = oracle_positions(mu, sigma, COSTS, rule)
    turnover = {k: np.abs(np.diff(p, axis=0)).sum() for k, p in (("dear", dear), ("cheap", cheap))}
    assert turnover["dear"] < turnover["cheap"]  # dearer trading: a wider band, less trading
    capped = oracle_positions(mu, sigma, free, OracleRule(correlation=0.3, risk_aversion=1.0))
    assert np.abs(capped).max() == pytest.approx(1.0)  # the backtester's position limit
    held = oracle_positions(mu, sigma, CostConfig(holding_bps=2.0), rule)  # 2 bps a bar: more than any mu here
    assert np.abs(mu).max() < 2e-4 and (held == 0).all()


def _dense_positions(mu, sigma, rho, gamma, trade, hold, limit):
    """The rule by coordinate ascent on an explicit (N, N) M, the form the factored kernel must equal."""
    T, N = mu.shape
    out, q = np.zeros((T, N)), np.zeros(N)
    for t in range(T):
        M = np.outer(sigma[t], sigma[t]) * (rho + (1 - rho) * np.eye(N)) + np.outer(mu[t], mu[t])
        p = q.copy()
        for _ in range(200):
            before = p.copy()
            for i in range(N):
                a = mu[t, i] - gamma * (M[i] @ p - M[i, i] * p[i])
                b = gamma * M[i, i]
                xs = [(a - hold * sh - trade * st) / b for sh in (1, -1) for st in (1, -1)] + [0.0, q[i], limit, -limit]
                xs = np.clip(xs, -limit, limit)
                f = a * xs - 0.5 * b * xs**2 - hold * np.abs(xs) - trade * np.abs(xs - q[i])
                p[i] = xs[int(np.argmax(f))]
            if np.abs(p - before).max() <= 1e-13 * limit:
                break
        out[t], q = p, p.copy()
    return out


@pytest.mark.parametrize("rho", [0.5, 0.0, -0.2])
def test_the_factored_kernel_equals_coordinate_ascent_on_the_dense_second_moment(rho):
    rng = np.random.default_rng(11)
    mu, sigma = rng.normal(0, 4e-4, (60, 9)), rng.uniform(5e-3, 2e-2, (60, 9))
    rule, costs = OracleRule(correlation=rho, risk_aversion=5.0), CostConfig(transaction_bps=2.0)
    from plus_ultra_ml.objectives.pnl import hold_rate, trade_rate

    dense = _dense_positions(mu, sigma, rho, 5.0, trade_rate(costs) / rule.cost_horizon, hold_rate(costs), 1.0)
    np.testing.assert_allclose(oracle_positions(mu, sigma, costs, rule), dense, atol=1e-10)
    assert (np.abs(dense) == 1.0).any() and (np.diff(dense, axis=0) == 0).any()  # the limit and the band both act
    corr = rho + (1 - rho) * np.eye(9)
    second = sigma[:, :, None] * sigma[:, None, :] * corr + mu[:, :, None] * mu[:, None, :]
    np.testing.assert_allclose(frictionless_targets(mu, sigma, rho), np.linalg.solve(second, mu[:, :, None])[:, :, 0],
                               rtol=1e-9)


def test_unknown_truth_is_flat_and_bad_rules_are_refused():
    mu, sigma = random_truth(2, bars=20)
    mu[5:8, 1] = np.nan
    positions = oracle_positions(mu, sigma, COSTS, OracleRule(0.5, 300.0))
    assert (positions[5:8, 1] == 0).all() and np.isfinite(positions).all()
    from plus_ultra_ml.errors import PlusUltraError

    with pytest.raises(PlusUltraError, match="risk_aversion"):
        OracleRule(correlation=0.5, risk_aversion=0.0)
    with pytest.raises(PlusUltraError, match="correlation"):
        OracleRule(correlation=1.0, risk_aversion=1.0)


# --------------------------------------------------------------------------------------------
# the report: share of the oracle on exactly the scored rows
# --------------------------------------------------------------------------------------------
def test_report_scores_the_oracle_on_exactly_its_rows(tmp_path):
    path = tmp_path / "fixture.db"
    truth = build_fixture(path, FixtureConfig(rows=1_500, seed=3))
    panel = load_panel(path)
    oracle = oracle_reference(panel, path, COSTS)
    assert oracle is not None and oracle.index.equals(panel.index)
    assert oracle_reference(panel, None, COSTS) is None
    next_return = build_targets(panel, 1).next_return
    frame = pd.DataFrame({"next_return": next_return, POSITION + "model": np.sign(panel["ind__alt_0"]),
                          POSITION + "buy_and_hold": 1.0, REFERENCE + "oracle": oracle}).dropna()
    frame = frame[frame.index.get_level_values("timestamp") >= frame.index.get_level_values("timestamp")[300]]
    ppy = truth.bars_per_year

    def expected(rows: pd.DataFrame) -> float:  # the oracle's Sharpe straight from the one PnL road
        return metrics.sharpe_ratio(portfolio_pnl(rows[REFERENCE + "oracle"], rows["next_return"], COSTS), ppy)

    full = build_report(frame, COSTS, periods_per_year=ppy, n_trials=2)
    assert list(full.overall.index) == ["model", "buy_and_hold"]  # a reference is not a strategy
    assert full.paired.index.tolist() == ["buy_and_hold"]
    assert full.references.loc[("all", "oracle"), "sharpe"] == pytest.approx(expected(frame), rel=1e-9)
    assert full.overall["share_of_oracle"].to_numpy() == pytest.approx(
        full.overall["sharpe"].to_numpy() / expected(frame), rel=1e-9)

    symbols = frame.index.get_level_values("symbol")
    half = frame[symbols.isin(symbols.unique()[:2])]  # drop half the rows (two of the four symbols)
    part = build_report(half, COSTS, periods_per_year=ppy)
    assert part.references.loc[("all", "oracle"), "sharpe"] == pytest.approx(expected(half), rel=1e-9)
    assert part.references.loc[("all", "oracle"), "sharpe"] != pytest.approx(expected(frame), rel=1e-3)
    assert part.references.loc[("all", "oracle"), "bars"] == len(half.index.get_level_values("timestamp").unique())
    early = frame[frame.index.get_level_values("timestamp") < frame.index.get_level_values("timestamp")[600]]
    assert build_report(early, COSTS, periods_per_year=ppy).references.loc[("all", "oracle"), "sharpe"] == \
        pytest.approx(expected(early), rel=1e-9)
    assert "share_of_oracle" in set(full.metrics_table()["metric"])

    # the held-out tail metrics read the same-bars oracle on exactly the model's windows
    from plus_ultra_ml.evaluation.heldout import SegmentPredictions, heldout_metrics

    windows = pd.DataFrame({"forecast_1": panel["ind__alt_0"], "target_1": np.log1p(next_return),
                            "position": np.sign(panel["ind__alt_0"]) * 0.5, "next_return": next_return},
                           index=panel.index).reindex(half.index)
    scores = heldout_metrics(SegmentPredictions(windows, 0.0, {}, "test"), COSTS, ppy, oracle=oracle)
    assert scores["oracle_sharpe_net"] == pytest.approx(expected(half), rel=1e-9)
    assert scores["share_of_oracle"] == pytest.approx(scores["sharpe_net"] / expected(half), rel=1e-9)
    assert "oracle_sharpe_net" not in heldout_metrics(SegmentPredictions(windows, 0.0, {}, "test"), COSTS, ppy)
