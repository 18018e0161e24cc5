"""Reports: returns from the canonical PnL, tables per fold / seed / regime, IC, and the written files."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

from plus_ultra_ml.config import CostConfig
from plus_ultra_ml.evaluation.backtest import run_backtest
from plus_ultra_ml.evaluation.report import (build_report, per_symbol_summary, portfolio_returns, to_markdown,
                                            write_report)

COSTS = CostConfig(transaction_bps=1.0, slippage_bps=0.5, holding_bps=0.0)


def predictions(n=400, symbols=("AAA", "BBB", "CCC"), seeds=(0,), seed=0):
    rng = np.random.default_rng(seed)
    times = pd.date_range("2024-01-01", periods=n, freq="1h", tz="UTC")
    frames = []
    for s in symbols:
        r = rng.normal(0, 0.01, n)
        for model_seed in seeds:
            noise = rng.normal(0, 0.01, n)
            index = pd.MultiIndex.from_arrays([pd.Categorical([s] * n, categories=list(symbols)), times],
                                              names=["symbol", "timestamp"])
            frames.append(pd.DataFrame({
                "fold": np.where(np.arange(n) < n // 2, "fold_a", "fold_b"), "seed": model_seed,
                "next_return": r,
                "position__oracle": np.sign(r), "position__flat": 0.0, "position__buy_and_hold": 1.0,
                "position__noisy": np.clip((r + noise) * 50, -1, 1),
                "forecast__h1": r + noise, "target__h1": np.log1p(r),
                "regime__volatility": np.where(np.arange(n) % 2 == 0, "low", "high"),
            }, index=index))
    return pd.concat(frames).sort_index()


def test_oracle_wins_flat_is_zero():
    report = build_report(predictions(), COSTS)
    assert report.overall.loc["oracle", "sharpe"] > 10
    assert report.overall.loc["flat", "total_return"] == 0
    assert report.overall.loc["oracle", "sharpe_low"] < report.overall.loc["oracle", "sharpe"] < \
        report.overall.loc["oracle", "sharpe_high"]
    assert set(report.per_fold.index.get_level_values("fold")) == {"fold_a", "fold_b"}
    assert report.ic.loc["h1", "pooled_ic"] > 0.5


def test_returns_match_the_backtester_on_one_fold():
    pred = predictions()
    one = pred[pred["fold"] == "fold_a"].drop(columns="fold")
    ours = portfolio_returns(one, COSTS)["noisy"].dropna()
    times = one.index.get_level_values("timestamp").unique()
    # close prices that reproduce next_return, with one extra bar so the last position earns
    wide_r = one["next_return"].unstack("symbol")
    close = pd.concat([pd.DataFrame(1.0, index=[times[0]], columns=wide_r.columns),
                       (1 + wide_r).cumprod().set_axis(times + pd.Timedelta("1h"))])
    result = run_backtest(one["position__noisy"].unstack("symbol"), close, COSTS)
    np.testing.assert_allclose(result.portfolio_returns.to_numpy(), ours.to_numpy(), rtol=1e-9, atol=1e-12)


def test_seeds_and_regimes():
    report = build_report(predictions(seeds=(0, 1, 2)), COSTS)
    assert report.per_seed.loc["noisy", "seeds"] == 3 and report.per_seed.loc["noisy", "sharpe_std"] > 0
    regimes = report.regimes[report.regimes["strategy"] == "oracle"]
    assert set(regimes["value"]) == {"low", "high"} and (regimes["mean_return"] > 0).all()


@pytest.mark.parametrize("suffix", [".html", ".md"])
def test_written_documents(tmp_path, suffix):
    report = build_report(predictions(), COSTS, n_trials=4)
    files = write_report(report, tmp_path / f"report{suffix}")
    assert all(f.exists() and f.stat().st_size > 0 for f in files)
    text = (tmp_path / f"report{suffix}").read_text()
    assert "Overall" in text and "oracle" in text
    if suffix == ".html":
        assert "data:image/png;base64," in text
    else:
        assert (tmp_path / "report_equity.png").exists()
    table = pd.read_parquet(tmp_path / "report_metrics.parquet")
    assert {"scope", "fold", "strategy", "metric", "value"} == set(table.columns)
    assert "deflated_sharpe" in set(table["metric"])


# --------------------------------------------------------------------------------------------
# every forecaster's IC, and the model against each strategy on the same bars
# --------------------------------------------------------------------------------------------
def with_forecasters(seeds=(0,)):
    pred = predictions(seeds=seeds)
    rng = np.random.default_rng(5)
    pred["position__model"] = np.clip(pred["forecast__h1"] * 50, -1, 1)
    pred["position__copy"] = pred["position__model"]
    pred["signal__copy"] = pred["forecast__h1"] * 3 + 1  # another scale and offset: the same IC
    pred["signal__noisy"] = pred["forecast__h1"] + rng.normal(0, 0.05, len(pred))
    return pred


def test_every_forecaster_gets_ic_rank_ic_and_icir():
    report = build_report(with_forecasters(), COSTS)
    table = report.strategy_ic
    assert list(table.index) == ["model", "copy", "noisy"]  # strategies without a forecast have no row
    assert {"ic", "rank_ic", "icir", "rank_icir", "pooled_ic"} <= set(table.columns)
    assert table.loc["copy", "ic"] == pytest.approx(table.loc["model", "ic"])  # IC is scale and offset free
    assert table.loc["model", "ic"] > table.loc["noisy", "ic"] > 0
    assert report.ic.loc["h1", "ic"] == pytest.approx(table.loc["model", "ic"])  # the model's row is the h1 IC
    scopes = report.metrics_table().query("scope == 'strategy_ic' and metric == 'ic'")
    assert set(scopes["strategy"]) == {"model", "copy", "noisy"}


def test_paired_differences_resample_the_same_bars_for_both_strategies():
    report = build_report(with_forecasters(), COSTS)
    paired = report.paired
    assert set(paired.index) == {"oracle", "flat", "buy_and_hold", "noisy", "copy"}
    # a strategy identical to the model: every paired resample differs by exactly zero (unpaired would not)
    assert paired.loc["copy", ["sharpe_diff", "sharpe_diff_low", "sharpe_diff_high"]].tolist() == [0, 0, 0]
    assert paired.loc["copy", ["pooled_ic_diff_low", "pooled_ic_diff_high"]].abs().max() < 1e-12
    noisy = paired.loc["noisy"]
    assert 0 < noisy["pooled_ic_diff_low"] < noisy["pooled_ic_diff"] < noisy["pooled_ic_diff_high"]
    oracle = paired.loc["oracle"]
    assert oracle["sharpe_diff_low"] < oracle["sharpe_diff"] < oracle["sharpe_diff_high"] < 0
    assert np.isnan(oracle["pooled_ic_diff"])  # no forecast behind the oracle: no IC difference
    overall = report.overall["sharpe"]
    assert paired.loc["buy_and_hold", "sharpe_diff"] == pytest.approx(overall["model"] - overall["buy_and_hold"])
    assert paired.loc["flat", "sharpe_diff"] == pytest.approx(overall["model"])  # flat: Sharpe 0 by convention
    assert (paired["bars"] == 400).all()
    markdown = to_markdown(report, {})
    assert "Model minus each strategy" in markdown and "Signal quality by strategy" in markdown


def test_paired_and_strategy_ic_with_several_seeds():
    report = build_report(with_forecasters(seeds=(0, 1)), COSTS)
    assert report.strategy_ic.loc["model", "n_timestamps"] == 400  # one row per bar: the seeds' mean forecast
    assert np.isfinite(report.paired.loc["noisy", "pooled_ic_diff"])


def test_ppo_selection_section_keep_rate_and_test_gain():
    """fold_a kept PPO (selected = PPO's positions), fold_b dropped it (selected = the head's)."""
    frame = predictions()
    rng = np.random.default_rng(5)
    frame["position__model"] = np.clip(frame["next_return"] * 30 + rng.normal(0, 0.3, len(frame)), -1, 1)
    raw = frame["position__oracle"].to_numpy()  # PPO's own positions: better than the head on test
    kept = (frame["fold"] == "fold_a").to_numpy()
    frame["position__ppo"] = np.where(kept, raw, frame["position__model"])
    frame["raw__ppo"], frame["ppo_kept"] = raw, kept.astype(float)
    report = build_report(frame, COSTS)
    table = report.ppo_selection
    assert table.loc[("fold_a", "0"), "kept"] == 1.0 and table.loc[("fold_b", "0"), "kept"] == 0.0
    assert table.loc[("all", "all"), "kept"] == 0.5
    assert table.loc[("fold_b", "0"), "keeping_gain_bps"] == 0.0  # dropped: selected is the head
    assert table.loc[("fold_a", "0"), "keeping_gain_bps"] > 0  # kept a better policy
    assert table.loc[("fold_b", "0"), "always_ppo_gain_bps"] > 0  # dropping it cost this much on test
    assert "ppo" in report.overall.index and not {"raw__ppo", "selected", "head"} & set(report.overall.index)
    assert "PPO selection" in to_markdown(report, {}) and "np.int64" not in to_markdown(report, {})


# --------------------------------------------------------------------------------------------
# per symbol: whole in a file, summarised in the documents when there are many symbols
# --------------------------------------------------------------------------------------------
def test_per_symbol_sharpe_of_a_single_symbol_is_the_portfolio_sharpe():
    report = build_report(predictions(symbols=("AAA",)), COSTS)
    for strategy in ("oracle", "noisy", "buy_and_hold"):
        assert report.per_symbol.loc["AAA", strategy] == pytest.approx(report.overall.loc[strategy, "sharpe"])
    assert report.per_symbol.loc["AAA", "bars"] == 400


def test_a_small_universe_report_has_no_per_symbol_section(tmp_path):
    report = build_report(predictions(), COSTS)
    files = write_report(report, tmp_path / "report.md")
    assert "Per symbol" not in (tmp_path / "report.md").read_text()
    table = pd.read_parquet(tmp_path / "report_symbols.parquet")  # written whole all the same
    assert tmp_path / "report_symbols.parquet" in files and list(table["symbol"]) == ["AAA", "BBB", "CCC"]


@pytest.mark.parametrize("suffix", [".md", ".html"])
def test_three_hundred_symbols_are_summarised_and_the_full_table_named(tmp_path, suffix):
    names = tuple(f"S{i:03d}" for i in range(300))
    pred = predictions(n=60, symbols=names)
    # one symbol the noisy strategy trades perfectly, one it trades exactly wrong: the two ends of its ranking
    best, worst = pred.index.get_level_values("symbol") == "S123", pred.index.get_level_values("symbol") == "S042"
    pred.loc[best, "position__noisy"] = np.sign(pred.loc[best, "next_return"])
    pred.loc[worst, "position__noisy"] = -np.sign(pred.loc[worst, "next_return"])
    report = build_report(pred, COSTS)
    write_report(report, tmp_path / f"report{suffix}")
    text = (tmp_path / f"report{suffix}").read_text()
    if suffix == ".md":
        assert len(text.splitlines()) < 120  # a section per table, none with a row per symbol
    words = re.sub(r'src="data:image/png;base64,[^"]*"', "", text)  # embedded figures are not text
    assert words.count("S1") < 40  # symbol names appear only among the lowest / highest k
    assert "report_symbols.parquet" in text and "summarised over 300 symbols" in text
    table = pd.read_parquet(tmp_path / "report_symbols.parquet").set_index("symbol")
    assert len(table) == 300 and table["noisy"].idxmax() == "S123" and table["noisy"].idxmin() == "S042"
    summary = per_symbol_summary(report)
    assert summary.loc["noisy", "highest"].startswith("S123") and summary.loc["noisy", "lowest"].startswith("S042")
    assert summary.loc["noisy", "min"] <= summary.loc["noisy", "median"] <= summary.loc["noisy", "max"]
    assert summary.loc["noisy", "symbols"] == 300
