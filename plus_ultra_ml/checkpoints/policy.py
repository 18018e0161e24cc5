"""`policy.pt`: a PPO policy's parts, rebuilt from the file alone (rl/trained.py makes them a policy again).

The file (format.py: atomic write, weights_only read, lineage embedded and beside it) holds

    format, version, kind   "plus_ultra.policy", 1, "ppo_policy"
    model                   models.spec.model_spec(net): the network PPO trained (backbone, policy
                            and value heads; its position head is still the supervised one)
    state_proj              the weight of W_s (rl/policy.py), (D, 1 + K)
    env                     what the observation and reward were: recent_pnl_bars, costs, shaping
    feature_names, scaler, windows   as in the supervised model.pt (supervised.py)
    lineage                 LineageRecord.to_dict(), parent = the supervised checkpoint

and `policy.lineage.json` beside it. It is deliberately not a "plus_ultra.checkpoint": the policy is
stateful (it reads its own position and recent PnL), so `supervised.load_checkpoint` refuses it
instead of silently serving the supervised position head inside it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from plus_ultra_ml.checkpoints.format import POLICY_FORMAT, load_torch, write_payload
from plus_ultra_ml.data.windows import RobustScaler
from plus_ultra_ml.errors import PlusUltraError
from plus_ultra_ml.lineage import LineageRecord, plain
from plus_ultra_ml.models.network import PlusUltraNet
from plus_ultra_ml.models.spec import ModelSpecError, build_from_spec, model_spec

POLICY_VERSION = 1
POLICY_KIND = "ppo_policy"


class PolicyCheckpointError(PlusUltraError):
    """A policy file is missing, unreadable, or not a Plus Ultra PPO policy."""


@dataclass(frozen=True)
class PolicyFile:
    """What a `policy.pt` holds: the trained network (weights as PPO left them), W_s, the env record."""

    net: PlusUltraNet
    state_proj: torch.Tensor  # (D, 1 + K)
    env: Mapping[str, Any]  # {"recent_pnl_bars", "costs", "risk_shaping", "risk_coef", "dsr_eta"}
    scaler: RobustScaler
    feature_names: list[str]
    window: int
    horizon: int
    lineage: LineageRecord
    path: Path


def write_policy(path: str | Path, *, net: PlusUltraNet, state_proj: torch.Tensor, env: Mapping[str, Any],
                 feature_names: Sequence[str], scaler: RobustScaler, window: int, horizon: int,
                 lineage: LineageRecord) -> Path:
    """Write the artifact atomically, then its lineage sidecar (which records the file's sha256)."""
    return write_payload(path, {
        "format": POLICY_FORMAT,
        "version": POLICY_VERSION,
        "kind": POLICY_KIND,
        "model": model_spec(net),
        "state_proj": state_proj.detach().cpu().clone(),
        "env": plain(env),
        "feature_names": [str(f) for f in feature_names],
        "scaler": plain(scaler.to_dict()),
        "windows": {"window": int(window), "horizon": int(horizon)},
    }, lineage)


def read_policy(path: str | Path) -> PolicyFile:
    """The parts of a `policy.pt` (weights_only: no code is unpickled)."""
    path = Path(path)
    payload = load_torch(path, PolicyCheckpointError, "policy checkpoint")
    if not isinstance(payload, Mapping) or payload.get("format") != POLICY_FORMAT \
            or payload.get("version") != POLICY_VERSION:
        found = payload.get("format") if isinstance(payload, Mapping) else type(payload).__name__
        raise PolicyCheckpointError(
            f"{path} is not a {POLICY_FORMAT} v{POLICY_VERSION} file (found {found!r}); pass the policy.pt written "
            "by `plus-ultra finetune` or the ppo_policy asset"
        )
    missing = [k for k in ("model", "state_proj", "env", "feature_names", "scaler", "windows", "lineage")
               if k not in payload]
    if missing:
        raise PolicyCheckpointError(f"{path} is a {POLICY_FORMAT} file without {missing}: it is truncated or was not "
                                    "written by `plus-ultra finetune`; fine-tune again")
    try:
        net = build_from_spec(payload["model"])
    except ModelSpecError as error:
        raise PolicyCheckpointError(f"{path}: {error}") from None
    return PolicyFile(
        net=net, state_proj=payload["state_proj"], env=dict(payload["env"]),
        scaler=RobustScaler.from_dict(payload["scaler"]), feature_names=list(payload["feature_names"]),
        window=int(payload["windows"]["window"]), horizon=int(payload["windows"]["horizon"]),
        lineage=LineageRecord.from_dict(payload["lineage"]), path=path,
    )
