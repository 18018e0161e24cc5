"""`plus-ultra pretrain`, `plus-ultra train --pretrain-checkpoint`, `plus-ultra lineage` on a small fixture."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from plus_ultra_ml.cli import app
from plus_ultra_ml.config import FixtureConfig
from plus_ultra_ml.synthetic.fixture import build_fixture

ROOT = Path(__file__).resolve().parents[3]
TINY = ["windows.window=16", "model.backbone={d_model: 8, n_layers: 1, n_heads: 2, d_state: 4, ffn_mult: 1}",
        "pretrain.limit_train_batches=3", "train.limit_train_batches=4", "train.epochs=1", "tracking.mode=disabled"]


@pytest.fixture(scope="module")
def market(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("cli") / "fixture.db"
    build_fixture(path, FixtureConfig(symbols=("AAA", "BBB"), rows=1500, alt_features=2, seed=5))
    return path


def run(*args: str):
    return CliRunner().invoke(app, list(args), catch_exceptions=False)


def test_pretrain_train_and_lineage_commands(market, tmp_path):
    config = str(ROOT / "configs" / "smoke.yaml")
    pre = run("pretrain", "--config", config, "--db", str(market), "--out", str(tmp_path / "pre"), *TINY)
    assert pre.exit_code == 0, pre.output
    (pre_ckpt,) = (tmp_path / "pre").glob("*/model.pt")
    sup = run("train", "--config", config, "--db", str(market), "--out", str(tmp_path / "sup"),
              "--pretrain-checkpoint", str(pre_ckpt), *TINY)
    assert sup.exit_code == 0, sup.output
    assert "test_ic_next_bar" in sup.output and "baseline_linear_ic_next_bar" in sup.output
    (sup_ckpt,) = (tmp_path / "sup").glob("*/model.pt")

    shown = run("lineage", str(sup_ckpt), "--json")
    assert shown.exit_code == 0, shown.output
    traced = json.loads(shown.output)
    links = traced["links"]
    assert [link["kind"] for link in links] == ["supervised", "pretrain"]
    assert links[1]["path"] == str(pre_ckpt.resolve()) and all(link["status"] == "ok" for link in links)
    assert traced["database"]["path"] == str(market.resolve()) and traced["database"]["status"] == "ok"
    assert traced["healthy"] is True
    table = run("lineage", str(sup_ckpt))
    assert table.exit_code == 0 and "data_cutoff" in table.output


def test_mismatched_pretrain_checkpoint_is_one_clear_error(market, tmp_path):
    config = str(ROOT / "configs" / "smoke.yaml")
    assert run("pretrain", "--config", config, "--db", str(market), "--out", str(tmp_path / "pre"), *TINY).exit_code == 0
    (pre_ckpt,) = (tmp_path / "pre").glob("*/model.pt")
    wider = [*TINY, "model.backbone.d_model=16"]
    result = CliRunner().invoke(app, ["train", "--config", config, "--db", str(market), "--out", str(tmp_path / "sup"),
                                      "--pretrain-checkpoint", str(pre_ckpt), *wider])
    assert result.exit_code == 1
    assert "model.backbone.d_model: checkpoint 8, this run 16" in result.output
    assert "Traceback" not in result.output
