"""Quality checks on a computed feature table: finite after warm-up, causal, not constant.

Used by the blocking checks of the `feature_table` asset; each returns plain data a check can
show (which features, how many rows), never a bare boolean.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from plus_ultra_ml.config import ExperimentConfig
from plus_ultra_ml.data.causality import Mismatch, spread_cuts, truncation_mismatches
from plus_ultra_ml.data.regimes import label_regimes
from plus_ultra_ml.features.pipeline import FeatureResult, compute_features
from plus_ultra_ml.features.registry import FeatureRegistry


def after_warmup(result: FeatureResult) -> np.ndarray:
    """(N, F) mask of the cells that are past their feature's warm-up within their symbol."""
    position = result.frame.groupby(level="symbol", observed=True, sort=False).cumcount().to_numpy()
    warmup = np.array([result.warmup.get(str(c), 0) for c in result.frame.columns])
    return position[:, None] >= warmup[None, :]


def nan_fraction_after_warmup(result: FeatureResult) -> dict[str, float]:
    values = result.frame.to_numpy()
    mask = after_warmup(result)
    missing = np.isnan(values) & mask
    counts = np.maximum(mask.sum(axis=0), 1)
    return {str(c): float(m) for c, m in zip(result.frame.columns, missing.sum(axis=0) / counts, strict=True)}


def infinite_columns(frame: pd.DataFrame) -> dict[str, int]:
    counts = np.isinf(frame.to_numpy()).sum(axis=0)
    return {str(c): int(n) for c, n in zip(frame.columns, counts, strict=True) if n}


def constant_columns(frame: pd.DataFrame) -> list[str]:
    """Features with a single distinct finite value over the whole table (no information)."""
    values = frame.to_numpy(dtype=np.float64)
    low, high = np.nanmin(values, axis=0), np.nanmax(values, axis=0)
    return [str(c) for c, lo, hi in zip(frame.columns, low, high, strict=True) if not (hi > lo)]


def causality_spot_check(panel: pd.DataFrame, result: FeatureResult, cfg: ExperimentConfig,
                         symbols: Sequence[str] | None = None, n_cuts: int = 2,
                         registry: FeatureRegistry | None = None) -> list[Mismatch]:
    """Recompute regimes + features on a symbol sample truncated at random cuts; past values must not move.

    The sample keeps its symbols fixed between full and truncated runs, and the cuts fall where every
    sampled symbol is listed (a ragged universe has names that list late or delist early), so the
    truncated panel has the same symbols and cross-sectional features are compared like for like. When
    the random sample never trades at the same time, the two longest-listed symbols are checked instead."""
    all_symbols = [str(s) for s in panel.index.get_level_values("symbol").unique()]
    rng = np.random.default_rng(cfg.seed)
    sample = list(symbols) if symbols else sorted(rng.choice(all_symbols, size=min(2, len(all_symbols)), replace=False))
    sub, common = _listed_together(panel, sample)
    if common.empty and not symbols:
        rows = panel.groupby(level="symbol", observed=True).size().sort_values(ascending=False, kind="stable")
        sub, common = _listed_together(panel, [str(s) for s in rows.index[:2]])
    pinned = result.config

    def compute(p: pd.DataFrame) -> pd.DataFrame:
        return compute_features(p, pinned, label_regimes(p, cfg.regimes), registry=registry).frame

    return truncation_mismatches(compute, sub, spread_cuts(common, n_cuts, seed=cfg.seed))


def _listed_together(panel: pd.DataFrame, sample: Sequence[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The panel's rows of `sample`, and those rows at the timestamps where every sampled symbol has one."""
    sub = panel[panel.index.get_level_values("symbol").isin(sample)]
    sub.index = sub.index.remove_unused_levels()
    times = sub.index.get_level_values("timestamp")
    listed = times.value_counts()  # symbols with a row at each timestamp
    return sub, sub[times.isin(listed.index[listed == len(sample)])]
