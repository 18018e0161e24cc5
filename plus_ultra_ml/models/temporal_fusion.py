"""Temporal Fusion Transformer backbone (Lim, Arik, Loeff and Pfister, 2021), causal.

The paper's pieces, in the order data flows through them:
1. static covariate encoders: the symbol embedding feeds four GRNs giving the contexts for
   variable selection, static enrichment, and the LSTM's initial hidden and cell states;
2. a variable selection network: every feature is embedded on its own (scalar -> D), processed
   by its own GRN, and the per-bar softmax weights over features (conditioned on the static
   context) mix them; the weights are returned for interpretation;
3. an LSTM over the selected inputs (causal local processing), with a gated skip + LayerNorm;
4. static enrichment: a GRN conditioned on the symbol;
5. interpretable multi-head attention: per-head queries and keys, one value projection shared
   by all heads, heads averaged, so the head-averaged attention matrix is the actual mixing of
   values and can be read as importance over past bars. Causal mask; fused SDPA unless the
   weights are asked for. Then a gated skip, a position-wise GRN, and a final gated skip over
   the whole decoder back to the LSTM output.
No known-future inputs: every input is observed at or before its bar. Output: (B, T, D), causal.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from plus_ultra_ml.models.layers import GatedResidualNetwork, InputSpec, SymbolEmbedding, maybe_checkpoint


@dataclass(frozen=True)
class TemporalFusionConfig:
    d_model: int = 32  # the paper's hidden size d_model, shared by every component
    n_heads: int = 4
    lstm_layers: int = 1
    n_attention_layers: int = 1  # the paper uses one interpretable attention layer
    dropout: float = 0.1
    grad_checkpoint: bool = False  # recompute variable selection and attention layers in backward

    def __post_init__(self) -> None:
        if min(self.d_model, self.n_heads, self.lstm_layers, self.n_attention_layers) < 1:
            raise ValueError("every size of temporal_fusion must be >= 1")
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model {self.d_model} is not divisible by n_heads {self.n_heads}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")


class TemporalFusionOutput(NamedTuple):
    hidden: torch.Tensor  # (B, T, D)
    variable_weights: torch.Tensor  # (B, T, F): softmax over features, per bar
    attention: torch.Tensor | None  # (B, L, T, T): head-averaged causal attention per layer (interpret only)


class GateAddNorm(nn.Module):
    """LayerNorm(skip + GLU(x)): the paper's gated skip connection."""

    def __init__(self, d_model: int, dropout: float):
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.gate = nn.Linear(d_model, 2 * d_model)
        self.norm = nn.LayerNorm(d_model)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.norm(skip + F.glu(self.gate(self.dropout(x)), dim=-1))


class VariableSelection(nn.Module):
    """(B, T, F) -> selected (B, T, D) and weights (B, T, F); one GRN per feature, batched."""

    def __init__(self, n_vars: int, d_model: int, d_context: int, dropout: float):
        super().__init__()
        bound = 1 / math.sqrt(d_model)
        self.embed_w = nn.Parameter(torch.empty(n_vars, d_model).uniform_(-1, 1))  # scalar -> D per feature
        self.embed_b = nn.Parameter(torch.zeros(n_vars, d_model))
        self.selector = GatedResidualNetwork(n_vars * d_model, d_model, n_vars, d_context, dropout)
        # The per-feature GRNs (no context): weights stacked over features, applied by batched matmul.
        self.w_in = nn.Parameter(torch.empty(n_vars, d_model, d_model).uniform_(-bound, bound))
        self.b_in = nn.Parameter(torch.zeros(n_vars, d_model))
        self.w_gate = nn.Parameter(torch.empty(n_vars, d_model, 2 * d_model).uniform_(-bound, bound))
        self.b_gate = nn.Parameter(torch.zeros(n_vars, 2 * d_model))
        self.dropout = nn.Dropout(dropout)
        self.norm = nn.LayerNorm(d_model)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        B, T, F_ = x.shape
        emb = x[..., None] * self.embed_w + self.embed_b  # (B, T, F, D)
        weights = self.selector(emb.reshape(B, T, -1), context).softmax(dim=-1)  # (B, T, F)
        h = F.elu(torch.einsum("btfd,fde->btfe", emb, self.w_in) + self.b_in)  # (B, T, F, D)
        h = torch.einsum("btfd,fde->btfe", self.dropout(h), self.w_gate) + self.b_gate  # (B, T, F, 2D)
        processed = self.norm(emb + F.glu(h, dim=-1))  # (B, T, F, D)
        return torch.einsum("btf,btfd->btd", weights, processed), weights


class InterpretableAttention(nn.Module):
    """Causal multi-head attention with one shared value projection; heads are averaged."""

    def __init__(self, d_model: int, n_heads: int, dropout: float):
        super().__init__()
        self.n_heads, self.d_head, self.dropout = n_heads, d_model // n_heads, dropout
        self.q = nn.Linear(d_model, d_model)
        self.k = nn.Linear(d_model, d_model)
        self.v = nn.Linear(d_model, self.d_head)  # shared by all heads
        self.out = nn.Linear(self.d_head, d_model)

    def forward(self, x: torch.Tensor, need_weights: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
        B, T, D = x.shape
        H, Dh = self.n_heads, self.d_head
        q = self.q(x).view(B, T, H, Dh).transpose(1, 2)  # (B, H, T, Dh)
        k = self.k(x).view(B, T, H, Dh).transpose(1, 2)  # (B, H, T, Dh)
        v = self.v(x)[:, None].expand(B, H, T, Dh)  # (B, H, T, Dh), the same values for every head
        p = self.dropout if self.training else 0.0
        if not need_weights:
            heads = F.scaled_dot_product_attention(q, k, v, dropout_p=p, is_causal=True)  # (B, H, T, Dh)
            return self.out(heads.mean(dim=1)), None
        future = torch.ones(T, T, dtype=torch.bool, device=x.device).triu(1)  # (T, T) j > t
        scores = (q @ k.transpose(-2, -1)) / math.sqrt(Dh)  # (B, H, T, T)
        weights = scores.masked_fill(future, float("-inf")).softmax(dim=-1)
        heads = F.dropout(weights, p) @ v  # (B, H, T, Dh)
        return self.out(heads.mean(dim=1)), weights.mean(dim=1)  # (B, T, D), (B, T, T)


class TemporalAttentionLayer(nn.Module):
    """Interpretable attention, gated skip, position-wise GRN."""

    def __init__(self, cfg: TemporalFusionConfig):
        super().__init__()
        self.attn = InterpretableAttention(cfg.d_model, cfg.n_heads, cfg.dropout)
        self.post_attn = GateAddNorm(cfg.d_model, cfg.dropout)
        self.positionwise = GatedResidualNetwork(cfg.d_model, cfg.d_model, dropout=cfg.dropout)

    def forward(self, x: torch.Tensor, need_weights: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
        y, weights = self.attn(x, need_weights)
        return self.positionwise(self.post_attn(y, x)), weights


class TemporalFusion(nn.Module):
    """(B, T, F) features [+ (B,) symbol ids] -> (B, T, D); `interpret` also returns the weights."""

    def __init__(self, cfg: TemporalFusionConfig, inputs: InputSpec):
        super().__init__()
        self.cfg = cfg
        self.d_model = D = cfg.d_model
        self.n_features = inputs.n_features
        self.symbols = None
        if inputs.symbol_dim > 0:
            S = inputs.symbol_dim
            self.symbols = SymbolEmbedding(inputs.n_symbols, S, inputs.symbol_dropout)
            self.static_select = GatedResidualNetwork(S, D, D, dropout=cfg.dropout)
            self.static_enrich = GatedResidualNetwork(S, D, D, dropout=cfg.dropout)
            self.static_h = GatedResidualNetwork(S, D, D, dropout=cfg.dropout)
            self.static_c = GatedResidualNetwork(S, D, D, dropout=cfg.dropout)
        d_context = D if self.symbols is not None else 0
        self.select = VariableSelection(inputs.n_features, D, d_context, cfg.dropout)
        self.lstm = nn.LSTM(D, D, num_layers=cfg.lstm_layers, batch_first=True,
                            dropout=cfg.dropout if cfg.lstm_layers > 1 else 0.0)
        self.post_lstm = GateAddNorm(D, cfg.dropout)
        self.enrich = GatedResidualNetwork(D, D, D, d_context, cfg.dropout)
        self.attention = nn.ModuleList(TemporalAttentionLayer(cfg) for _ in range(cfg.n_attention_layers))
        self.final = GateAddNorm(D, cfg.dropout)

    def interpret(self, x: torch.Tensor, symbol_ids: torch.Tensor | None = None) -> TemporalFusionOutput:
        return self._run(x, symbol_ids, need_weights=True)

    def forward(self, x: torch.Tensor, symbol_ids: torch.Tensor | None = None) -> torch.Tensor:
        return self._run(x, symbol_ids, need_weights=False).hidden

    def _run(self, x: torch.Tensor, symbol_ids: torch.Tensor | None, need_weights: bool) -> TemporalFusionOutput:
        B, T, F_ = x.shape
        if F_ != self.n_features:
            raise ValueError(f"backbone built for {self.n_features} features was given {F_}")
        ckpt = self.cfg.grad_checkpoint
        ctx_select = ctx_enrich = state = None
        if self.symbols is not None:
            s = self.symbols(symbol_ids, B, x.device)  # (B, S)
            ctx_select = self.static_select(s)[:, None]  # (B, 1, D)
            ctx_enrich = self.static_enrich(s)[:, None]  # (B, 1, D)
            layers = self.cfg.lstm_layers
            state = (self.static_h(s)[None].expand(layers, B, self.d_model).contiguous(),  # (L, B, D)
                     self.static_c(s)[None].expand(layers, B, self.d_model).contiguous())
        selected, var_weights = maybe_checkpoint(self.select, x, ctx_select, enabled=ckpt)  # (B, T, D), (B, T, F)
        lstm_out, _ = self.lstm(selected, state)  # (B, T, D)
        temporal = self.post_lstm(lstm_out, selected)
        h = self.enrich(temporal, ctx_enrich)
        maps = []
        for layer in self.attention:
            h, weights = maybe_checkpoint(layer, h, need_weights, enabled=ckpt)
            maps.append(weights)
        attention = torch.stack(maps, dim=1) if need_weights else None  # (B, L, T, T)
        return TemporalFusionOutput(self.final(h, temporal), var_weights, attention)
