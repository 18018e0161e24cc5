"""Incremental regime labels equal `label_regimes` on the whole history, bar for bar."""

from __future__ import annotations

import zlib

import numpy as np
import pandas as pd
import pytest

from plus_ultra_ml.config import RegimeConfig
from plus_ultra_ml.data.regimes import label_regimes
from plus_ultra_ml.serving.regime_state import (
    RegimeState,
    StaleRegimeState,
    _order_statistics,
    pandas_quantile,
    statistic_lookback,
)

CFG = RegimeConfig(vol_window=10, liquidity_window=10, trend_window=20, min_history=50)


def random_panel(symbols=("AAA", "BBB"), bars=1500, seed=0) -> pd.DataFrame:
    frames = []
    for symbol in symbols:
        rng = np.random.default_rng([seed, zlib.crc32(symbol.encode())])
        returns = 0.01 * rng.standard_normal(bars) * np.repeat(rng.uniform(0.5, 2.0, bars // 100 + 1), 100)[:bars]
        close = rng.uniform(10, 500) * np.exp(np.cumsum(returns))
        volume = np.round(1e5 * np.exp(0.5 * rng.standard_normal(bars)))
        frames.append(pd.DataFrame({"symbol": symbol, "timestamp": pd.date_range("2021-01-01", periods=bars, freq="1h",
                                                                                 tz="UTC"),
                                    "open": close, "high": close * 1.001, "low": close * 0.999, "close": close,
                                    "volume": volume}))
    panel = pd.concat(frames, ignore_index=True)
    panel["symbol"] = panel["symbol"].astype("category")
    return panel.set_index(["symbol", "timestamp"]).sort_index()


def rows(panel: pd.DataFrame, first: int, last: int) -> pd.DataFrame:
    """Bars first..last-1 of every symbol."""
    position = panel.groupby(level="symbol", observed=True).cumcount().to_numpy()
    return panel[(position >= first) & (position < last)]


def same_labels(served: pd.DataFrame, reference: pd.DataFrame, mask: np.ndarray) -> dict[str, int]:
    return {c: int((served[c].astype(object)[mask].fillna("-") != reference[c].astype(object)[mask].fillna("-")).sum())
            for c in served.columns}


def test_order_statistics_of_a_union_match_sorting_it():
    rng = np.random.default_rng(0)
    for _ in range(200):
        base = np.sort(rng.integers(0, 20, rng.integers(0, 30)).astype(float))
        extra = rng.integers(0, 20, rng.integers(1, 6)).astype(float)
        union = np.sort(np.concatenate([base, extra]))
        k = int(rng.integers(0, len(union)))
        first, second = _order_statistics(base, extra, k)
        assert first == union[k]
        assert second == union[min(k + 1, len(union) - 1)]


def test_quantile_interpolation_is_pandas():
    values = pd.Series(np.random.default_rng(1).standard_normal(37))
    for q in (1 / 3, 2 / 3, 0.5, 0.1):
        position = q * (len(values) - 1)
        ordered = np.sort(values.to_numpy())
        low, high = ordered[int(position)], ordered[min(int(position) + 1, len(values) - 1)]
        assert pandas_quantile(low, high, position) == values.expanding().quantile(q).iloc[-1]


def test_labels_after_the_anchor_equal_the_full_history_labels_as_bars_arrive():
    panel = random_panel(bars=1500)
    full = label_regimes(panel, CFG)
    state = RegimeState.from_history(rows(panel, 0, 900), CFG, keep_last=30)
    labelled = 0
    for end in range(900, 1500, 60):  # a slice of 200 bars ending at each new bar count, like a service would read
        recent = rows(panel, end - 200, end)
        served = state.label(recent)
        mask = served.notna().any(axis=1).to_numpy()
        assert same_labels(served, full.reindex(served.index), mask) == {"volatility": 0, "liquidity": 0, "trend": 0}
        labelled += int(mask.sum())
        state.advance(recent, keep_last=30)
    assert labelled > 2 * 600  # every slice labelled at least its newest bars, for both symbols


def test_a_young_symbol_is_labelled_from_its_first_bar_when_its_whole_history_is_read():
    panel = random_panel(bars=150)
    state = RegimeState.from_history(panel, CFG, keep_last=500)  # nothing folded: every bar is new
    served = state.label(panel, whole_history=frozenset({"AAA", "BBB"}))
    reference = label_regimes(panel, CFG)
    assert same_labels(served, reference, np.ones(len(panel), bool)) == {"volatility": 0, "liquidity": 0, "trend": 0}
    with pytest.raises(StaleRegimeState, match="not its whole history"):
        state.label(rows(panel, 50, 150))


def test_a_slice_that_misses_the_anchor_is_stale():
    panel = random_panel(bars=800)
    state = RegimeState.from_history(rows(panel, 0, 400), CFG, keep_last=10)
    with pytest.raises(StaleRegimeState, match="do not contain its regime anchor"):
        state.label(rows(panel, 500, 800))  # the service slept through more bars than one read holds
    with pytest.raises(StaleRegimeState, match="statistics need"):
        state.label(rows(panel, 385, 800))  # the anchor is there, but too few bars before it for the windows
    assert statistic_lookback(CFG) == 20


def test_rolling_thresholds_are_refused_by_the_state():
    with pytest.raises(ValueError, match="expanding"):
        RegimeState(CFG.model_copy(update={"lookback": 100}), {})
