"""An artifact's lineage read back from the files alone, and its parents followed to the database.

`read_lineage(path)` takes a checkpoint (its embedded record, else its sidecar) or a
``.lineage.json`` file (a sidecar, or the registry's production pointer). `lineage_chain` follows
parent paths back to the database and says when a parent file no longer has the content its child
recorded. No Dagster instance, no W&B.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from plus_ultra_ml.artifacts import file_fingerprint
from plus_ultra_ml.checkpoints.format import embedded_lineage, load_torch
from plus_ultra_ml.lineage import SIDECAR_SUFFIX, LineageError, LineageRecord, sidecar_path


def read_lineage(path: str | Path) -> LineageRecord:
    """The lineage of a checkpoint (its embedded record, else its sidecar) or of a sidecar file."""
    path = Path(path)
    if not path.is_file():
        raise LineageError(f"{path} does not exist")
    if path.name.endswith(SIDECAR_SUFFIX):
        try:
            return LineageRecord.from_dict(json.loads(path.read_text()))
        except json.JSONDecodeError as error:
            raise LineageError(f"{path} is not valid JSON: {error}") from None
    payload = load_torch(path, LineageError)
    tree = embedded_lineage(payload) if isinstance(payload, Mapping) else None
    if tree is None:
        sidecar = sidecar_path(path)
        if not sidecar.is_file():
            raise LineageError(f"{path} embeds no lineage record and has no sidecar {sidecar.name}")
        return read_lineage(sidecar)
    return LineageRecord.from_dict(tree)


@dataclass(frozen=True)
class ChainLink:
    path: Path
    record: LineageRecord
    fingerprint: str  # sha256 of the file now
    expected_fingerprint: str | None  # what the child recorded for it (None for the first link)

    @property
    def intact(self) -> bool:
        return self.expected_fingerprint is None or self.expected_fingerprint == self.fingerprint


def lineage_chain(path: str | Path, max_depth: int = 32) -> list[ChainLink]:
    """The checkpoint at `path`, then its parent, its parent's parent, ... (the last link's record
    names the database). A parent whose file is gone ends the chain with a `LineageError`."""
    links: list[ChainLink] = []
    current, expected = Path(path), None
    for _ in range(max_depth):
        record = read_lineage(current)
        links.append(ChainLink(current, record, file_fingerprint(current), expected))
        parent = record.parent
        if not parent or not parent.get("path"):
            return links
        current, expected = Path(parent["path"]), parent.get("fingerprint")
        if not current.is_file():
            raise LineageError(
                f"{links[-1].path} names parent {current}, which no longer exists (recorded sha256 "
                f"{(expected or '')[:12] or None}); the chain stops there"
            )
    raise LineageError(f"lineage chain of {path} is longer than {max_depth} links (a cycle?)")
