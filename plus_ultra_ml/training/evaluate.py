"""Held-out evaluation of a trained network on one segment (the test tail), and naive baselines.

A model is scored only on windows that lie wholly inside the segment it is scored on: the windows
of `WindowedData.ends[segment]`, whose inputs and targets are inside that segment (data/windows.py),
scaled with statistics fitted on the training rows. Nothing here reads another segment's rows,
except the linear baseline, which is *fitted* on training windows and scored on the segment.

Per window the last bar is the decision bar (causal backbones: its outputs read that window only).
Metrics:
- `loss` (and its parts): `SupervisedModule.model_step` on the segment's windows, the training
  objective itself;
- IC by horizon: mean cross-sectional IC, rank IC and pooled IC of the forecast (in return units)
  against the realised forward log return (evaluation.metrics.ic_by_horizon); `ic_next_bar` is the
  pooled Pearson IC against the next bar's simple return, the fixture oracle's definition;
- the position head's equal-weight portfolio over symbols: per-bar net PnL through
  objectives.pnl (next-bar fills, trading and holding costs), annualised Sharpe net and gross,
  turnover, and the net Sharpe of sign(forecast_1) as a reference for the forecast alone. A bar
  without a window (the segment's first window-1 bars) is held flat.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader

from plus_ultra_ml.config import CostConfig
from plus_ultra_ml.data import calendar
from plus_ultra_ml.data.windows import WindowedData
from plus_ultra_ml.evaluation import metrics as M
from plus_ultra_ml.objectives.pnl import position_pnl_numpy
from plus_ultra_ml.training.lit_modules import SupervisedModule

FREE = CostConfig(transaction_bps=0.0, slippage_bps=0.0, holding_bps=0.0)
RIDGE = 1e-3  # relative L2 penalty of the linear baseline (times the mean feature variance)


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


def predict_segment(module: SupervisedModule, data: WindowedData, segment: str = "test",
                    batch_size: int = 512) -> SegmentPredictions:
    """Run `module.model_step` over every window of `segment` (no gradient, eval mode)."""
    dataset = data.dataset(segment)
    if len(dataset) == 0:
        raise ValueError(f"segment {segment!r} has no windows to evaluate")
    device = module.device
    was_training = module.training
    module.eval()
    chunks: dict[str, list[np.ndarray]] = {}
    total, parts, count = 0.0, {}, 0
    try:
        with torch.no_grad():
            for batch in DataLoader(dataset, batch_size=batch_size, shuffle=False):
                batch = {k: v.to(device) for k, v in batch.items()}
                step = module.model_step(batch)
                n = len(batch["x"])
                total += float(step.loss) * n
                for name, value in step.parts.items():
                    parts[name] = parts.get(name, 0.0) + float(value) * n
                count += n
                out = {
                    "forecast": (step.output.forecast[:, -1] * step.scale[:, -1]).double(),  # (B, H)
                    "position": step.output.position[:, -1].double(),  # (B,)
                    "target": batch["y"][:, -1].double(),  # (B, H)
                    "next_return": batch["r"][:, -1].double(),
                    "volatility": batch["vol"][:, -1].double(),
                    "symbol": batch["symbol"],
                    "end": batch["end"],
                }
                for key, value in out.items():
                    chunks.setdefault(key, []).append(value.cpu().numpy())
    finally:
        module.train(was_training)
    cat = {k: np.concatenate(v) for k, v in chunks.items()}
    H = cat["forecast"].shape[1]
    index = pd.MultiIndex.from_arrays(
        [pd.Categorical.from_codes(cat["symbol"], categories=data.symbols),
         pd.to_datetime(cat["end"], utc=True)], names=["symbol", "timestamp"])
    columns = {f"forecast_{h + 1}": cat["forecast"][:, h] for h in range(H)}
    columns["position"] = cat["position"]
    columns.update({f"target_{h + 1}": cat["target"][:, h] for h in range(H)})
    columns["next_return"] = cat["next_return"]
    columns["volatility"] = cat["volatility"]
    frame = pd.DataFrame(columns, index=index).sort_index()
    return SegmentPredictions(frame, total / count, {k: v / count for k, v in parts.items()}, segment)


# --------------------------------------------------------------------------------------------
# metrics
# --------------------------------------------------------------------------------------------
def _wide(series: pd.Series) -> pd.DataFrame:
    return series.unstack("symbol").sort_index()


def portfolio_pnl(positions: pd.Series, next_return: pd.Series, costs: CostConfig) -> np.ndarray:
    """Equal-weight portfolio net PnL per bar (T,) of long-form positions held bar to bar.

    Missing positions (no window at that bar) are flat; their missing returns then earn nothing.
    """
    p = _wide(positions).fillna(0.0)
    r = _wide(next_return).reindex_like(p).fillna(0.0)
    net = position_pnl_numpy(p.to_numpy().T, r.to_numpy().T, costs)  # (N, T): time on the last axis
    return net.mean(axis=0)


def _sharpe(pnl: np.ndarray, ppy: float) -> float:
    return float(M.sharpe_ratio(pnl, periods_per_year=ppy))


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


def heldout_metrics(pred: SegmentPredictions, costs: CostConfig, periods_per_year: float) -> dict[str, float]:
    """Loss, IC by horizon and the position head's net/gross Sharpe on the predicted segment."""
    f = pred.frame
    H = sum(c.startswith("forecast_") for c in f.columns)
    forecast = f[[f"forecast_{h}" for h in range(1, H + 1)]].set_axis(range(1, H + 1), axis=1)
    targets = f[[f"target_{h}" for h in range(1, H + 1)]].set_axis(range(1, H + 1), axis=1)
    out: dict[str, float] = {"loss": pred.loss, **{f"loss_{k}": v for k, v in pred.parts.items()}}
    out.update(signal_metrics(forecast, targets, f["next_return"]))
    net = portfolio_pnl(f["position"], f["next_return"], costs)
    gross = portfolio_pnl(f["position"], f["next_return"], FREE)
    out["sharpe_net"] = _sharpe(net, periods_per_year)
    out["sharpe_gross"] = _sharpe(gross, periods_per_year)
    # the simplest rule on the forecast itself, sign(forecast_1): separates a good forecast from a poor position head
    sign = np.sign(f["forecast_1"])
    out["forecast_sign_sharpe_net"] = _sharpe(portfolio_pnl(sign, f["next_return"], costs), periods_per_year)
    out["turnover"] = float(M.turnover(_wide(f["position"]).fillna(0.0)).mean())
    out["exposure"] = float(f["position"].abs().mean())
    out["windows"] = float(len(f))
    return out


def segment_periods_per_year(data: WindowedData) -> float:
    """Bars per year of the whole panel's grid (not of one short segment)."""
    return calendar.periods_per_year(pd.to_datetime(np.unique(data.timestamps), utc=True))


# --------------------------------------------------------------------------------------------
# naive baselines (what a deep model has to beat on the same segment)
# --------------------------------------------------------------------------------------------
def baseline_metrics(data: WindowedData, segment: str, costs: CostConfig) -> dict[str, float]:
    """IC and net Sharpe of naive forecasts on the windows of `segment`.

    momentum: the last bar's log return (known at the decision bar) as the forecast of every horizon.
    linear:   ridge regression of the volatility-scaled 1..H forward returns on the decision bar's
              scaled features, fitted on the *training* windows only; positions sign(forecast_1).
    buy_and_hold: position +1 in every symbol.
    """
    rows = data.ends[segment]
    H = data.horizon
    previous = rows - 1
    same = (previous >= 0) & (data.symbol_ids[np.maximum(previous, 0)] == data.symbol_ids[rows])
    past = np.where(same, data.targets[np.maximum(previous, 0), 0], np.nan).astype(np.float64)  # log(c_t / c_t-1)
    index = pd.MultiIndex.from_arrays(
        [pd.Categorical.from_codes(data.symbol_ids[rows], categories=data.symbols),
         pd.to_datetime(data.timestamps[rows], utc=True)], names=["symbol", "timestamp"])
    targets = pd.DataFrame(data.targets[rows].astype(np.float64), index=index, columns=range(1, H + 1))
    next_return = pd.Series(data.next_return[rows].astype(np.float64), index=index)
    scale = data.volatility[rows, None].astype(np.float64) * np.sqrt(np.arange(1, H + 1))  # (N, H)

    train = data.ends["train"]
    X = data.features[train].astype(np.float64)
    Y = data.targets[train].astype(np.float64) / (data.volatility[train, None] * np.sqrt(np.arange(1, H + 1)))
    X1 = np.hstack([X, np.ones((len(X), 1))])
    penalty = RIDGE * np.eye(X1.shape[1]) * (X.var(axis=0).mean() * len(X))
    penalty[-1, -1] = 0.0  # never shrink the intercept
    weights = np.linalg.solve(X1.T @ X1 + penalty, X1.T @ Y)  # (F + 1, H)
    Xs = np.hstack([data.features[rows].astype(np.float64), np.ones((len(rows), 1))])
    linear = pd.DataFrame(Xs @ weights * scale, index=index, columns=range(1, H + 1))
    momentum = pd.DataFrame(np.repeat(past[:, None], H, axis=1), index=index, columns=range(1, H + 1))

    ppy = segment_periods_per_year(data)
    out: dict[str, float] = {}
    for name, forecast in (("momentum", momentum), ("linear", linear)):
        signal = signal_metrics(forecast, targets, next_return)
        out[f"{name}_ic_next_bar"] = signal["ic_next_bar"]
        out[f"{name}_ic_h1"] = signal["ic_h1"]
        positions = pd.Series(np.sign(forecast[1].to_numpy()), index=index).fillna(0.0)
        out[f"{name}_sharpe_net"] = _sharpe(portfolio_pnl(positions, next_return, costs), ppy)
    ones = pd.Series(1.0, index=index)
    out["buy_and_hold_sharpe_net"] = _sharpe(portfolio_pnl(ones, next_return, costs), ppy)
    return {k: (v if math.isfinite(v) else float("nan")) for k, v in out.items()}
