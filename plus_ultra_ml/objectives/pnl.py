"""Differentiable, cost-aware PnL of positions along a contiguous time path.

The one place where the project's returns/positions/costs convention (docs/architecture.md) is
written as arithmetic. The training losses, the backtester and the RL environment all call it.

Which bar each quantity belongs to (t indexes bars of one path, 0 <= t < T):

    positions[t]      p[t], decided with information up to and including bar t's close,
                      held from the close of bar t to the close of bar t+1.
    next_returns[t]   r[t+1] = close[t+1] / close[t] - 1, the simple return of the bar *after* the
                      decision bar. Build it with `next_bar_returns(close)`; it is unknown (NaN)
                      for the last bar of a path.
    gross[t]          p[t] * r[t+1]
    trading_cost[t]   (transaction_bps + slippage_bps) / 1e4 * |p[t] - p[t-1]|, with p[-1] =
                      `previous_position` (0 by default: a path starts flat).
    holding_cost[t]   holding_bps / 1e4 * |p[t]|, per bar held.
    net[t]            gross[t] - (trading_cost[t] + holding_cost[t])

Every output is indexed by the decision bar t, although it is only *known* at the close of bar
t+1. All values are per-bar fractions of the capital the position refers to (not annualised, not
compounded). Positions are not clipped here: a leverage limit is the caller's business.

Two implementations of the same arithmetic, in the same operation order so they agree bit for bit
in float64 (tests/ml/objectives/test_pnl.py proves it):

- `pnl_breakdown` / `position_pnl`: torch, any device and dtype, differentiable. Training and the
  RL environment use these.
- `bar_pnl`: the per-bar formula compiled with numba, and `position_pnl_numpy` built on it. The
  backtester's fused kernel calls `bar_pnl` for every (bar, symbol) cell, so it uses this very
  function, not a copy of it.
"""

from __future__ import annotations

from typing import NamedTuple

import numba
import numpy as np
import torch
from torch import Tensor

from plus_ultra_ml.config import CostConfig

BPS = 1e-4  # one basis point as a fraction


def trade_rate(costs: CostConfig) -> float:
    """Cost per unit of |position change|, as a fraction: (transaction_bps + slippage_bps) / 1e4."""
    return (costs.transaction_bps + costs.slippage_bps) * BPS


def hold_rate(costs: CostConfig) -> float:
    """Cost per bar per unit of |position|, as a fraction: holding_bps / 1e4."""
    return costs.holding_bps * BPS


class PnlBreakdown(NamedTuple):
    """Per-decision-bar PnL components, each shaped like the positions (..., T)."""

    gross: Tensor  # p[t] * r[t+1]
    trading_cost: Tensor  # trade rate * |p[t] - p[t-1]|
    holding_cost: Tensor  # hold rate * |p[t]|
    net: Tensor  # gross - (trading_cost + holding_cost)


def _check_path(positions: Tensor, next_returns: Tensor) -> None:
    if positions.shape != next_returns.shape:
        raise ValueError(
            f"positions {tuple(positions.shape)} and next_returns {tuple(next_returns.shape)} must have the "
            "same shape (..., T): one next-bar return per decision bar"
        )
    if positions.ndim == 0 or positions.shape[-1] == 0:
        raise ValueError(f"positions must have a non-empty time axis (..., T), got shape {tuple(positions.shape)}")


def pnl_breakdown(
    positions: Tensor,
    next_returns: Tensor,
    costs: CostConfig,
    previous_position: Tensor | float = 0.0,
) -> PnlBreakdown:
    """Gross PnL, costs and net PnL of positions along time (the last axis).

    positions:         (..., T) p[t], decided at the close of bar t.
    next_returns:      (..., T) r[t+1] = close[t+1] / close[t] - 1 (see `next_bar_returns`).
    previous_position: p[-1], a float or a tensor broadcastable to (...,); 0 means the path starts
                       flat, so the first bar pays for entering p[0]. An environment stepping one bar
                       at a time passes the position it held, which makes stepping equal to the path.
    NaN in either input propagates to the bars it touches; nothing is filled.
    """
    _check_path(positions, next_returns)
    previous = torch.as_tensor(previous_position, dtype=positions.dtype, device=positions.device)
    previous = previous.expand(positions.shape[:-1]).unsqueeze(-1)  # (..., 1)
    lagged = torch.cat([previous, positions[..., :-1]], dim=-1)  # (..., T) p[t-1]
    gross = positions * next_returns
    trading_cost = trade_rate(costs) * (positions - lagged).abs()
    holding_cost = hold_rate(costs) * positions.abs()
    net = gross - (trading_cost + holding_cost)
    return PnlBreakdown(gross, trading_cost, holding_cost, net)


def position_pnl(
    positions: Tensor,
    next_returns: Tensor,
    costs: CostConfig,
    previous_position: Tensor | float = 0.0,
) -> Tensor:
    """Net PnL (..., T) per decision bar: p[t] r[t+1] - trading cost - holding cost (see module doc)."""
    return pnl_breakdown(positions, next_returns, costs, previous_position).net


def next_bar_returns(close: Tensor) -> Tensor:
    """r[t+1] = close[t+1] / close[t] - 1 placed at bar t, along the last axis; NaN at the last bar.

    close: (..., T) prices of one contiguous path per leading index. Output: (..., T).
    """
    if close.ndim == 0 or close.shape[-1] == 0:
        raise ValueError(f"close must have a non-empty time axis (..., T), got shape {tuple(close.shape)}")
    tail = torch.full_like(close[..., :1], float("nan"))
    return torch.cat([close[..., 1:] / close[..., :-1] - 1.0, tail], dim=-1)


# --------------------------------------------------------------------------------------------
# numba twin (numpy arrays, float64)
# --------------------------------------------------------------------------------------------
@numba.njit(cache=True, nogil=True, inline="always")
def bar_pnl(position: float, previous: float, next_return: float, trade: float, hold: float) -> tuple[float, float]:
    """(net, cost) of one decision bar; the scalar form of `pnl_breakdown`, same operation order."""
    trading_cost = trade * abs(position - previous)
    holding_cost = hold * abs(position)
    cost = trading_cost + holding_cost
    return position * next_return - cost, cost


@numba.njit(cache=True, nogil=True)
def _pnl_paths(positions, next_returns, previous, trade, hold, net):  # pragma: no cover - numba
    # positions, next_returns, net: (M, T); previous: (M,)
    M, T = positions.shape
    for m in range(M):
        lagged = previous[m]
        for t in range(T):
            p = positions[m, t]
            net[m, t] = bar_pnl(p, lagged, next_returns[m, t], trade, hold)[0]
            lagged = p


def position_pnl_numpy(
    positions: np.ndarray,
    next_returns: np.ndarray,
    costs: CostConfig,
    previous_position: np.ndarray | float = 0.0,
) -> np.ndarray:
    """`position_pnl` on numpy arrays (float64, not differentiable); equal to it bit for bit.

    positions, next_returns: (..., T) as in `pnl_breakdown`; previous_position broadcastable to (...,).
    """
    p = np.ascontiguousarray(positions, dtype=np.float64)
    r = np.ascontiguousarray(next_returns, dtype=np.float64)
    if p.shape != r.shape:
        raise ValueError(f"positions {p.shape} and next_returns {r.shape} must have the same shape (..., T)")
    if p.ndim == 0 or p.shape[-1] == 0:
        raise ValueError(f"positions must have a non-empty time axis (..., T), got shape {p.shape}")
    lead = p.shape[:-1]
    previous = np.ascontiguousarray(np.broadcast_to(np.asarray(previous_position, dtype=np.float64), lead))
    net = np.empty_like(p)
    _pnl_paths(
        p.reshape(-1, p.shape[-1]),
        r.reshape(-1, p.shape[-1]),
        previous.reshape(-1),
        trade_rate(costs),
        hold_rate(costs),
        net.reshape(-1, p.shape[-1]),
    )
    return net


def next_bar_returns_numpy(close: np.ndarray) -> np.ndarray:
    """numpy form of `next_bar_returns`: r[t+1] at bar t along the last axis, NaN at the last bar."""
    c = np.asarray(close, dtype=np.float64)
    if c.ndim == 0 or c.shape[-1] == 0:
        raise ValueError(f"close must have a non-empty time axis (..., T), got shape {c.shape}")
    out = np.full_like(c, np.nan)
    out[..., :-1] = c[..., 1:] / c[..., :-1] - 1.0
    return out
