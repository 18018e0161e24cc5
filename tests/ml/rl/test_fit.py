"""From a supervised checkpoint to a policy checkpoint: same split and scaler, lineage to the parent,
a file that rebuilds the policy alone, and held-out scores on the test segment only."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from plus_ultra_ml.artifacts import file_fingerprint
from plus_ultra_ml.checkpoints.chain import lineage_chain, read_lineage
from plus_ultra_ml.checkpoints.format import CheckpointError
from plus_ultra_ml.checkpoints.policy import PolicyCheckpointError
from plus_ultra_ml.checkpoints.supervised import load_checkpoint
from plus_ultra_ml.checkpoints.windows import policy_windows
from plus_ultra_ml.config import config_from_dict
from plus_ultra_ml.data.training_data import TrainingData
from plus_ultra_ml.rl.fit import finetune_checkpoint
from plus_ultra_ml.rl.trained import load_policy

from .conftest import COSTS, planted_frames, write_supervised


def _cfg(**rl):
    settings = {"updates": 2, "steps_per_rollout": 24, "n_envs": 8, "epochs": 2, "minibatch_size": 64, **rl}
    return config_from_dict({
        "seed": 3,
        "windows": {"window": 8, "horizon": 1, "val_fraction": 0.3, "test_fraction": 0.1},  # not the parent's split
        "costs": COSTS.model_dump(),
        "rl": settings,
    })


@pytest.fixture(scope="module")
def parent(tmp_path_factory):
    features, panel = planted_frames(bars=900, seed=4)
    path, data = write_supervised(tmp_path_factory.mktemp("supervised") / "model.pt", features, panel)
    return path, TrainingData(features, panel, "planted"), data


def test_policy_windows_reuse_the_parents_split_scaler_and_features(parent):
    path, training, data = parent
    windowed = policy_windows(_cfg(), training, load_checkpoint(path))
    assert windowed.split.to_dict() == data.split.to_dict()
    np.testing.assert_array_equal(windowed.scaler.center, data.scaler.center)
    for segment in ("train", "val", "test"):
        np.testing.assert_array_equal(windowed.ends[segment], data.ends[segment])
    np.testing.assert_array_equal(windowed.features, data.features)


def test_missing_features_are_named(parent):
    path, training, _ = parent
    thin = TrainingData(training.features.drop(columns=["noise"]), training.panel, "planted")
    with pytest.raises(Exception, match="noise"):
        policy_windows(_cfg(), thin, load_checkpoint(path))


def test_finetune_checkpoint_writes_a_policy_with_lineage_to_its_parent(parent, tmp_path):
    path, training, data = parent
    result = finetune_checkpoint(_cfg(), training, path, root=tmp_path)
    assert result.checkpoint.is_file() and result.checkpoint.parent.parent == tmp_path.resolve()
    assert result.checkpoint.with_name("policy.lineage.json").is_file()
    record = read_lineage(result.checkpoint)
    assert record.kind == "ppo_policy" and record.seed == 3
    assert record.parent["fingerprint"] == file_fingerprint(path) and record.parent["kind"] == "supervised"
    assert record.data_cutoff == data.split.cutoff.isoformat()
    chain = lineage_chain(result.checkpoint)
    assert [link.record.kind for link in chain] == ["ppo_policy", "supervised"] and all(link.intact for link in chain)
    for who in ("ppo", "supervised", "buy_and_hold"):
        for segment in ("val", "test"):
            assert np.isfinite(result.metrics[f"{segment}_{who}_sharpe_net"])
    assert len(result.history) == 3 and result.history[0]["update"] == 0
    # test positions: exactly the test segment's decision bars
    times = result.test_positions.index.get_level_values("timestamp")
    first, last = data.split.bounds["test"]
    assert len(result.test_positions) == len(data.ends["test"]) and times.min() >= first and times.max() <= last


def test_the_policy_file_rebuilds_the_policy_alone(parent, tmp_path):
    path, training, data = parent
    result = finetune_checkpoint(_cfg(updates=1, freeze="full", lr=1e-2), training, path, root=tmp_path)
    loaded = load_policy(result.checkpoint)
    for key, value in result.ppo.policy.state_dict().items():
        assert torch.equal(value, loaded.policy.state_dict()[key]), key
    assert loaded.env.costs == COSTS and loaded.feature_names == data.feature_names
    positions = loaded.positions(data, "test")
    # same weights; windows batched in another order may round differently in the last float32 bit
    np.testing.assert_allclose(positions.to_numpy(), result.test_positions.to_numpy(), rtol=0, atol=1e-6)
    assert positions.index.equals(result.test_positions.index)


def test_a_policy_is_not_mistaken_for_a_supervised_model_and_vice_versa(parent, tmp_path):
    path, training, _ = parent
    result = finetune_checkpoint(_cfg(updates=1), training, path, root=tmp_path)
    with pytest.raises(CheckpointError, match="plus_ultra.checkpoint"):
        load_checkpoint(result.checkpoint)
    with pytest.raises(PolicyCheckpointError, match="plus_ultra.policy"):
        load_policy(path)
    with pytest.raises(PolicyCheckpointError, match="does not exist"):
        load_policy(tmp_path / "nope.pt")


def test_same_config_same_policy(parent, tmp_path):
    path, training, _ = parent
    a = finetune_checkpoint(_cfg(), training, path, root=tmp_path / "a")
    b = finetune_checkpoint(_cfg(), training, path, root=tmp_path / "b")
    assert a.metrics["val_ppo_sharpe_net"] == b.metrics["val_ppo_sharpe_net"]
    sa, sb = load_policy(a.checkpoint).policy.state_dict(), load_policy(b.checkpoint).policy.state_dict()
    assert all(torch.equal(v, sb[k]) for k, v in sa.items())


def test_the_fine_tune_is_a_wandb_run_of_job_type_ppo(parent, tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wandb_home"))
    path, training, _ = parent
    result = finetune_checkpoint(_cfg(), training, path, root=tmp_path / "runs")
    run_id = result.lineage.run_ids["wandb_run_id"]
    assert run_id
    (run,) = (tmp_path / "wandb_home" / "wandb").glob(f"offline-run-*-{run_id}")
    record = (run / f"run-{run_id}.wandb").read_bytes()
    assert b"ppo" in record and b"ppo/reward_bps" in record  # job type and the per-update history
    assert (result.checkpoint.parent / "logs" / "version_0" / "metrics.csv").is_file()  # the CSV log beside it
