"""Alt-data family: every ``ind__<name>`` indicator column of the panel, passed through as ``alt_<name>``.

The values are the database's own, bar for bar (no fill, no shift): their causality is the data
provider's. One exception: ``ind__truth_*`` columns (for example ``ind__truth_oracle`` written by
the synthetic fixture) are evaluation-only ground truth and are never passed to a model; they are
listed as skipped with that reason.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from plus_ultra_ml.features.registry import ALT_PREFIX, INDICATOR_PREFIX, TRUTH_PREFIX, FeatureSpec

TRUTH_REASON = "evaluation-only ground truth (ind__truth_*): never a model input"


def passthrough(values: np.ndarray) -> np.ndarray:
    return values.copy()


def alt_name(column: str) -> str:
    return ALT_PREFIX + column[len(INDICATOR_PREFIX) :]


def alt_specs(columns: Iterable[str]) -> tuple[list[FeatureSpec], dict[str, str]]:
    """Specs for the panel's indicator columns, and {feature name: reason} for the refused ones."""
    specs: list[FeatureSpec] = []
    refused: dict[str, str] = {}
    for column in columns:
        if not column.startswith(INDICATOR_PREFIX):
            continue
        if column.startswith(TRUTH_PREFIX):
            refused[alt_name(column)] = TRUTH_REASON
            continue
        specs.append(
            FeatureSpec(
                name=alt_name(column),
                family="alt",
                fn=passthrough,
                inputs=(column,),
                warmup=0,
                tags=("alt", "passthrough"),
                description=f"{column} from the database's indicators table, unchanged",
            )
        )
    return specs, refused


def catalogue_entry() -> dict[str, str]:
    """The family as one catalogue row (its names depend on the database)."""
    return {
        "name": f"{ALT_PREFIX}<name>",
        "family": "alt",
        "description": f"{INDICATOR_PREFIX}<name> passed through unchanged; {TRUTH_PREFIX}* never (ground truth)",
        "window": "-",
        "tags": "alt, passthrough",
        "warmup": "0 (the source's own gaps stay NaN)",
    }
