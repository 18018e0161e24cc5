"""Tiny networks of every architecture, small enough for the default (fast) test run."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch

from plus_ultra_ml.config import ModelConfig
from plus_ultra_ml.models.network import PlusUltraNet
from plus_ultra_ml.models.registry import ARCHITECTURES, build_from_config

# Dropout 0 so outputs are deterministic; layer counts deep enough to exercise cycling dilations.
TINY: dict[str, dict] = {
    "hybrid_transformer": {"d_model": 16, "n_layers": 3, "n_heads": 2, "patch_len": 3, "d_state": 4,
                           "ffn_mult": 2, "dropout": 0.0},
    "omni_mixture": {"d_model": 16, "n_layers": 2, "n_heads": 2, "pool": 4, "d_state": 4, "ffn_mult": 2,
                     "dropout": 0.0},
    "moe_transformer": {"d_model": 16, "n_layers": 2, "n_heads": 2, "n_experts": 4, "top_k": 2, "dropout": 0.0},
    "state_space": {"d_model": 16, "n_layers": 2, "d_state": 8, "dropout": 0.0},
    "temporal_fusion": {"d_model": 16, "n_heads": 2, "dropout": 0.0},
}
assert set(TINY) == set(ARCHITECTURES), "every registered architecture needs a tiny test config"

VOCABULARY = ("AAA", "BBB", "CCC")


@pytest.fixture(params=sorted(TINY))
def arch(request) -> str:
    return request.param


@pytest.fixture
def make_net() -> Callable[..., PlusUltraNet]:
    def make(arch: str, n_features: int = 5, horizons: int = 3, seed: int = 0, symbol_dim: int = 4,
             symbol_dropout: float = 0.0, quantiles: tuple[float, ...] = (), **backbone) -> PlusUltraNet:
        torch.manual_seed(seed)
        cfg = ModelConfig(
            architecture=arch,
            backbone={**TINY[arch], **backbone},
            quantiles=quantiles,
            symbol_embedding_dim=symbol_dim,
            symbol_dropout=symbol_dropout,
        )
        return build_from_config(cfg, n_features, horizons, VOCABULARY)

    return make


@pytest.fixture(autouse=True)
def _one_intra_op_thread():
    """Tiny models gain nothing from 2 threads, and on a shared, loaded CPU the second thread's
    spin-waits make each step many times slower. Restored after every test."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
