"""Data commands: validate a database, ingest candles, label regimes, query artifacts with SQL."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from plus_ultra_ml.cli.common import console, err_console, progress, user_errors


@user_errors
def validate(
    db: Annotated[Path, typer.Argument(help="SQLite database to check (opened read-only)")],
    strict: Annotated[bool, typer.Option("--strict", help="treat warnings as failures")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="print the report as JSON")] = False,
    config: Annotated[Path | None, typer.Option(help="experiment YAML (data section: freq, jump threshold)")] = None,
) -> None:
    """Check DB against the data contract. Exit 0 valid, 1 invalid, 2 unreadable."""
    from plus_ultra_ml.config import DataConfig, load_config
    from plus_ultra_ml.data.validate import validate_database

    data_cfg = load_config(config).data if config else DataConfig()
    report = validate_database(db, data_cfg)
    if as_json:
        typer.echo(report.to_json())
    else:
        _render_report(report)
    raise typer.Exit(code=0 if report.passed(strict) else 1)


def _render_report(report) -> None:
    from rich.markup import escape

    stats = report.stats
    console.print(
        f"[bold]{report.source}[/]: {stats.get('series_rows', 0):,} candles, {stats.get('symbols', 0)} symbols, "
        f"{stats.get('start')} .. {stats.get('end')}"
    )
    for issue in report.issues:
        colour = "red" if issue.severity == "error" else "yellow"
        where = issue.table + (f".{issue.column}" if issue.column else "")
        console.print(f"[{colour}]{issue.severity.upper()}[/] [bold]{where}[/] {escape('[' + issue.rule + ']')} x{issue.count:,}")
        console.print(f"    {issue.message}", highlight=False)
        for example in issue.examples[:3]:
            console.print(f"    e.g. {example}", highlight=False)
    if not report.issues:
        console.print("[green]valid: every rule passed[/]")
    else:
        verdict = "[red]invalid[/]" if report.errors else "[yellow]valid with warnings[/]"
        console.print(f"{verdict}: {len(report.errors)} error(s), {len(report.warnings)} warning(s)")


@user_errors
def ingest(
    db: Annotated[Path, typer.Argument(help="SQLite database to write (created if absent)")],
    files: Annotated[list[Path], typer.Argument(help="CSV or Parquet files (one per symbol, or long with a symbol column)")],
    symbol: Annotated[str | None, typer.Option(help="symbol for a single-symbol file (default: file stem)")] = None,
    mapping: Annotated[list[str], typer.Option("--map", help="SOURCE=CONTRACT column mapping, repeatable")] = [],  # noqa: B006
    timezone: Annotated[str, typer.Option(help="time zone of naive source timestamps")] = "UTC",
    adjust_column: Annotated[str | None, typer.Option(help="adjusted-close column to adjust OHLC by (e.g. 'Adj Close')")] = None,
    indicators: Annotated[list[str], typer.Option("--indicator", help="extra column to store in indicators, repeatable")] = [],  # noqa: B006
    append_only: Annotated[bool, typer.Option("--append-only", help="keep only candles newer than the last stored one")] = False,
    close_only: Annotated[bool, typer.Option(
        "--close-only", help="the files hold closes only: write open = high = low = close (volume 0 if absent), "
                             "flag the symbols in assets.metadata; open/high/low features are then skipped")] = False,
    busy_timeout: Annotated[float, typer.Option(
        "--busy-timeout", min=0, help="seconds to wait while another process writes DB, then fail")] = 30.0,
    max_price: Annotated[float, typer.Option(
        "--max-price", min=0, help="refuse prices above this (a unit or parsing error)")] = 1e9,
    max_volume: Annotated[float, typer.Option(
        "--max-volume", min=0, help="refuse volumes above this (a unit or parsing error)")] = 1e15,
    migrate: Annotated[bool, typer.Option(
        "--migrate", help="a seed-style DB: validate it and migrate it in the same transaction (plus-ultra migrate)")] = False,
) -> None:
    """Validate files and upsert them into DB in one transaction (all or nothing)."""
    from plus_ultra_ml.data.ingest import IngestOptions, ingest_files
    from plus_ultra_ml.errors import PlusUltraError

    column_map = {}
    for item in mapping:
        if "=" not in item:
            raise PlusUltraError(f"--map {item!r} must look like SOURCE=CONTRACT, e.g. 'Adj Close=close'")
        source, target = item.split("=", 1)
        column_map[source] = target
    options = IngestOptions(symbol=symbol, column_map=column_map, timezone=timezone, adjust_column=adjust_column,
                            indicator_columns=tuple(indicators), append_only=append_only,
                            close_only=close_only, busy_timeout_s=busy_timeout,
                            max_price=max_price, max_volume=max_volume, migrate=migrate)
    with progress() as bar:
        task = bar.add_task(f"ingesting {len(files)} file(s)", total=None)
        results = ingest_files(db, files, options)
        bar.update(task, total=1, completed=1)
    for path, result in zip(files, results, strict=True):
        console.print(
            f"{path}: {result.inserted:,} inserted, {result.updated:,} updated, {result.unchanged:,} unchanged, "
            f"{result.skipped_not_newer:,} skipped (not newer), new symbols {list(result.symbols_added)}"
        )


@user_errors
def regimes(
    db: Annotated[Path, typer.Argument(help="SQLite database")],
    config: Annotated[Path, typer.Option(help="experiment YAML (regimes section)")] = Path("configs/smoke.yaml"),
    write: Annotated[bool, typer.Option("--write", help="write the labels into the regimes table")] = False,
    strict_validation: Annotated[bool, typer.Option("--strict-validation", help="refuse on warnings too")] = False,
) -> None:
    """Validate DB strictly, label causal regimes, and (with --write) store them in `regimes`."""
    from plus_ultra_ml.config import load_config
    from plus_ultra_ml.data.regime_store import label_database

    cfg = load_config(config)
    with progress() as bar:
        task = bar.add_task("validating and labelling", total=None)
        summary = label_database(db, cfg, write=write, strict=strict_validation)
        bar.update(task, total=1, completed=1)
    for name, counts in summary.counts.items():
        console.print(f"{name}: " + ", ".join(f"{k}={v:,}" for k, v in counts.items()))
    if write:
        console.print(f"wrote {summary.rows_written:,} rows to {db}:regimes")
    else:
        err_console.print("(dry run: pass --write to store the labels)")


@user_errors
def migrate(
    db: Annotated[Path, typer.Argument(help="a seed-style SQLite database")],
    write: Annotated[bool, typer.Option("--write", help="apply the steps (default: only list them)")] = False,
    config: Annotated[Path | None, typer.Option(help="experiment YAML (data section: validation settings)")] = None,
) -> None:
    """Validate DB, then list (or with --write apply, in one transaction) what our writers need: keys, ISO times."""
    from plus_ultra_ml.config import DataConfig, load_config
    from plus_ultra_ml.data.migrate import migrate_database

    result = migrate_database(db, write=write, cfg=load_config(config).data if config else DataConfig())
    if not result.steps:
        console.print(f"{db}: nothing to migrate (ingest can write it as it is)")
        return
    for step in result.steps:
        console.print(f"{'done' if result.written else 'to do'}: {step.table}: {step.description}")
    if not result.written:
        err_console.print("(dry run: pass --write to apply these steps)")
