"""`plus-ultra walkforward`: the walk-forward evaluation without Dagster.

The same folds (`evaluation.walkforward.plan_folds`), the same per-fold refit (`experiments.fold.run_fold`)
and the same report (`evaluation.report`) as the `walkforward_fold` partitions and the
`walkforward_report` asset; only the orchestration differs (one process, folds in order).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from plus_ultra_ml.cli.common import console, progress, user_errors


@user_errors
def walkforward(
    config: Annotated[Path, typer.Option("--config", "-c", help="experiment YAML (configs/smoke.yaml, ...)")],
    overrides: Annotated[list[str] | None, typer.Argument(
        help="dotted overrides, e.g. walkforward.seeds=3 walkforward.ppo=false")] = None,
    db: Annotated[Path | None, typer.Option("--db", help="SQLite database; default: the config's data.db_path")] = None,
    out: Annotated[Path | None, typer.Option(
        "--out", help="output folder; default $PLUS_ULTRA_HOME/walkforward/<config name>")] = None,
    fold: Annotated[list[str] | None, typer.Option(
        "--fold", help="run only this fold (a name from --list); repeat for several")] = None,
    list_folds: Annotated[bool, typer.Option("--list", help="print the fold table and stop")] = False,
) -> None:
    """Refit the recipe on every closed fold's own segments, score its test window, write the report.

    Writes predictions.parquet (one row per (symbol, bar) of every test window: the model's, PPO's and
    every baseline's positions, forecasts, targets, regimes), report.html and report.md.
    """
    import logging
    import warnings

    from plus_ultra_ml.artifacts import atomic_path, home
    from plus_ultra_ml.config import load_config
    from plus_ultra_ml.data.calendar import panel_periods_per_year
    from plus_ultra_ml.evaluation.predictions import strategies_of
    from plus_ultra_ml.evaluation.report import build_report, write_report
    from plus_ultra_ml.evaluation.walkforward import find_fold, fold_table, plan_folds
    from plus_ultra_ml.experiments.dataset import load_training_data
    from plus_ultra_ml.experiments.fold import run_walkforward

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
            return
        folds = [find_fold(planned, name) for name in fold] if fold else planned
        steps_per_fold = cfg.walkforward.seeds * (2 if cfg.walkforward.ppo else 1)
        task = bar.add_task(f"{len(folds)} folds", total=len(folds) * steps_per_fold)

        started = 0

        def say(message: str) -> None:  # called as each step starts
            nonlocal started
            bar.update(task, completed=started, description=message)
            started += 1

        result = run_walkforward(cfg, data, root=out / "checkpoints", folds=folds,
                                 regimes=data.regimes, progress=say,
                                 on_fold=lambda r: console.print(f"{r.fold}: {len(r.predictions):,} scored rows"))
        bar.update(task, completed=len(folds) * steps_per_fold, description=f"{len(folds)} folds")
    predictions = result.predictions
    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(out / "predictions.parquet") as tmp:
        predictions.to_parquet(tmp)
    report = build_report(predictions, cfg.costs, title=f"Walk-forward report ({cfg.name}, CLI)",
                          n_trials=len(strategies_of(predictions)),
                          periods_per_year=panel_periods_per_year(data.panel, cfg.features.periods_per_year))
    files = write_report(report, out / "report.html") + write_report(report, out / "report.md")
    console.print(report.overall[["sharpe", "sharpe_low", "sharpe_high", "total_return", "max_drawdown"]].round(3))
    console.print(f"predictions {out / 'predictions.parquet'}")
    for path in files:
        console.print(f"wrote {path}")
