"""Evaluation group: one partition per walk-forward fold, and the report over every materialised fold.

`walkforward_fold[fold]` refits the recipe (supervised, then PPO when walkforward.ppo) on the fold's
own purged segments, predicts its test window and stores the out-of-sample predictions (model,
PPO and baselines, in the report format) as parquet (the frame `plus-ultra walkforward` keeps in
<out>/folds/<fold>/predictions.parquet), with the fold config hash and data fingerprint its manifest
records (experiments/fold_files.py) as metadata; checkpoints with lineage go under
checkpoints/walkforward/<fold>/. `walkforward_report` reads the folds that are materialised and
writes HTML + Markdown + a metrics parquet under reports/walkforward/.
"""

from pathlib import Path

import dagster as dg
import pandas as pd

from plus_ultra_assets.assets.models import _training_data
from plus_ultra_assets.metadata import report_table
from plus_ultra_assets.partitions import FOLDS
from plus_ultra_assets.resources import ArtifactsResource, ExperimentConfigResource, MarketDatabase

GROUP = "evaluation"
FOLD_ASSET = dg.AssetKey("walkforward_fold")


@dg.asset(
    partitions_def=FOLDS,
    group_name=GROUP,
    io_manager_key="parquet_io",
    kinds={"pytorch", "parquet"},
    check_specs=[dg.AssetCheckSpec("scored_out_of_sample", asset="walkforward_fold", blocking=True,
                                   description="every scored bar lies in the fold's test window, after its cutoff")],
    description="One walk-forward fold: refit on its own train/validation segments (embargo >= window + horizon), "
    "predict its test window; out-of-sample predictions of the model, PPO and every baseline.",
)
def walkforward_fold(context: dg.AssetExecutionContext, experiment: ExperimentConfigResource,
                     market_database: MarketDatabase, artifacts: ArtifactsResource, market_panel: pd.DataFrame,
                     feature_table: pd.DataFrame, regime_labels: pd.DataFrame):
    from plus_ultra_ml.evaluation.walkforward import find_fold, plan_folds
    from plus_ultra_ml.experiments.fold import run_fold
    from plus_ultra_ml.experiments.fold_files import FoldIdentity
    from plus_ultra_ml.experiments.warmup import check_training_rows
    from plus_ultra_ml.training.fit import RunIds

    cfg = experiment.load()
    fold = find_fold(plan_folds(market_panel.index.get_level_values("timestamp"), cfg.walkforward, cfg.windows),
                     context.partition_key)
    data = _training_data(feature_table, market_panel, market_database)
    check_training_rows(cfg, data, [fold])  # a warm-up that eats the training segment, named before training
    identity = FoldIdentity.of(cfg, data, fold)  # the same identity the CLI's fold manifests record
    result = run_fold(cfg, data, fold,
                      root=artifacts.checkpoints_dir("walkforward", fold.name), regimes=regime_labels,
                      run_ids=RunIds(context.run.run_id, "walkforward_fold", fold.name), progress=context.log.info)
    times = result.predictions.index.get_level_values("timestamp")
    first, last = fold.split.bounds["test"]
    inside = bool(((times >= first) & (times <= last)).all()) and times.min() > fold.cutoff
    yield dg.Output(result.predictions, metadata={
        "fold": fold.name, "rows": len(result.predictions),
        "test_window": f"{first} .. {last}", "data_cutoff": fold.cutoff.isoformat(),
        "split": dg.MetadataValue.json(fold.split.to_dict()),
        "checkpoints": dg.MetadataValue.json(result.checkpoints),
        "metrics": dg.MetadataValue.json({k: float(v) for k, v in result.metrics.items()}),
        "fold_config_hash": identity.config_hash, "data_fingerprint": identity.data_fingerprint,
    })
    yield dg.AssetCheckResult(check_name="scored_out_of_sample", passed=inside, severity=dg.AssetCheckSeverity.ERROR,
                              metadata={"first_scored": str(times.min()), "last_scored": str(times.max()),
                                        "cutoff": fold.cutoff.isoformat()})


@dg.asset(
    deps=[FOLD_ASSET],
    group_name=GROUP,
    kinds={"html", "parquet", "duckdb"},
    description="Every materialised fold on one out-of-sample path: per-fold and overall metrics (bootstrap "
    "intervals) for the model, PPO and baselines, per regime, IC decay, seeds; HTML + Markdown + parquet.",
)
def walkforward_report(context: dg.AssetExecutionContext, experiment: ExperimentConfigResource,
                       artifacts: ArtifactsResource) -> dg.MaterializeResult:
    from plus_ultra_ml.evaluation.report import build_report, write_report

    cfg = experiment.load()
    folds = sorted(context.instance.get_materialized_partitions(FOLD_ASSET))
    if not folds:
        raise dg.Failure("no walk-forward fold is materialised yet: materialise walkforward_fold partitions first")
    predictions = pd.concat([pd.read_parquet(artifacts.partition_path("walkforward_fold", f)) for f in folds])
    report = build_report(predictions, cfg.costs, title=f"Walk-forward report ({cfg.name})",
                          n_trials=len(report_strategies(predictions)))
    out_dir = Path(artifacts.root) / "reports" / "walkforward"
    files = write_report(report, out_dir / "report.html") + write_report(report, out_dir / "report.md")
    return dg.MaterializeResult(metadata={
        "folds": dg.MetadataValue.json(folds),
        "report_html": dg.MetadataValue.path(str(out_dir / "report.html")),
        "report_md": dg.MetadataValue.path(str(out_dir / "report.md")),
        "files": dg.MetadataValue.json([str(f) for f in files]),
        "overall": report_table(report.overall),
        "notes": dg.MetadataValue.md("\n\n".join(report.notes)),
    })


def report_strategies(predictions: pd.DataFrame) -> list[str]:
    from plus_ultra_ml.evaluation.predictions import strategies_of

    return strategies_of(predictions)
