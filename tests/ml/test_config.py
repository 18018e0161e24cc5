"""Experiment configs: presets load, unknown keys and bad values are named, overrides apply."""

from __future__ import annotations

from pathlib import Path

import pytest

from plus_ultra_ml.config import ConfigError, config_from_dict, load_config

PRESETS = sorted(Path(__file__).resolve().parents[2].joinpath("configs").glob("*.yaml"))


@pytest.mark.parametrize("path", PRESETS, ids=[p.stem for p in PRESETS])
def test_presets_load(path):
    cfg = load_config(path)
    assert cfg.name == path.stem
    assert len(cfg.fingerprint()) == 64


def test_every_required_preset_exists():
    assert {p.stem for p in PRESETS} >= {"smoke", "desktop", "default"}


@pytest.mark.parametrize(
    ("tree", "overrides", "phrase"),
    [
        ({"data": {"db_pth": "x"}}, [], "unknown key 'data.db_pth'"),
        ({"mdoel": {}}, [], "unknown key 'mdoel'"),
        ({}, ["windows.window=abc"], "'windows.window'"),
        ({}, ["regimes.low_quantile=0.9"], "low_quantile must be below"),
        ({}, ["windows"], "section.key=value"),
        ({}, ["data.ffill_limit=-1"], "'data.ffill_limit'"),
    ],
)
def test_bad_configs_are_named(tree, overrides, phrase):
    with pytest.raises(ConfigError, match=phrase.replace("(", r"\(").replace(".", r"\.")):
        config_from_dict(tree, overrides)


def test_overrides_parse_yaml_scalars_and_change_the_fingerprint():
    base = config_from_dict({})
    cfg = config_from_dict({}, ["windows.window=16", "data.symbols=[AAA, BBB]", "data.start=null"])
    assert cfg.windows.window == 16 and cfg.data.symbols == ("AAA", "BBB") and cfg.data.start is None
    assert cfg.fingerprint() != base.fingerprint()
    assert config_from_dict({}).fingerprint() == base.fingerprint()


def test_configs_are_frozen():
    cfg = config_from_dict({})
    with pytest.raises(Exception):  # pydantic's frozen-instance error  # noqa: B017
        cfg.data.db_path = "elsewhere"


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")
    (tmp_path / "bad.yaml").write_text("data: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(tmp_path / "bad.yaml")
