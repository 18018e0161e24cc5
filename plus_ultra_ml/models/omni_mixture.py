"""Omni-scale mixture: fine attention over bars plus causal cross-scale attention to pooled tokens.

Each pre-norm residual block mixes the sequence five ways:
1. fine-grained causal self-attention over bars (rotary positions, fused SDPA);
2. cross-scale attention: bars are mean-pooled into coarse tokens of `pool` bars, the coarse tokens
   attend causally to each other, and every bar then reads the coarse tokens. A bar at t may only
   read a coarse token whose whole block of bars ends at or before t, so no bar ever reads a
   summary of its own future. A learned 'null' coarse token is always visible, so the first bars
   (before any block has closed) still have a valid attention row. Multi-scale tokens in the
   spirit of Pyraformer (Liu et al. 2022) and Crossformer (Zhang and Yan 2023), made causal;
3. a gated diagonal state-space mixer (S4D) for long memory;
4. a dilated causal depthwise convolution, dilation cycling 1, 2, 4, ... across blocks;
5. a position-wise feed-forward network.
Output: (B, T, D), causal.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from plus_ultra_ml.models.layers import (
    CausalSelfAttention,
    DilatedCausalConv,
    FeedForward,
    GatedSSM,
    InputEmbedding,
    InputSpec,
    RotaryEmbedding,
    apply_rotary,
    init_weights,
    maybe_checkpoint,
)


@dataclass(frozen=True)
class OmniMixtureConfig:
    d_model: int = 64
    n_layers: int = 4
    n_heads: int = 4
    pool: int = 8  # bars per coarse token
    conv_kernel: int = 3
    dilation_cycle: int = 4  # block i uses dilation 2 ** (i % cycle)
    d_state: int = 16  # complex modes per channel in the gated SSM
    ffn_mult: int = 4
    dropout: float = 0.1
    rope_base: float = 10_000.0
    grad_checkpoint: bool = False

    def __post_init__(self) -> None:
        if min(self.d_model, self.n_layers, self.n_heads, self.conv_kernel, self.dilation_cycle,
               self.d_state, self.ffn_mult) < 1 or self.pool < 2:
            raise ValueError("every size of omni_mixture must be >= 1 (pool >= 2)")
        if self.d_model % self.n_heads or (self.d_model // self.n_heads) % 2:
            raise ValueError(
                f"d_model {self.d_model} must split into n_heads {self.n_heads} heads of even width (rotary)"
            )
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")


def coarse_visibility(T: int, pool: int, device: torch.device | None = None) -> torch.Tensor:
    """(T, 1 + n) bool: bar t may read the null token and coarse tokens whose block ends <= t."""
    n = -(-T // pool)  # ceil: a partial last block is padded and never visible
    block_end = torch.arange(1, n + 1, device=device) * pool - 1  # (n,) last bar of each block
    visible = block_end[None, :] <= torch.arange(T, device=device)[:, None]  # (T, n)
    return torch.cat([torch.ones(T, 1, dtype=torch.bool, device=device), visible], dim=1)


class CrossScaleAttention(nn.Module):
    """Bars (queries) read causally self-attended pooled tokens (keys/values)."""

    def __init__(self, d_model: int, n_heads: int, pool: int, dropout: float, rope_base: float):
        super().__init__()
        self.n_heads, self.pool, self.dropout = n_heads, pool, dropout
        self.coarse_norm = nn.RMSNorm(d_model)
        self.coarse_attn = CausalSelfAttention(d_model, n_heads, dropout, rope_base)
        self.null = nn.Parameter(torch.zeros(1, 1, d_model))
        self.q = nn.Linear(d_model, d_model)
        self.kv = nn.Linear(d_model, 2 * d_model)
        self.out = nn.Linear(d_model, d_model)
        self.rotary = RotaryEmbedding(d_model // n_heads, rope_base)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, D = x.shape
        P, H = self.pool, self.n_heads
        n = -(-T // P)
        padded = F.pad(x, (0, 0, 0, n * P - T))  # (B, n*P, D), zeros after the last bar
        coarse = padded.view(B, n, P, D).mean(dim=2)  # (B, n, D)
        coarse = coarse + self.coarse_attn(self.coarse_norm(coarse))  # causal at the coarse scale
        q = self.q(x).view(B, T, H, D // H).transpose(1, 2)  # (B, H, T, Dh)
        k, v = self.kv(coarse).view(B, n, 2, H, D // H).permute(2, 0, 3, 1, 4)  # (B, H, n, Dh) each
        # Rotary with real bar positions: bar t vs the last bar of each block, so recency is relative.
        cos_q, sin_q = self.rotary(torch.arange(T, device=x.device))
        cos_k, sin_k = self.rotary(torch.arange(1, n + 1, device=x.device) * P - 1)
        q, k = apply_rotary(q, cos_q, sin_q), apply_rotary(k, cos_k, sin_k)
        k_null, v_null = self.kv(self.null).view(1, 1, 2, H, D // H).permute(2, 0, 3, 1, 4)  # (1, H, 1, Dh)
        k = torch.cat([k_null.expand(B, H, 1, D // H), k], dim=2)  # (B, H, 1 + n, Dh)
        v = torch.cat([v_null.expand(B, H, 1, D // H), v], dim=2)
        mask = coarse_visibility(T, P, x.device)  # (T, 1 + n)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=self.dropout if self.training else 0.0)
        return self.out(y.transpose(1, 2).reshape(B, T, D))  # (B, T, D)


class OmniBlock(nn.Module):
    def __init__(self, cfg: OmniMixtureConfig, dilation: int):
        super().__init__()
        D = cfg.d_model
        self.norm_fine = nn.RMSNorm(D)
        self.fine = CausalSelfAttention(D, cfg.n_heads, cfg.dropout, cfg.rope_base)
        self.norm_cross = nn.RMSNorm(D)
        self.cross = CrossScaleAttention(D, cfg.n_heads, cfg.pool, cfg.dropout, cfg.rope_base)
        self.norm_ssm = nn.RMSNorm(D)
        self.ssm = GatedSSM(D, cfg.d_state, 1, cfg.dropout)
        self.norm_conv = nn.RMSNorm(D)
        self.conv = DilatedCausalConv(D, cfg.conv_kernel, dilation, cfg.dropout)
        self.norm_ffn = nn.RMSNorm(D)
        self.ffn = FeedForward(D, cfg.ffn_mult * D, cfg.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.fine(self.norm_fine(x))
        x = x + self.cross(self.norm_cross(x))
        x = x + self.ssm(self.norm_ssm(x))
        x = x + self.conv(self.norm_conv(x))
        return x + self.ffn(self.norm_ffn(x))


class OmniMixture(nn.Module):
    """(B, T, F) features [+ (B,) symbol ids] -> (B, T, D) causal states."""

    def __init__(self, cfg: OmniMixtureConfig, inputs: InputSpec):
        super().__init__()
        self.cfg = cfg
        self.d_model = cfg.d_model
        self.embed = InputEmbedding(inputs, cfg.d_model)
        self.blocks = nn.ModuleList(
            OmniBlock(cfg, dilation=2 ** (i % cfg.dilation_cycle)) for i in range(cfg.n_layers)
        )
        self.norm = nn.RMSNorm(cfg.d_model)
        self.apply(init_weights)

    def forward(self, x: torch.Tensor, symbol_ids: torch.Tensor | None = None) -> torch.Tensor:
        h = self.embed(x, symbol_ids)  # (B, T, D)
        for block in self.blocks:
            h = maybe_checkpoint(block, h, enabled=self.cfg.grad_checkpoint)
        return self.norm(h)
