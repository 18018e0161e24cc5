"""A trained PPO policy: the parts of a `policy.pt` (checkpoints/policy.py) made an actor-critic again.

`load_policy(path)` rebuilds the `ActorCritic` (weights as PPO left them, W_s, the environment it
was trained in) and `TrainedPolicy.positions` runs it deterministically on windowed data.
`env_record` / `env_from_record` turn the environment config into the plain record the file
stores and back.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from plus_ultra_ml.checkpoints.policy import PolicyCheckpointError, read_policy
from plus_ultra_ml.config import CostConfig
from plus_ultra_ml.data.windows import RobustScaler, WindowedData
from plus_ultra_ml.lineage import LineageRecord
from plus_ultra_ml.rl.env import EnvConfig
from plus_ultra_ml.rl.evaluate import policy_positions
from plus_ultra_ml.rl.policy import ActorCritic, RowEncoder


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
        policy's scaler, features and window (checkpoints/windows.py `policy_windows`)."""
        if list(data.feature_names) != list(self.feature_names) or data.window != self.window:
            raise PolicyCheckpointError(
                f"the windowed data ({len(data.feature_names)} features, window {data.window}) does not match the "
                f"policy's ({len(self.feature_names)} features, window {self.window}); window it with the policy's "
                "feature_names, scaler and window"
            )
        encoder = RowEncoder.of(self.policy.net.backbone, data, batch_size)
        return policy_positions(self.policy, encoder, data, segment, self.env).to_series(data)


def env_record(env: EnvConfig) -> dict[str, Any]:
    """The environment as the policy file stores it (plain data)."""
    return {"recent_pnl_bars": env.recent_pnl_bars, "costs": env.costs.model_dump(), "risk_shaping": env.risk_shaping,
            "risk_coef": env.risk_coef, "dsr_eta": env.dsr_eta}


def env_from_record(record: Mapping[str, Any]) -> EnvConfig:
    return EnvConfig(CostConfig(**record["costs"]), int(record["recent_pnl_bars"]), record["risk_shaping"],
                     float(record["risk_coef"]), float(record["dsr_eta"]))


def load_policy(path: str | Path) -> TrainedPolicy:
    """Rebuild a `policy.pt` from the file alone (weights_only: no code is unpickled)."""
    saved = read_policy(path)
    env = env_from_record(saved.env)
    policy = ActorCritic(saved.net, env.state_dim, freeze="frozen")  # a copy of the net, heads re-set
    with torch.no_grad():
        policy.net.load_state_dict(saved.net.state_dict())
        policy.state_proj.weight.copy_(saved.state_proj)
    policy.requires_grad_(False)
    return TrainedPolicy(
        policy=policy.eval(), env=env, scaler=saved.scaler, feature_names=saved.feature_names,
        window=saved.window, horizon=saved.horizon, lineage=saved.lineage, path=saved.path,
    )
