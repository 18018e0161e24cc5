"""`plus-ultra predict`, `plus-ultra promote` and `plus-ultra serve --help`."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from plus_ultra_ml.cli import app
from plus_ultra_ml.serving.predictor import Predictor
from plus_ultra_ml.serving.registry import Registry

from .conftest import GOOD_METRICS, SYMBOLS, make_checkpoint


def run(*args: str):
    return CliRunner().invoke(app, list(args), catch_exceptions=False)


@pytest.fixture(scope="module")
def config_file(cfg, tmp_path_factory):
    path = tmp_path_factory.mktemp("cli_cfg") / "serving.yaml"
    path.write_text(yaml.safe_dump(cfg.to_dict()))
    return path


def test_predict_writes_out_of_sample_rows_in_the_report_format(tmp_path, config_file, checkpoint, market):
    output = tmp_path / "predictions.parquet"
    result = run("predict", "--config", str(config_file), "--checkpoint", str(checkpoint), "--output", str(output),
                 "--db", str(market), "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output[result.output.index("{"):])
    frame = pd.read_parquet(output)
    cutoff = pd.Timestamp(summary["data_cutoff"])
    assert (frame.index.get_level_values("timestamp") > cutoff).all() and len(frame) == summary["rows_written"]
    assert {"next_return", "position__model", "position__buy_and_hold", "forecast__h1", "forecast__h2",
            "target__h1", "regime__trend"} <= set(frame.columns)
    assert summary["out_of_sample_bars"] == int(np.isfinite(frame["next_return"]).sum())
    assert set(summary["metrics"]) == {"model", "buy_and_hold"} and summary["ic"]
    served = Predictor.load(checkpoint, db_path=market).predict(list(SYMBOLS))
    latest = {s["symbol"]: s for s in summary["latest"]}
    for signal in served.signals:
        assert latest[signal.symbol]["timestamp"] == signal.timestamp.isoformat()
        assert latest[signal.symbol]["position"] == pytest.approx(signal.position, abs=1e-5)
    report = run("report", "--predictions", str(output), "--output", str(tmp_path / "report.md"))
    assert report.exit_code == 0, report.output  # the evaluation room reads the file as it is


def test_predict_csv_and_all_bars(tmp_path, config_file, checkpoint, market):
    output = tmp_path / "predictions.csv"
    result = run("predict", "--config", str(config_file), "--checkpoint", str(checkpoint), "--output", str(output),
                 "--db", str(market), "--all-bars")
    assert result.exit_code == 0, result.output
    frame = pd.read_csv(output, parse_dates=["timestamp"])
    assert frame["in_sample"].any() and not frame["in_sample"].all()
    assert "latest signals" in result.output and "out of sample" in result.output
    bad = run("predict", "--config", str(config_file), "--checkpoint", str(checkpoint), "--output", "x.txt")
    assert bad.exit_code == 1 and ".parquet or .csv" in bad.output


def test_promote_gate_exit_codes_and_status(tmp_path, config_file, checkpoint, cfg, training_data):
    registry = tmp_path / "registry"
    weak = make_checkpoint(cfg, training_data, tmp_path / "weak.pt", seed=3,
                           metrics={**GOOD_METRICS, "test_ic_next_bar": -0.01})
    failed = run("promote", str(weak), "--config", str(config_file), "--registry", str(registry))
    assert failed.exit_code == 3 and "heldout_ic_positive" in failed.output
    assert Registry(registry).production() is None
    ok = run("promote", str(checkpoint), "--config", str(config_file), "--registry", str(registry))
    assert ok.exit_code == 0 and "promoted" in ok.output
    status = run("promote", "--status", "--config", str(config_file), "--registry", str(registry))
    assert status.exit_code == 0 and Registry(registry).production().fingerprint[:12] in status.output
    lineage = run("lineage", str(Registry(registry).pointer_path))
    assert lineage.exit_code == 0 and "production" in lineage.output and "supervised" in lineage.output


def test_serve_help_is_fast_and_documents_the_options():
    result = run("serve", "--help")
    assert result.exit_code == 0
    for option in ("--config", "--checkpoint", "--host", "--port", "--db"):
        assert option in result.output


def test_predict_serves_a_ppo_policy_and_reports_its_kind(tmp_path, config_file, policy_checkpoint, market):
    output = tmp_path / "ppo.parquet"
    result = run("predict", "--config", str(config_file), "--checkpoint", str(policy_checkpoint), "--output",
                 str(output), "--db", str(market), "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output[result.output.index("{"):])
    assert summary["model_kind"] == "ppo" and summary["checkpoint"] == str(policy_checkpoint.resolve())
    served = Predictor.load(policy_checkpoint, db_path=market).predict(list(SYMBOLS))
    latest = {s["symbol"]: s for s in summary["latest"]}
    for signal in served.signals:  # the policy's replayed positions, as the service gives them
        assert latest[signal.symbol]["position"] == pytest.approx(signal.position, abs=1e-5)


def test_promote_offers_the_supervised_model_and_its_policy(tmp_path, config_file, checkpoint, policy_checkpoint):
    registry = tmp_path / "registry"
    ok = run("promote", str(checkpoint), "--policy", str(policy_checkpoint), "--config", str(config_file),
             "--registry", str(registry))
    assert ok.exit_code == 0 and "promoted ppo" in ok.output, ok.output
    assert Registry(registry).production().model_kind == "ppo"


def _summary(n_symbols: int) -> dict:
    rng = np.random.default_rng(0)
    positions = np.clip(rng.normal(0, 0.2, n_symbols), -0.9, 0.9)
    if n_symbols > 11:
        positions[7], positions[11] = 1.0, -1.0
    return {"checkpoint_sha256": "ab" * 32, "data_cutoff": "2024-01-01T00:00:00+00:00", "rows_written": 10,
            "output": "x.parquet", "out_of_sample_bars": 0, "metrics": {}, "ic": {},
            "latest": [{"symbol": f"U{i:03d}", "timestamp": "2024-02-01T00:00:00+00:00", "position": float(p),
                        "forecast_h1": 0.001 * i} for i, p in enumerate(positions)]}


@pytest.mark.parametrize("n_symbols", [4, 300])
def test_predict_prints_latest_signals_whole_for_a_few_symbols_summarised_for_many(tmp_path, n_symbols):
    from plus_ultra_ml.cli.common import console
    from plus_ultra_ml.cli.serve_commands import _print_predictions, latest_table
    from plus_ultra_ml.symbol_summary import TOP_K

    summary = _summary(n_symbols)
    latest_table(summary, tmp_path / "predictions.parquet")
    with console.capture() as captured:
        _print_predictions(summary)
    text = captured.get()
    names = {word for word in text.replace(",", " ").split() if word.startswith("U") and word[1:].isdigit()}
    if n_symbols == 4:
        assert "latest_table" not in summary and names == {"U000", "U001", "U002", "U003"}
        assert not (tmp_path / "predictions_latest.csv").exists()
        return
    assert len(text.splitlines()) < 16 and len(names) == 2 * TOP_K
    assert "most long: U007 1.0000" in text and "most short: U011 -1.0000" in text
    assert summary["latest_table"] == str(tmp_path / "predictions_latest.csv") and summary["latest_table"] in text
    table = pd.read_csv(summary["latest_table"])
    assert len(table) == 300 and {"symbol", "timestamp", "position", "forecast_h1"} <= set(table.columns)
