"""production_model: promotes the better of the latest supervised checkpoint and PPO policy whose gate and
recorded checks passed."""

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


POLICY_GOOD = {"ppo_policy_loss": 0.01, "ppo_value_loss": 0.2, "selection_kept": 1.0, "val_gain_bps": 0.3,
               "val_gain_low_bps": 0.1, "test_ppo_sharpe_net": 4.0, "test_ppo_sharpe_net_low": 1.0,
               **{k: v for k, v in GOOD.items() if k.startswith("baseline_")}}


def tiny_policy(supervised: Path, path: Path, metrics: dict) -> Path:
    """A policy.pt of the tiny supervised network (no PPO run): what promotion and serving read."""
    from plus_ultra_ml.checkpoints.policy import POLICY_KIND, write_policy
    from plus_ultra_ml.checkpoints.supervised import load_checkpoint
    from plus_ultra_ml.config import CostConfig
    from plus_ultra_ml.lineage import now_utc
    from plus_ultra_ml.rl.env import EnvConfig
    from plus_ultra_ml.rl.policy import ActorCritic
    from plus_ultra_ml.rl.trained import env_record

    model = load_checkpoint(supervised)
    env = EnvConfig(CostConfig())
    policy = ActorCritic(model.net, env.state_dim, freeze="frozen")
    lineage = model.lineage.with_updates(kind=POLICY_KIND, created_at=now_utc(), metrics=metrics,
                                         parent={"path": str(supervised), "kind": "supervised"})
    return write_policy(path, net=policy.net, state_proj=policy.state_proj.weight, env=env_record(env),
                        feature_names=model.feature_names, scaler=model.scaler, window=model.window,
                        horizon=model.horizon, lineage=lineage)


def policy_stub(path: Path, passed: dict[str, bool]):
    """ppo_policy as the RL room's asset publishes it: a handle and the gate's policy checks."""
    from plus_ultra_ml.checkpoints.chain import read_lineage
    from plus_ultra_ml.checkpoints.ref import CheckpointRef

    @dg.asset(name="ppo_policy", group_name="models", io_manager_key="checkpoint_io",
              check_specs=[dg.AssetCheckSpec(n, asset="ppo_policy") for n in serving.POLICY_CHECKS])
    def stub():
        yield dg.Output(CheckpointRef(path, read_lineage(path)))
        for n in serving.POLICY_CHECKS:
            yield dg.AssetCheckResult(check_name=n, passed=passed.get(n, True), severity=dg.AssetCheckSeverity.WARN)

    return stub


@pytest.fixture
def resources(tmp_path):
    artifacts = ArtifactsResource(root=str(tmp_path / "home"))
    return {"experiment": ExperimentConfigResource(path=str(ROOT / "configs" / "smoke.yaml")),
            "artifacts": artifacts, "checkpoint_io": CheckpointIOManager(artifacts=artifacts)}


def materialise(instance, checkpoint, passed, resources, policy=None, policy_passed=None):
    """Materialise the upstream stubs, then production_model alone. Without `policy`, the policy offered
    is one its validation selection dropped (the supervised model is then the only eligible candidate)."""
    if policy is None:
        policy = tiny_policy(checkpoint, checkpoint.parent / "dropped" / "policy.pt",
                             {**POLICY_GOOD, "selection_kept": 0.0})
    stubs = [supervised_stub(checkpoint, passed), policy_stub(policy, policy_passed or {})]
    upstream = dg.materialize(stubs, instance=instance, resources={"checkpoint_io": resources["checkpoint_io"]})
    assert upstream.success
    result = dg.materialize([*stubs, serving.production_model],
                            selection=[serving.production_model], instance=instance, resources=resources)
    assert result.success
    meta = result.asset_materializations_for_node("production_model")[0].metadata
    (check,) = result.get_asset_check_evaluations()
    return meta, check


def test_promotes_the_ppo_policy_when_it_passes_and_is_better(tmp_path, resources):
    from plus_ultra_ml.artifacts import file_fingerprint
    from plus_ultra_ml.serving.registry import Registry

    good = tiny_checkpoint(tmp_path / "good" / "model.pt", GOOD)  # held-out net Sharpe 3.0
    better = tiny_policy(good, tmp_path / "ppo" / "policy.pt", POLICY_GOOD)  # 4.0, kept on validation
    with dg.instance_for_test() as instance:
        meta, check = materialise(instance, good, {}, resources, policy=better)
        assert meta["promoted"].value is True and check.passed and meta["model_kind"].value == "ppo"
        production = Registry(tmp_path / "home" / "registry").production()
        assert production.fingerprint == file_fingerprint(better) and production.model_kind == "ppo"
        pointer = json.loads(Registry(tmp_path / "home" / "registry").pointer_path.read_text())
        assert pointer["parent"]["model_kind"] == "ppo" and pointer["promotion"]["model_kind"] == "ppo"
        assert [c["model_kind"] for c in pointer["promotion"]["candidates"]] == ["supervised", "ppo"]
        # the same policy with a failed recorded check is not eligible: the supervised model is promoted
        meta, _ = materialise(instance, good, {}, resources, policy=better, policy_passed={"significant": False})
    assert meta["model_kind"].value == "supervised"
    assert Registry(tmp_path / "home" / "registry").production().fingerprint == file_fingerprint(good)


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
    no_policy = policy_stub(tmp_path / "never" / "policy.pt", {})
    with dg.instance_for_test() as instance:
        result = dg.materialize([never, no_policy, serving.production_model], selection=[serving.production_model],
                                instance=instance, resources=resources, raise_on_error=False)
    assert not result.success


def test_production_model_wires_into_the_definitions():
    """What the lead adds to definitions.py: the merged graph resolves, downstream of supervised_checkpoint."""
    from plus_ultra_assets.definitions import defs

    merged = dg.Definitions.merge(defs, dg.Definitions(assets=[serving.production_model]))
    graph = merged.resolve_asset_graph()
    parents = graph.get(dg.AssetKey("production_model")).parent_keys
    assert {dg.AssetKey("supervised_checkpoint"), dg.AssetKey("ppo_policy")} <= parents
    merged.resolve_all_job_defs()
