"""Walk-forward out-of-sample evaluation: the fixture against its oracle, and the real S&P 500 sample.

Usage:
    python benchmarks/bench_walkforward.py fixture [--config configs/smoke.yaml] [--db data/fixture.db]
        [--seeds N] [--folds N] [--dev] [--no-ppo] [--out DIR] [dotted overrides ...]
    python benchmarks/bench_walkforward.py sp500 [--config configs/daily.yaml] [--seeds N] [--no-ppo] [--out DIR]

Both run the library's evaluation line without Dagster (`experiments.fold.run_walkforward`: for every
fold of `plan_folds`, the supervised model and PPO are refitted on the fold's own training segment,
selected on its validation segment, and scored on its test window; baselines are fitted on the
same segments), then `evaluation.report.build_report` on the concatenated out-of-sample path.
Printed per strategy: annualised net Sharpe with its 95% stationary block-bootstrap interval, total
return, max drawdown, turnover; then the per-fold Sharpe, the per-seed spread and the IC.

fixture
    The default fixture (`plus-ultra fixture data/fixture.db` defaults) and the smoke preset: the
    preset's `walkforward:` folds (3 folds of 1,500 bars), `--seeds` models per fold (the report
    averages their positions' returns; the per-seed table gives mean and std). Two reference rows
    that are not strategies anyone could trade are added: `forecast_sign` (sign of the model's own
    1-bar forecast, which separates a good forecast from a poor position head) and the reference
    `sign_oracle` (sign of the generator's `truth_oracle`, the oracle of fixture format 1). The
    report's own same-bars oracle (evaluation.oracle, joined by run_fold) gives each strategy's
    share of the oracle on exactly the scored bars (the `share` column).

    --dev: the development folds used to choose settings. The data is cut at the first evaluated
    fold's data cutoff (the end of its validation segment; the earlier of the requested plan's and
    the preset's own plan's, so `--folds N` cannot move the cut into the preset's evaluated folds)
    and the same fold plan is laid on what remains, so every number (validation and "test" of these
    folds) comes from bars before the first evaluated test bar: nothing chosen here has seen an
    evaluated test window.

sp500
    `arch.data.sp500` (S&P 500 index, daily, 1999-2018, no download: shipped with `arch`), ingested
    with `plus_ultra_ml.data.ingest` into a temporary SQLite file, prices adjusted by `Adj Close`, and
    run with the daily preset (configs/daily.yaml) as it is: no recipe overrides here (only the
    database path, tracking off, and --seeds / --no-ppo). Compared with buy-and-hold and LightGBM (and
    the other baselines) on the same bars. benchmarks/bench_real.py runs the same preset on every
    real daily dataset the dependencies ship.

--out DIR writes the scored predictions (report format, with the reference rows) and the report
(report.md, its figures and metrics parquet) there. Results and the selection that led to the
presets' settings: docs/evaluation.md.

Timings are wall-clock; on the shared 2-core development machine other jobs ran at the same time.
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from bench_supervised_ic import fixture_database
from bench_supervised_ic import quiet as quiet_training
from plus_ultra_ml.config import ExperimentConfig, load_config
from plus_ultra_ml.data.training_data import TrainingData
from plus_ultra_ml.evaluation.predictions import FORECAST, POSITION, REFERENCE
from plus_ultra_ml.evaluation.report import build_report, write_report
from plus_ultra_ml.evaluation.walkforward import plan_folds
from plus_ultra_ml.experiments.dataset import load_training_data
from plus_ultra_ml.experiments.fold import FoldResult, run_walkforward
from plus_ultra_ml.synthetic.fixture import ORACLE_INDICATOR, read_fixture_truth

SP500_SYMBOL = "SPX"


def quiet() -> None:
    quiet_training()
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")


def sp500_database() -> Path:
    import arch.data.sp500

    from plus_ultra_ml.data.ingest import IngestOptions, ingest_frame

    raw = arch.data.sp500.load().reset_index()
    target = Path(tempfile.mkdtemp(prefix="plus_ultra_sp500_")) / "sp500.db"
    ingest_frame(target, raw, IngestOptions(symbol=SP500_SYMBOL, adjust_column="Adj Close"))
    return target


def truncate(data: TrainingData, last: pd.Timestamp) -> TrainingData:
    """The data up to and including bar `last` (features are causal: cutting the future changes no past value)."""
    keep = np.asarray(data.features.index.get_level_values("timestamp") <= last)
    regimes = data.regimes[keep] if data.regimes is not None else None  # causal labels: same argument
    return TrainingData(data.features[keep], data.panel[keep], data.feature_fingerprint, data.db_path,
                        data.db_fingerprint, regimes=regimes)


def with_references(predictions: pd.DataFrame, panel: pd.DataFrame) -> pd.DataFrame:
    """Add `forecast_sign` (sign of the model's 1-bar forecast) and, on the fixture, the reference `sign_oracle`."""
    frame = predictions.copy()
    if f"{FORECAST}h1" in frame:
        frame[POSITION + "forecast_sign"] = np.sign(frame[f"{FORECAST}h1"].to_numpy())
    column = f"ind__{ORACLE_INDICATOR}"
    if column in panel.columns:
        frame[REFERENCE + "sign_oracle"] = np.sign(panel[column].reindex(frame.index).to_numpy())
    return frame


def fmt(value: float, digits: int = 2) -> str:
    return "nan" if not math.isfinite(value) else f"{value:.{digits}f}"


def print_report(predictions: pd.DataFrame, cfg: ExperimentConfig, out: Path | None = None) -> pd.DataFrame:
    report = build_report(predictions, cfg.costs, title="walk-forward")
    if out is not None:  # the predictions and the report, so tables can be re-derived without a rerun
        out.mkdir(parents=True, exist_ok=True)
        predictions.to_parquet(out / "predictions.parquet")
        written = write_report(report, out / "report.md")
        print(f"wrote {out / 'predictions.parquet'} and {', '.join(str(p) for p in written)}")
    overall = report.overall
    share = "share_of_oracle" in overall
    print("\n" + "\n".join(report.notes))
    print("| strategy | net Sharpe | 95% CI | total return | max drawdown | turnover | exposure |"
          + (" share of oracle |" if share else ""))
    print("|---|---|---|---|---|---|---|" + ("---|" if share else ""))
    for name, row in overall.sort_values("sharpe", ascending=False).iterrows():
        ratio = f" {fmt(row['share_of_oracle'])} |" if share else ""
        print(f"| {name} | {fmt(row['sharpe'])} | [{fmt(row['sharpe_low'])}, {fmt(row['sharpe_high'])}] | "
              f"{fmt(100 * row['total_return'], 1)}% | {fmt(100 * row['max_drawdown'], 1)}% | "
              f"{fmt(row['turnover'], 3)} | {fmt(row['exposure'], 2)} |{ratio}")
    per_fold = report.per_fold["sharpe"].unstack("strategy")
    print("\nnet Sharpe per fold:")
    print(per_fold.round(2).to_string())
    if report.per_seed["seeds"].max() > 1:
        print("\nnet Sharpe across seeds (each seed's own path):")
        print(report.per_seed.round(2).to_string())
    if not report.ppo_selection.empty:
        print("\nPPO selection (rl.selection, validation only; test: selected / head / PPO's own):")
        print(report.ppo_selection.round(3).to_string())
    if not report.references.empty:
        print("\nreferences on the same bars (not strategies):")
        print(report.references.round(2).to_string())
    if not report.ic.empty:
        print("\nsignal quality of the model's forecast:")
        print(report.ic.round(4).to_string())
    return overall


def print_validation(results: list[FoldResult]) -> None:
    """Validation-segment numbers the training recorded (what model selection may look at)."""
    rows = []
    for result in results:
        for key, value in result.metrics.items():
            seed, _, rest = key.partition("_")
            if "_val_" in f"_{rest}" or rest.startswith("ppo_val_"):
                rows.append({"fold": result.fold, "seed": seed, "metric": rest, "value": value})
    if not rows:
        return
    table = pd.DataFrame(rows).pivot_table(index=["fold", "seed"], columns="metric", values="value")
    wanted = [c for c in ("supervised_val_sharpe_net", "supervised_val_forecast_sharpe_net",
                          "supervised_val_ic_next_bar", "supervised_val_turnover", "supervised_val_exposure",
                          "ppo_val_ppo_sharpe_net", "ppo_best_update", "ppo_val_gain_bps", "ppo_val_gain_low_bps",
                          "ppo_val_gain_high_bps", "ppo_selection_kept") if c in table.columns]
    print("\nvalidation segments (selection numbers; position head = supervised_val_sharpe_net):")
    print(table[wanted].round(3).to_string())
    print("mean over folds and seeds:")
    print(table[wanted].mean().round(3).to_string())


def run(cfg: ExperimentConfig, data: TrainingData, folds, root: Path) -> tuple[pd.DataFrame, list[FoldResult]]:
    started = time.perf_counter()

    def done(result: FoldResult) -> None:
        print(f"  {result.fold}: {len(result.predictions):,} scored rows, "
              f"{time.perf_counter() - started:.0f} s elapsed", flush=True)

    outcome = run_walkforward(cfg, data, root=root, folds=folds, regimes=data.regimes, on_fold=done)
    return outcome.predictions, outcome.results


def fixture(args: argparse.Namespace) -> None:
    db = fixture_database(Path(args.db))
    truth = read_fixture_truth(db)
    overrides = ["tracking.mode=disabled", f"data.db_path={db}", f"walkforward.seeds={args.seeds}",
                 *([f"walkforward.n_folds={args.folds}"] if args.folds else []),
                 *(["walkforward.ppo=false"] if args.no_ppo else []), *args.overrides]
    cfg = load_config(args.config, overrides)
    t0 = time.perf_counter()
    data = load_training_data(cfg, db)
    times = data.features.index.get_level_values("timestamp")
    folds = plan_folds(times, cfg.walkforward, cfg.windows)
    label = "evaluated"
    if args.dev:
        # Cut before the preset's evaluated folds too: `--folds 1` alone would put the cut at the last
        # fold's cutoff, and the development plan would then land on the preset's earlier test windows.
        preset = cfg.walkforward.model_copy(update={"n_folds": load_config(args.config, []).walkforward.n_folds})
        data = truncate(data, min(folds[0].cutoff, plan_folds(times, preset, cfg.windows)[0].cutoff))
        folds = plan_folds(data.features.index.get_level_values("timestamp"), cfg.walkforward, cfg.windows)
        label = f"development (data cut at {data.features.index.get_level_values('timestamp').max()})"
    print(f"fixture {db}: {len(data.features):,} rows x {data.features.shape[1]} features "
          f"({time.perf_counter() - t0:.0f} s); oracle net Sharpe over the whole fixture (fixture_truth) {truth.oracle_sharpe_net:.2f}, "
          f"IC {truth.oracle_ic:.4f}")
    print(f"preset {args.config} {' '.join(args.overrides)}; seeds {args.seeds}; PPO {cfg.walkforward.ppo}")
    print(f"{label} folds: " + ", ".join(f"{f.name} (test {f.split.bounds['test'][0]:%Y-%m-%d %H:%M} .. "
                                         f"{f.split.bounds['test'][1]:%Y-%m-%d %H:%M})" for f in folds))
    with tempfile.TemporaryDirectory(prefix="plus_ultra_wf_") as root:
        t0 = time.perf_counter()
        predictions, results = run(cfg, data, folds, Path(root))
        print(f"walk-forward: {time.perf_counter() - t0:.0f} s wall")
    print_validation(results)
    overall = print_report(with_references(predictions, data.panel), cfg, args.out)
    ours = [s for s in ("model", "ppo") if s in overall.index]
    baselines = [s for s in overall.index if s not in (*ours, "forecast", "forecast_sign")]
    best_baseline = overall.loc[baselines, "sharpe"].max()
    for name in ours:
        sharpe = overall.loc[name, "sharpe"]
        share = overall.loc[name, "share_of_oracle"] if "share_of_oracle" in overall else float("nan")
        print(f"{name}: net Sharpe {sharpe:.2f} = {share:.0%} of the same-bars oracle; best baseline {best_baseline:.2f} "
              f"({overall.loc[baselines, 'sharpe'].idxmax()}); beats every baseline: {bool(sharpe > best_baseline)}")


def sp500(args: argparse.Namespace) -> None:
    db = sp500_database()
    overrides = ["tracking.mode=disabled", f"data.db_path={db}", f"walkforward.seeds={args.seeds}",
                 *(["walkforward.ppo=false"] if args.no_ppo else [])]
    cfg = load_config(args.config, overrides)
    t0 = time.perf_counter()
    data = load_training_data(cfg, db)
    folds = plan_folds(data.features.index.get_level_values("timestamp"), cfg.walkforward, cfg.windows)
    print(f"S&P 500 daily ({db}): {len(data.features):,} bars x {data.features.shape[1]} features "
          f"({time.perf_counter() - t0:.0f} s); preset {args.config}, unchanged")
    tests = [f.split.bounds["test"] for f in folds]
    print(f"{len(folds)} folds: " + ", ".join(f"{first:%Y-%m-%d}..{last:%Y-%m-%d}" for first, last in tests))
    with tempfile.TemporaryDirectory(prefix="plus_ultra_wf_") as root:
        t0 = time.perf_counter()
        predictions, results = run(cfg, data, folds, Path(root))
        print(f"walk-forward: {time.perf_counter() - t0:.0f} s wall")
    print_validation(results)
    print_report(with_references(predictions, data.panel), cfg, args.out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="what", required=True)
    fx = sub.add_parser("fixture", help="the default fixture, smoke preset, against the stored oracle")
    fx.add_argument("--config", default="configs/smoke.yaml")
    fx.add_argument("--db", default="data/fixture.db")
    fx.add_argument("--seeds", type=int, default=1)
    fx.add_argument("--folds", type=int, default=None, help="the most recent N folds (default: the preset's)")
    fx.add_argument("--dev", action="store_true", help="development folds before the first evaluated test bar")
    fx.add_argument("--no-ppo", action="store_true")
    fx.add_argument("--out", type=Path, default=None, help="write predictions.parquet and report.md here")
    fx.add_argument("overrides", nargs="*")
    sp = sub.add_parser("sp500", help="the S&P 500 daily sample from arch")
    sp.add_argument("--config", default="configs/daily.yaml")
    sp.add_argument("--seeds", type=int, default=1)
    sp.add_argument("--no-ppo", action="store_true")
    sp.add_argument("--out", type=Path, default=None, help="write predictions.parquet and report.md here")
    args = parser.parse_args()
    quiet()
    fixture(args) if args.what == "fixture" else sp500(args)


if __name__ == "__main__":
    main()
