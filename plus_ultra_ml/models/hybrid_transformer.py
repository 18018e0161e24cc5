"""Hybrid temporal transformer: attention, dilated convolution and a state-space mixer per block.

Each pre-norm residual block (pre-norm as in GPT-2) runs four mixers in turn:
1. causal multi-head self-attention with rotary positions (RoFormer, Su et al. 2021) through
   torch's fused `scaled_dot_product_attention`: any bar can read any earlier bar;
2. a dilated causal depthwise convolution (WaveNet, van den Oord et al. 2016; TCN, Bai et al.
   2018) whose dilation cycles 1, 2, 4, ... across blocks, for cheap multi-scale local patterns;
3. a gated diagonal state-space mixer (S4D, Gu et al. 2022): long memory at O(T log T);
4. a position-wise feed-forward network.
The input is a causal patch embedding (PatchTST's patches, Nie et al. 2023, but with stride 1 and
only past bars, so every bar keeps a token and an output). Output: (B, T, D), causal.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from plus_ultra_ml.models.layers import (
    CausalSelfAttention,
    DilatedCausalConv,
    FeedForward,
    GatedSSM,
    InputEmbedding,
    InputSpec,
    init_weights,
    maybe_checkpoint,
)


@dataclass(frozen=True)
class HybridTransformerConfig:
    d_model: int = 64
    n_layers: int = 4
    n_heads: int = 4
    patch_len: int = 1  # bars embedded per token (t-P+1..t); 1 = a linear map of each bar
    conv_kernel: int = 3
    dilation_cycle: int = 4  # block i uses dilation 2 ** (i % cycle): 1, 2, 4, 8, 1, 2, ...
    d_state: int = 16  # complex modes per channel in the SSM mixer
    ssm_expand: int = 1  # SSM inner width = ssm_expand * d_model
    ffn_mult: int = 4  # FFN hidden width = ffn_mult * d_model
    dropout: float = 0.1
    rope_base: float = 10_000.0
    grad_checkpoint: bool = False  # recompute each block in backward: less memory, ~1/3 more compute

    def __post_init__(self) -> None:
        if min(self.d_model, self.n_layers, self.n_heads, self.patch_len, self.conv_kernel,
               self.dilation_cycle, self.d_state, self.ssm_expand, self.ffn_mult) < 1:
            raise ValueError("every size of hybrid_transformer must be >= 1")
        if self.d_model % self.n_heads or (self.d_model // self.n_heads) % 2:
            raise ValueError(
                f"d_model {self.d_model} must split into n_heads {self.n_heads} heads of even width (rotary)"
            )
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")


class HybridBlock(nn.Module):
    """x + attention, + dilated conv, + gated SSM, + FFN; each on a normalised input."""

    def __init__(self, cfg: HybridTransformerConfig, dilation: int):
        super().__init__()
        D = cfg.d_model
        self.norm_attn = nn.RMSNorm(D)
        self.attn = CausalSelfAttention(D, cfg.n_heads, cfg.dropout, cfg.rope_base)
        self.norm_conv = nn.RMSNorm(D)
        self.conv = DilatedCausalConv(D, cfg.conv_kernel, dilation, cfg.dropout)
        self.norm_ssm = nn.RMSNorm(D)
        self.ssm = GatedSSM(D, cfg.d_state, cfg.ssm_expand, cfg.dropout)
        self.norm_ffn = nn.RMSNorm(D)
        self.ffn = FeedForward(D, cfg.ffn_mult * D, cfg.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm_attn(x))
        x = x + self.conv(self.norm_conv(x))
        x = x + self.ssm(self.norm_ssm(x))
        return x + self.ffn(self.norm_ffn(x))


class HybridTransformer(nn.Module):
    """(B, T, F) features [+ (B,) symbol ids] -> (B, T, D) causal states."""

    def __init__(self, cfg: HybridTransformerConfig, inputs: InputSpec):
        super().__init__()
        self.cfg = cfg
        self.d_model = cfg.d_model
        self.embed = InputEmbedding(inputs, cfg.d_model, cfg.patch_len)
        self.blocks = nn.ModuleList(
            HybridBlock(cfg, dilation=2 ** (i % cfg.dilation_cycle)) for i in range(cfg.n_layers)
        )
        self.norm = nn.RMSNorm(cfg.d_model)
        # Linear/Embedding only: the SSM keeps its S4D initialisation.
        self.apply(init_weights)

    def forward(self, x: torch.Tensor, symbol_ids: torch.Tensor | None = None) -> torch.Tensor:
        h = self.embed(x, symbol_ids)  # (B, T, D)
        for block in self.blocks:
            h = maybe_checkpoint(block, h, enabled=self.cfg.grad_checkpoint)
        return self.norm(h)
