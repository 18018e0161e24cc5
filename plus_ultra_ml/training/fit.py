"""Entry points: `pretrain()` and `train_supervised()` -> a checkpoint, its held-out metrics, its lineage.

Both run the same shape of work, under one Lightning loop each:

1. seed everything (`seed`), build the DataModule on the given `Split` (or the configured
   fractions), fitting the scaler on the training rows;
2. build the network from `model:` (vocabulary = the data's symbols), warm-start the backbone from
   a pretrained checkpoint if given (config and weight keys checked);
3. fit under `lightning.Trainer` with checkpoints (last + best by the monitored validation metric),
   early stopping, an LR monitor, diagnostics (supervised), CSV + offline W&B logging; a run
   directory keyed by everything that determines the result (config hash, data fingerprints,
   split, parent) holds `lightning/last.ckpt`, so calling again after a crash resumes there;
4. reload the best weights and score them on the split's test segment only (never on training or
   validation rows) with evaluation/heldout.py: held-out loss, IC by horizon, the position head's
   net Sharpe, and the baselines of evaluation/baselines.py on the same windows;
5. write `model.pt` (checkpoints/supervised.py) with its lineage embedded, and `model.lineage.json`.

`TrainingData` (data/training_data.py) is the input; `experiments.dataset.load_training_data` builds
one from a database. The walk-forward room (experiments/fold.py) calls these with
`split=split_by_bounds(times, ends, embargo)` per fold and `root=` its fold directory. Under DDP
every rank runs this function; only rank 0 evaluates and writes, and the other ranks return None.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.pytorch.callbacks import Callback, EarlyStopping, LearningRateMonitor, ModelCheckpoint

from plus_ultra_ml.artifacts import file_fingerprint, home
from plus_ultra_ml.checkpoints.backbone import warm_start
from plus_ultra_ml.checkpoints.format import read_payload
from plus_ultra_ml.checkpoints.supervised import write_checkpoint
from plus_ultra_ml.config import ExperimentConfig, LoopConfig, TrainConfig
from plus_ultra_ml.data.calendar import panel_periods_per_year
from plus_ultra_ml.data.training_data import TrainingData
from plus_ultra_ml.data.windows import Split, build_targets
from plus_ultra_ml.errors import PlusUltraError
from plus_ultra_ml.evaluation.heldout import baseline_metrics, heldout_metrics, segment_periods_per_year
from plus_ultra_ml.lineage import LineageRecord, code_version, now_utc
from plus_ultra_ml.models.encoder import RowEncoder
from plus_ultra_ml.models.registry import build_from_config
from plus_ultra_ml.synthetic.fixture import oracle_reference
from plus_ultra_ml.threads import torch_threads
from plus_ultra_ml.training.callbacks import DiagnosticsCallback, ProgressCallback, RandomStateCallback
from plus_ultra_ml.training.datamodule import WindowDataModule
from plus_ultra_ml.training.evaluate import predict_segment
from plus_ultra_ml.training.lit_modules import PretrainModule, SupervisedModule
from plus_ultra_ml.training.tracking import RunContext, make_tracking

logger = logging.getLogger(__name__)

LIGHTNING_DIR = "lightning"
ARTIFACT = "model.pt"
WANDB_ID_FILE = "wandb_run_id"


# --------------------------------------------------------------------------------------------
# inputs and outputs
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RunIds:
    """Ids of the orchestration run that asked for this fit (all optional)."""

    dagster_run_id: str | None = None
    dagster_asset: str | None = None
    dagster_partition: str | None = None

    def tracking(self, stage: str, cfg: ExperimentConfig, data_fingerprint: str | None) -> RunContext:
        """What the W&B run of a fit at `stage` is grouped and traced by (training/tracking.py)."""
        return RunContext(stage, cfg.fingerprint(), data_fingerprint, self.dagster_run_id, self.dagster_partition)


@dataclass(frozen=True)
class FitResult:
    checkpoint: Path  # model.pt: load with checkpoints.supervised.load_checkpoint
    lineage: LineageRecord
    metrics: dict[str, float]  # flat: test_* (held-out), baseline_* (same windows), val_* (best epoch)
    run_dir: Path
    warnings: list[str] = field(default_factory=list)  # diagnostics warnings raised during training
    # the checkpoint's backbone states of every train/val/test window (models/encoder.py), for the fold to reuse
    encoder: RowEncoder | None = field(default=None, repr=False, compare=False)

    @property
    def wandb_run_id(self) -> str | None:
        return self.lineage.run_ids.get("wandb_run_id")


ProgressFn = Callable[[int, int, dict[str, float]], None]


# --------------------------------------------------------------------------------------------
# the Lightning plumbing shared by both kinds
# --------------------------------------------------------------------------------------------
class SafeCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint IO (already atomic: it writes through an fsspec transaction, so a kill
    never leaves half a last.ckpt), reading with torch.load(weights_only=True) whatever is asked."""

    def load_checkpoint(self, path, map_location=None, weights_only=None) -> dict[str, Any]:
        return super().load_checkpoint(path, map_location=map_location or "cpu", weights_only=True)


def _strategy(hw: TrainConfig) -> Any:
    """DDP on CPU uses gloo; unused parameters (unrouted MoE experts) are allowed."""
    if hw.strategy == "ddp":
        from lightning.pytorch.strategies import DDPStrategy

        backend = "gloo" if hw.accelerator == "cpu" else None
        return DDPStrategy(process_group_backend=backend, find_unused_parameters=True)
    return hw.strategy


def run_key(kind: str, cfg: ExperimentConfig, data: TrainingData, split: Split, parent: str | None) -> str:
    """Hash of everything that determines a run's result; names its directory (and so its resume point)."""
    blob = json.dumps({"kind": kind, "config": cfg.fingerprint(), "features": data.feature_fingerprint,
                       "panel": data.panel_fingerprint, "split": split.to_dict(), "parent": parent},
                      sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _run_dir(kind: str, loop: LoopConfig, root: str | Path | None, key: str) -> Path:
    base = Path(root) if root is not None else (
        Path(loop.checkpoint_dir) if loop.checkpoint_dir else home() / "checkpoints" / kind)
    return (base / key).resolve()


def _checkpoint_callbacks(run_dir: Path, loop: LoopConfig, monitor: str, mode: str) -> tuple[ModelCheckpoint, ModelCheckpoint]:
    folder = str(run_dir / LIGHTNING_DIR)
    best = ModelCheckpoint(dirpath=folder, filename="best", monitor=monitor, mode=mode, save_top_k=1,
                           auto_insert_metric_name=False, enable_version_counter=False)
    last = ModelCheckpoint(dirpath=folder, filename="last", monitor=None, save_top_k=1,
                           every_n_train_steps=loop.checkpoint_every_n_steps, save_on_train_epoch_end=True,
                           enable_version_counter=False)
    return best, last


def _trainer(cfg: ExperimentConfig, loop: LoopConfig, run_dir: Path, callbacks: list[Callback], loggers: list,
             reload_every_epoch: bool) -> L.Trainer:
    hw = cfg.train
    return L.Trainer(
        max_epochs=loop.epochs,
        accelerator=hw.accelerator,
        devices=hw.devices,
        strategy=_strategy(hw),
        precision=hw.precision,
        deterministic=hw.deterministic,
        gradient_clip_val=loop.gradient_clip,
        limit_train_batches=loop.limit_train_batches,
        limit_val_batches=loop.limit_val_batches,
        logger=loggers,
        callbacks=callbacks,
        plugins=[SafeCheckpointIO()],
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        reload_dataloaders_every_n_epochs=1 if reload_every_epoch else 0,
        default_root_dir=str(run_dir),
        log_every_n_steps=min(10, loop.limit_train_batches or 10),
    )


def _resume_point(run_dir: Path, resume: bool) -> tuple[Path | None, int | None]:
    last = run_dir / LIGHTNING_DIR / "last.ckpt"
    if not resume or not last.is_file():
        return None, None
    step = read_payload(last).get("global_step")
    logger.info("resuming from %s (step %s)", last, step)
    return last, int(step) if step is not None else None


def _wandb_id(run_dir: Path) -> str | None:
    path = run_dir / WANDB_ID_FILE
    return path.read_text().strip() if path.is_file() else None


def _load_best(module: L.LightningModule, best: ModelCheckpoint) -> str | None:
    path = best.best_model_path
    if not path or not Path(path).is_file():
        logger.warning("no best checkpoint was written (no validation ran?): keeping the final weights")
        return None
    module.load_state_dict(read_payload(path)["state_dict"])
    return path


def _best_score(best: ModelCheckpoint) -> float | None:
    score = best.best_model_score
    return float(score) if score is not None else None


@dataclass
class _Run:
    """What `_fit` hands back to the kind-specific evaluation."""

    trainer: L.Trainer
    dm: WindowDataModule
    run_dir: Path
    best: ModelCheckpoint
    wandb_run_id: str | None
    resumed_from_step: int | None
    wall_time_s: float


def _fit(kind: str, cfg: ExperimentConfig, loop: LoopConfig, module_for: Callable[[WindowDataModule], L.LightningModule],
         dm: WindowDataModule, run_dir: Path, *, monitor: str, mode: str, extra_callbacks: Sequence[Callback],
         progress: ProgressFn | None, resume: bool, curriculum: bool, run_ids: RunIds,
         data_fingerprint: str | None) -> tuple[_Run, L.LightningModule]:
    run_dir.mkdir(parents=True, exist_ok=True)
    module = module_for(dm)
    best, last = _checkpoint_callbacks(run_dir, loop, monitor, mode)
    callbacks: list[Callback] = [best, last, LearningRateMonitor(logging_interval="step"), RandomStateCallback(),
                                 *extra_callbacks]
    if loop.early_stopping_patience:
        callbacks.append(EarlyStopping(monitor=monitor, mode=mode, patience=loop.early_stopping_patience))
    if progress is not None:
        callbacks.append(ProgressCallback(progress))
    ckpt_path, resumed_from = _resume_point(run_dir, resume)
    tracking = make_tracking(cfg.tracking, run_dir, run_ids.tracking(kind, cfg, data_fingerprint), cfg.to_dict(),
                             run_id=_wandb_id(run_dir) if ckpt_path else None)
    trainer = _trainer(cfg, loop, run_dir, callbacks, tracking.loggers, curriculum)
    started = time.perf_counter()
    try:
        trainer.fit(module, datamodule=dm, ckpt_path=str(ckpt_path) if ckpt_path else None, weights_only=True)
        wandb_id = tracking.run_id() if trainer.is_global_zero else None
        if wandb_id:
            (run_dir / WANDB_ID_FILE).write_text(wandb_id)
    finally:
        tracking.finish()
    return _Run(trainer, dm, run_dir, best, wandb_id, resumed_from, time.perf_counter() - started), module


def _lineage(kind: str, cfg: ExperimentConfig, data: TrainingData, run: _Run, parent: Mapping[str, Any] | None,
             run_ids: RunIds, metrics: Mapping[str, float], params: int) -> LineageRecord:
    split = run.dm.split
    trainer = run.trainer
    return LineageRecord(
        kind=kind,
        created_at=now_utc(),
        database={"path": data.db_path, "fingerprint": data.db_fingerprint},
        panel=data.panel_record(cfg.features.periods_per_year),
        features={"fingerprint": data.feature_fingerprint, "count": len(run.dm.feature_names),
                  "names": list(run.dm.feature_names)},
        config=cfg.to_dict(),
        config_hash=cfg.fingerprint(),
        code_version=dict(code_version()),
        seed=cfg.seed,
        data_cutoff=split.cutoff.isoformat(),
        split=split.to_dict(),
        parent=dict(parent) if parent else None,
        run_ids={"dagster_run_id": run_ids.dagster_run_id, "dagster_asset": run_ids.dagster_asset,
                 "dagster_partition": run_ids.dagster_partition, "wandb_run_id": run.wandb_run_id},
        metrics=dict(metrics),
        training={"epochs": int(trainer.current_epoch), "steps": int(trainer.global_step),
                  "wall_time_s": round(run.wall_time_s, 3), "resumed_from_step": run.resumed_from_step,
                  "parameters": params, "best_checkpoint": run.best.best_model_path or None,
                  "run_dir": str(run.run_dir)},
    )


def _datamodule(cfg: ExperimentConfig, data: TrainingData, loop: LoopConfig, split: Split | None,
                curriculum: Sequence[int] = (), curriculum_epochs: int = 1) -> WindowDataModule:
    targets = build_targets(data.panel, cfg.windows.horizon)
    dm = WindowDataModule(data.features, targets, cfg.windows, batch_size=loop.batch_size, split=split,
                          curriculum=curriculum, curriculum_epochs=curriculum_epochs,
                          num_workers=cfg.train.num_workers,
                          periods_per_year=panel_periods_per_year(data.panel, cfg.features.periods_per_year),
                          val_windows=loop.val_windows, sample_seed=cfg.seed,
                          cross_section=loop.cross_section if isinstance(loop, TrainConfig) else None)
    dm.setup()
    return dm


def _network(cfg: ExperimentConfig, dm: WindowDataModule):
    return build_from_config(cfg.model, n_features=len(dm.feature_names), horizons=cfg.windows.horizon,
                             vocabulary=dm.symbols)


# --------------------------------------------------------------------------------------------
# public entry points
# --------------------------------------------------------------------------------------------
def pretrain(
    cfg: ExperimentConfig,
    data: TrainingData,
    *,
    split: Split | None = None,
    root: str | Path | None = None,
    run_ids: RunIds = RunIds(),
    callbacks: Sequence[Callback] = (),
    progress: ProgressFn | None = None,
    resume: bool = True,
) -> FitResult | None:
    """Self-supervised pretraining of the configured backbone (`pretrain:` section).

    Metrics: the pretext loss on the test segment's windows (`test_loss`, fixed seed) and the best
    validation loss. Returns None on DDP ranks other than 0.
    """
    with torch_threads(cfg.train.cpu_threads, cfg.train.accelerator):
        return _pretrain(cfg, data, split, root, run_ids, callbacks, progress, resume)


def _pretrain(cfg: ExperimentConfig, data: TrainingData, split: Split | None, root: str | Path | None,
              run_ids: RunIds, callbacks: Sequence[Callback], progress: ProgressFn | None,
              resume: bool) -> FitResult | None:
    loop = cfg.pretrain
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    dm = _datamodule(cfg, data, loop, split)
    key = run_key("pretrain", cfg, data, dm.split, None)
    run_dir = _run_dir("pretrain", loop, root, key)

    def module_for(dm: WindowDataModule) -> PretrainModule:
        net = _network(cfg, dm)
        return PretrainModule(net.backbone, net.recipe, loop)

    run, module = _fit("pretrain", cfg, loop, module_for, dm, run_dir, monitor="val/loss", mode="min",
                       extra_callbacks=callbacks, progress=progress, resume=resume, curriculum=False,
                       run_ids=run_ids, data_fingerprint=data.db_fingerprint)
    if not run.trainer.is_global_zero:
        return None
    _load_best(module, run.best)
    metrics: dict[str, float] = {"val_loss_best": _best_score(run.best) or float("nan")}
    if "test" in dm.data.ends and len(dm.data.ends["test"]):
        metrics["test_loss"] = _pretext_loss(module, dm, "test", cfg.seed)
    net = module.export_net()
    params = sum(p.numel() for p in module.backbone.parameters())
    lineage = _lineage("pretrain", cfg, data, run, None, run_ids, metrics, params)
    path = write_checkpoint(run_dir / ARTIFACT, kind="pretrain", net=net, feature_names=dm.feature_names,
                            scaler=dm.scaler, window=cfg.windows.window, horizon=cfg.windows.horizon, lineage=lineage)
    logger.info("pretrained backbone written to %s (test pretext loss %s)", path, metrics.get("test_loss"))
    return FitResult(path, lineage, metrics, run_dir)


def _pretext_loss(module: PretrainModule, dm: WindowDataModule, segment: str, seed: int) -> float:
    """Mean pretext loss over a segment's windows, with a fixed seed for the masks/augmentations."""
    module.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        loader = torch.utils.data.DataLoader(dm.dataset(segment), batch_size=dm.eval_batch_size)
        for index, batch in enumerate(loader):
            batch = {k: v.to(module.device) for k, v in batch.items()}
            total += float(module.seeded_step(batch, seed + index).loss) * len(batch["x"])
            count += len(batch["x"])
    return total / max(count, 1)


def train_supervised(
    cfg: ExperimentConfig,
    data: TrainingData,
    *,
    split: Split | None = None,
    pretrain_checkpoint: str | Path | None = None,
    root: str | Path | None = None,
    run_ids: RunIds = RunIds(),
    callbacks: Sequence[Callback] = (),
    progress: ProgressFn | None = None,
    resume: bool = True,
) -> FitResult | None:
    """Risk-aware supervised training (`train:` section), optionally warm-started from a backbone.

    Metrics (flat): `test_*` on the split's test segment only (loss and parts, ic_h*, rank_ic_h*,
    pooled_ic_h*, ic_next_bar, sharpe_net, sharpe_gross, turnover, exposure, windows),
    `baseline_*` (evaluation/baselines.py momentum, ridge as `linear`, buy-and-hold on the same test
    windows), `val_*` (best epoch).
    Without a test segment only the validation numbers are recorded. None on DDP ranks other than 0.
    """
    with torch_threads(cfg.train.cpu_threads, cfg.train.accelerator):
        return _train_supervised(cfg, data, split, pretrain_checkpoint, root, run_ids, callbacks, progress, resume)


def _train_supervised(cfg: ExperimentConfig, data: TrainingData, split: Split | None,
                      pretrain_checkpoint: str | Path | None, root: str | Path | None, run_ids: RunIds,
                      callbacks: Sequence[Callback], progress: ProgressFn | None, resume: bool) -> FitResult | None:
    loop = cfg.train
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    dm = _datamodule(cfg, data, loop, split, loop.curriculum, loop.curriculum_epochs)
    parent_fp = None
    if pretrain_checkpoint is not None:
        if not Path(pretrain_checkpoint).is_file():
            raise PlusUltraError(f"pretrained checkpoint {pretrain_checkpoint} does not exist")
        parent_fp = file_fingerprint(pretrain_checkpoint)
    key = run_key("supervised", cfg, data, dm.split, parent_fp)
    run_dir = _run_dir("supervised", loop, root, key)
    parent: dict[str, Any] = {}
    diagnostics = DiagnosticsCallback(loop.diagnostics, loop.batch_size) if loop.diagnostics.enabled else None

    def module_for(dm: WindowDataModule) -> SupervisedModule:
        net = _network(cfg, dm)
        if pretrain_checkpoint is not None:
            parent.update(warm_start(net, pretrain_checkpoint, dm.feature_names, dm.split.cutoff))
        return SupervisedModule(net, loop, cfg.costs)

    monitor, mode = (loop.monitor, "max" if loop.monitor in ("val/ic", "val/ic_date") else "min")
    extra = [*callbacks, *([diagnostics] if diagnostics else [])]
    run, module = _fit("supervised", cfg, loop, module_for, dm, run_dir, monitor=monitor, mode=mode,
                       extra_callbacks=extra, progress=progress, resume=resume, curriculum=bool(loop.curriculum),
                       run_ids=run_ids, data_fingerprint=data.db_fingerprint)
    if not run.trainer.is_global_zero:
        return None
    _load_best(module, run.best)
    metrics: dict[str, float] = {f"{monitor.replace('/', '_')}_best": _best_score(run.best) or float("nan")}
    ppy = segment_periods_per_year(dm.data)  # the panel calendars' bars per year, carried by the windows
    # the forecast -> position mapping is fitted on the training windows' forecasts only
    encoder = RowEncoder.of(module.net.backbone, dm.data, dm.eval_batch_size)  # the best weights' states, kept
    train_forecast = predict_segment(module, dm.data, "train", dm.eval_batch_size,
                                     encoder).frame["forecast_1"].to_numpy()
    validation = heldout_metrics(predict_segment(module, dm.data, "val", dm.eval_batch_size, encoder), cfg.costs,
                                 ppy, train_forecast)
    metrics.update({f"val_{k}": v for k, v in validation.items()})
    if "test" in dm.data.ends and len(dm.data.ends["test"]):
        test = predict_segment(module, dm.data, "test", dm.eval_batch_size, encoder)
        oracle = oracle_reference(data.panel, data.db_path, cfg.costs)  # None unless the database is a fixture
        metrics.update({f"test_{k}": v for k, v in heldout_metrics(test, cfg.costs, ppy, train_forecast,
                                                                    oracle=oracle).items()})
        baselines = baseline_metrics(test.frame, data.panel, data.features, dm.targets, dm.split, "test", cfg.costs,
                                     ppy, seed=cfg.seed, config=cfg.baselines)
        metrics.update({f"baseline_{k}": v for k, v in baselines.items()})
        if oracle is not None:  # each baseline's share of the same-bars oracle (same windows as the model)
            metrics.update({f"baseline_{k[:-len('sharpe_net')]}share_of_oracle": v / metrics["test_oracle_sharpe_net"]
                            for k, v in baselines.items() if k.endswith("_sharpe_net")})
    params = sum(p.numel() for p in module.net.parameters())
    lineage = _lineage("supervised", cfg, data, run, parent or None, run_ids, metrics, params)
    path = write_checkpoint(run_dir / ARTIFACT, kind="supervised", net=module.net, feature_names=dm.feature_names,
                            scaler=dm.scaler, window=cfg.windows.window, horizon=cfg.windows.horizon, lineage=lineage)
    logger.info("supervised checkpoint written to %s (held-out IC next bar %s)", path, metrics.get("test_ic_next_bar"))
    return FitResult(path, lineage, metrics, run_dir, list(diagnostics.warnings) if diagnostics else [], encoder)

