"""Returns family: log returns over 1, 5 and 20 bars, and price velocity (a least-squares slope).

All per symbol, from closes up to and including bar t. Log returns are differences of log
prices, so they add across bars and are symmetric in up and down moves.
"""

from __future__ import annotations

import numpy as np

from plus_ultra_ml.features import kernels as K
from plus_ultra_ml.features.registry import FeatureSpec

RETURN_HORIZONS = (1, 5, 20)
VELOCITY_WINDOW = 10


def log_return(close: np.ndarray, bars: int) -> np.ndarray:
    """log(close[t] / close[t - bars]); (m,) -> (m,)."""
    return K.diff(np.log(close), bars)


def velocity(close: np.ndarray, window: int) -> np.ndarray:
    """Least-squares slope of log close on time over the last `window` bars (log-price per bar)."""
    return K.rolling_slope(np.log(close), window)


def specs() -> list[FeatureSpec]:
    out = [
        FeatureSpec(
            name=f"logret_{k}",
            family="returns",
            fn=log_return,
            inputs=("close",),
            params={"bars": k},
            window=k,
            warmup=k,
            tags=("returns", "scale-free"),
            description=f"log(close[t] / close[t-{k}])",
        )
        for k in RETURN_HORIZONS
    ]
    out.append(
        FeatureSpec(
            name=f"velocity_{VELOCITY_WINDOW}",
            family="returns",
            fn=velocity,
            inputs=("close",),
            params={"window": VELOCITY_WINDOW},
            window=VELOCITY_WINDOW,
            warmup=VELOCITY_WINDOW - 1,
            tags=("returns", "trend", "scale-free"),
            description=f"OLS slope of log(close) on time over {VELOCITY_WINDOW} bars (log-price per bar)",
        )
    )
    return out
