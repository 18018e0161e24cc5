"""The built-in synthetic market: regime-switching candles with a planted signal of known strength.

Every later stage is scored against what this generator knows. The idea follows Hamilton-style
Markov-switching return models (persistent latent regimes drive volatility and drift) plus a
one-factor correlation structure, with an alternative-data factor planted as a leading signal.

Calendar
    UTC bars on a regular grid from ``cfg.start``: 15min and 1h trade around the clock (24/7, no
    sessions); 1D bars fall on business days (Monday to Friday, 00:00 UTC). ``bars_per_year`` is
    `plus_ultra_ml.data.calendar.periods_per_year` of that calendar, stored as ``assets.exchange``
    (24/7: 35,064 for 15min, 8,766 for 1h; 24/5: about 261 for 1D).

Generating equations (t = bar, i = symbol; every shock N(0, 1), independent unless stated)
    v[t]    in {0, 1, 2}      market volatility regime, Markov chain with mean duration
                              `vol_regime_bars`, leaving to either other state with equal
                              probability; vol multiplier lam[v] = VOL_MULTIPLIERS[v] = (0.6, 1.0, 1.8)
    u[i,t]  in {-1, 0, +1}    per-symbol trend regime (down, flat, up), same kind of chain with mean
                              duration `trend_regime_bars`
    n[i,t]  = sqrt(rho) f[t] + sqrt(1 - rho) e[i,t]      unit shock; f is the common market factor,
                              rho = `market_correlation` (pairwise shock correlation)
    a[i,t]  = phi_a a[i,t-1] + sqrt(1 - phi_a^2) eta[i,t]    planted alt factor, phi_a = `alt_persistence`
    m[i,t]  = phi_m m[i,t-1] + sqrt(1 - phi_m^2) n[i,t]      momentum state, an AR(1) filter of the
                              symbol's own past shocks, phi_m = `momentum_persistence` (close to a
                              normalised EWMA of past vol-scaled returns, so it is learnable)
    s[i,t]  = gamma a[i,t] + delta u[i,t] + beta(u[i,t]) m[i,t]   predictable part (vol units);
                              delta = `trend_drift`; beta(u) = +`momentum` when trending (u != 0),
                              -`momentum` when flat (momentum continues in trends, reverts in ranges)
    k[i,t]  = sigma_i lam[v[t]]                         bar vol; sigma_i = annual_vol_i / sqrt(bars_per_year),
                              annual_vol_i ~ U(ANNUAL_VOL_RANGE)
    log close[i,t+1] - log close[i,t] = k[i,t] (s[i,t] + n[i,t+1])    the state at t drives bar t+1
    gamma is solved so that corr(a[i,t], return t -> t+1) = `alt_ic` in expectation for each
    symbol (it accounts for the volatility mixture and the other predictable terms).

Observables written to the database
    series: open[t] = close[t-1] exp(GAP_SCALE[freq] k[t-1] xi), high/low = max/min(open, close)
    times exp(+/- WICK_SCALE k[t-1] |zeta|) (so high >= max(open, close) >= min(open, close) >= low > 0),
    volume = base_volume_i exp(0.8 log lam[v[t-1]] + 0.5 (|n[i,t]| - sqrt(2/pi)) + 0.3 omega),
    rounded to whole units (correlated with |returns| and with the volatility regime).
    indicators: ``alt_0 = a`` (the clean planted factor); ``alt_1 = 0.5 a + sqrt(0.75) z`` (partly
    informative) and ``alt_k = z_k`` for k >= 2 (pure noise), where every z is an independent AR(1)
    with the same persistence as a, so noise cannot be told from signal by its autocorrelation.

Evaluation-only truth (indicator names beginning ``truth_``; the feature room never feeds them to a
model, they exist only to score models)
    truth_oracle[i,t]       = mu[i,t] = E[close[t+1] / close[t] - 1 | generator state at t]
                            = exp(k s + k^2 / 2) - 1 (the log return is Gaussian given the state).
                              It conditions on the latent regimes too, so no model that sees only
                              observables can beat its information coefficient in expectation.
    truth_sigma[i,t]        = sd of that simple return given the state = (1 + mu) sqrt(exp(k^2) - 1)
                              (the pairwise correlation of the shocks is rho = market_correlation;
                              that of the simple returns differs from rho by O(k^2), about 1e-6)
    truth_vol_regime[t]     = v[t] (0 low, 1 mid, 2 high), the same for every symbol
    truth_trend_regime[i,t] = u[i,t] (-1 down, 0 flat, +1 up)

The ``fixture_truth`` table: key/value rows, ``key TEXT PRIMARY KEY, value TEXT`` where every value is
a JSON document (see TRUTH_KEYS): the generator parameters, the seed, the measured information
coefficient (Pearson, vs the realised next-bar simple return, pooled over symbols and per symbol) of
the oracle and of each alt feature, the oracle rule's parameters and its Sharpe. The oracle is the
policy of `plus_ultra_ml.evaluation.oracle` (the one road): the best positions given the true mu,
sigma and rho and the costs, sized for Sharpe (M^-1 mu, M the second-moment matrix of the next
returns) within the backtester's position limit, with a no-trade band for trading costs. Its
``oracle_rule`` (correlation rho, the scale gamma at which the limit never binds on these bars, the
cost horizon L) and the truth_oracle / truth_sigma indicators are all that is needed to recompute
it on any set of bars; every walk-forward report on a fixture does so on exactly its scored rows
(`oracle_reference`; evaluation/report.py "share of oracle"). Positions follow docs/architecture.md:
p[t] earns close[t+1]/close[t] - 1 and pays (transaction_bps + slippage_bps) * |p[t] - p[t-1]| +
holding_bps * |p[t]| (p[-1] = 0, CostConfig defaults). Sharpe = mean / std (ddof 1) of the per-bar
portfolio PnL (equal-weight mean of the sleeves) times sqrt(bars_per_year). The stored
``sign_oracle_*`` Sharpes are the rule of format 1, p[t] = sign(truth_oracle[t]), kept as a
comparison: it trades every sign change at full size and ignores volatility and correlation, so a
model could beat it (a held-out tail scored 17.7 against its 15.2). The oracle's IC is a ceiling in
expectation; the oracle rule's Sharpe is a ceiling up to sampling noise (tests/ml/evaluation/
test_oracle.py). Every number is measured with the shared definitions: IC with
`evaluation.metrics.pooled_ic`, PnL with `objectives.pnl.position_pnl_numpy` and Sharpe with
`evaluation.metrics.sharpe_ratio` (`periods_per_year=bars_per_year`); a value with no answer (too few
bars, no dispersion) is stored as null.

The same seed gives the same bytes; the database is written to a temporary file and renamed.
"""

from __future__ import annotations

import json
import logging
import math
import os
import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from plus_ultra_ml.artifacts import atomic_path
from plus_ultra_ml.config import CostConfig, FixtureConfig
from plus_ultra_ml.data.calendar import periods_per_year
from plus_ultra_ml.data.schema import TIMESTAMP_FORMAT, create_schema
from plus_ultra_ml.errors import PlusUltraError
from plus_ultra_ml.evaluation.metrics import pooled_ic, sharpe_ratio
from plus_ultra_ml.evaluation.oracle import (MU_INDICATOR, SIGMA_INDICATOR, OracleRule, oracle_positions,
                                             panel_oracle_positions, scale_for_limit)
from plus_ultra_ml.objectives.pnl import next_bar_returns_numpy, position_pnl_numpy

if TYPE_CHECKING:
    from plus_ultra_ml.synthetic.universe import UniverseTruth

log = logging.getLogger(__name__)

FORMAT_VERSION = 2  # 2: the oracle is evaluation.oracle's policy (truth_sigma, oracle_rule); 1: sign(truth_oracle)
TRUTH_INDICATOR_PREFIX = "truth_"  # evaluation-only indicators: never model inputs
ORACLE_INDICATOR = MU_INDICATOR  # "truth_oracle": the true expected next return
SIGMA_INDICATOR_NAME = SIGMA_INDICATOR  # "truth_sigma": its true standard deviation
VOL_MULTIPLIERS = (0.6, 1.0, 1.8)  # lam[v] for the low, mid and high volatility regimes
ANNUAL_VOL_RANGE = (0.15, 0.35)  # per-symbol annualised volatility of the mid regime, uniform
START_PRICE_RANGE = (20.0, 500.0)  # per-symbol first close, log-uniform
BASE_VOLUME_RANGE = (1e5, 5e6)  # per-symbol typical volume per bar, log-uniform
GAP_SCALE = {"15min": 0.05, "1h": 0.05, "1D": 0.3}  # open vs previous close, in bar-vol units
WICK_SCALE = 0.5  # high/low excursion beyond the body, in bar-vol units
ALT_1_LOADING = 0.5  # alt_1 = 0.5 a + sqrt(0.75) z

TRUTH_TABLE_DDL = """
    CREATE TABLE IF NOT EXISTS fixture_truth (
        key   TEXT PRIMARY KEY,
        value TEXT NOT NULL  -- a JSON document
    )"""
TRUTH_KEYS = (
    "format_version",
    "seed",
    "parameters",
    "bars_per_year",
    "oracle_ic",
    "oracle_ic_by_symbol",
    "alt_ic",
    "alt_ic_by_symbol",
    "oracle_sharpe_gross",
    "oracle_sharpe_net",
    "oracle_sharpe_by_symbol",
    "oracle_rule",
    "sign_oracle_sharpe_gross",
    "sign_oracle_sharpe_net",
    "costs",
    "cost_convention",
    "position_rule",
    "ic_definition",
)
COST_CONVENTION = (
    "position p[t] (decided at bar t's close) earns close[t+1]/close[t]-1; cost at t = "
    "(transaction_bps + slippage_bps) * 1e-4 * |p[t]-p[t-1]| + holding_bps * 1e-4 * |p[t]|, p[-1] = 0"
)
POSITION_RULE = (
    "p[t] = evaluation.oracle.oracle_positions(truth_oracle, truth_sigma, costs, oracle_rule): "
    "argmax over |p| <= limit of p'mu - h|p| - (c/L)|p - p[t-1]| - gamma/2 p'(Sigma + mu mu')p, "
    "Sigma_ij = sigma_i sigma_j (rho + (1 - rho)[i == j]); portfolio = equal-weight mean of symbol PnLs; "
    "the sign_oracle keys: p[t] = sign(truth_oracle[t]), the rule of format 1"
)
IC_DEFINITION = "Pearson correlation of the signal at bar t with close[t+1]/close[t]-1 over all bars t < T-1"


class FixtureExistsError(PlusUltraError):
    """The target path already exists and overwriting was not asked for."""


@dataclass(frozen=True)
class FixtureTruth:
    """What the generator knows: its parameters and the measured strength of the planted signal."""

    seed: int
    parameters: Mapping[str, Any]  # every generator parameter: config fields + derived constants
    bars_per_year: float
    oracle_ic: float  # pooled over symbols
    oracle_ic_by_symbol: Mapping[str, float]
    alt_ic: Mapping[str, float]  # alt_k -> pooled IC
    alt_ic_by_symbol: Mapping[str, Mapping[str, float]]  # alt_k -> symbol -> IC
    oracle_sharpe_gross: float  # annualised, equal-weight portfolio of the oracle rule's positions
    oracle_sharpe_net: float
    oracle_sharpe_by_symbol: Mapping[str, Mapping[str, float]]  # symbol -> {"gross", "net"} of its sleeve
    oracle_rule: Mapping[str, float]  # evaluation.oracle.OracleRule fields
    sign_oracle_sharpe_gross: float  # the old reference: sign(truth_oracle) in every symbol
    sign_oracle_sharpe_net: float
    costs: Mapping[str, float]  # the CostConfig used for the net Sharpe
    cost_convention: str = COST_CONVENTION
    position_rule: str = POSITION_RULE
    ic_definition: str = IC_DEFINITION

    @property
    def rule(self) -> OracleRule:
        return OracleRule.from_dict(dict(self.oracle_rule))

    def to_rows(self) -> list[tuple[str, str]]:
        """(key, JSON value) rows of the ``fixture_truth`` table, in TRUTH_KEYS order."""
        values = {"format_version": FORMAT_VERSION, **{k: getattr(self, k) for k in TRUTH_KEYS[1:]}}
        return [(key, json.dumps(_plain(values[key]), sort_keys=True)) for key in TRUTH_KEYS]


# --------------------------------------------------------------------------------------------
# sampling
# --------------------------------------------------------------------------------------------
def _markov_chain(rng: np.random.Generator, n_bars: int, n_states: int, mean_duration: float) -> np.ndarray:
    """A sticky Markov chain sampled as runs: geometric run lengths, uniform jumps to another state.

    Equivalent to stay-probability 1 - 1/mean_duration per bar; the stationary law is uniform.
    """
    p_switch = 1.0 / mean_duration
    expected_runs = n_bars * p_switch
    batch = int(expected_runs + 10 * math.sqrt(expected_runs) + 16)
    lengths = rng.geometric(p_switch, size=batch)
    while lengths.sum() < n_bars:  # a further batch is astronomically rare; kept for correctness
        lengths = np.concatenate([lengths, rng.geometric(p_switch, size=batch)])
    first = rng.integers(n_states)
    jumps = rng.integers(1, n_states, size=len(lengths) - 1)  # to any other state, equally likely
    states = (first + np.concatenate([[0], np.cumsum(jumps)])) % n_states
    return np.repeat(states, lengths)[:n_bars]


def _ar1(shocks: np.ndarray, phi: float) -> np.ndarray:
    """Stationary unit-variance AR(1) along axis 0: y[t] = phi y[t-1] + sqrt(1-phi^2) shocks[t].

    y[0] = shocks[0] (a draw from the stationary law). Runs as pandas' exponentially weighted mean
    (Cython) with alpha = 1 - phi, which is the same recursion.
    """
    if phi == 0:
        return shocks.copy()
    scaled = shocks * (math.sqrt(1 - phi * phi) / (1 - phi))
    scaled[0] = shocks[0]
    flat = scaled.reshape(len(scaled), -1)
    out = pd.DataFrame(flat).ewm(alpha=1 - phi, adjust=False).mean().to_numpy()
    return out.reshape(shocks.shape)


def alternative_data(alt_factor: np.ndarray, noise_shocks: np.ndarray | None, persistence: float) -> np.ndarray:
    """(T, N, K) alt features from the planted factor a (T, N) and K-1 noise shocks (T, N, K-1):
    alt_0 = a (clean), alt_1 = 0.5 a + sqrt(0.75) z_1 (half signal), alt_k = z_k (persistent noise),
    every z an AR(1) of its shocks with the persistence of a (so noise looks like signal)."""
    n_alt = 1 + (0 if noise_shocks is None else noise_shocks.shape[2])
    alts = np.empty((*alt_factor.shape, n_alt))
    alts[:, :, 0] = alt_factor
    if n_alt > 1:
        noise = _ar1(noise_shocks, persistence)
        alts[:, :, 1:] = noise
        alts[:, :, 1] = ALT_1_LOADING * alt_factor + math.sqrt(1 - ALT_1_LOADING**2) * noise[:, :, 0]
    return alts


def fixture_grid(cfg: FixtureConfig) -> pd.DatetimeIndex:
    """The fixture's UTC bar timestamps: 24/7 for intraday frequencies, business days for 1D."""
    start = pd.Timestamp(cfg.start)
    start = start.tz_localize("UTC") if start.tzinfo is None else start.tz_convert("UTC")
    if cfg.freq == "1D":
        return pd.bdate_range(start=start.normalize(), periods=cfg.rows, name="timestamp")
    return pd.date_range(start=start, periods=cfg.rows, freq=cfg.freq, name="timestamp")


def _alt_loading(cfg: FixtureConfig, momentum: float, trend_drift: float) -> float:
    """gamma such that corr(a[t], log return t -> t+1) = alt_ic for one symbol, in expectation.

    With k = sigma lam[v] independent of (s, n): corr = gamma E[lam] / sqrt(E[lam^2] (1 + Var s)),
    Var s = gamma^2 + (2/3) delta^2 + momentum^2 (u is uniform on three states).
    """
    lam = np.asarray(VOL_MULTIPLIERS)
    c = math.sqrt(np.mean(lam**2)) / np.mean(lam)
    rest = (2 / 3) * trend_drift**2 + momentum**2
    target = cfg.alt_ic * c
    if target >= 1:
        raise PlusUltraError(f"fixture.alt_ic={cfg.alt_ic} is not reachable; choose a value below {1 / c:.3f}")
    return target * math.sqrt((1 + rest) / (1 - target**2))


@dataclass(frozen=True)
class _Market:
    """The generated arrays, all (T, N) unless noted; symbols in config order."""

    timestamps: pd.DatetimeIndex  # (T,)
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray
    alts: np.ndarray  # (T, N, K)
    oracle: np.ndarray  # mu: E[simple return t -> t+1 | state at t]
    oracle_sigma: np.ndarray  # sd of the simple return t -> t+1 given the state at t
    vol_regime: np.ndarray  # (T,)
    trend_regime: np.ndarray
    asset_meta: list[dict[str, float]]  # per symbol
    parameters: dict[str, Any]
    bars_per_year: float


def fixture_calendar(cfg: FixtureConfig) -> str:
    """The trading calendar of the grid, stored as assets.exchange: 24/5 for 1D, 24/7 intraday."""
    return "24/5" if cfg.freq == "1D" else "24/7"


def _simulate(cfg: FixtureConfig) -> _Market:
    rng = np.random.default_rng(cfg.seed)
    n_bars, n_sym, n_alt = cfg.rows, len(cfg.symbols), cfg.alt_features
    timestamps = fixture_grid(cfg)
    bars_per_year = periods_per_year(timestamps, fixture_calendar(cfg))

    # Per-symbol constants.
    annual_vol = rng.uniform(*ANNUAL_VOL_RANGE, size=n_sym)
    start_price = np.exp(rng.uniform(*np.log(START_PRICE_RANGE), size=n_sym))
    base_volume = np.exp(rng.uniform(*np.log(BASE_VOLUME_RANGE), size=n_sym))
    sigma = annual_vol / math.sqrt(bars_per_year)  # (N,) per-bar vol of the mid regime

    # Latent regimes.
    vol_regime = _markov_chain(rng, n_bars, len(VOL_MULTIPLIERS), cfg.vol_regime_bars)  # (T,)
    trend_regime = np.stack(
        [_markov_chain(rng, n_bars, 3, cfg.trend_regime_bars) - 1 for _ in range(n_sym)], axis=1
    )  # (T, N) in {-1, 0, 1}

    # Shocks and the predictable part.
    rho = cfg.market_correlation
    shocks = math.sqrt(rho) * rng.standard_normal((n_bars, 1)) + math.sqrt(1 - rho) * rng.standard_normal(
        (n_bars, n_sym)
    )  # (T, N) n[i,t]
    alt_factor = _ar1(rng.standard_normal((n_bars, n_sym)), cfg.alt_persistence)  # (T, N) a[i,t]
    momentum_state = _ar1(shocks, cfg.momentum_persistence)  # (T, N) m[i,t]
    gamma = _alt_loading(cfg, cfg.momentum, cfg.trend_drift)
    beta = np.where(trend_regime != 0, cfg.momentum, -cfg.momentum)
    signal = gamma * alt_factor + cfg.trend_drift * trend_regime + beta * momentum_state  # (T, N) s[i,t]
    bar_vol = sigma[None, :] * np.asarray(VOL_MULTIPLIERS)[vol_regime][:, None]  # (T, N) k[i,t]

    # Prices: the state at t drives the return of bar t+1.
    log_ret = np.zeros((n_bars, n_sym))
    log_ret[1:] = bar_vol[:-1] * (signal[:-1] + shocks[1:])
    log_close = np.log(start_price)[None, :] + np.cumsum(log_ret, axis=0)
    oracle = np.expm1(bar_vol * signal + 0.5 * bar_vol**2)  # (T, N) E[simple return t -> t+1]
    oracle_sigma = (1.0 + oracle) * np.sqrt(np.expm1(bar_vol**2))  # (T, N) its sd (lognormal given the state)

    # Candle geometry and volume; bar t's own vol is k[t-1] (k[0] for the first bar).
    own_vol = np.concatenate([bar_vol[:1], bar_vol[:-1]])
    prev_close = np.concatenate([log_close[:1], log_close[:-1]])
    log_open = prev_close + GAP_SCALE[cfg.freq] * own_vol * rng.standard_normal((n_bars, n_sym))
    body_top = np.maximum(log_open, log_close)
    body_bottom = np.minimum(log_open, log_close)
    high = np.exp(body_top + WICK_SCALE * own_vol * np.abs(rng.standard_normal((n_bars, n_sym))))
    low = np.exp(body_bottom - WICK_SCALE * own_vol * np.abs(rng.standard_normal((n_bars, n_sym))))
    own_lam = np.asarray(VOL_MULTIPLIERS)[np.concatenate([vol_regime[:1], vol_regime[:-1]])][:, None]
    log_volume = (
        np.log(base_volume)[None, :]
        + 0.8 * np.log(own_lam)
        + 0.5 * (np.abs(shocks) - math.sqrt(2 / math.pi))
        + 0.3 * rng.standard_normal((n_bars, n_sym))
    )
    volume = np.round(np.exp(log_volume))

    noise_shocks = rng.standard_normal((n_bars, n_sym, n_alt - 1)) if n_alt > 1 else None
    alts = alternative_data(alt_factor, noise_shocks, cfg.alt_persistence)

    parameters = {
        **cfg.model_dump(mode="json", exclude={"universe"}),
        "alt_loading_gamma": gamma,
        "vol_multipliers": list(VOL_MULTIPLIERS),
        "annual_vol_range": list(ANNUAL_VOL_RANGE),
        "start_price_range": list(START_PRICE_RANGE),
        "base_volume_range": list(BASE_VOLUME_RANGE),
        "gap_scale": GAP_SCALE[cfg.freq],
        "wick_scale": WICK_SCALE,
        "alt_1_loading": ALT_1_LOADING,
        "calendar": "business days, 00:00 UTC" if cfg.freq == "1D" else "24/7 regular UTC grid",
        "annual_vol_by_symbol": dict(zip(cfg.symbols, annual_vol.tolist(), strict=True)),
        "bar_vol_by_symbol": dict(zip(cfg.symbols, sigma.tolist(), strict=True)),
        "format_version": FORMAT_VERSION,
    }
    asset_meta = [
        {"annual_vol": float(v), "start_price": float(p), "base_volume": float(b)}
        for v, p, b in zip(annual_vol, start_price, base_volume, strict=True)
    ]
    return _Market(
        timestamps=timestamps,
        open=np.exp(log_open),
        high=high,
        low=low,
        close=np.exp(log_close),
        volume=volume,
        alts=alts,
        oracle=oracle,
        oracle_sigma=oracle_sigma,
        vol_regime=vol_regime,
        trend_regime=trend_regime,
        asset_meta=asset_meta,
        parameters=parameters,
        bars_per_year=bars_per_year,
    )


# --------------------------------------------------------------------------------------------
# truth: information coefficients and the oracle strategy
# --------------------------------------------------------------------------------------------
def _ic(signal: np.ndarray, next_returns: np.ndarray, symbols: tuple[str, ...]) -> tuple[float, dict[str, float]]:
    """Pooled and per-symbol Pearson IC of signal[t] (T, N) vs next_returns[t] (T, N, NaN at T-1)."""
    s = pd.DataFrame(signal, columns=list(symbols))  # wide: bar x symbol
    r = pd.DataFrame(next_returns, columns=list(symbols))
    return pooled_ic(s, r), {symbol: pooled_ic(s[[symbol]], r[[symbol]]) for symbol in symbols}


def _strategy_pnl(
    positions: np.ndarray, next_returns: np.ndarray, costs: CostConfig
) -> tuple[np.ndarray, np.ndarray]:
    """Gross and net per-decision-bar PnL (T-1, N) of positions (T, N) earning next_returns (T, N).

    The last bar is dropped: its position has no next bar to earn on.
    """
    paths = np.ascontiguousarray(positions.T)  # (N, T): time on the last axis
    returns = np.ascontiguousarray(next_returns.T)  # (N, T), NaN at T-1
    free = CostConfig(transaction_bps=0.0, slippage_bps=0.0, holding_bps=0.0)
    gross = position_pnl_numpy(paths, returns, free)[:, :-1].T
    net = position_pnl_numpy(paths, returns, costs)[:, :-1].T
    return gross, net


def _measure(market: _Market, cfg: FixtureConfig, costs: CostConfig) -> FixtureTruth:
    symbols = cfg.symbols
    next_returns = next_bar_returns_numpy(market.close.T).T  # (T, N): close[t+1]/close[t]-1, NaN at T-1
    oracle_ic, oracle_ic_by_symbol = _ic(market.oracle, next_returns, symbols)
    alt_ic, alt_ic_by_symbol = {}, {}
    for k in range(cfg.alt_features):
        alt_ic[f"alt_{k}"], alt_ic_by_symbol[f"alt_{k}"] = _ic(market.alts[:, :, k], next_returns, symbols)
    rho = cfg.market_correlation
    rule = OracleRule(correlation=rho, risk_aversion=scale_for_limit(market.oracle, market.oracle_sigma, rho))
    gross, net = _strategy_pnl(oracle_positions(market.oracle, market.oracle_sigma, costs, rule), next_returns, costs)
    sign_gross, sign_net = _strategy_pnl(np.sign(market.oracle), next_returns, costs)

    def sharpe(pnl: np.ndarray) -> float:  # per symbol, one column at a time
        return sharpe_ratio(pnl, periods_per_year=market.bars_per_year)

    by_symbol = {s: {"gross": sharpe(gross[:, j]), "net": sharpe(net[:, j])} for j, s in enumerate(symbols)}
    return FixtureTruth(
        seed=cfg.seed,
        parameters=market.parameters,
        bars_per_year=market.bars_per_year,
        oracle_ic=oracle_ic,
        oracle_ic_by_symbol=oracle_ic_by_symbol,
        alt_ic=alt_ic,
        alt_ic_by_symbol=alt_ic_by_symbol,
        oracle_sharpe_gross=sharpe(gross.mean(axis=1)),
        oracle_sharpe_net=sharpe(net.mean(axis=1)),
        oracle_sharpe_by_symbol=by_symbol,
        oracle_rule=rule.to_dict(),
        sign_oracle_sharpe_gross=sharpe(sign_gross.mean(axis=1)),
        sign_oracle_sharpe_net=sharpe(sign_net.mean(axis=1)),
        costs=costs.model_dump(mode="json"),
    )


# --------------------------------------------------------------------------------------------
# writing
# --------------------------------------------------------------------------------------------
def _write(db_path: Path, market: _Market, cfg: FixtureConfig, truth: FixtureTruth) -> None:
    """Write every table in primary-key order (timestamp, symbol[, name]) so B-tree inserts append."""
    n_bars, n_sym = market.close.shape
    order = np.argsort(np.asarray(cfg.symbols, dtype=object))  # PK order: symbols sorted
    symbols = [cfg.symbols[j] for j in order]
    iso = market.timestamps.strftime(TIMESTAMP_FORMAT).to_numpy(dtype=object)  # (T,)
    ts_col = np.repeat(iso, n_sym).tolist()  # (T*N,) row-major over (t, symbol)
    sym_col = np.tile(np.asarray(symbols, dtype=object), n_bars).tolist()

    def flat(values: np.ndarray) -> list[float]:  # (T, N) -> (T*N,) in PK order
        return values[:, order].ravel().tolist()

    series_rows = zip(
        ts_col,
        sym_col,
        flat(market.open),
        flat(market.high),
        flat(market.low),
        flat(market.close),
        flat(market.volume),
        strict=True,
    )

    names = [f"alt_{k}" for k in range(cfg.alt_features)] + [
        ORACLE_INDICATOR,
        SIGMA_INDICATOR_NAME,
        "truth_trend_regime",
        "truth_vol_regime",
    ]
    stacked = np.concatenate(
        [
            market.alts,
            market.oracle[:, :, None],
            market.oracle_sigma[:, :, None],
            market.trend_regime[:, :, None].astype(float),
            np.broadcast_to(market.vol_regime[:, None, None].astype(float), (n_bars, n_sym, 1)),
        ],
        axis=2,
    )  # (T, N, names)
    by_name = np.argsort(np.asarray(names, dtype=object))
    stacked = stacked[:, order][:, :, by_name]
    n_names = len(names)
    indicator_rows = zip(
        np.repeat(iso, n_sym * n_names).tolist(),
        np.tile(np.repeat(np.asarray(symbols, dtype=object), n_names), n_bars).tolist(),
        np.tile(np.asarray(names, dtype=object)[by_name], n_bars * n_sym).tolist(),
        stacked.ravel().tolist(),
        strict=True,
    )

    connection = sqlite3.connect(db_path)
    try:
        connection.execute("PRAGMA journal_mode=OFF")  # a fresh temp file: atomicity comes from rename
        connection.execute("PRAGMA synchronous=OFF")
        create_schema(connection)
        connection.execute(TRUTH_TABLE_DDL)
        connection.executemany(
            "INSERT INTO assets (asset_id, symbol, sector, currency, exchange, metadata) VALUES (?, ?, ?, ?, ?, ?)",
            [
                (j + 1, symbol, "synthetic", "USD", fixture_calendar(cfg), json.dumps(meta, sort_keys=True))
                for j, (symbol, meta) in enumerate(zip(cfg.symbols, market.asset_meta, strict=True))
            ],
        )
        connection.executemany(
            "INSERT INTO series (timestamp, symbol, open, high, low, close, volume) VALUES (?, ?, ?, ?, ?, ?, ?)",
            series_rows,
        )
        connection.executemany(
            "INSERT INTO indicators (timestamp, symbol, name, value) VALUES (?, ?, ?, ?)", indicator_rows
        )
        connection.executemany("INSERT INTO fixture_truth (key, value) VALUES (?, ?)", truth.to_rows())
        connection.commit()
    finally:
        connection.close()


def writable_target(path: str | Path, overwrite: bool) -> Path:
    """The fixture file to create: refused when it is a directory, or exists and `overwrite` is not set."""
    path = Path(path)
    if path.is_dir():
        raise FixtureExistsError(f"{path} is a directory; give a file path for the fixture database")
    if path.exists() and not overwrite:
        raise FixtureExistsError(f"{path} already exists; pass --overwrite (overwrite=True) to replace it")
    return path


def build_fixture(path: str | Path, cfg: FixtureConfig, *, overwrite: bool = False) -> FixtureTruth | UniverseTruth:
    """Generate the synthetic market of `cfg` into a new SQLite file at `path`; return its truth.

    With `cfg.universe` set, the universe of synthetic/universe.py (its `UniverseTruth`) instead.
    Refuses an existing `path` unless `overwrite`. The file appears atomically (temp file + rename).
    """
    if cfg.universe is not None:
        from plus_ultra_ml.synthetic.universe import build_universe

        return build_universe(path, cfg, overwrite=overwrite)
    path = writable_target(path, overwrite)
    market = _simulate(cfg)
    truth = _measure(market, cfg, CostConfig())
    with atomic_path(path) as tmp:
        _write(tmp, market, cfg, truth)
        os.chmod(tmp, 0o644)
    log.info(
        "fixture %s: %d symbols x %d bars, oracle IC %.4f, oracle Sharpe gross %.2f net %.2f (sign rule net %.2f)",
        path,
        len(cfg.symbols),
        cfg.rows,
        truth.oracle_ic,
        truth.oracle_sharpe_gross,
        truth.oracle_sharpe_net,
        truth.sign_oracle_sharpe_net,
    )
    return truth


def read_fixture_truth(path: str | Path) -> FixtureTruth:
    """Read the ``fixture_truth`` table of a fixture database (opened read-only)."""
    path = Path(path)
    if not path.is_file():
        raise PlusUltraError(f"{path} does not exist; build it with `plus-ultra fixture {path}`")
    connection = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    try:
        rows = dict(connection.execute("SELECT key, value FROM fixture_truth").fetchall())
    except sqlite3.DatabaseError as error:
        raise PlusUltraError(f"{path} has no readable fixture_truth table ({error}); it is not a fixture") from None
    finally:
        connection.close()
    if json.loads(rows.get("kind", '"fixture"')) == "universe":
        raise PlusUltraError(f"{path} is a universe fixture; read its truth with synthetic.universe.read_universe_truth")
    missing = [key for key in TRUTH_KEYS if key not in rows]
    if missing:
        raise PlusUltraError(f"{path}: fixture_truth lacks keys {missing}; rebuild it with `plus-ultra fixture`")
    values = {key: json.loads(rows[key]) for key in TRUTH_KEYS}
    if values.pop("format_version") != FORMAT_VERSION:
        raise PlusUltraError(f"{path}: fixture_truth format is not version {FORMAT_VERSION}; rebuild the fixture")
    return FixtureTruth(**values)


def oracle_reference(panel: pd.DataFrame, db_path: str | Path | None, costs: CostConfig) -> pd.Series | None:
    """The oracle's positions on `panel` (its whole history, see `panel_oracle_positions`) when the
    database is a fixture with the oracle's truth, else None (a real database, or no path known).

    A fixture of an older format (no truth_sigma / oracle_rule) logs how to rebuild it and gives None:
    the oracle is a reference, its absence does not stop an evaluation.
    """
    if db_path is None or not Path(db_path).is_file():
        return None
    connection = sqlite3.connect(f"{Path(db_path).resolve().as_uri()}?mode=ro", uri=True)
    try:
        tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    finally:
        connection.close()
    if "fixture_truth" not in tables:
        return None
    from plus_ultra_ml.synthetic.universe import truth_kind, universe_oracle_reference

    if truth_kind(db_path) == "universe":  # the dollar-neutral book of synthetic/universe.py
        return universe_oracle_reference(panel, db_path, costs)
    try:
        truth = read_fixture_truth(db_path)
    except PlusUltraError as error:
        log.warning("no same-bars oracle: %s", error)
        return None
    return panel_oracle_positions(panel, costs, truth.rule)


def _plain(value: Any) -> Any:
    """Mappings to dicts, NaN to None: JSON that any reader parses."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
