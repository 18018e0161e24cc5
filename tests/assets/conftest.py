"""Dagster-layer fixtures: a small fixture database and resources pointing at temporary folders."""

from __future__ import annotations

import pytest

from plus_ultra_assets.io_managers import CheckpointIOManager, ParquetIOManager
from plus_ultra_assets.resources import ArtifactsResource, ExperimentConfigResource, MarketDatabase
from plus_ultra_ml.config import FixtureConfig
from plus_ultra_ml.synthetic.fixture import build_fixture

SMOKE = "configs/smoke.yaml"


@pytest.fixture(scope="session")
def small_market(tmp_path_factory):
    path = tmp_path_factory.mktemp("market") / "fixture.db"
    build_fixture(path, FixtureConfig(symbols=("AAA", "BBB"), rows=1500, alt_features=2, seed=3))
    return path


@pytest.fixture
def resources_for(tmp_path, request):
    """resources_for(db_path, *overrides) -> the resource dict every asset needs."""
    from pathlib import Path

    root = Path(request.config.rootpath)

    def _make(db_path, *overrides: str) -> dict:
        experiment = ExperimentConfigResource(path=str(root / SMOKE), overrides=list(overrides))
        artifacts = ArtifactsResource(root=str(tmp_path))
        return {
            "experiment": experiment,
            "market_database": MarketDatabase(path=str(db_path), experiment=experiment),
            "artifacts": artifacts,
            "parquet_io": ParquetIOManager(artifacts=artifacts),
            "checkpoint_io": CheckpointIOManager(artifacts=artifacts),
        }

    return _make
