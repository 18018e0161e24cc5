"""Diagnostics: the gradient-noise scale estimator on gradients of known noise, and the warnings."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from plus_ultra_ml.config import DiagnosticsConfig
from plus_ultra_ml.training.callbacks import DiagnosticsCallback, GradientNoiseScale


@pytest.mark.parametrize("batch, noise", [(16, 1.0), (64, 3.0)])
def test_noise_scale_recovers_trace_over_squared_norm(batch, noise):
    """Per-example gradients G + noise * e (e ~ N(0, I_d)): tr(Sigma) = d noise^2, B_simple = d noise^2 / |G|^2."""
    torch.manual_seed(0)
    d = 200
    G = torch.full((d,), 0.5)
    truth = d * noise**2 / float(G.square().sum())
    estimator = GradientNoiseScale(batch, group=4, ema=0.99)
    for _ in range(4000):
        estimator.update(G + noise * torch.randn(d) / batch**0.5)  # a batch-mean gradient
    assert estimator.value == pytest.approx(truth, rel=0.15)


def test_noise_scale_needs_a_full_group_first():
    estimator = GradientNoiseScale(8, group=3)
    assert estimator.update(torch.ones(5)) is None and estimator.update(torch.ones(5)) is None
    with pytest.raises(ValueError):
        GradientNoiseScale(8, group=1)


def fake(epoch=2):
    return SimpleNamespace(current_epoch=epoch, sanity_checking=False)


def test_diagnostics_warn_on_low_ic_and_miscalibrated_quantiles():
    callback = DiagnosticsCallback(DiagnosticsConfig(coverage_tolerance=0.05, min_ic=0.0), batch_size=32)
    module = SimpleNamespace(last_validation={"ic": [0.04, -0.01, float("nan")], "coverage": [0.11, 0.30],
                                              "quantiles": [0.1, 0.5], "windows": 100})
    callback.on_validation_end(fake(), module)
    text = "\n".join(callback.warnings)
    assert "horizon 2 is -0.0100" in text and "horizon 3 is nan" in text and "horizon 1" not in text
    assert "quantile 0.5 covers 0.300" in text and "quantile 0.1" not in text
    assert callback.history[0]["epoch"] == 2


def test_diagnostics_warn_when_batch_is_far_from_noise_scale():
    callback = DiagnosticsCallback(DiagnosticsConfig(noise_scale_ratio=10), batch_size=4)
    callback.noise = GradientNoiseScale(4, group=2)
    callback.noise.g2, callback.noise.trace = 1.0, 500.0  # noise scale 500 >> batch 4
    callback.on_train_epoch_end(fake(), None)
    assert len(callback.warnings) == 1 and "gradient-noise scale 500.0" in callback.warnings[0]
    callback.noise.trace = 20.0  # noise scale 20: within 10x of 4
    callback.on_train_epoch_end(fake(), None)
    assert len(callback.warnings) == 1
