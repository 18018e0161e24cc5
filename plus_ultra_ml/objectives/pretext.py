"""Self-supervised pretext objectives for a causal sequence backbone.

Two tasks, as pure functions on tensors (the Lightning module in training/lit_modules.py wires them):

- Masked reconstruction (in the spirit of BERT's masked tokens and PatchTST's masked patches):
  hide random time steps, or runs of `patch_len` consecutive steps, and reconstruct the hidden
  feature vectors. The loss is taken on masked positions only, so copying the visible input is
  worth nothing. With a causal backbone the state at a masked bar reads only the past, so the task
  is "fill in this bar's features from its history".
- Contrastive (TS2Vec, Yue et al. 2022): two augmented views of each window (jitter, scaling,
  time masking; the second view also loses a random prefix of its past, TS2Vec's contextual
  consistency for a causal encoder), encoded per time step. The hierarchical loss averages, over
  time scales obtained by max-pooling by 2, an instance-wise InfoNCE (the same bar of the same
  window in the other view is the positive; other windows at that step are negatives) and a
  temporal InfoNCE (other steps of the same window are negatives). Similarities are cosine over a
  temperature (TS2Vec uses raw dot products; normalising keeps the scale fixed on small models).

Windows of one symbol that overlap in time share bars, so they are not negatives of each other:
`overlapping_windows` builds that exclusion mask and the instance loss leaves such pairs out of
its denominator (tests/ml/objectives/test_pretext.py proves an excluded pair cannot move the loss).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


# --------------------------------------------------------------------------------------------
# masked reconstruction
# --------------------------------------------------------------------------------------------
def time_mask(
    batch: int,
    length: int,
    prob: float,
    patch_len: int = 1,
    generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
) -> Tensor:
    """Boolean (B, T) mask, True = hidden. Patches of `patch_len` steps are hidden with probability
    `prob` each (the last patch may be cut short); every row hides at least one step."""
    if not 0 < prob < 1:
        raise ValueError(f"mask probability must be in (0, 1), got {prob}")
    if patch_len < 1 or length < 1:
        raise ValueError(f"patch_len and length must be >= 1, got {patch_len}, {length}")
    n_patches = -(-length // patch_len)
    draws = torch.rand((batch, n_patches), generator=generator, device=device) < prob  # (B, P)
    empty = ~draws.any(dim=1)  # (B,) rows that would hide nothing get one random patch
    forced = torch.randint(0, n_patches, (batch,), generator=generator, device=device)
    draws[torch.arange(batch, device=device), forced] |= empty
    return draws.repeat_interleave(patch_len, dim=1)[:, :length]  # (B, T)


def masked_reconstruction_loss(reconstruction: Tensor, target: Tensor, mask: Tensor) -> Tensor:
    """Mean squared error over the masked time steps (all features); NaN if nothing is masked.

    reconstruction, target: (B, T, F) in scaled-feature units; mask: (B, T) bool, True = hidden.
    """
    if reconstruction.shape != target.shape or mask.shape != target.shape[:2]:
        raise ValueError(
            f"reconstruction {tuple(reconstruction.shape)}, target {tuple(target.shape)} and mask "
            f"{tuple(mask.shape)} must be (B, T, F), (B, T, F), (B, T)"
        )
    error = (reconstruction - target).square().mean(dim=-1)  # (B, T)
    return torch.where(mask, error, torch.zeros_like(error)).sum() / mask.sum()


# --------------------------------------------------------------------------------------------
# augmentations (TS2Vec / TS-TCC style), each (B, T, F) -> (B, T, F)
# --------------------------------------------------------------------------------------------
def jitter(x: Tensor, std: float, generator: torch.Generator | None = None) -> Tensor:
    """x + N(0, std^2) noise on every value."""
    if std == 0:
        return x
    return x + std * torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)


def scale(x: Tensor, std: float, generator: torch.Generator | None = None) -> Tensor:
    """x times a log-normal factor exp(N(0, std^2)) per window and feature (B, 1, F)."""
    if std == 0:
        return x
    B, _, F_ = x.shape
    factor = torch.exp(std * torch.randn((B, 1, F_), generator=generator, device=x.device, dtype=x.dtype))
    return x * factor


def drop_time_steps(x: Tensor, prob: float, generator: torch.Generator | None = None) -> Tensor:
    """Zero whole time steps (all features) with probability `prob` each (0 = the scaled median)."""
    if prob == 0:
        return x
    B, T, _ = x.shape
    keep = torch.rand((B, T, 1), generator=generator, device=x.device) >= prob  # (B, T, 1)
    return x * keep.to(x.dtype)


def augment(
    x: Tensor, jitter_std: float, scale_std: float, mask_prob: float, generator: torch.Generator | None = None
) -> Tensor:
    """One random view: scaling, then jitter, then time masking."""
    return drop_time_steps(jitter(scale(x, scale_std, generator), jitter_std, generator), mask_prob, generator)


# --------------------------------------------------------------------------------------------
# contrastive losses on per-step representations (B, T, D)
# --------------------------------------------------------------------------------------------
def overlapping_windows(symbols: Tensor, starts: Tensor, ends: Tensor) -> Tensor:
    """(B, B) bool: True where windows i != j belong to the same symbol and share at least one bar.

    symbols: (B,) ids; starts, ends: (B,) first and last bar of each window (timestamps or row
    positions, inclusive). Such pairs must not be used as each other's negatives.
    """
    same = symbols[:, None] == symbols[None, :]
    overlap = (starts[:, None] <= ends[None, :]) & (starts[None, :] <= ends[:, None])
    eye = torch.eye(len(symbols), dtype=torch.bool, device=symbols.device)
    return same & overlap & ~eye


def instance_contrastive_loss(
    z1: Tensor, z2: Tensor, temperature: float, exclude: Tensor | None = None, reduction: str = "mean"
) -> Tensor:
    """InfoNCE across windows at each time step: the positive of window i in view 1 is window i in view 2.

    z1, z2: (B, T, D); exclude: (B, B) bool pairs that are not negatives (see `overlapping_windows`).
    reduction "none" returns (T, 2B) per-anchor losses (anchors: view 1 then view 2), else the mean.
    A batch of one window has no negatives: loss 0.
    """
    B, T, _ = z1.shape
    z = F.normalize(torch.cat([z1, z2], dim=0), dim=-1).transpose(0, 1)  # (T, 2B, D)
    logits = z @ z.transpose(1, 2) / temperature  # (T, 2B, 2B)
    blocked = torch.eye(2 * B, dtype=torch.bool, device=z.device)  # an anchor is not its own negative
    if exclude is not None:
        pairs = exclude.to(torch.bool).repeat(2, 2)  # (2B, 2B): the exclusion holds across views too
        blocked = blocked | pairs
    positive = torch.cat([torch.arange(B, 2 * B), torch.arange(0, B)]).to(z.device)  # (2B,)
    blocked[torch.arange(2 * B, device=z.device), positive] = False  # never block the positive
    logits = logits.masked_fill(blocked, float("-inf"))
    log_prob = logits.log_softmax(dim=-1)  # (T, 2B, 2B)
    loss = -log_prob.gather(-1, positive.view(1, -1, 1).expand(T, -1, 1)).squeeze(-1)  # (T, 2B)
    return loss if reduction == "none" else loss.mean()


def temporal_contrastive_loss(z1: Tensor, z2: Tensor, temperature: float) -> Tensor:
    """InfoNCE across time within each window: step t of view 1 matches step t of view 2; every
    other step of the same window (both views) is a negative. z1, z2: (B, T, D); T < 2: 0."""
    B, T, _ = z1.shape
    if T < 2:
        return z1.new_zeros(())
    z = F.normalize(torch.cat([z1, z2], dim=1), dim=-1)  # (B, 2T, D)
    logits = z @ z.transpose(1, 2) / temperature  # (B, 2T, 2T)
    logits = logits.masked_fill(torch.eye(2 * T, dtype=torch.bool, device=z.device), float("-inf"))
    positive = torch.cat([torch.arange(T, 2 * T), torch.arange(0, T)]).to(z.device)  # (2T,)
    log_prob = logits.log_softmax(dim=-1)
    return -log_prob.gather(-1, positive.view(1, -1, 1).expand(B, -1, 1)).mean()


def hierarchical_contrastive_loss(
    z1: Tensor, z2: Tensor, temperature: float, temporal_weight: float = 0.5, exclude: Tensor | None = None
) -> Tensor:
    """TS2Vec's hierarchical loss: at each scale (T, T/2, T/4, ... by max-pooling over time),
    temporal_weight * temporal + (1 - temporal_weight) * instance InfoNCE; mean over scales.
    At the coarsest scale (T = 1) only the instance term applies. z1, z2: (B, T, D)."""
    if z1.shape != z2.shape:
        raise ValueError(f"views must have the same shape, got {tuple(z1.shape)} and {tuple(z2.shape)}")
    total, scales = z1.new_zeros(()), 0
    while True:
        instance = instance_contrastive_loss(z1, z2, temperature, exclude)
        if z1.shape[1] > 1:
            total = total + temporal_weight * temporal_contrastive_loss(z1, z2, temperature)
            total = total + (1 - temporal_weight) * instance
        else:
            total = total + instance
        scales += 1
        if z1.shape[1] == 1:
            break
        z1 = F.max_pool1d(z1.transpose(1, 2), kernel_size=2, ceil_mode=True).transpose(1, 2)  # (B, ceil(T/2), D)
        z2 = F.max_pool1d(z2.transpose(1, 2), kernel_size=2, ceil_mode=True).transpose(1, 2)
    return total / scales
