"""Models group, PPO stage: the `ppo_policy` asset on top of `supervised_checkpoint`.

The body is one library call (plus_ultra_ml.rl.fit.finetune_checkpoint) and metadata. The parent
checkpoint arrives as a typed input (`CheckpointRef`, from the checkpoint IO manager), and the
policy leaves as one, written under ``<artifacts root>/checkpoints/ppo_policy/<run key>/policy.pt``.
"""


import math

import dagster as dg
import pandas as pd

from plus_ultra_assets.io_managers import CHECKPOINT_IO, checkpoint_input
from plus_ultra_assets.resources import ArtifactsResource, ExperimentConfigResource
from plus_ultra_assets.assets.models import check_result
from plus_ultra_ml.checkpoints.ref import CheckpointRef
from plus_ultra_ml.serving.gate import POLICY_CRITERIA, policy_outcomes

GROUP = "models"
HISTORY_COLUMNS = ("update", "reward_bps", "cost_bps", "policy_loss", "value_loss", "entropy", "approx_kl",
                   "epochs_run", "std", "val_sharpe_net", "val_turnover")


def _fmt(value: float | None) -> str:
    return "nan" if value is None or not math.isfinite(value) else f"{value:.3f}"


def beats_supervised_check(improved: bool, ppo: float, supervised: float, buy_and_hold: float,
                           best_update: int) -> dg.AssetCheckResult:
    """WARN (with the numbers) when PPO's best validation net Sharpe is not above the supervised head's."""
    kept = ", so the supervised behaviour (update 0) was kept" if best_update == 0 else ""
    return dg.AssetCheckResult(
        check_name="beats_supervised", passed=improved, severity=dg.AssetCheckSeverity.WARN,
        description=None if improved else
        f"PPO did not beat the supervised position head on validation net Sharpe: {_fmt(ppo)} vs {_fmt(supervised)} "
        f"(buy-and-hold {_fmt(buy_and_hold)}; best update {best_update}{kept})",
        metadata={"val_ppo_sharpe_net": float(ppo), "val_supervised_sharpe_net": float(supervised),
                  "val_buy_and_hold_sharpe_net": float(buy_and_hold), "best_update": int(best_update)},
    )


def _history_markdown(history: list[dict]) -> str:
    frame = pd.DataFrame(history)[list(HISTORY_COLUMNS)]
    return frame.to_markdown(index=False, floatfmt=".4g")


@dg.asset(
    ins={"supervised_checkpoint": checkpoint_input("supervised_checkpoint")},
    group_name=GROUP,
    kinds={"pytorch"},
    io_manager_key=CHECKPOINT_IO,
    check_specs=[
        dg.AssetCheckSpec("beats_supervised", asset="ppo_policy",
                          description="PPO's best validation net Sharpe is above the supervised position head's "
                          "(warns, with the numbers, when it is not)"),
        dg.AssetCheckSpec("not_collapsed", asset="ppo_policy",
                          description="the policy's validation positions are not constant (collapse guard)"),
        # the promotion gate's criteria for a policy, one check each (production_model requires them)
        *[dg.AssetCheckSpec(c.name, asset="ppo_policy", blocking=c.severity == "error", description=c.description)
          for c in POLICY_CRITERIA],
    ],
    description="PPO fine-tune of the supervised model on the cost-aware trading env (rl: section): policy.pt with "
    "lineage (parent = the supervised checkpoint), validation net Sharpe vs the supervised head and buy-and-hold.",
)
def ppo_policy(context: dg.AssetExecutionContext, experiment: ExperimentConfigResource, artifacts: ArtifactsResource,
               market_panel: pd.DataFrame, feature_table: pd.DataFrame, supervised_checkpoint: CheckpointRef):
    from plus_ultra_ml.data.training_data import TrainingData
    from plus_ultra_ml.lineage import frame_fingerprint
    from plus_ultra_ml.rl.fit import finetune_checkpoint
    from plus_ultra_ml.training.fit import RunIds

    cfg = experiment.load()
    parent = supervised_checkpoint.path
    fingerprint = (feature_table.attrs.get("plus_ultra.features") or {}).get("fingerprint") \
        or frame_fingerprint(feature_table)
    data = TrainingData(feature_table, market_panel, fingerprint)
    result = finetune_checkpoint(
        cfg, data, parent, root=artifacts.version_dir("ppo_policy", run_id=context.run.run_id),
        run_ids=RunIds(context.run.run_id, "ppo_policy", None),
        progress=lambda r: context.log.info(
            f"ppo update {r.update}/{cfg.rl.updates}: reward {_fmt(r.reward_bps)} bps/bar, kl {_fmt(r.approx_kl)}, "
            f"val net Sharpe {_fmt(r.val_sharpe_net)}"),
    )
    m = result.metrics
    ppo, supervised = m["val_ppo_sharpe_net"], m["val_supervised_sharpe_net"]
    beat = beats_supervised_check(result.improved, ppo, supervised, m["val_buy_and_hold_sharpe_net"],
                                  result.ppo.best_update)
    collapse = result.ppo.collapse
    guard = dg.AssetCheckResult(
        check_name="not_collapsed", passed=not collapse.collapsed, severity=dg.AssetCheckSeverity.WARN,
        description=collapse.message,
        metadata={"position_std": collapse.std, "position_mean": collapse.mean,
                  "saturated_share": collapse.saturated_share},
    )
    yield dg.Output(
        CheckpointRef(result.checkpoint, result.lineage),
        metadata={
            "parent": dg.MetadataValue.path(str(parent)),
            "updates": cfg.rl.updates,
            "best_update": result.ppo.best_update,
            "selection": dg.MetadataValue.json(result.selection.record()),  # PPO or the head, on validation only
            "model_kind_selected": "ppo" if result.kept else "supervised",
            "freeze": cfg.rl.freeze,
            "env_steps": result.ppo.env_steps,
            "wall_time_s": round(result.ppo.wall_time_s, 2),
            "val_net_sharpe_ppo": ppo,
            "val_net_sharpe_supervised": supervised,
            "val_net_sharpe_buy_and_hold": m["val_buy_and_hold_sharpe_net"],
            "test_net_sharpe_ppo": m.get("test_ppo_sharpe_net", float("nan")),
            "test_net_sharpe_supervised": m.get("test_supervised_sharpe_net", float("nan")),
            "test_net_sharpe_buy_and_hold": m.get("test_buy_and_hold_sharpe_net", float("nan")),
            "metrics": dg.MetadataValue.json({k: (v if math.isfinite(v) else None) for k, v in m.items()}),
            "history": dg.MetadataValue.md(_history_markdown(result.history)),
        },
    )
    yield beat
    yield guard
    yield from (check_result(outcome) for outcome in policy_outcomes(m))
