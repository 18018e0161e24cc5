"""LightningModules: schedule, parameter groups, gradients reaching every trained weight, validation summary."""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor

from plus_ultra_ml.config import ConfigError, CostConfig, TrainConfig
from plus_ultra_ml.models.registry import build_from_config
from plus_ultra_ml.training.lit_modules import (
    PretrainModule,
    SupervisedModule,
    horizon_scale,
    parameter_groups,
    validation_summary,
    warmup_cosine,
)

from .conftest import tiny_config

SCHEDULE = [
    # name, step, warmup, total, min_ratio, expected
    ("first warm-up step", 0, 4, 100, 0.1, 0.25),
    ("end of warm-up", 3, 4, 100, 0.1, 1.0),
    ("peak right after warm-up", 4, 4, 100, 0.1, 1.0),
    ("half-way down the cosine", 52, 4, 100, 0.1, 0.55),
    ("last step reaches the floor", 100, 4, 100, 0.1, 0.1),
    ("no warm-up", 0, 0, 10, 0.0, 1.0),
    ("warm-up longer than the run is capped", 0, 50, 5, 0.0, 0.25),
]


@pytest.mark.parametrize("name, step, warmup, total, min_ratio, expected", SCHEDULE, ids=[s[0] for s in SCHEDULE])
def test_warmup_cosine(name, step, warmup, total, min_ratio, expected):
    assert warmup_cosine(step, warmup, total, min_ratio) == pytest.approx(expected)


def test_schedule_decreases_after_warmup():
    values = [warmup_cosine(s, 10, 200, 0.05) for s in range(10, 201)]
    assert all(a >= b for a, b in zip(values, values[1:]))


def tiny_net(cfg, n_features=4, horizons=2):
    return build_from_config(cfg.model, n_features=n_features, horizons=horizons, vocabulary=["AAA", "BBB", "CCC"])


def batch(B=6, T=8, F=4, H=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {
        "x": torch.randn(B, T, F, generator=g),
        "y": 0.002 * torch.randn(B, T, H, generator=g),
        "r": 0.002 * torch.randn(B, T, generator=g),
        "vol": torch.full((B, T), 0.002),
        "symbol": torch.arange(B) % 3,
        "start": torch.arange(B) * 3,
        "end": torch.arange(B) * 3 + T - 1,
    }


def test_parameter_groups_decay_matrices_only():
    cfg = tiny_config()
    net = tiny_net(cfg)
    decay, no_decay = parameter_groups(net, 0.1)
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert all(p.ndim >= 2 for p in decay["params"]) and all(p.ndim < 2 for p in no_decay["params"])
    assert len(decay["params"]) + len(no_decay["params"]) == sum(1 for p in net.parameters() if p.requires_grad)


@pytest.mark.parametrize("architecture, backbone", [
    ("hybrid_transformer", {"d_model": 8, "n_layers": 2, "n_heads": 2, "d_state": 4, "dropout": 0.0}),
    ("moe_transformer", {"d_model": 8, "n_layers": 1, "n_heads": 2, "n_experts": 4, "top_k": 2, "dropout": 0.0}),
])
def test_supervised_gradient_reaches_every_trained_weight(architecture, backbone):
    torch.manual_seed(0)
    cfg = tiny_config(model={"architecture": architecture, "backbone": backbone, "quantiles": [0.1, 0.5, 0.9]},
                      train={"loss": {"quantile": 1.0, "sharpe": 0.5, "drawdown": 0.1}})
    module = SupervisedModule(tiny_net(cfg), cfg.train, CostConfig())
    step = module.model_step(batch(B=12))
    step.loss.backward()
    assert torch.isfinite(step.loss)
    assert {"forecast", "quantile", "sharpe", "drawdown"} <= set(step.parts)
    if architecture == "moe_transformer":
        assert "aux" in step.parts and step.parts["aux"] > 0
    frozen = {n for n, p in module.net.named_parameters() if n.startswith(("policy_head", "value_head"))}
    assert frozen and all(not module.net.get_parameter(n).requires_grad for n in frozen)
    starved = [n for n, p in module.net.named_parameters()
               if p.requires_grad and (p.grad is None or p.grad.abs().sum() == 0)]
    if architecture == "moe_transformer":  # an expert no token chose this batch may be idle; the rest must not be
        starved = [n for n in starved if ".experts." not in n]
    assert starved == []


def test_targets_are_volatility_scaled_per_horizon():
    vol = torch.tensor([[0.01, 0.02]])
    scale = horizon_scale(vol, 4)
    assert scale.shape == (1, 2, 4)
    assert torch.allclose(scale[0, 1], 0.02 * torch.tensor([1.0, 2.0, 3.0, 4.0]).sqrt())
    cfg = tiny_config()
    module = SupervisedModule(tiny_net(cfg), cfg.train, CostConfig())
    b = batch()
    step = module.model_step(b)
    assert torch.allclose(step.target, b["y"] / horizon_scale(b["vol"], 2))


@pytest.mark.parametrize("objective", ["masked", "contrastive"])
def test_pretext_gradient_reaches_every_backbone_weight(objective):
    torch.manual_seed(0)
    cfg = tiny_config(model={"backbone": {"d_model": 8, "n_layers": 2, "n_heads": 2, "d_state": 4, "dropout": 0.0}},
                      pretrain={"objective": objective, "time_mask_prob": 0.0})
    net = tiny_net(cfg)
    module = PretrainModule(net.backbone, net.recipe, cfg.pretrain)
    step = module.model_step(batch(B=8))
    step.loss.backward()
    assert torch.isfinite(step.loss)
    starved = [n for n, p in module.backbone.named_parameters() if p.grad is None or p.grad.abs().sum() == 0]
    assert starved == []
    exported = module.export_net()
    assert all(torch.equal(a, b) for a, b in zip(exported.backbone.state_dict().values(),
                                                  module.backbone.state_dict().values()))


def test_quantile_loss_without_quantile_head_is_refused():
    cfg = tiny_config(train={"loss": {"quantile": 1.0}})
    with pytest.raises(ValueError, match="model.quantiles"):
        SupervisedModule(tiny_net(cfg), cfg.train, CostConfig())


def test_validation_summary_ic_and_coverage():
    torch.manual_seed(0)
    target = torch.randn(5000, 2)
    forecast = torch.stack([target[:, 0] + torch.randn(5000), -target[:, 1]], dim=1)
    below = torch.stack([target <= -1.2816, target <= 0.0, target <= 1.2816], dim=-1)  # true N(0,1) quantiles
    end = torch.arange(5000) // 50  # 100 dates of 50 names
    summary = validation_summary({"forecast": forecast, "target": target, "below": below, "end": end},
                                 (0.1, 0.5, 0.9))
    assert summary["ic"][0] == pytest.approx(1 / math.sqrt(2), abs=0.03)
    assert summary["ic_date"] == pytest.approx(1 / math.sqrt(2), abs=0.03)  # the mean of the per-date ICs
    assert summary["ic"][1] == pytest.approx(-1.0)
    assert summary["coverage"] == pytest.approx([0.1, 0.5, 0.9], abs=0.02)


def test_train_config_rejects_unknown_and_unordered_curriculum():
    from plus_ultra_ml.config import ConfigError, config_from_dict

    with pytest.raises(ConfigError, match="train.loss.sharp"):
        config_from_dict({"train": {"loss": {"sharp": 1.0}}})
    with pytest.raises(ConfigError, match="curriculum"):
        config_from_dict({"train": {"curriculum": [16, 8]}})
    assert TrainConfig(curriculum=(4, 8)).curriculum == (4, 8)


def test_pretext_validation_masks_are_fixed_and_leave_the_training_rng_alone():
    cfg = tiny_config(pretrain={"objective": "masked"})
    net = tiny_net(cfg)
    module = PretrainModule(net.backbone, net.recipe, cfg.pretrain).eval()
    b = batch()
    torch.manual_seed(123)
    state = torch.random.get_rng_state()
    first, second = module.seeded_step(b, 7).loss, module.seeded_step(b, 7).loss
    assert torch.equal(torch.random.get_rng_state(), state)
    assert first == second and module.seeded_step(b, 8).loss != first


def position_gradients(g: float) -> tuple[list[Tensor | None], Tensor]:
    """Backbone and position-head gradients of the utility term alone, at backbone gradient scale g."""
    torch.manual_seed(0)
    cfg = tiny_config(train={"loss": {"forecast": 0.0, "sharpe": 0.0, "utility": 1.0, "pnl_units": "volatility",
                                      "position_backbone_grad": g}})
    module = SupervisedModule(tiny_net(cfg), cfg.train, CostConfig()).eval()  # eval: no dropout noise
    torch.manual_seed(1)
    step = module.model_step(batch(B=12))
    step.loss.backward()
    backbone = [p.grad for n, p in module.net.named_parameters() if n.startswith("backbone.") and p.requires_grad]
    return backbone, module.net.position_head.linear.weight.grad.clone()


@pytest.mark.parametrize("g", [0.0, 0.25])
def test_position_terms_reach_the_backbone_scaled_by_position_backbone_grad(g):
    """The PnL terms' gradient into the backbone is g times the unscaled one; the head's is untouched."""
    full_backbone, full_head = position_gradients(1.0)
    backbone, head = position_gradients(g)
    assert full_head.abs().sum() > 0 and torch.allclose(head, full_head)
    reached = [(b, f) for b, f in zip(backbone, full_backbone) if f is not None and f.abs().sum() > 0]
    assert reached, "the unscaled utility term should reach the backbone"
    for scaled, unscaled in reached:
        if g == 0:
            assert scaled is None or scaled.abs().sum() == 0
        else:
            torch.testing.assert_close(scaled, g * unscaled, rtol=1e-4, atol=1e-8)


def test_per_date_ic_in_validation_ignores_the_level_shared_by_a_date():
    """A forecast that only knows each date's common move has pooled IC but no per-date IC."""
    torch.manual_seed(1)
    end = torch.arange(4000) // 40  # 100 dates of 40 names
    market = torch.randn(100)[end]
    target = torch.stack([market + 0.3 * torch.randn(4000)] * 2, dim=1)
    own = 0.01 * torch.randn(4000)  # spread within a date that knows nothing of the names' own moves
    forecast = torch.stack([market + own, market + own], dim=1)
    summary = validation_summary({"forecast": forecast, "target": target, "end": end}, ())
    assert summary["ic"][0] > 0.9
    assert abs(summary["ic_date"]) < 0.05


def date_batch(dates=3, names=5, T=8, F=4, H=2, seed=0):
    """`batch` laid out as training/datamodule.py's date-grouped batches: `names` windows ending at each date."""
    b = batch(B=dates * names, T=T, F=F, H=H, seed=seed)
    end = torch.arange(dates).repeat_interleave(names) + T
    b["end"] = end
    b["times"] = end.unsqueeze(1) + torch.arange(T) - T + 1  # (B, T)
    b["symbol"] = torch.arange(dates * names) % names % 3
    return b


@pytest.mark.parametrize("terms", [{"ic": 1.0}, {"listnet": 1.0}, {"portfolio_utility": 100.0},
                                   {"forecast": 1.0, "ic": 0.5, "portfolio_utility": 50.0}])
def test_cross_sectional_terms_train_every_weight_they_should(terms):
    torch.manual_seed(0)
    loss = {"forecast": 0.0, "sharpe": 0.0, **terms}
    cfg = tiny_config(train={"loss": loss, "cross_section": {"dates_per_batch": 3, "names_per_date": None}})
    module = SupervisedModule(tiny_net(cfg), cfg.train, CostConfig())
    step = module.model_step(date_batch())
    assert set(terms) <= set(step.parts) and torch.isfinite(step.loss)
    expected = sum(weight * step.parts[name] for name, weight in terms.items())
    assert float(step.loss.detach()) == pytest.approx(float(expected.detach()), rel=1e-6)
    step.loss.backward()
    grads = {n: p.grad for n, p in module.net.named_parameters() if p.requires_grad}
    assert any(g is not None and g.abs().sum() > 0 for n, g in grads.items() if n.startswith("backbone"))
    forecast_head = [g for n, g in grads.items() if n.startswith("forecast_head")]
    position_head = [g for n, g in grads.items() if n.startswith("position_head")]
    trains_forecast = any(t in terms for t in ("forecast", "ic", "listnet"))
    assert any(g is not None and g.abs().sum() > 0 for g in forecast_head) == trains_forecast
    assert any(g is not None and g.abs().sum() > 0 for g in position_head) == ("portfolio_utility" in terms)


def test_cross_sectional_terms_need_date_grouped_batches():
    with pytest.raises(ConfigError, match="train.cross_section"):
        tiny_config(train={"loss": {"ic": 1.0}})
    with pytest.raises(ConfigError, match="train.cross_section"):
        tiny_config(train={"monitor": "val/ic_date"})
    with pytest.raises(ConfigError, match="every weight"):
        tiny_config(train={"loss": {"forecast": 0.0, "sharpe": 0.0}})
