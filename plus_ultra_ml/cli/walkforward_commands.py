"""`plus-ultra walkforward`: the walk-forward evaluation without Dagster.

The same folds (`evaluation.walkforward.plan_folds`), the same per-fold refit (`experiments.fold.run_fold`)
and the same report (`evaluation.report`) as the `walkforward_fold` partitions and the
`walkforward_report` asset; only the orchestration differs (one process, folds in order, each
fold's files kept under <out>/folds as it finishes: experiments/fold_files.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from plus_ultra_ml.cli.common import console, progress, user_errors


@user_errors
def walkforward(
    config: Annotated[Path | None, typer.Option(
        "--config", "-c", help="experiment YAML (configs/smoke.yaml, ...); not with --report-only")] = None,
    overrides: Annotated[list[str] | None, typer.Argument(
        help="dotted overrides, e.g. walkforward.seeds=3 walkforward.ppo=false")] = None,
    db: Annotated[Path | None, typer.Option("--db", help="SQLite database; default: the config's data.db_path")] = None,
    out: Annotated[Path | None, typer.Option(
        "--out", help="output folder; default $PLUS_ULTRA_HOME/walkforward/<config name>")] = None,
    fold: Annotated[list[str] | None, typer.Option(
        "--fold", help="run only this fold (a name from --list); repeat for several")] = None,
    list_folds: Annotated[bool, typer.Option(
        "--list", help="print the fold table (after checking feature warm-up leaves training rows) and stop")] = False,
    restart: Annotated[bool, typer.Option(
        "--restart", help="discard the finished folds (and their checkpoints) in --out and recompute every fold")] = False,
    report_only: Annotated[bool, typer.Option(
        "--report-only", help="rebuild the report from the finished fold files in --out; train nothing")] = False,
) -> None:
    """Refit the recipe on every closed fold's own segments, score its test window, write the report.

    Each fold's files (folds/<fold>/predictions.parquet, metrics.json, manifest.json) are written the
    moment it finishes; rerunning the same command keeps the finished folds whose manifest matches the
    config and data, and computes only the missing ones (a mismatch stops with an error: use a new
    --out or --restart). Then writes predictions.parquet (every scored fold: the model's, PPO's and
    every baseline's positions, forecasts, targets, regimes), report.html and report.md.
    """
    import logging
    import shutil
    import warnings

    from plus_ultra_ml.artifacts import home
    from plus_ultra_ml.config import load_config
    from plus_ultra_ml.errors import PlusUltraError
    from plus_ultra_ml.evaluation.walkforward import find_fold, fold_table, plan_folds
    from plus_ultra_ml.experiments.dataset import load_training_data
    from plus_ultra_ml.experiments.fold import run_walkforward
    from plus_ultra_ml.experiments.fold_files import FoldStore
    from plus_ultra_ml.experiments.warmup import check_training_rows

    if report_only:
        if out is None or config is not None or overrides or fold or restart or list_folds:
            raise PlusUltraError("--report-only takes --out DIR alone: the config comes from the fold manifests there")
        store = FoldStore(out)
        names = store.finished()
        _write_report(out, store.config(names), [store.load(name) for name in names])
        return
    if config is None:
        raise PlusUltraError("--config is required (e.g. --config configs/smoke.yaml), except with --report-only")
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*treespec.*")  # lightning's own deprecation, not ours
    cfg = load_config(config, overrides or ())
    out = out or home() / "walkforward" / cfg.name
    with progress() as bar:
        task = bar.add_task(f"loading panel and features from {db or cfg.data.db_path}", total=None)
        data = load_training_data(cfg, db)
        bar.update(task, total=1, completed=1,
                   description=f"{len(data.features):,} rows x {data.features.shape[1]} features")
        planned = plan_folds(data.panel.index.get_level_values("timestamp"), cfg.walkforward, cfg.windows)
        if list_folds:
            bar.stop()
            console.print(fold_table(planned).to_string(), soft_wrap=True, highlight=False)
            check_training_rows(cfg, data, planned)
            return
        folds = [find_fold(planned, name) for name in fold] if fold else planned
        store = FoldStore(out)
        if restart:
            store.discard()
            shutil.rmtree(out / "checkpoints", ignore_errors=True)
        steps_per_fold = cfg.walkforward.seeds * (2 if cfg.walkforward.ppo else 1)
        task = bar.add_task(f"{len(folds)} folds", total=len(folds) * steps_per_fold)

        started = 0

        def say(message: str) -> None:  # called as each step starts, and once for each kept fold
            nonlocal started
            bar.update(task, completed=started, description=message)
            started += steps_per_fold if message.endswith(", kept") else 1

        result = run_walkforward(cfg, data, root=out / "checkpoints", folds=folds, regimes=data.regimes,
                                 progress=say, store=store,
                                 on_fold=lambda r: console.print(f"{r.fold}: {len(r.predictions):,} scored rows"))
        bar.update(task, completed=len(folds) * steps_per_fold, description=f"{len(folds)} folds")
    if result.kept:
        console.print(f"kept {len(result.kept)} finished fold(s) from {store.root}: {', '.join(result.kept)}")
    _write_report(out, cfg, result.results, db)


def _write_report(out: Path, cfg, results, db: Path | None = None) -> None:
    """predictions.parquet and the report of these folds: the one road for a run and for --report-only."""
    import pandas as pd

    from plus_ultra_ml.artifacts import atomic_path
    from plus_ultra_ml.evaluation.predictions import strategies_of
    from plus_ultra_ml.evaluation.portfolio_book import report_sectors
    from plus_ultra_ml.evaluation.report import build_report, write_report

    predictions = pd.concat([r.predictions for r in results])
    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(out / "predictions.parquet") as tmp:
        predictions.to_parquet(tmp)
    report = build_report(predictions, cfg.costs, title=f"Walk-forward report ({cfg.name}, CLI)",
                          n_trials=len(strategies_of(predictions)), portfolio=cfg.portfolio, execution=cfg.backtest,
                          sectors=report_sectors(cfg, db))
    files = write_report(report, out / "report.html") + write_report(report, out / "report.md")
    console.print(report.overall[["sharpe", "sharpe_low", "sharpe_high", "total_return", "max_drawdown"]].round(3))
    console.print(f"predictions {out / 'predictions.parquet'}")
    for path in files:
        console.print(f"wrote {path}")
