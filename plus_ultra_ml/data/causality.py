"""Truncation invariance: the executable definition of "no look-ahead".

A per-bar computation is causal when its value at bar t does not change if every bar after t is
removed. `truncation_mismatches` recomputes on panels cut at given times and compares every value
at or before the cut with the full computation (NaN equals NaN; categories compare as labels).
Used by tests and by the blocking Dagster checks on regime labels and features.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class Mismatch:
    cut: str
    column: str
    count: int
    examples: list[dict] = field(default_factory=list)


def _equal(full: pd.Series, cut: pd.Series) -> np.ndarray:
    if isinstance(full.dtype, pd.CategoricalDtype) or full.dtype == object:
        a = full.astype(object).to_numpy()
        b = cut.astype(object).to_numpy()
        both_missing = pd.isna(a) & pd.isna(b)
        with np.errstate(invalid="ignore"):
            return both_missing | (a == b)
    a = full.to_numpy(dtype=float)
    b = cut.to_numpy(dtype=float)
    return (np.isnan(a) & np.isnan(b)) | (a == b)


def truncation_mismatches(
    compute: Callable[[pd.DataFrame], pd.DataFrame],
    panel: pd.DataFrame,
    cuts: Sequence[pd.Timestamp],
    full: pd.DataFrame | None = None,
) -> list[Mismatch]:
    """Columns whose values at or before a cut change when the future is removed."""
    full = compute(panel) if full is None else full
    times = panel.index.get_level_values("timestamp")
    mismatches: list[Mismatch] = []
    for cut in cuts:
        truncated = compute(panel[times <= cut])
        past = full[full.index.get_level_values("timestamp") <= cut].reindex(truncated.index)
        for column in full.columns:
            same = _equal(past[column], truncated[column])
            if not same.all():
                bad = np.flatnonzero(~same)[:5]
                examples = [
                    {"symbol": str(truncated.index[i][0]), "timestamp": truncated.index[i][1].isoformat(),
                     "full": str(past[column].iloc[i]), "truncated": str(truncated[column].iloc[i])}
                    for i in bad
                ]
                mismatches.append(Mismatch(cut.isoformat(), str(column), int((~same).sum()), examples))
    return mismatches


def spread_cuts(panel: pd.DataFrame, n: int, seed: int = 0, margin: float = 0.2) -> list[pd.Timestamp]:
    """`n` reproducible cut times drawn from the middle of the panel's time range."""
    times = np.sort(panel.index.get_level_values("timestamp").unique())
    lo, hi = int(len(times) * margin), max(int(len(times) * (1 - margin)), int(len(times) * margin) + 1)
    picks = np.random.default_rng(seed).choice(np.arange(lo, hi), size=min(n, hi - lo), replace=False)
    return [pd.Timestamp(times[i]) for i in sorted(picks)]
