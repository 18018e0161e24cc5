"""The report's portfolio strategies: scores -> the portfolio room -> weights booked by the one PnL road."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from plus_ultra_ml.config import CostConfig, PortfolioConfig
from plus_ultra_ml.evaluation import metrics
from plus_ultra_ml.evaluation.backtest import portfolio_pnl
from plus_ultra_ml.evaluation.portfolio_book import is_weights, weights_strategy, with_portfolio_strategies
from plus_ultra_ml.evaluation.predictions import with_defaults
from plus_ultra_ml.evaluation.report import build_report
from plus_ultra_ml.portfolio import portfolio_weights

COSTS = CostConfig(transaction_bps=1.0, slippage_bps=0.5, holding_bps=0.5)
LONG_SHORT = PortfolioConfig(construction="long_short", weighting="topk", k=2, max_weight=0.5)
SYMBOLS = tuple(f"S{i}" for i in range(8))
SECTORS = {s: ("a", "b")[i % 2] for i, s in enumerate(SYMBOLS)}


def predictions(n=240, seeds=(0,), seed=1) -> pd.DataFrame:
    """8 names, two folds; the model's forecast__h1 knows a quarter of the next return's cross-section."""
    rng = np.random.default_rng(seed)
    times = pd.date_range("2024-01-01", periods=n, freq="1D", tz="UTC")
    r = rng.normal(0, 0.01, size=(n, len(SYMBOLS)))
    frames = []
    for model_seed in seeds:
        forecast = r + rng.normal(0, 0.02, size=r.shape)
        for j, s in enumerate(SYMBOLS):
            first = 20 * (j == 3)  # S3 lists late: rows start at bar 20
            index = pd.MultiIndex.from_arrays([pd.Categorical([s] * (n - first), categories=list(SYMBOLS)),
                                               times[first:]], names=["symbol", "timestamp"])
            frames.append(pd.DataFrame({
                "fold": np.where(np.arange(first, n) < n // 2, "fold_a", "fold_b"), "seed": model_seed,
                "next_return": r[first:, j], "position__model": np.clip(forecast[first:, j] * 50, -1, 1),
                "position__flat": 0.0, "forecast__h1": forecast[first:, j], "target__h1": np.log1p(r[first:, j]),
            }, index=index))
    out = pd.concat(frames).sort_index()
    out.attrs["periods_per_year"] = 252.0
    return out


def test_per_symbol_default_adds_nothing_and_leaves_the_report_unchanged():
    pred = predictions()
    plain = build_report(pred, COSTS)
    same = build_report(pred, COSTS, portfolio=PortfolioConfig())
    pd.testing.assert_frame_equal(plain.returns, same.returns)
    assert not any(is_weights(s) for s in same.overall.index)


def test_long_short_strategy_is_the_weights_book_of_each_folds_scores():
    pred = predictions()
    report = build_report(pred, COSTS, portfolio=LONG_SHORT, n_trials=2)
    name = weights_strategy("model", "long_short")
    assert name in report.overall.index and name in report.paired.index
    expected = []
    for _, part in with_defaults(pred).groupby("fold"):
        w = portfolio_weights(part["forecast__h1"], LONG_SHORT)  # each fold's book enters flat
        wide = w.unstack("symbol")
        np.testing.assert_allclose(wide.fillna(0).sum(axis=1), 0.0, atol=1e-12)  # dollar neutral
        np.testing.assert_allclose(wide.fillna(0).abs().sum(axis=1), 1.0, atol=1e-12)  # gross leverage 1
        expected.append(portfolio_pnl(w, part["next_return"], COSTS, book="weights"))
    expected = pd.concat(expected).sort_index()
    np.testing.assert_allclose(report.returns[name].to_numpy(), expected.to_numpy(), atol=1e-15)
    # the sleeves are untouched by the portfolio strategies beside them
    pd.testing.assert_series_equal(report.returns["model"], build_report(pred, COSTS).returns["model"])
    assert report.overall.loc[name, "sharpe"] > 1  # the forecast ranks names: the long-short book earns
    assert any("portfolio strategies model@long_short" in n for n in report.notes)


def test_seeds_each_book_their_own_weights_and_average_returns():
    pred = predictions(seeds=(0, 1))
    report = build_report(pred, COSTS, portfolio=LONG_SHORT)
    name = weights_strategy("model", "long_short")
    frame = with_defaults(pred)
    per_seed = []
    for seed, part in frame.groupby("seed"):
        per_seed.append(build_report(part.drop(columns="seed"), COSTS, portfolio=LONG_SHORT).returns[name])
    np.testing.assert_allclose(report.returns[name].to_numpy(), (per_seed[0] + per_seed[1]).to_numpy() / 2,
                               atol=1e-15)


def test_sector_neutral_weights_sum_to_zero_per_sector():
    cfg = LONG_SHORT.model_copy(update={"sector_neutral": True, "weighting": "rank"})
    frame, added = with_portfolio_strategies(with_defaults(predictions()), cfg, sectors=SECTORS, periods_per_year=252)
    assert added == ["model@long_short"]
    w = frame["position__model@long_short"]
    sector = w.index.get_level_values("symbol").map(SECTORS)
    per_sector = w.groupby([w.index.get_level_values("timestamp"), sector]).sum()
    np.testing.assert_allclose(per_sector.to_numpy(), 0.0, atol=1e-12)
    assert w.abs().max() <= cfg.max_weight + 1e-12


def test_compare_books_long_short_and_long_only_side_by_side():
    cfg = PortfolioConfig(construction="long_short", weighting="topk", k=2, max_weight=0.5, sector_neutral=True,
                          compare=["long_only_topk"])
    pred = predictions()
    report = build_report(pred, COSTS, portfolio=cfg, sectors=SECTORS)
    long_short, long_only = weights_strategy("model", "long_short"), weights_strategy("model", "long_only_topk")
    assert {long_short, long_only} <= set(report.overall.index)
    alone = build_report(pred, COSTS, portfolio=cfg.model_copy(update={"compare": []}), sectors=SECTORS)
    np.testing.assert_allclose(report.returns[long_short], alone.returns[long_short], atol=1e-15)  # unchanged
    frame, _ = with_portfolio_strategies(with_defaults(pred), cfg, sectors=SECTORS, periods_per_year=252)
    w = frame["position__model@long_only_topk"].unstack("symbol").fillna(0)
    np.testing.assert_allclose(w.sum(axis=1), 1.0, atol=1e-12)  # fully invested, not sector neutral
    assert (w >= 0).all().all() and ((w > 0).sum(axis=1) == 2).all()  # k = 2 names held
    expected = []
    for _, part in with_defaults(pred).groupby("fold"):
        weights = portfolio_weights(part["forecast__h1"], cfg.variant("long_only_topk"))
        expected.append(portfolio_pnl(weights, part["next_return"], COSTS, book="weights"))
    np.testing.assert_allclose(report.returns[long_only].to_numpy(), pd.concat(expected).sort_index().to_numpy(),
                               atol=1e-15)
    assert any("long_short and long_only_topk" in n for n in report.notes)


def test_compare_alone_keeps_the_sleeves_and_adds_the_portfolio_books():
    cfg = PortfolioConfig(k=2, max_weight=0.5, compare=["long_short", "long_only_topk", "long_short"])
    assert cfg.constructions == ["long_short", "long_only_topk"]  # per_symbol sleeves stay the main book
    _, added = with_portfolio_strategies(with_defaults(predictions()), cfg, sectors=None, periods_per_year=252)
    assert added == ["model@long_short", "model@long_only_topk"]


def test_compare_is_validated_like_the_construction():
    with pytest.raises(ValidationError, match="cannot be fully invested"):
        PortfolioConfig(construction="long_short", k=2, max_weight=0.1, compare=["long_only_topk"])
    with pytest.raises(ValidationError, match="sector_neutral needs a long_short"):
        PortfolioConfig(construction="long_only_topk", k=20, sector_neutral=True)
    with pytest.raises(ValidationError):
        PortfolioConfig(compare=["per_symbol"])


def test_paired_compares_a_book_with_the_models_book_of_the_same_construction():
    pred = predictions().assign(signal__rival=lambda f: f["forecast__h1"].sample(frac=1, random_state=0).to_numpy())
    pred["position__rival"] = 0.0
    cfg = PortfolioConfig(construction="long_short", weighting="topk", k=2, max_weight=0.5, compare=["long_only_topk"])
    report = build_report(pred, COSTS, portfolio=cfg)
    paired = report.paired
    assert paired.loc["rival@long_short", "model_side"] == "model@long_short"
    assert paired.loc["rival@long_only_topk", "model_side"] == "model@long_only_topk"
    assert paired.loc["model@long_short", "model_side"] == "model"  # a book against the model's own sleeves
    assert paired.loc["rival", "model_side"] == "model"
    both = report.returns[["model@long_short", "rival@long_short"]].dropna()
    sharpe = lambda x: metrics.sharpe_ratio(x.to_numpy(), 252.0)  # noqa: E731
    assert paired.loc["rival@long_short", "sharpe_diff"] == pytest.approx(
        sharpe(both["model@long_short"]) - sharpe(both["rival@long_short"]), rel=1e-9)
    assert paired.loc["rival@long_short", "sharpe_diff_low"] > 0  # the real forecast beats the shuffled one
    assert "model_side" not in set(report.metrics_table()["metric"])


def test_a_long_only_book_that_holds_every_name_says_so():
    pred = predictions()  # 8 names
    wide = PortfolioConfig(construction="long_only_topk", k=8, max_weight=0.5)
    assert any("hold every name" in n for n in build_report(pred, COSTS, portfolio=wide).notes)
    narrow = PortfolioConfig(construction="long_only_topk", k=2, max_weight=0.5)
    assert not any("hold every name" in n for n in build_report(pred, COSTS, portfolio=narrow).notes)
