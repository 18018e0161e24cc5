"""Small synthetic panels for the feature tests (random walks with OHLCV, vwap, alt data, truth)."""

from __future__ import annotations

import numpy as np
import pandas as pd

REGIME_LEVELS = ("low", "mid", "high")
REGIME_DIRECTIONS = ("down", "flat", "up")


def make_panel(
    n_bars: int = 300,
    symbols: tuple[str, ...] = ("AAA", "BBB", "CCC"),
    seed: int = 0,
    stagger: int = 0,
    freq: str = "15min",
    vwap: bool = True,
    indicators: tuple[str, ...] = ("sentiment", "truth_oracle"),
) -> pd.DataFrame:
    """A panel per docs/architecture.md. Symbol i starts `i * stagger` bars late (ragged starts)."""
    rng = np.random.default_rng(seed)
    grid = pd.date_range("2024-01-01", periods=n_bars, freq=freq, tz="UTC")
    parts = []
    for i, symbol in enumerate(symbols):
        times = grid[i * stagger :]
        m = len(times)
        log_close = np.log(50.0 + 50 * i) + np.cumsum(rng.normal(0.0, 0.01, m))
        close = np.exp(log_close)
        open_ = close * np.exp(rng.normal(0.0, 0.004, m))
        high = np.maximum(open_, close) * np.exp(np.abs(rng.normal(0.0, 0.004, m)))
        low = np.minimum(open_, close) * np.exp(-np.abs(rng.normal(0.0, 0.004, m)))
        volume = np.exp(rng.normal(10.0, 0.5, m))
        columns = {"open": open_, "high": high, "low": low, "close": close, "volume": volume}
        if vwap:
            columns["vwap"] = (high + low + close) / 3.0
        for name in indicators:
            columns[f"ind__{name}"] = rng.normal(0.0, 1.0, m)
        index = pd.MultiIndex.from_arrays([np.full(m, symbol), times], names=["symbol", "timestamp"])
        parts.append(pd.DataFrame(columns, index=index))
    panel = pd.concat(parts)
    panel.index = panel.index.set_levels(panel.index.levels[0].astype("category"), level=0)
    return panel.sort_index()


def make_labels(panel: pd.DataFrame, warmup: int = 30, seed: int = 1) -> pd.DataFrame:
    """A hand-built regime-labels frame of `label_regimes`' shape: NaN for each symbol's first bars."""
    rng = np.random.default_rng(seed)
    n = len(panel)
    position = panel.groupby(level="symbol", observed=True).cumcount().to_numpy()
    frame = {}
    for name, categories in (("volatility", REGIME_LEVELS), ("liquidity", REGIME_LEVELS), ("trend", REGIME_DIRECTIONS)):
        values = pd.Series(np.asarray(categories, dtype=object)[rng.integers(0, 3, n)])
        values[position < warmup] = np.nan
        frame[name] = pd.Categorical(values, categories=list(categories), ordered=True)
    return pd.DataFrame(frame, index=panel.index)
