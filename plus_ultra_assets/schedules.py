"""The nightly retraining schedule (cron and time zone from the automation section definitions.py read)."""

import dagster as dg

from plus_ultra_assets.jobs import production_line
from plus_ultra_ml.config import AutomationConfig


def nightly_retrain(automation: AutomationConfig) -> dg.ScheduleDefinition:
    return dg.ScheduleDefinition(
        name="nightly_retrain",
        job=production_line,
        cron_schedule=automation.nightly_cron,
        execution_timezone=automation.timezone,
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description=f"Retrain the production line at {automation.nightly_cron} ({automation.timezone}), whatever happens.",
    )
