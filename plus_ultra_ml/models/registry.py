"""Architecture name -> (config dataclass, backbone class), and building models from config.

`model.backbone` in the experiment YAML is a free mapping until it meets its architecture here:
every key must be a field of that architecture's dataclass (an unknown key is a `ConfigError`
naming it and listing the known ones), every value must have the field's type, and the
dataclass's own checks (`__post_init__`) run before any tensor is allocated.
"""

from __future__ import annotations

import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from types import MappingProxyType
from typing import Any

from torch import nn

from plus_ultra_ml.config import ConfigError, ModelConfig
from plus_ultra_ml.models.heads import HeadsConfig, SymbolVocabulary
from plus_ultra_ml.models.hybrid_transformer import HybridTransformer, HybridTransformerConfig
from plus_ultra_ml.models.layers import InputSpec
from plus_ultra_ml.models.moe_transformer import MoETransformer, MoETransformerConfig
from plus_ultra_ml.models.network import ModelRecipe, PlusUltraNet
from plus_ultra_ml.models.omni_mixture import OmniMixture, OmniMixtureConfig
from plus_ultra_ml.models.state_space import StateSpace, StateSpaceConfig
from plus_ultra_ml.models.temporal_fusion import TemporalFusion, TemporalFusionConfig


@dataclass(frozen=True)
class Architecture:
    config: type  # frozen dataclass with defaults
    module: type[nn.Module]  # module(config, InputSpec); forward(x (B,T,F), symbol_ids (B,)|None) -> (B,T,D)


ARCHITECTURES: Mapping[str, Architecture] = MappingProxyType({
    "hybrid_transformer": Architecture(HybridTransformerConfig, HybridTransformer),
    "omni_mixture": Architecture(OmniMixtureConfig, OmniMixture),
    "moe_transformer": Architecture(MoETransformerConfig, MoETransformer),
    "state_space": Architecture(StateSpaceConfig, StateSpace),
    "temporal_fusion": Architecture(TemporalFusionConfig, TemporalFusion),
})


def architecture(name: str) -> Architecture:
    if name not in ARCHITECTURES:
        raise ConfigError(f"unknown model.architecture {name!r}; known: {', '.join(ARCHITECTURES)}")
    return ARCHITECTURES[name]


def _typed(name: str, key: str, value: Any, hint: Any) -> Any:
    """`value` if it has type `hint` (YAML lists become tuples, ints widen to float), else ConfigError."""
    where = f"model.backbone.{key}"
    if typing.get_origin(hint) is tuple:
        item = typing.get_args(hint)[0]
        if not isinstance(value, list | tuple):
            raise ConfigError(f"'{where}' of {name} must be a list, got {value!r}")
        return tuple(_typed(name, key, v, item) for v in value)
    if hint is float and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if (hint is int and isinstance(value, bool)) or not isinstance(value, hint):
        raise ConfigError(f"'{where}' of {name} must be {hint.__name__}, got {value!r}")
    return value


def backbone_config(name: str, params: Mapping[str, Any]) -> Any:
    """The architecture's config dataclass from a plain mapping, checked key by key."""
    cls = architecture(name).config
    known = [f.name for f in fields(cls)]
    for key in params:
        if key not in known:
            raise ConfigError(
                f"unknown key 'model.backbone.{key}' for architecture {name}; known: {', '.join(known)}"
            )
    hints = typing.get_type_hints(cls)
    values = {key: _typed(name, key, value, hints[key]) for key, value in params.items()}
    try:
        return cls(**values)
    except ValueError as error:
        raise ConfigError(f"invalid model.backbone for {name}: {error}") from None


def build_backbone(name: str, config: Any, inputs: InputSpec) -> nn.Module:
    """A backbone from its config object (use `backbone_config` to get one from a mapping)."""
    arch = architecture(name)
    if not isinstance(config, arch.config):
        raise ConfigError(f"{name} needs a {arch.config.__name__}, got {type(config).__name__}")
    return arch.module(config, inputs)


def recipe_from_config(
    cfg: ModelConfig, n_features: int, horizons: int, vocabulary: Sequence[str]
) -> ModelRecipe:
    """Validate `cfg` against the architecture and fix the data-dependent sizes."""
    try:
        heads = HeadsConfig(horizons, tuple(cfg.quantiles), 1, cfg.policy_init_log_std)
        vocab = SymbolVocabulary(tuple(vocabulary))
    except ValueError as error:
        raise ConfigError(f"invalid model heads or vocabulary: {error}") from None
    if n_features < 1:
        raise ConfigError(f"a model needs at least one feature column, got n_features={n_features}")
    return ModelRecipe(
        architecture=cfg.architecture,
        backbone=backbone_config(cfg.architecture, cfg.backbone),
        n_features=n_features,
        vocabulary=vocab,
        heads=heads,
        symbol_dim=cfg.symbol_embedding_dim,
        symbol_dropout=cfg.symbol_dropout,
    )


def build_model(recipe: ModelRecipe) -> PlusUltraNet:
    """A freshly initialised network (backbone + heads) from its recipe."""
    return PlusUltraNet(recipe, build_backbone(recipe.architecture, recipe.backbone, recipe.inputs))


def build_from_config(
    cfg: ModelConfig, n_features: int, horizons: int, vocabulary: Sequence[str]
) -> PlusUltraNet:
    """`model:` section + data sizes -> network. The vocabulary is the training symbols, in order."""
    return build_model(recipe_from_config(cfg, n_features, horizons, vocabulary))
