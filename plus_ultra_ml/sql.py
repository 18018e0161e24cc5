"""SQL over the artifacts: an in-memory DuckDB with one view per parquet asset under the root.

`<root>/assets/feature_table.parquet` becomes the view `feature_table`; a partitioned asset
(`<root>/assets/walkforward_fold/<partition>.parquet`) becomes one view over all its files with
a `partition` column. Views read the files in place; nothing is copied or written.
"""

from __future__ import annotations

import re
from pathlib import Path

import duckdb

from plus_ultra_ml.errors import PlusUltraError

_NAME = re.compile(r"[^0-9a-zA-Z_]")


def _view_name(path: Path) -> str:
    return _NAME.sub("_", path.stem if path.is_file() else path.name)


def parquet_sources(root: Path) -> dict[str, str]:
    """View name -> DuckDB read expression for every parquet asset under `root`."""
    sources: dict[str, str] = {}
    for base in (root / "assets", root / "reports"):
        if not base.is_dir():
            continue
        for path in sorted(base.iterdir()):
            if path.is_file() and path.suffix == ".parquet":
                sources[_view_name(path)] = f"read_parquet('{path.as_posix()}')"
            elif path.is_dir() and any(path.glob("*.parquet")):
                glob = (path / "*.parquet").as_posix()
                sources[_view_name(path)] = (
                    f"(SELECT *, regexp_extract(filename, '([^/]+)\\.parquet$', 1) AS partition "
                    f"FROM read_parquet('{glob}', filename = true, union_by_name = true))"
                )
    return sources


def open_catalog(root: Path) -> duckdb.DuckDBPyConnection:
    sources = parquet_sources(root)
    if not sources:
        raise PlusUltraError(f"no parquet artifacts under {root}; run `make run` (or materialise assets) first")
    connection = duckdb.connect(":memory:")
    for name, expression in sources.items():
        connection.execute(f'CREATE VIEW "{name}" AS SELECT * FROM {expression}')
    return connection


def run_query(root: Path, query: str):
    """Run `query` against the catalogue; returns a pandas DataFrame."""
    connection = open_catalog(root)
    try:
        return connection.execute(query).df()
    except duckdb.Error as error:
        views = ", ".join(sorted(parquet_sources(root)))
        raise PlusUltraError(f"query failed: {error}. Views: {views}") from None
    finally:
        connection.close()
