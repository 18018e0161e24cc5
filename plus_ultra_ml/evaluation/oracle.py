"""The oracle policy: the best positions given the true conditional mean and volatility of every
symbol's next return and the stated costs. A reference to score strategies against, never a strategy.

Only the synthetic fixture knows the truth it needs (plus_ultra_ml/synthetic/fixture.py stores it:
``truth_oracle`` = mu[t, i] = E[close[t+1]/close[t] - 1 | generator state at t], ``truth_sigma`` =
sigma[t, i], the standard deviation of that return given the state, and the rule's parameters in
``fixture_truth``). This module is the one road from (mu, sigma, costs, rule) to oracle positions.

The rule (t = decision bar, N symbols, q = p[t-1], p[-1] = 0: a path starts flat):

    p[t] = argmax_{|p_i| <= limit}  p'mu - h |p|_1 - (c / L) |p - q|_1 - (gamma / 2) p' M p

    M  = Sigma + mu mu'      the second moment of the next returns given the state, with
    Sigma_ij = sigma_i sigma_j (rho + (1 - rho) [i == j])   (the generator's one-factor shocks)
    c  = trade_rate(costs)   cost per unit of |position change|; h = hold_rate(costs) per bar held
    L  = cost_horizon        bars over which a trade's cost is set against the gain it buys

Why this is the ceiling. The portfolio PnL is the mean of the sleeves' p_i R_i net of costs
(`evaluation.backtest.portfolio_pnl`). Without costs, the Sharpe ratio E[x] / sd(x) of x = p'R over
time is maximised by p[t] proportional to M[t]^-1 mu[t] (Cauchy-Schwarz on E[p'mu] / sqrt(E[p'Mp]);
M rather than Sigma because sd^2 = E[x^2] - E[x]^2), which is this rule with c = h = 0. Sharpe does
not depend on the scale 1/gamma as long as the limit does not bind (gross PnL and costs both scale
with the position), so gamma is set where the limit never binds on the fixture's own bars
(`scale_for_limit`). With costs the rule is a no-trade band: a symbol is moved only when the gain in
mean-variance utility, counted over L bars, exceeds the cost of moving, and then only to the edge of
the band, not to the frictionless target. L was chosen on fixtures of other seeds than the default
(docs/evaluation.md, "The oracle"); tests/ml/evaluation/test_oracle.py checks on an independent long
fixture that no cheap strategy and no rescaling of the rule (scale, band width, an exponent on the
target) beats it beyond block-bootstrap noise.

The per-bar problem is concave with a separable non-smooth part, solved exactly by coordinate
ascent (each coordinate is a one-dimensional concave piecewise quadratic; its maximiser is one of
eight candidates), warm-started at q. A symbol whose mu or sigma is unknown at a bar is flat there.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numba
import numpy as np
import pandas as pd

from plus_ultra_ml.config import CostConfig
from plus_ultra_ml.errors import PlusUltraError
from plus_ultra_ml.objectives.pnl import hold_rate, trade_rate

MU_INDICATOR = "truth_oracle"  # E[next simple return | generator state], per (symbol, bar)
SIGMA_INDICATOR = "truth_sigma"  # sd of the next simple return given the state
MU_COLUMN = f"ind__{MU_INDICATOR}"  # their panel columns
SIGMA_COLUMN = f"ind__{SIGMA_INDICATOR}"
COST_HORIZON_BARS = 4.0  # chosen on fixtures of seeds 101-103 (docs/evaluation.md); see the module doc
MAX_SWEEPS = 200


@dataclass(frozen=True)
class OracleRule:
    """The parameters of the oracle rule (stored as ``fixture_truth.oracle_rule``)."""

    correlation: float  # rho: pairwise correlation of the return shocks (the generator's market_correlation)
    risk_aversion: float  # gamma: positions are M^-1 mu / gamma before costs; sets the scale only
    cost_horizon: float = COST_HORIZON_BARS  # L: bars a trade's cost is amortised over
    position_limit: float = 1.0  # |p| bound of the backtester (BacktestConfig.position_limit)

    def __post_init__(self) -> None:
        if not -1.0 < self.correlation < 1.0:
            raise PlusUltraError(f"OracleRule.correlation must be in (-1, 1), got {self.correlation!r}")
        for name in ("risk_aversion", "cost_horizon", "position_limit"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
                raise PlusUltraError(f"OracleRule.{name} must be a finite number > 0, got {value!r}")

    def to_dict(self) -> dict[str, float]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> OracleRule:
        return cls(**{k: float(v) for k, v in values.items()})


@numba.njit(cache=True, nogil=True, error_model="numpy")
def coordinate_step(a, b, hold, trade, q, limit):  # pragma: no cover - numba
    """argmax over |x| <= limit of a x - b x^2 / 2 - hold |x| - trade |x - q| (b > 0): one coordinate
    of the rule, a concave piecewise quadratic whose maximiser is one of eight candidates (the
    stationary points of its four linear pieces, both kinks, both bounds)."""
    best_x = 0.0
    best_f = -np.inf
    for k in range(8):
        if k < 4:
            x = (a - hold * (1.0 if k % 2 == 0 else -1.0) - trade * (1.0 if k < 2 else -1.0)) / b
        elif k == 4:
            x = 0.0
        elif k == 5:
            x = q
        elif k == 6:
            x = limit
        else:
            x = -limit
        x = min(max(x, -limit), limit)
        f = a * x - 0.5 * b * x * x - hold * abs(x) - trade * abs(x - q)
        if f > best_f:
            best_f = f
            best_x = x
    return best_x


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _positions(mu, sigma, rho, gamma, trade, hold, limit, previous, out):  # pragma: no cover - numba
    # mu, sigma, out: (T, N); previous: (N,) the position before the first bar.
    # M = Sigma + mu mu' is never formed: (M p)_i = rho sigma_i (sigma . p) + (1 - rho) sigma_i^2 p_i
    # + mu_i (mu . p), so with the two sums s = sigma . p and u = mu . p kept up to date a coordinate
    # step costs O(1) and a sweep O(N) (a dense M is O(N^2) per sweep: minutes for a 500-name universe).
    T, N = mu.shape
    p = np.empty(N)
    q = previous.copy()
    known = np.empty(N, dtype=np.bool_)
    for t in range(T):
        for i in range(N):
            known[i] = np.isfinite(mu[t, i]) and np.isfinite(sigma[t, i]) and sigma[t, i] > 0.0
            p[i] = q[i] if known[i] else 0.0
        for _ in range(MAX_SWEEPS):
            s = 0.0  # sigma . p and mu . p over known symbols, recomputed each sweep (no drift)
            u = 0.0
            for j in range(N):
                if known[j]:
                    s += sigma[t, j] * p[j]
                    u += mu[t, j] * p[j]
            change = 0.0
            for i in range(N):
                if not known[i]:
                    continue
                si = sigma[t, i]
                mi = mu[t, i]
                # the linear coefficient of p_i with the other coordinates held: mu_i - gamma sum_{j != i} M_ij p_j
                a = mi - gamma * (rho * si * (s - si * p[i]) + mi * (u - mi * p[i]))
                best_x = coordinate_step(a, gamma * (si * si + mi * mi), hold, trade, q[i], limit)  # b = gamma M_ii
                step = best_x - p[i]
                change = max(change, abs(step))
                s += si * step
                u += mi * step
                p[i] = best_x
            if change <= 1e-13 * limit:
                break
        for i in range(N):
            out[t, i] = p[i]
            q[i] = p[i]


def _check(mu: np.ndarray, sigma: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mu = np.ascontiguousarray(mu, dtype=np.float64)
    sigma = np.ascontiguousarray(sigma, dtype=np.float64)
    if mu.ndim != 2 or mu.shape != sigma.shape:
        raise PlusUltraError(f"oracle: mu {mu.shape} and sigma {sigma.shape} must both be (bars, symbols)")
    if (sigma[np.isfinite(sigma)] < 0).any():
        raise PlusUltraError("oracle: sigma has negative values; it is a standard deviation")
    return mu, sigma


def oracle_positions(mu: np.ndarray, sigma: np.ndarray, costs: CostConfig, rule: OracleRule,
                     previous: np.ndarray | None = None) -> np.ndarray:
    """(T, N) oracle positions in [-limit, limit] from mu, sigma (T, N): see the module doc.

    Causal: p[t] is a function of mu[t], sigma[t], p[t-1] and the constants (rule, costs) only.
    previous (N,): the position held before the first bar (default flat).
    """
    mu, sigma = _check(mu, sigma)
    prev = np.zeros(mu.shape[1]) if previous is None else np.asarray(previous, dtype=np.float64).copy()
    out = np.empty_like(mu)
    _positions(mu, sigma, rule.correlation, rule.risk_aversion, trade_rate(costs) / rule.cost_horizon,
               hold_rate(costs), rule.position_limit, prev, out)
    return out


def frictionless_targets(mu: np.ndarray, sigma: np.ndarray, correlation: float) -> np.ndarray:
    """(T, N) M[t]^-1 mu[t]: the rule's positions with gamma = 1, no costs and no limit (bars with
    every symbol known; NaN on the others).

    M = D + V C V' with D = diag((1 - rho) sigma^2), V = [sigma, mu] (N, 2), C = diag(rho, 1), so
    M^-1 mu = D^-1 mu - D^-1 V C (I + V' D^-1 V C)^-1 V' D^-1 mu (Woodbury, valid for any rho):
    a 2 x 2 solve per bar, O(T N) time and memory instead of a (T, N, N) stack.
    """
    mu, sigma = _check(mu, sigma)
    d_inv = 1.0 / ((1.0 - correlation) * sigma**2)  # (T, N)
    V = np.stack([sigma, mu], axis=2)  # (T, N, 2)
    C = np.diag([correlation, 1.0])  # (2, 2)
    gram = np.einsum("tnk,tn,tnl->tkl", V, d_inv, V)  # (T, 2, 2): V' D^-1 V
    inner = np.eye(2) + gram @ C  # (T, 2, 2)
    projected = np.einsum("tnk,tn->tk", V, d_inv * mu)  # (T, 2): V' D^-1 mu
    with np.errstate(invalid="ignore"):
        solved = np.linalg.solve(np.nan_to_num(inner, nan=1.0), projected[:, :, None])[:, :, 0]  # (T, 2)
    solved[~np.isfinite(inner).all(axis=(1, 2))] = np.nan  # a bar with an unknown symbol has no target
    return d_inv * mu - d_inv * np.einsum("tnk,kl,tl->tn", V, C, solved)


def scale_for_limit(mu: np.ndarray, sigma: np.ndarray, correlation: float, position_limit: float = 1.0) -> float:
    """gamma at which the largest frictionless target on these bars is exactly the position limit."""
    targets = frictionless_targets(mu, sigma, correlation)
    largest = float(np.nanmax(np.abs(targets))) if np.isfinite(targets).any() else 0.0
    if not largest > 0:
        raise PlusUltraError("oracle: every expected return is zero or unknown; there is nothing to size")
    return largest / position_limit


def panel_oracle_positions(panel: pd.DataFrame, costs: CostConfig, rule: OracleRule) -> pd.Series:
    """Oracle positions on a (symbol, timestamp) panel carrying ind__truth_oracle and ind__truth_sigma.

    Every symbol's path runs over the panel's whole history from flat (a walk-forward joins the rows
    it scores); a bar where a symbol has no truth is flat for it.
    """
    columns = [MU_COLUMN, SIGMA_COLUMN]
    missing = [c for c in columns if c not in panel.columns]
    if missing:
        raise PlusUltraError(f"the panel has no {missing} column(s): the oracle needs the fixture's truth "
                             "indicators; rebuild the database with `plus-ultra fixture --overwrite`")
    mu = panel[columns[0]].unstack("symbol").sort_index()  # (T, N)
    sigma = panel[columns[1]].unstack("symbol").reindex_like(mu)
    positions = oracle_positions(mu.to_numpy(), sigma.to_numpy(), costs, rule)
    wide = pd.DataFrame(positions, index=mu.index, columns=mu.columns)
    return wide.stack().rename("oracle").reorder_levels(panel.index.names).reindex(panel.index)
