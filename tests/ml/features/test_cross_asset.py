"""Cross-asset features against pandas group-bys over the same timestamp, on a ragged panel."""

from __future__ import annotations

import numpy as np
import pytest

from plus_ultra_ml.config import FeaturesConfig
from plus_ultra_ml.features.pipeline import compute_features

from .panels import make_panel


def test_market_dispersion_and_rank_match_groupby():
    panel = make_panel(150, symbols=("AAA", "BBB", "CCC", "DDD"), seed=6, stagger=15)
    frame = compute_features(panel, FeaturesConfig(families=("returns", "cross_asset"))).frame
    r1, r5, r20 = frame["logret_1"].astype(float), frame["logret_5"].astype(float), frame["logret_20"].astype(float)
    by_time = lambda x: x.groupby(level="timestamp")  # noqa: E731

    # from float32 features (the pipeline uses float64 internally): compare at float32 precision
    mean = by_time(r1).transform("mean").where(r1.notna())
    np.testing.assert_allclose(frame["mkt_ret_1"], mean, rtol=1e-5, atol=1e-7, equal_nan=True)
    mean20 = by_time(r20).transform("mean").where(r20.notna())
    np.testing.assert_allclose(frame["mkt_ret_20"], mean20, rtol=1e-5, atol=1e-7, equal_nan=True)

    count = by_time(r1).transform("count")
    disp = by_time(r1).transform(lambda x: x.std(ddof=0)).where(r1.notna() & (count >= 2))
    np.testing.assert_allclose(frame["xs_disp_1"], disp, rtol=1e-5, atol=1e-7, equal_nan=True)

    for k, r in ((5, r5), (20, r20)):
        n = by_time(r).transform("count")
        rank = ((by_time(r).rank(method="average") - 1) / (n - 1)).where(r.notna() & (n >= 2))
        np.testing.assert_allclose(frame[f"xs_rank_{k}"], rank, rtol=1e-6, atol=1e-7, equal_nan=True)

    # the first symbol trades alone for 15 bars: no dispersion or rank then, a market return yes
    alone = frame.loc["AAA"].iloc[1:15]
    assert alone["xs_disp_1"].isna().all() and alone["xs_rank_5"].isna().all()
    np.testing.assert_array_equal(alone["mkt_ret_1"], alone["logret_1"])


def test_rank_is_a_percentile_with_ties_averaged():
    from plus_ultra_ml.features.cross_asset import cross_sectional_rank
    from plus_ultra_ml.features.pipeline import panel_groups

    panel = make_panel(2, symbols=("A", "B", "C", "D"), indicators=())
    groups = panel_groups(panel)
    # rows are symbol-major: A0 A1 B0 B1 C0 C1 D0 D1
    x = np.array([1.0, 5.0, 2.0, 5.0, 2.0, np.nan, 3.0, 1.0])
    ranks = cross_sectional_rank(x, groups)
    # bar 0: 1, 2, 2, 3 -> 0, 0.5, 0.5, 1 ; bar 1: 5, 5, nan, 1 -> 0.75, 0.75, nan, 0
    np.testing.assert_allclose(ranks, [0, 0.75, 0.5, 0.75, 0.5, np.nan, 1, 0], equal_nan=True)


def _reference_time_groups(panel):
    """by_time / time_starts / time_codes from the timestamps themselves (np.unique), the definition."""
    ts = panel.index.get_level_values("timestamp").asi8
    distinct, codes = np.unique(ts, return_inverse=True)
    by_time = np.argsort(codes, kind="stable")
    return codes, by_time, np.searchsorted(codes[by_time], np.arange(len(distinct) + 1))


@pytest.mark.parametrize("layout", ["full", "ragged with unused levels", "unsorted levels"])
def test_time_groups_of_a_ragged_universe_match_their_definition(layout):
    from plus_ultra_ml.features.pipeline import panel_groups

    panel = make_panel(60, symbols=tuple(f"S{i:02d}" for i in range(30)), indicators=())
    if layout != "full":  # names that list late and delist early; whole bars nobody trades
        rng = np.random.default_rng(4)
        symbol = panel.index.get_level_values("symbol").codes
        bar = panel.groupby(level="symbol", observed=True).cumcount().to_numpy()
        first, last = rng.integers(0, 20, 30), rng.integers(40, 60, 30)
        keep = (bar >= first[symbol]) & (bar <= last[symbol]) & (bar != 30)
        panel = panel[keep]  # the index keeps every timestamp level, used or not
        assert len(panel.index.levels[1]) > panel.index.get_level_values("timestamp").nunique()
    if layout == "unsorted levels":
        times = panel.index.levels[1]
        panel.index = panel.index.set_levels(times[::-1], level="timestamp", verify_integrity=False)
        panel.index = panel.index.set_codes(len(times) - 1 - panel.index.codes[1], level="timestamp")
        assert not panel.index.levels[1].is_monotonic_increasing
    groups = panel_groups(panel)
    codes, by_time, starts = _reference_time_groups(panel)
    np.testing.assert_array_equal(groups.time_codes, codes)
    np.testing.assert_array_equal(groups.by_time, by_time)
    np.testing.assert_array_equal(groups.time_starts, starts)
