"""Models group: `pretrained_backbone` (self-supervised) and `supervised_checkpoint` (risk-aware fine-tune).

Each body is one library call (plus_ultra_ml.training.fit.pretrain / train_supervised) plus
metadata: the library writes the checkpoint atomically under
``<artifacts root>/checkpoints/<asset>/<run key>/model.pt`` with its lineage embedded and beside it
(``model.lineage.json``), and the asset returns a `CheckpointRef` to it. The checkpoint IO manager
stores that handle and hands it on: `supervised_checkpoint` receives `pretrained_backbone` as a
typed input and warm-starts from it. Held-out metrics come from the test tail of the split only
(windows.test_fraction); the supervised checks are the promotion gate's held-out criteria
(plus_ultra_ml.serving.gate), one check per criterion.
"""

import math
from typing import Any

import dagster as dg
import pandas as pd

from plus_ultra_assets.io_managers import CHECKPOINT_IO, checkpoint_input
from plus_ultra_assets.resources import ArtifactsResource, ExperimentConfigResource, MarketDatabase
from plus_ultra_ml.checkpoints.ref import CheckpointRef
from plus_ultra_ml.serving.gate import BASELINES, HELDOUT_CRITERIA, CheckOutcome, finite_losses, heldout_outcomes

GROUP = "models"
HEADLINE = ("test_loss", "test_ic_next_bar", "test_ic_h1", "test_rank_ic_h1", "test_sharpe_net", "test_sharpe_gross",
            "test_forecast_sharpe_net", "test_turnover", "val_loss", "val_ic_next_bar")
SEVERITY = {"error": dg.AssetCheckSeverity.ERROR, "warn": dg.AssetCheckSeverity.WARN}


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)


def _json(metrics: dict[str, float]) -> dg.MetadataValue:
    return dg.MetadataValue.json({k: (v if _finite(v) else None) for k, v in metrics.items()})


def check_result(outcome: CheckOutcome) -> dg.AssetCheckResult:
    """A gate criterion's outcome as the asset check of the same name and severity."""
    return dg.AssetCheckResult(
        check_name=outcome.name, passed=outcome.passed, severity=SEVERITY[outcome.severity],
        description=None if outcome.passed else outcome.detail,
        metadata={k: float(v) if _finite(v) else "non-finite" for k, v in outcome.numbers.items()},
    )


def gate_check_results(metrics: dict[str, float]) -> list[dg.AssetCheckResult]:
    """The supervised checkpoint's asset checks: the promotion gate's held-out criteria on its metrics."""
    return [check_result(outcome) for outcome in heldout_outcomes(metrics)]


def _training_data(feature_table: pd.DataFrame, market_panel: pd.DataFrame, market_database: MarketDatabase):
    from plus_ultra_ml.data.training_data import TrainingData
    from plus_ultra_ml.lineage import database_fingerprint, frame_fingerprint

    fingerprint = (feature_table.attrs.get("plus_ultra.features") or {}).get("fingerprint") \
        or frame_fingerprint(feature_table)
    db = market_database.resolve()
    return TrainingData(feature_table, market_panel, fingerprint, str(db), database_fingerprint(db))


def _progress(context: dg.AssetExecutionContext, kind: str):
    """Log about ten lines per run (every tenth of the optimiser steps)."""

    def report(done: int, total: int, metrics: dict[str, float]) -> None:
        every = max(total // 10, 1)
        if total and (done % every == 0 or done == total):
            loss = metrics.get("train/loss_step", float("nan"))
            context.log.info(f"{kind}: step {done}/{total}, epoch {int(metrics['epoch'])}, loss {loss:.4f}")

    return report


def _common_metadata(result) -> dict[str, Any]:
    """What both stages add to the checkpoint IO manager's path, sha256 and lineage."""
    training = result.lineage.training
    return {
        "parameters": int(training["parameters"]),
        "epochs": int(training["epochs"]),
        "steps": int(training["steps"]),
        "wall_time_s": float(training["wall_time_s"]),
        "resumed_from_step": int(training["resumed_from_step"] or 0),
        "data_cutoff": result.lineage.data_cutoff,
        "config_hash": result.lineage.config_hash,
        "wandb_run_id": str(result.wandb_run_id or ""),
        "metrics": _json(result.metrics),
    }


@dg.asset(
    group_name=GROUP,
    kinds={"pytorch"},
    io_manager_key=CHECKPOINT_IO,
    check_specs=[
        dg.AssetCheckSpec("finite_losses", asset="pretrained_backbone", blocking=True,
                          description="the best validation and the held-out pretext losses are finite"),
    ],
    description="Self-supervised backbone (pretrain: section; masked reconstruction or TS2Vec contrastive) on the "
    "training segment, early-stopped on validation; model.pt + lineage sidecar under checkpoints/pretrained_backbone.",
)
def pretrained_backbone(context: dg.AssetExecutionContext, experiment: ExperimentConfigResource,
                        market_database: MarketDatabase, artifacts: ArtifactsResource, market_panel: pd.DataFrame,
                        feature_table: pd.DataFrame):
    from plus_ultra_ml.training.fit import RunIds, pretrain

    cfg = experiment.load()
    result = pretrain(cfg, _training_data(feature_table, market_panel, market_database),
                      root=artifacts.version_dir("pretrained_backbone", run_id=context.run.run_id),
                      run_ids=RunIds(context.run.run_id, "pretrained_backbone", None),
                      progress=_progress(context, "pretrain"))
    m = result.metrics
    yield dg.Output(CheckpointRef(result.checkpoint, result.lineage), metadata={
        **_common_metadata(result), "objective": cfg.pretrain.objective,
        "val_loss_best": float(m["val_loss_best"]), "test_loss": float(m.get("test_loss", math.nan))})
    yield check_result(finite_losses(m, [k for k in ("val_loss_best", "test_loss") if k in m]))


@dg.asset(
    ins={"pretrained_backbone": checkpoint_input("pretrained_backbone")},
    group_name=GROUP,
    kinds={"pytorch"},
    io_manager_key=CHECKPOINT_IO,
    check_specs=[dg.AssetCheckSpec(c.name, asset="supervised_checkpoint", blocking=c.severity == "error",
                                   description=c.description) for c in HELDOUT_CRITERIA],
    description="Risk-aware supervised model (train: section) warm-started from pretrained_backbone; scored on the "
    "held-out test tail only: IC by horizon, loss, position-head net Sharpe, baselines. model.pt + lineage sidecar.",
)
def supervised_checkpoint(context: dg.AssetExecutionContext, experiment: ExperimentConfigResource,
                          market_database: MarketDatabase, artifacts: ArtifactsResource, market_panel: pd.DataFrame,
                          feature_table: pd.DataFrame, pretrained_backbone: CheckpointRef):
    from plus_ultra_ml.training.fit import RunIds, train_supervised

    cfg = experiment.load()
    result = train_supervised(cfg, _training_data(feature_table, market_panel, market_database),
                              pretrain_checkpoint=pretrained_backbone.path,
                              root=artifacts.version_dir("supervised_checkpoint", run_id=context.run.run_id),
                              run_ids=RunIds(context.run.run_id, "supervised_checkpoint", None),
                              progress=_progress(context, "train"))
    m = result.metrics
    yield dg.Output(CheckpointRef(result.checkpoint, result.lineage), metadata={
        **_common_metadata(result), "parent": dg.MetadataValue.path(str(pretrained_backbone.path)),
        **{k: float(m[k]) for k in (*HEADLINE, *BASELINES) if k in m},
        "diagnostics_warnings": dg.MetadataValue.json(result.warnings)})
    yield from gate_check_results(m)
