"""Prometheus metrics of the inference service (prometheus_client, text format on GET /metrics).

Each app owns its own `CollectorRegistry` (several apps in one process, as in tests, never share
counters). Label values are bounded: endpoints are route templates (unknown paths count as
"other"), symbols are the model's universe (anything else is "other").

    plus_ultra_http_requests_total{endpoint, method, status}
    plus_ultra_http_request_duration_seconds{endpoint}        histogram, 1 ms .. 5 s
    plus_ultra_http_errors_total{endpoint, reason}            4xx/5xx by reason (auth, too_large, invalid, ...)
    plus_ultra_featurise_seconds / plus_ultra_forward_seconds  where /predict spends its time (forward: with the
                                                               wait for the network, one forward at a time)
    plus_ultra_model_loaded, plus_ultra_model_age_seconds      age = now - the checkpoint's created_at
    plus_ultra_model_info{fingerprint, kind, source}          1 for the model being served
    plus_ultra_last_signal_position{symbol}, plus_ultra_last_signal_forecast{symbol, horizon},
    plus_ultra_last_signal_bar_timestamp_seconds{symbol}
    plus_ultra_unavailable_signals_total{symbol}
    plus_ultra_rows_read                                       series rows of the last bounded read
    plus_ultra_reloads_total{result}
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
CONTENT_TYPE = CONTENT_TYPE_LATEST
OTHER = "other"


class ServiceMetrics:
    """The service's collectors, registered in a private registry."""

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter("plus_ultra_http_requests", "HTTP requests served", ["endpoint", "method", "status"],
                                registry=r)
        self.latency = Histogram("plus_ultra_http_request_duration_seconds", "Request latency, received to sent",
                                 ["endpoint"], buckets=LATENCY_BUCKETS, registry=r)
        self.errors = Counter("plus_ultra_http_errors", "Requests answered with an error", ["endpoint", "reason"],
                              registry=r)
        self.featurise = Histogram("plus_ultra_featurise_seconds", "Time /predict spends building the inputs",
                                   buckets=LATENCY_BUCKETS, registry=r)
        self.forward = Histogram("plus_ultra_forward_seconds",
                                 "Time /predict spends in the network (waiting for it included: one forward at a time)",
                                 buckets=LATENCY_BUCKETS, registry=r)
        self.model_loaded = Gauge("plus_ultra_model_loaded", "1 when a model is being served", registry=r)
        self.model_age = Gauge("plus_ultra_model_age_seconds", "Seconds since the served checkpoint was written",
                               registry=r)
        self.model_info = Gauge("plus_ultra_model_info", "The served model (value 1)",
                                ["fingerprint", "kind", "source"], registry=r)
        self.position = Gauge("plus_ultra_last_signal_position", "Position of the latest signal served", ["symbol"],
                              registry=r)
        self.forecast = Gauge("plus_ultra_last_signal_forecast", "Forecast (log return) of the latest signal served",
                              ["symbol", "horizon"], registry=r)
        self.bar_time = Gauge("plus_ultra_last_signal_bar_timestamp_seconds",
                              "Bar time (unix seconds) of the latest signal served", ["symbol"], registry=r)
        self.unavailable = Counter("plus_ultra_unavailable_signals", "Symbols asked for that got no signal",
                                   ["symbol"], registry=r)
        self.rows_read = Gauge("plus_ultra_rows_read", "Series rows read by the last bounded read", registry=r)
        self.reloads = Counter("plus_ultra_reloads", "POST /reload outcomes", ["result"], registry=r)
        self._universe: frozenset[str] = frozenset()
        self.model_age.set_function(lambda: self._age())
        self._age_of: Callable[[], float] | None = None

    def _age(self) -> float:
        return self._age_of() if self._age_of is not None else float("nan")

    def serving(self, fingerprint: str, kind: str, source: str, universe: Iterable[str],
                age_of: Callable[[], float]) -> None:
        """A model was (re)loaded: replace the info series and the signal series' symbol set."""
        self.model_info.clear()
        self.model_info.labels(fingerprint[:16], kind, source).set(1)
        self.model_loaded.set(1)
        self._universe = frozenset(universe)
        self._age_of = age_of

    def symbol(self, name: str) -> str:
        return name if name in self._universe else OTHER

    def observe_request(self, endpoint: str, method: str, status: int, seconds: float) -> None:
        self.requests.labels(endpoint, method, str(status)).inc()
        self.latency.labels(endpoint).observe(seconds)

    def error(self, endpoint: str, reason: str) -> None:
        self.errors.labels(endpoint, reason).inc()

    def signal(self, symbol: str, timestamp: float, forecast: Iterable[float], position: float) -> None:
        label = self.symbol(symbol)
        self.position.labels(label).set(position)
        self.bar_time.labels(label).set(timestamp)
        for h, value in enumerate(forecast, start=1):
            self.forecast.labels(label, str(h)).set(value)

    def render(self) -> bytes:
        return generate_latest(self.registry)
