"""Mixture of experts: only chosen experts run and learn, compute follows k, balancing loss, dropless."""

from __future__ import annotations

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from plus_ultra_ml.models.layers import MoEFeedForward

D, HIDDEN = 8, 16


def _moe(n_experts: int, top_k: int, seed: int = 0) -> MoEFeedForward:
    torch.manual_seed(seed)
    return MoEFeedForward(D, HIDDEN, n_experts, top_k)


def test_a_tokens_unselected_experts_get_no_gradient_from_it():
    moe = _moe(n_experts=6, top_k=2)
    tokens = torch.randn(10, D)
    _, chosen, _ = moe.route(tokens)
    y, _ = moe(tokens)
    y[3].sum().backward()  # the loss depends on token 3 only
    selected = set(chosen[3].tolist())
    for e, expert in enumerate(moe.experts):
        grads = [p.grad for p in expert.parameters()]
        touched = any(g is not None and g.abs().sum() > 0 for g in grads)
        assert touched == (e in selected), f"expert {e}: selected={e in selected}, has gradient={touched}"
    assert moe.router.weight.grad.abs().sum() > 0  # the router learns through the gates


def test_each_token_is_the_gated_sum_of_its_k_experts_dropless():
    moe = _moe(n_experts=5, top_k=2)
    tokens = torch.randn(64, D)  # far more tokens per expert than any capacity limit would keep
    y, _ = moe(tokens)
    _, chosen, gates = moe.route(tokens)
    dense = torch.stack([expert(tokens) for expert in moe.experts], dim=1)  # (N, E, D) reference only
    expected = (dense.gather(1, chosen[..., None].expand(-1, -1, D)) * gates[..., None]).sum(1)
    assert torch.allclose(y, expected, atol=1e-6)
    assert torch.allclose(gates.sum(-1), torch.ones(64))


def _expert_flops(moe: MoEFeedForward, tokens: torch.Tensor) -> tuple[int, int]:
    with FlopCounterMode(display=False) as counter:
        moe(tokens)
    total = counter.get_total_flops()
    router = 2 * tokens.shape[0] * D * len(moe.experts)
    return total - router, total


@pytest.mark.parametrize("top_k", [1, 2])
def test_expert_compute_follows_k_not_the_number_of_experts(top_k):
    tokens = torch.randn(128, D)
    per_token_expert = 2 * (2 * D * HIDDEN)  # up and down matmuls of one expert
    for n_experts in (4, 16, 64):
        expert_flops, total = _expert_flops(_moe(n_experts, top_k), tokens)
        assert expert_flops == 128 * top_k * per_token_expert
        # the router is the only part that grows with E, and it stays small next to the experts
        assert total - expert_flops == 2 * 128 * D * n_experts


def test_each_expert_runs_once_on_only_its_tokens():
    moe = _moe(n_experts=8, top_k=2)
    rows: list[int] = []
    for expert in moe.experts:
        expert.register_forward_hook(lambda module, args, out: rows.append(args[0].shape[0]))
    moe(torch.randn(100, D))
    assert sum(rows) == 100 * 2  # N * k rows in total, not N * E
    assert len(rows) <= 8


def test_balancing_loss_is_one_for_a_uniform_router_and_grows_when_routing_collapses():
    moe = _moe(n_experts=4, top_k=1)
    tokens = torch.randn(200, D)
    with torch.no_grad():
        moe.router.weight.zero_()  # uniform probabilities
    _, uniform = moe(tokens)
    assert uniform.item() == pytest.approx(1.0, abs=1e-6)
    with torch.no_grad():
        moe.router.weight[0] = 5.0  # with positive inputs, expert 0 wins every token
    _, collapsed = moe(tokens.abs())
    assert collapsed.item() > 3.0  # E * (1 * ~1) when one expert takes everything


def test_the_backbone_reports_a_differentiable_auxiliary_loss(make_net):
    net = make_net("moe_transformer", balance_coef=0.5).train()
    out = net(torch.randn(2, 12, 5))
    assert out.aux_loss.requires_grad and out.aux_loss.item() > 0
    out.aux_loss.backward()
    router = net.backbone.blocks[0].moe.router.weight
    assert router.grad is not None and router.grad.abs().sum() > 0
