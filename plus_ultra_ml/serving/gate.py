"""The promotion gate: the one function that decides whether a checkpoint may become production.

Two kinds of model can be served (`MODEL_KINDS`): the supervised model (`model.pt`, lineage kind
"supervised", model kind "supervised") and the PPO policy fine-tuned from it (`policy.pt`, lineage
kind "ppo_policy", model kind "ppo"). `evaluate_gate(record)` checks one checkpoint's lineage,
criterion by criterion; `choose(gates)` promotes the better of several that pass.

Every kind, on its held-out test segment (the policy's test segment is its supervised parent's):

    servable              a servable kind (and, for a policy, one its validation-only selection kept:
                          rl/select.py)                                                            error
    finite_losses         every held-out and validation loss is finite, test_loss recorded (a policy:
                          its last update's policy and value loss, and its held-out net Sharpe)  error
    significant           the 95% block-bootstrap interval of the held-out net Sharpe is above zero warn
    beats_persistence     held-out net Sharpe > 0: persistence (a zero forecast) holds flat and earns 0 warn
    beats_baselines       held-out net Sharpe above every baseline's on the same windows (momentum,
                          ridge, buy-and-hold, volatility-targeted buy-and-hold)                   warn
the supervised model also
    heldout_ic_positive   held-out IC of the next-bar return > 0                                    warn
    beats_naive_baselines held-out IC > the momentum and the linear baseline's IC (same windows)    warn

plus any named external results the caller brings (each must pass; error). `HELDOUT_CRITERIA` /
`heldout_outcomes` (supervised) and `POLICY_CRITERIA` / `policy_outcomes` (PPO) are what the Dagster
`supervised_checkpoint` and `ppo_policy` assets turn into their asset checks (one check per criterion,
its severity; "error" criteria block downstream work), so the checks in the UI and the registry's
decision cannot disagree. A checkpoint passes when every criterion passes; among passing candidates
`choose` takes the highest held-out net Sharpe (`GateResult.score`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from plus_ultra_ml.lineage import LineageRecord

Severity = Literal["error", "warn"]
SERVABLE_KIND = "supervised"
POLICY_KIND = "ppo_policy"  # checkpoints/policy.py's lineage kind (kept here: the gate imports no torch)
MODEL_KINDS = {SERVABLE_KIND: "supervised", POLICY_KIND: "ppo"}  # lineage kind -> model kind served
BASELINES = ("baseline_momentum_ic_next_bar", "baseline_linear_ic_next_bar")
SHARPE_BASELINES = ("baseline_momentum_sharpe_net", "baseline_linear_sharpe_net", "baseline_buy_and_hold_sharpe_net",
                    "baseline_vol_target_sharpe_net")
# held-out net Sharpe and its interval per lineage kind
SHARPE_KEYS = {SERVABLE_KIND: ("test_sharpe_net", "test_sharpe_net_low"),
               POLICY_KIND: ("test_ppo_sharpe_net", "test_ppo_sharpe_net_low")}


@dataclass(frozen=True)
class Criterion:
    """One criterion of the gate, as declared (before any checkpoint is looked at)."""

    name: str
    severity: Severity  # error: the checkpoint is broken; warn: it is not good enough to promote
    description: str


PNL_CRITERIA = (
    Criterion("significant", "warn", "the 95% block-bootstrap interval of the held-out net Sharpe is above zero"),
    Criterion("beats_persistence", "warn", "held-out net Sharpe above zero, what persistence (flat) earns"),
    Criterion("beats_baselines", "warn",
              "held-out net Sharpe above every baseline's (momentum, ridge, buy-and-hold, vol-target) on the same "
              "windows"),
)
HELDOUT_CRITERIA = (
    Criterion("finite_losses", "error", "held-out and validation losses (and every loss term) are finite"),
    Criterion("heldout_ic_positive", "warn",
              "held-out IC of the next-bar return is above zero (warns with the numbers)"),
    Criterion("beats_naive_baselines", "warn",
              "held-out IC is above the momentum and linear baselines on the same windows (warns with the numbers)"),
    *PNL_CRITERIA,
)
POLICY_CRITERIA = (
    Criterion("finite_losses", "error", "the last update's policy and value losses and the held-out net Sharpe "
              "are finite"),
    Criterion("selected", "warn", "the validation-only selection (rl.selection) kept the PPO policy over the head"),
    *PNL_CRITERIA,
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
    kind: str | None = None  # model kind ("supervised" | "ppo"); None: not servable
    score: float = math.nan  # held-out net Sharpe: what `choose` ranks passing candidates by

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)

    def failures(self) -> list[CheckOutcome]:
        return [c for c in self.checks if not c.passed]

    def to_dict(self) -> dict[str, Any]:
        checks = {c.name: {"passed": c.passed, "detail": c.detail} for c in self.checks}
        return {"passed": self.passed, "checks": checks, "model_kind": self.kind,
                "heldout_sharpe_net": self.score if math.isfinite(self.score) else None}

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


def pnl_outcomes(metrics: Mapping[str, Any], sharpe_key: str, low_key: str) -> tuple[CheckOutcome, ...]:
    """`PNL_CRITERIA` on a held-out net Sharpe, its interval's lower end and the baselines' net Sharpe."""
    severity = {c.name: c.severity for c in PNL_CRITERIA}
    sharpe, low = number(metrics, sharpe_key), number(metrics, low_key)
    baselines = {k: number(metrics, k) for k in SHARPE_BASELINES}
    beaten = [k for k, v in baselines.items() if not sharpe > v]  # NaN on either side fails
    numbers = ", ".join(f"{k} {v:.2f}" for k, v in baselines.items())
    return (
        CheckOutcome("significant", low > 0, f"held-out net Sharpe {sharpe:.2f}, 95% interval low end {low:.2f}",
                     severity["significant"], {sharpe_key: sharpe, low_key: low}),
        CheckOutcome("beats_persistence", sharpe > 0, f"held-out net Sharpe {sharpe:.2f} vs persistence (flat) 0",
                     severity["beats_persistence"], {sharpe_key: sharpe}),
        CheckOutcome("beats_baselines", not beaten,
                     f"held-out net Sharpe {sharpe:.2f} vs {numbers}" + (f"; not above {beaten}" if beaten else ""),
                     severity["beats_baselines"], {sharpe_key: sharpe, **baselines}),
    )


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
        *pnl_outcomes(metrics, *SHARPE_KEYS[SERVABLE_KIND]),
    )


def policy_outcomes(metrics: Mapping[str, Any]) -> tuple[CheckOutcome, ...]:
    """The policy criteria (`POLICY_CRITERIA`, in that order) on a PPO policy's metrics."""
    severity = {c.name: c.severity for c in POLICY_CRITERIA}
    kept = number(metrics, "selection_kept") == 1.0
    gain = ", ".join(f"{k} {number(metrics, k):+.3f}" for k in ("val_gain_bps", "val_gain_low_bps", "val_gain_high_bps"))
    return (
        finite_losses(metrics, ("ppo_policy_loss", "ppo_value_loss", "test_ppo_sharpe_net"),
                      severity=severity["finite_losses"]),
        CheckOutcome("selected", kept, ("kept" if kept else "dropped: the fold's policy is the supervised head")
                     + f" ({gain})", severity["selected"],
                     {k: number(metrics, k) for k in ("selection_kept", "val_gain_bps", "val_gain_low_bps")}),
        *pnl_outcomes(metrics, *SHARPE_KEYS[POLICY_KIND]),
    )


def evaluate_gate(record: LineageRecord, external: Mapping[str, bool] | None = None) -> GateResult:
    """The promotion gate on a checkpoint's lineage (see the module docstring); `external` adds
    named pass/fail results from elsewhere (Dagster asset checks), each of which must pass too."""
    kind = MODEL_KINDS.get(record.kind)
    servable = CheckOutcome("servable", kind is not None, f"kind {record.kind!r}" + (
        "" if kind else f"; only {sorted(MODEL_KINDS)} checkpoints are served"))
    outside = [CheckOutcome(f"external:{name}", bool(passed), "passed" if passed else "failed")
               for name, passed in sorted((external or {}).items())]
    if kind is None:
        return GateResult((servable, *outside))
    outcomes = policy_outcomes(record.metrics) if record.kind == POLICY_KIND else heldout_outcomes(record.metrics)
    score = number(record.metrics, SHARPE_KEYS[record.kind][0])
    return GateResult((servable, *outcomes, *outside), kind, score)


def choose(gates: Sequence[GateResult]) -> int | None:
    """The index of the candidate to promote: the highest held-out net Sharpe among those that pass
    (the first on a tie; the supervised model is offered first); None when none passes."""
    passing = [i for i, g in enumerate(gates) if g.passed and math.isfinite(g.score)]
    return max(passing, key=lambda i: (gates[i].score, -i)) if passing else None
