"""Mixture-of-experts transformer: causal attention blocks whose FFN is a routed bank of experts.

Each pre-norm block is rotary causal self-attention followed by `layers.MoEFeedForward`: a linear
router scores the experts per token, the top-k are kept and their gates renormalised (as in
GShard, Lepikhin et al. 2021, and Mixtral, Jiang et al. 2024), and only those k experts run on
that token. Expert compute per token is therefore k expert MLPs whatever `n_experts` is; capacity
grows with experts at constant cost (Shazeer et al. 2017).

Capacity handling: dropless. No capacity factor, no token is dropped or overflows; an expert runs
on however many tokens chose it (sorted dispatch, one matmul per expert). The price is uneven
per-expert work when routing is unbalanced, which the Switch Transformer's balancing loss
(Fedus et al. 2022) discourages.

The auxiliary loss: after each forward the backbone holds `aux_loss`, a scalar tensor equal to
`balance_coef` times the mean over blocks of E * sum_e f_e P_e (1.0 at perfect balance). The
trainer adds it to its objective as it is. Routing happens per bar, so it is causal.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from plus_ultra_ml.models.layers import (
    CausalSelfAttention,
    InputEmbedding,
    InputSpec,
    MoEFeedForward,
    init_weights,
    maybe_checkpoint,
)


@dataclass(frozen=True)
class MoETransformerConfig:
    d_model: int = 64
    n_layers: int = 4
    n_heads: int = 4
    n_experts: int = 8
    top_k: int = 2
    expert_mult: int = 2  # hidden width of one expert = expert_mult * d_model
    balance_coef: float = 0.01  # weight of the load-balancing loss (Switch Transformer's value)
    dropout: float = 0.1
    rope_base: float = 10_000.0
    grad_checkpoint: bool = False

    def __post_init__(self) -> None:
        if min(self.d_model, self.n_layers, self.n_heads, self.n_experts, self.expert_mult) < 1:
            raise ValueError("every size of moe_transformer must be >= 1")
        if not 1 <= self.top_k <= self.n_experts:
            raise ValueError(f"top_k must be in [1, n_experts={self.n_experts}], got {self.top_k}")
        if self.d_model % self.n_heads or (self.d_model // self.n_heads) % 2:
            raise ValueError(
                f"d_model {self.d_model} must split into n_heads {self.n_heads} heads of even width (rotary)"
            )
        if self.balance_coef < 0 or not 0.0 <= self.dropout < 1.0:
            raise ValueError("balance_coef must be >= 0 and dropout in [0, 1)")


class MoEBlock(nn.Module):
    """x + attention(norm x), then + experts(norm x); returns the block's balancing loss too."""

    def __init__(self, cfg: MoETransformerConfig):
        super().__init__()
        D = cfg.d_model
        self.norm_attn = nn.RMSNorm(D)
        self.attn = CausalSelfAttention(D, cfg.n_heads, cfg.dropout, cfg.rope_base)
        self.norm_moe = nn.RMSNorm(D)
        self.moe = MoEFeedForward(D, cfg.expert_mult * D, cfg.n_experts, cfg.top_k, cfg.dropout)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = x + self.attn(self.norm_attn(x))
        y, balance = self.moe(self.norm_moe(x))  # (B, T, D), scalar
        return x + y, balance


class MoETransformer(nn.Module):
    """(B, T, F) features [+ (B,) symbol ids] -> (B, T, D) causal states; sets `aux_loss`."""

    def __init__(self, cfg: MoETransformerConfig, inputs: InputSpec):
        super().__init__()
        self.cfg = cfg
        self.d_model = cfg.d_model
        self.embed = InputEmbedding(inputs, cfg.d_model)
        self.blocks = nn.ModuleList(MoEBlock(cfg) for _ in range(cfg.n_layers))
        self.norm = nn.RMSNorm(cfg.d_model)
        self.apply(init_weights)
        self.aux_loss: torch.Tensor | None = None  # set by forward

    def forward(self, x: torch.Tensor, symbol_ids: torch.Tensor | None = None) -> torch.Tensor:
        h = self.embed(x, symbol_ids)  # (B, T, D)
        balances = []
        for block in self.blocks:
            h, balance = maybe_checkpoint(block, h, enabled=self.cfg.grad_checkpoint)
            balances.append(balance)
        self.aux_loss = self.cfg.balance_coef * torch.stack(balances).mean()
        return self.norm(h)
