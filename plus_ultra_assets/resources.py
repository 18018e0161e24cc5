"""Resources: the experiment config and the market database, chosen in definitions.py."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
from pydantic import Field

from plus_ultra_ml.config import ExperimentConfig, load_config


class ExperimentConfigResource(dg.ConfigurableResource):
    """An experiment YAML (configs/*.yaml) plus dotted overrides ("windows.window=16")."""

    path: str = Field(default="configs/smoke.yaml", description="experiment YAML")
    overrides: list[str] = Field(default_factory=list, description="section.key=value overrides")

    def load(self) -> ExperimentConfig:
        return load_config(self.path, self.overrides)


class MarketDatabase(dg.ConfigurableResource):
    """The user's candle database, always opened read-only by the pipeline."""

    path: str = Field(default="", description="SQLite file; empty: the experiment's data.db_path")
    experiment: ExperimentConfigResource

    def resolve(self) -> Path:
        return Path(self.path or self.experiment.load().data.db_path).expanduser().resolve()


class ArtifactsResource(dg.ConfigurableResource):
    """The artifacts root: everything the Dagster layer stores lives under it, and nowhere else.

    `<root>/assets` frames (parquet IO manager) and stored checkpoint handles (checkpoint IO
    manager); `<root>/checkpoints/<asset>` the files the library writes; `<root>/reports`;
    `<root>/registry` (unless `service.registry_dir` says otherwise).
    """

    root: str = Field(description="artifacts root ($PLUS_ULTRA_HOME)")

    @property
    def assets_dir(self) -> Path:
        return Path(self.root) / "assets"

    def checkpoints_dir(self, *parts: str) -> Path:
        """Where the library writes an asset's checkpoints (one run-key folder each)."""
        return Path(self.root).joinpath("checkpoints", *parts)

    def version_dir(self, *parts: str, run_id: str) -> Path:
        """One materialisation's own checkpoint folder, ``checkpoints/<asset>[/<partition>]/<run id>``: a
        rerun (a backfill of the same partition) writes a new version beside the old ones and never
        rewrites them, so an older artifact's files, and the lineage that fingerprints them, stay as they
        were. Every version is kept (docs/architecture.md, "Artifact versions")."""
        return self.checkpoints_dir(*parts, run_id)

    def asset_path(self, asset: str) -> Path:
        """Where the parquet IO manager keeps an unpartitioned asset."""
        return self.assets_dir / f"{asset}.parquet"

    def partition_path(self, asset: str, partition: str) -> Path:
        """Where the parquet IO manager keeps one partition of an asset."""
        return self.assets_dir / asset / f"{partition}.parquet"
