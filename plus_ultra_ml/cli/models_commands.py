"""`plus-ultra profile`: parameters, FLOPs, training throughput, memory and MFU of a backbone."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from plus_ultra_ml.cli.common import console, progress, user_errors


class Device(str, Enum):
    cpu = "cpu"
    cuda = "cuda"


class DType(str, Enum):
    float32 = "float32"
    bfloat16 = "bfloat16"


@user_errors
def profile(
    architecture: Annotated[str, typer.Option("--architecture", "-a", help="registry name, e.g. state_space")],
    seq_len: Annotated[int, typer.Option("--seq-len", min=2, help="bars per window (T)")] = 64,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="windows per step (B)")] = 32,
    device: Annotated[Device, typer.Option("--device")] = Device.cpu,
    dtype: Annotated[
        DType, typer.Option("--dtype", help="bfloat16: autocast, compared with a bf16 matmul")
    ] = DType.float32,
    config: Annotated[
        Path | None,
        typer.Option("--config", "-c", help="take the model section (scale, heads) from this experiment YAML"),
    ] = None,
    n_features: Annotated[int, typer.Option("--n-features", min=1, help="feature columns (F)")] = 60,
    steps: Annotated[int, typer.Option("--steps", min=1, help="timed forward+backward steps")] = 10,
    warmup: Annotated[int, typer.Option("--warmup", min=0)] = 2,
) -> None:
    """Measure one backbone (with its heads) on random windows: FLOPs per window, windows/s, memory, MFU.

    Without --config the architecture's defaults are used; with it, the config's model section
    (when it names another architecture, the size keys both share are carried over).
    """
    import torch
    from rich.table import Table

    from plus_ultra_ml.config import ConfigError, ExperimentConfig, load_config
    from plus_ultra_ml.profiling import carried_backbone, profile_model
    from plus_ultra_ml.models.registry import architecture as lookup, build_from_config

    lookup(architecture)  # unknown names fail before any work
    if device is Device.cuda and not torch.cuda.is_available():
        raise ConfigError("--device cuda: no CUDA device is visible to torch here; use --device cpu")
    experiment = load_config(config) if config is not None else ExperimentConfig()
    model_cfg = experiment.model.model_copy(
        update={"architecture": architecture, "backbone": carried_backbone(experiment.model, architecture)}
    )
    vocabulary = [f"SYM{i}" for i in range(8)]
    net = build_from_config(model_cfg, n_features, experiment.windows.horizon, vocabulary)

    phases = ["first step (memory)", "flop count", "warm-up", "timed steps", "matmul peak"]
    with progress() as bar:
        task = bar.add_task(f"profiling {architecture}", total=len(phases))

        def on_phase(phase: str) -> None:
            bar.update(task, completed=phases.index(phase), description=f"{architecture}: {phase}")

        result = profile_model(net, seq_len, batch_size, device.value, dtype.value, steps, warmup, on_phase)
        bar.update(task, completed=len(phases))

    table = Table(title=f"{architecture} ({config or 'defaults'}), T={seq_len}, B={batch_size}, "
                        f"{result.device}, {result.dtype}")
    table.add_column("measure")
    table.add_column("value", justify="right")
    table.add_row("parameters", f"{result.parameters:,}")
    table.add_row("forward GFLOPs / window", f"{result.forward_flops / 1e9:.4f}")
    table.add_row("fwd+bwd GFLOPs / window", f"{result.train_flops / 1e9:.4f}")
    table.add_row("fwd+bwd windows / s, best (median)",
                  f"{result.windows_per_s:,.1f} ({result.windows_per_s_median:,.1f})")
    table.add_row("achieved GFLOP/s", f"{result.achieved_flops / 1e9:,.2f}")
    table.add_row(f"matmul peak GFLOP/s ({result.dtype})", f"{result.matmul_peak_flops / 1e9:,.1f}")
    table.add_row("MFU", f"{result.mfu:.2%}")
    table.add_row("peak memory (first step)", f"{result.peak_memory_bytes / 2**20:,.1f} MiB")
    table.add_row("activations saved for backward", f"{result.activation_bytes / 2**20:,.1f} MiB")
    console.print(table)
    console.print(
        f"Peak memory: {result.memory_method}. FLOPs count matmuls, convolutions and attention "
        "(flop counter) plus LSTM analytically; no FFTs or elementwise work. A shared machine makes "
        "throughput and the matmul peak noisy.",
        style="dim",
    )
