"""PPO or the supervised head: kept on a large consistent validation gain, dropped on noise, and
decided from validation bars only (perturbing the test segment's returns leaves the decision alone)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from plus_ultra_ml.config import RLSelectionConfig, config_from_dict
from plus_ultra_ml.data.training_data import TrainingData
from plus_ultra_ml.rl.fit import finetune_checkpoint
from plus_ultra_ml.rl.select import select_policy

from .conftest import COSTS, planted_frames, write_supervised

BARS = 2000


def pnl_pair(gain_bps: float, seed: int, noise_bps: float = 10.0, diff_noise_bps: float = 2.0):
    """(ppo, head) per-bar net PnL on the same timestamps: head is noise, ppo = head + gain + noise."""
    rng = np.random.default_rng(seed)
    times = pd.date_range("2024-01-01", periods=BARS, freq="15min", tz="UTC")
    head = rng.normal(0.0, noise_bps * 1e-4, BARS)
    ppo = head + gain_bps * 1e-4 + rng.normal(0.0, diff_noise_bps * 1e-4, BARS)
    return pd.Series(ppo, index=times), pd.Series(head, index=times)


def test_a_large_consistent_gain_keeps_ppo():
    ppo, head = pnl_pair(gain_bps=0.5, seed=0)  # 0.5 bps/bar gain, 2 bps/bar noise on the difference
    selection = select_policy(ppo, head, RLSelectionConfig(), moved=True, seed=0)
    assert selection.kept and selection.low_bps > 0 and selection.bars == BARS
    assert selection.low_bps < selection.gain_bps < selection.high_bps
    assert selection.gain_bps == pytest.approx(0.5, abs=0.15)
    assert selection.metrics()["selection_kept"] == 1.0 and selection.record()["policy"] == "ppo"


def test_noise_drops_ppo_and_false_keeps_stay_near_alpha():
    cfg = RLSelectionConfig(alpha=0.05)
    kept = [select_policy(*pnl_pair(gain_bps=0.0, seed=s), cfg, moved=True, seed=s).kept for s in range(40)]
    assert not kept[0]
    assert sum(kept) <= 5  # one-sided 5%: about 2 of 40 expected by chance
    # the old rule keeps any PPO that moved, noise or not
    best_val = RLSelectionConfig(rule="best_val")
    assert all(select_policy(*pnl_pair(0.0, seed=s), best_val, moved=True).kept for s in range(5))


def test_other_rules_and_a_policy_that_never_moved():
    ppo, head = pnl_pair(gain_bps=0.5, seed=1)
    assert not select_policy(ppo, head, RLSelectionConfig(rule="always_head"), moved=True).kept
    assert not select_policy(ppo, head, RLSelectionConfig(), moved=False).kept  # best update 0: the head itself
    same = select_policy(head, head, RLSelectionConfig(), moved=True)
    assert not same.kept and same.gain_bps == 0.0
    assert not select_policy(ppo.iloc[:1], head.iloc[:1], RLSelectionConfig(), moved=True).kept  # too few bars


def test_the_pair_is_compared_on_common_bars_only():
    ppo, head = pnl_pair(gain_bps=0.5, seed=2)
    shifted = select_policy(ppo.iloc[100:], head, RLSelectionConfig(), moved=True)
    assert shifted.bars == BARS - 100


def _cfg(**selection):
    return config_from_dict({
        "seed": 3,
        "windows": {"window": 8, "horizon": 1, "val_fraction": 0.3, "test_fraction": 0.1},
        "costs": COSTS.model_dump(),
        "rl": {"updates": 2, "steps_per_rollout": 24, "n_envs": 8, "epochs": 2, "minibatch_size": 64, "lr": 1e-2,
               "selection": {"rule": "best_val", **selection}},
    })


def test_the_decision_reads_validation_only(tmp_path):
    features, panel = planted_frames(bars=900, seed=4)
    path, data = write_supervised(tmp_path / "model.pt", features, panel)
    first_test = data.split.bounds["test"][0]
    result = finetune_checkpoint(_cfg(), TrainingData(features, panel, "planted"), path, root=tmp_path / "a")
    # every test-segment return changes (closes from the first test bar on), nothing before it does
    times = panel.index.get_level_values("timestamp")
    rng = np.random.default_rng(0)
    perturbed = panel.copy()
    late = times >= first_test
    perturbed.loc[late, "close"] = perturbed.loc[late, "close"] * np.exp(rng.normal(0, 0.01, int(late.sum())))
    other = finetune_checkpoint(_cfg(), TrainingData(features, perturbed, "planted"), path, root=tmp_path / "b")
    assert other.metrics["test_ppo_mean_net_bps"] != result.metrics["test_ppo_mean_net_bps"]  # the test moved ...
    assert other.selection == result.selection  # ... the decision and its numbers did not
    assert other.lineage.training["selection"] == result.lineage.training["selection"]
    for key in ("selection_kept", "val_gain_bps", "val_gain_low_bps", "val_gain_high_bps"):
        assert np.isfinite(result.metrics[key]) and other.metrics[key] == result.metrics[key]


def test_candidate_last_hands_on_the_last_update(tmp_path):
    features, panel = planted_frames(bars=900, seed=4)
    path, _ = write_supervised(tmp_path / "model.pt", features, panel)
    result = finetune_checkpoint(_cfg(candidate="last"), TrainingData(features, panel, "planted"), path,
                                 root=tmp_path / "last")
    assert result.ppo.best_update == 2 and result.kept  # best_val keeps whatever moved
    assert result.metrics["val_ppo_sharpe_net"] == result.history[-1]["val_sharpe_net"]
