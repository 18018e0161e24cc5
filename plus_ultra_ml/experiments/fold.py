"""Walk-forward folds, end to end: refit the recipe on each fold's own segments, predict its test window.

For each seed, the supervised model is trained on the fold's training segment (model selection on
its validation segment) with `training.fit.train_supervised(split=fold.split)`; its position head
gives the `model` positions and its 1-bar forecast, through `evaluation.baselines.ForecastPositions`
fitted on its training windows' forecasts, the `forecast` positions; then, when
``walkforward.ppo`` is set, fine-tuned with PPO on the same segments. The `ppo` positions are the
selected policy's (rl/select.py, decided on validation): PPO's where it was kept, the head's where
it was dropped; PPO's own positions go to `raw__ppo` and the decision to `ppo_kept`. A warm start is allowed only
from a checkpoint whose data cutoff is not after the fold's validation end (checked by
`checkpoints.backbone.warm_start`, recorded in lineage). The baselines are fitted on exactly the same
segments. One encoding per bar: the backbone states of every train, validation and test window are
computed once for the checkpoint, in the supervised fit's own held-out pass (`FitResult.encoder`,
models/encoder.py), and the fold's model predictions and PPO's rollouts, validation walks and test
scores read them; each consumer adopts them only after checking the weights and the windowed rows
are equal. Everything is scored on the test window only, on the bars every strategy has a
prediction for, in the predictions-frame format of `evaluation.predictions` (one row per (symbol, bar)).
On a fixture database the oracle's positions (`synthetic.fixture.oracle_reference`) join the same
rows as ``reference__oracle``, so the report gives every strategy's share of the same-bars oracle.

`run_walkforward` is the whole evaluation line without Dagster (`plus-ultra walkforward`, the
benchmarks): the folds of `plan_folds`, one `run_fold` each, in order, concatenated into one
out-of-sample predictions frame for `evaluation.report.build_report`; with a `FoldStore` each fold's
files are written as it finishes and a rerun keeps the finished ones (experiments/fold_files.py).
The Dagster assets run the same `run_fold` per partition.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from plus_ultra_ml.config import CostConfig, ExperimentConfig
from plus_ultra_ml.data.calendar import panel_periods_per_year
from plus_ultra_ml.data.store import database_sectors
from plus_ultra_ml.data.training_data import TrainingData
from plus_ultra_ml.data.windows import build_targets
from plus_ultra_ml.evaluation.baselines import ForecastPositions, run_baselines
from plus_ultra_ml.evaluation.oracle import MU_COLUMN
from plus_ultra_ml.evaluation.predictions import (FORECAST, PERIODS_PER_YEAR, POSITION, PPO_KEPT, RAW, REFERENCE,
                                                   REFERENCE_SCORE, REGIME, SECTOR, SIGNAL, TARGET)
from plus_ultra_ml.evaluation.walkforward import Fold
from plus_ultra_ml.experiments.fold_files import FoldIdentity, FoldStore, last_bar_read
from plus_ultra_ml.models.encoder import RowEncoder
from plus_ultra_ml.synthetic.fixture import oracle_reference
from plus_ultra_ml.training.fit import RunIds, train_supervised

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class FoldResult:
    fold: str
    # report format: fold, seed, next_return, position__*, signal__*, forecast__h*, target__h*, regime__*, sector
    predictions: pd.DataFrame
    checkpoints: dict[str, list[str]]  # "supervised" / "ppo" -> one path per seed
    metrics: dict[str, float] = field(default_factory=dict)  # per-seed test metrics, flattened


def model_predictions(checkpoint: str | Path, cfg: ExperimentConfig, data: TrainingData, segment: str) -> pd.DataFrame:
    """Forecasts (return units) and position-head positions of a saved model on one segment of its split."""
    return segment_predictions(checkpoint, cfg, data, (segment,))[segment]


def segment_predictions(checkpoint: str | Path, cfg: ExperimentConfig, data: TrainingData,
                        segments: tuple[str, ...], encoder: RowEncoder | None = None) -> dict[str, pd.DataFrame]:
    """`model_predictions` of several segments, loading and windowing the model once.

    `encoder`: the checkpoint's states already computed (`FitResult.encoder`); adopted only where the
    loaded weights and the rebuilt windows equal its own (models/encoder.py), else encoded here."""
    from plus_ultra_ml.checkpoints.supervised import load_checkpoint
    from plus_ultra_ml.checkpoints.windows import policy_windows
    from plus_ultra_ml.training.evaluate import segment_frame

    model = load_checkpoint(checkpoint)
    windowed = policy_windows(cfg, data, model)
    states = (encoder.adopt(model.net.backbone, windowed, cfg.rl.eval_batch_size) if encoder is not None
              else RowEncoder.of(model.net.backbone, windowed, cfg.rl.eval_batch_size))
    return {segment: segment_frame(model.net, states, windowed, segment) for segment in segments}


def _seed_rows(cfg: ExperimentConfig, data: TrainingData, fold: Fold, seed: int, root: Path,
               run_ids: RunIds, warm_start: str | Path | None,
               progress: Callable[[str], None] | None) -> tuple[pd.DataFrame, dict[str, str], dict[str, float]]:
    seeded = cfg.model_copy(update={"seed": seed})
    say = progress or (lambda message: None)
    say(f"{fold.name} seed {seed}: supervised training")
    fit = train_supervised(seeded, data, split=fold.split, pretrain_checkpoint=warm_start,
                           root=root / f"seed{seed}" / "supervised", run_ids=run_ids)
    paths = {"supervised": str(fit.checkpoint)}
    metrics = {f"seed{seed}_supervised_{k}": v for k, v in fit.metrics.items() if k.startswith(("test_", "val_"))}
    # one encoding of every (segment, bar) for this checkpoint: the supervised fit's, reused below and by PPO
    segments = segment_predictions(fit.checkpoint, seeded, data, ("train", "test"), fit.encoder)
    predicted = segments["test"]
    horizon = sum(1 for c in predicted.columns if c.startswith("forecast_"))
    rows = pd.DataFrame(index=predicted.index)
    rows[POSITION + "model"] = predicted["position"]
    # the model's 1-bar forecast through the one forecast -> position mapping, fitted on its training windows
    mapping = ForecastPositions.fit(segments["train"]["forecast_1"].to_numpy())
    rows[POSITION + "forecast"] = mapping.transform(predicted["forecast_1"].to_numpy())
    for h in range(1, horizon + 1):
        rows[f"{FORECAST}h{h}"] = predicted[f"forecast_{h}"]
        rows[f"{TARGET}h{h}"] = predicted[f"target_{h}"]
    if cfg.walkforward.ppo:
        from plus_ultra_ml.rl.fit import finetune_checkpoint

        say(f"{fold.name} seed {seed}: PPO fine-tuning")
        policy = finetune_checkpoint(seeded, data, fit.checkpoint, root=root / f"seed{seed}" / "ppo", run_ids=run_ids,
                                     encoder=fit.encoder)
        paths["ppo"] = str(policy.checkpoint)
        metrics.update({f"seed{seed}_ppo_{k}": v for k, v in policy.metrics.items()
                        if k.startswith(("test_ppo", "val_ppo", "val_supervised", "best_update", "selection_",
                                         "val_gain"))})
        raw = policy.test_positions.reindex(rows.index)
        # the SELECTED policy (rl/select.py, validation only): PPO where kept, else the supervised head
        rows[POSITION + "ppo"] = raw if policy.kept else rows[POSITION + "model"]
        rows[RAW + "ppo"] = raw  # PPO's own positions, for the report's selection section (not a strategy)
        rows[PPO_KEPT] = float(policy.kept)
    rows["seed"] = seed
    return rows, paths, metrics


def fixture_references(panel: pd.DataFrame, db_path: str | Path | None, costs: CostConfig) -> dict[str, pd.Series]:
    """On a fixture database, the references scored beside the strategies on the same rows (never
    strategies themselves): the oracle's positions (``reference__oracle``, evaluation.oracle) and its
    score, the true expected next return (``reference_score__oracle``, the per-date IC ceiling of a
    universe). Nothing on a real database."""
    oracle = oracle_reference(panel, db_path, costs)
    if oracle is None:
        return {}
    out = {REFERENCE + "oracle": oracle}
    if MU_COLUMN in panel:  # ind__truth_oracle: evaluation-only, never a feature
        out[REFERENCE_SCORE + "oracle"] = panel[MU_COLUMN]
    return out


def run_fold(cfg: ExperimentConfig, data: TrainingData, fold: Fold, *, root: str | Path,
             regimes: pd.DataFrame | None = None, run_ids: RunIds = RunIds(),
             warm_start: str | Path | None = None, progress: Callable[[str], None] | None = None) -> FoldResult:
    """Train, fine-tune and predict one fold for every seed; add the baselines on the same bars."""
    root = Path(root)
    seeds = [cfg.seed + k for k in range(cfg.walkforward.seeds)]
    pieces, checkpoints, metrics = [], {"supervised": [], "ppo": []}, {}
    for seed in seeds:
        rows, paths, seed_metrics = _seed_rows(cfg, data, fold, seed, root, run_ids, warm_start, progress)
        pieces.append(rows)
        for kind, path in paths.items():
            checkpoints[kind].append(path)
        metrics.update(seed_metrics)
    predictions = pd.concat(pieces)
    targets = build_targets(data.panel, cfg.windows.horizon)
    baselines = run_baselines(data.panel, data.features, targets, fold.split, "test", seed=cfg.seed,
                              config=cfg.baselines)
    for name, result in baselines.items():
        predictions[POSITION + name] = result.position.reindex(predictions.index).to_numpy()
        if result.forecast is not None:  # the forecast behind the position, scored by IC in the report
            predictions[SIGNAL + name] = result.forecast.reindex(predictions.index).to_numpy()
    predictions["next_return"] = targets.next_return.reindex(predictions.index).to_numpy()
    for column, values in fixture_references(data.panel, data.db_path, cfg.costs).items():
        predictions[column] = values.reindex(predictions.index).to_numpy()
    sectors = database_sectors(data.db_path)
    if len(set(sectors.values())) >= 2:  # assets.sector, for a universe's per-sector attribution (one label: none)
        symbols = predictions.index.get_level_values("symbol").astype(str)
        predictions[SECTOR] = pd.Series(symbols.map(sectors), index=predictions.index).astype(object)
    if regimes is not None:
        for column in regimes.columns:
            predictions[REGIME + str(column)] = regimes[column].astype("string").reindex(predictions.index).to_numpy()
    predictions["fold"] = fold.name
    positions = [c for c in predictions.columns if c.startswith(POSITION)]
    complete = predictions[positions].notna().all(axis=1) & np.isfinite(predictions["next_return"])
    if not complete.all():
        logger.info("%s: %d of %d rows lack a strategy's position or a next return; scored on the rest",
                    fold.name, int((~complete).sum()), len(predictions))
    scored = predictions[complete].sort_index()
    # the report annualises with the panel calendars' bars per year, never the count of scored bars
    scored.attrs[PERIODS_PER_YEAR] = panel_periods_per_year(data.panel, cfg.features.periods_per_year)
    return FoldResult(fold.name, scored, {k: v for k, v in checkpoints.items() if v}, metrics)


@dataclass(frozen=True)
class WalkForwardResult:
    folds: list[Fold]
    results: list[FoldResult]
    kept: list[str] = field(default_factory=list)  # folds read back from a previous run's files, not recomputed

    @property
    def predictions(self) -> pd.DataFrame:
        """Every fold's out-of-sample rows, in the report format (folds tile the test period)."""
        return pd.concat([r.predictions for r in self.results])

    @property
    def metrics(self) -> dict[str, float]:
        """Per-fold training numbers (validation and test of each seed), keys prefixed by the fold name."""
        return {f"{r.fold}_{k}": v for r in self.results for k, v in r.metrics.items()}


def run_walkforward(cfg: ExperimentConfig, data: TrainingData, *, root: str | Path, folds: list[Fold] | None = None,
                    regimes: pd.DataFrame | None = None, run_ids: RunIds = RunIds(),
                    progress: Callable[[str], None] | None = None,
                    on_fold: Callable[[FoldResult], None] | None = None,
                    store: FoldStore | None = None) -> WalkForwardResult:
    """`run_fold` for every fold of the plan (`plan_folds` of the data's bars unless `folds` is given), oldest first.

    Each fold writes its checkpoints under `root/<fold name>`; `on_fold` sees each result as it completes.
    Before any training, `check_training_rows` rejects a plan whose feature warm-up leaves a fold no
    finite training rows. With a `store` (experiments/fold_files.py), each finished fold's files are
    written the moment it finishes, a fold already finished there with a matching manifest is read
    back instead of recomputed, and a mismatching one stops the run before any training; every
    result (fresh or kept) is the one read back from its files, so the report is built from them alone.
    """
    from plus_ultra_ml.evaluation.walkforward import plan_folds
    from plus_ultra_ml.experiments.warmup import check_training_rows

    if folds is None:
        folds = plan_folds(data.features.index.get_level_values("timestamp"), cfg.walkforward, cfg.windows)
    check_training_rows(cfg, data, folds)
    identities, kept = {}, set()
    if store is not None:  # every finished fold of the current plan is checked, not only the requested ones
        finished = set(store.finished())
        every = plan_folds(data.features.index.get_level_values("timestamp"),
                           cfg.walkforward.model_copy(update={"n_folds": None}), cfg.windows)
        identities = {f.name: FoldIdentity.of(cfg, data, f) for f in every if f.name in finished}
        identities.update({f.name: FoldIdentity.of(cfg, data, f) for f in folds})
        kept = set(store.reusable(identities, [f.name for f in folds]))
        store.clear_partial()
    say = progress or (lambda message: None)
    results = []
    for fold in folds:
        if fold.name in kept:
            say(f"{fold.name}: finished in {store.folder(fold.name)}, kept")
            result = store.load(fold.name)
        else:
            result = run_fold(cfg, data, fold, root=Path(root) / fold.name, regimes=regimes,
                              run_ids=RunIds(run_ids.dagster_run_id, run_ids.dagster_asset, fold.name),
                              progress=progress)
            if store is not None:
                store.save(result, identities[fold.name], last_bar_read(data, fold, cfg.windows.horizon))
                result = store.load(fold.name)
        results.append(result)
        if on_fold is not None:
            on_fold(result)
    return WalkForwardResult(list(folds), results, sorted(kept))
