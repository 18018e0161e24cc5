"""PPO fine-tuning vs the supervised position head vs buy-and-hold, net Sharpe, over seeds.

Usage:
    python benchmarks/bench_ppo.py [--config configs/smoke.yaml] [--db data/fixture.db] [--seeds 0 1 2]
                                   [--root DIR] [--rl rl.key=value ...] [override ...]

For each seed s (config `seed=s`): the supervised model is trained with training.fit.train_supervised
(the `train:` section; a finished run under --root is reused, not retrained), then fine-tuned with
rl.fit.finetune_checkpoint (the `rl:` section, plus the --rl overrides, which the supervised stage
does not see, so PPO variants reuse the same supervised checkpoints). Every number is an equal-weight
portfolio net Sharpe (annualised, costs from `costs:`) of positions held bar to bar through objectives.pnl:

    validation  the segment PPO selects its best update on (so PPO's number is optimistic there)
    test        the held-out tail: touched by neither training nor selection

The supervised head, PPO's deterministic policy and buy-and-hold are scored on exactly the same
decision bars. The fixture oracle's net Sharpe (whole history, sign of the true expected return)
is printed for scale. Prints numbers; asserts nothing. The machine may be shared: the load average
is printed before and after, and wall times include any contention.
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch

from plus_ultra_ml.config import load_config
from plus_ultra_ml.experiments.dataset import load_training_data
from plus_ultra_ml.rl.fit import finetune_checkpoint
from plus_ultra_ml.synthetic.fixture import read_fixture_truth
from plus_ultra_ml.training.fit import train_supervised

WHO = ("supervised", "ppo", "buy_and_hold")


def _mean_std(values: list[float]) -> str:
    finite = [v for v in values if v == v]
    if not finite:
        return "nan"
    if len(finite) == 1:
        return f"{finite[0]:+.2f}"
    return f"{statistics.mean(finite):+.2f} +- {statistics.stdev(finite):.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="configs/smoke.yaml")
    parser.add_argument("--db", default=None, help="default: the config's data.db_path")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--root", default=None, help="checkpoint root (default: a temporary directory)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: best on a shared 2-core box)")
    parser.add_argument("--rl", nargs="*", default=[], help="overrides for the PPO stage only, e.g. rl.updates=40")
    parser.add_argument("overrides", nargs="*", help="dotted config overrides for both stages")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(args.threads)
    root = Path(args.root or tempfile.mkdtemp(prefix="bench_ppo_"))
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}"
          f", {torch.get_num_threads()} torch thread(s), load average at start {os.getloadavg()}")
    cfg = load_config(args.config, [*args.overrides, *args.rl])
    db = args.db or cfg.data.db_path
    truth = read_fixture_truth(db)
    print(f"data: {db} (fixture seed {truth.seed}, oracle net Sharpe {truth.oracle_sharpe_net:.2f} over the whole "
          f"history, oracle IC {truth.oracle_ic:.3f})")
    print(f"config: {args.config} {' '.join(args.overrides)} (ppo stage: {' '.join(args.rl)})")
    print(f"rl: {cfg.rl.model_dump()}")
    started = time.perf_counter()
    data = load_training_data(cfg, db)
    print(f"panel + features: {len(data.features):,} rows x {data.features.shape[1]} features "
          f"({time.perf_counter() - started:.1f} s)")

    rows = []
    for seed in args.seeds:
        seeded = [*args.overrides, f"seed={seed}", "tracking.mode=disabled"]
        tick = time.perf_counter()
        supervised = train_supervised(load_config(args.config, seeded), data, root=root / "supervised")
        trained_s = time.perf_counter() - tick
        tick = time.perf_counter()
        policy = finetune_checkpoint(load_config(args.config, [*seeded, *args.rl]), data, supervised.checkpoint,
                                     root=root / "ppo")
        ppo_s = time.perf_counter() - tick
        m = policy.metrics
        rows.append({"seed": seed, "supervised_s": trained_s, "ppo_s": ppo_s, "best": policy.ppo.best_update,
                     "collapsed": policy.ppo.collapse.collapsed,
                     **{f"{seg}_{who}": m.get(f"{seg}_{who}_sharpe_net", float("nan"))
                        for seg in ("val", "test") for who in WHO},
                     "val_ppo_turnover": m["val_ppo_turnover"], "val_supervised_turnover": m["val_supervised_turnover"],
                     "test_ppo_mean_net_bps": m.get("test_ppo_mean_net_bps", float("nan")),
                     "test_supervised_mean_net_bps": m.get("test_supervised_mean_net_bps", float("nan"))})
        r = rows[-1]
        print(f"seed {seed}: supervised {trained_s:.0f} s, ppo {ppo_s:.0f} s ({policy.ppo.env_steps:,} env steps), "
              f"best update {r['best']}, collapsed {r['collapsed']}", flush=True)

    print()
    print("net Sharpe (annualised)      |        validation (selection)         |          test (held out)")
    print("seed | best upd | supervised      ppo  buy&hold | supervised      ppo  buy&hold | turnover sup -> ppo (val)")
    for r in rows:
        print(f"{r['seed']:>4} | {r['best']:>8} | {r['val_supervised']:>10.2f} {r['val_ppo']:>8.2f} "
              f"{r['val_buy_and_hold']:>9.2f} | {r['test_supervised']:>10.2f} {r['test_ppo']:>8.2f} "
              f"{r['test_buy_and_hold']:>9.2f} | {r['val_supervised_turnover']:.3f} -> {r['val_ppo_turnover']:.3f}")
    for seg in ("val", "test"):
        print(f"{seg:>5} mean +- std over {len(rows)} seeds: "
              + ", ".join(f"{who} {_mean_std([r[f'{seg}_{who}'] for r in rows])}" for who in WHO))
    wins = sum(r["test_ppo"] > r["test_supervised"] for r in rows)
    print(f"test: PPO above the supervised head in {wins}/{len(rows)} seeds; "
          f"above buy-and-hold in {sum(r['test_ppo'] > r['test_buy_and_hold'] for r in rows)}/{len(rows)}")
    print(f"mean test net PnL per bar (bps): supervised "
          f"{_mean_std([r['test_supervised_mean_net_bps'] for r in rows])}, ppo "
          f"{_mean_std([r['test_ppo_mean_net_bps'] for r in rows])}")
    print(f"wall time {time.perf_counter() - started:.0f} s; load average at end {os.getloadavg()}; root {root}")


if __name__ == "__main__":
    main()
