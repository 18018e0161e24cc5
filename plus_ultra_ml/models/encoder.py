"""The backbone state of the window ending at each data row, computed once per weights: the one road.

A fold reads every (segment, bar) state of one checkpoint many times: the supervised predictions
(train, validation, test), PPO's rollouts on the training bars, its validation walk after every
update, its test walk and the head positions beside it, the serving replay. `RowEncoder` is the
only thing those consumers call to get a state; it runs the backbone on the window ending at a row
once (batched, no gradient, eval mode) and keeps the result:

    features   (N, F) float32  the scaled rows of one `WindowedData` (its `.features`)
    symbol_ids (N,)   long     data symbol codes (the model's ids are codes + 1; 0 = unknown)
    states     (N, D) float32  on the CPU, filled lazily; row t holds backbone(rows t-T+1..t)[-1]

At universe size (500 symbols x 2,520 daily bars, d_model 32) the states are 1.26M x 32 float32 =
161 MB, plus a (N,) bool mask of the rows filled.

Stale states cannot be used. The cache belongs to the weights it was computed with: a CPU copy of
the backbone's parameters and buffers is kept beside it, and every call compares the backbone's
current tensors with that copy (exact `torch.equal`, O(parameters), tiny next to encoding a
batch); on any difference the cache is dropped before anything is read. So an optimiser step on a
trained backbone (RLConfig.freeze partial or full), `load_state_dict` of other weights or any
in-place edit re-encodes, while reloading the same weights does not. `adopt` hands the cache to
another module holding the same weights on the same rows (the deep copy PPO makes of a loaded
checkpoint): it is shared only when both the weights and the windowed rows are equal, and then
both read the newer rows array, so an equal older copy is not kept alive by the encoder.

`grad=True` is the one uncached path: a differentiable pass for a PPO minibatch when the backbone
trains. `put` stores states a caller already computed with this backbone on these windows (the
supervised held-out pass needs the whole window's outputs for its loss, and its last bar is
exactly this state), after the same weights check.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

import numpy as np
import torch
from torch import Tensor, nn

logger = logging.getLogger(__name__)


def _weights(backbone: nn.Module) -> dict[str, Tensor]:
    return {name: tensor.detach() for name, tensor in backbone.state_dict(keep_vars=True).items()}


def _same(a: dict[str, Tensor], b: dict[str, Tensor]) -> bool:
    if a.keys() != b.keys():
        return False
    for name, x in a.items():
        y = b[name]
        if x.shape != y.shape or x.dtype != y.dtype or not torch.equal(x.to(y.device), y):
            return False
    return True


@contextlib.contextmanager
def _eval(module: nn.Module) -> Iterator[None]:
    """Eval mode for the pass (no dropout, no symbol dropout), the caller's mode restored after."""
    was = module.training
    module.eval()
    try:
        yield
    finally:
        module.train(was)


class RowEncoder:
    """Backbone states (..., D) of the windows ending at data rows (see the module docstring)."""

    def __init__(self, backbone: nn.Module, features: Tensor, symbol_ids: Tensor, window: int, batch_size: int):
        self.backbone = backbone
        self.features = features  # (N, F)
        self.symbol_ids = symbol_ids.long()  # (N,) data codes
        self.window = window
        self.batch_size = batch_size
        self.d_model = int(backbone.d_model)
        self._states: Tensor | None = None  # (N, D)
        self._filled: Tensor | None = None  # (N,) bool
        self._weights: dict[str, Tensor] | None = None  # CPU copy of the weights the states belong to
        self.encoded_windows = 0  # windows run through the backbone by this encoder (a cost counter)

    @classmethod
    def of(cls, backbone: nn.Module, data, batch_size: int) -> RowEncoder:
        """An encoder over a `WindowedData`'s rows."""
        return cls(backbone, torch.from_numpy(data.features), torch.from_numpy(data.symbol_ids), data.window,
                   batch_size)

    # ---- the cache and its weights ---------------------------------------------------------
    def _valid(self) -> bool:
        """True when the cached states belong to the backbone's current weights; else drop them."""
        if self._weights is not None and _same(_weights(self.backbone), self._weights):
            return True
        self._states = self._filled = self._weights = None
        return False

    def _ensure(self) -> None:
        if not self._valid():
            self._states = self.features.new_zeros(len(self.features), self.d_model, dtype=torch.float32)
            self._filled = torch.zeros(len(self.features), dtype=torch.bool)
            self._weights = {k: v.to("cpu", copy=True) for k, v in _weights(self.backbone).items()}

    @property
    def cached_rows(self) -> int:
        """Rows whose state is cached for the current weights."""
        return int(self._filled.sum()) if self._valid() else 0

    def adopt(self, backbone: nn.Module, data, batch_size: int | None = None) -> RowEncoder:
        """An encoder of `backbone` over `data`'s rows (`batch_size` windows per pass, default this one's),
        sharing this cache when the weights and rows are equal."""
        other = RowEncoder.of(backbone, data, batch_size or self.batch_size)
        if not self._valid():
            why = "this encoder holds no states for its backbone's current weights"
        elif not _same(_weights(backbone), self._weights):
            why = "the other backbone's weights differ"
        elif self.window != other.window or self.features.shape != other.features.shape or not (
                self.features.data_ptr() == other.features.data_ptr()
                or np.array_equal(self.features.numpy(), other.features.numpy(), equal_nan=True)):
            why = "the windowed rows differ"
        elif not torch.equal(self.symbol_ids, other.symbol_ids):
            why = "the rows' symbols differ"
        else:
            other._states, other._filled = self._states, self._filled.clone()  # the states tensor is shared
            other._weights = self._weights
            # equal rows: both read the newer array, so the older copy (a fit's own windows) can be freed
            self.features, self.symbol_ids = other.features, other.symbol_ids
            return other
        logger.info("backbone states not reused (%s): encoding again", why)
        return other

    # ---- encoding --------------------------------------------------------------------------
    def _encode(self, rows: Tensor) -> Tensor:
        offsets = torch.arange(-self.window + 1, 1)
        windows = self.features[rows[:, None] + offsets]  # (B, T, F): rows t-T+1..t
        self.encoded_windows += len(rows)
        device = next(self.backbone.parameters()).device
        hidden = self.backbone(windows.to(device), (self.symbol_ids[rows] + 1).to(device))  # (B, T, D)
        # clone: a view of the last step would keep the whole (B, T, D) output alive (T x the memory)
        return hidden[:, -1].to(self.features.device).clone()  # (B, D)

    def _batched(self, rows: Tensor) -> Tensor:
        with torch.no_grad(), _eval(self.backbone):
            parts = [self._encode(rows[i : i + self.batch_size]) for i in range(0, len(rows), self.batch_size)]
        return torch.cat(parts) if parts else self.features.new_zeros(0, self.d_model)

    def __call__(self, rows: Tensor, grad: bool = False) -> Tensor:
        """rows (...,) long -> states (..., D). `grad`: one differentiable pass (a minibatch), not cached."""
        flat = torch.as_tensor(rows).reshape(-1).long()
        if grad:
            with _eval(self.backbone):
                return self._encode(flat).reshape(*rows.shape, -1)
        self._ensure()
        missing = torch.unique(flat[~self._filled[flat]])
        if len(missing):
            self._states[missing] = self._batched(missing)
            self._filled[missing] = True
        return self._states[flat].reshape(*rows.shape, -1)

    def put(self, rows: Tensor, states: Tensor) -> None:
        """Store (M, D) states this backbone computed (eval mode, no gradient) for the windows ending at `rows`."""
        self._ensure()
        rows = torch.as_tensor(rows).long()
        self._states[rows] = states.detach().to(self._states.device, torch.float32)
        self._filled[rows] = True
