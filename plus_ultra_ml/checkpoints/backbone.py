"""Warm starts: a pretrained backbone's weights, from any Plus Ultra file, into a new network.

`warm_start` accepts a `model.pt` (supervised.py), a Lightning checkpoint written by training/
(which embeds the model spec under ``plus_ultra``), or a bare model spec (models.spec.model_spec
saved as is); it checks that the backbone would be rebuilt identically and names every mismatched
config or weight key.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from plus_ultra_ml.artifacts import file_fingerprint
from plus_ultra_ml.checkpoints.format import CHECKPOINT_FORMAT, LIGHTNING_KEY, CheckpointError, read_payload
from plus_ultra_ml.errors import PlusUltraError
from plus_ultra_ml.lineage import LineageRecord
from plus_ultra_ml.models.network import PlusUltraNet
from plus_ultra_ml.models.spec import SPEC_FORMAT, ModelSpecError, recipe_from_spec

logger = logging.getLogger(__name__)


class WarmStartError(PlusUltraError):
    """A pretrained backbone does not fit the model being trained (the message names every key)."""


@dataclass(frozen=True)
class SourceModel:
    """A model spec found in some checkpoint file, with what else the file says about it."""

    spec: Mapping[str, Any]
    feature_names: list[str] | None
    lineage: LineageRecord | None
    kind: str | None


def read_model_source(path: str | Path) -> SourceModel:
    """The model spec inside an artifact, a training Lightning checkpoint, or a bare spec file."""
    payload = read_payload(path)
    if payload.get("format") == CHECKPOINT_FORMAT:
        return SourceModel(payload["model"], list(payload["feature_names"]),
                           LineageRecord.from_dict(payload["lineage"]), str(payload["kind"]))
    if isinstance(payload.get(LIGHTNING_KEY), Mapping) and "model_spec" in payload[LIGHTNING_KEY]:
        inner = payload[LIGHTNING_KEY]
        return SourceModel(inner["model_spec"], None, None, inner.get("kind"))
    if payload.get("format") == SPEC_FORMAT:
        return SourceModel(payload, None, None, None)
    raise CheckpointError(
        f"{path} holds no Plus Ultra model (expected a model.pt artifact, a training .ckpt or a model spec)"
    )


def _config_mismatches(source: Mapping[str, Any], target: Mapping[str, Any]) -> list[str]:
    """Dotted keys where the backbone-relevant parts of two recipes differ."""
    problems = []
    for key in ("architecture", "n_features", "symbol_dim"):
        if source.get(key) != target.get(key):
            problems.append(f"{key}: checkpoint {source.get(key)!r}, this run {target.get(key)!r}")
    a, b = source.get("backbone", {}), target.get("backbone", {})
    for key in sorted(set(a) | set(b)):
        if a.get(key) != b.get(key):
            problems.append(f"model.backbone.{key}: checkpoint {a.get(key)!r}, this run {b.get(key)!r}")
    if list(source.get("vocabulary", [])) != list(target.get("vocabulary", [])):
        problems.append(f"vocabulary: checkpoint {source.get('vocabulary')}, this run {target.get('vocabulary')}")
    return problems


def warm_start(net: PlusUltraNet, path: str | Path, feature_names: Sequence[str],
               cutoff: pd.Timestamp | None = None) -> dict[str, Any]:
    """Load the backbone weights of the checkpoint at `path` into `net` (heads stay as they are).

    Checks, each failure naming its keys (`WarmStartError`): the backbone config, feature count,
    symbol embedding and vocabulary match; the feature names match when the file records them;
    every backbone weight exists in both with the same shape; and, when the file has lineage, its
    data cutoff is not after `cutoff` (a backbone must not have seen the bars this run scores on).
    Returns the parent record for lineage: {"path", "fingerprint", "kind", "data_cutoff"}.
    """
    path = Path(path)
    source = read_model_source(path)
    try:
        recipe_from_spec(source.spec)
    except ModelSpecError as error:
        raise WarmStartError(f"pretrained checkpoint {path}: {error}") from None
    problems = _config_mismatches(source.spec, net.recipe.to_dict())
    if source.feature_names is not None and list(source.feature_names) != list(feature_names):
        theirs, ours = list(source.feature_names), list(feature_names)
        only_theirs = [f for f in theirs if f not in ours]
        only_ours = [f for f in ours if f not in theirs]
        detail = f"only in checkpoint {only_theirs}, only in this run {only_ours}" if only_theirs or only_ours \
            else "same names in a different order"
        problems.append(f"feature_names differ: {detail}")
    state = {k[len("backbone."):]: v for k, v in source.spec["state_dict"].items() if k.startswith("backbone.")}
    own = net.backbone.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = sorted(k for k in set(own) & set(state) if tuple(own[k].shape) != tuple(state[k].shape))
    problems += [f"backbone.{k}: missing from checkpoint" for k in missing]
    problems += [f"backbone.{k}: not in this model" for k in unexpected]
    problems += [f"backbone.{k}: shape {tuple(state[k].shape)} in checkpoint, {tuple(own[k].shape)} here"
                 for k in shapes]
    if problems:
        raise WarmStartError(
            f"pretrained checkpoint {path} does not fit this model:\n  " + "\n  ".join(problems)
            + "\nuse the same model.* settings, features and symbols as the pretraining run"
        )
    parent_cutoff = source.lineage.data_cutoff if source.lineage else None
    if cutoff is not None and parent_cutoff is not None and pd.Timestamp(parent_cutoff) > cutoff:
        raise WarmStartError(
            f"pretrained checkpoint {path} saw data up to {parent_cutoff}, after this run's cutoff {cutoff}: "
            "it may have seen the bars this run is scored on; pretrain on data that ends earlier"
        )
    if source.lineage is None:
        logger.warning("warm start from %s: the file has no lineage record; its data cutoff cannot be checked", path)
    net.backbone.load_state_dict(state, strict=True)
    return {"path": str(path.resolve()), "fingerprint": file_fingerprint(path), "kind": source.kind,
            "data_cutoff": parent_cutoff}
