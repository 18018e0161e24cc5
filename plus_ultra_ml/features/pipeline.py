"""Compute a feature table from a panel: select, resolve, compute per symbol, record what was done.

`compute_features(panel, cfg, regimes)` is the one entry point (the Dagster `feature_table` asset,
the CLI and serving call it). It:

1. checks the panel's layout (docs/architecture.md): (symbol, timestamp) index, each symbol's rows
   contiguous and strictly increasing in time; the symbol boundaries come from the sorted index;
2. selects features from the config (default families, Alpha158 opt-in, include/exclude) and adds
   one alt-data spec per ``ind__*`` column (never ``ind__truth_*``);
3. resolves dependencies and skips features whose inputs are absent, with the reason
   (``strict`` raises instead); a close-only symbol in the panel (``panel.attrs["close_only"]``, from
   ``ingest --close-only``) withholds open/high/low (and volume, if it had none) for the whole panel,
   so every feature built on them is skipped with a logged reason naming the symbols (not a failure);
4. computes each per-symbol feature on each symbol's contiguous float64 slice (a function can
   never see another symbol's rows or a later bar), then the cross-sectional ones;
5. returns float32 columns (NaN during warm-up, never 0) with the panel's index, plus the specs,
   warm-ups, skip reasons, regime-code vocabulary, annualisation and a fingerprint of it all.

`result.config` is the input config with everything resolved pinned (the feature names as
``include``, periods per year, regime vocabulary): recomputing features for serving with it
reproduces the training-time columns and definitions, or says which cannot be computed.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from plus_ultra_ml.config import FeaturesConfig
from plus_ultra_ml.data.schema import CLOSE_ONLY_ATTR
from plus_ultra_ml.errors import DataContractError
from plus_ultra_ml.features.registry import (
    ALT_PREFIX,
    DEFAULT_FAMILIES,
    FAMILIES,
    LABEL_PREFIX,
    FeatureInputError,
    FeatureRegistry,
    FeatureSpec,
    INDICATOR_PREFIX,
    PanelGroups,
    default_registry,
    unknown_name_message,
)

log = logging.getLogger(__name__)

ProgressCallback = Callable[[int, int, str], None]  # (done, total, feature name)
METADATA_KEY = b"plus_ultra.features"  # parquet schema metadata key of a saved feature table


@dataclass(frozen=True)
class FeatureResult:
    """A computed feature table and everything needed to reproduce or serve it."""

    frame: pd.DataFrame  # (N, F) float32, the panel's index, one column per feature
    specs: tuple[FeatureSpec, ...]  # one per column, in column order
    skipped: Mapping[str, str]  # requested feature -> why it was not computed
    warmup: Mapping[str, int]  # feature -> leading NaN bars per symbol (regime codes: the labels' own)
    vocabulary: Mapping[str, tuple[str, ...]]  # regime label -> categories; code = position
    periods_per_year: float | None  # annualisation used (None: no feature needed it)
    fingerprint: str  # sha256 of names, inputs, params, annualisation, vocabulary, feature_source_version()
    config: FeaturesConfig  # pinned: include = these columns, periods per year, vocabulary (reuse to serve)

    def metadata(self) -> dict[str, Any]:
        """JSON-ready description (stored in the parquet file and in lineage)."""
        return {
            "fingerprint": self.fingerprint,
            "code_version": feature_source_version(),
            "features": [
                {**spec.describe(), "family": spec.family, "warmup": spec.warmup, "description": spec.description}
                for spec in self.specs
            ],
            "skipped": dict(self.skipped),
            "vocabulary": {name: list(categories) for name, categories in self.vocabulary.items()},
            "periods_per_year": self.periods_per_year,
            "config": self.config.model_dump(mode="json"),
        }


# --------------------------------------------------------------------------------------------
# panel layout
# --------------------------------------------------------------------------------------------
def panel_groups(panel: pd.DataFrame, with_time_groups: bool = True) -> PanelGroups:
    """Symbol row ranges (and timestamp groups) of a panel; raise `DataContractError` on a bad layout."""
    index = panel.index
    if not isinstance(index, pd.MultiIndex) or list(index.names) != ["symbol", "timestamp"]:
        raise DataContractError(
            f"panel must be indexed by ['symbol', 'timestamp'], got {list(getattr(index, 'names', [None]))}; "
            "load it with plus_ultra_ml.data.store.load_panel"
        )
    n = len(index)
    if n == 0:
        raise DataContractError("panel is empty: no rows to compute features from")
    codes = np.asarray(index.codes[0], dtype=np.int64)
    times = index.levels[1]
    if not isinstance(times, pd.DatetimeIndex):
        raise DataContractError(f"panel level 'timestamp' must be datetime64 (UTC), got {times.dtype}")
    level_codes = times.is_monotonic_increasing  # usual: level values sorted, so codes order like the times
    if level_codes:
        ts = np.asarray(index.codes[1], dtype=np.int64)
    else:
        ts = np.asarray(index.get_level_values(1).asi8, dtype=np.int64)
    change = np.flatnonzero(codes[1:] != codes[:-1]) + 1
    starts = np.concatenate(([0], change)).astype(np.int64)
    ends = np.concatenate((change, [n])).astype(np.int64)
    seen = codes[starts]
    if len(np.unique(seen)) != len(seen):
        repeated = index.levels[0][seen[np.flatnonzero(pd.Series(seen).duplicated().to_numpy())[0]]]
        raise DataContractError(
            f"panel rows of symbol {repeated!r} are not contiguous; sort it with panel.sort_index()"
        )
    step = np.diff(ts)
    inside = np.ones(n - 1, dtype=bool)
    inside[change - 1] = False  # a step across a symbol boundary may go back in time
    bad = np.flatnonzero(inside & (step <= 0))
    if bad.size:
        row = int(bad[0]) + 1
        symbol, when = index[row]
        what = "duplicated" if step[bad[0]] == 0 else "out of order"
        raise DataContractError(
            f"panel timestamp {when} of symbol {symbol!r} (row {row}) is {what}: each symbol's timestamps "
            "must strictly increase; deduplicate and sort the panel (panel.sort_index())"
        )
    if not with_time_groups:
        empty = np.empty(0, dtype=np.int64)
        return PanelGroups(starts=starts, ends=ends, time_codes=empty, by_time=empty, time_starts=empty)
    if level_codes:  # ranks of level positions in [0, L): a linear pass, not np.unique's O(N log N) sort
        present = np.zeros(len(times), dtype=bool)
        present[ts] = True
        n_distinct = int(present.sum())
        time_codes = (np.cumsum(present) - 1)[ts].astype(np.int64)
    else:
        distinct, time_codes = np.unique(ts, return_inverse=True)
        n_distinct, time_codes = len(distinct), time_codes.astype(np.int64)
    by_time = np.argsort(time_codes, kind="stable").astype(np.int64)  # stable: symbol order within a bar
    time_starts = np.searchsorted(time_codes[by_time], np.arange(n_distinct + 1)).astype(np.int64)
    return PanelGroups(starts=starts, ends=ends, time_codes=time_codes, by_time=by_time, time_starts=time_starts)


# --------------------------------------------------------------------------------------------
# selection
# --------------------------------------------------------------------------------------------
def select_features(registry: FeatureRegistry, cfg: FeaturesConfig) -> list[str]:
    """The feature names a config asks for, in registry order (exclusions applied)."""
    families = list(cfg.families) if cfg.families is not None else list(DEFAULT_FAMILIES)
    unknown = [f for f in families if f not in FAMILIES]
    if unknown:
        raise FeatureInputError(f"features.families: unknown family {unknown}; known: {list(FAMILIES)}")
    if cfg.alpha158 and "alpha158" not in families:
        families.append("alpha158")
    if cfg.include is not None:
        for name in cfg.include:
            if name not in registry:
                raise FeatureInputError("features.include: " + unknown_name_message(name, registry.names))
        names = list(cfg.include)
    else:
        names = [spec.name for spec in registry if spec.family in families]
    for name in cfg.exclude:
        if name not in registry:
            raise FeatureInputError("features.exclude: " + unknown_name_message(name, registry.names))
    excluded = set(cfg.exclude)
    return [name for name in names if name not in excluded]


# --------------------------------------------------------------------------------------------
# fingerprint
# --------------------------------------------------------------------------------------------
@lru_cache(maxsize=1)
def feature_source_version() -> str:
    """Package version plus a sha256 of the feature sources (features/*.py): any formula change shows.

    Not `lineage.code_version` (package version and git commit of the whole code base): this one
    names the feature definitions only, and goes into the feature fingerprint.
    """
    from plus_ultra_ml import __version__

    digest = hashlib.sha256()
    for path in sorted(Path(__file__).parent.glob("*.py")):
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return f"{__version__}+{digest.hexdigest()[:16]}"


def feature_fingerprint(
    specs: tuple[FeatureSpec, ...], periods_per_year: float | None, vocabulary: Mapping[str, tuple[str, ...]]
) -> str:
    blob = json.dumps(
        {
            "code": feature_source_version(),
            "features": [spec.describe() for spec in specs],
            "periods_per_year": periods_per_year,
            "vocabulary": {k: list(v) for k, v in sorted(vocabulary.items())},
        },
        sort_keys=True,
        separators=(",", ":"),
    )
    return hashlib.sha256(blob.encode()).hexdigest()


# --------------------------------------------------------------------------------------------
# computation
# --------------------------------------------------------------------------------------------
def _resolve_periods_per_year(cfg: FeaturesConfig, panel: pd.DataFrame) -> float:
    """Bars per year from the panel's trading calendars (never from how many bars it holds)."""
    if cfg.periods_per_year is not None:
        return float(cfg.periods_per_year)
    from plus_ultra_ml.data.calendar import panel_calendars, panel_periods_per_year

    try:
        calendars = panel_calendars(panel)
        value = panel_periods_per_year(panel)
    except ValueError as error:
        raise DataContractError(
            f"cannot infer the bar frequency for annualisation ({error}); set features.periods_per_year"
        ) from None
    names = sorted({c.name for c in calendars.values()})
    log.info("annualising volatility features with %.1f periods per year (trading calendar %s)", value, ", ".join(names))
    return value


def _column(panel: pd.DataFrame, name: str) -> np.ndarray:
    try:
        return np.ascontiguousarray(panel[name].to_numpy(dtype=np.float64))
    except (TypeError, ValueError) as error:
        raise DataContractError(f"panel column {name!r} is not numeric ({error}); fix it in the database") from None


def _infinite_to_nan(name: str, column: np.ndarray) -> None:
    """An infinite value (a ratio over 0, a float32 overflow) is not a number a model can use: NaN, logged."""
    infinite = np.isinf(column)
    if infinite.any():
        log.warning("feature %s: %d infinite values set to NaN", name, int(infinite.sum()))
        column[infinite] = np.nan


def _leading_nans(values: np.ndarray, groups: PanelGroups) -> int:
    """The longest run of NaN at the start of a symbol's history, over all symbols."""
    longest = 0
    for s, e in zip(groups.starts, groups.ends):
        defined = np.flatnonzero(~np.isnan(values[s:e]))
        longest = max(longest, int(defined[0]) if defined.size else int(e - s))
    return longest


def _check_output(spec: FeatureSpec, values: Any, length: int) -> np.ndarray:
    if not isinstance(values, np.ndarray) or values.shape != (length,):
        shape = getattr(values, "shape", type(values).__name__)
        raise RuntimeError(f"feature {spec.name!r} returned {shape}, expected an array of shape ({length},)")
    return values


def _run(
    order: tuple[FeatureSpec, ...],
    out_names: tuple[str, ...],
    panel: pd.DataFrame,
    columns: dict[str, np.ndarray],
    groups: PanelGroups,
    runtime: Mapping[str, Any],
    on_progress: ProgressCallback | None,
) -> np.ndarray:
    """Compute `order` (dependencies first); return the (len(out_names), N) float32 outputs.

    Per-symbol specs run on each symbol's contiguous slice; a spec's float64 values are kept only
    while a later spec still reads them. `columns` caches the panel columns read (float64).
    """
    computed = {spec.name for spec in order}
    out_row = {name: j for j, name in enumerate(out_names)}
    consumers: dict[str, int] = {}
    for spec in order:
        for dep in spec.inputs:
            if dep in computed and dep not in panel.columns:
                consumers[dep] = consumers.get(dep, 0) + 1

    n = len(panel)
    out = np.empty((len(out_names), n), dtype=np.float32)  # (F, N): each feature's column contiguous
    values: dict[str, np.ndarray] = {}  # float64 features still needed as inputs
    with np.errstate(divide="ignore", invalid="ignore"):  # 0/0 is NaN by design; infinities are logged
        for step, spec in enumerate(order, start=1):
            arrays = []
            for name in spec.inputs:
                if name in values:
                    arrays.append(values[name])
                elif name in columns:
                    arrays.append(columns[name])
                else:
                    columns[name] = _column(panel, name)
                    arrays.append(columns[name])
            kwargs = {**spec.params, **{key: runtime[key] for key in spec.runtime}}
            keep = consumers.get(spec.name, 0) > 0
            row = out_row.get(spec.name)
            if spec.scope == "panel":
                full = _check_output(spec, spec.fn(*arrays, groups=groups, **kwargs), n)
                if row is not None:
                    out[row] = full
            else:
                full = np.empty(n) if keep else None
                for s, e in zip(groups.starts, groups.ends):
                    y = _check_output(spec, spec.fn(*(a[s:e] for a in arrays), **kwargs), int(e - s))
                    if full is not None:
                        full[s:e] = y
                    if row is not None:
                        out[row, s:e] = y
            if row is not None:
                _infinite_to_nan(spec.name, out[row])
            if keep:
                values[spec.name] = full
            for dep in spec.inputs:  # free intermediates nobody else reads
                if dep in consumers:
                    consumers[dep] -= 1
                    if consumers[dep] == 0:
                        values.pop(dep, None)
            if on_progress is not None:
                on_progress(step, len(order), spec.name)

    return out


def close_only_withheld(panel: pd.DataFrame) -> dict[str, str]:
    """Panel columns that carry no information because a symbol is close-only: column -> why.

    `panel.attrs["close_only"]` ({symbol: volume is real}, set by `data.panel.build_panel` from
    assets.metadata) marks symbols whose open = high = low = close. Feature columns are shared by every
    symbol of the panel, so one such symbol withholds those inputs from all of them.
    """
    close_only = {s: v for s, v in (panel.attrs.get(CLOSE_ONLY_ATTR) or {}).items()}
    if not close_only:
        return {}
    names = ", ".join(sorted(close_only))
    why = f"close-only series in the panel ({names}: open = high = low = close, assets.metadata close_only)"
    withheld = {column: why for column in ("open", "high", "low")}
    no_volume = sorted(s for s, volume_known in close_only.items() if not volume_known)
    if no_volume:
        withheld["volume"] = f"close-only series without volume in the panel ({', '.join(no_volume)}: stored as 0)"
    return withheld


def compute_features(
    panel: pd.DataFrame,
    cfg: FeaturesConfig | None = None,
    regimes: pd.DataFrame | None = None,
    *,
    registry: FeatureRegistry | None = None,
    on_progress: ProgressCallback | None = None,
) -> FeatureResult:
    """Compute the configured features of `panel` (see the module docstring).

    panel: the panel contract, (N rows) indexed by (symbol, timestamp).
    regimes: optional `label_regimes(panel, cfg.regimes)` frame (same index) for the regime codes.
    Returns a `FeatureResult` whose frame is (N, F) float32 with the panel's index.
    """
    from plus_ultra_ml.features import alt, regime

    cfg = cfg or FeaturesConfig()
    groups = panel_groups(panel, with_time_groups=False)
    base = registry or default_registry()
    # alt-data specs for the panel's ind__ columns, and for alt names a pinned config asks for
    # (absent columns then resolve as skipped with the reason, rather than as unknown names)
    asked = [INDICATOR_PREFIX + n[len(ALT_PREFIX) :] for n in (cfg.include or ()) if n.startswith(ALT_PREFIX)]
    alt_specs, refused = alt.alt_specs(dict.fromkeys([*panel.columns, *asked]))
    registry = base.with_specs(alt_specs) if alt_specs else base
    requested = select_features(registry, cfg)

    vocabulary = {k: tuple(v) for k, v in (cfg.regime_vocabulary or regime.default_vocabulary()).items()}
    columns: dict[str, np.ndarray] = {}
    if regimes is not None:
        columns.update(regime.label_columns(regimes, panel.index, vocabulary))
    withheld = close_only_withheld(panel)
    resolution = registry.resolve(requested, [*panel.columns, *columns], n_symbols=groups.n_symbols,
                                  withheld=withheld)
    unresolved = resolution.skipped
    if withheld:  # skips the close-only fact causes are declared by the data, not failures even in strict mode
        unresolved = registry.resolve(requested, [*panel.columns, *columns], n_symbols=groups.n_symbols).skipped

    skipped = dict(resolution.skipped)
    alt_wanted = cfg.include is None and "alt" in (cfg.families or DEFAULT_FAMILIES)
    if alt_wanted:
        skipped.update(refused)
    if cfg.strict and unresolved:  # ground-truth refusals are not failures, even in strict mode
        lines = "\n  ".join(f"{name}: {why}" for name, why in unresolved.items())
        raise FeatureInputError(
            f"features.strict is on and {len(unresolved)} requested feature(s) cannot be computed:\n"
            f"  {lines}\nadd the missing columns (or pass regime labels), or exclude these features"
        )
    for name, why in skipped.items():
        log.info("feature %s skipped: %s", name, why)

    order = resolution.order
    needs_time_groups = any(spec.scope == "panel" for spec in order)
    if needs_time_groups:
        groups = panel_groups(panel)
    runtime: dict[str, Any] = {}
    ppy = None
    if any("periods_per_year" in spec.runtime for spec in order):
        ppy = _resolve_periods_per_year(cfg, panel)
        runtime["periods_per_year"] = ppy

    out_names = resolution.outputs
    out = _run(order, out_names, panel, columns, groups, runtime, on_progress)
    out_row = {name: j for j, name in enumerate(out_names)}

    frame = pd.DataFrame(out.T, index=panel.index, columns=list(out_names), copy=False)
    specs = tuple(registry[name] for name in out_names)
    warmup = {spec.name: spec.warmup for spec in specs}
    for spec in specs:  # regime codes inherit the labeller's warm-up (regimes.min_history): measure it
        if any(name.startswith(LABEL_PREFIX) for name in spec.inputs):
            warmup[spec.name] = _leading_nans(out[out_row[spec.name]], groups)
    pinned = cfg.model_copy(
        update={
            "include": tuple(out_names),
            "exclude": (),
            "periods_per_year": ppy if ppy is not None else cfg.periods_per_year,
            "regime_vocabulary": dict(vocabulary),
        }
    )
    return FeatureResult(
        frame=frame,
        specs=specs,
        skipped=skipped,
        warmup=warmup,
        vocabulary=vocabulary,
        periods_per_year=ppy,
        fingerprint=feature_fingerprint(specs, ppy, vocabulary),
        config=pinned,
    )


# --------------------------------------------------------------------------------------------
# files
# --------------------------------------------------------------------------------------------
def save_feature_table(result: FeatureResult, path: str | Path) -> Path:
    """Write the feature frame (index as columns symbol, timestamp) to parquet atomically, with the
    result's metadata under the schema key ``plus_ultra.features``."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from plus_ultra_ml.artifacts import atomic_path

    table = pa.Table.from_pandas(result.frame, preserve_index=True)
    meta = dict(table.schema.metadata or {})
    meta[METADATA_KEY] = json.dumps(result.metadata()).encode()
    table = table.replace_schema_metadata(meta)
    path = Path(path)
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)
    return path


def read_feature_config(path: str | Path) -> FeaturesConfig:
    """The pinned config a saved feature table was computed with (recompute with it for serving)."""
    return FeaturesConfig.model_validate(read_feature_metadata(path)["config"])


def read_feature_metadata(path: str | Path) -> dict[str, Any]:
    """The metadata `save_feature_table` stored in a parquet file."""
    import pyarrow.parquet as pq

    meta = pq.read_schema(path).metadata or {}
    if METADATA_KEY not in meta:
        raise DataContractError(f"{path} is not a Plus Ultra feature table (no {METADATA_KEY.decode()} metadata)")
    return json.loads(meta[METADATA_KEY])
