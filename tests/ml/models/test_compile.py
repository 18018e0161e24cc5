"""torch.compile (inductor, CPU) gives the eager outputs and gradients for every architecture.

Slow (10-60 s of compilation each on 2 CPU cores). Known limits, not failures: inductor does not
generate code for complex numbers, so the SSM kernel's complex exponentials run eagerly
(hybrid_transformer, omni_mixture, state_space); MoE dispatch reads per-expert counts on the host
(`tolist`), a graph break per MoE layer.
"""

from __future__ import annotations

import pytest
import torch


@pytest.mark.slow
def test_compiled_network_matches_eager(arch, make_net):
    net = make_net(arch).train()
    x, ids = torch.randn(2, 16, 5), torch.tensor([1, 2])
    eager = net(x, ids)
    (eager.forecast.sum() + eager.position.sum() + eager.aux_loss).backward()
    reference = {n: p.grad.clone() for n, p in net.named_parameters() if p.grad is not None}
    net.zero_grad(set_to_none=True)
    compiled = torch.compile(net)(x, ids)
    (compiled.forecast.sum() + compiled.position.sum() + compiled.aux_loss).backward()
    assert torch.allclose(compiled.hidden, eager.hidden, atol=1e-5)
    for name, grad in reference.items():
        got = dict(net.named_parameters())[name].grad
        assert torch.allclose(got, grad, atol=1e-4, rtol=1e-3), name
