"""Volatility family: Bollinger width and %B, realised volatility, ATR (Wilder), Parkinson and
Garman-Klass range estimators, rolling skewness and kurtosis of returns.

Annualisation follows the trading calendar: realised, Parkinson and Garman-Klass volatilities are
multiplied by sqrt(periods per year), the bars per year of the panel's calendar at its bar spacing
(`plus_ultra_ml.data.calendar`, a fixed reference window, never the panel's own bar count) or
pinned by `features.periods_per_year`; it
is resolved once per feature set, recorded in the result and the fingerprint, and reused as is
when features are recomputed for serving.

References: Bollinger (2001), population std; Wilder (1978) for ATR; Parkinson (1980);
Garman & Klass (1980).
"""

from __future__ import annotations

import math

import numpy as np

from plus_ultra_ml.features import kernels as K
from plus_ultra_ml.features.registry import FeatureSpec

PARKINSON_SCALE = 1.0 / (4.0 * math.log(2.0))
GK_CLOSE_WEIGHT = 2.0 * math.log(2.0) - 1.0


def bollinger_width(close: np.ndarray, window: int, k: float) -> np.ndarray:
    """(upper - lower) / middle = 2 k sigma / SMA; sigma the population std."""
    return K.bollinger_width(close, window, k)


def bollinger_pctb(close: np.ndarray, window: int, k: float) -> np.ndarray:
    """(close - lower) / (upper - lower); 0.5 when the band has zero width."""
    mean, var = K.rolling_mean_var(close, window, 0)
    sigma = np.sqrt(var)
    return K.ratio_or(close - (mean - k * sigma), 2.0 * k * sigma, 0.5)


def realised_vol(close: np.ndarray, window: int, periods_per_year: float) -> np.ndarray:
    """std(one-bar log returns over `window` bars, ddof 1) * sqrt(periods per year)."""
    return K.realised_vol(np.log(close), window, periods_per_year)


def atr(high: np.ndarray, low: np.ndarray, close: np.ndarray, window: int) -> np.ndarray:
    return K.atr(high, low, close, window)


def natr(high: np.ndarray, low: np.ndarray, close: np.ndarray, window: int) -> np.ndarray:
    return 100.0 * K.atr(high, low, close, window) / close


def parkinson(high: np.ndarray, low: np.ndarray, window: int, periods_per_year: float) -> np.ndarray:
    """sqrt(ppy * mean(ln(high/low)^2) / (4 ln 2)) over `window` bars."""
    squared_range = np.log(high / low) ** 2
    return np.sqrt(periods_per_year * PARKINSON_SCALE * K.rolling_mean(squared_range, window))


def garman_klass(
    open_: np.ndarray, high: np.ndarray, low: np.ndarray, close: np.ndarray, window: int, periods_per_year: float
) -> np.ndarray:
    """sqrt(ppy * max(0, mean(0.5 ln(h/l)^2 - (2 ln 2 - 1) ln(c/o)^2))) over `window` bars."""
    term = 0.5 * np.log(high / low) ** 2 - GK_CLOSE_WEIGHT * np.log(close / open_) ** 2
    return np.sqrt(periods_per_year * np.maximum(K.rolling_mean(term, window), 0.0))  # maximum keeps NaN


def rolling_skew(returns: np.ndarray, window: int) -> np.ndarray:
    return K.rolling_moments(returns, window)[0]


def rolling_kurt(returns: np.ndarray, window: int) -> np.ndarray:
    return K.rolling_moments(returns, window)[1]


def specs() -> list[FeatureSpec]:
    annual = ("periods_per_year",)
    out = [
        FeatureSpec(
            name="bb_width_20",
            family="volatility",
            fn=bollinger_width,
            inputs=("close",),
            params={"window": 20, "k": 2.0},
            window=20,
            warmup=19,
            tags=("volatility", "scale-free", "talib:BBANDS"),
            description="(upper - lower) / middle = 4 * std20(close) / SMA20(close), population std",
        ),
        FeatureSpec(
            name="bb_pctb_20",
            family="volatility",
            fn=bollinger_pctb,
            inputs=("close",),
            params={"window": 20, "k": 2.0},
            window=20,
            warmup=19,
            tags=("volatility", "oscillator", "talib:BBANDS"),
            description="(close - lower) / (upper - lower), bands SMA20 -/+ 2 std20; 0.5 if zero width",
        ),
    ]
    out += [
        FeatureSpec(
            name=f"rvol_{w}",
            family="volatility",
            fn=realised_vol,
            inputs=("close",),
            params={"window": w},
            runtime=annual,
            window=w,
            warmup=w,
            tags=("volatility", "annualised", "scale-free"),
            description=f"std(logret_1 over {w} bars, ddof=1) * sqrt(periods_per_year)",
        )
        for w in (20, 60)
    ]
    out += [
        FeatureSpec(
            name="atr_14",
            family="volatility",
            fn=atr,
            inputs=("high", "low", "close"),
            params={"window": 14},
            window=14,
            warmup=14,
            tags=("volatility", "price-units", "talib:ATR"),
            description="Wilder RMA14 of true range max(h-l, |h-c[t-1]|, |l-c[t-1]|), seeded with mean TR[1..14]",
        ),
        FeatureSpec(
            name="natr_14",
            family="volatility",
            fn=natr,
            inputs=("high", "low", "close"),
            params={"window": 14},
            window=14,
            warmup=14,
            tags=("volatility", "scale-free", "talib:NATR"),
            description="100 * atr_14 / close",
        ),
        FeatureSpec(
            name="parkinson_20",
            family="volatility",
            fn=parkinson,
            inputs=("high", "low"),
            params={"window": 20},
            runtime=annual,
            window=20,
            warmup=19,
            tags=("volatility", "annualised", "range-based"),
            description="sqrt(periods_per_year * mean20(ln(high/low)^2) / (4 ln 2))",
        ),
        FeatureSpec(
            name="garman_klass_20",
            family="volatility",
            fn=garman_klass,
            inputs=("open", "high", "low", "close"),
            params={"window": 20},
            runtime=annual,
            window=20,
            warmup=19,
            tags=("volatility", "annualised", "range-based"),
            description="sqrt(periods_per_year * max(0, mean20(0.5 ln(h/l)^2 - (2 ln2 - 1) ln(c/o)^2)))",
        ),
        FeatureSpec(
            name="skew_60",
            family="volatility",
            fn=rolling_skew,
            inputs=("logret_1",),
            params={"window": 60},
            window=60,
            warmup=60,
            tags=("volatility", "higher-moment"),
            description="bias-corrected sample skewness G1 of logret_1 over 60 bars (pandas rolling skew)",
        ),
        FeatureSpec(
            name="kurt_60",
            family="volatility",
            fn=rolling_kurt,
            inputs=("logret_1",),
            params={"window": 60},
            window=60,
            warmup=60,
            tags=("volatility", "higher-moment"),
            description="bias-corrected excess kurtosis G2 of logret_1 over 60 bars (pandas rolling kurt)",
        ),
    ]
    return out
