"""End-to-end growth with the size of the universe: every stage from a file of candles to a served signal.

For each size (daily universes of --symbols names x --bars sessions, built by
`plus-ultra fixture --universe N --freq 1D`; and, with --intraday, 10 symbols of 15-minute bars from
the default fixture) this times, each stage in its own child process so its memory is its own:

  ingest      `plus-ultra ingest` of the universe's candles (one long Parquet file, exported
              from the fixture beforehand, untimed) into a new database
  validate    `plus-ultra validate` of the fixture database
  load        panel -> labels -> features -> windows, in one child, in the order a fit runs them:
  labels        data.panel.build_panel (validate + load + calendar + gaps),
  features      data.regimes.label_regimes, features.pipeline.compute_features,
  windows       data.windows.build_windows on the walk-forward's last fold (train/val/test);
              peak RSS after each step is cumulative (what a fit holds by then)
  fold        `plus-ultra walkforward walkforward.n_folds=1`: the most recent fold of the config
              (daily: configs/daily.yaml; intraday: configs/smoke.yaml), supervised + PPO + baselines
  report      `plus-ultra walkforward --report-only` on that fold's files
  serving     a cache miss of the service on a new bar (serving.predictor.Predictor on the fold's
              supervised checkpoint: bounded read + features + regime state for every symbol), p50 of 5

and prints one table: wall and CPU seconds and peak RSS (MiB) per stage and size, then the growth
exponent of CPU time between consecutive sizes (log ratio of CPU seconds over log ratio of rows;
1.0 is linear). CPU seconds are the figure to read on a shared machine. Peak RSS is each child's
ru_maxrss from wait4 (Linux carries a parent's peak across fork + exec; this parent imports nothing
heavy and holds a few tens of MiB), and for the load chain VmHWM after each step; the line before the table gives the
peak of a child that only imports the modules, the floor under every row. Nothing here asserts a time.

Usage: python benchmarks/bench_scale.py [--symbols 10 100 500 2000] [--bars 2520] [--intraday]
           [--stages ingest validate load fold report serving] [--fold-up-to N] [--workdir DIR] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-c", "import sys; from plus_ultra_ml.cli import app; sys.argv[0] = 'plus-ultra'; app()"]
STAGES = ("ingest", "validate", "load", "fold", "report", "serving")
INTRADAY_ROWS = 1_000_000  # 10 symbols x 1M 15-minute bars (about 28 years of a 24/7 grid)


def run_child(args: list[str], env: dict[str, str], log: Path) -> dict[str, float]:
    """Run a command; its wall and CPU seconds (user + system, from wait4) and peak RSS in MiB."""
    started = time.perf_counter()
    with log.open("a") as out:
        out.write(f"\n$ {' '.join(args)}\n")
        out.flush()
        process = subprocess.Popen(args, env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise SystemExit(f"{' '.join(args[:6])} ... failed with exit {process.returncode}; see {log}")
    return {"wall_s": wall, "cpu_s": usage.ru_utime + usage.ru_stime, "peak_mib": usage.ru_maxrss / 1024}


def python_child(code: str, env: dict[str, str], log: Path) -> dict:
    """Run `code` in a child Python that prints one JSON line last; that dict, plus its wall/CPU/peak."""
    out = Path(tempfile.mktemp(suffix=".json", dir=log.parent))
    wrapped = textwrap.dedent(code) + f"\nimport json as _j; open({str(out)!r}, 'w').write(_j.dumps(RESULT))\n"
    totals = run_child([sys.executable, "-c", wrapped], env, log)
    result = json.loads(out.read_text())
    out.unlink()
    return {**result, "_total": totals}


CHAIN = """
import json, os, resource, time
from plus_ultra_ml.config import load_config
from plus_ultra_ml.data.panel import build_panel
from plus_ultra_ml.data.regimes import label_regimes
from plus_ultra_ml.data.windows import build_targets, build_windows
from plus_ultra_ml.evaluation.walkforward import plan_folds
from plus_ultra_ml.features.pipeline import compute_features

def hwm_mib():
    line = [l for l in open('/proc/self/status') if l.startswith('VmHWM')][0]
    return int(line.split()[1]) / 1024

RESULT = {}
def step(name, fn):
    w, c = time.perf_counter(), time.process_time()
    value = fn()
    RESULT[name] = {"wall_s": time.perf_counter() - w, "cpu_s": time.process_time() - c, "peak_mib": hwm_mib()}
    return value

cfg = load_config(CONFIG)
built = step("panel", lambda: build_panel(DB, cfg.data))
panel = built.panel
regimes = step("labels", lambda: label_regimes(panel, cfg.regimes))
features = step("features", lambda: compute_features(panel, cfg.features, regimes))
frame = features.frame
fold = plan_folds(frame.index.get_level_values("timestamp"), cfg.walkforward, cfg.windows)[-1]
windows = step("windows", lambda: build_windows(frame, build_targets(panel, cfg.windows.horizon), fold.split, cfg.windows))
RESULT["facts"] = {"rows": len(panel), "symbols": int(panel.index.get_level_values("symbol").nunique()),
                   "features": frame.shape[1], "feature_dtype": str(frame.dtypes.iloc[0]),
                   "panel_mib": panel.memory_usage(deep=True).sum() / 2**20,
                   "features_mib": frame.memory_usage(deep=True).sum() / 2**20,
                   "train_windows": int(len(windows.ends["train"]))}
"""

SERVING = """
import glob, statistics, time
from plus_ultra_ml.config import load_config
from plus_ultra_ml.serving.predictor import Predictor
cfg = load_config(CONFIG)
checkpoint = sorted(glob.glob(CHECKPOINTS + "/**/model.pt", recursive=True))[-1]
predictor = Predictor.load(checkpoint, db_path=DB, service=cfg.service)
samples = []
for _ in range(6):  # the first read warms the file cache; p50 of the other five
    t = time.perf_counter()
    windows = predictor.featuriser._refresh()
    samples.append(time.perf_counter() - t)
RESULT = {"miss_p50_s": statistics.median(samples[1:]), "windows": len(windows.symbols)}
"""


IMPORTS = """
import plus_ultra_ml.data.panel, plus_ultra_ml.data.regimes, plus_ultra_ml.features.pipeline, plus_ultra_ml.data.windows
import plus_ultra_ml.training.fit, plus_ultra_ml.serving.predictor
RESULT = {}
"""


def export_parquet(db: Path, target: Path, env: dict[str, str], log: Path) -> None:
    """The fixture's candles as one long Parquet file (the user's file for `ingest`); untimed."""
    code = f"""
import sqlite3, pandas as pd
with sqlite3.connect({str(db)!r}) as c:
    frame = pd.read_sql("SELECT timestamp, symbol, open, high, low, close, volume FROM series", c)
frame.to_parquet({str(target)!r}, index=False)
RESULT = {{"rows": len(frame)}}
"""
    python_child(code, env, log)


def measure_size(label: str, db_args: list[str], config: str, stages: tuple[str, ...], work: Path,
                 env: dict[str, str]) -> dict[str, dict]:
    folder = work / label
    folder.mkdir(parents=True, exist_ok=True)
    log = folder / "log.txt"
    db = folder / "fixture.db"
    rows: dict[str, dict] = {}
    if not db.exists():
        rows["fixture"] = run_child([*CLI, "fixture", str(db), *db_args], env, log)
    if "ingest" in stages:
        source = folder / "candles.parquet"
        if not source.exists():
            export_parquet(db, source, env, log)
        target = folder / "ingested.db"
        target.unlink(missing_ok=True)
        rows["ingest"] = run_child([*CLI, "ingest", str(target), str(source)], env, log)
    if "validate" in stages:
        rows["validate"] = run_child([*CLI, "validate", str(db), "--config", config], env, log)
    if "load" in stages:
        chain = python_child(f"CONFIG = {config!r}\nDB = {str(db)!r}\n" + CHAIN, env, log)
        rows.update({k: v for k, v in chain.items() if k in ("panel", "labels", "features", "windows")})
        rows["facts"] = chain["facts"]
    out = folder / "walkforward"
    if "fold" in stages:
        rows["fold"] = run_child([*CLI, "walkforward", "-c", config, "--db", str(db), "--out", str(out), "--restart",
                                  "walkforward.n_folds=1"], env, log)
    if "report" in stages:
        rows["report"] = run_child([*CLI, "walkforward", "--out", str(out), "--report-only"], env, log)
    if "serving" in stages:
        served = python_child(f"CONFIG = {config!r}\nDB = {str(db)!r}\nCHECKPOINTS = {str(out)!r}\n" + SERVING, env, log)
        rows["serving"] = {**served["_total"], "miss_p50_s": served["miss_p50_s"]}
    return rows


def growth(table: dict[str, dict[str, dict]], sizes: list[tuple[str, int]]) -> dict[str, list[float | None]]:
    """CPU growth exponent per stage between consecutive sizes: log(cpu ratio) / log(rows ratio)."""
    out: dict[str, list[float | None]] = {}
    for stage in sorted({s for rows in table.values() for s in rows if s != "facts"}):
        exps = []
        for (a, rows_a), (b, rows_b) in zip(sizes, sizes[1:]):
            ca, cb = table[a].get(stage, {}).get("cpu_s"), table[b].get(stage, {}).get("cpu_s")
            exps.append(math.log(cb / ca) / math.log(rows_b / rows_a) if ca and cb and ca > 0.05 else None)
        out[stage] = exps
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--symbols", type=int, nargs="+", default=[10, 100, 500, 2000])
    parser.add_argument("--bars", type=int, default=2520)
    parser.add_argument("--intraday", action="store_true", help="also 10 symbols x 1M 15-minute bars (smoke preset)")
    parser.add_argument("--stages", nargs="+", default=list(STAGES), choices=STAGES)
    parser.add_argument("--fold-up-to", type=int, default=None,
                        help="run fold, report and serving only for universes of at most this many symbols")
    parser.add_argument("--workdir", type=Path, default=None, help="keep databases and fold files here (reused)")
    parser.add_argument("--json", type=Path, default=None, help="write the table as JSON too")
    args = parser.parse_args()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="bench_scale_"))
    env = {**os.environ, "PLUS_ULTRA_HOME": str(work / "home"), "OMP_NUM_THREADS": "1", "WANDB_MODE": "disabled",
           "DAGSTER_DISABLE_TELEMETRY": "1", "PYTHONPATH": str(ROOT)}
    stages = tuple(args.stages)
    table: dict[str, dict[str, dict]] = {}
    sizes: list[tuple[str, int]] = []
    work.mkdir(parents=True, exist_ok=True)
    imports = python_child(IMPORTS, env, work / "imports.log")["_total"]  # what every child holds before any data
    print(f"a child that only imports the data, feature and training modules: peak {imports['peak_mib']:,.0f} MiB, "
          f"{imports['cpu_s']:.1f} CPU-s")
    for n in args.symbols:
        label = f"{n}x{args.bars}"
        print(f"[{time.strftime('%H:%M:%S')}] {label} ...", flush=True)
        sectors = min(11, max(1, n // 5))  # the fixture's 11 sectors, fewer for a tiny universe
        skip = ("fold", "report", "serving") if args.fold_up_to is not None and n > args.fold_up_to else ()
        table[label] = measure_size(label, ["--universe", str(n), "--sectors", str(sectors), "--freq", "1D",
                                            "--rows", str(args.bars)],
                                    "configs/daily.yaml", tuple(s for s in stages if s not in skip), work, env)
        sizes.append((label, n * args.bars))
        print(json.dumps(table[label]), flush=True)
    if args.intraday:
        label = f"10x{INTRADAY_ROWS}_15min"
        print(f"[{time.strftime('%H:%M:%S')}] {label} ...", flush=True)
        table[label] = measure_size(label, ["--rows", str(INTRADAY_ROWS), "--freq", "15min"], "configs/smoke.yaml",
                                    stages, work, env)
        print(json.dumps(table[label]), flush=True)
    load = os.getloadavg()
    print(f"\nwork folder {work}; load average at the end {load[0]:.1f} (1 min) {load[2]:.1f} (15 min)")
    stage_order = ["fixture", "ingest", "validate", "panel", "labels", "features", "windows", "fold", "report", "serving"]
    present = [s for s in stage_order if any(s in rows for rows in table.values())]
    print("\n| stage | " + " | ".join(table) + " |")
    print("|---|" + "---|" * len(table))
    for stage in present:
        cells = []
        for rows in table.values():
            r = rows.get(stage)
            if r is None:
                cells.append("")
                continue
            text = f"{r['wall_s']:.1f} s [{r['cpu_s']:.1f} CPU-s], {r['peak_mib']:,.0f} MiB"
            if "miss_p50_s" in r:
                text += f"; miss p50 {r['miss_p50_s'] * 1e3:,.0f} ms"
            cells.append(text)
        print(f"| {stage} | " + " | ".join(cells) + " |")
    facts = {label: rows.get("facts") for label, rows in table.items()}
    print("\nfacts: " + json.dumps(facts))
    exps = growth(table, sizes)
    print("\nCPU growth exponent between consecutive daily sizes (1.0 = linear): "
          + "; ".join(f"{stage} " + ", ".join("-" if e is None else f"{e:.2f}" for e in values)
                      for stage, values in exps.items()))
    if args.json:
        args.json.write_text(json.dumps({"table": table, "growth": exps}, indent=2))


if __name__ == "__main__":
    main()
