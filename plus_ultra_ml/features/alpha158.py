"""Alpha158-style family: Qlib's Alpha158 feature set (Yang et al. 2020, "Qlib: An AI-oriented
Quantitative Investment Platform"), the usual baseline researchers compare against.

Opt-in (`features.alpha158: true`). 9 k-bar shape features, 4 price ratios (VWAP0 only when the
panel has ``vwap``) and 29 rolling operators over windows 5, 10, 20, 30, 60: 158 columns, each
named ``a158_<QLIB NAME>`` and normalised by price as Qlib does (e.g. MA5 = mean(close, 5) / close).

Differences from Qlib, on purpose:
- warm-up is NaN until a window is full (Qlib's operators use ``min_periods=1`` and emit values
  from partial windows);
- a ratio that is 0/0 or a correlation of a constant window is NaN (Qlib: NaN or inf likewise).
Std is the sample std (ddof 1, pandas'); Quantile interpolates linearly; Rank is pandas'
``rank(pct=True)`` of the last value in its window; IdxMax/IdxMin are 1-based positions from the
window's oldest bar. Rolling rank, quantile, correlation and regression are numba kernels
(sorted-window insertion, exact per-window passes), never ``rolling().apply`` with Python.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from plus_ultra_ml.features import kernels as K
from plus_ultra_ml.features.registry import FeatureSpec

WINDOWS = (5, 10, 20, 30, 60)
EPS = 1e-12  # Qlib's guard in ratio denominators
PREFIX = "a158_"


# --------------------------------------------------------------------------------------------
# k-bar shape and price ratios (point-wise, warm-up 0)
# --------------------------------------------------------------------------------------------
def kmid(open_, high, low, close):
    return (close - open_) / open_


def klen(open_, high, low, close):
    return (high - low) / open_


def kmid2(open_, high, low, close):
    return (close - open_) / (high - low + EPS)


def kup(open_, high, low, close):
    return (high - np.maximum(open_, close)) / open_


def kup2(open_, high, low, close):
    return (high - np.maximum(open_, close)) / (high - low + EPS)


def klow(open_, high, low, close):
    return (np.minimum(open_, close) - low) / open_


def klow2(open_, high, low, close):
    return (np.minimum(open_, close) - low) / (high - low + EPS)


def ksft(open_, high, low, close):
    return (2.0 * close - high - low) / open_


def ksft2(open_, high, low, close):
    return (2.0 * close - high - low) / (high - low + EPS)


def price_ratio(x, close):
    return x / close


# --------------------------------------------------------------------------------------------
# rolling operators (one function per Qlib operator; `window` is d)
# --------------------------------------------------------------------------------------------
def _up_down(close):
    """(close > close[t-1], close < close[t-1]) as 0/1 floats, NaN at bar 0."""
    change = K.diff(close, 1)
    undefined = np.isnan(change)
    up = (change > 0).astype(np.float64)
    down = (change < 0).astype(np.float64)
    up[undefined] = np.nan
    down[undefined] = np.nan
    return up, down


def roc(close, window):
    return K.lag(close, window) / close


def ma(close, window):
    return K.rolling_mean(close, window) / close


def std(close, window):
    return K.rolling_std(close, window, 1) / close


def beta(close, window):
    return K.rolling_slope(close, window) / close


def rsqr(close, window):
    return K.rolling_linreg(close, window)[1]


def resi(close, window):
    return K.rolling_linreg(close, window)[2] / close


def max_(high, close, window):
    return K.rolling_max(high, window) / close


def min_(low, close, window):
    return K.rolling_min(low, window) / close


def qtlu(close, window):
    return K.rolling_quantile(close, window, 0.8) / close


def qtld(close, window):
    return K.rolling_quantile(close, window, 0.2) / close


def rank(close, window):
    return K.rolling_rank_pct(close, window)


def rsv(high, low, close, window):
    lowest = K.rolling_min(low, window)
    return (close - lowest) / (K.rolling_max(high, window) - lowest + EPS)


def imax(high, window):
    return K.rolling_argmax(high, window) / window


def imin(low, window):
    return K.rolling_argmin(low, window) / window


def imxd(high, low, window):
    return (K.rolling_argmax(high, window) - K.rolling_argmin(low, window)) / window


def corr(close, volume, window):
    return K.rolling_corr(close, np.log1p(volume), window)


def cord(close, volume, window):
    with np.errstate(divide="ignore", invalid="ignore"):
        volume_change = np.log1p(volume / K.lag(volume, 1))
    return K.rolling_corr(close / K.lag(close, 1), volume_change, window)


def cntp(close, window):
    return K.rolling_mean(_up_down(close)[0], window)


def cntn(close, window):
    return K.rolling_mean(_up_down(close)[1], window)


def cntd(close, window):
    up, down = _up_down(close)
    return K.rolling_mean(up, window) - K.rolling_mean(down, window)


def _gain_loss_total(x, window):
    change = K.diff(x, 1)
    gains = K.rolling_sum(np.maximum(change, 0.0), window)
    losses = K.rolling_sum(np.maximum(-change, 0.0), window)
    total = K.rolling_sum(np.abs(change), window) + EPS
    return gains, losses, total


def sump(close, window):
    gains, _, total = _gain_loss_total(close, window)
    return gains / total


def sumn(close, window):
    _, losses, total = _gain_loss_total(close, window)
    return losses / total


def sumd(close, window):
    gains, losses, total = _gain_loss_total(close, window)
    return (gains - losses) / total


def vma(volume, window):
    return K.rolling_mean(volume, window) / (volume + EPS)


def vstd(volume, window):
    return K.rolling_std(volume, window, 1) / (volume + EPS)


def wvma(close, volume, window):
    weighted = np.abs(close / K.lag(close, 1) - 1.0) * volume
    return K.rolling_std(weighted, window, 1) / (K.rolling_mean(weighted, window) + EPS)


def vsump(volume, window):
    gains, _, total = _gain_loss_total(volume, window)
    return gains / total


def vsumn(volume, window):
    _, losses, total = _gain_loss_total(volume, window)
    return losses / total


def vsumd(volume, window):
    gains, losses, total = _gain_loss_total(volume, window)
    return (gains - losses) / total


# name -> (function, inputs, extra warm-up beyond d - 1, Qlib formula with d)
Rolling = tuple[Callable[..., np.ndarray], tuple[str, ...], int, str]
ROLLING: dict[str, Rolling] = {
    "ROC": (roc, ("close",), 1, "Ref(close, d) / close"),
    "MA": (ma, ("close",), 0, "Mean(close, d) / close"),
    "STD": (std, ("close",), 0, "Std(close, d) / close"),
    "BETA": (beta, ("close",), 0, "Slope(close, d) / close"),
    "RSQR": (rsqr, ("close",), 0, "Rsquare(close, d)"),
    "RESI": (resi, ("close",), 0, "Resi(close, d) / close"),
    "MAX": (max_, ("high", "close"), 0, "Max(high, d) / close"),
    "MIN": (min_, ("low", "close"), 0, "Min(low, d) / close"),
    "QTLU": (qtlu, ("close",), 0, "Quantile(close, d, 0.8) / close"),
    "QTLD": (qtld, ("close",), 0, "Quantile(close, d, 0.2) / close"),
    "RANK": (rank, ("close",), 0, "Rank(close, d)"),
    "RSV": (rsv, ("high", "low", "close"), 0, "(close - Min(low, d)) / (Max(high, d) - Min(low, d) + 1e-12)"),
    "IMAX": (imax, ("high",), 0, "IdxMax(high, d) / d"),
    "IMIN": (imin, ("low",), 0, "IdxMin(low, d) / d"),
    "IMXD": (imxd, ("high", "low"), 0, "(IdxMax(high, d) - IdxMin(low, d)) / d"),
    "CORR": (corr, ("close", "volume"), 0, "Corr(close, Log(volume + 1), d)"),
    "CORD": (cord, ("close", "volume"), 1, "Corr(close / Ref(close, 1), Log(volume / Ref(volume, 1) + 1), d)"),
    "CNTP": (cntp, ("close",), 1, "Mean(close > Ref(close, 1), d)"),
    "CNTN": (cntn, ("close",), 1, "Mean(close < Ref(close, 1), d)"),
    "CNTD": (cntd, ("close",), 1, "CNTP - CNTN"),
    "SUMP": (sump, ("close",), 1, "Sum(Greater(dclose, 0), d) / (Sum(Abs(dclose), d) + 1e-12)"),
    "SUMN": (sumn, ("close",), 1, "Sum(Greater(-dclose, 0), d) / (Sum(Abs(dclose), d) + 1e-12)"),
    "SUMD": (sumd, ("close",), 1, "SUMP - SUMN"),
    "VMA": (vma, ("volume",), 0, "Mean(volume, d) / (volume + 1e-12)"),
    "VSTD": (vstd, ("volume",), 0, "Std(volume, d) / (volume + 1e-12)"),
    "WVMA": (wvma, ("close", "volume"), 1, "Std(|close/Ref(close,1) - 1| * volume, d) / (Mean(same, d) + 1e-12)"),
    "VSUMP": (vsump, ("volume",), 1, "Sum(Greater(dvolume, 0), d) / (Sum(Abs(dvolume), d) + 1e-12)"),
    "VSUMN": (vsumn, ("volume",), 1, "Sum(Greater(-dvolume, 0), d) / (Sum(Abs(dvolume), d) + 1e-12)"),
    "VSUMD": (vsumd, ("volume",), 1, "VSUMP - VSUMN"),
}

KBAR: dict[str, tuple[Callable[..., np.ndarray], str]] = {
    "KMID": (kmid, "(close - open) / open"),
    "KLEN": (klen, "(high - low) / open"),
    "KMID2": (kmid2, "(close - open) / (high - low + 1e-12)"),
    "KUP": (kup, "(high - max(open, close)) / open"),
    "KUP2": (kup2, "(high - max(open, close)) / (high - low + 1e-12)"),
    "KLOW": (klow, "(min(open, close) - low) / open"),
    "KLOW2": (klow2, "(min(open, close) - low) / (high - low + 1e-12)"),
    "KSFT": (ksft, "(2 close - high - low) / open"),
    "KSFT2": (ksft2, "(2 close - high - low) / (high - low + 1e-12)"),
}


def specs() -> list[FeatureSpec]:
    ohlc = ("open", "high", "low", "close")
    out = [
        FeatureSpec(
            name=PREFIX + name,
            family="alpha158",
            fn=fn,
            inputs=ohlc,
            warmup=0,
            tags=("alpha158", "kbar"),
            description=formula,
        )
        for name, (fn, formula) in KBAR.items()
    ]
    out += [
        FeatureSpec(
            name=f"{PREFIX}{column.upper()}0",
            family="alpha158",
            fn=price_ratio,
            inputs=(column, "close"),
            warmup=0,
            tags=("alpha158", "price"),
            description=f"{column} / close",
        )
        for column in ("open", "high", "low", "vwap")
    ]
    for name, (fn, inputs, extra, formula) in ROLLING.items():
        for d in WINDOWS:
            out.append(
                FeatureSpec(
                    name=f"{PREFIX}{name}{d}",
                    family="alpha158",
                    fn=fn,
                    inputs=inputs,
                    params={"window": d},
                    window=d,
                    warmup=d - 1 + extra,
                    tags=("alpha158", "rolling"),
                    description=formula.replace(", d)", f", {d})").replace("/ d", f"/ {d}"),
                )
            )
    return out
