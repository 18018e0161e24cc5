"""The market group in-process: definitions load, a clean database materialises, a broken one is stopped."""

from __future__ import annotations

import sqlite3
import warnings

import dagster as dg
import pandas as pd
import pytest

from plus_ultra_assets.assets import market
from plus_ultra_assets.definitions import defs

warnings.filterwarnings("ignore", category=dg.BetaWarning)
ASSETS = [market.market_db, market.market_panel, market.regime_labels]


def test_definitions_load():
    dg.Definitions.validate_loadable(defs)
    keys = {k.to_user_string() for k in defs.resolve_asset_graph().get_all_asset_keys()}
    assert {"market_db", "market_panel", "regime_labels"} <= keys
    assert defs.resolve_job_def("production_line") is not None


def test_materialise_market_group(small_market, resources_for):
    with dg.instance_for_test() as instance:
        result = dg.materialize(ASSETS, resources=resources_for(small_market), instance=instance)
        assert result.success
        checks = {c.check_name: c.passed for c in result.get_asset_check_evaluations()}
        assert checks == {"data_contract": True, "panel_schema": True, "causal": True}
        panel = result.output_for_node("market_panel")
        labels = result.output_for_node("regime_labels")
        assert len(panel) == 3000 and labels.index.equals(panel.index)
        meta = result.asset_materializations_for_node("market_panel")[0].metadata
        assert meta["dagster/row_count"].value == 3000 and meta["symbols"].value == 2
        assert len(meta["data_fingerprint"].value) == 64 and len(meta["db_fingerprint"].value) == 64
        assert "| symbol" in meta["preview"].value


def test_market_db_observation_versions(small_market, resources_for, tmp_path):
    observe = dg.Definitions(assets=ASSETS, resources=resources_for(small_market),
                             jobs=[dg.define_asset_job("observe", selection=[market.market_db])])
    with dg.instance_for_test() as instance:
        observe.resolve_job_def("observe").execute_in_process(instance=instance)
        first = instance.fetch_observations(dg.AssetKey("market_db"), limit=1).records[0]
        assert first.asset_observation.data_version


def _broken_copy(source, target, statement):
    with sqlite3.connect(source) as src, sqlite3.connect(target) as dst:
        src.backup(dst)
        dst.execute(statement)
    return target


def test_broken_database_fails_blocking_check_and_stops_downstream(small_market, resources_for, tmp_path):
    broken = _broken_copy(small_market, tmp_path / "broken.db",
                          "UPDATE series SET high = low / 2 WHERE rowid IN (SELECT rowid FROM series LIMIT 3)")
    with dg.instance_for_test() as instance:
        result = dg.materialize(ASSETS, resources=resources_for(broken), instance=instance, raise_on_error=False)
        assert not result.success
        checks = {c.check_name: c for c in result.get_asset_check_evaluations()}
        assert checks["data_contract"].passed is False
        assert checks["data_contract"].metadata["errors"].value >= 1
        materialised = {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}
        assert materialised == {"market_panel"}
        assert instance.get_latest_materialization_event(dg.AssetKey("regime_labels")) is None


def test_unloadable_database_fails_the_panel_step_with_the_report(small_market, resources_for, tmp_path):
    broken = _broken_copy(small_market, tmp_path / "nocol.db", "ALTER TABLE series DROP COLUMN volume")
    with dg.instance_for_test() as instance:
        result = dg.materialize(ASSETS, resources=resources_for(broken), instance=instance, raise_on_error=False)
        assert not result.success
        failure = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"][0]
        error, messages = failure.step_failure_data.error, []
        while error is not None:
            messages.append(error.message)
            error = error.cause
        assert any("has no column volume" in m for m in messages), messages


def test_ffill_limit_comes_from_config(small_market, resources_for, tmp_path):
    holed = _broken_copy(small_market, tmp_path / "holed.db",
                         "DELETE FROM series WHERE symbol = 'AAA' AND rowid IN "
                         "(SELECT rowid FROM series WHERE symbol = 'AAA' ORDER BY timestamp LIMIT 2 OFFSET 500)")
    with dg.instance_for_test() as instance:
        result = dg.materialize(ASSETS[:2], resources=resources_for(holed, "data.ffill_limit=2"), instance=instance)
        assert len(result.output_for_node("market_panel")) == 3000
        result = dg.materialize(ASSETS[:2], resources=resources_for(holed, "data.ffill_limit=1"), instance=instance)
        assert len(result.output_for_node("market_panel")) == 2998
        assert isinstance(result.output_for_node("market_panel").index, pd.MultiIndex)


@pytest.mark.parametrize("asset", ["market_panel", "regime_labels"])
def test_assets_are_grouped(asset):
    spec = defs.resolve_assets_def(asset).specs_by_key[dg.AssetKey(asset)]
    assert spec.group_name == "market"
