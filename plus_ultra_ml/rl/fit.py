"""Entry point: a supervised checkpoint in, a PPO policy checkpoint with lineage out.

`finetune_checkpoint(cfg, data, supervised)` is what `plus-ultra finetune`, the `ppo_policy` asset
and the walk-forward room call:

1. load the supervised `model.pt` (checkpoints/supervised.py) and rebuild its windows from `data` with
   the checkpoint's own split, scaler, feature names, window and horizon (checkpoints/windows.py
   `policy_windows`): PPO trains on the same training segment, selects on the same validation
   segment and never reads the test segment until the final held-out score;
2. `rl.ppo.finetune` (the `rl:` section, costs from `costs:`, seed from `seed:`);
3. decide, on the validation segment only, whether the PPO policy or the supervised head is handed
   on (rl/select.py, `rl.selection`; recorded as lineage `training.selection` and metrics
   `selection_kept`, `val_gain_bps` with its interval);
   then score the PPO policy, the supervised position head and buy-and-hold on the test segment (if
   the split has one) with the same portfolio arithmetic (plus a 95% interval of PPO's net Sharpe);
4. write `policy.pt` (checkpoints/policy.py) atomically under `root/<run key>/` (default
   `$PLUS_ULTRA_HOME/checkpoints/ppo_policy`) with a lineage record whose parent is the supervised
   checkpoint (path, sha256, kind, data cutoff), and `policy.lineage.json` beside it.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from plus_ultra_ml.artifacts import file_fingerprint, home
from plus_ultra_ml.checkpoints.policy import POLICY_KIND, write_policy
from plus_ultra_ml.checkpoints.supervised import load_checkpoint
from plus_ultra_ml.checkpoints.windows import policy_windows
from plus_ultra_ml.config import ExperimentConfig
from plus_ultra_ml.data.training_data import TrainingData
from plus_ultra_ml.evaluation.heldout import segment_periods_per_year, sharpe_interval
from plus_ultra_ml.lineage import LineageRecord, code_version, now_utc
from plus_ultra_ml.models.encoder import RowEncoder
from plus_ultra_ml.rl.env import EnvConfig
from plus_ultra_ml.rl.evaluate import portfolio_pnl
from plus_ultra_ml.rl.ppo import PPOResult, UpdateRecord, finetune, segment_scores
from plus_ultra_ml.rl.select import Selection, select_policy
from plus_ultra_ml.rl.trained import env_record
from plus_ultra_ml.training.fit import RunIds
from plus_ultra_ml.training.tracking import make_tracking

logger = logging.getLogger(__name__)

ARTIFACT = "policy.pt"


@dataclass(frozen=True)
class PolicyFitResult:
    checkpoint: Path  # policy.pt: load with rl.trained.load_policy
    lineage: LineageRecord
    metrics: dict[str, float]  # val_{ppo,supervised,buy_and_hold}_*, test_* likewise (if a test segment), run facts
    history: list[dict[str, Any]]  # one row per update (UpdateRecord.to_dict()), update 0 = the starting policy
    ppo: PPOResult = field(repr=False)
    test_positions: pd.Series | None = field(default=None, repr=False)  # the PPO policy on the test segment
    selection: Selection | None = None  # PPO or the supervised head, decided on validation (rl/select.py)

    @property
    def improved(self) -> bool:
        return self.ppo.improved

    @property
    def kept(self) -> bool:
        """The selection handed the PPO policy on (False: the fold's policy is the supervised head)."""
        return self.selection is not None and self.selection.kept


def run_key(cfg: ExperimentConfig, parent_fingerprint: str, data: TrainingData) -> str:
    """Hash of what determines the policy: config, supervised parent, data."""
    blob = json.dumps({"kind": POLICY_KIND, "config": cfg.fingerprint(), "parent": parent_fingerprint,
                       "features": data.feature_fingerprint, "panel": data.panel_fingerprint}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _track(cfg: ExperimentConfig, data: TrainingData, run_ids: RunIds, run_dir: Path,
           history: list[UpdateRecord]) -> str | None:
    """The fine-tune's W&B run (training/tracking.py, job type ppo): one step per PPO update; its id."""
    run_dir.mkdir(parents=True, exist_ok=True)
    tracking = make_tracking(cfg.tracking, run_dir, run_ids.tracking("ppo", cfg, data.db_fingerprint), cfg.to_dict())
    try:
        for record in history:
            values = {f"ppo/{k}": float(v) for k, v in record.to_dict().items()
                      if isinstance(v, int | float) and k != "update"}
            tracking.log(values, step=int(record.update))
        return tracking.run_id()
    finally:
        tracking.finish()


def finetune_checkpoint(
    cfg: ExperimentConfig,
    data: TrainingData,
    supervised: str | Path,
    *,
    root: str | Path | None = None,
    run_ids: RunIds = RunIds(),
    progress: Callable[[UpdateRecord], None] | None = None,
    encoder: RowEncoder | None = None,
) -> PolicyFitResult:
    """PPO fine-tuning of the supervised checkpoint at `supervised` (see the module docstring).

    `encoder`: backbone states the caller already computed with this checkpoint's weights (the walk-forward
    fold's, models/encoder.py); used only where the weights and the windowed rows are equal."""
    supervised = Path(supervised)
    model = load_checkpoint(supervised)
    if model.kind != "supervised":
        logger.warning("fine-tuning a %r checkpoint: its position head was not trained for positions", model.kind)
    windowed = policy_windows(cfg, data, model)
    parent_fp = file_fingerprint(supervised)
    base_dir = Path(root) if root is not None else home() / "checkpoints" / POLICY_KIND
    path = (base_dir / run_key(cfg, parent_fp, data) / ARTIFACT).resolve()
    result = finetune(model.net, windowed, cfg.rl, cfg.costs, seed=cfg.seed, progress=progress, encoder=encoder)
    wandb_run_id = _track(cfg, data, run_ids, path.parent, result.history)
    metrics = result.metrics()
    # PPO or the head: validation PnL only (the test segment has not been read yet)
    selection = select_policy(portfolio_pnl(result.val_positions, windowed, cfg.costs),
                              portfolio_pnl(result.val_head_positions, windowed, cfg.costs), cfg.rl.selection,
                              moved=result.best_update > 0, seed=cfg.seed)
    metrics.update(selection.metrics())
    last = result.history[-1]  # the losses of the last update (finite_losses in the promotion gate)
    metrics.update({"ppo_policy_loss": last.policy_loss, "ppo_value_loss": last.value_loss})
    logger.info("ppo selection: %s", selection.reason)
    test_positions = None
    if len(windowed.ends.get("test", ())):
        positions, scores = segment_scores(result.policy, windowed, "test", cfg.rl, cfg.costs, result.encoder)
        for who, score in scores.items():
            metrics.update({f"test_{who}_{k}": v for k, v in score.items()})
        low, high = sharpe_interval(portfolio_pnl(positions, windowed, cfg.costs), segment_periods_per_year(windowed))
        metrics.update({"test_ppo_sharpe_net_low": low, "test_ppo_sharpe_net_high": high})
        test_positions = positions.to_series(windowed)
    # the supervised parent's held-out baselines were scored on the same test windows: the gate compares with them
    metrics.update({k: float(v) if isinstance(v, int | float) else float("nan")  # JSON lineage: NaN reads as None
                    for k, v in model.lineage.metrics.items() if k.startswith("baseline_")})
    parent = {"path": str(supervised.resolve()), "fingerprint": parent_fp, "kind": model.kind,
              "data_cutoff": model.lineage.data_cutoff}
    base = model.lineage
    trainable = sum(p.numel() for p in result.policy.parameters() if p.requires_grad)
    lineage = LineageRecord(
        kind=POLICY_KIND,
        created_at=now_utc(),
        database=dict(base.database),
        panel=data.panel_record(),
        features=dict(base.features),
        config=cfg.to_dict(),
        config_hash=cfg.fingerprint(),
        code_version=dict(code_version()),
        seed=cfg.seed,
        data_cutoff=windowed.split.cutoff.isoformat(),  # rollouts read train, selection read val: nothing later
        split=windowed.split.to_dict(),
        parent=parent,
        run_ids={"dagster_run_id": run_ids.dagster_run_id, "dagster_asset": run_ids.dagster_asset,
                 "dagster_partition": run_ids.dagster_partition, "wandb_run_id": wandb_run_id},
        metrics=metrics,
        training={"updates": cfg.rl.updates, "best_update": result.best_update, "env_steps": result.env_steps,
                  "wall_time_s": round(result.wall_time_s, 3), "freeze": cfg.rl.freeze,
                  "parameters": sum(p.numel() for p in result.policy.parameters()), "trainable_parameters": trainable,
                  "action_distribution": cfg.rl.action_distribution, "collapse": result.collapse.message,
                  "selection": selection.record()},
    )
    write_policy(path, net=result.policy.net, state_proj=result.policy.state_proj.weight,
                 env=env_record(EnvConfig.from_config(cfg.rl, cfg.costs)), feature_names=windowed.feature_names,
                 scaler=windowed.scaler, window=windowed.window, horizon=windowed.horizon, lineage=lineage)
    logger.info("ppo policy written to %s (best update %d, validation net Sharpe %.3f vs supervised %.3f)", path,
                result.best_update, metrics["val_ppo_sharpe_net"], metrics["val_supervised_sharpe_net"])
    return PolicyFitResult(path, lineage, metrics, [r.to_dict() for r in result.history], result, test_positions,
                           selection)

