"""A universe fixture: hundreds to thousands of stocks on an exchange calendar, with a planted
cross-sectional signal whose ceiling the generator knows (`plus-ultra fixture --universe N`).

The return model is the statistical factor model of equity risk (a market factor, industry factors,
idiosyncratic noise: Barra-style, as in Grinold and Kahn's Active Portfolio Management), with two
cross-sectional alphas planted in the conditional mean: an alternative-data score and sector
momentum (Moskowitz and Grinblatt, "Do industries explain momentum?", 1999). The small
regime-switching fixture of fixture.py stays the default market; this module reuses its AR(1)
sampler and candle constants.

Calendar
    1D: the first `rows` sessions of `universe.calendar` (XNYS) from `start`, stamped 00:00 UTC of the
    session date (data/calendar.py's daily convention); holidays have no bar and assets.exchange names
    the calendar, so `validate` expects exactly these sessions. Intraday: fixture.py's 24/7 grid.

Generating equations (t = bar, i = name, k = sector; every shock N(0, 1), independent, each array
drawn from its own child of SeedSequence(seed) in time-major order, so a shorter build draws a prefix)
    s_i                          sector, dealt evenly at random over `sectors`
    b_i ~ U(market_beta_range), g_i ~ U(sector_beta_range), d_i = idio vol, log-uniform on
    idio_vol_range; factor vols s_m = market_vol, s_k = sector_vol (all per bar: annual / sqrt(P),
    P = bars per year of the calendar)
    a[t,i] = AR(1) of its shocks, persistence `alt_persistence`        the alternative-data score
    m[t,k] = AR(1) of the sector's own shocks x_k[<= t], persistence `sector_momentum_persistence`
    mu[t,i] = b_i pi + sbar (c_a a[t,i] + c_m m[t,s_i])     E[R[t+1,i] | state at t], pi = premium / P
    R[t+1,i] = mu[t,i] + b_i s_m x_m[t+1] + g_i s_k x_k[t+1] + d_i e[t+1,i]   simple return t -> t+1
    close[t+1,i] = close[t,i] (1 + R[t+1,i])
    sbar^2 = tr(Sigma) / N - 1'Sigma 1 / N^2, the expected cross-sectional variance of the noise, and
    c_a, c_m are solved so that the expected per-date Pearson IC across names of a (of m) with
    R[t+1] is `universe.alt_ic` (`universe.sector_momentum_ic`): with W = (1 + e) / (1 - alt_ic^2 -
    sm_ic^2), e = pi^2 Var_i(b) / sbar^2, c_a^2 = alt_ic^2 W and c_m^2 (1 - sum_k w_k^2) = sm_ic^2 W
    (w_k: the share of names in sector k). The oracle's expected IC is then sqrt(1 - 1 / W).
    Listings: a `late_listing` share of names starts at a bar drawn uniformly in [1, T - min_listed_bars],
    an `early_delisting` share stops at a bar drawn uniformly from min_listed_bars bars after its
    start to T - 2; a name has bars only inside its listing (no gaps), and delisted names stay in the
    file (survivorship-free). The returns do not depend on the listings.

Observables written to the database
    series: OHLCV as fixture.py's candles with k_i = sqrt(Sigma_ii): open[t] = close[t-1]
    exp(GAP_SCALE k_i xi), wicks WICK_SCALE k_i |zeta|, volume = base_volume_i exp(0.5 (|R[t]| / k_i
    - sqrt(2/pi)) + 0.3 omega) rounded. indicators: alt_0 = a, alt_1 = 0.5 a + sqrt(0.75) z,
    alt_j = z_j for j >= 2 (fixture.py's `alternative_data`); assets.sector is s_i's name,
    assets.exchange the calendar.

Evaluation-only truth (never model inputs)
    truth_oracle[i,t] = mu[t,i]; truth_sigma[i,t] = sqrt(Sigma_ii) (constant per name: the covariance
    is the factor model's, the same at every bar). The sector momentum state m is not stored per bar
    (a million rows more at 500 names); its IC is in ``fixture_truth.ic`` as truth_sector_momentum.
    ``fixture_truth`` (key/value JSON, UNIVERSE_TRUTH_KEYS; ``kind`` = "universe"): the parameters, the
    `FactorModel` (per-name loadings, sector, idiosyncratic vol; factor vols), the listings, the
    realised mean per-date IC, rank IC and ICIR (evaluation.metrics.cross_sectional_ic, the way Qlib
    reports IC) of the oracle, of every alt and of the sector momentum against the next-bar return
    (relative to the universe or not: a per-date correlation does not see the cross-sectional mean),
    the expected ICs, and the dollar-neutral oracle of `evaluation.factor_oracle` (its rule, its gross
    and net Sharpe on every bar): the truth_oracle indicator, the factor model and the rule are all
    `factor_oracle.panel_dollar_neutral_positions` needs to recompute it on any set of scored bars.
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
from typing import Any

import numpy as np
import pandas as pd

from plus_ultra_ml.artifacts import atomic_path
from plus_ultra_ml.config import CostConfig, FixtureConfig, UniverseConfig
from plus_ultra_ml.data.calendar import get_calendar, periods_per_year
from plus_ultra_ml.data.schema import TIMESTAMP_FORMAT
from plus_ultra_ml.errors import PlusUltraError
from plus_ultra_ml.evaluation.backtest import portfolio_pnl
from plus_ultra_ml.evaluation.factor_oracle import (DollarNeutralRule, FactorModel, dollar_neutral_positions,
                                                    neutral_scale_for_limit, panel_dollar_neutral_positions)
from plus_ultra_ml.evaluation.metrics import cross_sectional_ic, sharpe_ratio
from plus_ultra_ml.evaluation.oracle import MU_INDICATOR, SIGMA_INDICATOR
from plus_ultra_ml.synthetic.bulk_write import write_panel
from plus_ultra_ml.synthetic.fixture import (BASE_VOLUME_RANGE, GAP_SCALE, START_PRICE_RANGE, TRUTH_TABLE_DDL,
                                             WICK_SCALE, _ar1, _plain, alternative_data, writable_target,
                                             fixture_grid)

log = logging.getLogger(__name__)

KIND = "universe"  # fixture_truth.kind: tells a universe file from the small fixture's
FORMAT_VERSION = 1
SECTOR_MOMENTUM_INDICATOR = "truth_sector_momentum"
SECTOR_NAMES = ("Energy", "Materials", "Industrials", "ConsumerDiscretionary", "ConsumerStaples", "HealthCare",
                "Financials", "InformationTechnology", "CommunicationServices", "Utilities", "RealEstate")
IC_MIN_NAMES = 10  # a date with fewer listed names has no IC
UNIVERSE_TRUTH_KEYS = (
    "kind", "format_version", "seed", "parameters", "bars_per_year", "calendar", "factor_model", "listings",
    "ic", "expected_ic", "oracle_rule", "oracle_sharpe_gross", "oracle_sharpe_net", "oracle_turnover",
    "oracle_budget_residual", "costs", "cost_convention", "position_rule", "ic_definition",
)
COST_CONVENTION = (
    "sleeve p[t,i] (decided at bar t's close) earns close[t+1]/close[t]-1; book PnL = mean over all N sleeves "
    "(evaluation.backtest.portfolio_pnl) of p R minus (transaction_bps + slippage_bps) 1e-4 |p[t]-p[t-1]| + "
    "holding_bps 1e-4 |p[t]|; a name not listed is flat (leaving it is a trade)"
)
POSITION_RULE = (
    "p[t] = evaluation.factor_oracle.dollar_neutral_positions(truth_oracle, factor_model, costs, oracle_rule): "
    "argmax over |p_i| <= limit, sum_i p_i = 0 of p'mu - h|p| - (c/L)|p - p[t-1]| - gamma/2 p'(Sigma + mu mu')p"
)
IC_DEFINITION = (
    "per date t: Pearson (ic) or Spearman (rank_ic) correlation across the names listed at t and t+1 of the "
    f"signal at t with close[t+1]/close[t]-1 (>= {IC_MIN_NAMES} names); ic = mean over dates, icir = mean / sd"
)


@dataclass(frozen=True)
class UniverseTruth:
    """What the universe generator knows (the ``fixture_truth`` table of a universe fixture)."""

    seed: int
    parameters: Mapping[str, Any]
    bars_per_year: float
    calendar: str
    factor_model: Mapping[str, Any]  # FactorModel.to_dict()
    listings: Mapping[str, list[str]]  # symbol -> [first bar, last bar] (ISO UTC)
    ic: Mapping[str, Mapping[str, float]]  # signal -> {"ic", "rank_ic", "icir", "dates"}: realised
    expected_ic: Mapping[str, float]  # signal -> the IC the generator was solved for
    oracle_rule: Mapping[str, float]  # DollarNeutralRule fields
    oracle_sharpe_gross: float  # annualised, the dollar-neutral oracle over every bar
    oracle_sharpe_net: float
    oracle_turnover: float  # mean over bars of sum_i |p[t,i] - p[t-1,i]| / N
    oracle_budget_residual: float  # max over bars of |sum_i p[t,i]| (zero up to the root search's tolerance)
    costs: Mapping[str, float]
    cost_convention: str = COST_CONVENTION
    position_rule: str = POSITION_RULE
    ic_definition: str = IC_DEFINITION

    @property
    def oracle_ic(self) -> float:
        return float(self.ic[MU_INDICATOR]["ic"])

    @property
    def model(self) -> FactorModel:
        return FactorModel.from_dict(dict(self.factor_model))

    @property
    def rule(self) -> DollarNeutralRule:
        return DollarNeutralRule.from_dict(dict(self.oracle_rule))

    def to_rows(self) -> list[tuple[str, str]]:
        values = {"kind": KIND, "format_version": FORMAT_VERSION, **{k: getattr(self, k) for k in UNIVERSE_TRUTH_KEYS[2:]}}
        return [(key, json.dumps(_plain(values[key]), sort_keys=True)) for key in UNIVERSE_TRUTH_KEYS]


# --------------------------------------------------------------------------------------------
# grid, names, listings
# --------------------------------------------------------------------------------------------
def universe_symbols(size: int) -> tuple[str, ...]:
    """U0001, U0002, ... (zero-padded to at least four digits, so text order is number order)."""
    width = max(4, len(str(size)))
    return tuple(f"U{j:0{width}d}" for j in range(1, size + 1))


def universe_calendar(cfg: FixtureConfig) -> str:
    """assets.exchange of a universe: the configured exchange for 1D bars, 24/7 intraday."""
    return cfg.universe.calendar if cfg.freq == "1D" else "24/7"


def universe_grid(cfg: FixtureConfig) -> pd.DatetimeIndex:
    """The first `rows` bars from `start`: exchange sessions at 00:00 UTC for 1D, fixture.py's grid intraday."""
    if cfg.freq != "1D":
        return fixture_grid(cfg)
    calendar = get_calendar(cfg.universe.calendar)
    start = pd.Timestamp(cfg.start)
    start = (start.tz_convert("UTC") if start.tzinfo else start.tz_localize("UTC")).tz_localize(None).normalize()
    sessions = calendar.schedule.index[calendar.schedule.index >= start][: cfg.rows]
    if len(sessions) < cfg.rows:
        raise PlusUltraError(
            f"calendar {calendar.name} has only {len(sessions)} sessions from {start.date()} to "
            f"{calendar.schedule.index[-1].date()}; fixture.rows is {cfg.rows}: set an earlier fixture.start")
    return pd.DatetimeIndex(sessions).tz_localize("UTC").rename("timestamp")


def _listings(rng: np.random.Generator, n: int, n_bars: int, ucfg: UniverseConfig) -> tuple[np.ndarray, np.ndarray]:
    """(first, last) bar of each name (inclusive); at least min_listed_bars bars each."""
    late = rng.random(n) < ucfg.late_listing
    early = rng.random(n) < ucfg.early_delisting
    u_start, u_stop = rng.random(n), rng.random(n)
    room = n_bars - ucfg.min_listed_bars  # the latest first bar that still leaves min_listed_bars
    first = np.where(late & (room >= 1), 1 + np.floor(u_start * max(room, 1)).astype(np.int64), 0)
    first = np.minimum(first, max(room, 0))
    lowest_stop = first + ucfg.min_listed_bars - 1
    span = (n_bars - 2) - lowest_stop + 1  # stops in [lowest_stop, T - 2]
    last = np.where(early & (span >= 1), lowest_stop + np.floor(u_stop * np.maximum(span, 1)).astype(np.int64),
                    n_bars - 1)
    return first, last


# --------------------------------------------------------------------------------------------
# simulation
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Universe:
    """Generated arrays, (T, N) with symbols in sorted order unless noted."""

    timestamps: pd.DatetimeIndex  # (T,)
    symbols: tuple[str, ...]
    listed: np.ndarray  # bool: the name has a candle at t
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray
    alts: np.ndarray  # (T, N, K)
    mu: np.ndarray  # E[R[t+1] | state at t]
    sector_momentum: np.ndarray  # m[t, s_i]
    model: FactorModel
    first: np.ndarray  # (N,) first listed bar
    last: np.ndarray  # (N,) last listed bar
    base_volume: np.ndarray  # (N,)
    start_price: np.ndarray  # (N,)
    parameters: dict[str, Any]
    expected_ic: dict[str, float]
    bars_per_year: float


STREAMS = ("names", "market", "sectors", "idio", "alt", "alt_noise", "gap", "wick_high", "wick_low", "volume")


def _loadings(ucfg: UniverseConfig, rng: np.random.Generator, n: int, ppy: float) -> FactorModel:
    n_sectors = ucfg.sectors
    names = SECTOR_NAMES[:n_sectors] if n_sectors <= len(SECTOR_NAMES) else tuple(f"Sector{k:02d}" for k in range(n_sectors))
    sector = rng.permutation(np.arange(n) % n_sectors)
    beta = rng.uniform(*ucfg.market_beta_range, size=n)
    sector_beta = rng.uniform(*ucfg.sector_beta_range, size=n)
    idio = np.exp(rng.uniform(*np.log(ucfg.idio_vol_range), size=n)) / math.sqrt(ppy)
    per_bar = 1 / math.sqrt(ppy)
    return FactorModel(universe_symbols(n), names, sector, beta, sector_beta, idio, ucfg.market_vol * per_bar,
                       np.full(n_sectors, ucfg.sector_vol * per_bar))


def _signal_loadings(ucfg: UniverseConfig, model: FactorModel, premium: float) -> dict[str, float]:
    """sbar, c_a, c_m and the expected ICs (module doc): the planted strength from the config."""
    sigma = model.covariance() if len(model.symbols) <= 4000 else None
    n = len(model.symbols)
    if sigma is not None:
        noise = float(np.trace(sigma) / n - sigma.sum() / n**2)
    else:  # pragma: no cover - a very large universe: the same quantity without the N x N matrix
        raise PlusUltraError("fixture.universe.size above 4,000 is not supported")
    shares = np.bincount(model.sector, minlength=len(model.sector_names)) / n
    spread = 1.0 - float((shares**2).sum())  # expected cross-sectional variance of m[t, s_i] (unit-variance m)
    sm_ic = ucfg.sector_momentum_ic if spread > 0 else 0.0
    e = premium**2 * float(np.var(model.market_beta)) / noise
    w = (1 + e) / (1 - ucfg.alt_ic**2 - sm_ic**2)
    return {"sbar": math.sqrt(noise), "alt_loading": ucfg.alt_ic * math.sqrt(w),
            "momentum_loading": sm_ic * math.sqrt(w / spread) if spread > 0 else 0.0,
            "oracle_ic": math.sqrt(1 - 1 / w), "alt_ic": ucfg.alt_ic, "sector_momentum_ic": sm_ic}


def _simulate(cfg: FixtureConfig) -> _Universe:
    ucfg = cfg.universe
    rngs = dict(zip(STREAMS, (np.random.default_rng(s) for s in np.random.SeedSequence(cfg.seed).spawn(len(STREAMS))),
                    strict=True))
    n_bars, n, n_alt, n_sec = cfg.rows, ucfg.size, cfg.alt_features, ucfg.sectors
    timestamps = universe_grid(cfg)
    ppy = periods_per_year(timestamps, universe_calendar(cfg))

    # Per-name constants (drawn from their own stream: they depend on N, never on T).
    model = _loadings(ucfg, rngs["names"], n, ppy)
    start_price = np.exp(rngs["names"].uniform(*np.log(START_PRICE_RANGE), size=n))
    base_volume = np.exp(rngs["names"].uniform(*np.log(BASE_VOLUME_RANGE), size=n))
    first, last = _listings(rngs["names"], n, n_bars, ucfg)
    premium = ucfg.market_premium / ppy
    strength = _signal_loadings(ucfg, model, premium)

    # Factors, states and returns.
    x_m = rngs["market"].standard_normal(n_bars)  # (T,)
    x_s = rngs["sectors"].standard_normal((n_bars, n_sec))  # (T, S)
    e = rngs["idio"].standard_normal((n_bars, n))  # (T, N)
    alt_factor = _ar1(rngs["alt"].standard_normal((n_bars, n)), cfg.alt_persistence)  # (T, N) a
    momentum = _ar1(x_s, ucfg.sector_momentum_persistence)[:, model.sector]  # (T, N) m[t, s_i]
    mu = model.market_beta[None, :] * premium + strength["sbar"] * (
        strength["alt_loading"] * alt_factor + strength["momentum_loading"] * momentum)  # (T, N)
    shock = (model.market_beta[None, :] * model.market_vol * x_m[:, None]
             + (model.sector_beta * model.sector_vols[model.sector])[None, :] * x_s[:, model.sector]
             + model.idio_vol[None, :] * e)  # (T, N): the unpredictable part of R[t] (row 0 unused)
    simple = np.zeros((n_bars, n))
    simple[1:] = mu[:-1] + shock[1:]  # R[t] = return of bar t, earned from t-1
    if (simple <= -1).any():
        raise PlusUltraError("the universe drew a return <= -100%; lower fixture.universe vols")
    close = start_price[None, :] * np.cumprod(1.0 + simple, axis=0)

    # Candles: bar t's own vol is the name's total vol k_i.
    k = model.total_vol()[None, :]  # (1, N)
    log_close = np.log(close)
    prev = np.concatenate([log_close[:1], log_close[:-1]])
    log_open = prev + GAP_SCALE[cfg.freq] * k * rngs["gap"].standard_normal((n_bars, n))
    high = np.exp(np.maximum(log_open, log_close) + WICK_SCALE * k * np.abs(rngs["wick_high"].standard_normal((n_bars, n))))
    low = np.exp(np.minimum(log_open, log_close) - WICK_SCALE * k * np.abs(rngs["wick_low"].standard_normal((n_bars, n))))
    volume = np.round(base_volume[None, :] * np.exp(
        0.5 * (np.abs(simple) / k - math.sqrt(2 / math.pi)) + 0.3 * rngs["volume"].standard_normal((n_bars, n))))

    alts = alternative_data(alt_factor, rngs["alt_noise"].standard_normal((n_bars, n, n_alt - 1)), cfg.alt_persistence)
    bars = np.arange(n_bars)[:, None]
    listed = (bars >= first[None, :]) & (bars <= last[None, :])  # (T, N)
    parameters = {
        **cfg.model_dump(mode="json", exclude={"universe", "symbols", "alt_ic", "trend_drift", "momentum",
                                                 "momentum_persistence", "market_correlation", "vol_regime_bars",
                                                 "trend_regime_bars"}),
        "universe": ucfg.model_dump(mode="json"),
        "signal": strength,
        "market_premium_per_bar": premium,
        "start_price_range": list(START_PRICE_RANGE),
        "base_volume_range": list(BASE_VOLUME_RANGE),
        "gap_scale": GAP_SCALE[cfg.freq],
        "wick_scale": WICK_SCALE,
        "format_version": FORMAT_VERSION,
    }
    expected = {MU_INDICATOR: strength["oracle_ic"], "alt_0": strength["alt_ic"],
                SECTOR_MOMENTUM_INDICATOR: strength["sector_momentum_ic"]}
    return _Universe(timestamps, model.symbols, listed, np.exp(log_open), high, low, close, volume, alts, mu, momentum,
                     model, first, last, base_volume, start_price, parameters, expected, ppy)


# --------------------------------------------------------------------------------------------
# truth
# --------------------------------------------------------------------------------------------
def next_returns(close: np.ndarray, listed: np.ndarray) -> np.ndarray:
    """(T, N) close[t+1]/close[t] - 1 where the name is listed at t and t+1, else NaN."""
    out = np.full(close.shape, np.nan)
    both = listed[:-1] & listed[1:]
    out[:-1] = np.where(both, close[1:] / close[:-1] - 1.0, np.nan)
    return out


def ic_summary(signal: np.ndarray, target: np.ndarray, index: pd.Index) -> dict[str, float]:
    """Mean per-date Pearson and Spearman IC, the ICIR and the number of dates, of (T, N) arrays."""
    s, y = pd.DataFrame(signal, index=index), pd.DataFrame(target, index=index)
    ic = cross_sectional_ic(s, y, "pearson", IC_MIN_NAMES).dropna()
    rank = cross_sectional_ic(s, y, "spearman", IC_MIN_NAMES).dropna()
    sd = float(ic.std(ddof=1)) if len(ic) > 1 else float("nan")
    return {"ic": float(ic.mean()) if len(ic) else float("nan"), "rank_ic": float(rank.mean()) if len(rank) else float("nan"),
            "icir": float(ic.mean()) / sd if sd > 0 else float("nan"), "dates": int(len(ic))}


def book_pnl(positions: np.ndarray, returns: np.ndarray, index: pd.DatetimeIndex, symbols, costs: CostConfig) -> pd.Series:
    """Net PnL per decision bar of (T, N) sleeves earning (T, N) next returns, via `portfolio_pnl`."""
    columns = pd.Index(list(symbols), name="symbol")
    p = pd.DataFrame(positions, index=index, columns=columns).stack(future_stack=True)
    r = pd.DataFrame(returns, index=index, columns=columns).stack(future_stack=True)
    p.index, r.index = p.index.reorder_levels(["symbol", "timestamp"]), r.index.reorder_levels(["symbol", "timestamp"])
    return portfolio_pnl(p, r, costs)


def _measure(u: _Universe, cfg: FixtureConfig, costs: CostConfig) -> UniverseTruth:
    index = u.timestamps
    returns = next_returns(u.close, u.listed)
    mu = np.where(u.listed, u.mu, np.nan)
    signals = {MU_INDICATOR: mu, SECTOR_MOMENTUM_INDICATOR: np.where(u.listed, u.sector_momentum, np.nan),
               **{f"alt_{j}": np.where(u.listed, u.alts[:, :, j], np.nan) for j in range(cfg.alt_features)}}
    ic = {name: ic_summary(values, returns, index) for name, values in signals.items()}
    rule = DollarNeutralRule(risk_aversion=neutral_scale_for_limit(mu, u.model))
    positions, residual = dollar_neutral_positions(mu, u.model, costs, rule, return_residual=True)
    free = CostConfig(transaction_bps=0.0, slippage_bps=0.0, holding_bps=0.0)
    gross = book_pnl(positions, returns, index, u.symbols, free).iloc[:-1]  # the last bar earns nothing
    net = book_pnl(positions, returns, index, u.symbols, costs).iloc[:-1]
    traded = np.abs(np.diff(np.vstack([np.zeros((1, len(u.symbols))), positions]), axis=0)).sum(axis=1) / len(u.symbols)
    iso = index.strftime(TIMESTAMP_FORMAT)
    return UniverseTruth(
        seed=cfg.seed, parameters=u.parameters, bars_per_year=u.bars_per_year, calendar=universe_calendar(cfg),
        factor_model=u.model.to_dict(),
        listings={s: [iso[f], iso[last]] for s, f, last in zip(u.symbols, u.first, u.last, strict=True)},
        ic=ic, expected_ic=u.expected_ic, oracle_rule=rule.to_dict(),
        oracle_sharpe_gross=sharpe_ratio(gross.to_numpy(), periods_per_year=u.bars_per_year),
        oracle_sharpe_net=sharpe_ratio(net.to_numpy(), periods_per_year=u.bars_per_year),
        oracle_turnover=float(traded.mean()), oracle_budget_residual=float(np.max(np.abs(residual))),
        costs=costs.model_dump(mode="json"),
    )


# --------------------------------------------------------------------------------------------
# building and reading
# --------------------------------------------------------------------------------------------
def _write(db_path: Path, u: _Universe, cfg: FixtureConfig, truth: UniverseTruth) -> None:
    exchange = universe_calendar(cfg)
    assets = [
        (j + 1, s, u.model.sector_names[u.model.sector[j]], "USD", exchange, json.dumps({
            "market_beta": float(u.model.market_beta[j]), "sector_beta": float(u.model.sector_beta[j]),
            "idio_vol_per_bar": float(u.model.idio_vol[j]), "start_price": float(u.start_price[j]),
            "base_volume": float(u.base_volume[j]), "listed": truth.listings[s]}, sort_keys=True))
        for j, s in enumerate(u.symbols)
    ]
    indicators = {f"alt_{j}": u.alts[:, :, j] for j in range(cfg.alt_features)}
    indicators |= {MU_INDICATOR: u.mu, SIGMA_INDICATOR: np.broadcast_to(u.model.total_vol()[None, :], u.mu.shape)}
    write_panel(db_path, timestamps=list(u.timestamps.strftime(TIMESTAMP_FORMAT)), symbols=u.symbols, listed=u.listed,
                ohlcv=(u.open, u.high, u.low, u.close, u.volume), indicators=indicators, assets=assets,
                side_tables={"fixture_truth": (TRUTH_TABLE_DDL, truth.to_rows())})


def build_universe(path: str | Path, cfg: FixtureConfig, *, overwrite: bool = False) -> UniverseTruth:
    """Generate the universe of `cfg.universe` into a new SQLite file at `path`; return its truth.

    Refuses an existing `path` unless `overwrite`. The file appears atomically (temp file + rename).
    """
    if cfg.universe is None:
        raise PlusUltraError("build_universe needs fixture.universe (plus-ultra fixture --universe N)")
    path = writable_target(path, overwrite)
    universe = _simulate(cfg)
    truth = _measure(universe, cfg, CostConfig())
    with atomic_path(path) as tmp:
        _write(tmp, universe, cfg, truth)
        os.chmod(tmp, 0o644)
    log.info("universe %s: %d symbols x %d bars (%d candles), oracle IC %.4f (expected %.4f), oracle Sharpe net %.2f",
             path, cfg.universe.size, cfg.rows, int(universe.listed.sum()), truth.oracle_ic,
             truth.expected_ic[MU_INDICATOR], truth.oracle_sharpe_net)
    return truth


def truth_kind(path: str | Path) -> str | None:
    """"universe", "fixture" (the small market), or None when the file has no fixture_truth table."""
    connection = sqlite3.connect(f"{Path(path).resolve().as_uri()}?mode=ro", uri=True)
    try:
        tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if "fixture_truth" not in tables:
            return None
        row = connection.execute("SELECT value FROM fixture_truth WHERE key = 'kind'").fetchone()
    finally:
        connection.close()
    return json.loads(row[0]) if row else "fixture"


def read_universe_truth(path: str | Path) -> UniverseTruth:
    """Read the ``fixture_truth`` table of a universe fixture (opened read-only)."""
    path = Path(path)
    if not path.is_file():
        raise PlusUltraError(f"{path} does not exist; build it with `plus-ultra fixture {path} --universe N`")
    if truth_kind(path) != KIND:
        raise PlusUltraError(f"{path} is not a universe fixture (fixture_truth.kind is not {KIND!r}); "
                             "read it with synthetic.fixture.read_fixture_truth")
    connection = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    try:
        rows = dict(connection.execute("SELECT key, value FROM fixture_truth").fetchall())
    finally:
        connection.close()
    missing = [key for key in UNIVERSE_TRUTH_KEYS if key not in rows]
    if missing:
        raise PlusUltraError(f"{path}: fixture_truth lacks keys {missing}; rebuild it with `plus-ultra fixture --universe N`")
    values = {key: json.loads(rows[key]) for key in UNIVERSE_TRUTH_KEYS}
    values.pop("kind")
    if values.pop("format_version") != FORMAT_VERSION:
        raise PlusUltraError(f"{path}: the universe truth is not format {FORMAT_VERSION}; rebuild the fixture")
    return UniverseTruth(**values)


def universe_oracle_reference(panel: pd.DataFrame, db_path: str | Path, costs: CostConfig) -> pd.Series:
    """The dollar-neutral oracle's sleeves on `panel` (its whole history) of a universe fixture."""
    truth = read_universe_truth(db_path)
    return panel_dollar_neutral_positions(panel, costs, truth.model, truth.rule)
