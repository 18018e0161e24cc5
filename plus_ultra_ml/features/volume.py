"""Volume family: volume z-score, bounded on-balance volume, VWAP distance, Chaikin money flow.

On-balance volume (Granville) is a running sum from the first bar, so its level depends on where
the history starts; here it is bounded: the window's signed volume over its total volume,
sum(sign(dclose) * volume) / sum(volume) over 20 bars, in [-1, 1] (equal to
(OBV[t] - OBV[t-20]) / sum(volume) with TA-Lib's OBV). Chaikin money flow follows `ta`'s
definition. A ratio over a window with zero total volume is undefined: NaN.
"""

from __future__ import annotations

import numpy as np

from plus_ultra_ml.features import kernels as K
from plus_ultra_ml.features.registry import FeatureSpec

WINDOW = 20


def volume_zscore(volume: np.ndarray, window: int) -> np.ndarray:
    """(log1p(v) - mean) / std over `window` bars (population std); 0 for a constant window."""
    x = np.log1p(volume)
    mean, var = K.rolling_mean_var(x, window, 0)
    return K.ratio_or(x - mean, np.sqrt(var), 0.0)


def obv_ratio(close: np.ndarray, volume: np.ndarray, window: int) -> np.ndarray:
    """sum(sign(close[t] - close[t-1]) * volume) / sum(volume) over `window` bars, in [-1, 1]."""
    signed = np.sign(K.diff(close, 1)) * volume
    return K.ratio_or(K.rolling_sum(signed, window), K.rolling_sum(volume, window), np.nan)


def vwap_distance(close: np.ndarray, vwap: np.ndarray) -> np.ndarray:
    return np.log(close / vwap)


def rolling_vwap_distance(
    high: np.ndarray, low: np.ndarray, close: np.ndarray, volume: np.ndarray, window: int
) -> np.ndarray:
    """log(close / VWAP over `window` bars), VWAP = sum(tp * v) / sum(v), tp = (h + l + c) / 3."""
    typical = (high + low + close) / 3.0
    vwap = K.ratio_or(K.rolling_sum(typical * volume, window), K.rolling_sum(volume, window), np.nan)
    return np.log(close / vwap)


def chaikin_money_flow(
    high: np.ndarray, low: np.ndarray, close: np.ndarray, volume: np.ndarray, window: int
) -> np.ndarray:
    """sum(mfm * v) / sum(v) over `window` bars, mfm = ((c - l) - (h - c)) / (h - l), 0 if h == l."""
    multiplier = K.ratio_or((close - low) - (high - close), high - low, 0.0)
    return K.ratio_or(K.rolling_sum(multiplier * volume, window), K.rolling_sum(volume, window), np.nan)


def specs() -> list[FeatureSpec]:
    return [
        FeatureSpec(
            name=f"volume_z_{WINDOW}",
            family="volume",
            fn=volume_zscore,
            inputs=("volume",),
            params={"window": WINDOW},
            window=WINDOW,
            warmup=WINDOW - 1,
            tags=("volume", "scale-free"),
            description=f"(log1p(volume) - mean{WINDOW}) / std{WINDOW} (population); 0 if constant",
        ),
        FeatureSpec(
            name=f"obv_ratio_{WINDOW}",
            family="volume",
            fn=obv_ratio,
            inputs=("close", "volume"),
            params={"window": WINDOW},
            window=WINDOW,
            warmup=WINDOW,
            tags=("volume", "bounded", "talib:OBV"),
            description=f"sum{WINDOW}(sign(close[t] - close[t-1]) * volume) / sum{WINDOW}(volume)",
        ),
        FeatureSpec(
            name="vwap_dist",
            family="volume",
            fn=vwap_distance,
            inputs=("close", "vwap"),
            warmup=0,
            tags=("volume", "scale-free"),
            description="log(close / vwap), vwap the database's per-bar VWAP column",
        ),
        FeatureSpec(
            name=f"vwap_dist_{WINDOW}",
            family="volume",
            fn=rolling_vwap_distance,
            inputs=("high", "low", "close", "volume"),
            params={"window": WINDOW},
            window=WINDOW,
            warmup=WINDOW - 1,
            tags=("volume", "scale-free"),
            description=f"log(close / (sum{WINDOW}(tp * volume) / sum{WINDOW}(volume))), tp = (h + l + c) / 3",
        ),
        FeatureSpec(
            name=f"cmf_{WINDOW}",
            family="volume",
            fn=chaikin_money_flow,
            inputs=("high", "low", "close", "volume"),
            params={"window": WINDOW},
            window=WINDOW,
            warmup=WINDOW - 1,
            tags=("volume", "bounded", "ta:ChaikinMoneyFlowIndicator"),
            description=f"sum{WINDOW}(((c - l) - (h - c)) / (h - l) * volume) / sum{WINDOW}(volume)",
        ),
    ]
