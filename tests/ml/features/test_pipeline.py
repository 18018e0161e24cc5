"""compute_features: selection, dependency resolution, skip reasons, strict mode, panel layout
errors, ground-truth exclusion, regime codes, fingerprint and the pinned config."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from plus_ultra_ml.config import FeaturesConfig
from plus_ultra_ml.errors import DataContractError
from plus_ultra_ml.features.pipeline import (
    compute_features,
    read_feature_config,
    read_feature_metadata,
    save_feature_table,
)
from plus_ultra_ml.features.registry import FeatureInputError, FeatureRegistry, FeatureSpec, default_registry

from .panels import make_labels, make_panel

PPY = 35064.0


@pytest.fixture(scope="module")
def panel():
    return make_panel(120, seed=4)


def test_default_set_is_every_default_family_and_float32(panel):
    result = compute_features(panel, FeaturesConfig(periods_per_year=PPY), make_labels(panel))
    families = {spec.family for spec in result.specs}
    assert families == {"returns", "momentum", "volatility", "volume", "regime", "spectral", "cross_asset", "alt"}
    assert not any(name.startswith("a158_") for name in result.frame.columns)
    assert result.frame.index.equals(panel.index)
    assert set(result.frame.dtypes) == {np.dtype(np.float32)}
    assert list(result.warmup) == list(result.frame.columns)


def test_alpha158_is_opt_in_with_158_columns(panel):
    result = compute_features(panel, FeaturesConfig(families=("alpha158",), alpha158=True))
    assert len(result.frame.columns) == 158
    no_vwap = compute_features(panel.drop(columns="vwap"), FeaturesConfig(families=("alpha158",)))
    assert len(no_vwap.frame.columns) == 157 and "input column 'vwap'" in no_vwap.skipped["a158_VWAP0"]


def test_ground_truth_never_passes_through(panel):
    result = compute_features(panel, FeaturesConfig(families=("alt",)))
    assert list(result.frame.columns) == ["alt_sentiment"]
    assert "ground truth" in result.skipped["alt_truth_oracle"]
    np.testing.assert_array_equal(result.frame["alt_sentiment"], panel["ind__sentiment"].astype(np.float32))
    with pytest.raises(FeatureInputError, match="unknown feature 'alt_truth_oracle'"):
        compute_features(panel, FeaturesConfig(include=("alt_truth_oracle",)))
    assert not any("truth" in column for column in compute_features(panel, FeaturesConfig(alpha158=True)).frame)


def test_dependencies_are_computed_but_only_requested_columns_returned(panel):
    result = compute_features(panel, FeaturesConfig(include=("macd_hist", "xs_rank_20")))
    assert list(result.frame.columns) == ["macd_hist", "xs_rank_20"]
    full = compute_features(panel, FeaturesConfig(include=("macd", "macd_signal", "macd_hist")))
    np.testing.assert_array_equal(result.frame["macd_hist"], full.frame["macd_hist"])
    excluded = compute_features(panel, FeaturesConfig(families=("momentum",), exclude=("macd",)))
    assert "macd" not in excluded.frame and "macd_hist" in excluded.frame


def test_missing_inputs_are_skipped_with_the_reason_or_raise_in_strict_mode(panel):
    no_vwap = panel.drop(columns="vwap")
    result = compute_features(no_vwap, FeaturesConfig(families=("volume", "regime")))
    assert result.skipped["vwap_dist"] == "input column 'vwap' is not in the panel"
    assert "regime labels" in result.skipped["regime_trend"]
    assert "vwap_dist_20" in result.frame
    with pytest.raises(FeatureInputError, match="vwap_dist: input column 'vwap'"):
        compute_features(no_vwap, FeaturesConfig(families=("volume",), strict=True))


def test_skip_reasons_follow_dependency_chains():
    def fn(x):
        return x.copy()

    registry = FeatureRegistry([
        FeatureSpec(name="a", family="returns", fn=fn, inputs=("missing_col",), warmup=0, description="a"),
        FeatureSpec(name="b", family="returns", fn=fn, inputs=("a",), warmup=0, description="b"),
    ])
    resolution = registry.resolve(["b"], ["close"])
    assert resolution.outputs == () and "missing_col" in resolution.skipped["b"]
    with pytest.raises(ValueError, match="cycle"):
        FeatureRegistry([
            FeatureSpec(name="a", family="returns", fn=fn, inputs=("b",), warmup=0, description="a"),
            FeatureSpec(name="b", family="returns", fn=fn, inputs=("a",), warmup=0, description="b"),
        ])


def test_unknown_names_are_errors_with_a_suggestion(panel):
    with pytest.raises(FeatureInputError, match="did you mean 'rsi_14'"):
        compute_features(panel, FeaturesConfig(include=("rsi14",)))
    with pytest.raises(FeatureInputError, match="unknown family"):
        compute_features(panel, FeaturesConfig(families=("momentom",)))
    with pytest.raises(FeatureInputError, match="features.exclude"):
        compute_features(panel, FeaturesConfig(exclude=("nope",)))


def test_cross_asset_needs_two_symbols():
    single = make_panel(80, symbols=("ONLY",))
    result = compute_features(single, FeaturesConfig(families=("returns", "cross_asset")))
    assert not any(c.startswith(("mkt_", "xs_")) for c in result.frame)
    assert "at least 2 symbols" in result.skipped["xs_rank_5"]


def test_symbols_never_mix(panel):
    """A symbol's features are the same computed alone or inside a panel."""
    cfg = FeaturesConfig(families=("returns", "momentum", "volatility", "volume", "spectral"), periods_per_year=PPY)
    together = compute_features(panel, cfg).frame
    alone = compute_features(panel.loc[["BBB"]].copy(), cfg).frame
    np.testing.assert_array_equal(together.loc[alone.index].to_numpy(), alone.to_numpy())


def test_bad_panel_layouts_are_explained(panel):
    with pytest.raises(DataContractError, match="indexed by"):
        compute_features(panel.reset_index(level="symbol"))
    shuffled = panel.iloc[np.r_[1, 0, 2 : len(panel)]]
    with pytest.raises(DataContractError, match="out of order"):
        compute_features(shuffled)
    interleaved = pd.concat([panel.loc[["AAA"]].iloc[:5], panel.loc[["BBB"]], panel.loc[["AAA"]].iloc[5:]])
    with pytest.raises(DataContractError, match="not contiguous"):
        compute_features(interleaved)
    duplicated = pd.concat([panel.iloc[:3], panel.iloc[2:]])
    with pytest.raises(DataContractError, match="duplicated"):
        compute_features(duplicated)


def test_regime_codes_use_the_saved_vocabulary(panel):
    labels = make_labels(panel, warmup=10)
    result = compute_features(panel, FeaturesConfig(families=("regime",)), labels)
    assert result.vocabulary["trend"] == ("down", "flat", "up")
    expected = labels["trend"].map({"down": 0.0, "flat": 1.0, "up": 2.0}).astype(float).to_numpy()
    np.testing.assert_array_equal(result.frame["regime_trend"].to_numpy(), expected.astype(np.float32))
    # a different saved vocabulary gives different codes; serving with result.config reproduces them
    swapped = FeaturesConfig(families=("regime",), regime_vocabulary={"trend": ("up", "flat", "down")})
    other = compute_features(panel, swapped, labels)
    assert np.nanmax(np.abs(other.frame["regime_trend"] + result.frame["regime_trend"] - 2)) == 0
    assert other.fingerprint != result.fingerprint
    bad = labels.copy()
    bad["trend"] = bad["trend"].cat.add_categories(["sideways"])
    bad.iloc[50, bad.columns.get_loc("trend")] = "sideways"
    with pytest.raises(DataContractError, match="'sideways'"):
        compute_features(panel, FeaturesConfig(families=("regime",)), bad)
    with pytest.raises(DataContractError, match="indexed differently"):
        compute_features(panel, FeaturesConfig(families=("regime",)), labels.iloc[:-1])


def test_fingerprint_tracks_names_params_and_annualisation(panel):
    a = compute_features(panel, FeaturesConfig(include=("rvol_20",), periods_per_year=252.0))
    b = compute_features(panel, FeaturesConfig(include=("rvol_20",), periods_per_year=252.0))
    c = compute_features(panel, FeaturesConfig(include=("rvol_20",), periods_per_year=365.0))
    d = compute_features(panel, FeaturesConfig(include=("rvol_60",), periods_per_year=252.0))
    assert a.fingerprint == b.fingerprint
    assert len({a.fingerprint, c.fingerprint, d.fingerprint}) == 3
    ratio = (c.frame["rvol_20"] / a.frame["rvol_20"]).dropna()
    np.testing.assert_allclose(ratio, np.sqrt(365 / 252), rtol=1e-6)


def test_annualisation_is_inferred_from_timestamps_and_pinned(panel):
    from plus_ultra_ml.data.calendar import periods_per_year

    result = compute_features(panel, FeaturesConfig(families=("volatility",)))
    assert result.periods_per_year == pytest.approx(periods_per_year(panel.index.get_level_values("timestamp")))
    assert result.config.periods_per_year == result.periods_per_year
    assert result.config.include == tuple(result.frame.columns)
    hourly = make_panel(120, seed=4, freq="1h")
    assert compute_features(hourly, FeaturesConfig(families=("volatility",))).periods_per_year == pytest.approx(
        result.periods_per_year / 4, rel=1e-3
    )
    served = compute_features(panel.iloc[-80:], result.config)  # a short serving window: same definitions
    assert served.fingerprint == result.fingerprint


def test_saved_table_round_trips_with_metadata(panel, tmp_path):
    result = compute_features(panel, FeaturesConfig(periods_per_year=PPY), make_labels(panel))
    path = save_feature_table(result, tmp_path / "features.parquet")
    back = pd.read_parquet(path)
    pd.testing.assert_frame_equal(back, result.frame, check_categorical=False)
    meta = read_feature_metadata(path)
    assert meta["fingerprint"] == result.fingerprint
    assert [f["name"] for f in meta["features"]] == list(result.frame.columns)
    assert meta["vocabulary"]["trend"] == ["down", "flat", "up"]
    assert read_feature_config(path) == result.config  # serving rebuilds the exact definitions from the file
    again = compute_features(panel, read_feature_config(path), make_labels(panel))
    assert again.fingerprint == result.fingerprint
    import duckdb

    count = duckdb.sql(f"select count(*), count(distinct symbol) from '{path}'").fetchall()[0]
    assert count == (len(panel), 3)


def test_progress_is_reported(panel):
    seen = []
    compute_features(panel, FeaturesConfig(families=("momentum",)), on_progress=lambda d, t, n: seen.append((d, t, n)))
    assert seen[-1][0] == seen[-1][1] == len(seen) and {n for _, _, n in seen} >= {"macd", "rsi_14"}


def test_registry_lists_every_family():
    families = {spec.family for spec in default_registry()}
    assert families == {"returns", "momentum", "volatility", "volume", "regime", "spectral", "cross_asset", "alpha158"}


def _reciprocal(close):
    return 1.0 / (close - close)  # +inf everywhere: a degenerate ratio


def test_infinite_values_become_nan_with_a_warning(panel, caplog):
    spec = FeatureSpec(name="inv", family="returns", fn=_reciprocal, inputs=("close",), warmup=0, description="1/0")
    with caplog.at_level("WARNING"):
        result = compute_features(panel, FeaturesConfig(include=("inv",)), registry=default_registry().with_specs([spec]))
    assert result.frame["inv"].isna().all()
    assert "inv: 360 infinite values set to NaN" in caplog.text
