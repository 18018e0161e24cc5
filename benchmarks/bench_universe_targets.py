"""The universe targets (issue 17, item 4) read off a finished walk-forward on a universe fixture.

Usage:
    python benchmarks/bench_universe_targets.py --folds $PLUS_ULTRA_HOME/assets/walkforward_fold \\
        --db data/universe.db --config configs/universe.yaml [--out DIR]

Reads every fold's predictions (the `walkforward_fold` partitions `make run` wrote, or any
predictions parquet files), builds the report exactly as the `walkforward_report` asset does
(`evaluation.report.build_report` with the config's costs, portfolio and execution sections), and
prints the targets on the same scored bars:
  - the model's out-of-sample per-date IC against the oracle's (the fixture's true expected return),
    target share >= 0.6;
  - the model's long-short book's net Sharpe against the same-bars oracle book's (target share >= 0.6)
    and against the LightGBM cross-sectional baseline's long-short book (the paired difference and its
    95% interval; target above it), with the long-only books beside them.
Folds written before the predictions carried the oracle's score get it from the fixture database
(`experiments.fold.fixture_references`, what a fold writes now). Nothing is recomputed by hand here.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from plus_ultra_ml.config import load_config
from plus_ultra_ml.data.store import load_panel
from plus_ultra_ml.evaluation.predictions import REFERENCE_SCORE, strategies_of
from plus_ultra_ml.evaluation.report import build_report, reference_label, write_report
from plus_ultra_ml.experiments.fold import fixture_references

MODEL, RIVAL = "model", "xs_lightgbm"


def read_predictions(folds: Path) -> pd.DataFrame:
    files = sorted(folds.glob("*.parquet")) if folds.is_dir() else [folds]
    if not files:
        raise SystemExit(f"no predictions parquet under {folds}")
    return pd.concat([pd.read_parquet(f) for f in files])


def with_oracle_score(predictions: pd.DataFrame, db: Path, cfg) -> pd.DataFrame:
    if REFERENCE_SCORE + "oracle" in predictions:
        return predictions
    references = fixture_references(load_panel(db), db, cfg.costs)
    score = references.get(REFERENCE_SCORE + "oracle")
    if score is None:
        return predictions
    out = predictions.copy()
    out[REFERENCE_SCORE + "oracle"] = score.reindex(out.index).to_numpy()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folds", type=Path, required=True)
    parser.add_argument("--db", type=Path, required=True)
    parser.add_argument("--config", default="configs/universe.yaml")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    cfg = load_config(args.config)
    predictions = with_oracle_score(read_predictions(args.folds), args.db, cfg)
    report = build_report(predictions, cfg.costs, title=f"Universe targets ({cfg.name})",
                          n_trials=len(strategies_of(predictions)), portfolio=cfg.portfolio, execution=cfg.backtest)
    print(report.notes[0])
    ic = report.cross_section.ic if report.cross_section is not None else pd.DataFrame()
    oracle = reference_label("oracle")
    if oracle in ic.index:
        for name in (MODEL, RIVAL, "xs_ridge", oracle):
            row = ic.loc[name]
            print(f"per-date IC {name:>20}: {row['ic']:.4f} [{row['ic_low']:.4f}, {row['ic_high']:.4f}]  "
                  f"share of oracle {row['share_of_oracle_ic']:.2f}")
    oracle_sharpe = report.references.loc[("all", "oracle"), "sharpe"] if not report.references.empty else float("nan")
    print(f"oracle book net Sharpe on these bars: {oracle_sharpe:.2f}")
    for construction in cfg.portfolio.constructions:
        mine, rival = f"{MODEL}@{construction}", f"{RIVAL}@{construction}"
        sharpe = report.overall.loc[mine]
        paired = report.paired.loc[rival]
        print(f"{mine}: net Sharpe {sharpe['sharpe']:.2f} [{sharpe['sharpe_low']:.2f}, {sharpe['sharpe_high']:.2f}], "
              f"share of oracle {sharpe['sharpe'] / oracle_sharpe:.2f}; minus {rival} "
              f"({report.overall.loc[rival, 'sharpe']:.2f}): {paired['sharpe_diff']:.2f} "
              f"[{paired['sharpe_diff_low']:.2f}, {paired['sharpe_diff_high']:.2f}]")
    if not report.lags.empty:
        print(report.lags.loc[[s for s in (MODEL, f"{MODEL}@long_short", RIVAL, oracle) if s in report.lags.index]]
              .round(2).to_string())
    if args.out is not None:
        for path in write_report(report, args.out / "report.md"):
            print(f"wrote {path}")


if __name__ == "__main__":
    main()
