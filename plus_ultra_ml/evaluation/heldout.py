"""Held-out scores of a trained network on one segment (the test tail), and of the baselines on the same windows.

A model is scored only on windows that lie wholly inside the segment it is scored on: the rows of
`SegmentPredictions` (made by `training.evaluate.predict_segment` from `WindowedData.ends[segment]`,
whose inputs and targets are inside that segment, scaled with statistics fitted on training rows).

Per window the last bar is the decision bar (causal backbones: its outputs read that window only).
Metrics:
- `loss` (and its parts): `SupervisedModule.model_step` on the segment's windows, the training
  objective itself;
- IC by horizon: mean cross-sectional IC, rank IC and pooled IC of the forecast (in return units)
  against the realised forward log return (evaluation.metrics.ic_by_horizon); `ic_next_bar` is the
  pooled Pearson IC against the next bar's simple return, the fixture oracle's definition;
- the position head's equal-weight portfolio over symbols: per-bar net PnL through
  `evaluation.backtest.portfolio_pnl` (objectives.pnl: next-bar fills, trading and holding costs),
  annualised Sharpe net and gross, turnover, and `forecast_sharpe_net`: the net Sharpe of the 1-bar
  forecast turned into positions by `evaluation.baselines.ForecastPositions` fitted on the training
  segment's forecasts only (the walk-forward `forecast` strategy), which separates a good forecast
  from a poor position head. A bar without a window (the segment's first window-1 bars) is held flat.
- on a fixture (given the oracle's positions, `synthetic.fixture.oracle_reference`): the oracle's net
  Sharpe on exactly the same windows' bars (`oracle_sharpe_net`, same arithmetic) and the position
  head's `share_of_oracle` (sharpe_net / oracle_sharpe_net).

`baseline_metrics` scores the one set of baselines (evaluation/baselines.py), fitted on the split's
own segments, on exactly the model's rows, with the same IC and portfolio arithmetic.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from plus_ultra_ml.config import BaselinesConfig, CostConfig
from plus_ultra_ml.data import calendar
from plus_ultra_ml.data.windows import Split, Targets, WindowedData
from plus_ultra_ml.evaluation import metrics as M
from plus_ultra_ml.evaluation.backtest import portfolio_pnl
from plus_ultra_ml.evaluation.baselines import ForecastPositions, run_baselines

logger = logging.getLogger(__name__)

FREE = CostConfig(transaction_bps=0.0, slippage_bps=0.0, holding_bps=0.0)
# held-out baseline keys -> evaluation.baselines names; "linear" is the ridge baseline (the
# promotion gate reads baseline_linear_ic_next_bar and baseline_momentum_ic_next_bar)
# (persistence is left out: its PnL is zero on every bar, so its Sharpe is undefined; "beats persistence"
# is "net Sharpe above zero")
HELDOUT_BASELINES = {"momentum": "momentum", "linear": "ridge", "buy_and_hold": "buy_and_hold",
                     "universe_buy_and_hold": "universe_buy_and_hold", "vol_target": "vol_target"}


@dataclass(frozen=True)
class SegmentPredictions:
    """One row per window of the segment, indexed by (symbol, timestamp) of its last bar.

    columns: forecast_1..H (return units), position, target_1..H (forward log returns),
    next_return (simple, the bar after), volatility.
    """

    frame: pd.DataFrame
    loss: float
    parts: dict[str, float]
    segment: str


def _sharpe(pnl: pd.Series, ppy: float) -> float:
    return float(M.sharpe_ratio(pnl.to_numpy(), periods_per_year=ppy))


def sharpe_interval(pnl: pd.Series, periods_per_year: float, seed: int = 0) -> tuple[float, float]:
    """95% stationary block-bootstrap interval (500 resamples) of the annualised Sharpe of per-bar PnL;
    fewer than 3 finite bars: NaN. What the promotion gate's significance criterion reads."""
    values = pnl.to_numpy(np.float64)
    values = values[np.isfinite(values)]
    if len(values) < 3:
        return math.nan, math.nan
    ci = M.block_bootstrap_ci(values, lambda x: M.sharpe_ratio(x, periods_per_year), n_resamples=500, seed=seed)
    return ci.low, ci.high


def _horizons(frame: pd.DataFrame, prefix: str, H: int) -> pd.DataFrame:
    return frame[[f"{prefix}{h}" for h in range(1, H + 1)]].set_axis(range(1, H + 1), axis=1)


def signal_metrics(forecast: pd.DataFrame, targets: pd.DataFrame, next_return: pd.Series) -> dict[str, float]:
    """IC by horizon of forecasts (columns 1..H) against forward returns (same columns): mean
    cross-sectional IC and rank IC (NaN with fewer than 3 symbols), pooled IC, and the pooled IC of
    forecast 1 against the next bar's simple return."""
    table = M.ic_by_horizon(forecast, targets, min_assets=3)  # fewer than 3 symbols: cross-sectional IC is NaN
    out: dict[str, float] = {}
    for h, row in table.iterrows():
        out[f"ic_h{h}"] = float(row["ic"])
        out[f"rank_ic_h{h}"] = float(row["rank_ic"])
        out[f"pooled_ic_h{h}"] = float(row["pooled_ic"])
    out["ic_next_bar"] = M.pooled_ic(forecast[1], next_return)
    return out


def forecast_positions(frame: pd.DataFrame, train_forecast: np.ndarray) -> pd.Series:
    """Positions of the 1-bar forecast (`frame["forecast_1"]`) through the one forecast -> position mapping,
    fitted on `train_forecast` (the model's forecasts on its training windows) and nothing else."""
    mapping = ForecastPositions.fit(train_forecast)
    return pd.Series(mapping.transform(frame["forecast_1"].to_numpy()), index=frame.index, name="position")


def heldout_metrics(pred: SegmentPredictions, costs: CostConfig, periods_per_year: float,
                    train_forecast: np.ndarray | None = None, *, oracle: pd.Series | None = None) -> dict[str, float]:
    """Loss, IC by horizon and the position head's net/gross Sharpe on the predicted segment; with
    `train_forecast` (forecast_1 on the training windows), also `forecast_sharpe_net`; with `oracle`
    (positions on the panel's index), the oracle's net Sharpe on the same rows and the share (module docstring)."""
    f = pred.frame
    H = sum(c.startswith("forecast_") for c in f.columns)
    out: dict[str, float] = {"loss": pred.loss, **{f"loss_{k}": v for k, v in pred.parts.items()}}
    out.update(signal_metrics(_horizons(f, "forecast_", H), _horizons(f, "target_", H), f["next_return"]))
    net = portfolio_pnl(f["position"], f["next_return"], costs)
    gross = portfolio_pnl(f["position"], f["next_return"], FREE)
    out["sharpe_net"] = _sharpe(net, periods_per_year)
    out["sharpe_net_low"], out["sharpe_net_high"] = sharpe_interval(net, periods_per_year)
    out["sharpe_gross"] = _sharpe(gross, periods_per_year)
    if train_forecast is not None:  # the forecast alone, mapped as every forecaster is (fitted on training only)
        positions = forecast_positions(f, train_forecast)
        out["forecast_sharpe_net"] = _sharpe(portfolio_pnl(positions, f["next_return"], costs), periods_per_year)
    out["turnover"] = float(M.turnover(f["position"].unstack("symbol").sort_index().fillna(0.0)).mean())
    out["exposure"] = float(f["position"].abs().mean())
    out["windows"] = float(len(f))
    if oracle is not None:
        out["oracle_sharpe_net"] = _sharpe(portfolio_pnl(oracle.reindex(f.index).fillna(0.0), f["next_return"], costs),
                                           periods_per_year)
        out["share_of_oracle"] = out["sharpe_net"] / out["oracle_sharpe_net"]
    return out


def segment_periods_per_year(data: WindowedData, trading_calendar: calendar.TradingCalendar | str | None = None) -> float:
    """Bars per year of the panel's trading calendars: what the windows carry (`WindowedData.periods_per_year`,
    from `data.calendar.panel_periods_per_year` before any fitting), else of `trading_calendar`; only when
    neither is known is the calendar inferred from the grid's timestamps (the last resort, logged). The
    count comes from a calendar, never from how many rows a segment holds."""
    if trading_calendar is None and data.periods_per_year is not None:
        return float(data.periods_per_year)
    if trading_calendar is None:
        logger.warning("windows carry no calendar annualisation: inferring the trading calendar from their "
                       "timestamps; build them with periods_per_year=data.calendar.panel_periods_per_year(panel)")
    return calendar.periods_per_year(pd.to_datetime(np.unique(data.timestamps), utc=True), trading_calendar)


def baseline_metrics(frame: pd.DataFrame, panel: pd.DataFrame, features: pd.DataFrame, targets: Targets,
                     split: Split, segment: str, costs: CostConfig, periods_per_year: float,
                     seed: int = 0, config: BaselinesConfig = BaselinesConfig()) -> dict[str, float]:
    """IC and net Sharpe of the baselines (evaluation/baselines.py) on the rows of `frame`.

    frame: a `SegmentPredictions.frame` of `segment` (its index picks the windows scored; its
    target_1 and next_return columns are the realised returns, as for the model). The baselines are
    fitted on `split`'s training (and validation) segments of the panel, features and targets.
    Per baseline: `<key>_sharpe_net` of its positions; with a forecast, also `<key>_ic_next_bar`
    and `<key>_ic_h1` (the forecast against next_return and target_1, as `signal_metrics`).
    """
    results = run_baselines(panel, features, targets, split, segment, seed=seed,
                            names=tuple(HELDOUT_BASELINES.values()), config=config)
    next_return = frame["next_return"]
    out: dict[str, float] = {}
    for key, name in HELDOUT_BASELINES.items():
        result = results[name]
        if result.forecast is not None:
            forecast = result.forecast.reindex(frame.index).to_frame(1)
            signal = signal_metrics(forecast, frame[["target_1"]].set_axis([1], axis=1), next_return)
            out[f"{key}_ic_next_bar"] = signal["ic_next_bar"]
            out[f"{key}_ic_h1"] = signal["ic_h1"]
        positions = result.position.reindex(frame.index).fillna(0.0)
        out[f"{key}_sharpe_net"] = _sharpe(portfolio_pnl(positions, next_return, costs), periods_per_year)
    return {k: (v if math.isfinite(v) else float("nan")) for k, v in out.items()}
