"""Models group in-process: pretrained_backbone -> supervised_checkpoint on a small fixture, tiny model."""

from __future__ import annotations

import math
from pathlib import Path

import dagster as dg
import pytest

from plus_ultra_assets.assets import features, market, models
from plus_ultra_assets.io_managers import CheckpointIOManager
from plus_ultra_assets.resources import ArtifactsResource
from plus_ultra_ml.artifacts import file_fingerprint
from plus_ultra_ml.checkpoints.chain import lineage_chain, read_lineage

ASSETS = [market.market_db, market.market_panel, market.regime_labels, features.feature_table,
          models.pretrained_backbone, models.supervised_checkpoint]
TINY = ["windows.window=16", "model.backbone={d_model: 8, n_layers: 1, n_heads: 2, d_state: 4, ffn_mult: 1}",
        "pretrain.limit_train_batches=3", "train.limit_train_batches=6", "train.epochs=1", "tracking.mode=disabled"]


def test_models_group_materialises_with_lineage_and_checks(small_market, resources_for):
    with dg.instance_for_test() as instance:
        result = dg.materialize(ASSETS, resources=resources_for(small_market, *TINY), instance=instance)
        assert result.success
        checks = {(c.asset_key.to_user_string(), c.check_name): c for c in result.get_asset_check_evaluations()}
        assert checks[("pretrained_backbone", "finite_losses")].passed
        assert checks[("supervised_checkpoint", "finite_losses")].passed
        for name in ("heldout_ic_positive", "beats_naive_baselines"):
            check = checks[("supervised_checkpoint", name)]
            assert check.severity == dg.AssetCheckSeverity.WARN
            assert "test_ic_next_bar" in check.metadata  # the numbers travel with the verdict

        pre = result.asset_materializations_for_node("pretrained_backbone")[0].metadata
        sup = result.asset_materializations_for_node("supervised_checkpoint")[0].metadata
        pre_path, sup_path = Path(pre["path"].value), Path(sup["path"].value)
        # checkpoints/<asset>/<this run's id>/<run key>/model.pt: each materialisation its own version
        assert [pre_path.parents[2].name, pre_path.parents[1].name] == ["pretrained_backbone", result.run_id]
        assert [sup_path.parents[2].name, sup_path.parents[1].name] == ["supervised_checkpoint", result.run_id]
        assert sup["parent"].value == str(pre_path)
        assert sup["parameters"].value > 0 and sup["steps"].value == 6 and math.isfinite(sup["test_loss"].value)
        for key in ("test_ic_next_bar", "test_sharpe_net", "baseline_linear_ic_next_bar", "wall_time_s"):
            assert key in sup

        lineage = read_lineage(sup_path)
        assert lineage.run_ids["dagster_run_id"] == result.run_id
        assert lineage.run_ids["dagster_asset"] == "supervised_checkpoint"
        assert lineage.database["fingerprint"] == file_fingerprint(small_market)
        assert lineage.parent["fingerprint"] == file_fingerprint(pre_path)
        assert [link.record.kind for link in lineage_chain(sup_path)] == ["supervised", "pretrain"]
        assert len(lineage.features["fingerprint"]) == 64


def test_supervised_needs_a_pretrained_backbone_first(tmp_path):
    io = CheckpointIOManager(artifacts=ArtifactsResource(root=str(tmp_path)))
    context = dg.build_input_context(asset_key=dg.AssetKey("pretrained_backbone"))
    with pytest.raises(dg.Failure, match="materialise pretrained_backbone first"):
        io.load_input(context)
