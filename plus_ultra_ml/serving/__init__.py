"""Serving: the latest signal of a supervised checkpoint over HTTP, and the production registry.

Rooms: history.py (bounded read-only reads of the newest bars), regime_state.py (exact expanding
regime thresholds without re-reading history), featurise.py (the model's inputs at the latest bar,
pinned to its training features), predictor.py (checkpoint -> signals), offline.py (a prediction at
every bar: `plus-ultra predict` and the reference the service is tested against), registry.py (the
promotion gate and the atomic production pointer), metrics.py (Prometheus). The HTTP service:
app.py (`create_app` wires it), state.py (what one app serves), schemas.py (request models and
response bodies), routers/ (one module per group of endpoints), middleware.py (API key, size limit,
request metrics), problems.py (error answers). docs/serving.md describes the API and the guarantees.
"""
