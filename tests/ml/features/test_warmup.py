"""Every feature's declared warm-up is the truth: NaN (never 0) for exactly `warmup` bars of each
symbol's history, then finite values on a clean market."""

from __future__ import annotations

import numpy as np
import pytest

from plus_ultra_ml.config import FeaturesConfig
from plus_ultra_ml.features.pipeline import compute_features
from plus_ultra_ml.features.registry import LABEL_PREFIX

from .panels import make_labels, make_panel


@pytest.fixture(scope="module", params=[0, 20], ids=["aligned", "staggered"])
def result(request):
    """Symbols starting together, or 20 bars apart (each keeps its own warm-up)."""
    panel = make_panel(200, seed=2, stagger=request.param)
    return compute_features(panel, FeaturesConfig(alpha158=True), make_labels(panel, warmup=30)), request.param > 0


def _own_history(spec, staggered: bool) -> bool:
    """Features whose NaNs come from their source, not a look-back: labels, passed-through data, and
    cross-sections while fewer than two symbols trade (checked in test_cross_asset.py)."""
    if spec.scope == "panel" and staggered:
        return True
    return spec.family == "alt" or any(name.startswith(LABEL_PREFIX) for name in spec.inputs)


def test_declared_warmup_is_exact_for_every_feature(result):
    result, staggered = result
    wrong = {}
    for spec in result.specs:
        if _own_history(spec, staggered):
            continue
        for symbol, column in result.frame[spec.name].groupby(level="symbol", observed=True):
            values = column.to_numpy()
            defined = np.flatnonzero(~np.isnan(values))
            first = int(defined[0]) if defined.size else None
            if first != spec.warmup:
                wrong[(spec.name, symbol)] = (spec.warmup, first)
    assert wrong == {}


def test_values_after_warmup_are_finite_on_a_clean_market(result):
    result, staggered = result
    not_finite = {}
    for spec in result.specs:
        if _own_history(spec, staggered):
            continue
        for symbol, column in result.frame[spec.name].groupby(level="symbol", observed=True):
            tail = column.to_numpy()[spec.warmup :]
            if not np.isfinite(tail).all():
                not_finite[(spec.name, symbol)] = int((~np.isfinite(tail)).sum())
    assert not_finite == {}


def test_warmup_is_nan_never_zero(result):
    result, _ = result
    for spec in result.specs:
        if spec.warmup == 0:
            continue
        for _, column in result.frame[spec.name].groupby(level="symbol", observed=True):
            assert np.isnan(column.to_numpy()[: spec.warmup]).all(), spec.name


def test_label_codes_follow_the_labels(result):
    result, _ = result
    assert result.warmup["regime_trend"] == 30  # the labels' own warm-up, measured
    codes = result.frame["regime_trend"]
    first = codes.groupby(level="symbol", observed=True).apply(lambda c: int(np.flatnonzero(~np.isnan(c.to_numpy()))[0]))
    assert (first == 30).all()
