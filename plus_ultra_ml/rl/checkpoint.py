"""The PPO policy artifact: one file that rebuilds the policy and its inputs, with its lineage.

`policy.pt` (written atomically, read with ``torch.load(weights_only=True)``: plain containers and
tensors only) holds

    format, version, kind   "plus_ultra.policy", 1, "ppo_policy"
    model                   models.spec.model_spec(net): the network PPO trained (backbone, policy
                            and value heads; its position head is still the supervised one)
    state_proj              the weight of W_s (rl/policy.py), (D, 1 + K)
    env                     what the observation and reward were: recent_pnl_bars, costs, shaping
    feature_names, scaler, windows   as in the supervised model.pt (training/checkpoint.py)
    lineage                 LineageRecord.to_dict(), parent = the supervised checkpoint

and `policy.lineage.json` beside it. It is deliberately not a "plus_ultra.checkpoint": the policy is
stateful (it reads its own position and recent PnL), so `training.checkpoint.load_checkpoint`
refuses it instead of silently serving the supervised position head inside it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from plus_ultra_ml.artifacts import atomic_path
from plus_ultra_ml.config import CostConfig
from plus_ultra_ml.data.windows import RobustScaler, WindowedData
from plus_ultra_ml.errors import PlusUltraError
from plus_ultra_ml.lineage import LineageRecord, plain, write_sidecar
from plus_ultra_ml.models.spec import ModelSpecError, build_from_spec, model_spec
from plus_ultra_ml.rl.env import EnvConfig
from plus_ultra_ml.rl.evaluate import policy_positions
from plus_ultra_ml.rl.policy import ActorCritic, RowEncoder

POLICY_FORMAT = "plus_ultra.policy"
POLICY_VERSION = 1
POLICY_KIND = "ppo_policy"


class PolicyCheckpointError(PlusUltraError):
    """A policy file is missing, unreadable, or not a Plus Ultra PPO policy."""


@dataclass(frozen=True)
class TrainedPolicy:
    """A loaded policy artifact: the actor-critic (eval mode) and everything needed to feed it."""

    policy: ActorCritic
    env: EnvConfig
    scaler: RobustScaler
    feature_names: list[str]
    window: int
    horizon: int
    lineage: LineageRecord
    path: Path

    def positions(self, data: WindowedData, segment: str = "test", batch_size: int = 1024) -> pd.Series:
        """The deterministic policy's positions on every run of `segment`'s decision bars, each run
        starting flat, on the panel's (symbol, timestamp) index. `data` must be windowed with this
        policy's scaler, features and window (rl/fit.py `policy_windows`)."""
        if list(data.feature_names) != list(self.feature_names) or data.window != self.window:
            raise PolicyCheckpointError(
                f"the windowed data ({len(data.feature_names)} features, window {data.window}) does not match the "
                f"policy's ({len(self.feature_names)} features, window {self.window}); window it with the policy's "
                "feature_names, scaler and window"
            )
        encoder = RowEncoder(self.policy, torch.from_numpy(data.features), torch.from_numpy(data.symbol_ids).long(),
                             data.window, batch_size)
        return policy_positions(self.policy, encoder, data, segment, self.env).to_series(data)


def _env_record(env: EnvConfig) -> dict[str, Any]:
    return {"recent_pnl_bars": env.recent_pnl_bars, "costs": env.costs.model_dump(), "risk_shaping": env.risk_shaping,
            "risk_coef": env.risk_coef, "dsr_eta": env.dsr_eta}


def save_policy(path: str | Path, policy: ActorCritic, *, env: EnvConfig, feature_names: Sequence[str],
                scaler: RobustScaler, window: int, horizon: int, lineage: LineageRecord) -> Path:
    """Write the artifact atomically, then its lineage sidecar (which records the file's sha256)."""
    path = Path(path)
    payload = {
        "format": POLICY_FORMAT,
        "version": POLICY_VERSION,
        "kind": POLICY_KIND,
        "model": model_spec(policy.net),
        "state_proj": policy.state_proj.weight.detach().cpu().clone(),
        "env": _env_record(env),
        "feature_names": [str(f) for f in feature_names],
        "scaler": plain(scaler.to_dict()),
        "windows": {"window": int(window), "horizon": int(horizon)},
        "lineage": lineage.to_dict(),
    }
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    write_sidecar(lineage, path)
    return path


def load_policy(path: str | Path) -> TrainedPolicy:
    """Rebuild a `policy.pt` from the file alone (weights_only: no code is unpickled)."""
    path = Path(path)
    if not path.is_file():
        raise PolicyCheckpointError(f"policy checkpoint {path} does not exist")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises several kinds for foreign or truncated files
        raise PolicyCheckpointError(f"{path} is not a readable torch checkpoint (weights_only load): {error}") from None
    if not isinstance(payload, Mapping) or payload.get("format") != POLICY_FORMAT \
            or payload.get("version") != POLICY_VERSION:
        found = payload.get("format") if isinstance(payload, Mapping) else type(payload).__name__
        raise PolicyCheckpointError(
            f"{path} is not a {POLICY_FORMAT} v{POLICY_VERSION} file (found {found!r}); pass the policy.pt written "
            "by `plus-ultra finetune` or the ppo_policy asset"
        )
    try:
        net = build_from_spec(payload["model"])
    except ModelSpecError as error:
        raise PolicyCheckpointError(f"{path}: {error}") from None
    record = payload["env"]
    env = EnvConfig(CostConfig(**record["costs"]), int(record["recent_pnl_bars"]), record["risk_shaping"],
                    float(record["risk_coef"]), float(record["dsr_eta"]))
    policy = ActorCritic(net, env.state_dim, freeze="frozen")
    with torch.no_grad():
        policy.net.load_state_dict(payload["model"]["state_dict"])  # ActorCritic's init re-set the heads
        policy.state_proj.weight.copy_(payload["state_proj"])
    policy.requires_grad_(False)
    return TrainedPolicy(
        policy=policy.eval(), env=env, scaler=RobustScaler.from_dict(payload["scaler"]),
        feature_names=list(payload["feature_names"]), window=int(payload["windows"]["window"]),
        horizon=int(payload["windows"]["horizon"]), lineage=LineageRecord.from_dict(payload["lineage"]), path=path,
    )
