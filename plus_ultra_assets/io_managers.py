"""IO managers, both rooted in the one `ArtifactsResource`: frames as parquet, checkpoints as typed handles.

- `ParquetIOManager`: frames flow between assets as `<root>/assets/<asset>.parquet` (partitions:
  `<asset>/<partition>.parquet`), written atomically.
- `CheckpointIOManager`: an asset returns a `CheckpointRef` (the file the library wrote, and its
  lineage); the IO manager stores the handle as `<root>/assets/<asset>.checkpoint.json` (atomically),
  records its path, sha256 and lineage as the materialisation's metadata, and hands downstream assets
  the same typed handle (checked: the file still exists and has the recorded sha256). The file itself
  is never copied or re-pickled, so torch is never imported here.
"""

from __future__ import annotations

import json
from pathlib import Path

import dagster as dg
import pandas as pd
from upath import UPath

from plus_ultra_assets.resources import ArtifactsResource
from plus_ultra_ml.artifacts import atomic_path, file_fingerprint, write_text_atomic
from plus_ultra_ml.checkpoints.ref import CheckpointRef

EXTENSION = ".parquet"
HANDLE_SUFFIX = ".checkpoint.json"
CHECKPOINT_IO = "checkpoint_io"  # the resource key definitions.py binds CheckpointIOManager to


def checkpoint_input(asset: str) -> dg.AssetIn:
    """An upstream checkpoint asset, loaded as a `CheckpointRef` by the checkpoint IO manager (also
    when the upstream asset is not in the run's selection)."""
    return dg.AssetIn(key=asset, input_manager_key=CHECKPOINT_IO)


class _AtomicParquet(dg.UPathIOManager):
    extension = EXTENSION

    def dump_to_path(self, context: dg.OutputContext, obj: pd.DataFrame, path: UPath) -> None:
        with atomic_path(str(path)) as tmp:  # temp file + rename: a crash leaves no half file
            obj.to_parquet(tmp, engine="pyarrow")

    def load_from_path(self, context: dg.InputContext, path: UPath) -> pd.DataFrame:
        return pd.read_parquet(str(path), engine="pyarrow")


class ParquetIOManager(dg.ConfigurableIOManagerFactory):
    """`<artifacts root>/assets/<asset key>.parquet` (partitions: `<asset>/<partition>.parquet`)."""

    artifacts: ArtifactsResource

    def create_io_manager(self, context) -> _AtomicParquet:
        return _AtomicParquet(base_path=UPath(str(self.artifacts.assets_dir)))


def _handle_path(root: Path, key: dg.AssetKey, partition: str | None) -> Path:
    folder = root.joinpath(*key.path[:-1])
    name = key.path[-1]
    return folder / name / f"{partition}{HANDLE_SUFFIX}" if partition else folder / f"{name}{HANDLE_SUFFIX}"


class CheckpointIOManager(dg.ConfigurableIOManager):
    """Checkpoint handles between assets (see the module docstring)."""

    artifacts: ArtifactsResource

    def handle_output(self, context: dg.OutputContext, obj: CheckpointRef) -> None:
        if not isinstance(obj, CheckpointRef):
            raise dg.Failure(f"{context.asset_key.to_user_string()} must return a CheckpointRef, "
                             f"not a {type(obj).__name__}")
        partition = context.asset_partition_key if context.has_asset_partitions else None
        path = Path(obj.path).resolve()
        fingerprint = file_fingerprint(path)
        handle = CheckpointRef(path, obj.lineage, context.run_id)
        tree = {**handle.to_dict(), "fingerprint": fingerprint}
        write_text_atomic(_handle_path(self.artifacts.assets_dir, context.asset_key, partition),
                          json.dumps(tree, indent=2, sort_keys=True) + "\n")
        context.add_output_metadata({
            "path": dg.MetadataValue.path(str(path)),
            "lineage_path": dg.MetadataValue.path(str(handle.sidecar)),
            "fingerprint": fingerprint,
            "kind": obj.kind,
            "lineage": dg.MetadataValue.json(obj.lineage.summary()),
        })

    def load_input(self, context: dg.InputContext) -> CheckpointRef:
        key = context.asset_key
        name = key.to_user_string()
        partition = context.asset_partition_key if context.has_asset_partitions else None
        stored = _handle_path(self.artifacts.assets_dir, key, partition)
        if not stored.is_file():
            raise dg.Failure(f"no {name} checkpoint is stored under {self.artifacts.assets_dir}: "
                             f"materialise {name} first")
        tree = json.loads(stored.read_text())
        handle = CheckpointRef.from_dict(tree)
        if not handle.path.is_file() or file_fingerprint(handle.path) != tree.get("fingerprint"):
            raise dg.Failure(f"the {name} checkpoint {handle.path} (run {handle.run_id}) is gone or changed since it "
                             f"was materialised; materialise {name} again")
        return handle
