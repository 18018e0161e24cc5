"""The leak canary at the gate: training-data assembly refuses a feature that reads the future."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from plus_ultra_ml.config import FixtureConfig, load_config
from plus_ultra_ml.errors import DataContractError
from plus_ultra_ml.experiments.dataset import load_training_data
from plus_ultra_ml.features.registry import FeatureSpec, default_registry
from plus_ultra_ml.synthetic.fixture import build_fixture

ROOT = Path(__file__).resolve().parents[3]


def _next_log_return(close: np.ndarray) -> np.ndarray:
    out = np.full(close.shape, np.nan)
    out[:-1] = np.log(close[1:] / close[:-1])  # the bar after t: the planted look-ahead
    return out


LEAK = FeatureSpec(name="canary_next_return", family="returns", fn=_next_log_return, inputs=("close",), warmup=0,
                   description="log close[t+1] / close[t] (deliberately a look-ahead)")


@pytest.fixture(scope="module")
def db(tmp_path_factory):
    path = tmp_path_factory.mktemp("canary") / "fixture.db"
    build_fixture(path, FixtureConfig(symbols=("AAA", "BBB", "CCC"), rows=1200, seed=3))
    return path


def test_a_planted_next_bar_column_is_refused_by_name(db):
    cfg = load_config(ROOT / "configs" / "smoke.yaml", ["features.include=[canary_next_return, logret_1]"])
    registry = default_registry().with_specs([LEAK])
    with pytest.raises(DataContractError, match=r"\['canary_next_return'\].*look-ahead.*nothing was trained"):
        load_training_data(cfg, db, registry=registry)


def test_the_same_recipe_without_the_planted_column_assembles(db):
    cfg = load_config(ROOT / "configs" / "smoke.yaml", ["features.include=[logret_1]"])
    data = load_training_data(cfg, db, registry=default_registry().with_specs([LEAK]))
    assert list(data.features.columns) == ["logret_1"]
