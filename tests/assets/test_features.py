"""feature_table in-process: materialises after the market group, passes its checks, queryable by SQL."""

from __future__ import annotations

import dagster as dg
import numpy as np

from plus_ultra_assets.assets import features, market
from plus_ultra_ml.sql import run_query

ASSETS = [market.market_db, market.market_panel, market.regime_labels, features.feature_table]


def test_feature_table_materialises_with_checks(small_market, resources_for, tmp_path):
    with dg.instance_for_test() as instance:
        result = dg.materialize(ASSETS, resources=resources_for(small_market), instance=instance)
        assert result.success
        checks = {c.check_name: c.passed for c in result.get_asset_check_evaluations()
                  if c.asset_key.to_user_string() == "feature_table"}
        assert checks == {"finite_after_warmup": True, "causal": True, "not_constant": True}
        table = result.output_for_node("feature_table")
        panel = result.output_for_node("market_panel")
        assert table.index.equals(panel.index)
        assert all(dtype == np.float32 for dtype in table.dtypes)
        assert not [c for c in table.columns if "truth" in c], "ground truth must never become a feature"
        meta = result.asset_materializations_for_node("feature_table")[0].metadata
        assert meta["feature_count"].value == table.shape[1] and len(meta["feature_fingerprint"].value) == 64
    counts = run_query(tmp_path, "select count(*) as n, count(distinct symbol) as s from feature_table")
    assert counts["n"].iloc[0] == len(table) and counts["s"].iloc[0] == 2
