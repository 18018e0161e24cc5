"""The artifacts root and how files are written into it: atomically, with a content fingerprint.

Everything Plus Ultra produces (panels, features, checkpoints, reports, lineage sidecars) lives
under one root, ``$PLUS_ULTRA_HOME`` (default ``./.plus_ultra``). A write goes to a temporary file
in the same folder and is renamed into place, so a crash never leaves a half-written artifact.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

HOME_ENV = "PLUS_ULTRA_HOME"
DEFAULT_HOME = ".plus_ultra"


def home(create: bool = True) -> Path:
    """The artifacts root (absolute); created unless `create` is False."""
    root = Path(os.environ.get(HOME_ENV, DEFAULT_HOME)).expanduser().resolve()
    if create:
        root.mkdir(parents=True, exist_ok=True)
    return root


@contextmanager
def atomic_path(target: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `target`; rename it onto `target` only if the block succeeds."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(handle)
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600 files; artifacts get the usual mode
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


def write_bytes_atomic(target: str | Path, payload: bytes) -> Path:
    with atomic_path(target) as tmp:
        tmp.write_bytes(payload)
    return Path(target)


def write_text_atomic(target: str | Path, text: str) -> Path:
    return write_bytes_atomic(target, text.encode())


def file_fingerprint(path: str | Path, chunk_bytes: int = 1 << 20) -> str:
    """sha256 of a file's bytes (hex)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(chunk_bytes):
            digest.update(chunk)
    return digest.hexdigest()
