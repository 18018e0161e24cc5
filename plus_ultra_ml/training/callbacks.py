"""Callbacks: checkpoints (last + best), early stopping, LR monitor, diagnostics, progress, random state.

`RandomStateCallback` puts the process's random generators (torch, numpy, Python) into every
checkpoint and restores them when a fit resumes from one, so a run killed after an epoch's
`last.ckpt` and resumed draws the same shuffles, dropout masks and symbol dropout as an uninterrupted
run with the same seed: the same weights and metrics, bit for bit (a slow test kills one with SIGKILL).
A checkpoint written mid-epoch (`checkpoint_every_n_steps`) restores the generators too, but the
loader restarts its epoch's order, so such a resume is not bit-identical.

`DiagnosticsCallback` watches three things and logs a warning when one crosses its threshold
(training goes on; the numbers are also logged as metrics):

- the gradient-noise scale B_simple = tr(Sigma) / |G|^2 (McCandlish, Kaplan, Amodei et al. 2018,
  "An Empirical Model of Large-Batch Training", appendix A.1): unbiased estimates of |G|^2 and
  tr(Sigma) from the squared norms of a small-batch gradient (one step, B windows) and of a
  larger-batch gradient (the mean of `group` consecutive steps, group * B windows), each smoothed
  by an exponential moving average before the ratio. It approximates the critical batch size: a
  batch far below it wastes steps on noise, far above it wastes compute. Consecutive steps see
  slightly different parameters, so this is the usual cheap approximation, not an exact estimate.
- forecast calibration: for each quantile level q the share of validation targets at or below
  the predicted q-quantile (ideal: q);
- IC by horizon on the validation windows (ideal: above `min_ic`).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from typing import Any

import random

import lightning as L
import numpy as np
import torch

from plus_ultra_ml.config import DiagnosticsConfig

logger = logging.getLogger(__name__)


class GradientNoiseScale:
    """Streaming B_simple estimate from per-step flattened gradients (see the module docstring)."""

    def __init__(self, batch_size: int, group: int = 4, ema: float = 0.95):
        if group < 2:
            raise ValueError("the large batch must hold at least two steps (group >= 2)")
        self.b_small, self.b_big = batch_size, batch_size * group
        self.group, self.ema = group, ema
        self._sum: torch.Tensor | None = None
        self._small_sq: list[float] = []
        self.g2: float | None = None  # EMA of the |G|^2 estimate
        self.trace: float | None = None  # EMA of the tr(Sigma) estimate

    def update(self, gradient: torch.Tensor) -> float | None:
        """Feed one step's gradient (1-D, float); returns the current estimate once available."""
        g = gradient.detach().double()
        self._small_sq.append(float(g.square().sum()))
        self._sum = g.clone() if self._sum is None else self._sum + g
        if len(self._small_sq) < self.group:
            return self.value
        big_sq = float((self._sum / self.group).square().sum())
        small_sq = sum(self._small_sq) / self.group
        self._sum, self._small_sq = None, []
        g2 = (self.b_big * big_sq - self.b_small * small_sq) / (self.b_big - self.b_small)
        trace = (small_sq - big_sq) / (1 / self.b_small - 1 / self.b_big)
        self.g2 = g2 if self.g2 is None else self.ema * self.g2 + (1 - self.ema) * g2
        self.trace = trace if self.trace is None else self.ema * self.trace + (1 - self.ema) * trace
        return self.value

    @property
    def value(self) -> float | None:
        if self.g2 is None or self.trace is None or self.g2 <= 0:
            return None
        return self.trace / self.g2


class DiagnosticsCallback(L.Callback):
    """Gradient-noise scale, quantile coverage and IC by horizon, with warnings past thresholds.

    Reads `pl_module.last_validation` (SupervisedModule) for coverage and IC; works on any module
    for the noise scale. `warnings` keeps every message (tests and reports read it).
    """

    def __init__(self, cfg: DiagnosticsConfig, batch_size: int, group: int = 4):
        self.cfg = cfg
        self.batch_size = batch_size
        self.group = group
        self.noise: GradientNoiseScale | None = None
        self.warnings: list[str] = []
        self.history: list[dict[str, Any]] = []

    def _warn(self, message: str) -> None:
        self.warnings.append(message)
        logger.warning(message)

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.noise = GradientNoiseScale(self.batch_size * trainer.world_size, self.group, self.cfg.noise_scale_ema)

    def on_after_backward(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        grads = [p.grad.reshape(-1) for p in pl_module.parameters() if p.grad is not None]
        if not grads or self.noise is None:
            return
        value = self.noise.update(torch.cat(grads))
        if value is not None:
            pl_module.log("diagnostics/noise_scale", value, on_step=True, on_epoch=False)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        value = self.noise.value if self.noise else None
        if value is None:
            return
        batch = self.noise.b_small
        ratio = self.cfg.noise_scale_ratio
        if batch > ratio * value or batch * ratio < value:
            self._warn(
                f"epoch {trainer.current_epoch}: batch size {batch} is more than {ratio:g}x away from the "
                f"gradient-noise scale {value:.1f} (the critical batch size estimate); consider "
                f"train.batch_size near {max(int(value), 1)}"
            )

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        summary = getattr(pl_module, "last_validation", None)
        if not summary or trainer.sanity_checking:
            return
        self.history.append({"epoch": trainer.current_epoch, **summary})
        for h, ic in enumerate(summary["ic"], start=1):
            if not (ic > self.cfg.min_ic):  # NaN counts as a failure
                self._warn(f"epoch {trainer.current_epoch}: validation IC at horizon {h} is {ic:.4f}, "
                           f"not above {self.cfg.min_ic:g}")
        for q, coverage in zip(summary["quantiles"], summary["coverage"]):
            if abs(coverage - q) > self.cfg.coverage_tolerance:
                self._warn(f"epoch {trainer.current_epoch}: quantile {q:g} covers {coverage:.3f} of validation "
                           f"targets (tolerance {self.cfg.coverage_tolerance:g}); the quantile head is miscalibrated")


class ProgressCallback(L.Callback):
    """Calls `report(done_steps, total_steps, metrics)` after every training batch (CLI progress bars)."""

    def __init__(self, report: Callable[[int, int, dict[str, float]], None]):
        self.report = report

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch, batch_idx) -> None:
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1}
        metrics["epoch"] = float(trainer.current_epoch)
        total = trainer.estimated_stepping_batches
        self.report(trainer.global_step, int(total) if math.isfinite(total) else 0, metrics)



class RandomStateCallback(L.Callback):
    """The generators' states in the checkpoint (plain containers and tensors: safe for weights_only loads)."""

    def state_dict(self) -> dict[str, Any]:
        kind, keys, position, has_gauss, cached = np.random.get_state()
        version, internal, gauss = random.getstate()
        return {"torch": torch.get_rng_state(),
                "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "position": int(position),
                          "has_gauss": int(has_gauss), "cached": float(cached)},
                "python": {"version": version, "internal": list(internal),
                           "gauss": None if gauss is None else float(gauss)}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        torch.set_rng_state(state["torch"])
        n = state["numpy"]
        np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["position"], n["has_gauss"],
                             n["cached"]))
        p = state["python"]
        random.setstate((p["version"], tuple(p["internal"]), p["gauss"]))
        logger.info("random generators restored from the checkpoint")
