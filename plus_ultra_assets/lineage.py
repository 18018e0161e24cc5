"""What the Dagster instance knows about an artifact's lineage (a `plus_ultra.lineage` entry point).

Given a checkpoint's lineage record, find the materialisation its run recorded and walk the
`dagster/input_event_pointer/<upstream>` tags back to the source: each upstream materialisation's
run, code version and data version. Used by `plus-ultra lineage` when $DAGSTER_HOME holds an
instance; returns None otherwise (the file-only trace stands on its own).
"""

import os
from pathlib import Path
from typing import Any

import dagster as dg

POINTER = "dagster/input_event_pointer/"
MAX_NODES = 64


def _materialisation(instance: dg.DagsterInstance, asset: str, run_id: str, partition: str | None):
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey(asset), asset_partitions=[partition] if partition else None),
        limit=200).records
    return next((r for r in records if r.run_id == run_id), None)


def _by_storage_id(instance: dg.DagsterInstance, asset: str, storage_id: int):
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey(asset), storage_ids=[storage_id]), limit=1).records
    if records:
        return records[0]
    observed = instance.fetch_observations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey(asset), storage_ids=[storage_id]), limit=1).records
    return observed[0] if observed else None


def _describe(asset: str, record) -> dict[str, Any]:
    event = record.asset_materialization or record.asset_observation
    tags = dict(event.tags or {})
    return {"asset": asset, "run_id": record.run_id, "storage_id": record.storage_id,
            "partition": event.partition, "timestamp": record.timestamp,
            "code_version": tags.get("dagster/code_version"), "data_version": tags.get("dagster/data_version"),
            "upstream": {k[len(POINTER):]: int(v) for k, v in tags.items()
                         if k.startswith(POINTER) and v.isdigit()}}  # "NULL": never materialised


def dagster_lineage(record) -> dict[str, Any] | None:
    home = os.environ.get("DAGSTER_HOME")
    run_id, asset = record.run_ids.get("dagster_run_id"), record.run_ids.get("dagster_asset")
    if not home or not Path(home, "dagster.yaml").exists() or not run_id or not asset:
        return None
    instance = dg.DagsterInstance.get()
    run = instance.get_run_by_id(run_id)
    root = _materialisation(instance, asset, run_id, record.run_ids.get("dagster_partition"))
    out: dict[str, Any] = {"instance": home, "run": None if run is None else {
        "run_id": run.run_id, "job": run.job_name, "status": run.status.value,
        "tags": {k: v for k, v in run.tags.items() if not k.startswith(".dagster")}}}
    if root is None:
        out["materialisations"] = []
        return out
    nodes, todo, seen = [], [(asset, root)], set()
    while todo and len(nodes) < MAX_NODES:
        name, event = todo.pop(0)
        if event.storage_id in seen:
            continue
        seen.add(event.storage_id)
        node = _describe(name, event)
        nodes.append(node)
        for upstream, storage_id in node["upstream"].items():
            parent = _by_storage_id(instance, upstream, storage_id)
            if parent is not None:
                todo.append((upstream, parent))
    out["materialisations"] = nodes
    return out
