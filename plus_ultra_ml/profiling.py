"""Measure a network: parameters, FLOPs per window, training throughput, peak memory and MFU.

- FLOPs: `torch.utils.flop_counter.FlopCounterMode` over one forward and one forward+backward,
  divided by the batch. It counts matmuls, convolutions and attention kernels only (elementwise
  work and FFTs are not counted). It does not see inside fused LSTM kernels, so LSTM matmul
  FLOPs are added analytically (2 * 4H(I+H) per step and layer forward, twice that backward).
- Throughput: windows per second of forward + backward (no optimiser step), after warm-up; the
  best of `repeats` timed runs of `steps` steps (and their median, to show the noise).
- Peak memory: CUDA, `max_memory_allocated` during the first training step above the level
  before it; CPU, the peak process RSS during the first training step above the RSS before it,
  sampled every millisecond by a thread. Only the first step says anything on CPU: afterwards
  the allocator reuses the pages it already holds. Approximate, so the bytes autograd saves for
  backward (activations) are reported too: exact, and the same on any machine.
- MFU: counted training FLOPs per second over the peak FLOP/s of a large square matmul measured
  on the same device, in the same dtype, in the same process.
"""

from __future__ import annotations

import contextlib
import logging
import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from plus_ultra_ml.config import ModelConfig
from plus_ultra_ml.models.network import PlusUltraNet
from plus_ultra_ml.models.registry import architecture as lookup_architecture

logger = logging.getLogger(__name__)

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


@dataclass(frozen=True)
class ProfileResult:
    architecture: str
    parameters: int
    seq_len: int
    batch_size: int
    device: str
    dtype: str
    forward_flops: float  # per window: counted matmul/conv/attention FLOPs (+ analytic LSTM)
    train_flops: float  # per window, forward + backward
    windows_per_s: float  # forward + backward, no optimiser step; best of the timed repeats
    windows_per_s_median: float  # median of the repeats: the gap to the best shows the noise
    peak_memory_bytes: int
    memory_method: str
    activation_bytes: int  # tensors saved for backward in one step (deterministic, noise-free)
    matmul_peak_flops: float  # FLOP/s of a large matmul, same device and dtype

    @property
    def achieved_flops(self) -> float:
        return self.train_flops * self.windows_per_s

    @property
    def mfu(self) -> float:
        return self.achieved_flops / self.matmul_peak_flops


def carried_backbone(cfg: ModelConfig, architecture: str) -> dict[str, Any]:
    """Backbone parameters for `architecture` at the scale of `cfg`'s preset.

    The same architecture: `cfg.backbone` as is. Another one: only the keys that architecture
    also has (d_model, n_layers, n_heads, d_state, dropout, ...), the rest left at its defaults.
    """
    if architecture == cfg.architecture:
        return dict(cfg.backbone)
    known = {f.name for f in fields(lookup_architecture(architecture).config)}
    dropped = sorted(set(cfg.backbone) - known)
    if dropped:
        logger.info("profiling %s at %s's scale: not carried over %s", architecture, cfg.architecture, dropped)
    return {key: value for key, value in cfg.backbone.items() if key in known}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure_matmul_peak(device: torch.device, dtype: torch.dtype, size: int | None = None, repeats: int = 8) -> float:
    """Best FLOP/s of an n x n matmul (n = 2048 on CPU, 8192 on CUDA)."""
    n = size or (8192 if device.type == "cuda" else 2048)
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    best = float("inf")
    for i in range(repeats + 2):
        _sync(device)
        start = time.perf_counter()
        a @ b
        _sync(device)
        if i >= 2:  # the first two are warm-up
            best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best


def _lstm_flops(net: nn.Module, batch: int, seq_len: int) -> float:
    """Forward matmul FLOPs of every nn.LSTM in `net` (the flop counter misses fused RNN kernels)."""
    total = 0.0
    for module in net.modules():
        if isinstance(module, nn.LSTM):
            H = module.hidden_size
            for layer in range(module.num_layers):
                I = module.input_size if layer == 0 else H  # noqa: E741
                total += 2 * batch * seq_len * 4 * H * (I + H)
    return total


def _loss(net: PlusUltraNet, x: torch.Tensor, ids: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    with torch.autocast(x.device.type, dtype=dtype, enabled=dtype != torch.float32):
        out = net(x, ids)
        return out.forecast.float().square().mean() + out.position.float().square().mean() + out.aux_loss


def count_flops(net: PlusUltraNet, x: torch.Tensor, ids: torch.Tensor, dtype: torch.dtype) -> tuple[float, float]:
    """(forward, forward + backward) FLOPs for the batch `x`."""
    lstm = _lstm_flops(net, x.shape[0], x.shape[1])
    with FlopCounterMode(display=False) as counter:
        with torch.no_grad():
            _loss(net, x, ids, dtype)
    forward = counter.get_total_flops() + lstm
    with FlopCounterMode(display=False) as counter:
        _loss(net, x, ids, dtype).backward()
    net.zero_grad(set_to_none=True)
    return forward, counter.get_total_flops() + 3 * lstm


class _RssSampler:
    """Peak RSS of this process while active, sampled by a thread."""

    def __init__(self, interval_s: float = 0.001):
        import psutil

        self.process, self.interval_s = psutil.Process(), interval_s
        self.base = self.peak = self.process.memory_info().rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.process.memory_info().rss)
            time.sleep(self.interval_s)

    def __enter__(self) -> _RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def saved_activation_bytes(net: PlusUltraNet, x: torch.Tensor, ids: torch.Tensor, dtype: torch.dtype) -> int:
    """Bytes of the tensors autograd keeps for backward (activations), parameters excluded."""
    params = {p.untyped_storage().data_ptr() for p in net.parameters()}
    storages: dict[int, int] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        if tensor.device.type != "meta":
            storage = tensor.untyped_storage()
            if storage.data_ptr() not in params:
                storages[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        loss = _loss(net, x, ids, dtype)
    del loss
    return sum(storages.values())


def profile_model(
    net: PlusUltraNet,
    seq_len: int,
    batch_size: int,
    device: str = "cpu",
    dtype: str = "float32",
    steps: int = 10,
    warmup: int = 2,
    on_phase: Callable[[str], None] | None = None,
    matmul_size: int | None = None,
    repeats: int = 3,
) -> ProfileResult:
    """Profile training steps of `net` on random windows (B, T, F) with random symbol ids.

    Call it in a fresh process for a meaningful CPU memory figure: the first training step is the
    one measured, before any other allocation of this function (see the module docstring).
    """
    dev, dt = torch.device(device), DTYPES[dtype]
    report = on_phase or (lambda phase: None)
    net = net.to(dev).train()
    recipe = net.recipe
    x = torch.randn(batch_size, seq_len, recipe.n_features, device=dev)
    ids = torch.randint(0, recipe.vocabulary.size, (batch_size,), device=dev)

    report("first step (memory)")
    _sync(dev)
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
        base = torch.cuda.memory_allocated(dev)
    with _RssSampler() if dev.type == "cpu" else contextlib.nullcontext() as sampler:
        _loss(net, x, ids, dt).backward()
        net.zero_grad(set_to_none=True)
        _sync(dev)
    if sampler is not None:
        memory, method = sampler.peak - sampler.base, "peak RSS delta of the first step (sampled)"
    else:
        memory, method = torch.cuda.max_memory_allocated(dev) - base, "cuda max_memory_allocated delta"
    activations = saved_activation_bytes(net, x, ids, dt)

    report("flop count")
    forward, train = count_flops(net, x, ids, dt)
    report("warm-up")
    for _ in range(warmup):
        _loss(net, x, ids, dt).backward()
        net.zero_grad(set_to_none=True)
    report("timed steps")
    rates = []
    for _ in range(repeats):
        _sync(dev)
        start = time.perf_counter()
        for _ in range(steps):
            _loss(net, x, ids, dt).backward()
            net.zero_grad(set_to_none=True)
        _sync(dev)
        rates.append(steps * batch_size / (time.perf_counter() - start))
    report("matmul peak")
    peak = measure_matmul_peak(dev, dt, matmul_size)
    return ProfileResult(
        architecture=recipe.architecture,
        parameters=sum(p.numel() for p in net.parameters()),
        seq_len=seq_len,
        batch_size=batch_size,
        device=str(dev),
        dtype=dtype,
        forward_flops=forward / batch_size,
        train_flops=train / batch_size,
        windows_per_s=max(rates),
        windows_per_s_median=statistics.median(rates),
        peak_memory_bytes=int(memory),
        memory_method=method,
        activation_bytes=activations,
        matmul_peak_flops=peak,
    )
