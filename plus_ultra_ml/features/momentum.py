"""Momentum family: RSI, MACD, rate of change, stochastic %K/%D, true strength index, CCI.

Textbook definitions (Wilder 1978 for RSI; Appel for MACD; Lane for the stochastic; Blau for TSI;
Lambert for CCI), checked against TA-Lib and the `ta` package in tests/ml/features.

Warm-up convention: NaN until the look-back is full, never 0. EMAs are seeded with the simple
mean of their first n inputs (TA-Lib's convention), so RSI, EMA, ATR, CCI, ROC and the
stochastic equal TA-Lib's from their first value. TA-Lib's MACD seeds its fast EMA over bars
14..25 instead of 0..11; that difference decays as (11/13)^t and is below 1e-12 of the price after
~150 bars, which is where the tests start comparing. TSI is compared with `ta` (pandas EMAs seeded
with the first value) after the same kind of decay.
"""

from __future__ import annotations

import numpy as np

from plus_ultra_ml.features import kernels as K
from plus_ultra_ml.features.registry import FeatureSpec


def rsi(close: np.ndarray, window: int) -> np.ndarray:
    """Wilder RSI in [0, 100]; 50 where the window has no movement at all."""
    return K.rsi(close, window)


def macd(close: np.ndarray, fast: int, slow: int) -> np.ndarray:
    return K.macd_line(close, fast, slow)


def ema_of(x: np.ndarray, span: int) -> np.ndarray:
    return K.ema(x, span)


def difference(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return a - b


def rate_of_change(close: np.ndarray, bars: int) -> np.ndarray:
    return 100.0 * (close / K.lag(close, bars) - 1.0)


def stochastic_k(high: np.ndarray, low: np.ndarray, close: np.ndarray, window: int) -> np.ndarray:
    """Fast %K: 100 (close - lowest low) / (highest high - lowest low); 50 for a flat window."""
    highest = K.rolling_max(high, window)
    lowest = K.rolling_min(low, window)
    return K.ratio_or(100.0 * (close - lowest), highest - lowest, 50.0)


def simple_mean(x: np.ndarray, window: int) -> np.ndarray:
    return K.rolling_mean(x, window)


def tsi(close: np.ndarray, slow: int, fast: int) -> np.ndarray:
    """Blau's true strength index: 100 EMA_fast(EMA_slow(dc)) / EMA_fast(EMA_slow(|dc|)); 0 if no movement."""
    change = K.diff(close, 1)
    num = K.ema(K.ema(change, slow), fast)
    den = K.ema(K.ema(np.abs(change), slow), fast)
    return K.ratio_or(100.0 * num, den, 0.0)


def cci(high: np.ndarray, low: np.ndarray, close: np.ndarray, window: int) -> np.ndarray:
    """Lambert's commodity channel index; 0 where the typical price is flat over the window."""
    typical = (high + low + close) / 3.0
    deviation = typical - K.rolling_mean(typical, window)
    return K.ratio_or(deviation, 0.015 * K.rolling_mean_abs_dev(typical, window), 0.0)


def specs() -> list[FeatureSpec]:
    hlc = ("high", "low", "close")
    return [
        FeatureSpec(
            name="rsi_14",
            family="momentum",
            fn=rsi,
            inputs=("close",),
            params={"window": 14},
            window=14,
            warmup=14,
            tags=("momentum", "oscillator", "bounded", "talib:RSI"),
            description="100 * RMA14(gain) / (RMA14(gain) + RMA14(loss)), Wilder RMA seeded with a 14-bar mean",
        ),
        FeatureSpec(
            name="macd",
            family="momentum",
            fn=macd,
            inputs=("close",),
            params={"fast": 12, "slow": 26},
            window=26,
            warmup=25,
            tags=("momentum", "trend", "price-units", "talib:MACD"),
            description="EMA12(close) - EMA26(close), SMA-seeded EMAs",
        ),
        FeatureSpec(
            name="macd_signal",
            family="momentum",
            fn=ema_of,
            inputs=("macd",),
            params={"span": 9},
            window=9,
            warmup=33,
            tags=("momentum", "trend", "price-units", "talib:MACD"),
            description="EMA9(macd)",
        ),
        FeatureSpec(
            name="macd_hist",
            family="momentum",
            fn=difference,
            inputs=("macd", "macd_signal"),
            window=None,
            warmup=33,
            tags=("momentum", "trend", "price-units", "talib:MACD"),
            description="macd - macd_signal",
        ),
        FeatureSpec(
            name="roc_10",
            family="momentum",
            fn=rate_of_change,
            inputs=("close",),
            params={"bars": 10},
            window=11,
            warmup=10,
            tags=("momentum", "scale-free", "talib:ROC"),
            description="100 * (close[t] / close[t-10] - 1)",
        ),
        FeatureSpec(
            name="stoch_k_14",
            family="momentum",
            fn=stochastic_k,
            inputs=hlc,
            params={"window": 14},
            window=14,
            warmup=13,
            tags=("momentum", "oscillator", "bounded", "talib:STOCHF"),
            description="100 * (close - min14(low)) / (max14(high) - min14(low)); 50 if the range is 0",
        ),
        FeatureSpec(
            name="stoch_d_14_3",
            family="momentum",
            fn=simple_mean,
            inputs=("stoch_k_14",),
            params={"window": 3},
            window=3,
            warmup=15,
            tags=("momentum", "oscillator", "bounded", "talib:STOCHF"),
            description="SMA3(stoch_k_14)",
        ),
        FeatureSpec(
            name="tsi_25_13",
            family="momentum",
            fn=tsi,
            inputs=("close",),
            params={"slow": 25, "fast": 13},
            window=25,
            warmup=37,
            tags=("momentum", "oscillator", "bounded", "ta:TSIIndicator"),
            description="100 * EMA13(EMA25(dclose)) / EMA13(EMA25(|dclose|)), dclose = close[t] - close[t-1]",
        ),
        FeatureSpec(
            name="cci_20",
            family="momentum",
            fn=cci,
            inputs=hlc,
            params={"window": 20},
            window=20,
            warmup=19,
            tags=("momentum", "oscillator", "talib:CCI"),
            description="(tp - SMA20(tp)) / (0.015 * meandev20(tp)), tp = (high + low + close) / 3",
        ),
    ]
