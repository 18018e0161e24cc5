"""production_model: promotes the latest supervised checkpoint only when its recorded checks passed."""

import json
from pathlib import Path

import dagster as dg
import numpy as np
import pytest

from plus_ultra_assets.assets import serving
from plus_ultra_assets.io_managers import CheckpointIOManager
from plus_ultra_assets.resources import ArtifactsResource, ExperimentConfigResource

ROOT = Path(__file__).resolve().parents[2]
GOOD = {"test_loss": 0.4, "val_loss": 0.4, "test_ic_next_bar": 0.05, "baseline_momentum_ic_next_bar": 0.01,
        "baseline_linear_ic_next_bar": 0.02, "test_sharpe_net": 3.0, "test_sharpe_net_low": 0.5,
        "baseline_momentum_sharpe_net": 1.0, "baseline_linear_sharpe_net": 2.0,
        "baseline_buy_and_hold_sharpe_net": 0.4, "baseline_vol_target_sharpe_net": 0.6}


def tiny_checkpoint(path: Path, metrics: dict, seed: int = 0) -> Path:
    """A supervised model.pt with lineage (three features, one symbol): what promotion reads."""
    import torch

    from plus_ultra_ml.config import ModelConfig
    from plus_ultra_ml.data.windows import RobustScaler
    from plus_ultra_ml.lineage import LineageRecord, now_utc
    from plus_ultra_ml.models.registry import build_from_config
    from plus_ultra_ml.checkpoints.supervised import write_checkpoint

    torch.manual_seed(seed)
    net = build_from_config(ModelConfig(backbone={"d_model": 8, "n_layers": 1, "n_heads": 2, "d_state": 4,
                                                  "ffn_mult": 1}), n_features=3, horizons=1, vocabulary=["AAA"])
    record = LineageRecord(kind="supervised", created_at=now_utc(), database={}, panel={}, features={}, config={},
                           config_hash="x", code_version={}, seed=seed, data_cutoff="2024-01-01T00:00:00+00:00",
                           split={}, metrics=metrics)
    scaler = RobustScaler(np.zeros(3, np.float32), np.ones(3, np.float32))
    return write_checkpoint(path, kind="supervised", net=net, feature_names=["a", "b", "c"], scaler=scaler, window=4,
                            horizon=1, lineage=record)


def supervised_stub(checkpoint: Path, passed: dict[str, bool]):
    """supervised_checkpoint as the training room's asset publishes it: a checkpoint handle and three checks."""
    from plus_ultra_ml.checkpoints.chain import read_lineage
    from plus_ultra_ml.checkpoints.ref import CheckpointRef

    @dg.asset(name="supervised_checkpoint", group_name="models", io_manager_key="checkpoint_io",
              check_specs=[dg.AssetCheckSpec(n, asset="supervised_checkpoint") for n in serving.SUPERVISED_CHECKS])
    def stub():
        yield dg.Output(CheckpointRef(checkpoint, read_lineage(checkpoint)))
        for n in serving.SUPERVISED_CHECKS:
            yield dg.AssetCheckResult(check_name=n, passed=passed.get(n, True), severity=dg.AssetCheckSeverity.WARN)

    return stub


@pytest.fixture
def resources(tmp_path):
    artifacts = ArtifactsResource(root=str(tmp_path / "home"))
    return {"experiment": ExperimentConfigResource(path=str(ROOT / "configs" / "smoke.yaml")),
            "artifacts": artifacts, "checkpoint_io": CheckpointIOManager(artifacts=artifacts)}


def materialise(instance, checkpoint, passed, resources):
    upstream = dg.materialize([supervised_stub(checkpoint, passed)], instance=instance,
                              resources={"checkpoint_io": resources["checkpoint_io"]})
    assert upstream.success
    result = dg.materialize([supervised_stub(checkpoint, passed), serving.production_model],
                            selection=[serving.production_model], instance=instance, resources=resources)
    assert result.success
    meta = result.asset_materializations_for_node("production_model")[0].metadata
    (check,) = result.get_asset_check_evaluations()
    return meta, check


def test_promotes_a_checkpoint_whose_checks_passed(tmp_path, resources):
    from plus_ultra_ml.artifacts import file_fingerprint
    from plus_ultra_ml.serving.registry import Registry

    good = tiny_checkpoint(tmp_path / "good" / "model.pt", GOOD)
    with dg.instance_for_test() as instance:
        meta, check = materialise(instance, good, {}, resources)
    assert meta["promoted"].value is True and check.passed
    registry = Registry(tmp_path / "home" / "registry")
    assert registry.production().fingerprint == file_fingerprint(good) == meta["production_fingerprint"].value
    pointer = json.loads(registry.pointer_path.read_text())
    assert pointer["run_ids"]["dagster_asset"] == "production_model"
    assert set(pointer["promotion"]["gate"]["checks"]) >= {f"external:{n}" for n in serving.SUPERVISED_CHECKS}


def test_a_failed_asset_check_blocks_promotion_and_keeps_production(tmp_path, resources):
    from plus_ultra_ml.artifacts import file_fingerprint
    from plus_ultra_ml.serving.registry import Registry

    good = tiny_checkpoint(tmp_path / "good" / "model.pt", GOOD)
    # lineage metrics that pass, but the Dagster check of this materialisation failed: not promoted
    other = tiny_checkpoint(tmp_path / "other" / "model.pt", GOOD, seed=1)
    with dg.instance_for_test() as instance:
        materialise(instance, good, {}, resources)
        meta, check = materialise(instance, other, {"beats_naive_baselines": False}, resources)
    assert meta["promoted"].value is False and not check.passed
    assert "external:beats_naive_baselines" in check.description
    assert Registry(tmp_path / "home" / "registry").production().fingerprint == file_fingerprint(good)


def test_weak_held_out_metrics_block_promotion_even_when_checks_say_pass(tmp_path, resources):
    weak = tiny_checkpoint(tmp_path / "weak" / "model.pt", {**GOOD, "test_ic_next_bar": 0.015})
    with dg.instance_for_test() as instance:
        meta, check = materialise(instance, weak, {}, resources)
    assert meta["promoted"].value is False and "beats_naive_baselines" in check.description
    assert meta["production_fingerprint"].value == ""


def test_without_a_supervised_materialisation_it_fails_loudly(tmp_path, resources):
    never = supervised_stub(tmp_path / "never" / "model.pt", {})  # defined upstream, never materialised
    with dg.instance_for_test() as instance:
        result = dg.materialize([never, serving.production_model], selection=[serving.production_model],
                                instance=instance, resources=resources, raise_on_error=False)
    assert not result.success


def test_production_model_wires_into_the_definitions():
    """What the lead adds to definitions.py: the merged graph resolves, downstream of supervised_checkpoint."""
    from plus_ultra_assets.definitions import defs

    merged = dg.Definitions.merge(defs, dg.Definitions(assets=[serving.production_model]))
    graph = merged.resolve_asset_graph()
    assert dg.AssetKey("supervised_checkpoint") in graph.get(dg.AssetKey("production_model")).parent_keys
    merged.resolve_all_job_defs()
