"""How the oracle's cost horizon L (its no-trade band) was chosen: net Sharpe of the oracle rule per L.

Usage:
    python benchmarks/bench_oracle.py [--seeds 101 102 103] [--horizons 2 3 4 5 6 8 12] [--rows 20000]

For each seed, a fixture with the default parameters otherwise (FixtureConfig; the default fixture
is seed 7 and the ceiling test's seed 31, so neither is looked at here) is built into a temporary
file and loaded; the oracle rule (evaluation.oracle) with the stored correlation and scale and each
cost horizon L is scored over the whole fixture through evaluation.backtest.portfolio_pnl with the
default costs; the sign rule (format 1) is printed beside it. Results: docs/evaluation.md "The oracle".
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

from plus_ultra_ml.config import CostConfig, FixtureConfig
from plus_ultra_ml.data.store import load_panel
from plus_ultra_ml.data.windows import build_targets
from plus_ultra_ml.evaluation.backtest import portfolio_pnl
from plus_ultra_ml.evaluation.metrics import sharpe_ratio
from plus_ultra_ml.evaluation.oracle import OracleRule, panel_oracle_positions
from plus_ultra_ml.synthetic.fixture import ORACLE_INDICATOR, build_fixture


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[101, 102, 103])
    parser.add_argument("--horizons", type=float, nargs="+", default=[2, 3, 4, 5, 6, 8, 12])
    parser.add_argument("--rows", type=int, default=20_000)
    args = parser.parse_args()
    costs = CostConfig()
    print("| seed | sign rule | " + " | ".join(f"L = {h:g}" for h in args.horizons) + " |")
    print("|---|---|" + "---|" * len(args.horizons))
    for seed in args.seeds:
        with tempfile.TemporaryDirectory(prefix="plus_ultra_oracle_") as tmp:
            db = Path(tmp) / "fixture.db"
            truth = build_fixture(db, FixtureConfig(rows=args.rows, seed=seed))
            panel = load_panel(db)
        next_return = build_targets(panel, 1).next_return
        known = np.isfinite(next_return.to_numpy())

        def sharpe(positions) -> float:
            pnl = portfolio_pnl(positions[known], next_return[known], costs)
            return sharpe_ratio(pnl.to_numpy(), periods_per_year=truth.bars_per_year)

        row = [f"{sharpe(np.sign(panel[f'ind__{ORACLE_INDICATOR}'])):.2f}"]
        for horizon in args.horizons:
            rule = OracleRule(**{**truth.rule.to_dict(), "cost_horizon": horizon})
            row.append(f"{sharpe(panel_oracle_positions(panel, costs, rule)):.2f}")
        print(f"| {seed} | " + " | ".join(row) + " |", flush=True)


if __name__ == "__main__":
    main()
