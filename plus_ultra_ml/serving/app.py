"""The inference service: a FastAPI app over one `Predictor`, with an API key, limits and metrics.

`create_app(cfg, ...)` builds the app; nothing happens at import. Endpoints:

    GET  /health      model loaded?, its fingerprint, data version, checkpoint age, last prediction time
                      (503 while no model is loaded, so container health checks notice)
    GET  /config      the model's resolved training config and the service section, without
                      file-system paths or secrets
    GET  /curriculum  the window curriculum the model was trained with
    POST /predict     {"symbols": [...], "bars": {symbol: [bar, ...]}?} -> the latest signal per symbol
    POST /reload      reloads the registry's production pointer; takes no arguments (a body naming a
                      path, or any other field, is rejected with 422); needs the API key
    GET  /metrics     Prometheus text (serving/metrics.py)

Security and limits. The API key comes from the environment variable named by
``service.api_key_env`` (read once when the app is built) and is compared with
`hmac.compare_digest`; it is accepted as ``Authorization: Bearer <key>`` or ``X-API-Key: <key>``.
Without a configured key, protected endpoints answer 503 (never open). /predict is protected unless
``service.predict_requires_key`` is false. Request bodies above ``service.max_request_bytes`` get
413 before they are parsed; more than ``service.max_symbols`` symbols or ``service.max_bars`` bars
per symbol get 422; malformed JSON gets 422 naming the position of the error. Error bodies never
echo the request or server paths.

(No ``from __future__ import annotations`` here: FastAPI reads the /predict body type, built per app
in `create_app`, from the endpoint's annotations at runtime.)
"""

import hmac
import json
import logging
import math
import os
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import pandas as pd
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints

from plus_ultra_ml.config import ExperimentConfig, ServiceConfig
from plus_ultra_ml.errors import DatabaseUnreadableError, DataContractError, PlusUltraError
from plus_ultra_ml.serving.metrics import CONTENT_TYPE, ServiceMetrics
from plus_ultra_ml.serving.predictor import Prediction, Predictor
from plus_ultra_ml.serving.registry import Registry

logger = logging.getLogger(__name__)

SYMBOL_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._\-=^]{0,31}$"  # no slashes, no leading dot: never a path
INDICATOR_PATTERN = r"^[A-Za-z0-9_]{1,64}$"
REDACTED = "<redacted>"
SECRET_KEYS = {"db_path", "checkpoint_dir", "registry_dir", "failure_webhook", "api_key_env", "path", "run_dir",
               "best_checkpoint"}
OPEN = ("/health", "/metrics", "/config", "/curriculum")


# --------------------------------------------------------------------------------------------
# request bodies (limits come from the config: models are built per app)
# --------------------------------------------------------------------------------------------
Symbol = Annotated[str, StringConstraints(pattern=SYMBOL_PATTERN)]
IndicatorName = Annotated[str, StringConstraints(pattern=INDICATOR_PATTERN)]
Price = Annotated[float, Field(gt=0, allow_inf_nan=False)]


class Bar(BaseModel):
    """One OHLCV bar; the timestamp must carry a time zone (2024-01-02T09:30:00Z)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    timestamp: AwareDatetime
    open: Price
    high: Price
    low: Price
    close: Price
    volume: Annotated[float, Field(ge=0, allow_inf_nan=False)]
    vwap: Price | None = None
    turnover: Annotated[float, Field(ge=0, allow_inf_nan=False)] | None = None
    indicators: dict[IndicatorName, Annotated[float, Field(allow_inf_nan=False)] | None] = Field(
        default_factory=dict, max_length=64)


def request_model(service: ServiceConfig) -> type[BaseModel]:
    """The /predict body with this service's limits."""

    class PredictRequest(BaseModel):
        model_config = ConfigDict(extra="forbid", frozen=True)
        symbols: list[Symbol] = Field(min_length=1, max_length=service.max_symbols)
        bars: dict[Symbol, Annotated[list[Bar], Field(min_length=1, max_length=service.max_bars)]] | None = Field(
            None, max_length=service.max_symbols)

    return PredictRequest


def bars_panel(bars: Mapping[str, Sequence[Bar]]) -> pd.DataFrame:
    """Supplied bars -> the panel contract; a symbol's bars must be strictly increasing in time."""
    frames = []
    for symbol, rows in bars.items():
        stamps = pd.DatetimeIndex([pd.Timestamp(b.timestamp).tz_convert("UTC") for b in rows], name="timestamp")
        steps = np.diff(stamps.asi8)
        if (steps <= 0).any():
            k = int(np.flatnonzero(steps <= 0)[0]) + 1
            raise DataContractError(f"bars of {symbol!r}: bar {k} ({stamps[k].isoformat()}) is not after the bar "
                                    "before it; send each symbol's bars in strictly increasing time")
        bad = [k for k, b in enumerate(rows) if not (b.low <= min(b.open, b.close) and b.high >= max(b.open, b.close))]
        if bad:
            raise DataContractError(f"bars of {symbol!r}: bar {bad[0]} has low above open/close or high below them")
        columns: dict[str, Any] = {c: [getattr(b, c) for b in rows] for c in ("open", "high", "low", "close", "volume")}
        for optional in ("vwap", "turnover"):
            if any(getattr(b, optional) is not None for b in rows):
                columns[optional] = [getattr(b, optional) for b in rows]
        for name in sorted({n for b in rows for n in b.indicators}):
            columns[f"ind__{name}"] = [b.indicators.get(name) for b in rows]
        frame = pd.DataFrame(columns, index=stamps, dtype=np.float64)
        frame["symbol"] = symbol
        frames.append(frame)
    long = pd.concat(frames)
    index = pd.MultiIndex.from_arrays([pd.Categorical(long.pop("symbol"), categories=sorted(bars)), long.index],
                                      names=["symbol", "timestamp"])
    return long.set_axis(index).sort_index()


# --------------------------------------------------------------------------------------------
# redaction
# --------------------------------------------------------------------------------------------
PATH_SUFFIXES = (".db", ".sqlite", ".pt", ".ckpt", ".yaml", ".yml", ".json", ".parquet", ".csv")


def _looks_like_path(value: str) -> bool:
    """Absolute, home- or dot-relative, Windows, or a file name with a data/model suffix."""
    return (value.startswith(("/", "~", "./", "../", "\\")) or (len(value) > 2 and value[1:3] in (":\\", ":/"))
            or value.lower().endswith(PATH_SUFFIXES))


def redact(tree: Any) -> Any:
    """A config without file-system paths or secrets: named keys and path-like strings become <redacted>."""
    if isinstance(tree, Mapping):
        return {k: (REDACTED if k in SECRET_KEYS and v is not None else redact(v)) for k, v in tree.items()}
    if isinstance(tree, list | tuple):
        return [redact(v) for v in tree]
    if isinstance(tree, str) and _looks_like_path(tree):
        return REDACTED
    return tree


def curriculum_schedule(train: Mapping[str, Any], window: int) -> list[dict[str, Any]]:
    """Epoch ranges and the window length used in each (training/datamodule.py's curriculum rule)."""
    stages = [int(w) for w in train.get("curriculum") or ()]
    per = int(train.get("curriculum_epochs") or 1)
    epochs = int(train.get("epochs") or 1)
    schedule, start = [], 0
    for w in stages:
        if start >= epochs:
            break
        end = min(start + per, epochs)
        schedule.append({"epochs": [start, end - 1], "window": w})
        start = end
    if start < epochs:
        schedule.append({"epochs": [start, epochs - 1], "window": window})
    return schedule


# --------------------------------------------------------------------------------------------
# the app state
# --------------------------------------------------------------------------------------------
@dataclass
class ServiceState:
    cfg: ExperimentConfig
    registry: Registry
    metrics: ServiceMetrics
    api_key: bytes | None
    db_path: Path | None
    feature_table: Path | None
    predictor: Predictor | None = None
    load_error: str | None = None
    started_at: float = field(default_factory=time.time)
    last_prediction_at: float | None = None
    reload_lock: threading.Lock = field(default_factory=threading.Lock)

    def install(self, predictor: Predictor) -> None:
        self.predictor = predictor
        self.load_error = None
        card = predictor.card
        self.metrics.serving(card.fingerprint, card.kind, card.source, card.universe, card.age_seconds)


class HTTPProblem(Exception):
    """An error answer: status, a sentence for the client, and a metrics reason."""

    def __init__(self, status: int, message: str, reason: str, headers: Mapping[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.reason, self.headers = status, message, reason, dict(headers or {})


def _problem(status: int, message: str, detail: Any = None, headers: Mapping[str, str] | None = None) -> JSONResponse:
    body: dict[str, Any] = {"error": message}
    if detail is not None:
        body["detail"] = detail
    return JSONResponse(body, status_code=status, headers=dict(headers or {}))


def _iso(stamp: float | None) -> str | None:
    return datetime.fromtimestamp(stamp).astimezone().isoformat(timespec="seconds") if stamp else None


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


# --------------------------------------------------------------------------------------------
# ASGI middleware: body limit + metrics (pure ASGI: no per-request task switching)
# --------------------------------------------------------------------------------------------
class LimitsAndMetrics:
    def __init__(self, app, state: ServiceState):
        self.app = app
        self.state = state

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status_holder = {"status": 500}
        limit = self.state.cfg.service.max_request_bytes

        async def send_wrapper(message):
            if message["type"] == "http.response.start":
                status_holder["status"] = message["status"]
            await send(message)

        declared = dict(scope.get("headers") or []).get(b"content-length")
        too_large = declared is not None and declared.isdigit() and int(declared) > limit
        replay = None
        if not too_large and scope.get("method") in ("POST", "PUT", "PATCH"):
            body, more, size = [], True, 0
            while more:
                message = await receive()
                if message["type"] == "http.disconnect":
                    return
                chunk = message.get("body", b"")
                size += len(chunk)
                if size > limit:
                    too_large = True
                    break
                body.append(chunk)
                more = message.get("more_body", False)
            payload = b"".join(body)
            sent = {"done": False}

            async def replay(payload=payload, sent=sent):
                if sent["done"]:
                    return await receive()
                sent["done"] = True
                return {"type": "http.request", "body": payload, "more_body": False}

        if too_large:
            response = _problem(413, f"request body larger than service.max_request_bytes ({limit} bytes)")
            await response(scope, receive, send_wrapper)
            endpoint = scope.get("path", "other") if scope.get("path") in ("/predict", "/reload") else "other"
            self.state.metrics.error(endpoint, "too_large")
        else:
            await self.app(scope, replay or receive, send_wrapper)
        route = scope.get("route")
        endpoint = getattr(route, "path", None) or ("/predict" if too_large and scope.get("path") == "/predict"
                                                    else "other")
        self.state.metrics.observe_request(endpoint, scope.get("method", ""), status_holder["status"],
                                           time.perf_counter() - started)


# --------------------------------------------------------------------------------------------
# the app
# --------------------------------------------------------------------------------------------
def create_app(cfg: ExperimentConfig, *, checkpoint: str | Path | None = None, db_path: str | Path | None = None,
               registry: Registry | None = None, feature_table: str | Path | None = None,
               api_key: str | None = None, load: bool = True) -> FastAPI:
    """The service for `cfg` serving `checkpoint` (if given) or else the registry's production model.

    api_key: the key itself (tests); None reads ``os.environ[cfg.service.api_key_env]``.
    load: load the model now (False: start empty; /reload loads the production pointer).
    """
    service = cfg.service
    key = api_key if api_key is not None else os.environ.get(service.api_key_env)
    state = ServiceState(
        cfg=cfg, registry=registry or Registry.from_config(service), metrics=ServiceMetrics(),
        api_key=key.encode() if key else None,
        db_path=Path(db_path).expanduser().resolve() if db_path else Path(cfg.data.db_path).expanduser().resolve(),
        feature_table=Path(feature_table) if feature_table else None,
    )
    if state.api_key is None:
        logger.warning("no API key in $%s: /reload%s answer 503 until it is set", service.api_key_env,
                       " and /predict" if service.predict_requires_key else "")
    if load:
        _initial_load(state, checkpoint)
    PredictRequest = request_model(service)
    app = FastAPI(title="Plus Ultra inference", version="1", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.service = state

    def authorise(request: Request) -> None:
        if state.api_key is None:
            raise HTTPProblem(503, f"no API key is configured: set ${service.api_key_env} for the service", "auth")
        header = request.headers.get("authorization", "")
        given = header[7:].strip() if header.lower().startswith("bearer ") else request.headers.get("x-api-key", "")
        if not given or not hmac.compare_digest(given.encode(), state.api_key):
            raise HTTPProblem(401, "missing or wrong API key (send 'Authorization: Bearer <key>' or 'X-API-Key')",
                              "auth", {"WWW-Authenticate": "Bearer"})

    @app.exception_handler(HTTPProblem)
    async def _on_problem(request: Request, error: HTTPProblem):
        state.metrics.error(request.url.path if request.url.path in ("/predict", "/reload") else "other", error.reason)
        return _problem(error.status, error.message, headers=error.headers)

    @app.exception_handler(RequestValidationError)
    async def _on_invalid(request: Request, error: RequestValidationError):
        problems = []
        for item in error.errors():
            where = ".".join(str(p) for p in item.get("loc", ()))
            message = item.get("msg", "invalid")
            if item.get("type") == "json_invalid":
                message = f"malformed JSON: {(item.get('ctx') or {}).get('error', 'cannot parse the body')}"
            problems.append({"where": where, "problem": message})
        state.metrics.error(request.url.path if request.url.path in ("/predict", "/reload") else "other", "invalid")
        return _problem(422, "invalid request: " + "; ".join(f"{p['where']}: {p['problem']}" for p in problems[:5]),
                        problems[:20])

    @app.exception_handler(DatabaseUnreadableError)
    async def _on_database(request: Request, error: DatabaseUnreadableError):
        logger.error("database unreadable: %s", error)
        state.metrics.error(request.url.path, "database")
        return _problem(503, "the market database cannot be read right now; the service log has the reason")

    @app.get("/health")
    def health():
        p = state.predictor
        body = {"status": "ok" if p else "no_model", "model_loaded": p is not None,
                "uptime_s": round(time.time() - state.started_at, 3),
                "last_prediction_at": _iso(state.last_prediction_at)}
        if p is None:
            body["reason"] = state.load_error or "no model loaded"
            return JSONResponse(body, status_code=503)
        card = p.card
        body.update({
            "model": {"fingerprint": card.fingerprint, "kind": card.kind, "source": card.source,
                      "created_at": card.created_at, "data_cutoff": card.data_cutoff,
                      "age_s": round(card.age_seconds(), 1), "window": card.window, "horizon": card.horizon,
                      "features": len(card.feature_names), "feature_fingerprint": card.feature_fingerprint,
                      "universe": list(card.universe)},
            "data_version": p.last_data_version,
            "history_bars": p.recipe.budget.bars,
        })
        return body

    @app.get("/config")
    def config():
        p = state.predictor
        return {
            "model": redact(dict(p.card.lineage.config)) if p else None,
            "service": redact(service.model_dump(mode="json")),
            "serving": {"history": p.recipe.budget.explain(), "features": list(p.card.feature_names),
                        "universe": list(p.card.universe)} if p else None,
        }

    @app.get("/curriculum")
    def curriculum():
        p = _require_model()
        train = p.card.lineage.config.get("train", {})
        return {"window": p.card.window, "curriculum": list(train.get("curriculum") or []),
                "curriculum_epochs": train.get("curriculum_epochs"), "epochs": train.get("epochs"),
                "schedule": curriculum_schedule(train, p.card.window),
                "trained": {k: p.card.lineage.training.get(k) for k in ("epochs", "steps")}}

    def _require_model() -> Predictor:
        if state.predictor is None:
            raise HTTPProblem(503, f"no model is loaded ({state.load_error or 'nothing promoted yet'}); promote one "
                              "and POST /reload", "no_model")
        return state.predictor

    @app.post("/predict")
    def predict(request: Request, body: PredictRequest):  # type: ignore[valid-type]
        if service.predict_requires_key:
            authorise(request)
        p = _require_model()
        symbols = list(dict.fromkeys(body.symbols))
        try:
            panel = bars_panel(body.bars) if body.bars else None
            result = p.predict(symbols, panel)
        except DataContractError as error:  # supplied bars that cannot be featurised: the client's to fix
            raise HTTPProblem(422, str(error), "bars") from None
        state.last_prediction_at = time.time()
        _record(result)
        return _prediction_body(result, p)

    def _record(result: Prediction) -> None:
        m = state.metrics
        m.featurise.observe(result.featurise_s)
        m.forward.observe(result.forward_s)
        m.rows_read.set(state.predictor.featuriser.stats.rows_read)
        for s in result.signals:
            m.signal(s.symbol, s.timestamp.timestamp(), s.forecast, s.position)
        for symbol in result.unavailable:
            m.unavailable.labels(m.symbol(symbol)).inc()

    @app.post("/reload")
    async def reload(request: Request):
        authorise(request)
        if request.query_params:
            raise HTTPProblem(422, "reload takes no parameters: it loads the registry's production pointer "
                              "(promote a checkpoint with `plus-ultra promote`)", "invalid")
        raw = await request.body()
        if raw.strip():
            try:
                payload = json.loads(raw)
            except (json.JSONDecodeError, UnicodeDecodeError) as error:
                raise HTTPProblem(422, f"malformed JSON: {error}", "invalid") from None
            if payload != {}:
                raise HTTPProblem(422, "reload takes no arguments (no path, no checkpoint): it only loads the "
                                  "registry's production pointer; promote a checkpoint with `plus-ultra promote`",
                                  "invalid")
        from starlette.concurrency import run_in_threadpool

        return await run_in_threadpool(_reload)

    def _reload():
        with state.reload_lock:
            previous = state.predictor.card.fingerprint if state.predictor else None
            try:
                production = state.registry.production()
            except PlusUltraError as error:
                state.metrics.reloads.labels("error").inc()
                raise HTTPProblem(409, f"the registry's production pointer is unusable: {error}", "reload") from None
            if production is None:
                state.metrics.reloads.labels("empty").inc()
                raise HTTPProblem(409, "the registry has no production model; promote one with `plus-ultra promote`",
                                  "reload")
            try:
                predictor = Predictor.load(production.path, db_path=state.db_path, service=service,
                                           source="registry", expected_fingerprint=production.fingerprint,
                                           feature_table=state.feature_table)
            except PlusUltraError as error:
                logger.error("reload failed, still serving %s: %s", previous, error)
                state.metrics.reloads.labels("error").inc()
                raise HTTPProblem(409, "the production model could not be loaded; still serving the previous model "
                                  "(the service log has the reason)", "reload") from None
            state.install(predictor)
            state.metrics.reloads.labels("ok").inc()
            return {"reloaded": True, "fingerprint": predictor.card.fingerprint, "previous": previous,
                    "promoted_at": production.promoted_at}

    @app.get("/metrics")
    def metrics():
        return Response(state.metrics.render(), media_type=CONTENT_TYPE)

    app.add_middleware(LimitsAndMetrics, state=state)
    return app


def _initial_load(state: ServiceState, checkpoint: str | Path | None) -> None:
    """Serve `checkpoint` if given, else the production pointer; without either, start empty."""
    service = state.cfg.service
    try:
        if checkpoint is not None:
            predictor = Predictor.load(checkpoint, db_path=state.db_path, service=service, source="checkpoint",
                                       feature_table=state.feature_table)
        else:
            production = state.registry.production()
            if production is None:
                state.load_error = "the registry has no production model yet"
                logger.warning("starting without a model: %s (promote one, then POST /reload)", state.load_error)
                return
            predictor = Predictor.load(production.path, db_path=state.db_path, service=service, source="registry",
                                       expected_fingerprint=production.fingerprint, feature_table=state.feature_table)
    except PlusUltraError as error:
        if checkpoint is not None:
            raise
        state.load_error = f"the production model could not be loaded: {error}"
        logger.error(state.load_error)
        return
    state.install(predictor)


def _prediction_body(result: Prediction, predictor: Predictor) -> dict[str, Any]:
    card = predictor.card
    signals = []
    for s in result.signals:
        item = {
            "symbol": s.symbol, "timestamp": s.timestamp.isoformat(),
            "forecast": {f"h{h}": _finite(v) for h, v in enumerate(s.forecast, start=1)},
            "position": _finite(s.position), "volatility": _finite(s.volatility),
            "model_fingerprint": card.fingerprint, "data_version": result.data_version,
        }
        if s.quantiles is not None:
            item["quantiles"] = {f"h{h}": {f"q{q:g}": _finite(v) for q, v in zip(card.quantiles, row, strict=True)}
                                 for h, row in enumerate(s.quantiles, start=1)}
        signals.append(item)
    return {"signals": signals, "unavailable": dict(result.unavailable), "complete": not result.unavailable,
            "source": result.source, "model_fingerprint": card.fingerprint, "data_version": result.data_version,
            "forecast_units": "log return over h bars", "timing_ms": {"featurise": round(result.featurise_s * 1e3, 3),
                                                                      "forward": round(result.forward_s * 1e3, 3)}}
