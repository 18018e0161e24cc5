"""The DataModule: purged time-ordered segments, a scaler fitted on training rows, window loaders.

It owns the split (passed in as data: `Split` from data/windows.py, or derived from the
`windows` fractions) and the fitted `RobustScaler`, which it hands on (`.scaler`) to whatever
saves the model, so serving scales with training-time statistics. Loaders yield the dict batches
of `WindowDataset` plus the first bar's timestamp of each window (`start`), which the contrastive
pretext needs to keep overlapping windows of one symbol apart.

Cross-sectional batches (`cross_section`, train.cross_section): the training loader yields whole
dates (`DateBatchSampler`: up to `names_per_date` names at each of `dates_per_batch` shuffled end
dates, seeded per epoch), and validation and test batches hold whole dates in time order
(`date_loader`), so the per-date losses of objectives/cross_section.py compare every name of a date.

Curriculum over window length: the training loader of epoch e uses the last `window_for_epoch(e)`
bars of every training window (short windows first, then the full length). The set of windows,
the horizon and therefore every target stay the same; only the visible history grows. Lightning
rebuilds the training loader each epoch when a curriculum is set
(`reload_dataloaders_every_n_epochs=1`).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import lightning as L
import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, Sampler, Subset

from plus_ultra_ml.config import ConfigError, CrossSectionConfig, WindowsConfig
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


def dates_of(ends: np.ndarray, timestamps: np.ndarray) -> list[np.ndarray]:
    """Dataset positions grouped by their window's end timestamp, dates in time order, positions in
    dataset order within a date. ends: (W,) row positions of window ends; timestamps: (N,) ns."""
    times = timestamps[ends]
    order = np.argsort(times, kind="stable")
    boundaries = np.flatnonzero(np.diff(times[order])) + 1
    return np.split(order, boundaries)


class DateBatchSampler(Sampler[list[int]]):
    """Batches of whole dates: each yields the dataset positions of up to `names_per_date` names at each
    of `dates_per_batch` dates (the training loader of `train.cross_section`).

    Every epoch (every `iter`) shuffles the dates and, at each date, draws its names without
    replacement, seeded by (seed, epoch), so a rerun sees the same batches. The positions stay indices
    into the one window array; nothing is copied until collate. shuffle=False (validation): dates in
    time order, every name (`names_per_date` ignored).
    """

    def __init__(self, dates: list[np.ndarray], dates_per_batch: int, names_per_date: int | None, *,
                 shuffle: bool = True, seed: int = 0, drop_last: bool = False):
        self.dates, self.dates_per_batch, self.names_per_date = dates, dates_per_batch, names_per_date
        self.shuffle, self.seed, self.drop_last = shuffle, seed, drop_last
        self.epoch = 0

    def __len__(self) -> int:
        full, rest = divmod(len(self.dates), self.dates_per_batch)
        return full + (0 if self.drop_last or rest == 0 else 1)

    def __iter__(self) -> Iterator[list[int]]:
        rng = np.random.default_rng([self.seed, self.epoch])
        self.epoch += 1
        order = rng.permutation(len(self.dates)) if self.shuffle else np.arange(len(self.dates))
        for first in range(0, len(self) * self.dates_per_batch, self.dates_per_batch):
            batch = []
            for d in order[first:first + self.dates_per_batch]:
                names = self.dates[d]
                if self.shuffle and self.names_per_date is not None and len(names) > self.names_per_date:
                    names = np.sort(rng.choice(names, size=self.names_per_date, replace=False))
                batch.extend(names.tolist())
            yield batch


def date_loader(dataset: WindowDataset, dates: list[np.ndarray], batch_size: int, num_workers: int = 0) -> DataLoader:
    """Evaluation batches of whole dates in time order, about `batch_size` windows each (at least one
    date), so a cross-sectional score sees every name of a date. dates: `dates_of` positions."""
    per_date = max(sum(len(d) for d in dates) // max(len(dates), 1), 1)
    sampler = DateBatchSampler(dates, max(batch_size // per_date, 1), None, shuffle=False)
    return DataLoader(dataset, batch_sampler=sampler, num_workers=num_workers)


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
        cross_section: CrossSectionConfig | None = None,  # date-grouped training and validation batches
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
        self.cross_section = cross_section
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

    def dates(self, segment: str) -> list[np.ndarray]:
        """The segment's dataset positions grouped by end date (`dates_of`)."""
        data = self._ready()
        return dates_of(data.ends[segment], data.timestamps)

    def train_dataloader(self) -> DataLoader:
        epoch = self.trainer.current_epoch if self.trainer is not None else 0
        dataset = self.dataset("train", self.window_for_epoch(epoch))
        if self.cross_section is not None:
            xs = self.cross_section
            dates = self.dates("train")
            sampler = DateBatchSampler(dates, xs.dates_per_batch, xs.names_per_date, seed=self.sample_seed,
                                       drop_last=len(dates) > xs.dates_per_batch)
            sampler.epoch = epoch  # a loader rebuilt each epoch (curriculum) still draws that epoch's batches
            return DataLoader(dataset, batch_sampler=sampler, num_workers=self.num_workers)
        return DataLoader(dataset, batch_size=self.batch_size, shuffle=True, drop_last=len(dataset) > self.batch_size,
                          num_workers=self.num_workers, persistent_workers=False)

    def _eval_loader(self, segment: str) -> DataLoader:
        if self.cross_section is not None:
            return date_loader(self.dataset(segment), self.dates(segment), self.eval_batch_size, self.num_workers)
        return DataLoader(self.dataset(segment), batch_size=self.eval_batch_size, shuffle=False,
                          num_workers=self.num_workers)

    def validation_sample(self) -> np.ndarray:
        """Positions in the validation dataset scored each epoch: all of them, or, with `val_windows`, a
        fixed sample of that many drawn without replacement (seeded, so every epoch and every rerun of
        the run compares checkpoints on the same windows), kept in dataset order. With
        `cross_section` the sample is of whole dates (every name of a drawn date, dates drawn until
        `val_windows` windows are reached), so each validation cross-section is complete."""
        count = len(self._ready().ends["val"])
        if self.val_windows is None or count <= self.val_windows:
            return np.arange(count)
        rng = np.random.default_rng([self.sample_seed, count])
        if self.cross_section is None:
            return np.sort(rng.choice(count, size=self.val_windows, replace=False))
        dates = self.dates("val")
        drawn = rng.permutation(len(dates))
        sizes = np.cumsum([len(dates[d]) for d in drawn])
        keep = drawn[:max(int(np.searchsorted(sizes, self.val_windows, side="right")), 1)]
        return np.sort(np.concatenate([dates[d] for d in keep]))

    def val_dataloader(self) -> DataLoader:
        sample = self.validation_sample()
        dataset = self.dataset("val")
        if self.cross_section is not None:
            kept = np.zeros(len(dataset), dtype=bool)
            kept[sample] = True
            dates = [d for d in self.dates("val") if kept[d[0]]]  # a date is sampled whole or not at all
            return date_loader(dataset, dates, self.eval_batch_size, self.num_workers)
        if len(sample) < len(dataset):
            dataset = Subset(dataset, sample.tolist())
        return DataLoader(dataset, batch_size=self.eval_batch_size, shuffle=False, num_workers=self.num_workers)

    def test_dataloader(self) -> DataLoader:
        if "test" not in self._ready().ends:
            raise PlusUltraError("this split has no test segment (windows.test_fraction = 0 or no 'test' bound)")
        return self._eval_loader("test")
