"""The README's main job: materialise the whole graph on the Dagster instance in $DAGSTER_HOME.

    python -m plus_ultra_assets.run [--folds N] [--skip-walkforward]

1. an observation of `market_db`, then `production_line` (market_panel ... ppo_policy), in process;
2. the walk-forward folds of the latest panel registered as partitions (what the fold sensor does
   under `dagster dev`), each materialised in its own run;
3. `walkforward_report` over every materialised fold.
Every run is recorded in the instance, so `make ui` shows them, their checks and their lineage.
"""

import argparse
import sys
import time

import dagster as dg
import pandas as pd

from plus_ultra_assets.definitions import artifacts, defs, experiment
from plus_ultra_assets.partitions import FOLDS


def _execute(job: str, instance: dg.DagsterInstance, partition: str | None = None) -> float:
    started = time.perf_counter()
    result = defs.resolve_job_def(job).execute_in_process(instance=instance, partition_key=partition,
                                                          raise_on_error=False)
    if not result.success:
        failed = [e for e in result.all_events if e.event_type_value in ("STEP_FAILURE", "RUN_FAILURE")]
        reason = failed[0].message if failed else "see the run in the UI"
        sys.exit(f"run {result.run_id} of {job}{f' [{partition}]' if partition else ''} failed: {reason}")
    return time.perf_counter() - started


def planned_folds() -> list[str]:
    from plus_ultra_ml.evaluation.walkforward import plan_folds

    cfg = experiment.load()
    times = pd.read_parquet(artifacts.asset_path("market_panel"), columns=[]).index.get_level_values("timestamp")
    return [fold.name for fold in plan_folds(times, cfg.walkforward, cfg.windows)]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--skip-walkforward", action="store_true", help="only the production line")
    parser.add_argument("--folds", type=int, default=None, help="materialise only the most recent N folds")
    args = parser.parse_args(argv)
    instance = dg.DagsterInstance.get()
    _execute("observe_market_db", instance)
    timings = {"production_line": _execute("production_line", instance)}
    print(f"production line materialised in {timings['production_line']:.0f} s", flush=True)
    if not args.skip_walkforward:
        folds = planned_folds()
        folds = folds[-args.folds:] if args.folds else folds
        known = set(instance.get_dynamic_partitions(FOLDS.name))
        instance.add_dynamic_partitions(FOLDS.name, [f for f in folds if f not in known])
        for fold in folds:
            timings[fold] = _execute("walkforward", instance, partition=fold)
            print(f"walk-forward {fold} materialised in {timings[fold]:.0f} s", flush=True)
        timings["walkforward_report"] = _execute("walkforward_report_job", instance)
        print(f"walk-forward report: {artifacts.root}/reports/walkforward/report.html (and report.md)")
    print(f"graph materialised in {sum(timings.values()):.0f} s: "
          + ", ".join(f"{k} {v:.0f}s" for k, v in timings.items()), flush=True)


if __name__ == "__main__":
    main()
