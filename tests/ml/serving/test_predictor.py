"""The served signal is the offline prediction for the same bar: same features, scaler and model."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from plus_ultra_ml.data.panel import build_panel
from plus_ultra_ml.serving.featurise import FeatureMismatchError
from plus_ultra_ml.serving.offline import predict_history, window_ends
from plus_ultra_ml.serving.predictor import Predictor, PredictorError

from .conftest import SYMBOLS, iso, make_checkpoint, truncate_db


def offline(predictor, db, after=None):
    panel = build_panel(db, predictor.recipe.data.model_copy(update={"end": None})).panel
    return predict_history(predictor.model, predictor.recipe, panel, after=after)


@pytest.fixture(scope="module")
def predictor(checkpoint, market):
    return Predictor.load(checkpoint, db_path=market)


def test_latest_signal_equals_the_offline_prediction_for_that_bar(predictor, market):
    result = predictor.predict(list(SYMBOLS))
    assert result.source == "database" and not result.unavailable and result.data_version
    history = offline(predictor, market)
    latest = history.latest()
    assert history.fingerprint == predictor.card.feature_fingerprint
    for signal in result.signals:
        row = latest.xs(signal.symbol, level="symbol")
        assert row.index[0] == signal.timestamp  # the newest bar, not an old window
        expected = row[[f"forecast__h{h}" for h in (1, 2)]].to_numpy()[0]
        np.testing.assert_allclose(signal.forecast, expected, rtol=1e-4, atol=1e-9)
        assert signal.position == pytest.approx(row["position__model"].iloc[0], abs=1e-5)
    spread = np.ptp([s.position for s in result.signals])
    assert spread > 1e-4  # the symbols get different signals: the inputs reach the outputs


def test_offline_predictions_equal_the_training_rooms_held_out_predictions(predictor, cfg, training_data, checkpoint):
    from plus_ultra_ml.experiments.fold import model_predictions

    reference = model_predictions(checkpoint, cfg, training_data, "test")  # training/evaluate.predict_segment
    ours = offline(predictor, cfg.data.db_path).frame.reindex(reference.index)
    assert ours["position__model"].notna().all()
    np.testing.assert_allclose(ours["position__model"], reference["position"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(ours["forecast__h2"], reference["forecast_2"], rtol=1e-4, atol=1e-9)
    np.testing.assert_allclose(ours["target__h1"], reference["target_1"], rtol=1e-6, atol=1e-9)


def test_no_look_ahead_a_signal_does_not_change_when_later_bars_arrive(tmp_path, predictor, checkpoint, market):
    history = offline(predictor, market).frame
    past = history.xs("BBB", level="symbol").index[-300]  # a bar 300 bars before the end
    then = truncate_db(market, tmp_path / "then.db", iso(past))
    served = Predictor.load(checkpoint, db_path=then).predict(["BBB"]).signals[0]
    assert served.timestamp == past
    row = history.loc[("BBB", past)]
    assert served.position == pytest.approx(row["position__model"], abs=1e-5)
    np.testing.assert_allclose(served.forecast, row[["forecast__h1", "forecast__h2"]].to_numpy(float), rtol=1e-4)


def test_unknown_symbols_are_reported_not_guessed(predictor):
    result = predictor.predict(["AAA", "NOPE"])
    assert [s.symbol for s in result.signals] == ["AAA"]
    assert "universe" in result.unavailable["NOPE"]


def test_only_supervised_checkpoints_are_served(tmp_path, cfg, training_data, market):
    backbone = make_checkpoint(cfg, training_data, tmp_path / "backbone.pt", kind="pretrain")
    with pytest.raises(PredictorError, match="'pretrain' checkpoint"):
        Predictor.load(backbone, db_path=market)
    policy = tmp_path / "policy.pt"
    torch.save({"format": "plus_ultra.policy", "version": 1}, policy)  # a policy file without its parts
    with pytest.raises(PredictorError, match="without"):
        Predictor.load(policy, db_path=market)


def test_a_ppo_policy_is_served_with_its_own_stateful_positions(policy_checkpoint, predictor, market, tmp_path):
    served = Predictor.load(policy_checkpoint, db_path=market)
    assert served.card.model_kind == "ppo" and served.card.kind == "ppo_policy" and served.card.replay_bars == 16
    result = served.predict(list(SYMBOLS))
    assert not result.unavailable and len(result.signals) == len(SYMBOLS)
    panel = build_panel(market, served.recipe.data.model_copy(update={"end": None})).panel
    history = predict_history(served.model, served.recipe, panel, policy=served.policy,
                              replay_bars=served.card.replay_bars)
    latest = history.latest()
    head = {s.symbol: s for s in predictor.predict(list(SYMBOLS)).signals}
    for signal in result.signals:
        row = latest.xs(signal.symbol, level="symbol")
        assert row.index[0] == signal.timestamp
        # the service's replay from its bounded read equals offline predict's from the whole history
        assert signal.position == pytest.approx(row["position__model"].iloc[0], abs=1e-5)
        # the forecast is the network's (frozen PPO: the parent's); the position is the policy's, not the head's
        np.testing.assert_allclose(signal.forecast, head[signal.symbol].forecast, rtol=1e-5, atol=1e-9)
    assert max(abs(s.position - head[s.symbol].position) for s in result.signals) > 1e-3
    # causal: bars appended later do not change a served position
    cut = truncate_db(market, tmp_path / "early.db", iso(result.signals[0].timestamp - pd.Timedelta("2h")))
    early = Predictor.load(policy_checkpoint, db_path=cut).predict(["AAA"]).signals[0]
    assert early.position == pytest.approx(
        history.frame.loc[("AAA", early.timestamp), "position__model"], abs=1e-5)


def test_features_other_than_the_trained_ones_are_refused(tmp_path, cfg, training_data, market):
    from dataclasses import replace

    stale = replace(training_data, feature_fingerprint="0" * 64)  # as if the feature code had changed since
    path = make_checkpoint(cfg, stale, tmp_path / "stale.pt")
    with pytest.raises(FeatureMismatchError, match="not the ones the checkpoint was trained on"):
        Predictor.load(path, db_path=market)


def test_a_file_changed_after_promotion_is_refused(predictor, checkpoint, market):
    with pytest.raises(PredictorError, match="changed after promotion"):
        Predictor.load(checkpoint, db_path=market, expected_fingerprint="f" * 64)


def test_window_ends_need_complete_single_symbol_windows():
    finite = np.array([1, 1, 1, 0, 1, 1, 1, 1], bool)
    codes = np.array([0, 0, 0, 0, 0, 1, 1, 1])
    assert window_ends(finite, codes, 3).tolist() == [2, 7]


def test_predictions_after_the_cutoff_only(predictor, market):
    history = offline(predictor, market, after=pd.Timestamp(predictor.card.data_cutoff))
    assert (history.frame.index.get_level_values("timestamp") > history.cutoff).all()
    assert {"next_return", "position__model", "position__buy_and_hold", "forecast__h1", "target__h2",
            "regime__volatility"} <= set(history.frame.columns)
