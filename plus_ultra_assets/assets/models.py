"""Models group: `pretrained_backbone` (self-supervised) and `supervised_checkpoint` (risk-aware fine-tune).

Each body is one library call (plus_ultra_ml.training.fit.pretrain / train_supervised) plus
metadata: the library writes the checkpoint atomically under
``$PLUS_ULTRA_HOME/checkpoints/<asset>/<run key>/model.pt`` with its lineage embedded and beside it
(``model.lineage.json``). The supervised stage warm-starts from the checkpoint named by the `path`
metadata of the latest `pretrained_backbone` materialisation. Held-out metrics come from the test
tail of the split only (windows.test_fraction).
"""

import math
from pathlib import Path
from typing import Any

import dagster as dg
import pandas as pd

from plus_ultra_assets.metadata import latest_checkpoint
from plus_ultra_assets.resources import ExperimentConfigResource, MarketDatabase

GROUP = "models"
PRETRAINED = dg.AssetKey("pretrained_backbone")
HEADLINE = ("test_loss", "test_ic_next_bar", "test_ic_h1", "test_rank_ic_h1", "test_sharpe_net", "test_sharpe_gross",
            "test_forecast_sign_sharpe_net", "test_turnover", "val_loss", "val_ic_next_bar")
BASELINES = ("baseline_momentum_ic_next_bar", "baseline_linear_ic_next_bar")


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)


def _json(metrics: dict[str, float]) -> dg.MetadataValue:
    return dg.MetadataValue.json({k: (v if _finite(v) else None) for k, v in metrics.items()})


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
    training = result.lineage.training
    return {
        "path": dg.MetadataValue.path(str(result.checkpoint)),
        "lineage_path": dg.MetadataValue.path(str(result.checkpoint.with_name("model.lineage.json"))),
        "parameters": int(training["parameters"]),
        "epochs": int(training["epochs"]),
        "steps": int(training["steps"]),
        "wall_time_s": float(training["wall_time_s"]),
        "resumed_from_step": int(training["resumed_from_step"] or 0),
        "data_cutoff": result.lineage.data_cutoff,
        "config_hash": result.lineage.config_hash,
        "wandb_run_id": str(result.wandb_run_id or ""),
        "metrics": _json(result.metrics),
        "lineage": dg.MetadataValue.json(result.lineage.summary()),
    }


def _finite_losses_check(metrics: dict[str, float], keys: list[str]) -> dg.AssetCheckResult:
    bad = {k: metrics.get(k) for k in keys if not _finite(metrics.get(k))}
    return dg.AssetCheckResult(
        check_name="finite_losses", passed=not bad, severity=dg.AssetCheckSeverity.ERROR,
        description=None if not bad else f"non-finite losses: {bad}",
        metadata={k: float(metrics[k]) if _finite(metrics.get(k)) else "non-finite" for k in keys},
    )


@dg.asset(
    group_name=GROUP,
    kinds={"pytorch"},
    check_specs=[
        dg.AssetCheckSpec("finite_losses", asset="pretrained_backbone", blocking=True,
                          description="the best validation and the held-out pretext losses are finite"),
    ],
    description="Self-supervised backbone (pretrain: section; masked reconstruction or TS2Vec contrastive) on the "
    "training segment, early-stopped on validation; model.pt + lineage sidecar under checkpoints/pretrained_backbone.",
)
def pretrained_backbone(context: dg.AssetExecutionContext, experiment: ExperimentConfigResource,
                        market_database: MarketDatabase, market_panel: pd.DataFrame,
                        feature_table: pd.DataFrame) -> dg.MaterializeResult:
    from plus_ultra_ml.artifacts import home
    from plus_ultra_ml.training.fit import RunIds, pretrain

    cfg = experiment.load()
    result = pretrain(cfg, _training_data(feature_table, market_panel, market_database),
                      root=home() / "checkpoints" / "pretrained_backbone",
                      run_ids=RunIds(context.run.run_id, "pretrained_backbone", None),
                      progress=_progress(context, "pretrain"))
    m = result.metrics
    return dg.MaterializeResult(
        metadata={**_common_metadata(result), "objective": cfg.pretrain.objective,
                  "val_loss_best": float(m["val_loss_best"]), "test_loss": float(m.get("test_loss", math.nan))},
        check_results=[_finite_losses_check(m, [k for k in ("val_loss_best", "test_loss") if k in m])],
    )


def pretrained_backbone_path(instance: dg.DagsterInstance) -> Path:
    """The model.pt of the latest `pretrained_backbone` materialisation (its `path` metadata)."""
    missing = "supervised_checkpoint warm-starts from pretrained_backbone: materialise it first"
    return latest_checkpoint(instance, PRETRAINED, missing)[0]


@dg.asset(
    deps=[PRETRAINED],
    group_name=GROUP,
    kinds={"pytorch"},
    check_specs=[
        dg.AssetCheckSpec("finite_losses", asset="supervised_checkpoint", blocking=True,
                          description="held-out and validation losses (and every loss term) are finite"),
        dg.AssetCheckSpec("heldout_ic_positive", asset="supervised_checkpoint",
                          description="held-out IC of the next-bar return is above zero (warns with the numbers)"),
        dg.AssetCheckSpec("beats_naive_baselines", asset="supervised_checkpoint",
                          description="held-out IC is above the momentum and linear baselines on the same windows "
                          "(warns with the numbers)"),
    ],
    description="Risk-aware supervised model (train: section) warm-started from pretrained_backbone; scored on the "
    "held-out test tail only: IC by horizon, loss, position-head net Sharpe, baselines. model.pt + lineage sidecar.",
)
def supervised_checkpoint(context: dg.AssetExecutionContext, experiment: ExperimentConfigResource,
                          market_database: MarketDatabase, market_panel: pd.DataFrame,
                          feature_table: pd.DataFrame) -> dg.MaterializeResult:
    from plus_ultra_ml.artifacts import home
    from plus_ultra_ml.training.fit import RunIds, train_supervised

    cfg = experiment.load()
    parent = pretrained_backbone_path(context.instance)
    result = train_supervised(cfg, _training_data(feature_table, market_panel, market_database),
                              pretrain_checkpoint=parent, root=home() / "checkpoints" / "supervised_checkpoint",
                              run_ids=RunIds(context.run.run_id, "supervised_checkpoint", None),
                              progress=_progress(context, "train"))
    m = result.metrics
    loss_keys = [k for k in m if k.startswith(("test_loss", "val_loss"))]
    ic = m.get("test_ic_next_bar", math.nan)
    baselines = {k: m.get(k, math.nan) for k in BASELINES}
    numbers = {"test_ic_next_bar": ic, **baselines}
    ic_positive = dg.AssetCheckResult(
        check_name="heldout_ic_positive", passed=_finite(ic) and ic > 0, severity=dg.AssetCheckSeverity.WARN,
        description=None if _finite(ic) and ic > 0 else f"held-out IC of the next-bar return is {ic:.4f}",
        metadata={"test_ic_next_bar": float(ic), "test_windows": float(m.get("test_windows", 0))},
    )
    beaten = {k: v for k, v in baselines.items() if not (_finite(ic) and _finite(v) and ic > v)}
    beats = dg.AssetCheckResult(
        check_name="beats_naive_baselines", passed=not beaten, severity=dg.AssetCheckSeverity.WARN,
        description=None if not beaten else "held-out IC {:.4f} is not above {}".format(
            ic, ", ".join(f"{k} {v:.4f}" for k, v in beaten.items())),
        metadata={k: float(v) for k, v in numbers.items()},
    )
    return dg.MaterializeResult(
        metadata={**_common_metadata(result), "parent": dg.MetadataValue.path(str(parent)),
                  **{k: float(m[k]) for k in (*HEADLINE, *BASELINES) if k in m},
                  "diagnostics_warnings": dg.MetadataValue.json(result.warnings)},
        check_results=[_finite_losses_check(m, loss_keys), ic_positive, beats],
    )
