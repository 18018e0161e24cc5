"""Asset metadata at universe size: per-symbol content summarised above MANY_SYMBOLS, the whole table in a file."""

from __future__ import annotations

import json
import re
import warnings

import dagster as dg
import pandas as pd
import pytest

from plus_ultra_assets import sensors
from plus_ultra_assets.assets import features, market
from plus_ultra_assets.metadata import last_bars_metadata, per_symbol_metadata
from plus_ultra_ml.config import AutomationConfig, CostConfig, FixtureConfig
from plus_ultra_ml.symbol_summary import MANY_SYMBOLS, TOP_K
from plus_ultra_ml.synthetic.fixture import build_fixture

warnings.filterwarnings("ignore", category=dg.BetaWarning)
NAMES = tuple(f"U{i:03d}" for i in range(40))
SYMBOL = re.compile(r"\bU\d{3}\b")


@pytest.fixture(scope="module")
def universe_market(tmp_path_factory):
    path = tmp_path_factory.mktemp("universe") / "fixture.db"
    build_fixture(path, FixtureConfig(symbols=NAMES, rows=500, alt_features=1, seed=5))
    return path


def _text(value) -> str:
    inner = getattr(value, "value", value)
    if isinstance(inner, str):
        return inner
    try:
        return json.dumps(inner, default=str)
    except Exception:  # noqa: BLE001  tables, schemas (dagster records refuse iteration): their repr holds every cell
        return repr(inner)


def _names_per_entry(metadata) -> dict[str, int]:
    return {key: len(set(SYMBOL.findall(_text(value)))) for key, value in metadata.items()}


def test_small_universe_keeps_every_last_bar_by_name(tmp_path):
    summary = {"AAA": {"rows": 10, "last": "2024-01-02T00:00:00Z"}, "BBB": {"rows": 9, "last": "2024-01-01T00:00:00Z"}}
    meta = last_bars_metadata(summary, "v1", tmp_path)
    assert meta["last_bar_per_symbol"].value == {"AAA": "2024-01-02T00:00:00Z", "BBB": "2024-01-01T00:00:00Z"}
    assert not (tmp_path / "metadata").exists()


def test_many_last_bars_are_summarised_and_the_table_written(tmp_path):
    summary = {f"U{i:03d}": {"rows": 100 + i, "last": f"2024-01-{1 + i % 5:02d}T00:00:00Z"} for i in range(300)}
    meta = last_bars_metadata(summary, "v2", tmp_path)
    assert "last_bar_per_symbol" not in meta
    last = meta["last_bar_summary"].value
    assert last["symbols"] == 300 and last["defined"] == 300
    assert last["min"].startswith("2024-01-01") and last["max"].startswith("2024-01-05")
    assert last["symbols_behind_the_latest_bar"] == 240  # 60 of 300 end on the 5th
    assert list(last["lowest"]) == ["U000", "U005", "U010", "U015", "U020"]  # the stalest, in symbol order
    rows = meta["rows_per_symbol_summary"].value
    assert (rows["min"], rows["max"], list(rows["highest"])[0]) == (100, 399, "U299")
    table = pd.read_parquet(meta["last_bar_table"].value)
    assert len(table) == 300 and set(table.columns) >= {"symbol", "rows", "last", "last_utc"}
    assert max(_names_per_entry(meta).values()) <= 2 * TOP_K


def _report(n_symbols: int):
    from plus_ultra_ml.evaluation.report import build_report
    import numpy as np

    rng = np.random.default_rng(0)
    times = pd.date_range("2024-01-01", periods=40, freq="1D", tz="UTC")
    names = [f"U{i:03d}" for i in range(n_symbols)]
    index = pd.MultiIndex.from_product([pd.CategoricalIndex(names), times], names=["symbol", "timestamp"])
    r = rng.normal(0, 0.01, len(index))
    pred = pd.DataFrame({"fold": "f0", "seed": 0, "next_return": r, "position__model": np.sign(r + rng.normal(0, .01, len(r))),
                         "position__flat": 0.0}, index=index)
    return build_report(pred, CostConfig(), periods_per_year=252)


def test_report_per_symbol_metadata_small_is_the_table_many_is_a_summary(tmp_path):
    small = per_symbol_metadata(_report(3), tmp_path / "report_symbols.parquet")
    assert _names_per_entry(small)["per_symbol"] == 3
    many = per_symbol_metadata(_report(300), tmp_path / "report_symbols.parquet")
    assert many["per_symbol_table"].value == str(tmp_path / "report_symbols.parquet")
    assert _names_per_entry(many)["per_symbol"] <= 2 * TOP_K * 2  # k lowest and k highest per strategy (2)
    assert len(many["per_symbol"].value.splitlines()) <= 4  # header, rule, one row per strategy


def test_universe_assets_keep_metadata_readable(universe_market, resources_for):
    """market_db, market_panel, regime_labels and feature_table on a 40-symbol database: no metadata entry
    (nor check metadata) names more than 2 * TOP_K symbols, and the whole last-bar table is on disk."""
    assets = [market.market_db, market.market_panel, market.regime_labels, features.feature_table]
    resources = resources_for(universe_market)
    observe = dg.Definitions(assets=assets, resources=resources,
                             jobs=[dg.define_asset_job("observe", selection=[market.market_db])])
    with dg.instance_for_test() as instance:
        observe.resolve_job_def("observe").execute_in_process(instance=instance)
        observed = instance.fetch_observations(dg.AssetKey("market_db"), limit=1).records[0].asset_observation
        assert observed.metadata["symbols"].value == len(NAMES) > MANY_SYMBOLS
        assert max(_names_per_entry(observed.metadata).values()) <= 2 * TOP_K
        assert len(pd.read_parquet(observed.metadata["last_bar_table"].path)) == len(NAMES)
        result = dg.materialize(assets, resources=resources, instance=instance)
        assert result.success
        for event in result.get_asset_materialization_events():
            metadata = event.step_materialization_data.materialization.metadata
            assert max(_names_per_entry(metadata).values()) <= 2 * TOP_K, event.asset_key
        for check in result.get_asset_check_evaluations():
            assert max(_names_per_entry(check.metadata).values(), default=0) <= 2 * TOP_K, check.check_name


def test_new_candles_sensor_observation_is_summarised(universe_market, resources_for):
    resources = {k: v for k, v in resources_for(universe_market).items() if k != "parquet_io"}
    sensor = sensors.new_candles_sensor(AutomationConfig())
    with dg.instance_for_test() as instance, \
            dg.build_sensor_context(instance=instance, cursor=None, resources=resources) as context:
        (observation,) = sensor(context).asset_events
    assert "last_bar_per_symbol" not in observation.metadata
    assert observation.metadata["last_bar_summary"].value["symbols"] == len(NAMES)
