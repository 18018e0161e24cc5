"""Experiment tracking: a CSV log always, W&B in offline mode by default, never the network.

`tracking.mode` is `offline` (W&B writes its run under ``$WANDB_DIR``, or the run directory when
it is unset, so `wandb sync $WANDB_DIR/wandb/offline-run-*` uploads them later, by hand) or
`disabled` (no W&B at all). The environment variable ``WANDB_MODE=disabled`` (or ``WANDB_DISABLED``)
also disables it (the test suite sets it); ``WANDB_MODE=offline`` or ``dryrun`` (what Lightning's
offline logger itself sets for the rest of the process) mean offline, as asked. `online` is refused:
Plus Ultra never needs the network.

Every fit is one W&B run: the supervised and pretraining fits (Lightning's logger) and the PPO
fine-tune (its per-update history), each with the stage as job type, grouped by the Dagster run
(``local`` outside Dagster) and named by stage, partition (the fold) and run directory, with the
config hash, data fingerprint and Dagster ids in its config. The run id goes into the lineage.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lightning.pytorch.loggers import CSVLogger, Logger

from plus_ultra_ml.config import ConfigError, TrackingConfig

logger = logging.getLogger(__name__)


def tracking_mode(cfg: TrackingConfig) -> str:
    """'offline' or 'disabled' (the environment can only turn W&B off, never on)."""
    if cfg.mode == "online":
        raise ConfigError(
            "tracking.mode=online would need the network; use offline (then `wandb sync <run dir>` by hand) "
            "or disabled"
        )
    disabled = os.environ.get("WANDB_DISABLED", "").lower() not in ("", "0", "false")
    if os.environ.get("WANDB_MODE", "").lower() == "disabled" or disabled:
        return "disabled"
    return cfg.mode


def wandb_dir(run_dir: Path) -> Path:
    """Where W&B writes its offline runs: $WANDB_DIR (one place for `wandb sync`), else the run directory."""
    return Path(os.environ.get("WANDB_DIR") or run_dir)


@dataclass(frozen=True)
class RunContext:
    """Who asked for a fit and on what, for grouping and tracing its W&B run."""

    stage: str  # pretrain, supervised, ppo: the W&B job type
    config_hash: str
    data_fingerprint: str | None = None
    dagster_run_id: str | None = None
    dagster_partition: str | None = None  # the walk-forward fold

    def group(self) -> str:
        return self.dagster_run_id or "local"

    def name(self, run_dir: Path) -> str:
        return "-".join(p for p in (self.stage, self.dagster_partition, run_dir.name) if p)

    def record(self) -> dict[str, Any]:
        return {"config_hash": self.config_hash, "data_fingerprint": self.data_fingerprint,
                "dagster_run_id": self.dagster_run_id, "dagster_partition": self.dagster_partition}


@dataclass
class Tracking:
    loggers: list[Logger]
    wandb: Any | None  # lightning's WandbLogger when active

    def run_id(self) -> str | None:
        """The W&B run id (creates the offline run if it was not yet started)."""
        if self.wandb is None:
            return None
        return str(self.wandb.experiment.id)

    def log(self, metrics: dict[str, float], step: int) -> None:
        """Metrics of a fit that is not a Lightning Trainer's (PPO's updates) to every logger."""
        for one in self.loggers:
            one.log_metrics(metrics, step=step)

    def finish(self) -> None:
        """Close the W&B run so the next fit in this process starts a new one."""
        if self.wandb is not None:
            import wandb

            if wandb.run is not None:
                wandb.finish()
        for one in self.loggers:
            one.save()


def make_tracking(cfg: TrackingConfig, run_dir: Path, context: RunContext, config: dict[str, Any],
                  run_id: str | None = None) -> Tracking:
    """CSV metrics under `run_dir/logs` and, unless disabled, an offline W&B run under `wandb_dir(run_dir)`."""
    loggers: list[Logger] = [CSVLogger(save_dir=str(run_dir), name="logs", version=0)]
    wandb_logger = None
    if tracking_mode(cfg) == "offline":
        from lightning.pytorch.loggers import WandbLogger

        os.environ.setdefault("WANDB_SILENT", "true")
        save_dir = wandb_dir(run_dir)
        save_dir.mkdir(parents=True, exist_ok=True)
        wandb_logger = WandbLogger(project=cfg.project, name=context.name(run_dir), save_dir=str(save_dir),
                                   offline=True, config={**config, **context.record()}, id=run_id,
                                   resume="allow" if run_id else None, group=context.group(),
                                   job_type=context.stage)
        loggers.append(wandb_logger)
    return Tracking(loggers, wandb_logger)
