"""The predictor: a supervised checkpoint, the recipe of its inputs, and the latest signal per symbol.

`Predictor.load(path)` rebuilds the network from the file alone (checkpoints/supervised.py,
``torch.load(weights_only=True)``), pins its feature definitions (serving/featurise.py) and checks
that the features computed here have the fingerprint recorded in the checkpoint's lineage.
`Predictor.predict(symbols)` returns, per symbol, the signal at its newest bar:

    forecast    the forward log return for horizons 1..H, in return units: the forecast head's
                volatility-scaled output times the causal EWM volatility at that bar times sqrt(h)
                (the scale the training loss divided by, training/lit_modules.py)
    position    the position head's output in [-1, 1], to hold from this bar's close to the next
    quantiles   the quantile head's forecasts (return units), when the model has one

The network runs one forward at a time per process (a lock): concurrent forwards on a CPU only fight
for the cores and the GIL (benchmarks/bench_serving.py, 8 clients, smoke preset on 2 shared cores:
~190 requests/s and p99 ~60 ms with the lock, ~135 requests/s and p99 ~140 ms without).

Two model kinds are served (gate.MODEL_KINDS): a supervised checkpoint (`model.pt`, model kind
"supervised") and a PPO policy (`policy.pt`, model kind "ppo"). A policy is stateful (it reads its
own previous position and recent PnL); its served position at a bar is the policy walked from flat
over the symbol's last `replay_bars` decision bars (serving/policy.py), its forecast the network's
forecast head. A pretrained backbone (untrained heads) is refused with the reason.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from plus_ultra_ml.artifacts import file_fingerprint
from plus_ultra_ml.checkpoints.format import POLICY_FORMAT, CheckpointError, file_format
from plus_ultra_ml.checkpoints.supervised import TrainedModel, load_checkpoint
from plus_ultra_ml.config import FeaturesConfig, ServiceConfig, config_from_dict
from plus_ultra_ml.errors import PlusUltraError
from plus_ultra_ml.lineage import LineageRecord
from plus_ultra_ml.rl.trained import TrainedPolicy
from plus_ultra_ml.serving.calendars import resolve_served
from plus_ultra_ml.serving.featurise import FeatureRecipe, LatestFeaturiser, LatestWindows, recipe_for
from plus_ultra_ml.serving.gate import MODEL_KINDS
from plus_ultra_ml.serving.policy import replay_bars, served_positions

logger = logging.getLogger(__name__)

SERVABLE_KIND = "supervised"


class PredictorError(PlusUltraError):
    """A checkpoint cannot be served (the message says why and what to serve instead)."""


# --------------------------------------------------------------------------------------------
# what is served
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ModelCard:
    """What the service says about the model it serves (/health, /config, metrics)."""

    fingerprint: str  # sha256 of the checkpoint file
    kind: str
    path: Path
    source: str  # "registry" (the production pointer) or "checkpoint" (given on the command line)
    created_at: str  # ISO, from lineage
    data_cutoff: str  # the last bar any fitting saw
    window: int
    horizon: int
    feature_names: tuple[str, ...]
    feature_fingerprint: str | None
    universe: tuple[str, ...]
    quantiles: tuple[float, ...]
    lineage: LineageRecord
    loaded_at: float  # time.time()
    replay_bars: int | None = None  # a PPO policy: decision bars replayed from flat per position

    @property
    def model_kind(self) -> str:
        """"supervised" or "ppo" (the lineage kind is "supervised" / "ppo_policy")."""
        return MODEL_KINDS.get(self.kind, self.kind)

    def age_seconds(self, now: float | None = None) -> float:
        """Seconds since the checkpoint was written (its lineage created_at)."""
        created = dt.datetime.fromisoformat(self.created_at)
        if created.tzinfo is None:
            created = created.replace(tzinfo=dt.timezone.utc)
        return (now if now is not None else time.time()) - created.timestamp()


@dataclass(frozen=True)
class Signal:
    """The latest signal of one symbol."""

    symbol: str
    timestamp: pd.Timestamp  # the bar it is for (decided at its close)
    forecast: tuple[float, ...]  # (H,) forward log returns, return units
    position: float  # in [-1, 1]
    volatility: float  # the forecast scale at that bar
    quantiles: tuple[tuple[float, ...], ...] | None = None  # (H, Q) return units


@dataclass(frozen=True)
class Prediction:
    signals: tuple[Signal, ...]
    unavailable: Mapping[str, str]  # symbol -> why there is no signal
    source: str  # "database" | "request"
    data_version: str | None  # market_db version of the database read (None for supplied bars)
    featurise_s: float
    forward_s: float


@dataclass(frozen=True)
class NetOutputs:
    """The network's outputs at the last bar of each window (numpy, float64)."""

    forecast: np.ndarray  # (B, H) volatility-scaled
    position: np.ndarray  # (B,)
    quantiles: np.ndarray | None  # (B, H, Q) volatility-scaled


@torch.inference_mode()
def run_network(net: torch.nn.Module, x: np.ndarray, symbol_ids: torch.Tensor) -> NetOutputs:
    """Forward (B, T, F) scaled windows on the network's device; keep the last bar's outputs."""
    device = symbol_ids.device
    out = net(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).to(device), symbol_ids)
    quantiles = out.quantiles[:, -1].double().cpu().numpy() if out.quantiles is not None else None
    return NetOutputs(out.forecast[:, -1].double().cpu().numpy(), out.position[:, -1].double().cpu().numpy(),
                      quantiles)


def return_units(scaled: np.ndarray, volatility: np.ndarray) -> np.ndarray:
    """(B, H[, Q]) volatility-scaled outputs -> return units: x * vol * sqrt(h)."""
    horizons = scaled.shape[1]
    scale = volatility[:, None] * np.sqrt(np.arange(1, horizons + 1))  # (B, H)
    return scaled * (scale[..., None] if scaled.ndim == 3 else scale)


def _signals(windows: LatestWindows, out: NetOutputs) -> tuple[Signal, ...]:
    forecast = return_units(out.forecast, windows.volatility)
    quantiles = return_units(out.quantiles, windows.volatility) if out.quantiles is not None else None
    return tuple(
        Signal(symbol, stamp, tuple(map(float, forecast[i])), float(out.position[i]), float(windows.volatility[i]),
               tuple(tuple(map(float, row)) for row in quantiles[i]) if quantiles is not None else None)
        for i, (symbol, stamp) in enumerate(zip(windows.symbols, windows.timestamps, strict=True))
    )


# --------------------------------------------------------------------------------------------
# loading
# --------------------------------------------------------------------------------------------
def load_served(path: str | Path, device: str = "cpu") -> tuple[TrainedModel, TrainedPolicy | None]:
    """A supervised `model.pt` (network on `device`) or a PPO `policy.pt` (on the CPU; its network as a
    `TrainedModel` of kind "ppo_policy", and the policy), or a `PredictorError` saying why not."""
    path = Path(path)
    if file_format(path) != POLICY_FORMAT:
        return load_servable(path, device), None
    from plus_ultra_ml.checkpoints.policy import PolicyCheckpointError
    from plus_ultra_ml.rl.trained import load_policy

    try:
        policy = load_policy(path)
    except PolicyCheckpointError as error:
        raise PredictorError(str(error)) from None
    model = TrainedModel(net=policy.policy.net.eval(), scaler=policy.scaler, feature_names=policy.feature_names,
                         window=policy.window, horizon=policy.horizon, kind=policy.lineage.kind,
                         lineage=policy.lineage, path=path)
    return model, policy


def load_servable(path: str | Path, device: str = "cpu") -> TrainedModel:
    """A supervised `model.pt` (network on `device`), or a `PredictorError` saying why it cannot be served
    as one (a PPO policy: `load_served`)."""
    path = Path(path)
    try:
        model = load_checkpoint(path, map_location=device)
    except CheckpointError as error:
        if file_format(path) == POLICY_FORMAT:
            raise PredictorError(f"{path} is a PPO policy, not a supervised model: load it with load_served") from None
        raise PredictorError(str(error)) from None
    if model.kind != SERVABLE_KIND:  # a pretrained backbone
        raise PredictorError(
            f"{path} is a {model.kind!r} checkpoint; only supervised checkpoints have trained forecast and position "
            "heads (`plus-ultra train` or the supervised_checkpoint asset writes one)"
        )
    return model


def _pinned_features(lineage: LineageRecord, feature_table: str | Path | None) -> FeaturesConfig | None:
    if feature_table is not None:
        from plus_ultra_ml.features.pipeline import read_feature_config

        return read_feature_config(feature_table)
    recorded = lineage.features.get("config") if isinstance(lineage.features, Mapping) else None
    return FeaturesConfig.model_validate(recorded) if recorded else None


class Predictor:
    """A served checkpoint (see the module docstring). Thread-safe: requests may call it concurrently."""

    def __init__(self, model: TrainedModel, card: ModelCard, featuriser: LatestFeaturiser,
                 policy: TrainedPolicy | None = None):
        self.model = model
        self.card = card
        self.featuriser = featuriser
        self.policy = policy  # a served PPO policy (its positions replace the position head's)
        self._version_lock = threading.Lock()
        self._forward_lock = threading.Lock()  # one forward at a time: concurrent ones only fight for the cores
        self._version_key: tuple | None = None
        self._data_version: str | None = None

    @property
    def recipe(self) -> FeatureRecipe:
        return self.featuriser.recipe

    @property
    def last_data_version(self) -> str | None:
        """The data version of the last database read (None before the first)."""
        return self._data_version

    @classmethod
    def load(cls, path: str | Path, *, db_path: str | Path | None = None, service: ServiceConfig = ServiceConfig(),
             source: str = "checkpoint", expected_fingerprint: str | None = None,
             feature_table: str | Path | None = None, timeout_s: float = 10.0, warm: bool = True) -> Predictor:
        """Load and check a checkpoint; with `warm`, featurise the database once (checks the fingerprint)."""
        path = Path(path)
        fingerprint = file_fingerprint(path) if path.is_file() else None
        if expected_fingerprint is not None and fingerprint != expected_fingerprint:
            raise PredictorError(
                f"{path} has sha256 {str(fingerprint)[:12]}, not the {expected_fingerprint[:12]} the registry "
                "promoted: the file changed after promotion; promote it again or restore it"
            )
        model, policy = load_served(path, service.device)
        replay = replay_bars(policy, service) if policy is not None else None
        lineage = model.lineage
        pinned = _pinned_features(lineage, feature_table)
        cfg_features = config_from_dict(lineage.config, source="the checkpoint's lineage config").features
        universe = tuple(lineage.panel.get("symbols") or model.net.vocabulary.symbols)
        fixed = pinned.periods_per_year if pinned is not None and pinned.periods_per_year is not None \
            else cfg_features.periods_per_year
        # calendars resolved as training did (assets.exchange, data.calendar, lineage), never from the request
        served = resolve_served(lineage, universe, db_path, timeout_s, fixed)
        # a policy reads `replay` - 1 more bars: the windows of the decision bars it walks from flat
        recipe = recipe_for(lineage.config, model.feature_names, model.window + (replay or 1) - 1,
                            fingerprint=lineage.features.get("fingerprint"), universe=universe,
                            periods_per_year=served.periods_per_year, pinned=pinned,
                            tolerance=service.convergence_tolerance, history_bars=service.history_bars,
                            calendars=served.names)
        card = ModelCard(
            fingerprint=fingerprint or "", kind=model.kind, path=path.resolve(), source=source,
            created_at=lineage.created_at, data_cutoff=lineage.data_cutoff, window=model.window,
            horizon=model.horizon, feature_names=tuple(model.feature_names),
            feature_fingerprint=lineage.features.get("fingerprint"), universe=universe,
            quantiles=tuple(model.net.recipe.heads.quantiles), lineage=lineage, loaded_at=time.time(),
            replay_bars=replay,
        )
        predictor = cls(model, card, LatestFeaturiser(recipe, model.scaler, db_path, timeout_s), policy)
        if warm and db_path is not None:
            predictor.predict(universe[:1])  # reads, featurises, checks the fingerprint, builds the regime state
        logger.info("serving %s (%s, sha256 %s, %d features, window %d, %d bars read per symbol)", path, model.kind,
                    card.fingerprint[:12], len(model.feature_names), model.window, recipe.budget.bars)
        return predictor

    # ----------------------------------------------------------------------------------------
    def symbol_ids(self, symbols: Sequence[str]) -> torch.Tensor:
        return self.model.net.encode_symbols(list(symbols))

    def forward(self, windows: LatestWindows) -> NetOutputs:
        ids = self.symbol_ids(windows.symbols)
        with self._forward_lock:  # a policy's windows are longer (its replay): the network reads the last T rows
            return run_network(self.model.net, windows.x[:, -self.model.window:], ids)

    def predict(self, symbols: Sequence[str], bars: pd.DataFrame | None = None) -> Prediction:
        """The latest signal of each symbol, from the database (default) or from supplied bars."""
        unknown = [s for s in symbols if s not in self.card.universe]
        started = time.perf_counter()
        known = [s for s in symbols if s in self.card.universe]
        if bars is None:
            windows = self.featuriser.from_database(known) if known else LatestWindows(
                (), np.empty((0, self.card.window, len(self.card.feature_names)), np.float32), (), np.empty(0))
            version = self.data_version(windows.key) if known else self._data_version
            source = "database"
        else:
            windows = self.featuriser.from_bars(bars, known) if known else None
            version, source = None, "request"
        featurised = time.perf_counter()
        signals: tuple[Signal, ...] = ()
        if windows is not None and windows.symbols:
            signals = _signals(windows, self.forward(windows))
            if self.policy is not None:
                signals = self._policy_signals(windows, signals)
        done = time.perf_counter()
        unavailable = {s: f"not in the model's universe {list(self.card.universe)}" for s in unknown}
        if windows is not None:
            unavailable.update(windows.unavailable)
        return Prediction(signals, unavailable, source, version, featurised - started, done - featurised)

    def _policy_signals(self, windows: LatestWindows, signals: tuple[Signal, ...]) -> tuple[Signal, ...]:
        """The policy's replayed position at each signal's bar (serving/policy.py) instead of the head's."""
        panel, features = windows.frames
        with self._forward_lock:
            positions = served_positions(self.policy, features.loc[list(windows.symbols)], panel,
                                         self.card.replay_bars, latest_only=True)
        return tuple(replace(s, position=float(positions.loc[(s.symbol, s.timestamp)])) for s in signals)

    def data_version(self, key: tuple) -> str | None:
        """The market_db data version (data.store.data_version) of the database the windows came from;
        recomputed (one scan of the series index) only when a symbol's last bar changed."""
        if key == self._version_key:
            return self._data_version
        from plus_ultra_ml.data.store import data_version, series_summary

        with self._version_lock:
            if key != self._version_key:
                self._data_version = data_version(series_summary(self.featuriser._db(), self.featuriser.timeout_s))
                self._version_key = key
        return self._data_version
