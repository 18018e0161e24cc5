"""Training commands: `plus-ultra pretrain`, `plus-ultra train` and `plus-ultra lineage`.

Thin wrappers over plus_ultra_ml.training.fit (the same functions the Dagster assets call) and
plus_ultra_ml.lineage (which reads files only: no Dagster instance, no W&B).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from plus_ultra_ml.cli.common import console, err_console, progress, user_errors

ConfigOption = Annotated[Path, typer.Option("--config", "-c", help="experiment YAML (configs/smoke.yaml, ...)")]
Overrides = Annotated[list[str] | None, typer.Argument(help="dotted overrides, e.g. train.epochs=3 model.backbone.d_model=64")]
DbOption = Annotated[Path | None, typer.Option("--db", help="SQLite database; default: the config's data.db_path")]
OutOption = Annotated[Path | None, typer.Option("--out", help="checkpoint root; default $PLUS_ULTRA_HOME/checkpoints/<kind>")]
FreshOption = Annotated[bool, typer.Option("--fresh", help="ignore an interrupted run's last.ckpt and start over")]


def _fit(kind: str, config: Path, overrides: list[str] | None, db: Path | None, out: Path | None, fresh: bool,
         pretrain_checkpoint: Path | None = None) -> None:
    import logging
    import time
    import warnings

    from plus_ultra_ml.config import load_config
    from plus_ultra_ml.experiments.dataset import load_training_data
    from plus_ultra_ml.training import fit

    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)  # the progress bar and table say it
    warnings.filterwarnings("ignore", message=".*treespec.*")  # lightning's own deprecation, not ours
    cfg = load_config(config, overrides or ())
    started = time.perf_counter()
    with progress() as bar:
        task = bar.add_task(f"loading panel and features from {db or cfg.data.db_path}", total=None)
        data = load_training_data(cfg, db)
        bar.update(task, total=1, completed=1, description=f"{len(data.features):,} rows x {data.features.shape[1]} features")
        steps = bar.add_task(f"{kind}", total=None)

        def report(done: int, total: int, metrics: dict[str, float]) -> None:
            loss = metrics.get("train/loss_step", metrics.get("train/loss", float("nan")))
            bar.update(steps, total=total or None, completed=done,
                       description=f"{kind} epoch {int(metrics['epoch'])} loss {loss:.4f}")

        if kind == "pretrain":
            result = fit.pretrain(cfg, data, root=out, progress=report, resume=not fresh)
        else:
            result = fit.train_supervised(cfg, data, root=out, pretrain_checkpoint=pretrain_checkpoint,
                                          progress=report, resume=not fresh)
    if result is None:  # a DDP worker rank: rank 0 reports
        return
    _print_result(result, time.perf_counter() - started)


def _print_result(result, elapsed: float) -> None:
    from rich.table import Table

    table = Table(title=f"{result.lineage.kind} checkpoint", show_header=False)
    table.add_row("checkpoint", str(result.checkpoint))
    table.add_row("lineage", str(result.checkpoint.with_name(result.checkpoint.stem + ".lineage.json")))
    training = result.lineage.training
    table.add_row("epochs / steps", f"{training.get('epochs')} / {training.get('steps')}"
                  + (f" (resumed at step {training['resumed_from_step']})" if training.get("resumed_from_step") else ""))
    table.add_row("parameters", f"{training.get('parameters'):,}")
    table.add_row("data cutoff", result.lineage.data_cutoff)
    table.add_row("W&B run", str(result.wandb_run_id))
    for key in ("test_loss", "test_ic_next_bar", "test_ic_h1", "test_sharpe_net", "baseline_linear_ic_next_bar",
                "baseline_momentum_ic_next_bar", "val_loss_best", "val_loss"):
        if key in result.metrics:
            table.add_row(key, f"{result.metrics[key]:.4f}")
    table.add_row("wall time", f"{elapsed:.1f} s")
    console.print(table)
    for warning in result.warnings:
        err_console.print(f"[yellow]diagnostics:[/] {warning}")


@user_errors
def pretrain(
    config: ConfigOption,
    overrides: Overrides = None,
    db: DbOption = None,
    out: OutOption = None,
    fresh: FreshOption = False,
) -> None:
    """Self-supervised pretraining of the backbone (pretrain: section); writes model.pt + lineage."""
    _fit("pretrain", config, overrides, db, out, fresh)


@user_errors
def train(
    config: ConfigOption,
    overrides: Overrides = None,
    pretrain_checkpoint: Annotated[Path | None, typer.Option(
        "--pretrain-checkpoint", help="warm-start the backbone from this pretrained model.pt")] = None,
    db: DbOption = None,
    out: OutOption = None,
    fresh: FreshOption = False,
) -> None:
    """Risk-aware supervised training (train: section); held-out metrics on the test tail only."""
    _fit("supervised", config, overrides, db, out, fresh, pretrain_checkpoint)


@user_errors
def lineage(
    path: Annotated[Path, typer.Argument(help="a checkpoint (model.pt, policy.pt) or its .lineage.json")],
    as_json: Annotated[bool, typer.Option("--json", help="print the trace as JSON")] = False,
) -> None:
    """Print the chain from a checkpoint back to its database, and whether each file still holds.

    Works from the files alone; with a Dagster instance in $DAGSTER_HOME it also shows the run and the
    upstream materialisations. Exit 1 when a file is missing or changed (stale data is reported, exit 0).
    """
    import json

    from rich.table import Table

    from plus_ultra_ml.lineage_trace import trace

    result = trace(path)
    if as_json:
        typer.echo(json.dumps(result.to_dict(), indent=2, default=str))
    else:
        colour = {"ok": "green", "stale": "yellow", "mismatch": "red", "missing": "red", "unknown": "yellow"}
        for depth, link in enumerate(result.links):
            table = Table(title=f"{'parent ' * depth}{link.kind or '?'}: {link.path}", show_header=False,
                          title_justify="left")
            table.add_row("status", f"[{colour[link.status]}]{link.status}[/]")
            table.add_row("sha256", (link.sha256 or "-")[:16] + (f" (child recorded {link.recorded_sha256[:16]})"
                                                              if link.recorded_sha256 else ""))
            for key in ("config_hash", "code_version", "data_cutoff", "created_at"):
                table.add_row(key, str(getattr(link, key)))
            for key, value in link.run_ids.items():
                if value:
                    table.add_row(key, str(value))
            console.print(table)
        db = result.database
        console.print(f"database {db.path}: [{colour[db.status]}]{db.status}[/] (trained until {db.trained_until}"
                      + (f", last bar now {db.last_bar_now}" if db.last_bar_now else "") + ")")
        dagster = result.extra.get("dagster")
        if dagster:
            run = dagster.get("run") or {}
            console.print(f"Dagster run {run.get('run_id')} ({run.get('job')}, {run.get('status')}) in {dagster['instance']}")
            for node in dagster.get("materialisations", []):
                console.print(f"  {node['asset']}{'[' + node['partition'] + ']' if node['partition'] else ''}: "
                              f"run {node['run_id'][:8]}, data version {node['data_version']}, "
                              f"code version {node['code_version']}", highlight=False)
    if any(link.status in ("mismatch", "missing") for link in result.links) or result.database.status in (
            "mismatch", "missing"):
        raise typer.Exit(code=1)