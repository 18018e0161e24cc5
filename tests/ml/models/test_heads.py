"""Heads: forecast quantiles never cross, positions are bounded, the squashed Gaussian is a density."""

from __future__ import annotations

import logging

import pytest
import torch
from torch.distributions import Normal, TransformedDistribution
from torch.distributions.transforms import TanhTransform

from plus_ultra_ml.models.heads import (
    ForecastHead,
    HeadsConfig,
    PolicyHead,
    PositionHead,
    SymbolVocabulary,
    gaussian_entropy,
    squashed_gaussian_log_prob,
    squashed_gaussian_sample,
)
from plus_ultra_ml.models.layers import UNKNOWN_SYMBOL_ID


def test_quantile_forecasts_are_ordered_for_any_hidden_state():
    head = ForecastHead(d_model=6, horizons=4, quantiles=(0.05, 0.25, 0.5, 0.75, 0.95))
    point, quantiles = head(50 * torch.randn(3, 9, 6))
    assert point.shape == (3, 9, 4) and quantiles.shape == (3, 9, 4, 5)
    assert (quantiles.diff(dim=-1) >= 0).all()


def test_point_only_head_has_no_quantiles():
    point, quantiles = ForecastHead(d_model=6, horizons=2)(torch.randn(1, 3, 6))
    assert point.shape == (1, 3, 2) and quantiles is None


def test_positions_stay_in_minus_one_one_and_start_near_flat():
    head = PositionHead(d_model=8)
    assert head(torch.randn(4, 10, 8)).abs().max() < 0.2  # untrained: close to no position
    with torch.no_grad():
        head.linear.weight.fill_(10.0)
    extreme = head(1e4 * torch.randn(4, 10, 8))
    assert extreme.abs().max() <= 1.0 and extreme.shape == (4, 10)


def test_squashed_gaussian_log_prob_matches_torch_tanh_transformed_normal():
    mean, log_std = torch.randn(2, 5, 1), torch.full((2, 5, 1), -0.3)
    pre_tanh = torch.randn(2, 5, 1)
    reference = TransformedDistribution(Normal(mean, log_std.exp()), [TanhTransform()])
    expected = reference.log_prob(torch.tanh(pre_tanh)).sum(-1)
    assert torch.allclose(squashed_gaussian_log_prob(mean, log_std, pre_tanh), expected, atol=1e-4)


def test_squashed_gaussian_stays_finite_when_the_action_saturates():
    mean = torch.full((1, 1, 1), 30.0, requires_grad=True)
    log_std = torch.zeros(1, 1, 1, requires_grad=True)
    action, pre_tanh, log_prob = squashed_gaussian_sample(mean, log_std, torch.Generator().manual_seed(0))
    assert action.item() == pytest.approx(1.0) and torch.isfinite(log_prob).all()
    assert log_prob.requires_grad  # PPO differentiates the log-prob w.r.t. mean and log-std


def test_policy_head_log_std_is_the_configured_start_and_entropy_follows_it():
    head = PolicyHead(d_model=4, action_dim=1, init_log_std=-0.5)
    mean, log_std = head(torch.randn(3, 6, 4))
    assert mean.shape == log_std.shape == (3, 6, 1)
    assert torch.allclose(log_std, torch.full_like(log_std, -0.5))
    assert torch.allclose(gaussian_entropy(log_std), Normal(mean, log_std.exp()).entropy().sum(-1))


def test_vocabulary_maps_unknown_symbols_to_the_reserved_id(caplog):
    vocab = SymbolVocabulary(("SPY", "QQQ"))
    assert vocab.size == 3
    with caplog.at_level(logging.WARNING):
        ids = vocab.encode(["QQQ", "TSLA", "SPY"])
    assert ids.tolist() == [2, UNKNOWN_SYMBOL_ID, 1]
    assert "TSLA" in caplog.text
    assert vocab.decode(ids) == ["QQQ", None, "SPY"]


@pytest.mark.parametrize("symbols", [("SPY", "SPY"), ("SPY", "")])
def test_vocabulary_refuses_duplicates_and_empty_names(symbols):
    with pytest.raises(ValueError):
        SymbolVocabulary(symbols)


@pytest.mark.parametrize("quantiles", [(0.5, 0.1), (0.0, 0.5), (0.5, 0.5)])
def test_heads_config_refuses_unordered_or_out_of_range_quantiles(quantiles):
    with pytest.raises(ValueError, match="quantiles"):
        HeadsConfig(horizons=2, quantiles=quantiles)
