"""Every architecture: causal, every parameter trained, checkpointing exact, bf16, symbols, shapes."""

from __future__ import annotations

import pytest
import torch

from plus_ultra_ml.profiling import saved_activation_bytes

F = 5


def _batch(B: int = 2, T: int = 24, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(B, T, F, generator=g), torch.arange(1, B + 1) % 4


def _all_outputs(net, x, ids) -> torch.Tensor:
    out = net(x, ids)
    return torch.cat([out.hidden, out.forecast, out.position[..., None]], dim=-1)  # (B, T, D + H + 1)


def test_outputs_have_the_documented_shapes(arch, make_net):
    net = make_net(arch, quantiles=(0.1, 0.5, 0.9)).eval()
    x, ids = _batch(B=3, T=20)
    out = net(x, ids)
    D = net.backbone.d_model
    assert out.hidden.shape == (3, 20, D)
    assert out.forecast.shape == (3, 20, 3)
    assert out.quantiles.shape == (3, 20, 3, 3)
    assert out.position.shape == (3, 20)
    assert out.aux_loss.shape == ()
    assert torch.isfinite(out.hidden).all()


@pytest.mark.parametrize("symbol_dim", [0, 4])
def test_outputs_up_to_t_ignore_inputs_after_t(arch, make_net, symbol_dim):
    net = make_net(arch, symbol_dim=symbol_dim).eval()
    x, ids = _batch(T=24)
    base = _all_outputs(net, x, ids)
    g = torch.Generator().manual_seed(1)
    for t in (0, 3, 4, 11, 22):
        moved = x.clone()
        moved[:, t + 1 :] += 3 * torch.randn(moved[:, t + 1 :].shape, generator=g)
        out = _all_outputs(net, moved, ids)
        past = (out[:, : t + 1] - base[:, : t + 1]).abs().max().item()
        assert past < 1e-5, f"{arch}: output at bars <= {t} moved by {past:.2e} when only later bars changed"
        # The check has teeth: the perturbation does reach the later outputs.
        assert (out[:, t + 1 :] - base[:, t + 1 :]).abs().max() > 1e-3


def test_every_parameter_receives_a_gradient(arch, make_net):
    net = make_net(arch).train()
    x, ids = _batch(B=4, T=16)
    out = net(x, ids)
    mean, log_std = net.policy(out.hidden)
    loss = (out.forecast.square().mean() + out.position.mean() + out.aux_loss
            + mean.mean() + log_std.mean() + net.value(out.hidden).mean())
    loss.backward()
    missing = [n for n, p in net.named_parameters() if p.grad is None or p.grad.abs().sum() == 0]
    assert not missing, f"{arch}: no gradient reaches {missing}"


def test_gradient_checkpointing_gives_the_same_gradients(arch, make_net):
    grads, saved = {}, {}
    for enabled in (False, True):
        net = make_net(arch, seed=3, dropout=0.1, symbol_dropout=0.3, grad_checkpoint=enabled).train()
        x, ids = _batch(B=3, T=16, seed=2)
        saved[enabled] = saved_activation_bytes(net, x, ids, torch.float32)
        torch.manual_seed(11)  # same dropout masks in both runs (checkpoint replays the RNG state)
        out = net(x, ids)
        (out.forecast.square().mean() + out.position.mean() + out.aux_loss).backward()
        grads[enabled] = {n: p.grad for n, p in net.named_parameters() if p.grad is not None}
    backbone = {n for n in grads[False] if n.startswith("backbone.")}
    assert backbone and backbone <= set(grads[True]), "checkpointing lost gradients of some parameters"
    for name, reference in grads[False].items():
        assert torch.allclose(grads[True][name], reference, rtol=1e-4, atol=1e-6), f"{arch}: {name} differs"
    assert saved[True] < saved[False], "checkpointing did not reduce the activations kept for backward"


def test_bf16_autocast_runs_on_cpu_and_stays_close_to_float32(arch, make_net):
    net = make_net(arch).train()
    x, ids = _batch(B=2, T=16)
    reference = net(x, ids).hidden.detach()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = net(x, ids)
        loss = out.forecast.float().square().mean() + out.position.float().mean() + out.aux_loss
    loss.backward()
    assert torch.isfinite(out.hidden.float()).all()
    assert all(torch.isfinite(p.grad).all() for p in net.parameters() if p.grad is not None)
    relative = (out.hidden.float() - reference).norm() / reference.norm()
    assert relative < 0.05, f"{arch}: bf16 hidden states differ from float32 by {relative:.3f} (relative)"


def test_symbol_identity_reaches_the_output_and_none_means_unknown(arch, make_net):
    net = make_net(arch).eval()
    x, _ = _batch(B=2, T=12)
    first = net(x, torch.tensor([1, 1])).hidden
    second = net(x, torch.tensor([2, 2])).hidden
    assert (first - second).abs().max() > 1e-6
    assert torch.equal(net(x, None).hidden, net(x, torch.tensor([0, 0])).hidden)


def test_a_window_with_the_wrong_feature_count_is_refused(arch, make_net):
    net = make_net(arch)
    with pytest.raises(ValueError, match="built for 5 features was given 6"):
        net(torch.randn(2, 8, 6))
