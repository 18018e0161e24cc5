"""Lineage: what made an artifact, as a record written with it (DESIGN §4).

The fingerprints every record is built from: the code version (package version plus git commit
when the package runs from a checkout), content hashes of frames and files. And the record itself:
`LineageRecord` says which database (path + content hash), which panel (time range, rows), which
feature set, which resolved config (and its hash), which parent checkpoint (by content hash), which
code and seed made a checkpoint, the last bar any part of its training saw (`data_cutoff`), the run
ids (Dagster, W&B) and its held-out metrics.

A checkpoint carries its record inside (under the key ``lineage``) and beside it as a JSON sidecar
(``model.pt`` -> ``model.lineage.json``, which also holds the checkpoint's own sha256, written by
`write_sidecar`). Reading a record back from a checkpoint file, and following its parents, is the
checkpoint room's (checkpoints/chain.py: `read_lineage`, `lineage_chain`): this module opens no
torch file.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import hashlib
import json
import math
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

import plus_ultra_ml
from plus_ultra_ml.artifacts import file_fingerprint, write_text_atomic
from plus_ultra_ml.errors import PlusUltraError

LINEAGE_FORMAT = "plus_ultra.lineage"
LINEAGE_VERSION = 1
SIDECAR_SUFFIX = ".lineage.json"

PACKAGE_ROOT = Path(plus_ultra_ml.__file__).resolve().parent


@functools.cache
def code_version() -> dict[str, str | bool | None]:
    """Package version, and the git commit (and whether the tree is dirty) when in a checkout."""
    commit, dirty = None, None
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=PACKAGE_ROOT, capture_output=True, text=True, timeout=5, check=True
        ).stdout.strip()
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=PACKAGE_ROOT, capture_output=True,
            text=True, timeout=5, check=True,
        ).stdout
        dirty = bool(status.strip())
    except (OSError, subprocess.SubprocessError):
        pass  # installed without a checkout: the package version alone identifies the code
    return {"package": plus_ultra_ml.__version__, "git_commit": commit, "git_dirty": dirty}


def code_version_string() -> str:
    return code_version_text(code_version())


def frame_fingerprint(frame: pd.DataFrame) -> str:
    """sha256 over a frame's index, column names and values (row order matters)."""
    digest = hashlib.sha256()
    digest.update("|".join(map(str, frame.columns)).encode())
    digest.update(pd.util.hash_pandas_object(frame, index=True).to_numpy().tobytes())
    return digest.hexdigest()


def database_fingerprint(path: str | Path) -> str:
    """sha256 of the database file's bytes."""
    return file_fingerprint(path)


# --------------------------------------------------------------------------------------------
# the record
# --------------------------------------------------------------------------------------------
class LineageError(PlusUltraError):
    """A lineage record or sidecar is missing, unreadable, or disagrees with its checkpoint."""


def plain(value: Any) -> Any:
    """JSON- and weights_only-safe containers: mappings -> dict, tuples -> list, numpy scalars ->
    Python numbers, non-finite floats -> None, timestamps -> ISO text."""
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, pd.Timestamp | dt.datetime):
        return value.isoformat()
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "item") and not isinstance(value, str | bytes):  # numpy / torch scalars
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


@dataclass(frozen=True)
class LineageRecord:
    """What made a checkpoint. Every field is plain data (str, int, float, bool, None, list, dict)."""

    kind: str  # "pretrain" | "supervised" | ... (the stage that wrote the checkpoint)
    created_at: str  # ISO UTC
    database: Mapping[str, Any]  # {"path", "fingerprint"} (sha256 of the SQLite file; None if unknown)
    panel: Mapping[str, Any]  # {"start", "end", "rows", "symbols", "fingerprint"}
    features: Mapping[str, Any]  # {"fingerprint", "count", "names"}
    config: Mapping[str, Any]  # the full resolved ExperimentConfig
    config_hash: str  # ExperimentConfig.fingerprint()
    code_version: Mapping[str, Any]  # {"package", "git_commit", "git_dirty"}
    seed: int
    data_cutoff: str  # ISO: the last bar any part of training (fit, early stopping, scaler) saw
    split: Mapping[str, Any]  # Split.to_dict(): segment bounds and embargo
    parent: Mapping[str, Any] | None = None  # {"path", "fingerprint", "kind", "data_cutoff"} of the warm start
    run_ids: Mapping[str, Any] = field(default_factory=dict)  # dagster_run_id, dagster_asset, dagster_partition, wandb_run_id
    metrics: Mapping[str, Any] = field(default_factory=dict)  # held-out metrics (test segment only)
    training: Mapping[str, Any] = field(default_factory=dict)  # epochs, steps, wall time, resumed_from_step, params

    def to_dict(self) -> dict[str, Any]:
        return {"format": LINEAGE_FORMAT, "version": LINEAGE_VERSION, **plain(dataclasses.asdict(self))}

    @classmethod
    def from_dict(cls, tree: Mapping[str, Any]) -> LineageRecord:
        if tree.get("format") != LINEAGE_FORMAT or tree.get("version") != LINEAGE_VERSION:
            raise LineageError(
                f"not a {LINEAGE_FORMAT} v{LINEAGE_VERSION} record (format={tree.get('format')!r}, "
                f"version={tree.get('version')!r})"
            )
        names = {f.name for f in dataclasses.fields(cls)}
        missing = [f.name for f in dataclasses.fields(cls)
                   if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING and f.name not in tree]
        if missing:
            raise LineageError(f"lineage record lacks {missing}")
        return cls(**{k: v for k, v in tree.items() if k in names})

    def with_updates(self, **changes: Any) -> LineageRecord:
        return dataclasses.replace(self, **changes)

    def summary(self) -> dict[str, Any]:
        """A flat one-level view (for Dagster metadata and CLI tables)."""
        return {
            "kind": self.kind,
            "created_at": self.created_at,
            "database": self.database.get("path"),
            "database_fingerprint": _short(self.database.get("fingerprint")),
            "panel": f"{self.panel.get('start')} .. {self.panel.get('end')} ({self.panel.get('rows')} rows)",
            "features": f"{self.features.get('count')} ({_short(self.features.get('fingerprint'))})",
            "config_hash": _short(self.config_hash),
            "parent": (self.parent or {}).get("path"),
            "parent_fingerprint": _short((self.parent or {}).get("fingerprint")),
            "code_version": code_version_text(self.code_version),
            "seed": self.seed,
            "data_cutoff": self.data_cutoff,
            "wandb_run_id": self.run_ids.get("wandb_run_id"),
            "dagster_run_id": self.run_ids.get("dagster_run_id"),
        }


def _short(digest: str | None) -> str | None:
    return digest[:12] if isinstance(digest, str) else None


def code_version_text(info: Mapping[str, Any]) -> str:
    commit = info.get("git_commit")
    suffix = f"+g{commit[:10]}{'.dirty' if info.get('git_dirty') else ''}" if commit else ""
    return f"{info.get('package')}{suffix}"


def now_utc() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


# --------------------------------------------------------------------------------------------
# the sidecar
# --------------------------------------------------------------------------------------------
def sidecar_path(checkpoint: str | Path) -> Path:
    """model.pt -> model.lineage.json (beside the checkpoint)."""
    checkpoint = Path(checkpoint)
    return checkpoint.with_name(checkpoint.stem + SIDECAR_SUFFIX)


def write_sidecar(record: LineageRecord, checkpoint: str | Path) -> Path:
    """Write the record plus the checkpoint's path and sha256 beside it, atomically."""
    checkpoint = Path(checkpoint)
    tree = {**record.to_dict(), "checkpoint": {"path": str(checkpoint.resolve()),
                                               "fingerprint": file_fingerprint(checkpoint)}}
    return write_text_atomic(sidecar_path(checkpoint), json.dumps(tree, indent=2, sort_keys=True) + "\n")
