"""Standard indicators equal their textbook definitions, checked against TA-Lib's C code, the `ta`
package and pandas, after the documented warm-up (and NaN, never 0, before it)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import talib
from ta.momentum import TSIIndicator
from ta.volume import ChaikinMoneyFlowIndicator

from plus_ultra_ml.config import FeaturesConfig
from plus_ultra_ml.features.pipeline import compute_features
from plus_ultra_ml.features.registry import default_registry

from .panels import make_panel

N = 1500
PPY = 35064.0


@pytest.fixture(scope="module")
def one():
    """One symbol: its OHLCV as float64 arrays, and every default feature computed in float64 kernels."""
    panel = make_panel(N, symbols=("AAA",), seed=7)
    cols = {c: panel[c].to_numpy() for c in ("open", "high", "low", "close", "volume")}
    registry = default_registry()

    def feature(name: str) -> np.ndarray:
        """The feature's float64 values from its spec (dependencies computed the same way)."""
        spec = registry[name]
        args = [cols[i] if i in cols else feature(i) for i in spec.inputs]
        runtime = {"periods_per_year": PPY} if spec.runtime else {}
        return spec.fn(*args, **spec.params, **runtime)

    frame = compute_features(panel, FeaturesConfig(periods_per_year=PPY)).frame
    return cols, feature, frame


def _close(ours, reference, start, rtol=1e-9, atol=0.0):
    """Equal from bar `start` on (warm-ups are checked for every feature in test_warmup.py)."""
    np.testing.assert_allclose(ours[start:], reference[start:], rtol=rtol, atol=atol)


def test_rsi_matches_talib_from_its_first_value(one):
    cols, feature, _ = one
    ours = feature("rsi_14")
    assert np.isnan(ours[:14]).all() and not np.isnan(ours[14])
    _close(ours, talib.RSI(cols["close"], 14), 14, rtol=1e-10)


def test_atr_and_natr_match_talib(one):
    cols, feature, _ = one
    h, l, c = cols["high"], cols["low"], cols["close"]
    _close(feature("atr_14"), talib.ATR(h, l, c, 14), 14, rtol=1e-10)
    _close(feature("natr_14"), talib.NATR(h, l, c, 14), 14, rtol=1e-10)


def test_macd_matches_talib_after_the_seed_difference_decays(one):
    cols, feature, _ = one
    line, signal, hist = talib.MACD(cols["close"], 12, 26, 9)
    scale = 1e-12 * cols["close"].mean()  # the seeds differ; the gap decays as (11/13)^t
    for name, reference in (("macd", line), ("macd_signal", signal), ("macd_hist", hist)):
        _close(feature(name), reference, 200, rtol=0, atol=scale)
    assert np.isnan(feature("macd")[:25]).all() and not np.isnan(feature("macd")[25])
    assert np.isnan(feature("macd_signal")[:33]).all() and not np.isnan(feature("macd_signal")[33])


def test_ema_seed_is_talibs(one):
    from plus_ultra_ml.features import kernels as K

    cols, _, _ = one
    for n in (3, 12, 26):
        _close(K.ema(cols["close"], n), talib.EMA(cols["close"], n), n - 1, rtol=1e-12)


def test_bollinger_width_matches_talib_population_std(one):
    cols, feature, _ = one
    upper, middle, lower = talib.BBANDS(cols["close"], 20, 2.0, 2.0, 0)
    _close(feature("bb_width_20"), (upper - lower) / middle, 19, rtol=1e-7)  # TA-Lib uses running sums
    _close(feature("bb_pctb_20"), (cols["close"] - lower) / (upper - lower), 19, rtol=1e-6, atol=1e-9)
    window = np.lib.stride_tricks.sliding_window_view(cols["close"], 20)
    exact = 4 * window.std(axis=1) / window.mean(axis=1)  # population std, two-pass
    _close(feature("bb_width_20")[19:], exact, 0, rtol=1e-11)


def test_realised_vol_is_annualised_sample_std_of_log_returns(one):
    cols, feature, _ = one
    r = pd.Series(np.log(cols["close"])).diff()
    for w in (20, 60):
        _close(feature(f"rvol_{w}"), r.rolling(w).std().to_numpy() * np.sqrt(PPY), w, rtol=1e-9)
    talib_std = talib.STDDEV(r.to_numpy(), 20, 1.0) * np.sqrt(20 / 19) * np.sqrt(PPY)  # TA-Lib: population
    _close(feature("rvol_20"), talib_std, 20, rtol=1e-6)


def test_roc_stochastic_cci_match_talib(one):
    cols, feature, _ = one
    h, l, c = cols["high"], cols["low"], cols["close"]
    _close(feature("roc_10"), talib.ROC(c, 10), 10, rtol=1e-10)
    fastk, fastd = talib.STOCHF(h, l, c, fastk_period=14, fastd_period=3, fastd_matype=0)
    _close(feature("stoch_k_14"), fastk, 15, rtol=1e-10)  # TA-Lib aligns %K with %D (starts at 15)
    _close(feature("stoch_d_14_3"), fastd, 15, rtol=1e-10)
    assert np.isnan(feature("stoch_k_14")[:13]).all() and not np.isnan(feature("stoch_k_14")[13])
    _close(feature("cci_20"), talib.CCI(h, l, c, 20), 19, rtol=1e-9)


def test_tsi_matches_ta_after_warmup(one):
    cols, feature, _ = one
    reference = TSIIndicator(pd.Series(cols["close"]), window_slow=25, window_fast=13).tsi().to_numpy()
    _close(feature("tsi_25_13"), reference, 600, rtol=1e-8, atol=1e-8)  # ta seeds its EMAs with x[0]
    assert np.isnan(feature("tsi_25_13")[:37]).all() and not np.isnan(feature("tsi_25_13")[37])


def test_volume_features_match_references(one):
    cols, feature, _ = one
    h, l, c, v = cols["high"], cols["low"], cols["close"], cols["volume"]
    frame = pd.DataFrame({"h": h, "l": l, "c": c, "v": v})
    cmf = ChaikinMoneyFlowIndicator(frame.h, frame.l, frame.c, frame.v, window=20).chaikin_money_flow().to_numpy()
    _close(feature("cmf_20"), cmf, 19, rtol=1e-9)
    obv = talib.OBV(c, v)
    expected = (obv - np.concatenate([np.full(20, np.nan), obv[:-20]])) / pd.Series(v).rolling(20).sum().to_numpy()
    _close(feature("obv_ratio_20"), expected, 20, rtol=1e-9)
    x = pd.Series(np.log1p(v))
    z = (x - x.rolling(20).mean()) / x.rolling(20).std(ddof=0)
    _close(feature("volume_z_20"), z.to_numpy(), 19, rtol=1e-8)
    tp = (h + l + c) / 3
    vwap = pd.Series(tp * v).rolling(20).sum() / pd.Series(v).rolling(20).sum()
    _close(feature("vwap_dist_20"), np.log(c / vwap.to_numpy()), 19, rtol=1e-8)


def test_range_volatility_estimators(one):
    cols, feature, _ = one
    o, h, l, c = cols["open"], cols["high"], cols["low"], cols["close"]
    hl = pd.Series(np.log(h / l) ** 2)
    parkinson = np.sqrt(PPY * hl.rolling(20).mean() / (4 * np.log(2)))
    _close(feature("parkinson_20"), parkinson.to_numpy(), 19, rtol=1e-10)
    term = 0.5 * hl - (2 * np.log(2) - 1) * pd.Series(np.log(c / o) ** 2)
    _close(feature("garman_klass_20"), np.sqrt(PPY * term.rolling(20).mean().clip(lower=0)).to_numpy(), 19, rtol=1e-9)


def test_skew_and_kurtosis_match_pandas(one):
    cols, feature, _ = one
    r = pd.Series(np.log(cols["close"])).diff()
    _close(feature("skew_60"), r.rolling(60).skew().to_numpy(), 60, rtol=1e-7, atol=1e-9)
    _close(feature("kurt_60"), r.rolling(60).kurt().to_numpy(), 60, rtol=1e-7, atol=1e-9)


def test_returns_velocity_and_regime_probabilities(one):
    cols, feature, _ = one
    lc = np.log(cols["close"])
    for k in (1, 5, 20):
        _close(feature(f"logret_{k}"), pd.Series(lc).diff(k).to_numpy(), k, rtol=1e-12, atol=1e-15)
    window = np.lib.stride_tricks.sliding_window_view(lc, 10)
    slopes = np.polyfit(np.arange(10), window.T, 1)[0]
    _close(feature("velocity_10")[9:], slopes, 0, rtol=1e-8, atol=1e-12)
    from statistics import NormalDist

    cdf = np.vectorize(NormalDist().cdf, otypes=[float])
    r = pd.Series(lc).diff()
    z = r.rolling(20).mean() / (r.rolling(20).std() / np.sqrt(20))
    _close(feature("regime_z_20"), z.to_numpy(), 20, rtol=1e-8, atol=1e-10)
    _close(feature("regime_bull_20"), cdf((z - 0.5).fillna(0)), 20, rtol=1e-8, atol=1e-12)
    _close(feature("regime_bear_20"), cdf((-z - 0.5).fillna(0)), 20, rtol=1e-8, atol=1e-12)


def test_pipeline_frame_is_the_float32_of_the_kernels(one):
    _, feature, frame = one
    for name in ("rsi_14", "macd_hist", "bb_width_20", "rvol_20", "atr_14", "cmf_20"):
        expected = feature(name).astype(np.float32)
        np.testing.assert_array_equal(frame[name].to_numpy(), expected)
    assert set(frame.dtypes) == {np.dtype(np.float32)}


def test_neutral_values_on_a_flat_market():
    panel = make_panel(80, symbols=("FLAT",), indicators=())
    panel[["open", "high", "low", "close", "vwap"]] = 10.0
    panel["volume"] = 100.0
    frame = compute_features(panel, FeaturesConfig(families=("momentum", "volatility", "volume"),
                                                   periods_per_year=PPY)).frame
    last = frame.iloc[-1]
    assert last["rsi_14"] == 50 and last["stoch_k_14"] == 50 and last["cci_20"] == 0
    assert last["bb_width_20"] == 0 and last["bb_pctb_20"] == 0.5 and last["rvol_20"] == 0
    assert last["volume_z_20"] == 0 and last["macd"] == 0 and np.isnan(last["skew_60"])
