"""The synthetic market: contract, planted signal, stored truth, determinism, atomic writing, CLI."""

from __future__ import annotations

import hashlib
import json
import math
import sqlite3

import numpy as np
import pandas as pd
import pytest
import typer
from typer.testing import CliRunner

from plus_ultra_ml.config import CostConfig, FixtureConfig
from plus_ultra_ml.data.calendar import periods_per_year
from plus_ultra_ml.data.schema import PanelSchema
from plus_ultra_ml.evaluation.oracle import oracle_positions
from plus_ultra_ml.synthetic import fixture as fixture_module
from plus_ultra_ml.synthetic.fixture import (
    ORACLE_INDICATOR,
    FixtureExistsError,
    build_fixture,
    read_fixture_truth,
)

SMALL = FixtureConfig(symbols=("AAA", "BBB"), rows=600, alt_features=3, seed=11)


def sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def wide(panel: pd.DataFrame, column: str) -> pd.DataFrame:
    """(timestamp x symbol) frame of one panel column."""
    return panel[column].unstack("symbol")


def pearson(x: pd.DataFrame, y: pd.DataFrame) -> float:
    pairs = pd.concat([x.stack(), y.stack()], axis=1).dropna()
    return float(pairs.corr().iloc[0, 1])


# --------------------------------------------------------------------------------------------
# the contract
# --------------------------------------------------------------------------------------------
def test_panel_passes_schema_and_geometry(default_panel):
    PanelSchema.validate(default_panel)
    p = default_panel
    assert (p[["open", "high", "low", "close"]] > 0).all().all()
    assert (p["high"] >= p[["open", "close"]].max(axis=1)).all()
    assert (p["low"] <= p[["open", "close"]].min(axis=1)).all()
    assert (p["high"] >= p["low"]).all()
    assert (p["volume"] >= 0).all()
    assert np.isfinite(p.to_numpy()).all()


def test_tables_timestamps_and_assets(default_fixture):
    path, _ = default_fixture
    cfg = FixtureConfig()
    with sqlite3.connect(path) as connection:
        assets = [row[0] for row in connection.execute("SELECT symbol FROM assets ORDER BY asset_id")]
        counts = dict(connection.execute("SELECT symbol, count(*) FROM series GROUP BY symbol"))
        names = [row[0] for row in connection.execute("SELECT DISTINCT name FROM indicators ORDER BY name")]
        first, last = connection.execute("SELECT min(timestamp), max(timestamp) FROM series").fetchone()
        stamps = [row[0] for row in connection.execute("SELECT DISTINCT timestamp FROM series ORDER BY timestamp")]
    assert assets == list(cfg.symbols)
    assert counts == {symbol: cfg.rows for symbol in cfg.symbols}
    assert names == ["alt_0", "alt_1", "truth_oracle", "truth_sigma", "truth_trend_regime", "truth_vol_regime"]
    assert first == "2020-01-01T00:00:00Z"
    grid = pd.to_datetime(stamps, format="%Y-%m-%dT%H:%M:%SZ", utc=True)
    assert (np.diff(grid.asi8) == pd.Timedelta("15min").value).all()  # regular 24/7 grid
    assert last == grid[-1].strftime("%Y-%m-%dT%H:%M:%SZ")


def test_daily_fixture_uses_business_days(tmp_path):
    cfg = FixtureConfig(symbols=("AAA",), rows=520, freq="1D", seed=1)
    truth = build_fixture(tmp_path / "daily.db", cfg)
    with sqlite3.connect(tmp_path / "daily.db") as connection:
        stamps = pd.to_datetime([r[0] for r in connection.execute("SELECT timestamp FROM series")], utc=True)
    assert len(stamps) == 520
    assert (stamps.dayofweek < 5).all()
    assert 250 < truth.bars_per_year < 265


# --------------------------------------------------------------------------------------------
# the planted signal and the stylised facts
# --------------------------------------------------------------------------------------------
def test_alt_0_ic_is_the_configured_one_on_a_large_sample():
    cfg = FixtureConfig(rows=200_000, alt_features=1, seed=3)
    market = fixture_module._simulate(cfg)
    forward = market.close[1:] / market.close[:-1] - 1
    per_symbol = [np.corrcoef(market.alts[:-1, j, 0], forward[:, j])[0, 1] for j in range(len(cfg.symbols))]
    assert np.mean(per_symbol) == pytest.approx(cfg.alt_ic, abs=0.006)
    # The oracle is the conditional mean, so it is calibrated: regressing r[t+1] on it gives slope 1.
    oracle = market.oracle[:-1].ravel()
    slope = np.cov(oracle, forward.ravel())[0, 1] / oracle.var(ddof=1)
    assert slope == pytest.approx(1.0, abs=0.06)


def test_alt_0_leads_by_exactly_one_bar():
    """Without persistence the timing is sharp: alt_0[t] predicts the bar t -> t+1 and no other."""
    cfg = FixtureConfig(rows=200_000, alt_features=1, seed=4, alt_persistence=0.0, momentum_persistence=0.0)
    market = fixture_module._simulate(cfg)
    returns = market.close[1:] / market.close[:-1] - 1  # returns[t] is the bar t -> t+1
    alt = market.alts[:, :, 0]

    def ic(lag: int) -> float:  # alt_0[t] vs the bar t+lag -> t+lag+1
        x = alt[max(0, -lag) : len(returns) - max(0, lag)]
        y = returns[max(0, lag) : len(returns) + min(0, lag)]
        return float(np.mean([np.corrcoef(x[:, j], y[:, j])[0, 1] for j in range(x.shape[1])]))

    assert ic(0) == pytest.approx(cfg.alt_ic, abs=0.006)
    for lag in (-1, 1, 2):
        assert abs(ic(lag)) < 0.006


def test_planted_signal_is_in_the_database(default_panel):
    close = wide(default_panel, "close")
    forward = close.shift(-1) / close - 1
    ic = {name: pearson(wide(default_panel, f"ind__{name}"), forward) for name in ("alt_0", "alt_1", ORACLE_INDICATOR)}
    assert ic["alt_0"] == pytest.approx(FixtureConfig().alt_ic, abs=0.015)
    assert ic[ORACLE_INDICATOR] > ic["alt_0"] + 0.01
    assert ic["alt_0"] > ic["alt_1"] > 0
    # Pure noise scores about zero on the same data (the measurement itself is not biased).
    rng = np.random.default_rng(0)
    noise = pd.DataFrame(rng.standard_normal(close.shape), index=close.index, columns=close.columns)
    assert abs(pearson(noise, forward)) < 0.012


def test_momentum_depends_on_the_trend_regime(default_panel):
    close = wide(default_panel, "close")
    returns = np.log(close).diff()
    proxy = (returns / returns.rolling(50).std()).ewm(alpha=0.05, adjust=False).mean()  # past only
    forward = close.shift(-1) / close - 1
    regime = wide(default_panel, "ind__truth_trend_regime")
    trending = pearson(proxy.where(regime != 0), forward.where(regime != 0))
    flat = pearson(proxy.where(regime == 0), forward.where(regime == 0))
    assert trending > 0.02
    assert flat < 0
    assert trending - flat > 0.03


def test_volatility_regimes_persist_and_assets_co_move(default_panel):
    close = wide(default_panel, "close")
    returns = np.log(close).diff().dropna()
    for symbol in returns:
        assert returns[symbol].abs().autocorr(1) > 0.1
        assert returns[symbol].abs().autocorr(100) > 0.05  # far beyond a bar: persistent regimes
    correlation = returns.corr().to_numpy()
    off_diagonal = correlation[~np.eye(len(correlation), dtype=bool)]
    assert off_diagonal.min() > 0.3
    volume = np.log(wide(default_panel, "volume")).iloc[1:]
    for symbol in returns:
        assert np.corrcoef(volume[symbol], returns[symbol].abs())[0, 1] > 0.3


# --------------------------------------------------------------------------------------------
# the stored truth
# --------------------------------------------------------------------------------------------
def test_stored_truth_matches_an_independent_recomputation(default_fixture, default_panel):
    path, returned = default_fixture
    stored = read_fixture_truth(path)
    assert stored == returned
    close = wide(default_panel, "close")
    oracle = wide(default_panel, f"ind__{ORACLE_INDICATOR}")
    forward = (close.shift(-1) / close - 1).iloc[:-1]
    held = np.sign(oracle).iloc[:-1]

    assert stored.oracle_ic == pytest.approx(pearson(oracle, forward), rel=1e-9)
    for symbol in close:
        assert stored.oracle_ic_by_symbol[symbol] == pytest.approx(oracle[symbol].corr(forward[symbol]), rel=1e-9)
    assert stored.alt_ic["alt_0"] == pytest.approx(pearson(wide(default_panel, "ind__alt_0"), forward), rel=1e-9)

    costs = CostConfig()
    bars_per_year = periods_per_year(close.index)
    assert stored.bars_per_year == pytest.approx(bars_per_year)
    annualise = math.sqrt(bars_per_year)

    def sharpes(held: pd.DataFrame) -> tuple[float, float]:  # pandas arithmetic, not objectives/pnl.py
        turnover = held.diff().abs().fillna(held.abs().iloc[0])  # p[-1] = 0
        gross = (held * forward).mean(axis=1)
        net = (held * forward - (costs.transaction_bps + costs.slippage_bps) * 1e-4 * turnover
               - costs.holding_bps * 1e-4 * held.abs()).mean(axis=1)
        return gross.mean() / gross.std() * annualise, net.mean() / net.std() * annualise

    sign_gross, sign_net = sharpes(held)
    assert stored.sign_oracle_sharpe_gross == pytest.approx(sign_gross, rel=1e-9)
    assert stored.sign_oracle_sharpe_net == pytest.approx(sign_net, rel=1e-9)
    # the oracle rule, recomputed from the stored indicators and rule alone (on any bars: here all of them)
    sigma = wide(default_panel, "ind__truth_sigma")
    rule = stored.rule
    assert rule.correlation == FixtureConfig().market_correlation
    positions = oracle_positions(oracle.to_numpy(), sigma.to_numpy(), costs, rule)
    assert np.abs(positions).max() <= rule.position_limit
    gross, net = sharpes(pd.DataFrame(positions, index=oracle.index, columns=oracle.columns).iloc[:-1])
    assert stored.oracle_sharpe_gross == pytest.approx(gross, rel=1e-9)
    assert stored.oracle_sharpe_net == pytest.approx(net, rel=1e-9)
    assert stored.oracle_sharpe_gross > stored.oracle_sharpe_net > 0
    assert stored.oracle_sharpe_net > 1.5 * stored.sign_oracle_sharpe_net  # sizing and the band pay (30.1 vs 15.2)
    assert stored.costs == costs.model_dump()
    assert stored.seed == FixtureConfig().seed
    assert stored.parameters["alt_ic"] == FixtureConfig().alt_ic


def test_truth_table_is_key_value_json(default_fixture):
    with sqlite3.connect(default_fixture[0]) as connection:
        rows = dict(connection.execute("SELECT key, value FROM fixture_truth"))
    assert set(rows) == set(fixture_module.TRUTH_KEYS)
    assert float(rows["oracle_sharpe_net"]) == pytest.approx(default_fixture[1].oracle_sharpe_net)
    assert json.loads(rows["oracle_rule"]) == default_fixture[1].rule.to_dict()


# --------------------------------------------------------------------------------------------
# determinism and safe writing
# --------------------------------------------------------------------------------------------
def test_same_seed_same_bytes_other_seed_other_data(tmp_path):
    build_fixture(tmp_path / "a.db", SMALL)
    build_fixture(tmp_path / "b.db", SMALL)
    build_fixture(tmp_path / "c.db", SMALL.model_copy(update={"seed": 12}))
    assert sha256(tmp_path / "a.db") == sha256(tmp_path / "b.db")
    assert sha256(tmp_path / "a.db") != sha256(tmp_path / "c.db")
    with sqlite3.connect(tmp_path / "a.db") as a, sqlite3.connect(tmp_path / "c.db") as c:
        query = "SELECT close FROM series ORDER BY symbol, timestamp"
        assert not np.allclose(np.array(a.execute(query).fetchall()), np.array(c.execute(query).fetchall()))


def test_refuses_to_overwrite_unless_asked(tmp_path):
    path = tmp_path / "m.db"
    build_fixture(path, SMALL)
    before = sha256(path)
    with pytest.raises(FixtureExistsError, match="already exists.*overwrite"):
        build_fixture(path, SMALL.model_copy(update={"seed": 99}))
    assert sha256(path) == before
    truth = build_fixture(path, SMALL.model_copy(update={"seed": 99}), overwrite=True)
    assert truth.seed == 99 and sha256(path) != before
    with pytest.raises(FixtureExistsError, match="directory"):
        build_fixture(tmp_path, SMALL, overwrite=True)


def test_a_failed_write_leaves_no_file(tmp_path, monkeypatch):
    real_write = fixture_module._write

    def write_then_crash(db_path, *args):
        real_write(db_path, *args)
        raise RuntimeError("disk full")

    monkeypatch.setattr(fixture_module, "_write", write_then_crash)
    with pytest.raises(RuntimeError, match="disk full"):
        build_fixture(tmp_path / "m.db", SMALL)
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------------------------
# the command line
# --------------------------------------------------------------------------------------------
def cli() -> typer.Typer:
    """The fixture command registered as in app.py, inside a group of its own (app.py may hold one command)."""
    from plus_ultra_ml.cli import fixture_commands

    group = typer.Typer()
    group.callback()(lambda: None)
    group.command("fixture", context_settings={"allow_extra_args": True})(fixture_commands.fixture)
    return group


def test_fixture_command_is_registered():
    from plus_ultra_ml.cli.app import app

    assert "fixture" in [command.name for command in app.registered_commands]


def test_cli_builds_summarises_and_refuses_overwrite(tmp_path):
    runner = CliRunner()
    path = tmp_path / "cli.db"
    args = ["fixture", str(path), "--symbols", "AAA", "BBB,CCC", "--rows", "600", "--freq", "1h", "--seed", "5"]
    result = runner.invoke(cli(), args)
    assert result.exit_code == 0, result.output
    assert "oracle IC" in result.output and "Sharpe" in result.output
    truth = read_fixture_truth(path)
    assert truth.parameters["symbols"] == ["AAA", "BBB", "CCC"] and truth.parameters["freq"] == "1h"

    again = runner.invoke(cli(), args)
    assert again.exit_code == 1
    assert "already exists" in again.output and "--overwrite" in again.output
    assert runner.invoke(cli(), [*args, "--overwrite"]).exit_code == 0


def test_cli_rejects_bad_options(tmp_path):
    runner = CliRunner()
    result = runner.invoke(cli(), ["fixture", str(tmp_path / "x.db"), "--rows", "10"])
    assert result.exit_code == 1 and "--rows" in result.output
    result = runner.invoke(cli(), ["fixture", str(tmp_path / "x.db"), "--symbols", "A", "A"])
    assert result.exit_code == 1 and "duplicates" in result.output
    assert not (tmp_path / "x.db").exists()
