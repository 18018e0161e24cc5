"""POST /reload: load the registry's production pointer (the API key; takes no arguments).

A body naming a path, or any other field or query parameter, is rejected with 422: the only way to
change what is served is `plus-ultra promote`. A pointer that is missing or cannot be loaded is 409
and the previous model keeps serving. Reloads are serialised by `ServiceState.reload_lock`.
"""

from __future__ import annotations

import json
import logging

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool

from plus_ultra_ml.errors import PlusUltraError
from plus_ultra_ml.serving.middleware import authorise
from plus_ultra_ml.serving.predictor import Predictor
from plus_ultra_ml.serving.problems import HTTPProblem
from plus_ultra_ml.serving.state import ServiceState

logger = logging.getLogger(__name__)


def reload_production(state: ServiceState) -> dict:
    """Swap in the registry's production model; 409 (still serving the previous one) when that fails."""
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
            predictor = Predictor.load(production.path, db_path=state.db_path, service=state.cfg.service,
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


def reload_router(state: ServiceState) -> APIRouter:
    router = APIRouter()

    @router.post("/reload")
    async def reload(request: Request):
        authorise(request, state)
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
        return await run_in_threadpool(reload_production, state)

    return router
