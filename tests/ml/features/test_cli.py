"""`plus-ultra features list` and `features build`, and the generated catalogue page is current."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from typer.testing import CliRunner

from plus_ultra_ml.cli.app import app
from plus_ultra_ml.features.catalogue import catalogue_markdown
from plus_ultra_ml.features.registry import default_registry

DOCS = Path(__file__).resolve().parents[3] / "docs" / "features.md"
runner = CliRunner()


def test_docs_page_is_generated_from_the_registry():
    assert DOCS.read_text() == catalogue_markdown(), (
        "docs/features.md is stale: run `plus-ultra features list --markdown --output docs/features.md`"
    )


def test_list_prints_every_feature_as_markdown(tmp_path):
    result = runner.invoke(app, ["features", "list", "--markdown"])
    assert result.exit_code == 0, result.output
    for spec in default_registry():
        assert f"`{spec.name}`" in result.output
    out = tmp_path / "features.md"
    assert runner.invoke(app, ["features", "list", "--output", str(out)]).exit_code == 0
    assert out.read_text() == catalogue_markdown()


def test_list_prints_a_table():
    result = runner.invoke(app, ["features", "list"])
    assert result.exit_code == 0 and "rsi_14" in result.output and "a158_CORD60" in result.output


def test_build_writes_a_feature_table_from_a_database(tmp_path):
    from plus_ultra_ml.config import FixtureConfig
    from plus_ultra_ml.features.pipeline import read_feature_metadata
    from plus_ultra_ml.synthetic.fixture import build_fixture

    db = tmp_path / "market.db"
    build_fixture(db, FixtureConfig(rows=600, symbols=("AAA", "BBB")))
    config = tmp_path / "exp.yaml"
    config.write_text("name: t\nregimes:\n  min_history: 100\n")
    out = tmp_path / "out" / "features.parquet"
    result = runner.invoke(app, ["features", "build", str(db), "--config", str(config), "--output", str(out),
                                 "features.exclude=[alt_alt_0]"])
    assert result.exit_code == 0, result.output
    frame = pd.read_parquet(out)
    assert len(frame) == 1200 and "regime_trend" in frame and "alt_alt_1" in frame and "alt_alt_0" not in frame
    assert not any("truth" in c for c in frame.columns)
    assert frame["regime_trend"].notna().any()
    assert read_feature_metadata(out)["config"]["exclude"] == []


def test_build_reports_a_bad_database_in_one_sentence(tmp_path):
    config = tmp_path / "exp.yaml"
    config.write_text("name: t\n")
    result = runner.invoke(app, ["features", "build", str(tmp_path / "nope.db"), "--config", str(config),
                                 "--output", str(tmp_path / "f.parquet")])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert not (tmp_path / "f.parquet").exists()
