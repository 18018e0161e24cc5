"""The fold planner: purged, anchored (stable names), closed folds only, expanding or sliding."""

from __future__ import annotations

import pandas as pd
import pytest

from plus_ultra_ml.config import WalkForwardConfig, WindowsConfig
from plus_ultra_ml.evaluation.walkforward import find_fold, fold_table, plan_folds
from plus_ultra_ml.errors import PlusUltraError

WIN = WindowsConfig(window=16, horizon=4)
GRID = pd.date_range("2024-01-01", periods=5000, freq="15min", tz="UTC")


def plan(grid=GRID, **kw):
    cfg = WalkForwardConfig(**{"test_bars": 500, "val_bars": 200, "min_train_bars": 1000, "n_folds": None, **kw})
    return plan_folds(grid, cfg, WIN)


def test_segments_are_ordered_and_purged_by_window_plus_horizon():
    for fold in plan():
        b = fold.split.bounds
        for before, after in (("train", "val"), ("val", "test")):
            gap = GRID.get_loc(b[after][0]) - GRID.get_loc(b[before][1]) - 1
            assert gap == fold.split.embargo >= WIN.window + WIN.horizon
        assert GRID.get_loc(b["test"][1]) - GRID.get_loc(b["test"][0]) + 1 == 500
        assert fold.cutoff == b["val"][1] < b["test"][0]


def test_test_windows_tile_and_folds_only_exist_when_closed():
    folds = plan()
    for a, b in zip(folds, folds[1:]):
        assert GRID.get_loc(b.test_start) == GRID.get_loc(a.split.bounds["test"][1]) + 1
    last = folds[-1].split.bounds["test"][1]
    assert GRID.get_loc(last) + WIN.horizon <= len(GRID) - 1


def test_names_are_stable_when_data_grows():
    before = {f.name: f.split.bounds for f in plan(GRID[:4000])}
    after = {f.name: f.split.bounds for f in plan()}
    assert before.keys() < after.keys()
    assert all(after[name] == bounds for name, bounds in before.items())


def test_expanding_vs_sliding():
    expanding = plan()
    sliding = plan(mode="sliding", train_bars=800)
    assert all(f.split.bounds["train"][0] == GRID[0] for f in expanding)
    for f in sliding[1:]:
        b = f.split.bounds["train"]
        assert GRID.get_loc(b[1]) - GRID.get_loc(b[0]) + 1 == 800


def test_calendar_lengths_and_recent_folds():
    by_time = plan(test_bars="5D", val_bars="2D", min_train_bars="10D", n_folds=2)
    assert len(by_time) == 2
    b = by_time[0].split.bounds["test"]
    assert GRID.get_loc(b[1]) - GRID.get_loc(b[0]) + 1 == 5 * 96
    table = fold_table(by_time)
    assert list(table["fold"]) == [f.name for f in by_time]
    assert find_fold(by_time, by_time[1].name) is by_time[1]
    with pytest.raises(PlusUltraError, match="no walk-forward fold"):
        find_fold(by_time, "fold_19000101T0000")


def test_not_enough_data_is_explained():
    with pytest.raises(PlusUltraError, match="no closed walk-forward fold"):
        plan(GRID[:1500])
