"""data.order_statistics: the causal quantile kernel equals pandas' expanding / rolling quantile exactly."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from plus_ultra_ml.data.order_statistics import causal_quantiles

QUANTILES = (0.0, 1 / 3, 0.5, 2 / 3, 1.0)


def pandas_reference(x: np.ndarray, sizes: list[int], lookback: int | None) -> np.ndarray:
    symbol = np.repeat(np.arange(len(sizes)), sizes)
    s = pd.Series(x, index=pd.MultiIndex.from_arrays([symbol, np.arange(len(x))], names=["symbol", "t"]))
    grouped = s.groupby(level="symbol", sort=False)
    columns = []
    for q in QUANTILES:
        windows = grouped.expanding(min_periods=1) if lookback is None else grouped.rolling(lookback, min_periods=1)
        columns.append(windows.quantile(q).droplevel(0).reindex(s.index).to_numpy())
    return np.column_stack(columns)


def starts_of(sizes: list[int]) -> np.ndarray:
    return np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)


values = st.one_of(st.floats(-5, 5, allow_nan=False), st.just(np.nan), st.sampled_from([0.0, 1.0, -1.0]))


@settings(max_examples=60, deadline=None)
@given(sizes=st.lists(st.integers(0, 60), min_size=1, max_size=4), data=st.data(),
       lookback=st.one_of(st.none(), st.integers(1, 30)))
def test_equals_pandas_bit_for_bit_with_nans_ties_and_empty_segments(sizes, data, lookback):
    x = np.array(data.draw(st.lists(values, min_size=sum(sizes), max_size=sum(sizes))), dtype=np.float64)
    ours = causal_quantiles(x, starts_of(sizes), lookback, QUANTILES)
    reference = pandas_reference(x, sizes, lookback)
    np.testing.assert_array_equal(ours, reference)  # NaN where pandas has NaN, identical floats elsewhere


@pytest.mark.parametrize("lookback", [None, 25])
def test_a_long_random_history_equals_pandas(lookback):
    rng = np.random.default_rng(3)
    sizes = [3000, 1, 2500]
    x = rng.standard_t(3, size=sum(sizes))
    x[rng.random(x.size) < 0.05] = np.nan
    np.testing.assert_array_equal(causal_quantiles(x, starts_of(sizes), lookback, QUANTILES),
                                  pandas_reference(x, sizes, lookback))


@pytest.mark.parametrize("lookback", [None, 7])
def test_cutting_the_future_changes_no_past_quantile(lookback):
    rng = np.random.default_rng(4)
    x = rng.normal(size=400)
    full = causal_quantiles(x, starts_of([400]), lookback, QUANTILES)
    for cut in (1, 50, 399):
        past = causal_quantiles(x[:cut], starts_of([cut]), lookback, QUANTILES)
        np.testing.assert_array_equal(past, full[:cut])


def test_segments_never_mix():
    x = np.array([100.0, 100.0, 100.0, 1.0, 2.0, 3.0])
    out = causal_quantiles(x, starts_of([3, 3]), None, (1.0,))
    np.testing.assert_array_equal(out[:, 0], [100.0, 100.0, 100.0, 1.0, 2.0, 3.0])


@pytest.mark.parametrize("starts, lookback, quantiles, message", [
    (np.array([0, 2]), None, (0.5,), "starts must rise"),
    (np.array([0, 3, 2, 3]), None, (0.5,), "starts must rise"),
    (np.array([0, 3]), 0, (0.5,), "lookback"),
    (np.array([0, 3]), None, (1.5,), "quantiles"),
])
def test_bad_arguments_are_refused(starts, lookback, quantiles, message):
    with pytest.raises(ValueError, match=message):
        causal_quantiles(np.zeros(3), starts, lookback, quantiles)
