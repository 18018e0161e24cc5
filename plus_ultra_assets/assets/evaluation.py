"""Evaluation group: one partition per walk-forward fold, and the report over every materialised fold.

`walkforward_fold[fold]` refits the recipe (supervised, then PPO when walkforward.ppo) on the fold's
own purged segments, predicts its test window and stores the out-of-sample predictions (model,
PPO and baselines, in the report format) as parquet (the frame `plus-ultra walkforward` keeps in
<out>/folds/<fold>/predictions.parquet), with the fold config hash and data fingerprint its manifest
records (experiments/fold_files.py) as metadata; checkpoints with lineage go under
checkpoints/walkforward/<fold>/. `walkforward_report` reads the materialised folds of the current plan
(a fold of another database or plan is left out; one materialised from other data or config is an
error naming it) and writes HTML + Markdown + a metrics parquet under reports/walkforward/, with the
per-symbol net Sharpe table whole in report_symbols.parquet (summarised in the metadata above 20 symbols).
"""

from pathlib import Path

import dagster as dg
import pandas as pd

from plus_ultra_assets.assets.models import _training_data
from plus_ultra_assets.metadata import per_symbol_metadata, report_table
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
                      root=artifacts.version_dir("walkforward", fold.name, run_id=context.run.run_id), regimes=regime_labels,
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
    description="The materialised folds of the current plan on one out-of-sample path: per-fold and overall "
    "metrics (bootstrap intervals) for the model, PPO and baselines, per regime, IC decay, seeds; HTML + Markdown "
    "+ parquet. Folds of another database or walk-forward plan are left out; a fold materialised from other "
    "data or config stops the report.",
)
def walkforward_report(context: dg.AssetExecutionContext, experiment: ExperimentConfigResource,
                       market_database: MarketDatabase, artifacts: ArtifactsResource, market_panel: pd.DataFrame,
                       feature_table: pd.DataFrame) -> dg.MaterializeResult:
    from plus_ultra_ml.evaluation.portfolio_book import report_sectors
    from plus_ultra_ml.evaluation.report import build_report, symbols_file, write_report
    from plus_ultra_ml.evaluation.walkforward import plan_folds
    from plus_ultra_ml.experiments.fold_files import FoldIdentity

    cfg = experiment.load()
    planned = plan_folds(market_panel.index.get_level_values("timestamp"), cfg.walkforward, cfg.windows)
    data = _training_data(feature_table, market_panel, market_database)
    current = {fold.name: FoldIdentity.of(cfg, data, fold) for fold in planned}
    materialised = set(context.instance.get_materialized_partitions(FOLD_ASSET))
    foreign = sorted(materialised - set(current))  # another database's or another plan's folds: not this report's
    folds = sorted(materialised & set(current))
    stale = [f"{name} ({why})" for name in folds if (why := _stale(context.instance, name, current[name]))]
    if stale:
        raise dg.Failure(
            f"walk-forward fold(s) {', '.join(stale)} were materialised from other data or another config than "
            "the current one: re-materialise those walkforward_fold partitions (make run does) before the report")
    if not folds:
        raise dg.Failure("no walk-forward fold of the current plan is materialised yet "
                         f"(plan: {', '.join(current) or 'none'}): materialise walkforward_fold partitions first")
    if foreign:
        context.log.info("left out %d materialised fold(s) that are not in the current plan: %s",
                         len(foreign), ", ".join(foreign))
    predictions = pd.concat([pd.read_parquet(artifacts.partition_path("walkforward_fold", f)) for f in folds])
    report = build_report(predictions, cfg.costs, title=f"Walk-forward report ({cfg.name})",
                          n_trials=len(report_strategies(predictions)), portfolio=cfg.portfolio, execution=cfg.backtest,
                          sectors=report_sectors(cfg, market_database.resolve()))
    out_dir = Path(artifacts.root) / "reports" / "walkforward"
    files = write_report(report, out_dir / "report.html") + write_report(report, out_dir / "report.md")
    return dg.MaterializeResult(metadata={
        "folds": dg.MetadataValue.json(folds),
        "left_out": dg.MetadataValue.json(foreign),
        "report_html": dg.MetadataValue.path(str(out_dir / "report.html")),
        "report_md": dg.MetadataValue.path(str(out_dir / "report.md")),
        "files": dg.MetadataValue.json([str(f) for f in files]),
        "overall": report_table(report.overall),
        "notes": dg.MetadataValue.md("\n\n".join(report.notes)),
        **per_symbol_metadata(report, symbols_file(out_dir / "report.md")),
    })


def _stale(instance: dg.DagsterInstance, fold: str, identity) -> str | None:
    """Why the fold's latest materialisation is not of `identity` (config hash, data fingerprint), or None."""
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=FOLD_ASSET, asset_partitions=[fold]), limit=1).records
    metadata = records[0].asset_materialization.metadata if records else {}
    recorded = {key: getattr(metadata.get(key), "value", None) for key in ("fold_config_hash", "data_fingerprint")}
    now = {"fold_config_hash": identity.config_hash, "data_fingerprint": identity.data_fingerprint}
    differ = [f"{key} {str(recorded[key])[:12]} there, {now[key][:12]} now" for key in now if recorded[key] != now[key]]
    return "; ".join(differ) or None


def report_strategies(predictions: pd.DataFrame) -> list[str]:
    from plus_ultra_ml.evaluation.predictions import strategies_of

    return strategies_of(predictions)
