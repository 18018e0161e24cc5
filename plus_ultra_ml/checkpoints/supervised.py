"""`model.pt`: a pretrained backbone or a supervised model, rebuilt from the file alone.

The file (format.py: atomic write, weights_only read, lineage embedded and beside it) holds

    format, version, kind      "plus_ultra.checkpoint", 1, "pretrain" | "supervised"
    model                      models.spec.model_spec(net): recipe (architecture, config,
                               vocabulary, heads) + state dict
    feature_names              the input columns, in order
    scaler                     the RobustScaler fitted on the training rows (serving reuses it)
    windows                    {"window": T, "horizon": H}
    lineage                    LineageRecord.to_dict()

and `model.lineage.json` beside it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from plus_ultra_ml.checkpoints.format import CHECKPOINT_FORMAT, CheckpointError, read_payload, write_payload
from plus_ultra_ml.data.windows import RobustScaler
from plus_ultra_ml.lineage import LineageRecord, plain
from plus_ultra_ml.models.network import PlusUltraNet
from plus_ultra_ml.models.spec import ModelSpecError, build_from_spec, model_spec

CHECKPOINT_VERSION = 1


@dataclass(frozen=True)
class TrainedModel:
    """A loaded artifact: the network (eval mode) and everything needed to feed it."""

    net: PlusUltraNet
    scaler: RobustScaler
    feature_names: list[str]
    window: int
    horizon: int
    kind: str
    lineage: LineageRecord
    path: Path


def write_checkpoint(path: str | Path, *, kind: str, net: PlusUltraNet, feature_names: Sequence[str],
                     scaler: RobustScaler, window: int, horizon: int, lineage: LineageRecord) -> Path:
    """Write the artifact atomically, then its lineage sidecar (which records the file's sha256)."""
    return write_payload(path, {
        "format": CHECKPOINT_FORMAT,
        "version": CHECKPOINT_VERSION,
        "kind": kind,
        "model": model_spec(net),
        "feature_names": [str(f) for f in feature_names],
        "scaler": plain(scaler.to_dict()),
        "windows": {"window": int(window), "horizon": int(horizon)},
    }, lineage)


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> TrainedModel:
    """Rebuild a `model.pt` artifact from the file alone (no config, no data)."""
    payload = read_payload(path)
    if payload.get("format") != CHECKPOINT_FORMAT or payload.get("version") != CHECKPOINT_VERSION:
        raise CheckpointError(
            f"{path} is not a {CHECKPOINT_FORMAT} v{CHECKPOINT_VERSION} file (format={payload.get('format')!r}); "
            "pass the model.pt written by `plus-ultra train` / `plus-ultra pretrain`"
        )
    try:
        net = build_from_spec(payload["model"], map_location)
    except ModelSpecError as error:
        raise CheckpointError(f"{path}: {error}") from None
    net.eval()
    return TrainedModel(
        net=net,
        scaler=RobustScaler.from_dict(payload["scaler"]),
        feature_names=list(payload["feature_names"]),
        window=int(payload["windows"]["window"]),
        horizon=int(payload["windows"]["horizon"]),
        kind=str(payload["kind"]),
        lineage=LineageRecord.from_dict(payload["lineage"]),
        path=Path(path),
    )
