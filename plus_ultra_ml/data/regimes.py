"""Causal regime labels: volatility, liquidity and trend per (symbol, bar), thresholds from the past.

The trap this room exists to avoid (DESIGN §9.5): labelling a bar by whole-history percentiles, so
appending later data relabels the past and a model fed the labels sees the future. Here the label of
bar t compares a statistic at t with quantiles of that same statistic's history for the same symbol,
up to and including t: expanding (``lookback=None``) or the last ``lookback`` bars. The statistics are
per-symbol pandas groupby rolling windows (Cython); the thresholds are one compiled pass per symbol
with an order-statistic tree (`data.order_statistics`, O(n log n), the same numbers as pandas'
expanding quantile, which grows about n^1.5), never a Python loop over rows.

Statistics, per symbol (r = log close-to-close return):
    volatility  rolling standard deviation of r over ``vol_window`` bars (realised volatility)
    liquidity   rolling mean of dollar volume close * volume over ``liquidity_window`` bars
    trend       a t-statistic of the drift: sum of r over ``trend_window`` bars divided by
                (std of r over those bars * sqrt(trend_window)); scale-free, so calm and wild
                markets are judged alike

Labels: ``low`` / ``down`` where the statistic is strictly below its ``low_quantile`` threshold,
``high`` / ``up`` strictly above its ``high_quantile`` threshold, ``mid`` / ``flat`` otherwise (a
constant statistic is therefore ``mid``). A bar is unlabelled (NaN) until its symbol has
``min_history`` bars up to and including it, and wherever the statistic itself is still warming up.
Quantiles interpolate linearly (pandas' default).
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from plus_ultra_ml.config import RegimeConfig
from plus_ultra_ml.data.order_statistics import causal_quantiles
from plus_ultra_ml.data.schema import PANEL_INDEX, TIMESTAMP_FORMAT
from plus_ultra_ml.errors import DataContractError

log = logging.getLogger(__name__)

LEVELS = ("low", "mid", "high")
DIRECTIONS = ("down", "flat", "up")
REGIME_VOCABULARY: dict[str, tuple[str, ...]] = {
    "volatility": LEVELS,
    "liquidity": LEVELS,
    "trend": DIRECTIONS,
}  # name -> categories in order; code k of a label is its position here (serving uses the same codes)


def _check(panel: pd.DataFrame) -> None:
    if list(panel.index.names) != list(PANEL_INDEX):
        raise DataContractError(
            f"regime labels need a panel indexed by {list(PANEL_INDEX)}, got {list(panel.index.names)}; "
            "load it with plus_ultra_ml.data.store.load_panel"
        )
    missing = [column for column in ("close", "volume") if column not in panel.columns]
    if missing:
        raise DataContractError(f"regime labels need panel columns {missing}; the panel has {list(panel.columns)}")
    if not panel.index.is_unique:
        duplicated = panel.index[panel.index.duplicated()][:3].tolist()
        raise DataContractError(f"panel has duplicate (symbol, timestamp) rows, first {duplicated}; deduplicate it")
    closes = panel["close"].to_numpy()
    if np.any(~(closes > 0)):
        raise DataContractError("panel column close has non-positive or missing values; validate the database first")


def _per_symbol(values: pd.Series, window: int | None, min_periods: int):
    """Rolling (window) or expanding (None) windows of `values` within each symbol."""
    grouped = values.groupby(level="symbol", observed=True, sort=False)
    return grouped.expanding(min_periods=min_periods) if window is None else grouped.rolling(window, min_periods=min_periods)


def _aligned(result: pd.Series, like: pd.Series) -> pd.Series:
    """Drop the group key pandas prepends to groupby-window results and restore `like`'s row order."""
    return result.droplevel(0).reindex(like.index)


def _segment_starts(index: pd.MultiIndex) -> np.ndarray:
    """(S + 1,) row offsets of each symbol's contiguous block in a (symbol, timestamp)-sorted index."""
    codes = np.asarray(index.codes[index.names.index("symbol")])
    changes = np.flatnonzero(codes[1:] != codes[:-1]) + 1
    return np.concatenate([[0], changes, [len(codes)]]).astype(np.int64)


def _classify(statistic: pd.Series, starts: np.ndarray, bar_count: np.ndarray, cfg: RegimeConfig,
              categories: tuple[str, ...]):
    """Codes 0/1/2 against causal quantile thresholds of the statistic's own history; NaN -> -1.

    statistic: (n,) sorted by (symbol, timestamp); starts: its symbol blocks (`_segment_starts`).
    """
    x = statistic.to_numpy(dtype=np.float64)
    thresholds = causal_quantiles(x, starts, cfg.lookback, (cfg.low_quantile, cfg.high_quantile))  # (n, 2)
    low, high = thresholds[:, 0], thresholds[:, 1]
    codes = np.where(x < low, 0, np.where(x > high, 2, 1))
    unlabelled = np.isnan(x) | np.isnan(low) | np.isnan(high) | (bar_count < cfg.min_history)
    codes = np.where(unlabelled, -1, codes)
    return pd.Categorical.from_codes(codes, categories=list(categories), ordered=True)


def regime_statistics(panel: pd.DataFrame, cfg: RegimeConfig) -> pd.DataFrame:
    """The three causal statistics the labels threshold (same index as the panel, float64)."""
    _check(panel)
    ordered = panel.sort_index(level=["symbol", "timestamp"]) if not panel.index.is_monotonic_increasing else panel
    close = ordered["close"].astype("float64")
    log_close = pd.Series(np.log(close.to_numpy()), index=close.index)
    returns = log_close.groupby(level="symbol", observed=True, sort=False).diff()
    volatility = _aligned(_per_symbol(returns, cfg.vol_window, cfg.vol_window).std(), returns)
    dollar_volume = close * ordered["volume"].astype("float64")
    liquidity = _aligned(_per_symbol(dollar_volume, cfg.liquidity_window, cfg.liquidity_window).mean(), returns)
    drift = _aligned(_per_symbol(returns, cfg.trend_window, cfg.trend_window).sum(), returns)
    spread = _aligned(_per_symbol(returns, cfg.trend_window, cfg.trend_window).std(), returns)
    trend = drift / (spread * np.sqrt(cfg.trend_window))
    trend = trend.where(spread > 0)  # a flat price has no trend statistic
    stats = pd.DataFrame({"volatility": volatility, "liquidity": liquidity, "trend": trend})
    return stats.reindex(panel.index)


def label_regimes(panel: pd.DataFrame, cfg: RegimeConfig) -> pd.DataFrame:
    """Volatility, liquidity and trend labels for every panel row, from each symbol's past only.

    panel: the panel contract (index (symbol, timestamp), columns close and volume at least).
    Returns a frame with the panel's index and ordered categorical columns ``volatility``,
    ``liquidity`` (low, mid, high) and ``trend`` (down, flat, up); NaN while unlabelled.
    """
    stats = regime_statistics(panel, cfg)
    ordered = stats.sort_index(level=["symbol", "timestamp"]) if not stats.index.is_monotonic_increasing else stats
    bar_count = ordered.groupby(level="symbol", observed=True, sort=False).cumcount().to_numpy() + 1
    starts = _segment_starts(ordered.index)
    labels = pd.DataFrame(
        {name: _classify(ordered[name], starts, bar_count, cfg, categories)
         for name, categories in REGIME_VOCABULARY.items()},
        index=ordered.index,
    )
    return labels.reindex(panel.index)


def regimes_to_long(labels: pd.DataFrame) -> pd.DataFrame:
    """Labels (output of `label_regimes`) as rows of the ``regimes`` table.

    Columns timestamp (ISO text, schema.TIMESTAMP_FORMAT), symbol, name, value; unlabelled bars are
    left out (the table's value is NOT NULL); rows sorted by (timestamp, symbol, name), the key order.
    """
    unknown = [column for column in labels.columns if column not in REGIME_VOCABULARY]
    if unknown:
        raise DataContractError(f"regime labels have unknown columns {unknown}; expected {list(REGIME_VOCABULARY)}")
    if list(labels.index.names) != list(PANEL_INDEX):
        raise DataContractError(f"regime labels must be indexed by {list(PANEL_INDEX)}, got {list(labels.index.names)}")
    timestamps = labels.index.get_level_values("timestamp")
    codes, uniques = pd.factorize(timestamps)
    iso = np.asarray(pd.DatetimeIndex(uniques).tz_convert("UTC").strftime(TIMESTAMP_FORMAT), dtype=object)[codes]
    symbols = np.asarray(labels.index.get_level_values("symbol").astype(str), dtype=object)
    frames = []
    for name in labels.columns:  # three columns, not rows
        values = labels[name]
        present = values.notna().to_numpy()
        frames.append(
            pd.DataFrame(
                {
                    "timestamp": iso[present],
                    "symbol": symbols[present],
                    "name": name,
                    "value": np.asarray(values.astype(object))[present],
                }
            )
        )
    long = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["timestamp", "symbol", "name", "value"])
    return long.sort_values(["timestamp", "symbol", "name"], kind="stable", ignore_index=True)
