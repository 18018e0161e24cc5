"""Reports over out-of-sample predictions: metric tables, figures, HTML / Markdown / parquet.

Input is a predictions frame (evaluation/predictions.py: one row per (symbol, bar) with
next_return, position__<strategy> and optional fold, seed, forecast__h<k>, target__h<k>,
regime__<name>, signal__<strategy>), what `plus-ultra predict` and every walk-forward fold write.

Returns come from `evaluation.backtest.path_returns` (on `objectives.pnl`, the arithmetic the
backtester and the RL env use), per (fold, seed, symbol) path, entering each fold flat. The portfolio
return of a strategy at a bar is the mean over symbols; with several seeds, the mean over seeds (an
equal split of capital between the seed models). Folds tile the test period, so concatenating them
gives one out-of-sample path per strategy.

Signal quality per strategy (`Report.strategy_ic`): IC, rank IC and ICIR (evaluation.metrics.ic_by_horizon)
of every strategy with a forecast (the model's forecast__h1, each signal__<strategy>) against the
realised next-bar log return target__h1, on the same rows. Paired comparisons (`Report.paired`): the
model minus every other strategy, on the same bars, in net Sharpe and in pooled IC, with a 95%
stationary block-bootstrap interval in which both strategies resample the same blocks of bars; a
portfolio book X@c is compared with the model's book of the same construction, model@c (`model_side`).

References (`Report.references`): positions in ``reference__<name>`` columns (on a fixture, the
oracle of `evaluation.oracle`: the best policy given the generator's true expected returns,
volatility and these costs) are scored by the same arithmetic on exactly the rows scored, and each
strategy's ``share_of_oracle`` (its net Sharpe / the oracle's on the same bars, overall and per
fold) is given. A reference is not a strategy: it is not a row of `overall`, and is left out of
the trial count, the paired comparisons and everything the promotion gate reads.

Cross-section (`Report.cross_section`, evaluation/cross_section.py), only for a universe (more than
`symbol_summary.MANY_SYMBOLS` symbols, or a ``sector`` column with two sectors or more): every scored strategy's per-date IC,
rank IC and ICIR with 95% block-bootstrap intervals as the report's headline; quantile (decile by
default, `build_report(quantiles=...)`) portfolio returns, the top-minus-bottom spread (gross) with
its Sharpe and interval, top / bottom bucket turnover, and a chart; with sectors, the IC per sector
and each sector's contribution to the spread. A report of a few series has none of it.

Per symbol (`Report.per_symbol`): each strategy's net Sharpe on each symbol's own path (seeds
averaged per bar), always written whole beside the report as ``<stem>_symbols.parquet``. With more
than `symbol_summary.MANY_SYMBOLS` symbols the documents show it summarised (min / median / max and
the lowest and highest names per strategy) and name that file; with fewer they leave it out.
"""

from __future__ import annotations

import base64
import io
import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from plus_ultra_ml.artifacts import atomic_path, write_text_atomic
from plus_ultra_ml.config import CostConfig, ExecutionConfig, PortfolioConfig
from plus_ultra_ml.data.calendar import periods_per_year as infer_periods_per_year
from plus_ultra_ml.errors import PlusUltraError
from plus_ultra_ml.evaluation import metrics
from plus_ultra_ml.evaluation.backtest import path_returns
from plus_ultra_ml.evaluation.cross_section import (DEFAULT_QUANTILES, CrossSection, evaluate_cross_section,
                                                    is_universe)
from plus_ultra_ml.evaluation.execution import lagged
from plus_ultra_ml.evaluation.portfolio_book import (WEIGHTS_MARK, is_weights, weights_returns, weights_strategy,
                                                    with_portfolio_strategies)
from plus_ultra_ml.evaluation.predictions import (FORECAST, PERIODS_PER_YEAR, POSITION, PPO_KEPT, RAW, REFERENCE,
                                                   REFERENCE_SCORE, REGIME, SECTOR, SIGNAL, TARGET, reference_scores_of,
                                                   references_of, signals_of, strategies_of, with_defaults)
from plus_ultra_ml.symbol_summary import TOP_K, many_symbols, summarise, write_symbol_table

logger = logging.getLogger(__name__)

HEADLINE = ["sharpe", "sharpe_low", "sharpe_high", "total_return", "cagr", "annual_volatility", "max_drawdown",
            "sortino", "calmar", "hit_rate", "turnover", "exposure"]
MODEL = "model"  # the strategy the paired comparisons are made against
BOOTSTRAP_RESAMPLES = 500
ORACLE = "oracle"  # the reference whose Sharpe each strategy's share_of_oracle divides by


def symbol_returns(predictions: pd.DataFrame, costs: CostConfig) -> pd.DataFrame:
    """Net return per (fold, seed, symbol, timestamp) row and strategy (columns), decision-bar indexed."""
    frame = with_defaults(predictions)
    out = pd.DataFrame(index=frame.index, columns=strategies_of(frame), dtype=np.float64)
    symbols = frame.index.get_level_values("symbol")
    for (fold, seed, symbol), rows in frame.groupby([frame["fold"], frame["seed"], symbols], observed=True,
                                                    sort=False).indices.items():
        r = frame["next_return"].to_numpy(np.float64)[rows]
        for name in out.columns:
            p = frame[POSITION + name].to_numpy(np.float64)[rows]
            out.iloc[rows, out.columns.get_loc(name)] = path_returns(p, r, costs)
    return out


def portfolio_returns(predictions: pd.DataFrame, costs: CostConfig) -> pd.DataFrame:
    """(timestamp x strategy) portfolio net returns: mean over symbols (sleeves) or the weights' book
    (strategies ``<s>@<construction>``, evaluation.portfolio_book), then the mean over seeds."""
    frame = with_defaults(predictions)
    return _portfolio_of_rows(frame, symbol_returns(frame, costs), costs)


def _portfolio_of_rows(frame: pd.DataFrame, per_row: pd.DataFrame, costs: CostConfig) -> pd.DataFrame:
    """`portfolio_returns` from the per-row net returns `symbol_returns` gave for `frame`: the sleeves'
    mean over rows; strategies booked as weights through `portfolio_book.weights_returns` instead."""
    sleeves = [s for s in per_row.columns if not is_weights(s)]
    per_row = per_row[sleeves].reset_index(drop=True)
    keys = [frame.index.get_level_values("timestamp"), frame["seed"].to_numpy()]
    by_seed = per_row.groupby(keys).mean()
    by_seed.index.names = ["timestamp", "seed"]
    out = by_seed.groupby(level="timestamp").mean().sort_index()
    weighted = weights_returns(frame, costs)
    if weighted.empty:
        return out
    return out.join(weighted.reindex(out.index))[strategies_of(frame)]


@dataclass
class Report:
    title: str
    overall: pd.DataFrame  # strategy x metric, on the concatenated out-of-sample path
    per_fold: pd.DataFrame  # (fold, strategy) x metric
    per_seed: pd.DataFrame  # strategy x (mean, std) of per-seed Sharpe
    regimes: pd.DataFrame  # (regime, value, strategy) -> mean net return per bar, bars
    ic: pd.DataFrame  # horizon x IC metrics (empty without forecasts)
    returns: pd.DataFrame  # timestamp x strategy portfolio returns
    periods_per_year: float
    notes: list[str] = field(default_factory=list)
    strategy_ic: pd.DataFrame = field(default_factory=pd.DataFrame)  # strategy x IC metrics (h1), forecasters only
    paired: pd.DataFrame = field(default_factory=pd.DataFrame)  # other strategy x model-minus-it differences
    ppo_selection: pd.DataFrame = field(default_factory=pd.DataFrame)  # (fold, seed) x PPO kept?, test cost/gain
    references: pd.DataFrame = field(default_factory=pd.DataFrame)  # (fold or "all", reference) x sharpe, interval, bars
    per_symbol: pd.DataFrame = field(default_factory=pd.DataFrame)  # symbol x (bars, net Sharpe of each strategy)
    cross_section: CrossSection | None = None  # a universe's per-date IC, quantile portfolios, sectors
    lags: pd.DataFrame = field(default_factory=pd.DataFrame)  # strategy x sharpe_lag<L> (backtest.compare_lags)

    def metrics_table(self) -> pd.DataFrame:
        """Long table of every number: scope, fold, strategy, metric, value (what DuckDB queries)."""
        rows = [{"scope": "overall", "fold": "all", "strategy": s, "metric": m, "value": float(v)}
                for s, row in self.overall.iterrows() for m, v in row.items()]
        rows += [{"scope": "fold", "fold": f, "strategy": s, "metric": m, "value": float(v)}
                 for (f, s), row in self.per_fold.iterrows() for m, v in row.items()]
        rows += [{"scope": "ic", "fold": "all", "strategy": "model", "metric": f"{h}:{m}", "value": float(v)}
                 for h, row in self.ic.iterrows() for m, v in row.items()]
        rows += [{"scope": "strategy_ic", "fold": "all", "strategy": s, "metric": m, "value": float(v)}
                 for s, row in self.strategy_ic.iterrows() for m, v in row.items()]
        rows += [{"scope": "paired", "fold": "all", "strategy": s, "metric": m, "value": float(v)}
                 for s, row in self.paired.iterrows() for m, v in row.items() if m != "model_side"]
        rows += [{"scope": "ppo_selection", "fold": str(f), "strategy": "ppo", "metric": f"seed{sd}:{m}",
                  "value": float(v)} for (f, sd), row in self.ppo_selection.iterrows() for m, v in row.items()]
        rows += [{"scope": "reference", "fold": f, "strategy": s, "metric": m, "value": float(v)}
                 for (f, s), row in self.references.iterrows() for m, v in row.items()]
        rows += [{"scope": "execution_lag", "fold": "all", "strategy": s, "metric": m, "value": float(v)}
                 for s, row in self.lags.iterrows() for m, v in row.items()]
        if self.cross_section is not None:
            cs = self.cross_section
            rows += [{"scope": "cross_section_ic", "fold": "all", "strategy": s, "metric": m, "value": float(v)}
                     for s, row in cs.ic.iterrows() for m, v in row.items()]
            rows += [{"scope": "quantiles", "fold": "all", "strategy": s, "metric": m, "value": float(v)}
                     for s, row in cs.buckets.iterrows() for m, v in row.items()]
            rows += [{"scope": "sector", "fold": "all", "strategy": c.split(":")[0], "metric": f"{sector}:{c.split(':')[1]}",
                      "value": float(v)} for sector, row in cs.sectors.iterrows() for c, v in row.items()]
        return pd.DataFrame(rows)


def _summary(returns: pd.Series, positions: pd.DataFrame | None, ppy: float, benchmark: pd.Series | None,
             seed: int) -> pd.Series:
    r = returns.dropna()
    if len(r) < 3:
        return pd.Series({k: np.nan for k in HEADLINE})
    summary = metrics.performance_summary(r, periods_per_year=ppy, positions=positions, benchmark=benchmark)
    ci = metrics.block_bootstrap_ci(r.to_numpy(), lambda x: metrics.sharpe_ratio(x, ppy), n_resamples=500, seed=seed)
    summary["sharpe_low"], summary["sharpe_high"] = ci.low, ci.high
    return summary


def report_periods_per_year(predictions: pd.DataFrame, periods_per_year: float | None = None) -> float:
    """The report's annualisation: the value given, else the one the producer recorded
    (``predictions.attrs["periods_per_year"]``: the panel calendars' bars per year), never the count
    of scored bars. Only when neither is known is the calendar inferred from the scored timestamps,
    the documented last resort, with a warning (folds that are not adjacent make that guess unreliable)."""
    recorded = periods_per_year or predictions.attrs.get(PERIODS_PER_YEAR)
    if recorded:
        return float(recorded)
    logger.warning("the predictions record no calendar annualisation (attrs[%r]): inferring the trading calendar "
                   "from the scored timestamps; pass periods_per_year (e.g. --periods-per-year)", PERIODS_PER_YEAR)
    return float(infer_periods_per_year(predictions.index.get_level_values("timestamp")))


def build_report(predictions: pd.DataFrame, costs: CostConfig, *, title: str = "Out-of-sample report",
                 periods_per_year: float | None = None, benchmark: pd.Series | None = None,
                 n_trials: int | None = None, seed: int = 0, quantiles: int = DEFAULT_QUANTILES,
                 portfolio: PortfolioConfig | None = None, sectors: Mapping[str, str] | None = None,
                 execution: ExecutionConfig = ExecutionConfig()) -> Report:
    """The report of a predictions frame. `quantiles`: buckets of the cross-sectional section (universes
    only). `portfolio` (a long_short / long_only_topk construction): every scored strategy also gets a
    ``<strategy>@<construction>`` strategy of portfolio weights built from its scores
    (evaluation.portfolio_book), booked as weights; `sectors` (symbol -> assets.sector) feeds sector
    neutrality. The added strategies count as trials. `execution`: every position fills
    `execution_lag` bars after its decision bar (evaluation/execution.py), and `Report.lags` gives each
    strategy's and reference's net Sharpe at every `compare_lags` lag on the same bars."""
    frame = with_defaults(predictions)
    times = frame.index.get_level_values("timestamp")
    ppy = report_periods_per_year(frame, periods_per_year)
    added: list[str] = []
    if portfolio is not None:
        if sectors is None and SECTOR in frame:  # the fold's own sector column (experiments.fold.run_fold)
            sectors = frame[SECTOR].groupby(level="symbol", observed=True).first().astype(str).to_dict()
        frame, added = with_portfolio_strategies(frame, portfolio, sectors=sectors, periods_per_year=ppy)
        n_trials = n_trials + len(added) if n_trials else n_trials
    decisions = frame  # the lag table shifts these; the report is booked at the configured lag
    frame = lagged(frame, execution.execution_lag)
    strategies = strategies_of(frame)
    per_row = symbol_returns(frame, costs)
    returns = _portfolio_of_rows(frame, per_row, costs)
    wide_positions = {s: frame[POSITION + s].unstack("symbol") for s in strategies} if frame["seed"].nunique() == 1 \
        else {s: frame.groupby([times, frame.index.get_level_values("symbol")], observed=True)[POSITION + s].mean().unstack()
              for s in strategies}
    overall = pd.DataFrame({s: _summary(returns[s], wide_positions[s], ppy, benchmark, seed) for s in strategies}).T
    notes = [f"{len(returns):,} out-of-sample bars, {frame['fold'].nunique()} fold(s), "
             f"{frame['seed'].nunique()} seed(s), {frame.index.get_level_values('symbol').nunique()} symbols; "
             f"annualised with {ppy:,.0f} bars/year; costs {costs.transaction_bps + costs.slippage_bps:g} bps per "
             f"unit traded, {costs.holding_bps:g} bps per bar held."
             + (f" Orders fill {execution.execution_lag} bar(s) after the decision bar (backtest.execution_lag)."
                if execution.execution_lag else " Orders fill at the decision bar's close (execution lag 0).")]
    if added:
        notes.append(f"portfolio strategies {', '.join(added)}: the strategies' scores through the portfolio room "
                     f"({' and '.join(portfolio.constructions)}, k={portfolio.k}, gross {portfolio.gross_leverage:g}, rebalanced every "
                     f"{portfolio.rebalance_every} bar(s)), booked as weights (sum over names) net of the same costs.")
        widest = int(frame.groupby(times, observed=True).size().max()) // max(frame["seed"].nunique(), 1)
        if "long_only_topk" in portfolio.constructions and widest <= portfolio.k:
            notes.append(f"the long_only_topk books hold every name (at most {widest} names at a date, k="
                         f"{portfolio.k}): they are the equal-weight universe whatever the score; lower portfolio.k "
                         "for a comparison that means anything.")
    if n_trials and n_trials > 1:
        sharpes = np.array([metrics.sharpe_ratio(returns[s].dropna().to_numpy(), 1.0) for s in strategies])
        variance = float(np.nanvar(sharpes, ddof=1)) if len(sharpes) > 1 else 0.0
        overall["deflated_sharpe"] = [
            metrics.deflated_sharpe_ratio(returns[s].dropna().to_numpy(), n_trials, variance) for s in strategies]
        notes.append(f"deflated Sharpe accounts for {n_trials} configurations tried")
    per_fold = {}
    for fold, part in frame.groupby("fold", sort=True):
        fold_returns = portfolio_returns(part, costs)
        for s in strategies:
            per_fold[(fold, s)] = _summary(fold_returns[s], None, ppy, None, seed)[["sharpe", "total_return",
                                                                                    "max_drawdown", "hit_rate"]]
    per_fold_frame = pd.DataFrame(per_fold).T
    per_fold_frame.index.names = ["fold", "strategy"]
    references = _references(frame, costs, ppy, seed)
    if not references.empty and ORACLE in references.index.get_level_values("reference"):
        oracle = references.xs(ORACLE, level="reference")["sharpe"]
        overall["share_of_oracle"] = overall["sharpe"] / oracle["all"]
        folds = per_fold_frame.index.get_level_values("fold")
        per_fold_frame["share_of_oracle"] = per_fold_frame["sharpe"].to_numpy() / oracle.reindex(folds).to_numpy()
        notes.append(f"oracle (the fixture's best policy given the true expected returns, volatility and these costs; "
                     f"a reference, not a strategy): net Sharpe {oracle['all']:.2f} on exactly these bars; "
                     "share_of_oracle = net Sharpe / the oracle's on the same bars.")
    per_seed = _per_seed(frame, costs, strategies, ppy)
    forecasts, target = _strategy_forecasts(frame)
    cross_section = _cross_section(frame, ppy, quantiles, seed, asked=bool(portfolio and portfolio.constructions))
    if cross_section is not None:
        notes.append(f"a universe: per-date cross-sectional IC is the headline; {quantiles} quantile portfolios of "
                     "each score per date (equal weight, gross of costs), top minus bottom the spread.")
        if "share_of_oracle_ic" in cross_section.ic:
            notes.append(f"{reference_label(ORACLE)}: the fixture's true expected next return scored on the same dates "
                         "(the IC ceiling; not a strategy); share_of_oracle_ic = per-date IC / its per-date IC.")
    return Report(title=title, overall=overall, per_fold=per_fold_frame, per_seed=per_seed,
                  regimes=_regimes(frame, costs, strategies), ic=_ic(frame), returns=returns,
                  periods_per_year=ppy, notes=notes, strategy_ic=_strategy_ic(forecasts, target),
                  paired=_paired(returns, forecasts, target, ppy, seed), ppo_selection=_ppo_selection(frame, costs, ppy),
                  references=references, per_symbol=_per_symbol(per_row, strategies, ppy),
                  lags=_lags(decisions, costs, ppy, execution, returns),
                  cross_section=cross_section)


def _cross_section(frame: pd.DataFrame, ppy: float, quantiles: int, seed: int, asked: bool) -> CrossSection | None:
    """The cross-sectional evaluation of the model's forecast__h1 and every signal__: on a universe, or when
    `asked` (the portfolio books names against each other) on any panel of at least `quantiles` names."""
    n_sectors = int(frame[SECTOR].nunique()) if SECTOR in frame else 0
    n_symbols = frame.index.get_level_values("symbol").nunique()
    if not (is_universe(n_symbols, n_sectors) or (asked and n_symbols >= quantiles)):
        return None
    columns = {s: SIGNAL + s for s in signals_of(frame)}
    if FORECAST + "h1" in frame:
        columns = {MODEL: FORECAST + "h1", **columns}
    if not columns:
        return None
    references = {reference_label(r): REFERENCE_SCORE + r for r in reference_scores_of(frame)}
    columns.update(references)
    wide = frame[[*columns.values(), "next_return"]].set_axis([*columns, "next_return"], axis=1)
    wide = wide.groupby(level=["symbol", "timestamp"], observed=True).mean()  # several seeds: their mean score
    sectors = frame[SECTOR].groupby(level="symbol", observed=True).first() if n_sectors >= 2 else None
    section = evaluate_cross_section(wide[list(columns)], wide["next_return"], ppy, quantiles=quantiles,
                                     sectors=sectors, seed=seed)
    oracle = reference_label(ORACLE)
    if oracle in section.ic.index:  # every score's share of the oracle's per-date IC on the same dates
        section.ic["share_of_oracle_ic"] = section.ic["ic"] / section.ic.loc[oracle, "ic"]
    return section


def reference_label(name: str) -> str:
    """The cross-sectional tables' row of a reference score: marked, so it is never read as a strategy."""
    return f"{name} (reference)"


def _per_symbol(per_row: pd.DataFrame, strategies: list[str], ppy: float) -> pd.DataFrame:
    """symbol x (bars, net Sharpe of each strategy on the symbol's own path): the rows' net returns
    (`symbol_returns`), averaged over seeds per (symbol, bar), annualised like the portfolio's."""
    by_bar = per_row.groupby(level=["symbol", "timestamp"], observed=True).mean()  # (symbol, timestamp) x strategy
    rows = {}
    for symbol, part in by_bar.groupby(level="symbol", observed=True, sort=True):
        rows[str(symbol)] = {"bars": float(len(part)),
                             **{s: float(metrics.sharpe_ratio(part[s].dropna().to_numpy(), ppy)) for s in strategies}}
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis("symbol")


def per_symbol_summary(report: Report, k: int = TOP_K) -> pd.DataFrame:
    """strategy x (symbols, min / median / max net Sharpe over symbols, the k lowest and highest names)."""
    rows = {}
    for strategy in [c for c in report.per_symbol.columns if c != "bars"]:
        summary = summarise(report.per_symbol[strategy], f"net Sharpe ({strategy})", k)
        rows[strategy] = {"symbols": summary.defined, "min": summary.minimum, "median": summary.median,
                          "max": summary.maximum,
                          "lowest": ", ".join(f"{s} {v:.3g}" for s, v in summary.lowest),
                          "highest": ", ".join(f"{s} {v:.3g}" for s, v in summary.highest)}
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis("strategy")


def symbols_file(output: str | Path) -> Path:
    """Where `write_report(report, output)` writes the whole per-symbol table."""
    output = Path(output)
    return output.with_name(f"{output.stem}_symbols.parquet")


def _lags(decisions: pd.DataFrame, costs: CostConfig, ppy: float, execution: ExecutionConfig,
          booked: pd.DataFrame) -> pd.DataFrame:
    """(strategy or reference) x sharpe_lag<L>: net Sharpe of the whole path when every order fills L bars
    after its decision bar (references marked "(reference)"), one `portfolio_returns` per lag (the report's own
    returns at `execution_lag`, `booked`, for the strategies); empty when fewer than two lags are asked."""
    if len(execution.compare_lags) < 2:
        return pd.DataFrame()
    names = references_of(decisions)
    columns = {}
    for lag in execution.compare_lags:
        moved = lagged(decisions, lag)
        as_strategies = moved.rename(columns={REFERENCE + n: POSITION + reference_label(n) for n in names})
        if lag == execution.execution_lag:  # the strategies are already booked at this lag
            as_strategies = as_strategies.drop(columns=[POSITION + s for s in booked.columns])
        returns = portfolio_returns(as_strategies, costs) if strategies_of(as_strategies) else pd.DataFrame()
        if lag == execution.execution_lag:
            returns = booked.join(returns) if not returns.empty else booked
        columns[f"sharpe_lag{lag}"] = {s: metrics.sharpe_ratio(returns[s].dropna().to_numpy(), ppy)
                                       for s in returns.columns}
    return pd.DataFrame(columns).rename_axis("strategy")


def _references(frame: pd.DataFrame, costs: CostConfig, ppy: float, seed: int) -> pd.DataFrame:
    """Net Sharpe (with its interval) and bars of every reference column, overall ("all") and per fold,
    on exactly the rows of `frame`, through the strategies' own accounting (`portfolio_returns`)."""
    names = references_of(frame)
    if not names:
        return pd.DataFrame()
    as_strategies = frame.drop(columns=[c for c in frame.columns if c.startswith(POSITION)]).rename(
        columns={REFERENCE + n: POSITION + n for n in names})
    rows = {}
    parts = [("all", as_strategies), *as_strategies.groupby("fold", sort=True)]
    for fold, part in parts:
        returns = portfolio_returns(part, costs)
        for name in names:
            summary = _summary(returns[name], None, ppy, None, seed)
            rows[(fold, name)] = {"sharpe": summary["sharpe"], "sharpe_low": summary["sharpe_low"],
                                  "sharpe_high": summary["sharpe_high"], "bars": float(returns[name].notna().sum())}
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index = pd.MultiIndex.from_tuples(table.index, names=["fold", "reference"])
    return table


def _per_seed(frame: pd.DataFrame, costs: CostConfig, strategies: list[str], ppy: float) -> pd.DataFrame:
    rows = {}
    for seed, part in frame.groupby("seed"):
        r = portfolio_returns(part, costs)
        rows[seed] = {s: metrics.sharpe_ratio(r[s].dropna(), ppy) for s in strategies}
    table = pd.DataFrame(rows)  # strategy x seed
    return pd.DataFrame({"sharpe_mean": table.mean(axis=1), "sharpe_std": table.std(axis=1, ddof=1),
                         "seeds": table.shape[1]})


def _ppo_selection(frame: pd.DataFrame, costs: CostConfig, ppy: float) -> pd.DataFrame:
    """Per (fold, seed) and overall: was PPO kept (rl/select.py, validation only), and on test the net
    Sharpe of the selected policy, the head and PPO's own positions, and the mean net PnL per bar
    (bps) that keeping (selected - head) and always keeping (PPO - head) gained."""
    if RAW + "ppo" not in frame or PPO_KEPT not in frame or POSITION + "model" not in frame:
        return pd.DataFrame()
    legs = frame[["next_return", "fold", "seed"]].assign(**{
        POSITION + "selected": frame[POSITION + "ppo"], POSITION + "head": frame[POSITION + "model"],
        POSITION + "ppo": frame[RAW + "ppo"]})

    def row(part: pd.DataFrame) -> dict[str, float]:
        r = portfolio_returns(part, costs)
        gains = {f"test_{s}_sharpe": float(metrics.sharpe_ratio(r[s].dropna(), ppy)) for s in ("selected", "head", "ppo")}
        return {"kept": float(part[PPO_KEPT].mean()),
                **gains, "keeping_gain_bps": float((r["selected"] - r["head"]).mean() * 1e4),
                "always_ppo_gain_bps": float((r["ppo"] - r["head"]).mean() * 1e4)}

    legs[PPO_KEPT] = frame[PPO_KEPT]
    rows = {(str(fold), str(seed)): row(part) for (fold, seed), part in legs.groupby(["fold", "seed"], sort=True)}
    rows[("all", "all")] = row(legs)
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index.names = ["fold", "seed"]
    return table


def _regimes(frame: pd.DataFrame, costs: CostConfig, strategies: list[str]) -> pd.DataFrame:
    columns = [c for c in frame.columns if c.startswith(REGIME)]
    if not columns:
        return pd.DataFrame()
    per_row = symbol_returns(frame, costs)
    pieces = []
    for column in columns:
        labels = frame[column].astype("string").fillna("unlabelled")
        grouped = per_row.groupby(labels.to_numpy())
        table = grouped.mean().stack().rename("mean_return").to_frame()
        table["bars"] = grouped.size().reindex(table.index.get_level_values(0)).to_numpy()
        table.index.names = ["value", "strategy"]
        pieces.append(table.assign(regime=column[len(REGIME):]).reset_index())
    return pd.concat(pieces, ignore_index=True)[["regime", "value", "strategy", "mean_return", "bars"]]


def _ic(frame: pd.DataFrame) -> pd.DataFrame:
    horizons = [c[len(FORECAST):] for c in frame.columns if c.startswith(FORECAST) and TARGET + c[len(FORECAST):] in frame]
    if not horizons:
        return pd.DataFrame()
    forecasts = frame[[FORECAST + h for h in horizons]].set_axis(horizons, axis=1)
    targets = frame[[TARGET + h for h in horizons]].set_axis(horizons, axis=1)
    if frame["seed"].nunique() > 1:  # average the seed models' forecasts per bar
        forecasts = forecasts.groupby(level=["symbol", "timestamp"], observed=True).mean()
        targets = targets.groupby(level=["symbol", "timestamp"], observed=True).mean()
    return metrics.ic_by_horizon(forecasts, targets, min_assets=2)


def _strategy_forecasts(frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.Series | None]:
    """(symbol, timestamp) x strategy forecasts (the model's forecast__h1, every signal__<strategy>) and target__h1."""
    columns = {s: SIGNAL + s for s in signals_of(frame)}
    if FORECAST + "h1" in frame:
        columns = {MODEL: FORECAST + "h1", **columns}
    if not columns or TARGET + "h1" not in frame:
        return pd.DataFrame(), None
    wide = frame[[*columns.values(), TARGET + "h1"]].set_axis([*columns, TARGET + "h1"], axis=1)
    wide = wide.groupby(level=["symbol", "timestamp"], observed=True).mean()  # several seeds: their mean forecast
    return wide[list(columns)], wide[TARGET + "h1"]


def _strategy_ic(forecasts: pd.DataFrame, target: pd.Series | None) -> pd.DataFrame:
    if target is None:
        return pd.DataFrame()
    targets = pd.DataFrame({s: target for s in forecasts.columns})
    return metrics.ic_by_horizon(forecasts, targets, min_assets=2).rename_axis("strategy")


def _paired_ci(n: int, statistic, seed: int) -> metrics.ConfidenceInterval:
    """Block-bootstrap interval of a statistic of bar indices 0..n-1: whatever `statistic` compares
    (two strategies' returns, or their forecasts) is read on the same resampled blocks of bars."""
    positions = np.arange(n, dtype=np.float64)
    return metrics.block_bootstrap_ci(positions, lambda idx: statistic(idx.astype(np.intp)),
                                      n_resamples=BOOTSTRAP_RESAMPLES, seed=seed)


def _pooled_ic_moments(forecast: pd.Series, target: pd.Series, times: pd.Index) -> np.ndarray:
    """(6, T) per-timestamp sums n, x, y, xx, yy, xy over symbols: pooled IC of any resample of timestamps."""
    x, y = forecast.to_numpy(np.float64), target.to_numpy(np.float64)
    parts = pd.DataFrame({"n": 1.0, "x": x, "y": y, "xx": x * x, "yy": y * y, "xy": x * y}, index=forecast.index)
    sums = parts.groupby(level="timestamp").sum().reindex(times, fill_value=0.0)
    return sums.to_numpy().T


def _pooled_ic_of(moments: np.ndarray, idx: np.ndarray) -> np.ndarray:
    n, x, y, xx, yy, xy = (m[idx].sum(axis=0) for m in moments)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (n * xy - x * y) / np.sqrt((n * xx - x * x) * (n * yy - y * y))


def _paired(returns: pd.DataFrame, forecasts: pd.DataFrame, target: pd.Series | None, ppy: float,
            seed: int) -> pd.DataFrame:
    """Model minus each other strategy on the same bars: net Sharpe and pooled IC, 95% paired intervals.
    A portfolio book ``<strategy>@<construction>`` is compared with the model's book of the same
    construction (model@long_short minus xs_lightgbm@long_short), like with like."""
    if MODEL not in returns:
        return pd.DataFrame()
    rows = {}
    for other in [s for s in returns.columns if s != MODEL]:
        mine = _same_book(other, returns.columns)
        both = returns[[mine, other]].dropna()
        row = {"model_side": mine, "bars": float(len(both))}
        if len(both) >= 3:
            a, b = both[mine].to_numpy(), both[other].to_numpy()

            def sharpe(x):  # a path without variance (a flat strategy: zero PnL) counts as Sharpe 0 here
                return np.nan_to_num(metrics.sharpe_ratio(x, ppy))

            ci = _paired_ci(len(both), lambda i: sharpe(a[i]) - sharpe(b[i]), seed)
            row.update(sharpe_diff=ci.estimate, sharpe_diff_low=ci.low, sharpe_diff_high=ci.high)
        if target is not None and MODEL in forecasts and other in forecasts:
            rows_ok = forecasts[[MODEL, other]].notna().all(axis=1) & target.notna()
            f, y = forecasts[rows_ok], target[rows_ok]
            times = pd.Index(f.index.get_level_values("timestamp").unique()).sort_values()
            if len(times) >= 3:
                mine, theirs = _pooled_ic_moments(f[MODEL], y, times), _pooled_ic_moments(f[other], y, times)
                ci = _paired_ci(len(times), lambda i: _pooled_ic_of(mine, i) - _pooled_ic_of(theirs, i), seed)
                row.update(pooled_ic_diff=ci.estimate, pooled_ic_diff_low=ci.low, pooled_ic_diff_high=ci.high)
        rows[other] = row
    columns = ["model_side", "sharpe_diff", "sharpe_diff_low", "sharpe_diff_high", "pooled_ic_diff",
               "pooled_ic_diff_low", "pooled_ic_diff_high", "bars"]
    return pd.DataFrame.from_dict(rows, orient="index").reindex(columns=columns).rename_axis("versus")


def _same_book(other: str, strategies: pd.Index) -> str:
    """The model's strategy that `other` is compared with: model@<construction> for another book of that
    construction, the model's sleeves otherwise (and for model@<construction> itself)."""
    if not is_weights(other):
        return MODEL
    book = weights_strategy(MODEL, other.split(WEIGHTS_MARK, 1)[1])
    return book if book != other and book in strategies else MODEL


# --------------------------------------------------------------------------------------------
# figures and documents
# --------------------------------------------------------------------------------------------
def figures(report: Report) -> dict[str, bytes]:
    """PNG bytes: equity, drawdown, IC by horizon (when forecasts are present)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = {}
    equity = (1.0 + report.returns.fillna(0.0)).cumprod()
    drawdown = equity / equity.cummax() - 1.0
    for name, data, label in (("equity", equity, "growth of 1 (net of costs)"), ("drawdown", drawdown, "drawdown")):
        fig, ax = plt.subplots(figsize=(9, 4), dpi=100)
        data.plot(ax=ax, linewidth=1.0)
        ax.set_ylabel(label)
        ax.set_xlabel("")
        ax.grid(alpha=0.3)
        ax.legend(loc="best", fontsize=8)
        out[name] = _png(fig)
        plt.close(fig)
    if not report.ic.empty:
        fig, ax = plt.subplots(figsize=(6, 3.5), dpi=100)
        report.ic[["ic", "pooled_ic"]].plot.bar(ax=ax)
        ax.axhline(0, color="black", linewidth=0.8)
        ax.set_ylabel("information coefficient")
        ax.set_title("IC decay by horizon")
        out["ic_by_horizon"] = _png(fig)
        plt.close(fig)
    if report.cross_section is not None and not report.cross_section.buckets.empty:
        cs = report.cross_section
        fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4), dpi=100)
        (cs.buckets[[f"q{k + 1}" for k in range(cs.quantiles)]].T * 1e4).plot.bar(ax=left, width=0.8)
        left.axhline(0, color="black", linewidth=0.8)
        left.set_ylabel("mean next-bar return (bps)")
        left.set_title("quantile portfolios (q1 lowest score)")
        left.legend(fontsize=7)
        cs.spread.fillna(0.0).cumsum().plot(ax=right, linewidth=1.0)
        right.set_ylabel("cumulative top-minus-bottom return")
        right.set_xlabel("")
        right.grid(alpha=0.3)
        right.legend(fontsize=7)
        out["quantile_spread"] = _png(fig)
        plt.close(fig)
    return out


def _png(fig) -> bytes:
    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


def _fmt(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.map(lambda v: "" if isinstance(v, float) and math.isnan(v) else (f"{v:.4g}" if isinstance(v, float) else v))


def _sections(report: Report, symbols_name: str | None = None) -> list[tuple[str, pd.DataFrame]]:
    overall = report.overall[[c for c in [*HEADLINE, "deflated_sharpe"] if c in report.overall]]
    cs = report.cross_section
    sections = [] if cs is None else [
        ("Per-date cross-sectional IC (universe headline: mean over dates of the correlation across names of each "
         "score with the next-bar return; ICIR per date; 95% block-bootstrap intervals)", cs.ic)]
    sections += [("Overall (concatenated out-of-sample path; Sharpe with a 95% block-bootstrap interval)", overall),
                 ("Per fold", report.per_fold)]
    if report.per_seed["seeds"].max() > 1:
        sections.append(("Across seeds (Sharpe of each seed's path)", report.per_seed))
    if not report.ic.empty:
        sections.append(("Signal quality by horizon", report.ic))
    if not report.strategy_ic.empty:
        sections.append(("Signal quality by strategy (forecast against the next-bar log return)", report.strategy_ic))
    if cs is not None:
        sections.append((f"Quantile portfolios per date ({cs.quantiles} buckets by score, equal weight, mean next-bar "
                         "return, gross); spread = top minus bottom, its annualised Sharpe and 95% intervals; "
                         "turnover = share of the top / bottom bucket replaced per date", cs.buckets))
        if not cs.sectors.empty:
            sections.append(("Per sector: per-date IC within the sector (<strategy>:ic) and its mean contribution to "
                             "the spread (<strategy>:spread; the sectors' sum is the spread)", cs.sectors))
    if not report.references.empty:
        sections.append(("References on the same bars (not strategies: out of every ranking and comparison)",
                         report.references))
    if not report.lags.empty:
        sections.append(("Execution lag: net Sharpe when every order fills L bars after its decision bar (lag 0: "
                         "at the decision bar's close; costs on the lagged positions' own changes)", report.lags))
    if not report.paired.empty:
        sections.append(("Model minus each strategy on the same bars (95% paired block-bootstrap intervals; a "
                         "portfolio book against the model's book of the same construction, model_side)",
                         report.paired))
    if not report.ppo_selection.empty:
        sections.append(("PPO selection: kept (share) on validation only; test net Sharpe and the mean net PnL per "
                         "bar (bps) keeping gained over the head, and always keeping PPO would have", report.ppo_selection))
    if not report.regimes.empty:
        sections.append(("Per regime (mean net return per bar)",
                         report.regimes.pivot_table(index=["regime", "value"], columns="strategy", values="mean_return")))
    if not report.per_symbol.empty and many_symbols(len(report.per_symbol)):
        where = f"the full table: {symbols_name}" if symbols_name else "the full table: Report.per_symbol"
        sections.append((f"Per symbol, summarised over {len(report.per_symbol):,} symbols: net Sharpe on each symbol's "
                         f"own path, min / median / max and the {TOP_K} lowest and highest names ({where})",
                         per_symbol_summary(report)))
    return sections


def to_markdown(report: Report, figure_files: Mapping[str, str], symbols_name: str | None = None) -> str:
    """The report as Markdown; `symbols_name`: the per-symbol file a summarised section names."""
    lines = [f"# {report.title}", "", *[f"_{n}_" for n in report.notes], ""]
    for heading, table in _sections(report, symbols_name):
        lines += [f"## {heading}", "", _fmt(table).to_markdown(), ""]
    for name, path in figure_files.items():
        lines += [f"![{name}]({path})", ""]
    return "\n".join(lines)


def to_html(report: Report, pngs: Mapping[str, bytes], symbols_name: str | None = None) -> str:
    style = ("body{font-family:system-ui,sans-serif;margin:2em;max-width:1100px}table{border-collapse:collapse;"
             "font-size:13px;margin-bottom:1.5em}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}"
             "th{background:#f3f3f3}img{max-width:100%}")
    body = [f"<h1>{report.title}</h1>", *[f"<p><em>{n}</em></p>" for n in report.notes]]
    for heading, table in _sections(report, symbols_name):
        body += [f"<h2>{heading}</h2>", _fmt(table).to_html(border=0)]
    for name, data in pngs.items():
        body.append(f'<h2>{name.replace("_", " ")}</h2><img alt="{name}" src="data:image/png;base64,'
                    f'{base64.b64encode(data).decode()}">')
    return f"<!doctype html><html><head><meta charset='utf-8'><title>{report.title}</title><style>{style}</style>" \
           f"</head><body>{''.join(body)}</body></html>"


def write_report(report: Report, output: str | Path) -> list[Path]:
    """Write `output` (.html with embedded figures, or .md with PNGs beside it), a metrics parquet and
    the whole per-symbol table (`symbols_file(output)`)."""
    output = Path(output)
    pngs = figures(report)
    written = []
    symbols_name = symbols_file(output).name
    if output.suffix.lower() in (".html", ".htm"):
        written.append(write_text_atomic(output, to_html(report, pngs, symbols_name)))
    elif output.suffix.lower() == ".md":
        files = {}
        for name, data in pngs.items():
            target = output.with_name(f"{output.stem}_{name}.png")
            with atomic_path(target) as tmp:
                tmp.write_bytes(data)
            files[name] = target.name
            written.append(target)
        written.append(write_text_atomic(output, to_markdown(report, files, symbols_name)))
    else:
        raise PlusUltraError(f"report output {output} must end in .html or .md")
    table_path = output.with_name(f"{output.stem}_metrics.parquet")
    with atomic_path(table_path) as tmp:
        report.metrics_table().to_parquet(tmp)
    written.append(table_path)
    if not report.per_symbol.empty:
        written.append(write_symbol_table(report.per_symbol, symbols_file(output)))
    return written
