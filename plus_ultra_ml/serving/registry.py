"""The production registry: immutable copies of promoted checkpoints and one atomic production pointer.

A checkpoint becomes "production" only through `Registry.promote` / `promote_best`, and only when the
promotion gate (gate.py `evaluate_gate`) passes on the metrics in the checkpoint's own lineage; offered
a supervised model and its PPO policy, `promote_best` promotes the better one that passes
(`gate.choose`: highest held-out net Sharpe), plus any external results the caller brings (the
Dagster layer passes the recorded asset check evaluations of the materialisation it promotes; those
checks are themselves the gate's held-out criteria).

Layout under ``service.registry_dir`` (default ``$PLUS_ULTRA_HOME/registry``):

    models/<sha256[:16]>/model.pt (+ model.lineage.json)   a copy of each promoted file, never rewritten
    production.lineage.json                                 the pointer, replaced by an atomic rename
    history/<n>-<time>-<sha256[:12]>.lineage.json           every pointer ever written, numbered (audit, rollback)

The pointer is itself a lineage record (kind "production") whose parent is the promoted copy, with
the gate's results and the previous production model under ``promotion``: `plus-ultra lineage
registry/production.lineage.json` prints the chain production -> checkpoint -> backbone -> database.
The service loads only this pointer, and checks the copy's sha256 against it before serving.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import shutil
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from plus_ultra_ml.artifacts import atomic_path, file_fingerprint, home, write_text_atomic
from plus_ultra_ml.checkpoints.chain import read_lineage
from plus_ultra_ml.config import ServiceConfig
from plus_ultra_ml.errors import PlusUltraError
from plus_ultra_ml.lineage import LineageRecord, code_version, now_utc, write_sidecar
from plus_ultra_ml.serving.gate import MODEL_KINDS, CheckOutcome, GateResult, choose, evaluate_gate

logger = logging.getLogger(__name__)

POINTER = "production.lineage.json"
PRODUCTION_KIND = "production"


class RegistryError(PlusUltraError):
    """The registry or its pointer is unreadable, or a promotion cannot proceed."""


# --------------------------------------------------------------------------------------------
# the registry
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Production:
    """A production pointer as read back: which file to serve and how it got there."""

    path: Path  # the registry's copy of the checkpoint
    fingerprint: str  # its sha256, checked before serving
    kind: str  # the checkpoint's lineage kind ("supervised" | "ppo_policy")
    promoted_at: str
    source: str  # where the promoted file came from
    record: LineageRecord  # the pointer's own lineage record (parent = the copy)
    promotion: Mapping[str, Any]  # gate results, previous production, reason

    @property
    def model_kind(self) -> str | None:
        """"supervised" or "ppo" (gate.MODEL_KINDS)."""
        return MODEL_KINDS.get(self.kind)

    def summary(self) -> dict[str, Any]:
        return {"fingerprint": self.fingerprint, "kind": self.kind, "model_kind": self.model_kind,
                "promoted_at": self.promoted_at,
                "data_cutoff": self.record.data_cutoff, "gate": self.promotion.get("gate", {}).get("passed"),
                "reason": self.promotion.get("reason")}


@dataclass(frozen=True)
class PromotionResult:
    promoted: bool
    gate: GateResult  # of the candidate promoted (or kept), else of the first candidate
    production: Production | None  # the pointer after the call (the new one, or the one kept)
    message: str
    candidates: tuple[tuple[Path, GateResult], ...] = ()  # every candidate offered, with its gate


class Registry:
    """The production registry under `root` (see the module docstring)."""

    def __init__(self, root: str | Path):
        self.root = Path(root).expanduser().resolve()

    @classmethod
    def from_config(cls, service: ServiceConfig) -> Registry:
        return cls(Path(service.registry_dir) if service.registry_dir else home(create=False) / "registry")

    @property
    def pointer_path(self) -> Path:
        return self.root / POINTER

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """One promotion at a time (an OS lock on registry/.lock; readers never need it)."""
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / ".lock", "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    # -- reading ------------------------------------------------------------------------------
    def production(self) -> Production | None:
        """The current pointer (None when nothing was ever promoted)."""
        if not self.pointer_path.is_file():
            return None
        return self._read_pointer(self.pointer_path)

    def _read_pointer(self, path: Path) -> Production:
        try:
            tree = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as error:
            raise RegistryError(
                f"production pointer {path} is unreadable ({error}); promote a checkpoint again") from None
        record = LineageRecord.from_dict(tree)
        parent = record.parent or {}
        promotion = tree.get("promotion") or {}
        if record.kind != PRODUCTION_KIND or not parent.get("path") or not parent.get("fingerprint"):
            raise RegistryError(
                f"{path} is not a production pointer (kind {record.kind!r}); promote a checkpoint again")
        return Production(Path(parent["path"]), str(parent["fingerprint"]), str(parent.get("kind")),
                          str(promotion.get("promoted_at", record.created_at)), str(promotion.get("source", "")),
                          record, promotion)

    def history(self) -> list[Production]:
        """Every pointer written, oldest first."""
        folder = self.root / "history"
        return [self._read_pointer(p) for p in sorted(folder.glob("*.lineage.json"))] if folder.is_dir() else []

    # -- writing ------------------------------------------------------------------------------
    def promote(self, checkpoint: str | Path, *, external_checks: Mapping[str, bool] | None = None,
                run_ids: Mapping[str, Any] | None = None, reason: str = "promotion") -> PromotionResult:
        """Make `checkpoint` production if the gate passes; otherwise keep the current pointer."""
        return self.promote_best([checkpoint], external_checks=[external_checks], run_ids=run_ids, reason=reason)

    def promote_best(self, candidates: Sequence[str | Path], *,
                     external_checks: Sequence[Mapping[str, bool] | None] | None = None,
                     run_ids: Mapping[str, Any] | None = None, reason: str = "promotion") -> PromotionResult:
        """Promote the better of several candidates (a supervised model and the PPO policy fine-tuned
        from it): the gate on each (`external_checks[i]` belongs to `candidates[i]`), then `gate.choose`
        (the highest held-out net Sharpe among those that pass). None passes: the pointer stays."""
        paths = [Path(c).expanduser().resolve() for c in candidates]
        if not paths:
            raise RegistryError("no candidate to promote: pass a supervised checkpoint and/or a PPO policy")
        for path in paths:
            if not path.is_file():
                raise RegistryError(f"checkpoint {path} does not exist")
        externals = list(external_checks) if external_checks is not None else [None] * len(paths)
        if len(externals) != len(paths):
            raise RegistryError(f"{len(externals)} sets of external checks for {len(paths)} candidates")
        records = [read_lineage(p) for p in paths]
        gates = [evaluate_gate(r, e) for r, e in zip(records, externals, strict=True)]
        offered = tuple(zip(paths, gates, strict=True))
        pick = choose(gates)
        current = self.production()
        if pick is None:
            reasons = "; ".join(f"{g.kind or r.kind} {p.name}: {g.summary()}" for p, g, r in zip(paths, gates, records))
            message = f"not promoted ({reasons}); production stays " + (current.fingerprint[:12] if current else "empty")
            logger.warning("%s", message)
            return PromotionResult(False, gates[0], current, message, offered)
        return self._write(paths[pick], records[pick], gates[pick], run_ids, reason, offered)

    def rollback(self, run_ids: Mapping[str, Any] | None = None) -> PromotionResult:
        """Point production back at the previous distinct promoted model (it passed the gate then)."""
        current = self.production()
        if current is None:
            raise RegistryError("nothing to roll back: the registry has no production model")
        earlier = [p for p in self.history() if p.fingerprint != current.fingerprint]
        if not earlier:
            raise RegistryError("nothing to roll back to: only one model was ever promoted")
        target = earlier[-1]
        if not target.path.is_file() or file_fingerprint(target.path) != target.fingerprint:
            raise RegistryError(
                f"the previous production copy {target.path} is missing or changed; promote a checkpoint")
        record = read_lineage(target.path)
        gate = GateResult(tuple(CheckOutcome(n, bool(v.get("passed")), str(v.get("detail")))
                                for n, v in target.promotion.get("gate", {}).get("checks", {}).items()))
        return self._write(target.path, record, gate, run_ids, "rollback")

    def _write(self, checkpoint: Path, record: LineageRecord, gate: GateResult, run_ids: Mapping[str, Any] | None,
               reason: str, offered: tuple[tuple[Path, GateResult], ...] = ()) -> PromotionResult:
        with self._locked():
            current = self.production()
            fingerprint = file_fingerprint(checkpoint)
            if current is not None and current.fingerprint == fingerprint and reason != "rollback":
                return PromotionResult(False, gate, current, f"already production ({fingerprint[:12]})", offered)
            copy = self._store(checkpoint, record, fingerprint)
            promoted_at = now_utc()
            pointer = record.with_updates(
                kind=PRODUCTION_KIND, created_at=promoted_at, code_version=dict(code_version()),
                parent={"path": str(copy), "fingerprint": fingerprint, "kind": record.kind,
                        "model_kind": MODEL_KINDS.get(record.kind), "data_cutoff": record.data_cutoff},
                run_ids=dict(run_ids) if run_ids is not None else dict(record.run_ids),
            )
            promotion = {
                "promoted_at": promoted_at, "reason": reason, "gate": gate.to_dict(),
                "source": str(checkpoint), "previous": current.summary() if current else None,
                "model_kind": MODEL_KINDS.get(record.kind),
                "candidates": [{"path": str(p), "model_kind": g.kind, "gate": g.to_dict()} for p, g in offered],
            }
            text = json.dumps({**pointer.to_dict(), "promotion": promotion}, indent=2, sort_keys=True) + "\n"
            stamp = promoted_at.replace(":", "").replace("-", "").replace("+0000", "Z")
            number = len(list((self.root / "history").glob("*.lineage.json")))
            write_text_atomic(self.root / "history" / f"{number:06d}-{stamp}-{fingerprint[:12]}.lineage.json", text)
            write_text_atomic(self.pointer_path, text)  # the switch: one rename
            production = self._read_pointer(self.pointer_path)
        logger.info("production is now %s (%s, from %s)", fingerprint[:12], reason, checkpoint)
        return PromotionResult(True, gate, production,
                               f"promoted {production.model_kind} {fingerprint[:12]} ({gate.summary()})", offered)

    def _store(self, checkpoint: Path, record: LineageRecord, fingerprint: str) -> Path:
        """The immutable copy models/<sha[:16]>/<name> (+ its sidecar); reused when already there."""
        copy = self.root / "models" / fingerprint[:16] / checkpoint.name
        if copy.is_file() and file_fingerprint(copy) == fingerprint:
            return copy
        with atomic_path(copy) as tmp:
            shutil.copyfile(checkpoint, tmp)
        if file_fingerprint(copy) != fingerprint:
            raise RegistryError(f"{checkpoint} changed while it was copied into the registry; promote it again")
        write_sidecar(record, copy)
        return copy
