"""The DataModule: purged time-ordered segments, a scaler fitted on training rows, window loaders.

It owns the split (passed in as data: `Split` from data/windows.py, or derived from the
`windows` fractions) and the fitted `RobustScaler`, which it hands on (`.scaler`) to whatever
saves the model, so serving scales with training-time statistics. Loaders yield the dict batches
of `WindowDataset` plus the first bar's timestamp of each window (`start`), which the contrastive
pretext needs to keep overlapping windows of one symbol apart.

Curriculum over window length: the training loader of epoch e uses the last `window_for_epoch(e)`
bars of every training window (short windows first, then the full length). The set of windows,
the horizon and therefore every target stay the same; only the visible history grows. Lightning
rebuilds the training loader each epoch when a curriculum is set
(`reload_dataloaders_every_n_epochs=1`).
"""

from __future__ import annotations

from collections.abc import Sequence

import lightning as L
import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, Subset

from plus_ultra_ml.config import ConfigError, WindowsConfig
from plus_ultra_ml.data.windows import (
    RobustScaler,
    Split,
    Targets,
    WindowDataset,
    WindowedData,
    build_windows,
    split_by_fraction,
)
from plus_ultra_ml.errors import PlusUltraError


def curriculum_window(epoch: int, stages: Sequence[int], epochs_per_stage: int, full: int) -> int:
    """Window length for `epoch`: stages[epoch // epochs_per_stage] while stages last, then `full`."""
    stage = epoch // epochs_per_stage
    return int(stages[stage]) if stage < len(stages) else full


class TimedWindowDataset(WindowDataset):
    """`WindowDataset` items plus `start` (timestamp ns of the window's first bar)."""

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        item = super().__getitem__(i)
        item["start"] = torch.tensor(self.data.timestamps[int(self.ends[i]) - self.window + 1])
        return item


class WindowDataModule(L.LightningDataModule):
    """Windows of one feature frame. `setup()` splits, fits the scaler on train rows, builds windows.

    features: (N, F) frame on the panel's (symbol, timestamp) index (features/pipeline.py).
    targets:  `build_targets(panel, windows.horizon)`, same index.
    split:    segment bounds; None: `split_by_fraction` with the configured fractions.
    scaler:   a fitted scaler to reuse (serving, evaluation); None: fit on the training rows.
    """

    def __init__(
        self,
        features: pd.DataFrame,
        targets: Targets,
        windows: WindowsConfig,
        *,
        batch_size: int,
        split: Split | None = None,
        scaler: RobustScaler | None = None,
        curriculum: Sequence[int] = (),
        curriculum_epochs: int = 1,
        num_workers: int = 0,
        eval_batch_size: int | None = None,
        periods_per_year: float | None = None,  # the panel calendars' annualisation (data.calendar)
        val_windows: int | None = None,  # per-epoch validation on a fixed sample of at most this many windows
        sample_seed: int = 0,
    ):
        super().__init__()
        if any(not 2 <= w < windows.window for w in curriculum):
            raise ConfigError(
                f"train.curriculum {list(curriculum)} must hold window lengths in [2, windows.window="
                f"{windows.window}); the last stage is always the full window"
            )
        self.features, self.targets, self.windows = features, targets, windows
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size or max(batch_size, 256)
        self.requested_split, self.requested_scaler = split, scaler
        self.curriculum, self.curriculum_epochs = tuple(curriculum), curriculum_epochs
        self.num_workers = num_workers
        self.periods_per_year = periods_per_year
        self.val_windows, self.sample_seed = val_windows, sample_seed
        self.data: WindowedData | None = None

    # ---- setup -----------------------------------------------------------------------------
    def setup(self, stage: str | None = None) -> None:
        if self.data is not None:
            return
        times = self.features.index.get_level_values("timestamp")
        split = self.requested_split or split_by_fraction(times, self.windows)
        data = build_windows(self.features, self.targets, split, self.windows, self.requested_scaler,
                             self.periods_per_year)
        for segment in ("train", "val"):
            if len(data.ends.get(segment, ())) == 0:
                raise PlusUltraError(
                    f"the {segment} segment {split.bounds[segment][0]} .. {split.bounds[segment][1]} holds no "
                    f"complete window of {self.windows.window} bars with finite features and targets; "
                    "use more data, a smaller windows.window, or later segment bounds"
                )
        self.data = data

    def _ready(self) -> WindowedData:
        if self.data is None:
            raise PlusUltraError("WindowDataModule used before setup()")
        return self.data

    @property
    def split(self) -> Split:
        return self._ready().split

    @property
    def scaler(self) -> RobustScaler:
        return self._ready().scaler

    @property
    def feature_names(self) -> list[str]:
        return self._ready().feature_names

    @property
    def symbols(self) -> list[str]:
        return self._ready().symbols

    # ---- loaders ---------------------------------------------------------------------------
    def window_for_epoch(self, epoch: int) -> int:
        return curriculum_window(epoch, self.curriculum, self.curriculum_epochs, self.windows.window)

    def dataset(self, segment: str, window: int | None = None) -> TimedWindowDataset:
        data = self._ready()
        return TimedWindowDataset(data, segment, window or data.window)

    def train_dataloader(self) -> DataLoader:
        epoch = self.trainer.current_epoch if self.trainer is not None else 0
        dataset = self.dataset("train", self.window_for_epoch(epoch))
        return DataLoader(dataset, batch_size=self.batch_size, shuffle=True, drop_last=len(dataset) > self.batch_size,
                          num_workers=self.num_workers, persistent_workers=False)

    def _eval_loader(self, segment: str) -> DataLoader:
        return DataLoader(self.dataset(segment), batch_size=self.eval_batch_size, shuffle=False,
                          num_workers=self.num_workers)

    def validation_sample(self) -> np.ndarray:
        """Positions in the validation dataset scored each epoch: all of them, or, with `val_windows`, a
        fixed sample of that many drawn without replacement (seeded, so every epoch and every rerun of
        the run compares checkpoints on the same windows), kept in dataset order."""
        count = len(self._ready().ends["val"])
        if self.val_windows is None or count <= self.val_windows:
            return np.arange(count)
        rng = np.random.default_rng([self.sample_seed, count])
        return np.sort(rng.choice(count, size=self.val_windows, replace=False))

    def val_dataloader(self) -> DataLoader:
        sample = self.validation_sample()
        dataset = self.dataset("val")
        if len(sample) < len(dataset):
            dataset = Subset(dataset, sample.tolist())
        return DataLoader(dataset, batch_size=self.eval_batch_size, shuffle=False, num_workers=self.num_workers)

    def test_dataloader(self) -> DataLoader:
        if "test" not in self._ready().ends:
            raise PlusUltraError("this split has no test segment (windows.test_fraction = 0 or no 'test' bound)")
        return self._eval_loader("test")
