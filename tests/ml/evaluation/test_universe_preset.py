"""configs/universe.yaml is the daily preset plus exactly the cross-sectional settings its header names."""

from __future__ import annotations

from pathlib import Path

from plus_ultra_ml.config import load_config

CONFIGS = Path(__file__).resolve().parents[3] / "configs"
# Every leaf the universe preset may change from the daily preset (the header says why for each).
CHANGED = {
    "name", "data.db_path", "fixture.symbols", "fixture.universe", "train.monitor", "train.cross_section",
    "train.loss.ic", "walkforward.ppo", "portfolio.construction", "portfolio.compare", "baselines.cross_sectional",
}


def _leaves(tree: dict, prefix: str = "") -> dict[str, object]:
    out = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and name not in CHANGED:
            out.update(_leaves(value, name + "."))
        else:
            out[name] = value
    return out


def test_universe_preset_differs_from_daily_only_where_its_header_says():
    daily = _leaves(load_config(CONFIGS / "daily.yaml").model_dump())
    universe = _leaves(load_config(CONFIGS / "universe.yaml").model_dump())
    differs = {key for key in daily.keys() | universe.keys() if daily.get(key) != universe.get(key)}
    assert differs <= CHANGED, sorted(differs - CHANGED)


def test_universe_preset_trains_and_books_the_cross_section():
    cfg = load_config(CONFIGS / "universe.yaml")
    assert cfg.fixture.universe is not None and cfg.fixture.universe.size == 500 and cfg.fixture.rows == 2520
    assert cfg.train.cross_section is not None and cfg.train.loss.ic > 0 and cfg.train.monitor == "val/ic_date"
    assert cfg.portfolio.constructions == ["long_short", "long_only_topk"]
