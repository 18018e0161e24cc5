"""Lineage: what made an artifact, recorded with it, and how to read it back.

This module holds the fingerprints every record is built from: the code version (package version
plus git commit when the package runs from a checkout), content hashes of frames and files.
"""

from __future__ import annotations

import functools
import hashlib
import subprocess
from pathlib import Path

import pandas as pd

import plus_ultra_ml
from plus_ultra_ml.artifacts import file_fingerprint

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
    info = code_version()
    commit = info["git_commit"]
    suffix = f"+g{commit[:10]}{'.dirty' if info['git_dirty'] else ''}" if commit else ""
    return f"{info['package']}{suffix}"


def frame_fingerprint(frame: pd.DataFrame) -> str:
    """sha256 over a frame's index, column names and values (row order matters)."""
    digest = hashlib.sha256()
    digest.update("|".join(map(str, frame.columns)).encode())
    digest.update(pd.util.hash_pandas_object(frame, index=True).to_numpy().tobytes())
    return digest.hexdigest()


def database_fingerprint(path: str | Path) -> str:
    """sha256 of the database file's bytes."""
    return file_fingerprint(path)
