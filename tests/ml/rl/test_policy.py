"""The actor-critic: starts exactly as the supervised position head, freezes what the config says,
and its cached backbone states equal fresh ones."""

from __future__ import annotations

import pytest
import torch

from plus_ultra_ml.rl.env import EnvConfig
from plus_ultra_ml.rl.policy import ActorCritic, RowEncoder, backbone_units

from .conftest import COSTS, planted_data, tiny_net

STATE = EnvConfig(COSTS).state_dim


@pytest.fixture(scope="module")
def data():
    return planted_data()


def _trained_head(net):
    with torch.no_grad():  # a position head that is not at its near-zero initialisation
        net.position_head.linear.weight.normal_(0, 1.0)
        net.position_head.linear.bias.fill_(0.3)
    return net


def test_initial_policy_mean_is_the_supervised_position_head(data):
    net = _trained_head(tiny_net(data))
    policy = ActorCritic(net, STATE)
    hidden = torch.randn(64, net.backbone.d_model)
    state = torch.randn(64, STATE)  # W_s starts at zero: the portfolio state changes nothing yet
    with torch.no_grad():
        assert torch.equal(policy.deterministic(hidden, state), net.position_head(hidden[:, None])[:, 0])
        out = policy(hidden, state)
    assert torch.equal(out.value, torch.zeros(64))  # a fresh critic


def test_the_supervised_net_is_not_changed(data):
    net = _trained_head(tiny_net(data))
    before = {k: v.clone() for k, v in net.state_dict().items()}
    policy = ActorCritic(net, STATE, freeze="full", init_log_std=0.7)
    with torch.no_grad():
        for p in policy.parameters():
            p.add_(1.0)
    for key, value in net.state_dict().items():
        assert torch.equal(value, before[key]), key


def test_init_log_std_sets_the_exploration(data):
    policy = ActorCritic(tiny_net(data), STATE, init_log_std=-1.0)
    assert policy.std() == pytest.approx(torch.exp(torch.tensor(-1.0)).item())


@pytest.mark.parametrize("freeze", ["frozen", "partial", "full"])
def test_freeze_modes_choose_what_trains(data, freeze):
    policy = ActorCritic(tiny_net(data), STATE, freeze=freeze, partial_units=1)
    backbone = dict(policy.net.backbone.named_parameters())
    trainable = {name for name, p in backbone.items() if p.requires_grad}
    units = backbone_units(policy.net.backbone)
    last = {name for name, p in backbone.items() if any(p is q for q in units[-1].parameters())}
    if freeze == "frozen":
        assert trainable == set() and not policy.backbone_trains
    elif freeze == "partial":
        assert trainable == last and 0 < len(trainable) < len(backbone)
    else:
        assert trainable == set(backbone)
    heads = [policy.net.policy_head, policy.net.value_head, policy.state_proj]
    assert all(p.requires_grad for m in heads for p in m.parameters())
    assert not any(p.requires_grad for p in policy.net.position_head.parameters())  # the reference stays put
    assert not any(p.requires_grad for p in policy.net.forecast_head.parameters())


def test_a_gradient_reaches_every_trainable_weight_in_full_mode(data):
    policy = ActorCritic(_trained_head(tiny_net(data)), STATE, freeze="full")
    rows = torch.from_numpy(data.ends["train"][:16])
    encoder = RowEncoder.of(policy.net.backbone, data, 8)
    hidden = encoder(rows, grad=True)
    out = policy(hidden, torch.randn(16, STATE))
    (out.mean.sum() + out.value.sum() + out.log_std.sum()).backward()
    missing = [name for name, p in policy.named_parameters()
               if p.requires_grad and (p.grad is None or not p.grad.abs().sum())]
    assert missing == []


def test_backbone_runs_in_eval_mode_even_while_training(data):
    policy = ActorCritic(tiny_net(data), STATE, freeze="full")
    policy.train()
    assert policy.training and not policy.net.training and not policy.net.backbone.training


def test_cached_states_equal_fresh_ones(data):
    policy = ActorCritic(tiny_net(data), STATE, freeze="frozen")
    cached = RowEncoder.of(policy.net.backbone, data, 7)
    rows = torch.from_numpy(data.ends["train"][[5, 9, 5, 200, 31]]).reshape(1, 5)
    first = cached(rows)
    again = cached(rows)
    assert cached.encoded_windows == 4 and cached.cached_rows == 4  # each distinct window encoded once
    fresh = RowEncoder.of(policy.net.backbone, data, 7)
    fresh_states = fresh(rows, grad=True).detach()
    assert first.shape == (1, 5, policy.net.backbone.d_model)
    torch.testing.assert_close(first, fresh_states)
    assert torch.equal(first, again)
