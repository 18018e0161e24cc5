"""The open endpoints: what is served and how it was trained, and the Prometheus metrics.

    GET /health      model loaded?, its fingerprint, data version, checkpoint age, last prediction time
                     (503 while no model is loaded, so container health checks notice)
    GET /config      the model's resolved training config and the service section, without
                     file-system paths or secrets
    GET /curriculum  the window curriculum the model was trained with (503 without a model)
    GET /metrics     Prometheus text (serving/metrics.py)
"""

from __future__ import annotations

import time
from datetime import datetime

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response

from plus_ultra_ml.serving.metrics import CONTENT_TYPE
from plus_ultra_ml.serving.schemas import curriculum_schedule, redact
from plus_ultra_ml.serving.state import ServiceState


def _iso(stamp: float | None) -> str | None:
    return datetime.fromtimestamp(stamp).astimezone().isoformat(timespec="seconds") if stamp else None


def status_router(state: ServiceState) -> APIRouter:
    router = APIRouter()

    @router.get("/health")
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
            "model": {"fingerprint": card.fingerprint, "kind": card.kind, "model_kind": card.model_kind,
                      "replay_bars": card.replay_bars, "source": card.source,
                      "created_at": card.created_at, "data_cutoff": card.data_cutoff,
                      "age_s": round(card.age_seconds(), 1), "window": card.window, "horizon": card.horizon,
                      "features": len(card.feature_names), "feature_fingerprint": card.feature_fingerprint,
                      "universe": list(card.universe)},
            "data_version": p.last_data_version,
            "history_bars": p.recipe.budget.bars,
        })
        return body

    @router.get("/config")
    def config():
        p = state.predictor
        return {
            "model": redact(dict(p.card.lineage.config)) if p else None,
            "service": redact(state.cfg.service.model_dump(mode="json")),
            "serving": {"history": p.recipe.budget.explain(), "features": list(p.card.feature_names),
                        "universe": list(p.card.universe)} if p else None,
        }

    @router.get("/curriculum")
    def curriculum():
        p = state.require_model()
        train = p.card.lineage.config.get("train", {})
        return {"window": p.card.window, "curriculum": list(train.get("curriculum") or []),
                "curriculum_epochs": train.get("curriculum_epochs"), "epochs": train.get("epochs"),
                "schedule": curriculum_schedule(train, p.card.window),
                "trained": {k: p.card.lineage.training.get(k) for k in ("epochs", "steps")}}

    @router.get("/metrics")
    def metrics():
        return Response(state.metrics.render(), media_type=CONTENT_TYPE)

    return router
