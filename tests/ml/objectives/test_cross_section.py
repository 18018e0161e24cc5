"""Cross-sectional losses: per-date IC, ListNet, the long-short book, against numpy hand computations."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from plus_ultra_ml.config import CostConfig
from plus_ultra_ml.objectives.cross_section import (
    cross_section_keys,
    listnet_loss,
    long_short_pnl,
    long_short_weights,
    per_date_ic,
)
from plus_ultra_ml.objectives.pnl import position_pnl_numpy

DAY = 86_400 * 10**9
FREE = CostConfig(transaction_bps=0, slippage_bps=0, holding_bps=0)


def date_batch(names: int = 6, dates: int = 3, steps: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, T) step times and (B,) end times of `names` windows ending at each of `dates` days."""
    ends = torch.arange(dates).repeat_interleave(names) * DAY + 10 * DAY  # (B,)
    times = ends.unsqueeze(1) + (torch.arange(steps) - steps + 1) * DAY  # (B, T)
    return times, ends


def numpy_ic(score: np.ndarray, target: np.ndarray, keys: np.ndarray, min_names: int = 3) -> float:
    ics = []
    for k in np.unique(keys):
        s, y = score[keys == k], target[keys == k]
        ok = np.isfinite(y)
        if ok.sum() >= min_names:
            ics.append(np.corrcoef(s[ok], y[ok])[0, 1])
    return float(np.mean(ics))


def test_keys_group_same_end_date_and_same_step_only():
    times, ends = date_batch(names=5, dates=3, steps=4)
    keys, dates = cross_section_keys(times, ends)
    assert keys.shape == times.shape and dates.tolist() == [0] * 5 + [1] * 5 + [2] * 5
    assert len(torch.unique(keys)) == 3 * 4  # one cross-section per (end date, step)
    for k in torch.unique(keys):
        cells = keys == k
        assert len(torch.unique(times[cells])) == 1  # one timestamp
        assert len(torch.unique(ends.unsqueeze(1).expand_as(times)[cells])) == 1  # one end date
    # windows ending on day 10 and day 11 both hold day 10 as a step, in different cross-sections
    assert keys[0, -1] != keys[5, -2] and times[0, -1] == times[5, -2]


def test_per_date_ic_equals_numpy_and_leaves_out_thin_and_missing_cells():
    rng = np.random.default_rng(0)
    times, ends = date_batch(names=7, dates=4, steps=3)
    keys, _ = cross_section_keys(times, ends)
    score = rng.standard_normal(times.shape)
    target = 0.3 * score + rng.standard_normal(times.shape)
    target[0, 0] = target[3, 1] = np.nan  # NaN targets are left out of their cross-section
    got = per_date_ic(torch.tensor(score), torch.tensor(target), keys)
    assert float(got) == pytest.approx(numpy_ic(score, target, keys.numpy()), abs=1e-10)
    # a cross-section of two names is left out: rows 4-6 end on day 0 (3 names), rows 7-8 on day 1 (2)
    thin = per_date_ic(torch.tensor(score[4:9]), torch.tensor(target[4:9]), keys[4:9])
    assert float(thin) == pytest.approx(numpy_ic(score[4:7], target[4:7], keys[4:7].numpy()), abs=1e-10)
    assert torch.isnan(per_date_ic(torch.tensor(score[:2]), torch.tensor(target[:2]), keys[:2]))


def test_per_date_ic_is_scale_free_per_date_and_differentiable():
    rng = np.random.default_rng(1)
    times, ends = date_batch(names=8, dates=2, steps=2)
    keys, dates = cross_section_keys(times, ends)
    score = torch.tensor(rng.standard_normal(times.shape), requires_grad=True)
    target = torch.tensor(rng.standard_normal(times.shape))
    ic = per_date_ic(score, target, keys)
    # a per-date affine change of the score leaves every correlation alone
    moved = score.detach() * (1 + dates.unsqueeze(1).double() * 3) + dates.unsqueeze(1).double()
    assert float(per_date_ic(moved, target, keys)) == pytest.approx(float(ic.detach()), abs=1e-10)
    ic.backward()
    assert torch.isfinite(score.grad).all() and score.grad.abs().sum() > 0
    # gradient ascent on the IC raises it
    better = score.detach() + 0.5 * score.grad
    assert float(per_date_ic(better, target, keys)) > float(ic.detach())


def test_listnet_is_smallest_when_the_scores_rank_like_the_returns():
    rng = np.random.default_rng(2)
    times, ends = date_batch(names=6, dates=3, steps=2)
    keys, _ = cross_section_keys(times, ends)
    target = torch.tensor(rng.standard_normal(times.shape) * 0.01)
    temperature = 0.01
    matched = listnet_loss(target / temperature, target, keys, temperature)  # score = the target's logits
    for _ in range(20):
        other = torch.tensor(rng.standard_normal(times.shape))
        assert float(listnet_loss(other, target, keys, temperature)) > float(matched)
    # by hand for one cross-section: -sum softmax(y / tau) * log softmax(s)
    cells = (keys == 0).numpy()
    s = rng.standard_normal(times.shape)
    y, ss = target.numpy()[cells] / temperature, s[cells]
    p = np.exp(y - y.max()) / np.exp(y - y.max()).sum()
    log_q = ss - ss.max() - np.log(np.exp(ss - ss.max()).sum())
    got = listnet_loss(torch.tensor(s)[torch.tensor(cells)], target[torch.tensor(cells)], keys[torch.tensor(cells)],
                       temperature)
    assert float(got) == pytest.approx(-(p * log_q).sum(), abs=1e-10)


def test_long_short_weights_are_dollar_neutral_with_gross_one():
    rng = np.random.default_rng(3)
    times, ends = date_batch(names=5, dates=3, steps=4)
    keys, _ = cross_section_keys(times, ends)
    weights = long_short_weights(torch.tensor(rng.standard_normal(times.shape)), keys)
    for k in torch.unique(keys):
        w = weights[keys == k]
        assert float(w.sum()) == pytest.approx(0, abs=1e-12)
        assert float(w.abs().sum()) == pytest.approx(1, abs=1e-12)
    # no spread: no book
    flat = long_short_weights(torch.ones(times.shape, dtype=torch.float64), keys)
    assert float(flat.abs().max()) == 0


def test_long_short_pnl_equals_a_hand_computation():
    rng = np.random.default_rng(4)
    times, ends = date_batch(names=4, dates=2, steps=3)
    keys, dates = cross_section_keys(times, ends)
    positions = rng.standard_normal(times.shape)
    next_returns = rng.standard_normal(times.shape) * 0.01
    costs = CostConfig(transaction_bps=5, slippage_bps=1, holding_bps=2)
    got = long_short_pnl(torch.tensor(positions), torch.tensor(next_returns), keys, dates, costs).numpy()
    assert got.shape == (2, 3)
    for g in range(2):
        rows = slice(4 * g, 4 * g + 4)
        p = positions[rows]
        w = (p - p.mean(axis=0)) / np.abs(p - p.mean(axis=0)).sum(axis=0)  # per step across the 4 names
        expected = position_pnl_numpy(w, next_returns[rows], costs).sum(axis=0)
        np.testing.assert_allclose(got[g], expected, rtol=0, atol=1e-14)
    free = long_short_pnl(torch.tensor(positions), torch.tensor(next_returns), keys, dates, FREE).numpy()
    assert (free[:, 0] != got[:, 0]).all()  # the entry trade is charged
