"""Target weights of one rebalance bar from that bar's scores: the rank rules of the portfolio room.

Pure functions of one cross-section (N names): scores (N,) with NaN where a name is not listed or has
no score. Nothing here looks at another bar; `construct.py` walks the bars and applies the limits.

- `long_short_target`: dollar-neutral. weighting "rank": w_i proportional to the centred rank of
  the score (rank_i - mean rank, ties averaged), so the best name is the most long and the worst the
  most short; "topk": the k best names long and the k worst short, equal weights. Longs sum to
  gross/2 and shorts to -gross/2 (per group, in proportion to the group's share of the raw weights
  when sector neutral), each |w_i| capped at `max_weight` by water-filling inside its side.
- `topk_dropout`: the long-only book in the manner of Qlib's TopkDropoutStrategy (our own code): hold
  k names; at each rebalance rank the held names together with the best candidates not held, sell
  the held names that fall among the m worst of that combined list (m = `max_replace`, or fewer when
  fewer candidates are left once the empty places are filled), and buy the best candidates in their place (and to refill up to k). Every
  name bought then ranks above every name sold. Equal weights 1 / (names held).
"""

from __future__ import annotations

import numpy as np


def water_fill(raw: np.ndarray, total: float, cap: float) -> np.ndarray:
    """Non-negative weights w_i = min(cap, c raw_i) summing to `total` (raw >= 0, one side of a book).

    The scale c is found by fixing the capped names at `cap` and rescaling the rest until none new is
    capped (at most len(raw) rounds). When len(raw) * cap < total the cap wins: every name gets cap.
    """
    w = np.zeros_like(raw, dtype=np.float64)
    live = raw > 0
    if not live.any() or total <= 0:
        return w
    if live.sum() * cap <= total:
        w[live] = cap
        return w
    capped = np.zeros_like(live)
    for _ in range(int(live.sum()) + 1):
        free = live & ~capped
        scale = (total - cap * capped.sum()) / raw[free].sum()
        newly = free & (raw * scale > cap)
        if not newly.any():
            break
        capped |= newly
    w[capped] = cap
    w[free] = raw[free] * scale
    return w


def average_ranks(values: np.ndarray) -> np.ndarray:
    """Ranks 1..n of finite values, ties given their average rank (scipy's rankdata 'average', without its
    per-call overhead, which dominated a 500-name sector-neutral walk)."""
    order = np.argsort(values, kind="stable")
    ordered = values[order]
    starts = np.concatenate([[0], np.flatnonzero(ordered[1:] != ordered[:-1]) + 1])  # first index of each tie run
    ends = np.concatenate([starts[1:], [len(values)]])
    ranks = np.empty(len(values))
    ranks[order] = np.repeat((starts + 1 + ends) / 2.0, ends - starts)  # mean of ranks starts+1 .. ends
    return ranks


def _raw_long_short(scores: np.ndarray, weighting: str, k: int) -> np.ndarray:
    """Signed raw weights summing to 0 over the finite scores of one group (NaN elsewhere -> 0)."""
    raw = np.zeros(len(scores))
    listed = np.flatnonzero(np.isfinite(scores))
    n = len(listed)
    if n < 2:
        return raw
    if weighting == "rank":
        ranks = average_ranks(scores[listed])  # 1..n, ties averaged
        raw[listed] = ranks - ranks.mean()
        return raw
    m = min(k, n // 2)
    order = listed[np.argsort(scores[listed], kind="stable")]  # ascending score
    raw[order[-m:]] = 1.0 / m
    raw[order[:m]] = -1.0 / m
    return raw


def long_short_target(scores: np.ndarray, *, weighting: str, k: int, gross: float, max_weight: float,
                      groups: np.ndarray | None = None) -> np.ndarray:
    """Dollar-neutral weights (N,) of one bar: sum 0 (and 0 within every group), sum |w| = gross.

    scores (N,): NaN = not listed (weight 0). groups (N,) integer codes or None (one group); with
    groups, each group is ranked on its own (its topk k is k times its share of the listed names, at
    least 1) and holds a share of the gross proportional to its raw long weight. The gross falls short
    of `gross` only where the cap makes it unreachable with the names present (too few names).
    """
    scores = np.asarray(scores, dtype=np.float64)
    codes = np.zeros(len(scores), dtype=np.int64) if groups is None else np.asarray(groups)
    listed = np.isfinite(scores)
    raw = np.zeros(len(scores))
    n_listed = int(listed.sum())
    members = [np.flatnonzero(codes == g) for g in np.unique(codes[listed])] if n_listed else []
    for idx in members:
        group_k = k if groups is None else max(1, int(round(k * np.isfinite(scores[idx]).sum() / n_listed)))
        raw[idx] = _raw_long_short(scores[idx], weighting, group_k)
    longs = raw.clip(min=0.0)
    total_long = longs.sum()
    w = np.zeros(len(scores))
    if total_long <= 0:
        return w
    for idx in members:
        side_total = gross / 2 * longs[idx].sum() / total_long  # the group's share of each side
        n_long, n_short = int((raw[idx] > 0).sum()), int((raw[idx] < 0).sum())
        side_total = min(side_total, n_long * max_weight, n_short * max_weight)  # both sides reachable
        w[idx] = water_fill(longs[idx], side_total, max_weight) - water_fill((-raw[idx]).clip(min=0.0),
                                                                             side_total, max_weight)
    return w


def topk_dropout(scores: np.ndarray, held: np.ndarray, *, k: int, max_replace: int) -> np.ndarray:
    """Boolean (N,) of the names to hold after one rebalance (see the module doc).

    scores (N,): NaN = not listed. held (N,) bool: the names held before. A held name that is no longer
    listed is sold whatever `max_replace` says (it cannot be held) and its place refilled; apart from
    those, at most `max_replace` held names are replaced.
    """
    scores = np.asarray(scores, dtype=np.float64)
    listed = np.isfinite(scores)
    keep = held & listed
    n_held = int(keep.sum())
    candidates = np.flatnonzero(listed & ~keep)
    candidates = candidates[np.argsort(-scores[candidates], kind="stable")]
    if n_held == 0:  # nothing held: buy the best k
        out = np.zeros(len(scores), dtype=bool)
        out[candidates[:k]] = True
        return out
    best = candidates[: max(0, max_replace + k - n_held)]
    combined = np.concatenate([np.flatnonzero(keep), best])
    combined = combined[np.argsort(-scores[combined], kind="stable")]  # best first
    refill = max(0, k - n_held)  # empty places are filled first, with no sale
    swaps = max(0, min(max_replace, len(best) - refill))  # never sell without a better name to buy in its place
    worst = set(combined[len(combined) - swaps:].tolist()) if swaps > 0 else set()
    sell = [i for i in np.flatnonzero(keep) if i in worst]
    out = keep.copy()
    out[sell] = False
    buy = best[: len(sell) + refill]
    out[buy] = True
    return out
