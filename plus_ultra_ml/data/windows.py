"""Leak-proof training windows: time-ordered purged segments, forward targets, a scaler fitted on
training rows only, and window datasets that are views into one float32 array.

Time is split into segments by timestamps passed in as data (or derived from fractions): train,
validation and an optional test tail, separated by an embargo of at least ``window + horizon``
bars. A window ending at bar t covers bars t-T+1..t; every position s of it carries the targets
``log(close[s+h] / close[s])`` for h = 1..H and the next-bar simple return used for PnL. A window
belongs to a segment when all of its bars AND all of its target bars lie inside the segment, so

* no training target reaches past the end of the training segment, and
* no validation or test input, let alone target, lies within ``embargo`` bars of training data.

Targets are the only forward-looking columns; they live in `Targets`, never among the features.
Windows never cross symbols. Rows whose features are not finite (warm-up) cannot be in a window.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset

from plus_ultra_ml.config import WindowsConfig
from plus_ultra_ml.errors import PlusUltraError

SEGMENTS = ("train", "val", "test")
VOL_HALFLIFE = 50  # bars: the causal EWM volatility used to scale forecast targets


# --------------------------------------------------------------------------------------------
# segments
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Split:
    """Inclusive [first, last] bar timestamps per segment, and the embargo between segments."""

    bounds: Mapping[str, tuple[pd.Timestamp, pd.Timestamp]]
    embargo: int  # bars between one segment's last bar and the next segment's first bar

    def to_dict(self) -> dict:
        return {"embargo": self.embargo, **{k: [a.isoformat(), b.isoformat()] for k, (a, b) in self.bounds.items()}}

    @property
    def cutoff(self) -> pd.Timestamp:
        """The last bar any fitting may see: the end of the validation segment."""
        return self.bounds["val"][1]


def split_by_bounds(times: pd.DatetimeIndex, ends: Mapping[str, pd.Timestamp], embargo: int) -> Split:
    """Segments from their last timestamps: train ends at ends['train'], val at ends['val'], test
    (optional) at ends['test']; each later segment starts `embargo` bars after the previous one ends."""
    grid = pd.DatetimeIndex(times).unique().sort_values()
    bounds: dict[str, tuple[pd.Timestamp, pd.Timestamp]] = {}
    first = 0
    for name in SEGMENTS:
        if name not in ends:
            continue
        last = int(grid.searchsorted(pd.Timestamp(ends[name]), side="right")) - 1
        if last < first:
            raise PlusUltraError(
                f"segment {name} is empty: it would start at bar {first} ({grid[min(first, len(grid) - 1)]}) but end "
                f"at {ends[name]}; move the boundary later or shorten the embargo ({embargo} bars)"
            )
        bounds[name] = (grid[first], grid[last])
        first = last + 1 + embargo
    return Split(bounds=bounds, embargo=embargo)


def split_by_fraction(times: pd.DatetimeIndex, cfg: WindowsConfig) -> Split:
    """train / val / test by fractions of the distinct bar times, with the configured embargo."""
    grid = pd.DatetimeIndex(times).unique().sort_values()
    embargo = cfg.effective_embargo
    usable = len(grid) - embargo * (2 if cfg.test_fraction > 0 else 1)
    n_test = int(usable * cfg.test_fraction)
    n_val = int(usable * cfg.val_fraction)
    n_train = usable - n_val - n_test
    if min(n_train, n_val) < cfg.window + cfg.horizon or (cfg.test_fraction > 0 and n_test < cfg.window + cfg.horizon):
        raise PlusUltraError(
            f"{len(grid)} bars are too few for train/val/test fractions with window {cfg.window}, horizon "
            f"{cfg.horizon} and embargo {embargo}; use more data or smaller windows.window"
        )
    ends = {"train": grid[n_train - 1], "val": grid[n_train + embargo + n_val - 1]}
    if cfg.test_fraction > 0:
        ends["test"] = grid[-1]
    return split_by_bounds(grid, ends, embargo)


# --------------------------------------------------------------------------------------------
# targets (the only forward-looking columns)
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Targets:
    """Forward targets per bar, aligned with the panel index; NaN where the future is unknown."""

    forward: pd.DataFrame  # fwd_1..fwd_H: log(close[t+h] / close[t]) within the symbol
    next_return: pd.Series  # close[t+1] / close[t] - 1: what a position held from t earns
    volatility: pd.Series  # causal EWM std of 1-bar log returns up to and including t


def build_targets(panel: pd.DataFrame, horizon: int) -> Targets:
    log_close = np.log(panel["close"])
    by_symbol = log_close.groupby(level="symbol", observed=True, sort=False)
    forward = pd.DataFrame(
        {f"fwd_{h}": by_symbol.shift(-h) - log_close for h in range(1, horizon + 1)}, index=panel.index
    )
    next_return = np.expm1(forward["fwd_1"]).rename("next_return")
    one_bar = by_symbol.diff()
    volatility = (
        one_bar.pow(2).groupby(level="symbol", observed=True, sort=False)
        .transform(lambda s: s.ewm(halflife=VOL_HALFLIFE, min_periods=VOL_HALFLIFE).mean())
        .pow(0.5).rename("volatility")
    )
    return Targets(forward=forward, next_return=next_return, volatility=volatility)


# --------------------------------------------------------------------------------------------
# scaling, fitted on training rows only
# --------------------------------------------------------------------------------------------
@dataclass
class RobustScaler:
    """Per-feature (x - median) / IQR, fitted on training rows; constant features get scale 1."""

    center: np.ndarray | None = None
    scale: np.ndarray | None = None
    clip: float = 10.0  # scaled values beyond +-clip are clipped (outliers, not signal)

    def fit(self, train_rows: np.ndarray) -> RobustScaler:
        if len(train_rows) == 0:
            raise PlusUltraError("cannot fit the scaler: the training segment has no finite feature rows")
        q25, q50, q75 = np.nanpercentile(train_rows, [25, 50, 75], axis=0)
        iqr = q75 - q25
        self.center = q50.astype(np.float32)
        self.scale = np.where(np.isfinite(iqr) & (iqr > 1e-12), iqr, 1.0).astype(np.float32)
        return self

    def transform(self, rows: np.ndarray) -> np.ndarray:
        """(N, F) rows scaled into one new C-contiguous float32 array (each window a contiguous block of
        it); computed in place in that array, so the peak is the input plus one output, never more."""
        if self.center is None:
            raise PlusUltraError("scaler used before fit()")
        out = np.empty(np.shape(rows), dtype=np.float32)  # C order, whatever the input's layout
        out[...] = rows  # float32 first, then the float32 arithmetic: the same numbers as before
        out -= self.center
        out /= self.scale
        return np.clip(out, -self.clip, self.clip, out=out)

    def to_dict(self) -> dict:
        return {"center": self.center.tolist(), "scale": self.scale.tolist(), "clip": self.clip}

    @classmethod
    def from_dict(cls, state: Mapping) -> RobustScaler:
        return cls(np.asarray(state["center"], np.float32), np.asarray(state["scale"], np.float32), float(state["clip"]))


# --------------------------------------------------------------------------------------------
# windows
# --------------------------------------------------------------------------------------------
@dataclass
class WindowedData:
    """All rows of all symbols in one float32 array, and the window ends that belong to each segment.

    features (N, F) scaled; targets (N, H); next_return (N,); volatility (N,); symbol_ids (N,);
    timestamps (N,) int64 ns. `ends[segment]` holds row positions of window ends.
    """

    features: np.ndarray
    targets: np.ndarray
    next_return: np.ndarray
    volatility: np.ndarray
    symbol_ids: np.ndarray
    timestamps: np.ndarray
    feature_names: list[str]
    symbols: list[str]
    window: int
    horizon: int
    split: Split
    scaler: RobustScaler
    ends: dict[str, np.ndarray] = field(default_factory=dict)
    # bars per year of the panel's trading calendars (data.calendar.panel_periods_per_year), fixed before any
    # fitting; None: not given, and evaluation.heldout.segment_periods_per_year infers it (logged)
    periods_per_year: float | None = None

    def dataset(self, segment: str, window: int | None = None) -> WindowDataset:
        return WindowDataset(self, segment, window or self.window)

    def summary(self) -> dict:
        return {"rows": int(len(self.features)), "features": len(self.feature_names),
                "windows": {k: int(len(v)) for k, v in self.ends.items()}, "split": self.split.to_dict()}


def _valid_window_ends(ok_rows: np.ndarray, symbol_ids: np.ndarray, in_segment: np.ndarray, window: int) -> np.ndarray:
    """Row positions t such that rows t-window+1..t all satisfy `ok_rows & in_segment` and share a symbol."""
    good = ok_rows & in_segment
    run = np.zeros(len(good) + 1, dtype=np.int64)  # (N+1,) prefix sums of good rows
    np.cumsum(good, out=run[1:])
    t = np.arange(window - 1, len(good))
    full = (run[t + 1] - run[t + 1 - window]) == window
    same_symbol = symbol_ids[t] == symbol_ids[t - window + 1]
    return t[full & same_symbol]


def build_windows(
    features: pd.DataFrame, targets: Targets, split: Split, cfg: WindowsConfig, scaler: RobustScaler | None = None,
    periods_per_year: float | None = None,
) -> WindowedData:
    """Window the (symbol, timestamp) feature frame per segment; fit the scaler on training rows only.
    `periods_per_year` (the panel calendars' annualisation) travels with the windows to every scorer.

    A window ending at t is in a segment when bars t-T+1..t lie in the segment and the targets of
    every bar in it are known and lie in the segment too (t + H <= the segment's last bar)."""
    if not features.index.equals(targets.forward.index):
        raise PlusUltraError("features and targets must share the panel's (symbol, timestamp) index")
    symbols_level = features.index.get_level_values("symbol")
    times = features.index.get_level_values("timestamp")
    symbol_codes = pd.Categorical(symbols_level).codes.astype(np.int64)
    raw = features.to_numpy(dtype=np.float32)
    forward = targets.forward.to_numpy(dtype=np.float32)
    finite_features = np.isfinite(raw).all(axis=1)
    finite_targets = np.isfinite(forward).all(axis=1) & np.isfinite(targets.volatility.to_numpy())
    ns = times.asi8
    grid = pd.DatetimeIndex(times).unique().sort_values()
    ends: dict[str, np.ndarray] = {}
    for name, (first, last) in split.bounds.items():
        # the last bar whose H-bar targets stay inside the segment
        last_pos = int(grid.searchsorted(last, side="right")) - 1
        target_last = grid[max(last_pos - cfg.horizon, 0)].value
        in_segment = (ns >= first.value) & (ns <= last.value)
        ends[name] = _valid_window_ends(finite_features & finite_targets & (ns <= target_last), symbol_codes,
                                        in_segment, cfg.window)
    if scaler is None:
        train_rows = (ns >= split.bounds["train"][0].value) & (ns <= split.bounds["train"][1].value) & finite_features
        scaler = RobustScaler().fit(raw[train_rows])
    return WindowedData(
        features=scaler.transform(raw),
        targets=np.nan_to_num(forward, nan=0.0),  # only read through window ends, where all are finite
        next_return=np.nan_to_num(targets.next_return.to_numpy(dtype=np.float32), nan=0.0),
        volatility=np.nan_to_num(targets.volatility.to_numpy(dtype=np.float32), nan=1.0),
        symbol_ids=symbol_codes,
        timestamps=ns,
        feature_names=[str(c) for c in features.columns],
        symbols=[str(s) for s in pd.Categorical(symbols_level).categories],
        window=cfg.window,
        horizon=cfg.horizon,
        split=split,
        scaler=scaler,
        ends=ends,
        periods_per_year=periods_per_year,
    )


class WindowDataset(Dataset):
    """Windows of one segment; items are views into WindowedData's arrays (no copies until collate).

    Item: x (T, F) scaled features, y (T, H) forward log returns, r (T,) next-bar returns,
    vol (T,) causal volatility, symbol () id, end () timestamp ns of the last bar, times (T,) timestamp
    ns of every bar. A shorter `window` than the data's (curriculum) uses the last `window` bars of each window.
    """

    def __init__(self, data: WindowedData, segment: str, window: int):
        if segment not in data.ends:
            raise PlusUltraError(f"no segment {segment!r}; have {sorted(data.ends)}")
        if not 1 <= window <= data.window:
            raise PlusUltraError(f"window {window} must be in 1..{data.window}")
        self.data, self.segment, self.window = data, segment, window
        self.ends = data.ends[segment]

    def __len__(self) -> int:
        return len(self.ends)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        end = int(self.ends[i])
        rows = slice(end - self.window + 1, end + 1)
        d = self.data
        return {
            "x": torch.from_numpy(d.features[rows]),  # (T, F) view
            "y": torch.from_numpy(d.targets[rows]),  # (T, H)
            "r": torch.from_numpy(d.next_return[rows]),  # (T,)
            "vol": torch.from_numpy(d.volatility[rows]),  # (T,)
            "symbol": torch.tensor(d.symbol_ids[end]),
            "end": torch.tensor(d.timestamps[end]),
            "times": torch.from_numpy(d.timestamps[rows]),  # (T,) ns of every bar: what cross-sections line up by
        }
