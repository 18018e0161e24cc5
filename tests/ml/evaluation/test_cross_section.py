"""Cross-sectional evaluation (evaluation/cross_section.py), its report sections, and the
cross-sectional baselines (evaluation/baselines.py): hand computations on tiny frames, a perfect and
a random score, sector attribution that adds up, causality, and a 300-symbol report that stays short.

Default tier: hand-made frames only (a daily universe of 40 names x 500 sessions among them).
"""

from __future__ import annotations

import sqlite3

import numpy as np
import pandas as pd
import pytest

from plus_ultra_ml.config import CostConfig, PortfolioConfig, WindowsConfig
from plus_ultra_ml.data.store import database_sectors
from plus_ultra_ml.data.windows import Targets, build_targets, split_by_fraction
from plus_ultra_ml.errors import PlusUltraError
from plus_ultra_ml.evaluation import baselines, cross_section
from plus_ultra_ml.evaluation.report import build_report, figures, to_markdown


def long(wide: pd.DataFrame, name: str) -> pd.Series:
    """(T, N) timestamp x symbol -> long (symbol, timestamp) Series."""
    out = wide.stack(future_stack=True).rename(name)
    out.index.names = ["timestamp", "symbol"]
    return out.reorder_levels(["symbol", "timestamp"]).sort_index()


def frame_of(scores: dict[str, pd.DataFrame], returns: pd.DataFrame) -> tuple[pd.DataFrame, pd.Series]:
    r = long(returns, "next_return")
    return pd.DataFrame({k: long(v, k).reindex(r.index) for k, v in scores.items()}), r


TIMES = pd.date_range("2024-01-01", periods=2, freq="D", tz="UTC")


# --------------------------------------------------------------------------------------------
# quantile portfolios by hand
# --------------------------------------------------------------------------------------------
def test_quantile_returns_equal_a_hand_computation():
    names = list("ABCDEF")
    score = pd.DataFrame([[1, 2, 3, 4, 5, 6], [6, 5, 4, 3, 2, 1]], index=TIMES, columns=names, dtype=float)
    ret = pd.DataFrame([[.01, .02, .03, .04, .05, .06], [.01, -.02, .00, .02, .04, -.01]], index=TIMES, columns=names)
    scores, r = frame_of({"s": score}, ret)
    cs = cross_section.evaluate_cross_section(scores, r, 252.0, quantiles=3)
    # date 1: buckets {A,B} {C,D} {E,F}: .015 .035 .055; date 2: reversed, {F,E} {D,C} {B,A}: .015 .01 -.005
    row = cs.buckets.loc["s"]
    assert row["q1"] == pytest.approx((0.015 + 0.015) / 2)
    assert row["q2"] == pytest.approx((0.035 + 0.010) / 2)
    assert row["q3"] == pytest.approx((0.055 - 0.005) / 2)
    assert cs.spread["s"].tolist() == pytest.approx([0.04, -0.02])
    assert row["spread"] == pytest.approx(0.01)
    # top bucket {E,F} then {A,B}: all replaced; bottom {A,B} then {E,F}: all replaced
    assert row["top_turnover"] == pytest.approx(1.0) and row["bottom_turnover"] == pytest.approx(1.0)
    assert row["dates"] == 2


def test_buckets_ties_missing_names_and_too_few_names():
    score = pd.DataFrame([[1.0, 1.0, 2.0, np.nan, 3.0], [1.0, np.nan, np.nan, np.nan, 2.0]], index=TIMES,
                         columns=list("ABCDE"))
    buckets = cross_section.quantile_buckets(score, 2)
    # date 1: 4 names, ranks 1.5 1.5 3 4 -> floor((r - 1) 2 / 4) = 0 0 1 1; date 2: 2 names -> 0, 1
    assert buckets.iloc[0].tolist()[:3] == [0.0, 0.0, 1.0] and np.isnan(buckets.iloc[0, 3]) and buckets.iloc[0, 4] == 1
    assert buckets.iloc[1, 0] == 0 and buckets.iloc[1, 4] == 1
    assert np.isnan(cross_section.quantile_buckets(score, 3).iloc[1]).all()  # 2 names < 3 buckets: none
    with pytest.raises(PlusUltraError, match="quantiles"):
        cross_section.quantile_buckets(score, 1)


def test_turnover_counts_names_replaced_in_a_bucket():
    buckets = pd.DataFrame([[1, 1, 0, 0], [1, 0, 1, 0], [1, 0, 1, 0]], index=pd.date_range("2024", periods=3),
                           columns=list("ABCD"), dtype=float)
    assert cross_section.bucket_turnover(buckets, 1).tolist()[1:] == [0.5, 0.0]
    assert np.isnan(cross_section.bucket_turnover(buckets, 1).iloc[0])


# --------------------------------------------------------------------------------------------
# a perfect score, a random one, and the sectors
# --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def noise():
    rng = np.random.default_rng(3)
    times = pd.date_range("2020-01-01", periods=300, freq="D", tz="UTC")
    names = [f"S{i:03d}" for i in range(100)]
    ret = pd.DataFrame(rng.normal(0, 0.02, (300, 100)), index=times, columns=names)
    ret.iloc[:50, :10] = np.nan  # ten names list late
    scores, r = frame_of({"perfect": ret, "random": pd.DataFrame(rng.normal(size=(300, 100)), index=times,
                                                                 columns=names)}, ret)
    sectors = pd.Series([f"sec{i % 7}" for i in range(100)], index=names)
    return scores, r, sectors


def test_perfect_score_spread_is_positive_and_a_random_one_is_noise(noise):
    scores, r, sectors = noise
    cs = cross_section.evaluate_cross_section(scores, r, 252.0, sectors=sectors)
    perfect, random = cs.buckets.loc["perfect"], cs.buckets.loc["random"]
    assert perfect["spread_low"] > 0 and perfect["spread_sharpe_low"] > 0
    assert (perfect[[f"q{k}" for k in range(1, 11)]].diff().dropna() > 0).all()  # monotone in the score
    assert cs.ic.loc["perfect", "ic"] == pytest.approx(1.0) and cs.ic.loc["perfect", "rank_ic"] == pytest.approx(1.0)
    spread = cs.spread["random"].dropna()
    assert abs(spread.mean()) < 4 * spread.std() / np.sqrt(len(spread))
    assert random["spread_low"] < random["spread"] < random["spread_high"]
    assert cs.ic.loc["random", "ic_low"] < 0 < cs.ic.loc["random", "ic_high"]
    assert 0.7 < random["top_turnover"] <= 1.0  # a fresh random score replaces ~90% of a decile each date


def test_sector_attribution_sums_to_the_spread(noise):
    scores, r, sectors = noise
    cs = cross_section.evaluate_cross_section(scores, r, 252.0, sectors=sectors)
    for name in ("perfect", "random"):
        parts = cs.sectors[f"{name}:spread"]
        assert len(parts) == 7
        assert parts.sum() == pytest.approx(cs.buckets.loc[name, "spread"], rel=1e-9, abs=1e-12)
    assert np.allclose(cs.sectors["perfect:ic"], 1.0)
    scored = scores["random"].where(r.notna())  # names are ranked among those with a next return
    buckets = cross_section.quantile_buckets(scored.unstack("symbol").sort_index(), 10)
    per_date = cross_section.sector_contributions(buckets, r.unstack("symbol").sort_index(), sectors, 10).sum(axis=1)
    assert np.allclose(per_date.dropna(), cs.spread["random"].dropna())


# --------------------------------------------------------------------------------------------
# the report: universe sections only for a universe, and short
# --------------------------------------------------------------------------------------------
def predictions(n_symbols: int, n_bars: int = 60, sectors: bool = True, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    times = pd.date_range("2023-01-02", periods=n_bars, freq="B", tz="UTC")
    names = [f"N{i:03d}" for i in range(n_symbols)]
    index = pd.MultiIndex.from_product([names, times], names=["symbol", "timestamp"])
    alpha = rng.normal(size=len(index))
    ret = 0.002 * alpha + rng.normal(0, 0.02, len(index))
    frame = pd.DataFrame({"next_return": ret, "forecast__h1": alpha, "target__h1": np.log1p(ret),
                          "signal__momentum": rng.normal(size=len(index)),
                          "position__model": np.clip(alpha / 2, -1, 1), "position__buy_and_hold": 1.0}, index=index)
    if sectors:
        frame["sector"] = [f"Sector{i % 11}" for i in range(n_symbols) for _ in times]
    frame.attrs["periods_per_year"] = 252.0
    return frame


def test_report_of_300_symbols_leads_with_per_date_ic_and_shows_deciles_briefly():
    report = build_report(predictions(300), CostConfig())
    cs = report.cross_section
    assert cs is not None and list(cs.ic.index) == ["model", "momentum"]
    assert cs.ic.loc["model", "ic_low"] > 0  # the planted forecast is found
    text = to_markdown(report, {})
    sections = [line for line in text.splitlines() if line.startswith("## ")]
    assert sections[0].startswith("## Per-date cross-sectional IC")
    assert any(s.startswith("## Quantile portfolios") for s in sections)
    assert any(s.startswith("## Per sector") for s in sections)
    assert len(text.splitlines()) < 120  # 300 names, and still a page
    assert "quantile_spread" in figures(report)
    table = report.metrics_table()
    assert {"cross_section_ic", "quantiles", "sector"} <= set(table["scope"])


def test_the_oracle_score_is_a_reference_row_that_every_ic_is_a_share_of():
    frame = predictions(300)
    mu = 0.002 * frame["forecast__h1"]  # the true expected return behind next_return
    frame["forecast__h1"] = frame["forecast__h1"] + np.random.default_rng(3).normal(0, 1.0, len(frame))  # half
    frame["reference_score__oracle"] = mu
    report = build_report(frame, CostConfig())
    ic = report.cross_section.ic
    assert list(ic.index) == ["model", "momentum", "oracle (reference)"]
    assert ic.loc["oracle (reference)", "ic"] > ic.loc["model", "ic"] > 0
    np.testing.assert_allclose(ic["share_of_oracle_ic"], ic["ic"] / ic.loc["oracle (reference)", "ic"])
    assert 0.5 < ic.loc["model", "share_of_oracle_ic"] < 0.9  # the noise halves the score's variance share
    assert "oracle (reference)" not in report.overall.index and "oracle" not in report.paired.index
    assert any("share_of_oracle_ic" in note for note in report.notes)
    assert "share_of_oracle_ic" not in build_report(predictions(300), CostConfig()).cross_section.ic  # no truth: none


def test_a_few_symbols_keep_their_report():
    report = build_report(predictions(5, sectors=False), CostConfig())
    assert report.cross_section is None
    text = to_markdown(report, {})
    assert "cross-sectional IC" not in text and "Quantile portfolios" not in text
    assert "quantile_spread" not in figures(report)
    assert build_report(predictions(5, sectors=True), CostConfig()).cross_section is not None  # sectors: a universe
    one_sector = predictions(5, sectors=False).assign(sector="synthetic")  # the small fixture's one label
    assert build_report(one_sector, CostConfig()).cross_section is None
    books = PortfolioConfig(construction="long_short", k=2, max_weight=0.5)  # names ranked against each other
    assert build_report(predictions(12, sectors=False), CostConfig(), portfolio=books).cross_section is not None
    assert build_report(predictions(12, sectors=False), CostConfig()).cross_section is None
    assert build_report(predictions(5, sectors=False), CostConfig(), portfolio=books).cross_section is None  # < 10


# --------------------------------------------------------------------------------------------
# cross-sectional baselines on a small universe fixture
# --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def universe():
    """A hand-made daily universe: 40 names x 500 sessions, the first 5 listing at bar 100, with a
    feature `alt` that predicts the next return across names (IC ~ 0.1)."""
    rng = np.random.default_rng(7)
    n_bars, n = 500, 40
    times = pd.bdate_range("2020-01-01", periods=n_bars, tz="UTC")
    alt = rng.normal(size=(n_bars, n))
    ret = 0.001 * alt + rng.normal(0, 0.01, (n_bars, n))  # ret[t] = close[t+1] / close[t] - 1
    close = 100 * np.cumprod(np.vstack([np.ones((1, n)), 1 + ret[:-1]]), axis=0)
    names = [f"U{i:02d}" for i in range(n)]
    wide_close = pd.DataFrame(close, index=times, columns=names)
    wide_close.iloc[:100, :5] = np.nan
    panel = long(wide_close, "close").dropna().to_frame()
    panel.index = panel.index.set_levels(pd.CategoricalIndex(panel.index.levels[0]), level=0)
    features = pd.DataFrame({"alt": long(pd.DataFrame(alt, index=times, columns=names), "alt").reindex(panel.index)},
                            dtype=np.float32)
    features["mom"] = np.log(panel["close"]).groupby(level=0, observed=True).diff(5).astype(np.float32)
    targets = build_targets(panel, 1)
    split = split_by_fraction(panel.index.get_level_values("timestamp"), WindowsConfig(window=16, horizon=1))
    return panel, features, targets, split


def test_database_sectors_reads_assets_sector(tmp_path):
    path = tmp_path / "a.db"
    with sqlite3.connect(path) as connection:
        connection.execute("CREATE TABLE assets (symbol TEXT, sector TEXT)")
        connection.executemany("INSERT INTO assets VALUES (?, ?)", [("A", "Energy"), ("B", " "), ("C", None)])
    assert database_sectors(path) == {"A": "Energy"}
    assert database_sectors(None) == {}


def test_universe_gets_the_cross_sectional_baselines_and_sectors(universe):
    panel, features, targets, split = universe
    assert set(baselines.CROSS_SECTIONAL_BASELINES) <= set(baselines.default_baselines(panel))
    few = panel[panel.index.get_level_values("symbol").isin(panel.index.levels[0][:3])]
    assert baselines.default_baselines(few) == baselines.BASELINES
    assert set(baselines.CROSS_SECTIONAL_BASELINES) <= set(baselines.default_baselines(few, cross_sectional=True))
    assert baselines.default_baselines(panel, cross_sectional=False) == baselines.BASELINES
    results = baselines.run_baselines(panel, features, targets, split, names=baselines.CROSS_SECTIONAL_BASELINES)
    first, last = split.bounds["test"]
    for name, result in results.items():
        times = result.position.index.get_level_values("timestamp")
        assert times.min() == first and times.max() == last, name
        assert result.position.between(-1, 1).all() and result.forecast is not None, name
        assert result.forecast.notna().mean() > 0.9, name


def test_momentum_12_1_and_reversal_use_bars_up_to_t_only(universe):
    panel, _, _, split = universe
    close = panel["close"]
    mom = baselines.momentum_12_1(close, split).forecast
    rev = baselines.reversal_1m(close, split).forecast
    symbol = "U00"  # listed at bar 100
    own = np.log(close.xs(symbol, level="symbol"))
    t = mom.xs(symbol, level="symbol").dropna().index[5]
    k = own.index.get_loc(t)
    assert mom.loc[(symbol, t)] == pytest.approx(own.iloc[k - 21] - own.iloc[k - 252])
    assert rev.loc[(symbol, t)] == pytest.approx(own.iloc[k - 21] - own.iloc[k])
    later = close.copy()
    later[later.index.get_level_values("timestamp") > t] *= 3.0  # the future changes
    mom2 = baselines.momentum_12_1(later, split).forecast
    rev2 = baselines.reversal_1m(later, split).forecast
    upto = mom.index.get_level_values("timestamp") <= t
    pd.testing.assert_series_equal(mom[upto], mom2[upto])
    pd.testing.assert_series_equal(rev[upto], rev2[upto])


@pytest.mark.parametrize("name", ["xs_ridge", "xs_lightgbm"])
def test_pooled_models_never_see_the_test_window(universe, name):
    panel, features, targets, split = universe
    fit = getattr(baselines, name)
    before = fit(features, targets, split)
    times = targets.forward.index.get_level_values("timestamp")
    rng = np.random.default_rng(0)
    after_val = times > split.bounds["val"][1]
    forward = targets.forward.copy()
    forward.loc[after_val, "fwd_1"] = rng.normal(0, 1, int(after_val.sum()))  # test-window labels scrambled
    scrambled = Targets(forward=forward, next_return=targets.next_return, volatility=targets.volatility)
    after = fit(features, scrambled, split)
    pd.testing.assert_series_equal(before.forecast, after.forecast)
    pd.testing.assert_series_equal(before.position, after.position)
    train = baselines.segment_mask(features.index, split, "train")
    forward.loc[train, "fwd_1"] = rng.normal(0, 1, int(train.sum()))  # training labels: the fit must change
    assert not np.allclose(fit(features, Targets(forward, targets.next_return, targets.volatility), split).forecast,
                           before.forecast)


def test_per_date_rank_is_centred_per_timestamp():
    index = pd.MultiIndex.from_product([list("ABCD"), TIMES], names=["symbol", "timestamp"])
    values = pd.Series([1.0, 4.0, 2.0, 3.0, 3.0, np.nan, 4.0, 1.0], index=index)
    rank = baselines.per_date_rank(values)
    # date 1: A=1 B=2 C=3 D=4 of 4 -> (r - .5)/4 - .5; date 2: A=4 B=3 D=1 (C missing) of 3
    assert rank.xs(TIMES[0], level="timestamp").tolist() == pytest.approx([-0.375, -0.125, 0.125, 0.375])
    assert rank.xs(TIMES[1], level="timestamp").dropna().tolist() == pytest.approx([1 / 3, 0.0, -1 / 3])


def test_pooled_ridge_finds_a_planted_cross_sectional_signal(universe):
    panel, features, targets, split = universe
    result = baselines.xs_ridge(features, targets, split)
    scores = result.forecast.to_frame("xs_ridge")
    cs = cross_section.evaluate_cross_section(scores, targets.next_return.reindex(scores.index), 252.0, quantiles=5)
    assert cs.ic.loc["xs_ridge", "ic_low"] > 0 and cs.buckets.loc["xs_ridge", "spread_low"] > 0
    # positions are relative: long and short within a date, about zero on average across names
    assert abs(result.position.groupby(level="timestamp").mean()).max() < 0.05
