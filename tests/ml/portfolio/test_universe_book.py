"""The portfolio room on the universe fixture: sectors from the assets table, ragged listings, the planted
signal's book booked by both doors of the one PnL road (run_backtest and portfolio_pnl) with equal results.
The 40-name x 500-bar fixture builds in ~3 s once numba's cache is warm.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from plus_ultra_ml.config import CostConfig, FixtureConfig, PortfolioConfig, UniverseConfig
from plus_ultra_ml.data.store import load_panel, database_sectors
from plus_ultra_ml.evaluation import metrics
from plus_ultra_ml.evaluation.backtest import BacktestConfig, portfolio_pnl, run_backtest
from plus_ultra_ml.portfolio import portfolio_weights
from plus_ultra_ml.synthetic.fixture import build_fixture
from plus_ultra_ml.synthetic.universe import SECTOR_NAMES

SMALL = FixtureConfig(rows=500, freq="1D", seed=11, universe=UniverseConfig(size=40, sectors=4))
COSTS = CostConfig()
MU = "ind__truth_oracle"  # the generator's expected next-bar return: the best possible score


@pytest.fixture(scope="module")
def universe(tmp_path_factory):
    path = tmp_path_factory.mktemp("universe") / "u.db"
    build_fixture(path, SMALL)
    return path, load_panel(path)


def test_sectors_come_from_the_assets_table(universe):
    path, panel = universe
    sectors = database_sectors(path)
    assert set(sectors) == set(panel.index.get_level_values("symbol").astype(str))
    assert set(sectors.values()) == set(SECTOR_NAMES[:4])


def test_sector_neutral_book_of_the_planted_signal_earns_and_both_doors_agree(universe):
    path, panel = universe
    cfg = PortfolioConfig(construction="long_short", sector_neutral=True, max_weight=0.1, rebalance_every=1)
    close = panel["close"].unstack("symbol").sort_index()
    scores = panel[MU].unstack("symbol").sort_index().where(close.notna())  # a name scores only while listed
    weights = portfolio_weights(scores, cfg, sectors=database_sectors(path))
    sectors = pd.Series(database_sectors(path)).reindex(weights.columns)
    np.testing.assert_allclose(weights.T.groupby(sectors.to_numpy()).sum().to_numpy(), 0.0, atol=1e-12)
    assert (weights.to_numpy()[close.isna().to_numpy()] == 0).all()  # not listed: flat
    # a delisted name's last bar has no next close: the book must not hold it into that bar
    nxt = (close.shift(-1) / close - 1)
    held_blind = (weights != 0) & nxt.isna() & close.notna()
    held_blind.iloc[-1] = False  # the data's last bar: nothing earns there, run_backtest drops it
    booked = weights.where(~held_blind, 0.0)  # what a caller who knows the delisting date would book
    result = run_backtest(booked, close, COSTS, BacktestConfig(book="weights"))
    long = booked.stack().swaplevel().sort_index()
    via_pnl = portfolio_pnl(long, nxt.stack(future_stack=True).swaplevel().reindex(long.index), COSTS, book="weights")
    np.testing.assert_allclose(result.portfolio_returns.to_numpy(), via_pnl.to_numpy()[: len(result.portfolio_returns)],
                               atol=1e-12)
    sharpe = metrics.sharpe_ratio(result.portfolio_returns.to_numpy(), result.periods_per_year)
    assert sharpe > 1.0, sharpe  # the generator's own expected returns rank the names
