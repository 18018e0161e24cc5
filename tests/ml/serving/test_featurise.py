"""Incremental featurisation: bounded reads that reproduce the full-history features of the latest window."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest

from plus_ultra_ml.config import RegimeConfig, ServiceConfig
from plus_ultra_ml.data.panel import build_panel
from plus_ultra_ml.errors import PlusUltraError
from plus_ultra_ml.serving.featurise import BarsError, full_history_features, history_budget
from plus_ultra_ml.serving.history import latest_timestamps, read_recent
from plus_ultra_ml.serving.predictor import Predictor

from .conftest import ROWS, SYMBOLS, append_bars, build_db, iso, truncate_db


def full_panel(db, predictor):
    return build_panel(db, predictor.recipe.data.model_copy(update={"end": None})).panel


def served_and_reference(predictor, db):
    """(served latest windows, full-history features of the same last `window` rows per symbol, scaled)."""
    served = predictor.featuriser.from_database(list(SYMBOLS))
    result = full_history_features(full_panel(db, predictor), predictor.recipe)
    frame = result.frame[list(predictor.recipe.feature_names)]
    T = predictor.recipe.window
    reference = np.stack([predictor.model.scaler.transform(frame.xs(s, level="symbol").to_numpy(np.float32)[-T:])
                          for s in served.symbols])
    return served, reference


def test_history_budget_adds_window_warmup_and_convergence(checkpoint, market):
    predictor = Predictor.load(checkpoint, db_path=market, warm=False)
    budget = predictor.recipe.budget
    assert budget.window == 8
    assert budget.warmup == 60  # rvol_60, skew_60, regime_z_60 (the regime codes' warm-up is the state's)
    assert budget.volatility == 1163  # 50-bar half-life, weight 1e-7: 50 * log2(1e7)
    assert budget.bars == budget.window + max(budget.warmup + budget.smoothing, budget.volatility, budget.regimes)
    looser = history_budget(predictor.recipe.specs, 8, predictor.recipe.regimes, 1e-3)
    assert looser.bars < budget.bars
    with pytest.raises(PlusUltraError, match="shorter than the window"):
        history_budget(predictor.recipe.specs, 8, predictor.recipe.regimes, 1e-7, override=20)


def test_served_window_equals_the_full_history_features_and_reads_a_bounded_number_of_bars(checkpoint, market):
    predictor = Predictor.load(checkpoint, db_path=market)
    served, reference = served_and_reference(predictor, market)
    assert served.symbols == SYMBOLS and not served.unavailable
    np.testing.assert_allclose(served.x, reference, rtol=1e-5, atol=1e-5)
    regime_columns = [j for j, n in enumerate(predictor.recipe.feature_names)
                      if n in ("regime_volatility", "regime_liquidity", "regime_trend")]
    assert regime_columns and np.array_equal(served.x[:, :, regime_columns], reference[:, :, regime_columns])
    bars = predictor.recipe.budget.bars
    assert predictor.featuriser.stats.rows_read == len(SYMBOLS) * bars < len(SYMBOLS) * ROWS


def test_bars_read_do_not_grow_with_the_history(tmp_path, checkpoint, market):
    longer = build_db(tmp_path / "longer.db", rows=2 * ROWS)
    predictor = Predictor.load(checkpoint, db_path=longer, warm=False)
    predictor.featuriser.from_database(["AAA"])
    assert predictor.featuriser.stats.rows_read == len(SYMBOLS) * predictor.recipe.budget.bars


def test_new_bars_advance_the_state_and_stay_exact(tmp_path, checkpoint, market):
    cut = pd.Timestamp(latest_timestamps(market, ["AAA"])["AAA"]) - pd.Timedelta("15min") * 400
    live = truncate_db(market, tmp_path / "live.db", iso(cut))
    predictor = Predictor.load(checkpoint, db_path=live)
    assert predictor.featuriser.stats.state_rebuilds == 1
    for step in range(3):  # bars land: 1, then 50, then 300
        after = latest_timestamps(live, ["AAA"])["AAA"]
        append_bars(live, market, iso(after), (1, 50, 300)[step])
        served, reference = served_and_reference(predictor, live)
        np.testing.assert_allclose(served.x, reference, rtol=1e-5, atol=1e-5)
        assert served.timestamps[0] > after
    assert predictor.featuriser.stats.state_rebuilds == 1  # advanced, never re-read the whole history
    assert predictor.featuriser.stats.featurisations == 4


def test_a_long_sleep_rebuilds_the_regime_state_and_stays_exact(tmp_path, checkpoint, market):
    cut = pd.Timestamp(latest_timestamps(market, ["AAA"])["AAA"]) - pd.Timedelta("15min") * 1600
    live = truncate_db(market, tmp_path / "sleepy.db", iso(cut))
    predictor = Predictor.load(checkpoint, db_path=live)
    append_bars(live, market, iso(cut), 1500)  # more new bars than one read holds
    served, reference = served_and_reference(predictor, live)
    np.testing.assert_allclose(served.x, reference, rtol=1e-5, atol=1e-5)
    assert predictor.featuriser.stats.state_rebuilds == 2


def test_cache_is_reused_until_a_bar_lands(checkpoint, market):
    predictor = Predictor.load(checkpoint, db_path=market)
    before = predictor.featuriser.stats.featurisations
    for _ in range(3):
        predictor.predict(["AAA", "BBB"])
    assert predictor.featuriser.stats.featurisations == before


def test_rolling_regime_thresholds_are_exact_from_the_read_alone(tmp_path, market, training_data):
    from .conftest import make_checkpoint, serving_config

    cfg = serving_config("regimes.lookback=300", db=market)
    from plus_ultra_ml.experiments.dataset import load_training_data

    path = make_checkpoint(cfg, load_training_data(cfg, market), tmp_path / "rolling.pt")
    predictor = Predictor.load(path, db_path=market)
    assert predictor.recipe.budget.regimes == 300 + 50 + 1
    served, reference = served_and_reference(predictor, market)
    np.testing.assert_allclose(served.x, reference, rtol=1e-5, atol=1e-5)
    assert predictor.featuriser._state is None  # no state: the read holds the rolling window


def test_supplied_bars_must_cover_the_universe_for_cross_sectional_features(checkpoint, market):
    predictor = Predictor.load(checkpoint, db_path=market, warm=False)
    assert predictor.recipe.cross_sectional
    bars = read_recent(market, ["AAA", "BBB"], 1500, indicators=predictor.recipe.indicators).panel
    with pytest.raises(BarsError, match=r"lack \['CCC'\]"):
        predictor.featuriser.from_bars(bars, ["AAA"])


def test_supplied_bars_give_the_features_of_those_bars(checkpoint, market):
    predictor = Predictor.load(checkpoint, db_path=market, warm=False)
    bars = read_recent(market, list(SYMBOLS), 1500, indicators=predictor.recipe.indicators).panel
    windows = predictor.featuriser.from_bars(bars, ["BBB"])
    result = full_history_features(bars, predictor.recipe)
    expected = predictor.model.scaler.transform(
        result.frame[list(predictor.recipe.feature_names)].xs("BBB", level="symbol").to_numpy(np.float32)[-8:])
    np.testing.assert_array_equal(windows.x[0], expected)
    short = bars.groupby(level="symbol", observed=True).tail(40)
    assert "BBB" in predictor.featuriser.from_bars(short, ["BBB"]).unavailable


def test_read_recent_is_read_only_and_in_the_panel_contract(tmp_path, market):
    copy = tmp_path / "ro.db"
    shutil.copyfile(market, copy)
    copy.chmod(0o444)
    recent = read_recent(copy, ["AAA", "ZZZ"], 100, indicators=["alt_0"])
    assert list(recent.panel.index.names) == ["symbol", "timestamp"]
    assert recent.panel.index.get_level_values("symbol").unique().tolist() == ["AAA"]
    assert len(recent.panel) == 100 and recent.rows_read == 100
    assert "ind__alt_0" in recent.panel and recent.panel["ind__alt_0"].notna().all()
    assert recent.complete == frozenset({"ZZZ"})
    with pytest.raises(ValueError):
        read_recent(copy, ["AAA"], 0)


def test_service_history_override_is_respected(checkpoint, market):
    predictor = Predictor.load(checkpoint, db_path=market, service=ServiceConfig(history_bars=600), warm=False)
    assert predictor.recipe.budget.bars == 600 and predictor.recipe.budget.overridden
    assert RegimeConfig().lookback is None
