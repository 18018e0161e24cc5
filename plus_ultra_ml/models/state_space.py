"""Deep diagonal state-space model: a stack of S4D layers with gating and residuals.

Follows S4D (Gu, Gupta, Goel and Ré, "On the Parameterization and Initialization of Diagonal
State Space Models", 2022). Each channel is a linear time-invariant system with a learned
continuous-time diagonal state matrix A (complex, Re(A) < 0 by construction, S4D-Lin
initialisation), discretised with a learned per-channel step dt (zero-order hold). Unrolled over
the window, the system is a causal convolution whose kernel spans the whole window, not a short
filter: it is computed for every lag at once and applied by FFT in O(T log T)
(`layers.DiagonalSSM`, checked in the tests against the step-by-step recurrence).

A block is pre-norm: x + out(GELU(SSM(u)) * silu(z)) with (u, z) = in(norm x) (the gated form
of H3/Mamba-style blocks), then x + FFN(norm x). The residual stream and norms keep a deep
stack trainable. Output: (B, T, D), causal (a convolution with a kernel on lags >= 0 only).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from plus_ultra_ml.models.layers import FeedForward, GatedSSM, InputEmbedding, InputSpec, maybe_checkpoint


@dataclass(frozen=True)
class StateSpaceConfig:
    d_model: int = 64
    n_layers: int = 4
    d_state: int = 32  # complex modes per channel (S4D uses 32-64)
    expand: int = 2  # SSM inner width = expand * d_model
    # Step sizes: with Re(A) = -1/2, a channel forgets over ~2/dt bars, so [1e-3, 1e-1] spans
    # memories from ~20 to ~2000 bars.
    dt_min: float = 1e-3
    dt_max: float = 1e-1
    ffn_mult: int = 2  # 0: no FFN sublayer (the SSM block alone)
    dropout: float = 0.1
    grad_checkpoint: bool = False

    def __post_init__(self) -> None:
        if min(self.d_model, self.n_layers, self.d_state, self.expand) < 1 or self.ffn_mult < 0:
            raise ValueError("every size of state_space must be >= 1 (ffn_mult >= 0)")
        if not 0.0 < self.dt_min < self.dt_max:
            raise ValueError(f"need 0 < dt_min < dt_max, got {self.dt_min}, {self.dt_max}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")


class S4Block(nn.Module):
    """x + gated SSM(norm x), then x + FFN(norm x)."""

    def __init__(self, cfg: StateSpaceConfig):
        super().__init__()
        D = cfg.d_model
        self.norm_ssm = nn.LayerNorm(D)
        self.ssm = GatedSSM(D, cfg.d_state, cfg.expand, cfg.dropout, cfg.dt_min, cfg.dt_max)
        self.norm_ffn = nn.LayerNorm(D) if cfg.ffn_mult else None
        self.ffn = FeedForward(D, cfg.ffn_mult * D, cfg.dropout) if cfg.ffn_mult else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.ssm(self.norm_ssm(x))
        if self.ffn is not None:
            x = x + self.ffn(self.norm_ffn(x))
        return x


class StateSpace(nn.Module):
    """(B, T, F) features [+ (B,) symbol ids] -> (B, T, D) causal states."""

    def __init__(self, cfg: StateSpaceConfig, inputs: InputSpec):
        super().__init__()
        self.cfg = cfg
        self.d_model = cfg.d_model
        self.embed = InputEmbedding(inputs, cfg.d_model)
        self.blocks = nn.ModuleList(S4Block(cfg) for _ in range(cfg.n_layers))
        self.norm = nn.LayerNorm(cfg.d_model)

    def forward(self, x: torch.Tensor, symbol_ids: torch.Tensor | None = None) -> torch.Tensor:
        h = self.embed(x, symbol_ids)  # (B, T, D)
        for block in self.blocks:
            h = maybe_checkpoint(block, h, enabled=self.cfg.grad_checkpoint)
        return self.norm(h)
