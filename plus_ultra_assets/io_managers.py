"""Frames flow between assets as parquet files under the artifacts root, written atomically."""

from __future__ import annotations

import dagster as dg
import pandas as pd
from upath import UPath

from plus_ultra_ml.artifacts import atomic_path


EXTENSION = ".parquet"


class _AtomicParquet(dg.UPathIOManager):
    extension = EXTENSION

    def dump_to_path(self, context: dg.OutputContext, obj: pd.DataFrame, path: UPath) -> None:
        with atomic_path(str(path)) as tmp:  # temp file + rename: a crash leaves no half file
            obj.to_parquet(tmp, engine="pyarrow")

    def load_from_path(self, context: dg.InputContext, path: UPath) -> pd.DataFrame:
        return pd.read_parquet(str(path), engine="pyarrow")


class ParquetIOManager(dg.ConfigurableIOManagerFactory):
    """`<base_path>/<asset key>.parquet` (partitions: `<asset>/<partition>.parquet`)."""

    base_path: str

    def create_io_manager(self, context) -> _AtomicParquet:
        return _AtomicParquet(base_path=UPath(self.base_path))
