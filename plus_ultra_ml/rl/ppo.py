"""Proximal Policy Optimisation (Schulman et al. 2017) of a trading policy, on-policy only.

`finetune(net, data, rl, costs, seed=...)` turns a supervised `PlusUltraNet` into a policy
(rl/policy.py: the position head becomes the policy mean, a fresh value head, frozen / partial /
full backbone) and runs `rl.updates` updates. Each update:

1. a rollout: `n_envs` fresh episodes of `steps_per_rollout` bars at random (symbol, start) of the
   training segment, actions sampled from the squashed Gaussian (rl/rollout.py), GAE(lambda);
2. `epochs` passes over the rollout in shuffled minibatches: the clipped surrogate objective,
   the value loss (clipped around the rollout's values when `value_clip` is set), an entropy
   bonus, advantages normalised per minibatch, gradients clipped to `max_grad_norm`; an update
   stops early when the approximate KL to the rollout policy exceeds 1.5 x `target_kl`;
   the learning rate decays linearly over updates when `anneal_lr`;
3. the deterministic policy (mean action) walks the validation segment and is scored by its
   equal-weight net Sharpe (rl/evaluate.py); the best policy so far by that number is kept
   (`rl.selection.candidate: best`), or the last update's (`last`). Whether the run's policy or
   the supervised head is handed on is decided afterwards, on validation only (rl/select.py).

Update 0 is the starting policy, which trades exactly like the supervised position head; with
`include_initial` it competes for "best", so a run that never beats the supervised head on
validation returns it unchanged (and says so: `PPOResult.improved`). Rewards are multiplied by a
positive constant for optimisation only (1 / std of training next-bar returns by default); every
number reported is in PnL units. Same seed, same result: every random draw comes from one
`torch.Generator` seeded with `seed`, nothing reads the global RNG.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from torch import nn

from plus_ultra_ml.config import CostConfig, RLConfig
from plus_ultra_ml.data.windows import WindowedData
from plus_ultra_ml.errors import PlusUltraError
from plus_ultra_ml.evaluation.heldout import segment_periods_per_year as periods_per_year
from plus_ultra_ml.models.heads import gaussian_entropy, squashed_gaussian_log_prob
from plus_ultra_ml.models.network import PlusUltraNet
from plus_ultra_ml.rl.env import EnvConfig, TradingEnv
from plus_ultra_ml.rl.evaluate import (
    CollapseReport,
    SegmentPositions,
    collapse_report,
    constant_positions,
    head_positions,
    policy_positions,
    score_positions,
)
from plus_ultra_ml.rl.policy import ActorCritic, RowEncoder
from plus_ultra_ml.rl.rollout import Rollout, collect_rollout
from plus_ultra_ml.threads import torch_threads

logger = logging.getLogger(__name__)

ADV_EPS = 1e-8
KL_STOP_FACTOR = 1.5  # stop once approx KL exceeds this times target_kl (as Stable-Baselines3 does)


@dataclass(frozen=True)
class UpdateRecord:
    """One row of the training history; update 0 is the starting policy (losses NaN)."""

    update: int
    lr: float
    reward_bps: float  # rollout: mean net PnL per episode-bar (basis points)
    cost_bps: float  # rollout: mean trading + holding cost per episode-bar (basis points)
    policy_loss: float
    value_loss: float
    entropy: float  # of the pre-tanh Gaussian
    approx_kl: float  # mean over the minibatches run
    clip_fraction: float
    explained_variance: float
    epochs_run: int
    early_stopped: bool
    std: float  # pre-tanh action std after the update
    val_sharpe_net: float
    val_mean_net_bps: float  # the deterministic policy's mean portfolio net PnL per validation bar
    val_turnover: float
    val_exposure: float
    val_position_std: float
    wall_s: float

    def to_dict(self) -> dict[str, float | int | bool]:
        return asdict(self)


@dataclass
class PPOResult:
    """The candidate policy (`rl.selection.candidate`: best by validation net Sharpe, or the last
    update), and how training went; `best_update` is the candidate's update number."""

    policy: ActorCritic  # the candidate's weights
    history: list[UpdateRecord]
    best_update: int
    validation: dict[str, dict[str, float]]  # "ppo" (best), "supervised", "buy_and_hold": score_positions
    collapse: CollapseReport  # of the best policy on validation
    reward_scale: float
    env_steps: int
    wall_time_s: float
    val_positions: SegmentPositions = field(repr=False, default=None)  # type: ignore[assignment]
    val_head_positions: SegmentPositions = field(repr=False, default=None)  # type: ignore[assignment]
    encoder: RowEncoder | None = field(repr=False, default=None)  # the run's states (models/encoder.py)

    @property
    def improved(self) -> bool:
        """PPO's best validation net Sharpe is strictly above the supervised position head's."""
        ppo, sup = self.validation["ppo"]["sharpe_net"], self.validation["supervised"]["sharpe_net"]
        return self.best_update > 0 and math.isfinite(ppo) and (not math.isfinite(sup) or ppo > sup)

    def metrics(self) -> dict[str, float]:
        """Flat numbers for lineage and metadata: val_<who>_<metric>, best_update, collapsed, ..."""
        out: dict[str, float] = {}
        for who, scores in self.validation.items():
            out.update({f"val_{who}_{k}": v for k, v in scores.items()})
        out.update({"best_update": float(self.best_update), "updates": float(len(self.history) - 1),
                    "improved": float(self.improved), "collapsed": float(self.collapse.collapsed),
                    "env_steps": float(self.env_steps), "reward_scale": self.reward_scale,
                    "wall_time_s": self.wall_time_s})
        return out


# --------------------------------------------------------------------------------------------
# one PPO update
# --------------------------------------------------------------------------------------------
def explained_variance(predicted: torch.Tensor, target: torch.Tensor) -> float:
    """1 - Var(target - predicted) / Var(target); NaN when the target is constant."""
    var = float(target.var())
    return float("nan") if var == 0 else 1.0 - float((target - predicted).var()) / var


def ppo_update(policy: ActorCritic, encoder: RowEncoder, rollout: Rollout, optimiser: torch.optim.Optimizer,
               rl: RLConfig, generator: torch.Generator) -> dict[str, float]:
    """`rl.epochs` passes of clipped-surrogate minibatch SGD over one rollout; returns mean statistics."""
    n = rollout.size
    rows, state, hidden = rollout.flat("rows"), rollout.flat("state"), rollout.flat("hidden")
    pre, old_logp, old_value = rollout.flat("pre_tanh"), rollout.flat("log_prob"), rollout.flat("value")
    advantage, returns = rollout.flat("advantage"), rollout.flat("returns")
    params = [p for p in policy.parameters() if p.requires_grad]
    size = min(rl.minibatch_size, n)
    sums = {"policy_loss": 0.0, "value_loss": 0.0, "entropy": 0.0, "approx_kl": 0.0, "clip_fraction": 0.0}
    steps, epochs_run, stopped = 0, 0, False
    policy.train()
    for _ in range(rl.epochs):
        order = torch.randperm(n, generator=generator)
        for first in range(0, n, size):
            idx = order[first : first + size]
            h = encoder(rows[idx], grad=True) if policy.backbone_trains else hidden[idx]
            out = policy(h, state[idx])
            log_prob = squashed_gaussian_log_prob(out.mean, out.log_std, pre[idx][:, None])  # (B,)
            log_ratio = log_prob - old_logp[idx]
            ratio = log_ratio.exp()
            with torch.no_grad():
                approx_kl = float(((ratio - 1) - log_ratio).mean())  # Schulman's low-variance estimator
            if rl.target_kl is not None and approx_kl > KL_STOP_FACTOR * rl.target_kl:
                stopped = True
                break
            adv = advantage[idx]
            if len(idx) > 1:
                adv = (adv - adv.mean()) / (adv.std() + ADV_EPS)
            policy_loss = torch.max(-adv * ratio, -adv * ratio.clamp(1 - rl.clip, 1 + rl.clip)).mean()
            value = out.value
            if rl.value_clip is not None:
                clipped = old_value[idx] + (value - old_value[idx]).clamp(-rl.value_clip, rl.value_clip)
                value_loss = 0.5 * torch.max((value - returns[idx]).square(), (clipped - returns[idx]).square()).mean()
            else:
                value_loss = 0.5 * (value - returns[idx]).square().mean()
            entropy = gaussian_entropy(out.log_std).mean()
            loss = policy_loss - rl.entropy_coef * entropy + rl.value_coef * value_loss
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(params, rl.max_grad_norm)
            optimiser.step()
            steps += 1
            for key, term in (("policy_loss", policy_loss), ("value_loss", value_loss), ("entropy", entropy)):
                sums[key] += float(term.detach())
            sums["approx_kl"] += approx_kl
            sums["clip_fraction"] += float(((ratio - 1).abs() > rl.clip).float().mean())
        if stopped:
            break
        epochs_run += 1
    policy.eval()
    stats = {k: (v / steps if steps else float("nan")) for k, v in sums.items()}
    stats.update({"epochs_run": epochs_run, "early_stopped": stopped,
                  "explained_variance": explained_variance(rollout.value.reshape(-1), returns)})
    return stats


# --------------------------------------------------------------------------------------------
# the fine-tuning run
# --------------------------------------------------------------------------------------------
def train_reward_scale(data: WindowedData) -> float:
    """1 / std of the training segment's next-bar returns (training rows only)."""
    std = float(np.std(data.next_return[data.ends["train"]].astype(np.float64)))
    if not std > 0:
        raise PlusUltraError("the training segment's next-bar returns are constant: nothing to learn from")
    return 1.0 / std


def _optimiser(policy: ActorCritic, rl: RLConfig) -> torch.optim.Adam:
    groups = [{"params": list(policy.head_parameters()), "lr": rl.lr, "base_lr": rl.lr}]
    backbone = list(policy.backbone_parameters())
    if backbone:
        lr = rl.lr * rl.backbone_lr_ratio
        groups.append({"params": backbone, "lr": lr, "base_lr": lr})
    return torch.optim.Adam(groups, eps=1e-5)


def _lr_factor(update: int, rl: RLConfig) -> float:
    """1 at the first update, falling linearly towards final_lr_ratio, which it would reach one update
    after the last (so the last update still learns), when annealing."""
    if not rl.anneal_lr:
        return 1.0
    return 1.0 - (1.0 - rl.final_lr_ratio) * (update - 1) / rl.updates


def _snapshot(policy: ActorCritic) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", copy=True) for k, v in policy.state_dict().items()}


def _record(update: int, lr: float, rollout: Rollout | None, stats: dict[str, float], score: dict[str, float],
            std: float, wall_s: float) -> UpdateRecord:
    nan = float("nan")
    return UpdateRecord(
        update=update, lr=lr,
        reward_bps=float(rollout.net_pnl.mean() * 1e4) if rollout is not None else nan,
        cost_bps=float(rollout.costs.mean() * 1e4) if rollout is not None else nan,
        policy_loss=stats.get("policy_loss", nan), value_loss=stats.get("value_loss", nan),
        entropy=stats.get("entropy", nan), approx_kl=stats.get("approx_kl", nan),
        clip_fraction=stats.get("clip_fraction", nan), explained_variance=stats.get("explained_variance", nan),
        epochs_run=int(stats.get("epochs_run", 0)), early_stopped=bool(stats.get("early_stopped", False)), std=std,
        val_sharpe_net=score["sharpe_net"], val_mean_net_bps=score["mean_net_bps"], val_turnover=score["turnover"],
        val_exposure=score["exposure"], val_position_std=score["position_std"], wall_s=wall_s,
    )


def finetune(net: PlusUltraNet, data: WindowedData, rl: RLConfig, costs: CostConfig, *, seed: int,
             progress: Callable[[UpdateRecord], None] | None = None, encoder: RowEncoder | None = None) -> PPOResult:
    """PPO on the training segment of `data`, model selection on its validation segment (never test).

    net:     a supervised network (its position head becomes the policy mean); it is copied, not changed.
    data:    windows of the supervised model's split and scaler (rl/fit.py builds them from a checkpoint).
    encoder: states already computed for `net`'s weights on these rows (the fold's supervised pass);
             adopted only where the policy's backbone holds the same weights and `data` the same rows.
    """
    with torch_threads(rl.threads):
        return _finetune(net, data, rl, costs, seed=seed, progress=progress, encoder=encoder)


def _finetune(net: PlusUltraNet, data: WindowedData, rl: RLConfig, costs: CostConfig, *, seed: int,
              progress: Callable[[UpdateRecord], None] | None, encoder: RowEncoder | None) -> PPOResult:
    for segment in ("train", "val"):
        if len(data.ends.get(segment, ())) == 0:
            raise PlusUltraError(f"PPO needs decision bars in the {segment} segment; the windowed data has none")
    started = time.perf_counter()
    generator = torch.Generator().manual_seed(seed)
    env_cfg = EnvConfig.from_config(rl, costs)
    policy = ActorCritic(net, env_cfg.state_dim, rl.freeze, rl.partial_units, rl.init_log_std).eval()
    policy.backbone_to(rl.device)
    encoder = _encoder(policy, data, rl, encoder)
    env = TradingEnv(data, "train", env_cfg)
    env.valid_starts(rl.steps_per_rollout)  # fail now, with the segment's longest run, if episodes cannot fit
    reward_scale = rl.reward_scale or train_reward_scale(data)
    ppy = periods_per_year(data)
    optimiser = _optimiser(policy, rl)

    head_val = head_positions(policy, encoder, data, "val")
    supervised = score_positions(head_val, data, costs, ppy)
    buy_and_hold = score_positions(constant_positions(data, "val"), data, costs, ppy)

    def validate() -> tuple[SegmentPositions, dict[str, float]]:
        positions = policy_positions(policy, encoder, data, "val", env_cfg)
        return positions, score_positions(positions, data, costs, ppy)

    positions, score = validate()
    history = [_record(0, 0.0, None, {}, score, policy.std(), time.perf_counter() - started)]
    if progress is not None:
        progress(history[0])
    best = (0, score["sharpe_net"], _snapshot(policy), positions, score) if rl.include_initial else None
    for update in range(1, rl.updates + 1):
        tick = time.perf_counter()
        factor = _lr_factor(update, rl)
        for group in optimiser.param_groups:
            group["lr"] = group["base_lr"] * factor
        rollout = collect_rollout(env, policy, encoder, n_envs=rl.n_envs, steps=rl.steps_per_rollout,
                                  reward_scale=reward_scale, gamma=rl.gamma, gae_lambda=rl.gae_lambda,
                                  generator=generator)
        stats = ppo_update(policy, encoder, rollout, optimiser, rl, generator)
        positions, score = validate()
        record = _record(update, rl.lr * factor, rollout, stats, score, policy.std(), time.perf_counter() - tick)
        history.append(record)
        logger.debug("ppo update %d/%d: reward %.3f bps/bar, kl %.4f, val net Sharpe %.3f", update, rl.updates,
                    record.reward_bps, record.approx_kl, record.val_sharpe_net)
        if progress is not None:
            progress(record)
        sharpe = score["sharpe_net"]
        last = rl.selection.candidate == "last" and update == rl.updates  # no choice among updates
        if last or best is None or (math.isfinite(sharpe) and (not math.isfinite(best[1]) or sharpe > best[1])):
            best = (update, sharpe, None if last else _snapshot(policy), positions, score)
    best_update, _, state, best_positions, best_score = best
    if state is not None:  # the last update's weights are the live ones
        policy.load_state_dict(state)
    policy.backbone_to("cpu")  # the returned policy (and its checkpoint) lives on the CPU
    collapse = collapse_report(best_positions, rl.collapse_std)
    return PPOResult(
        policy=policy, history=history, best_update=best_update,
        validation={"ppo": best_score, "supervised": supervised, "buy_and_hold": buy_and_hold},
        collapse=collapse, reward_scale=reward_scale, env_steps=rl.updates * rl.n_envs * rl.steps_per_rollout,
        wall_time_s=time.perf_counter() - started, val_positions=best_positions, val_head_positions=head_val,
        encoder=encoder,
    )


def _encoder(policy: ActorCritic, data: WindowedData, rl: RLConfig, reuse: RowEncoder | None) -> RowEncoder:
    """The one encoder of the policy's backbone on `data`: `reuse`'s states where they hold for it, else empty."""
    if reuse is not None:
        return reuse.adopt(policy.net.backbone, data, rl.eval_batch_size)
    return RowEncoder.of(policy.net.backbone, data, rl.eval_batch_size)


def segment_scores(policy: ActorCritic, data: WindowedData, segment: str, rl: RLConfig, costs: CostConfig,
                   encoder: RowEncoder | None = None) -> tuple[SegmentPositions, dict[str, dict[str, float]]]:
    """The deterministic policy's positions on `segment` and the scores of PPO, the supervised head
    and buy-and-hold there (the walk-forward room and the held-out report call this on "test").
    `encoder`: the run's states (`PPOResult.encoder`), reused where they hold for the policy's weights."""
    encoder = _encoder(policy, data, rl, encoder)
    env_cfg = EnvConfig.from_config(rl, costs)
    ppy = periods_per_year(data)
    with torch_threads(rl.threads):
        positions = policy_positions(policy, encoder, data, segment, env_cfg)
        head = head_positions(policy, encoder, data, segment)
    return positions, {
        "ppo": score_positions(positions, data, costs, ppy),
        "supervised": score_positions(head, data, costs, ppy),
        "buy_and_hold": score_positions(constant_positions(data, segment), data, costs, ppy),
    }
