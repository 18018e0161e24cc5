"""Our five backbones against Hugging Face transformers' PatchTST at an equal parameter budget.

Usage:
    python benchmarks/bench_patchtst.py [--config configs/smoke.yaml] [--db data/fixture.db]
        [--budget 30000] [--steps 600] [--seeds 0] [--threads 1] [dotted overrides ...]

The off-the-shelf choice a user would otherwise pick: `transformers.PatchTSTForRegression`, built
from a `PatchTSTConfig` (nothing is downloaded), mapping the same (T, F) scaled feature window to the
same H volatility-scaled forward returns of the window's last bar. Every model:

- has its width chosen so its trained parameters are the closest to --budget (PatchTST: d_model;
  ours: `model.backbone.d_model` with the preset's other sizes), and is trained for --steps
  optimiser steps of the preset's batch size on the same DataModule (purged split, train-fitted
  scaler), with the same AdamW + warm-up/cosine schedule (training/lit_modules.OptimisedModule),
  under Lightning's loop, forecast loss only (Huber in volatility units; no Sharpe term);
  ours learn from every bar of a window (causal per-bar outputs), PatchTST from the last bar;
- is scored on the held-out test windows' last bar: Huber loss in volatility units (the same
  loss for everyone), and pooled IC of the 1-bar forecast with the next bar's return;
- is timed on its own: forward+backward+AdamW training steps and no-grad inference on a fixed
  batch, windows per second (median of --timed steps after warm-up), with --threads torch threads.

With several --seeds each model is trained once per seed (weights and batch order change; the data
and split do not) and a last table gives mean +- std over seeds.
PatchTST runs twice: `scaling=None` (inputs are already robust-scaled on the training segment) and its
default `scaling="std"` (per-window standardisation, as a user would get out of the box).
The machine was shared with other engineers' jobs while this ran: timings are noisy upper bounds.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from bench_supervised_ic import fixture_database, quiet
from plus_ultra_ml.config import ExperimentConfig, load_config
from plus_ultra_ml.data.windows import build_targets
from plus_ultra_ml.experiments.dataset import load_training_data
from plus_ultra_ml.models.registry import build_from_config
from plus_ultra_ml.training.datamodule import WindowDataModule
from plus_ultra_ml.training.lit_modules import OptimisedModule, SupervisedModule, horizon_scale, model_symbol_ids

OURS = {
    "hybrid_transformer": {"n_layers": 2, "n_heads": 4, "d_state": 8, "ffn_mult": 2, "dropout": 0.1},
    "omni_mixture": {"n_layers": 2, "n_heads": 4, "d_state": 8, "ffn_mult": 2, "pool": 8, "dropout": 0.1},
    "moe_transformer": {"n_layers": 2, "n_heads": 4, "n_experts": 4, "top_k": 2, "expert_mult": 2, "dropout": 0.1},
    "state_space": {"n_layers": 2, "d_state": 16, "expand": 2, "ffn_mult": 2, "dropout": 0.1},
    "temporal_fusion": {"n_heads": 4, "lstm_layers": 1, "n_attention_layers": 1, "dropout": 0.1},
}
WIDTHS = (8, 12, 16, 20, 24, 28, 32, 40, 48, 56, 64, 80, 96, 128)


class PatchTSTModule(OptimisedModule):
    """PatchTSTForRegression on the last bar's volatility-scaled forward returns (same optimiser/schedule)."""

    def __init__(self, model: nn.Module, loop, huber_delta: float):
        super().__init__(loop)
        self.model, self.delta = model, huber_delta

    def forecast(self, batch) -> torch.Tensor:
        return self.model(past_values=batch["x"]).regression_outputs  # (B, H) volatility units

    def training_step(self, batch, batch_idx):
        target = batch["y"][:, -1] / horizon_scale(batch["vol"][:, -1:], batch["y"].shape[-1])[:, 0]
        loss = F.huber_loss(self.forecast(batch), target, delta=self.delta)
        self.log("train/loss", loss, on_step=True, batch_size=len(batch["x"]))
        return loss


def trained_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def our_module(cfg: ExperimentConfig, architecture: str, width: int, dm: WindowDataModule) -> SupervisedModule:
    backbone = {"d_model": width, **OURS[architecture]}
    model_cfg = cfg.model.model_copy(update={"architecture": architecture, "backbone": backbone})
    net = build_from_config(model_cfg, len(dm.feature_names), cfg.windows.horizon, dm.symbols)
    train = cfg.train.model_copy(update={"loss": cfg.train.loss.model_copy(update={"sharpe": 0.0})})
    return SupervisedModule(net, train, cfg.costs)


def patchtst_module(cfg: ExperimentConfig, width: int, dm: WindowDataModule, scaling) -> PatchTSTModule:
    from transformers import PatchTSTConfig, PatchTSTForRegression

    T = cfg.windows.window
    patch = 8 if T % 8 == 0 else 4
    config = PatchTSTConfig(num_input_channels=len(dm.feature_names), context_length=T, patch_length=patch,
                            patch_stride=patch, d_model=width, num_hidden_layers=2, num_attention_heads=4,
                            ffn_dim=2 * width, num_targets=cfg.windows.horizon, scaling=scaling,
                            pooling_type="mean", dropout=0.1, head_dropout=0.0)
    return PatchTSTModule(PatchTSTForRegression(config), cfg.train, cfg.train.loss.huber_delta)


def closest(build: Callable[[int], nn.Module], budget: int) -> tuple[int, nn.Module]:
    best = None
    for width in WIDTHS:
        try:
            module = build(width)
        except Exception:  # a width that does not split into the heads: skip it
            continue
        gap = abs(trained_parameters(module) - budget)
        if best is None or gap < best[0]:
            best = (gap, width, module)
    return best[1], best[2]


def forecast_fn(module: L.LightningModule) -> Callable:
    if isinstance(module, PatchTSTModule):
        return module.forecast
    return lambda batch: module.net(batch["x"], model_symbol_ids(batch)).forecast[:, -1]


def heldout(module: L.LightningModule, dm: WindowDataModule, delta: float) -> dict[str, float]:
    predict = forecast_fn(module)
    module.eval()
    forecasts, targets, nxt, vols = [], [], [], []
    with torch.no_grad():
        for batch in torch.utils.data.DataLoader(dm.dataset("test"), batch_size=512):
            scale = horizon_scale(batch["vol"][:, -1:], batch["y"].shape[-1])[:, 0]  # (B, H)
            forecasts.append(predict(batch))
            targets.append(batch["y"][:, -1] / scale)
            nxt.append(batch["r"][:, -1])
            vols.append(scale[:, 0])
    f, t = torch.cat(forecasts), torch.cat(targets)
    loss = float(F.huber_loss(f, t, delta=delta))
    ic = float(np.corrcoef((f[:, 0] * torch.cat(vols)).numpy(), torch.cat(nxt).numpy())[0, 1])
    return {"test_loss": loss, "test_ic_next_bar": ic}


def throughput(module: L.LightningModule, dm: WindowDataModule, batch_size: int, timed: int) -> tuple[float, float]:
    predict = forecast_fn(module)
    batch = next(iter(torch.utils.data.DataLoader(dm.dataset("train"), batch_size=batch_size, shuffle=False)))
    target = batch["y"][:, -1]
    optimiser = torch.optim.AdamW(module.parameters(), lr=1e-4)
    module.train()
    train_times, infer_times = [], []
    for i in range(timed + 3):
        t0 = time.perf_counter()
        if isinstance(module, PatchTSTModule):
            loss = F.mse_loss(predict(batch), target)
        else:
            loss = module.model_step(batch).loss
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        if i >= 3:
            train_times.append(time.perf_counter() - t0)
    module.eval()
    with torch.no_grad():
        for i in range(timed + 3):
            t0 = time.perf_counter()
            predict(batch)
            if i >= 3:
                infer_times.append(time.perf_counter() - t0)
    return batch_size / statistics.median(train_times), batch_size / statistics.median(infer_times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", default="configs/smoke.yaml")
    parser.add_argument("--db", default="data/fixture.db")
    parser.add_argument("--budget", type=int, default=30_000, help="trained parameters per model")
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--timed", type=int, default=15)
    parser.add_argument("--only", nargs="*", default=None, help="subset of model names")
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    quiet()
    torch.set_num_threads(args.threads)

    db = fixture_database(__import__("pathlib").Path(args.db))
    cfg = load_config(args.config, ["tracking.mode=disabled", f"data.db_path={db}", *args.overrides])
    data = load_training_data(cfg, db)
    dm = WindowDataModule(data.features, build_targets(data.panel, cfg.windows.horizon), cfg.windows,
                          batch_size=cfg.train.batch_size)
    dm.setup()
    candidates: dict[str, Callable[[int], L.LightningModule]] = {
        **{name: (lambda w, n=name: our_module(cfg, n, w, dm)) for name in OURS},
        "patchtst (scaling=None)": lambda w: patchtst_module(cfg, w, dm, None),
        "patchtst (scaling=std)": lambda w: patchtst_module(cfg, w, dm, "std"),
    }
    if args.only:
        candidates = {k: v for k, v in candidates.items() if k in args.only}
    print(f"fixture {db}; window {cfg.windows.window}, horizon {cfg.windows.horizon}, {len(dm.feature_names)} "
          f"features; budget {args.budget:,} trained parameters; {args.steps} steps x batch {cfg.train.batch_size}; "
          f"{args.threads} thread(s); seeds {args.seeds}")
    print("| model | seed | width | trained params | train windows/s | infer windows/s | fit wall s | test loss | test IC next bar |")
    print("|---|---|---|---|---|---|---|---|---|")
    results: dict[str, list[dict[str, float]]] = {}
    with tempfile.TemporaryDirectory(prefix="plus_ultra_patchtst_") as root:
        for seed in args.seeds:
            for name, build in candidates.items():
                L.seed_everything(seed, verbose=False)
                width, module = closest(build, args.budget)
                params = trained_parameters(module)
                train_wps, infer_wps = throughput(module, dm, cfg.train.batch_size, args.timed)
                L.seed_everything(seed, verbose=False)
                module = build(width)  # fresh weights for the fit (the timing steps moved them)
                trainer = L.Trainer(max_steps=args.steps, max_epochs=-1, limit_val_batches=0, logger=False,
                                    enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                                    gradient_clip_val=cfg.train.gradient_clip, deterministic=True,
                                    default_root_dir=root)
                t0 = time.perf_counter()
                trainer.fit(module, train_dataloaders=dm.train_dataloader())
                wall = time.perf_counter() - t0
                scores = heldout(module, dm, cfg.train.loss.huber_delta)
                results.setdefault(name, []).append({"params": params, "train": train_wps, "infer": infer_wps,
                                                     "wall": wall, **scores})
                print(f"| {name} | {seed} | {width} | {params:,} | {train_wps:,.0f} | {infer_wps:,.0f} | {wall:.0f} | "
                      f"{scores['test_loss']:.4f} | {scores['test_ic_next_bar']:.4f} |", flush=True)
    if len(args.seeds) > 1:
        print("\nmean +- std over seeds")
        print("| model | trained params | train windows/s | infer windows/s | test loss | test IC next bar |")
        print("|---|---|---|---|---|---|")
        for name, rows in results.items():
            def ms(key: str, fmt: str) -> str:
                values = [r[key] for r in rows]
                return f"{statistics.mean(values):{fmt}} +- {statistics.stdev(values):{fmt}}"
            print(f"| {name} | {rows[0]['params']:,} | {statistics.median(r['train'] for r in rows):,.0f} | "
                  f"{statistics.median(r['infer'] for r in rows):,.0f} | {ms('test_loss', '.4f')} | "
                  f"{ms('test_ic_next_bar', '.4f')} |")

if __name__ == "__main__":
    main()
