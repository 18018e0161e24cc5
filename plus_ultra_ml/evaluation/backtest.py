"""Vectorised multi-symbol backtester: positions -> fills at the decision bar's close -> net PnL, equity, trades.

The fill convention is the project's (docs/architecture.md): a position p[t] decided at the close
of bar t is filled at that close and held to the close of bar t+1, earning
r[t+1] = close[t+1] / close[t] - 1. Costs and net PnL come from `plus_ultra_ml.objectives.pnl`:
the fused kernel below calls its compiled per-bar formula `bar_pnl` for every (bar, symbol)
cell, so the backtester, the training objective and the RL environment share one definition.

Indexing (T decision bars, N symbols):
    positions, exposures  (T, N) at decision bars t (the input's index)
    returns, costs        (T, N) at the bar where the PnL is known, t+1; this lines them up with a
                          benchmark's close-to-close returns for the same bars
    equity                (T + 1, N) compounded, 1.0 at the first decision bar
A symbol that has no price at a bar (not yet listed, a gap) must hold no position over it: a
non-zero position without both closes is an error, never a silent zero.

Booking of the portfolio (`book`):
    sleeves     one sleeve of capital per symbol, portfolio return = the mean of the sleeves' returns,
                rebalanced every bar; rebalancing between sleeves is not charged. Per-symbol positions.
    weights     the columns are portfolio weights w[t, i], fractions of one book's capital (the
                portfolio room's output, plus_ultra_ml/portfolio): portfolio return = the *sum* over
                names of the same per-cell net PnL, sum_i w[t,i] r[t+1,i] - trade rate sum_i |w[t,i] -
                w[t-1,i]| - hold rate sum_i |w[t,i]|. Weights are held constant between bars (they do
                not drift with returns); volatility targeting belongs to the portfolio room here.
Per-symbol weighting of the sleeves (book = sleeves):
    equal       exposure = position.
    vol_target  exposure = position * min(target_volatility / (sigma[t] sqrt(periods_per_year)),
                max_leverage), sigma[t] the std of the symbol's bar returns r[t-w+1 .. t] (bars
                known at t's close; nothing after t). Until w returns exist the sleeve is flat.
The trade list and the per-regime attribution are vectorised (numpy, pandas groupby); the hot
loop is one numba pass over the cells.

This module is the one road from positions to PnL. `run_backtest` fills positions against close
prices; frames that already carry each bar's next return (held-out windows, the predictions frame)
go through `portfolio_pnl` (the held-out score of models, baselines and policies, as sleeves or weights) and
`path_returns` (the report's per-(fold, seed, symbol) paths). All three account each cell with
`objectives.pnl`, so their numbers agree wherever their inputs do.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from typing import Literal

import numba
import numpy as np
import pandas as pd

from plus_ultra_ml.config import CostConfig
from plus_ultra_ml.data import calendar
from plus_ultra_ml.errors import DataContractError
from plus_ultra_ml.evaluation import metrics
from plus_ultra_ml.objectives.pnl import bar_pnl, hold_rate, position_pnl_numpy, trade_rate

UNLABELLED = "unlabelled"


@dataclass(frozen=True)
class BacktestConfig:
    """How positions become exposures, and the annualisation; costs come from `CostConfig`."""

    weighting: Literal["equal", "vol_target"] = "equal"
    book: Literal["sleeves", "weights"] = "sleeves"  # how the columns add up (module doc)
    target_volatility: float = 0.10  # annualised, per symbol sleeve (vol_target only)
    vol_window: int = 60  # past bar returns in the volatility estimate (vol_target only)
    max_leverage: float = 2.0  # cap on the volatility scale (vol_target only)
    position_limit: float = 1.0  # |position| allowed in the input; positions live in [-1, 1]
    periods_per_year: float | None = None  # None: inferred from the close prices' timestamps

    def __post_init__(self) -> None:
        if self.weighting not in ("equal", "vol_target"):
            raise ValueError(f"BacktestConfig.weighting must be 'equal' or 'vol_target', got {self.weighting!r}")
        if self.book not in ("sleeves", "weights"):
            raise ValueError(f"BacktestConfig.book must be 'sleeves' or 'weights', got {self.book!r}")
        if self.book == "weights" and self.weighting != "equal":
            raise ValueError("BacktestConfig.book='weights' books portfolio weights as given: volatility targeting "
                             "belongs to the portfolio room (portfolio.target_volatility); use weighting='equal'")
        for name in ("target_volatility", "max_leverage", "position_limit"):
            if not getattr(self, name) > 0:
                raise ValueError(f"BacktestConfig.{name} must be > 0, got {getattr(self, name)!r}")
        if self.vol_window < 2:
            raise ValueError(f"BacktestConfig.vol_window must be >= 2, got {self.vol_window}")
        if self.periods_per_year is not None and not self.periods_per_year > 0:
            raise ValueError(f"BacktestConfig.periods_per_year must be > 0, got {self.periods_per_year!r}")


# --------------------------------------------------------------------------------------------
# the fused kernel
# --------------------------------------------------------------------------------------------
_OK, _MISSING_POSITION, _NO_PRICE = 0, 1, 2


@numba.njit(nogil=True, error_model="numpy")
def _simulate(positions, close, trade, hold, executed, net, cost, equity, error, time_inner):  # pragma: no cover
    # positions, executed, net, cost: (T, N); close, equity: (T + 1, N); error: (3,) code, t, j.
    # One loop nest; time_inner picks the walk that follows memory (column-major: each symbol's
    # path in turn; row-major: bar by bar). The body is written once (a helper taking the arrays
    # would not be inlined by numba and costs ~10x).
    T, N = positions.shape
    lagged = np.zeros(N)  # p[t-1] per symbol; p[-1] = 0: every sleeve starts flat
    equity[0, :] = 1.0
    outer, inner = (N, T) if time_inner else (T, N)
    for a in range(outer):
        for b in range(inner):
            t = b if time_inner else a
            j = a if time_inner else b
            p = positions[t, j]
            c0 = close[t, j]
            c1 = close[t + 1, j]
            if p != p:  # NaN: flat where the symbol has no price, a caller's mistake otherwise
                if c0 == c0:
                    error[0], error[1], error[2] = _MISSING_POSITION, t, j
                p = 0.0
            r = c1 / c0 - 1.0
            if not (c0 > 0.0 and c1 > 0.0):  # missing or non-positive price: only a flat sleeve may cross it
                if p != 0.0:
                    error[0], error[1], error[2] = _NO_PRICE, t, j
                r = 0.0
            value, charged = bar_pnl(p, lagged[j], r, trade, hold)  # objectives/pnl.py, the shared formula
            executed[t, j] = p
            net[t, j] = value
            cost[t, j] = charged
            equity[t + 1, j] = equity[t, j] * (1.0 + value)
            lagged[j] = p


# --------------------------------------------------------------------------------------------
# inputs
# --------------------------------------------------------------------------------------------
def _to_wide(data: pd.Series | pd.DataFrame, name: str, column: str | None = None) -> pd.DataFrame:
    """A wide (timestamp x symbol) frame from a wide frame, a long Series or a long panel."""
    if isinstance(data, pd.DataFrame) and isinstance(data.index, pd.MultiIndex):
        if column is None or column not in data.columns:
            raise DataContractError(f"{name}: a long frame needs a {column!r} column (or pass a wide frame / a Series)")
        data = data[column]
    if isinstance(data, pd.Series):
        if not isinstance(data.index, pd.MultiIndex) or "symbol" not in data.index.names:
            raise DataContractError(f"{name}: a Series must carry the panel's MultiIndex (symbol, timestamp)")
        if not data.index.is_unique:
            raise DataContractError(f"{name} has duplicate (symbol, timestamp) rows; keep one per bar")
        data = data.unstack("symbol")
    if not isinstance(data, pd.DataFrame):
        raise DataContractError(f"{name} must be a DataFrame or Series, got {type(data).__name__}")
    if not data.index.is_unique or not data.index.is_monotonic_increasing:
        raise DataContractError(f"{name}'s timestamps must be unique and increasing; sort and deduplicate them first")
    return data


def _window(positions: pd.DataFrame, close: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame, int]:
    """Check that positions are a contiguous run of close's bars, for symbols close has.

    Returns (positions without a last bar that has no next close, close restricted to the
    positions' symbols (whole history), row of close where the positions start).
    """
    missing = [s for s in positions.columns if s not in close.columns]
    if missing:
        raise DataContractError(f"positions name symbols with no close prices: {missing[:5]}; load them in the panel")
    if list(close.columns) != list(positions.columns):
        close = close[list(positions.columns)]
    if len(positions) == 0:
        raise DataContractError("positions are empty: nothing to backtest")
    unknown = ~positions.index.isin(close.index)
    if unknown.any():
        raise DataContractError(
            f"positions have a bar at {positions.index[unknown][0]} that the close prices do not have; "
            "reindex the positions onto the panel's timestamps"
        )
    start = close.index.get_loc(positions.index[0])
    stop = start + len(positions)
    span = close.index[start:stop]
    if not span.equals(positions.index):
        k = int(np.argmax(span != positions.index))
        raise DataContractError(
            "positions must cover a contiguous run of the close prices' bars; "
            f"after {positions.index[k - 1]} they skip the bar {span[k]}: reindex the positions onto the panel's timestamps (0 for flat)"
        )
    if stop >= len(close):  # no bar after the last decision: it cannot be filled and earn
        positions = positions.iloc[:-1]
        if len(positions) == 0:
            raise DataContractError("positions cover only the last bar of the prices: no next bar to earn on")
    return positions, close, start


@numba.njit(nogil=True, error_model="numpy")
def _trailing_volatility(close, first, window, time_inner):  # pragma: no cover - numba
    # close: (H, N) price history; output (H - first, N): for rows t >= first, the sample std
    # (ddof 1) of the bar returns r[t-window+1 .. t], r[s] = close[s] / close[s-1] - 1; NaN until
    # `window` returns exist or while one of them is missing. Running sums, one pass, past only.
    H, N = close.shape
    out = np.full((H - first, N), np.nan)
    total = np.zeros(N)
    squares = np.zeros(N)
    missing = np.zeros(N, dtype=np.int64)  # non-finite returns inside the window
    outer, inner = (N, H) if time_inner else (H, N)
    for a in range(outer):
        for b in range(inner):
            t = b if time_inner else a
            j = a if time_inner else b
            if t == 0:
                continue
            r = close[t, j] / close[t - 1, j] - 1.0
            if np.isfinite(r):
                total[j] += r
                squares[j] += r * r
            else:
                missing[j] += 1
            if t > window:  # drop r[t - window]
                old = close[t - window, j] / close[t - window - 1, j] - 1.0
                if np.isfinite(old):
                    total[j] -= old
                    squares[j] -= old * old
                else:
                    missing[j] -= 1
            if t >= window and t >= first and missing[j] == 0:
                mean = total[j] / window
                var = (squares[j] - window * mean * mean) / (window - 1)
                out[t - first, j] = np.sqrt(var) if var > 0.0 else 0.0
    return out


def _volatility_scale(close_history: np.ndarray, first: int, cfg: BacktestConfig, ppy: float) -> np.ndarray:
    """(T, N) exposure multipliers for rows first.. of the history, from trailing realised volatility."""
    history = np.asarray(close_history, dtype=np.float64)
    sigma = _trailing_volatility(history, first, cfg.vol_window, not history.flags.c_contiguous)
    with np.errstate(divide="ignore", invalid="ignore"):
        scale = np.minimum(cfg.target_volatility / (sigma * math.sqrt(ppy)), cfg.max_leverage)
    return np.where(np.isfinite(scale), scale, 0.0)  # warm-up or a gap in the window (NaN sigma): flat


# --------------------------------------------------------------------------------------------
# result
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class BacktestResult:
    exposures: pd.DataFrame  # (T, N) executed positions (after vol scaling), decision-bar index
    returns: pd.DataFrame  # (T, N) per-symbol net returns, indexed by the bar the PnL is known (t+1)
    costs: pd.DataFrame  # (T, N) trading + holding cost inside `returns`, same index
    equity: pd.DataFrame  # (T + 1, N) compounded per-symbol equity, 1.0 at the first decision bar
    portfolio_returns: pd.Series  # (T,) mean (sleeves) or sum (weights) of the net returns, index as `returns`
    portfolio_equity: pd.Series  # (T + 1,) compounded, index as `equity`
    close: pd.DataFrame = field(repr=False)  # (T + 1, N) the prices the fills used
    periods_per_year: float = 0.0
    costs_config: CostConfig = CostConfig()
    config: BacktestConfig = BacktestConfig()

    @property
    def decision_returns(self) -> pd.DataFrame:
        """Net returns (T, N) indexed by the decision bar t (what regime labels at t attribute)."""
        return pd.DataFrame(self.returns.to_numpy(), index=self.exposures.index, columns=self.exposures.columns)

    @functools.cached_property
    def _trades(self) -> pd.DataFrame:
        return trade_list(self)

    def trades(self) -> pd.DataFrame:
        """One row per trade (see `trade_list`)."""
        return self._trades

    def by_regime(self, labels: pd.Series | pd.DataFrame) -> pd.DataFrame:
        """PnL attribution by regime value (see `regime_attribution`)."""
        return regime_attribution(self, labels)

    def summary(self, benchmark: pd.Series | None = None) -> pd.Series:
        """Headline metrics of the portfolio (evaluation.metrics.performance_summary)."""
        return metrics.performance_summary(
            self.portfolio_returns,
            periods_per_year=self.periods_per_year,
            positions=self.exposures,
            benchmark=benchmark,
        )


def run_backtest(
    positions: pd.DataFrame | pd.Series,
    close: pd.DataFrame | pd.Series,
    costs: CostConfig,
    config: BacktestConfig = BacktestConfig(),
) -> BacktestResult:
    """Fill each position at its decision bar's close (held to the next close) and account for costs; see the
    module doc. A fill lag is `evaluation.execution.lagged` on the positions (the report's backtest.execution_lag).

    positions: wide (timestamp x symbol) or a Series on the panel's (symbol, timestamp) index;
               values in [-position_limit, position_limit]; NaN only where the symbol has no price.
               The timestamps must be a contiguous run of the prices' bars (a fold's test window
               is fine); the last position earns the following bar when close has it, else it is
               dropped (nothing to earn on).
    close:     wide close prices, a close Series on the panel index, or the panel itself.
    Errors name the symbol and timestamp: a position that is NaN where a price exists, a non-zero
    position without both closes, or a position beyond the limit.
    """
    wide_positions = _to_wide(positions, "positions")
    wide_close = _to_wide(close, "close", column="close")
    wide_positions, wide_close, start = _window(wide_positions, wide_close)
    block = wide_close.iloc[start : start + len(wide_positions) + 1]  # (T + 1, N) decision bars + the next
    ppy = config.periods_per_year
    if ppy is None:
        if not isinstance(wide_close.index, pd.DatetimeIndex):
            raise DataContractError("close is not indexed by timestamps: set BacktestConfig.periods_per_year")
        ppy = calendar.periods_per_year(wide_close.index)

    raw = wide_positions.to_numpy(np.float64)
    prices = block.to_numpy(np.float64)
    T, N = raw.shape
    with np.errstate(invalid="ignore"):
        beyond = np.abs(raw) > config.position_limit
    if beyond.any():
        t, j = np.argwhere(beyond)[0]
        raise DataContractError(
            f"position {raw[t, j]!r} for {wide_positions.columns[j]} at {wide_positions.index[t]} is outside "
            f"[-{config.position_limit}, {config.position_limit}]; clip it or raise BacktestConfig.position_limit"
        )
    if config.weighting == "vol_target":
        scale = _volatility_scale(wide_close.iloc[: start + T].to_numpy(np.float64), start, config, ppy)
        raw = raw * scale  # NaN stays NaN: the kernel still checks it against the prices
    order = "C" if raw.flags.c_contiguous else "F"
    raw = np.asarray(raw, order=order)
    prices = np.asarray(prices, order=order)
    executed = np.empty((T, N), order=order)
    net = np.empty((T, N), order=order)
    cost = np.empty((T, N), order=order)
    equity = np.empty((T + 1, N), order=order)
    error = np.zeros(3, dtype=np.int64)
    _simulate(raw, prices, trade_rate(costs), hold_rate(costs), executed, net, cost, equity, error, order == "F")
    if error[0] != _OK:
        code, t, j = (int(v) for v in error)
        where = f"{wide_positions.columns[j]} at {wide_positions.index[t]}"
        if code == _MISSING_POSITION:
            raise DataContractError(f"position is NaN for {where} although a price exists; use 0 for flat")
        raise DataContractError(
            f"non-zero position for {where} has no valid close at that bar or the next (missing or <= 0); "
            "a sleeve must be flat across bars without prices"
        )

    realised = block.index[1:]
    symbols = pd.Index([str(c) for c in wide_positions.columns], name="symbol")
    portfolio = net.sum(axis=1) if config.book == "weights" else net.mean(axis=1)  # (T,)
    portfolio_equity = np.concatenate([[1.0], np.cumprod(1.0 + portfolio)])
    return BacktestResult(
        exposures=pd.DataFrame(executed, index=wide_positions.index, columns=symbols),
        returns=pd.DataFrame(net, index=realised, columns=symbols),
        costs=pd.DataFrame(cost, index=realised, columns=symbols),
        equity=pd.DataFrame(equity, index=block.index, columns=symbols),
        portfolio_returns=pd.Series(portfolio, index=realised, name="portfolio"),
        portfolio_equity=pd.Series(portfolio_equity, index=block.index, name="portfolio"),
        close=pd.DataFrame(prices, index=block.index, columns=symbols),
        periods_per_year=float(ppy),
        costs_config=costs,
        config=config,
    )


# --------------------------------------------------------------------------------------------
# frames that carry next-bar returns instead of prices (held-out windows, predictions frames)
# --------------------------------------------------------------------------------------------
def path_returns(positions: np.ndarray, next_returns: np.ndarray, costs: CostConfig) -> np.ndarray:
    """Net PnL (T,) of one symbol's path of decision bars, entering flat, from its next-bar returns.

    positions (T,): NaN is flat. next_returns (T,): r[t+1]; a bar whose return is unknown (NaN, the
    data's last bar) earns NaN and is skipped by the path (the next known bar trades from the last
    position held). The per-(fold, seed, symbol) accounting of the walk-forward report.
    """
    r = np.asarray(next_returns, dtype=np.float64)
    p = np.asarray(positions, dtype=np.float64)
    known = np.isfinite(r)  # the last bar of the data has no next return: nothing to earn
    net = np.full(len(r), np.nan)
    if known.any():
        net[known] = position_pnl_numpy(np.nan_to_num(p[known]), r[known], costs)
    return net


def portfolio_pnl(positions: pd.Series, next_return: pd.Series, costs: CostConfig,
                  book: Literal["sleeves", "weights"] = "sleeves") -> pd.Series:
    """Portfolio net PnL per decision bar (timestamps) of long-form positions held bar to bar.

    positions, next_return: Series on the panel's (symbol, timestamp) index (next_return = r[t+1] at
    bar t). Every symbol is one path over the union of the bars; a bar without a position (no
    window there, or a name not listed) is flat and its missing return earns nothing, so leaving a
    name pays for the exit at the next bar. book "sleeves": the equal-weight mean of the per-symbol
    paths (positions in [-1, 1]; the held-out score of a model, a baseline or a policy on the windows
    of one segment). book "weights": the sum over names, positions being portfolio weights (the
    portfolio room's), net[t] = sum_i w[t,i] r[t+1,i] - costs on |w[t,i] - w[t-1,i]| and |w[t,i]|.
    """
    if book not in ("sleeves", "weights"):
        raise ValueError(f"portfolio_pnl book must be 'sleeves' or 'weights', got {book!r}")
    p = positions.unstack("symbol").sort_index().fillna(0.0)  # (T, N)
    r = next_return.unstack("symbol").sort_index().reindex_like(p).fillna(0.0)  # r[t+1] at decision bar t
    net = position_pnl_numpy(p.to_numpy().T, r.to_numpy().T, costs)  # (N, T): time on the last axis
    return pd.Series(net.sum(axis=0) if book == "weights" else net.mean(axis=0), index=p.index, name="net_pnl")


# --------------------------------------------------------------------------------------------
# trades and regimes
# --------------------------------------------------------------------------------------------
def trade_list(result: BacktestResult) -> pd.DataFrame:
    """Every trade: a maximal run of bars holding a position of one sign in one symbol.

    Columns: symbol, direction (+1 long, -1 short), entry_time (decision bar of the entry fill),
    exit_time (decision bar whose fill closes or flips it; NaT while open), bars (bars held),
    entry_price / exit_price (the fills' closes), mean_exposure (mean |position|), pnl (sum of the
    trade's per-bar net returns, in units of the sleeve's capital, or of the book's when book =
    weights; not compounded), open.
    Attribution: a resize within a trade charges that trade; a flip's cost is split, the closing
    part |p[t-1]| to the old trade and the opening part |p[t]| to the new one; so the trades' pnl
    sums to the sleeves' total net PnL.
    """
    p = np.ascontiguousarray(result.exposures.to_numpy(np.float64).T)  # (N, T) one path per symbol
    net = np.ascontiguousarray(result.returns.to_numpy(np.float64).T)  # (N, T)
    N, T = p.shape
    lagged = np.concatenate([np.zeros((N, 1)), p[:, :-1]], axis=1)  # p[t-1], p[-1] = 0
    side, lagged_side = np.sign(p), np.sign(lagged)
    rate = trade_rate(result.costs_config)
    closing = np.where((lagged_side != 0) & (side != lagged_side), rate * np.abs(lagged), 0.0)  # old trade's share
    held = side != 0
    starts = held & (side != lagged_side)
    run = np.cumsum(starts.ravel()) - 1  # (N*T,) trade id of every cell (valid where held)
    n_trades = int(starts.sum())
    columns = [
        "symbol",
        "direction",
        "entry_time",
        "exit_time",
        "bars",
        "entry_price",
        "exit_price",
        "mean_exposure",
        "pnl",
        "open",
    ]
    if n_trades == 0:
        return pd.DataFrame(columns=columns)

    flat_held = held.ravel()
    own = (net + closing).ravel()  # the bar's net with the old trade's closing share given back
    pnl = np.bincount(run[flat_held], weights=own[flat_held], minlength=n_trades)
    close_cells = np.flatnonzero(closing.ravel() > 0) if rate > 0 else np.empty(0, dtype=np.int64)
    pnl -= np.bincount(run[close_cells - 1], weights=closing.ravel()[close_cells], minlength=n_trades)
    bars = np.bincount(run[flat_held], minlength=n_trades)
    size = np.bincount(run[flat_held], weights=np.abs(p).ravel()[flat_held], minlength=n_trades)

    entry_cells = np.flatnonzero(starts.ravel())
    symbol_idx, entry_t = np.divmod(entry_cells, T)
    exit_t = entry_t + bars  # the first bar after the run: where the fill closes or flips it
    is_open = exit_t >= T
    decision = result.exposures.index
    close = result.close.to_numpy(np.float64)  # (T + 1, N)
    exit_row = np.minimum(exit_t, T - 1)
    return pd.DataFrame(
        {
            "symbol": result.exposures.columns[symbol_idx],
            "direction": side.ravel()[entry_cells].astype(np.int8),
            "entry_time": decision[entry_t],
            "exit_time": decision[exit_row].where(~is_open),
            "bars": bars,
            "entry_price": close[entry_t, symbol_idx],
            "exit_price": np.where(is_open, np.nan, close[exit_row, symbol_idx]),
            "mean_exposure": size / bars,
            "pnl": pnl,
            "open": is_open,
        },
        columns=columns,
    )


def regime_attribution(result: BacktestResult, labels: pd.Series | pd.DataFrame) -> pd.DataFrame:
    """Net PnL by regime value; the PnL decided at bar t goes to the regime labelled at t.

    labels: regime labels aligned to the positions' index: the output of
            `data.regimes.label_regimes` (long (symbol, timestamp) index, one column per regime),
            a long Series (one regime), or a wide (timestamp x symbol) frame (one regime).
            Bars without a label are grouped as "unlabelled".
    Output rows (regime, value); columns: bars (symbol-bars), exposure (mean |position|), pnl (sum
    of the sleeves' net returns), contribution (pnl / N; pnl itself when book = weights: its share of
    the summed portfolio return; the contributions of one regime's values add up to portfolio_returns.sum()), mean_pnl,
    hit_rate (share of bars with a position whose net PnL is > 0), sharpe (annualised, over the
    regime's symbol-bars pooled).
    """
    if isinstance(labels, pd.DataFrame) and not isinstance(labels.index, pd.MultiIndex):
        regimes = {labels.columns.name or "regime": labels}
    elif isinstance(labels, pd.DataFrame):
        regimes = {name: labels[name].unstack("symbol") for name in labels.columns}
    elif isinstance(labels, pd.Series):
        regimes = {labels.name or "regime": _to_wide(labels, "labels")}
    else:
        raise DataContractError(f"labels must be a DataFrame or Series, got {type(labels).__name__}")
    exposures = result.exposures
    net = result.returns.to_numpy(np.float64).ravel()
    exposure = np.abs(exposures.to_numpy(np.float64)).ravel()
    n_symbols = exposures.shape[1]
    tables = []
    for name, wide in regimes.items():  # a few regime kinds, not rows
        wide = wide.copy()
        wide.columns = wide.columns.astype(str)
        aligned = wide.reindex(index=exposures.index, columns=[str(c) for c in exposures.columns]).astype(object)
        values = aligned.where(aligned.notna(), UNLABELLED).to_numpy().ravel().astype(str)
        frame = pd.DataFrame(
            {
                "value": values,
                "pnl": net,
                "exposure": exposure,
                "win": (net > 0) & (exposure > 0),
                "active": exposure > 0,
            }
        )
        grouped = frame.groupby("value", sort=True)
        table = grouped.agg(
            bars=("pnl", "size"),
            exposure=("exposure", "mean"),
            pnl=("pnl", "sum"),
            mean_pnl=("pnl", "mean"),
            std_pnl=("pnl", "std"),
            wins=("win", "sum"),
            active=("active", "sum"),
        )
        table["contribution"] = table["pnl"] if result.config.book == "weights" else table["pnl"] / n_symbols
        with np.errstate(divide="ignore", invalid="ignore"):
            table["hit_rate"] = np.where(table["active"] > 0, table["wins"] / table["active"], np.nan)
            table["sharpe"] = table["mean_pnl"] / table["std_pnl"] * math.sqrt(result.periods_per_year)
        table = table.drop(columns=["wins", "active", "std_pnl"])
        table.index = pd.MultiIndex.from_product([[name], table.index], names=["regime", "value"])
        tables.append(table)
    return pd.concat(tables)[["bars", "exposure", "pnl", "contribution", "mean_pnl", "hit_rate", "sharpe"]]
