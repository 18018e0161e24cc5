"""Per-fold files: written as each fold finishes, reused only by a matching run, never rewritten.

`run_fold` is replaced by a cheap stand-in that scores a fixed rule on the fold's test window, so
these tests count exactly which folds a rerun recomputes without training anything.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from plus_ultra_ml.config import ExperimentConfig
from plus_ultra_ml.data.training_data import TrainingData
from plus_ultra_ml.data.windows import build_targets
from plus_ultra_ml.errors import PlusUltraError
from plus_ultra_ml.evaluation.walkforward import plan_folds
from plus_ultra_ml.experiments import fold as fold_module
from plus_ultra_ml.experiments.fold import FoldResult, run_walkforward
from plus_ultra_ml.experiments.fold_files import (MANIFEST, PARTIAL, PREDICTIONS, FoldMismatchError, FoldStore,
                                                  last_bar_read)

CFG = ExperimentConfig.model_validate({
    "windows": {"window": 8, "horizon": 2},
    "walkforward": {"n_folds": 3, "test_bars": 100, "val_bars": 60, "min_train_bars": 200},
})


def make_data(bars: int = 800, seed: int = 0, bump: int | None = None) -> TrainingData:
    """Two symbols of a random walk, three finite features; `bump` multiplies one close (a changed bar)."""
    rng = np.random.default_rng(seed)
    times = pd.date_range("2024-01-01", periods=bars, freq="1h", tz="UTC")
    index = pd.MultiIndex.from_product([["AAA", "BBB"], times], names=["symbol", "timestamp"])
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, len(index))))
    if bump is not None:
        close[bump] *= 1.01
    panel = pd.DataFrame({"open": close, "high": close, "low": close, "close": close,
                          "volume": 1.0}, index=index)
    features = pd.DataFrame(rng.normal(size=(len(index), 3)), index=index, columns=["f0", "f1", "f2"])
    return TrainingData(features, panel, "features-v1")


def append_bars(data: TrainingData, bars: int) -> TrainingData:
    """`data` with `bars` later bars per symbol (flat prices, zero features): the past is untouched."""
    last = data.panel.index.get_level_values("timestamp").max()
    times = pd.date_range(last + pd.Timedelta("1h"), periods=bars, freq="1h", tz="UTC")
    index = pd.MultiIndex.from_product([["AAA", "BBB"], times], names=["symbol", "timestamp"])
    panel = pd.DataFrame({"open": 100.0, "high": 100.0, "low": 100.0, "close": 100.0, "volume": 1.0}, index=index)
    features = pd.DataFrame(0.0, index=index, columns=data.features.columns)
    return TrainingData(pd.concat([data.features, features]).sort_index(), pd.concat([data.panel, panel]).sort_index(),
                        data.feature_fingerprint)


class FakeRunFold:
    """Stands in for `run_fold`: a momentum-sign position on the fold's test bars; raises on `fail`."""

    def __init__(self, fail: str | None = None):
        self.calls: list[str] = []
        self.fail = fail

    def __call__(self, cfg, data, fold, *, root, regimes=None, run_ids=None, warm_start=None, progress=None):
        self.calls.append(fold.name)
        if fold.name == self.fail:
            raise RuntimeError(f"PPO step failed in {fold.name}")
        targets = build_targets(data.panel, cfg.windows.horizon)
        times = data.panel.index.get_level_values("timestamp")
        first, last = fold.split.bounds["test"]
        rows = data.panel.index[(times >= first) & (times <= last)]
        momentum = np.log(data.panel["close"]).groupby(level="symbol", observed=True).diff().reindex(rows)
        frame = pd.DataFrame(index=rows)
        frame["position__model"] = np.sign(momentum.fillna(0.0)).to_numpy()
        frame["position__buy_and_hold"] = 1.0
        frame["forecast__h1"] = momentum.fillna(0.0).to_numpy()
        frame["target__h1"] = targets.forward["fwd_1"].reindex(rows).to_numpy()
        frame["next_return"] = targets.next_return.reindex(rows).to_numpy()
        frame["seed"], frame["fold"] = 0, fold.name
        return FoldResult(fold.name, frame.sort_index(), {"supervised": [f"{root}/model.pt"]},
                          {"seed0_supervised_val_loss": 0.5, "seed0_supervised_test_ic": float("nan")})


def folds_of(data, cfg=CFG):
    return plan_folds(data.panel.index.get_level_values("timestamp"), cfg.walkforward, cfg.windows)


def run(tmp_path, data, fake, monkeypatch, cfg=CFG):
    monkeypatch.setattr(fold_module, "run_fold", fake)
    return run_walkforward(cfg, data, root=tmp_path / "checkpoints", folds=folds_of(data, cfg),
                           store=FoldStore(tmp_path))


def test_a_failing_fold_keeps_the_finished_ones_and_a_rerun_computes_only_what_is_missing(tmp_path, monkeypatch):
    data = make_data()
    names = [f.name for f in folds_of(data)]
    assert len(names) == 3
    failing = FakeRunFold(fail=names[1])
    with pytest.raises(RuntimeError, match="PPO step failed"):
        run(tmp_path, data, failing, monkeypatch)
    store = FoldStore(tmp_path)
    assert failing.calls == names[:2] and store.finished() == names[:1]
    assert not [p for p in store.root.iterdir() if PARTIAL in p.name]  # nothing half-written is left
    first = pd.read_parquet(store.folder(names[0]) / PREDICTIONS)

    resumed = FakeRunFold()
    result = run(tmp_path, data, resumed, monkeypatch)
    assert resumed.calls == names[1:]  # the finished fold is read back, not recomputed
    assert result.kept == names[:1] and store.finished() == names
    pd.testing.assert_frame_equal(result.results[0].predictions, first)
    assert np.isnan(result.results[0].metrics["seed0_supervised_test_ic"])  # NaN survives the round trip

    again = FakeRunFold()
    run(tmp_path, data, again, monkeypatch)
    assert again.calls == []  # every fold finished: nothing is recomputed


def test_fresh_and_kept_folds_give_identical_results(tmp_path, monkeypatch):
    data = make_data()
    fresh = run(tmp_path / "a", data, FakeRunFold(), monkeypatch)
    kept = run(tmp_path / "a", data, FakeRunFold(), monkeypatch)
    pd.testing.assert_frame_equal(fresh.predictions, kept.predictions)
    assert fresh.metrics.keys() == kept.metrics.keys()
    manifest = json.loads((FoldStore(tmp_path / "a").folder(fresh.results[0].fold) / MANIFEST).read_text())
    assert {"config_hash", "data_fingerprint", "code_version", "split", "config", "files"} <= set(manifest)


def test_a_changed_config_is_an_error_that_names_the_setting(tmp_path, monkeypatch):
    data = make_data()
    run(tmp_path, data, FakeRunFold(), monkeypatch)
    changed = CFG.model_copy(update={"costs": CFG.costs.model_copy(update={"transaction_bps": 9.0})})
    fake = FakeRunFold()
    with pytest.raises(FoldMismatchError, match=r"costs\.transaction_bps.*--restart"):
        run(tmp_path, data, fake, monkeypatch, changed)
    assert fake.calls == []  # refused before any fold ran
    # choosing fewer folds, or another database path, changes no fold's result
    fewer = CFG.model_copy(update={"walkforward": CFG.walkforward.model_copy(update={"n_folds": 1}),
                                   "data": CFG.data.model_copy(update={"db_path": "elsewhere.db"})})
    fake = FakeRunFold()
    run(tmp_path, data, fake, monkeypatch, fewer)
    assert fake.calls == []


def test_changed_past_bars_are_an_error_but_appended_bars_keep_the_folds(tmp_path, monkeypatch):
    data = make_data(bars=800)
    names = [f.name for f in folds_of(data)]
    run(tmp_path, data, FakeRunFold(), monkeypatch)
    with pytest.raises(FoldMismatchError, match="the data it read differs"):
        run(tmp_path, make_data(bars=800, bump=500), FakeRunFold(), monkeypatch)
    # asked for the oldest fold only, whose bars are unchanged: a later finished fold on changed data still stops it
    folds = folds_of(data)
    times = data.panel.index.get_level_values("timestamp").unique().sort_values()
    after_first = int(times.searchsorted(last_bar_read(data, folds[0], CFG.windows.horizon))) + 1
    changed = make_data(bars=800, bump=after_first)  # symbol AAA's bar just after the oldest fold's last bar read
    monkeypatch.setattr(fold_module, "run_fold", FakeRunFold())
    with pytest.raises(FoldMismatchError, match=f"{folds[1].name} was made by another run: the data it read differs"):
        run_walkforward(CFG, changed, root=tmp_path / "checkpoints", folds=folds[:1], store=FoldStore(tmp_path))
    # the same history plus later bars: every old fold is kept, only the new closed folds run
    longer = append_bars(data, 200)
    cfg = CFG.model_copy(update={"walkforward": CFG.walkforward.model_copy(update={"n_folds": None})})
    fake = FakeRunFold()
    run(tmp_path, longer, fake, monkeypatch, cfg)
    all_names = [f.name for f in folds_of(longer, cfg)]
    assert set(names) < set(all_names) and set(fake.calls) == set(all_names) - set(names)


def test_a_finished_fold_is_never_rewritten_and_tampering_is_caught(tmp_path, monkeypatch):
    data = make_data()
    result = run(tmp_path, data, FakeRunFold(), monkeypatch)
    store = FoldStore(tmp_path)
    from plus_ultra_ml.experiments.fold_files import FoldIdentity

    fold = folds_of(data)[0]
    with pytest.raises(PlusUltraError, match="never rewritten"):
        store.save(result.results[0], FoldIdentity.of(CFG, data, fold))
    path = store.folder(fold.name) / PREDICTIONS
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(PlusUltraError, match="changed since the fold was written"):
        store.load(fold.name)


@pytest.mark.slow
def test_a_failing_ppo_step_costs_no_supervised_training_on_the_rerun(tmp_path, monkeypatch):
    """The fold is lost (no fold files) but its supervised fit is not: the rerun restores its finished run."""
    import plus_ultra_ml.rl.fit as rl_fit
    from plus_ultra_ml.checkpoints.chain import read_lineage
    from plus_ultra_ml.config import FixtureConfig, load_config
    from plus_ultra_ml.experiments.dataset import load_training_data
    from plus_ultra_ml.synthetic.fixture import build_fixture
    from tests.ml.evaluation.test_walkforward_cli import CONFIG, FOLDS
    from tests.ml.training.test_cli import TINY

    db = tmp_path / "fixture.db"
    build_fixture(db, FixtureConfig(symbols=("AAA", "BBB"), rows=2000, alt_features=2, seed=3))
    cfg = load_config(CONFIG, [*TINY, *FOLDS, "walkforward.n_folds=1"])
    data = load_training_data(cfg, db)
    folds = plan_folds(data.panel.index.get_level_values("timestamp"), cfg.walkforward, cfg.windows)
    real = rl_fit.finetune_checkpoint

    def failing(*args, **kwargs):
        raise RuntimeError("PPO step failed")

    monkeypatch.setattr(rl_fit, "finetune_checkpoint", failing)
    with pytest.raises(RuntimeError, match="PPO step failed"):
        run_walkforward(cfg, data, root=tmp_path / "checkpoints", folds=folds, store=FoldStore(tmp_path))
    assert FoldStore(tmp_path).finished() == []
    monkeypatch.setattr(rl_fit, "finetune_checkpoint", real)
    result = run_walkforward(cfg, data, root=tmp_path / "checkpoints", folds=folds, store=FoldStore(tmp_path))
    training = read_lineage(result.results[0].checkpoints["supervised"][0]).training
    assert training["steps"] > 0 and training["resumed_from_step"] == training["steps"]  # no step trained again
    assert "position__ppo" in result.results[0].predictions
