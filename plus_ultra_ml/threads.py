"""The one way the library sets torch's intra-op thread count.

Three config fields choose the count for three stages, and each stage scopes its own:
`train.cpu_threads` (pretraining and supervised fits, on the CPU only), `rl.threads` (PPO) and
`service.threads` (the inference service and offline prediction). Training and RL open
`torch_threads(...)` around their work and get the previous count back; a CLI command that lives
as long as its process (`plus-ultra serve`, `predict`) calls `set_torch_threads` once. The tiny ops
of these models spin more than they compute when threads share a busy CPU, so one thread is often
many times faster than two; None leaves torch's default (one per core) alone.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch

CPU_ACCELERATORS = ("cpu", "auto")  # training accelerators on which the thread count matters


def set_torch_threads(threads: int | None, accelerator: str = "cpu") -> int | None:
    """Set torch's intra-op thread count; return the count before (None: nothing was changed).

    threads: None leaves the count unchanged.
    accelerator: the training accelerator (`train.accelerator`); on one that is not in
    CPU_ACCELERATORS the count is left unchanged (the device does the work).
    """
    if threads is None or accelerator not in CPU_ACCELERATORS:
        return None
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    return before


@contextmanager
def torch_threads(threads: int | None, accelerator: str = "cpu") -> Iterator[None]:
    """Run the block under `set_torch_threads(threads, accelerator)`, then restore the previous count."""
    before = set_torch_threads(threads, accelerator)
    try:
        yield
    finally:
        if before is not None:
            torch.set_num_threads(before)
