"""On-policy rollouts and generalised advantage estimation (Schulman et al. 2016, GAE(lambda)).

A rollout is one batch of E fresh training episodes of L bars, stepped together. The backbone
states of every bar an episode will visit depend on its feature windows only, not on the actions,
so they are encoded in one batch before stepping (vectorisation, not look-ahead: the state of bar
t reads the window ending at t). Each step then samples tanh(u), u ~ N(mean, std), and the
environment pays the canonical net PnL. An episode ends on a time limit, not in a terminal state:
the value of the bar after its last one bootstraps the return.

Shapes: L steps x E episodes; `state` (L, E, 1 + K); `hidden` (L, E, D).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from plus_ultra_ml.models.heads import squashed_gaussian_sample
from plus_ultra_ml.rl.env import TradingEnv
from plus_ultra_ml.rl.policy import ActorCritic, RowEncoder


@dataclass
class Rollout:
    rows: Tensor  # (L, E) long: decision bar of each step
    symbols: Tensor  # (L, E) long: model symbol ids
    state: Tensor  # (L, E, 1 + K) float32: Observation.state()
    hidden: Tensor  # (L, E, D) backbone states used when acting (detached)
    pre_tanh: Tensor  # (L, E) the sampled u; the action is tanh(u)
    action: Tensor  # (L, E) positions held
    log_prob: Tensor  # (L, E) log density of the action when it was taken
    value: Tensor  # (L, E) critic's value when acting
    reward: Tensor  # (L, E) float32: optimisation reward (env reward x reward_scale)
    net_pnl: Tensor  # (L, E) float64: canonical net PnL, unscaled
    costs: Tensor  # (L, E) float64: trading + holding cost paid
    advantage: Tensor  # (L, E) GAE(lambda)
    returns: Tensor  # (L, E) value targets: advantage + value

    @property
    def size(self) -> int:
        return self.rows.numel()

    def flat(self, name: str) -> Tensor:
        value = getattr(self, name)
        return value.reshape(self.size, *value.shape[2:])


def gae(rewards: Tensor, values: Tensor, next_values: Tensor, dones: Tensor, gamma: float, lam: float) -> Tensor:
    """Advantages (L, E) of GAE(lambda).

    rewards, values: (L, E); next_values (L, E): the value of the state after each step (the
    bootstrap state after an episode's last step); dones (L, E) bool: an episode ended at this step,
    so no advantage flows back across it.
    """
    L = rewards.shape[0]
    advantages = torch.zeros_like(rewards)
    running = torch.zeros_like(rewards[0])
    delta = rewards + gamma * next_values - values  # (L, E) one-step TD errors
    carry = gamma * lam * (~dones).to(rewards.dtype)
    for t in range(L - 1, -1, -1):  # a backward scan over time; every episode at once
        running = delta[t] + carry[t] * running
        advantages[t] = running
    return advantages


@torch.no_grad()
def collect_rollout(env: TradingEnv, policy: ActorCritic, encoder: RowEncoder, *, n_envs: int, steps: int,
                    reward_scale: float, gamma: float, gae_lambda: float, generator: torch.Generator) -> Rollout:
    """E = n_envs fresh episodes of `steps` bars at random starts of the env's segment, sampled actions."""
    starts = env.sample_starts(n_envs, steps, generator)
    obs = env.reset(starts, steps)
    rows = env.episode_rows(bootstrap=True)  # (E, L + 1)
    hidden = encoder(rows)  # (E, L + 1, D)
    record: dict[str, list[Tensor]] = {k: [] for k in
                                       ("rows", "symbols", "state", "pre", "action", "logp", "value", "reward",
                                        "net", "costs", "done")}
    for t in range(steps):
        state = obs.state()
        out = policy(hidden[:, t], state)
        action, pre_tanh, log_prob = squashed_gaussian_sample(out.mean, out.log_std, generator)
        step = env.step(action[:, 0])
        for key, value in (("rows", obs.row), ("symbols", obs.symbol), ("state", state), ("pre", pre_tanh[:, 0]),
                           ("action", action[:, 0]), ("logp", log_prob), ("value", out.value),
                           ("reward", (step.reward * reward_scale).float()), ("net", step.pnl.net),
                           ("costs", step.pnl.trading_cost + step.pnl.holding_cost), ("done", step.done)):
            record[key].append(value)
        obs = step.next_obs
    bootstrap = policy(hidden[:, steps], obs.state()).value  # (E,) value of the bar after the last
    stack = {k: torch.stack(v) for k, v in record.items()}  # each (L, E, ...)
    values = stack["value"]
    next_values = torch.cat([values[1:], bootstrap[None]])
    advantage = gae(stack["reward"], values, next_values, stack["done"], gamma, gae_lambda)
    return Rollout(
        rows=stack["rows"], symbols=stack["symbols"], state=stack["state"],
        hidden=hidden[:, :steps].transpose(0, 1).contiguous(), pre_tanh=stack["pre"], action=stack["action"],
        log_prob=stack["logp"], value=values, reward=stack["reward"], net_pnl=stack["net"], costs=stack["costs"],
        advantage=advantage, returns=advantage + values,
    )
