"""Model specs: a network as plain containers that rebuild it from the file alone.

A spec is a dict of str/int/float/bool/list/dict plus tensors (the state dict), so it is written
with `torch.save` and read with `torch.load(weights_only=True)`: loading never unpickles code.
It carries the architecture name, its config, n_features, the symbol vocabulary and the head
config (the recipe), and the weights. The training room embeds `model_spec(net)` in its
Lightning checkpoints under one key and calls `build_from_spec` to restore.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from plus_ultra_ml.artifacts import atomic_path
from plus_ultra_ml.config import ConfigError
from plus_ultra_ml.errors import PlusUltraError
from plus_ultra_ml.models.heads import HeadsConfig, SymbolVocabulary
from plus_ultra_ml.models.network import ModelRecipe, PlusUltraNet
from plus_ultra_ml.models.registry import backbone_config, build_model

logger = logging.getLogger(__name__)

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


def save_model(net: PlusUltraNet, path: str | Path) -> Path:
    """Write `model_spec(net)` to `path` atomically (temp file + rename)."""
    path = Path(path)
    with atomic_path(path) as tmp:
        torch.save(model_spec(net), tmp)
    logger.info("saved %s model (%d parameters) to %s", net.recipe.architecture,
                sum(p.numel() for p in net.parameters()), path)
    return path


def load_model(path: str | Path, map_location: str | torch.device = "cpu") -> PlusUltraNet:
    """Read a spec written by `save_model` (weights_only: no code is unpickled) and rebuild it."""
    path = Path(path)
    if not path.is_file():
        raise ModelSpecError(f"model file {path} does not exist")
    try:
        spec = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises several kinds for truncated or foreign files
        raise ModelSpecError(f"model file {path} is not a readable torch file: {error}") from None
    if not isinstance(spec, Mapping):
        raise ModelSpecError(f"model file {path} holds a {type(spec).__name__}, not a model spec")
    return build_from_spec(spec, map_location)
