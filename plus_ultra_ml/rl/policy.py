"""The PPO agent: the supervised network's backbone and position head, turned into a policy and a critic.

Action distribution: a squashed Gaussian (models/heads.py). The pre-tanh action u ~ N(mean, std)
with a state-independent std, and the target position is tanh(u) in (-1, 1); the deterministic
policy (evaluation, serving) is tanh(mean). Log-probabilities use the stored pre-tanh sample.

    h        = backbone(window ending at t)[:, -1]          (B, D) the supervised model's state
    h'       = h + W_s [p[t-1], recent PnL]                 W_s zero at the start
    mean     = policy_head.mean(h')                         starts as a copy of position_head.linear
    value    = value_head(h')                               a fresh (zero) head

So at the start tanh(mean) equals the supervised position head's output exactly, and PPO moves the
policy from there. What trains (RLConfig.freeze): "frozen", the heads and W_s only, with the
backbone states computed once per row (models/encoder.py); "partial", also the backbone's last
`partial_units` units (top-level modules in registration order, each block of a ModuleList one
unit; hybrid_transformer: the final norm and the last block for 2); "full", every weight.
The backbone always runs in eval mode (no dropout, no symbol dropout): a log-probability must be
the same function of the weights in the rollout and in the update. It may live on an accelerator
(`backbone_to`, RLConfig.device); its states come back to the CPU, where the heads and the
environment's per-bar steps run. States come only from `models.encoder.RowEncoder` (re-exported
here): cached per row for the weights they were computed with, dropped the moment those change.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Iterator
from typing import Literal, NamedTuple

import torch
from torch import Tensor, nn

from plus_ultra_ml.models.encoder import RowEncoder
from plus_ultra_ml.models.heads import LOG_STD_MAX, LOG_STD_MIN
from plus_ultra_ml.models.network import PlusUltraNet

__all__ = ["ActorCritic", "Freeze", "PolicyOutput", "RowEncoder", "backbone_units"]

logger = logging.getLogger(__name__)

Freeze = Literal["frozen", "partial", "full"]


class PolicyOutput(NamedTuple):
    mean: Tensor  # (B, 1) pre-tanh mean
    log_std: Tensor  # (B, 1)
    value: Tensor  # (B,) in optimisation reward units


def backbone_units(backbone: nn.Module) -> list[nn.Module]:
    """Top-level modules in registration order, each item of a ModuleList a unit; only those with weights."""
    units: list[nn.Module] = []
    for child in backbone.children():
        units.extend(child if isinstance(child, nn.ModuleList) else [child])
    return [unit for unit in units if any(True for _ in unit.parameters())]


class ActorCritic(nn.Module):
    """Policy and value on a `PlusUltraNet` (see the module docstring). The net is copied, never changed in place."""

    def __init__(self, net: PlusUltraNet, state_dim: int, freeze: Freeze = "frozen", partial_units: int = 2,
                 init_log_std: float | None = None):
        super().__init__()
        self.net = copy.deepcopy(net)
        self.state_dim = state_dim
        self.freeze = freeze
        D = self.net.backbone.d_model
        self.state_proj = nn.Linear(state_dim, D, bias=False)
        with torch.no_grad():
            nn.init.zeros_(self.state_proj.weight)
            head = self.net.policy_head
            head.mean.weight.copy_(self.net.position_head.linear.weight)
            head.mean.bias.copy_(self.net.position_head.linear.bias)
            if init_log_std is not None:
                head.log_std.fill_(float(init_log_std))
            nn.init.zeros_(self.net.value_head.linear.weight)
            nn.init.zeros_(self.net.value_head.linear.bias)
        self._set_trainable(freeze, partial_units)
        self.net.eval()

    # ---- what trains ---------------------------------------------------------------------
    def _set_trainable(self, freeze: Freeze, partial_units: int) -> None:
        self.net.requires_grad_(False)
        for module in (self.net.policy_head, self.net.value_head, self.state_proj):
            module.requires_grad_(True)
        if freeze == "full":
            self.net.backbone.requires_grad_(True)
        elif freeze == "partial":
            units = backbone_units(self.net.backbone)
            for unit in units[-partial_units:]:
                unit.requires_grad_(True)
        elif freeze != "frozen":
            raise ValueError(f"freeze must be frozen, partial or full, got {freeze!r}")

    @property
    def backbone_trains(self) -> bool:
        return any(p.requires_grad for p in self.net.backbone.parameters())

    def head_parameters(self) -> Iterator[nn.Parameter]:
        for module in (self.net.policy_head, self.net.value_head, self.state_proj):
            yield from module.parameters()

    def backbone_parameters(self) -> Iterator[nn.Parameter]:
        return (p for p in self.net.backbone.parameters() if p.requires_grad)

    def train(self, mode: bool = True) -> ActorCritic:
        super().train(mode)
        self.net.eval()  # never dropout: see the module docstring
        return self

    # ---- forward pieces ------------------------------------------------------------------
    def backbone_to(self, device: str | torch.device) -> ActorCritic:
        """Put the backbone (only) on `device`: "cpu", "cuda", "cuda:1", ..."""
        self.net.backbone.to(device)
        return self

    def forward(self, hidden: Tensor, state: Tensor) -> PolicyOutput:
        """hidden (B, D) backbone states, state (B, 1 + K) `Observation.state()` -> mean, log-std, value."""
        h = hidden + self.state_proj(state)  # (B, D)
        mean, log_std = self.net.policy_head(h)  # (B, 1) each
        return PolicyOutput(mean, log_std, self.net.value_head(h))

    def deterministic(self, hidden: Tensor, state: Tensor) -> Tensor:
        """The evaluation action tanh(mean): (B,) positions in (-1, 1)."""
        return torch.tanh(self(hidden, state).mean[:, 0])

    def supervised_position(self, hidden: Tensor) -> Tensor:
        """The supervised position head on the same states (B,): what PPO starts from and is compared with."""
        return self.net.position_head(hidden[:, None, :])[:, 0]

    def std(self) -> float:
        return float(self.net.policy_head.log_std.detach().clamp(LOG_STD_MIN, LOG_STD_MAX).exp().mean())
