"""Small planted markets for the RL tests: a leading indicator whose sign predicts the next return."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from plus_ultra_ml.config import CostConfig, ModelConfig, RLConfig, WindowsConfig
from plus_ultra_ml.data.windows import WindowedData, build_targets, build_windows, split_by_fraction
from plus_ultra_ml.models.registry import build_from_config

TINY_BACKBONE = {"d_model": 8, "n_layers": 1, "n_heads": 2, "d_state": 4, "ffn_mult": 1, "dropout": 0.0}


def planted_frames(symbols=("AAA", "BBB"), bars=1200, edge=0.5, persistence=0.9, vol=0.002, seed=0):
    """(features, panel): `lead` x[t] (AR(1), unit variance) drives the log return t -> t+1 = vol * (edge * sign(x[t])
    + noise); `noise` is an independent AR(1) feature. The sign of `lead` is the oracle position."""
    rng = np.random.default_rng(seed)
    times = pd.date_range("2021-01-01", periods=bars, freq="15min", tz="UTC")
    frames, panels = [], []
    for symbol in symbols:
        shocks = rng.standard_normal((2, bars))
        x = np.empty((2, bars))
        x[:, 0] = shocks[:, 0]
        for t in range(1, bars):
            x[:, t] = persistence * x[:, t - 1] + np.sqrt(1 - persistence**2) * shocks[:, t]
        lead, noise = x
        step = vol * (edge * np.sign(lead) + rng.standard_normal(bars))  # log return from t to t+1, at t
        log_close = np.concatenate([[0.0], np.cumsum(step[:-1])])
        index = pd.MultiIndex.from_arrays([pd.Categorical([symbol] * bars, categories=list(symbols)), times],
                                          names=["symbol", "timestamp"])
        frames.append(pd.DataFrame({"lead": lead, "noise": noise}, index=index, dtype=np.float32))
        panels.append(pd.DataFrame({"close": 100 * np.exp(log_close)}, index=index))
    return pd.concat(frames), pd.concat(panels)


def planted_data(window=8, horizon=1, **kwargs) -> WindowedData:
    features, panel = planted_frames(**kwargs)
    cfg = WindowsConfig(window=window, horizon=horizon, val_fraction=0.2, test_fraction=0.2)
    split = split_by_fraction(features.index.get_level_values("timestamp"), cfg)
    return build_windows(features, build_targets(panel, horizon), split, cfg)


def tiny_net(data: WindowedData, seed: int = 0):
    import torch

    torch.manual_seed(seed)
    cfg = ModelConfig(architecture="hybrid_transformer", backbone=TINY_BACKBONE, symbol_embedding_dim=2,
                      symbol_dropout=0.0)
    return build_from_config(cfg, n_features=len(data.feature_names), horizons=data.horizon,
                             vocabulary=data.symbols).eval()


COSTS = CostConfig(transaction_bps=1.0, slippage_bps=0.5, holding_bps=0.1)


@pytest.fixture(scope="session")
def planted():
    return planted_data()


def fast_rl(**changes) -> RLConfig:
    base = dict(updates=3, steps_per_rollout=32, n_envs=16, epochs=2, minibatch_size=128, eval_batch_size=512)
    base.update(changes)
    return RLConfig(**base)


@pytest.fixture(autouse=True)
def one_torch_thread():
    """The per-bar policy steps are tiny ops; on this shared 2-core machine one thread is far faster."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def write_supervised(path, features, panel, window=8, horizon=1, seed=0, split=None):
    """A supervised-format model.pt (checkpoints/supervised.py) of a tiny net, with the split in its lineage.

    The weights are untrained: these tests exercise the plumbing, not the quality of the parent."""
    from plus_ultra_ml.lineage import LineageRecord, code_version, now_utc
    from plus_ultra_ml.checkpoints.supervised import write_checkpoint

    cfg = WindowsConfig(window=window, horizon=horizon, val_fraction=0.2, test_fraction=0.2)
    split = split or split_by_fraction(features.index.get_level_values("timestamp"), cfg)
    data = build_windows(features, build_targets(panel, horizon), split, cfg)
    net = tiny_net(data, seed=seed)
    lineage = LineageRecord(
        kind="supervised", created_at=now_utc(), database={"path": None, "fingerprint": None},
        panel={"rows": len(panel)}, features={"fingerprint": "planted", "count": len(data.feature_names),
                                              "names": data.feature_names},
        config={}, config_hash="test", code_version=dict(code_version()), seed=seed,
        data_cutoff=split.cutoff.isoformat(), split=split.to_dict(),
    )
    return write_checkpoint(path, kind="supervised", net=net, feature_names=data.feature_names, scaler=data.scaler,
                            window=window, horizon=horizon, lineage=lineage), data
