"""The portfolio room: per-bar scores -> weights, one construction for training, RL, backtest and serving.

`portfolio_weights` (frames) and `construct_weights` (arrays) in construct.py; the rank rules in
rules.py; the turnover and volatility limits in limits.py. The weights are booked by the one PnL
road: `evaluation.backtest.portfolio_pnl(..., book="weights")` / `BacktestConfig(book="weights")`.
See docs/portfolio.md.
"""

from plus_ultra_ml.portfolio.construct import construct_weights, portfolio_weights, realised_returns, sector_codes

__all__ = ["construct_weights", "portfolio_weights", "realised_returns", "sector_codes"]
