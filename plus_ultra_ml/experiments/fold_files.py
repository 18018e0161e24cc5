"""A walk-forward fold's files: written once when the fold finishes, read back to resume or to rebuild the report.

A finished fold lives in ``<out>/folds/<fold name>/``:

    predictions.parquet  the fold's out-of-sample rows in the report format (`FoldResult.predictions`,
                         the same frame the Dagster ``walkforward_fold`` partition stores)
    metrics.json         the fold's per-seed training numbers (`FoldResult.metrics`; NaN as null)
    manifest.json        what made it: the fold's split, the fold config hash, the fingerprint of the
                         data the fold reads, the code version, the full resolved config, the
                         checkpoints, and the sha256 of the two files above

The folder is written under a temporary name and renamed into place, so it is either complete or
absent; an existing fold folder is never rewritten (`FoldStore.save` refuses). A rerun reuses a
finished fold only when its manifest matches the run being asked for:

- the fold config hash: `ExperimentConfig.fingerprint` of the config without the settings that
  choose which folds run or where things are read and logged, and cannot change one fold's result
  (`NOT_FOLD_SETTINGS`: walkforward.n_folds, data.db_path, tracking, service, automation);
- the data fingerprint: the panel, feature and regime rows up to the last bar the fold reads (its
  test end plus the target horizon), the feature definitions and the recorded calendars. Appending
  candles after the fold's window leaves it unchanged (folds are anchored, features causal), so a
  finished fold is kept while new folds are added; any change to the bars it read is a mismatch;
- the split (segment bounds and embargo).

A mismatch is a `FoldMismatchError` that names what differs (config keys, data, split), never a
silent mix of runs. A different code version is logged as a warning and recorded, not an error.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import shutil
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from plus_ultra_ml.artifacts import file_fingerprint
from plus_ultra_ml.config import ExperimentConfig, config_from_dict
from plus_ultra_ml.data.training_data import TrainingData
from plus_ultra_ml.errors import PlusUltraError
from plus_ultra_ml.evaluation.walkforward import Fold
from plus_ultra_ml.lineage import code_version, code_version_text, frame_fingerprint, now_utc, plain

logger = logging.getLogger(__name__)

FOLD_FORMAT = "plus_ultra.walkforward_fold"
FOLD_VERSION = 1
FOLDS_DIR = "folds"
PREDICTIONS = "predictions.parquet"
METRICS = "metrics.json"
MANIFEST = "manifest.json"
PARTIAL = ".partial-"  # infix of a fold folder still being written (or left by a killed run)

# Config settings that select folds or name inputs/outputs, and cannot change one fold's result.
# section -> keys (None: the whole section)
NOT_FOLD_SETTINGS: dict[str, tuple[str, ...] | None] = {
    "walkforward": ("n_folds",), "data": ("db_path",), "tracking": None, "service": None, "automation": None}


class FoldMismatchError(PlusUltraError):
    """A finished fold's files were made by a different config, data or split than the run asked for."""


def _fold_settings(tree: Mapping[str, Any]) -> dict[str, Any]:
    kept = {}
    for section, value in tree.items():
        dropped = NOT_FOLD_SETTINGS.get(section, ())
        if section in NOT_FOLD_SETTINGS and dropped is None:
            continue
        kept[section] = {k: v for k, v in value.items() if k not in dropped} if isinstance(value, Mapping) else value
    return kept


def fold_config_hash(cfg: ExperimentConfig) -> str:
    """sha256 of the resolved config without `NOT_FOLD_SETTINGS` (what can change a fold's result)."""
    blob = json.dumps(_fold_settings(cfg.to_dict()), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()


def last_bar_read(data: TrainingData, fold: Fold, horizon: int) -> pd.Timestamp:
    """The last bar a fold reads: its test end plus the `horizon` bars its targets need (or the data's end)."""
    grid = data.panel.index.get_level_values("timestamp").unique().sort_values()
    position = int(grid.searchsorted(fold.split.bounds["test"][1]))
    return grid[min(position + horizon, len(grid) - 1)]


def fold_data_fingerprint(data: TrainingData, fold: Fold, horizon: int) -> str:
    """sha256 over the panel, feature and regime rows up to `last_bar_read`, the feature definitions and calendars."""
    from plus_ultra_ml.data.calendar import CALENDAR_ATTR

    last = last_bar_read(data, fold, horizon)
    rows = np.asarray(data.panel.index.get_level_values("timestamp") <= last)
    parts = {"panel": frame_fingerprint(data.panel[rows]), "features": frame_fingerprint(data.features[rows]),
             "feature_set": data.feature_fingerprint, "last_bar": last.isoformat(),
             "calendars": plain(data.panel.attrs.get(CALENDAR_ATTR) or {})}
    if data.regimes is not None:
        regimes = data.regimes
        parts["regimes"] = frame_fingerprint(regimes[np.asarray(regimes.index.get_level_values("timestamp") <= last)])
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


@dataclass(frozen=True)
class FoldIdentity:
    """What a fold's result is a function of; a finished fold is reused only when all of it matches."""

    fold: str
    split: dict[str, Any]
    config_hash: str
    data_fingerprint: str
    config: dict[str, Any]

    @classmethod
    def of(cls, cfg: ExperimentConfig, data: TrainingData, fold: Fold) -> FoldIdentity:
        return cls(fold.name, fold.split.to_dict(), fold_config_hash(cfg),
                   fold_data_fingerprint(data, fold, cfg.windows.horizon), cfg.to_dict())


def _differences(stored: Mapping[str, Any], current: Mapping[str, Any], prefix: str = "") -> list[str]:
    keys = sorted(set(stored) | set(current))
    out = []
    for key in keys:
        a, b = stored.get(key), current.get(key)
        if isinstance(a, Mapping) and isinstance(b, Mapping):
            out += _differences(a, b, f"{prefix}{key}.")
        elif a != b:
            out.append(f"{prefix}{key} = {a!r} there, {b!r} now")
    return out


class FoldStore:
    """The finished folds under ``<out>/folds``: check them against a run, load them, add new ones (never rewrite)."""

    def __init__(self, out: str | Path):
        self.out = Path(out)
        self.root = self.out / FOLDS_DIR

    def folder(self, name: str) -> Path:
        return self.root / name

    def finished(self) -> list[str]:
        """Names of the complete fold folders (a manifest written), oldest first."""
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if PARTIAL not in p.name and (p / MANIFEST).is_file())

    def manifest(self, name: str) -> dict[str, Any]:
        path = self.folder(name) / MANIFEST
        try:
            tree = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as error:
            raise PlusUltraError(f"cannot read the fold manifest {path}: {error}; delete {path.parent} to "
                                 "recompute that fold") from None
        if tree.get("format") != FOLD_FORMAT or tree.get("version") != FOLD_VERSION:
            raise PlusUltraError(f"{path} is not a {FOLD_FORMAT} v{FOLD_VERSION} manifest; use a new output "
                                 "folder or --restart")
        return tree

    def clear_partial(self) -> None:
        """Remove fold folders a killed run left half-written (they never count as finished)."""
        if self.root.is_dir():
            for path in self.root.iterdir():
                if PARTIAL in path.name:
                    logger.info("removing %s, left half-written by an interrupted run", path)
                    shutil.rmtree(path, ignore_errors=True)

    def reusable(self, identities: Mapping[str, FoldIdentity], requested: Iterable[str]) -> list[str]:
        """The `requested` folds already finished here with a matching manifest.

        `identities` holds the current identity of every fold the run knows (the requested ones and
        any other finished fold of the current plan). Raises `FoldMismatchError` when any finished
        fold here was made with a different fold config, or on different data or a different split
        than its current identity, so no folder ever holds folds of two runs.
        """
        requested = set(requested)
        if not identities:
            return []
        current = next(iter(identities.values()))
        keep = []
        for name in self.finished():
            tree = self.manifest(name)
            problems = []
            if tree["config_hash"] != current.config_hash:
                changed = _differences(_fold_settings(tree.get("config", {})), _fold_settings(current.config))
                problems.append("its config differs (" + ("; ".join(changed[:6]) or "hash only") + ")")
            identity = identities.get(name)
            if identity is not None:
                if tree["split"] != identity.split:
                    problems.append(f"its split differs ({tree['split']} there, {identity.split} now)")
                if tree["data_fingerprint"] != identity.data_fingerprint:
                    problems.append("the data it read differs (panel, features, regimes or calendars up to "
                                    f"{tree.get('last_bar', 'its last bar')})")
            if problems:
                raise FoldMismatchError(
                    f"{self.folder(name)} was made by another run: {'; '.join(problems)}. Finished folds are "
                    "never mixed across runs or rewritten: write to a new output folder (--out), or discard "
                    f"the finished folds in {self.out} (--restart)")
            if name in requested:
                made_by, now = code_version_text(tree.get("code_version", {})), code_version_text(code_version())
                if made_by != now:
                    logger.warning("%s was made by code %s, this is %s: reusing it (config and data match)",
                                   name, made_by, now)
                keep.append(name)
        return keep

    def save(self, result, identity: FoldIdentity, last_bar: pd.Timestamp | None = None) -> Path:
        """Write a finished fold's files into a fresh folder, atomically (temporary folder + rename)."""
        target = self.folder(result.fold)
        if target.exists():
            raise PlusUltraError(f"{target} already exists: a finished fold is never rewritten; use a new "
                                 "output folder or --restart")
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f"{result.fold}{PARTIAL}", dir=self.root))
        try:
            result.predictions.to_parquet(tmp / PREDICTIONS, engine="pyarrow")
            (tmp / METRICS).write_text(json.dumps(plain(result.metrics), indent=2, sort_keys=True) + "\n")
            manifest = {
                "format": FOLD_FORMAT, "version": FOLD_VERSION, "fold": result.fold, "created_at": now_utc(),
                "split": identity.split, "config_hash": identity.config_hash,
                "data_fingerprint": identity.data_fingerprint,
                "last_bar": last_bar.isoformat() if last_bar is not None else None,
                "code_version": dict(code_version()), "rows": int(len(result.predictions)),
                "checkpoints": plain(result.checkpoints),
                "files": {name: file_fingerprint(tmp / name) for name in (PREDICTIONS, METRICS)},
                "config": identity.config,
            }
            (tmp / MANIFEST).write_text(json.dumps(plain(manifest), indent=2, sort_keys=True) + "\n")
            os.chmod(tmp, 0o777 & ~_umask())
            os.rename(tmp, target)  # atomic on one filesystem (the folder was checked absent above)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
        return target

    def load(self, name: str):
        """The `FoldResult` of a finished fold, its files checked against the manifest's sha256."""
        from plus_ultra_ml.experiments.fold import FoldResult

        tree = self.manifest(name)
        folder = self.folder(name)
        for file, digest in tree["files"].items():
            if not (folder / file).is_file() or file_fingerprint(folder / file) != digest:
                raise PlusUltraError(f"{folder / file} is missing or changed since the fold was written; delete "
                                     f"{folder} to recompute that fold")
        predictions = pd.read_parquet(folder / PREDICTIONS, engine="pyarrow")
        metrics = {k: (math.nan if v is None else float(v)) for k, v in json.loads((folder / METRICS).read_text()).items()}
        return FoldResult(name, predictions, {k: list(v) for k, v in tree["checkpoints"].items()}, metrics)

    def config(self, names: list[str] | None = None) -> ExperimentConfig:
        """The one resolved config the given (default: every finished) folds were made with."""
        names = self.finished() if names is None else names
        if not names:
            raise PlusUltraError(f"no finished walk-forward fold under {self.root}: run plus-ultra walkforward "
                                 f"--out {self.out} first")
        trees = {name: self.manifest(name) for name in names}
        hashes = {tree["config_hash"] for tree in trees.values()}
        if len(hashes) > 1:
            raise FoldMismatchError(f"the folds under {self.root} were made with {len(hashes)} different configs; "
                                    "one report mixes no runs: move the others to their own folder")
        return config_from_dict(trees[names[-1]]["config"], source=str(self.folder(names[-1]) / MANIFEST))

    def discard(self) -> None:
        """Remove every fold folder (``--restart``): the only way a finished fold goes away."""
        if self.root.exists():
            logger.warning("discarding the finished folds in %s (--restart)", self.root)
            shutil.rmtree(self.root)


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current
