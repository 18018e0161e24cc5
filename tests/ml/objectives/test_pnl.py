"""The cost-aware PnL convention: named tiny paths, the next-bar rule, and the numba twin."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from plus_ultra_ml.config import CostConfig
from plus_ultra_ml.objectives.pnl import (
    next_bar_returns,
    next_bar_returns_numpy,
    pnl_breakdown,
    position_pnl,
    position_pnl_numpy,
)

FREE = CostConfig(transaction_bps=0, slippage_bps=0, holding_bps=0)

# name, positions, next returns, costs (transaction, slippage, holding bps), expected net per bar
PATHS = [
    ("flat earns nothing", [0, 0, 0], [0.01, -0.02, 0.03], (1, 1, 1), [0, 0, 0]),
    ("long hold pays entry once", [1, 1, 1], [0.01, -0.02, 0.03], (10, 0, 0), [0.01 - 1e-3, -0.02, 0.03]),
    ("short earns the negated return", [-1, -1], [0.02, -0.01], (0, 0, 0), [-0.02, 0.01]),
    ("flip pays twice the size", [1, -1, 0], [0.01, 0.01, 0.01], (1, 1, 0), [0.01 - 2e-4, -0.01 - 4e-4, -2e-4]),
    ("holding cost per bar on |p|", [0.5, -0.5], [0.0, 0.0], (0, 0, 4), [-2e-4, -2e-4]),
    ("trading and holding add", [0.5, -0.5], [0.0, 0.0], (1, 0, 4), [-0.5e-4 - 2e-4, -1e-4 - 2e-4]),
    ("slippage adds to transaction", [0.25], [0.04], (3, 1, 0), [0.01 - 1e-4]),
]


@pytest.mark.parametrize("name,positions,next_returns,bps,expected", PATHS, ids=[row[0] for row in PATHS])
def test_named_paths(name, positions, next_returns, bps, expected):
    costs = CostConfig(transaction_bps=bps[0], slippage_bps=bps[1], holding_bps=bps[2])
    p = torch.tensor([positions], dtype=torch.float64)
    r = torch.tensor([next_returns], dtype=torch.float64)
    net = position_pnl(p, r, costs)
    np.testing.assert_allclose(net[0].numpy(), expected, rtol=0, atol=1e-15)
    np.testing.assert_allclose(position_pnl_numpy(p.numpy(), r.numpy(), costs)[0], expected, rtol=0, atol=1e-15)


def test_breakdown_adds_up_and_starts_flat():
    costs = CostConfig(transaction_bps=2, slippage_bps=1, holding_bps=0.5)
    p = torch.tensor([[0.3, 0.3, -0.2]], dtype=torch.float64)
    r = torch.tensor([[0.01, 0.02, -0.03]], dtype=torch.float64)
    parts = pnl_breakdown(p, r, costs)
    torch.testing.assert_close(parts.gross, p * r)
    # p[-1] = 0: the first bar pays for entering 0.3
    torch.testing.assert_close(parts.trading_cost, torch.tensor([[0.3, 0.0, 0.5]], dtype=torch.float64) * 3e-4)
    torch.testing.assert_close(parts.holding_cost, p.abs() * 0.5e-4)
    torch.testing.assert_close(parts.net, parts.gross - parts.trading_cost - parts.holding_cost)


def test_next_bar_returns_belong_to_the_decision_bar():
    close = torch.tensor([[100.0, 110.0, 99.0]], dtype=torch.float64)
    fwd = next_bar_returns(close)
    torch.testing.assert_close(fwd[:, :2], torch.tensor([[0.1, -0.1]], dtype=torch.float64))
    assert torch.isnan(fwd[0, 2])  # the last bar's next return is unknown, never 0
    np.testing.assert_array_equal(next_bar_returns_numpy(close.numpy()), fwd.numpy())


def test_position_at_t_earns_the_next_bar_not_the_same_bar():
    """Look-ahead guard: p[t] is paired with close[t+1]/close[t] - 1, never close[t]/close[t-1] - 1."""
    rng = np.random.default_rng(0)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, (4, 500)), axis=1))  # (B, T)
    bar_ret = np.full_like(close, np.nan)
    bar_ret[:, 1:] = close[:, 1:] / close[:, :-1] - 1  # r[t], known at t's close
    p = rng.uniform(-1, 1, close.shape)
    net = position_pnl(torch.from_numpy(p), next_bar_returns(torch.from_numpy(close)), FREE).numpy()
    np.testing.assert_allclose(net[:, :-1], p[:, :-1] * bar_ret[:, 1:], rtol=1e-12)
    same_bar = p[:, 1:-1] * bar_ret[:, 1:-1]  # what a shifted (look-ahead) implementation would earn
    assert np.abs(net[:, 1:-1] - same_bar).max() > 1e-3

    # a position from today's (known) return earns ~nothing; one from tomorrow's earns every bar
    fwd = next_bar_returns(torch.from_numpy(close))[:, :-1]
    known = torch.from_numpy(np.sign(bar_ret[:, 1:-1]))  # sign(r[t]) at decision bars 1..T-2
    cheat = torch.sign(fwd[:, 1:])  # sign(r[t+1]): uses the future
    honest_pnl = position_pnl(known, fwd[:, 1:], FREE)
    cheat_pnl = position_pnl(cheat, fwd[:, 1:], FREE)
    assert (cheat_pnl > 0).float().mean() > 0.99
    assert abs(honest_pnl.mean() / honest_pnl.std()) < 0.1  # per-bar Sharpe of a random walk: ~0


def test_numba_twin_equals_torch_bit_for_bit():
    rng = np.random.default_rng(1)
    costs = CostConfig(transaction_bps=1.7, slippage_bps=0.3, holding_bps=0.25)
    p = rng.uniform(-1, 1, (3, 5, 200))
    r = rng.normal(0, 0.02, (3, 5, 200))
    prev = rng.uniform(-1, 1, (3, 5))
    expected = position_pnl(torch.from_numpy(p), torch.from_numpy(r), costs, torch.from_numpy(prev)).numpy()
    np.testing.assert_array_equal(position_pnl_numpy(p, r, costs, prev), expected)


def test_stepping_one_bar_at_a_time_equals_the_whole_path():
    """What an environment does: carry the held position into the next call."""
    rng = np.random.default_rng(2)
    costs = CostConfig(transaction_bps=1, slippage_bps=0.5, holding_bps=0.1)
    p = torch.from_numpy(rng.uniform(-1, 1, (8, 50)))
    r = torch.from_numpy(rng.normal(0, 0.01, (8, 50)))
    whole = position_pnl(p, r, costs)
    held = torch.zeros(8, dtype=torch.float64)
    steps = []
    for t in range(50):
        steps.append(position_pnl(p[:, t : t + 1], r[:, t : t + 1], costs, held))
        held = p[:, t]
    torch.testing.assert_close(torch.cat(steps, dim=1), whole, rtol=0, atol=0)


def test_paths_are_independent_along_the_batch():
    rng = np.random.default_rng(3)
    costs = CostConfig()
    p = torch.from_numpy(rng.uniform(-1, 1, (4, 30)))
    r = torch.from_numpy(rng.normal(0, 0.01, (4, 30)))
    base = position_pnl(p, r, costs)
    p2 = p.clone()
    p2[1:] = -p2[1:]
    torch.testing.assert_close(position_pnl(p2, r, costs)[0], base[0], rtol=0, atol=0)
    perm = torch.tensor([2, 0, 3, 1])
    torch.testing.assert_close(position_pnl(p[perm], r[perm], costs), base[perm], rtol=0, atol=0)


def test_gradient_matches_the_analytic_derivative():
    costs = CostConfig(transaction_bps=2, slippage_bps=0, holding_bps=1)
    p = torch.tensor([[0.2, 0.5, -0.1]], dtype=torch.float64, requires_grad=True)
    r = torch.tensor([[0.01, -0.02, 0.03]], dtype=torch.float64)
    position_pnl(p, r, costs).sum().backward()
    # d/dp[t] of sum_t net = r[t+1] - c sign(p[t]-p[t-1]) + c sign(p[t+1]-p[t]) - h sign(p[t])
    c, h = 2e-4, 1e-4
    expected = [0.01 - c * 1 + c * 1 - h, -0.02 - c * 1 + c * (-1) - h, 0.03 - c * (-1) + h]
    np.testing.assert_allclose(p.grad[0].numpy(), expected, rtol=1e-12)


def test_float32_tensors_stay_float32_and_match_float64():
    rng = np.random.default_rng(4)
    p = rng.uniform(-1, 1, (2, 64))
    r = rng.normal(0, 0.01, (2, 64))
    net32 = position_pnl(torch.tensor(p, dtype=torch.float32), torch.tensor(r, dtype=torch.float32), CostConfig())
    assert net32.dtype == torch.float32
    np.testing.assert_allclose(net32.numpy(), position_pnl_numpy(p, r, CostConfig()), atol=1e-6)


def test_higher_costs_lower_net_by_turnover_times_rate():
    rng = np.random.default_rng(5)
    p = rng.uniform(-1, 1, (1, 40))
    r = rng.normal(0, 0.01, (1, 40))
    cheap = position_pnl_numpy(p, r, CostConfig(transaction_bps=1, slippage_bps=0))
    dear = position_pnl_numpy(p, r, CostConfig(transaction_bps=3, slippage_bps=0))
    turnover = np.abs(np.diff(p, prepend=0.0))
    np.testing.assert_allclose(cheap - dear, 2e-4 * turnover, atol=1e-15)


@pytest.mark.parametrize(
    "p_shape,r_shape", [((2, 5), (2, 4)), ((5,), (2, 5)), ((2, 0), (2, 0))], ids=["time", "batch", "empty"]
)
def test_mismatched_or_empty_paths_are_errors(p_shape, r_shape):
    with pytest.raises(ValueError, match="positions"):
        position_pnl(torch.zeros(p_shape), torch.zeros(r_shape), CostConfig())
    with pytest.raises(ValueError, match="positions"):
        position_pnl_numpy(np.zeros(p_shape), np.zeros(r_shape), CostConfig())
