"""Shared blocks: the SSM kernel is the recurrence, rotary is relative, convolutions and masks are causal."""

from __future__ import annotations

import pytest
import torch

from plus_ultra_ml.models.layers import (
    DiagonalSSM,
    DilatedCausalConv,
    GatedResidualNetwork,
    InputEmbedding,
    InputSpec,
    RotaryEmbedding,
    apply_rotary,
)
from plus_ultra_ml.models.omni_mixture import coarse_visibility


def _naive_recurrence(ssm: DiagonalSSM, u: torch.Tensor) -> torch.Tensor:
    """x_k = A_bar x_{k-1} + B_bar u_k, y_k = 2 Re(C x_k) + D u_k, one step at a time, float64."""
    a_bar, b_bar, c = (t.detach().to(torch.complex128) for t in ssm.discretised())
    B, T, C = u.shape
    u64 = u.double()
    state = torch.zeros(B, C, a_bar.shape[1], dtype=torch.complex128)
    ys = []
    for k in range(T):
        state = a_bar * state + b_bar * u64[:, k, :, None]
        ys.append(2 * (c * state).sum(-1).real + ssm.skip.detach().double() * u64[:, k])
    return torch.stack(ys, dim=1)


def test_ssm_fft_convolution_equals_the_step_by_step_recurrence():
    torch.manual_seed(0)
    ssm = DiagonalSSM(channels=3, d_state=6, dt_min=1e-3, dt_max=0.5)
    with torch.no_grad():  # move away from the initialisation so the test is not about one A
        ssm.log_neg_re.add_(0.3 * torch.randn_like(ssm.log_neg_re))
        ssm.skip.copy_(torch.randn(3))
    u = torch.randn(2, 50, 3)
    expected = _naive_recurrence(ssm, u)
    got = ssm(u).double()
    assert torch.allclose(got, expected, atol=1e-4, rtol=1e-4), (got - expected).abs().max()


def test_ssm_kernel_spans_the_whole_window_not_a_short_filter():
    torch.manual_seed(0)
    ssm = DiagonalSSM(channels=8, d_state=16)  # default dt range: slow channels remember long
    kernel = ssm.kernel(512).detach()  # (C, L)
    tail = kernel[:, 256:].abs().amax(dim=1)
    assert (tail > 1e-3).any(), "no channel responds to inputs 256+ bars back"
    # and the response decays: a stable system (Re(A) < 0)
    assert kernel[:, -16:].abs().mean() < kernel[:, :16].abs().mean()


def test_rotary_scores_depend_only_on_relative_position():
    rotary = RotaryEmbedding(head_dim=8)
    q, k = torch.randn(1, 1, 1, 8), torch.randn(1, 1, 1, 8)

    def score(m: int, n: int) -> torch.Tensor:
        cos_m, sin_m = rotary(torch.tensor([m]))
        cos_n, sin_n = rotary(torch.tensor([n]))
        return (apply_rotary(q, cos_m, sin_m) * apply_rotary(k, cos_n, sin_n)).sum()

    assert torch.allclose(score(7, 3), score(27, 23), atol=1e-5)
    assert not torch.allclose(score(7, 3), score(7, 5), atol=1e-3)


def test_dilated_conv_reads_exactly_its_taps():
    conv = DilatedCausalConv(d_model=1, kernel_size=3, dilation=4)
    T = 20
    x = torch.zeros(1, T, 1, requires_grad=True)
    conv(x)[0, 15, 0].backward()
    reached = set(torch.nonzero(x.grad[0, :, 0]).flatten().tolist())
    assert reached <= {15, 11, 7} and 15 in reached


def test_causal_patch_embedding_reads_the_last_p_bars():
    embed = InputEmbedding(InputSpec(n_features=2), d_model=4, patch_len=3)
    x = torch.zeros(1, 10, 2, requires_grad=True)
    embed(x, None)[0, 6].sum().backward()
    reached = set(torch.nonzero(x.grad[0].abs().sum(-1)).flatten().tolist())
    assert reached == {4, 5, 6}


@pytest.mark.parametrize(
    ("t", "visible_blocks"),
    [(0, []), (2, []), (3, [0]), (6, [0]), (7, [0, 1]), (9, [0, 1])],  # pool 4: blocks end at 3, 7, (11)
)
def test_coarse_tokens_are_visible_only_once_their_block_has_closed(t, visible_blocks):
    mask = coarse_visibility(T=10, pool=4)  # (T, 1 + n): null token, then blocks 0, 1, 2
    assert mask.shape == (10, 4)
    assert mask[t, 0]  # the null token is always readable
    assert torch.nonzero(mask[t, 1:]).flatten().tolist() == visible_blocks


def test_grn_context_changes_the_output_and_skip_keeps_width():
    grn = GatedResidualNetwork(d_in=6, d_hidden=8, d_out=4, d_context=3)
    a = torch.randn(2, 5, 6)
    out0 = grn(a, torch.zeros(2, 1, 3))
    out1 = grn(a, torch.ones(2, 1, 3))
    assert out0.shape == (2, 5, 4)
    assert not torch.allclose(out0, out1)

