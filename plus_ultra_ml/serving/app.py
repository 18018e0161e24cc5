"""The inference service: a FastAPI app over one `Predictor`, with an API key, limits and metrics.

`create_app(cfg, ...)` builds the app; nothing happens at import. It wires rooms that each hold
one idea:

    state.py       ServiceState: config, registry, the loaded predictor, the API key, metrics
    schemas.py     the /predict request models (limits from the config) and the response bodies
    routers/       status.py (GET /health, /config, /curriculum, /metrics: open), predict.py
                   (POST /predict), reload.py (POST /reload: the registry's production pointer only)
    middleware.py  the API key check, the request-size limit (413) and request metrics
    problems.py    error answers (HTTPProblem, 422 for invalid requests, 503 for an unreadable database)

Security and limits. The API key comes from the environment variable named by
``service.api_key_env`` (read once, here) and is compared with `hmac.compare_digest`; it is
accepted as ``Authorization: Bearer <key>`` or ``X-API-Key: <key>``. Without a configured key,
protected endpoints answer 503 (never open). /predict is protected unless
``service.predict_requires_key`` is false. Request bodies above ``service.max_request_bytes`` get
413 before they are parsed; more than ``service.max_symbols`` symbols or ``service.max_bars`` bars
per symbol get 422; malformed JSON gets 422 naming the position of the error. Error bodies never
echo the request or server paths.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from fastapi import FastAPI

from plus_ultra_ml.config import ExperimentConfig
from plus_ultra_ml.serving import problems
from plus_ultra_ml.serving.metrics import ServiceMetrics
from plus_ultra_ml.serving.middleware import LimitsAndMetrics
from plus_ultra_ml.serving.registry import Registry
from plus_ultra_ml.serving.routers.predict import predict_router
from plus_ultra_ml.serving.routers.reload import reload_router
from plus_ultra_ml.serving.routers.status import status_router
from plus_ultra_ml.serving.schemas import request_model
from plus_ultra_ml.serving.state import ServiceState, load_initial

logger = logging.getLogger(__name__)


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
        load_initial(state, checkpoint)
    app = FastAPI(title="Plus Ultra inference", version="1", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.service = state
    problems.install_handlers(app, state)
    app.include_router(status_router(state))
    app.include_router(predict_router(state, request_model(service)))
    app.include_router(reload_router(state))
    app.add_middleware(LimitsAndMetrics, state=state)
    return app
