"""DataModule: curriculum schedule, scaler fitted on training rows only, window start times, date batches."""

from __future__ import annotations

import numpy as np
import pytest

from plus_ultra_ml.config import ConfigError, CrossSectionConfig
from plus_ultra_ml.data.windows import RobustScaler, build_targets
from plus_ultra_ml.training.datamodule import DateBatchSampler, WindowDataModule, curriculum_window

from .conftest import planted_data, tiny_config

CURRICULUM = [
    # name, epoch, stages, per_stage, full, expected
    ("no curriculum", 0, (), 1, 32, 32),
    ("first stage", 0, (8, 16), 2, 32, 8),
    ("still first stage", 1, (8, 16), 2, 32, 8),
    ("second stage", 2, (8, 16), 2, 32, 16),
    ("after the stages: full window", 4, (8, 16), 2, 32, 32),
    ("long after", 99, (8,), 1, 32, 32),
]


@pytest.mark.parametrize("name, epoch, stages, per_stage, full, expected", CURRICULUM, ids=[c[0] for c in CURRICULUM])
def test_curriculum_window(name, epoch, stages, per_stage, full, expected):
    assert curriculum_window(epoch, stages, per_stage, full) == expected


def module_for(data, **kwargs):
    cfg = tiny_config()
    dm = WindowDataModule(data.features, build_targets(data.panel, cfg.windows.horizon), cfg.windows,
                          batch_size=16, **kwargs)
    dm.setup()
    return dm


def test_scaler_is_fitted_on_training_rows_only():
    data = planted_data()
    dm = module_for(data)
    times = data.features.index.get_level_values("timestamp")
    first, last = dm.split.bounds["train"]
    train_rows = (times >= first) & (times <= last) & np.isfinite(data.features.to_numpy()).all(axis=1)
    expected = RobustScaler().fit(data.features.to_numpy()[train_rows])
    np.testing.assert_array_equal(dm.scaler.center, expected.center)
    np.testing.assert_array_equal(dm.scaler.scale, expected.scale)
    # changing every value after the training segment leaves the scaler alone
    shifted = data.features.copy()
    shifted.loc[times > last] = shifted.loc[times > last] * 50 + 7
    other = module_for(type(data)(shifted, data.panel, "x", panel_fingerprint="x"))
    np.testing.assert_array_equal(other.scaler.center, dm.scaler.center)


def test_items_carry_the_window_start_and_curriculum_shortens_history():
    data = planted_data()
    dm = module_for(data, curriculum=(4,), curriculum_epochs=1)
    item = dm.dataset("train")[5]
    step = np.int64(3600 * 10**9)  # hourly bars
    assert int(item["end"]) - int(item["start"]) == (dm.windows.window - 1) * step
    short = dm.dataset("train", dm.window_for_epoch(0))[5]
    assert short["x"].shape[0] == 4 and int(short["end"]) == int(item["end"])
    assert int(short["end"]) - int(short["start"]) == 3 * step
    assert dm.window_for_epoch(1) == dm.windows.window


def test_curriculum_longer_than_window_is_a_config_error():
    data = planted_data()
    with pytest.raises(ConfigError, match="curriculum"):
        module_for(data, curriculum=(8,))


def test_validation_sample_is_fixed_spread_and_binds_only_when_the_segment_is_larger():
    data = planted_data()
    full = module_for(data)
    count = len(full.dataset("val"))
    assert len(full.val_dataloader().dataset) == count  # no limit: every window
    assert len(module_for(data, val_windows=count + 5).val_dataloader().dataset) == count
    dm = module_for(data, val_windows=count // 3, sample_seed=4)
    sample = dm.validation_sample()
    assert len(sample) == count // 3 and (np.diff(sample) > 0).all()  # distinct, in dataset order
    np.testing.assert_array_equal(sample, dm.validation_sample())  # the same windows every epoch
    np.testing.assert_array_equal(sample, module_for(data, val_windows=count // 3, sample_seed=4).validation_sample())
    ends = dm.data.ends["val"][sample]
    symbols = set(dm.data.symbol_ids[ends].tolist())
    assert symbols == set(dm.data.symbol_ids[dm.data.ends["val"]].tolist())  # every symbol is represented
    loader_ends = np.concatenate([b["end"].numpy() for b in dm.val_dataloader()])
    np.testing.assert_array_equal(loader_ends, dm.data.timestamps[ends])  # the loader yields exactly the sample


def test_shuffled_training_batches_spread_over_symbols_and_read_only_their_windows(monkeypatch):
    """The training sampler draws window indices (no window is built ahead): one batch reads exactly its
    own windows, and a batch from a 40-symbol universe holds windows of most symbols."""
    from plus_ultra_ml.data.windows import WindowDataset

    data = planted_data(n_bars=200, symbols=tuple(f"S{i:02d}" for i in range(40)))
    cfg = tiny_config()
    module = WindowDataModule(data.features, build_targets(data.panel, cfg.windows.horizon), cfg.windows,
                              batch_size=64)
    module.setup()
    calls, original = [], WindowDataset.__getitem__

    def counting(self, i):
        calls.append(int(i))
        return original(self, i)

    monkeypatch.setattr(WindowDataset, "__getitem__", counting)
    batch = next(iter(module.train_dataloader()))
    assert len(calls) == 64 and len(set(calls)) == 64  # windows read = the batch, no materialisation
    assert len(module.dataset("train")) > 20 * 64  # far more windows exist than one batch read
    assert len(np.unique(batch["symbol"].numpy())) >= 25  # spread: not one symbol's run of windows


# ------------------------------------------------------------------------------------ cross-section
def universe(names=12, n_bars=200):
    return planted_data(n_bars=n_bars, symbols=tuple(f"S{i:02d}" for i in range(names)))


def test_date_batches_hold_one_window_per_name_at_each_of_their_dates():
    data = universe()
    dm = module_for(data, cross_section=CrossSectionConfig(dates_per_batch=3, names_per_date=5), sample_seed=2)
    loader = dm.train_dataloader()
    batches = list(loader)
    assert len(batches) == len(loader) == len(dm.dates("train")) // 3  # the short last batch is dropped
    for b in batches[:10]:
        ends, symbols = b["end"].numpy(), b["symbol"].numpy()
        assert len(np.unique(ends)) == 3 and len(ends) == 15  # 3 dates x 5 sampled names
        pairs = set(zip(ends.tolist(), symbols.tolist()))
        assert len(pairs) == 15  # no name twice at a date
        np.testing.assert_array_equal(b["times"][:, -1].numpy(), ends)  # each window's steps end at its date
    seen = {int(e) for b in batches for e in np.unique(b["end"].numpy())}
    assert len(seen) == 3 * len(batches)  # every date at most once an epoch
    # seeded: a rerun draws the same batches; the next epoch draws others
    again = list(module_for(data, cross_section=CrossSectionConfig(dates_per_batch=3, names_per_date=5),
                            sample_seed=2).train_dataloader())
    assert all(np.array_equal(a["end"], b["end"]) and np.array_equal(a["symbol"], b["symbol"])
               for a, b in zip(batches, again))
    following = list(loader)  # the same sampler's second epoch
    assert not np.array_equal(following[0]["end"], batches[0]["end"])


def test_date_batches_with_every_name_and_whole_dates_in_validation():
    data = universe(names=10)
    dm = module_for(data, cross_section=CrossSectionConfig(dates_per_batch=2, names_per_date=None), val_windows=35)
    b = next(iter(dm.train_dataloader()))
    assert len(b["end"]) == 20  # all 10 names at 2 dates
    sample = dm.validation_sample()
    ends = dm.data.timestamps[dm.data.ends["val"][sample]]
    dates, counts = np.unique(ends, return_counts=True)
    assert len(sample) <= 35 and (counts == 10).all()  # whole dates only: every name of a drawn date
    loader_ends = np.concatenate([b["end"].numpy() for b in dm.val_dataloader()])
    assert sorted(loader_ends.tolist()) == sorted(ends.tolist())  # the loader yields exactly the sample
    for b in dm.val_dataloader():
        assert len(np.unique(b["end"].numpy())) * 10 == len(b["end"])  # no date split across batches


def test_date_batch_sampler_on_a_ragged_universe():
    """A name listed late is in the cross-sections of its dates only; a date never has a name twice."""
    dates = [np.array([0, 1]), np.array([2, 3, 4]), np.array([5, 6, 7, 8])]
    sampler = DateBatchSampler(dates, dates_per_batch=2, names_per_date=3, seed=0)
    batches = list(sampler)
    assert len(batches) == 2 and sum(len(b) for b in batches) == 2 + 3 + 3  # the last, short batch is kept
    flat = [i for b in batches for i in b]
    assert len(flat) == len(set(flat)) and set(flat) <= set(range(9))
    assert sum(1 for i in flat if i >= 5) == 3  # the 4-name date is sampled down to 3
