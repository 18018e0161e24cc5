"""The feature table's blocking causality spot check on ragged panels (names that list late)."""

from __future__ import annotations

from plus_ultra_ml.config import ExperimentConfig, FeaturesConfig
from plus_ultra_ml.data.regimes import label_regimes
import plus_ultra_ml.features.quality as quality
from plus_ultra_ml.features.pipeline import compute_features
from plus_ultra_ml.features.quality import causality_spot_check

from .panels import make_panel


def test_spot_check_cuts_where_every_sampled_name_is_listed():
    # BBB lists at bar 180 of 300: a cut before it would leave one symbol, and the cross-sectional
    # features (they need two) would vanish from the truncated table instead of being compared
    panel = make_panel(300, symbols=("AAA", "BBB"), seed=3, stagger=180)
    cfg = ExperimentConfig(features=FeaturesConfig(families=("returns", "cross_asset")))
    result = compute_features(panel, cfg.features, label_regimes(panel, cfg.regimes))
    assert "mkt_ret_1" in result.frame
    assert causality_spot_check(panel, result, cfg, n_cuts=4) == []


def test_spot_check_still_catches_a_feature_that_reads_the_future(monkeypatch):
    panel = make_panel(300, symbols=("AAA", "BBB"), seed=3, stagger=180)
    cfg = ExperimentConfig(features=FeaturesConfig(families=("returns", "cross_asset")))
    result = compute_features(panel, cfg.features, label_regimes(panel, cfg.regimes))
    honest = quality.compute_features

    def reads_the_future(p, config, labels, **options):  # every mkt_ret_1 moves with the panel's last close
        out = honest(p, config, labels, **options)
        out.frame["mkt_ret_1"] = out.frame["mkt_ret_1"] + float(p["close"].iloc[-1])
        return out

    monkeypatch.setattr(quality, "compute_features", reads_the_future)
    mismatches = causality_spot_check(panel, result, cfg, n_cuts=4)
    assert {m.column for m in mismatches} == {"mkt_ret_1"}
