"""fit.pretrain / fit.train_supervised under the real Trainer: determinism, lineage, warm start,
curriculum, held-out honesty, resume after SIGKILL, tracking."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import textwrap
import time
from dataclasses import replace
from pathlib import Path

import lightning as L
import numpy as np
import pandas as pd
import pytest
import torch

from plus_ultra_ml.artifacts import file_fingerprint
from plus_ultra_ml.checkpoints.backbone import WarmStartError, warm_start
from plus_ultra_ml.checkpoints.chain import lineage_chain, read_lineage
from plus_ultra_ml.checkpoints.supervised import load_checkpoint
from plus_ultra_ml.config import ConfigError
from plus_ultra_ml.data.windows import build_targets
from plus_ultra_ml.evaluation.heldout import heldout_metrics, segment_periods_per_year
from plus_ultra_ml.lineage import sidecar_path
from plus_ultra_ml.models.registry import build_from_config
from plus_ultra_ml.training.datamodule import WindowDataModule
from plus_ultra_ml.training.evaluate import predict_segment
from plus_ultra_ml.training.fit import RunIds, pretrain, train_supervised
from plus_ultra_ml.training.lit_modules import SupervisedModule

from .conftest import planted_data, tiny_config

HERE = Path(__file__).resolve().parent


@pytest.fixture(scope="module")
def supervised(planted, tmp_path_factory):
    cfg = tiny_config()
    return cfg, train_supervised(cfg, planted, root=tmp_path_factory.mktemp("supervised"), resume=False)


@pytest.fixture(scope="module")
def pretrained(planted, tmp_path_factory):
    cfg = tiny_config()
    return cfg, pretrain(cfg, planted, root=tmp_path_factory.mktemp("pretrain"), resume=False)


def datamodule(cfg, data, scaler=None):
    dm = WindowDataModule(data.features, build_targets(data.panel, cfg.windows.horizon), cfg.windows,
                          batch_size=cfg.train.batch_size, scaler=scaler)
    dm.setup()
    return dm


# ------------------------------------------------------------------------------------------ artifact + lineage
def test_lineage_round_trip_and_artifact_rebuilds_the_metrics(supervised, planted):
    cfg, result = supervised
    path = result.checkpoint
    embedded, beside = read_lineage(path), read_lineage(sidecar_path(path))
    assert embedded == result.lineage == beside
    sidecar = json.loads(sidecar_path(path).read_text())
    assert sidecar["checkpoint"]["fingerprint"] == file_fingerprint(path)
    lineage = result.lineage
    dm = datamodule(cfg, planted)
    assert lineage.config_hash == cfg.fingerprint() and lineage.config == cfg.to_dict()
    assert lineage.data_cutoff == dm.split.cutoff.isoformat() == dm.split.bounds["val"][1].isoformat()
    assert lineage.seed == cfg.seed and lineage.features["fingerprint"] == "planted-v1"
    assert lineage.database == {"path": "memory://planted", "fingerprint": "0" * 64}
    assert lineage.panel["rows"] == len(planted.panel) and lineage.parent is None
    assert lineage.code_version["package"] and lineage.run_ids["wandb_run_id"] is None
    assert lineage.training["steps"] > 0 and lineage.training["resumed_from_step"] is None

    # the file alone rebuilds the network, its scaler and the held-out numbers
    model = load_checkpoint(path)
    assert model.kind == "supervised" and model.feature_names == list(planted.features.columns)
    assert (model.window, model.horizon) == (cfg.windows.window, cfg.windows.horizon)
    rebuilt = datamodule(cfg, planted, scaler=model.scaler)
    module = SupervisedModule(model.net, cfg.train, cfg.costs)
    again = heldout_metrics(predict_segment(module, rebuilt.data, "test"), cfg.costs,
                            segment_periods_per_year(rebuilt.data))
    for key, value in again.items():
        assert result.metrics[f"test_{key}"] == pytest.approx(value, rel=1e-6, abs=1e-9), key
    for key in ("test_ic_next_bar", "test_ic_h1", "test_sharpe_net", "test_loss", "baseline_linear_ic_next_bar"):
        assert math.isfinite(result.metrics[key])
    assert result.metrics["test_ic_next_bar"] > 0.05, "the planted signal (IC ~0.45) is learnable in two epochs"


def test_same_seed_same_metrics_and_another_seed_differs(supervised, planted, tmp_path):
    cfg, first = supervised
    again = train_supervised(cfg, planted, root=tmp_path / "again", resume=False)
    assert again.metrics == first.metrics
    other = train_supervised(tiny_config("seed=1"), planted, root=tmp_path / "other", resume=False)
    assert other.metrics["test_loss"] != first.metrics["test_loss"]


def test_heldout_metrics_read_only_test_windows(supervised, planted):
    cfg, result = supervised
    model = load_checkpoint(result.checkpoint)
    dm = datamodule(cfg, planted, scaler=model.scaler)
    module = SupervisedModule(model.net, cfg.train, cfg.costs)
    ppy = segment_periods_per_year(dm.data)
    clean = predict_segment(module, dm.data, "test")
    first, last = dm.split.bounds["test"]
    ends = clean.frame.index.get_level_values("timestamp")
    assert ends.min() >= first and ends.max() <= last and len(clean.frame) == len(dm.data.ends["test"])
    base = heldout_metrics(clean, cfg.costs, ppy)

    data = dm.data
    in_test = (data.timestamps >= first.value) & (data.timestamps <= last.value)
    poisoned = replace(data, features=data.features.copy(), targets=data.targets.copy(),
                       next_return=data.next_return.copy(), volatility=data.volatility.copy())
    for array in (poisoned.features, poisoned.targets, poisoned.next_return, poisoned.volatility):
        array[~in_test] = 1e6  # every training and validation row is garbage now
    assert heldout_metrics(predict_segment(module, poisoned, "test"), cfg.costs, ppy) == base

    flipped = replace(data, next_return=data.next_return.copy(), targets=data.targets.copy())
    flipped.next_return[in_test] *= -1
    flipped.targets[in_test] *= -1
    changed = heldout_metrics(predict_segment(module, flipped, "test"), cfg.costs, ppy)
    assert changed["ic_next_bar"] == pytest.approx(-base["ic_next_bar"]) and changed["sharpe_gross"] != base["sharpe_gross"]


# ------------------------------------------------------------------------------------------ warm start
def test_warm_start_loads_the_backbone_and_records_the_parent(pretrained, planted, tmp_path):
    cfg, pre = pretrained
    assert pre.lineage.kind == "pretrain" and math.isfinite(pre.metrics["test_loss"])
    dm = datamodule(cfg, planted)
    net = build_from_config(cfg.model, 4, cfg.windows.horizon, dm.symbols)
    parent = warm_start(net, pre.checkpoint, dm.feature_names, dm.split.cutoff)
    saved = load_checkpoint(pre.checkpoint).net.backbone.state_dict()
    assert all(torch.equal(v, saved[k]) for k, v in net.backbone.state_dict().items())
    assert parent["fingerprint"] == file_fingerprint(pre.checkpoint) and parent["kind"] == "pretrain"

    result = train_supervised(cfg, planted, pretrain_checkpoint=pre.checkpoint, root=tmp_path, resume=False)
    assert result.lineage.parent["fingerprint"] == file_fingerprint(pre.checkpoint)
    chain = lineage_chain(result.checkpoint)
    assert [link.record.kind for link in chain] == ["supervised", "pretrain"] and all(link.intact for link in chain)
    assert chain[-1].record.database["fingerprint"] == "0" * 64


def test_warm_start_mismatch_names_every_key(pretrained, planted):
    cfg, pre = pretrained
    dm = datamodule(cfg, planted)
    wider = tiny_config("model.backbone.d_model=16")
    net = build_from_config(wider.model, 4, 2, dm.symbols)
    with pytest.raises(WarmStartError) as error:
        warm_start(net, pre.checkpoint, dm.feature_names)
    message = str(error.value)
    assert "model.backbone.d_model: checkpoint 8, this run 16" in message
    assert "backbone.embed.proj.weight: shape" in message

    same = build_from_config(cfg.model, 4, 2, dm.symbols)
    renamed = ["signal", "noise_a", "noise_z", "past_return"]
    with pytest.raises(WarmStartError, match=r"only in checkpoint \['noise_b'\], only in this run \['noise_z'\]"):
        warm_start(same, pre.checkpoint, renamed)
    with pytest.raises(WarmStartError, match="vocabulary"):
        warm_start(build_from_config(cfg.model, 4, 2, ["AAA", "BBB"]), pre.checkpoint, dm.feature_names)
    early = dm.split.bounds["train"][1]
    with pytest.raises(WarmStartError, match="after this run's cutoff"):
        warm_start(same, pre.checkpoint, dm.feature_names, cutoff=early)


# ------------------------------------------------------------------------------------------ curriculum
class WindowRecorder(L.Callback):
    def __init__(self):
        self.seen: dict[int, set[int]] = {}

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.seen.setdefault(trainer.current_epoch, set()).add(int(batch["x"].shape[1]))


def test_curriculum_changes_the_window_length_under_the_trainer(planted, tmp_path):
    cfg = tiny_config(train={"epochs": 3, "curriculum": [4], "curriculum_epochs": 2, "limit_train_batches": 2,
                             "limit_val_batches": 1})
    recorder = WindowRecorder()
    result = train_supervised(cfg, planted, root=tmp_path, callbacks=[recorder], resume=False)
    assert recorder.seen == {0: {4}, 1: {4}, 2: {8}}
    assert result.lineage.training["epochs"] == 3


# ------------------------------------------------------------------------------------------ resume
RESUMABLE = """
import sys
sys.path.insert(0, {tests!r})
from conftest import planted_data, tiny_config
from plus_ultra_ml.training.fit import train_supervised
cfg = tiny_config(train={{"epochs": 12, "limit_train_batches": 3, "limit_val_batches": 1, "checkpoint_every_n_steps": 2}})
result = train_supervised(cfg, planted_data(), root={root!r})
print("RESUMED_FROM", result.lineage.training["resumed_from_step"], "STEPS", result.lineage.training["steps"])
"""


def test_sigkill_mid_training_resumes_from_last_checkpoint(tmp_path):
    script = tmp_path / "train.py"
    script.write_text(textwrap.dedent(RESUMABLE.format(tests=str(HERE), root=str(tmp_path / "runs"))))
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    victim = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
    killed_at = None
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and victim.poll() is None:
            for last in (tmp_path / "runs").glob("*/lightning/last.ckpt"):
                try:
                    step = torch.load(last, map_location="cpu", weights_only=True)["global_step"]
                except Exception:  # being replaced right now: look again
                    continue
                if step >= 6:
                    victim.send_signal(signal.SIGKILL)
                    killed_at = step
            if killed_at is not None:
                break
            time.sleep(0.2)
    finally:
        if victim.poll() is None and killed_at is None:
            victim.kill()
        victim.wait(timeout=60)
    assert killed_at is not None, victim.stdout.read().decode()[-3000:]
    assert victim.returncode == -signal.SIGKILL
    (run_dir,) = (tmp_path / "runs").iterdir()
    assert not (run_dir / "model.pt").exists(), "killed before the end: no artifact"

    finished = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=env, timeout=300)
    assert finished.returncode == 0, finished.stdout[-3000:] + finished.stderr[-3000:]
    resumed = [line for line in finished.stdout.splitlines() if line.startswith("RESUMED_FROM")]
    _, step, _, steps = resumed[0].split()
    assert int(step) >= 6 and int(steps) == 12 * 3
    lineage = read_lineage(run_dir / "model.pt")
    assert lineage.training["resumed_from_step"] == int(step) and lineage.training["epochs"] == 12


BIT_IDENTICAL = """
import sys
sys.path.insert(0, {tests!r})
import torch
from conftest import TINY_MODEL, planted_data, tiny_config
from plus_ultra_ml.training.fit import train_supervised
cfg = tiny_config(model={{"backbone": {{**TINY_MODEL, "dropout": 0.2}}}},
                  train={{"epochs": 6, "limit_train_batches": 4, "limit_val_batches": 2}})
result = train_supervised(cfg, planted_data(), root={root!r})
torch.save({{"metrics": result.metrics, "resumed_from_step": result.lineage.training["resumed_from_step"]}},
           {out!r})
"""


@pytest.mark.slow
def test_a_run_killed_after_an_epoch_and_resumed_is_bit_identical_to_an_uninterrupted_one(tmp_path):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}

    def script(name: str) -> Path:
        path = tmp_path / f"{name}.py"
        path.write_text(textwrap.dedent(BIT_IDENTICAL.format(tests=str(HERE), root=str(tmp_path / name),
                                                             out=str(tmp_path / f"{name}.pt"))))
        return path

    whole = subprocess.run([sys.executable, str(script("whole"))], capture_output=True, text=True, env=env, timeout=600)
    assert whole.returncode == 0, whole.stdout[-3000:] + whole.stderr[-3000:]
    victim = subprocess.Popen([sys.executable, str(script("killed"))], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, env=env)
    killed_at = None
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and victim.poll() is None and killed_at is None:
            for last in (tmp_path / "killed").glob("*/lightning/last.ckpt"):
                try:
                    step = torch.load(last, map_location="cpu", weights_only=True)["global_step"]
                except Exception:  # being replaced right now: look again
                    continue
                if step >= 8:  # after epoch 2 (4 steps an epoch): an epoch-boundary checkpoint
                    victim.send_signal(signal.SIGKILL)
                    killed_at = step
            time.sleep(0.05)
    finally:
        if victim.poll() is None and killed_at is None:
            victim.kill()
        victim.wait(timeout=60)
    assert killed_at is not None and victim.returncode == -signal.SIGKILL
    resumed = subprocess.run([sys.executable, str(script("killed"))], capture_output=True, text=True, env=env,
                             timeout=600)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    a, b = torch.load(tmp_path / "whole.pt", weights_only=False), torch.load(tmp_path / "killed.pt", weights_only=False)
    assert a["resumed_from_step"] is None and b["resumed_from_step"] >= 8
    (model_a,), (model_b,) = (tmp_path / "whole").glob("*/model.pt"), (tmp_path / "killed").glob("*/model.pt")
    state_a = load_checkpoint(model_a).net.state_dict()
    state_b = load_checkpoint(model_b).net.state_dict()
    assert state_a.keys() == state_b.keys() and all(torch.equal(state_a[k], state_b[k]) for k in state_a)
    differ = {k: (a["metrics"][k], b["metrics"][k]) for k in a["metrics"]
              if not (a["metrics"][k] == b["metrics"][k] or (a["metrics"][k] != a["metrics"][k]
                                                             and b["metrics"][k] != b["metrics"][k]))}
    assert differ == {}, differ


# ------------------------------------------------------------------------------------------ tracking
def test_online_tracking_is_refused(planted, tmp_path):
    with pytest.raises(ConfigError, match="network"):
        train_supervised(tiny_config("tracking.mode=online"), planted, root=tmp_path)


def test_wandb_offline_run_id_goes_into_lineage(planted, tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    cfg = tiny_config("tracking.mode=offline", train={"epochs": 1, "limit_train_batches": 2})
    result = train_supervised(cfg, planted, root=tmp_path / "runs", resume=False)
    run_id = result.lineage.run_ids["wandb_run_id"]
    assert run_id and (tmp_path / "wandb").is_dir()  # under $WANDB_DIR, where `wandb sync` looks
    assert any(run_id in p.name for p in (tmp_path / "wandb").iterdir())


def test_two_fits_in_one_process_are_two_wandb_runs_under_wandb_dir(planted, tmp_path, monkeypatch):
    # Lightning's offline logger sets WANDB_MODE=dryrun for the rest of the process: the second fit must
    # still be tracked (it used to read dryrun as "disabled" and record wandb_run_id null)
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wandb_home"))
    cfg = tiny_config("tracking.mode=offline", train={"epochs": 1, "limit_train_batches": 2})
    first = train_supervised(cfg, planted, root=tmp_path / "a", resume=False,
                             run_ids=RunIds("dagster-run-1", "supervised_checkpoint", "fold_x"))
    assert os.environ["WANDB_MODE"] == "dryrun"  # what the logger left behind
    second = train_supervised(cfg.model_copy(update={"seed": 1}), planted, root=tmp_path / "b", resume=False)
    ids = [first.lineage.run_ids["wandb_run_id"], second.lineage.run_ids["wandb_run_id"]]
    assert all(ids) and ids[0] != ids[1]
    runs = sorted((tmp_path / "wandb_home" / "wandb").glob("offline-run-*"))
    assert len(runs) == 2 and {r.name.rsplit("-", 1)[1] for r in runs} == set(ids)
    record = next((tmp_path / "wandb_home" / "wandb").glob(f"offline-run-*-{ids[0]}/run-{ids[0]}.wandb")).read_bytes()
    for text in (cfg.fingerprint(), planted.db_fingerprint, "dagster-run-1", "fold_x", "supervised"):
        assert text.encode() in record, text  # the run's config, group and job type, as W&B stored them


# ------------------------------------------------------------------------------------------ DDP
DDP = """
import sys
sys.path.insert(0, {tests!r})
from conftest import planted_data, tiny_config
from plus_ultra_ml.training.fit import train_supervised
cfg = tiny_config("train.devices=2", "train.strategy=ddp", train={{"epochs": 2, "limit_train_batches": 4}})
result = train_supervised(cfg, planted_data(), root={root!r}, resume=False)
if result is not None:
    print("WORLD", result.lineage.training["steps"], result.metrics["test_loss"])
"""


@pytest.mark.slow
def test_ddp_two_cpu_processes_with_gloo(tmp_path):
    script = tmp_path / "ddp.py"
    script.write_text(textwrap.dedent(DDP.format(tests=str(HERE), root=str(tmp_path / "runs"))))
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    lines = [line for line in done.stdout.splitlines() if line.startswith("WORLD")]
    assert len(lines) == 1, "only rank 0 evaluates and writes"
    assert int(lines[0].split()[1]) == 2 * 4 and math.isfinite(float(lines[0].split()[2]))
    assert "gloo" in done.stdout + done.stderr or "distributed_backend=gloo" in done.stdout + done.stderr


# ------------------------------------------------------------------------------------------ cross-section
def test_cross_sectional_training_learns_the_per_date_ranking(tmp_path):
    """Date-grouped batches and the per-date IC loss under the real Trainer, monitored by val/ic_date;
    the held-out frame is the same whichever way its windows were batched."""
    data = planted_data(n_bars=240, symbols=tuple(f"S{i:02d}" for i in range(12)))
    cfg = tiny_config(train={"epochs": 3, "loss": {"forecast": 0.5, "ic": 1.0, "sharpe": 0.0},
                             "cross_section": {"dates_per_batch": 4, "names_per_date": 8}, "monitor": "val/ic_date"})
    result = train_supervised(cfg, data, root=tmp_path, resume=False)
    assert result.lineage.config["train"]["cross_section"] == {"dates_per_batch": 4, "names_per_date": 8}
    assert result.metrics["val_ic_date_best"] > 0.1  # the planted signal ranks names (IC ~0.4 per date)
    assert result.metrics["test_loss_ic"] < -0.1 and result.metrics["test_ic_h1"] > 0.1
    model = load_checkpoint(result.checkpoint)
    dm = datamodule(cfg, data, scaler=model.scaler)
    by_date = predict_segment(SupervisedModule(model.net, cfg.train, cfg.costs), dm.data, "test")
    plain_cfg = tiny_config(train={"loss": {"forecast": 0.5, "sharpe": 0.0}})
    by_row = predict_segment(SupervisedModule(model.net, plain_cfg.train, cfg.costs), dm.data, "test")
    pd.testing.assert_frame_equal(by_date.frame, by_row.frame, check_exact=False, rtol=1e-6)
    assert by_date.loss != by_row.loss  # one of them holds the IC term
