"""The feature registry: what each feature is (a `FeatureSpec`), and which of them a config asks for.

A `FeatureSpec` is data plus one pure function. Its ``inputs`` name panel columns (``close``,
``ind__x``, ``label__trend``) or other features (``logret_1``); the registry orders a request so
every dependency is computed first, and skips a feature whose inputs are absent, with the reason.

Two scopes:
- ``symbol``: ``fn(*input_arrays, **params)`` sees one symbol's contiguous float64 history and
  returns a float64 array of the same length. It cannot see another symbol or the future.
- ``panel``: ``fn(*input_arrays, groups=PanelGroups, **params)`` sees whole-panel columns and
  combines symbols only at the same timestamp (cross-sectional features).

Warm-up: ``warmup`` is the number of leading bars of each symbol's history that are NaN because
the look-back is not yet full, dependencies included (value at bar index ``warmup`` is the first
one defined). Tests check every declared warm-up against the computed frame.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Literal

import numpy as np

from plus_ultra_ml.errors import PlusUltraError

Scope = Literal["symbol", "panel"]

# Family names in catalogue order. Alpha158 is opt-in (FeaturesConfig.alpha158).
FAMILIES: tuple[str, ...] = (
    "returns",
    "momentum",
    "volatility",
    "volume",
    "regime",
    "spectral",
    "cross_asset",
    "alt",
    "alpha158",
)
DEFAULT_FAMILIES: tuple[str, ...] = tuple(f for f in FAMILIES if f != "alpha158")

# Runtime values the pipeline resolves once per feature set and passes to specs that name them.
RUNTIME_VALUES: tuple[str, ...] = ("periods_per_year",)

INDICATOR_PREFIX = "ind__"  # panel indicator columns (alt data)
TRUTH_PREFIX = "ind__truth_"  # evaluation-only ground truth: never a model input
LABEL_PREFIX = "label__"  # regime label codes, made from the regime_labels frame
ALT_PREFIX = "alt_"  # feature name of a passed-through indicator: alt_<name>


class FeatureInputError(PlusUltraError):
    """A requested feature cannot be computed (strict mode), or a request names unknown features."""


@dataclass(frozen=True)
class FeatureSpec:
    """One feature: a name, what it reads, its parameters, and a pure causal function."""

    name: str
    family: str
    fn: Callable[..., Any]
    inputs: tuple[str, ...]
    description: str  # one line with the formula
    warmup: int  # leading NaN bars per symbol (dependencies included)
    params: Mapping[str, int | float | str] = field(default_factory=dict)
    window: int | None = None  # its own look-back or smoothing period in bars, inputs' warm-up aside (None: point-wise)
    tags: tuple[str, ...] = ()
    scope: Scope = "symbol"
    runtime: tuple[str, ...] = ()  # names from RUNTIME_VALUES passed as keyword arguments
    min_symbols: int = 1  # cross-sectional features need at least this many symbols in the panel

    def __post_init__(self) -> None:
        if self.family not in FAMILIES:
            raise ValueError(f"feature {self.name!r}: unknown family {self.family!r}")
        unknown = [r for r in self.runtime if r not in RUNTIME_VALUES]
        if unknown:
            raise ValueError(f"feature {self.name!r}: unknown runtime values {unknown}")
        if self.warmup < 0:
            raise ValueError(f"feature {self.name!r}: negative warm-up")

    def describe(self) -> dict[str, Any]:
        """What identifies the feature's values: name, inputs, params (used by the fingerprint)."""
        return {"name": self.name, "inputs": list(self.inputs), "params": dict(self.params), "scope": self.scope}


@dataclass(frozen=True)
class PanelGroups:
    """Where each symbol's rows are, and which rows share a timestamp (for panel-scope features).

    The panel is sorted by symbol, then time: symbol i owns rows starts[i]:ends[i].
    Rows by_time[time_starts[k]:time_starts[k + 1]] share the k-th distinct timestamp, in symbol order.
    """

    starts: np.ndarray  # (S,) int64
    ends: np.ndarray  # (S,) int64
    time_codes: np.ndarray  # (N,) int64, rank of each row's timestamp among the distinct ones
    by_time: np.ndarray  # (N,) int64 row numbers ordered by (timestamp, symbol)
    time_starts: np.ndarray  # (T + 1,) int64 offsets into by_time

    @property
    def n_symbols(self) -> int:
        return int(self.starts.shape[0])


@dataclass(frozen=True)
class Resolution:
    """A request resolved against the available columns: what to compute, in order, and what not."""

    order: tuple[FeatureSpec, ...]  # every spec to compute, dependencies before dependents
    outputs: tuple[str, ...]  # the requested names that will be columns of the result, in order
    skipped: Mapping[str, str]  # requested name -> why it is not computed


class FeatureRegistry:
    """An immutable, name-keyed set of specs with dependency resolution."""

    def __init__(self, specs: Iterable[FeatureSpec]):
        self._specs: dict[str, FeatureSpec] = {}
        for spec in specs:
            if spec.name in self._specs:
                raise ValueError(f"feature {spec.name!r} is registered twice")
            self._specs[spec.name] = spec
        for spec in self._specs.values():
            for name in spec.inputs:
                dep = self._specs.get(name)
                if dep is not None and spec.scope == "symbol" and dep.scope == "panel":
                    raise ValueError(f"per-symbol feature {spec.name!r} cannot read panel-scope feature {name!r}")
        self._check_acyclic()

    def _check_acyclic(self) -> None:
        state: dict[str, int] = {}

        def visit(name: str, path: tuple[str, ...]) -> None:
            if state.get(name) == 2:
                return
            if state.get(name) == 1:
                raise ValueError(f"feature dependency cycle: {' -> '.join((*path, name))}")
            state[name] = 1
            for dep in self._specs[name].inputs:
                if dep in self._specs:
                    visit(dep, (*path, name))
            state[name] = 2

        for name in self._specs:
            visit(name, ())

    def __iter__(self) -> Iterator[FeatureSpec]:
        return iter(self._specs.values())

    def __len__(self) -> int:
        return len(self._specs)

    def __contains__(self, name: object) -> bool:
        return name in self._specs

    def __getitem__(self, name: str) -> FeatureSpec:
        try:
            return self._specs[name]
        except KeyError:
            raise FeatureInputError(unknown_name_message(name, self._specs)) from None

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self._specs)

    def family(self, family: str) -> tuple[FeatureSpec, ...]:
        return tuple(spec for spec in self._specs.values() if spec.family == family)

    def with_specs(self, extra: Iterable[FeatureSpec]) -> FeatureRegistry:
        """A new registry holding these specs plus `extra` (e.g. the panel's alt-data columns)."""
        return FeatureRegistry([*self._specs.values(), *extra])

    def resolve(self, requested: Iterable[str], available: Iterable[str], n_symbols: int = 1,
                withheld: Mapping[str, str] | None = None) -> Resolution:
        """Order `requested` (and their dependencies) for computation given the available panel columns.

        A feature is skipped when one of its inputs is neither an available column nor a
        computable feature (the reason names the missing column, through the dependency chain),
        when an input is `withheld` (column -> why: present in the panel but carrying no information,
        e.g. the open/high/low of a close-only series), or when the panel has fewer symbols than a
        cross-sectional feature needs.
        """
        withheld = dict(withheld or {})
        columns = set(available) - set(withheld)
        reasons: dict[str, str | None] = {}  # name -> None if computable, else the reason

        def check(name: str) -> str | None:
            if name in reasons:
                return reasons[name]
            spec = self._specs[name]
            reason = None
            if n_symbols < spec.min_symbols:
                reason = f"needs at least {spec.min_symbols} symbols in the panel, it has {n_symbols}"
            for dep in spec.inputs if reason is None else ():
                if dep in columns:
                    continue
                if dep in self._specs:
                    why = check(dep)
                    if why is not None:
                        reason = f"needs feature {dep!r}, which is skipped: {why}"
                        break
                elif dep in withheld:
                    reason = f"input column {dep!r} is withheld: {withheld[dep]}"
                    break
                elif dep.startswith(LABEL_PREFIX):
                    reason = f"needs regime labels ({dep[len(LABEL_PREFIX):]!r}); none were given"
                    break
                else:
                    reason = f"input column {dep!r} is not in the panel"
                    break
            reasons[name] = reason
            return reason

        requested = list(dict.fromkeys(requested))
        for name in requested:
            if name not in self._specs:
                raise FeatureInputError(unknown_name_message(name, self._specs))
        outputs = tuple(name for name in requested if check(name) is None)
        skipped = {name: reasons[name] for name in requested if reasons[name] is not None}

        order: list[FeatureSpec] = []
        seen: set[str] = set()

        def visit(name: str) -> None:
            if name in seen:
                return
            seen.add(name)
            for dep in self._specs[name].inputs:
                if dep in self._specs and dep not in columns:
                    visit(dep)
            order.append(self._specs[name])

        for name in outputs:
            visit(name)
        # Per-symbol specs first (their order is a valid topological order on its own, since they
        # never read panel-scope specs), then panel-scope specs in dependency order.
        ordered = [s for s in order if s.scope == "symbol"] + [s for s in order if s.scope == "panel"]
        return Resolution(order=tuple(ordered), outputs=outputs, skipped=skipped)  # type: ignore[arg-type]


def unknown_name_message(name: str, known: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, list(known), n=3)
    hint = f" (did you mean {', '.join(repr(c) for c in close)}?)" if close else ""
    return f"unknown feature {name!r}{hint}; `plus-ultra features list` shows the catalogue"


@lru_cache(maxsize=1)
def default_registry() -> FeatureRegistry:
    """Every built-in family's specs (alt-data specs are added per panel by `alt.alt_specs`)."""
    from plus_ultra_ml.features import (
        alpha158,
        cross_asset,
        momentum,
        regime,
        returns,
        spectral,
        volatility,
        volume,
    )

    modules = (returns, momentum, volatility, volume, regime, spectral, cross_asset, alpha158)
    return FeatureRegistry(spec for module in modules for spec in module.specs())
