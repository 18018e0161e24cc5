"""Building from config: unknown or mistyped backbone keys are named; the presets build."""

from __future__ import annotations

from pathlib import Path

import pytest

from plus_ultra_ml.config import ConfigError, ModelConfig, load_config
from plus_ultra_ml.profiling import carried_backbone
from plus_ultra_ml.models.registry import ARCHITECTURES, backbone_config, build_from_config, recipe_from_config

CONFIGS = Path(__file__).resolve().parents[3] / "configs"


def test_unknown_backbone_key_is_named_with_the_known_ones():
    cfg = ModelConfig(architecture="hybrid_transformer", backbone={"depht": 4})
    with pytest.raises(ConfigError) as error:
        build_from_config(cfg, 10, 5, ["SPY"])
    message = str(error.value)
    assert "unknown key 'model.backbone.depht' for architecture hybrid_transformer; known: " in message
    assert "n_layers" in message and "d_model" in message


@pytest.mark.parametrize(
    ("params", "needle"),
    [
        ({"n_layers": "four"}, "'model.backbone.n_layers' of hybrid_transformer must be int"),
        ({"n_layers": True}, "must be int"),
        ({"dropout": "0.1"}, "must be float"),
        ({"grad_checkpoint": 1}, "must be bool"),
        ({"d_model": 30, "n_heads": 4}, "n_heads"),  # the dataclass's own check
        ({"n_layers": 0}, ">= 1"),
    ],
)
def test_mistyped_or_invalid_backbone_values_are_config_errors(params, needle):
    with pytest.raises(ConfigError, match=needle):
        backbone_config("hybrid_transformer", params)


def test_ints_widen_to_float_fields():
    cfg = backbone_config("state_space", {"dt_max": 1, "d_model": 8})
    assert cfg.dt_max == 1.0 and isinstance(cfg.dt_max, float)


def test_unknown_architecture_lists_the_registry():
    with pytest.raises(ConfigError, match="unknown model.architecture 'transformr'; known: hybrid_transformer"):
        build_from_config(ModelConfig(architecture="transformr"), 10, 5, ["SPY"])


def test_model_config_refuses_unordered_quantiles():
    with pytest.raises(ValueError, match="quantiles"):
        ModelConfig(quantiles=(0.9, 0.1))


def test_registry_configs_are_frozen_dataclasses_with_defaults():
    for name, arch in ARCHITECTURES.items():
        cfg = arch.config()
        with pytest.raises(AttributeError):
            cfg.d_model = 1  # frozen
        assert "d_model" in {f for f in cfg.__dataclass_fields__}, name


@pytest.mark.parametrize("preset", ["smoke", "desktop"])
def test_presets_build_every_architecture_at_their_scale(preset):
    experiment = load_config(CONFIGS / f"{preset}.yaml")
    sizes = {}
    for name in ARCHITECTURES:
        model = experiment.model.model_copy(
            update={"architecture": name, "backbone": carried_backbone(experiment.model, name)}
        )
        net = build_from_config(model, 60, experiment.windows.horizon, ["SPY", "QQQ"])
        sizes[name] = sum(p.numel() for p in net.parameters())
    own = sizes[experiment.model.architecture]
    if preset == "smoke":
        assert own < 100_000, sizes  # tiny
    else:
        assert 1_000_000 < own < 10_000_000, sizes  # "a few million"


def test_default_preset_is_seed_scale_and_validates_without_building():
    experiment = load_config(CONFIGS / "default.yaml")
    recipe = recipe_from_config(experiment.model, 128, experiment.windows.horizon, ["SPY"])
    assert recipe.backbone.n_layers == 16 and recipe.backbone.n_heads == 8 and recipe.backbone.d_model >= 512
