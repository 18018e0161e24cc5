"""One encoding per bar: in a fold with PPO on a frozen backbone, each (segment, bar) window goes through
the checkpoint's backbone once, and the fold's positions and metrics equal those of encoding every time.

A global forward hook counts the backbone's calls after supervised training has picked its weights
(the training loop's own passes are training, not reuse); windows are told apart by their bytes and
weights by their values, so "the same window with the same weights twice" is counted exactly.
"""

from __future__ import annotations

import hashlib
from collections import Counter

import numpy as np
import pandas as pd
import pytest
import torch

import plus_ultra_ml.training.fit as training_fit
from plus_ultra_ml.checkpoints.supervised import load_checkpoint
from plus_ultra_ml.checkpoints.windows import policy_windows
from plus_ultra_ml.config import FixtureConfig, load_config
from plus_ultra_ml.evaluation.walkforward import plan_folds
from plus_ultra_ml.experiments.dataset import load_training_data
from plus_ultra_ml.experiments.fold import run_fold
from plus_ultra_ml.models.encoder import RowEncoder
from plus_ultra_ml.synthetic.fixture import build_fixture
from tests.ml.evaluation.test_walkforward_cli import CONFIG, FOLDS
from tests.ml.training.test_cli import TINY


def weights_of(module: torch.nn.Module) -> str:
    digest = hashlib.sha1()
    for tensor in module.state_dict().values():
        digest.update(tensor.detach().cpu().numpy().tobytes())
    return digest.hexdigest()


class BackboneCounter:
    """Windows (by bytes) each set of backbone weights encoded without a gradient, once `armed`."""

    def __init__(self, backbone_type: type):
        self.backbone_type = backbone_type
        self.armed = False
        self.windows: dict[str, Counter] = {}
        self.grad_windows: dict[str, int] = {}

    def __call__(self, module, args, output):
        if type(module) is not self.backbone_type or not self.armed:
            return
        key = weights_of(module)
        x = args[0].detach().cpu().numpy()
        if torch.is_grad_enabled():
            self.grad_windows[key] = self.grad_windows.get(key, 0) + len(x)
            return
        seen = self.windows.setdefault(key, Counter())
        for window in x:
            seen[hashlib.sha1(window.tobytes()).hexdigest()] += 1


def _fold(tmp_path, cfg, data, fold, counter=None, uncached=False):
    with pytest.MonkeyPatch.context() as patch:
        real_load_best = training_fit._load_best

        def load_best_then_count(*args, **kwargs):
            real_load_best(*args, **kwargs)
            if counter is not None:
                counter.armed = True  # from here on the checkpoint's weights are fixed

        patch.setattr(training_fit, "_load_best", load_best_then_count)
        if uncached:  # every call encodes its rows again: what each consumer did before one encoding per bar
            def never_valid(self):
                self._states = self._filled = self._weights = None
                return False

            patch.setattr(RowEncoder, "_valid", never_valid)
            patch.setattr(RowEncoder, "put", lambda self, rows, states: None)
        handle = torch.nn.modules.module.register_module_forward_hook(counter) if counter is not None else None
        try:
            return run_fold(cfg, data, fold, root=tmp_path)
        finally:
            if handle is not None:
                handle.remove()


@pytest.fixture(scope="module")
def market(tmp_path_factory):
    root = tmp_path_factory.mktemp("encodings")
    db = root / "fixture.db"
    build_fixture(db, FixtureConfig(symbols=("AAA", "BBB"), rows=2000, alt_features=2, seed=3))
    cfg = load_config(CONFIG, [*TINY, *FOLDS, "walkforward.n_folds=1", "walkforward.seeds=1", "rl.freeze=frozen",
                               "rl.eval_batch_size=97"])  # batches that do not line up with the training pass
    data = load_training_data(cfg, db)
    fold = plan_folds(data.panel.index.get_level_values("timestamp"), cfg.walkforward, cfg.windows)[0]
    return root, cfg, data, fold


@pytest.fixture(scope="module")
def counted(market):
    """The fold as the library runs it, with every backbone call counted."""
    from plus_ultra_ml.models.registry import build_from_config

    root, cfg, data, fold = market
    backbone_type = type(build_from_config(cfg.model, n_features=3, horizons=1, vocabulary=["A"]).backbone)
    counter = BackboneCounter(backbone_type)
    return _fold(root / "cached", cfg, data, fold, counter=counter), counter


def test_each_segment_bar_is_encoded_once_per_checkpoint_with_ppo_frozen(market, counted):
    _, cfg, data, _ = market
    cached, counter = counted
    model = load_checkpoint(cached.checkpoints["supervised"][0])
    windowed = policy_windows(cfg, data, model)
    key = weights_of(model.net.backbone)
    seen = counter.windows[key]
    every = {hashlib.sha1(windowed.features[end - windowed.window + 1 : end + 1].tobytes()).hexdigest()
             for segment in ("train", "val", "test") for end in windowed.ends[segment]}
    assert set(seen) == every  # every train, validation and test window, and nothing else
    assert set(seen.values()) == {1}  # each exactly once
    assert counter.grad_windows.get(key, 0) == 0  # frozen: PPO never ran the backbone with a gradient
    assert "position__ppo" in cached.predictions  # PPO did run


@pytest.mark.slow  # a second fold: ~8 s idle, over a minute on the shared machine
def test_positions_and_metrics_equal_those_of_encoding_every_time(market, counted):
    root, cfg, data, fold = market
    cached = counted[0]
    uncached = _fold(root / "uncached", cfg, data, fold, uncached=True)
    a, b = cached.predictions, uncached.predictions
    assert a.index.equals(b.index) and list(a.columns) == list(b.columns)
    numeric = [c for c in a.columns if pd.api.types.is_float_dtype(a[c])]
    # the same states up to float32 rounding of different batch shapes (the cached ones come from the
    # supervised held-out pass): equal to float tolerance, not bit for bit
    for column in numeric:
        np.testing.assert_allclose(a[column].to_numpy(), b[column].to_numpy(), rtol=1e-4, atol=1e-5,
                                   err_msg=column)
    assert a.filter(like="ppo_kept").equals(b.filter(like="ppo_kept"))
    assert cached.metrics.keys() == uncached.metrics.keys()
    for name, value in cached.metrics.items():
        assert value == pytest.approx(uncached.metrics[name], rel=1e-3, abs=1e-5, nan_ok=True), name
