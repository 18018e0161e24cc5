"""A data set windowed exactly as a checkpoint saw it: its split, scaler, features and sizes.

The lineage record of a checkpoint stores its split (`Split.to_dict()`); `split_from_record` reads
it back and `policy_windows` rebuilds the windows a supervised model was trained, validated and
tested on, so PPO fine-tuning and fold scoring read the same segments and never the test segment
earlier than the model did.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

import pandas as pd

from plus_ultra_ml.checkpoints.supervised import TrainedModel
from plus_ultra_ml.config import ExperimentConfig
from plus_ultra_ml.data.calendar import panel_periods_per_year
from plus_ultra_ml.data.windows import Split, WindowedData, build_targets, build_windows
from plus_ultra_ml.errors import PlusUltraError


class Frames(Protocol):
    """The two frames windowing needs (training data as the experiments room assembles it)."""

    features: pd.DataFrame  # (symbol, timestamp) x feature columns, float32
    panel: pd.DataFrame  # the OHLCV panel on the same index (targets come from its closes)


def split_from_record(record: Mapping[str, Any]) -> Split:
    """The `Split` a lineage record stores (`Split.to_dict()`)."""
    try:
        bounds = {name: (pd.Timestamp(record[name][0]), pd.Timestamp(record[name][1]))
                  for name in record if name != "embargo"}
        return Split(bounds=bounds, embargo=int(record["embargo"]))
    except (KeyError, TypeError, ValueError) as error:
        raise PlusUltraError(f"the checkpoint's lineage holds no readable split ({error}): {dict(record)}") from None


def policy_windows(cfg: ExperimentConfig, data: Frames, supervised: TrainedModel) -> WindowedData:
    """`data` windowed exactly as the supervised model saw it: its split, scaler, features and sizes."""
    missing = [name for name in supervised.feature_names if name not in data.features.columns]
    if missing:
        raise PlusUltraError(
            f"the feature table lacks {len(missing)} feature(s) the supervised checkpoint {supervised.path} was "
            f"trained on (first: {missing[:5]}); compute features with the same features: section"
        )
    windows = cfg.windows.model_copy(update={"window": supervised.window, "horizon": supervised.horizon})
    split = split_from_record(supervised.lineage.split)
    features = data.features[list(supervised.feature_names)]
    ppy = panel_periods_per_year(data.panel, cfg.features.periods_per_year)
    return build_windows(features, build_targets(data.panel, supervised.horizon), split, windows, supervised.scaler,
                         ppy)
