"""RL commands: `plus-ultra finetune` (PPO on top of a supervised checkpoint).

A thin wrapper over plus_ultra_ml.rl.fit.finetune_checkpoint, the function the `ppo_policy` asset and
the walk-forward room call.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated

import typer

from plus_ultra_ml.cli.common import console, err_console, progress, user_errors


def _num(value: float, digits: int = 4) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


@user_errors
def finetune(
    config: Annotated[Path, typer.Option("--config", "-c", help="experiment YAML (configs/smoke.yaml, ...)")],
    checkpoint: Annotated[Path, typer.Option("--checkpoint", help="the supervised model.pt to start from")],
    overrides: Annotated[list[str] | None, typer.Argument(
        help="dotted overrides, e.g. rl.updates=20 rl.freeze=partial")] = None,
    db: Annotated[Path | None, typer.Option("--db", help="SQLite database; default: the config's data.db_path")] = None,
    out: Annotated[Path | None, typer.Option(
        "--out", help="policy root; default $PLUS_ULTRA_HOME/checkpoints/ppo_policy")] = None,
) -> None:
    """PPO fine-tuning of a supervised checkpoint on the cost-aware trading env (rl: section).

    One row per update: rollout reward (net PnL, bps per bar), policy and value loss, entropy, approx
    KL, epochs run, action std, validation net Sharpe. Writes policy.pt + policy.lineage.json (parent:
    the supervised checkpoint).
    """
    import time

    from rich.table import Table

    from plus_ultra_ml.config import load_config
    from plus_ultra_ml.experiments.dataset import load_training_data
    from plus_ultra_ml.rl.fit import finetune_checkpoint

    cfg = load_config(config, overrides or ())
    started = time.perf_counter()
    header = (f"{'upd':>4} {'reward':>8} {'policy':>8} {'value':>8} {'entropy':>7} {'KL':>8} {'ep':>2} "
              f"{'std':>5} {'val Sharpe':>10}")
    with progress() as bar:
        task = bar.add_task(f"loading panel and features from {db or cfg.data.db_path}", total=None)
        data = load_training_data(cfg, db)
        bar.update(task, total=1, completed=1,
                   description=f"{len(data.features):,} rows x {data.features.shape[1]} features")
        updates = bar.add_task("ppo", total=cfg.rl.updates)
        bar.console.print(header, highlight=False)

        def report(record) -> None:
            bar.console.print(
                f"{record.update:>4} {_num(record.reward_bps, 3):>8} {_num(record.policy_loss):>8} "
                f"{_num(record.value_loss):>8} {_num(record.entropy, 3):>7} {_num(record.approx_kl, 5):>8} "
                f"{record.epochs_run:>2} {_num(record.std, 2):>5} {_num(record.val_sharpe_net, 3):>10}",
                highlight=False)
            bar.update(updates, completed=record.update,
                       description=f"ppo update {record.update}/{cfg.rl.updates} val Sharpe "
                                   f"{_num(record.val_sharpe_net, 3)}")

        result = finetune_checkpoint(cfg, data, checkpoint, root=out, progress=report)
    m = result.metrics
    table = Table(title="ppo policy", show_header=True)
    for column in ("net Sharpe", "validation", "test"):
        table.add_column(column)
    for who, label in (("ppo", f"PPO (best update {result.ppo.best_update})"), ("supervised", "supervised head"),
                       ("buy_and_hold", "buy and hold")):
        table.add_row(label, _num(m.get(f"val_{who}_sharpe_net"), 3), _num(m.get(f"test_{who}_sharpe_net"), 3))
    console.print(table)
    console.print(f"checkpoint  {result.checkpoint}")
    console.print(f"lineage     {result.checkpoint.with_name(result.checkpoint.stem + '.lineage.json')}")
    console.print(f"wall time   {time.perf_counter() - started:.1f} s ({result.ppo.env_steps:,} env steps)")
    console.print(f"selection   {result.selection.reason}")  # rl.selection: PPO or the supervised head
    if result.ppo.collapse.collapsed:
        err_console.print(f"[yellow]collapse guard:[/] {result.ppo.collapse.message}")
    if not result.improved:
        fallback = " (the policy file holds the supervised behaviour: update 0)" if result.ppo.best_update == 0 else ""
        err_console.print(
            f"[yellow]warning:[/] PPO did not beat the supervised position head on validation net Sharpe "
            f"({_num(m['val_ppo_sharpe_net'], 3)} vs {_num(m['val_supervised_sharpe_net'], 3)}){fallback}")
