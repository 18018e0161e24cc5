"""Tiny data and configs for training tests: a planted, learnable signal; a model of a few thousand weights."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from plus_ultra_ml.config import ExperimentConfig, config_from_dict
from plus_ultra_ml.data.training_data import TrainingData

TINY_MODEL = {"d_model": 8, "n_layers": 1, "n_heads": 2, "d_state": 4, "ffn_mult": 1, "dropout": 0.0}


def planted_data(n_bars: int = 360, symbols=("AAA", "BBB", "CCC"), seed: int = 0, strength: float = 0.5) -> TrainingData:
    """`signal` at bar t predicts the return t -> t+1 (IC ~ strength / sqrt(1 + strength^2)); two noise columns."""
    rng = np.random.default_rng(seed)
    times = pd.date_range("2024-01-01", periods=n_bars, freq="h", tz="UTC")
    frames, panels = [], []
    for k, symbol in enumerate(symbols):
        vol = 0.002 * (1 + 0.5 * k)
        signal = rng.standard_normal(n_bars)
        noise = rng.standard_normal(n_bars)
        log_ret = np.zeros(n_bars)
        log_ret[1:] = vol * (strength * signal[:-1] + noise[1:])  # the state at t drives bar t+1
        close = 100.0 * np.exp(np.cumsum(log_ret))
        index = pd.MultiIndex.from_arrays([pd.Categorical([symbol] * n_bars, categories=list(symbols)), times],
                                          names=["symbol", "timestamp"])
        past = np.concatenate([[np.nan], np.diff(np.log(close))]) / vol
        frames.append(pd.DataFrame({"signal": signal, "noise_a": rng.standard_normal(n_bars),
                                    "noise_b": rng.standard_normal(n_bars), "past_return": past},
                                   index=index).astype(np.float32))
        panels.append(pd.DataFrame({"open": close, "high": close * 1.001, "low": close * 0.999, "close": close,
                                    "volume": 1000.0}, index=index))
    return TrainingData(pd.concat(frames), pd.concat(panels), feature_fingerprint="planted-v1",
                        db_path="memory://planted", db_fingerprint="0" * 64)


def tiny_config(*overrides: str, **sections) -> ExperimentConfig:
    tree = {
        "name": "tiny",
        "seed": 0,
        "windows": {"window": 8, "horizon": 2, "val_fraction": 0.2, "test_fraction": 0.2},
        "model": {"architecture": "hybrid_transformer", "backbone": dict(TINY_MODEL), "symbol_embedding_dim": 2},
        "pretrain": {"epochs": 1, "batch_size": 32, "lr": 3e-3, "warmup_steps": 2},
        "train": {"epochs": 2, "batch_size": 32, "lr": 3e-3, "warmup_steps": 2, "cpu_threads": 1},
        "tracking": {"mode": "disabled"},
    }
    for name, values in sections.items():
        tree[name] = {**tree.get(name, {}), **values}
    return config_from_dict(tree, overrides)


@pytest.fixture(scope="session")
def planted() -> TrainingData:
    return planted_data()
