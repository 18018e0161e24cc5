"""LightningModules: an injected backbone, and the loss, metrics, optimiser and schedule around it.

The lightning-hydra-template cut: the pure network comes from `plus_ultra_ml.models` (built by the
caller and passed in), the module owns what training needs, and one `model_step(batch)` serves the
training, validation and test steps (and the held-out evaluation in training/evaluate.py).

- `SupervisedModule(net, train_cfg, costs)`: forecast loss on volatility-scaled forward returns
  (horizon h scaled by vol * sqrt(h), so every horizon has unit variance under a random walk),
  pinball loss of the quantile head, and Sharpe/Sortino/drawdown/mean-variance utility of the
  position head's net PnL along each window (a window is a contiguous path; the utility in
  volatility units when `train.loss` says so), all through
  `objectives.losses.risk_aware_loss`;
  plus the backbone's auxiliary loss (MoE balancing) when it has one. Validation also gathers the
  last bar of every window for IC by horizon and quantile coverage.
- `PretrainModule(backbone, recipe, pretrain_cfg)`: masked reconstruction or TS2Vec-style
  contrastive learning (objectives/pretext.py) on the backbone alone; its small pretext heads
  (mask token, reconstruction map) are not part of the exported model.

Both: AdamW (no weight decay on biases, norms and 1-D parameters) and a linear warm-up followed by a
cosine decay, stepped every optimiser step. Batches come from training/datamodule.py: x (B, T, F),
y (B, T, H), r (B, T), vol (B, T), symbol (B,) data codes (model ids are codes + 1: id 0 is the
model's unknown symbol), start/end (B,) timestamps.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, NamedTuple

import lightning as L
import torch
from torch import Tensor, nn

from plus_ultra_ml.config import CostConfig, LoopConfig, LossConfig, PretrainConfig, TrainConfig
from plus_ultra_ml.models.network import ModelRecipe, NetOutput, PlusUltraNet
from plus_ultra_ml.models.registry import build_model
from plus_ultra_ml.models.spec import model_spec
from plus_ultra_ml.objectives import cross_section, pretext
from plus_ultra_ml.objectives.losses import RiskLossWeights, mean_variance_utility, risk_aware_loss, volatility_scaled

SPEC_KEY = "plus_ultra"  # where a Lightning checkpoint carries {"kind", "model_spec"}


def risk_weights(loss: LossConfig) -> RiskLossWeights | None:
    """The `train.loss` section as the objective's weights; None when only cross-sectional terms are on."""
    if loss.forecast + loss.quantile + loss.sharpe + loss.sortino + loss.drawdown + loss.utility == 0:
        return None
    return RiskLossWeights(
        forecast=loss.forecast, quantile=loss.quantile, sharpe=loss.sharpe, sortino=loss.sortino,
        drawdown=loss.drawdown, utility=loss.utility, forecast_kind=loss.forecast_kind, huber_delta=loss.huber_delta,
        risk_aversion=loss.risk_aversion, pnl_units=loss.pnl_units,
    )


def warmup_cosine(step: int, warmup: int, total: int, min_ratio: float) -> float:
    """LR multiplier: linear from 1/warmup to 1 over `warmup` steps, then cosine to `min_ratio` at `total`."""
    warmup = min(warmup, max(total - 1, 0))
    if step < warmup:
        return (step + 1) / warmup
    span = max(total - warmup, 1)
    progress = min((step - warmup) / span, 1.0)
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def parameter_groups(module: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """AdamW groups: decay matrices (ndim >= 2), not biases, norm scales or other vectors."""
    trainable = [p for p in module.parameters() if p.requires_grad]
    return [
        {"params": [p for p in trainable if p.ndim >= 2], "weight_decay": weight_decay},
        {"params": [p for p in trainable if p.ndim < 2], "weight_decay": 0.0},
    ]


def model_symbol_ids(batch: Mapping[str, Tensor]) -> Tensor:
    """Data symbol codes (0-based, the vocabulary's order) -> model ids (1-based; 0 = unknown)."""
    return batch["symbol"].long() + 1


def horizon_scale(vol: Tensor, horizons: int) -> Tensor:
    """(B, T) one-bar volatility -> (B, T, H) volatility of an h-bar return: vol * sqrt(h)."""
    root_h = torch.arange(1, horizons + 1, device=vol.device, dtype=vol.dtype).sqrt()  # (H,)
    return vol.unsqueeze(-1) * root_h


def scale_gradient(x: Tensor, g: float) -> Tensor:
    """x in the forward pass; g * the incoming gradient in the backward pass (g = 0: detach)."""
    if g == 0:
        return x.detach()
    return g * x + (1 - g) * x.detach()


class OptimisedModule(L.LightningModule):
    """AdamW + warm-up/cosine from a `LoopConfig` (total steps from the Trainer); subclass it for any model."""

    def __init__(self, loop: LoopConfig):
        super().__init__()
        self.loop = loop

    def configure_optimizers(self):
        optimiser = torch.optim.AdamW(parameter_groups(self, self.loop.weight_decay), lr=self.loop.lr)
        total = max(int(self.trainer.estimated_stepping_batches), 1)
        warmup, min_ratio = self.loop.warmup_steps, self.loop.min_lr_ratio
        schedule = torch.optim.lr_scheduler.LambdaLR(
            optimiser, lambda step: warmup_cosine(step, warmup, total, min_ratio)
        )
        return {"optimizer": optimiser, "lr_scheduler": {"scheduler": schedule, "interval": "step", "name": "lr"}}


# --------------------------------------------------------------------------------------------
# supervised
# --------------------------------------------------------------------------------------------
class SupervisedStep(NamedTuple):
    loss: Tensor  # scalar the optimiser minimises
    parts: dict[str, Tensor]  # unweighted terms (forecast, sharpe, ..., aux)
    output: NetOutput  # the network's per-bar outputs
    target: Tensor  # (B, T, H) volatility-scaled forward returns
    scale: Tensor  # (B, T, H) the volatility each horizon was divided by


def cross_section_terms(loss: LossConfig, batch: Mapping[str, Tensor], out: NetOutput, scale: Tensor,
                        positions: Tensor, costs: CostConfig) -> dict[str, tuple[float, Tensor]]:
    """name -> (weight, unweighted value) of every active cross-sectional term (objectives/cross_section.py).

    The score is the h=1 forecast in return units (forecast x its volatility scale), compared across
    the names of each cross-section (same end date, same step timestamp) with the realised next-bar
    log return y[..., 0]; the portfolio term books the position head's long-short book.
    """
    active = {name: w for name in ("ic", "listnet", "portfolio_utility") if (w := getattr(loss, name)) > 0}
    if not active:
        return {}
    keys, dates = cross_section.cross_section_keys(batch["times"], batch["end"])  # (B, T), (B,)
    score = out.forecast[..., 0] * scale[..., 0]  # (B, T) return units
    target = batch["y"][..., 0]  # (B, T)
    terms: dict[str, tuple[float, Tensor]] = {}
    if "ic" in active:
        terms["ic"] = (active["ic"], -cross_section.per_date_ic(score, target, keys))
    if "listnet" in active:
        terms["listnet"] = (active["listnet"], cross_section.listnet_loss(score, target, keys, loss.listnet_temperature))
    if "portfolio_utility" in active:
        book = cross_section.long_short_pnl(positions, batch["r"], keys, dates, costs)  # (G, T)
        terms["portfolio_utility"] = (active["portfolio_utility"],
                                      -mean_variance_utility(book, loss.portfolio_risk_aversion))
    return terms


class SupervisedModule(OptimisedModule):
    """Risk-aware supervised training of an injected `PlusUltraNet` (see the module docstring)."""

    def __init__(self, net: PlusUltraNet, train: TrainConfig, costs: CostConfig):
        super().__init__(train)
        self.net = net
        self.train_cfg = train
        self.costs = costs
        self.weights = risk_weights(train.loss)
        self.quantiles = tuple(net.recipe.heads.quantiles)
        if train.loss.quantile > 0 and not self.quantiles:
            raise ValueError("train.loss.quantile > 0 needs quantile levels in model.quantiles")
        # PPO's heads are not trained here: freezing them keeps DDP and AdamW from touching them.
        for head in (net.policy_head, net.value_head):
            head.requires_grad_(False)
        self._val: dict[str, list[Tensor]] = {}
        self.last_validation: dict[str, Any] = {}

    def forward(self, x: Tensor, symbol_ids: Tensor | None = None) -> NetOutput:
        return self.net(x, symbol_ids)

    def model_step(self, batch: Mapping[str, Tensor]) -> SupervisedStep:
        out = self.net(batch["x"], model_symbol_ids(batch))
        scale = horizon_scale(batch["vol"], out.forecast.shape[-1])  # (B, T, H)
        target = volatility_scaled(batch["y"], scale)
        positions = out.position  # (B, T)
        g = self.train_cfg.loss.position_backbone_grad
        if g < 1:  # same values; the PnL terms' gradient into the backbone is scaled by g
            positions = self.net.position_head(scale_gradient(out.hidden, g))
        parts: dict[str, Tensor] = {}
        loss = out.forecast.new_zeros(())
        if self.weights is not None:
            quantile_forecast = out.quantiles if self.weights.quantile > 0 else None
            risk = risk_aware_loss(
                self.weights, forecast=out.forecast, target=target, quantile_forecast=quantile_forecast,
                quantiles=self.quantiles, positions=positions, next_returns=batch["r"], costs=self.costs,
                volatility=batch["vol"],
            )
            parts.update(risk.parts)
            loss = risk.total
        for name, (weight, value) in cross_section_terms(self.train_cfg.loss, batch, out, scale, positions,
                                                         self.costs).items():
            parts[name] = value
            loss = loss + weight * value
        if self.train_cfg.loss.aux > 0 and out.aux_loss.requires_grad:
            parts["aux"] = out.aux_loss
            loss = loss + self.train_cfg.loss.aux * out.aux_loss
        return SupervisedStep(loss, parts, out, target, scale)

    def _log_step(self, stage: str, step: SupervisedStep, batch_size: int) -> None:
        on_step = stage == "train"
        self.log(f"{stage}/loss", step.loss, prog_bar=True, on_step=on_step, on_epoch=True,
                 batch_size=batch_size, sync_dist=not on_step)
        for name, value in step.parts.items():
            self.log(f"{stage}/{name}", value, on_step=False, on_epoch=True, batch_size=batch_size,
                     sync_dist=not on_step)

    def training_step(self, batch: Mapping[str, Tensor], batch_idx: int) -> Tensor:
        step = self.model_step(batch)
        self._log_step("train", step, len(batch["x"]))
        self.log("train/window", float(batch["x"].shape[1]), on_step=False, on_epoch=True, batch_size=len(batch["x"]))
        return step.loss

    def _gather(self, batch: Mapping[str, Tensor], step: SupervisedStep) -> None:
        last = {
            "forecast": (step.output.forecast[:, -1] * step.scale[:, -1]).detach(),  # (B, H) return units
            "target": batch["y"][:, -1].detach(),  # (B, H) realised forward log returns
            "end": batch["end"].detach(),
        }
        if step.output.quantiles is not None:
            last["below"] = (step.target[:, -1, :, None] <= step.output.quantiles[:, -1]).detach()  # (B, H, Q)
        for key, value in last.items():
            self._val.setdefault(key, []).append(value.cpu())

    def validation_step(self, batch: Mapping[str, Tensor], batch_idx: int) -> Tensor:
        step = self.model_step(batch)
        self._log_step("val", step, len(batch["x"]))
        self._gather(batch, step)
        return step.loss

    def test_step(self, batch: Mapping[str, Tensor], batch_idx: int) -> Tensor:
        step = self.model_step(batch)
        self._log_step("test", step, len(batch["x"]))
        return step.loss

    def on_validation_epoch_start(self) -> None:
        self._val = {}

    def on_validation_epoch_end(self) -> None:
        if not self._val:
            return
        summary = validation_summary({k: torch.cat(v) for k, v in self._val.items()}, self.quantiles)
        self._val = {}
        self.last_validation = summary
        for h, ic in enumerate(summary["ic"], start=1):
            self.log(f"val/ic_h{h}", ic, sync_dist=True)
        self.log("val/ic", summary["ic"][0], prog_bar=True, sync_dist=True)
        if math.isfinite(summary["ic_date"]) or self.train_cfg.monitor == "val/ic_date":
            self.log("val/ic_date", summary["ic_date"], sync_dist=True)  # mean per-date IC of h=1 (>= 3 names a date)
        for q, coverage in zip(self.quantiles, summary["coverage"]):
            self.log(f"val/coverage_q{q:g}", coverage, sync_dist=True)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint[SPEC_KEY] = {"kind": "supervised", "model_spec": model_spec(self.net)}


def pooled_correlation(x: Tensor, y: Tensor) -> float:
    """Pearson correlation of two 1-D tensors over their finite pairs; NaN with < 3 pairs or no spread."""
    both = torch.isfinite(x) & torch.isfinite(y)
    x, y = x[both].double(), y[both].double()
    if len(x) < 3:
        return float("nan")
    x, y = x - x.mean(), y - y.mean()
    denom = float(torch.sqrt((x * x).sum() * (y * y).sum()))
    return float((x * y).sum()) / denom if denom > 0 else float("nan")


def validation_summary(gathered: Mapping[str, Tensor], quantiles: tuple[float, ...]) -> dict[str, Any]:
    """Pooled IC per horizon (forecast in return units vs realised forward return) and, per quantile
    level, the share of targets at or below the forecast quantile (averaged over horizons)."""
    forecast, target = gathered["forecast"], gathered["target"]  # (N, H)
    ic = [pooled_correlation(forecast[:, h], target[:, h]) for h in range(forecast.shape[1])]
    coverage: list[float] = []
    if "below" in gathered and quantiles:
        coverage = gathered["below"].float().mean(dim=(0, 1)).tolist()  # (Q,)
    _, dates = torch.unique(gathered["end"], return_inverse=True)  # windows ending together: one cross-section
    ic_date = float(cross_section.per_date_ic(forecast[:, 0].double(), target[:, 0].double(), dates))
    return {"ic": ic, "ic_date": ic_date, "coverage": coverage, "quantiles": list(quantiles),
            "windows": int(len(forecast))}


# --------------------------------------------------------------------------------------------
# self-supervised
# --------------------------------------------------------------------------------------------
class PretrainStep(NamedTuple):
    loss: Tensor
    parts: dict[str, Tensor]


class PretrainModule(OptimisedModule):
    """Pretext training of an injected backbone ((B, T, F) -> (B, T, D)); see the module docstring."""

    def __init__(self, backbone: nn.Module, recipe: ModelRecipe, pretrain: PretrainConfig):
        super().__init__(pretrain)
        self.backbone = backbone
        self.recipe = recipe
        self.pretrain_cfg = pretrain
        F_, D = recipe.n_features, backbone.d_model
        if pretrain.objective == "masked":
            self.mask_token = nn.Parameter(torch.zeros(F_))  # what a hidden bar looks like to the backbone
            self.reconstruct = nn.Linear(D, F_)  # states (B, T, D) -> features (B, T, F)

    def model_step(self, batch: Mapping[str, Tensor]) -> PretrainStep:
        x, ids = batch["x"], model_symbol_ids(batch)
        B, T, _ = x.shape
        cfg = self.pretrain_cfg
        if cfg.objective == "masked":
            mask = pretext.time_mask(B, T, cfg.mask_prob, cfg.mask_patch_len, device=x.device)  # (B, T)
            hidden = self.backbone(torch.where(mask[..., None], self.mask_token, x), ids)  # (B, T, D)
            loss = pretext.masked_reconstruction_loss(self.reconstruct(hidden), x, mask)
            return PretrainStep(loss, {"reconstruction": loss})
        crop = int(torch.randint(0, int(T * cfg.max_crop_fraction) + 1, ()).item())  # bars the 2nd view loses
        view1 = pretext.augment(x, cfg.jitter_std, cfg.scale_std, cfg.time_mask_prob)
        view2 = pretext.augment(x[:, crop:], cfg.jitter_std, cfg.scale_std, cfg.time_mask_prob)
        z1 = self.backbone(view1, ids)[:, crop:]  # (B, T - crop, D): the bars both views share
        z2 = self.backbone(view2, ids)
        exclude = pretext.overlapping_windows(batch["symbol"], batch["start"], batch["end"])  # (B, B)
        loss = pretext.hierarchical_contrastive_loss(z1, z2, cfg.temperature, cfg.temporal_weight, exclude)
        return PretrainStep(loss, {"contrastive": loss})

    def training_step(self, batch: Mapping[str, Tensor], batch_idx: int) -> Tensor:
        step = self.model_step(batch)
        self.log("train/loss", step.loss, prog_bar=True, on_step=True, on_epoch=True, batch_size=len(batch["x"]))
        return step.loss

    def seeded_step(self, batch: Mapping[str, Tensor], seed: int) -> PretrainStep:
        """`model_step` with masks/augmentations drawn from `seed`, leaving the training RNG untouched:
        the same windows get the same masks every epoch, so validation losses are comparable."""
        devices = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed)
            return self.model_step(batch)

    def validation_step(self, batch: Mapping[str, Tensor], batch_idx: int) -> Tensor:
        step = self.seeded_step(batch, batch_idx)
        self.log("val/loss", step.loss, prog_bar=True, on_epoch=True, batch_size=len(batch["x"]), sync_dist=True)
        return step.loss

    def test_step(self, batch: Mapping[str, Tensor], batch_idx: int) -> Tensor:
        step = self.seeded_step(batch, batch_idx)
        self.log("test/loss", step.loss, on_epoch=True, batch_size=len(batch["x"]), sync_dist=True)
        return step.loss

    def export_net(self) -> PlusUltraNet:
        """A full network whose backbone carries the pretrained weights (its heads are fresh: a
        warm start loads the backbone only)."""
        with torch.random.fork_rng(devices=[]):  # initialising the heads must not move the training RNG
            net = build_model(self.recipe)
        net.backbone.load_state_dict(self.backbone.state_dict())
        return net

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint[SPEC_KEY] = {"kind": "pretrain", "model_spec": model_spec(self.export_net())}
