"""Pipeline commands: where the outputs of a run are, and how to look at them."""

from __future__ import annotations

import os
from pathlib import Path

from plus_ultra_ml.cli.common import console, user_errors


def _size(path: Path) -> str:
    size = float(path.stat().st_size)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:,.0f} {unit}" if unit == "B" else f"{size:,.1f} {unit}"
        size /= 1024
    return ""


@user_errors
def outputs() -> None:
    """List the artifacts under $PLUS_ULTRA_HOME and how to open the Dagster UI on them."""
    from rich.table import Table

    from plus_ultra_ml.artifacts import home

    root = home(create=False)
    table = Table(title=f"artifacts under {root}")
    table.add_column("file")
    table.add_column("size", justify="right")
    table.add_column("modified (UTC)")
    files = sorted(p for p in root.rglob("*") if p.is_file() and "dagster" not in p.relative_to(root).parts[:1]
                   and not p.name.startswith("."))
    import datetime as dt

    for path in files:
        stamp = dt.datetime.fromtimestamp(path.stat().st_mtime, tz=dt.UTC).strftime("%Y-%m-%d %H:%M:%S")
        table.add_row(str(path.relative_to(root)), _size(path), stamp)
    console.print(table)
    dagster_home = os.environ.get("DAGSTER_HOME", str(root / "dagster"))
    console.print(f"Dagster instance (runs, materialisations, checks): {dagster_home}")
    console.print("Query the tables with DuckDB:  plus-ultra sql \"select * from market_panel limit 5\"")
    console.print("Open the UI on the same instance:  make ui   (then http://127.0.0.1:3000)")


@user_errors
def sql(
    query: str,
    limit: int = 50,
) -> None:
    """Run QUERY in DuckDB over the parquet artifacts (one view per asset: market_panel, feature_table, ...)."""
    from rich.table import Table

    from plus_ultra_ml.artifacts import home
    from plus_ultra_ml.sql import run_query

    frame = run_query(home(create=False), query)
    table = Table(show_lines=False)
    for column in frame.columns:
        table.add_column(str(column))
    for row in frame.head(limit).itertuples(index=False):
        table.add_row(*(f"{v:.6g}" if isinstance(v, float) else str(v) for v in row))
    console.print(table)
    if len(frame) > limit:
        console.print(f"({len(frame) - limit:,} more rows; raise --limit)")
