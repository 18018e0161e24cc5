"""The Dagster side of `plus-ultra lineage`: a record's run and the upstream materialisations."""

from __future__ import annotations

import dagster as dg

from plus_ultra_assets.assets import features, market
from plus_ultra_assets.lineage import dagster_lineage
from plus_ultra_ml.lineage import LineageRecord


def test_walks_input_event_pointers_to_the_source(small_market, resources_for, tmp_path, monkeypatch):
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    instance = dg.DagsterInstance.get()
    result = dg.materialize([market.market_db, market.market_panel, market.regime_labels, features.feature_table],
                            resources=resources_for(small_market), instance=instance)
    record = LineageRecord(kind="supervised", created_at="", database={}, panel={}, features={}, config={},
                           config_hash="", code_version={}, seed=0, data_cutoff="", split={},
                           run_ids={"dagster_run_id": result.run_id, "dagster_asset": "feature_table"})
    found = dagster_lineage(record)
    assert found["run"]["run_id"] == result.run_id and found["run"]["status"] == "SUCCESS"
    assets = [node["asset"] for node in found["materialisations"]]
    assert assets[0] == "feature_table" and {"market_panel", "regime_labels"} <= set(assets)
    monkeypatch.delenv("DAGSTER_HOME")
    assert dagster_lineage(record) is None  # no instance: the file-only trace stands alone
