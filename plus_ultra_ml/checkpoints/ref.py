"""`CheckpointRef`: what one stage hands the next, a checkpoint file and the lineage it carries.

Torch-free (the Dagster layer imports it at module level): the file is not opened here. Whoever
needs the network reads `ref.path` with supervised.load_checkpoint, backbone.warm_start or
rl.trained.load_policy.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from plus_ultra_ml.lineage import LineageRecord, sidecar_path


@dataclass(frozen=True)
class CheckpointRef:
    """A checkpoint file (`model.pt` or `policy.pt`) and its lineage record."""

    path: Path
    lineage: LineageRecord
    run_id: str | None = None  # the orchestrator run that handed it on (set by the Dagster IO manager)

    @property
    def kind(self) -> str:
        return self.lineage.kind

    @property
    def sidecar(self) -> Path:
        return sidecar_path(self.path)

    def to_dict(self) -> dict[str, Any]:
        return {"path": str(self.path), "lineage": self.lineage.to_dict(), "run_id": self.run_id}

    @classmethod
    def from_dict(cls, tree: Mapping[str, Any]) -> CheckpointRef:
        return cls(Path(tree["path"]), LineageRecord.from_dict(tree["lineage"]), tree.get("run_id"))
