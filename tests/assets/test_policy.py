"""ppo_policy in-process: after a supervised checkpoint, writes a policy with lineage to it and its checks."""


import dagster as dg
import pandas as pd
import pytest

from plus_ultra_assets.assets import features, market, policy
from plus_ultra_assets.resources import ExperimentConfigResource
from plus_ultra_ml.checkpoints.ref import CheckpointRef

# Small and fast: one short supervised epoch, a few PPO updates, one torch thread.
OVERRIDES = ("windows.window=16", "train.epochs=1", "train.limit_train_batches=3", "train.limit_val_batches=2",
             "tracking.mode=disabled", "rl.updates=2", "rl.n_envs=8", "rl.steps_per_rollout=32", "rl.epochs=2",
             "rl.minibatch_size=128", "rl.threads=1")


@dg.asset(name="supervised_checkpoint", group_name="models", io_manager_key="checkpoint_io")
def supervised_stub(context: dg.AssetExecutionContext, experiment: ExperimentConfigResource,
                    market_panel: pd.DataFrame, feature_table: pd.DataFrame) -> CheckpointRef:
    """The supervised stage as the training room's asset publishes it: a handle to its model.pt."""
    from plus_ultra_ml.data.training_data import TrainingData
    from plus_ultra_ml.training.fit import train_supervised

    cfg = experiment.load()
    result = train_supervised(cfg, TrainingData(feature_table, market_panel, "test"), resume=False)
    return CheckpointRef(result.checkpoint, result.lineage)


ASSETS = [market.market_db, market.market_panel, market.regime_labels, features.feature_table, supervised_stub,
          policy.ppo_policy]


@pytest.fixture
def one_torch_thread():
    """Tiny models on a shared 2-core machine: one torch thread is much faster (and restored after)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_ppo_policy_materialises_with_lineage_and_checks(small_market, resources_for, tmp_path, monkeypatch,
                                                         one_torch_thread):
    from plus_ultra_ml.checkpoints.chain import lineage_chain
    from plus_ultra_ml.rl.trained import load_policy

    monkeypatch.setenv("PLUS_ULTRA_HOME", str(tmp_path / "home"))
    with dg.instance_for_test() as instance:
        result = dg.materialize(ASSETS, resources=resources_for(small_market, *OVERRIDES), instance=instance)
        assert result.success
        meta = result.asset_materializations_for_node("ppo_policy")[0].metadata
        parent = result.asset_materializations_for_node("supervised_checkpoint")[0].metadata["path"].value
        checks = {c.check_name: c for c in result.get_asset_check_evaluations()
                  if c.asset_key.to_user_string() == "ppo_policy"}
    path = meta["path"].value
    assert path.startswith(str(tmp_path / "checkpoints" / "ppo_policy"))  # under the artifacts resource's root
    assert meta["parent"].value == parent and meta["updates"].value == 2
    for key in ("val_net_sharpe_ppo", "val_net_sharpe_supervised", "val_net_sharpe_buy_and_hold"):
        assert isinstance(meta[key].value, float)
    chain = lineage_chain(path)
    assert [link.record.kind for link in chain] == ["ppo_policy", "supervised"]
    assert chain[0].record.run_ids["dagster_asset"] == "ppo_policy"
    assert load_policy(path).feature_names == chain[1].record.features["names"]
    beat = checks["beats_supervised"]
    assert beat.severity == dg.AssetCheckSeverity.WARN
    assert beat.metadata["val_ppo_sharpe_net"].value == pytest.approx(meta["val_net_sharpe_ppo"].value, nan_ok=True)
    assert beat.passed == (meta["best_update"].value > 0
                           and meta["val_net_sharpe_ppo"].value > meta["val_net_sharpe_supervised"].value)
    assert "not_collapsed" in checks


@pytest.mark.parametrize("improved", [True, False])
def test_beats_supervised_check_warns_with_the_numbers(improved):
    check = policy.beats_supervised_check(improved, 0.5 if improved else -1.25, -0.75, 0.3, 3 if improved else 0)
    assert check.passed is improved and check.severity == dg.AssetCheckSeverity.WARN
    if not improved:
        assert "-1.250 vs -0.750" in check.description and "buy-and-hold 0.300" in check.description
        assert "supervised behaviour (update 0) was kept" in check.description
    assert check.metadata["val_supervised_sharpe_net"].value == -0.75


def test_ppo_policy_fails_clearly_without_a_supervised_checkpoint(small_market, resources_for, tmp_path):
    with dg.instance_for_test() as instance:
        assets = [market.market_db, market.market_panel, market.regime_labels, features.feature_table,
                  policy.ppo_policy]  # supervised_checkpoint is defined but never materialised
        result = dg.materialize([*assets, supervised_stub], selection=assets,
                                resources=resources_for(small_market, *OVERRIDES), instance=instance,
                                raise_on_error=False)
        assert not result.success
        failure = [e for e in result.all_events if e.is_step_failure][0]
        assert "materialise supervised_checkpoint first" in failure.step_failure_data.error.message


def test_no_torch_at_module_level():
    import subprocess
    import sys

    code = "import sys, plus_ultra_assets.assets.policy; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "False"
