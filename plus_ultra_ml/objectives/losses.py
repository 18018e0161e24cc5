"""Risk-aware training losses: forecast errors in volatility units, quantiles, and path risk.

Pure functions on tensors, in the spirit of ts2vec's losses: inputs first, units stated,
degenerate inputs answered explicitly. Two families:

- Forecast losses (Huber/MSE on volatility-scaled forward returns, pinball for quantile heads).
  Scaling the target by a causal volatility estimate makes a 1% move in a calm market and a 3%
  move in a wild one comparable, so high-volatility bars do not dominate the gradient. NaN targets
  (warm-up bars, the unknown future at the end of a series) are masked, never filled.
- Path losses (differentiable Sharpe, Sortino and drawdown) on the net PnL of positions, computed
  along time of contiguous paths (B, T). A Sharpe ratio over a shuffled batch of single-bar
  returns is not a Sharpe ratio of anything a trader could hold, so these functions demand a
  2-D (B, T) input and reduce along T only; rows never mix.
- A mean-variance (Markowitz) utility of the same PnL. Unlike a ratio it is not scale invariant,
  so it sizes a position by the strength of the expected return (p* = mu / (lambda s2)) instead of
  rewarding any position whose window happened to drift the right way. In volatility units (each
  bar's net PnL over its causal volatility) a calm and a wild symbol weigh alike, and a trade
  costs more, in sigmas, where volatility is low.

The combined `risk_aware_loss` takes its weights from the frozen `RiskLossWeights`; the PnL comes
from `plus_ultra_ml.objectives.pnl.position_pnl`, the same function the backtester uses.
Every ratio here is per bar (not annualised): annualising multiplies by a constant and would only
rescale the loss weights.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from plus_ultra_ml.config import CostConfig
from plus_ultra_ml.objectives.pnl import position_pnl

VOL_FLOOR = 1e-6  # lower bound on a volatility that divides a return (a flat stretch must not blow it up)
EPS = 1e-12  # added to variances before the square root: keeps ratios and gradients finite when a path is flat


# --------------------------------------------------------------------------------------------
# forecast losses
# --------------------------------------------------------------------------------------------
def volatility_scaled(returns: Tensor, volatility: Tensor, floor: float = 1e-6) -> Tensor:
    """returns / max(volatility, floor): forward returns in units of the bar's volatility.

    returns:    (..., H) forward returns (simple or log, per bar, not annualised).
    volatility: broadcastable to returns, a per-bar volatility estimate known at the decision bar
                (for example a trailing realised volatility); never one that looks forward.
    floor:      lower bound on the volatility, so a flat stretch cannot blow the target up.
    """
    return returns / volatility.clamp_min(floor)


def _masked_mean(values: Tensor, mask: Tensor) -> Tensor:
    # no element selected: 0 / 0 = NaN, without a device sync to ask first
    return torch.where(mask, values, torch.zeros_like(values)).sum() / mask.sum()


def forecast_loss(
    forecast: Tensor,
    target: Tensor,
    kind: Literal["huber", "mse"] = "huber",
    delta: float = 1.0,
) -> Tensor:
    """Mean Huber or squared error of a forecast against a (volatility-scaled) target.

    forecast, target: same shape (..., H), both in volatility units (see `volatility_scaled`).
    delta:            Huber's switch from quadratic to linear, in the same units.
    NaN targets are left out of the mean (and of the gradient); if every target is NaN: NaN.
    """
    if forecast.shape != target.shape:
        raise ValueError(f"forecast {tuple(forecast.shape)} and target {tuple(target.shape)} must have the same shape")
    mask = torch.isfinite(target)
    safe_target = torch.where(mask, target, forecast.detach())  # a NaN target must not poison the gradient
    if kind == "huber":
        elementwise = F.huber_loss(forecast, safe_target, reduction="none", delta=delta)
    elif kind == "mse":
        elementwise = F.mse_loss(forecast, safe_target, reduction="none")
    else:
        raise ValueError(f"forecast loss kind must be 'huber' or 'mse', got {kind!r}")
    return _masked_mean(elementwise, mask)


def pinball_loss(quantile_forecast: Tensor, target: Tensor, quantiles: Sequence[float]) -> Tensor:
    """Mean pinball (quantile) loss of a quantile head.

    quantile_forecast: (..., Q) one forecast per quantile level.
    target:            (...) the realised value (same units as the forecast).
    quantiles:         Q levels in (0, 1), matching the last axis of `quantile_forecast`.
    For level q and error u = target - forecast the loss is max(q u, (q - 1) u): under-forecasting
    the 0.9 quantile costs nine times what over-forecasting it does. NaN targets are masked; all
    NaN: NaN.
    """
    levels_list = [float(q) for q in quantiles]
    if len(levels_list) != quantile_forecast.shape[-1]:
        raise ValueError(
            f"got {len(levels_list)} quantile levels for a forecast with {quantile_forecast.shape[-1]} outputs "
            f"(shape {tuple(quantile_forecast.shape)}); pass one level per output"
        )
    if not all(0 < q < 1 for q in levels_list):
        raise ValueError(f"quantile levels must lie strictly between 0 and 1, got {tuple(quantiles)}")
    levels = torch.tensor(levels_list, dtype=quantile_forecast.dtype, device=quantile_forecast.device)  # (Q,)
    if quantile_forecast.shape[:-1] != target.shape:
        raise ValueError(
            f"quantile_forecast {tuple(quantile_forecast.shape)} must be the target's shape "
            f"{tuple(target.shape)} plus (Q,)"
        )
    mask = torch.isfinite(target).unsqueeze(-1).expand_as(quantile_forecast)  # (..., Q)
    safe_target = torch.where(torch.isfinite(target), target, torch.zeros_like(target))
    error = safe_target.unsqueeze(-1) - quantile_forecast  # (..., Q)
    loss = torch.maximum(levels * error, (levels - 1) * error)
    return _masked_mean(loss, mask)


# --------------------------------------------------------------------------------------------
# path statistics (per path, reduce along T)
# --------------------------------------------------------------------------------------------
def _require_paths(pnl: Tensor, name: str) -> None:
    if pnl.ndim != 2:
        raise ValueError(
            f"{name} needs contiguous paths shaped (B, T), got shape {tuple(pnl.shape)}; a flat vector of "
            "returns from shuffled samples is not a time path"
        )


def sharpe_ratio(pnl: Tensor, eps: float = EPS) -> Tensor:
    """Per-path Sharpe ratio, per bar: mean / sqrt(var + eps) along the last axis.

    pnl: (..., T) per-bar net returns of each path (not annualised). var uses ddof 1 (as empyrical).
    Returns (...). T < 2: NaN. A constant path: mean / sqrt(eps) (finite, gradients finite).
    """
    if pnl.shape[-1] < 2:
        return torch.full(pnl.shape[:-1], float("nan"), dtype=pnl.dtype, device=pnl.device)
    mean = pnl.mean(dim=-1)
    var = pnl.var(dim=-1, correction=1)
    return mean / torch.sqrt(var + eps)


def sortino_ratio(pnl: Tensor, eps: float = EPS) -> Tensor:
    """Per-path Sortino ratio, per bar: mean / sqrt(mean(min(pnl, 0)^2) + eps) along the last axis.

    The downside deviation averages the squared shortfall below 0 over all T bars (as empyrical's
    `downside_risk` with required return 0). Returns (...). T < 2: NaN. No losing bar: mean / sqrt(eps).
    """
    if pnl.shape[-1] < 2:
        return torch.full(pnl.shape[:-1], float("nan"), dtype=pnl.dtype, device=pnl.device)
    downside = pnl.clamp_max(0.0).square().mean(dim=-1)
    return pnl.mean(dim=-1) / torch.sqrt(downside + eps)


def max_drawdown(pnl: Tensor) -> Tensor:
    """Per-path maximum drawdown of the additive equity curve, as a non-negative number.

    equity[t] = sum_{s <= t} pnl[s], starting from 0 before the first bar; drawdown[t] =
    max_{s <= t} equity[s] - equity[t]. Additive (not compounded) so the penalty is linear in the
    return scale and its gradient stays well behaved; for per-bar returns of a few percent the two
    differ negligibly. Returns (...) >= 0. T < 1: NaN.
    """
    if pnl.shape[-1] < 1:
        return torch.full(pnl.shape[:-1], float("nan"), dtype=pnl.dtype, device=pnl.device)
    start = torch.zeros_like(pnl[..., :1])
    equity = torch.cumsum(torch.cat([start, pnl], dim=-1), dim=-1)  # (..., T + 1)
    peak = torch.cummax(equity, dim=-1).values
    return (peak - equity).amax(dim=-1)


def mean_variance_utility(pnl: Tensor, risk_aversion: float) -> Tensor:
    """Quadratic (mean-variance) utility per bar: mean(pnl) - risk_aversion / 2 * mean(pnl^2).

    pnl: (B, T) per-bar net PnL along contiguous paths. Unlike a Sharpe ratio it is not scale
    invariant: for a position p on an asset whose next return has conditional mean mu and second
    moment s2 it is maximised at p = mu / (risk_aversion * s2) (Markowitz), so the size of a position
    carries the strength of the expected return. Separable over bars except through the costs.
    """
    _require_paths(pnl, "mean_variance_utility")
    return pnl.mean() - 0.5 * risk_aversion * pnl.square().mean()


def sharpe_loss(pnl: Tensor, eps: float = EPS) -> Tensor:
    """-mean over paths of the per-bar Sharpe ratio of each path. pnl: (B, T), T >= 2."""
    _require_paths(pnl, "sharpe_loss")
    return -sharpe_ratio(pnl, eps).mean()


def sortino_loss(pnl: Tensor, eps: float = EPS) -> Tensor:
    """-mean over paths of the per-bar Sortino ratio of each path. pnl: (B, T), T >= 2."""
    _require_paths(pnl, "sortino_loss")
    return -sortino_ratio(pnl, eps).mean()


def drawdown_penalty(pnl: Tensor) -> Tensor:
    """Mean over paths of each path's maximum (additive) drawdown. pnl: (B, T)."""
    _require_paths(pnl, "drawdown_penalty")
    return max_drawdown(pnl).mean()


# --------------------------------------------------------------------------------------------
# the combined loss
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RiskLossWeights:
    """Weights of the terms of `risk_aware_loss`; a zero weight skips its term (and its inputs)."""

    forecast: float = 1.0  # Huber/MSE on volatility-scaled forward returns
    quantile: float = 0.0  # pinball loss of the quantile head
    sharpe: float = 0.1  # -Sharpe (per bar) of each path's net PnL
    sortino: float = 0.0  # -Sortino (per bar) of each path's net PnL
    drawdown: float = 0.0  # max additive drawdown of each path's net PnL (per-bar return units)
    utility: float = 0.0  # -mean-variance utility of the net PnL (see `mean_variance_utility`)
    forecast_kind: Literal["huber", "mse"] = "huber"
    huber_delta: float = 1.0  # in volatility units: a 1-sigma error is where Huber turns linear
    risk_aversion: float = 1.0  # the utility's lambda, in the units of the PnL (see `pnl_units`)
    pnl_units: Literal["return", "volatility"] = "return"  # volatility: net PnL / the bar's causal volatility

    def __post_init__(self) -> None:
        for name in ("forecast", "quantile", "sharpe", "sortino", "drawdown", "utility"):
            value = getattr(self, name)
            if not value >= 0:  # also rejects NaN
                raise ValueError(f"RiskLossWeights.{name} must be >= 0, got {value!r}")
        if self.forecast + self.quantile + self.sharpe + self.sortino + self.drawdown + self.utility == 0:
            raise ValueError("RiskLossWeights: every weight is 0, so the loss would be constant; set one above 0")
        if not self.risk_aversion >= 0:
            raise ValueError(f"RiskLossWeights.risk_aversion must be >= 0, got {self.risk_aversion!r}")
        if self.pnl_units not in ("return", "volatility"):
            raise ValueError(f"RiskLossWeights.pnl_units must be 'return' or 'volatility', got {self.pnl_units!r}")
        if self.forecast_kind not in ("huber", "mse"):
            raise ValueError(f"RiskLossWeights.forecast_kind must be 'huber' or 'mse', got {self.forecast_kind!r}")
        if not self.huber_delta > 0:
            raise ValueError(f"RiskLossWeights.huber_delta must be > 0, got {self.huber_delta!r}")


def path_pnl(weights: RiskLossWeights, positions: Tensor, next_returns: Tensor, costs: CostConfig,
             volatility: Tensor | None = None) -> Tensor:
    """The net PnL (B, T) the path terms of `risk_aware_loss` score, under `weights`' conventions.

    positions, next_returns: (B, T) as in objectives/pnl.py. volatility: (B, T) causal per-bar
    volatility at each decision bar, needed when `weights.pnl_units == "volatility"`.
    """
    in_sigmas = weights.pnl_units == "volatility"
    if in_sigmas and volatility is None:
        raise ValueError("RiskLossWeights.pnl_units='volatility' needs `volatility` (B, T)")
    pnl = position_pnl(positions, next_returns, costs)  # (B, T), each path starts flat
    return pnl / volatility.clamp_min(VOL_FLOOR) if in_sigmas else pnl


class RiskLoss(NamedTuple):
    total: Tensor  # scalar, what the optimiser minimises
    parts: dict[str, Tensor]  # unweighted value of every active term (for logging)


def risk_aware_loss(
    weights: RiskLossWeights,
    *,
    forecast: Tensor | None = None,
    target: Tensor | None = None,
    quantile_forecast: Tensor | None = None,
    quantiles: Sequence[float] = (),
    positions: Tensor | None = None,
    next_returns: Tensor | None = None,
    costs: CostConfig | None = None,
    volatility: Tensor | None = None,
) -> RiskLoss:
    """weights.forecast * forecast loss + weights.quantile * pinball + path terms on net PnL.

    forecast, target:   (..., H) in volatility units (`volatility_scaled` of forward returns).
    quantile_forecast:  (..., H, Q) with `quantiles` levels, against the same target.
    positions:          (B, T) positions along contiguous paths, decided at each bar's close.
    next_returns:       (B, T) r[t+1] for each decision bar (see objectives/pnl.py); costs: the
                        experiment's `costs` section. The path terms use their net PnL.
    A term with a positive weight whose inputs are missing is an error naming them.
    """
    parts: dict[str, Tensor] = {}
    total: Tensor | None = None

    def add(name: str, weight: float, value: Tensor) -> None:
        nonlocal total
        parts[name] = value
        total = weight * value if total is None else total + weight * value

    if weights.forecast > 0:
        if forecast is None or target is None:
            raise ValueError("RiskLossWeights.forecast > 0 needs `forecast` and `target`")
        add("forecast", weights.forecast, forecast_loss(forecast, target, weights.forecast_kind, weights.huber_delta))
    if weights.quantile > 0:
        if quantile_forecast is None or target is None or not quantiles:
            raise ValueError("RiskLossWeights.quantile > 0 needs `quantile_forecast`, `target` and `quantiles`")
        add("quantile", weights.quantile, pinball_loss(quantile_forecast, target, quantiles))
    if weights.sharpe > 0 or weights.sortino > 0 or weights.drawdown > 0 or weights.utility > 0:
        if positions is None or next_returns is None or costs is None:
            raise ValueError("the Sharpe/Sortino/drawdown/utility weights need `positions`, `next_returns` and `costs`")
        _require_paths(positions, "risk_aware_loss")
        pnl = path_pnl(weights, positions, next_returns, costs, volatility)  # (B, T)
        if weights.sharpe > 0:
            add("sharpe", weights.sharpe, sharpe_loss(pnl))
        if weights.sortino > 0:
            add("sortino", weights.sortino, sortino_loss(pnl))
        if weights.drawdown > 0:
            add("drawdown", weights.drawdown, drawdown_penalty(pnl))
        if weights.utility > 0:
            add("utility", weights.utility, -mean_variance_utility(pnl, weights.risk_aversion))
    assert total is not None  # RiskLossWeights guarantees one positive weight
    return RiskLoss(total, parts)
