"""TFT: interpretable attention and variable-selection weights, and the fused path agrees with them."""

from __future__ import annotations

import torch

from plus_ultra_ml.models.temporal_fusion import TemporalFusionOutput


def test_attention_weights_are_causal_distributions_and_match_the_fused_path(make_net):
    net = make_net("temporal_fusion", n_attention_layers=2).eval()
    x, ids = torch.randn(3, 10, 5), torch.tensor([1, 2, 0])
    explained = net.backbone.interpret(x, ids)
    assert isinstance(explained, TemporalFusionOutput)
    attention = explained.attention  # (B, L, T, T)
    assert attention.shape == (3, 2, 10, 10)
    assert torch.allclose(attention.sum(-1), torch.ones(3, 2, 10), atol=1e-5)
    assert (attention.triu(diagonal=1) == 0).all(), "a bar attends to a later bar"
    # The explicit-softmax path (weights returned) and the fused SDPA path give the same states.
    assert torch.allclose(explained.hidden, net.backbone(x, ids), atol=1e-5)


def test_variable_selection_weights_are_per_bar_distributions_over_features(make_net):
    net = make_net("temporal_fusion").eval()
    weights = net.backbone.interpret(torch.randn(2, 7, 5)).variable_weights
    assert weights.shape == (2, 7, 5)
    assert (weights >= 0).all()
    assert torch.allclose(weights.sum(-1), torch.ones(2, 7), atol=1e-5)


def test_variable_selection_learns_to_weight_the_informative_feature(make_net):
    """Target = feature 2 at the same bar: after a short fit, feature 2 carries the most weight."""
    net = make_net("temporal_fusion", seed=0)
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    g = torch.Generator().manual_seed(0)
    for _ in range(60):
        x = torch.randn(32, 8, 5, generator=g)
        loss = (net(x).forecast[..., 0] - x[..., 2]).square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    weights = net.eval().backbone.interpret(torch.randn(64, 8, 5, generator=g)).variable_weights
    mean = weights.mean(dim=(0, 1))  # (F,)
    assert mean.argmax().item() == 2, mean
