"""A backbone with its heads, and the recipe that rebuilds both.

`ModelRecipe` is everything needed to construct the network again without the data: the
architecture name and its config, the number of features, the symbol vocabulary and the head
config. `PlusUltraNet` owns one backbone (built by `registry.build_model`) and four heads: the
forecast and position heads run in `forward`; the policy and value heads are called by PPO on the
hidden states (`policy`, `value`), so supervised training leaves them untouched.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, NamedTuple

import torch
from torch import nn

from plus_ultra_ml.models.heads import (
    ForecastHead,
    HeadsConfig,
    PolicyHead,
    PositionHead,
    SymbolVocabulary,
    ValueHead,
)
from plus_ultra_ml.models.layers import InputSpec


@dataclass(frozen=True)
class ModelRecipe:
    architecture: str
    backbone: Any  # the architecture's own frozen config dataclass
    n_features: int
    vocabulary: SymbolVocabulary
    heads: HeadsConfig
    symbol_dim: int = 8  # 0: no symbol embedding
    symbol_dropout: float = 0.1  # share of training samples shown the unknown-symbol id

    @property
    def inputs(self) -> InputSpec:
        return InputSpec(self.n_features, self.vocabulary.size, self.symbol_dim, self.symbol_dropout)

    def to_dict(self) -> dict[str, Any]:
        """Plain containers only (str, int, float, bool, list, dict): safe for weights_only loads."""
        return {
            "architecture": self.architecture,
            "backbone": _plain(asdict(self.backbone)),
            "n_features": self.n_features,
            "vocabulary": list(self.vocabulary.symbols),
            "heads": _plain(asdict(self.heads)),
            "symbol_dim": self.symbol_dim,
            "symbol_dropout": self.symbol_dropout,
        }


def _plain(tree: dict[str, Any]) -> dict[str, Any]:
    return {key: list(value) if isinstance(value, tuple) else value for key, value in tree.items()}


class NetOutput(NamedTuple):
    hidden: torch.Tensor  # (B, T, D) backbone states
    forecast: torch.Tensor  # (B, T, H) forward returns for horizons 1..H, per bar
    quantiles: torch.Tensor | None  # (B, T, H, Q) non-crossing, when the head has quantiles
    position: torch.Tensor  # (B, T) in [-1, 1]
    aux_loss: torch.Tensor  # scalar: the backbone's auxiliary loss (MoE balancing), else 0


class PlusUltraNet(nn.Module):
    """Backbone + forecast, position, policy and value heads. Per-bar outputs; [:, -1] is the latest bar."""

    def __init__(self, recipe: ModelRecipe, backbone: nn.Module):
        super().__init__()
        self.recipe = recipe
        self.backbone = backbone
        D = backbone.d_model
        self.forecast_head = ForecastHead(D, recipe.heads.horizons, recipe.heads.quantiles)
        self.position_head = PositionHead(D)
        self.policy_head = PolicyHead(D, recipe.heads.action_dim, recipe.heads.policy_init_log_std)
        self.value_head = ValueHead(D)

    @property
    def vocabulary(self) -> SymbolVocabulary:
        return self.recipe.vocabulary

    def encode_symbols(self, symbols: Sequence[str]) -> torch.Tensor:
        """Symbol strings -> ids (B,) on the model's device; unknown symbols -> the reserved id 0."""
        return self.recipe.vocabulary.encode(symbols).to(self.value_head.linear.weight.device)

    def forward(self, x: torch.Tensor, symbol_ids: torch.Tensor | None = None) -> NetOutput:
        hidden = self.backbone(x, symbol_ids)  # (B, T, D)
        forecast, quantiles = self.forecast_head(hidden)
        # A backbone with an auxiliary objective exposes it as `aux_loss` after its forward.
        aux = getattr(self.backbone, "aux_loss", None)
        if aux is None:
            aux = hidden.new_zeros(())
        return NetOutput(hidden, forecast, quantiles, self.position_head(hidden), aux)

    def policy(self, hidden: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and log-std (B, T, A) of the pre-tanh Gaussian action (see heads.squashed_gaussian_*)."""
        return self.policy_head(hidden)

    def value(self, hidden: torch.Tensor) -> torch.Tensor:
        """State values (B, T)."""
        return self.value_head(hidden)
