"""Spectral family: how a rolling window's return variance splits across frequency bands.

For the last n = 32 one-bar log returns, with DFT X_k, the share of variance at frequencies k_lo..k_hi
(cycles per window, both k and n - k counted; Parseval makes the shares of all bands sum to 1):
low k = 1..3 (cycles of 11-32 bars), mid k = 4..8 (4-8 bars), high k = 9..16 (2-3.6 bars).
A trending or mean-reverting stretch shifts energy to low or high frequencies respectively.
The DFT is computed directly per window (fixed operation order, so a window's value never depends
on what follows it); high = 1 - low - mid.
"""

from __future__ import annotations

import numpy as np

from plus_ultra_ml.features import kernels as K
from plus_ultra_ml.features.registry import FeatureSpec

WINDOW = 32
BANDS = {"low": (1, 3), "mid": (4, 8)}  # k ranges; "high" is the rest, 9..16


def band_share(returns: np.ndarray, window: int, k_lo: int, k_hi: int) -> np.ndarray:
    return K.band_energy_fraction(returns, window, k_lo, k_hi)


def remaining_share(low: np.ndarray, mid: np.ndarray) -> np.ndarray:
    return np.clip(1.0 - low - mid, 0.0, 1.0)  # clip keeps NaN


def specs() -> list[FeatureSpec]:
    out = [
        FeatureSpec(
            name=f"spec_{band}_{WINDOW}",
            family="spectral",
            fn=band_share,
            inputs=("logret_1",),
            params={"window": WINDOW, "k_lo": k_lo, "k_hi": k_hi},
            window=WINDOW,
            warmup=WINDOW,
            tags=("spectral", "bounded"),
            description=f"share of the variance of logret_1 over {WINDOW} bars at DFT frequencies k={k_lo}..{k_hi}",
        )
        for band, (k_lo, k_hi) in BANDS.items()
    ]
    out.append(
        FeatureSpec(
            name=f"spec_high_{WINDOW}",
            family="spectral",
            fn=remaining_share,
            inputs=(f"spec_low_{WINDOW}", f"spec_mid_{WINDOW}"),
            window=None,
            warmup=WINDOW,
            tags=("spectral", "bounded"),
            description=f"share at k=9..{WINDOW // 2}: 1 - spec_low_{WINDOW} - spec_mid_{WINDOW}",
        )
    )
    return out
