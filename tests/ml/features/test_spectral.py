"""Spectral band shares: against numpy's FFT, summing to one, and placing known cycles in the right band."""

from __future__ import annotations

import numpy as np

from plus_ultra_ml.features.spectral import band_share, remaining_share


def _numpy_shares(window: np.ndarray) -> tuple[float, float, float]:
    d = window - window.mean()
    power = np.abs(np.fft.fft(d)) ** 2  # two-sided, k = 0..31
    total = power.sum()
    band = lambda lo, hi: power[lo : hi + 1].sum() + power[32 - hi : 32 - lo + 1].sum()  # noqa: E731
    low, mid = band(1, 3), band(4, 8)
    return low / total, mid / total, 1 - low / total - mid / total


def test_band_shares_match_numpy_fft():
    rng = np.random.default_rng(0)
    r = np.concatenate([[np.nan], rng.normal(0, 0.01, 300)])
    low, mid = band_share(r, 32, 1, 3), band_share(r, 32, 4, 8)
    high = remaining_share(low, mid)
    assert np.isnan(low[:32]).all() and not np.isnan(low[32])
    for t in (32, 100, 300):
        np.testing.assert_allclose((low[t], mid[t], high[t]), _numpy_shares(r[t - 31 : t + 1]), rtol=1e-9, atol=1e-12)


def test_known_cycles_land_in_their_band():
    t = np.arange(200, dtype=float)
    for period, band in ((16.0, "low"), (5.0, "mid"), (2.5, "high")):
        r = np.sin(2 * np.pi * t / period)
        low, mid = band_share(r, 32, 1, 3), band_share(r, 32, 4, 8)
        shares = {"low": low[-1], "mid": mid[-1], "high": remaining_share(low, mid)[-1]}
        assert max(shares, key=shares.get) == band and shares[band] > 0.8
