"""PPO: learns a planted signal to >= 80% of the oracle, is reproducible, keeps the best policy by
validation net Sharpe, stops on KL, and reports a collapsed policy."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from plus_ultra_ml.rl.env import EnvConfig
from plus_ultra_ml.rl.evaluate import (
    SegmentPositions,
    collapse_report,
    head_positions,
    policy_positions,
    portfolio_pnl,
    score_positions,
)
from plus_ultra_ml.rl.policy import ActorCritic, RowEncoder
from plus_ultra_ml.rl.ppo import finetune

from .conftest import COSTS, fast_rl, planted_data, tiny_net


@pytest.fixture(scope="module")
def data():
    return planted_data()


def _oracle(data, segment="val"):
    """sign(lead[t]) (unscaled): the position that knows the planted rule."""
    rows = np.sort(data.ends[segment])
    lead = data.feature_names.index("lead")
    raw = data.features[rows, lead] * data.scaler.scale[lead] + data.scaler.center[lead]
    return score_positions(SegmentPositions(rows, np.sign(raw)), data, COSTS)


def test_ppo_reaches_80_percent_of_the_oracle_reward_on_a_planted_market(data):
    rl = fast_rl(updates=15, n_envs=32, epochs=4, lr=1e-2, gamma=0.5, gae_lambda=0.9, init_log_std=0.0,
                 freeze="full", backbone_lr_ratio=1.0)
    result = finetune(tiny_net(data), data, rl, COSTS, seed=0)
    oracle = _oracle(data)["mean_net_bps"]
    start, final = result.history[0].val_mean_net_bps, result.history[-1].val_mean_net_bps
    assert oracle > 5.0  # the planted edge is worth having after costs
    assert start < 0.1 * oracle  # an untrained head does not know the rule ...
    assert final >= 0.8 * oracle, (final, oracle)  # ... PPO learns it from rewards alone
    assert result.improved and not result.collapse.collapsed


def test_same_seed_same_result_other_seed_other_result(data):
    rl = fast_rl(updates=2)
    a = finetune(tiny_net(data), data, rl, COSTS, seed=11)
    b = finetune(tiny_net(data), data, rl, COSTS, seed=11)
    c = finetune(tiny_net(data), data, rl, COSTS, seed=12)
    strip = lambda r: [{k: v for k, v in x.to_dict().items() if k != "wall_s"} for x in r.history]  # noqa: E731
    np.testing.assert_equal(strip(a), strip(b))  # NaN (update 0's losses) equals NaN here
    for key, value in a.policy.state_dict().items():
        assert torch.equal(value, b.policy.state_dict()[key]), key
    assert [r.reward_bps for r in a.history[1:]] != [r.reward_bps for r in c.history[1:]]


def test_update_zero_is_the_supervised_head_and_the_best_policy_is_kept(data):
    rl = fast_rl(updates=4, lr=3e-3, selection={"candidate": "best"})  # the default candidate is the last update
    result = finetune(tiny_net(data), data, rl, COSTS, seed=1)
    sharpes = [r.val_sharpe_net for r in result.history]
    # same function as the supervised head; float32 kernels of (B, D) and (B, 1, D) inputs may differ in the last bit
    assert sharpes[0] == pytest.approx(result.validation["supervised"]["sharpe_net"], rel=1e-6)
    assert result.best_update == int(np.nanargmax(sharpes))
    assert result.validation["ppo"]["sharpe_net"] == max(sharpes)
    # the returned policy is the best one: re-scoring it gives the recorded number
    policy = result.policy
    encoder = RowEncoder.of(policy.net.backbone, data, 512)
    again = score_positions(policy_positions(policy, encoder, data, "val", EnvConfig(COSTS)), data, COSTS)
    assert again["sharpe_net"] == pytest.approx(max(sharpes), abs=1e-9)
    assert math.isfinite(result.validation["buy_and_hold"]["sharpe_net"])


def test_the_policys_validation_pnl_is_the_envs_pnl(data):
    """The scorer (pandas + numba) and the environment (torch, bar by bar) count the same PnL."""
    policy = ActorCritic(tiny_net(data), EnvConfig(COSTS).state_dim)
    encoder = RowEncoder.of(policy.net.backbone, data, 512)
    positions = policy_positions(policy, encoder, data, "val", EnvConfig(COSTS))
    head = head_positions(policy, encoder, data, "val")
    np.testing.assert_array_equal(positions.rows, head.rows)
    np.testing.assert_allclose(positions.position, head.position, atol=1e-6)  # W_s = 0: same as the head
    pnl = portfolio_pnl(positions, data, COSTS)
    assert len(pnl) == len(np.unique(data.timestamps[data.ends["val"]]))


def test_kl_early_stop(data):
    rl = fast_rl(updates=2, epochs=10, lr=5e-2, target_kl=1e-6, anneal_lr=False)
    result = finetune(tiny_net(data), data, rl, COSTS, seed=0)
    assert all(r.early_stopped and r.epochs_run < 10 for r in result.history[1:])


def test_collapse_guard_reports_constant_positions(data):
    rows = np.sort(data.ends["val"])
    report = collapse_report(SegmentPositions(rows, np.full(len(rows), 0.42)), tolerance=1e-3)
    assert report.collapsed and report.mean == pytest.approx(0.42) and "0.42" in report.message
    moving = collapse_report(SegmentPositions(rows, np.sign(np.sin(rows / 7.0))), tolerance=1e-3)
    assert not moving.collapsed


def test_finetune_flags_a_policy_that_never_moves(data):
    net = tiny_net(data)
    with torch.no_grad():
        net.position_head.linear.weight.zero_()
        net.position_head.linear.bias.fill_(2.0)  # always ~ +0.96
    result = finetune(net, data, fast_rl(updates=1, lr=1e-9), COSTS, seed=0)
    assert result.collapse.collapsed and result.metrics()["collapsed"] == 1.0


def test_finetune_does_not_touch_the_supervised_net(data):
    net = tiny_net(data)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    finetune(net, data, fast_rl(updates=1, freeze="full"), COSTS, seed=0)
    assert all(torch.equal(v, before[k]) for k, v in net.state_dict().items())


def test_threads_setting_is_restored(data):
    before = torch.get_num_threads()
    finetune(tiny_net(data), data, fast_rl(updates=1, threads=2), COSTS, seed=0)
    assert torch.get_num_threads() == before


@pytest.mark.parametrize("freeze", ["frozen", "partial", "full"])
def test_only_the_configured_weights_move(data, freeze):
    from plus_ultra_ml.rl.policy import backbone_units

    net = tiny_net(data)
    result = finetune(net, data, fast_rl(updates=2, freeze=freeze, partial_units=1, lr=1e-2, include_initial=False),
                      COSTS, seed=0)
    before, after = net.backbone, result.policy.net.backbone
    last = {id(p) for p in backbone_units(after)[-1].parameters()}
    moved = {name for (name, p), q in zip(after.named_parameters(), before.parameters()) if not torch.equal(p, q)}
    in_last = {name for name, p in after.named_parameters() if id(p) in last}
    if freeze == "frozen":
        assert moved == set()
    elif freeze == "partial":
        assert moved and moved <= in_last
    else:
        assert moved - in_last  # weights below the last unit train too
    assert not torch.equal(result.policy.net.policy_head.mean.weight, net.position_head.linear.weight)
    assert torch.equal(result.policy.net.position_head.linear.weight, net.position_head.linear.weight)


@pytest.mark.parametrize("freeze", ["frozen", "partial"])
def test_states_handed_to_ppo_are_reused_only_while_the_backbone_keeps_their_weights(data, freeze):
    """PPO given the supervised net's states of every bar: frozen, it encodes nothing again; partial, the
    states go with the first update, so every recorded score is the returned policy's own."""
    from plus_ultra_ml.rl.ppo import segment_scores

    net = tiny_net(data)
    given = RowEncoder.of(net.backbone, data, 512)
    given(torch.from_numpy(np.concatenate([data.ends[s] for s in ("train", "val", "test")])))
    rl = fast_rl(updates=2, freeze=freeze, partial_units=1, lr=1e-2, include_initial=False,
                 selection={"candidate": "last"})
    result = finetune(net, data, rl, COSTS, seed=0, encoder=given)
    moved = any(not torch.equal(p, q) for p, q in zip(result.policy.net.backbone.parameters(),
                                                       net.backbone.parameters()))
    assert moved == (freeze == "partial")
    fresh = RowEncoder.of(result.policy.net.backbone, data, 512)
    val = policy_positions(result.policy, fresh, data, "val", EnvConfig(COSTS))
    np.testing.assert_allclose(result.val_positions.position, val.position, atol=1e-6)
    assert score_positions(val, data, COSTS)["sharpe_net"] == pytest.approx(result.validation["ppo"]["sharpe_net"],
                                                                             abs=1e-6)
    test, _ = segment_scores(result.policy, data, "test", rl, COSTS, result.encoder)
    np.testing.assert_allclose(test.position, policy_positions(result.policy, fresh, data, "test",
                                                                 EnvConfig(COSTS)).position, atol=1e-6)
    if freeze == "frozen":
        assert result.encoder.encoded_windows == 0  # every state came from the supervised net's pass
    else:
        assert result.encoder.encoded_windows > 0
