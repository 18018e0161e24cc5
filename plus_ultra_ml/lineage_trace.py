"""Trace an artifact back to its database and say what still holds.

`trace(path)` follows the lineage chain of a checkpoint (model.pt, policy.pt, a fold's checkpoint
or a .lineage.json sidecar) from the file alone: for each link, the recorded fingerprint, config
hash, code version, data cutoff and run ids, and a status:

* ``ok``       the file exists and is the file its child recorded;
* ``mismatch`` the file exists but its sha256 differs from what its child recorded (the parent changed);
* ``missing``  the file named by the child is gone.

The database at the end of the chain is checked too: ``ok`` (same bytes), ``stale`` (new candles
since: its last bar is after the panel the chain was trained on), ``mismatch`` (different bytes but
no newer bar: history was rewritten), ``missing``.

Orchestrators can add what they know (for example the Dagster run and its upstream
materialisations) through the ``plus_ultra.lineage`` entry-point group: each entry is a callable
``(root_record) -> dict | None``; this module never imports them by name.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import pandas as pd

from plus_ultra_ml.artifacts import file_fingerprint
from plus_ultra_ml.checkpoints.chain import read_lineage
from plus_ultra_ml.errors import PlusUltraError
from plus_ultra_ml.lineage import LineageRecord, code_version_text

ENTRY_POINT_GROUP = "plus_ultra.lineage"
MAX_DEPTH = 32


@dataclass(frozen=True)
class TraceLink:
    path: str
    status: str  # ok | mismatch | missing
    kind: str | None
    sha256: str | None  # of the file now
    recorded_sha256: str | None  # what the child recorded (None for the artifact itself)
    config_hash: str | None
    code_version: str | None
    data_cutoff: str | None
    run_ids: dict[str, Any]
    created_at: str | None


@dataclass(frozen=True)
class DatabaseCheck:
    path: str | None
    status: str  # ok | stale | mismatch | missing | unknown
    recorded_sha256: str | None
    sha256: str | None
    trained_until: str | None  # last bar of the panel the chain was trained on
    last_bar_now: str | None


@dataclass(frozen=True)
class Trace:
    links: list[TraceLink]
    database: DatabaseCheck
    extra: dict[str, Any] = field(default_factory=dict)  # from entry points (e.g. "dagster")

    @property
    def healthy(self) -> bool:
        return all(link.status == "ok" for link in self.links) and self.database.status == "ok"

    def to_dict(self) -> dict[str, Any]:
        return {"healthy": self.healthy, "links": [link.__dict__ for link in self.links],
                "database": self.database.__dict__, **self.extra}


def _link(path: Path, record: LineageRecord | None, recorded: str | None, status: str) -> TraceLink:
    return TraceLink(
        path=str(path), status=status, kind=record.kind if record else None,
        sha256=file_fingerprint(path) if path.is_file() else None, recorded_sha256=recorded,
        config_hash=record.config_hash if record else None,
        code_version=code_version_text(record.code_version) if record else None,
        data_cutoff=record.data_cutoff if record else None,
        run_ids=dict(record.run_ids) if record else {}, created_at=record.created_at if record else None,
    )


def _last_bar(db: Path) -> pd.Timestamp | None:
    from plus_ultra_ml.data.store import series_summary

    summary = series_summary(db)
    lasts = [pd.Timestamp(v["last"]) for v in summary.values()]
    return max((t.tz_localize("UTC") if t.tzinfo is None else t) for t in lasts) if lasts else None


def check_database(record: LineageRecord) -> DatabaseCheck:
    path = record.database.get("path")
    recorded = record.database.get("fingerprint")
    trained_until = record.panel.get("end")
    if not path:
        return DatabaseCheck(None, "unknown", recorded, None, trained_until, None)
    db = Path(path)
    if not db.is_file():
        return DatabaseCheck(path, "missing", recorded, None, trained_until, None)
    now = file_fingerprint(db)
    if recorded is None or now == recorded:
        return DatabaseCheck(path, "ok" if recorded else "unknown", recorded, now, trained_until, None)
    last = _last_bar(db)
    newer = last is not None and trained_until is not None and last > pd.Timestamp(trained_until)
    return DatabaseCheck(path, "stale" if newer else "mismatch", recorded, now, trained_until,
                         last.isoformat() if last is not None else None)


def _extensions(root: LineageRecord) -> dict[str, Any]:
    extra = {}
    for entry in entry_points(group=ENTRY_POINT_GROUP):
        result = entry.load()(root)
        if result:
            extra[entry.name] = result
    return extra


def trace(path: str | Path, with_extensions: bool = True) -> Trace:
    """The chain from `path` to its database, with a status per link (see the module docstring)."""
    path = Path(path)
    if not path.is_file():
        raise PlusUltraError(f"{path} does not exist")
    records: list[LineageRecord] = []
    links: list[TraceLink] = []
    current, recorded = path, None
    for _ in range(MAX_DEPTH):
        if not current.is_file():
            links.append(_link(current, None, recorded, "missing"))
            break
        record = read_lineage(current)
        now = file_fingerprint(current)
        status = "ok" if recorded is None or recorded == now else "mismatch"
        links.append(_link(current, record, recorded, status))
        records.append(record)
        parent = record.parent or {}
        if not parent.get("path"):
            break
        current, recorded = Path(parent["path"]), parent.get("fingerprint")
    else:
        raise PlusUltraError(f"lineage chain of {path} is longer than {MAX_DEPTH} links (a cycle?)")
    database = check_database(records[0])  # the artifact's own database: new candles make it stale
    extra = _extensions(records[0]) if with_extensions else {}
    return Trace(links, database, extra)
