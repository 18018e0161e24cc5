"""The evaluation line in-process: fold partitions refit and score out of sample; the report aggregates them."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pandas as pd
import pytest

from plus_ultra_assets import sensors
from plus_ultra_assets.assets import evaluation, features, market
from plus_ultra_assets.partitions import FOLDS
from plus_ultra_ml.config import AutomationConfig
from plus_ultra_ml.evaluation.walkforward import plan_folds
from plus_ultra_ml.config import load_config
from plus_ultra_ml.artifacts import file_fingerprint
from plus_ultra_ml.lineage_trace import trace

TINY = ["windows.window=16", "windows.horizon=2", "train.epochs=1", "train.limit_train_batches=4",
        "train.batch_size=32", "rl.updates=2", "rl.n_envs=4", "rl.steps_per_rollout=16",
        "walkforward.test_bars=200", "walkforward.val_bars=150", "walkforward.min_train_bars=300",
        "walkforward.n_folds=2", "tracking.mode=disabled"]
UPSTREAM = [market.market_db, market.market_panel, market.regime_labels, features.feature_table]
ASSETS = [*UPSTREAM, evaluation.walkforward_fold, evaluation.walkforward_report]


@pytest.mark.integration
def test_folds_then_report(small_market, resources_for, tmp_path):
    resources = resources_for(small_market, *TINY)
    with dg.instance_for_test() as instance:
        assert dg.materialize(UPSTREAM, resources=resources, instance=instance).success
        with dg.build_sensor_context(instance=instance, resources={k: resources[k] for k in ("experiment", "artifacts")},
                                     cursor=None) as context:
            result = sensors.fold_sensor(AutomationConfig())(context)
        added = result.dynamic_partitions_requests[0].partition_keys
        panel = pd.read_parquet(tmp_path / "assets" / "market_panel.parquet")
        cfg = load_config("configs/smoke.yaml", TINY)
        folds = plan_folds(panel.index.get_level_values("timestamp"), cfg.walkforward, cfg.windows)
        assert list(added) == [f.name for f in folds]
        instance.add_dynamic_partitions(FOLDS.name, list(added))
        for fold in folds:
            run = dg.materialize(ASSETS, selection=[evaluation.walkforward_fold], partition_key=fold.name,
                                 resources=resources, instance=instance)
            assert run.success
            predictions = run.output_for_node("walkforward_fold")
            times = predictions.index.get_level_values("timestamp")
            assert times.min() >= fold.split.bounds["test"][0] > fold.cutoff
            assert {"position__model", "position__ppo", "position__lightgbm", "next_return"} <= set(predictions.columns)
            fold_meta = run.asset_materializations_for_node("walkforward_fold")[0].metadata
            assert len(fold_meta["fold_config_hash"].value) == 64 and len(fold_meta["data_fingerprint"].value) == 64
        report = dg.materialize(ASSETS, selection=[evaluation.walkforward_report], resources=resources,
                                instance=instance)
        assert report.success
        meta = report.asset_materializations_for_node("walkforward_report")[0].metadata
        assert meta["folds"].value == sorted(added) and meta["left_out"].value == []
        assert (tmp_path / "reports" / "walkforward" / "report.html").exists()

        # the same instance, other costs: every fold of the plan is stale, named, and no report is written
        costly = resources_for(small_market, *TINY, "costs.transaction_bps=9.0")
        message = report_failure(dg.materialize(ASSETS, selection=[evaluation.walkforward_report], resources=costly,
                                                instance=instance, raise_on_error=False))
        assert "fold_config_hash" in message and folds[0].name in message and "re-materialise" in message

        # another plan (as another database gives): the old folds are left out, never mixed into its report
        other = resources_for(small_market, *TINY, "walkforward.min_train_bars=320")
        message = report_failure(dg.materialize(ASSETS, selection=[evaluation.walkforward_report], resources=other,
                                                instance=instance, raise_on_error=False))
        assert "no walk-forward fold of the current plan is materialised" in message


def report_failure(result) -> str:
    assert not result.success
    return result.get_step_failure_events()[0].event_specific_data.error.message


def test_fold_sensor_skips_until_the_panel_exists(resources_for, small_market):
    resources = resources_for(small_market)
    with dg.instance_for_test() as instance, dg.build_sensor_context(
            instance=instance, resources={k: resources[k] for k in ("experiment", "artifacts")}) as context:
        assert isinstance(sensors.fold_sensor(AutomationConfig())(context), dg.SkipReason)


@pytest.mark.integration
def test_a_rerun_fold_writes_a_new_version_and_leaves_the_old_lineage_ok(small_market, resources_for, tmp_path):
    resources = resources_for(small_market, *TINY, "walkforward.n_folds=1")
    with dg.instance_for_test() as instance:
        assert dg.materialize(UPSTREAM, resources=resources, instance=instance).success
        panel = pd.read_parquet(tmp_path / "assets" / "market_panel.parquet")
        cfg = load_config("configs/smoke.yaml", [*TINY, "walkforward.n_folds=1"])
        (fold,) = plan_folds(panel.index.get_level_values("timestamp"), cfg.walkforward, cfg.windows)
        instance.add_dynamic_partitions(FOLDS.name, [fold.name])
        runs, versions = [], []
        for _ in range(2):  # the second is a backfill of the same partition
            run = dg.materialize(ASSETS, selection=[evaluation.walkforward_fold], partition_key=fold.name,
                                 resources=resources, instance=instance)
            assert run.success
            runs.append(run)
            versions.append(tmp_path / "checkpoints" / "walkforward" / fold.name / run.run_id)
            if len(runs) == 1:
                first = {p: file_fingerprint(p) for p in versions[0].rglob("*") if p.is_file()}
        assert versions[0] != versions[1] and all(v.is_dir() for v in versions)
        assert {p: file_fingerprint(p) for p in versions[0].rglob("*") if p.is_file()} == first  # never rewritten
        old = runs[0].asset_materializations_for_node("walkforward_fold")[0].metadata["checkpoints"].value
        new = runs[1].asset_materializations_for_node("walkforward_fold")[0].metadata["checkpoints"].value
        for kind in old:
            for path in old[kind]:
                assert Path(path).is_relative_to(versions[0])
                assert all(link.status == "ok" for link in trace(path, with_extensions=False).links)
            assert all(Path(p).is_relative_to(versions[1]) for p in new[kind])  # the metadata points at the new one
