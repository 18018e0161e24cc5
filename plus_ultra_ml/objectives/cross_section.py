"""Cross-sectional training losses: compare names at one date, not one name with its own past.

Pure functions on tensors, beside objectives/losses.py. A batch of date-grouped windows
(training/datamodule.py, `train.cross_section`) holds, for a few end dates, the windows of many
names ending at each of them. Every (row, step) cell of such a batch belongs to one *cross-section*:
the cells with the same end date and the same step timestamp (`cross_section_keys`). Inside one
cross-section every name appears once and every value is known at that step's timestamp, so a loss
that compares the cells of a cross-section compares names at one date, causally.

- `per_date_ic`: the mean over cross-sections of the Pearson correlation of a score with the
  realised forward return across names (the per-date IC the report leads with, differentiable).
- `listnet_loss`: ListNet's cross-entropy between the softmax of the returns and the softmax of the
  scores across names (Cao et al. 2007, top-one probabilities), a ranking loss.
- `long_short_weights` / `long_short_pnl`: the dollar-neutral book the scores imply (each
  cross-section's scores demeaned and scaled to gross 1) and its net PnL path per end date, with
  the trading and holding costs of `objectives.pnl.position_pnl` (each name's path starts flat), so
  the existing mean-variance utility or Sharpe can score the portfolio rather than a single name.

Shapes: B rows (windows), T steps; `keys` (B, T) int64 cross-section ids 0..K-1; `dates` (B,)
end-date ids 0..G-1. A cross-section with fewer than `min_names` finite pairs or without spread is
left out; when none is left the loss is NaN (the caller's batch held no cross-section at all).
"""

from __future__ import annotations

import torch
from torch import Tensor

from plus_ultra_ml.config import CostConfig
from plus_ultra_ml.objectives.pnl import position_pnl

EPS = 1e-12
MIN_NAMES = 3  # a correlation across fewer names is noise


def cross_section_keys(times: Tensor, ends: Tensor) -> tuple[Tensor, Tensor]:
    """(B, T) step timestamps and (B,) end timestamps -> (B, T) cross-section ids and (B,) end-date ids.

    Two cells share a cross-section id when their windows end at the same timestamp and the cells'
    own timestamps are equal; ids are dense (0..K-1, 0..G-1) in sorted order.
    """
    _, dates = torch.unique(ends, return_inverse=True)  # (B,)
    pairs = torch.stack([dates.unsqueeze(1).expand_as(times), times], dim=-1).reshape(-1, 2)  # (B*T, 2)
    _, keys = torch.unique(pairs, dim=0, return_inverse=True)
    return keys.reshape(times.shape), dates


def _group_sum(values: Tensor, keys: Tensor, n: int) -> Tensor:
    return torch.zeros(n, dtype=values.dtype, device=values.device).index_add_(0, keys, values)


def _group_mean(values: Tensor, keys: Tensor, n: int, counts: Tensor) -> Tensor:
    return _group_sum(values, keys, n) / counts.clamp_min(1)


def _finite_cells(score: Tensor, target: Tensor, keys: Tensor) -> tuple[Tensor, Tensor, Tensor, int, Tensor] | None:
    """The finite (score, target) cells, flattened, with their keys, the key count n and each key's
    cell count (n,); None when no cell is finite."""
    s, y, k = score.reshape(-1), target.reshape(-1), keys.reshape(-1)
    ok = torch.isfinite(y) & torch.isfinite(s.detach())
    s, y, k = s[ok], y[ok], k[ok]
    if len(k) == 0:
        return None
    n = int(k.max()) + 1
    return s, y, k, n, _group_sum(torch.ones_like(y), k, n)


def per_date_ic(score: Tensor, target: Tensor, keys: Tensor, min_names: int = MIN_NAMES) -> Tensor:
    """Mean over cross-sections of corr(score, target) across names. Any matching shapes.

    score:  a forecast (any units: the correlation is scale-free within a cross-section).
    target: the realised forward return of the same cells; NaN cells are left out.
    keys:   cross-section ids (`cross_section_keys`), same shape.
    """
    cells = _finite_cells(score, target, keys)
    if cells is None:
        return score.sum() * float("nan")
    s, y, k, n, counts = cells
    sc = s - _group_mean(s, k, n, counts)[k]
    yc = y - _group_mean(y, k, n, counts)[k]
    sxy, sxx, syy = (_group_sum(a * b, k, n) for a, b in ((sc, yc), (sc, sc), (yc, yc)))
    usable = (counts >= min_names) & (syy > EPS) & (sxx.detach() > EPS)
    ic = sxy / torch.sqrt(sxx * syy + EPS)
    return torch.where(usable, ic, torch.zeros_like(ic)).sum() / usable.sum()


def _group_log_softmax(values: Tensor, keys: Tensor, n: int) -> Tensor:
    peak = torch.full((n,), -torch.inf, dtype=values.dtype, device=values.device)
    peak = peak.scatter_reduce(0, keys, values.detach(), reduce="amax")
    shifted = values - peak[keys]
    return shifted - torch.log(_group_sum(shifted.exp(), keys, n))[keys]


def listnet_loss(score: Tensor, target: Tensor, keys: Tensor, temperature: float = 1.0,
                 min_names: int = MIN_NAMES) -> Tensor:
    """Mean over cross-sections of -sum softmax(target / temperature) * log softmax(score) across names.

    temperature: in the target's units (a return): small makes the target distribution the arg-max
    name, large makes it uniform. The minimum is not zero (it is the targets' entropy).
    """
    cells = _finite_cells(score, target, keys)
    if cells is None:
        return score.sum() * float("nan")
    s, y, k, n, counts = cells
    p_target = _group_log_softmax(y / temperature, k, n).exp()
    cross_entropy = _group_sum(-p_target * _group_log_softmax(s, k, n), k, n)
    usable = counts >= min_names
    return torch.where(usable, cross_entropy, torch.zeros_like(cross_entropy)).sum() / usable.sum()


def long_short_weights(positions: Tensor, keys: Tensor) -> Tensor:
    """(B, T) scores -> (B, T) dollar-neutral weights: demeaned within each cross-section, gross 1.

    A cross-section of one name (or without spread) gets zero weight.
    """
    flat, k = positions.reshape(-1), keys.reshape(-1)
    n = int(k.max()) + 1
    counts = _group_sum(torch.ones_like(flat), k, n)
    centred = flat - _group_mean(flat, k, n, counts)[k]
    gross = _group_sum(centred.abs(), k, n)
    weights = centred / gross.clamp_min(EPS)[k]
    return weights.reshape(positions.shape)


def long_short_pnl(positions: Tensor, next_returns: Tensor, keys: Tensor, dates: Tensor, costs: CostConfig) -> Tensor:
    """Net PnL (G, T) of the long-short book of each end date along its window's steps.

    positions, next_returns: (B, T) as in objectives/pnl.py (r[t+1] of each decision bar).
    keys (B, T), dates (B,): from `cross_section_keys`. Row b's weight path is booked with its own
    trading and holding costs (starting flat); the book's PnL at step t of date g is the sum over
    the rows of g. A date's book is a contiguous path of T steps, so path losses apply to it.
    """
    weights = long_short_weights(positions, keys)
    net = position_pnl(weights, next_returns, costs)  # (B, T)
    G, T = int(dates.max()) + 1, positions.shape[1]
    return torch.zeros(G, T, dtype=net.dtype, device=net.device).index_add_(0, dates, net)
