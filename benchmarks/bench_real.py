"""The real-data suite: the daily preset, unchanged, on every real daily dataset a dependency ships.

Usage:
    python benchmarks/bench_real.py [--datasets sp500,nasdaq,...] [--no-ppo] [--seeds N] [--out DIR]
        [--config configs/daily.yaml]

Datasets (no download: each is read from an installed package's own files):
    sp500, nasdaq     `arch.data.sp500` / `arch.data.nasdaq`: the indices' daily bars 1999-2018, adjusted by `Adj Close`
    bokeh_<SYM>       `bokeh_sampledata.stocks` AAPL, FB, GOOG, IBM, MSFT, each alone (adjusted by `adj_close`)
    bokeh_panel       the same five stocks as one panel
    skfolio_sp500     skfolio's bundled 20-stock S&P 500 daily closes (1990-2022): close-only, read from the
                      installed distribution's file list (`importlib.metadata`), never by importing skfolio

Each dataset goes through the project's own ingest path (`data.ingest.ingest_frame`) into a fresh SQLite file,
then `experiments.dataset.load_training_data` and `experiments.fold.run_walkforward` with the preset as it
is in the YAML. Only bookkeeping is overridden: `data.db_path` (the fresh file), `tracking.mode=disabled`,
and, when asked, `walkforward.seeds` / `walkforward.ppo`. The numbers are `evaluation.report.build_report`'s
own tables (overall, strategy_ic, paired), with the preset's portfolio books (`--config configs/universe.yaml`:
long-short and long-only books of every score, the cross-sectional baselines, each book paired with the
model's book of the same construction), printed and written as markdown (`--out`, with each dataset's
report.md and predictions.parquet); nothing is recomputed here.

A dataset the preset cannot plan (fewer sessions than its first fold needs, e.g. bokeh's FB with ~200
sessions) or whose package is not installed is reported as skipped with the reason, not silently dropped.
"""

from __future__ import annotations

import argparse
import gzip
import io
import math
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_supervised_ic import quiet  # noqa: E402

from plus_ultra_ml.data.ingest import IngestOptions, ingest_frame  # noqa: E402
from plus_ultra_ml.errors import PlusUltraError  # noqa: E402

BOKEH_SYMBOLS = ("AAPL", "FB", "GOOG", "IBM", "MSFT")
MODEL, PPO, LIGHTGBM, BUY_AND_HOLD = "model", "ppo", "lightgbm", "buy_and_hold"


@dataclass(frozen=True)
class Dataset:
    """A source frame (long: one row per symbol and session) and how it enters the contract."""

    name: str
    frame: pd.DataFrame
    options: IngestOptions
    description: str


# --------------------------------------------------------------------------------------------
# loaders: installed packages' own files, no download
# --------------------------------------------------------------------------------------------
def arch_index(name: str) -> Dataset:
    import importlib

    module = importlib.import_module(f"arch.data.{name}")
    frame = module.load().reset_index()
    symbol = {"sp500": "SPX", "nasdaq": "NDX"}[name]
    return Dataset(name, frame, IngestOptions(symbol=symbol, adjust_column="Adj Close"),
                   f"arch.data.{name} ({symbol}), OHLCV adjusted by Adj Close")


def bokeh_stock(symbol: str) -> pd.DataFrame:
    from bokeh_sampledata import stocks

    frame = pd.DataFrame(getattr(stocks, symbol))
    frame["symbol"] = symbol
    return frame


def bokeh(symbols: tuple[str, ...], name: str) -> Dataset:
    frame = pd.concat([bokeh_stock(s) for s in symbols], ignore_index=True)
    return Dataset(name, frame, IngestOptions(adjust_column="adj_close"),
                   f"bokeh_sampledata.stocks {', '.join(symbols)}, OHLCV adjusted by adj_close")


def skfolio_csv() -> Path:
    """The S&P 500 prices file of the installed skfolio distribution (found in its file list, not imported)."""
    from importlib import metadata

    try:
        distribution = metadata.distribution("skfolio")
    except metadata.PackageNotFoundError:
        raise PlusUltraError("skfolio is not installed in this environment (it is not among the project's "
                             "dependencies), so its bundled S&P 500 prices cannot be read; install skfolio "
                             "to add this dataset") from None
    candidates = [f for f in distribution.files or () if "sp500" in f.name.lower() and ".csv" in f.name.lower()]
    if not candidates:
        raise PlusUltraError(f"skfolio {distribution.version} lists no sp500 CSV among its files; "
                             "its datasets moved: update skfolio_csv()")
    return Path(distribution.locate_file(sorted(candidates, key=lambda f: str(f))[0]))


def read_wide_closes(path: Path) -> pd.DataFrame:
    """A wide CSV (a date column, then one close column per ticker) -> long frame (timestamp, symbol, close)."""
    raw = path.read_bytes()
    text = gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw
    wide = pd.read_csv(io.BytesIO(text))
    date = wide.columns[0]
    long = wide.melt(id_vars=[date], var_name="symbol", value_name="close").dropna(subset=["close"])
    return long.rename(columns={date: "timestamp"})


def skfolio_sp500() -> Dataset:
    path = skfolio_csv()
    frame = read_wide_closes(path)
    return Dataset("skfolio_sp500", frame, IngestOptions(close_only=True),
                   f"skfolio {path.name}: {frame['symbol'].nunique()} stocks' daily closes (close-only)")


def load_dataset(name: str) -> Dataset:
    if name in ("sp500", "nasdaq"):
        return arch_index(name)
    if name == "bokeh_panel":
        return bokeh(BOKEH_SYMBOLS, name)
    if name.startswith("bokeh_") and name[len("bokeh_"):] in BOKEH_SYMBOLS:
        return bokeh((name[len("bokeh_"):],), name)
    if name == "skfolio_sp500":
        return skfolio_sp500()
    raise PlusUltraError(f"unknown dataset {name!r}; choose from {', '.join(ALL_DATASETS)}")


ALL_DATASETS = ("sp500", "nasdaq", *(f"bokeh_{s}" for s in BOKEH_SYMBOLS), "bokeh_panel", "skfolio_sp500")


# --------------------------------------------------------------------------------------------
# one dataset: ingest -> walk-forward -> the report's own tables
# --------------------------------------------------------------------------------------------
def ingest(dataset: Dataset, root: Path) -> Path:
    db = root / f"{dataset.name}.db"
    ingest_frame(db, dataset.frame, dataset.options, source=dataset.name)
    return db


def evaluate(dataset: Dataset, config: str, seeds: int | None, ppo: bool, work: Path, out: Path | None):
    from plus_ultra_ml.config import load_config
    from plus_ultra_ml.evaluation.predictions import strategies_of
    from plus_ultra_ml.evaluation.report import build_report, write_report
    from plus_ultra_ml.evaluation.walkforward import plan_folds
    from plus_ultra_ml.experiments.dataset import load_training_data
    from plus_ultra_ml.experiments.fold import run_walkforward

    db = ingest(dataset, work)
    overrides = [f"data.db_path={db}", "tracking.mode=disabled",
                 *([f"walkforward.seeds={seeds}"] if seeds else []), *([] if ppo else ["walkforward.ppo=false"])]
    cfg = load_config(config, overrides)
    started = time.perf_counter()
    data = load_training_data(cfg, db)
    folds = plan_folds(data.features.index.get_level_values("timestamp"), cfg.walkforward, cfg.windows)
    print(f"{dataset.name}: {dataset.description}; {len(data.features):,} rows x {data.features.shape[1]} features; "
          f"{len(folds)} folds, test " + ", ".join(f"{f.split.bounds['test'][0]:%Y-%m-%d}..{f.split.bounds['test'][1]:%Y-%m-%d}"
                                                    for f in folds), flush=True)
    result = run_walkforward(cfg, data, root=work / f"{dataset.name}_folds", folds=folds, regimes=data.regimes,
                             on_fold=lambda r: print(f"  {r.fold}: {len(r.predictions):,} rows, "
                                                     f"{time.perf_counter() - started:.0f} s", flush=True))
    report = build_report(result.predictions, cfg.costs, title=f"bench_real {dataset.name} ({cfg.name})",
                          n_trials=len(strategies_of(result.predictions)), portfolio=cfg.portfolio, execution=cfg.backtest)
    wall = time.perf_counter() - started
    if out is not None:
        (out / dataset.name).mkdir(parents=True, exist_ok=True)
        result.predictions.to_parquet(out / dataset.name / "predictions.parquet")
        write_report(report, out / dataset.name / "report.md")
    return report, wall


# --------------------------------------------------------------------------------------------
# tables (markdown, printed and written)
# --------------------------------------------------------------------------------------------
def fmt(value, digits: int = 2) -> str:
    return "" if value is None or not math.isfinite(float(value)) else f"{float(value):.{digits}f}"


def interval(row: pd.Series, key: str, digits: int = 2) -> str:
    low, high = row.get(f"{key}_low"), row.get(f"{key}_high")
    return f"{fmt(row.get(key), digits)} [{fmt(low, digits)}, {fmt(high, digits)}]"


def dataset_table(name: str, report, wall: float) -> str:
    """Per strategy: IC and rank IC (h1), net Sharpe with its interval, max drawdown, turnover; then the paired rows."""
    ic = report.strategy_ic
    panel = "ic" in ic and ic["n_timestamps"].fillna(0).max() > 0 if not ic.empty else False
    head = "| strategy | pooled IC | pooled rank IC |" + (" IC (cross-section) | rank IC |" if panel else "") \
        + " net Sharpe [95% CI] | max DD | turnover |"
    lines = [f"### {name}", "", report.notes[0] + f" Wall {wall:.0f} s.", "", head,
             "|" + "---|" * (head.count("|") - 1)]
    order = [s for s in (MODEL, PPO) if s in report.overall.index] + \
        [s for s in report.overall.sort_values("sharpe", ascending=False).index if s not in (MODEL, PPO)]
    for strategy in order:
        row = report.overall.loc[strategy]
        ics = ic.loc[strategy] if strategy in ic.index else pd.Series(dtype=float)
        cells = [strategy, fmt(ics.get("pooled_ic"), 4), fmt(ics.get("pooled_rank_ic"), 4)]
        if panel:
            cells += [fmt(ics.get("ic"), 4), fmt(ics.get("rank_ic"), 4)]
        cells += [interval(row, "sharpe"), f"{fmt(100 * row['max_drawdown'], 1)}%", fmt(row["turnover"], 3)]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "| model minus | net Sharpe diff [95% CI] | pooled IC diff [95% CI] | bars |", "|---|---|---|---|"]
    for other in (LIGHTGBM, BUY_AND_HOLD, *(s for s in report.paired.index if s not in (LIGHTGBM, BUY_AND_HOLD))):
        if other in report.paired.index:
            row = report.paired.loc[other]
            versus = other if row["model_side"] == MODEL else f"{other} (vs {row['model_side']})"
            lines.append(f"| {versus} | {interval(row, 'sharpe_diff')} | {interval(row, 'pooled_ic_diff', 4)} | "
                         f"{fmt(row['bars'], 0)} |")
    return "\n".join(lines) + "\n"


SUMMARY_HEAD = ("| dataset | model net Sharpe | PPO | LightGBM | buy-and-hold | model IC | LightGBM IC | "
                "model - LightGBM: IC diff [95% CI] | model - buy-and-hold: Sharpe diff [95% CI] |\n"
                "|---|---|---|---|---|---|---|---|---|")


def summary_line(name: str, table: pd.DataFrame) -> str:
    """One dataset's headline from the report's own long metrics table (`Report.metrics_table()`,
    also saved as report_metrics.parquet): IC is the pooled h1 IC, intervals are the report's."""
    def get(scope: str, strategy: str, metric: str) -> float:
        hit = table[(table["scope"] == scope) & (table["fold"] == "all") & (table["strategy"] == strategy)
                    & (table["metric"] == metric)]["value"]
        return float(hit.iloc[0]) if len(hit) else float("nan")

    def ci(scope: str, strategy: str, key: str, digits: int) -> str:
        return (f"{fmt(get(scope, strategy, key), digits)} [{fmt(get(scope, strategy, key + '_low'), digits)}, "
                f"{fmt(get(scope, strategy, key + '_high'), digits)}]")

    sharpe = [fmt(get("overall", s, "sharpe")) for s in (MODEL, PPO, LIGHTGBM, BUY_AND_HOLD)]
    ics = [fmt(get("strategy_ic", s, "pooled_ic"), 4) for s in (MODEL, LIGHTGBM)]
    return (f"| {name} | " + " | ".join([*sharpe, *ics, ci("paired", LIGHTGBM, "pooled_ic_diff", 4),
                                         ci("paired", BUY_AND_HOLD, "sharpe_diff", 2)]) + " |")


def target_line(name: str, report) -> str:
    """The benchmark target on this dataset: model IC above LightGBM's (interval excluding 0), Sharpe >= buy-and-hold."""
    paired = report.paired
    if LIGHTGBM not in paired.index or BUY_AND_HOLD not in paired.index:
        return f"| {name} | n/a | n/a |"
    low = paired.loc[LIGHTGBM, "pooled_ic_diff_low"]
    ic_met = bool(math.isfinite(low) and low > 0)
    sharpe_met = bool(report.overall.loc[MODEL, "sharpe"] >= report.overall.loc[BUY_AND_HOLD, "sharpe"])
    return f"| {name} | {'met' if ic_met else 'NOT met'} | {'met' if sharpe_met else 'NOT met'} |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--datasets", default=",".join(ALL_DATASETS), help="comma-separated (default: all)")
    parser.add_argument("--config", default="configs/daily.yaml")
    parser.add_argument("--no-ppo", action="store_true")
    parser.add_argument("--seeds", type=int, default=None, help="models per fold (default: the preset's)")
    parser.add_argument("--out", type=Path, default=None, help="write bench_real.md and per-dataset reports here")
    args = parser.parse_args()
    quiet()
    names = [n.strip() for n in args.datasets.split(",") if n.strip()]
    sections, summaries, targets, skipped = [], [], [], []
    with tempfile.TemporaryDirectory(prefix="plus_ultra_real_") as root:
        for name in names:
            try:
                dataset = load_dataset(name)
                report, wall = evaluate(dataset, args.config, args.seeds, not args.no_ppo, Path(root), args.out)
            except PlusUltraError as error:  # unplannable or unavailable: say so, keep going
                skipped.append(f"- {name}: skipped: {error}")
                print(skipped[-1], flush=True)
                continue
            sections.append(dataset_table(name, report, wall))
            summaries.append(summary_line(name, report.metrics_table()))
            targets.append(target_line(name, report))
            print("\n" + sections[-1], flush=True)
    command = "python benchmarks/bench_real.py " + " ".join(sys.argv[1:])
    document = [f"# bench_real ({args.config})", "", f"`{command.strip()}`", "", "## Summary", "", SUMMARY_HEAD,
                *summaries, "", *sections,
                "## Target (model pooled IC above LightGBM's, interval excluding 0; model net Sharpe >= buy-and-hold's)",
                "", "| dataset | IC > LightGBM | Sharpe >= buy-and-hold |", "|---|---|---|", *targets, "", *skipped, ""]
    text = "\n".join(document)
    print("\n" + "\n".join([SUMMARY_HEAD, *summaries, "", *document[-(len(targets) + len(skipped) + 5):]]))
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "bench_real.md").write_text(text)
        print(f"wrote {args.out / 'bench_real.md'}")


if __name__ == "__main__":
    main()
