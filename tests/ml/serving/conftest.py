"""Serving fixtures: a small fixture database and a supervised checkpoint written directly (no training).

The checkpoint is a real `model.pt`: the tiny hybrid transformer (random weights, fixed seed), the
scaler fitted on the training segment of the real feature table, lineage with the real feature
fingerprint. Serving does not care whether the weights were trained; the tests compare what the
service computes with what offline inference computes on the same file.
"""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import pandas as pd
import pytest
import torch

from plus_ultra_ml.checkpoints.supervised import write_checkpoint
from plus_ultra_ml.config import ExperimentConfig, FixtureConfig, config_from_dict
from plus_ultra_ml.data.training_data import TrainingData
from plus_ultra_ml.data.windows import build_targets, build_windows, split_by_fraction
from plus_ultra_ml.experiments.dataset import load_training_data
from plus_ultra_ml.lineage import LineageRecord, code_version, now_utc
from plus_ultra_ml.models.registry import build_from_config
from plus_ultra_ml.synthetic.fixture import build_fixture

SYMBOLS = ("AAA", "BBB", "CCC")
ROWS = 3000  # per symbol: more than twice the bars one prediction reads (1,171 with window 8)
TINY_MODEL = {"d_model": 8, "n_layers": 1, "n_heads": 2, "d_state": 4, "ffn_mult": 1, "dropout": 0.0}
GOOD_METRICS = {"test_loss": 0.4, "val_loss": 0.41, "val_loss_best": 0.41, "test_ic_next_bar": 0.05,
                "baseline_momentum_ic_next_bar": 0.01, "baseline_linear_ic_next_bar": 0.03,
                "test_sharpe_net": 3.0, "test_sharpe_net_low": 0.5, "baseline_momentum_sharpe_net": 1.0,
                "baseline_linear_sharpe_net": 2.0, "baseline_buy_and_hold_sharpe_net": 0.4,
                "baseline_vol_target_sharpe_net": 0.6}


def serving_config(*overrides: str, db: Path | None = None) -> ExperimentConfig:
    tree = {
        "name": "serving-test", "seed": 0,
        "data": {"db_path": str(db) if db else "unused.db", "ffill_limit": 2},
        "regimes": {"vol_window": 20, "liquidity_window": 20, "trend_window": 50, "min_history": 100},
        "windows": {"window": 8, "horizon": 2, "val_fraction": 0.2, "test_fraction": 0.2},
        "model": {"architecture": "hybrid_transformer", "backbone": dict(TINY_MODEL), "symbol_embedding_dim": 2},
        "train": {"epochs": 1, "curriculum": [4], "curriculum_epochs": 1, "cpu_threads": 1},
        "tracking": {"mode": "disabled"},
    }
    return config_from_dict(tree, overrides)


def build_db(path: Path, rows: int = ROWS, seed: int = 3) -> Path:
    build_fixture(path, FixtureConfig(symbols=SYMBOLS, rows=rows, alt_features=1, seed=seed))
    return path


def make_checkpoint(cfg: ExperimentConfig, data: TrainingData, out: Path, *, metrics=None, seed: int = 0,
                    kind: str = "supervised") -> Path:
    """A model.pt as training writes it, without training (weights from a fixed seed)."""
    times = data.features.index.get_level_values("timestamp")
    split = split_by_fraction(times, cfg.windows)
    windowed = build_windows(data.features, build_targets(data.panel, cfg.windows.horizon), split, cfg.windows)
    torch.manual_seed(seed)
    net = build_from_config(cfg.model, n_features=len(windowed.feature_names), horizons=cfg.windows.horizon,
                            vocabulary=windowed.symbols).eval()
    lineage = LineageRecord(
        kind=kind, created_at=now_utc(), database={"path": data.db_path, "fingerprint": data.db_fingerprint},
        panel=data.panel_record(),
        features={"fingerprint": data.feature_fingerprint, "count": len(windowed.feature_names),
                  "names": list(windowed.feature_names)},
        config=cfg.to_dict(), config_hash=cfg.fingerprint(), code_version=dict(code_version()), seed=cfg.seed,
        data_cutoff=split.cutoff.isoformat(), split=split.to_dict(),
        metrics=dict(GOOD_METRICS if metrics is None else metrics), training={"epochs": 1, "steps": 10},
    )
    return write_checkpoint(out, kind=kind, net=net, feature_names=windowed.feature_names, scaler=windowed.scaler,
                            window=cfg.windows.window, horizon=cfg.windows.horizon, lineage=lineage)


POLICY_METRICS = {"ppo_policy_loss": 0.01, "ppo_value_loss": 0.2, "selection_kept": 1.0, "val_gain_bps": 0.3,
                  "val_gain_low_bps": 0.1, "val_gain_high_bps": 0.5, "test_ppo_sharpe_net": 4.0,
                  "test_ppo_sharpe_net_low": 1.0,
                  **{k: v for k, v in GOOD_METRICS.items() if k.startswith("baseline_")}}


def make_policy(supervised: Path, out: Path, *, metrics=None, seed: int = 0, replay: int = 16) -> Path:
    """A policy.pt as rl/fit.py writes it, without PPO: the supervised network, a fresh value head and a
    random (seeded) W_s, so its positions depend on its own position and recent PnL (a stateful policy)."""
    from plus_ultra_ml.checkpoints.policy import POLICY_KIND, write_policy
    from plus_ultra_ml.checkpoints.supervised import load_checkpoint
    from plus_ultra_ml.config import CostConfig, config_from_dict
    from plus_ultra_ml.rl.env import EnvConfig
    from plus_ultra_ml.rl.policy import ActorCritic
    from plus_ultra_ml.rl.trained import env_record

    model = load_checkpoint(supervised)
    env = EnvConfig(CostConfig(), recent_pnl_bars=4)
    policy = ActorCritic(model.net, env.state_dim, freeze="frozen")
    torch.manual_seed(seed)
    with torch.no_grad():
        policy.state_proj.weight.normal_(0.0, 3.0)
    config = config_from_dict(model.lineage.config, [f"rl.steps_per_rollout={replay}"]).to_dict()
    lineage = model.lineage.with_updates(
        kind=POLICY_KIND, created_at=now_utc(), config=config, metrics=dict(POLICY_METRICS if metrics is None else metrics),
        parent={"path": str(supervised), "kind": "supervised"})
    return write_policy(out, net=policy.net, state_proj=policy.state_proj.weight, env=env_record(env),
                        feature_names=model.feature_names, scaler=model.scaler, window=model.window,
                        horizon=model.horizon, lineage=lineage)


def append_bars(db: Path, source: Path, after: str, bars: int) -> None:
    """Copy `bars` bars per symbol after time `after` (and their indicators) from `source` into `db`."""
    with sqlite3.connect(db) as connection:
        connection.execute("ATTACH DATABASE ? AS src", (str(source),))
        times = [t for (t,) in connection.execute(
            "SELECT DISTINCT timestamp FROM src.series WHERE timestamp > ? ORDER BY timestamp LIMIT ?", (after, bars))]
        if not times:
            return
        last = times[-1]
        connection.execute("INSERT INTO series SELECT * FROM src.series WHERE timestamp > ? AND timestamp <= ?",
                           (after, last))
        connection.execute("INSERT INTO indicators SELECT * FROM src.indicators WHERE timestamp > ? AND timestamp <= ?",
                           (after, last))


def truncate_db(source: Path, target: Path, last: str) -> Path:
    """A copy of `source` without any bar after `last` (what the database looked like then)."""
    shutil.copyfile(source, target)
    with sqlite3.connect(target) as connection:
        for table in ("series", "indicators", "regimes"):
            connection.execute(f"DELETE FROM {table} WHERE timestamp > ?", (last,))
    return target


def iso(stamp: pd.Timestamp) -> str:
    return stamp.tz_convert("UTC").strftime("%Y-%m-%dT%H:%M:%SZ")


@pytest.fixture(scope="session", autouse=True)
def _one_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models on a shared 2-core machine: one thread is much faster
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="session")
def market(tmp_path_factory) -> Path:
    return build_db(tmp_path_factory.mktemp("serving_market") / "market.db")


@pytest.fixture(scope="session")
def cfg(market) -> ExperimentConfig:
    return serving_config(db=market)


@pytest.fixture(scope="session")
def training_data(cfg, market) -> TrainingData:
    return load_training_data(cfg, market)


@pytest.fixture(scope="session")
def checkpoint(tmp_path_factory, cfg, training_data) -> Path:
    return make_checkpoint(cfg, training_data, tmp_path_factory.mktemp("serving_ckpt") / "model.pt")


@pytest.fixture(scope="session")
def policy_checkpoint(tmp_path_factory, checkpoint) -> Path:
    return make_policy(checkpoint, tmp_path_factory.mktemp("serving_policy") / "policy.pt")
