"""No feature may look ahead: cutting off the future must not change any past value.

Every registered feature (all default families, Alpha158, cross-asset, regime codes, alt data) is
computed on a small ragged panel, then on the same panel truncated at seeded cut bars; every
value at or before the cut must be bit-identical (NaN-equal). A planted leaky feature proves the
comparison can fail.
"""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from plus_ultra_ml.config import FeaturesConfig
from plus_ultra_ml.features.pipeline import compute_features
from plus_ultra_ml.features.registry import FeatureSpec, default_registry

from .panels import make_labels, make_panel

ALL = FeaturesConfig(alpha158=True)


@pytest.fixture(scope="module")
def panel() -> pd.DataFrame:
    # 3 symbols, 240 bars, starting 0 / 25 / 50 bars apart: ragged starts exercise cross-sections.
    return make_panel(240, seed=3, stagger=25)


@pytest.fixture(scope="module")
def labels(panel) -> pd.DataFrame:
    return make_labels(panel, warmup=40)


@pytest.fixture(scope="module")
def full(panel, labels):
    return compute_features(panel, ALL, labels)


def _truncate(frame: pd.DataFrame, cut: pd.Timestamp) -> pd.DataFrame:
    return frame[frame.index.get_level_values("timestamp") <= cut]


def _changed_columns(full_frame: pd.DataFrame, cut_frame: pd.DataFrame) -> list[str]:
    past = full_frame.loc[cut_frame.index]
    return [
        column
        for column in cut_frame.columns
        if not np.array_equal(past[column].to_numpy(), cut_frame[column].to_numpy(), equal_nan=True)
    ]


def test_every_registered_feature_is_computed(full):
    registered = set(default_registry().names)
    assert registered - set(full.frame.columns) == set(), "every feature must be in the leak test"
    assert "alt_sentiment" in full.frame.columns
    assert set(full.skipped) == {"alt_truth_oracle"}


def test_truncating_the_future_changes_no_past_value(panel, labels, full):
    times = panel.index.get_level_values("timestamp").unique().sort_values()
    rng = np.random.default_rng(11)
    cuts = [times[5], times[60], *times[rng.choice(np.arange(61, len(times) - 1), size=4, replace=False)]]
    for cut in cuts:
        # full.config pins what was inferred from the whole panel (periods per year, vocabulary),
        # exactly as serving recomputes features.
        cut_panel = _truncate(panel, cut)
        result = compute_features(cut_panel, full.config, _truncate(labels, cut))
        missing = [c for c in full.frame.columns if c not in result.frame.columns]
        if cut_panel.index.get_level_values("symbol").nunique() >= 2:
            assert missing == []
        else:  # one symbol so far: no cross-section exists yet, and the result says so
            assert missing == [s.name for s in full.specs if s.family == "cross_asset"]
            assert all("at least 2 symbols" in result.skipped[name] for name in missing)
        assert _changed_columns(full.frame, result.frame) == [], f"cut at {cut}"


def test_business_day_grid_truncation_with_nothing_pinned():
    """Annualisation comes from the trading calendar, not the panel's span: on a business-day grid
    (weekend steps, so the old bars-over-span count moved as bars were appended) with nothing pinned,
    appending 200 bars changes no past cell. Today's code changed 4,146 cells of rvol_20, rvol_60,
    parkinson_20 and garman_klass_20 at the 400-bar cut."""
    panel = make_panel(600, seed=3, stagger=25, freq="B")
    labels = make_labels(panel, warmup=40)
    cfg = FeaturesConfig()  # periods_per_year not pinned: resolved from the (inferred) calendar each time
    full = compute_features(panel, cfg, labels)
    times = panel.index.get_level_values("timestamp").unique().sort_values()
    for cut in (times[30], times[150], times[399], times[-2]):
        result = compute_features(_truncate(panel, cut), cfg, _truncate(labels, cut))
        assert result.periods_per_year == full.periods_per_year
        assert _changed_columns(full.frame, result.frame) == [], f"cut at {cut}"


SYMBOL_FAMILIES = ("returns", "momentum", "volatility", "volume", "spectral", "alt", "alpha158")
RAGGED_CFG = FeaturesConfig(families=SYMBOL_FAMILIES, periods_per_year=35064.0)


@lru_cache(maxsize=1)
def _ragged() -> tuple[pd.DataFrame, pd.DataFrame]:
    panel = make_panel(240, seed=5)
    return panel, compute_features(panel, RAGGED_CFG).frame


@settings(max_examples=8, deadline=None, print_blob=False)
@given(bars=st.lists(st.integers(1, 240), min_size=3, max_size=3))
def test_ragged_per_symbol_cuts_leave_symbol_features_unchanged(bars):
    # Each symbol cut at its own bar: per-symbol features of the kept rows must not move.
    panel, full = _ragged()
    kept = [rows.iloc[:n] for (_, rows), n in zip(panel.groupby(level="symbol", observed=True), bars)]
    result = compute_features(pd.concat(kept), RAGGED_CFG)
    assert _changed_columns(full, result.frame) == []


def test_without_pinning_only_annualised_features_depend_on_the_span(panel, labels, full):
    """Inferring periods per year from a shorter span rescales annualised volatilities, nothing else;
    this is why result.config pins it."""
    cut = panel.index.get_level_values("timestamp").unique().sort_values()[100]
    result = compute_features(_truncate(panel, cut), ALL, _truncate(labels, cut))
    annualised = {spec.name for spec in default_registry() if "periods_per_year" in spec.runtime}
    assert set(_changed_columns(full.frame, result.frame)) <= annualised


def _peeking(close: np.ndarray) -> np.ndarray:
    out = np.full(close.shape, np.nan)
    out[:-1] = close[1:]  # next bar's close: a look-ahead
    return out


def test_the_comparison_catches_a_leaky_feature(panel):
    leaky = FeatureSpec(name="peek", family="returns", fn=_peeking, inputs=("close",), warmup=0,
                        description="close[t+1] (deliberately wrong)")
    registry = default_registry().with_specs([leaky])
    cfg = FeaturesConfig(include=("peek", "logret_1"))
    full = compute_features(panel, cfg, registry=registry)
    cut = panel.index.get_level_values("timestamp").unique().sort_values()[120]
    result = compute_features(_truncate(panel, cut), cfg, registry=registry)
    assert _changed_columns(full.frame, result.frame) == ["peek"]


FORBIDDEN = [r"\.shift\(\s*-", r"bfill", r"backfill", r"method\s*=\s*['\"]b", r"np\.roll\("]


def test_feature_sources_hold_no_backfill_or_negative_shift():
    source_dir = Path(__file__).resolve().parents[3] / "plus_ultra_ml" / "features"
    offenders = []
    for path in sorted(source_dir.glob("*.py")):
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            code = line.split("#", 1)[0]
            if any(re.search(pattern, code) for pattern in FORBIDDEN):
                offenders.append(f"{path.name}:{number}: {line.strip()}")
    assert offenders == []
