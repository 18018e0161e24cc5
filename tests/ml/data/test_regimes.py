"""Causal regime labels: no label ever changes when the future arrives, and symbols never mix."""

from __future__ import annotations

import sqlite3
import zlib

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from plus_ultra_ml.config import RegimeConfig
from plus_ultra_ml.data.regimes import REGIME_VOCABULARY, label_regimes, regime_statistics, regimes_to_long
from plus_ultra_ml.data.schema import TIMESTAMP_FORMAT, RegimeLabelSchema, create_schema
from plus_ultra_ml.errors import DataContractError

CFG = RegimeConfig(vol_window=10, liquidity_window=10, trend_window=20, min_history=50)
ROLLING = CFG.model_copy(update={"lookback": 60})


def random_panel(symbols=("AAA", "BBB"), bars=400, seed=0, vol=None) -> pd.DataFrame:
    """A small panel contract: log-normal random walks, volume loosely tied to |returns|.

    Each symbol's data depends only on (seed, symbol), so panels with more symbols share it.
    vol: per-bar volatility for every symbol (array), or {symbol: array}; default 1%.
    """
    frames = []
    for symbol in symbols:
        rng = np.random.default_rng([seed, zlib.crc32(symbol.encode())])
        scale = vol.get(symbol, 0.01) if isinstance(vol, dict) else (0.01 if vol is None else vol)
        returns = np.broadcast_to(np.asarray(scale, dtype=float), (bars,)) * rng.standard_normal(bars)
        close = rng.uniform(10, 500) * np.exp(np.cumsum(returns))
        volume = np.round(1e5 * np.exp(0.5 * rng.standard_normal(bars) + 20 * np.abs(returns)))
        frames.append(
            pd.DataFrame(
                {
                    "symbol": symbol,
                    "timestamp": pd.date_range("2021-01-01", periods=bars, freq="1h", tz="UTC"),
                    "open": close,
                    "high": close * 1.001,
                    "low": close * 0.999,
                    "close": close,
                    "volume": volume,
                }
            )
        )
    panel = pd.concat(frames, ignore_index=True)
    panel["symbol"] = panel["symbol"].astype("category")
    return panel.set_index(["symbol", "timestamp"]).sort_index()


def head(panel: pd.DataFrame, bars: int) -> pd.DataFrame:
    """The first `bars` bars of every symbol (what the data looked like earlier)."""
    position = panel.groupby(level="symbol", observed=True).cumcount()
    return panel[position.to_numpy() < bars]


# --------------------------------------------------------------------------------------------
# contract
# --------------------------------------------------------------------------------------------
def test_vocabulary_and_output_contract():
    assert REGIME_VOCABULARY == {
        "volatility": ("low", "mid", "high"),
        "liquidity": ("low", "mid", "high"),
        "trend": ("down", "flat", "up"),
    }
    panel = random_panel()
    labels = label_regimes(panel, CFG)
    RegimeLabelSchema.validate(labels)
    assert labels.index.equals(panel.index)
    for name, categories in REGIME_VOCABULARY.items():
        assert isinstance(labels[name].dtype, pd.CategoricalDtype)
        assert tuple(labels[name].cat.categories) == categories
        assert set(labels[name].dropna().unique()) == set(categories)  # every level occurs on 400 bars


@pytest.mark.parametrize("cfg", [CFG, ROLLING], ids=["expanding", "rolling"])
def test_warm_up_is_unlabelled(cfg):
    labels = label_regimes(random_panel(), cfg)
    position = labels.groupby(level="symbol", observed=True).cumcount().to_numpy()
    assert labels[position < cfg.min_history - 1].isna().all().all()
    assert labels[position >= cfg.min_history - 1].notna().all().all()


def test_unsorted_input_gets_the_same_labels_in_its_own_order():
    panel = random_panel()
    shuffled = panel.sample(frac=1.0, random_state=0)
    labels = label_regimes(shuffled, CFG)
    assert labels.index.equals(shuffled.index)
    pd.testing.assert_frame_equal(labels.sort_index(), label_regimes(panel, CFG))


def test_bad_panels_are_refused_with_the_reason():
    panel = random_panel()
    with pytest.raises(DataContractError, match="indexed by"):
        label_regimes(panel.reset_index(), CFG)
    with pytest.raises(DataContractError, match="volume"):
        label_regimes(panel.drop(columns="volume"), CFG)
    with pytest.raises(DataContractError, match="duplicate"):
        label_regimes(pd.concat([panel, panel.iloc[:1]]), CFG)


# --------------------------------------------------------------------------------------------
# causality
# --------------------------------------------------------------------------------------------
FULL = random_panel(bars=500, seed=3)
FULL_LABELS = {name: label_regimes(FULL, cfg) for name, cfg in (("expanding", CFG), ("rolling", ROLLING))}


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cut=st.integers(min_value=1, max_value=499), mode=st.sampled_from(["expanding", "rolling"]))
def test_appending_the_future_changes_no_past_label(cut, mode):
    cfg = CFG if mode == "expanding" else ROLLING
    past = label_regimes(head(FULL, cut), cfg)
    pd.testing.assert_frame_equal(past, FULL_LABELS[mode].loc[past.index])


def test_appending_the_future_changes_no_past_label_on_the_fixture(default_panel):
    cfg = RegimeConfig()
    full = label_regimes(default_panel, cfg)
    for cut in (250, 5_000, 13_337):
        past = label_regimes(head(default_panel, cut), cfg)
        pd.testing.assert_frame_equal(past, full.loc[past.index])


def test_a_volatile_future_does_not_relabel_a_calm_past():
    """Whole-sample quantiles would never call a bar of the calm first half 'high'; causal ones do."""
    bars = 1_000
    vol = np.where(np.arange(bars) < bars // 2, 0.005, 0.03)
    panel = random_panel(symbols=("AAA",), bars=bars, seed=5, vol=vol)
    labels = label_regimes(panel, CFG)
    first_half = labels["volatility"].iloc[CFG.min_history : bars // 2]
    shares = first_half.value_counts(normalize=True)
    assert shares["low"] < 0.6 and shares["mid"] > 0.15 and shares["high"] > 0.15
    # The same check catches a whole-sample labeller: with global terciles no calm bar is 'high'.
    stat = regime_statistics(panel, CFG)["volatility"]
    global_high = stat.quantile(CFG.high_quantile)
    assert (stat.iloc[CFG.min_history : bars // 2] > global_high).sum() == 0
    # And causally the volatile half starts out 'high' before its own history catches up.
    assert (labels["volatility"].iloc[bars // 2 + CFG.vol_window : bars // 2 + 100] == "high").all()


def test_rolling_lookback_forgets_the_distant_past():
    panel = random_panel(symbols=("AAA",), bars=400, seed=2)
    altered = panel.copy()
    altered.iloc[:100, altered.columns.get_loc("close")] *= 3.0  # rewrite old history only
    altered.iloc[:100, altered.columns.get_loc("volume")] *= 7.0
    horizon = 100 + max(CFG.vol_window, CFG.liquidity_window, CFG.trend_window) + ROLLING.lookback
    a, b = label_regimes(panel, ROLLING), label_regimes(altered, ROLLING)
    pd.testing.assert_frame_equal(a.iloc[horizon:], b.iloc[horizon:])
    assert not label_regimes(panel, CFG).iloc[horizon:].equals(label_regimes(altered, CFG).iloc[horizon:])


def test_symbols_never_mix():
    with_other = label_regimes(random_panel(symbols=("AAA", "BBB"), seed=4), CFG).xs("AAA", level="symbol")
    alone = label_regimes(random_panel(symbols=("AAA",), seed=4), CFG).xs("AAA", level="symbol")
    pd.testing.assert_frame_equal(with_other, alone)
    # A third symbol with wild data changes nothing for AAA either.
    wild = random_panel(symbols=("AAA", "BBB", "ZZZ"), seed=4, vol={"ZZZ": 0.2})
    pd.testing.assert_frame_equal(label_regimes(wild, CFG).xs("AAA", level="symbol"), with_other)


def test_volatility_labels_track_the_fixtures_latent_regime(default_panel):
    labels = label_regimes(default_panel, RegimeConfig())
    truth = default_panel["ind__truth_vol_regime"]
    share_high = (labels["volatility"] == "high").groupby(truth).mean()
    share_low = (labels["volatility"] == "low").groupby(truth).mean()
    assert share_high[2.0] > 0.7 and share_high[0.0] < 0.1
    assert share_low[0.0] > 0.5 and share_low[2.0] < 0.05


# --------------------------------------------------------------------------------------------
# the regimes table shape
# --------------------------------------------------------------------------------------------
def test_regimes_to_long_round_trips_and_fits_the_table(tmp_path):
    labels = label_regimes(random_panel(), CFG)
    long = regimes_to_long(labels)
    assert list(long.columns) == ["timestamp", "symbol", "name", "value"]
    assert len(long) == int(labels.notna().sum().sum())
    assert long["value"].notna().all()
    parsed = pd.to_datetime(long["timestamp"], format=TIMESTAMP_FORMAT, utc=True)
    assert (parsed.dt.strftime(TIMESTAMP_FORMAT) == long["timestamp"]).all()
    back = long.assign(timestamp=parsed).pivot(index=["symbol", "timestamp"], columns="name", values="value")
    expected = labels.dropna().astype(str)
    assert (back.loc[expected.index, list(REGIME_VOCABULARY)].to_numpy() == expected.to_numpy()).all()

    with sqlite3.connect(tmp_path / "r.db") as connection:
        create_schema(connection)
        connection.executemany(
            "INSERT INTO regimes (timestamp, symbol, name, value) VALUES (?, ?, ?, ?)",
            long.itertuples(index=False, name=None),
        )  # the primary key (timestamp, symbol, name) accepts every row: no duplicates
        assert connection.execute("SELECT count(*) FROM regimes").fetchone()[0] == len(long)
