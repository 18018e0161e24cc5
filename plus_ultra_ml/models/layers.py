"""Blocks shared by several backbones, each causal: the output at bar t reads bars <= t only.

- `InputEmbedding`: a causal patch embedding of the features plus a learned symbol embedding.
- `RotaryEmbedding` / `CausalSelfAttention`: RoFormer rotary positions (Su et al., 2021) through
  torch's fused `scaled_dot_product_attention`.
- `DilatedCausalConv`: a depthwise causal convolution with dilation (WaveNet; Bai et al.'s TCN).
- `DiagonalSSM` / `GatedSSM`: a diagonal state-space layer in the S4D style (Gu, Gupta, Goel and
  Ré, 2022), its kernel applied by FFT convolution in O(T log T), and a gated mixer around it.
- `GatedResidualNetwork`: the GRN of the Temporal Fusion Transformer (Lim et al., 2021).
- `MoEFeedForward`: top-k routed expert FFNs with the Switch Transformer's balancing loss
  (Fedus et al., 2022). Dropless: every token reaches its k experts, no capacity limit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

UNKNOWN_SYMBOL_ID = 0  # row of the symbol table for a symbol outside the saved vocabulary


@dataclass(frozen=True)
class InputSpec:
    """What a backbone is fed, fixed by the data rather than by the architecture."""

    n_features: int  # F
    n_symbols: int = 1  # vocabulary size + 1: id 0 is reserved for unknown symbols
    symbol_dim: int = 0  # 0: no symbol embedding
    symbol_dropout: float = 0.0  # training only: share of samples whose id is replaced by the unknown id

    def __post_init__(self) -> None:
        if self.n_features < 1 or self.n_symbols < 1 or self.symbol_dim < 0:
            raise ValueError(f"invalid input spec {self}")
        if not 0.0 <= self.symbol_dropout < 1.0:
            raise ValueError(f"symbol_dropout must be in [0, 1), got {self.symbol_dropout}")


def init_weights(module: nn.Module) -> None:
    """nanoGPT's initialisation: small normal weights, zero biases (apply with `Module.apply`)."""
    if isinstance(module, nn.Linear):
        nn.init.normal_(module.weight, mean=0.0, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.Embedding):
        nn.init.normal_(module.weight, mean=0.0, std=0.02)


def maybe_checkpoint(block: nn.Module, *args, enabled: bool):
    """Run `block(*args)`, recomputing its activations in backward when `enabled` (and training)."""
    if enabled and block.training and torch.is_grad_enabled():
        return checkpoint(block, *args, use_reentrant=False)
    return block(*args)


class SymbolEmbedding(nn.Module):
    """One learned vector per symbol; a missing id tensor means 'unknown symbol' for the batch.

    In training, `dropout` of the samples see the unknown id instead of their own, so the reserved
    row learns a generic symbol and inference on a new symbol is not a random vector.
    """

    def __init__(self, n_symbols: int, dim: int, dropout: float = 0.0):
        super().__init__()
        self.table = nn.Embedding(n_symbols, dim)
        self.dropout = dropout

    def forward(self, symbol_ids: torch.Tensor | None, batch: int, device: torch.device) -> torch.Tensor:
        if symbol_ids is None:
            symbol_ids = torch.full((batch,), UNKNOWN_SYMBOL_ID, dtype=torch.long, device=device)
        if self.training and self.dropout > 0:
            hide = torch.rand(symbol_ids.shape, device=device) < self.dropout
            symbol_ids = symbol_ids.masked_fill(hide, UNKNOWN_SYMBOL_ID)
        return self.table(symbol_ids)  # (B, S)


class InputEmbedding(nn.Module):
    """Features (B, T, F) -> tokens (B, T, D), one token per bar, plus the symbol's vector.

    With `patch_len` P > 1 the token at bar t embeds the patch of bars t-P+1..t (a causal
    convolution, stride 1), so every bar keeps its own token and output; P = 1 is a linear map.
    """

    def __init__(self, inputs: InputSpec, d_model: int, patch_len: int = 1):
        super().__init__()
        self.n_features = inputs.n_features
        self.patch_len = patch_len
        self.proj = nn.Conv1d(inputs.n_features, d_model, kernel_size=patch_len)
        self.symbols = None
        if inputs.symbol_dim > 0:
            self.symbols = SymbolEmbedding(inputs.n_symbols, inputs.symbol_dim, inputs.symbol_dropout)
            self.symbol_proj = nn.Linear(inputs.symbol_dim, d_model)

    def forward(self, x: torch.Tensor, symbol_ids: torch.Tensor | None) -> torch.Tensor:
        B, T, F_ = x.shape
        if F_ != self.n_features:
            raise ValueError(f"backbone built for {self.n_features} features was given {F_}")
        h = F.pad(x.transpose(1, 2), (self.patch_len - 1, 0))  # (B, F, T + P - 1), left pad only
        h = self.proj(h).transpose(1, 2)  # (B, T, D)
        if self.symbols is not None:
            h = h + self.symbol_proj(self.symbols(symbol_ids, B, x.device))[:, None, :]  # (B, 1, D)
        return h


class RotaryEmbedding(nn.Module):
    """cos/sin tables that rotate query/key pairs by an angle proportional to their position."""

    def __init__(self, head_dim: int, base: float = 10_000.0):
        super().__init__()
        if head_dim % 2:
            raise ValueError(f"rotary embedding needs an even head dimension, got {head_dim}")
        inv_freq = base ** (-torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim)
        self.register_buffer("inv_freq", inv_freq, persistent=False)  # (Dh/2,)

    def forward(self, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        angles = torch.outer(positions.float(), self.inv_freq)  # (T, Dh/2)
        angles = torch.cat([angles, angles], dim=-1)  # (T, Dh)
        return angles.cos(), angles.sin()


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate (B, H, T, Dh) by the tables of `RotaryEmbedding` (the 'rotate half' form)."""
    x1, x2 = x.chunk(2, dim=-1)
    rotated = torch.cat([-x2, x1], dim=-1)
    return (x * cos + rotated * sin).to(x.dtype)


class CausalSelfAttention(nn.Module):
    """Multi-head causal self-attention with rotary positions, fused SDPA kernel."""

    def __init__(self, d_model: int, n_heads: int, dropout: float = 0.0, rope_base: float = 10_000.0):
        super().__init__()
        if d_model % n_heads:
            raise ValueError(f"d_model {d_model} is not divisible by n_heads {n_heads}")
        self.n_heads = n_heads
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.out = nn.Linear(d_model, d_model)
        self.rotary = RotaryEmbedding(d_model // n_heads, rope_base)
        self.dropout = dropout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, D = x.shape
        qkv = self.qkv(x).view(B, T, 3, self.n_heads, D // self.n_heads)  # (B, T, 3, H, Dh)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)  # (B, H, T, Dh) each
        cos, sin = self.rotary(torch.arange(T, device=x.device))
        q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)
        y = F.scaled_dot_product_attention(q, k, v, dropout_p=self.dropout if self.training else 0.0, is_causal=True)
        return self.out(y.transpose(1, 2).reshape(B, T, D))  # (B, T, D)


class FeedForward(nn.Module):
    """Position-wise two-layer MLP."""

    def __init__(self, d_model: int, d_hidden: int, dropout: float = 0.0):
        super().__init__()
        self.up = nn.Linear(d_model, d_hidden)
        self.down = nn.Linear(d_hidden, d_model)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.down(F.gelu(self.up(x))))


class DilatedCausalConv(nn.Module):
    """Depthwise convolution over time reading bars t, t-d, ..., t-(k-1)d, then a pointwise map."""

    def __init__(self, d_model: int, kernel_size: int, dilation: int, dropout: float = 0.0):
        super().__init__()
        self.left_pad = (kernel_size - 1) * dilation
        self.depthwise = nn.Conv1d(d_model, d_model, kernel_size, dilation=dilation, groups=d_model)
        self.pointwise = nn.Linear(d_model, d_model)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.pad(x.transpose(1, 2), (self.left_pad, 0))  # (B, D, T + pad), past side only
        h = self.depthwise(h).transpose(1, 2)  # (B, T, D)
        return self.dropout(self.pointwise(F.gelu(h)))


class DiagonalSSM(nn.Module):
    """Per-channel diagonal linear state space, applied as a causal convolution via FFT.

    Continuous time: x'(s) = A x(s) + B u(s), y = 2 Re(C x) + D u, with A diagonal complex,
    Re(A) < 0 (stable by construction: Re(A) = -exp(log_neg_re)). Zero-order hold with a learned
    step dt gives A_bar = exp(dt A), B_bar = (A_bar - 1) / A * B, and the unrolled recurrence is
    the convolution kernel K[l] = 2 Re(C A_bar^l B_bar), computed for all l at once (Vandermonde)
    and applied with an FFT of length 2T: O(N T + T log T) per channel, every bar in parallel.
    Initialisation is S4D-Lin: A_n = -1/2 + i pi n, B = 1, dt log-uniform in [dt_min, dt_max].
    """

    def __init__(self, channels: int, d_state: int, dt_min: float = 1e-3, dt_max: float = 1e-1):
        super().__init__()
        log_dt = torch.rand(channels) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min)
        self.log_dt = nn.Parameter(log_dt)  # (C,)
        self.log_neg_re = nn.Parameter(torch.full((channels, d_state), math.log(0.5)))  # (C, N)
        self.im = nn.Parameter(math.pi * torch.arange(d_state, dtype=torch.float32).repeat(channels, 1))  # (C, N)
        self.c = nn.Parameter(torch.randn(channels, d_state, 2) * math.sqrt(0.5))  # (C, N, re/im)
        self.skip = nn.Parameter(torch.ones(channels))  # (C,) the D term

    def _dt_a(self) -> tuple[torch.Tensor, torch.Tensor]:
        a = torch.complex(-torch.exp(self.log_neg_re), self.im)  # (C, N)
        return a, a * torch.exp(self.log_dt)[:, None]  # A and dt * A, (C, N)

    def discretised(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(A_bar, B_bar, C), each complex (C, N), of the zero-order-hold recurrence."""
        a, dt_a = self._dt_a()
        a_bar = torch.exp(dt_a)
        b_bar = (a_bar - 1) / a  # B = 1: its scale is absorbed into C
        return a_bar, b_bar, torch.view_as_complex(self.c)

    def kernel(self, length: int) -> torch.Tensor:
        """K (C, L): the response at lag l to a unit input.

        A_bar ** l = exp(l dt Re A) (cos(l dt Im A) + i sin(l dt Im A)), written with real
        exp/cos/sin: torch's complex exp is slower on CPU (and inductor cannot compile complex ops).
        """
        _, dt_a = self._dt_a()
        _, b_bar, c = self.discretised()
        w = c * b_bar  # (C, N) complex weight of each mode
        steps = torch.arange(length, device=dt_a.device, dtype=torch.float32)
        decay = torch.exp(dt_a.real[..., None] * steps)  # (C, N, L)
        angle = dt_a.imag[..., None] * steps  # (C, N, L)
        # Re(w A_bar ** l) = decay (Re w cos - Im w sin), summed over modes. Broadcast, not einsum:
        # the einsum's small batched matmuls are slower on CPU.
        modes = decay * (w.real[..., None] * torch.cos(angle) - w.imag[..., None] * torch.sin(angle))
        return 2 * modes.sum(dim=1)

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        B, T, C = u.shape
        dtype = u.dtype
        with torch.autocast(device_type=u.device.type, enabled=False):  # FFTs stay in float32
            u32 = u.float().transpose(1, 2)  # (B, C, T)
            k_f = torch.fft.rfft(self.kernel(T), n=2 * T)  # (C, T + 1); length 2T: no wrap-around
            y = torch.fft.irfft(torch.fft.rfft(u32, n=2 * T) * k_f, n=2 * T)[..., :T]  # (B, C, T)
            y = y + u32 * self.skip[:, None]
        return y.transpose(1, 2).to(dtype)  # (B, T, C)


class GatedSSM(nn.Module):
    """x -> (u, z); y = SSM(u) * silu(z) -> out: a diagonal SSM inside a multiplicative gate."""

    def __init__(self, d_model: int, d_state: int, expand: int = 1, dropout: float = 0.0,
                 dt_min: float = 1e-3, dt_max: float = 1e-1):
        super().__init__()
        inner = expand * d_model
        self.in_proj = nn.Linear(d_model, 2 * inner)
        self.ssm = DiagonalSSM(inner, d_state, dt_min, dt_max)
        self.out_proj = nn.Linear(inner, d_model)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        u, z = self.in_proj(x).chunk(2, dim=-1)  # (B, T, E) each
        return self.dropout(self.out_proj(F.gelu(self.ssm(u)) * F.silu(z)))


class GatedResidualNetwork(nn.Module):
    """TFT's GRN: LayerNorm(skip(a) + GLU(W1 ELU(W2 a + W3 c))), c an optional context."""

    def __init__(self, d_in: int, d_hidden: int, d_out: int | None = None, d_context: int = 0,
                 dropout: float = 0.0):
        super().__init__()
        d_out = d_out or d_in
        self.skip = nn.Linear(d_in, d_out) if d_in != d_out else nn.Identity()
        self.fc_in = nn.Linear(d_in, d_hidden)
        self.fc_context = nn.Linear(d_context, d_hidden, bias=False) if d_context else None
        self.fc_gate = nn.Linear(d_hidden, 2 * d_out)  # value and gate halves of the GLU
        self.dropout = nn.Dropout(dropout)
        self.norm = nn.LayerNorm(d_out)

    def forward(self, a: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        h = self.fc_in(a)
        if context is not None and self.fc_context is not None:
            h = h + self.fc_context(context)  # context shaped to broadcast, e.g. (B, 1, C)
        h = self.dropout(self.fc_gate(F.elu(h)))
        return self.norm(self.skip(a) + F.glu(h, dim=-1))


class MoEFeedForward(nn.Module):
    """A bank of expert MLPs; each token runs through its top-k experts only (dropless).

    Tokens are sorted by chosen expert and each expert runs once on its own rows, so the expert
    compute is k x (one expert) per token whatever the number of experts. Returns the output and
    the balancing loss E * sum_e f_e P_e (f_e: share of assignments to e, P_e: mean router
    probability of e), which is 1 for a perfectly balanced router.
    """

    def __init__(self, d_model: int, d_hidden: int, n_experts: int, top_k: int, dropout: float = 0.0):
        super().__init__()
        if not 1 <= top_k <= n_experts:
            raise ValueError(f"top_k must be in [1, n_experts={n_experts}], got {top_k}")
        self.top_k = top_k
        self.router = nn.Linear(d_model, n_experts, bias=False)
        self.experts = nn.ModuleList(FeedForward(d_model, d_hidden, dropout) for _ in range(n_experts))

    def route(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Router probabilities (N, E), chosen experts (N, k) and their renormalised gates (N, k)."""
        probs = self.router(x).float().softmax(dim=-1)  # (N, E)
        top_p, top_e = probs.topk(self.top_k, dim=-1)  # (N, k)
        return probs, top_e, top_p / top_p.sum(dim=-1, keepdim=True)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        shape = x.shape
        tokens = x.reshape(-1, shape[-1])  # (N, D)
        probs, top_e, gates = self.route(tokens)
        flat_expert = top_e.reshape(-1)  # (N*k,) assignment a belongs to token a // k
        order = torch.argsort(flat_expert, stable=True)
        counts = torch.bincount(flat_expert, minlength=len(self.experts))  # (E,)
        out = torch.zeros_like(tokens)
        for expert, chunk in zip(self.experts, order.split(counts.tolist())):
            if chunk.numel() == 0:
                continue
            rows = chunk // self.top_k  # the tokens sent to this expert
            y = expert(tokens[rows]) * gates.reshape(-1)[chunk, None].to(tokens.dtype)  # (n_e, D)
            out = out.index_add(0, rows, y.to(out.dtype))
        share = counts.float() / flat_expert.numel()  # f_e, no gradient (counts)
        balance = len(self.experts) * torch.sum(share * probs.mean(dim=0))
        return out.reshape(shape), balance
