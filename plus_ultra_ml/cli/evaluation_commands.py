"""Evaluation commands: reports over out-of-sample predictions."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from plus_ultra_ml.cli.common import console, progress, user_errors


@user_errors
def report(
    predictions: Annotated[Path, typer.Option(help="predictions parquet/csv (plus-ultra predict or a walk-forward fold)")],
    output: Annotated[Path, typer.Option(help="report.html (figures embedded) or report.md (PNGs beside it)")],
    config: Annotated[Path | None, typer.Option(
        help="experiment YAML for the costs and portfolio sections (defaults otherwise)")] = None,
    benchmark_column: Annotated[str | None, typer.Option(help="column holding a per-bar benchmark return")] = None,
    title: Annotated[str, typer.Option(help="report title")] = "Out-of-sample report",
    n_trials: Annotated[int | None, typer.Option(help="configurations tried, for the deflated Sharpe ratio")] = None,
    periods_per_year: Annotated[float | None, typer.Option(
        help="bars per year to annualise with (default: what the predictions file records, the panel calendars')",
        min=0.0)] = None,
) -> None:
    """An investor-ready report: metric tables (with bootstrap intervals), per fold/seed/regime, IC, figures."""
    import pandas as pd

    from plus_ultra_ml.config import CostConfig, ExecutionConfig, load_config
    from plus_ultra_ml.errors import PlusUltraError
    from plus_ultra_ml.evaluation.portfolio_book import report_sectors
    from plus_ultra_ml.evaluation.report import build_report, write_report

    if not predictions.is_file():
        raise PlusUltraError(f"predictions file {predictions} does not exist")
    frame = pd.read_parquet(predictions) if predictions.suffix == ".parquet" else \
        pd.read_csv(predictions, parse_dates=["timestamp"]).set_index(["symbol", "timestamp"])
    benchmark = None
    if benchmark_column:
        if benchmark_column not in frame:
            raise PlusUltraError(f"no column {benchmark_column!r} in {predictions}; columns: {list(frame.columns)}")
        benchmark = frame[benchmark_column].groupby(level="timestamp").mean()
    cfg = load_config(config) if config else None
    costs = cfg.costs if cfg else CostConfig()
    with progress() as bar:
        task = bar.add_task("building the report", total=None)
        built = build_report(frame, costs, title=title, benchmark=benchmark, n_trials=n_trials,
                             periods_per_year=periods_per_year or None, portfolio=cfg.portfolio if cfg else None,
                             execution=cfg.backtest if cfg else ExecutionConfig(),
                             sectors=report_sectors(cfg) if cfg else None)
        files = write_report(built, output)
        bar.update(task, total=1, completed=1)
    console.print(built.overall[["sharpe", "sharpe_low", "sharpe_high", "total_return", "max_drawdown"]].round(3))
    for path in files:
        console.print(f"wrote {path}")
