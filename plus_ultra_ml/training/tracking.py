"""Experiment tracking: a CSV log always, W&B in offline mode by default, never the network.

`tracking.mode` is `offline` (W&B writes its run under the run directory; `wandb sync` can upload
it later, by hand) or `disabled` (no W&B at all). The environment variable ``WANDB_MODE=disabled``
also disables it (the test suite sets it). `online` is refused: Plus Ultra never needs the network.
The W&B run id goes into the checkpoint's lineage.
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
    if os.environ.get("WANDB_MODE", "").lower() in ("disabled", "dryrun") or os.environ.get("WANDB_DISABLED"):
        return "disabled"
    return cfg.mode


@dataclass
class Tracking:
    loggers: list[Logger]
    wandb: Any | None  # lightning's WandbLogger when active

    def run_id(self) -> str | None:
        """The W&B run id (creates the offline run if it was not yet started)."""
        if self.wandb is None:
            return None
        return str(self.wandb.experiment.id)

    def finish(self) -> None:
        """Close the W&B run so the next fit in this process starts a new one."""
        if self.wandb is not None:
            import wandb

            if wandb.run is not None:
                wandb.finish()


def make_tracking(cfg: TrackingConfig, run_dir: Path, name: str, config: dict[str, Any],
                  run_id: str | None = None) -> Tracking:
    """CSV metrics under `run_dir/logs` and, unless disabled, an offline W&B run under `run_dir`."""
    loggers: list[Logger] = [CSVLogger(save_dir=str(run_dir), name="logs", version=0)]
    wandb_logger = None
    if tracking_mode(cfg) == "offline":
        from lightning.pytorch.loggers import WandbLogger

        os.environ.setdefault("WANDB_SILENT", "true")
        wandb_logger = WandbLogger(project=cfg.project, name=name, save_dir=str(run_dir), offline=True,
                                   config=config, id=run_id, resume="allow" if run_id else None)
        loggers.append(wandb_logger)
    return Tracking(loggers, wandb_logger)
