"""Jobs select assets by group, never by hand-written lists of names."""

import dagster as dg

from plus_ultra_assets.assets import features, market, models, serving

TRAINING_TAG = "plus_ultra/training"  # dagster.yaml limits runs carrying it to one at a time
PRODUCTION_GROUPS = (market.GROUP, features.GROUP, models.GROUP, serving.GROUP)
REFRESH_GROUPS = (market.GROUP, features.GROUP)

production_line = dg.define_asset_job(
    "production_line",
    selection=dg.AssetSelection.groups(*PRODUCTION_GROUPS),
    tags={TRAINING_TAG: "production"},
    description="Validate the database, rebuild every production asset from it (panel ... policy), and promote the "
    "new supervised checkpoint to production when it passes the gate.",
)

refresh_features = dg.define_asset_job(
    "refresh_features",
    selection=dg.AssetSelection.groups(*REFRESH_GROUPS),
    description="New candles: rebuild panel -> regimes -> features, without retraining.",
)

walkforward = dg.define_asset_job(
    "walkforward",
    selection=dg.AssetSelection.assets("walkforward_fold"),
    tags={TRAINING_TAG: "walkforward"},
    description="Refit and score one walk-forward fold (a partition); backfill it for the whole walk-forward.",
)

walkforward_report_job = dg.define_asset_job(
    "walkforward_report_job",
    selection=dg.AssetSelection.assets("walkforward_report"),
    description="Rebuild the walk-forward report over every materialised fold.",
)

observe_market_db = dg.define_asset_job(
    "observe_market_db",
    selection=dg.AssetSelection.assets("market_db"),
    description="Record the database's current data version (per-symbol rows and last bars).",
)
