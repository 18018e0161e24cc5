"""Database -> validated panel -> causal regime labels -> features: the `TrainingData` the CLI and benchmarks fit on.

The Dagster assets build the same product from their upstream assets (market panel, feature table);
this is the one-call form for everything that runs without Dagster.
"""

from __future__ import annotations

from pathlib import Path

from plus_ultra_ml.config import ExperimentConfig
from plus_ultra_ml.data.training_data import TrainingData
from plus_ultra_ml.errors import DataContractError


def load_training_data(cfg: ExperimentConfig, db_path: str | Path | None = None) -> TrainingData:
    """Database -> validated panel -> causal regimes -> features (what the Dagster assets do, for the CLI)."""
    from plus_ultra_ml.data.panel import build_panel
    from plus_ultra_ml.data.regimes import label_regimes
    from plus_ultra_ml.features.pipeline import compute_features

    built = build_panel(db_path or cfg.data.db_path, cfg.data)
    built.report.raise_for_errors()
    if built.schema_error:
        raise DataContractError(f"the panel from {built.db_path} breaks the panel schema: {built.schema_error}")
    regimes = label_regimes(built.panel, cfg.regimes)
    result = compute_features(built.panel, cfg.features, regimes)
    return TrainingData(result.frame, built.panel, result.fingerprint, str(built.db_path), built.db_fingerprint,
                        built.panel_fingerprint, regimes)
