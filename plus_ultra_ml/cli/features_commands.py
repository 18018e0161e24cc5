"""Feature commands: `plus-ultra features list` (the catalogue) and `plus-ultra features build` (a
feature table as parquet, outside Dagster)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from plus_ultra_ml.cli.common import console, err_console, progress, user_errors

features_app = typer.Typer(
    name="features",
    help="The feature registry: list the catalogue, build a feature table.",
    no_args_is_help=True,
    add_completion=False,
)


@features_app.command("list")
@user_errors
def list_features(
    markdown: Annotated[bool, typer.Option("--markdown", help="print Markdown (the docs page) instead of a table")] = False,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="write the Markdown to this file")] = None,
) -> None:
    """Print every registered feature: name, formula, window, warm-up bars, tags."""
    from plus_ultra_ml.features.catalogue import catalogue_markdown, catalogue_rows

    if markdown or output is not None:
        text = catalogue_markdown()
        if output is None:
            typer.echo(text)
            return
        from plus_ultra_ml.artifacts import write_text_atomic

        write_text_atomic(output, text)
        err_console.print(f"wrote {output}")
        return

    from rich.markup import escape
    from rich.table import Table

    rows = catalogue_rows()
    table = Table(title=f"{len(rows)} features (alt_<name>: one per ind__ column)", show_lines=False)
    for column in ("name", "family", "formula", "window", "warm-up", "tags"):
        table.add_column(column, overflow="fold")
    for row in rows:
        cells = (row["name"], row["family"], row["description"], row["window"], row["warmup"], row["tags"])
        table.add_row(*(escape(cell) for cell in cells))  # formulas hold [t-1], which rich would read as markup
    console.print(table)


@features_app.command("build")
@user_errors
def build(
    db: Annotated[Path, typer.Argument(help="SQLite database (opened read-only)")],
    config: Annotated[Path, typer.Option("--config", "-c", help="experiment YAML (data, regimes, features sections)")],
    output: Annotated[Path, typer.Option("--output", "-o", help="parquet file to write (atomically)")],
    overrides: Annotated[list[str] | None, typer.Argument(help="dotted overrides, e.g. features.alpha158=true")] = None,
) -> None:
    """Load the panel, label regimes, compute the features, and write them as parquet."""
    from plus_ultra_ml.config import load_config
    from plus_ultra_ml.data.regimes import label_regimes
    from plus_ultra_ml.data.panel import build_panel
    from plus_ultra_ml.features.pipeline import compute_features, save_feature_table

    cfg = load_config(config, overrides or ())
    started = time.perf_counter()
    with progress() as bar:
        task = bar.add_task(f"validating and loading {db}", total=None)
        built = build_panel(db, cfg.data)  # the same panel the market_panel asset builds
        built.report.raise_for_errors()
        panel = built.panel
        bar.update(task, total=1, completed=1, description=f"loaded {len(panel):,} rows")
        task = bar.add_task("labelling regimes", total=None)
        labels = label_regimes(panel, cfg.regimes)
        bar.update(task, total=1, completed=1, description="regimes labelled")
        task = bar.add_task("features", total=None)

        def advance(done: int, total: int, name: str) -> None:
            bar.update(task, completed=done, total=total, description=f"features: {name}")

        result = compute_features(panel, cfg.features, labels, on_progress=advance)
        bar.update(task, description=f"{result.frame.shape[1]} features")
        task = bar.add_task(f"writing {output}", total=None)
        save_feature_table(result, output)
        bar.update(task, total=1, completed=1)

    frame = result.frame
    times = frame.index.get_level_values("timestamp")
    console.print(
        f"[bold]{output}[/]: {frame.shape[1]} features x {len(frame):,} rows, "
        f"{frame.index.get_level_values('symbol').nunique()} symbols, {times.min()} .. {times.max()}, "
        f"{time.perf_counter() - started:.1f} s",
        highlight=False,
    )
    console.print(f"fingerprint {result.fingerprint}", highlight=False)
    for name, why in result.skipped.items():
        console.print(f"[yellow]skipped[/] {name}: {why}", highlight=False)
