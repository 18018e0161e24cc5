"""The promotion gate: the one function that decides whether a checkpoint may become production.

`evaluate_gate(record)` checks a checkpoint's lineage, criterion by criterion:

    servable              a supervised checkpoint (forecast and position heads trained)        error
    finite_losses         every held-out and validation loss is finite, test_loss recorded     error
    heldout_ic_positive   held-out IC of the next-bar return > 0                               warn
    beats_naive_baselines held-out IC > the momentum and the linear baseline's IC (same windows) warn

plus any named external results the caller brings (each must pass; error). The last three are the
held-out criteria (`HELDOUT_CRITERIA`, `heldout_outcomes`): the Dagster `supervised_checkpoint`
asset turns exactly these outcomes into its asset checks (one check per criterion, its severity;
"error" criteria block downstream work), so the checks shown in the UI and the registry's decision
cannot disagree. The registry (registry.py) promotes only when every criterion passes.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from plus_ultra_ml.lineage import LineageRecord

Severity = Literal["error", "warn"]
SERVABLE_KIND = "supervised"
BASELINES = ("baseline_momentum_ic_next_bar", "baseline_linear_ic_next_bar")


@dataclass(frozen=True)
class Criterion:
    """One criterion of the gate, as declared (before any checkpoint is looked at)."""

    name: str
    severity: Severity  # error: the checkpoint is broken; warn: it is not good enough to promote
    description: str


HELDOUT_CRITERIA = (
    Criterion("finite_losses", "error", "held-out and validation losses (and every loss term) are finite"),
    Criterion("heldout_ic_positive", "warn",
              "held-out IC of the next-bar return is above zero (warns with the numbers)"),
    Criterion("beats_naive_baselines", "warn",
              "held-out IC is above the momentum and linear baselines on the same windows (warns with the numbers)"),
)


@dataclass(frozen=True)
class CheckOutcome:
    name: str
    passed: bool
    detail: str
    severity: Severity = "error"
    numbers: Mapping[str, float] = field(default_factory=dict)  # what the verdict was computed from


@dataclass(frozen=True)
class GateResult:
    checks: tuple[CheckOutcome, ...]

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)

    def failures(self) -> list[CheckOutcome]:
        return [c for c in self.checks if not c.passed]

    def to_dict(self) -> dict[str, Any]:
        checks = {c.name: {"passed": c.passed, "detail": c.detail} for c in self.checks}
        return {"passed": self.passed, "checks": checks}

    def summary(self) -> str:
        if self.passed:
            return "every check passed: " + ", ".join(c.name for c in self.checks)
        return "; ".join(f"{c.name}: {c.detail}" for c in self.failures())


def number(metrics: Mapping[str, Any], key: str) -> float:
    """`metrics[key]` as a float; NaN when missing, not a number, or not finite."""
    value = metrics.get(key)
    return float(value) if isinstance(value, int | float) and math.isfinite(value) else math.nan


def finite_losses(metrics: Mapping[str, Any], keys: Iterable[str], required: Iterable[str] = (),
                  severity: Severity = "error") -> CheckOutcome:
    """Every loss in `keys` is a finite number, and every loss in `required` was recorded."""
    keys = list(keys)
    bad = sorted(k for k in keys if not math.isfinite(number(metrics, k)))
    bad += [f"{k} (not recorded: train with windows.test_fraction > 0)" for k in required if k not in keys]
    return CheckOutcome("finite_losses", not bad, f"{len(keys)} losses finite" if not bad else
                        f"not finite or missing: {bad}", severity, {k: number(metrics, k) for k in keys})


def heldout_outcomes(metrics: Mapping[str, Any]) -> tuple[CheckOutcome, ...]:
    """The held-out criteria (`HELDOUT_CRITERIA`, in that order) on a supervised model's metrics."""
    severity = {c.name: c.severity for c in HELDOUT_CRITERIA}
    losses = [k for k in metrics if k.startswith(("test_loss", "val_loss"))]
    ic = number(metrics, "test_ic_next_bar")
    baselines = {k: number(metrics, k) for k in BASELINES}
    beaten = [k for k, v in baselines.items() if not ic > v]  # NaN on either side fails
    numbers = ", ".join(f"{k} {v:.4f}" for k, v in baselines.items())
    return (
        finite_losses(metrics, losses, required=("test_loss",), severity=severity["finite_losses"]),
        CheckOutcome("heldout_ic_positive", ic > 0, f"held-out IC of the next-bar return {ic:.4f}",
                     severity["heldout_ic_positive"],
                     {"test_ic_next_bar": ic, "test_windows": float(metrics.get("test_windows", 0))}),
        CheckOutcome("beats_naive_baselines", not beaten,
                     f"held-out IC {ic:.4f} vs {numbers}" + (f"; not above {beaten}" if beaten else ""),
                     severity["beats_naive_baselines"], {"test_ic_next_bar": ic, **baselines}),
    )


def evaluate_gate(record: LineageRecord, external: Mapping[str, bool] | None = None) -> GateResult:
    """The promotion gate on a checkpoint's lineage (see the module docstring); `external` adds
    named pass/fail results from elsewhere (Dagster asset checks), each of which must pass too."""
    servable = CheckOutcome("servable", record.kind == SERVABLE_KIND, f"kind {record.kind!r}" + (
        "" if record.kind == SERVABLE_KIND else f"; only {SERVABLE_KIND!r} checkpoints are served"))
    outside = [CheckOutcome(f"external:{name}", bool(passed), "passed" if passed else "failed")
               for name, passed in sorted((external or {}).items())]
    return GateResult((servable, *heldout_outcomes(record.metrics), *outside))
