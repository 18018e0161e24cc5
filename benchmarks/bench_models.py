"""Profile every architecture at the smoke and desktop presets' scale: the docs/models.md table.

Usage:
    python benchmarks/bench_models.py [--presets smoke desktop] [--architectures ...]
        [--n-features 60] [--batch-size N] [--steps 5] [--device cpu] [--dtype float32]

For each preset and architecture: the preset's `model` section (its own architecture as written;
the others with the size keys they share carried over, profiling.carried_backbone), window
= the preset's `windows.window`, horizons = `windows.horizon`, batch = `train.batch_size` unless
--batch-size, --n-features random feature columns and an 8-symbol vocabulary. Each row runs in a
fresh Python process, because on CPU only the first training step says anything about memory
(the allocator keeps pages afterwards). Throughput is forward + backward, no optimiser step,
after warm-up; MFU is counted FLOPs per second over the peak of a large matmul measured in the
same process (plus_ultra_ml/profiling.py). Prints numbers only; asserts nothing about time. On a shared
machine the throughput and the matmul peak are noisy: run twice and compare.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ARCHITECTURES = ("hybrid_transformer", "omni_mixture", "moe_transformer", "state_space", "temporal_fusion")


def profile_one(preset: str, architecture: str, args: argparse.Namespace) -> dict:
    import torch

    from plus_ultra_ml.config import load_config
    from plus_ultra_ml.profiling import carried_backbone, profile_model
    from plus_ultra_ml.models.registry import build_from_config

    torch.manual_seed(0)
    experiment = load_config(ROOT / "configs" / f"{preset}.yaml")
    model = experiment.model.model_copy(
        update={"architecture": architecture, "backbone": carried_backbone(experiment.model, architecture)}
    )
    net = build_from_config(model, args.n_features, experiment.windows.horizon, [f"SYM{i}" for i in range(8)])
    batch = args.batch_size or experiment.train.batch_size
    if args.threads:
        torch.set_num_threads(args.threads)
    result = profile_model(net, experiment.windows.window, batch, args.device, args.dtype, args.steps, args.warmup,
                           repeats=args.repeats)
    return {"preset": preset, **asdict(result), "mfu": result.mfu, "threads": torch.get_num_threads()}


def table(rows: list[dict]) -> str:
    lines = [
        "| preset | architecture | params | T | B | threads | fwd GFLOP/window | fwd+bwd windows/s best (median) "
        "| achieved GFLOP/s | matmul peak GFLOP/s | MFU | peak RSS Δ MiB | activations MiB |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['preset']} | {r['architecture']} | {r['parameters']:,} | {r['seq_len']} | {r['batch_size']} "
            f"| {r['threads']} | {r['forward_flops'] / 1e9:.4f} "
            f"| {r['windows_per_s']:,.1f} ({r['windows_per_s_median']:,.1f}) "
            f"| {r['train_flops'] * r['windows_per_s'] / 1e9:,.1f} | {r['matmul_peak_flops'] / 1e9:,.0f} "
            f"| {r['mfu']:.1%} | {r['peak_memory_bytes'] / 2**20:,.0f} | {r['activation_bytes'] / 2**20:,.0f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="+", default=["smoke", "desktop"])
    parser.add_argument("--architectures", nargs="+", default=list(ARCHITECTURES))
    parser.add_argument("--n-features", type=int, default=60)
    parser.add_argument("--batch-size", type=int, default=None, help="default: the preset's train.batch_size")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of --steps steps; best and median")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    parser.add_argument("--one", nargs=2, metavar=("PRESET", "ARCHITECTURE"), help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.one:
        print(json.dumps(profile_one(*args.one, args)))
        return

    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"python {platform.python_version()}; device {args.device}, dtype {args.dtype}, "
          f"load average {os.getloadavg()[0]:.2f} (shared machine: other jobs run too)")
    rows = []
    for preset in args.presets:
        for architecture in args.architectures:
            command = [sys.executable, __file__, "--one", preset, architecture, "--n-features", str(args.n_features),
                       "--steps", str(args.steps), "--warmup", str(args.warmup), "--device", args.device,
                       "--dtype", args.dtype, "--repeats", str(args.repeats)]
            if args.batch_size:
                command += ["--batch-size", str(args.batch_size)]
            if args.threads:
                command += ["--threads", str(args.threads)]
            done = subprocess.run(command, capture_output=True, text=True, check=True, cwd=ROOT)
            row = json.loads(done.stdout.strip().splitlines()[-1])
            rows.append(row)
            print(f"{preset:8s} {architecture:20s} {row['parameters']:>12,} params "
                  f"{row['windows_per_s']:>10,.1f} windows/s  MFU {row['mfu']:.1%}", flush=True)
    print(f"load average at the end {os.getloadavg()[0]:.2f}")
    print()
    print(table(rows))


if __name__ == "__main__":
    main()
