"""Cross-sectional baselines against the oracle on a universe fixture: per-date IC and decile spread.

Builds (or reads) a universe fixture, computes the daily preset's features (configs/daily.yaml, the
same `load_training_data` a walk-forward fits on), splits the sessions into train | val | test with
the last `--test-bars` sessions as test (embargo window + horizon between segments, as the folds do),
fits every baseline that has a score on train (LightGBM early-stops on val) and scores the test
sessions with `evaluation.cross_section.evaluate_cross_section`. For comparison, the same numbers for
the fixture's truth_oracle indicator (the true expected next return: the ceiling of any score) and
its planted alt_0 score. Prints one table; nothing here asserts anything.

Usage: python benchmarks/bench_xs_baselines.py [--db /tmp/x.db] [--symbols 200] [--bars 1500]
           [--test-bars 250] [--quantiles 10]
(the fixture, when --db does not exist: `plus-ultra fixture DB --universe SYMBOLS --freq 1D --rows BARS`)
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd

from plus_ultra_ml.config import FixtureConfig, UniverseConfig, load_config
from plus_ultra_ml.data.calendar import panel_periods_per_year
from plus_ultra_ml.data.windows import build_targets, split_by_bounds
from plus_ultra_ml.evaluation.baselines import CROSS_SECTIONAL_BASELINES, run_baselines
from plus_ultra_ml.evaluation.cross_section import evaluate_cross_section
from plus_ultra_ml.experiments.dataset import load_training_data
from plus_ultra_ml.synthetic.fixture import build_fixture

ROOT = Path(__file__).resolve().parents[1]
SCORED = ("ridge", "lightgbm", "momentum", "mean_reversion", *CROSS_SECTIONAL_BASELINES)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", default="/tmp/xs_bench_universe.db")
    parser.add_argument("--symbols", type=int, default=200)
    parser.add_argument("--bars", type=int, default=1500)
    parser.add_argument("--test-bars", type=int, default=250)
    parser.add_argument("--quantiles", type=int, default=10)
    args = parser.parse_args()
    db = Path(args.db)
    if not db.exists():
        build_fixture(db, FixtureConfig(rows=args.bars, freq="1D", universe=UniverseConfig(size=args.symbols)))
    cfg = load_config(ROOT / "configs" / "daily.yaml")
    started = time.perf_counter()
    data = load_training_data(cfg, db)
    panel, features = data.panel, data.features
    print(f"{db}: {panel.index.get_level_values('symbol').nunique()} symbols, "
          f"{panel.index.get_level_values('timestamp').nunique()} sessions, {features.shape[1]} features "
          f"({time.perf_counter() - started:.0f} s to load)")
    grid = pd.DatetimeIndex(panel.index.get_level_values("timestamp").unique()).sort_values()
    embargo = cfg.windows.window + cfg.windows.horizon
    test_first = len(grid) - args.test_bars
    ends = {"train": grid[test_first - 2 * embargo - 250 - 1], "val": grid[test_first - embargo - 1], "test": grid[-1]}
    split = split_by_bounds(grid, ends, embargo)
    targets = build_targets(panel, 1)
    started = time.perf_counter()
    results = run_baselines(panel, features, targets, split, "test", names=SCORED, config=cfg.baselines)
    print(f"baselines fitted and scored in {time.perf_counter() - started:.0f} s; split {split.to_dict()}")
    test_index = results["ridge"].forecast.index
    scores = pd.DataFrame({name: results[name].forecast.reindex(test_index) for name in SCORED})
    scores["oracle (truth_oracle)"] = panel["ind__truth_oracle"].reindex(test_index)
    scores["alt_0 (planted)"] = panel["ind__alt_0"].reindex(test_index)
    next_return = targets.next_return.reindex(test_index)
    scores = scores[np.isfinite(next_return.to_numpy())]
    ppy = panel_periods_per_year(panel, cfg.features.periods_per_year)
    cs = evaluate_cross_section(scores, next_return.reindex(scores.index), ppy, quantiles=args.quantiles)
    table = cs.ic[["ic", "ic_low", "ic_high", "rank_ic", "icir"]].join(
        cs.buckets[["spread", "spread_low", "spread_high", "spread_sharpe", "spread_sharpe_low", "spread_sharpe_high",
                    "top_turnover", "dates"]])
    table[["spread", "spread_low", "spread_high"]] *= 1e4  # bps per bar
    table["ic_share_of_oracle"] = table["ic"] / table.loc["oracle (truth_oracle)", "ic"]
    with pd.option_context("display.width", 200, "display.max_columns", 20, "display.float_format", "{:.4g}".format):
        print(f"test: last {args.test_bars} sessions; per-date IC against the next-bar return; "
              f"{args.quantiles}-quantile spread in bps per bar (gross), Sharpe annualised with {ppy:.0f} bars/year")
        print(table)


if __name__ == "__main__":
    main()
