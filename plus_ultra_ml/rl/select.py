"""Keep the PPO policy or fall back to the supervised head: a decision made on validation bars only.

PPO picks its best update by validation net Sharpe (rl/ppo.py), and that pick is optimistic: on the
fixture, validation net Sharpe 2.1 went with test -0.6 (issue 15). So a PPO run does not hand its
policy on by default; `select_policy` decides, by `rl.selection` (config.RLSelectionConfig):

    significant_gain  keep PPO only when the per-bar difference d[t] = ppo[t] - head[t] of the two
                      portfolios' net PnL on the same validation bars (both through
                      `evaluation.backtest.portfolio_pnl`, same costs) has a mean whose one-sided
                      (1 - alpha) lower bound is above zero. The bound is the lower end of the
                      two-sided (1 - 2 alpha) percentile interval of `evaluation.metrics.block_bootstrap_ci`
                      (stationary blocks, mean length `block`): resampling d resamples both portfolios
                      on the same blocks of bars, i.e. a paired bootstrap that keeps serial dependence;
    best_val          keep PPO whenever it moved from the head (the rule before issue 15);
    always_head       never keep it.

Only the validation PnL is passed in, so nothing of the test segment can reach the decision (a test
perturbs the test returns and checks the decision does not move). Units: PnL per bar, reported in
basis points.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from plus_ultra_ml.config import RLSelectionConfig
from plus_ultra_ml.evaluation import metrics as M


@dataclass(frozen=True)
class Selection:
    """The decision and the validation numbers behind it (mean net PnL gain per bar, bps)."""

    kept: bool  # True: the PPO policy; False: the supervised head
    rule: str
    gain_bps: float  # mean over validation bars of ppo - head net PnL, basis points per bar
    low_bps: float  # the two-sided (1 - 2 alpha) interval; low_bps is the one-sided (1 - alpha) bound
    high_bps: float
    alpha: float
    bars: int
    reason: str

    def metrics(self) -> dict[str, float]:
        """Flat numbers for lineage, fold metrics and asset metadata."""
        return {"selection_kept": float(self.kept), "val_gain_bps": self.gain_bps, "val_gain_low_bps": self.low_bps,
                "val_gain_high_bps": self.high_bps, "val_gain_bars": float(self.bars),
                "selection_alpha": self.alpha}

    def record(self) -> dict[str, object]:
        """The decision as lineage stores it (under `training.selection`)."""
        return {"kept": self.kept, "policy": "ppo" if self.kept else "supervised", "rule": self.rule,
                "gain_bps": self.gain_bps, "low_bps": self.low_bps, "high_bps": self.high_bps, "alpha": self.alpha,
                "bars": self.bars, "reason": self.reason}


def gain_interval(ppo_pnl: pd.Series, head_pnl: pd.Series, *, alpha: float, block: int | None, resamples: int,
                  seed: int) -> tuple[float, float, float, int]:
    """(mean gain, low, high, bars) of ppo - head net PnL per bar on their common bars (return units).

    ppo_pnl, head_pnl: per-bar portfolio net PnL on one segment, indexed by timestamp. The interval is
    the (1 - 2 alpha) stationary block-bootstrap percentile interval of the mean difference. Fewer than
    2 common bars: NaN everywhere.
    """
    both = pd.concat([ppo_pnl.rename("ppo"), head_pnl.rename("head")], axis=1, join="inner").dropna()
    diff = (both["ppo"] - both["head"]).to_numpy(np.float64)
    if len(diff) < 2:
        return math.nan, math.nan, math.nan, len(diff)
    ci = M.block_bootstrap_ci(diff, lambda x: np.mean(x, axis=0), confidence=1.0 - 2.0 * alpha,
                              n_resamples=resamples, block_length=block, seed=seed)
    return ci.estimate, ci.low, ci.high, len(diff)


def select_policy(ppo_pnl: pd.Series, head_pnl: pd.Series, cfg: RLSelectionConfig, *, moved: bool,
                  seed: int = 0) -> Selection:
    """Keep the PPO candidate or the supervised head (see the module docstring).

    ppo_pnl, head_pnl: validation-segment net PnL per bar of the candidate and of the head, same bars.
    moved: the candidate is not the starting policy (best update > 0, or candidate "last").
    """
    gain, low, high, bars = gain_interval(ppo_pnl, head_pnl, alpha=cfg.alpha, block=cfg.block,
                                          resamples=cfg.resamples, seed=seed)
    numbers = (f"validation gain {gain * 1e4:+.3f} bps/bar, {100 * (1 - 2 * cfg.alpha):.0f}% interval "
               f"[{low * 1e4:+.3f}, {high * 1e4:+.3f}] over {bars} bars")
    if cfg.rule == "always_head":
        kept, why = False, "rule always_head"
    elif not moved:
        kept, why = False, "PPO never beat its starting policy (the head) on validation"
    elif cfg.rule == "best_val":
        kept, why = True, "rule best_val: PPO moved"
    else:
        kept = bool(low > 0)  # NaN (too few bars) is not significant
        why = (f"one-sided {1 - cfg.alpha:.0%} lower bound {'above' if kept else 'not above'} zero")
    return Selection(kept, cfg.rule, gain * 1e4, low * 1e4, high * 1e4, cfg.alpha, bars,
                     f"{'PPO kept' if kept else 'supervised head kept'}: {why}; {numbers}")
