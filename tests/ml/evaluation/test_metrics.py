"""Metrics: named tiny fixtures, degenerate inputs, invariances, and agreement with empyrical."""

from __future__ import annotations

import math

import empyrical
import numpy as np
import pandas as pd
import pytest
from scipy import stats

from plus_ultra_ml.evaluation import metrics as m

INF, NAN = math.inf, math.nan
PPY = 252.0  # an explicit annualisation for array fixtures (daily); never a default of the library


def same(value, expected, tol=1e-12):
    if isinstance(expected, float) and math.isnan(expected):
        return math.isnan(value)
    if isinstance(expected, float) and math.isinf(expected):
        return value == expected
    return value == pytest.approx(expected, rel=tol, abs=tol)


@pytest.fixture
def daily():
    rng = np.random.default_rng(0)
    r = rng.normal(0.0005, 0.01, 750)
    b = 0.6 * r + rng.normal(0.0002, 0.008, 750)
    return r, b


# ----------------------------------------------------------------------------------- empyrical agreement
EMPYRICAL = [
    ("total return", lambda r, b: m.total_return(r), lambda r, b: empyrical.cum_returns_final(r)),
    ("cagr", lambda r, b: m.cagr(r, PPY), lambda r, b: empyrical.annual_return(r, annualization=PPY)),
    (
        "volatility",
        lambda r, b: m.annual_volatility(r, PPY),
        lambda r, b: empyrical.annual_volatility(r, annualization=PPY),
    ),
    ("sharpe", lambda r, b: m.sharpe_ratio(r, PPY), lambda r, b: empyrical.sharpe_ratio(r, annualization=PPY)),
    (
        "sharpe rf",
        lambda r, b: m.sharpe_ratio(r, PPY, 1e-4),
        lambda r, b: empyrical.sharpe_ratio(r, 1e-4, annualization=PPY),
    ),
    ("sortino", lambda r, b: m.sortino_ratio(r, PPY), lambda r, b: empyrical.sortino_ratio(r, annualization=PPY)),
    ("downside risk", lambda r, b: m.downside_risk(r, PPY), lambda r, b: empyrical.downside_risk(r, annualization=PPY)),
    ("max drawdown", lambda r, b: m.max_drawdown(r), lambda r, b: empyrical.max_drawdown(r)),
    ("calmar", lambda r, b: m.calmar_ratio(r, PPY), lambda r, b: empyrical.calmar_ratio(r, annualization=PPY)),
    ("tail ratio", lambda r, b: m.tail_ratio(r), lambda r, b: empyrical.tail_ratio(r)),
    ("value at risk", lambda r, b: m.value_at_risk(r, 0.05), lambda r, b: empyrical.value_at_risk(r, 0.05)),
    (
        "expected shortfall",
        lambda r, b: m.expected_shortfall(r, 0.05),
        lambda r, b: empyrical.conditional_value_at_risk(r, 0.05),
    ),
    ("beta", lambda r, b: m.beta(r, b), lambda r, b: empyrical.beta(r, b)),
    ("alpha", lambda r, b: m.alpha(r, b, PPY), lambda r, b: empyrical.alpha(r, b, annualization=PPY)),
    (
        "information ratio",
        lambda r, b: m.information_ratio(r, b, PPY) / math.sqrt(PPY),
        lambda r, b: empyrical.excess_sharpe(r, b),
    ),
]


@pytest.mark.parametrize("name,ours,theirs", EMPYRICAL, ids=[row[0] for row in EMPYRICAL])
def test_agrees_with_empyrical(daily, name, ours, theirs):
    r, b = daily
    assert ours(r, b) == pytest.approx(theirs(r, b), rel=1e-9)


def test_dataframes_answer_per_column_like_empyrical(daily):
    r, b = daily
    frame = pd.DataFrame({"a": r, "b": b})
    ours = m.sharpe_ratio(frame, PPY)
    assert isinstance(ours, pd.Series) and list(ours.index) == ["a", "b"]
    np.testing.assert_allclose(ours.to_numpy(), np.asarray(empyrical.sharpe_ratio(frame, annualization=PPY)), rtol=1e-9)
    np.testing.assert_allclose(m.max_drawdown(frame).to_numpy(), np.asarray(empyrical.max_drawdown(frame)), rtol=1e-12)


# ----------------------------------------------------------------------------------- named tiny fixtures
FIXTURES = [
    # name, metric(returns), returns, expected
    ("total return compounds", m.total_return, [0.1, -0.1], -0.01),
    ("cagr of one year in two periods", lambda r: m.cagr(r, 2), [0.1, 0.1], 0.21),
    ("cagr of a wipe-out", lambda r: m.cagr(r, 2), [-1.0, 0.1], -1.0),
    ("max drawdown from a peak", m.max_drawdown, [0.1, -0.5, 0.2], -0.5),
    ("max drawdown counts the first fall", m.max_drawdown, [-0.2, 0.1], -0.2),
    ("no drawdown", m.max_drawdown, [0.01, 0.02], 0.0),
    ("drawdown duration: longest spell", m.max_drawdown_duration, [0.1, -0.1, -0.1, 0.5, -0.1], 2.0),
    ("drawdown duration: never recovered", m.max_drawdown_duration, [-0.1, 0.05, 0.01], 3.0),
    ("ulcer index", m.ulcer_index, [0.0, -0.5, 1.0], math.sqrt(0.25 / 3)),
    ("hit rate ignores flat bars", m.hit_rate, [0.01, -0.01, 0.0, 0.02], 2 / 3),
    ("profit factor", m.profit_factor, [0.02, -0.01, 0.01], 3.0),
    ("profit factor without losses", m.profit_factor, [0.01, 0.0], INF),
    ("profit factor of nothing", m.profit_factor, [0.0, 0.0], NAN),
    ("sharpe of one period", lambda r: m.sharpe_ratio(r, PPY), [0.01], NAN),
    ("sharpe of a constant gain", lambda r: m.sharpe_ratio(r, PPY), [0.01, 0.01, 0.01], INF),
    ("sharpe of nothing", lambda r: m.sharpe_ratio(r, PPY), [0.0, 0.0], NAN),
    ("sortino without a losing bar", lambda r: m.sortino_ratio(r, PPY), [0.01, 0.02], INF),
    ("calmar without drawdown", lambda r: m.calmar_ratio(r, PPY), [0.01, 0.02], NAN),
    (
        "expected shortfall: worst of five",
        lambda r: m.expected_shortfall(r, 0.2),
        [0.03, -0.02, 0.01, -0.04, 0.0],
        -0.04,
    ),
    ("expected shortfall: two worst", lambda r: m.expected_shortfall(r, 0.25), [0.03, -0.02, 0.01, -0.04, 0.0], -0.03),
    ("var interpolates", lambda r: m.value_at_risk(r, 0.5), [-0.02, 0.0, 0.04, 0.02], 0.01),
    ("nan period compounds as zero", m.total_return, [0.1, NAN, 0.1], 0.21),
]


@pytest.mark.parametrize("name,metric,returns,expected", FIXTURES, ids=[row[0] for row in FIXTURES])
def test_named_fixtures(name, metric, returns, expected):
    assert same(metric(np.array(returns)), expected)


EMPTY_IS_NAN = [
    m.total_return,
    lambda r: m.cagr(r, PPY),
    lambda r: m.annual_volatility(r, PPY),
    lambda r: m.sharpe_ratio(r, PPY),
    lambda r: m.sortino_ratio(r, PPY),
    m.max_drawdown,
    m.max_drawdown_duration,
    m.ulcer_index,
    m.value_at_risk,
    m.expected_shortfall,
    m.hit_rate,
    m.exposure,
]


@pytest.mark.parametrize("metric", EMPTY_IS_NAN)
@pytest.mark.parametrize("data", [[], [NAN, NAN]], ids=["empty", "all-nan"])
def test_no_data_answers_nan(metric, data):
    assert math.isnan(metric(np.array(data, dtype=float)))


def test_turnover_of_no_bars_is_nan_and_nan_positions_are_flat():
    assert math.isnan(m.turnover(np.array([])))
    assert m.turnover(np.array([NAN, 0.5, NAN])) == pytest.approx((0 + 0.5 + 0.5) / 3)


POSITIONS = [
    ("turnover counts the entry", m.turnover, [0.5, 0.5, -0.5], (0.5 + 0.0 + 1.0) / 3),
    ("exposure is mean |p|", m.exposure, [0.5, -0.5, 0.0], 1 / 3),
    ("time in market", m.time_in_market, [0.5, -0.5, 0.0], 2 / 3),
]


@pytest.mark.parametrize("name,metric,positions,expected", POSITIONS, ids=[row[0] for row in POSITIONS])
def test_position_metrics(name, metric, positions, expected):
    assert same(metric(np.array(positions)), expected)


# ----------------------------------------------------------------------------------- invariances
def test_return_invariances(daily):
    r, _ = daily
    rng = np.random.default_rng(1)
    base = m.sharpe_ratio(r, PPY)
    assert m.sharpe_ratio(2.0 * r, PPY) == pytest.approx(base, rel=1e-12)  # the mean term scales with the std
    assert m.sharpe_ratio(r + rng.normal(0, 0.01, r.shape), PPY) < base  # more noise, same mean
    assert m.max_drawdown(r + 0.001) > m.max_drawdown(r)  # lifting every bar makes the drawdown shallower
    assert m.max_drawdown(2.0 * r) < m.max_drawdown(r)  # leverage deepens it
    assert m.value_at_risk(3.0 * r) == pytest.approx(3.0 * m.value_at_risk(r), rel=1e-12)
    assert m.annual_volatility(r, 4 * PPY) == pytest.approx(2 * m.annual_volatility(r, PPY), rel=1e-12)
    order = rng.permutation(len(r))
    assert m.sharpe_ratio(r[order], PPY) == pytest.approx(base, rel=1e-12)  # order-free
    assert m.max_drawdown(np.sort(r)) < m.max_drawdown(r)  # losses first: one long fall


def test_benchmark_invariances(daily):
    r, b = daily
    assert m.beta(b, b) == pytest.approx(1.0)
    assert m.alpha(b, b, PPY) == pytest.approx(0.0, abs=1e-12)
    assert m.beta(3.0 * r, b) == pytest.approx(3.0 * m.beta(r, b), rel=1e-12)
    assert m.alpha(r + 0.001, r, PPY) == pytest.approx((1.001) ** PPY - 1, rel=1e-9)
    assert math.isnan(m.information_ratio(b, b, PPY))  # no active risk: undefined
    assert m.tracking_error(r, b, PPY) > 0


# ----------------------------------------------------------------------------------- annualisation and alignment
def test_annualisation_is_never_assumed():
    with pytest.raises(ValueError, match="never assumed"):
        m.sharpe_ratio(np.array([0.01, 0.02, -0.01]))
    quarter_hours = pd.Series(
        np.random.default_rng(2).normal(0, 0.001, 500),
        index=pd.date_range("2024-01-01", periods=500, freq="15min", tz="UTC"),
    )
    assert m.annualisation(quarter_hours) == pytest.approx(365.25 * 96, rel=1e-9)
    assert m.sharpe_ratio(quarter_hours) == pytest.approx(
        m.sharpe_ratio(quarter_hours.to_numpy(), 365.25 * 96), rel=1e-12
    )


def test_benchmark_is_aligned_by_timestamp_not_truncated(daily):
    r, b = daily
    index = pd.date_range("2020-01-01", periods=len(r), freq="D", tz="UTC")
    strategy = pd.Series(r, index=index)
    bench = pd.Series(b, index=index).iloc[20:].sample(frac=1.0, random_state=0)  # later start, shuffled
    expected = m.beta(r[20:], b[20:])
    assert m.beta(strategy, bench) == pytest.approx(expected, rel=1e-12)
    truncated = m.beta(r[: len(r) - 20], b[20:])  # what pairing by position would compute
    assert abs(truncated - expected) > 0.05
    with pytest.raises(ValueError, match="differ in length"):
        m.beta(r, b[20:])
    with pytest.raises(ValueError, match="pandas objects"):
        m.beta(strategy, b)
    with pytest.raises(ValueError, match="no timestamp"):
        m.beta(strategy, pd.Series(b, index=index + pd.Timedelta(days=10_000)))


def test_active_returns_keep_the_common_index(daily):
    r, b = daily
    index = pd.date_range("2020-01-01", periods=len(r), freq="D", tz="UTC")
    active = m.active_returns(pd.Series(r, index=index), pd.Series(b, index=index).iloc[5:])
    assert active.index.equals(index[5:])
    np.testing.assert_allclose(active.to_numpy(), r[5:] - b[5:])


# ----------------------------------------------------------------------------------- signal metrics
def _wide_pair(seed=3, times=60, symbols=6):
    rng = np.random.default_rng(seed)
    index = pd.date_range("2024-01-01", periods=times, freq="h", tz="UTC")
    cols = [f"S{i}" for i in range(symbols)]
    target = pd.DataFrame(rng.normal(0, 0.01, (times, symbols)), index=index, columns=cols)
    return target, cols


def test_ic_of_a_perfect_signal_and_its_mirror():
    target, _ = _wide_pair()
    assert np.allclose(m.cross_sectional_ic(target, target), 1.0)
    assert np.allclose(m.cross_sectional_ic(-target, target, "spearman"), -1.0)


def test_rank_ic_ignores_monotone_transforms_pearson_does_not():
    target, _ = _wide_pair()
    warped = np.exp(200 * target)  # monotone, very non-linear
    np.testing.assert_allclose(m.cross_sectional_ic(warped, target, "spearman"), 1.0)
    assert m.cross_sectional_ic(warped, target, "pearson").mean() < 0.999


def test_cross_sectional_ic_agrees_with_pandas_corrwith():
    target, cols = _wide_pair()
    rng = np.random.default_rng(4)
    signal = target + pd.DataFrame(rng.normal(0, 0.01, target.shape), index=target.index, columns=cols)
    signal.iloc[3, 2] = np.nan  # a missing cell drops that pair only
    for method in ("pearson", "spearman"):
        ours = m.cross_sectional_ic(signal, target, method)
        theirs = signal.corrwith(target, axis=1, method=method)
        np.testing.assert_allclose(ours.to_numpy(), theirs.to_numpy(), rtol=1e-10)


def test_thin_cross_sections_are_nan_and_long_series_are_accepted():
    target, cols = _wide_pair(symbols=3)
    signal = target.copy()
    signal.iloc[0, :2] = np.nan  # one pair left at the first timestamp
    ic = m.cross_sectional_ic(signal, target, min_assets=3)
    assert math.isnan(ic.iloc[0]) and np.isfinite(ic.iloc[1:]).all()
    long_signal = signal.stack().rename_axis(["timestamp", "symbol"]).swaplevel().sort_index()
    long_target = target.stack().rename_axis(["timestamp", "symbol"]).swaplevel().sort_index()
    pd.testing.assert_series_equal(m.cross_sectional_ic(long_signal, long_target), ic, check_names=False)


def test_ic_by_horizon_separates_a_real_signal_from_noise():
    rng = np.random.default_rng(5)
    index = pd.MultiIndex.from_product(
        [[f"S{i}" for i in range(8)], pd.date_range("2024-01-01", periods=300, freq="h", tz="UTC")],
        names=["symbol", "timestamp"],
    )
    targets = pd.DataFrame(rng.normal(0, 0.01, (len(index), 2)), index=index, columns=["h1", "h2"])
    forecasts = pd.DataFrame(
        {"h1": targets["h1"] + rng.normal(0, 0.01, len(index)), "h2": rng.normal(0, 0.01, len(index))}, index=index
    )
    table = m.ic_by_horizon(forecasts, targets)
    assert list(table.index) == ["h1", "h2"]
    assert table.loc["h1", "ic"] > 0.6 and table.loc["h1", "icir"] > 2
    assert abs(table.loc["h2", "ic"]) < 0.05 and abs(table.loc["h2", "pooled_rank_ic"]) < 0.05
    assert table.loc["h1", "n_timestamps"] == 300
    assert table.loc["h1", "pooled_ic"] == pytest.approx(np.corrcoef(forecasts["h1"], targets["h1"])[0, 1])


# ----------------------------------------------------------------------------------- deflated Sharpe
def test_probabilistic_sharpe_matches_the_closed_form():
    rng = np.random.default_rng(6)
    r = rng.standard_t(5, 400) * 0.01 + 0.001
    sr = r.mean() / r.std(ddof=1)
    skew, kurt = stats.skew(r), stats.kurtosis(r, fisher=False)
    z = (sr - 0.02) * math.sqrt(len(r) - 1) / math.sqrt(1 - skew * sr + (kurt - 1) / 4 * sr**2)
    assert m.probabilistic_sharpe_ratio(r, 0.02) == pytest.approx(stats.norm.cdf(z), rel=1e-10)


def test_psr_worked_example_five_years_monthly():
    """Annual Sharpe 1.5 over 60 normal monthly returns: PSR(0) is about 0.999."""
    z = (1.5 / math.sqrt(12)) * math.sqrt(59) / math.sqrt(1 + 0.5 * (1.5 / math.sqrt(12)) ** 2)
    assert m._psr(1.5 / math.sqrt(12), 60, 0.0, 3.0, 0.0) == pytest.approx(stats.norm.cdf(z))
    assert m._psr(1.5 / math.sqrt(12), 60, 0.0, 3.0, 0.0) == pytest.approx(0.999, abs=1e-3)


def test_expected_max_sharpe_matches_simulation():
    rng = np.random.default_rng(7)
    for n_trials in (10, 100):
        simulated = rng.normal(0, 0.1, (20_000, n_trials)).max(axis=1).mean()
        assert m.expected_max_sharpe(n_trials, 0.01) == pytest.approx(simulated, rel=0.03)
    assert m.expected_max_sharpe(1, 0.5) == 0.0


def test_deflated_sharpe_falls_with_the_number_of_trials():
    rng = np.random.default_rng(8)
    r = rng.normal(0.001, 0.01, 1000)
    dsr = [m.deflated_sharpe_ratio(r, n, sharpe_variance=0.03**2) for n in (1, 10, 100, 1000)]
    assert dsr[0] == pytest.approx(m.probabilistic_sharpe_ratio(r, 0.0))
    assert all(a > b for a, b in zip(dsr, dsr[1:], strict=False))
    assert math.isnan(m.probabilistic_sharpe_ratio(np.array([0.01, 0.02])))


# ----------------------------------------------------------------------------------- bootstrap
@pytest.mark.parametrize("method", ["stationary", "moving"])
def test_bootstrap_indices_are_runs_of_consecutive_bars(method):
    idx = m.bootstrap_indices(500, 200, 10, method, np.random.default_rng(9))
    assert idx.shape == (500, 200) and idx.min() >= 0 and idx.max() < 500
    continues = np.diff(idx, axis=0) == 1
    starts = (~continues).sum() + idx.shape[1]
    mean_run = idx.size / starts
    if method == "moving":
        assert mean_run == pytest.approx(10, rel=0.02)  # cuts only at block edges (and rare collisions)
    else:
        assert mean_run == pytest.approx(10, rel=0.1)  # geometric lengths with mean 10 (wrap-around aside)


def test_bootstrap_interval_covers_the_true_mean_about_as_often_as_promised():
    rng = np.random.default_rng(10)
    hits = 0
    trials = 120
    for seed in range(trials):
        sample = rng.normal(0.001, 0.01, 250)
        ci = m.block_bootstrap_ci(sample, lambda x: np.mean(x, axis=0), n_resamples=400, block_length=5, seed=seed)
        hits += ci.low <= 0.001 <= ci.high
    assert 0.86 <= hits / trials <= 0.99


def test_blocks_widen_the_interval_for_serially_dependent_returns():
    rng = np.random.default_rng(11)
    shocks = rng.normal(0, 0.01, 2000)
    ar = np.empty_like(shocks)
    ar[0] = shocks[0]
    for t in range(1, len(ar)):  # a fixture series, built once
        ar[t] = 0.8 * ar[t - 1] + shocks[t]
    mean = lambda x: np.mean(x, axis=0)  # noqa: E731
    iid = m.block_bootstrap_ci(ar, mean, block_length=1, n_resamples=500)
    blocks = m.block_bootstrap_ci(ar, mean, block_length=50, n_resamples=500)
    assert (blocks.high - blocks.low) > 2 * (iid.high - iid.low)
    again = m.block_bootstrap_ci(ar, mean, block_length=50, n_resamples=500)
    assert again == blocks  # seeded


def test_bootstrap_works_with_annualised_metrics(daily):
    r, _ = daily
    ci = m.block_bootstrap_ci(r, lambda x: m.sharpe_ratio(x, PPY), n_resamples=300)
    assert ci.low < ci.estimate < ci.high
    assert ci.estimate == pytest.approx(m.sharpe_ratio(r, PPY))


# ----------------------------------------------------------------------------------- rolling
@pytest.mark.parametrize(
    "metric,kwargs",
    [(m.sharpe_ratio, {"periods_per_year": PPY}), (m.max_drawdown, {}), (m.expected_shortfall, {"level": 0.1})],
    ids=["sharpe", "max_drawdown", "expected_shortfall"],
)
def test_rolling_equals_the_metric_on_each_trailing_window(daily, metric, kwargs):
    r, _ = daily
    window = 40
    out = m.rolling(metric, window, r, **kwargs)
    assert np.isnan(out[: window - 1]).all()
    for t in (window - 1, 100, len(r) - 1):
        assert out[t] == pytest.approx(metric(r[t - window + 1 : t + 1], **kwargs), rel=1e-10)


def test_rolling_binary_metric_and_causality(daily):
    r, b = daily
    index = pd.date_range("2020-01-01", periods=len(r), freq="D", tz="UTC")
    rs, bs = pd.Series(r, index=index), pd.Series(b, index=index)
    out = m.rolling(m.beta, 60, rs, bs)
    assert out.iloc[99] == pytest.approx(m.beta(r[40:100], b[40:100]))
    cut = m.rolling(m.beta, 60, rs.iloc[:300], bs)  # the future removed: the past must not move
    pd.testing.assert_series_equal(cut, out.iloc[:300])
    annual = m.rolling(m.sharpe_ratio, 60, rs)  # periods_per_year inferred once from the index
    assert annual.iloc[-1] == pytest.approx(m.sharpe_ratio(r[-60:], m.annualisation(rs)))


def test_performance_summary_has_every_headline_number(daily):
    r, b = daily
    index = pd.date_range("2020-01-01", periods=len(r), freq="D", tz="UTC")
    summary = m.performance_summary(
        pd.Series(r, index=index), positions=np.ones((len(r), 2)) * 0.5, benchmark=pd.Series(b, index=index)
    )
    for key in ("cagr", "sharpe", "sortino", "calmar", "max_drawdown", "turnover", "exposure", "beta", "alpha"):
        assert np.isfinite(summary[key]), key
    assert summary["exposure"] == 0.5 and summary["turnover"] == pytest.approx(0.5 / len(r))
    assert summary["periods_per_year"] == pytest.approx(365.25, rel=1e-9)
