"""Backtester: next-bar fills, the shared PnL function, equity, trades, regimes, vectorbt agreement."""

from __future__ import annotations

import re
import warnings

import numpy as np
import pandas as pd
import pytest
import torch

from plus_ultra_ml.config import CostConfig
from plus_ultra_ml.errors import DataContractError
from plus_ultra_ml.evaluation import metrics
from plus_ultra_ml.evaluation.backtest import BacktestConfig, run_backtest
from plus_ultra_ml.objectives.pnl import next_bar_returns, position_pnl

FREE = CostConfig(transaction_bps=0, slippage_bps=0, holding_bps=0)
COSTS = CostConfig(transaction_bps=2, slippage_bps=1, holding_bps=0.5)


def market(T=400, N=3, seed=0, vol=0.01, freq="h"):
    rng = np.random.default_rng(seed)
    index = pd.date_range("2024-01-01", periods=T, freq=freq, tz="UTC")
    symbols = [f"S{j}" for j in range(N)]
    close = pd.DataFrame(100 * np.exp(np.cumsum(rng.normal(0, vol, (T, N)), axis=0)), index=index, columns=symbols)
    positions = pd.DataFrame(np.round(rng.uniform(-1, 1, (T, N)), 1), index=index, columns=symbols)
    return close, positions


# ------------------------------------------------------------------------------------------ the shared PnL
def test_backtest_pnl_equals_the_objective_on_random_paths():
    close, positions = market(T=500, N=5, seed=1)
    result = run_backtest(positions, close, COSTS)
    paths = torch.from_numpy(positions.to_numpy().T.copy())  # (N, T)
    expected = position_pnl(paths, next_bar_returns(torch.from_numpy(close.to_numpy().T.copy())), COSTS)
    np.testing.assert_allclose(result.returns.to_numpy(), expected[:, :-1].numpy().T, rtol=0, atol=1e-12)
    # float32 paths (what training uses) agree to 1e-6
    expected32 = position_pnl(
        paths.float(), next_bar_returns(torch.from_numpy(close.to_numpy().T.copy())).float(), COSTS
    )
    np.testing.assert_allclose(result.returns.to_numpy(), expected32[:, :-1].numpy().T, atol=1e-6)


def test_fills_are_next_bar():
    """p[t] = sign(r[t+1]) uses the future and must look spectacular; p[t] = sign(r[t]) must not."""
    close, _ = market(T=3000, N=4, seed=2)
    bar_returns = close.pct_change(fill_method=None)
    peek = np.sign(bar_returns.shift(-1)).fillna(0.0)  # decided at t from r[t+1]: look-ahead
    known = np.sign(bar_returns).fillna(0.0)  # decided at t from r[t]: honest
    cheat = run_backtest(peek, close, FREE)
    honest = run_backtest(known, close, FREE)
    ppy = cheat.periods_per_year
    assert metrics.sharpe_ratio(cheat.portfolio_returns, ppy) > 50
    assert abs(metrics.sharpe_ratio(honest.portfolio_returns, ppy)) < 3  # a random walk: noise only
    assert (cheat.returns.to_numpy() >= 0).all()


def test_named_tiny_path():
    index = pd.date_range("2024-01-01", periods=4, freq="D", tz="UTC")
    close = pd.DataFrame({"X": [100.0, 110.0, 99.0, 99.0]}, index=index)
    positions = pd.DataFrame({"X": [1.0, 1.0, 0.0, 1.0]}, index=index)  # the last one has no next bar
    result = run_backtest(
        positions, close, CostConfig(transaction_bps=10, slippage_bps=0), BacktestConfig(periods_per_year=252)
    )
    np.testing.assert_allclose(result.returns["X"].to_numpy(), [0.1 - 0.001, -0.1, -0.001])
    assert list(result.returns.index) == list(index[1:])  # PnL is known at the bar after the decision
    np.testing.assert_allclose(result.equity["X"].to_numpy(), [1.0, 1.099, 1.099 * 0.9, 1.099 * 0.9 * 0.999])
    trades = result.trades()
    assert len(trades) == 1
    trade = trades.iloc[0]
    assert (trade.direction, trade.bars, trade.entry_price, trade.exit_price) == (1, 2, 100.0, 99.0)
    assert trade.entry_time == index[0] and trade.exit_time == index[2] and not trade.open
    assert trade.pnl == pytest.approx(0.099 - 0.1 - 0.001)


def test_memory_layout_and_long_inputs_give_the_same_answer():
    close, positions = market(T=200, N=3, seed=3)
    wide = run_backtest(positions, close, COSTS)
    fortran = run_backtest(
        pd.DataFrame(np.asfortranarray(positions.to_numpy()), index=positions.index, columns=positions.columns),
        pd.DataFrame(np.asfortranarray(close.to_numpy()), index=close.index, columns=close.columns),
        COSTS,
    )
    pd.testing.assert_frame_equal(fortran.returns, wide.returns)
    long_positions = positions.stack().rename_axis(["timestamp", "symbol"]).swaplevel().sort_index()
    panel = close.stack().rename_axis(["timestamp", "symbol"]).swaplevel().sort_index().to_frame("close")
    long = run_backtest(long_positions, panel, COSTS)
    pd.testing.assert_frame_equal(long.returns, wide.returns, check_names=False)
    pd.testing.assert_series_equal(long.portfolio_equity, wide.portfolio_equity, check_names=False)
    pd.testing.assert_index_equal(long.returns.index, wide.returns.index, exact=False, check_names=False)


def test_portfolio_is_the_equal_weight_mean_of_sleeves():
    close, positions = market(T=300, N=4, seed=4)
    result = run_backtest(positions, close, COSTS)
    np.testing.assert_allclose(result.portfolio_returns.to_numpy(), result.returns.mean(axis=1).to_numpy())
    np.testing.assert_allclose(
        result.portfolio_equity.to_numpy()[1:], np.cumprod(1 + result.portfolio_returns.to_numpy())
    )
    np.testing.assert_allclose(result.equity.to_numpy()[1:], np.cumprod(1 + result.returns.to_numpy(), axis=0))
    gross = result.exposures.to_numpy() * (close.to_numpy()[1:] / close.to_numpy()[:-1] - 1)
    np.testing.assert_allclose(result.returns.to_numpy() + result.costs.to_numpy(), gross, atol=1e-15)


def test_a_test_window_earns_its_last_bar_from_the_prices_after_it():
    close, positions = market(T=300, N=2, seed=5)
    full = run_backtest(positions, close, COSTS)
    window = run_backtest(positions.iloc[100:200], close, COSTS)
    assert len(window.returns) == 100 and window.returns.index[-1] == close.index[200]
    # same bars, same PnL, except the first: the window starts flat and pays to enter
    pd.testing.assert_frame_equal(window.returns.iloc[1:], full.returns.iloc[100:200].iloc[1:])


# ------------------------------------------------------------------------------------------ bad input
def test_unlisted_symbols_stay_flat_but_a_missing_position_is_an_error():
    close, positions = market(T=50, N=2, seed=6)
    close.iloc[:10, 1] = np.nan  # S1 lists at bar 10
    positions.iloc[:10, 1] = np.nan
    result = run_backtest(positions, close, COSTS)
    assert (result.equity["S1"].iloc[:11] == 1.0).all() and (result.exposures["S1"].iloc[:10] == 0).all()
    broken = positions.copy()
    broken.iloc[20, 0] = np.nan
    with pytest.raises(DataContractError, match=re.escape(f"NaN for S0 at {positions.index[20]}")):
        run_backtest(broken, close, COSTS)


def test_a_position_across_a_missing_price_is_an_error():
    close, positions = market(T=50, N=2, seed=7)
    close.iloc[30, 1] = np.nan
    positions.iloc[29, 1] = 0.5  # held from bar 29 into the missing bar 30
    positions.iloc[30, 1] = 0.0
    with pytest.raises(DataContractError, match=re.escape(f"S1 at {positions.index[29]}")):
        run_backtest(positions, close, COSTS)


@pytest.mark.parametrize(
    "mutate,message",
    [
        (lambda p, c: (p.assign(S0=p["S0"] * 3), c), "outside"),
        (lambda p, c: (p.drop(p.index[5]), c), "skip"),
        (lambda p, c: (p.rename(columns={"S0": "ZZZ"}), c), "no close prices"),
        (lambda p, c: (p.set_axis(p.index + pd.Timedelta(minutes=1)), c), "do not have"),
        (lambda p, c: (p.iloc[::-1], c), "increasing"),
    ],
    ids=["beyond the limit", "skipped bar", "unknown symbol", "unknown bar", "unsorted"],
)
def test_bad_positions_are_named(mutate, message):
    close, positions = market(T=40, N=2, seed=8)
    positions, close = mutate(positions, close)
    with pytest.raises(DataContractError, match=message):
        run_backtest(positions, close, COSTS)


# ------------------------------------------------------------------------------------------ vol targeting
def test_vol_target_uses_only_past_returns():
    close, positions = market(T=400, N=3, seed=9)
    cfg = BacktestConfig(weighting="vol_target", vol_window=20)
    base = run_backtest(positions, close, COSTS, cfg)
    changed = close.copy()
    changed.iloc[250:] *= np.exp(np.random.default_rng(10).normal(0, 0.05, changed.iloc[250:].shape)).cumprod(axis=0)
    moved = run_backtest(positions, changed, COSTS, cfg)
    pd.testing.assert_frame_equal(moved.exposures.iloc[:250], base.exposures.iloc[:250])  # up to bar 249: same
    assert not moved.exposures.iloc[250:].equals(base.exposures.iloc[250:])
    assert (base.exposures.iloc[:20] == 0).all().all()  # warm-up: fewer than 20 past returns, flat


@pytest.mark.parametrize("layout", ["C", "F"])
def test_trailing_volatility_matches_pandas_rolling_std(layout):
    from plus_ultra_ml.evaluation.backtest import _trailing_volatility

    close, _ = market(T=600, N=3, seed=17)
    close.iloc[300, 1] = np.nan  # a gap: windows holding a return that touches it are NaN
    expected = close.pct_change(fill_method=None).rolling(30, min_periods=30).std().to_numpy()
    history = np.asarray(close.to_numpy(), order=layout)
    got = _trailing_volatility(history, 100, 30, layout == "F")
    np.testing.assert_allclose(got, expected[100:], rtol=1e-8)
    assert np.isnan(got[300 - 100 : 300 - 100 + 31, 1]).all() and np.isfinite(got[300 - 100 + 31 :, 1]).all()


def test_extra_price_columns_are_ignored():
    close, positions = market(T=200, N=3, seed=16)
    cfg = BacktestConfig(weighting="vol_target", vol_window=20)
    narrow = run_backtest(positions[["S2", "S0"]], close, COSTS, cfg)
    assert list(narrow.returns.columns) == ["S2", "S0"]
    pd.testing.assert_frame_equal(narrow.returns, run_backtest(positions, close, COSTS, cfg).returns[["S2", "S0"]])


def test_vol_target_equalises_risk_across_calm_and_wild_symbols():
    rng = np.random.default_rng(11)
    T = 4000
    index = pd.date_range("2024-01-01", periods=T, freq="h", tz="UTC")
    vols = np.array([0.002, 0.02])
    close = pd.DataFrame(
        100 * np.exp(np.cumsum(rng.normal(0, 1, (T, 2)) * vols, axis=0)), index=index, columns=["calm", "wild"]
    )
    long = pd.DataFrame(1.0, index=index, columns=close.columns)
    cfg = BacktestConfig(weighting="vol_target", vol_window=100, target_volatility=0.2, max_leverage=10.0)
    result = run_backtest(long, close, FREE, cfg)
    realised = metrics.annual_volatility(result.returns.iloc[200:], result.periods_per_year)
    np.testing.assert_allclose(realised.to_numpy(), [0.2, 0.2], rtol=0.15)
    unscaled = metrics.annual_volatility(run_backtest(long, close, FREE).returns, result.periods_per_year)
    assert unscaled["wild"] > 5 * unscaled["calm"]


# ------------------------------------------------------------------------------------------ trades
def test_trades_add_up_to_the_net_pnl_and_split_flips():
    close, positions = market(T=500, N=3, seed=12)
    result = run_backtest(positions, close, COSTS)
    trades = result.trades()
    assert trades["pnl"].sum() == pytest.approx(result.returns.to_numpy().sum(), abs=1e-12)
    assert (trades["bars"] >= 1).all() and set(trades["direction"]) <= {-1, 1}
    per_symbol = trades.groupby("symbol")["pnl"].sum()
    np.testing.assert_allclose(per_symbol.to_numpy(), result.returns.sum().to_numpy(), atol=1e-12)
    # consecutive trades of a symbol alternate or are separated by flat bars: a flip closes and opens
    for _, group in trades.groupby("symbol"):
        closed = group[~group["open"]]
        assert (
            closed["exit_time"].to_numpy() <= group["entry_time"].shift(-1).dropna().to_numpy()[: len(closed)]
        ).all()


def test_flip_costs_are_split_between_the_old_and_new_trade():
    index = pd.date_range("2024-01-01", periods=4, freq="D", tz="UTC")
    close = pd.DataFrame({"X": [100.0, 100.0, 100.0, 100.0]}, index=index)
    positions = pd.DataFrame({"X": [0.5, -1.0, -1.0, 0.0]}, index=index)
    result = run_backtest(
        positions, close, CostConfig(transaction_bps=10, slippage_bps=0), BacktestConfig(periods_per_year=252)
    )
    trades = result.trades()
    np.testing.assert_allclose(trades["pnl"].to_numpy(), [-0.001 * (0.5 + 0.5), -0.001 * 1.0])
    assert list(trades["open"]) == [False, True] and list(trades["bars"]) == [1, 2]
    assert pd.isna(trades["exit_time"].iloc[1]) and np.isnan(trades["exit_price"].iloc[1])


# ------------------------------------------------------------------------------------------ regimes
def test_regime_attribution_puts_pnl_where_it_was_earned():
    close, positions = market(T=300, N=2, seed=13)
    rng = np.random.default_rng(14)
    labels = pd.DataFrame(
        rng.choice(["low", "high"], size=positions.shape), index=positions.index, columns=positions.columns
    )
    labels.iloc[:5] = np.nan  # unlabelled warm-up
    long_labels = (
        labels.stack(future_stack=True)
        .rename_axis(["timestamp", "symbol"])
        .swaplevel()
        .sort_index()
        .to_frame("volatility")
    )
    # trade only in the high regime: every other regime must show zero PnL
    gated = positions.where(labels.eq("high"), 0.0)
    result = run_backtest(gated, close, FREE)
    table = result.by_regime(long_labels)
    assert set(table.loc["volatility"].index) == {"low", "high", "unlabelled"}
    assert table.loc[("volatility", "low"), "pnl"] == 0 and table.loc[("volatility", "low"), "exposure"] == 0
    decided = labels.iloc[:-1]  # the last bar has no next bar: not traded
    assert table.loc[("volatility", "high"), "bars"] == int(decided.eq("high").to_numpy().sum())
    assert table.loc[("volatility", "unlabelled"), "bars"] == 5 * 2
    assert table["contribution"].sum() == pytest.approx(result.portfolio_returns.sum())
    assert table["pnl"].sum() == pytest.approx(result.returns.to_numpy().sum())


# ------------------------------------------------------------------------------------------ vectorbt
def test_agrees_with_vectorbt_once_fees_are_mapped():
    """Mapping: target-percent orders at every bar's close, one column per symbol (no cash sharing).

    Gross (no fees): vectorbt's returns are ours exactly. With costs: vectorbt's proportional `fees`
    would also charge the drift rebalancing our |dp| model leaves free, so our cost per bar is
    passed as vectorbt `fixed_fees` = cost fraction x equity before the fill; |p| <= 0.9 keeps
    vectorbt's cash check from trimming buys. Then its value plus that bar's fees is our equity.
    """
    vbt = pytest.importorskip("vectorbt")
    close, positions = market(T=300, N=3, seed=15)
    positions = positions.clip(-0.9, 0.9)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gross = run_backtest(positions, close, FREE)
        pf = vbt.Portfolio.from_orders(
            close, positions, size_type="targetpercent", direction="both", fees=0.0, init_cash=1.0
        )
        np.testing.assert_allclose(pf.returns().to_numpy()[1:], gross.returns.to_numpy(), atol=1e-12)
        np.testing.assert_allclose(pf.value().to_numpy(), gross.equity.to_numpy(), atol=1e-12)

        ours = run_backtest(positions, close, COSTS)
        cash = 1e6  # large enough that no rebalancing order falls under vectorbt's min_size
        fixed = np.vstack([ours.costs.to_numpy() * ours.equity.to_numpy()[:-1] * cash, np.zeros((1, 3))])
        pf = vbt.Portfolio.from_orders(
            close, positions, size_type="targetpercent", direction="both", fees=0.0, fixed_fees=fixed, init_cash=cash
        )
        orders = pf.orders.records
        paid = np.zeros(close.shape)
        np.add.at(paid, (orders["idx"], orders["col"]), orders["fees"])
        before_fees = (pf.value().to_numpy() + paid) / cash
        np.testing.assert_allclose(before_fees, ours.equity.to_numpy(), rtol=1e-12)


# ------------------------------------------------------------------------------------------ the fixture
def test_oracle_on_the_fixture_scores_the_sharpe_its_truth_table_records(tmp_path):
    """The fixture measured its oracle's net Sharpe through objectives/pnl.py; the backtester, fed the
    loaded panel, must reproduce it, and attribute it over causal regime labels without losing PnL."""
    from plus_ultra_ml.config import FixtureConfig, RegimeConfig
    from plus_ultra_ml.data.regimes import label_regimes
    from plus_ultra_ml.data.store import load_panel
    from plus_ultra_ml.synthetic.fixture import build_fixture

    from plus_ultra_ml.evaluation.oracle import panel_oracle_positions

    truth = build_fixture(tmp_path / "fixture.db", FixtureConfig(rows=1000))
    panel = load_panel(tmp_path / "fixture.db")
    result = run_backtest(panel_oracle_positions(panel, CostConfig(), truth.rule), panel, CostConfig())
    assert metrics.sharpe_ratio(result.portfolio_returns, result.periods_per_year) == pytest.approx(
        truth.oracle_sharpe_net, rel=1e-9
    )
    signs = run_backtest(np.sign(panel["ind__truth_oracle"]), panel, CostConfig())
    assert metrics.sharpe_ratio(signs.portfolio_returns, signs.periods_per_year) == pytest.approx(
        truth.sign_oracle_sharpe_net, rel=1e-9
    )
    table = result.by_regime(label_regimes(panel, RegimeConfig(min_history=100)))
    for regime in ("volatility", "liquidity", "trend"):
        assert table.loc[regime, "contribution"].sum() == pytest.approx(result.portfolio_returns.sum())
