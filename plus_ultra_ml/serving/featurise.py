"""Incremental featurisation: the model's inputs at the latest bar of each symbol, from a bounded read.

Training computes features over each symbol's whole history; a prediction needs them for the last
window only. `LatestFeaturiser` reads the newest `HistoryBudget.bars` bars per symbol
(serving/history.py), computes the same features with the same pinned definitions
(`features.pipeline.compute_features` with the feature names, annualisation and regime vocabulary
the model was trained with; the result's fingerprint must equal the one in the checkpoint's
lineage), scales the last `window` rows with the checkpoint's scaler, and keeps the result until a
symbol gets a newer bar.

How many bars are enough (`history_budget`)? A window of T bars whose first bar needs
- the longest warm-up of any feature (its look-back, dependencies included),
- plus the bars after which recursive smoothing (EMA, Wilder) has forgotten where it started: with
  smoothing weight alpha >= 1 / L for a feature of window L, the weight left on bars older than
  k = ln(1 / tol) * L bars is below tol (``service.convergence_tolerance``, 1e-7 by default, below
  float32 resolution),
- and the forecast scale, the EWM volatility of half-life 50 bars (data/windows.py), which forgets
  its start after 50 * log2(1 / tol) bars;
- regime codes are exact by construction (serving/regime_state.py): expanding thresholds come from
  a state built once from the history, rolling ones from ``lookback`` + statistic bars of the read.

Cross-sectional features (market mean, dispersion, ranks) combine the symbols of the training
universe at each bar, so the database path always featurises the whole universe together (cached)
and returns the symbols asked for. Supplied bars must then cover the universe.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from plus_ultra_ml.config import DataConfig, FeaturesConfig, RegimeConfig, config_from_dict
from plus_ultra_ml.data.calendar import CALENDAR_ATTR
from plus_ultra_ml.data.regimes import label_regimes
from plus_ultra_ml.data.windows import VOL_HALFLIFE, RobustScaler, build_targets
from plus_ultra_ml.errors import DataContractError, PlusUltraError
from plus_ultra_ml.features.registry import ALT_PREFIX, INDICATOR_PREFIX, LABEL_PREFIX, FeatureSpec
from plus_ultra_ml.serving.history import RecentBars, read_recent
from plus_ultra_ml.serving.regime_state import RegimeState, StaleRegimeState, statistic_lookback

logger = logging.getLogger(__name__)


class FeatureMismatchError(PlusUltraError):
    """The features serving computes are not the ones the model was trained on."""


class BarsError(DataContractError):
    """Supplied bars cannot be featurised (the message names the symbol and what is missing)."""


# --------------------------------------------------------------------------------------------
# how much history
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class HistoryBudget:
    """Bars per symbol read for one prediction, and why (each part in bars)."""

    bars: int
    window: int  # the model's input window T
    warmup: int  # longest feature warm-up (regime codes excluded: see `regimes`)
    smoothing: int  # bars for recursive smoothing to forget its start
    volatility: int  # bars for the EWM forecast scale to forget its start
    regimes: int  # bars the regime labels read before the window (statistics, rolling thresholds)
    overridden: bool = False  # service.history_bars was set

    def explain(self) -> dict[str, int | bool]:
        return {"bars": self.bars, "window": self.window, "feature_warmup": self.warmup,
                "smoothing_convergence": self.smoothing, "volatility_convergence": self.volatility,
                "regime_lookback": self.regimes, "overridden": self.overridden}


def history_budget(specs: Sequence[FeatureSpec], window: int, regimes: RegimeConfig, tolerance: float,
                   override: int | None = None) -> HistoryBudget:
    """The bounded read that reproduces full-history features at the last `window` bars (see the module docstring)."""
    plain = [s for s in specs if not any(i.startswith(LABEL_PREFIX) for i in s.inputs)]
    warmup = max((s.warmup for s in plain), default=0)
    longest = max((s.window or 0 for s in plain), default=0)
    smoothing = math.ceil(math.log(1 / tolerance) * longest)
    volatility = math.ceil(VOL_HALFLIFE * math.log2(1 / tolerance))
    uses_labels = len(plain) < len(specs)
    regime_bars = 0
    if uses_labels:
        regime_bars = statistic_lookback(regimes) + 1
        if regimes.lookback is not None:  # rolling thresholds: their window and min_history from the read itself
            regime_bars = max(regime_bars + regimes.lookback, regimes.min_history)
    need = max(warmup + smoothing, volatility, regime_bars)
    bars = window + need
    if override is not None:
        if override < window + max(warmup, regime_bars):
            raise PlusUltraError(
                f"service.history_bars={override} is shorter than the window ({window}) plus the longest warm-up "
                f"({max(warmup, regime_bars)}); use at least {window + max(warmup, regime_bars)} or leave it unset "
                f"(computed: {bars})"
            )
        if override < bars:
            logger.warning("service.history_bars=%d is below the computed %d: recursive features and the forecast "
                           "scale will differ slightly from the full-history values", override, bars)
        bars = override
    return HistoryBudget(bars, window, warmup, smoothing, volatility, regime_bars, override is not None)


# --------------------------------------------------------------------------------------------
# the recipe: what to compute, pinned from the checkpoint
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class FeatureRecipe:
    """How a model's inputs are made, rebuilt from its checkpoint (lineage config + feature names)."""

    features: FeaturesConfig  # pinned: include = the model's features, annualisation, regime vocabulary
    regimes: RegimeConfig
    data: DataConfig  # the training panel's data section (start, ffill_limit, freq)
    feature_names: tuple[str, ...]
    fingerprint: str | None  # the training feature set's fingerprint (None: not recorded)
    universe: tuple[str, ...]  # the training panel's symbols (cross-sectional features combine them)
    indicators: tuple[str, ...]  # indicator names the alt features pass through
    specs: tuple[FeatureSpec, ...]
    window: int
    budget: HistoryBudget
    # symbol -> trading calendar name, resolved as training did (serving/calendars.py); gaps and
    # forward-fill of served history are judged against its sessions. A symbol missing here (nothing
    # recorded, no database) has its calendar inferred from the bars at hand, logged.
    calendars: Mapping[str, str] = field(default_factory=dict)

    @property
    def cross_sectional(self) -> bool:
        return any(s.scope == "panel" for s in self.specs)

    @property
    def uses_regimes(self) -> bool:
        return any(i.startswith(LABEL_PREFIX) for s in self.specs for i in s.inputs)


def feature_specs(names: Sequence[str]) -> tuple[FeatureSpec, ...]:
    """Registry specs of the given feature names (alt_<name> pass-throughs included)."""
    from plus_ultra_ml.features import alt
    from plus_ultra_ml.features.registry import default_registry

    registry = default_registry()
    columns = [INDICATOR_PREFIX + n[len(ALT_PREFIX):] for n in names if n.startswith(ALT_PREFIX) and n not in registry]
    specs, _ = alt.alt_specs(columns)
    registry = registry.with_specs(specs) if specs else registry
    unknown = [n for n in names if n not in registry]
    if unknown:
        raise FeatureMismatchError(
            f"the checkpoint's features {unknown} are not in this code's feature registry; serve it with the code "
            "version that trained it (lineage code_version) or retrain"
        )
    return tuple(registry[n] for n in names)


def recipe_for(lineage_config: Mapping[str, Any], feature_names: Sequence[str], window: int, *,
               fingerprint: str | None, universe: Sequence[str], periods_per_year: float | None = None,
               pinned: FeaturesConfig | None = None, tolerance: float = 1e-7,
               history_bars: int | None = None, calendars: Mapping[str, str] | None = None) -> FeatureRecipe:
    """The recipe of a checkpoint: its training config's features/regimes/data sections, its feature
    names, the annualisation the features used (from `pinned`, the config, or `periods_per_year`: the
    served calendars' bars per year) and the served symbols' trading `calendars`."""
    cfg = config_from_dict(lineage_config, source="the checkpoint's lineage config")
    base = pinned or cfg.features
    ppy = base.periods_per_year if base.periods_per_year is not None else periods_per_year
    features = base.model_copy(update={"include": tuple(feature_names), "exclude": (), "periods_per_year": ppy,
                                       "strict": False})
    specs = feature_specs(feature_names)
    indicators = tuple(i[len(INDICATOR_PREFIX):] for s in specs for i in s.inputs if i.startswith(INDICATOR_PREFIX))
    budget = history_budget(specs, window, cfg.regimes, tolerance, history_bars)
    return FeatureRecipe(features, cfg.regimes, cfg.data, tuple(feature_names), fingerprint, tuple(universe),
                         tuple(dict.fromkeys(indicators)), specs, window, budget, dict(calendars or {}))


def compute_model_features(panel: pd.DataFrame, recipe: FeatureRecipe, labels: pd.DataFrame | None):
    """`compute_features` with the pinned recipe; every model feature must come out (else a clear error)."""
    from plus_ultra_ml.features.pipeline import compute_features

    result = compute_features(panel, recipe.features, labels)
    missing = [n for n in recipe.feature_names if n not in result.frame.columns]
    if missing:
        reasons = "; ".join(f"{n}: {result.skipped.get(n, 'not computed')}" for n in missing[:5])
        raise BarsError(f"cannot compute {len(missing)} of the model's features from these bars ({reasons})")
    return result


def full_history_features(panel: pd.DataFrame, recipe: FeatureRecipe):
    """Features over a whole panel (what training saw): the offline reference serving must reproduce."""
    labels = label_regimes(panel, recipe.regimes) if recipe.uses_regimes else None
    return compute_model_features(panel, recipe, labels)


# --------------------------------------------------------------------------------------------
# the latest window of each symbol
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class LatestWindows:
    """The scaled last window of each available symbol, and why the others are unavailable."""

    symbols: tuple[str, ...]
    x: np.ndarray  # (S, T, F) float32, scaled with the checkpoint's scaler
    timestamps: tuple[pd.Timestamp, ...]  # (S,) the latest bar of each symbol
    volatility: np.ndarray  # (S,) causal EWM volatility of 1-bar log returns at that bar (the forecast scale)
    unavailable: Mapping[str, str] = field(default_factory=dict)  # symbol -> reason
    key: tuple = ()  # the (symbol, last bar) pairs these windows were computed from (the cache key)
    rows_read: int = 0
    frames: tuple[pd.DataFrame, pd.DataFrame] | None = None  # (panel, features) they were cut from (a policy replays them)

    def select(self, symbols: Sequence[str]) -> LatestWindows:
        position = {s: i for i, s in enumerate(self.symbols)}
        rows = [position[s] for s in symbols if s in position]
        missing = {s: self.unavailable.get(s, "no bars for this symbol") for s in symbols if s not in position}
        return LatestWindows(tuple(self.symbols[i] for i in rows), self.x[rows],
                             tuple(self.timestamps[i] for i in rows), self.volatility[rows], missing, self.key,
                             self.rows_read, self.frames)


def latest_windows(features: pd.DataFrame, volatility: pd.Series, scaler: RobustScaler, window: int,
                   feature_names: Sequence[str]) -> LatestWindows:
    """The last `window` rows of every symbol in `features`, checked finite and scaled."""
    raw = features[list(feature_names)]
    symbols_level = raw.index.get_level_values("symbol")
    codes = pd.Categorical(symbols_level).codes
    categories = pd.Categorical(symbols_level).categories
    values = raw.to_numpy(dtype=np.float32)
    vol = volatility.to_numpy(dtype=np.float64)
    times = raw.index.get_level_values("timestamp")
    names, xs, stamps, vols, unavailable = [], [], [], [], {}
    ends = np.flatnonzero(np.r_[codes[1:] != codes[:-1], True])  # last row of each symbol
    for end in ends:
        symbol = str(categories[codes[end]])
        first = end - window + 1
        if first < 0 or codes[first] != codes[end]:
            unavailable[symbol] = f"only {int((codes == codes[end]).sum())} bars; the model needs {window}"
            continue
        block = values[first:end + 1]  # (T, F)
        bad = ~np.isfinite(block)
        if bad.any():
            columns = [feature_names[j] for j in np.flatnonzero(bad.any(axis=0))][:5]
            row = int(np.flatnonzero(bad.any(axis=1))[0])
            unavailable[symbol] = (f"features {columns} are not finite in the last {window} bars (first at "
                                   f"{times[first + row].isoformat()}); the latest bar cannot be predicted yet")
            continue
        if not np.isfinite(vol[end]):
            unavailable[symbol] = "the forecast scale (50-bar EWM volatility) is not defined yet: too few bars"
            continue
        names.append(symbol)
        xs.append(scaler.transform(block))
        stamps.append(times[end])
        vols.append(vol[end])
    x = np.stack(xs) if xs else np.empty((0, window, len(feature_names)), dtype=np.float32)
    return LatestWindows(tuple(names), x, tuple(stamps), np.asarray(vols, dtype=np.float64), unavailable)


def forecast_scale(panel: pd.DataFrame) -> pd.Series:
    """The causal EWM volatility the forecast head's outputs are multiplied by (data/windows.py)."""
    return build_targets(panel, 1).volatility


# --------------------------------------------------------------------------------------------
# the featuriser: bounded reads, regime state, cache
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ReadStats:
    """What the last featurisation from the database read (for tests, /health and metrics)."""

    rows_read: int = 0  # series rows fetched by the bounded read
    bars_per_symbol: int = 0  # the budget asked for
    symbols: int = 0
    state_rebuilds: int = 0  # full-history reads to (re)build the regime state
    featurisations: int = 0  # cache misses


class LatestFeaturiser:
    """Latest windows from the database (cached per new bar) or from supplied bars (stateless)."""

    def __init__(self, recipe: FeatureRecipe, scaler: RobustScaler, db_path: str | Path | None,
                 timeout_s: float = 10.0):
        self.recipe = recipe
        self.scaler = scaler
        self.db_path = Path(db_path) if db_path is not None else None
        self.timeout_s = timeout_s
        self._lock = threading.Lock()
        self._cache: LatestWindows | None = None
        self._state: RegimeState | None = None
        self.stats = ReadStats(bars_per_symbol=recipe.budget.bars, symbols=len(recipe.universe))
        self.fingerprint_checked = False

    # -- the database path --------------------------------------------------------------------
    def latest_key(self) -> tuple:
        """(symbol, last bar) of every universe symbol: one index lookup each."""
        from plus_ultra_ml.serving.history import latest_timestamps

        latest = latest_timestamps(self._db(), self.recipe.universe, self.timeout_s)
        return tuple((s, latest[s]) for s in self.recipe.universe)

    def from_database(self, symbols: Sequence[str]) -> LatestWindows:
        key = self.latest_key()
        cached = self._cache
        if cached is None or cached.key != key:
            with self._lock:
                cached = self._cache
                if cached is None or cached.key != key:
                    cached = self._refresh()
                    self._cache = cached
        return cached.select(symbols)

    def _db(self) -> Path:
        if self.db_path is None:
            raise PlusUltraError("no database configured: pass bars in the request or start the service with --db")
        return self.db_path

    def _read(self) -> RecentBars:
        r = self.recipe
        spacing = pd.Timedelta(r.data.freq) if r.data.freq else None
        return read_recent(self._db(), r.universe, r.budget.bars, indicators=r.indicators, start=r.data.start,
                           ffill_limit=r.data.ffill_limit, spacing=spacing, timeout_s=self.timeout_s,
                           calendars=r.calendars)

    def _rebuild_state(self) -> RegimeState:
        """One full read of the universe's close and volume history (at start, and after a long sleep)."""
        from plus_ultra_ml.data.gaps import forward_fill_gaps
        from plus_ultra_ml.data.store import load_panel
        from plus_ultra_ml.serving.history import calendars_of

        r = self.recipe
        panel = load_panel(self._db(), list(r.universe), r.data.start, None, False, self.timeout_s)
        spacing = pd.Timedelta(r.data.freq) if r.data.freq else None
        panel, _ = forward_fill_gaps(panel, r.data.ffill_limit, spacing, calendars_of(panel, r.calendars))
        self.stats = replace(self.stats, state_rebuilds=self.stats.state_rebuilds + 1)
        logger.info("regime state built from %d bars of %d symbols", len(panel), len(r.universe))
        return RegimeState.from_history(panel, r.regimes, keep_last=r.window)

    def _labels(self, recent: RecentBars) -> pd.DataFrame | None:
        r = self.recipe
        if not r.uses_regimes:
            return None
        if r.regimes.lookback is not None:
            return label_regimes(recent.panel, r.regimes)
        if self._state is None:
            self._state = self._rebuild_state()
        try:
            return self._state.update(recent.panel, r.window, recent.complete)
        except StaleRegimeState as error:
            logger.info("regime state is stale (%s): rebuilding it", error)
            self._state = self._rebuild_state()
            return self._state.update(recent.panel, r.window, recent.complete)

    def _refresh(self) -> LatestWindows:
        recent = self._read()
        if recent.panel.empty:
            return LatestWindows((), np.empty((0, self.recipe.window, len(self.recipe.feature_names)), np.float32), (),
                                 np.empty(0), {s: "no bars in the database" for s in self.recipe.universe})
        labels = self._labels(recent)
        result = compute_model_features(recent.panel, self.recipe, labels)
        self.check_fingerprint(result.fingerprint)
        windows = latest_windows(result.frame, forecast_scale(recent.panel), self.scaler, self.recipe.window,
                                 self.recipe.feature_names)
        last = recent.panel.index.to_frame(index=False).groupby("symbol", observed=True)["timestamp"].max()
        key = tuple((s, last.get(s)) for s in self.recipe.universe)
        unread = {s: "no bars in the database" for s in self.recipe.universe if s not in last.index}
        self.stats = replace(self.stats, rows_read=recent.rows_read, featurisations=self.stats.featurisations + 1)
        return replace(windows, key=key, rows_read=recent.rows_read, unavailable={**unread, **windows.unavailable},
                       frames=(recent.panel, result.frame))

    def check_fingerprint(self, computed: str) -> None:
        """The features computed here must be the definitions the model was trained on."""
        expected = self.recipe.fingerprint
        if expected is None or computed == expected:
            self.fingerprint_checked = expected is not None
            return
        raise FeatureMismatchError(
            f"the features computed for serving (fingerprint {computed[:12]}) are not the ones the checkpoint was "
            f"trained on ({expected[:12]}): the feature code, the annualisation (features.periods_per_year "
            f"{self.recipe.features.periods_per_year}) or the regime vocabulary differ. Serve with the feature table "
            "the model was trained on (--features), set features.periods_per_year, or retrain"
        )

    # -- supplied bars ------------------------------------------------------------------------
    def from_bars(self, panel: pd.DataFrame, symbols: Sequence[str]) -> LatestWindows:
        """Windows from bars a client sent (stateless: regime thresholds see these bars only)."""
        r = self.recipe
        present = {str(s) for s in panel.index.get_level_values("symbol").unique()}
        if r.cross_sectional:
            missing = [s for s in r.universe if s not in present]
            if missing:
                panel_features = [s.name for s in r.specs if s.scope == "panel"][:3]
                raise BarsError(
                    f"this model uses cross-sectional features ({panel_features}...), computed over its training "
                    f"universe {list(r.universe)}: supplied bars lack {missing}; send bars for every universe "
                    "symbol or omit bars to read the database"
                )
        if r.calendars:  # the served calendars, not a guess from the bars sent
            panel = panel.copy()
            panel.attrs[CALENDAR_ATTR] = {**dict(panel.attrs.get(CALENDAR_ATTR) or {}), **r.calendars}
        labels = label_regimes(panel, r.regimes) if r.uses_regimes else None
        result = compute_model_features(panel, r, labels)
        self.check_fingerprint(result.fingerprint)
        windows = latest_windows(result.frame, forecast_scale(panel), self.scaler, r.window, r.feature_names)
        return replace(windows, frames=(panel, result.frame)).select(symbols)
