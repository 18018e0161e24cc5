"""Error answers of the service: one JSON shape, ``{"error": sentence, "detail"?: [...]}``, and a metrics reason.

`HTTPProblem` is what endpoints, the API-key check and the model guard raise; `install_handlers`
turns it, request-validation errors (422 naming the field, or the position of malformed JSON) and
an unreadable database (503) into answers, and counts each under its endpoint and reason. No
answer echoes the request or a server path.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from plus_ultra_ml.errors import DatabaseUnreadableError

if TYPE_CHECKING:
    from plus_ultra_ml.serving.state import ServiceState

logger = logging.getLogger(__name__)

COUNTED_ENDPOINTS = ("/predict", "/reload")  # error metrics name these; every other path counts as "other"


class HTTPProblem(Exception):
    """An error answer: status, a sentence for the client, and a metrics reason."""

    def __init__(self, status: int, message: str, reason: str, headers: Mapping[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.reason, self.headers = status, message, reason, dict(headers or {})


def problem_response(status: int, message: str, detail: Any = None,
                     headers: Mapping[str, str] | None = None) -> JSONResponse:
    body: dict[str, Any] = {"error": message}
    if detail is not None:
        body["detail"] = detail
    return JSONResponse(body, status_code=status, headers=dict(headers or {}))


def counted_endpoint(path: str) -> str:
    """The endpoint label of an error metric: /predict, /reload, or "other"."""
    return path if path in COUNTED_ENDPOINTS else "other"


def install_handlers(app: FastAPI, state: ServiceState) -> None:
    """Answer HTTPProblem, invalid requests and an unreadable database; count each in `state.metrics`."""

    @app.exception_handler(HTTPProblem)
    async def _on_problem(request: Request, error: HTTPProblem):
        state.metrics.error(counted_endpoint(request.url.path), error.reason)
        return problem_response(error.status, error.message, headers=error.headers)

    @app.exception_handler(RequestValidationError)
    async def _on_invalid(request: Request, error: RequestValidationError):
        problems = []
        for item in error.errors():
            where = ".".join(str(p) for p in item.get("loc", ()))
            message = item.get("msg", "invalid")
            if item.get("type") == "json_invalid":
                message = f"malformed JSON: {(item.get('ctx') or {}).get('error', 'cannot parse the body')}"
            problems.append({"where": where, "problem": message})
        state.metrics.error(counted_endpoint(request.url.path), "invalid")
        return problem_response(422, "invalid request: " + "; ".join(f"{p['where']}: {p['problem']}"
                                                                     for p in problems[:5]), problems[:20])

    @app.exception_handler(DatabaseUnreadableError)
    async def _on_database(request: Request, error: DatabaseUnreadableError):
        logger.error("database unreadable: %s", error)
        state.metrics.error(request.url.path, "database")
        return problem_response(503, "the market database cannot be read right now; the service log has the reason")
