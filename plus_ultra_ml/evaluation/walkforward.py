"""Walk-forward fold planner: stable, named folds with purged train / validation / test segments.

Folds are anchored at the start of the data, so adding new candles only ever appends folds and
never renames or moves an existing one: fold k's test window starts at bar
``first_test + k * step`` of the distinct bar grid. Within a fold,

    train [start .. train_end] | embargo | val [.. val_end] | embargo | test [.. test_end]

with an embargo of at least ``window + horizon`` bars, so no training window or target reaches
the validation or test data. Expanding mode trains from the first bar; sliding mode keeps the
last ``train_bars``. A fold exists once its test window has closed: its last bar and the
``horizon`` bars its targets need are in the data.

Lengths are bars (int) or calendar spans (pandas offsets such as "30D"), converted to bars by
the median bar spacing of the data.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from plus_ultra_ml.config import WalkForwardConfig, WindowsConfig
from plus_ultra_ml.data.calendar import bar_spacing
from plus_ultra_ml.data.windows import Split, split_by_bounds
from plus_ultra_ml.errors import PlusUltraError


@dataclass(frozen=True)
class Fold:
    """One walk-forward fold: segment bounds (inclusive bar times) and the embargo between them."""

    name: str  # stable: derived from the test window's first bar
    index: int  # position in the anchored sequence (0 = earliest possible fold)
    split: Split

    @property
    def test_start(self) -> pd.Timestamp:
        return self.split.bounds["test"][0]

    @property
    def cutoff(self) -> pd.Timestamp:
        """Last bar the fold's model may see (end of its validation segment)."""
        return self.split.cutoff

    def row(self) -> dict:
        b = self.split.bounds
        return {"fold": self.name, "index": self.index, "embargo": self.split.embargo,
                **{f"{k}_{edge}": b[k][i] for k in ("train", "val", "test") for i, edge in enumerate(("start", "end"))}}


def _bars(length: int | str | None, spacing: pd.Timedelta, name: str) -> int | None:
    if length is None or isinstance(length, int):
        return length
    try:
        span = pd.Timedelta(pd.tseries.frequencies.to_offset(length))
    except ValueError:
        raise PlusUltraError(f"walkforward.{name} = {length!r} is neither a bar count nor a time span like '30D'") from None
    return max(1, int(round(span / spacing)))


def fold_name(test_start: pd.Timestamp) -> str:
    return f"fold_{test_start:%Y%m%dT%H%M}"


def plan_folds(times, cfg: WalkForwardConfig, windows: WindowsConfig) -> list[Fold]:
    """Every closed fold of the anchored plan, oldest first; the last `cfg.n_folds` of them if set."""
    grid = pd.DatetimeIndex(times).unique().sort_values()
    spacing = bar_spacing(grid)
    test = _bars(cfg.test_bars, spacing, "test_bars")
    val = _bars(cfg.val_bars, spacing, "val_bars")
    train = _bars(cfg.train_bars, spacing, "train_bars")
    step = _bars(cfg.step_bars, spacing, "step_bars") or test
    embargo = windows.model_copy(update={"embargo": cfg.embargo}).effective_embargo  # the one rule (config.py)
    min_train = train if train is not None else _bars(cfg.min_train_bars, spacing, "min_train_bars")
    min_train = max(min_train or 0, windows.window + windows.horizon + 1)
    first_test = min_train + embargo + val + embargo
    last_usable = len(grid) - 1 - windows.horizon  # a test bar needs its targets
    count = 0 if last_usable < first_test + test - 1 else (last_usable - (first_test + test - 1)) // step + 1
    if count == 0:
        raise PlusUltraError(
            f"{len(grid)} bars hold no closed walk-forward fold: the first needs {first_test + test + windows.horizon} "
            f"(train >= {min_train}, 2 x embargo {embargo}, val {val}, test {test}, horizon {windows.horizon}); "
            "shorten walkforward lengths or add data"
        )
    folds = []
    for k in range(count):
        test_start = first_test + k * step
        val_end = test_start - embargo - 1
        train_end = val_end - val - embargo
        ends = {"train": grid[train_end], "val": grid[val_end], "test": grid[test_start + test - 1]}
        split = split_by_bounds(grid, ends, embargo)
        if cfg.mode == "sliding" and train is not None:
            bounds = dict(split.bounds)
            bounds["train"] = (grid[max(0, train_end - train + 1)], grid[train_end])
            split = Split(bounds=bounds, embargo=embargo)
        folds.append(Fold(name=fold_name(grid[test_start]), index=k, split=split))
    return folds[-cfg.n_folds:] if cfg.n_folds else folds


def fold_table(folds: list[Fold]) -> pd.DataFrame:
    """The plan as a table (one row per fold), stable across re-plans with more data."""
    return pd.DataFrame([f.row() for f in folds])


def find_fold(folds: list[Fold], name: str) -> Fold:
    for fold in folds:
        if fold.name == name:
            return fold
    known = ", ".join(f.name for f in folds) or "none"
    raise PlusUltraError(f"no walk-forward fold named {name!r} in the current plan (folds: {known})")


def bars_between(grid: pd.DatetimeIndex, first: pd.Timestamp, last: pd.Timestamp) -> int:
    positions = np.asarray(pd.DatetimeIndex(grid).get_indexer([first, last]))
    return int(positions[1] - positions[0] - 1)
