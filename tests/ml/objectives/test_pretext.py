"""Pretext objectives: masks, masked-only reconstruction, augmentations, InfoNCE and its exclusions."""

from __future__ import annotations

import math

import pytest
import torch

from plus_ultra_ml.objectives.pretext import (
    augment,
    drop_time_steps,
    hierarchical_contrastive_loss,
    instance_contrastive_loss,
    jitter,
    masked_reconstruction_loss,
    overlapping_windows,
    scale,
    temporal_contrastive_loss,
    time_mask,
)


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ------------------------------------------------------------------------------------------ masks
@pytest.mark.parametrize("prob, patch_len", [(0.25, 1), (0.5, 4), (0.3, 3)])
def test_time_mask_rate_and_patches(prob, patch_len):
    mask = time_mask(2000, 24, prob, patch_len, generator=gen())
    assert mask.shape == (2000, 24) and mask.dtype == torch.bool
    assert mask.any(dim=1).all(), "every row hides at least one step"
    assert abs(mask.float().mean().item() - prob) < 0.03
    if patch_len > 1:  # whole patches: steps inside one patch are hidden together
        patches = mask[:, : (24 // patch_len) * patch_len].view(2000, -1, patch_len)
        assert (patches.all(dim=-1) | ~patches.any(dim=-1)).all()


def test_time_mask_rejects_bad_probability():
    with pytest.raises(ValueError, match="probability"):
        time_mask(2, 8, 1.0)


def test_reconstruction_loss_counts_masked_positions_only():
    torch.manual_seed(0)
    target = torch.randn(3, 6, 4)
    mask = torch.zeros(3, 6, dtype=torch.bool)
    mask[0, 2] = mask[2, 5] = True
    recon = target.clone()
    recon[~mask] += 100.0  # terrible everywhere that is visible
    assert masked_reconstruction_loss(recon, target, mask).item() == 0.0
    recon[0, 2] += 2.0  # one masked step off by 2 in every feature: mean over 2 masked steps = 4 / 2
    assert masked_reconstruction_loss(recon, target, mask).item() == pytest.approx(2.0)


def test_reconstruction_loss_nothing_masked_is_nan():
    x = torch.randn(2, 3, 2)
    assert math.isnan(masked_reconstruction_loss(x, x, torch.zeros(2, 3, dtype=torch.bool)).item())


# ------------------------------------------------------------------------------------------ augmentations
def test_augmentations_do_what_they_say():
    x = torch.ones(4, 10, 3)
    assert torch.equal(jitter(x, 0.0), x) and torch.equal(scale(x, 0.0), x) and torch.equal(drop_time_steps(x, 0.0), x)
    noisy = jitter(x, 0.5, gen())
    assert 0.4 < (noisy - x).std().item() < 0.6
    scaled = scale(x, 0.3, gen())
    assert torch.allclose(scaled, scaled[:, :1].expand_as(scaled)), "one factor per window and feature, constant in time"
    dropped = drop_time_steps(x, 0.5, gen())
    steps = dropped.sum(dim=-1)  # (B, T): whole steps are 0 or untouched
    assert set(steps.unique().tolist()) <= {0.0, 3.0} and (steps == 0).any()
    assert augment(x, 0.1, 0.1, 0.1, gen(1)).shape == x.shape
    assert torch.equal(augment(x, 0.1, 0.1, 0.1, gen(1)), augment(x, 0.1, 0.1, 0.1, gen(1)))


# ------------------------------------------------------------------------------------------ overlap
OVERLAPS = [
    # name, symbols, starts, ends, pairs that must not be negatives
    ("same symbol overlapping", [0, 0], [0, 5], [9, 14], {(0, 1), (1, 0)}),
    ("same symbol touching at one bar", [0, 0], [0, 9], [9, 18], {(0, 1), (1, 0)}),
    ("same symbol disjoint", [0, 0], [0, 10], [9, 19], set()),
    ("other symbol, same bars", [0, 1], [0, 0], [9, 9], set()),
    ("three windows", [2, 2, 1], [0, 3, 0], [7, 10, 7], {(0, 1), (1, 0)}),
]


@pytest.mark.parametrize("name, symbols, starts, ends, expected", OVERLAPS, ids=[o[0] for o in OVERLAPS])
def test_overlapping_windows(name, symbols, starts, ends, expected):
    mask = overlapping_windows(torch.tensor(symbols), torch.tensor(starts), torch.tensor(ends))
    assert {tuple(ij) for ij in mask.nonzero().tolist()} == expected


def test_excluded_pair_cannot_move_the_anchor_loss():
    """Anchor 0's loss must not depend on window 1 (same symbol, overlapping) but must on window 2."""
    torch.manual_seed(3)
    B, T, D = 3, 5, 8
    z1, z2 = torch.randn(B, T, D), torch.randn(B, T, D)
    exclude = overlapping_windows(torch.tensor([7, 7, 9]), torch.tensor([0, 2, 0]), torch.tensor([4, 6, 4]))
    base = instance_contrastive_loss(z1, z2, 0.5, exclude, reduction="none")  # (T, 2B)
    moved1, moved2 = z1.clone(), z2.clone()
    moved1[1] += 5 * torch.randn(T, D)
    moved2[1] += 5 * torch.randn(T, D)
    after = instance_contrastive_loss(moved1, moved2, 0.5, exclude, reduction="none")
    anchors_of_window0 = [0, B]  # view 1 and view 2 of window 0
    assert torch.allclose(base[:, anchors_of_window0], after[:, anchors_of_window0])
    assert not torch.allclose(base[:, 2], after[:, 2]), "window 2 (other symbol) does see window 1 as a negative"
    # without the exclusion window 1 is a negative of window 0, so moving it changes window 0's loss
    plain = instance_contrastive_loss(z1, z2, 0.5, None, reduction="none")
    plain_after = instance_contrastive_loss(moved1, moved2, 0.5, None, reduction="none")
    assert not torch.allclose(plain[:, 0], plain_after[:, 0])


def test_instance_loss_prefers_matching_views():
    torch.manual_seed(0)
    z = torch.randn(6, 4, 16)
    aligned = instance_contrastive_loss(z, z + 0.01 * torch.randn_like(z), 0.1)
    shuffled = instance_contrastive_loss(z, z[torch.randperm(6)] + 0.01 * torch.randn_like(z), 0.1)
    assert aligned < 0.05 < shuffled
    # chance level: log(2B - 1) when every similarity is equal
    flat = torch.ones(4, 3, 2)
    assert instance_contrastive_loss(flat, flat, 1.0).item() == pytest.approx(math.log(7), rel=1e-5)


def test_temporal_loss_prefers_matching_steps_and_single_step_is_zero():
    torch.manual_seed(0)
    z = torch.randn(2, 8, 16)
    assert temporal_contrastive_loss(z, z + 0.01 * torch.randn_like(z), 0.1) < 0.05
    assert temporal_contrastive_loss(z, z.flip(1), 0.1) > 1.0
    assert temporal_contrastive_loss(z[:, :1], z[:, :1], 0.1).item() == 0.0


def test_hierarchical_loss_is_finite_and_differentiable_for_odd_lengths():
    z1 = torch.randn(4, 7, 8, requires_grad=True)
    z2 = torch.randn(4, 7, 8, requires_grad=True)
    exclude = overlapping_windows(torch.tensor([0, 0, 1, 1]), torch.tensor([0, 3, 0, 20]), torch.tensor([6, 9, 6, 26]))
    loss = hierarchical_contrastive_loss(z1, z2, 0.2, 0.5, exclude)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(z1.grad).all() and z1.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="same shape"):
        hierarchical_contrastive_loss(z1, z2[:, 1:], 0.2)
