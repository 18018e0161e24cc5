"""Serving group: `production_model`, the promotion gate between training and the inference service.

The supervised checkpoint and the PPO policy fine-tuned from it arrive as typed inputs
(`CheckpointRef`s, from the checkpoint IO manager, with the runs that materialised them). The body
reads the evaluations of each materialisation's asset checks from the instance (the gate's criteria:
`HELDOUT_CRITERIA` for the supervised model, `POLICY_CRITERIA` for the policy; a check counts as
passed only if its latest evaluation belongs to the same run and passed), then makes one library
call: `plus_ultra_ml.serving.registry.Registry.promote_best` re-evaluates the gate from each
checkpoint's own lineage, requires every recorded check to have passed, takes the better of those
that pass (highest held-out net Sharpe), and only then copies that file into the registry and
switches the production pointer atomically (a lineage record naming the model kind, "supervised"
or "ppo", and its checkpoint). A model that fails the gate is not promoted; the asset still materialises, says so in its
metadata and in its `promotion_gate` check (WARN), and production stays as it was. A running
service picks the new model up on POST /reload (or at its next start).
"""

import dagster as dg

from plus_ultra_assets.io_managers import checkpoint_input
from plus_ultra_assets.resources import ArtifactsResource, ExperimentConfigResource
from plus_ultra_ml.checkpoints.ref import CheckpointRef
from plus_ultra_ml.serving.gate import HELDOUT_CRITERIA, POLICY_CRITERIA

GROUP = "serving"
SUPERVISED = dg.AssetKey("supervised_checkpoint")
SUPERVISED_CHECKS = tuple(c.name for c in HELDOUT_CRITERIA)
POLICY = dg.AssetKey("ppo_policy")
POLICY_CHECKS = tuple(c.name for c in POLICY_CRITERIA)


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
    ins={"supervised_checkpoint": checkpoint_input("supervised_checkpoint"),
         "ppo_policy": checkpoint_input("ppo_policy")},
    group_name=GROUP,
    kinds={"pytorch"},
    check_specs=[dg.AssetCheckSpec(
        "promotion_gate", asset="production_model",
        description="the supervised checkpoint or the PPO policy passed the promotion gate (significant held-out net "
        "Sharpe above persistence and every baseline, finite losses, the supervised IC criteria or the policy's "
        "validation selection, every recorded asset check passed); warns, with the reasons, when neither did")],
    description="Promotes the better of the latest supervised_checkpoint and ppo_policy that passes the gate (highest "
    "held-out net Sharpe) to the serving registry's production pointer; otherwise production stays as it was. The "
    "inference service serves this pointer, of either model kind.",
)
def production_model(context: dg.AssetExecutionContext, experiment: ExperimentConfigResource,
                     artifacts: ArtifactsResource, supervised_checkpoint: CheckpointRef,
                     ppo_policy: CheckpointRef) -> dg.MaterializeResult:
    from pathlib import Path

    from plus_ultra_ml.serving.registry import Registry

    cfg = experiment.load()
    candidates = [supervised_checkpoint.path, ppo_policy.path]
    checks = [recorded_checks(context.instance, SUPERVISED, supervised_checkpoint.run_id, SUPERVISED_CHECKS),
              recorded_checks(context.instance, POLICY, ppo_policy.run_id, POLICY_CHECKS)]
    root = Path(cfg.service.registry_dir) if cfg.service.registry_dir else Path(artifacts.root) / "registry"
    registry = Registry(root)
    result = registry.promote_best(candidates, external_checks=checks,
                                   run_ids={"dagster_run_id": context.run.run_id, "dagster_asset": "production_model",
                                            "supervised_run_id": supervised_checkpoint.run_id,
                                            "ppo_run_id": ppo_policy.run_id})
    production = result.production
    context.log.info(result.message)
    return dg.MaterializeResult(
        metadata={
            "promoted": result.promoted,
            "candidate": dg.MetadataValue.path(str(supervised_checkpoint.path)),
            "candidate_ppo": dg.MetadataValue.path(str(ppo_policy.path)),
            "message": result.message,
            "gate": dg.MetadataValue.json(result.gate.to_dict()),
            "candidates": dg.MetadataValue.json({g.kind or str(p): g.to_dict() for p, g in result.candidates}),
            "model_kind": production.model_kind or "" if production else "",
            "production_fingerprint": production.fingerprint if production else "",
            "production_path": dg.MetadataValue.path(str(production.path)) if production else "",
            "pointer": dg.MetadataValue.path(str(registry.pointer_path)),
        },
        check_results=[dg.AssetCheckResult(
            check_name="promotion_gate", passed=any(g.passed for _, g in result.candidates),
            severity=dg.AssetCheckSeverity.WARN, description=result.message,
            metadata={f"{g.kind}:{c.name}": dg.MetadataValue.text(("passed: " if c.passed else "FAILED: ") + c.detail)
                      for _, g in result.candidates for c in g.checks},
        )],
    )
