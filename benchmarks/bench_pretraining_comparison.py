"""Pretraining comparison: warm start from a self-supervised backbone vs scratch, at an equal supervised budget.

Usage:
    python benchmarks/bench_pretraining_comparison.py [--config configs/smoke.yaml] [--db data/fixture.db]
        [--seeds 0 1 2] [--objectives masked contrastive] [dotted overrides ...]

For each seed: one supervised run from scratch, and for each pretext objective one `pretrain` run
followed by a supervised run warm-started from it. Every supervised run has the same `train:` budget
(steps, batch, schedule), the same data split and seed; only the backbone's initial weights differ.
Pretraining sees the same training segment (its early stopping the validation segment), never the
test tail. Prints each run and, per arm, mean +- std over seeds of the held-out (test tail) loss and
IC of the next-bar return, the best validation loss, and the wall time of pretraining. The machine is
shared with other jobs: wall times are noisy upper bounds.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from bench_supervised_ic import fixture_database, quiet
from plus_ultra_ml.config import load_config
from plus_ultra_ml.experiments.dataset import load_training_data
from plus_ultra_ml.training.fit import pretrain, train_supervised


def mean_std(values: list[float]) -> str:
    if len(values) < 2:
        return f"{values[0]:.4f}"
    return f"{statistics.mean(values):.4f} +- {statistics.stdev(values):.4f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", default="configs/smoke.yaml")
    parser.add_argument("--db", default="data/fixture.db")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--objectives", nargs="+", default=["masked", "contrastive"])
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    quiet()

    db = fixture_database(Path(args.db))
    base = load_config(args.config, ["tracking.mode=disabled", f"data.db_path={db}", *args.overrides])
    data = load_training_data(base, db)
    print(f"fixture {db}; preset {args.config} {' '.join(args.overrides)}; supervised budget {base.train.epochs} "
          f"epochs x {base.train.limit_train_batches or 'all'} batches of {base.train.batch_size}; pretraining "
          f"{base.pretrain.epochs} epochs x {base.pretrain.limit_train_batches or 'all'} batches")
    arms: dict[str, list[dict[str, float]]] = {"scratch": [], **{f"warm ({o})": [] for o in args.objectives}}
    print("| arm | seed | pretrain s | supervised s | steps | test loss | test IC next bar | val loss best |")
    print("|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory(prefix="plus_ultra_pretrain_cmp_") as root:
        for seed in args.seeds:
            for arm in arms:
                cfg = base.model_copy(update={"seed": seed})
                parent, pre_s = None, 0.0
                if arm != "scratch":
                    objective = arm[len("warm ("):-1]
                    cfg = cfg.model_copy(update={"pretrain": cfg.pretrain.model_copy(update={"objective": objective})})
                    t0 = time.perf_counter()
                    parent = pretrain(cfg, data, root=Path(root) / f"pre-{objective}-{seed}", resume=False).checkpoint
                    pre_s = time.perf_counter() - t0
                t0 = time.perf_counter()
                result = train_supervised(cfg, data, pretrain_checkpoint=parent,
                                          root=Path(root) / f"sup-{arm}-{seed}", resume=False)
                m = result.metrics
                row = {"pretrain_s": pre_s, "supervised_s": time.perf_counter() - t0, "loss": m["test_loss"],
                       "ic": m["test_ic_next_bar"], "val": m["val_loss_best"]}
                arms[arm].append(row)
                print(f"| {arm} | {seed} | {pre_s:.0f} | {row['supervised_s']:.0f} | {result.lineage.training['steps']} | "
                      f"{row['loss']:.4f} | {row['ic']:.4f} | {row['val']:.4f} |", flush=True)
    print("\nmean +- std over seeds")
    print("| arm | test loss | test IC next bar | val loss best | pretrain s |")
    print("|---|---|---|---|---|")
    for arm, rows in arms.items():
        print(f"| {arm} | {mean_std([r['loss'] for r in rows])} | {mean_std([r['ic'] for r in rows])} | "
              f"{mean_std([r['val'] for r in rows])} | {statistics.mean(r['pretrain_s'] for r in rows):.0f} |")


if __name__ == "__main__":
    main()
