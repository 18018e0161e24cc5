"""`plus-ultra walkforward`: the fold plan, every fold refitted and scored on its own test window, the report."""

from __future__ import annotations

import pandas as pd
import pytest
from typer.testing import CliRunner

from plus_ultra_ml.cli import app
from plus_ultra_ml.config import FixtureConfig, load_config
from plus_ultra_ml.evaluation.predictions import POSITION, SIGNAL
from plus_ultra_ml.evaluation.walkforward import plan_folds
from plus_ultra_ml.experiments.dataset import load_training_data
from plus_ultra_ml.synthetic.fixture import build_fixture
from tests.ml.training.test_cli import ROOT, TINY

CONFIG = str(ROOT / "configs" / "smoke.yaml")
FOLDS = ["walkforward.n_folds=2", "walkforward.test_bars=300", "walkforward.val_bars=200",
         "walkforward.min_train_bars=900", "rl.updates=2", "rl.n_envs=4", "rl.steps_per_rollout=32"]


@pytest.fixture(scope="module")
def market(tmp_path_factory):
    path = tmp_path_factory.mktemp("walkforward_cli") / "fixture.db"
    build_fixture(path, FixtureConfig(symbols=("AAA", "BBB"), rows=2000, alt_features=2, seed=3))
    return path


def invoke(*args: str):
    return CliRunner().invoke(app, ["walkforward", "--config", CONFIG, *args, *TINY, *FOLDS])


def test_walkforward_runs_every_fold_out_of_sample_and_writes_the_report(market, tmp_path):
    result = invoke("--db", str(market), "--out", str(tmp_path))
    assert result.exit_code == 0, result.output
    predictions = pd.read_parquet(tmp_path / "predictions.parquet")
    cfg = load_config(CONFIG, [*TINY, *FOLDS])
    folds = plan_folds(load_training_data(cfg, market).panel.index.get_level_values("timestamp"),
                       cfg.walkforward, cfg.windows)
    assert sorted(predictions["fold"].unique()) == sorted(f.name for f in folds) and len(folds) == 2
    for fold in folds:
        times = predictions[predictions["fold"] == fold.name].index.get_level_values("timestamp")
        first, last = fold.split.bounds["test"]
        assert times.min() >= first and times.max() <= last and times.min() > fold.cutoff
    strategies = {c[len(POSITION):] for c in predictions.columns if c.startswith(POSITION)}
    assert {"model", "forecast", "ppo", "buy_and_hold", "persistence", "vol_target", "momentum", "mean_reversion",
            "ridge", "lightgbm"} <= strategies
    assert (predictions["position__persistence"] == 0).all() and predictions["position__forecast"].between(-1, 1).all()
    # every forecaster's per-bar forecast is stored, and the report scores each one and pairs the model with each
    signals = {c[len(SIGNAL):] for c in predictions.columns if c.startswith(SIGNAL)}
    assert signals == {"momentum", "mean_reversion", "ridge", "lightgbm"}
    assert predictions["signal__lightgbm"].notna().all()
    assert (tmp_path / "report.html").is_file() and (tmp_path / "report.md").is_file()
    markdown = (tmp_path / "report.md").read_text()
    assert "lightgbm" in markdown and "Signal quality by strategy" in markdown
    assert "Model minus each strategy" in markdown
    table = pd.read_parquet(tmp_path / "report_metrics.parquet")
    assert {"model", "ridge", "lightgbm", "momentum"} <= set(table.query("scope == 'strategy_ic'")["strategy"])
    assert "lightgbm" in set(table.query("scope == 'paired' and metric == 'sharpe_diff'")["strategy"])
    assert all((tmp_path / "checkpoints" / fold.name / "seed0" / "ppo").is_dir() for fold in folds)
    # position__ppo is the selected policy: PPO's own positions where the validation rule kept it, else the head's
    kept = predictions["ppo_kept"] == 1.0
    assert predictions["ppo_kept"].isin([0.0, 1.0]).all() and "raw__ppo" not in strategies
    pd.testing.assert_series_equal(predictions.loc[kept, "position__ppo"], predictions.loc[kept, "raw__ppo"],
                                   check_names=False)
    pd.testing.assert_series_equal(predictions.loc[~kept, "position__ppo"], predictions.loc[~kept, "position__model"],
                                   check_names=False)
    assert "PPO selection" in markdown


def test_list_and_one_named_fold(market, tmp_path):
    listed = invoke("--db", str(market), "--list")
    assert listed.exit_code == 0, listed.output
    cfg = load_config(CONFIG, [*TINY, *FOLDS])
    names = [f.name for f in plan_folds(load_training_data(cfg, market).panel.index.get_level_values("timestamp"),
                                        cfg.walkforward, cfg.windows)]
    assert all(name in listed.output for name in names)
    assert not (tmp_path / "predictions.parquet").exists()

    one = invoke("--db", str(market), "--out", str(tmp_path), "--fold", names[0], "walkforward.ppo=false",
                 "portfolio.construction=long_short", "portfolio.k=2", "portfolio.weighting=topk")
    assert one.exit_code == 0, one.output
    assert list(pd.read_parquet(tmp_path / "predictions.parquet")["fold"].unique()) == [names[0]]
    markdown = (tmp_path / "report.md").read_text()  # the model's forecasts as a long-short book beside its sleeves
    assert "| model@long_short " in markdown and "portfolio strategies model@long_short" in markdown


def test_unknown_fold_is_one_clear_error(market, tmp_path):
    result = invoke("--db", str(market), "--out", str(tmp_path), "--fold", "fold_1999")
    assert result.exit_code != 0
    assert "no walk-forward fold named 'fold_1999'" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "predictions.parquet").exists()


def test_a_rerun_keeps_finished_folds_and_report_only_rebuilds_the_same_report(market, tmp_path, monkeypatch):
    from plus_ultra_ml.experiments import fold as fold_module
    from plus_ultra_ml.experiments.fold_files import FoldStore
    from tests.ml.experiments.test_fold_files import FakeRunFold

    cfg = load_config(CONFIG, [*TINY, *FOLDS])
    names = [f.name for f in plan_folds(load_training_data(cfg, market).panel.index.get_level_values("timestamp"),
                                        cfg.walkforward, cfg.windows)]
    failing = FakeRunFold(fail=names[1])
    monkeypatch.setattr(fold_module, "run_fold", failing)
    killed = invoke("--db", str(market), "--out", str(tmp_path))
    assert killed.exit_code != 0 and failing.calls == names
    assert FoldStore(tmp_path).finished() == names[:1] and not (tmp_path / "report.md").exists()

    resumed = FakeRunFold()
    monkeypatch.setattr(fold_module, "run_fold", resumed)
    rerun = invoke("--db", str(market), "--out", str(tmp_path))
    assert rerun.exit_code == 0, rerun.output
    assert resumed.calls == names[1:] and "kept 1 finished fold(s)" in rerun.output
    written = {name: (tmp_path / name).read_bytes() for name in ("report.md", "report.html", "predictions.parquet")}
    table = pd.read_parquet(tmp_path / "report_metrics.parquet")
    for name in written:
        (tmp_path / name).unlink()

    rebuilt = CliRunner().invoke(app, ["walkforward", "--report-only", "--out", str(tmp_path)])
    assert rebuilt.exit_code == 0, rebuilt.output
    assert {name: (tmp_path / name).read_bytes() for name in written} == written
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "report_metrics.parquet"), table)

    # another config on the same folder is refused before any fold runs, naming the setting
    other = FakeRunFold()
    monkeypatch.setattr(fold_module, "run_fold", other)
    refused = invoke("--db", str(market), "--out", str(tmp_path), "costs.transaction_bps=7")
    assert refused.exit_code != 0 and other.calls == []
    assert "costs.transaction_bps" in refused.output and "--restart" in refused.output
    restarted = invoke("--db", str(market), "--out", str(tmp_path), "costs.transaction_bps=7", "--restart")
    assert restarted.exit_code == 0, restarted.output
    assert other.calls == names


def test_list_refuses_a_plan_whose_warmup_leaves_no_training_rows(market):
    listed = invoke("--db", str(market), "--list", "regimes.min_history=1000")
    assert listed.exit_code != 0
    assert "regimes.min_history = 1000 leaves 0 finite training rows in fold_" in listed.output
    assert "Traceback" not in listed.output
