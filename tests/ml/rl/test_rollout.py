"""GAE against a plain per-episode loop, and rollouts that record what the policy really did."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from plus_ultra_ml.models.heads import squashed_gaussian_log_prob
from plus_ultra_ml.rl.env import EnvConfig, TradingEnv
from plus_ultra_ml.rl.policy import ActorCritic, RowEncoder
from plus_ultra_ml.rl.rollout import collect_rollout, gae

from .conftest import COSTS, planted_data, tiny_net


def _gae_reference(rewards, values, next_values, dones, gamma, lam):
    L, E = rewards.shape
    out = np.zeros((L, E))
    for e in range(E):
        running = 0.0
        for t in reversed(range(L)):
            if dones[t, e]:
                running = 0.0
            delta = rewards[t, e] + gamma * next_values[t, e] - values[t, e]
            running = delta + gamma * lam * running
            out[t, e] = running
    return out


@pytest.mark.parametrize(("gamma", "lam"), [(0.99, 0.95), (0.5, 0.0), (0.8, 1.0)])
def test_gae_matches_a_plain_loop(gamma, lam):
    rng = np.random.default_rng(0)
    L, E = 17, 5
    rewards, values, next_values = (rng.normal(size=(L, E)) for _ in range(3))
    dones = rng.random((L, E)) < 0.15
    got = gae(*(torch.from_numpy(a) for a in (rewards, values, next_values, dones)), gamma, lam)
    np.testing.assert_allclose(got.numpy(), _gae_reference(rewards, values, next_values, dones, gamma, lam),
                               rtol=1e-12, atol=1e-12)


def test_lambda_one_gives_discounted_returns_minus_value():
    rewards = torch.tensor([[1.0], [2.0], [3.0]], dtype=torch.float64)
    values = torch.tensor([[0.5], [0.1], [0.2]], dtype=torch.float64)
    bootstrap = 4.0
    next_values = torch.tensor([[0.1], [0.2], [bootstrap]], dtype=torch.float64)
    adv = gae(rewards, values, next_values, torch.tensor([[False], [False], [True]]), 0.9, 1.0)
    expected0 = 1 + 0.9 * 2 + 0.81 * 3 + 0.729 * bootstrap - 0.5
    assert adv[0, 0].item() == pytest.approx(expected0)


def test_rollout_records_the_actions_their_log_probs_and_the_canonical_pnl():
    data = planted_data()
    policy = ActorCritic(tiny_net(data), EnvConfig(COSTS).state_dim, init_log_std=0.0)
    encoder = RowEncoder.of(policy.net.backbone, data, 256)
    env = TradingEnv(data, "train", EnvConfig(COSTS))
    rollout = collect_rollout(env, policy, encoder, n_envs=6, steps=20, reward_scale=100.0, gamma=0.8,
                              gae_lambda=0.9, generator=torch.Generator().manual_seed(0))
    assert rollout.rows.shape == (20, 6) and rollout.hidden.shape == (20, 6, policy.net.backbone.d_model)
    assert torch.equal(rollout.rows[1:], rollout.rows[:-1] + 1)  # one bar per step
    torch.testing.assert_close(rollout.action, torch.tanh(rollout.pre_tanh))
    with torch.no_grad():
        out = policy(rollout.flat("hidden"), rollout.flat("state"))
        log_prob = squashed_gaussian_log_prob(out.mean, out.log_std, rollout.flat("pre_tanh")[:, None])
    torch.testing.assert_close(log_prob, rollout.flat("log_prob"))  # ratio 1 at the start of the update
    torch.testing.assert_close(rollout.reward.double(), (rollout.net_pnl * 100.0), rtol=1e-6, atol=1e-9)
    # the state's position is the previous step's action (flat at the start)
    assert torch.equal(rollout.state[0, :, 0], torch.zeros(6))
    torch.testing.assert_close(rollout.state[1:, :, 0], rollout.action[:-1].float())
    torch.testing.assert_close(rollout.returns, rollout.advantage + rollout.value)
