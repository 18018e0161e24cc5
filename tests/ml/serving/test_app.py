"""The HTTP service: endpoints, the API key, limits, every hostile request in issue 9, and metrics."""

from __future__ import annotations

import json

import numpy as np
import pytest
from fastapi.testclient import TestClient

from plus_ultra_ml.serving.app import create_app
from plus_ultra_ml.serving.history import read_recent
from plus_ultra_ml.serving.offline import predict_history
from plus_ultra_ml.serving.registry import Registry
from plus_ultra_ml.serving.schemas import bars_panel, curriculum_schedule, redact

from .conftest import SYMBOLS, serving_config

KEY = "s3cret-test-key"
AUTH = {"X-API-Key": KEY}


@pytest.fixture(scope="module")
def app(checkpoint, market, tmp_path_factory):
    cfg = serving_config(db=market)
    return create_app(cfg, checkpoint=checkpoint, registry=Registry(tmp_path_factory.mktemp("reg")), api_key=KEY)


@pytest.fixture(scope="module")
def client(app):
    return TestClient(app)


@pytest.fixture
def empty_service(market, tmp_path):
    """A service started before anything was promoted (it serves once /reload finds a production model)."""
    registry = Registry(tmp_path / "registry")
    app = create_app(serving_config(db=market), registry=registry, api_key=KEY)
    return TestClient(app), registry


def bars_payload(market, predictor, bars=1300):
    panel = read_recent(market, list(SYMBOLS), bars, indicators=predictor.recipe.indicators).panel
    payload = {}
    for symbol in SYMBOLS:
        rows = panel.xs(symbol, level="symbol")
        payload[symbol] = [{"timestamp": t.isoformat(), "open": r.open, "high": r.high, "low": r.low, "close": r.close,
                            "volume": r.volume, "indicators": {"alt_0": r.ind__alt_0}} for t, r in rows.iterrows()]
    return payload, panel


# --------------------------------------------------------------------------------------------
# the endpoints
# --------------------------------------------------------------------------------------------
def test_health_reports_the_model_and_data_version(client, checkpoint):
    from plus_ultra_ml.artifacts import file_fingerprint

    body = client.get("/health").json()
    assert body["status"] == "ok" and body["model"]["fingerprint"] == file_fingerprint(checkpoint)
    assert body["model"]["source"] == "checkpoint" and body["model"]["age_s"] >= 0
    assert body["data_version"] and body["model"]["universe"] == sorted(SYMBOLS)


def test_predict_returns_the_latest_signal_per_symbol(client, app):
    response = client.post("/predict", json={"symbols": ["CCC", "AAA", "AAA"]}, headers=AUTH)
    assert response.status_code == 200
    body = response.json()
    assert [s["symbol"] for s in body["signals"]] == ["CCC", "AAA"] and body["complete"]
    direct = app.state.service.predictor.predict(["CCC", "AAA"])
    for served, expected in zip(body["signals"], direct.signals, strict=True):
        assert served["timestamp"] == expected.timestamp.isoformat()
        assert served["forecast"] == {"h1": pytest.approx(expected.forecast[0]), "h2": pytest.approx(expected.forecast[1])}
        assert served["position"] == pytest.approx(expected.position)
        assert served["model_fingerprint"] == body["model_fingerprint"] and served["data_version"] == body["data_version"]
    assert client.get("/health").json()["last_prediction_at"] is not None


def test_predict_with_supplied_bars_uses_those_bars(client, app, market):
    predictor = app.state.service.predictor
    payload, panel = bars_payload(market, predictor)
    response = client.post("/predict", json={"symbols": ["BBB"], "bars": payload}, headers=AUTH)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["source"] == "request" and body["data_version"] is None
    expected = predict_history(predictor.model, predictor.recipe, bars_panel_from(payload)).latest()
    row = expected.xs("BBB", level="symbol")
    assert body["signals"][0]["timestamp"] == row.index[0].isoformat()
    assert body["signals"][0]["position"] == pytest.approx(row["position__model"].iloc[0], abs=1e-6)


def bars_panel_from(payload):
    from plus_ultra_ml.serving.schemas import Bar

    return bars_panel({s: [Bar(**b) for b in rows] for s, rows in payload.items()})


def test_unknown_symbols_are_listed_as_unavailable(client):
    body = client.post("/predict", json={"symbols": ["AAA", "ZZZ"]}, headers=AUTH).json()
    assert not body["complete"] and "universe" in body["unavailable"]["ZZZ"]


def test_config_has_no_paths_or_secrets(client, market, checkpoint):
    text = client.get("/config").text
    body = json.loads(text)
    assert body["model"]["data"]["db_path"] == "<redacted>" and body["service"]["api_key_env"] == "<redacted>"
    assert body["model"]["train"]["monitor"] == "val/loss"  # not a path: kept
    for secret in (str(market), market.name, str(checkpoint.parent), KEY):
        assert secret not in text
    assert body["serving"]["history"]["bars"] == 8 + 1163


def test_curriculum_endpoint(client):
    body = client.get("/curriculum").json()
    assert body["curriculum"] == [4] and body["schedule"] == [{"epochs": [0, 0], "window": 4}]
    assert curriculum_schedule({"curriculum": [16, 32], "curriculum_epochs": 2, "epochs": 5}, 64) == [
        {"epochs": [0, 1], "window": 16}, {"epochs": [2, 3], "window": 32}, {"epochs": [4, 4], "window": 64}]


def test_redact_hides_paths_and_named_secrets():
    tree = {"db_path": "x.db", "a": ["/abs/file", "rel/model.pt", "15min", "val/loss"], "b": {"path": "y"}}
    assert redact(tree) == {"db_path": "<redacted>", "a": ["<redacted>", "<redacted>", "15min", "val/loss"],
                            "b": {"path": "<redacted>"}}


# --------------------------------------------------------------------------------------------
# hostile requests
# --------------------------------------------------------------------------------------------
def test_predict_needs_the_key(client):
    assert client.post("/predict", json={"symbols": ["AAA"]}).status_code == 401
    assert client.post("/predict", json={"symbols": ["AAA"]}, headers={"X-API-Key": "wrong"}).status_code == 401
    ok = client.post("/predict", json={"symbols": ["AAA"]}, headers={"Authorization": f"Bearer {KEY}"})
    assert ok.status_code == 200


def test_unauthenticated_reload_is_401(client):
    response = client.post("/reload")
    assert response.status_code == 401 and response.headers["www-authenticate"] == "Bearer"
    assert client.post("/reload", headers={"X-API-Key": KEY + "x"}).status_code == 401


def test_without_a_configured_key_protected_endpoints_are_closed(checkpoint, market, tmp_path):
    app = create_app(serving_config(db=market), checkpoint=checkpoint, registry=Registry(tmp_path), api_key="")
    client = TestClient(app)
    assert client.post("/reload", headers={"X-API-Key": ""}).status_code == 503
    assert client.post("/predict", json={"symbols": ["AAA"]}).status_code == 503
    assert client.get("/health").status_code == 200


@pytest.mark.parametrize("body", [{"path": "/etc/passwd"}, {"checkpoint": "../../model.pt"}, "../model.pt",
                                  ["/tmp/x.pt"], {"path": None}])
def test_reload_rejects_path_like_payloads(client, body):
    before = client.get("/health").json()["model"]["fingerprint"]
    response = client.post("/reload", json=body, headers=AUTH)
    assert response.status_code == 422 and "no path" in response.json()["error"]
    assert client.get("/health").json()["model"]["fingerprint"] == before


def test_reload_rejects_query_parameters_and_malformed_json(client):
    assert client.post("/reload?path=/etc/passwd", headers=AUTH).status_code == 422
    response = client.post("/reload", content=b"{nope", headers={**AUTH, "content-type": "application/json"})
    assert response.status_code == 422 and "malformed JSON" in response.json()["error"]


@pytest.mark.parametrize("symbol", ["../../etc/passwd", "/abs", ".hidden", "a" * 40, "", "AAA;DROP TABLE series"])
def test_path_like_or_malformed_symbols_are_rejected(client, symbol):
    response = client.post("/predict", json={"symbols": [symbol]}, headers=AUTH)
    assert response.status_code == 422 and "body.symbols.0" in response.json()["error"]


def test_invalid_json_is_422_with_a_clear_message(client):
    response = client.post("/predict", content=b'{"symbols": ["AAA"', headers={**AUTH, "content-type": "application/json"})
    assert response.status_code == 422
    assert "malformed JSON" in response.json()["error"]


@pytest.mark.parametrize("body, where", [
    ({}, "body.symbols"),
    ({"symbols": []}, "body.symbols"),
    ({"symbols": "AAA"}, "body.symbols"),
    ({"symbols": ["AAA"], "extra": 1}, "body.extra"),
    ({"symbols": ["AAA"], "bars": {"AAA": [{"timestamp": "2024-01-01T00:00:00", "open": 1, "high": 1, "low": 1,
                                            "close": 1, "volume": 1}]}}, "timestamp"),  # no time zone
    ({"symbols": ["AAA"], "bars": {"AAA": [{"timestamp": "2024-01-01T00:00:00Z", "open": -1, "high": 1, "low": 1,
                                            "close": 1, "volume": 1}]}}, "open"),
])
def test_malformed_payloads_are_422_naming_the_field(client, body, where):
    response = client.post("/predict", json=body, headers=AUTH)
    assert response.status_code == 422 and where in response.json()["error"]


def test_nan_prices_are_rejected(client):
    raw = ('{"symbols": ["AAA"], "bars": {"AAA": [{"timestamp": "2024-01-01T00:00:00Z", "open": NaN, "high": 1, '
           '"low": 1, "close": 1, "volume": 1}]}}').encode()
    response = client.post("/predict", content=raw, headers={**AUTH, "content-type": "application/json"})
    assert response.status_code == 422 and "open" in response.json()["error"]


def test_unordered_or_broken_bars_are_422(client):
    bar = {"open": 10, "high": 11, "low": 9, "close": 10, "volume": 5}
    rows = [{"timestamp": "2024-01-01T01:00:00Z", **bar}, {"timestamp": "2024-01-01T00:00:00Z", **bar}]
    response = client.post("/predict", json={"symbols": ["AAA"], "bars": {"AAA": rows}}, headers=AUTH)
    assert response.status_code == 422 and "strictly increasing" in response.json()["error"]
    rows = [{"timestamp": "2024-01-01T00:00:00Z", **bar, "high": 9.5}]
    response = client.post("/predict", json={"symbols": ["AAA"], "bars": {"AAA": rows}}, headers=AUTH)
    assert response.status_code == 422 and "high below" in response.json()["error"]


def test_bars_missing_a_universe_symbol_are_422_naming_it(client, app, market):
    payload, _ = bars_payload(market, app.state.service.predictor, bars=200)
    del payload["CCC"]
    response = client.post("/predict", json={"symbols": ["AAA"], "bars": payload}, headers=AUTH)
    assert response.status_code == 422 and "CCC" in response.json()["error"]


def test_oversized_bodies_are_413_even_without_a_content_length(client):
    huge = b'{"symbols": ["AAA"], "pad": "' + b"x" * 5_000_000 + b'"}'
    response = client.post("/predict", content=huge, headers={**AUTH, "content-type": "application/json"})
    assert response.status_code == 413

    def chunks():
        for _ in range(50):
            yield b"x" * 100_000

    response = client.post("/predict", content=chunks(), headers={**AUTH, "content-type": "application/json"})
    assert response.status_code == 413


def test_too_many_symbols_or_bars_are_422(market, checkpoint, tmp_path):
    cfg = serving_config("service.max_symbols=2", "service.max_bars=3", db=market)
    client = TestClient(create_app(cfg, checkpoint=checkpoint, registry=Registry(tmp_path), api_key=KEY))
    response = client.post("/predict", json={"symbols": ["AAA", "BBB", "CCC"]}, headers=AUTH)
    assert response.status_code == 422 and "at most 2" in response.json()["error"]
    bar = {"timestamp": "2024-01-01T00:00:00Z", "open": 1, "high": 1, "low": 1, "close": 1, "volume": 1}
    response = client.post("/predict", json={"symbols": ["AAA"], "bars": {"AAA": [bar] * 4}}, headers=AUTH)
    assert response.status_code == 422 and "at most 3" in response.json()["error"]


# --------------------------------------------------------------------------------------------
# reload only from the registry
# --------------------------------------------------------------------------------------------
def test_reload_serves_the_registrys_production_model(empty_service, checkpoint, tmp_path, cfg, training_data):
    from plus_ultra_ml.artifacts import file_fingerprint

    from .conftest import make_checkpoint

    client, registry = empty_service
    assert client.get("/health").status_code == 503
    assert client.post("/predict", json={"symbols": ["AAA"]}, headers=AUTH).status_code == 503
    assert client.post("/reload", headers=AUTH).status_code == 409  # nothing promoted yet
    registry.promote(checkpoint)
    response = client.post("/reload", headers=AUTH)
    assert response.status_code == 200 and response.json()["fingerprint"] == file_fingerprint(checkpoint)
    health = client.get("/health").json()
    assert health["model"]["source"] == "registry"
    assert client.post("/predict", json={"symbols": ["AAA"]}, headers=AUTH).status_code == 200
    newer = make_checkpoint(cfg, training_data, tmp_path / "newer.pt", seed=5)
    registry.promote(newer)
    assert client.post("/reload", json={}, headers=AUTH).json()["previous"] == file_fingerprint(checkpoint)
    assert client.get("/health").json()["model"]["fingerprint"] == file_fingerprint(newer)


def test_a_broken_production_file_keeps_the_old_model(empty_service, checkpoint, tmp_path, cfg, training_data):
    from .conftest import make_checkpoint

    client, registry = empty_service
    registry.promote(checkpoint)
    client.post("/reload", headers=AUTH)
    newer = make_checkpoint(cfg, training_data, tmp_path / "newer.pt", seed=6)
    registry.promote(newer)
    copy = registry.production().path
    copy.write_bytes(copy.read_bytes()[:-10])  # damaged after promotion
    response = client.post("/reload", headers=AUTH)
    assert response.status_code == 409 and "still serving the previous model" in response.json()["error"]
    assert str(copy) not in response.text
    assert client.post("/predict", json={"symbols": ["AAA"]}, headers=AUTH).status_code == 200


# --------------------------------------------------------------------------------------------
# metrics
# --------------------------------------------------------------------------------------------
def test_metrics_exposes_counts_latency_errors_model_age_and_last_signals(client):
    client.post("/predict", json={"symbols": ["AAA", "BBB"]}, headers=AUTH)
    client.post("/predict", json={"symbols": ["AAA"]})  # 401
    text = client.get("/metrics").text
    assert 'plus_ultra_http_requests_total{endpoint="/predict",method="POST",status="200"}' in text
    assert 'plus_ultra_http_request_duration_seconds_bucket{endpoint="/predict",le="0.05"}' in text
    assert 'plus_ultra_http_errors_total{endpoint="/predict",reason="auth"}' in text
    assert 'plus_ultra_last_signal_position{symbol="AAA"}' in text
    assert 'plus_ultra_last_signal_forecast{horizon="2",symbol="BBB"}' in text
    assert 'plus_ultra_model_loaded 1.0' in text
    age = [line for line in text.splitlines() if line.startswith("plus_ultra_model_age_seconds ")][0]
    assert float(age.split()[1]) >= 0
    rows = [line for line in text.splitlines() if line.startswith("plus_ultra_rows_read ")][0]
    assert float(rows.split()[1]) == 3 * (8 + 1163)


def test_supplied_bars_round_trip_into_the_panel_contract():
    from plus_ultra_ml.serving.schemas import Bar

    bars = {"AAA": [Bar(timestamp="2024-01-01T00:00:00+01:00", open=1, high=2, low=0.5, close=1.5, volume=3,
                        indicators={"alt_0": 0.1})]}
    panel = bars_panel(bars)
    assert list(panel.index.names) == ["symbol", "timestamp"]
    assert str(panel.index.get_level_values("timestamp")[0]) == "2023-12-31 23:00:00+00:00"
    assert panel["ind__alt_0"].iloc[0] == 0.1 and np.isfinite(panel.to_numpy()).all()


def test_the_service_serves_a_ppo_policy_and_says_so(policy_checkpoint, market, tmp_path):
    from plus_ultra_ml.serving.predictor import Predictor

    app = create_app(serving_config(db=market), checkpoint=policy_checkpoint, registry=Registry(tmp_path / "r"),
                     api_key=KEY)
    client = TestClient(app)
    health = client.get("/health").json()
    assert health["model"]["model_kind"] == "ppo" and health["model"]["kind"] == "ppo_policy"
    body = client.post("/predict", json={"symbols": list(SYMBOLS)}, headers=AUTH).json()
    assert body["model_kind"] == "ppo" and len(body["signals"]) == len(SYMBOLS)
    expected = {s.symbol: s.position for s in Predictor.load(policy_checkpoint, db_path=market).predict(
        list(SYMBOLS)).signals}
    for signal in body["signals"]:
        assert signal["position"] == pytest.approx(expected[signal["symbol"]], abs=1e-6)
