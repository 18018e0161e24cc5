"""Null models score about zero out of sample; a trained model on the same fold does not.

The seed project's untrained model reported a Sharpe of 1.3 because its "returns" were prices. Here
three recipes go through the real walk-forward line (`experiments.fold.run_fold`: training on the
fold's own segments, predictions on its test window, the report's metrics), one fold, six seeds:

* untrained: learning rate 1e-12, so the weights stay at their random initialisation;
* shuffled: trained on targets whose rows were permuted (features and targets no longer belong together);
* trained: the same tiny recipe on the real targets, the control that shows the test has power.

A single random network is a random function of informative features, so one seed can score by
chance; the null is "zero on average over initialisations": the mean over seeds of the per-seed IC
and of the per-seed gross Sharpe must be within 2.5 standard errors (across seeds) of zero. Costs
are zero so that a null model is not pushed below zero by trading costs.

What these tests can and cannot catch. The mean test cannot see a feature look-ahead: a random
network fed the next bar's return trades it with a random sign per seed (per-seed gross Sharpe 86,
-31, 27, -81, 65, -13 were seen, mean about zero). Two things catch that: the causality gate
(`load_training_data` and the `feature_table` check recompute the features on truncated panels and
refuse a column whose past moves; tests/ml/experiments/test_causality_gate.py), and here a bound on
the spread of the per-seed Sharpe: with no information a path's annualised Sharpe has a standard
error of about sqrt(bars per year / scored bars), so the seeds' standard deviation must stay below
three of those. The canary test forces the look-ahead past the gate and shows that bound fails.
Neither catches a leak in the targets' alignment or in the scoring itself (the walk-forward's own
tests do), nor a leak too weak to move a random network's Sharpe past the bound.
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

import plus_ultra_ml.training.fit as fit_module
from plus_ultra_ml.config import CostConfig, FixtureConfig, load_config
from plus_ultra_ml.data.windows import Targets, build_targets
from plus_ultra_ml.evaluation import metrics
from plus_ultra_ml.evaluation.predictions import FORECAST, TARGET
from plus_ultra_ml.evaluation.report import build_report
from plus_ultra_ml.evaluation.walkforward import plan_folds
from plus_ultra_ml.experiments.dataset import load_training_data
from plus_ultra_ml.experiments.fold import run_fold
from plus_ultra_ml.synthetic.fixture import build_fixture
from tests.ml.training.test_cli import ROOT

SEEDS = 6
RECIPE = [
    "windows.window=16", "model.backbone={d_model: 16, n_layers: 1, n_heads: 2, d_state: 4, ffn_mult: 1}",
    "train.limit_train_batches=100", "train.epochs=1", "tracking.mode=disabled", "walkforward.n_folds=1",
    "walkforward.test_bars=2500", "walkforward.val_bars=400", "walkforward.min_train_bars=1500",
    "walkforward.ppo=false", f"walkforward.seeds={SEEDS}",
    # 100 steps of a model this small learn the planted signal at 3e-3 (the control below); the
    # smoke preset's 1e-3 is for its 600 steps of a larger model
    "train.lr=3e-3",
]
GROSS = CostConfig(transaction_bps=0, slippage_bps=0, holding_bps=0)


@pytest.fixture(scope="module")
def setting(tmp_path_factory):
    db = tmp_path_factory.mktemp("honesty") / "fixture.db"
    build_fixture(db, FixtureConfig(symbols=("AAA", "BBB", "CCC", "DDD"), rows=6000, alt_features=2, seed=11))
    cfg = load_config(ROOT / "configs" / "smoke.yaml", RECIPE)
    data = load_training_data(cfg, db)
    (fold,) = plan_folds(data.panel.index.get_level_values("timestamp"), cfg.walkforward, cfg.windows)
    return cfg, data, fold


def shuffling_targets():
    """A stand-in for `build_targets` whose forward returns are permuted across rows, afresh on each call.

    Each seed's training calls it once, so the seeds are independent draws of the null (one shared
    permutation would be one fixed dataset that every seed learns the same spurious pattern from).
    Volatility, a causal input, is kept.
    """
    calls = iter(range(1_000))

    def shuffled_targets(panel: pd.DataFrame, horizon: int) -> Targets:
        return permuted(build_targets(panel, horizon), next(calls))

    return shuffled_targets


def permuted(real: Targets, seed: int) -> Targets:
    order = np.random.default_rng(seed).permutation(len(real.forward))
    return Targets(forward=pd.DataFrame(real.forward.to_numpy()[order], index=real.forward.index,
                                        columns=real.forward.columns),
                   next_return=pd.Series(real.next_return.to_numpy()[order], index=real.next_return.index,
                                         name="next_return"),
                   volatility=real.volatility)


def per_seed_scores(predictions: pd.DataFrame) -> pd.DataFrame:
    """For each seed: cross-sectional IC of the 1-bar forecast and gross annualised Sharpe of the model's positions."""
    rows = {}
    for seed, part in predictions.groupby("seed"):
        ic = metrics.ic_by_horizon(part[[FORECAST + "h1"]].set_axis(["h1"], axis=1),
                                   part[[TARGET + "h1"]].set_axis(["h1"], axis=1), min_assets=2).loc["h1", "ic"]
        report = build_report(part, GROSS)
        rows[seed] = {"ic": ic, "sharpe": report.overall.loc["model", "sharpe"]}
    return pd.DataFrame.from_dict(rows, orient="index")


def t_statistic(values: pd.Series) -> float:
    return float(values.mean() / (values.std(ddof=1) / math.sqrt(len(values))))


def run(setting, tmp_path, overrides=(), monkeypatch=None, data=None):
    cfg, setting_data, fold = setting
    if overrides:
        cfg = load_config(ROOT / "configs" / "smoke.yaml", [*RECIPE, *overrides])
    result = run_fold(cfg, data or setting_data, fold, root=tmp_path)
    first, last = fold.split.bounds["test"]
    times = result.predictions.index.get_level_values("timestamp")
    assert times.min() >= first and times.max() <= last and times.min() > fold.cutoff  # out of sample only
    scores = per_seed_scores(result.predictions)
    # the standard error of a no-skill path's annualised Sharpe on these bars
    scores.attrs["sharpe_noise"] = math.sqrt(result.predictions.attrs["periods_per_year"] / times.nunique())
    return scores


def spread_is_noise(scores: pd.DataFrame) -> bool:
    """The seeds' per-seed Sharpe spread is what chance gives a model without information (< 3 standard errors)."""
    return bool(scores["sharpe"].std(ddof=1) < 3 * scores.attrs["sharpe_noise"])


def test_untrained_model_scores_about_zero(setting, tmp_path):
    scores = run(setting, tmp_path, ["train.lr=1e-12"])
    assert len(scores) == SEEDS
    assert abs(t_statistic(scores["ic"])) < 2.5, scores
    assert abs(t_statistic(scores["sharpe"])) < 2.5, scores
    assert spread_is_noise(scores), (scores, scores.attrs)


def test_model_trained_on_shuffled_targets_scores_about_zero(setting, tmp_path, monkeypatch):
    monkeypatch.setattr(fit_module, "build_targets", shuffling_targets())  # training only; scoring uses the real ones
    scores = run(setting, tmp_path)
    assert abs(t_statistic(scores["ic"])) < 2.5, scores
    assert abs(t_statistic(scores["sharpe"])) < 2.5, scores
    assert spread_is_noise(scores), (scores, scores.attrs)


def test_a_look_ahead_forced_past_the_gate_is_flagged_by_the_spread(setting, tmp_path):
    """The canary: one extra column holding the next bar's log return (what the causality gate refuses),
    put into the training data by hand; the untrained recipe's mean stays near zero, its spread does not."""
    _, data, _ = setting
    leak = np.log1p(build_targets(data.panel, 1).next_return).reindex(data.features.index).astype(np.float32)
    leaky = replace(data, features=data.features.assign(canary_next_return=leak.to_numpy()))
    scores = run(setting, tmp_path, ["train.lr=1e-12"], data=leaky)
    assert not spread_is_noise(scores), (scores, scores.attrs)


def test_the_same_recipe_on_real_targets_is_detected(setting, tmp_path):
    """The control: the statistic above does reject zero for a model that learned the planted signal."""
    scores = run(setting, tmp_path)
    assert t_statistic(scores["ic"]) > 2.5, scores
    assert scores["ic"].mean() > 0.02, scores
