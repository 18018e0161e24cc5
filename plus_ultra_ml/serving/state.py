"""What one app serves: the config, the registry, the loaded `Predictor` (if any), the API key, metrics.

`ServiceState` is built once per app by `create_app` and shared by the routers and the middleware;
`load_initial` puts the first model in it (a given checkpoint, else the registry's production
pointer, else nothing: the service starts empty and /reload fills it).
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from plus_ultra_ml.config import ExperimentConfig
from plus_ultra_ml.errors import PlusUltraError
from plus_ultra_ml.serving.metrics import ServiceMetrics
from plus_ultra_ml.serving.predictor import Predictor
from plus_ultra_ml.serving.problems import HTTPProblem
from plus_ultra_ml.serving.registry import Registry

logger = logging.getLogger(__name__)


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

    def require_model(self) -> Predictor:
        """The loaded predictor; 503 while none is loaded."""
        if self.predictor is None:
            raise HTTPProblem(503, f"no model is loaded ({self.load_error or 'nothing promoted yet'}); promote one "
                              "and POST /reload", "no_model")
        return self.predictor


def load_initial(state: ServiceState, checkpoint: str | Path | None) -> None:
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
