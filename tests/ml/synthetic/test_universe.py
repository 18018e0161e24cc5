"""The universe fixture (synthetic/universe.py) and its dollar-neutral oracle (evaluation/factor_oracle.py).

Default tier: 60 names x 600 XNYS sessions (one build per module, a few seconds). The 500-name
checks are slow-marked.
"""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.optimize import minimize

from plus_ultra_ml.config import CostConfig, FixtureConfig, UniverseConfig, load_config
from plus_ultra_ml.data.calendar import get_calendar
from plus_ultra_ml.data.store import load_panel
from plus_ultra_ml.data.validate import validate_database
from plus_ultra_ml.errors import PlusUltraError
from plus_ultra_ml.evaluation import metrics
from plus_ultra_ml.evaluation.backtest import portfolio_pnl
from plus_ultra_ml.evaluation.factor_oracle import (DollarNeutralRule, FactorModel, dollar_neutral_positions,
                                                    neutral_frictionless_targets, panel_dollar_neutral_positions)
from plus_ultra_ml.objectives.pnl import hold_rate, trade_rate
from plus_ultra_ml.experiments.fold import fixture_references
from plus_ultra_ml.synthetic.fixture import build_fixture, oracle_reference, read_fixture_truth
from plus_ultra_ml.synthetic.universe import (SECTOR_NAMES, _simulate, read_universe_truth, universe_grid,
                                              universe_symbols)

SMALL = FixtureConfig(rows=600, freq="1D", seed=5, universe=UniverseConfig(size=60))
COSTS = CostConfig()
MU, SIGMA = "ind__truth_oracle", "ind__truth_sigma"


def sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    path = tmp_path_factory.mktemp("universe") / "u.db"
    truth = build_fixture(path, SMALL)  # the one road: build_fixture dispatches on fixture.universe
    panel = load_panel(path)
    return path, truth, panel


def wide(series: pd.Series) -> pd.DataFrame:
    return series.unstack("symbol").sort_index()


def next_return(panel: pd.DataFrame) -> pd.DataFrame:
    """(T, N) close[t+1]/close[t] - 1 of the same symbol, NaN at its last bar (and where it is not listed)."""
    close = wide(panel["close"])
    listed = close.notna()
    return (close.shift(-1) / close - 1).where(listed & listed.shift(-1, fill_value=False))


# --------------------------------------------------------------------------------------------
# the file
# --------------------------------------------------------------------------------------------
def test_same_seed_same_bytes_and_the_truth_reads_back(tmp_path, built):
    path, truth, _ = built
    build_fixture(tmp_path / "b.db", SMALL)
    build_fixture(tmp_path / "c.db", SMALL.model_copy(update={"seed": 6}))
    assert sha256(path) == sha256(tmp_path / "b.db")
    assert sha256(path) != sha256(tmp_path / "c.db")
    stored = read_universe_truth(path)
    assert stored.to_rows() == truth.to_rows()
    assert stored.seed == SMALL.seed and stored.parameters["universe"]["size"] == 60
    assert stored.model.symbols == universe_symbols(60)
    with pytest.raises(PlusUltraError, match="universe fixture"):
        read_fixture_truth(path)


def test_sector_column_and_factor_model_agree(built):
    path, truth, _ = built
    with sqlite3.connect(path) as connection:
        rows = connection.execute("SELECT symbol, sector, exchange FROM assets ORDER BY symbol").fetchall()
    assert [r[0] for r in rows] == list(universe_symbols(60))
    assert {r[2] for r in rows} == {"XNYS"}
    assert [r[1] for r in rows] == truth.factor_model["sector"]
    counts = pd.Series([r[1] for r in rows]).value_counts()
    assert set(counts.index) == set(SECTOR_NAMES) and counts.max() - counts.min() <= 1  # dealt evenly
    model = truth.model
    assert len(set(np.round(model.idio_vol, 12))) == 60  # idiosyncratic volatility differs by name


def test_listings_are_ragged_and_bars_stay_inside_them(built):
    path, truth, panel = built
    grid = universe_grid(SMALL)
    times = panel.index.get_level_values("timestamp")
    symbols = panel.index.get_level_values("symbol")
    first = pd.Series(times).groupby(np.asarray(symbols)).min()
    last = pd.Series(times).groupby(np.asarray(symbols)).max()
    count = pd.Series(times).groupby(np.asarray(symbols)).size()
    assert (first > grid[0]).sum() >= 5 and (last < grid[-1]).sum() >= 5  # names list late, delist early
    assert ((first == grid[0]) & (last == grid[-1])).sum() >= 10  # and some span the whole grid
    position = pd.Series(np.arange(len(grid)), index=grid)
    assert (count == position[last].to_numpy() - position[first].to_numpy() + 1).all()  # no gap inside a listing
    assert count.min() >= SMALL.universe.min_listed_bars
    for symbol, (start, stop) in truth.listings.items():
        assert pd.Timestamp(start) == first[symbol] and pd.Timestamp(stop) == last[symbol]


def test_every_bar_is_an_xnys_session_and_validate_is_clean(built):
    path, _, panel = built
    times = pd.DatetimeIndex(panel.index.get_level_values("timestamp").unique())
    sessions = get_calendar("XNYS").schedule.index
    assert times.tz_localize(None).isin(sessions).all() and (times == times.normalize()).all()
    grid = universe_grid(SMALL)
    assert len(sessions[(sessions >= grid[0].tz_localize(None)) & (sessions <= grid[-1].tz_localize(None))]) == len(grid)
    holidays = pd.bdate_range(grid[0], grid[-1]).tz_localize(None).difference(sessions)
    assert len(holidays) > 10 and not times.tz_localize(None).isin(holidays).any()  # weekday holidays are skipped
    report = validate_database(path)
    assert report.issues == [], [i.message for i in report.issues]


def test_the_planted_signal_is_causal(tmp_path):
    """Same seed, fewer rows: every value at a shared (symbol, bar) is the same (nothing at t sees T)."""
    short = SMALL.model_copy(update={"rows": 520})
    build_fixture(tmp_path / "short.db", short)
    build_fixture(tmp_path / "long.db", SMALL)
    a, b = load_panel(tmp_path / "short.db"), load_panel(tmp_path / "long.db")
    shared = a.index.intersection(b.index)
    assert len(shared) > 0.8 * len(a)
    for column in ("close", "open", "volume", "ind__alt_0", "ind__alt_1", MU, SIGMA):
        np.testing.assert_array_equal(a.loc[shared, column].to_numpy(), b.loc[shared, column].to_numpy(), err_msg=column)


def test_stored_ics_are_the_realised_per_date_ics_and_near_the_configured_ones(built):
    _, truth, panel = built
    target = next_return(panel)
    for name, column in (("alt_0", "ind__alt_0"), ("truth_oracle", MU)):
        ic = metrics.cross_sectional_ic(wide(panel[column]), target, "pearson", 10).dropna()
        assert ic.mean() == pytest.approx(truth.ic[name]["ic"], abs=1e-12)
        se = ic.std(ddof=1) / np.sqrt(len(ic))
        assert abs(ic.mean() - truth.expected_ic[name]) < 4 * se, (name, ic.mean(), truth.expected_ic[name], se)
    assert truth.expected_ic["alt_0"] == SMALL.universe.alt_ic
    # sqrt(alt_ic^2 + sector_momentum_ic^2), plus the sliver the market premium adds (b_i pi is predictable too)
    assert truth.expected_ic["truth_oracle"] == pytest.approx(np.hypot(SMALL.universe.alt_ic,
                                                                       SMALL.universe.sector_momentum_ic), rel=1e-2)
    assert abs(truth.ic["alt_2" if "alt_2" in truth.ic else "alt_1"]["ic"]) < truth.ic["alt_0"]["ic"]


def test_the_sector_momentum_ic_is_planted():
    """The latent sector momentum state predicts next-bar returns across names with the configured IC
    (few sectors make its per-date IC noisy: measured on the simulation, 120 names x 1,500 bars)."""
    cfg = FixtureConfig(rows=1500, freq="1D", seed=2, universe=UniverseConfig(size=120, sector_momentum_ic=0.04))
    u = _simulate(cfg)
    close = np.where(u.listed, u.close, np.nan)
    target = pd.DataFrame(close).shift(-1) / pd.DataFrame(close) - 1
    ic = metrics.cross_sectional_ic(pd.DataFrame(np.where(u.listed, u.sector_momentum, np.nan)), target, "pearson", 10)
    ic = ic.dropna()
    assert abs(ic.mean() - 0.04) < 4 * ic.std(ddof=1) / np.sqrt(len(ic))
    assert ic.mean() > 0.02


# --------------------------------------------------------------------------------------------
# the oracle
# --------------------------------------------------------------------------------------------
def test_the_oracle_recomputed_from_the_file_is_the_stored_one_and_dollar_neutral(built):
    path, truth, panel = built
    positions = oracle_reference(panel, path, COSTS)  # the report's road on a universe fixture
    book = wide(positions)
    assert np.abs(book.sum(axis=1)).max() < 1e-9  # dollar-neutral at every bar
    assert np.abs(book).max().max() <= 1.0
    assert (book.where(wide(panel["close"]).isna()).fillna(0.0) == 0).all().all()  # flat where not listed
    assert (np.abs(book).sum(axis=1) > 1).mean() > 0.95  # and it does trade
    target = next_return(panel)
    net = portfolio_pnl(positions, target.stack().reorder_levels(["symbol", "timestamp"]), COSTS).iloc[:-1]
    assert metrics.sharpe_ratio(net.to_numpy(), truth.bars_per_year) == pytest.approx(truth.oracle_sharpe_net, rel=1e-9)
    assert truth.oracle_budget_residual < 1e-9


def test_a_fold_scores_the_oracle_book_and_its_expected_returns_as_references(built, make_db, candles):
    path, truth, panel = built
    references = fixture_references(panel, path, COSTS)
    assert set(references) == {"reference__oracle", "reference_score__oracle"}
    pd.testing.assert_series_equal(references["reference_score__oracle"], panel[MU])
    assert fixture_references(panel, make_db(candles()), COSTS) == {}  # a real database: no references


def random_model(n: int, sectors: int, seed: int) -> tuple[FactorModel, np.ndarray]:
    rng = np.random.default_rng(seed)
    model = FactorModel(tuple(f"S{i}" for i in range(n)), tuple(f"K{k}" for k in range(sectors)),
                        rng.permutation(np.arange(n) % sectors), rng.uniform(0.5, 1.5, n), rng.uniform(0.5, 1.5, n),
                        rng.uniform(0.01, 0.03, n), 0.01, rng.uniform(0.004, 0.008, sectors))
    mu = rng.normal(0, 0.002, (40, n)) + 0.0003
    return model, mu


def objective(p, q, mu, model, rule, costs):
    M = model.covariance() + np.outer(mu, mu)
    return (p @ mu - hold_rate(costs) * np.abs(p).sum() - trade_rate(costs) / rule.cost_horizon * np.abs(p - q).sum()
            - 0.5 * rule.risk_aversion * p @ M @ p)


def test_each_bar_is_the_constrained_optimum():
    """Against a general solver (SLSQP on the split, smooth form) and against random budget-keeping moves."""
    model, mu = random_model(8, 3, seed=1)
    costs = CostConfig(transaction_bps=20.0, slippage_bps=5.0, holding_bps=1.0)
    rule = DollarNeutralRule(risk_aversion=2.0)
    p = dollar_neutral_positions(mu, model, costs, rule)
    rng = np.random.default_rng(0)
    n, c, h = 8, trade_rate(costs) / rule.cost_horizon, hold_rate(costs)
    M0 = model.covariance()
    for t in (0, 1, 5, 20):
        q = p[t - 1] if t else np.zeros(n)
        best = objective(p[t], q, mu[t], model, rule, costs)
        assert abs(p[t].sum()) < 1e-10
        for _ in range(300):  # any move that keeps the book dollar-neutral and in bounds is no better
            d = rng.normal(size=n) * 10 ** rng.uniform(-6, -1)
            trial = np.clip(p[t] + d - d.mean(), -1, 1)
            if abs(trial.sum()) < 1e-12:
                assert objective(trial, q, mu[t], model, rule, costs) <= best + 1e-15
        M = M0 + np.outer(mu[t], mu[t])

        def neg(x):  # x = [p, u, v]: u >= |p|, v >= |p - q|
            pp, u, v = x[:n], x[n:2 * n], x[2 * n:]
            return -(pp @ mu[t] - h * u.sum() - c * v.sum() - 0.5 * rule.risk_aversion * pp @ M @ pp)

        cons = [{"type": "eq", "fun": lambda x: x[:n].sum()},
                {"type": "ineq", "fun": lambda x: np.concatenate([x[n:2 * n] - x[:n], x[n:2 * n] + x[:n],
                                                                  x[2 * n:] - x[:n] + q, x[2 * n:] + x[:n] - q])}]
        start = np.concatenate([np.zeros(n), np.ones(n), np.abs(q) + 1])
        bounds = [(-1, 1)] * n + [(0, None)] * (2 * n)
        result = minimize(neg, start, method="SLSQP", constraints=cons, bounds=bounds,
                          options={"ftol": 1e-15, "maxiter": 1000})
        assert -result.fun <= best + 1e-9  # the general solver finds nothing better
        np.testing.assert_allclose(result.x[:n], p[t], atol=2e-3)


def test_without_costs_the_book_is_the_frictionless_target_and_unlisted_names_are_flat():
    model, mu = random_model(12, 4, seed=3)
    mu[5:9, 2] = np.nan  # a name not listed for four bars
    free = CostConfig(transaction_bps=0.0, slippage_bps=0.0, holding_bps=0.0)
    targets = neutral_frictionless_targets(mu, model)
    rule = DollarNeutralRule(risk_aversion=float(np.abs(targets).max()))
    p = dollar_neutral_positions(mu, model, free, rule)
    np.testing.assert_allclose(p, targets / rule.risk_aversion, atol=1e-9)
    assert (p[5:9, 2] == 0).all() and np.abs(p.sum(axis=1)).max() < 1e-10
    # causal: truncating the future changes no past position
    np.testing.assert_array_equal(dollar_neutral_positions(mu[:20], model, COSTS, rule),
                                  dollar_neutral_positions(mu, model, COSTS, rule)[:20])


def test_bad_inputs_are_refused():
    model, mu = random_model(5, 2, seed=4)
    with pytest.raises(PlusUltraError, match="risk_aversion"):
        DollarNeutralRule(risk_aversion=0.0)
    with pytest.raises(PlusUltraError, match="symbols of the factor model"):
        dollar_neutral_positions(mu[:, :3], model, COSTS, DollarNeutralRule(1.0))
    with pytest.raises(PlusUltraError, match="no symbol"):
        model.subset(["S0", "ZZZ"])
    with pytest.raises(PlusUltraError, match="truth_oracle"):
        panel_dollar_neutral_positions(pd.DataFrame({"close": [1.0]}), COSTS, model, DollarNeutralRule(1.0))
    with pytest.raises(ValueError, match="universe"):
        FixtureConfig(rows=600, universe=UniverseConfig(size=20, min_listed_bars=700))


def contenders(panel: pd.DataFrame) -> dict[str, pd.Series]:
    """Simple books: alt_0's cross-sectional rank (dollar-neutral), the true mu's rank, the equal-weight market."""
    listed = wide(panel["close"]).notna()

    def ranked(column):
        score = wide(panel[column]).where(listed).rank(axis=1)
        centred = score.sub(score.mean(axis=1), axis=0)
        return centred.div(centred.abs().max(axis=1), axis=0)

    books = {"alt_0 rank": ranked("ind__alt_0"), "mu rank": ranked(MU), "equal-weight market": listed.astype(float)}
    return {name: book.where(listed).stack().reorder_levels(["symbol", "timestamp"]) for name, book in books.items()}


def paired_difference(other: np.ndarray, oracle: np.ndarray, ppy: float) -> metrics.ConfidenceInterval:
    """95% paired stationary block-bootstrap interval of Sharpe(other) - Sharpe(oracle), same blocks."""
    def statistic(idx):
        i = idx.astype(np.intp)
        return np.nan_to_num(metrics.sharpe_ratio(other[i], ppy)) - np.nan_to_num(metrics.sharpe_ratio(oracle[i], ppy))

    return metrics.block_bootstrap_ci(np.arange(len(oracle), dtype=np.float64), statistic, n_resamples=300, seed=0)


def check_no_contender_beats_the_oracle(path, truth, panel) -> None:
    target = next_return(panel).stack().reorder_levels(["symbol", "timestamp"])
    oracle = portfolio_pnl(oracle_reference(panel, path, COSTS), target, COSTS).iloc[:-1].to_numpy()
    for name, book in contenders(panel).items():
        pnl = portfolio_pnl(book.reindex(panel.index), target, COSTS).iloc[:-1].to_numpy()
        ci = paired_difference(pnl, oracle, truth.bars_per_year)
        assert ci.high < 0, f"{name} is not below the oracle beyond noise: Sharpe difference {ci}"


def test_no_simple_book_beats_the_oracle_small(built):
    path, truth, panel = built
    check_no_contender_beats_the_oracle(path, truth, panel)


@pytest.mark.slow
def test_500_names_build_validate_and_no_simple_book_beats_the_oracle(tmp_path):
    cfg = FixtureConfig(rows=1260, freq="1D", seed=11, universe=UniverseConfig(size=500))
    path = tmp_path / "u500.db"
    truth = build_fixture(path, cfg)
    assert validate_database(path).issues == []
    panel = load_panel(path)
    assert panel.index.get_level_values("symbol").nunique() == 500
    check_no_contender_beats_the_oracle(path, truth, panel)
    target = next_return(panel)
    ic = metrics.cross_sectional_ic(wide(panel["ind__alt_0"]), target, "pearson", 10).dropna()
    assert abs(ic.mean() - cfg.universe.alt_ic) < 4 * ic.std(ddof=1) / np.sqrt(len(ic))


def test_the_daily_preset_loads_and_features_a_ragged_universe(tmp_path):
    """configs/daily.yaml on a universe: panel -> regimes -> features and the fold plan's warm-up check pass."""
    from plus_ultra_ml.evaluation.walkforward import plan_folds
    from plus_ultra_ml.experiments.dataset import load_training_data
    from plus_ultra_ml.experiments.warmup import check_training_rows

    path = tmp_path / "daily.db"
    build_fixture(path, FixtureConfig(rows=1600, freq="1D", seed=3, universe=UniverseConfig(size=20, sectors=4)))
    cfg = load_config(Path(__file__).resolve().parents[3] / "configs" / "daily.yaml")
    data = load_training_data(cfg, path)
    assert data.panel.index.get_level_values("symbol").nunique() == 20
    assert np.isfinite(data.features.to_numpy(dtype=np.float64)).all(axis=1).mean() > 0.5
    folds = plan_folds(data.features.index.get_level_values("timestamp"), cfg.walkforward, cfg.windows)
    assert folds
    check_training_rows(cfg, data, folds)


def test_cli_universe_flags(tmp_path):
    from typer.testing import CliRunner

    from plus_ultra_ml.cli import app

    runner = CliRunner()
    path = tmp_path / "cli.db"
    args = ["fixture", str(path), "--universe", "30", "--sectors", "5", "--alt-ic", "0.05", "--freq", "1D",
            "--rows", "520", "--seed", "4"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "dollar-neutral oracle" in result.output and "XNYS" in result.output
    truth = read_universe_truth(path)
    assert truth.parameters["universe"]["size"] == 30 and truth.parameters["universe"]["sectors"] == 5
    assert truth.expected_ic["alt_0"] == 0.05 and len(truth.model.sector_names) == 5
    refused = runner.invoke(app, ["fixture", str(tmp_path / "x.db"), "--universe", "30", "--symbols", "AAA"])
    assert refused.exit_code == 1 and "exclude each other" in refused.output
    refused = runner.invoke(app, ["fixture", str(tmp_path / "x.db"), "--sectors", "3"])
    assert refused.exit_code == 1 and "--universe" in refused.output
    refused = runner.invoke(app, ["fixture", str(tmp_path / "x.db"), "--universe", "5"])
    assert refused.exit_code == 1 and "--universe" in refused.output
    assert not (tmp_path / "x.db").exists()
