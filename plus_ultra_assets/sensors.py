"""Sensors: new candles in the database, closed walk-forward folds, and failed runs.

Every choice a sensor makes comes from the `AutomationConfig` it is built with (definitions.py reads
the automation section once, when the definitions load); the experiment resource gives only what
the sensor reads from the data (database timeouts, the fold plan).
"""

import json
import logging
import urllib.request

import dagster as dg
import pandas as pd

from plus_ultra_assets.jobs import production_line, refresh_features, walkforward
from plus_ultra_assets.metadata import last_bars_metadata
from plus_ultra_assets.partitions import FOLDS
from plus_ultra_assets.resources import ArtifactsResource, ExperimentConfigResource, MarketDatabase
from plus_ultra_ml.config import AutomationConfig

log = logging.getLogger(__name__)
DATA_VERSION_TAG = "plus_ultra/data_version"


def _materialised_version(instance: dg.DagsterInstance) -> str | None:
    """The database version the latest market_panel was built from (None if never built)."""
    event = instance.get_latest_materialization_event(dg.AssetKey("market_panel"))
    if event is None or event.asset_materialization is None:
        return None
    value = event.asset_materialization.metadata.get("market_data_version")
    return None if value is None else str(value.value)


def new_candles_sensor(automation: AutomationConfig) -> dg.SensorDefinition:
    @dg.sensor(
        name="new_candles_sensor",
        jobs=[production_line, refresh_features],
        minimum_interval_seconds=automation.sensor_interval_s,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Reads the database read-only; one run per new data version (per-symbol rows + last bars).",
    )
    def _sensor(context: dg.SensorEvaluationContext, market_database: MarketDatabase,
                experiment: ExperimentConfigResource, artifacts: ArtifactsResource):
        from plus_ultra_ml.data.store import data_version, series_summary

        cfg = experiment.load()
        summary = series_summary(market_database.resolve(), cfg.data.busy_timeout_s)
        version = data_version(summary)
        seen = context.cursor or _materialised_version(context.instance)
        if version == seen:
            context.update_cursor(version)
            return dg.SkipReason(f"no new candles (data version {version})")
        context.update_cursor(version)  # persisted with the tick: survives restarts
        job = production_line if automation.retrain_on_new_candles else refresh_features
        observation = dg.AssetObservation(  # the UI shows market_db's new data version (and what is stale)
            asset_key="market_db", tags={"dagster/data_version": version},
            metadata={"symbols": len(summary), **last_bars_metadata(summary, version, artifacts.root)})
        request = dg.RunRequest(run_key=f"candles-{version}", job_name=job.name, tags={DATA_VERSION_TAG: version})
        return dg.SensorResult(run_requests=[request], asset_events=[observation])

    return _sensor


def run_failure_alert(automation: AutomationConfig) -> dg.RunStatusSensorDefinition:
    @dg.run_failure_sensor(name="run_failure_alert", default_status=dg.DefaultSensorStatus.RUNNING,
                           description="A clear log line (and a webhook POST when configured) per failed run.")
    def _sensor(context: dg.RunFailureSensorContext):
        run = context.dagster_run
        message = context.failure_event.message or "run failed"
        line = f"plus-ultra run {run.run_id} ({run.job_name}) failed: {message}"
        context.log.error(line)
        log.error(line)
        if automation.failure_webhook:
            payload = json.dumps({"run_id": run.run_id, "job": run.job_name, "message": message}).encode()
            request = urllib.request.Request(automation.failure_webhook, data=payload,
                                             headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(request, timeout=10):
                pass

    return _sensor


def fold_sensor(automation: AutomationConfig) -> dg.SensorDefinition:
    """Adds a walk-forward partition when a fold's test window has closed in the latest panel."""

    @dg.sensor(
        name="walkforward_fold_sensor",
        job=walkforward,
        minimum_interval_seconds=automation.sensor_interval_s,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Plans folds on the latest market_panel; adds closed folds as partitions (and runs them when "
        "automation.materialise_new_folds).",
    )
    def _sensor(context: dg.SensorEvaluationContext, experiment: ExperimentConfigResource,
                artifacts: ArtifactsResource):
        from plus_ultra_ml.evaluation.walkforward import plan_folds

        path = artifacts.asset_path("market_panel")
        if not path.exists():
            return dg.SkipReason(f"market_panel is not materialised yet ({path})")
        cfg = experiment.load()
        times = pd.read_parquet(path, columns=[]).index.get_level_values("timestamp")
        planned = [fold.name for fold in plan_folds(times, cfg.walkforward, cfg.windows)]
        known = set(context.instance.get_dynamic_partitions(FOLDS.name))
        new = [name for name in planned if name not in known]
        if not new:
            return dg.SkipReason(f"no newly closed fold ({len(planned)} planned, all known)")
        runs = [dg.RunRequest(partition_key=name, run_key=f"fold-{name}") for name in new] \
            if automation.materialise_new_folds else []
        return dg.SensorResult(run_requests=runs, dynamic_partitions_requests=[FOLDS.build_add_request(new)])

    return _sensor
