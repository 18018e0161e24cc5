"""Kernel conventions: NaN warm-up and NaN windows, leading-NaN seeding, no negative shifts, and
running updates that stay exact over long histories."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from plus_ultra_ml.features import kernels as K


def test_windows_with_a_nan_are_nan_and_recover_after_it():
    x = np.arange(20, dtype=float)
    x[7] = np.nan
    s = pd.Series(x)
    for ours, theirs in (
        (K.rolling_sum(x, 4), s.rolling(4).sum()),
        (K.rolling_mean(x, 4), s.rolling(4).mean()),
        (K.rolling_std(x, 4, 1), s.rolling(4).std()),
        (K.rolling_max(x, 4), s.rolling(4).max()),
        (K.rolling_min(x, 4), s.rolling(4).min()),
        (K.rolling_quantile(x, 4, 0.8), s.rolling(4).quantile(0.8)),
        (K.rolling_corr(x, x**2, 4), s.rolling(4).corr(s**2)),
    ):
        np.testing.assert_allclose(ours, theirs, rtol=1e-12, equal_nan=True)


def test_smoothers_skip_leading_nans_and_seed_with_a_mean():
    x = np.array([np.nan, np.nan, 1.0, 2.0, 3.0, 4.0, 5.0])
    ema = K.ema(x, 3)
    assert np.isnan(ema[:4]).all() and ema[4] == 2.0 and ema[5] == pytest.approx(3.0)
    wilder = K.wilder(x, 3)
    assert wilder[4] == 2.0 and wilder[5] == pytest.approx((2.0 * 2 + 4.0) / 3)
    np.testing.assert_array_equal(K.macd_line(x, 2, 3)[:4], np.nan)


def test_negative_shifts_are_refused():
    with pytest.raises(ValueError, match="future"):
        K.lag(np.ones(5), -1)
    with pytest.raises(ValueError, match="future"):
        K.diff(np.ones(5), 0)


def test_running_variance_does_not_drift_over_a_long_wandering_history():
    rng = np.random.default_rng(0)
    price = 100 * np.exp(np.cumsum(rng.normal(0, 0.02, 200_000)))  # spans several orders of magnitude
    window = np.lib.stride_tricks.sliding_window_view(price, 20)
    _, var = K.rolling_mean_var(price, 20, 0)
    np.testing.assert_allclose(var[19:], window.var(axis=1), rtol=1e-9)


def test_constant_windows_have_exactly_zero_variance():
    x = np.concatenate([np.linspace(1, 50, 60), np.full(30, 0.1)])
    mean, var = K.rolling_mean_var(x, 20, 1)
    assert (var[-10:] == 0).all() and (mean[-10:] == 0.1).all()
