"""Heads on top of a backbone's per-bar states (B, T, D), and the symbol vocabulary.

- `ForecastHead`: forward returns for horizons 1..H per bar, plus optional quantiles made
  non-crossing by construction (the lowest quantile plus cumulative softplus increments).
- `PositionHead`: a position in [-1, 1] per bar, tanh of its own linear map. Positions come from
  this head, never from squashing the forecast (an earlier design's 'always long' trap).
- `PolicyHead` / `ValueHead`: a squashed Gaussian policy (action = tanh(u), u ~ N(mean, std),
  std state-independent as in most PPO implementations) and a state-value estimate for PPO.
- `SymbolVocabulary`: symbol strings -> ids saved with the model. Ids start at 1; a symbol the
  model never saw maps to the reserved id 0 (`UNKNOWN_SYMBOL_ID`), whose embedding is trained
  through symbol dropout (see layers.SymbolEmbedding).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from plus_ultra_ml.models.layers import UNKNOWN_SYMBOL_ID

logger = logging.getLogger(__name__)

LOG_STD_MIN, LOG_STD_MAX = -5.0, 2.0  # clamp of the policy's log-std: std in [0.007, 7.4]


@dataclass(frozen=True)
class HeadsConfig:
    horizons: int = 1  # H: forward-return horizons 1..H
    quantiles: tuple[float, ...] = ()  # strictly increasing levels in (0, 1); () = point forecast only
    action_dim: int = 1  # one position per symbol
    policy_init_log_std: float = -0.5  # exploration at the start of PPO: std ~0.6 before tanh

    def __post_init__(self) -> None:
        if self.horizons < 1 or self.action_dim < 1:
            raise ValueError(f"horizons and action_dim must be >= 1, got {self.horizons}, {self.action_dim}")
        q = self.quantiles
        if any(not 0.0 < level < 1.0 for level in q) or any(a >= b for a, b in zip(q, q[1:])):
            raise ValueError(f"quantiles must be strictly increasing levels in (0, 1), got {q}")
        if not LOG_STD_MIN <= self.policy_init_log_std <= LOG_STD_MAX:
            raise ValueError(f"policy_init_log_std must be in [{LOG_STD_MIN}, {LOG_STD_MAX}]")


@dataclass(frozen=True)
class SymbolVocabulary:
    """The symbols a model was trained on; position i in `symbols` has id i + 1."""

    symbols: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if any(not isinstance(s, str) or not s for s in self.symbols):
            raise ValueError(f"vocabulary symbols must be non-empty strings, got {self.symbols!r}")
        if len(set(self.symbols)) != len(self.symbols):
            raise ValueError(f"vocabulary has duplicate symbols: {self.symbols!r}")

    @property
    def size(self) -> int:
        """Rows of the embedding table: every symbol plus the reserved unknown id."""
        return len(self.symbols) + 1

    def encode(self, symbols: Sequence[str]) -> torch.Tensor:
        """Ids (len(symbols),) long; unknown symbols get UNKNOWN_SYMBOL_ID and a warning."""
        index = {s: i + 1 for i, s in enumerate(self.symbols)}
        ids = [index.get(s, UNKNOWN_SYMBOL_ID) for s in symbols]
        unknown = sorted({s for s, i in zip(symbols, ids) if i == UNKNOWN_SYMBOL_ID})
        if unknown:
            logger.warning("symbols %s are not in the model's vocabulary: using the unknown-symbol id", unknown)
        return torch.tensor(ids, dtype=torch.long)

    def decode(self, ids: torch.Tensor) -> list[str | None]:
        """Symbols of ids; None for the unknown id."""
        return [None if i == UNKNOWN_SYMBOL_ID else self.symbols[i - 1] for i in ids.tolist()]


class ForecastHead(nn.Module):
    """(B, T, D) -> point forecasts (B, T, H) and, if configured, quantiles (B, T, H, Q)."""

    def __init__(self, d_model: int, horizons: int, quantiles: tuple[float, ...] = ()):
        super().__init__()
        self.horizons = horizons
        self.n_quantiles = len(quantiles)
        self.point = nn.Linear(d_model, horizons)
        self.quantile = nn.Linear(d_model, horizons * self.n_quantiles) if quantiles else None

    def forward(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        B, T, D = h.shape
        point = self.point(h)  # (B, T, H)
        if self.quantile is None:
            return point, None
        raw = self.quantile(h).view(B, T, self.horizons, self.n_quantiles)  # (B, T, H, Q)
        steps = F.softplus(raw[..., 1:])  # (B, T, H, Q-1) >= 0: quantiles never cross
        return point, torch.cat([raw[..., :1], raw[..., :1] + steps.cumsum(dim=-1)], dim=-1)


class PositionHead(nn.Module):
    """(B, T, D) -> positions (B, T) in [-1, 1]. Starts near flat: small initial weights."""

    def __init__(self, d_model: int):
        super().__init__()
        self.linear = nn.Linear(d_model, 1)
        nn.init.normal_(self.linear.weight, std=0.01)
        nn.init.zeros_(self.linear.bias)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.linear(h)).squeeze(-1)


class PolicyHead(nn.Module):
    """(B, T, D) -> Gaussian mean and log-std (B, T, A) of the pre-tanh action."""

    def __init__(self, d_model: int, action_dim: int = 1, init_log_std: float = -0.5):
        super().__init__()
        self.mean = nn.Linear(d_model, action_dim)
        nn.init.normal_(self.mean.weight, std=0.01)
        nn.init.zeros_(self.mean.bias)
        self.log_std = nn.Parameter(torch.full((action_dim,), init_log_std))

    def forward(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean = self.mean(h)  # (B, T, A)
        return mean, self.log_std.clamp(LOG_STD_MIN, LOG_STD_MAX).expand_as(mean)


class ValueHead(nn.Module):
    """(B, T, D) -> state values (B, T)."""

    def __init__(self, d_model: int):
        super().__init__()
        self.linear = nn.Linear(d_model, 1)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.linear(h).squeeze(-1)


def _log_tanh_jacobian(u: torch.Tensor) -> torch.Tensor:
    """log(1 - tanh(u)^2), written to stay finite for large |u|."""
    return 2.0 * (math.log(2.0) - u - F.softplus(-2.0 * u))


def squashed_gaussian_log_prob(mean: torch.Tensor, log_std: torch.Tensor, pre_tanh: torch.Tensor) -> torch.Tensor:
    """log density of the action tanh(pre_tanh), summed over the action dimension: (B, T).

    Pass the stored pre-tanh sample, not atanh(action): atanh of a saturated action is infinite.
    """
    gaussian = torch.distributions.Normal(mean, log_std.exp()).log_prob(pre_tanh)
    return (gaussian - _log_tanh_jacobian(pre_tanh)).sum(dim=-1)


def squashed_gaussian_sample(
    mean: torch.Tensor, log_std: torch.Tensor, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(action in (-1, 1), pre-tanh sample, log-prob (B, T)); the sample is not differentiable."""
    noise = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
    pre_tanh = (mean + log_std.exp() * noise).detach()
    return torch.tanh(pre_tanh), pre_tanh, squashed_gaussian_log_prob(mean, log_std, pre_tanh)


def gaussian_entropy(log_std: torch.Tensor) -> torch.Tensor:
    """Entropy of the pre-tanh Gaussian, summed over actions: the usual PPO entropy bonus."""
    return (0.5 + 0.5 * math.log(2 * math.pi) + log_std).sum(dim=-1)
