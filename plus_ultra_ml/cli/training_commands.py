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
    from plus_ultra_ml.training import fit

    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)  # the progress bar and table say it
    warnings.filterwarnings("ignore", message=".*treespec.*")  # lightning's own deprecation, not ours
    cfg = load_config(config, overrides or ())
    started = time.perf_counter()
    with progress() as bar:
        task = bar.add_task(f"loading panel and features from {db or cfg.data.db_path}", total=None)
        data = fit.load_training_data(cfg, db)
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
    path: Annotated[Path, typer.Argument(help="a checkpoint (model.pt) or its .lineage.json")],
    as_json: Annotated[bool, typer.Option("--json", help="print the full records as JSON")] = False,
) -> None:
    """Print the chain from a checkpoint back to its database (reads the files only)."""
    import json

    from rich.table import Table

    from plus_ultra_ml.lineage import lineage_chain

    chain = lineage_chain(path)
    if as_json:
        typer.echo(json.dumps([{"path": str(link.path), "sha256": link.fingerprint, "intact": link.intact,
                                **link.record.to_dict()} for link in chain], indent=2))
        return
    for depth, link in enumerate(chain):
        title = f"{'parent ' * depth or ''}{link.record.kind}: {link.path}"
        table = Table(title=title, show_header=False, title_justify="left")
        table.add_row("sha256", link.fingerprint[:16] + ("" if link.intact else "  [red](changed since the child recorded it)[/]"))
        for key, value in link.record.summary().items():
            table.add_row(key, str(value))
        for key in ("test_ic_next_bar", "test_sharpe_net", "test_loss"):
            if key in link.record.metrics and link.record.metrics[key] is not None:
                table.add_row(key, f"{link.record.metrics[key]:.4f}")
        console.print(table)
