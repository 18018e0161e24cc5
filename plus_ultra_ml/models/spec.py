"""Model specs: a network as plain containers that rebuild it from the file alone.

A spec is a dict of str/int/float/bool/list/dict plus tensors (the state dict), so a file that
holds one can be read with `torch.load(weights_only=True)`: loading never unpickles code.
It carries the architecture name, its config, n_features, the symbol vocabulary and the head
config (the recipe), and the weights. This module does no file I/O: the checkpoint room
(plus_ultra_ml/checkpoints/) embeds `model_spec(net)` in every checkpoint file and calls
`build_from_spec` to restore, and the training room embeds it in its Lightning checkpoints.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from plus_ultra_ml.config import ConfigError
from plus_ultra_ml.errors import PlusUltraError
from plus_ultra_ml.models.heads import HeadsConfig, SymbolVocabulary
from plus_ultra_ml.models.network import ModelRecipe, PlusUltraNet
from plus_ultra_ml.models.registry import backbone_config, build_model

SPEC_FORMAT = "plus_ultra.model_spec"
SPEC_VERSION = 1
_RECIPE_KEYS = ("architecture", "backbone", "n_features", "vocabulary", "heads", "symbol_dim", "symbol_dropout")


class ModelSpecError(PlusUltraError):
    """A saved model spec is unreadable, of another format, or does not match its own recipe."""


def model_spec(net: PlusUltraNet) -> dict[str, Any]:
    """The network as plain containers: format tag, recipe fields, and the state dict (on CPU)."""
    state = {key: value.detach().cpu() for key, value in net.state_dict().items()}
    return {"format": SPEC_FORMAT, "version": SPEC_VERSION, **net.recipe.to_dict(), "state_dict": state}


def recipe_from_spec(spec: Mapping[str, Any]) -> ModelRecipe:
    """The recipe of a spec, validated like a config (unknown backbone keys are errors)."""
    if spec.get("format") != SPEC_FORMAT or spec.get("version") != SPEC_VERSION:
        raise ModelSpecError(
            f"not a {SPEC_FORMAT} v{SPEC_VERSION} spec (format={spec.get('format')!r}, "
            f"version={spec.get('version')!r}); re-export it with models.spec.model_spec"
        )
    missing = [key for key in (*_RECIPE_KEYS, "state_dict") if key not in spec]
    if missing:
        raise ModelSpecError(f"model spec lacks {missing}; it was not written by models.spec.model_spec")
    try:
        return ModelRecipe(
            architecture=spec["architecture"],
            backbone=backbone_config(spec["architecture"], spec["backbone"]),
            n_features=int(spec["n_features"]),
            vocabulary=SymbolVocabulary(tuple(spec["vocabulary"])),
            heads=HeadsConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in spec["heads"].items()}),
            symbol_dim=int(spec["symbol_dim"]),
            symbol_dropout=float(spec["symbol_dropout"]),
        )
    except (ConfigError, TypeError, ValueError) as error:
        raise ModelSpecError(f"model spec has an invalid recipe: {error}") from None


def build_from_spec(spec: Mapping[str, Any], map_location: str | torch.device = "cpu") -> PlusUltraNet:
    """Rebuild the network of `spec` and load its weights (strict: every tensor must match)."""
    net = build_model(recipe_from_spec(spec))
    try:
        net.load_state_dict(spec["state_dict"], strict=True)
    except RuntimeError as error:
        raise ModelSpecError(f"model spec weights do not fit its own recipe: {error}") from None
    return net.to(map_location)
