"""The promotion gate and the production pointer: only checked models, atomic switch, recorded in lineage."""

from __future__ import annotations

import json
import math

import pytest

from plus_ultra_ml.artifacts import file_fingerprint
from plus_ultra_ml.checkpoints.chain import lineage_chain, read_lineage
from plus_ultra_ml.serving.predictor import Predictor, PredictorError
from plus_ultra_ml.serving.gate import evaluate_gate
from plus_ultra_ml.serving.registry import Registry, RegistryError

from .conftest import GOOD_METRICS, make_checkpoint, make_policy


@pytest.fixture
def registry(tmp_path):
    return Registry(tmp_path / "registry")


@pytest.mark.parametrize("change, failing", [
    ({}, []),
    ({"test_ic_next_bar": -0.01}, ["heldout_ic_positive", "beats_naive_baselines"]),
    ({"test_ic_next_bar": 0.02}, ["beats_naive_baselines"]),  # above momentum 0.01, below linear 0.03
    ({"baseline_linear_ic_next_bar": math.nan}, ["beats_naive_baselines"]),
    ({"test_loss": math.inf}, ["finite_losses"]),
    ({"val_loss": None}, ["finite_losses"]),
    ({"test_sharpe_net_low": -0.1}, ["significant"]),
    ({"test_sharpe_net": -0.5, "test_sharpe_net_low": -2.0}, ["significant", "beats_persistence", "beats_baselines"]),
    ({"test_sharpe_net": 1.5}, ["beats_baselines"]),  # above momentum 1.0, below ridge 2.0
    ({"baseline_vol_target_sharpe_net": math.nan}, ["beats_baselines"]),
])
def test_gate_mirrors_the_asset_checks(checkpoint, change, failing):
    import dagster as dg

    from plus_ultra_assets.assets.models import gate_check_results, supervised_checkpoint

    record = read_lineage(checkpoint)
    metrics = {**GOOD_METRICS, **change}
    gate = evaluate_gate(record.with_updates(metrics=metrics))
    assert [c.name for c in gate.failures()] == failing
    assert gate.passed == (not failing)
    # the supervised_checkpoint asset's checks on the same metrics: one per held-out criterion of the
    # gate, with the same verdict, the same severity, and specs of the same names
    checks = {c.check_name: c for c in gate_check_results(metrics)}
    criteria = {c.name: c for c in gate.checks if c.name != "servable"}
    assert list(checks) == list(criteria)
    assert {n: c.passed for n, c in checks.items()} == {n: c.passed for n, c in criteria.items()}
    assert {n: c.severity for n, c in checks.items()} == {
        n: dg.AssetCheckSeverity.ERROR if c.severity == "error" else dg.AssetCheckSeverity.WARN
        for n, c in criteria.items()}
    assert {s.name for s in supervised_checkpoint.check_specs} == set(criteria)


def test_gate_needs_held_out_metrics_a_servable_kind_and_passing_external_checks(checkpoint):
    record = read_lineage(checkpoint)
    no_test = {k: v for k, v in GOOD_METRICS.items() if k != "test_loss"}
    assert [c.name for c in evaluate_gate(record.with_updates(metrics=no_test)).failures()] == ["finite_losses"]
    assert [c.name for c in evaluate_gate(record.with_updates(kind="pretrain")).failures()] == ["servable"]
    gate = evaluate_gate(record, {"heldout_ic_positive": True, "beats_naive_baselines": False})
    assert [c.name for c in gate.failures()] == ["external:beats_naive_baselines"]


def test_promotion_copies_the_file_and_records_the_pointer_in_lineage(registry, checkpoint):
    result = registry.promote(checkpoint, run_ids={"dagster_run_id": "run-1"})
    assert result.promoted and result.gate.passed
    production = registry.production()
    assert production.fingerprint == file_fingerprint(checkpoint) == file_fingerprint(production.path)
    assert production.path.parent.parent == registry.root / "models" and production.path != checkpoint
    chain = lineage_chain(registry.pointer_path)  # production -> the copy (-> its parents, if any)
    assert [link.record.kind for link in chain] == ["production", "supervised"]
    assert chain[1].path == production.path and chain[1].intact
    pointer = json.loads(registry.pointer_path.read_text())
    assert pointer["promotion"]["gate"]["passed"] and pointer["promotion"]["previous"] is None
    assert pointer["run_ids"] == {"dagster_run_id": "run-1"}
    assert pointer["promotion"]["source"] == str(checkpoint.resolve())
    assert len(registry.history()) == 1
    again = registry.promote(checkpoint)
    assert not again.promoted and "already production" in again.message


def test_a_failing_gate_leaves_the_pointer_untouched(tmp_path, registry, checkpoint, cfg, training_data):
    registry.promote(checkpoint)
    before = registry.pointer_path.read_bytes()
    weak = make_checkpoint(cfg, training_data, tmp_path / "weak.pt", seed=1,
                           metrics={**GOOD_METRICS, "test_ic_next_bar": 0.02})
    result = registry.promote(weak)
    assert not result.promoted and not result.gate.passed
    assert registry.pointer_path.read_bytes() == before
    assert result.production.fingerprint == file_fingerprint(checkpoint)


def test_new_promotion_then_rollback(tmp_path, registry, checkpoint, cfg, training_data):
    registry.promote(checkpoint)
    newer = make_checkpoint(cfg, training_data, tmp_path / "newer.pt", seed=2)
    assert registry.promote(newer).promoted
    pointer = registry.production()
    assert pointer.fingerprint == file_fingerprint(newer)
    assert pointer.promotion["previous"]["fingerprint"] == file_fingerprint(checkpoint)
    rolled = registry.rollback()
    assert rolled.promoted and registry.production().fingerprint == file_fingerprint(checkpoint)
    assert registry.production().promotion["reason"] == "rollback"
    assert [p.fingerprint[:8] for p in registry.history()] == [
        file_fingerprint(f)[:8] for f in (checkpoint, newer, checkpoint)]


def test_the_service_refuses_a_copy_that_changed_after_promotion(registry, checkpoint, market):
    registry.promote(checkpoint)
    production = registry.production()
    production.path.chmod(0o644)
    with open(production.path, "ab") as handle:
        handle.write(b"tampered")
    with pytest.raises(PredictorError, match="changed after promotion"):
        Predictor.load(production.path, db_path=market, expected_fingerprint=production.fingerprint)


def test_errors_name_what_is_wrong(tmp_path, registry):
    with pytest.raises(RegistryError, match="does not exist"):
        registry.promote(tmp_path / "missing.pt")
    with pytest.raises(RegistryError, match="nothing to roll back"):
        registry.rollback()
    registry.root.mkdir(parents=True)
    registry.pointer_path.write_text("{not json")
    with pytest.raises(RegistryError, match="unreadable"):
        registry.production()


def test_the_gate_promotes_the_better_candidate_that_passes(tmp_path, registry, checkpoint):
    """Supervised (held-out net Sharpe 3.0) and its PPO policy (4.0): PPO when it passes and is better."""
    better = make_policy(checkpoint, tmp_path / "better" / "policy.pt")
    result = registry.promote_best([checkpoint, better])
    assert result.promoted and registry.production().model_kind == "ppo"
    assert registry.production().fingerprint == file_fingerprint(better)
    pointer = json.loads(registry.pointer_path.read_text())
    assert pointer["parent"]["model_kind"] == "ppo" and pointer["parent"]["kind"] == "ppo_policy"
    assert [c["model_kind"] for c in pointer["promotion"]["candidates"]] == ["supervised", "ppo"]
    assert [link.record.kind for link in lineage_chain(registry.pointer_path)][:2] == ["production", "ppo_policy"]


@pytest.mark.parametrize("change, failing", [
    ({"test_ppo_sharpe_net": 2.5}, []),  # passes, but below the supervised model's 3.0
    ({"selection_kept": 0.0}, ["selected"]),  # dropped on validation: the fold's policy is the head
    ({"test_ppo_sharpe_net_low": -0.2}, ["significant"]),
    ({"test_ppo_sharpe_net": 1.8}, ["beats_baselines"]),  # below ridge's 2.0
    ({"ppo_value_loss": math.nan}, ["finite_losses"]),
])
def test_the_head_is_promoted_when_ppo_is_worse_or_fails(tmp_path, registry, checkpoint, change, failing):
    from .conftest import POLICY_METRICS

    policy = make_policy(checkpoint, tmp_path / "policy.pt", metrics={**POLICY_METRICS, **change})
    result = registry.promote_best([checkpoint, policy])
    gates = {g.kind: g for _, g in result.candidates}
    assert [c.name for c in gates["ppo"].failures()] == failing and gates["supervised"].passed
    assert result.promoted and registry.production().model_kind == "supervised"
    assert registry.production().fingerprint == file_fingerprint(checkpoint)


def test_nothing_is_promoted_when_neither_passes(tmp_path, registry, checkpoint, cfg, training_data):
    from .conftest import POLICY_METRICS

    weak = make_checkpoint(cfg, training_data, tmp_path / "weak.pt", seed=1,
                           metrics={**GOOD_METRICS, "test_sharpe_net_low": -1.0})
    policy = make_policy(weak, tmp_path / "policy.pt", metrics={**POLICY_METRICS, "selection_kept": 0.0})
    result = registry.promote_best([weak, policy])
    assert not result.promoted and registry.production() is None
    assert "significant" in result.message and "selected" in result.message
