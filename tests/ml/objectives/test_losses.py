"""Risk-aware losses: named tiny fixtures, invariances, empyrical agreement, gradients."""

from __future__ import annotations

import math

import empyrical
import numpy as np
import pytest
import torch

from plus_ultra_ml.config import CostConfig
from plus_ultra_ml.objectives.losses import (
    RiskLossWeights,
    drawdown_penalty,
    forecast_loss,
    max_drawdown,
    mean_variance_utility,
    path_pnl,
    pinball_loss,
    risk_aware_loss,
    sharpe_loss,
    sharpe_ratio,
    sortino_loss,
    sortino_ratio,
    volatility_scaled,
)

NAN = float("nan")


def t64(values) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float64)


# ------------------------------------------------------------------------------------------ forecast
FORECASTS = [
    # name, kind, forecast, target, expected
    ("perfect", "huber", [0.5, -1.0], [0.5, -1.0], 0.0),
    ("mse one sigma off", "mse", [0.0, 0.0], [1.0, -1.0], 1.0),
    ("huber quadratic inside delta", "huber", [0.0], [0.5], 0.5 * 0.25),
    ("huber linear beyond delta", "huber", [0.0], [3.0], 3.0 - 0.5),
    ("nan target left out", "mse", [1.0, 5.0], [0.0, NAN], 1.0),
    ("all targets nan", "mse", [1.0, 5.0], [NAN, NAN], NAN),
]


@pytest.mark.parametrize("name,kind,forecast,target,expected", FORECASTS, ids=[row[0] for row in FORECASTS])
def test_forecast_loss_table(name, kind, forecast, target, expected):
    value = forecast_loss(t64(forecast), t64(target), kind=kind).item()
    if math.isnan(expected):
        assert math.isnan(value)
    else:
        assert value == pytest.approx(expected, abs=1e-12)


def test_nan_targets_do_not_poison_gradients():
    forecast = t64([1.0, 5.0, -2.0]).requires_grad_()
    forecast_loss(forecast, t64([0.0, NAN, -1.0]), kind="mse").backward()
    assert torch.isfinite(forecast.grad).all()
    assert forecast.grad[1] == 0  # the masked bar gets no gradient
    np.testing.assert_allclose(forecast.grad.numpy(), [2 * 1.0 / 2, 0.0, 2 * -1.0 / 2])


def test_volatility_scaling_puts_calm_and_wild_bars_on_one_scale():
    returns = t64([[0.01], [0.03]])
    vol = t64([[0.01], [0.03]])
    torch.testing.assert_close(volatility_scaled(returns, vol), t64([[1.0], [1.0]]))
    assert volatility_scaled(t64([0.01]), t64([0.0]), floor=1e-3).item() == pytest.approx(10.0)


def test_forecast_loss_rejects_mismatched_shapes_and_kinds():
    with pytest.raises(ValueError, match="same shape"):
        forecast_loss(torch.zeros(2, 3), torch.zeros(2, 4))
    with pytest.raises(ValueError, match="huber"):
        forecast_loss(torch.zeros(2), torch.zeros(2), kind="l1")


# ------------------------------------------------------------------------------------------ pinball
PINBALL = [
    # name, quantiles, forecast (..., Q), target, expected
    ("median is half the absolute error", [0.5], [[0.0]], [2.0], 1.0),
    ("under-forecasting the 0.9 quantile", [0.9], [[0.0]], [1.0], 0.9),
    ("over-forecasting the 0.9 quantile", [0.9], [[1.0]], [0.0], 0.1),
    ("two levels averaged", [0.1, 0.9], [[0.0, 0.0]], [1.0], (0.1 + 0.9) / 2),
    ("nan target left out", [0.5], [[0.0], [0.0]], [2.0, NAN], 1.0),
]


@pytest.mark.parametrize("name,quantiles,forecast,target,expected", PINBALL, ids=[row[0] for row in PINBALL])
def test_pinball_table(name, quantiles, forecast, target, expected):
    assert pinball_loss(t64(forecast), t64(target), quantiles).item() == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("level", [0.1, 0.5, 0.8])
def test_pinball_is_minimised_at_the_empirical_quantile(level):
    rng = np.random.default_rng(0)
    sample = torch.from_numpy(rng.standard_t(4, 2000))
    grid = torch.linspace(-3, 3, 601, dtype=torch.float64)
    losses = torch.stack([pinball_loss(c.expand(2000, 1), sample, [level]) for c in grid])
    best = grid[losses.argmin()].item()
    assert best == pytest.approx(np.quantile(sample.numpy(), level), abs=0.02)


def test_pinball_rejects_bad_levels():
    with pytest.raises(ValueError, match="one level per output"):
        pinball_loss(torch.zeros(3, 2), torch.zeros(3), [0.5])
    with pytest.raises(ValueError, match="strictly between"):
        pinball_loss(torch.zeros(3, 1), torch.zeros(3), [1.0])


# ------------------------------------------------------------------------------------------ path ratios
SHARPES = [
    # name, pnl path, expected per-bar Sharpe
    ("two bars", [0.01, 0.03], 0.02 / math.sqrt(0.0002)),
    ("alternating", [0.01, -0.01, 0.01, -0.01], 0.0),
    ("losing", [-0.01, -0.03], -0.02 / math.sqrt(0.0002)),
    ("too short", [0.01], NAN),
]


@pytest.mark.parametrize("name,path,expected", SHARPES, ids=[row[0] for row in SHARPES])
def test_sharpe_table(name, path, expected):
    value = sharpe_ratio(t64([path]))[0].item()
    if math.isnan(expected):
        assert math.isnan(value)
    else:
        assert value == pytest.approx(expected, rel=1e-4)


def test_flat_path_gives_finite_ratio_and_gradient():
    pnl = torch.zeros(2, 10, dtype=torch.float64, requires_grad=True)
    loss = sharpe_loss(pnl) + sortino_loss(pnl) + drawdown_penalty(pnl)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(pnl.grad).all()


def test_sharpe_and_sortino_agree_with_empyrical_per_bar():
    rng = np.random.default_rng(1)
    paths = rng.normal(0.001, 0.01, (5, 300))
    ours_sharpe = sharpe_ratio(torch.from_numpy(paths)).numpy()
    ours_sortino = sortino_ratio(torch.from_numpy(paths)).numpy()
    for row, s, so in zip(paths, ours_sharpe, ours_sortino, strict=True):
        assert s == pytest.approx(empyrical.sharpe_ratio(row, annualization=1), rel=1e-4)
        assert so == pytest.approx(empyrical.sortino_ratio(row, annualization=1), rel=1e-4)


@pytest.mark.parametrize("ratio", [sharpe_ratio, sortino_ratio], ids=["sharpe", "sortino"])
def test_ratio_invariances(ratio):
    rng = np.random.default_rng(2)
    path = torch.from_numpy(rng.normal(0.002, 0.01, (1, 500)))
    base = ratio(path).item()
    # scaling returns scales the mean term and the dispersion alike: the ratio does not move
    assert ratio(3.0 * path).item() == pytest.approx(base, rel=1e-4)
    # a constant lift raises it, more noise (same mean) lowers it
    assert ratio(path + 0.001).item() > base
    assert ratio(path + torch.from_numpy(rng.normal(0, 0.02, (1, 500)))).item() < base
    if ratio is sharpe_ratio:
        assert ratio(-path).item() == pytest.approx(-base, rel=1e-9)


DRAWDOWNS = [
    # name, pnl path, expected max drawdown (additive)
    ("rising only", [0.01, 0.02], 0.0),
    ("dip then recovery", [0.1, -0.05, -0.05, 0.2], 0.1),
    ("falls from the start", [-0.02, 0.01], 0.02),
    ("two dips, the deeper counts", [0.05, -0.01, 0.02, -0.04, -0.01], 0.05),
    ("empty", [], NAN),
]


@pytest.mark.parametrize("name,path,expected", DRAWDOWNS, ids=[row[0] for row in DRAWDOWNS])
def test_max_drawdown_table(name, path, expected):
    value = max_drawdown(t64([path]).reshape(1, -1))[0].item()
    if math.isnan(expected):
        assert math.isnan(value)
    else:
        assert value == pytest.approx(expected, abs=1e-12)


def test_drawdown_invariances():
    rng = np.random.default_rng(3)
    path = torch.from_numpy(rng.normal(0, 0.01, (1, 400)))
    base = max_drawdown(path).item()
    assert base > 0
    assert max_drawdown(2.5 * path).item() == pytest.approx(2.5 * base, rel=1e-12)
    assert max_drawdown(path + 0.0005).item() <= base  # shifting every bar up can only shrink it
    assert max_drawdown(path - 0.0005).item() >= base


def test_path_losses_reduce_along_time_only():
    rng = np.random.default_rng(4)
    pnl = torch.from_numpy(rng.normal(0.001, 0.01, (4, 64)))
    base = sharpe_ratio(pnl)
    changed = pnl.clone()
    changed[1:] = torch.from_numpy(rng.normal(0, 0.05, (3, 64)))
    assert sharpe_ratio(changed)[0] == base[0]  # other rows never leak into row 0
    perm = torch.tensor([3, 1, 0, 2])
    torch.testing.assert_close(sharpe_ratio(pnl[perm]), base[perm])
    # shuffling time inside a path keeps its Sharpe but changes its drawdown: time order matters
    shuffled = pnl[:, torch.randperm(64, generator=torch.Generator().manual_seed(0))]
    torch.testing.assert_close(sharpe_ratio(shuffled), base)
    assert not torch.allclose(max_drawdown(shuffled), max_drawdown(pnl))


@pytest.mark.parametrize("loss", [sharpe_loss, sortino_loss, drawdown_penalty])
def test_path_losses_refuse_a_flat_vector(loss):
    with pytest.raises(ValueError, match=r"\(B, T\)"):
        loss(torch.zeros(64))


# ------------------------------------------------------------------------------------------ combined
def test_weights_are_validated():
    with pytest.raises(ValueError, match="sharpe"):
        RiskLossWeights(sharpe=-0.1)
    with pytest.raises(ValueError, match="every weight is 0"):
        RiskLossWeights(forecast=0, sharpe=0)
    with pytest.raises(ValueError, match="risk_aversion"):
        RiskLossWeights(utility=1.0, risk_aversion=-0.1)
    with pytest.raises(ValueError, match="pnl_units"):
        RiskLossWeights(utility=1.0, pnl_units="percent")
    with pytest.raises(ValueError, match="positions"):
        risk_aware_loss(RiskLossWeights(forecast=0, sharpe=1.0))


def test_combined_loss_is_the_weighted_sum_and_every_input_gets_gradient():
    rng = np.random.default_rng(5)
    weights = RiskLossWeights(forecast=1.0, quantile=0.5, sharpe=0.2, sortino=0.1, drawdown=3.0, forecast_kind="mse")
    forecast = torch.from_numpy(rng.normal(size=(8, 3))).requires_grad_()
    quantile_forecast = torch.from_numpy(rng.normal(size=(8, 3, 2))).requires_grad_()
    target = torch.from_numpy(rng.normal(size=(8, 3)))
    logits = torch.from_numpy(rng.normal(size=(8, 32))).requires_grad_()
    next_returns = torch.from_numpy(rng.normal(0, 0.01, (8, 32)))
    costs = CostConfig()
    out = risk_aware_loss(
        weights,
        forecast=forecast,
        target=target,
        quantile_forecast=quantile_forecast,
        quantiles=(0.1, 0.9),
        positions=torch.tanh(logits),
        next_returns=next_returns,
        costs=costs,
    )
    assert set(out.parts) == {"forecast", "quantile", "sharpe", "sortino", "drawdown"}
    expected = sum(getattr(weights, name) * value for name, value in out.parts.items())
    torch.testing.assert_close(out.total, expected)
    out.total.backward()
    for tensor in (forecast, quantile_forecast, logits):
        assert tensor.grad is not None and torch.isfinite(tensor.grad).all() and tensor.grad.abs().sum() > 0


def test_sharpe_term_learns_a_planted_signal_net_of_costs():
    """Gradient descent on the Sharpe term alone must learn to trade a signal that predicts r[t+1]."""
    gen = torch.Generator().manual_seed(6)
    signal = torch.randn(16, 128, generator=gen, dtype=torch.float64)
    next_returns = 0.002 * signal + 0.01 * torch.randn(16, 128, generator=gen, dtype=torch.float64)
    weight = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    bias = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    optimiser = torch.optim.Adam([weight, bias], lr=0.1)
    weights = RiskLossWeights(forecast=0.0, sharpe=1.0)
    costs = CostConfig()
    for _ in range(60):
        optimiser.zero_grad()
        positions = torch.tanh(weight * signal + bias)  # (B, T)
        risk_aware_loss(weights, positions=positions, next_returns=next_returns, costs=costs).total.backward()
        optimiser.step()
    assert weight.item() > 0.3
    learned = sharpe_ratio(torch.tanh(weight * signal + bias) * next_returns).mean()
    assert learned > 0.1  # per-bar Sharpe of the true-signal strategy is about 0.2


# ------------------------------------------------------------------------------------------ utility
FREE = CostConfig(transaction_bps=0.0, slippage_bps=0.0, holding_bps=0.0)

UTILITIES = [
    # name, pnl paths (B, T), risk aversion, expected mean(pnl) - lambda / 2 * mean(pnl^2)
    ("flat", [[0.0, 0.0]], 1.0, 0.0),
    ("risk neutral is the mean", [[0.01, 0.03]], 0.0, 0.02),
    ("constant gain, lambda 2", [[0.01, 0.01]], 2.0, 0.01 - 0.0001),
    ("pure noise loses its variance", [[0.02, -0.02]], 1.0, -0.5 * 0.0004),
    ("pooled over paths", [[0.01, 0.01], [0.03, 0.03]], 0.0, 0.02),
]


@pytest.mark.parametrize("name,pnl,risk_aversion,expected", UTILITIES, ids=[row[0] for row in UTILITIES])
def test_mean_variance_utility_table(name, pnl, risk_aversion, expected):
    assert mean_variance_utility(t64(pnl), risk_aversion).item() == pytest.approx(expected, abs=1e-15)


@pytest.mark.parametrize("risk_aversion", [0.5, 2.0, 8.0])
def test_utility_is_maximised_at_the_markowitz_position(risk_aversion):
    """A constant position p on returns with mean mu and second moment s2 is best at mu / (lambda s2)."""
    rng = np.random.default_rng(7)
    returns = torch.from_numpy(rng.normal(0.5, 1.0, (4, 250)))  # volatility units: mu ~ 0.5, s2 ~ 1.25
    mu, s2 = returns.mean().item(), returns.square().mean().item()
    weights = RiskLossWeights(forecast=0.0, sharpe=0.0, utility=1.0, risk_aversion=risk_aversion)
    grid = torch.linspace(-1.0, 1.5, 2501, dtype=torch.float64)
    losses = torch.stack([risk_aware_loss(weights, positions=p.expand(4, 250), next_returns=returns, costs=FREE).total
                          for p in grid])
    assert grid[losses.argmin()].item() == pytest.approx(mu / (risk_aversion * s2), abs=2e-3)


def test_volatility_units_put_calm_and_wild_symbols_on_one_scale():
    rng = np.random.default_rng(9)
    unit = torch.from_numpy(rng.normal(0.1, 1.0, (1, 200)))
    positions = torch.tanh(torch.from_numpy(rng.normal(size=(1, 200))))
    vol_units = RiskLossWeights(forecast=0.0, utility=1.0, pnl_units="volatility")
    pnls = [path_pnl(vol_units, positions, sigma * unit, FREE, volatility=torch.full_like(unit, sigma))
            for sigma in (0.001, 0.03)]
    torch.testing.assert_close(pnls[0], pnls[1])  # the same bets in sigma units score the same
    in_returns = RiskLossWeights(forecast=0.0, utility=1.0)
    raw = [path_pnl(in_returns, positions, sigma * unit, FREE) for sigma in (0.001, 0.03)]
    torch.testing.assert_close(raw[1], 30.0 * raw[0])  # in return units the wild symbol weighs 30 times more
    # costs are charged in return units before the division: a trade is dearer on a calm symbol
    costs = CostConfig(transaction_bps=1.0, slippage_bps=0.5, holding_bps=0.0)
    calm, wild = (path_pnl(vol_units, positions, sigma * unit, costs, volatility=torch.full_like(unit, sigma))
                  for sigma in (0.001, 0.03))
    assert (calm - pnls[0]).sum() < (wild - pnls[1]).sum() < 0
    with pytest.raises(ValueError, match="volatility"):
        path_pnl(vol_units, positions, unit, FREE)


def test_utility_term_learns_a_planted_signal_sized_by_its_strength():
    """Gradient descent on the utility alone (volatility units) trades a planted signal with a position
    that grows with the signal (Markowitz in sigmas), on a calm and a wild symbol alike."""
    gen = torch.Generator().manual_seed(10)
    signal = torch.randn(16, 128, generator=gen, dtype=torch.float64)
    vol = torch.where(torch.arange(16)[:, None] < 8, 0.002, 0.02).to(torch.float64).expand(16, 128)
    next_returns = vol * (0.2 * signal + torch.randn(16, 128, generator=gen, dtype=torch.float64))
    weight = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    bias = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    optimiser = torch.optim.Adam([weight, bias], lr=0.05)
    weights = RiskLossWeights(forecast=0.0, sharpe=0.0, utility=1.0, risk_aversion=1.0, pnl_units="volatility")
    for _ in range(200):
        optimiser.zero_grad()
        positions = torch.tanh(weight * signal + bias)
        risk_aware_loss(weights, positions=positions, next_returns=next_returns, costs=FREE,
                        volatility=vol).total.backward()
        optimiser.step()
    # mu = 0.2 * signal and s2 ~ 1.04 sigma^2 per unit of position: p* ~ 0.19 * signal, no constant bet
    assert 0.12 < weight.item() < 0.26
    assert abs(bias.item()) < 0.05
