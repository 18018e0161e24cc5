"""Serving group: `production_model`, the promotion gate between training and the inference service.

The supervised checkpoint arrives as a typed input (`CheckpointRef`, from the checkpoint IO
manager, with the run that materialised it). The body reads the evaluations of that
materialisation's asset checks from the instance (the gate's held-out criteria: finite_losses,
heldout_ic_positive, beats_naive_baselines; a check counts as passed only if its latest evaluation
belongs to the same run and passed), then makes one library call:
`plus_ultra_ml.serving.registry.Registry.promote` re-evaluates the gate from the checkpoint's own
lineage, requires every recorded check to have passed, and only then copies the
file into the registry and switches the production pointer atomically (recorded as a lineage
record). A model that fails the gate is not promoted; the asset still materialises, says so in its
metadata and in its `promotion_gate` check (WARN), and production stays as it was. A running
service picks the new model up on POST /reload (or at its next start).
"""

import dagster as dg

from plus_ultra_assets.io_managers import checkpoint_input
from plus_ultra_assets.resources import ArtifactsResource, ExperimentConfigResource
from plus_ultra_ml.checkpoints.ref import CheckpointRef
from plus_ultra_ml.serving.gate import HELDOUT_CRITERIA

GROUP = "serving"
SUPERVISED = dg.AssetKey("supervised_checkpoint")
SUPERVISED_CHECKS = tuple(c.name for c in HELDOUT_CRITERIA)


def recorded_checks(instance: dg.DagsterInstance, asset: dg.AssetKey, run_id: str,
                    names: tuple[str, ...]) -> dict[str, bool]:
    """name -> passed, for the checks evaluated in `run_id` (missing or from another run: not passed)."""
    outcome = {}
    for name in names:
        record = instance.get_latest_asset_check_evaluation_record(dg.AssetCheckKey(asset, name))
        evaluation = record.evaluation if record is not None else None
        outcome[name] = bool(record is not None and record.run_id == run_id and evaluation is not None
                             and evaluation.passed)
    return outcome


@dg.asset(
    ins={"supervised_checkpoint": checkpoint_input("supervised_checkpoint")},
    group_name=GROUP,
    kinds={"pytorch"},
    check_specs=[dg.AssetCheckSpec(
        "promotion_gate", asset="production_model",
        description="the supervised checkpoint passed the promotion gate (held-out IC > 0 and above the naive "
        "baselines, finite losses, every recorded asset check passed); warns, with the reasons, when it did not")],
    description="Promotes the latest supervised_checkpoint to the serving registry's production pointer when its "
    "checks passed; otherwise production stays as it was. The inference service serves this pointer.",
)
def production_model(context: dg.AssetExecutionContext, experiment: ExperimentConfigResource,
                     artifacts: ArtifactsResource, supervised_checkpoint: CheckpointRef) -> dg.MaterializeResult:
    from pathlib import Path

    from plus_ultra_ml.serving.registry import Registry

    cfg = experiment.load()
    path, run_id = supervised_checkpoint.path, supervised_checkpoint.run_id
    checks = recorded_checks(context.instance, SUPERVISED, run_id, SUPERVISED_CHECKS)
    root = Path(cfg.service.registry_dir) if cfg.service.registry_dir else Path(artifacts.root) / "registry"
    registry = Registry(root)
    result = registry.promote(path, external_checks=checks,
                              run_ids={"dagster_run_id": context.run.run_id, "dagster_asset": "production_model",
                                       "supervised_run_id": run_id})
    production = result.production
    context.log.info(result.message)
    return dg.MaterializeResult(
        metadata={
            "promoted": result.promoted,
            "candidate": dg.MetadataValue.path(str(path)),
            "message": result.message,
            "gate": dg.MetadataValue.json(result.gate.to_dict()),
            "production_fingerprint": production.fingerprint if production else "",
            "production_path": dg.MetadataValue.path(str(production.path)) if production else "",
            "pointer": dg.MetadataValue.path(str(registry.pointer_path)),
        },
        check_results=[dg.AssetCheckResult(
            check_name="promotion_gate", passed=result.gate.passed, severity=dg.AssetCheckSeverity.WARN,
            description=result.gate.summary(),
            metadata={c.name: dg.MetadataValue.text(("passed: " if c.passed else "FAILED: ") + c.detail)
                      for c in result.gate.checks},
        )],
    )
