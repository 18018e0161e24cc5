"""POST /predict: {"symbols": [...], "bars": {symbol: [bar, ...]}?} -> the latest signal per symbol.

Without "bars" the service reads the newest bars from its database; with them it featurises the
supplied bars (they must cover the model's universe when it uses cross-sectional features).
Supplied bars that cannot be featurised are the client's to fix: 422. More than
``service.max_symbols`` symbols or ``service.max_bars`` bars per symbol: 422 (the request model).

(No ``from __future__ import annotations`` here: FastAPI reads the /predict body type, built per
app by `schemas.request_model`, from the endpoint's annotations at runtime.)
"""

import time

from fastapi import APIRouter, Request
from pydantic import BaseModel

from plus_ultra_ml.errors import DataContractError
from plus_ultra_ml.serving.middleware import authorise
from plus_ultra_ml.serving.predictor import Prediction
from plus_ultra_ml.serving.problems import HTTPProblem
from plus_ultra_ml.serving.schemas import bars_panel, prediction_body
from plus_ultra_ml.serving.state import ServiceState


def _record(state: ServiceState, result: Prediction) -> None:
    """Timings, rows read, and the last signal per symbol into the service metrics."""
    m = state.metrics
    m.featurise.observe(result.featurise_s)
    m.forward.observe(result.forward_s)
    m.rows_read.set(state.predictor.featuriser.stats.rows_read)
    for s in result.signals:
        m.signal(s.symbol, s.timestamp.timestamp(), s.forecast, s.position)
    for symbol in result.unavailable:
        m.unavailable.labels(m.symbol(symbol)).inc()


def predict_router(state: ServiceState, PredictRequest: type[BaseModel]) -> APIRouter:  # noqa: N803 - a class
    router = APIRouter()
    requires_key = state.cfg.service.predict_requires_key

    @router.post("/predict")
    def predict(request: Request, body: PredictRequest):  # type: ignore[valid-type]
        if requires_key:
            authorise(request, state)
        p = state.require_model()
        symbols = list(dict.fromkeys(body.symbols))
        try:
            panel = bars_panel(body.bars) if body.bars else None
            result = p.predict(symbols, panel)
        except DataContractError as error:  # supplied bars that cannot be featurised: the client's to fix
            raise HTTPProblem(422, str(error), "bars") from None
        state.last_prediction_at = time.time()
        _record(state, result)
        return prediction_body(result, p)

    return router
