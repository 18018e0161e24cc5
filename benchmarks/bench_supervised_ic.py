"""Supervised held-out IC of the next-bar return against the fixture's oracle IC.

Usage:
    python benchmarks/bench_supervised_ic.py [--config configs/smoke.yaml] [--db data/fixture.db]
        [--seeds 0 1 2] [--pretrain] [dotted overrides ...]

The database should be the default fixture (`plus-ultra fixture data/fixture.db`, FixtureConfig
defaults); if the file is missing it is built into a temporary folder. For each seed this trains
the preset with `plus_ultra_ml.training.fit.train_supervised` (after `pretrain` with --pretrain) and
prints the held-out numbers, which come from the split's test tail only:

    ic          pooled Pearson IC of the model's 1-bar forecast with the next bar's simple return over
                every test window's last bar (the oracle's IC definition, fixture.py)
    oracle_all  fixture_truth.oracle_ic: the oracle over the whole history (the issue's reference)
    oracle_test the same oracle on exactly the test windows' bars (the fair ceiling for this sample)
    linear / momentum   baselines on the same windows (evaluation/baselines.py, scored by evaluation/heldout.py)
    sharpe      annualised net Sharpe of the position head; sign_sharpe: of forecast 1 through ForecastPositions
                (fitted on training forecasts; held-out key test_forecast_sharpe_net)

Timings are wall-clock on whatever machine runs it; on the shared 2-core development machine other
engineers' jobs ran at the same time, so read them as upper bounds.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

from plus_ultra_ml.config import FixtureConfig, load_config
from plus_ultra_ml.data.training_data import TrainingData
from plus_ultra_ml.data.windows import build_targets
from plus_ultra_ml.experiments.dataset import load_training_data
from plus_ultra_ml.synthetic.fixture import ORACLE_INDICATOR, build_fixture, read_fixture_truth
from plus_ultra_ml.training.datamodule import WindowDataModule
from plus_ultra_ml.training.fit import pretrain, train_supervised


def quiet() -> None:
    logging.basicConfig(level=logging.WARNING)
    for name in ("lightning", "lightning.pytorch", "lightning.fabric", "plus_ultra_ml"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", message=".*treespec.*")
    warnings.filterwarnings("ignore", message=".*log_every_n_steps.*")


def fixture_database(path: Path) -> Path:
    if path.is_file():
        return path
    target = Path(tempfile.mkdtemp(prefix="plus_ultra_bench_")) / "fixture.db"
    print(f"{path} is missing: building the default fixture into {target}")
    build_fixture(target, FixtureConfig())
    return target


def oracle_ic_on_test(cfg, data: TrainingData) -> float:
    """Pooled IC of the fixture's oracle with the next-bar return on the test windows' last bars."""
    column = f"ind__{ORACLE_INDICATOR}"
    if column not in data.panel.columns:
        return float("nan")
    targets = build_targets(data.panel, cfg.windows.horizon)
    dm = WindowDataModule(data.features, targets, cfg.windows, batch_size=64)
    dm.setup()
    rows = dm.data.ends["test"]
    oracle = data.panel[column].to_numpy()[rows]
    nxt = targets.next_return.to_numpy()[rows]
    return float(np.corrcoef(oracle, nxt)[0, 1])


def mean_std(values: list[float]) -> str:
    if len(values) < 2:
        return f"{values[0]:.4f}"
    return f"{statistics.mean(values):.4f} +- {statistics.stdev(values):.4f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", default="configs/smoke.yaml")
    parser.add_argument("--db", default="data/fixture.db")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--pretrain", action="store_true", help="warm-start from a pretrain run of the same preset")
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    quiet()

    db = fixture_database(Path(args.db))
    truth = read_fixture_truth(db)
    base = load_config(args.config, ["tracking.mode=disabled", f"data.db_path={db}", *args.overrides])
    started = time.perf_counter()
    data = load_training_data(base, db)
    print(f"data: {db} -> {len(data.features):,} rows x {data.features.shape[1]} features "
          f"in {time.perf_counter() - started:.1f} s")
    oracle_test = oracle_ic_on_test(base, data)
    print(f"oracle IC: whole history {truth.oracle_ic:.4f}, test windows {oracle_test:.4f}")
    print(f"preset {args.config} {' '.join(args.overrides)}; pretrain: {args.pretrain}")

    header = ("seed", "wall_s", "steps", "ic", "ic/oracle_all", "ic/oracle_test", "linear", "momentum",
              "sharpe", "sign_sharpe", "test_loss")
    print(" | ".join(header))
    rows = []
    with tempfile.TemporaryDirectory(prefix="plus_ultra_ic_") as root:
        for seed in args.seeds:
            cfg = base.model_copy(update={"seed": seed})
            t0 = time.perf_counter()
            parent = pretrain(cfg, data, root=Path(root) / "pre", resume=False).checkpoint if args.pretrain else None
            result = train_supervised(cfg, data, pretrain_checkpoint=parent, root=Path(root) / "sup", resume=False)
            wall = time.perf_counter() - t0
            m = result.metrics
            row = {"seed": seed, "wall_s": wall, "steps": result.lineage.training["steps"],
                   "ic": m["test_ic_next_bar"], "ratio_all": m["test_ic_next_bar"] / truth.oracle_ic,
                   "ratio_test": m["test_ic_next_bar"] / oracle_test, "linear": m["baseline_linear_ic_next_bar"],
                   "momentum": m["baseline_momentum_ic_next_bar"], "sharpe": m["test_sharpe_net"],
                   "sign_sharpe": m["test_forecast_sharpe_net"], "loss": m["test_loss"]}
            rows.append(row)
            print(f"{seed} | {wall:.0f} | {row['steps']} | {row['ic']:.4f} | {row['ratio_all']:.2f} | "
                  f"{row['ratio_test']:.2f} | {row['linear']:.4f} | {row['momentum']:.4f} | {row['sharpe']:.2f} | "
                  f"{row['sign_sharpe']:.2f} | {row['loss']:.4f}")
    print("mean +- std over seeds:")
    for key in ("ic", "ratio_all", "ratio_test", "linear", "sharpe", "sign_sharpe", "loss", "wall_s"):
        print(f"  {key}: {mean_std([r[key] for r in rows])}")


if __name__ == "__main__":
    main()
