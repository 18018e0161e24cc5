"""Execution lag: what a strategy earns when its orders fill later than the bar that decided them.

The project's fill convention (evaluation/backtest.py) is a market-on-close fill with zero latency:
the position p[t] decided with bar t's data is filled at bar t's close and earns r[t+1]. With an
execution lag of L bars the same decision is filled at the close of bar t+L and earns r[t+L+1]; in
the predictions frame that is the position column shifted by L rows along each (fold, seed, symbol)
path of decision bars, the first L bars of every path flat (each fold's book enters flat, and its
first order has not filled yet). Costs are charged on the lagged path's own changes, through the
one PnL road (`evaluation.backtest.path_returns` / `portfolio_pnl`), so lag 0 is the frame itself.

`lagged` shifts every position (strategies, portfolio weights and references alike);
`evaluation.report.build_report` books the whole report at `backtest.execution_lag` and shows the net
Sharpe of every strategy and reference at each of `backtest.compare_lags` side by side.
"""

from __future__ import annotations

import pandas as pd

from plus_ultra_ml.evaluation.predictions import POSITION, REFERENCE, with_defaults


def position_columns(frame: pd.DataFrame) -> list[str]:
    """The columns a fill lag moves: every strategy's and every reference's positions."""
    return [c for c in frame.columns if c.startswith((POSITION, REFERENCE))]


def lagged(predictions: pd.DataFrame, lag: int) -> pd.DataFrame:
    """`predictions` (with_defaults applied) with every position filled `lag` bars after its decision bar."""
    if lag < 0:
        raise ValueError(f"an execution lag is a number of bars >= 0, got {lag}")
    frame = with_defaults(predictions)
    if lag == 0:
        return frame
    columns = position_columns(frame)
    paths = frame.groupby([frame["fold"], frame["seed"], frame.index.get_level_values("symbol")],
                          observed=True, sort=False)
    out = frame.copy()
    out[columns] = paths[columns].shift(lag).fillna(0.0)  # not filled yet: flat
    return out
