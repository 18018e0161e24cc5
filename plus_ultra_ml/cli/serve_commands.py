"""Serving commands: `plus-ultra serve`, `plus-ultra predict` and `plus-ultra promote`.

Thin wrappers over plus_ultra_ml.serving: the FastAPI app (served by uvicorn), offline inference
over a database, and the production registry's promotion gate.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from plus_ultra_ml.cli.common import console, err_console, progress, user_errors
from plus_ultra_ml.errors import PlusUltraError

ConfigOption = Annotated[Path, typer.Option("--config", "-c", help="experiment YAML (configs/smoke.yaml, ...)")]
DbOption = Annotated[Path | None, typer.Option("--db", help="SQLite database; default: the config's data.db_path")]
FeaturesOption = Annotated[Path | None, typer.Option(
    "--features", help="the feature table (parquet) the model was trained on: pins the feature definitions; "
    "default: rebuilt from the checkpoint's lineage")]
Overrides = Annotated[list[str] | None, typer.Argument(
    help="dotted config overrides, e.g. service.device=cuda service.port=9000")]
RegistryOption = Annotated[Path | None, typer.Option(
    "--registry", help="registry folder; default: service.registry_dir or $PLUS_ULTRA_HOME/registry")]


class NotPromoted(PlusUltraError):
    """The promotion gate failed (exit code 3); the production pointer did not move."""

    exit_code = 3


def _registry(cfg, registry: Path | None):
    from plus_ultra_ml.serving.registry import Registry

    return Registry(registry) if registry else Registry.from_config(cfg.service)


@user_errors
def serve(
    config: ConfigOption,
    checkpoint: Annotated[Path | None, typer.Option(
        help="serve this model.pt; default: the registry's production pointer")] = None,
    host: Annotated[str | None, typer.Option(help="bind address; default service.host (127.0.0.1)")] = None,
    port: Annotated[int | None, typer.Option(help="port; default service.port (8000)")] = None,
    db: DbOption = None,
    features: FeaturesOption = None,
    registry: RegistryOption = None,
    access_log: Annotated[bool, typer.Option(help="log every request (metrics count them anyway)")] = False,
    overrides: Overrides = None,
) -> None:
    """The inference API: /predict, /health, /config, /curriculum, /reload (API key), /metrics."""
    import os

    import uvicorn

    from plus_ultra_ml.config import load_config
    from plus_ultra_ml.serving.app import create_app
    from plus_ultra_ml.threads import set_torch_threads

    cfg = load_config(config, overrides or ())
    set_torch_threads(cfg.service.threads)
    if not os.environ.get(cfg.service.api_key_env):
        err_console.print(f"[yellow]warning:[/] ${cfg.service.api_key_env} is not set: /reload"
                          f"{' and /predict' if cfg.service.predict_requires_key else ''} will answer 503")
    with progress() as bar:
        task = bar.add_task("loading the model and featurising the latest bars", total=None)
        app = create_app(cfg, checkpoint=checkpoint, db_path=db or os.environ.get("PLUS_ULTRA_DB") or None,
                         registry=_registry(cfg, registry), feature_table=features)
        bar.update(task, total=1, completed=1)
    predictor = app.state.service.predictor
    if predictor is None:
        err_console.print(f"[yellow]no model loaded:[/] {app.state.service.load_error}; "
                          "POST /reload after promoting one")
    else:
        card = predictor.card
        console.print(f"serving {card.model_kind} {card.fingerprint[:12]} ({card.source}), {len(card.universe)} symbols, "
                      f"{predictor.recipe.budget.bars} bars read per symbol")
    uvicorn.run(app, host=host or cfg.service.host, port=port or cfg.service.port, access_log=access_log,
                log_level="info")


@user_errors
def predict(
    config: ConfigOption,
    checkpoint: Annotated[Path, typer.Option(help="a supervised model.pt or a PPO policy.pt")],
    output: Annotated[Path, typer.Option(help="predictions.parquet or predictions.csv (report format)")],
    db: DbOption = None,
    features: FeaturesOption = None,
    all_bars: Annotated[bool, typer.Option(
        "--all-bars", help="also write bars at or before the data cutoff (marked in_sample; never scored)")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="print the latest signals and metrics as JSON")] = False,
    overrides: Overrides = None,
) -> None:
    """Offline inference: a prediction at every bar, the latest signal per symbol, out-of-sample metrics.

    Metrics use only bars after the checkpoint's data cutoff (the last bar its training saw)."""
    import json
    import math
    import os

    import numpy as np
    import pandas as pd

    from plus_ultra_ml.artifacts import atomic_path
    from plus_ultra_ml.config import load_config
    from plus_ultra_ml.data.panel import build_panel
    from plus_ultra_ml.evaluation.report import build_report
    from plus_ultra_ml.serving.offline import predict_history
    from plus_ultra_ml.serving.predictor import Predictor

    if output.suffix not in (".parquet", ".csv"):
        raise PlusUltraError(f"--output must end in .parquet or .csv, got {output.name}")
    from plus_ultra_ml.threads import set_torch_threads

    cfg = load_config(config, overrides or ())
    set_torch_threads(cfg.service.threads)  # small batches: one thread beats two on a shared CPU
    db_path = db or Path(os.environ.get("PLUS_ULTRA_DB") or cfg.data.db_path)
    with progress() as bar:
        task = bar.add_task(f"loading {checkpoint.name}", total=None)
        predictor = Predictor.load(checkpoint, db_path=db_path, service=cfg.service, feature_table=features, warm=False)
        recipe, model = predictor.recipe, predictor.model
        bar.update(task, description=f"panel from {db_path}")
        data_cfg = recipe.data.model_copy(update={"end": None, "symbols": tuple(recipe.universe)})
        built = build_panel(db_path, data_cfg)
        built.report.raise_for_errors()
        bar.update(task, description=f"features and predictions for {len(built.panel):,} bars")
        cutoff = pd.Timestamp(model.lineage.data_cutoff)
        history = predict_history(model, recipe, built.panel, after=None if all_bars else cutoff,
                                  policy=predictor.policy, replay_bars=predictor.card.replay_bars)
        predictor.featuriser.check_fingerprint(history.fingerprint)
        bar.update(task, total=1, completed=1, description="predicted")
    frame = history.frame
    out_of_sample = history.after_cutoff()
    if all_bars:
        frame = frame.assign(in_sample=frame.index.get_level_values("timestamp") <= history.cutoff)
    else:
        frame = out_of_sample
    with atomic_path(output) as tmp:
        if output.suffix == ".parquet":
            frame.to_parquet(tmp)
        else:
            frame.reset_index().to_csv(tmp, index=False)
    latest = history.latest()
    scored = out_of_sample[np.isfinite(out_of_sample["next_return"])]
    metrics: dict[str, dict[str, float]] = {}
    ic: dict[str, float] = {}
    if len(scored.index.get_level_values("timestamp").unique()) >= 3:
        report = build_report(scored, model_costs(model, cfg),  # the served calendars' bars per year
                              periods_per_year=recipe.features.periods_per_year)
        metrics = {s: {k: float(v) for k, v in row.items()} for s, row in
                   report.overall[["sharpe", "total_return", "max_drawdown", "hit_rate", "turnover"]].iterrows()}
        if "ic" in report.ic:
            ic = {str(h): float(v) for h, v in report.ic["ic"].items()}

    def clean(value: float) -> float | None:
        return value if isinstance(value, float) and math.isfinite(value) else None

    signals = [{"symbol": str(s), "timestamp": t.isoformat(), "position": clean(float(row["position__model"])),
                **{c.replace("forecast__", "forecast_"): clean(float(row[c])) for c in latest.columns
                   if c.startswith("forecast__")}} for (s, t), row in latest.iterrows()]
    summary = {"checkpoint_sha256": predictor.card.fingerprint, "model_kind": predictor.card.model_kind,
               "checkpoint": str(predictor.card.path), "data_cutoff": history.cutoff.isoformat(),
               "rows_written": int(len(frame)), "out_of_sample_bars": int(len(scored)), "output": str(output),
               "latest": signals, "metrics": {k: {m: clean(v) for m, v in d.items()} for k, d in metrics.items()},
               "ic": {h: clean(v) for h, v in ic.items()}}
    latest_table(summary, output)
    if as_json:
        typer.echo(json.dumps(summary, indent=2))
        return
    _print_predictions(summary)


def model_costs(model, cfg):
    """The costs the model was trained and evaluated with (its lineage), else the config's."""
    from plus_ultra_ml.config import CostConfig

    recorded = model.lineage.config.get("costs")
    return CostConfig.model_validate(recorded) if recorded else cfg.costs


def latest_table(summary: dict, output: Path) -> None:
    """Above `MANY_SYMBOLS` symbols, write the latest signals whole to ``<output stem>_latest.csv`` and
    record its path as ``summary["latest_table"]``: the console then shows a summary, not a row per symbol."""
    import pandas as pd

    from plus_ultra_ml.symbol_summary import many_symbols, write_symbol_table

    if many_symbols(len(summary["latest"])):
        table = pd.DataFrame(summary["latest"]).set_index("symbol")
        summary["latest_table"] = str(write_symbol_table(table, output.with_name(f"{output.stem}_latest.csv")))


def _print_latest_summary(summary: dict) -> None:
    """The latest signals of a universe: counts long / short / flat, the position's distribution,
    the most short and most long names, and the file that holds them all."""
    import pandas as pd

    from plus_ultra_ml.symbol_summary import summarise

    latest = pd.DataFrame(summary["latest"]).set_index("symbol")
    position = latest["position"].astype(float)
    stats = summarise(position, "position")
    times = pd.to_datetime(latest["timestamp"])
    console.print(f"latest signals (checkpoint {summary['checkpoint_sha256'][:12]}): {len(latest):,} symbols, last bars "
                  f"{times.min().isoformat()} .. {times.max().isoformat()}; long {int((position > 0).sum())}, "
                  f"short {int((position < 0).sum())}, flat {int((position == 0).sum())}, "
                  f"undefined {int(position.isna().sum())}", highlight=False, soft_wrap=True)
    console.print(f"position min {stats.minimum}, median {stats.median}, max {stats.maximum}", highlight=False, soft_wrap=True)
    for label, pairs in (("most short", stats.lowest), ("most long", stats.highest)):
        console.print(f"{label}: " + ", ".join(f"{s} {v:.4f}" for s, v in pairs), highlight=False, soft_wrap=True)
    console.print(f"every symbol's latest signal: {summary['latest_table']}", highlight=False, soft_wrap=True)


def _print_predictions(summary: dict) -> None:
    if summary.get("latest_table"):
        _print_latest_summary(summary)
    else:
        _print_latest_rows(summary)
    _print_scores(summary)


def _print_latest_rows(summary: dict) -> None:
    from rich.table import Table

    table = Table(title=f"latest signals (checkpoint {summary['checkpoint_sha256'][:12]})")
    columns = ["symbol", "timestamp", "position", *[k for k in summary["latest"][0] if k.startswith("forecast_")]] \
        if summary["latest"] else ["symbol"]
    for column in columns:
        table.add_column(column)
    for signal in summary["latest"]:
        table.add_row(*[f"{signal[c]:.5f}" if isinstance(signal[c], float) else str(signal[c]) for c in columns])
    console.print(table)


def _print_scores(summary: dict) -> None:
    from rich.table import Table

    if summary["metrics"]:
        metrics = Table(title=f"out of sample: {summary['out_of_sample_bars']:,} rows after the data cutoff "
                              f"{summary['data_cutoff']}")
        names = sorted({m for d in summary["metrics"].values() for m in d})
        metrics.add_column("")
        for name in names:
            metrics.add_column(name)
        for strategy, values in summary["metrics"].items():
            metrics.add_row(strategy, *[f"{values[n]:.4f}" if values.get(n) is not None else "-" for n in names])
        console.print(metrics)
        if summary["ic"]:
            console.print("IC of the forecasts by horizon (mean cross-sectional): " + ", ".join(
                f"{h} {v:.4f}" for h, v in summary["ic"].items() if v is not None))
    else:
        console.print(f"no bars after the data cutoff {summary['data_cutoff']} to score")
    console.print(f"wrote {summary['rows_written']:,} rows to {summary['output']}")


@user_errors
def promote(
    checkpoint: Annotated[Path | None, typer.Argument(help="the supervised model.pt (or a PPO policy.pt) to promote")] = None,
    policy: Annotated[Path | None, typer.Option(
        "--policy", help="also offer this PPO policy.pt: the better of the two that passes is promoted")] = None,
    config: Annotated[Path, typer.Option("--config", "-c", help="experiment YAML (service.registry_dir)")] = Path(
        "configs/smoke.yaml"),
    registry: RegistryOption = None,
    status: Annotated[bool, typer.Option("--status", help="show the production model and the history")] = False,
    rollback: Annotated[bool, typer.Option("--rollback", help="point production at the previous model")] = False,
) -> None:
    """The promotion gate: a checkpoint becomes production only if its held-out checks pass.

    Exit code 0 promoted (or already production), 3 gate failed (production unchanged)."""
    from rich.table import Table

    from plus_ultra_ml.config import load_config

    cfg = load_config(config)
    reg = _registry(cfg, registry)
    if status or (checkpoint is None and not rollback):
        _print_status(reg)
        return
    if rollback:
        result = reg.rollback()
    else:
        result = reg.promote_best([c for c in (checkpoint, policy) if c is not None])
    for path, gate in result.candidates or ((checkpoint, result.gate),):
        table = Table(title=f"promotion gate, {gate.kind or 'unservable'} {Path(str(path)).name}: "
                      f"{'passed' if gate.passed else 'FAILED'}")
        for column in ("check", "passed", "detail"):
            table.add_column(column)
        for check in gate.checks:
            table.add_row(check.name, "yes" if check.passed else "[red]no[/]", check.detail)
        console.print(table)
    console.print(result.message)
    if result.production is not None:
        console.print(f"production: {result.production.model_kind} {result.production.fingerprint[:12]} -> "
                      f"{result.production.path}; "
                      f"lineage: plus-ultra lineage {reg.pointer_path}")
    if not (result.promoted or result.gate.passed):
        raise NotPromoted(f"{checkpoint} was not promoted: {result.message}")


def _print_status(reg) -> None:
    from rich.table import Table

    current = reg.production()
    if current is None:
        console.print(f"no production model in {reg.root}")
        return
    console.print(f"production: {current.fingerprint[:12]} ({current.model_kind}), promoted {current.promoted_at} "
                  f"({current.promotion.get('reason')}), data cutoff {current.record.data_cutoff}, file {current.path}")
    table = Table(title="promotion history")
    for column in ("promoted_at", "sha256", "reason", "source"):
        table.add_column(column)
    for entry in reg.history():
        table.add_row(entry.promoted_at, entry.fingerprint[:12], str(entry.promotion.get("reason")), entry.source)
    console.print(table)
