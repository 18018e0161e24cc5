"""Panel -> features -> windows at universe size: peak memory of each step, views, and batch spread.

Usage:
    python benchmarks/bench_windows.py [--symbols 500] [--bars 2520] [--window 64] [--batch 256]

Data: bench_features.make_panel (a seeded random-walk panel, --symbols x --bars rows) with random
regime labels of the real label columns (labelling is bench_regimes.py's cost, not this one's).
For each step, wall and CPU seconds and the peak of numpy allocations traced by tracemalloc
inside it (what it allocates beyond its inputs):

    features   compute_features(panel, FeaturesConfig(), labels): the float32 (N, F) frame
    targets    data.windows.build_targets(panel, horizon)
    windows    data.windows.build_windows(...): scaler fitted on training rows, one float32 array

Then checks what the training loop reads: a training window is a view into that one array (no
per-window copy: np.shares_memory), the array is C-contiguous (each window one contiguous block),
and the shuffled training loader's first batches draw from many symbols while reading only the
windows they hold (WindowDataset.__getitem__ calls counted). Prints numbers; asserts nothing.
"""

from __future__ import annotations

import argparse
import resource
import time
import tracemalloc

import numpy as np

from bench_features import PPY, make_panel, random_labels
from plus_ultra_ml.config import FeaturesConfig, WindowsConfig
from plus_ultra_ml.data.windows import WindowDataset, build_targets, build_windows, split_by_fraction
from plus_ultra_ml.features.pipeline import compute_features


def traced(label: str, fn):
    """Run fn() once; print wall s, CPU s and the peak traced MiB above what was allocated before."""
    tracemalloc.start()
    base, _ = tracemalloc.get_traced_memory()
    tracemalloc.reset_peak()
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    print(f"  {label:<10}{wall:>9.2f}{cpu:>9.2f}{(peak - base) / 2**20:>12.0f}")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--symbols", type=int, default=500)
    parser.add_argument("--bars", type=int, default=2_520)
    parser.add_argument("--window", type=int, default=64)
    parser.add_argument("--batch", type=int, default=256)
    args = parser.parse_args()

    small = make_panel(3, 500, seed=1)
    compute_features(small, FeaturesConfig(periods_per_year=PPY), random_labels(small))  # numba compile / cache

    panel = make_panel(args.symbols, args.bars)
    labels = random_labels(panel)
    rows = len(panel)
    print(f"panel: {args.symbols:,} symbols x {args.bars:,} bars = {rows:,} rows, "
          f"{panel.memory_usage(deep=True).sum() / 2**20:.0f} MiB")
    print(f"  {'step':<10}{'wall s':>9}{'CPU s':>9}{'peak MiB':>12}")
    cfg = WindowsConfig(window=args.window, horizon=4)
    result = traced("features", lambda: compute_features(panel, FeaturesConfig(periods_per_year=PPY), labels))
    frame = result.frame
    targets = traced("targets", lambda: build_targets(panel, cfg.horizon))
    split = split_by_fraction(frame.index.get_level_values("timestamp"), cfg)
    data = traced("windows", lambda: build_windows(frame, targets, split, cfg))
    frame_mib = frame.memory_usage(index=False).sum() / 2**20
    print(f"feature frame: {frame.shape[0]:,} x {frame.shape[1]} {sorted({str(d) for d in frame.dtypes})}, "
          f"{frame_mib:.0f} MiB; windowed features {data.features.dtype} {data.features.nbytes / 2**20:.0f} MiB, "
          f"C-contiguous {data.features.flags['C_CONTIGUOUS']}")

    class Counting(WindowDataset):
        calls = 0

        def __getitem__(self, i):
            Counting.calls += 1
            return super().__getitem__(i)

    from torch.utils.data import DataLoader

    train = Counting(data, "train", data.window)
    item = train[len(train) // 2]
    print(f"training windows: {len(train):,}; a window shares memory with the array: "
          f"{np.shares_memory(item['x'].numpy(), data.features)}, contiguous {item['x'].is_contiguous()}")
    Counting.calls = 0
    loader = DataLoader(train, batch_size=args.batch, shuffle=True, drop_last=True)
    spread, started = [], time.perf_counter()
    for k, batch in enumerate(loader):
        spread.append(len(np.unique(batch["symbol"].numpy())))
        if k == 9:
            break
    print(f"first 10 shuffled batches of {args.batch}: {time.perf_counter() - started:.2f} s, distinct symbols per "
          f"batch min {min(spread)} / median {int(np.median(spread))} (of {args.symbols}); windows read "
          f"{Counting.calls:,} = {Counting.calls / len(train):.2%} of the segment")
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"process peak RSS: {rss:.0f} MiB")


if __name__ == "__main__":
    main()
