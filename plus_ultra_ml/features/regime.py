"""Regime family: soft bull/bear probabilities from a rolling drift z-score, and the regime labels
of `plus_ultra_ml.data.regimes` as integer codes.

Soft probabilities: z[t] is the t-statistic of the mean one-bar log return over the last w bars,
z = mean / (std / sqrt(w)). Reading z as a noisy estimate of the drift's signal-to-noise with unit
standard error, P(bull) = Phi(z - tau) and P(bear) = Phi(-z - tau) with a neutral band tau = 0.5;
1 - P(bull) - P(bear) = Phi(z + tau) - Phi(z - tau) is the flat probability.

Label codes: each label column (volatility, liquidity, trend) becomes its category's position in
a vocabulary (float32 0, 1, 2; NaN while unlabelled). The vocabulary comes from
`features.regime_vocabulary` when set, else from `data.regimes.REGIME_VOCABULARY`; it is returned
with the features and belongs in their metadata, so serving maps labels to the same codes.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from plus_ultra_ml.errors import DataContractError
from plus_ultra_ml.features import kernels as K
from plus_ultra_ml.features.registry import LABEL_PREFIX, FeatureSpec

NEUTRAL_BAND = 0.5  # tau: |z| below this leans flat
WINDOWS = (20, 60)
LABEL_NAMES = ("volatility", "liquidity", "trend")


def drift_zscore(returns: np.ndarray, window: int) -> np.ndarray:
    return K.drift_tstat(returns, window)


def bull_probability(z: np.ndarray, band: float) -> np.ndarray:
    return K.normal_cdf(z - band)


def bear_probability(z: np.ndarray, band: float) -> np.ndarray:
    return K.normal_cdf(-z - band)


def label_code(codes: np.ndarray) -> np.ndarray:
    """The label codes as they are (already integers as floats, NaN while unlabelled)."""
    return codes.copy()


def default_vocabulary() -> dict[str, tuple[str, ...]]:
    from plus_ultra_ml.data.regimes import REGIME_VOCABULARY

    return {name: tuple(categories) for name, categories in REGIME_VOCABULARY.items()}


def label_columns(
    regimes: pd.DataFrame, index: pd.MultiIndex, vocabulary: Mapping[str, tuple[str, ...]]
) -> dict[str, np.ndarray]:
    """Encode regime label columns as float64 codes aligned with the panel's rows.

    regimes: the `label_regimes` frame (the panel's index; categorical or string columns).
    Returns {"label__<name>": codes (n_rows,)} for every vocabulary name present in `regimes`.
    """
    if not regimes.index.equals(index):
        raise DataContractError(
            f"regime labels have {len(regimes)} rows indexed differently from the panel's {len(index)}; "
            "compute them from the same panel with plus_ultra_ml.data.regimes.label_regimes"
        )
    out: dict[str, np.ndarray] = {}
    for name, categories in vocabulary.items():
        if name not in regimes.columns:
            continue
        values = regimes[name].astype("object")
        lookup = {label: float(code) for code, label in enumerate(categories)}
        codes = values.map(lookup).to_numpy(dtype=np.float64)
        unknown = values.notna().to_numpy() & np.isnan(codes)
        if unknown.any():
            first = values[unknown].iloc[0]
            raise DataContractError(
                f"regime label column {name!r} has {int(unknown.sum())} values outside the saved vocabulary "
                f"{list(categories)} (first: {first!r} at {values[unknown].index[0]}); recompute the labels or "
                "retrain with the new vocabulary"
            )
        out[LABEL_PREFIX + name] = codes
    return out


def specs() -> list[FeatureSpec]:
    out: list[FeatureSpec] = []
    for w in WINDOWS:
        z = f"regime_z_{w}"
        out += [
            FeatureSpec(
                name=z,
                family="regime",
                fn=drift_zscore,
                inputs=("logret_1",),
                params={"window": w},
                window=w,
                warmup=w,
                tags=("regime", "trend", "scale-free"),
                description=f"mean{w}(logret_1) / (std{w}(logret_1) / sqrt({w})), the drift t-statistic",
            ),
            FeatureSpec(
                name=f"regime_bull_{w}",
                family="regime",
                fn=bull_probability,
                inputs=(z,),
                params={"band": NEUTRAL_BAND},
                window=None,
                warmup=w,
                tags=("regime", "probability", "bounded"),
                description=f"Phi({z} - {NEUTRAL_BAND}), soft bull probability",
            ),
            FeatureSpec(
                name=f"regime_bear_{w}",
                family="regime",
                fn=bear_probability,
                inputs=(z,),
                params={"band": NEUTRAL_BAND},
                window=None,
                warmup=w,
                tags=("regime", "probability", "bounded"),
                description=f"Phi(-{z} - {NEUTRAL_BAND}), soft bear probability",
            ),
        ]
    out += [
        FeatureSpec(
            name=f"regime_{name}",
            family="regime",
            fn=label_code,
            inputs=(LABEL_PREFIX + name,),
            warmup=0,
            tags=("regime", "categorical", "labels"),
            description=f"position of the {name!r} regime label in the saved vocabulary; NaN while unlabelled "
            "(warm-up: the labeller's regimes.min_history, measured into result.warmup)",
        )
        for name in LABEL_NAMES
    ]
    return out
