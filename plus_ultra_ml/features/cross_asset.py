"""Cross-asset family: the market at bar t, seen from each symbol.

Combines symbols only at the same timestamp t, each from its own causal feature at t (never a
later bar). A value is defined on the rows where the symbol's own input is defined, so every
symbol keeps its own warm-up; market statistics use the symbols defined at t.

- mkt_ret_k: equal-weighted mean of logret_k across symbols at t.
- xs_disp_1: cross-sectional standard deviation (population) of logret_1 at t; needs 2 symbols.
- xs_rank_k: the symbol's percentile rank of logret_k among symbols at t, (rank - 1) / (n - 1)
  in [0, 1], ties averaged; needs 2 symbols defined at t.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from plus_ultra_ml.features.registry import FeatureSpec, PanelGroups

NAN = np.nan
_JIT = {"cache": True, "nogil": True, "error_model": "numpy"}


@njit(**_JIT)
def _xs_mean_std(x, by_time, time_starts, want_std, min_count):
    out = np.full(x.shape[0], NAN)
    for k in range(time_starts.shape[0] - 1):
        lo, hi = time_starts[k], time_starts[k + 1]
        total = 0.0
        count = 0
        for i in range(lo, hi):
            v = x[by_time[i]]
            if not math.isnan(v):
                total += v
                count += 1
        if count < min_count:
            continue
        mean = total / count
        value = mean
        if want_std:
            ss = 0.0
            for i in range(lo, hi):
                v = x[by_time[i]]
                if not math.isnan(v):
                    ss += (v - mean) * (v - mean)
            value = math.sqrt(ss / count)
        for i in range(lo, hi):
            row = by_time[i]
            if not math.isnan(x[row]):
                out[row] = value
    return out


@njit(**_JIT)
def _xs_rank(x, by_time, time_starts):
    out = np.full(x.shape[0], NAN)
    for k in range(time_starts.shape[0] - 1):
        lo, hi = time_starts[k], time_starts[k + 1]
        rows = np.empty(hi - lo, dtype=np.int64)
        count = 0
        for i in range(lo, hi):
            row = by_time[i]
            if not math.isnan(x[row]):
                rows[count] = row
                count += 1
        if count < 2:
            continue
        rows = rows[:count]
        values = np.empty(count)
        for j in range(count):
            values[j] = x[rows[j]]
        order = np.argsort(values)
        j = 0
        while j < count:
            tie_end = j
            while tie_end + 1 < count and values[order[tie_end + 1]] == values[order[j]]:
                tie_end += 1
            rank = (j + tie_end) / 2.0  # 0-based average rank of the tie group
            for q in range(j, tie_end + 1):
                out[rows[order[q]]] = rank / (count - 1)
            j = tie_end + 1
    return out


def market_mean(x: np.ndarray, groups: PanelGroups) -> np.ndarray:
    return _xs_mean_std(x, groups.by_time, groups.time_starts, False, 1)


def dispersion(x: np.ndarray, groups: PanelGroups) -> np.ndarray:
    return _xs_mean_std(x, groups.by_time, groups.time_starts, True, 2)


def cross_sectional_rank(x: np.ndarray, groups: PanelGroups) -> np.ndarray:
    return _xs_rank(x, groups.by_time, groups.time_starts)


def specs() -> list[FeatureSpec]:
    warm = {1: 1, 5: 5, 20: 20}
    out = [
        FeatureSpec(
            name=f"mkt_ret_{k}",
            family="cross_asset",
            fn=market_mean,
            inputs=(f"logret_{k}",),
            scope="panel",
            min_symbols=2,
            window=None,
            warmup=warm[k],
            tags=("cross-asset", "market"),
            description=f"mean of logret_{k} across symbols at bar t (equal weights)",
        )
        for k in (1, 20)
    ]
    out.append(
        FeatureSpec(
            name="xs_disp_1",
            family="cross_asset",
            fn=dispersion,
            inputs=("logret_1",),
            scope="panel",
            min_symbols=2,
            window=None,
            warmup=1,
            tags=("cross-asset", "market", "volatility"),
            description="population std of logret_1 across symbols at bar t",
        )
    )
    out += [
        FeatureSpec(
            name=f"xs_rank_{k}",
            family="cross_asset",
            fn=cross_sectional_rank,
            inputs=(f"logret_{k}",),
            scope="panel",
            min_symbols=2,
            window=None,
            warmup=warm[k],
            tags=("cross-asset", "rank", "bounded"),
            description=f"(rank - 1) / (n - 1) of logret_{k} among the n symbols at bar t, ties averaged",
        )
        for k in (5, 20)
    ]
    return out
