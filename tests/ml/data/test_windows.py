"""Windows and segments: purged, time-ordered, never crossing symbols, scaled on training rows only."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from plus_ultra_ml.config import WindowsConfig
from plus_ultra_ml.data.windows import RobustScaler, build_targets, build_windows, split_by_bounds, split_by_fraction
from plus_ultra_ml.errors import PlusUltraError


def panel(n=600, symbols=("AAA", "BBB"), seed=0):
    rng = np.random.default_rng(seed)
    times = pd.date_range("2024-01-01", periods=n, freq="1h", tz="UTC")
    frames = []
    for k, s in enumerate(symbols):
        close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, n)))
        idx = pd.MultiIndex.from_arrays([pd.Categorical([s] * n, categories=list(symbols)), times],
                                        names=["symbol", "timestamp"])
        frames.append(pd.DataFrame({"close": close}, index=idx))
    return pd.concat(frames)


def features_of(p):
    f = pd.DataFrame({"a": np.log(p["close"]).groupby(level=0, observed=True).diff(),
                      "b": np.arange(len(p), dtype=float)}, index=p.index)
    return f.astype(np.float32)


CFG = WindowsConfig(window=16, horizon=3, val_fraction=0.2, test_fraction=0.2)


def windowed(cfg=CFG, p=None):
    p = panel() if p is None else p
    split = split_by_fraction(p.index.get_level_values("timestamp"), cfg)
    return p, build_windows(features_of(p), build_targets(p, cfg.horizon), split, cfg)


def test_segments_are_ordered_with_an_embargo_of_window_plus_horizon():
    p, data = windowed()
    grid = pd.DatetimeIndex(p.index.get_level_values("timestamp").unique())
    b = data.split.bounds
    assert b["train"][1] < b["val"][0] < b["val"][1] < b["test"][0]
    for before, after in (("train", "val"), ("val", "test")):
        gap = grid.get_loc(b[after][0]) - grid.get_loc(b[before][1]) - 1
        assert gap == data.split.embargo >= CFG.window + CFG.horizon


def test_no_validation_or_test_bar_inside_any_training_window_or_target():
    p, data = windowed()
    times = data.timestamps
    step = pd.Timedelta("1h").value
    train_bars, train_targets = set(), set()
    for end in data.ends["train"]:
        train_bars.update(times[end - CFG.window + 1:end + 1].tolist())
        train_targets.update((times[end - CFG.window + 1:end + 1] + CFG.horizon * step).tolist())
    for segment in ("val", "test"):
        held_out = set()
        for end in data.ends[segment]:
            held_out.update(times[end - CFG.window + 1:end + 1].tolist())
            held_out.update((times[end - CFG.window + 1:end + 1] + np.arange(1, CFG.horizon + 1)[:, None] * step).ravel().tolist())
        assert not held_out & train_bars and not held_out & train_targets
        assert min(held_out) - max(train_targets) > CFG.window * step


def test_windows_never_cross_symbols_and_targets_align():
    p, data = windowed()
    ds = data.dataset("train")
    for i in range(0, len(ds), 37):
        item = ds[i]
        end = int(data.ends["train"][i])
        rows = slice(end - CFG.window + 1, end + 1)
        assert len(set(data.symbol_ids[rows])) == 1
        close = p["close"].to_numpy()
        expected = np.log(close[end + 2] / close[end])  # fwd_2 at the last bar
        assert item["y"][-1, 1].item() == pytest.approx(expected, rel=1e-5)
        assert item["r"][-1].item() == pytest.approx(close[end + 1] / close[end] - 1, rel=1e-5)
        assert item["x"].shape == (CFG.window, 2)


def test_items_are_views_not_copies():
    _, data = windowed()
    item = data.dataset("train")[0]
    assert np.shares_memory(item["x"].numpy(), data.features)
    for key, base in (("y", data.targets), ("r", data.next_return), ("vol", data.volatility)):
        assert np.shares_memory(item[key].numpy(), base), key
    assert item["x"].is_contiguous()  # the array is C-ordered: a window is one contiguous block of it


def test_every_window_of_every_symbol_is_a_view_into_the_one_array():
    _, data = windowed(p=panel(n=300, symbols=tuple(f"S{i:02d}" for i in range(12))))
    dataset = data.dataset("train")
    assert len(np.unique(data.symbol_ids[dataset.ends])) == 12
    base = data.features.ctypes.data
    for i in range(0, len(dataset), 97):
        x = dataset[i]["x"].numpy()
        end = int(dataset.ends[i])
        offset = (x.ctypes.data - base) // data.features.strides[0]  # row of the array the window starts at
        assert np.shares_memory(x, data.features) and offset == end - data.window + 1


def test_scaling_writes_one_c_ordered_float32_array_with_the_float32_arithmetic():
    rng = np.random.default_rng(1)
    rows = np.asfortranarray(rng.normal(3.0, 2.0, (500, 7)).astype(np.float32))  # the feature frame's layout
    scaler = RobustScaler().fit(rows[:300])
    before = rows.copy()
    out = scaler.transform(rows)
    expected = np.clip((rows.astype(np.float32) - scaler.center) / scaler.scale, -scaler.clip, scaler.clip)
    np.testing.assert_array_equal(out, expected)  # the same numbers as elementwise float32 arithmetic
    assert out.dtype == np.float32 and out.flags["C_CONTIGUOUS"] and not np.shares_memory(out, rows)
    np.testing.assert_array_equal(rows, before)  # the caller's frame is untouched
    wide = rows.astype(np.float64)
    np.testing.assert_array_equal(scaler.transform(wide), expected)  # float64 in: cast to float32 first


def test_scaler_is_fitted_on_training_rows_only():
    p = panel()
    f = features_of(p)
    cfg = CFG
    split = split_by_fraction(p.index.get_level_values("timestamp"), cfg)
    base = build_windows(f, build_targets(p, cfg.horizon), split, cfg)
    future = f.copy()
    later = p.index.get_level_values("timestamp") > split.bounds["train"][1]
    future.loc[later, "b"] *= 1000  # anything after training must not move the scaler
    moved = build_windows(future, build_targets(p, cfg.horizon), split, cfg)
    assert np.array_equal(base.scaler.center, moved.scaler.center)
    assert np.array_equal(base.scaler.scale, moved.scaler.scale)
    train = (p.index.get_level_values("timestamp") <= split.bounds["train"][1]) & f.notna().all(axis=1).to_numpy()
    assert base.scaler.center[1] == pytest.approx(np.median(f.loc[train, "b"]))


def test_warmup_rows_never_enter_a_window():
    p = panel()
    f = features_of(p)  # 'a' is NaN on each symbol's first bar
    split = split_by_fraction(p.index.get_level_values("timestamp"), CFG)
    data = build_windows(f, build_targets(p, CFG.horizon), split, CFG)
    nan_rows = np.flatnonzero(~np.isfinite(f.to_numpy()).all(axis=1))
    for segment, ends in data.ends.items():
        starts = ends - CFG.window + 1
        assert not np.any((nan_rows[:, None] >= starts) & (nan_rows[:, None] <= ends)), segment


def test_split_from_timestamps_passed_as_data():
    p = panel()
    times = p.index.get_level_values("timestamp")
    split = split_by_bounds(times, {"train": pd.Timestamp("2024-01-10T23:00Z"), "val": pd.Timestamp("2024-01-20T00:00Z")}, 19)
    assert split.bounds["val"][0] == pd.Timestamp("2024-01-10T23:00Z") + pd.Timedelta("20h")  # 19 bars skipped
    with pytest.raises(PlusUltraError, match="empty"):
        split_by_bounds(times, {"train": pd.Timestamp("2024-01-10T23:00Z"), "val": pd.Timestamp("2024-01-11T05:00Z")}, 19)


def test_curriculum_window_uses_the_last_bars():
    _, data = windowed()
    full, short = data.dataset("train")[5], data.dataset("train", window=4)[5]
    assert np.array_equal(short["x"].numpy(), full["x"].numpy()[-4:])
    assert short["end"] == full["end"]


def test_scaler_round_trip():
    scaler = RobustScaler().fit(np.random.default_rng(0).normal(size=(100, 3)).astype(np.float32))
    again = RobustScaler.from_dict(scaler.to_dict())
    x = np.ones((2, 3), np.float32)
    assert np.array_equal(scaler.transform(x), again.transform(x))


def test_too_little_data_is_explained():
    with pytest.raises(PlusUltraError, match="too few"):
        split_by_fraction(panel(n=60).index.get_level_values("timestamp"), CFG)
