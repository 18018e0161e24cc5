"""Database -> validated panel -> causal regime labels -> features: the `TrainingData` the CLI and benchmarks fit on.

The Dagster assets build the same product from their upstream assets (market panel, feature table);
this is the one-call form for everything that runs without Dagster.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from plus_ultra_ml.config import ExperimentConfig
from plus_ultra_ml.data.training_data import TrainingData
from plus_ultra_ml.errors import DataContractError

if TYPE_CHECKING:
    from plus_ultra_ml.features.registry import FeatureRegistry


def load_training_data(cfg: ExperimentConfig, db_path: str | Path | None = None, *,
                       registry: FeatureRegistry | None = None) -> TrainingData:
    """Database -> validated panel -> causal regimes -> features (what the Dagster assets do, for the CLI).

    The same causality gate as the `feature_table` asset's blocking check: the features are recomputed
    on a sample of symbols truncated at random cuts, and any column whose past values move when later
    bars are removed (a look-ahead) refuses the whole assembly, naming it; nothing trains on it."""
    from plus_ultra_ml.data.panel import build_panel
    from plus_ultra_ml.data.regimes import label_regimes
    from plus_ultra_ml.features.pipeline import compute_features
    from plus_ultra_ml.features.quality import causality_spot_check

    built = build_panel(db_path or cfg.data.db_path, cfg.data)
    built.report.raise_for_errors()
    if built.schema_error:
        raise DataContractError(f"the panel from {built.db_path} breaks the panel schema: {built.schema_error}")
    regimes = label_regimes(built.panel, cfg.regimes)
    result = compute_features(built.panel, cfg.features, regimes, registry=registry)
    leaks = causality_spot_check(built.panel, result, cfg, registry=registry)
    if leaks:
        example = leaks[0].examples[0] if leaks[0].examples else {}
        raise DataContractError(
            f"features {sorted({m.column for m in leaks})} of {built.db_path} change at or before a cut when the "
            f"later bars are removed (a look-ahead; e.g. {example} at cut {leaks[0].cut}): fix or drop them "
            "(features.exclude); nothing was trained")
    return TrainingData(result.frame, built.panel, result.fingerprint, str(built.db_path), built.db_fingerprint,
                        built.panel_fingerprint, regimes)
