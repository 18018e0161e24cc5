"""Request guards of the service: the API key, the request-size limit, and request metrics.

`authorise(request, state)` checks the key the endpoints that need one call first: it comes from
the environment variable named by ``service.api_key_env`` (read once when the app is built), is
accepted as ``Authorization: Bearer <key>`` or ``X-API-Key: <key>`` and compared with
`hmac.compare_digest`; without a configured key the answer is 503 (never open). It is a call in
the endpoint, not a dependency, so a malformed body is 422 before the key is looked at.

`LimitsAndMetrics` is pure ASGI (no per-request task switching) and wraps every request: a body
above ``service.max_request_bytes`` (declared, or counted while it streams in) gets 413 before it
is parsed; then the request is counted and timed under its route. Both live in one pass because
the metrics label of a refused body depends on the limit's verdict (a refused /predict body still
counts as /predict); a client that disconnects while sending its body is not counted.
"""

from __future__ import annotations

import hmac
import time

from fastapi import Request

from plus_ultra_ml.serving.problems import HTTPProblem, counted_endpoint, problem_response
from plus_ultra_ml.serving.state import ServiceState

BODY_METHODS = ("POST", "PUT", "PATCH")  # requests whose body is read (and limited) before the app sees it


def authorise(request: Request, state: ServiceState) -> None:
    """Pass with the right key; 503 without a configured key; 401 (WWW-Authenticate: Bearer) otherwise."""
    if state.api_key is None:
        raise HTTPProblem(503, f"no API key is configured: set ${state.cfg.service.api_key_env} for the service",
                          "auth")
    header = request.headers.get("authorization", "")
    given = header[7:].strip() if header.lower().startswith("bearer ") else request.headers.get("x-api-key", "")
    if not given or not hmac.compare_digest(given.encode(), state.api_key):
        raise HTTPProblem(401, "missing or wrong API key (send 'Authorization: Bearer <key>' or 'X-API-Key')",
                          "auth", {"WWW-Authenticate": "Bearer"})


class LimitsAndMetrics:
    """ASGI middleware: 413 for bodies over the limit, then request count and latency per route."""

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
        if not too_large and scope.get("method") in BODY_METHODS:
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
            response = problem_response(413, f"request body larger than service.max_request_bytes ({limit} bytes)")
            await response(scope, receive, send_wrapper)
            self.state.metrics.error(counted_endpoint(scope.get("path", "other")), "too_large")
        else:
            await self.app(scope, replay or receive, send_wrapper)
        route = scope.get("route")
        endpoint = getattr(route, "path", None) or ("/predict" if too_large and scope.get("path") == "/predict"
                                                    else "other")
        self.state.metrics.observe_request(endpoint, scope.get("method", ""), status_holder["status"],
                                           time.perf_counter() - started)
