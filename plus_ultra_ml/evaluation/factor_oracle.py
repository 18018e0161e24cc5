"""The dollar-neutral oracle of a factor-model universe: the best long-short book given the true
expected returns, the true covariance and the stated costs. The sibling of `evaluation.oracle` (the
rule of the small regime-switching fixture, one common factor, no neutrality): the same objective,
the same one-coordinate step (`oracle.coordinate_step`), the same cost horizon, with a structured
covariance and a budget constraint.

Only the universe fixture knows the truth it needs (plus_ultra_ml/synthetic/universe.py stores it:
``truth_oracle`` = mu[t, i] = E[close[t+1]/close[t] - 1 | generator state at t] per (symbol, bar),
and the `FactorModel` plus the `DollarNeutralRule` in ``fixture_truth``).

The rule (t = decision bar, i over the names listed at t (mu finite), q = p[t-1], p[-1] = 0):

    p[t] = argmax_{|p_i| <= limit, sum_i p_i = 0}  p'mu - h |p|_1 - (c / L) |p - q|_1 - (gamma / 2) p' M p

    M     = Sigma + mu mu'                        second moment of the next returns given the state
    Sigma = s_m^2 b b' + sum_k s_k^2 g_k g_k' + diag(d^2)     the factor model: market loadings b,
            g_k = the sector loadings of sector k's names (zero elsewhere), idiosyncratic vols d
    c, h  = trade_rate(costs), hold_rate(costs); L = cost_horizon (as evaluation.oracle)

Positions are sleeves of the equal-weight book (`evaluation.backtest.portfolio_pnl`: PnL = mean_i
p_i R_i net of costs), so sum_i p_i = 0 is a dollar-neutral book. Why it is the ceiling: the argument
of evaluation/oracle.py (Cauchy-Schwarz on E[p'mu] / sqrt(E[p'Mp]) with c = h = 0, scale-free while
the limit does not bind, a no-trade band with costs), restricted to the dollar-neutral books.
gamma is set where the limit never binds on the fixture's bars (`neutral_scale_for_limit`).

Solving one bar exactly: write M - diag(d^2) = V V' (V = [b s_m, g_k s_k, mu], N x (S + 2)) and dualise
both the factor exposures y = V'p and the budget. Given theta = (z, lam) the names separate,
p_i(theta) = argmax_x (mu_i - lam - v_i'z) x - h|x| - (c/L)|x - q_i| - (gamma/2) d_i^2 x^2 (the
one-coordinate step of evaluation/oracle.py), and the dual, sum_i max_x(...) + |z|^2 / (2 gamma), is
convex, piecewise quadratic and smooth (each p_i is unique and continuous in theta). Its gradient
(z / gamma - V'p, -1'p) vanishes exactly at the optimum, where 1'p = 0. Damped Newton with an
Armijo line search on the dual (Hessian: the names off their kinks and bounds, each adding
w_i w_i' / (gamma d_i^2) with four non-zeros) converges in a few steps from the previous bar's
theta: O(N) a step, never an N x N matrix, so 2,000 names are cheap.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numba
import numpy as np
import pandas as pd

from plus_ultra_ml.config import CostConfig
from plus_ultra_ml.errors import PlusUltraError
from plus_ultra_ml.evaluation.oracle import COST_HORIZON_BARS, MU_COLUMN, coordinate_step
from plus_ultra_ml.objectives.pnl import hold_rate, trade_rate

MAX_NEWTON_STEPS = 200  # per bar; a warm start needs a handful
BUDGET_TOL = 1e-11  # the dual gradient (|sum_i p_i| and the factor-exposure mismatch) accepted as zero, times the limit


@dataclass(frozen=True, eq=False)
class FactorModel:
    """The covariance of next-bar simple returns, per bar (not annualised), for named symbols.

    symbols (N,), market_beta (N,), sector (N,) codes into sector_names, sector_beta (N,),
    idio_vol (N,); market_vol a float; sector_vols (S,). Sigma_ij = market_vol^2 b_i b_j +
    [sector_i == sector_j] sector_vols[sector_i]^2 g_i g_j + [i == j] idio_vol_i^2.
    """

    symbols: tuple[str, ...]
    sector_names: tuple[str, ...]
    sector: np.ndarray
    market_beta: np.ndarray
    sector_beta: np.ndarray
    idio_vol: np.ndarray
    market_vol: float
    sector_vols: np.ndarray

    def __post_init__(self) -> None:
        n = len(self.symbols)
        for name in ("sector", "market_beta", "sector_beta", "idio_vol"):
            if np.shape(getattr(self, name)) != (n,):
                raise PlusUltraError(f"FactorModel.{name} must have one value per symbol ({n})")
        if np.shape(self.sector_vols) != (len(self.sector_names),):
            raise PlusUltraError("FactorModel.sector_vols must have one value per sector name")
        if n and not (0 <= np.min(self.sector) and np.max(self.sector) < len(self.sector_names)):
            raise PlusUltraError("FactorModel.sector codes must index sector_names")
        if not (np.all(np.asarray(self.idio_vol) > 0) and self.market_vol >= 0 and np.all(np.asarray(self.sector_vols) >= 0)):
            raise PlusUltraError("FactorModel: idio_vol must be > 0 and the factor vols >= 0")

    def covariance(self) -> np.ndarray:
        """(N, N) dense Sigma (for tests and small universes)."""
        b = np.asarray(self.market_beta)
        same = np.asarray(self.sector)[:, None] == np.asarray(self.sector)[None, :]
        g = np.asarray(self.sector_beta) * np.asarray(self.sector_vols)[self.sector]
        return self.market_vol**2 * np.outer(b, b) + same * np.outer(g, g) + np.diag(np.asarray(self.idio_vol) ** 2)

    def total_vol(self) -> np.ndarray:
        """(N,) sd of each name's next return: sqrt(diag Sigma)."""
        g = np.asarray(self.sector_beta) * np.asarray(self.sector_vols)[self.sector]
        return np.sqrt(self.market_vol**2 * np.asarray(self.market_beta) ** 2 + g**2 + np.asarray(self.idio_vol) ** 2)

    def subset(self, symbols) -> FactorModel:
        """The model of `symbols` (in that order); a symbol it does not know is an error."""
        position = {s: j for j, s in enumerate(self.symbols)}
        unknown = [s for s in symbols if s not in position]
        if unknown:
            raise PlusUltraError(f"the universe's factor model has no symbol(s) {unknown[:5]}; the panel is not "
                                 "from this fixture (rebuild it, or score without the oracle)")
        j = np.asarray([position[s] for s in symbols], dtype=np.int64)
        return FactorModel(tuple(symbols), self.sector_names, np.asarray(self.sector)[j], np.asarray(self.market_beta)[j],
                           np.asarray(self.sector_beta)[j], np.asarray(self.idio_vol)[j], self.market_vol,
                           np.asarray(self.sector_vols))

    def to_dict(self) -> dict[str, Any]:
        return {"symbols": list(self.symbols), "sector_names": list(self.sector_names),
                "sector": [self.sector_names[k] for k in np.asarray(self.sector)],
                "market_beta": np.asarray(self.market_beta).tolist(), "sector_beta": np.asarray(self.sector_beta).tolist(),
                "idio_vol": np.asarray(self.idio_vol).tolist(), "market_vol": float(self.market_vol),
                "sector_vols": np.asarray(self.sector_vols).tolist()}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> FactorModel:
        names = tuple(values["sector_names"])
        code = {s: k for k, s in enumerate(names)}
        return cls(tuple(values["symbols"]), names, np.asarray([code[s] for s in values["sector"]], dtype=np.int64),
                   np.asarray(values["market_beta"], dtype=np.float64), np.asarray(values["sector_beta"], dtype=np.float64),
                   np.asarray(values["idio_vol"], dtype=np.float64), float(values["market_vol"]),
                   np.asarray(values["sector_vols"], dtype=np.float64))


@dataclass(frozen=True)
class DollarNeutralRule:
    """The parameters of the dollar-neutral rule (stored as ``fixture_truth.oracle_rule``)."""

    risk_aversion: float  # gamma: the frictionless book is M^-1 (mu - lam 1) / gamma; sets the scale only
    cost_horizon: float = COST_HORIZON_BARS  # L: bars a trade's cost is amortised over
    position_limit: float = 1.0  # |p| bound of each sleeve (BacktestConfig.position_limit)

    def __post_init__(self) -> None:
        for name in ("risk_aversion", "cost_horizon", "position_limit"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
                raise PlusUltraError(f"DollarNeutralRule.{name} must be a finite number > 0, got {value!r}")

    def to_dict(self) -> dict[str, float]:
        return {"risk_aversion": self.risk_aversion, "cost_horizon": self.cost_horizon,
                "position_limit": self.position_limit}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> DollarNeutralRule:
        return cls(**{k: float(v) for k, v in values.items()})


# --------------------------------------------------------------------------------------------
# kernels (numba): arrays (T, N) with time first; NaN mu = the name is not listed at that bar
# --------------------------------------------------------------------------------------------
@numba.njit(cache=True, nogil=True, error_model="numpy")
def _book(theta, mu_t, known, mv, sector, sv, idio2, gamma, trade, hold, limit, q, p):  # pragma: no cover - numba
    """p <- argmax_p of the Lagrangian at theta = (z_market, z_sectors.., z_mu, lam); returns the dual value.

    Given theta the names separate: a_i = mu_i - lam - v_i'z with v_i = (b_i s_m, g_i s_k at its sector, mu_i).
    """
    N = p.shape[0]
    S = theta.shape[0] - 3
    z_mu = theta[S + 1]
    lam = theta[S + 2]
    value = 0.0
    for k in range(S + 2):
        value += theta[k] * theta[k] / (2.0 * gamma)
    for i in range(N):
        if not known[i]:
            p[i] = 0.0
            continue
        a = mu_t[i] - lam - mv[i] * theta[0] - sv[i] * theta[1 + sector[i]] - mu_t[i] * z_mu
        b = gamma * idio2[i]
        x = coordinate_step(a, b, hold, trade, q[i], limit)
        p[i] = x
        value += a * x - 0.5 * b * x * x - hold * abs(x) - trade * abs(x - q[i])
    return value


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _gradient(theta, mu_t, known, mv, sector, sv, gamma, p, grad):  # pragma: no cover - numba
    """grad <- d(dual)/d(theta) = (z / gamma - V'p, -1'p); returns its largest magnitude."""
    S = theta.shape[0] - 3
    for k in range(S + 2):
        grad[k] = theta[k] / gamma
    grad[S + 2] = 0.0
    for i in range(p.shape[0]):
        if known[i]:
            grad[0] -= mv[i] * p[i]
            grad[1 + sector[i]] -= sv[i] * p[i]
            grad[S + 1] -= mu_t[i] * p[i]
            grad[S + 2] -= p[i]
    return np.max(np.abs(grad))


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _neutral_positions(mu, beta, sector, g, idio2, var_m, var_s, gamma, trade, hold, limit, previous, out, residual):  # pragma: no cover
    # The dual in theta = (z (S + 2 factor exposures, the mu column included), lam) is convex and
    # piecewise quadratic: damped (semismooth) Newton with an Armijo line search, warm-started.
    T, N = mu.shape
    S = var_s.shape[0]
    K = S + 3
    mv = beta * np.sqrt(var_m)  # market column of V
    sv = g * np.sqrt(var_s)[sector]  # own-sector column of V
    p = np.zeros(N)
    trial = np.zeros(N)
    q = previous.copy()
    known = np.zeros(N, dtype=np.bool_)
    theta = np.zeros(K)
    grad = np.zeros(K)
    step = np.zeros(K)
    candidate = np.zeros(K)
    J = np.zeros((K, K))
    w = np.zeros(4)
    cols = np.zeros(4, dtype=np.int64)
    tol = BUDGET_TOL * limit
    for t in range(T):
        mu_t = mu[t]
        n_known = 0
        for i in range(N):
            known[i] = np.isfinite(mu_t[i])
            n_known += known[i]
        residual[t] = 0.0
        if n_known < 2:  # one name cannot be dollar-neutral but flat
            for i in range(N):
                out[t, i] = 0.0
                q[i] = 0.0
            continue
        mu_c = np.where(known, mu_t, 0.0)
        value = _book(theta, mu_c, known, mv, sector, sv, idio2, gamma, trade, hold, limit, q, p)
        worst = _gradient(theta, mu_c, known, mv, sector, sv, gamma, p, grad)
        for _ in range(MAX_NEWTON_STEPS):
            if worst <= tol:
                break
            J[:, :] = 0.0
            for k in range(S + 2):
                J[k, k] = 1.0 / gamma
            J[K - 1, K - 1] = 1e-14 / gamma  # lam has no quadratic term of its own
            cols[0], cols[2], cols[3] = 0, S + 1, S + 2
            for i in range(N):
                x = p[i]
                if not known[i] or x == 0.0 or x == q[i] or x == limit or x == -limit:
                    continue  # at a kink or a bound: locally constant in theta
                slope = 1.0 / (gamma * idio2[i])
                w[0], w[1], w[2], w[3] = mv[i], sv[i], mu_c[i], 1.0
                cols[1] = 1 + sector[i]
                for r in range(4):
                    for c in range(4):
                        J[cols[r], cols[c]] += slope * w[r] * w[c]
            step[:] = -np.linalg.solve(J, grad)
            slope_g = 0.0
            for k in range(K):
                slope_g += grad[k] * step[k]
            size = 1.0
            accepted = False
            for _ in range(60):
                for k in range(K):
                    candidate[k] = theta[k] + size * step[k]
                trial_value = _book(candidate, mu_c, known, mv, sector, sv, idio2, gamma, trade, hold, limit, q, trial)
                if trial_value <= value + 1e-4 * size * slope_g:
                    accepted = True
                    break
                size *= 0.5
            if not accepted:
                break  # no descent left at machine precision
            theta[:] = candidate
            p[:] = trial
            value = trial_value
            worst = _gradient(theta, mu_c, known, mv, sector, sv, gamma, p, grad)
        residual[t] = -grad[K - 1]  # sum_i p_i
        for i in range(N):
            out[t, i] = p[i]
            q[i] = p[i]


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _frictionless(mu, beta, sector, g, idio2, var_m, var_s, out):  # pragma: no cover - numba
    # M^-1 x by Woodbury: M = D + U C U', U = [b, g_1..g_S, mu] (N, K), C = diag(var_m, var_s, 1).
    T, N = mu.shape
    S = var_s.shape[0]
    K = S + 2
    for t in range(T):
        idx = np.flatnonzero(np.isfinite(mu[t]))
        n = idx.shape[0]
        out[t, :] = 0.0
        if n < 2:
            continue
        U = np.zeros((n, K))
        c = np.empty(K)
        c[0] = var_m
        c[1:S + 1] = var_s
        c[K - 1] = 1.0
        dinv = np.empty(n)
        for r in range(n):
            i = idx[r]
            U[r, 0] = beta[i]
            U[r, 1 + sector[i]] = g[i]
            U[r, K - 1] = mu[t, i]
            dinv[r] = 1.0 / idio2[i]
        A = np.eye(K) + (c[:, None] * U.T) @ (dinv[:, None] * U)  # I + C U' D^-1 U
        X = np.empty((n, 2))
        for r in range(n):
            X[r, 0] = mu[t, idx[r]] * dinv[r]
            X[r, 1] = dinv[r]  # D^-1 1
        Y = X - (dinv[:, None] * U) @ np.linalg.solve(A, (c[:, None] * U.T) @ X)  # M^-1 [mu, 1]
        lam = Y[:, 0].sum() / Y[:, 1].sum()
        for r in range(n):
            out[t, idx[r]] = Y[r, 0] - lam * Y[r, 1]


def _arrays(mu: np.ndarray, model: FactorModel) -> tuple:
    mu = np.ascontiguousarray(mu, dtype=np.float64)
    if mu.ndim != 2 or mu.shape[1] != len(model.symbols):
        raise PlusUltraError(f"oracle: mu {mu.shape} must be (bars, {len(model.symbols)} symbols of the factor model)")
    g = np.asarray(model.sector_beta, dtype=np.float64)
    return (mu, np.asarray(model.market_beta, dtype=np.float64), np.asarray(model.sector, dtype=np.int64), g,
            np.asarray(model.idio_vol, dtype=np.float64) ** 2, float(model.market_vol) ** 2,
            np.asarray(model.sector_vols, dtype=np.float64) ** 2)


def neutral_frictionless_targets(mu: np.ndarray, model: FactorModel) -> np.ndarray:
    """(T, N) M[t]^-1 (mu[t] - lam 1) with 1'p = 0: the rule with gamma = 1, no costs, no limit."""
    args = _arrays(mu, model)
    out = np.empty_like(args[0])
    _frictionless(*args, out)
    return out


def neutral_scale_for_limit(mu: np.ndarray, model: FactorModel, position_limit: float = 1.0) -> float:
    """gamma at which the largest frictionless dollar-neutral target on these bars is the position limit."""
    targets = neutral_frictionless_targets(mu, model)
    largest = float(np.max(np.abs(targets))) if targets.size else 0.0
    if not largest > 0:
        raise PlusUltraError("oracle: no bar has two names with known expected returns; there is nothing to size")
    return largest / position_limit


def dollar_neutral_positions(mu: np.ndarray, model: FactorModel, costs: CostConfig, rule: DollarNeutralRule,
                             previous: np.ndarray | None = None, *, return_residual: bool = False):
    """(T, N) oracle sleeves in [-limit, limit] summing to zero at every bar (see the module doc).

    mu (T, N): columns in model.symbols order, NaN where a name is not listed (flat there).
    Causal: p[t] depends on mu[t], p[t-1], the model and the constants only. previous (N,): the book
    before the first bar (default flat). return_residual: also the (T,) sum_i p_i left by the root search.
    """
    args = _arrays(mu, model)
    prev = np.zeros(args[0].shape[1]) if previous is None else np.asarray(previous, dtype=np.float64).copy()
    out = np.empty_like(args[0])
    residual = np.empty(args[0].shape[0])
    _neutral_positions(*args, rule.risk_aversion, trade_rate(costs) / rule.cost_horizon, hold_rate(costs),
                       rule.position_limit, prev, out, residual)
    return (out, residual) if return_residual else out


def panel_dollar_neutral_positions(panel: pd.DataFrame, costs: CostConfig, model: FactorModel,
                                   rule: DollarNeutralRule) -> pd.Series:
    """Oracle sleeves on a (symbol, timestamp) panel carrying ind__truth_oracle, over its whole history
    from flat; a bar where a symbol has no truth is flat for it (and leaves the budget)."""
    column = MU_COLUMN
    if column not in panel.columns:
        raise PlusUltraError(f"the panel has no {column} column: the oracle needs the universe fixture's truth "
                             "indicators; rebuild the database with `plus-ultra fixture --universe N --overwrite`")
    mu = panel[column].unstack("symbol").sort_index()  # (T, N)
    symbols = [str(s) for s in mu.columns]
    positions = dollar_neutral_positions(mu.to_numpy(), model.subset(symbols), costs, rule)
    wide = pd.DataFrame(positions, index=mu.index, columns=mu.columns)
    return wide.stack().rename("oracle").reorder_levels(panel.index.names).reindex(panel.index)
