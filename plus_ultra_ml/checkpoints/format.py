"""The checkpoint file format: plain containers and tensors, written atomically, read without unpickling code.

Every Plus Ultra checkpoint is one ``torch.save`` of a mapping

    format, version, kind      which file it is ("plus_ultra.checkpoint", "plus_ultra.policy") and stage
    ...                        the kind's own fields (supervised.py, policy.py)
    lineage                    LineageRecord.to_dict()

written to a temporary file beside the target and renamed into place (a crash leaves no half file),
then its lineage sidecar ``<name>.lineage.json`` (lineage.write_sidecar, which records the file's
sha256). Reading is ``torch.load(map_location="cpu", weights_only=True)``: only containers, numbers,
strings and tensors come back, never code. Lightning's own training-state files (``last.ckpt``,
``best.ckpt``) are read through `read_payload` too.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from plus_ultra_ml.artifacts import atomic_path
from plus_ultra_ml.errors import PlusUltraError
from plus_ultra_ml.lineage import LineageRecord, write_sidecar

CHECKPOINT_FORMAT = "plus_ultra.checkpoint"  # model.pt: pretrained backbone or supervised model
POLICY_FORMAT = "plus_ultra.policy"  # policy.pt: a PPO policy
LIGHTNING_KEY = "plus_ultra"  # training/lit_modules.SPEC_KEY: where a Lightning .ckpt keeps our spec


class CheckpointError(PlusUltraError):
    """A checkpoint file is missing, unreadable, or not a Plus Ultra artifact."""


def write_payload(path: str | Path, payload: Mapping[str, Any], lineage: LineageRecord) -> Path:
    """``torch.save`` `payload` (with `lineage` embedded) atomically, then the lineage sidecar beside it."""
    path = Path(path)
    with atomic_path(path) as tmp:
        torch.save({**payload, "lineage": lineage.to_dict()}, tmp)
    write_sidecar(lineage, path)
    return path


def load_torch(path: str | Path, error: type[PlusUltraError] = CheckpointError, what: str = "checkpoint") -> Any:
    """Whatever a torch file holds (weights_only, on the CPU); `error` names what is wrong."""
    path = Path(path)
    if not path.is_file():
        raise error(f"{what} {path} does not exist")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several kinds for foreign or truncated files
        raise error(f"{path} is not a readable torch checkpoint (weights_only load): {exc}") from None


def read_payload(path: str | Path, error: type[PlusUltraError] = CheckpointError,
                 what: str = "checkpoint") -> Mapping[str, Any]:
    """The mapping in a checkpoint file (`load_torch`); anything else is an `error`."""
    payload = load_torch(path, error, what)
    if not isinstance(payload, Mapping):
        raise error(f"{path} holds a {type(payload).__name__}, not a checkpoint")
    return payload


def file_format(path: str | Path) -> str | None:
    """The ``format`` tag of a checkpoint file, or None when it has none or cannot be read."""
    try:
        return read_payload(path).get("format")
    except PlusUltraError:
        return None


def embedded_lineage(payload: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The lineage tree inside a checkpoint payload (ours, or a Lightning .ckpt's), if any."""
    if "lineage" in payload:
        return payload["lineage"]
    inner = payload.get(LIGHTNING_KEY)
    if isinstance(inner, Mapping) and "lineage" in inner:
        return inner["lineage"]
    return None
