"""Deterministic evaluation of a policy on one segment, scored like every other position in the project.

`policy_positions` walks every run of the segment's decision bars (one episode per symbol run, all
stepped together) with the mean action tanh(mean): the policy sees its own previous position and
recent PnL exactly as in training. `head_positions` is the supervised position head on the same
bars (stateless), `constant_positions` buy-and-hold. `score_positions` turns any of them into the
equal-weight portfolio's per-bar net PnL through `evaluation.backtest.portfolio_pnl` (objectives.pnl:
next-bar fills, trading and holding costs; a bar without a position is flat) and its annualised net
Sharpe: the same road as the supervised model's held-out Sharpe (evaluation/heldout.py).

The collapse guard: a policy whose positions do not move (std below a tolerance) is reported,
with the constant it collapsed to.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from plus_ultra_ml.config import CostConfig
from plus_ultra_ml.data.windows import WindowedData
from plus_ultra_ml.evaluation import metrics as M
from plus_ultra_ml.evaluation.backtest import portfolio_pnl as backtest_portfolio_pnl
from plus_ultra_ml.evaluation.heldout import FREE, segment_periods_per_year
from plus_ultra_ml.rl.env import EnvConfig, TradingEnv, segment_paths
from plus_ultra_ml.rl.policy import ActorCritic, RowEncoder

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SegmentPositions:
    """Positions at decision bars: rows (M,) of the WindowedData arrays, position (M,) in [-1, 1]."""

    rows: np.ndarray
    position: np.ndarray

    def to_series(self, data: WindowedData) -> pd.Series:
        """On the panel's (symbol, timestamp) index, sorted."""
        index = pd.MultiIndex.from_arrays(
            [pd.Categorical.from_codes(data.symbol_ids[self.rows], categories=data.symbols),
             pd.to_datetime(data.timestamps[self.rows], utc=True)], names=["symbol", "timestamp"])
        return pd.Series(self.position.astype(np.float64), index=index, name="position").sort_index()


@dataclass(frozen=True)
class CollapseReport:
    collapsed: bool
    std: float  # of every position in the segment
    mean: float
    saturated_share: float  # |position| > 0.99
    message: str


@torch.no_grad()
def policy_positions(policy: ActorCritic, encoder: RowEncoder, data: WindowedData, segment: str,
                     env_cfg: EnvConfig) -> SegmentPositions:
    """The deterministic policy (tanh(mean)) stepped along every run of the segment's decision bars."""
    env = TradingEnv(data, segment, env_cfg)
    paths = env.paths
    obs = env.reset(torch.from_numpy(paths.start), torch.from_numpy(paths.length))
    rows = env.episode_rows(bootstrap=False)  # (P, Lmax): nothing past each run's last bar is encoded
    hidden = encoder(rows)  # (P, Lmax, D)
    taken_rows, taken = [], []
    for t in range(rows.shape[1]):
        action = policy.deterministic(hidden[:, t], obs.state())
        step = env.step(action)
        taken_rows.append(obs.row[step.active])
        taken.append(action.double()[step.active])
        obs = step.next_obs
    rows_taken, positions = torch.cat(taken_rows).numpy(), torch.cat(taken).numpy()
    order = np.argsort(rows_taken, kind="stable")  # row order, as head_positions
    return SegmentPositions(rows_taken[order], positions[order])


@torch.no_grad()
def replay_positions(policy: ActorCritic, encoder: RowEncoder, data: WindowedData, segment: str, rows: np.ndarray,
                     env_cfg: EnvConfig, bars: int) -> np.ndarray:
    """(M,) the deterministic policy's position at each decision row of `rows` (window ends of `segment`),
    walked from flat over the last `bars` consecutive decision bars of its symbol ending at that row
    (fewer where the symbol's run of window ends is shorter). What serving answers for a stateful
    policy: a function of the bars up to t only, the same for the service and for offline predict."""
    paths = segment_paths(data, segment)
    rows = np.asarray(rows, dtype=np.int64)
    run = np.searchsorted(paths.start, rows, side="right") - 1  # the run of window ends each row is in
    if (run < 0).any() or (rows >= paths.start[run] + paths.length[run]).any():
        raise ValueError("every replayed row must be a window end of the segment")
    starts = np.maximum(paths.start[run], rows - bars + 1)
    lengths = rows - starts + 1
    env = TradingEnv(data, segment, env_cfg)
    obs = env.reset(torch.from_numpy(starts), torch.from_numpy(lengths))
    if len(rows):  # encode every visited row once, in batches, before the per-bar steps
        covered = np.zeros(len(data.features) + 1, dtype=np.int64)
        np.add.at(covered, starts, 1)
        np.add.at(covered, rows + 1, -1)
        encoder(torch.from_numpy(np.flatnonzero(np.cumsum(covered)[:-1] > 0)))
    out = np.full(len(rows), np.nan)
    for _ in range(int(lengths.max()) if len(rows) else 0):
        action = policy.deterministic(encoder(obs.row), obs.state())  # (E,) at each episode's current bar
        step = env.step(action)
        done = step.done.numpy()
        out[done] = action.double().numpy()[done]  # the position decided at the episode's last bar
        obs = step.next_obs
    return out


@torch.no_grad()
def head_positions(policy: ActorCritic, encoder: RowEncoder, data: WindowedData, segment: str) -> SegmentPositions:
    """The supervised position head on every decision bar of the segment."""
    paths = segment_paths(data, segment)
    rows = np.concatenate([start + np.arange(n) for start, n in zip(paths.start, paths.length)])
    hidden = encoder(torch.from_numpy(rows))
    return SegmentPositions(rows, policy.supervised_position(hidden).double().numpy())


def constant_positions(data: WindowedData, segment: str, value: float = 1.0) -> SegmentPositions:
    """Buy-and-hold (value 1) on every decision bar of the segment."""
    rows = np.sort(np.asarray(data.ends[segment], dtype=np.int64))
    return SegmentPositions(rows, np.full(len(rows), float(value)))


def portfolio_pnl(positions: SegmentPositions, data: WindowedData, costs: CostConfig) -> pd.Series:
    """Equal-weight portfolio net PnL per decision bar (timestamps), missing positions flat (the backtester's)."""
    returns = SegmentPositions(positions.rows, data.next_return[positions.rows]).to_series(data)  # r[t+1] at t
    return backtest_portfolio_pnl(positions.to_series(data), returns, costs)


def score_positions(positions: SegmentPositions, data: WindowedData, costs: CostConfig,
                    ppy: float | None = None) -> dict[str, float]:
    """sharpe_net / sharpe_gross (annualised), mean_net_bps per bar, turnover, exposure, position_std, bars."""
    ppy = ppy or segment_periods_per_year(data)
    net = portfolio_pnl(positions, data, costs)
    gross = portfolio_pnl(positions, data, FREE)
    wide = positions.to_series(data).unstack("symbol").sort_index().fillna(0.0)
    out = {
        "sharpe_net": float(M.sharpe_ratio(net.to_numpy(), periods_per_year=ppy)),
        "sharpe_gross": float(M.sharpe_ratio(gross.to_numpy(), periods_per_year=ppy)),
        "mean_net_bps": float(net.mean() * 1e4),
        "turnover": float(M.turnover(wide.to_numpy()).mean()),
        "exposure": float(np.abs(positions.position).mean()),
        "position_std": float(positions.position.std()),
        "bars": float(len(net)),
    }
    return {k: (v if math.isfinite(v) else float("nan")) for k, v in out.items()}


def collapse_report(positions: SegmentPositions, tolerance: float) -> CollapseReport:
    """Collapsed when the positions' std is at or below `tolerance` (a constant policy)."""
    p = positions.position
    std, mean = float(p.std()), float(p.mean())
    saturated = float((np.abs(p) > 0.99).mean())
    collapsed = std <= tolerance
    message = (f"policy collapsed to a constant position {mean:+.4f} (std {std:.2e} <= {tolerance:.0e}) on "
               f"{len(p)} bars" if collapsed else f"positions move: std {std:.4f}, mean {mean:+.4f}")
    if collapsed:
        logger.warning(message)
    return CollapseReport(collapsed, std, mean, saturated, message)
