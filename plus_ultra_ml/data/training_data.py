"""`TrainingData`: the product every fit reads, a feature frame on the panel it came from, with provenance.

It sits in data/ because training, RL and the experiments room all take it: the type must live
below them. Building one from a database (panel -> causal regimes -> features) needs the features
room, so that assembly lives above, in `experiments.dataset.load_training_data`; the Dagster
assets build it from their upstream assets directly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd

from plus_ultra_ml.errors import DataContractError
from plus_ultra_ml.lineage import frame_fingerprint


@dataclass(frozen=True)
class TrainingData:
    """What a fit reads: the feature frame, the panel it came from (for targets), and provenance."""

    features: pd.DataFrame  # (N, F) on the panel's (symbol, timestamp) index
    panel: pd.DataFrame  # the validated panel (close is read for targets)
    feature_fingerprint: str  # FeatureResult.fingerprint: which feature definitions
    db_path: str | None = None
    db_fingerprint: str | None = None
    panel_fingerprint: str | None = None  # frame_fingerprint(panel); computed when None
    regimes: pd.DataFrame | None = None  # the causal regime labels the features were computed with, if kept

    def __post_init__(self) -> None:
        if not self.features.index.equals(self.panel.index):
            raise DataContractError(
                "features and panel must share the (symbol, timestamp) index; compute the features from this panel"
            )
        if self.panel_fingerprint is None:
            object.__setattr__(self, "panel_fingerprint", frame_fingerprint(self.panel))

    def panel_record(self, periods_per_year: float | None = None) -> dict[str, Any]:
        """The panel's lineage entry: span, rows, symbols, fingerprint, and its resolved trading calendars
        with the bar spacing and bars per year (`periods_per_year` when pinned: features.periods_per_year),
        so serving annualises exactly as training did (data.calendar.calendar_record)."""
        from plus_ultra_ml.data.calendar import calendar_record

        times = self.panel.index.get_level_values("timestamp")
        return {"start": times.min().isoformat(), "end": times.max().isoformat(), "rows": int(len(self.panel)),
                "symbols": sorted(map(str, self.panel.index.get_level_values("symbol").unique())),
                "fingerprint": self.panel_fingerprint, **calendar_record(self.panel, periods_per_year)}
