"""Exact regime labels for the newest bars without re-reading a symbol's history on every request.

`data.regimes.label_regimes` labels bar t by comparing a statistic at t with quantiles of that
statistic over the symbol's past. With rolling thresholds (``regimes.lookback = N``) the past is
bounded and labelling a slice of the last ``N + windows`` bars is exact. With expanding thresholds
(``lookback = None``, the presets' choice) the threshold at t depends on every earlier bar, so a
bounded slice alone cannot reproduce it. `RegimeState` keeps, per symbol, what the thresholds need
from the bars before an anchor:

    anchor   the last bar folded into the state
    bars     how many bars the symbol had up to and including the anchor (for ``min_history``)
    values   per statistic, the sorted non-NaN values up to the anchor

Labels of the bars after the anchor then come from the slice: their statistics are rolling windows
of at most ``max(vol_window, liquidity_window, trend_window)`` bars (inside the slice), and the
threshold at each bar is a quantile of ``values`` plus the slice's values up to that bar. The
quantile is pandas' linear interpolation between order statistics, found among
``values[k - m : k + 2]`` and the m new values (an order statistic of a union of a large sorted
array and m others lies in that range), so a label costs O(m log m), not O(history).

The state is built once from the full history (`from_history`, one read of the universe) and
advanced as bars arrive (`advance`), so each request reads a bounded slice. A slice that no longer
reaches back to a symbol's anchor (the service slept through more new bars than one read holds)
raises `StaleRegimeState`; the caller rebuilds the state from the history.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from plus_ultra_ml.config import RegimeConfig
from plus_ultra_ml.data.regimes import REGIME_VOCABULARY, regime_statistics
from plus_ultra_ml.errors import PlusUltraError

STATISTICS = tuple(REGIME_VOCABULARY)  # volatility, liquidity, trend (the label columns)


class StaleRegimeState(PlusUltraError):
    """The bars read do not connect to the state's anchor; rebuild the state from the history."""


def statistic_lookback(cfg: RegimeConfig) -> int:
    """Bars before a bar that its regime statistics read (returns need one more bar than the window)."""
    return max(cfg.vol_window, cfg.trend_window, cfg.liquidity_window - 1)


def pandas_quantile(low: float, high: float, position: float) -> float:
    """Linear interpolation between the order statistics at floor(position) and the next one,
    written as pandas' rolling/expanding quantile computes it (same operations, same rounding)."""
    floor = int(position)
    if floor == position:
        return low
    return low + (high - low) * (position - floor)


def _order_statistics(base: np.ndarray, extra: np.ndarray, k: int) -> tuple[float, float]:
    """The k-th and (k+1)-th smallest (0-based) of the multiset base ∪ extra; base sorted, extra small.

    An element base[i] with i < k - len(extra) has at most i + len(extra) < k elements before it in
    the union, so it precedes the k-th; base[k + 2:] follow the (k+1)-th. Only the rest is sorted.
    """
    m = len(extra)
    lo = max(0, k - m)
    candidates = np.sort(np.concatenate([base[lo:k + 2], extra]))
    first = float(candidates[k - lo])
    second = float(candidates[k + 1 - lo]) if k + 1 - lo < len(candidates) else first
    return first, second


@dataclass
class SymbolHistory:
    """What the thresholds of later bars need from a symbol's bars up to `anchor`."""

    anchor: pd.Timestamp | None  # None: nothing folded yet (the next slice must start at the first bar)
    bars: int = 0
    values: dict[str, np.ndarray] = field(default_factory=dict)  # statistic -> sorted non-NaN float64 values


class RegimeState:
    """Expanding-threshold state per symbol (see the module docstring). Not thread-safe: lock around it."""

    def __init__(self, cfg: RegimeConfig, histories: Mapping[str, SymbolHistory]):
        if cfg.lookback is not None:
            raise ValueError("RegimeState is for expanding thresholds (regimes.lookback: null); rolling thresholds "
                             "are exact on a bounded slice")
        self.cfg = cfg
        self.histories: dict[str, SymbolHistory] = dict(histories)

    # ----------------------------------------------------------------------------------------
    @classmethod
    def from_history(cls, panel: pd.DataFrame, cfg: RegimeConfig, keep_last: int) -> RegimeState:
        """Fold each symbol's bars except its last `keep_last` ones (those stay to be labelled)."""
        stats = regime_statistics(panel, cfg)
        state = cls(cfg, {})
        symbols = stats.index.get_level_values("symbol")
        times = stats.index.get_level_values("timestamp")
        codes = pd.Categorical(symbols).codes
        for code in np.unique(codes):
            rows = np.flatnonzero(codes == code)
            symbol = str(symbols[rows[0]])
            fold = rows[: max(len(rows) - keep_last, 0)]
            history = SymbolHistory(anchor=None)
            if len(fold):
                history = SymbolHistory(
                    anchor=times[fold[-1]], bars=len(fold),
                    values={s: np.sort(_finite(stats[s].to_numpy()[fold])) for s in STATISTICS})
            state.histories[symbol] = history
        return state

    # ----------------------------------------------------------------------------------------
    def _new_rows(self, symbol: str, times: pd.DatetimeIndex, whole_history: bool) -> int:
        """Position in this symbol's slice of the first bar after its anchor (checks the slice connects)."""
        history = self.histories.get(symbol)
        if history is None or history.anchor is None:
            if not whole_history:
                raise StaleRegimeState(f"no regime state for {symbol!r} and the slice is not its whole history")
            return 0
        position = int(times.searchsorted(history.anchor, side="left"))
        if position >= len(times) or times[position] != history.anchor:
            raise StaleRegimeState(
                f"the bars read for {symbol!r} ({times[0]} .. {times[-1]}) do not contain its regime anchor "
                f"{history.anchor}"
            )
        if position < statistic_lookback(self.cfg) and not whole_history:
            raise StaleRegimeState(
                f"the bars read for {symbol!r} hold {position} bars before the regime anchor; the statistics need "
                f"{statistic_lookback(self.cfg)} (read more history: service.history_bars)"
            )
        return position + 1

    def label(self, recent: pd.DataFrame, whole_history: frozenset[str] = frozenset(),
              stats: pd.DataFrame | None = None) -> pd.DataFrame:
        """Labels of `recent` (a panel slice of the newest bars) on its index, in `label_regimes`'
        format; exact for each symbol's bars after its anchor, NaN at or before it.

        whole_history: symbols whose slice starts at their first bar (no bar was left unread).
        stats: `regime_statistics(recent, cfg)` when the caller already has it.
        """
        stats = regime_statistics(recent, self.cfg) if stats is None else stats
        symbols = stats.index.get_level_values("symbol")
        times = stats.index.get_level_values("timestamp")
        codes = pd.Categorical(symbols).codes
        out = {s: np.full(len(stats), -1, dtype=np.int64) for s in STATISTICS}
        for code in np.unique(codes):
            rows = np.flatnonzero(codes == code)
            symbol = str(symbols[rows[0]])
            first_new = self._new_rows(symbol, pd.DatetimeIndex(times[rows]), symbol in whole_history)
            history = self.histories.get(symbol) or SymbolHistory(anchor=None)
            new = rows[first_new:]
            bar_count = history.bars + np.arange(1, len(new) + 1)
            for name in STATISTICS:
                x = stats[name].to_numpy()[new]
                base = history.values.get(name, np.empty(0))
                out[name][new] = self._codes(x, base, bar_count)
        labels = {name: pd.Categorical.from_codes(out[name], categories=list(REGIME_VOCABULARY[name]), ordered=True)
                  for name in STATISTICS}
        return pd.DataFrame(labels, index=stats.index).reindex(recent.index)

    def _codes(self, x: np.ndarray, base: np.ndarray, bar_count: np.ndarray) -> np.ndarray:
        """Codes 0/1/2 (-1 unlabelled) of new statistic values x, against thresholds over base ∪ x[:j+1]."""
        cfg = self.cfg
        codes = np.full(len(x), -1, dtype=np.int64)
        seen: list[float] = []
        for j, value in enumerate(x):
            if math.isfinite(value):
                seen.append(float(value))
            n = len(base) + len(seen)
            if n == 0 or not math.isfinite(value) or bar_count[j] < cfg.min_history:
                continue
            extra = np.asarray(seen, dtype=np.float64)
            low = self._quantile(base, extra, n, cfg.low_quantile)
            high = self._quantile(base, extra, n, cfg.high_quantile)
            codes[j] = 0 if value < low else (2 if value > high else 1)
        return codes

    @staticmethod
    def _quantile(base: np.ndarray, extra: np.ndarray, n: int, q: float) -> float:
        position = q * (n - 1)
        first, second = _order_statistics(base, extra, int(position))
        return pandas_quantile(first, second, position)

    def update(self, recent: pd.DataFrame, keep_last: int, whole_history: frozenset[str] = frozenset()) -> pd.DataFrame:
        """`label` then `advance` on one computation of the slice's statistics; returns the labels."""
        stats = regime_statistics(recent, self.cfg)
        labels = self.label(recent, whole_history, stats)
        self.advance(recent, keep_last, whole_history, stats)
        return labels

    # ----------------------------------------------------------------------------------------
    def advance(self, recent: pd.DataFrame, keep_last: int, whole_history: frozenset[str] = frozenset(),
                stats: pd.DataFrame | None = None) -> int:
        """Fold each symbol's bars after its anchor into the state, except its last `keep_last` bars.
        Returns the number of bars folded."""
        stats = regime_statistics(recent, self.cfg) if stats is None else stats
        symbols = stats.index.get_level_values("symbol")
        times = stats.index.get_level_values("timestamp")
        codes = pd.Categorical(symbols).codes
        folded = 0
        for code in np.unique(codes):
            rows = np.flatnonzero(codes == code)
            symbol = str(symbols[rows[0]])
            first_new = self._new_rows(symbol, pd.DatetimeIndex(times[rows]), symbol in whole_history)
            fold = rows[first_new: max(len(rows) - keep_last, first_new)]
            if not len(fold):
                continue
            history = self.histories.get(symbol) or SymbolHistory(anchor=None)
            values = {}
            for name in STATISTICS:
                old = history.values.get(name, np.empty(0))
                new = np.sort(_finite(stats[name].to_numpy()[fold]))
                values[name] = np.sort(np.concatenate([old, new]), kind="mergesort")
            self.histories[symbol] = SymbolHistory(anchor=times[fold[-1]], bars=history.bars + len(fold), values=values)
            folded += len(fold)
        return folded


def _finite(values: np.ndarray) -> np.ndarray:
    return values[np.isfinite(values)].astype(np.float64)
