"""The only wiring point: assets, checks, resources, IO managers, jobs, schedules and sensors.

Environment (read once here, all optional):
  PLUS_ULTRA_CONFIG  experiment YAML (default configs/smoke.yaml)
  PLUS_ULTRA_DB      candle database (default: the config's data.db_path)
  PLUS_ULTRA_HOME    artifacts root (default ./.plus_ultra): the one `artifacts` resource every asset and
                     IO manager stores under (frames and checkpoint handles in assets/, checkpoints/, reports/)
"""

from __future__ import annotations

import os

import dagster as dg

from plus_ultra_assets import schedules, sensors
from plus_ultra_assets.assets import evaluation, features, market, models, policy, serving
from plus_ultra_assets.io_managers import CHECKPOINT_IO, CheckpointIOManager, ParquetIOManager
from plus_ultra_assets.jobs import (
    observe_market_db,
    production_line,
    refresh_features,
    walkforward,
    walkforward_report_job,
)
from plus_ultra_assets.resources import ArtifactsResource, ExperimentConfigResource, MarketDatabase
from plus_ultra_ml.artifacts import home

CONFIG_PATH = os.environ.get("PLUS_ULTRA_CONFIG", "configs/smoke.yaml")
experiment = ExperimentConfigResource(path=CONFIG_PATH)
artifacts = ArtifactsResource(root=str(home(create=False)))
automation = experiment.load().automation  # read once, here: schedules need their cron when definitions load

defs = dg.Definitions(
    assets=[market.market_db, market.market_panel, market.regime_labels, features.feature_table,
            models.pretrained_backbone, models.supervised_checkpoint, policy.ppo_policy, serving.production_model,
            evaluation.walkforward_fold, evaluation.walkforward_report],
    jobs=[observe_market_db, production_line, refresh_features, walkforward, walkforward_report_job],
    schedules=[schedules.nightly_retrain(automation)],
    sensors=[sensors.new_candles_sensor(automation), sensors.fold_sensor(automation),
             sensors.run_failure_alert(automation)],
    resources={
        "experiment": experiment,
        "market_database": MarketDatabase(path=os.environ.get("PLUS_ULTRA_DB", ""), experiment=experiment),
        "artifacts": artifacts,
        "parquet_io": ParquetIOManager(artifacts=artifacts),
        CHECKPOINT_IO: CheckpointIOManager(artifacts=artifacts),
    },
)
