"""Causal quantiles of a per-symbol history in O(n log n): one compiled pass with an order-statistic tree.

`causal_quantiles(x, starts, lookback, quantiles)` gives, for every row t of every symbol segment,
the quantiles of that symbol's non-NaN values at rows <= t (expanding, ``lookback = 0``) or in the
last ``lookback`` rows (rolling; NaN rows count towards the window length but not as observations):
the same numbers as pandas' ``groupby(symbol).expanding(min_periods=1).quantile(q)`` (or
``.rolling(lookback, min_periods=1)``) with linear interpolation, which walk a skiplist per row and
grow about n^1.5 on long histories.

How: each segment's values are ranked once (an argsort; ties get distinct ranks, which leaves every
order statistic unchanged). Rolling windows keep a Fenwick tree over the ranks that counts the values
in the window: adding or removing a value is O(log m), the k-th smallest a binary descent, O(log m).
Expanding windows only ever add values, so each quantile keeps a pointer to its order statistic's
rank slot and steps it to the next or previous held slot (see `_expanding_segment`). Either way
the state at row t holds only values at rows <= t: the ranks are a relabelling of the segment's
values, never a way to read them ahead of time.

Linear interpolation matches pandas: with ``nobs`` values, ``h = q * (nobs - 1)``, ``k = floor(h)``;
the quantile is ``v[k]`` when ``h == k``, else ``v[k] + (v[k + 1] - v[k]) * (h - k)``.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

_JIT = {"cache": True, "nogil": True, "error_model": "numpy"}


@njit(**_JIT)
def _add(tree, position, delta):  # Fenwick tree, 1-based positions
    size = tree.shape[0] - 1
    while position <= size:
        tree[position] += delta
        position += position & -position


@njit(**_JIT)
def _kth(tree, k, top_bit):
    """0-based rank slot of the k-th smallest value in the tree (k < number of values held)."""
    size = tree.shape[0] - 1
    position = 0
    remaining = k + 1
    bit = top_bit
    while bit > 0:
        step = position + bit
        if step <= size and tree[step] < remaining:
            position = step
            remaining -= tree[step]
        bit >>= 1
    return position  # 1-based position `position + 1` holds it, i.e. slot `position`


@njit(**_JIT)
def _quantile(tree, ordered, nobs, q, top_bit):
    h = q * (nobs - 1)
    k = int(math.floor(h))
    low = ordered[_kth(tree, k, top_bit)]
    if h == k:
        return low
    high = ordered[_kth(tree, k + 1, top_bit)]
    return low + (high - low) * (h - k)


@njit(**_JIT)
def _ranks(x):
    """(rank of each row among the segment's values, the values in rank order); NaN rank last."""
    m = x.shape[0]
    order = np.argsort(x)
    rank = np.empty(m, np.int64)
    ordered = np.empty(m)
    for i in range(m):
        rank[order[i]] = i
        ordered[i] = x[order[i]]
    return rank, ordered


@njit(**_JIT)
def _rolling_segment(x, lookback, quantiles, out):
    """Quantiles of the last `lookback` rows for every t, into out[t, :]; x: (m,). Fenwick tree."""
    m = x.shape[0]
    rank, ordered = _ranks(x)
    tree = np.zeros(m + 1, np.int32)  # counts <= m; int32 halves the cache footprint
    top_bit = 1
    while top_bit * 2 <= m:
        top_bit *= 2
    nobs = 0
    for t in range(m):
        if not math.isnan(x[t]):
            _add(tree, rank[t] + 1, 1)
            nobs += 1
        if t >= lookback and not math.isnan(x[t - lookback]):
            _add(tree, rank[t - lookback] + 1, -1)
            nobs -= 1
        for j in range(quantiles.shape[0]):
            out[t, j] = _quantile(tree, ordered, nobs, quantiles[j], top_bit) if nobs > 0 else np.nan


@njit(**_JIT)
def _next_held(held, slot):
    slot += 1
    while held[slot] == 0:
        slot += 1
    return slot


@njit(**_JIT)
def _previous_held(held, slot):
    slot -= 1
    while held[slot] == 0:
        slot -= 1
    return slot


@njit(**_JIT)
def _expanding_segment(x, quantiles, out):
    """Quantiles of x[:t + 1] for every t, into out[t, :]; x: (m,).

    Values are only ever added, and each quantile's order index floor(q * (nobs - 1)) moves by at
    most one per row, so every quantile keeps a pointer to the rank slot of its order statistic and
    steps it to the neighbouring held slot (a scan of a byte map, m / nobs slots on average): about
    O(m log m) byte steps in all, far cheaper than a tree descent per row.
    """
    m = x.shape[0]
    nq = quantiles.shape[0]
    rank, ordered = _ranks(x)
    held = np.zeros(m, np.uint8)
    slot = np.full(nq, -1, np.int64)  # rank slot of quantile j's current order statistic
    order = np.zeros(nq, np.int64)  # its order index among the values held
    nobs = 0
    for t in range(m):
        if not math.isnan(x[t]):
            r = rank[t]
            held[r] = 1
            nobs += 1
            for j in range(nq):
                if slot[j] < 0:
                    slot[j] = r
                elif r < slot[j]:
                    order[j] += 1  # a smaller value arrived below the pointer
        for j in range(nq):
            if nobs == 0:
                out[t, j] = np.nan
                continue
            h = quantiles[j] * (nobs - 1)
            k = int(math.floor(h))
            while order[j] < k:
                slot[j] = _next_held(held, slot[j])
                order[j] += 1
            while order[j] > k:
                slot[j] = _previous_held(held, slot[j])
                order[j] -= 1
            low = ordered[slot[j]]
            out[t, j] = low if h == k else low + (ordered[_next_held(held, slot[j])] - low) * (h - k)


@njit(**_JIT)
def _all_segments(x, starts, lookback, quantiles):
    out = np.empty((x.shape[0], quantiles.shape[0]))
    for s in range(starts.shape[0] - 1):
        a, b = starts[s], starts[s + 1]
        if lookback > 0:
            _rolling_segment(x[a:b], lookback, quantiles, out[a:b])
        else:
            _expanding_segment(x[a:b], quantiles, out[a:b])
    return out


def causal_quantiles(x: np.ndarray, starts: np.ndarray, lookback: int | None,
                     quantiles: tuple[float, ...]) -> np.ndarray:
    """Quantiles of each row's causal history within its segment.

    x: (n,) float values, segments contiguous and in time order within each segment.
    starts: (S + 1,) row offsets: segment s is x[starts[s]:starts[s + 1]]; starts[0] = 0, starts[-1] = n.
    lookback: None for expanding windows, else the rolling window length in rows (>= 1).
    Returns (n, len(quantiles)) float64; NaN where the window holds no non-NaN value yet.
    """
    values = np.ascontiguousarray(x, dtype=np.float64)
    bounds = np.ascontiguousarray(starts, dtype=np.int64)
    if bounds.ndim != 1 or bounds.shape[0] < 1 or bounds[0] != 0 or bounds[-1] != values.shape[0] \
            or np.any(np.diff(bounds) < 0):
        raise ValueError(f"starts must rise from 0 to len(x) = {values.shape[0]}; got {bounds[:3]}...{bounds[-3:]}")
    if lookback is not None and lookback < 1:
        raise ValueError(f"lookback must be None (expanding) or >= 1 rows, got {lookback}")
    qs = np.asarray(quantiles, dtype=np.float64)
    if np.any((qs < 0) | (qs > 1)):
        raise ValueError(f"quantiles must lie in [0, 1], got {list(quantiles)}")
    return _all_segments(values, bounds, 0 if lookback is None else int(lookback), qs)
