"""Close-only series (e.g. skfolio's S&P 500 closes) entering the contract: ingest --close-only writes
open = high = low = close, records the fact in assets.metadata, and the feature pipeline skips every
feature built on open/high/low (and volume, when there was none) with a logged reason."""

from __future__ import annotations

import json
import logging
import sqlite3

import pandas as pd
import pytest
from typer.testing import CliRunner

from plus_ultra_ml.cli import app
from plus_ultra_ml.config import DataConfig, FeaturesConfig
from plus_ultra_ml.data.ingest import IngestOptions, ingest_frame
from plus_ultra_ml.data.panel import build_panel
from plus_ultra_ml.errors import PlusUltraError
from plus_ultra_ml.features.pipeline import compute_features

OHLC_FEATURES = ("parkinson_20", "garman_klass_20", "atr_14", "natr_14", "stoch_k_14", "cci_20")
VOLUME_FEATURES = ("volume_z_20", "obv_ratio_20")


@pytest.fixture(scope="module")
def sp500() -> pd.DataFrame:
    from arch.data import sp500

    return sp500.load().iloc[:600]  # ~2.4 years: enough for every default feature's warm-up


def closes(sp500: pd.DataFrame, with_volume: bool = False) -> pd.DataFrame:
    frame = sp500[["Close", *(["Volume"] if with_volume else [])]].reset_index()
    return frame


def metadata(db, symbol: str):
    with sqlite3.connect(db) as connection:
        (raw,) = connection.execute("SELECT metadata FROM assets WHERE symbol = ?", (symbol,)).fetchone()
    return None if raw is None else json.loads(raw)


def features_of(db) -> tuple[pd.DataFrame, dict[str, str]]:
    result = compute_features(build_panel(db, DataConfig()).panel, FeaturesConfig())
    return result.frame, dict(result.skipped)


def test_close_only_ingest_writes_flat_bars_and_records_the_fact(tmp_path, sp500):
    db = tmp_path / "close.db"
    ingest_frame(db, closes(sp500), IngestOptions(symbol="CLS", close_only=True))
    ingest_frame(db, sp500.reset_index(), IngestOptions(symbol="SPX"))
    assert metadata(db, "CLS") == {"close_only": True, "volume": False}
    assert metadata(db, "SPX") is None  # an ordinary OHLCV symbol is not flagged
    panel = build_panel(db, DataConfig()).panel
    cls = panel.loc["CLS"]
    assert (cls["open"] == cls["close"]).all() and (cls["high"] == cls["close"]).all() and (cls["low"] == cls["close"]).all()
    assert (cls["volume"] == 0).all()
    assert panel.attrs["close_only"] == {"CLS": False}


def test_close_only_symbol_gets_no_ohlc_features_and_the_skip_is_logged(tmp_path, sp500, caplog):
    db = tmp_path / "close.db"
    ingest_frame(db, closes(sp500), IngestOptions(symbol="CLS", close_only=True))
    with caplog.at_level(logging.INFO, logger="plus_ultra_ml.features.pipeline"):
        frame, skipped = features_of(db)
    for name in (*OHLC_FEATURES, *VOLUME_FEATURES):
        assert name not in frame.columns
        assert "close-only" in skipped[name] and "CLS" in skipped[name]
        assert any(name in r.getMessage() and "close-only" in r.getMessage() for r in caplog.records)
    assert {"rvol_20", "rsi_14", "macd"} <= set(frame.columns)  # close-based features stay


def test_close_only_with_volume_keeps_volume_features(tmp_path, sp500):
    db = tmp_path / "close.db"
    ingest_frame(db, closes(sp500, with_volume=True), IngestOptions(symbol="CLS", close_only=True))
    assert metadata(db, "CLS") == {"close_only": True, "volume": True}
    frame, skipped = features_of(db)
    assert "volume_z_20" in frame.columns and "parkinson_20" not in frame.columns
    assert "cmf_20" in skipped  # needs high/low as well as volume


def test_ohlc_symbol_keeps_its_ohlc_features(tmp_path, sp500):
    db = tmp_path / "ohlc.db"
    ingest_frame(db, sp500.reset_index(), IngestOptions(symbol="SPX"))
    frame, skipped = features_of(db)
    assert set(OHLC_FEATURES + VOLUME_FEATURES) <= set(frame.columns)
    assert not any("close-only" in why for why in skipped.values())


def test_a_close_only_symbol_withholds_ohlc_features_from_the_whole_panel(tmp_path, sp500):
    db = tmp_path / "mixed.db"  # feature columns are shared by every symbol of a panel
    ingest_frame(db, closes(sp500), IngestOptions(symbol="CLS", close_only=True))
    ingest_frame(db, sp500.reset_index(), IngestOptions(symbol="SPX"))
    frame, skipped = features_of(db)
    assert not set(OHLC_FEATURES) & set(frame.columns)
    assert "CLS" in skipped["parkinson_20"]


def test_strict_features_do_not_fail_on_close_only_skips(tmp_path, sp500):
    db = tmp_path / "close.db"
    ingest_frame(db, closes(sp500, with_volume=True), IngestOptions(symbol="CLS", close_only=True))
    cfg = FeaturesConfig(strict=True, include=("rvol_20", "parkinson_20"))  # nothing else would be skipped
    result = compute_features(build_panel(db, DataConfig()).panel, cfg)
    assert list(result.frame.columns) == ["rvol_20"] and "close-only" in result.skipped["parkinson_20"]
    with pytest.raises(PlusUltraError, match="strict"):  # an ordinary missing input still fails strict mode
        compute_features(build_panel(db, DataConfig()).panel, FeaturesConfig(strict=True, include=("vwap_dist",)))


def test_close_only_refuses_a_source_with_open_high_low(tmp_path, sp500):
    with pytest.raises(PlusUltraError, match="close-only.*open"):
        ingest_frame(tmp_path / "x.db", sp500.reset_index(), IngestOptions(symbol="SPX", close_only=True))


def test_cli_ingest_close_only(tmp_path, sp500):
    source = tmp_path / "cls.csv"
    closes(sp500).to_csv(source, index=False)
    db = tmp_path / "cli.db"
    result = CliRunner().invoke(app, ["ingest", str(db), str(source), "--symbol", "CLS", "--close-only"])
    assert result.exit_code == 0, result.output
    assert metadata(db, "CLS") == {"close_only": True, "volume": False}
