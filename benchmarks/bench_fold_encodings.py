"""Backbone passes in one walk-forward fold: how often each (segment, bar) window is encoded, and the time.

Usage:
    python benchmarks/bench_fold_encodings.py DB [--config configs/smoke.yaml] [--fold 0] [--count] [--out DIR]

Runs `experiments.fold.run_fold` on one fold of the preset's plan (data loading not timed) and prints
its wall and CPU seconds. With --count, a global forward hook records every call of the network's
backbone class after supervised training has fixed the checkpoint's weights (`training.fit._load_best`):
windows are told apart by their bytes and weights by a hash of their values, so "the same window
encoded twice with the same weights" is exact; it prints how many times each distinct window was
encoded, by calling stage, and the seconds spent in those passes (the hook's own hashing inflates
the fold's times, so time without --count). --out keeps the fold's predictions and metrics, to compare
two code versions bit for bit. Results: docs/rl.md "One encoding per bar".
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
import warnings
from collections import Counter, defaultdict
from pathlib import Path

import torch

from bench_walkforward import quiet
from plus_ultra_ml.config import load_config
from plus_ultra_ml.evaluation.walkforward import plan_folds
from plus_ultra_ml.experiments.dataset import load_training_data
from plus_ultra_ml.experiments.fold import run_fold

STAGES = ("predict_segment", "segment_predictions", "segment_scores", "collect_rollout", "policy_positions",
          "head_positions", "replay_positions", "ppo_update")


def weights_key(module: torch.nn.Module) -> str:
    digest = hashlib.sha1()
    for tensor in module.state_dict().values():
        digest.update(tensor.detach().cpu().numpy().tobytes())
    return digest.hexdigest()[:12]


class Counting:
    """Counts no-gradient backbone calls per (weights, window) once armed, and the seconds they take."""

    def __init__(self, backbone_type: type):
        self.backbone_type, self.armed = backbone_type, False
        self.windows: dict[str, Counter] = defaultdict(Counter)
        self.stages: dict[tuple[str, str], Counter] = defaultdict(Counter)
        self.seconds: dict[tuple[str, str], float] = defaultdict(float)
        self.grad_windows: Counter = Counter()
        self._started: dict[int, float] = {}

    def pre(self, module, args):
        if self.armed and type(module) is self.backbone_type:
            self._started[id(module)] = time.perf_counter()

    def post(self, module, args, output):
        if id(module) not in self._started:
            return
        seconds = time.perf_counter() - self._started.pop(id(module))
        key, x = weights_key(module), args[0].detach().cpu().numpy()
        if torch.is_grad_enabled():
            self.grad_windows[key] += len(x)
            return
        frame, stage = sys._getframe(1), "other"
        while frame is not None and frame.f_code.co_name not in STAGES:
            frame = frame.f_back
        stage = frame.f_code.co_name if frame is not None else stage
        self.seconds[(key, stage)] += seconds
        for window in x:
            digest = hashlib.sha1(window.tobytes()).hexdigest()
            self.windows[key][digest] += 1
            self.stages[(key, stage)][digest] += 1

    def summary(self, key: str) -> dict:
        counts = self.windows[key]
        return {"windows_encoded": sum(counts.values()), "distinct_windows": len(counts),
                "times_encoded": {str(k): v for k, v in sorted(Counter(counts.values()).items())},
                "gradient_windows": self.grad_windows[key],
                "by_stage": {stage: {"windows": sum(c.values()), "seconds": round(self.seconds[(k, stage)], 2)}
                             for (k, stage), c in self.stages.items() if k == key}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("db")
    parser.add_argument("--config", default="configs/smoke.yaml")
    parser.add_argument("--fold", type=int, default=0)
    parser.add_argument("--count", action="store_true")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    quiet()
    warnings.filterwarnings("ignore")
    cfg = load_config(args.config)
    data = load_training_data(cfg, args.db)
    fold = plan_folds(data.features.index.get_level_values("timestamp"), cfg.walkforward, cfg.windows)[args.fold]
    out = args.out or Path(f"/tmp/bench_fold_encodings_{int(time.time())}")
    counting, handles = None, []
    if args.count:
        import plus_ultra_ml.training.fit as training_fit
        from plus_ultra_ml.models.registry import build_from_config

        counting = Counting(type(build_from_config(cfg.model, n_features=3, horizons=1, vocabulary=["A"]).backbone))
        real = training_fit._load_best

        def load_best(*a, **k):
            real(*a, **k)
            counting.armed = True  # the checkpoint's weights are fixed from here on

        training_fit._load_best = load_best
        handles = [torch.nn.modules.module.register_module_forward_pre_hook(counting.pre),
                   torch.nn.modules.module.register_module_forward_hook(counting.post)]
    wall, cpu = time.perf_counter(), time.process_time()
    result = run_fold(cfg, data, fold, root=out / "fold")
    report = {"fold": fold.name, "wall_s": round(time.perf_counter() - wall, 2),
              "cpu_s": round(time.process_time() - cpu, 2)}
    for handle in handles:
        handle.remove()
    if counting is not None:
        from plus_ultra_ml.checkpoints.supervised import load_checkpoint

        report["checkpoint"] = counting.summary(weights_key(load_checkpoint(result.checkpoints["supervised"][0])
                                                            .net.backbone))
    out.mkdir(parents=True, exist_ok=True)
    result.predictions.to_parquet(out / "predictions.parquet")
    (out / "metrics.json").write_text(json.dumps(result.metrics, indent=1, default=float))
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
