"""The Alpha158-style family against an independent pandas transcription of Qlib's formulas
(rolling windows with min_periods = d, i.e. our NaN warm-up instead of Qlib's partial windows)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from plus_ultra_ml.config import FeaturesConfig
from plus_ultra_ml.features.alpha158 import WINDOWS
from plus_ultra_ml.features.pipeline import compute_features

from .panels import make_panel

N = 400


@pytest.fixture(scope="module")
def data():
    panel = make_panel(N, symbols=("AAA",), seed=9)
    bars = panel.reset_index(drop=True)
    frame = compute_features(panel, FeaturesConfig(families=("alpha158",))).frame.reset_index(drop=True)
    return bars, frame


def _linreg(window: np.ndarray) -> tuple[float, float, float]:
    t = np.arange(len(window))
    slope, intercept = np.polyfit(t, window, 1)
    r2 = np.corrcoef(t, window)[0, 1] ** 2
    return slope, r2, window[-1] - (intercept + slope * t[-1])


def reference(bars: pd.DataFrame, d: int) -> dict[str, pd.Series]:
    o, h, l, c, v = (bars[k] for k in ("open", "high", "low", "close", "volume"))
    roll = lambda x: x.rolling(d, min_periods=d)  # noqa: E731
    dc, dv = c.diff(), v.diff()
    up = (c > c.shift(1)).astype(float).where(dc.notna())
    down = (c < c.shift(1)).astype(float).where(dc.notna())
    lin = lambda k: roll(c).apply(lambda w: _linreg(w)[k], raw=True)  # noqa: E731
    weighted = (c / c.shift(1) - 1).abs() * v

    def sums(x):
        change = x.diff()
        total = roll(change.abs()).sum() + 1e-12
        return roll(change.clip(lower=0)).sum() / total, roll((-change).clip(lower=0)).sum() / total

    sump, sumn = sums(c)
    vsump, vsumn = sums(v)
    return {
        "ROC": c.shift(d) / c,
        "MA": roll(c).mean() / c,
        "STD": roll(c).std() / c,
        "BETA": lin(0) / c,
        "RSQR": lin(1),
        "RESI": lin(2) / c,
        "MAX": roll(h).max() / c,
        "MIN": roll(l).min() / c,
        "QTLU": roll(c).quantile(0.8) / c,
        "QTLD": roll(c).quantile(0.2) / c,
        "RANK": roll(c).rank(pct=True),
        "RSV": (c - roll(l).min()) / (roll(h).max() - roll(l).min() + 1e-12),
        "IMAX": (roll(h).apply(np.argmax, raw=True) + 1) / d,
        "IMIN": (roll(l).apply(np.argmin, raw=True) + 1) / d,
        "IMXD": (roll(h).apply(np.argmax, raw=True) - roll(l).apply(np.argmin, raw=True)) / d,
        "CORR": roll(c).corr(np.log(v + 1)),
        "CORD": roll(c / c.shift(1)).corr(np.log(v / v.shift(1) + 1)),
        "CNTP": roll(up).mean(),
        "CNTN": roll(down).mean(),
        "CNTD": roll(up).mean() - roll(down).mean(),
        "SUMP": sump,
        "SUMN": sumn,
        "SUMD": sump - sumn,
        "VMA": roll(v).mean() / (v + 1e-12),
        "VSTD": roll(v).std() / (v + 1e-12),
        "WVMA": roll(weighted).std() / (roll(weighted).mean() + 1e-12),
        "VSUMP": vsump,
        "VSUMN": vsumn,
        "VSUMD": vsump - vsumn,
    }


@pytest.mark.parametrize("d", WINDOWS)
def test_rolling_operators_match_the_pandas_transcription(data, d):
    bars, frame = data
    mismatched = []
    for name, expected in reference(bars, d).items():
        ours = frame[f"a158_{name}{d}"].to_numpy(dtype=np.float64)
        want = expected.to_numpy(dtype=np.float64)
        if not np.array_equal(np.isnan(ours), np.isnan(want)):
            mismatched.append(f"{name}{d}: NaN pattern")
        elif not np.allclose(ours, want, rtol=2e-6, atol=2e-7, equal_nan=True):
            mismatched.append(f"{name}{d}: max diff {np.nanmax(np.abs(ours - want)):.3g}")
    assert mismatched == []


def test_kbar_and_price_features(data):
    bars, frame = data
    o, h, l, c = (bars[k].to_numpy() for k in ("open", "high", "low", "close"))
    expected = {
        "KMID": (c - o) / o,
        "KLEN": (h - l) / o,
        "KMID2": (c - o) / (h - l + 1e-12),
        "KUP": (h - np.maximum(o, c)) / o,
        "KUP2": (h - np.maximum(o, c)) / (h - l + 1e-12),
        "KLOW": (np.minimum(o, c) - l) / o,
        "KLOW2": (np.minimum(o, c) - l) / (h - l + 1e-12),
        "KSFT": (2 * c - h - l) / o,
        "KSFT2": (2 * c - h - l) / (h - l + 1e-12),
        "OPEN0": o / c,
        "HIGH0": h / c,
        "LOW0": l / c,
        "VWAP0": bars["vwap"].to_numpy() / c,
    }
    for name, want in expected.items():
        np.testing.assert_allclose(frame[f"a158_{name}"].to_numpy(), want, rtol=1e-6, err_msg=name)


def test_rank_and_quantile_handle_ties_like_pandas():
    from plus_ultra_ml.features import kernels as K

    x = np.array([1.0, 2.0, 2.0, 1.0, 3.0, 2.0, 2.0, 2.0, 1.0, np.nan, 4.0, 4.0, 4.0, 4.0, 4.0, 5.0])
    s = pd.Series(x)
    for n in (3, 4, 5):
        np.testing.assert_allclose(K.rolling_rank_pct(x, n), s.rolling(n).rank(pct=True), equal_nan=True)
        for q in (0.2, 0.5, 0.8):
            np.testing.assert_allclose(K.rolling_quantile(x, n, q), s.rolling(n).quantile(q), equal_nan=True)
