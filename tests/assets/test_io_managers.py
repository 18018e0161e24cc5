"""The checkpoint IO manager: a typed handle in, the same handle (checked against its file) out."""

from __future__ import annotations

import dagster as dg
import pytest

from plus_ultra_assets.io_managers import CheckpointIOManager
from plus_ultra_assets.resources import ArtifactsResource
from plus_ultra_ml.checkpoints.ref import CheckpointRef
from plus_ultra_ml.lineage import LineageRecord, write_sidecar

KEY = dg.AssetKey("supervised_checkpoint")


def _handle(tmp_path) -> CheckpointRef:
    path = tmp_path / "run" / "model.pt"
    path.parent.mkdir()
    path.write_bytes(b"weights")  # the IO manager never opens the file as torch: bytes are enough
    record = LineageRecord(kind="supervised", created_at="", database={}, panel={}, features={}, config={},
                           config_hash="x", code_version={}, seed=0, data_cutoff="2024-01-01", split={})
    write_sidecar(record, path)
    return CheckpointRef(path, record)


def test_stores_the_handle_under_the_artifacts_root_and_hands_it_on(tmp_path):
    io = CheckpointIOManager(artifacts=ArtifactsResource(root=str(tmp_path / "home")))
    handle = _handle(tmp_path)
    io.handle_output(dg.build_output_context(asset_key=KEY, run_id="run-1"), handle)
    assert (tmp_path / "home" / "assets" / "supervised_checkpoint.checkpoint.json").is_file()
    loaded = io.load_input(dg.build_input_context(asset_key=KEY))
    assert loaded == CheckpointRef(handle.path.resolve(), handle.lineage, "run-1")


def test_a_changed_file_is_refused(tmp_path):
    io = CheckpointIOManager(artifacts=ArtifactsResource(root=str(tmp_path / "home")))
    handle = _handle(tmp_path)
    io.handle_output(dg.build_output_context(asset_key=KEY, run_id="run-1"), handle)
    handle.path.write_bytes(b"other weights")
    with pytest.raises(dg.Failure, match="gone or changed"):
        io.load_input(dg.build_input_context(asset_key=KEY))
