"""The portfolio room: weights from scores obey their rules and limits, are causal, and are booked
through the one PnL road exactly as a hand computation on a tiny panel says."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from plus_ultra_ml.config import CostConfig, PortfolioConfig
from plus_ultra_ml.errors import PlusUltraError
from plus_ultra_ml.evaluation.backtest import BacktestConfig, portfolio_pnl, run_backtest
from plus_ultra_ml.portfolio import construct_weights, portfolio_weights, realised_returns, sector_codes
from plus_ultra_ml.portfolio.limits import turnover
from plus_ultra_ml.portfolio.rules import average_ranks, topk_dropout, water_fill

TOL = 1e-9
NAN = np.nan

# ------------------------------------------------------------------ the tiny panel, by hand (3 names x 5 bars)
SCORES = np.array([[3, 1, 2], [NAN, 2, 3], [1, 3, 2], [1, 2, 3], [2, 1, 3]], dtype=float)
TINY = PortfolioConfig(construction="long_short", weighting="rank", gross_leverage=1.0, max_weight=1.0,
                       rebalance_every=2)
# t0 rebalance: ranks (3, 1, 2) centred (1, -1, 0) -> (.5, -.5, 0); t1 is no rebalance bar, but the held
# name 0 is not listed: forced, ranks of (2, 3) -> (0, -.5, .5); t2 rebalance (1, 3, 2) -> (-.5, .5, 0);
# t3 held; t4 rebalance (2, 1, 3) -> (0, -.5, .5).
WEIGHTS = np.array([[.5, -.5, 0], [0, -.5, .5], [-.5, .5, 0], [-.5, .5, 0], [0, -.5, .5]])
NEXT = np.array([[.01, -.02, .03], [.02, .01, -.01], [-.01, .03, .0], [.04, -.01, .02], [.0, .02, -.03]])
COSTS = CostConfig(transaction_bps=10.0, slippage_bps=5.0, holding_bps=2.0)  # 15 bps traded, 2 bps held
# gross - 0.0015 * turnover - 0.0002 * sum |w|, per bar (turnover 1, 1, 2, 0, 2; sum |w| = 1 throughout)
HAND_NET = np.array([.015 - .0015 - .0002, -.01 - .0015 - .0002, .02 - .003 - .0002, -.025 - .0002,
                     -.025 - .003 - .0002])
TIMES = pd.date_range("2024-01-01", periods=5, freq="1D", tz="UTC")
NAMES = ["A", "B", "C"]


def test_tiny_panel_weights_equal_the_hand_rules():
    np.testing.assert_allclose(construct_weights(SCORES, TINY), WEIGHTS, atol=TOL)


def test_tiny_panel_pnl_through_portfolio_pnl_equals_the_hand_computation():
    index = pd.MultiIndex.from_product([NAMES, TIMES], names=["symbol", "timestamp"])
    w = pd.Series(WEIGHTS.T.ravel(), index=index)
    r = pd.Series(NEXT.T.ravel(), index=index)
    net = portfolio_pnl(w, r, COSTS, book="weights")
    np.testing.assert_allclose(net.to_numpy(), HAND_NET, atol=1e-12)
    sleeves = portfolio_pnl(w, r, COSTS)  # the old equal-weight book: the same cells, a mean instead of a sum
    np.testing.assert_allclose(sleeves.to_numpy(), HAND_NET / 3, atol=1e-12)


def test_tiny_panel_run_backtest_weights_book_equals_the_hand_computation():
    close = np.vstack([np.ones(3), np.cumprod(1 + NEXT, axis=0)])  # (6, 3): close[t+1] / close[t] - 1 = NEXT[t]
    wide_close = pd.DataFrame(close, index=pd.date_range("2024-01-01", periods=6, freq="1D", tz="UTC"), columns=NAMES)
    weights = pd.DataFrame(WEIGHTS, index=TIMES, columns=NAMES)
    result = run_backtest(weights, wide_close, COSTS, BacktestConfig(book="weights", periods_per_year=252))
    np.testing.assert_allclose(result.portfolio_returns.to_numpy(), HAND_NET, atol=1e-12)
    np.testing.assert_allclose(result.portfolio_equity.to_numpy()[-1], np.prod(1 + HAND_NET), rtol=1e-12)


def test_weights_book_refuses_vol_targeting_of_sleeves():
    with pytest.raises(ValueError, match="portfolio room"):
        BacktestConfig(book="weights", weighting="vol_target")


def test_portfolio_weights_on_frames_matches_the_arrays_long_and_wide():
    wide = pd.DataFrame(SCORES, index=TIMES, columns=NAMES)
    np.testing.assert_allclose(portfolio_weights(wide, TINY).to_numpy(), WEIGHTS, atol=TOL)
    long = wide.stack().swaplevel().sort_index().rename_axis(["symbol", "timestamp"])  # the NaN row is absent
    got = portfolio_weights(long, TINY)
    assert got.index.equals(long.index)
    expected = pd.DataFrame(WEIGHTS, index=TIMES, columns=NAMES).stack().swaplevel().reindex(long.index)
    np.testing.assert_allclose(got.to_numpy(), expected.to_numpy(), atol=TOL)


# ------------------------------------------------------------------ properties on random panels
@st.composite
def panels(draw):
    T = draw(st.integers(1, 14))
    N = draw(st.integers(1, 12))
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    scores = rng.normal(size=(T, N))
    scores[rng.random((T, N)) < draw(st.sampled_from([0.0, 0.2, 0.5]))] = np.nan
    if draw(st.booleans()):
        scores = np.round(scores, 1)  # ties
    return scores, rng.integers(0, 3, size=N)


LONG_SHORT = st.builds(
    PortfolioConfig, construction=st.just("long_short"), weighting=st.sampled_from(["rank", "topk"]),
    k=st.integers(1, 6), gross_leverage=st.sampled_from([0.5, 1.0, 2.0]), max_weight=st.sampled_from([0.05, 0.2, 1.0]),
    max_turnover=st.sampled_from([None, 0.1, 0.5]), sector_neutral=st.booleans(),
    rebalance_every=st.integers(1, 3))
LONG_ONLY = st.builds(
    PortfolioConfig, construction=st.just("long_only_topk"), k=st.integers(1, 6), max_replace=st.integers(0, 3),
    max_weight=st.just(1.0), max_turnover=st.sampled_from([None, 0.2]), rebalance_every=st.integers(1, 3))
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _forced(scores: np.ndarray, w: np.ndarray, t: int) -> bool:
    previous = w[t - 1] if t else np.zeros(w.shape[1])
    return bool(((previous != 0) & ~np.isfinite(scores[t])).any())


@SETTINGS
@given(panels(), LONG_SHORT)
def test_long_short_is_dollar_neutral_capped_and_unlisted_names_are_flat(panel, cfg):
    scores, sectors = panel
    w = construct_weights(scores, cfg, sectors=sectors)
    assert w.shape == scores.shape
    assert np.all(w[~np.isfinite(scores)] == 0)
    assert np.all(np.abs(w) <= cfg.max_weight + TOL)
    np.testing.assert_allclose(w.sum(axis=1), 0.0, atol=TOL)
    assert np.all(np.abs(w).sum(axis=1) <= cfg.gross_leverage + TOL)
    if cfg.sector_neutral:
        for g in np.unique(sectors):
            np.testing.assert_allclose(w[:, sectors == g].sum(axis=1), 0.0, atol=TOL)


@SETTINGS
@given(panels(), LONG_SHORT)
def test_turnover_limit_holds_at_every_unforced_bar(panel, cfg):
    scores, sectors = panel
    w = construct_weights(scores, cfg, sectors=sectors)
    previous = np.zeros(scores.shape[1])
    for t in range(len(w)):
        if cfg.max_turnover is not None and not _forced(scores, w, t):
            assert turnover(w[t], previous) <= cfg.max_turnover + TOL
        if t % cfg.rebalance_every and not _forced(scores, w, t):
            np.testing.assert_array_equal(w[t], previous)  # held between rebalances
        previous = w[t]


@SETTINGS
@given(panels(), LONG_ONLY)
def test_long_only_topk_sums_to_one_over_k_names_and_replaces_at_most_n(panel, cfg):
    scores, _ = panel
    w = construct_weights(scores, cfg)
    assert np.all(w >= -TOL)
    assert np.all(w[~np.isfinite(scores)] == 0)
    listed = np.isfinite(scores).sum(axis=1)
    sums = w.sum(axis=1)
    for t in range(len(w)):
        rebalance = not t % cfg.rebalance_every or _forced(scores, w, t)
        if not rebalance:
            np.testing.assert_array_equal(w[t], w[t - 1])  # held between rebalances
        elif cfg.max_turnover is None:
            assert (sums[t] == pytest.approx(1.0)) if listed[t] else sums[t] == 0
            held = w[t] > 0
            assert held.sum() == min(cfg.k, listed[t])  # k names, or every listed name when fewer
            np.testing.assert_allclose(w[t][held], 1.0 / max(1, held.sum()))
            if t:
                was = w[t - 1] > 0
                still_listed = was & np.isfinite(scores[t])
                assert (still_listed & ~held).sum() <= cfg.max_replace  # forced exits aside
        else:  # part way between two fully invested books (or flat): in [0, 1]
            assert -TOL <= sums[t] <= 1 + TOL


def test_long_only_turnover_limited_book_still_sums_to_one():
    rng = np.random.default_rng(3)
    scores = rng.normal(size=(30, 20))  # always listed: no forced bars
    cfg = PortfolioConfig(construction="long_only_topk", k=5, max_replace=2, max_weight=1.0, max_turnover=0.3)
    w = construct_weights(scores, cfg)
    # the first bar enters from flat: 0.3 of the target, sum 0.3; afterwards the book converges towards 1
    assert w[0].sum() == pytest.approx(0.3)
    assert np.all(np.diff(w.sum(axis=1)) >= -TOL)
    assert all(turnover(w[t], w[t - 1]) <= 0.3 + TOL for t in range(1, 30))


@SETTINGS
@given(panels(), st.one_of(LONG_SHORT, LONG_ONLY), st.data())
def test_weights_at_or_before_t_ignore_scores_after_t(panel, cfg, data):
    scores, sectors = panel
    T = len(scores)
    t = data.draw(st.integers(0, T - 1))
    w = construct_weights(scores, cfg, sectors=sectors)
    changed = scores.copy()
    rng = np.random.default_rng(t)
    changed[t + 1:] = rng.normal(size=changed[t + 1:].shape) * 10
    changed[t + 1:][rng.random(changed[t + 1:].shape) < 0.3] = np.nan
    np.testing.assert_array_equal(construct_weights(changed, cfg, sectors=sectors)[: t + 1], w[: t + 1])


def test_volatility_targeting_is_causal_scales_down_only_and_starts_flat():
    rng = np.random.default_rng(0)
    T, N = 120, 15
    scores = rng.normal(size=(T, N))
    nxt = rng.normal(0, 0.02, size=(T, N))
    cfg = PortfolioConfig(construction="long_short", target_volatility=0.05, vol_window=30, vol_min_bars=10)
    w = construct_weights(scores, cfg, past_returns=realised_returns(nxt), periods_per_year=252)
    gross = np.abs(w).sum(axis=1)
    assert np.all(gross[:10] == 0)  # bar 0 has no past return; bars 1..9 fewer than vol_min_bars
    assert np.all(gross <= cfg.gross_leverage + TOL) and gross[10:].min() > 0
    unscaled = construct_weights(scores, cfg.model_copy(update={"target_volatility": None}))
    assert gross[10:].mean() < np.abs(unscaled).sum(axis=1)[10:].mean()  # 2% daily noise is far above 5% a year
    np.testing.assert_allclose(w.sum(axis=1), 0.0, atol=TOL)
    for t in (10, 60, 118):
        future = nxt.copy()
        future[t:] = rng.normal(0, 0.5, size=future[t:].shape)  # r[t+1] onwards changed: unknown at t
        moved = construct_weights(scores, cfg, past_returns=realised_returns(future), periods_per_year=252)
        np.testing.assert_array_equal(moved[: t + 1], w[: t + 1])


# ------------------------------------------------------------------ rules and errors
@pytest.mark.parametrize("values", [[3.0, 1.0, 2.0], [1.0, 1.0, 1.0], [0.5, 0.1, 0.5, 0.3, 0.1, 0.5], [7.0]])
def test_average_ranks_equal_scipy_rankdata(values):
    from scipy.stats import rankdata

    np.testing.assert_array_equal(average_ranks(np.array(values)), rankdata(values))


def test_water_fill_caps_and_keeps_the_total():
    w = water_fill(np.array([10.0, 1.0, 1.0, 1.0, 0.0]), total=0.5, cap=0.2)
    assert w[0] == pytest.approx(0.2) and w.sum() == pytest.approx(0.5) and w[4] == 0
    np.testing.assert_allclose(w[1:4], 0.1)
    assert water_fill(np.array([1.0, 1.0]), total=1.0, cap=0.3).sum() == pytest.approx(0.6)  # unreachable: all at cap


def test_topk_dropout_sells_only_the_worst_held_and_buys_the_best():
    scores = np.array([9, 8, 1, 2, 7, 6, 0.5], dtype=float)
    held = np.array([False, False, True, True, True, True, False])  # holds 2, 3, 4, 5 (scores 1, 2, 7, 6)
    new = topk_dropout(scores, held, k=4, max_replace=1)
    assert new.sum() == 4 and not new[2] and new[0] and new[3] and new[4] and new[5]
    new = topk_dropout(scores, held, k=4, max_replace=2)
    assert set(np.flatnonzero(new)) == {0, 1, 4, 5}
    assert topk_dropout(scores, held, k=4, max_replace=0).tolist() == held.tolist()


def test_sector_neutral_needs_a_sector_for_every_name():
    with pytest.raises(PlusUltraError, match="assets, column sector.*B"):
        sector_codes(["A", "B"], {"A": "Energy"})
    with pytest.raises(PlusUltraError, match="sector"):
        construct_weights(SCORES, PortfolioConfig(construction="long_short", sector_neutral=True))


def test_config_rejects_impossible_books():
    with pytest.raises(ValueError, match="k \\* portfolio.max_weight"):
        PortfolioConfig(construction="long_only_topk", k=5, max_weight=0.1)
    with pytest.raises(ValueError, match="sector_neutral"):
        PortfolioConfig(construction="long_only_topk", sector_neutral=True)
    with pytest.raises(PlusUltraError, match="per_symbol"):
        construct_weights(SCORES, PortfolioConfig())


def test_read_sectors_reads_assets_sector_and_skips_blanks(tmp_path):
    import sqlite3

    from plus_ultra_ml.data.schema import DDL
    from plus_ultra_ml.data.store import database_sectors

    path = tmp_path / "s.db"
    with sqlite3.connect(path) as connection:
        connection.execute(DDL["assets"])
        connection.executemany("INSERT INTO assets (asset_id, symbol, sector) VALUES (?, ?, ?)",
                               [(1, "A", "Energy"), (2, "B", " Utilities "), (3, "C", None), (4, "D", "  ")])
    assert database_sectors(path) == {"A": "Energy", "B": "Utilities"}
    bare = tmp_path / "e.db"
    with sqlite3.connect(bare) as connection:  # no assets table: no sectors
        connection.execute("CREATE TABLE t (x INTEGER)")
    assert database_sectors(bare) == {}
