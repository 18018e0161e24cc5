"""What goes over the wire: the /predict request models, and the bodies the endpoints answer with.

Requests are pydantic models that refuse anything unexpected (extra fields, naive timestamps,
non-positive or non-finite prices, path-like symbols). Their size limits come from the service
config, so the /predict model is built per app by `request_model(service)`. Responses are plain
JSON dicts built here (`prediction_body`, `redact`, `curriculum_schedule`); no body echoes the
request or a server path.

(No ``from __future__ import annotations`` here: pydantic resolves the per-app model's annotations
when `request_model` builds it, and FastAPI reads them from the /predict endpoint at runtime.)
"""

import math
from collections.abc import Mapping, Sequence
from typing import Annotated, Any

import numpy as np
import pandas as pd
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints

from plus_ultra_ml.config import ServiceConfig
from plus_ultra_ml.errors import DataContractError
from plus_ultra_ml.serving.predictor import Prediction, Predictor

SYMBOL_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._\-=^]{0,31}$"  # no slashes, no leading dot: never a path
INDICATOR_PATTERN = r"^[A-Za-z0-9_]{1,64}$"
REDACTED = "<redacted>"
SECRET_KEYS = {"db_path", "checkpoint_dir", "registry_dir", "failure_webhook", "api_key_env", "path", "run_dir",
               "best_checkpoint"}
PATH_SUFFIXES = (".db", ".sqlite", ".pt", ".ckpt", ".yaml", ".yml", ".json", ".parquet", ".csv")


# --------------------------------------------------------------------------------------------
# requests (limits come from the config: the /predict model is built per app)
# --------------------------------------------------------------------------------------------
Symbol = Annotated[str, StringConstraints(pattern=SYMBOL_PATTERN)]
IndicatorName = Annotated[str, StringConstraints(pattern=INDICATOR_PATTERN)]
Price = Annotated[float, Field(gt=0, allow_inf_nan=False)]


class Bar(BaseModel):
    """One OHLCV bar; the timestamp must carry a time zone (2024-01-02T09:30:00Z)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    timestamp: AwareDatetime
    open: Price
    high: Price
    low: Price
    close: Price
    volume: Annotated[float, Field(ge=0, allow_inf_nan=False)]
    vwap: Price | None = None
    turnover: Annotated[float, Field(ge=0, allow_inf_nan=False)] | None = None
    indicators: dict[IndicatorName, Annotated[float, Field(allow_inf_nan=False)] | None] = Field(
        default_factory=dict, max_length=64)


def request_model(service: ServiceConfig) -> type[BaseModel]:
    """The /predict body with this service's limits."""

    class PredictRequest(BaseModel):
        model_config = ConfigDict(extra="forbid", frozen=True)
        symbols: list[Symbol] = Field(min_length=1, max_length=service.max_symbols)
        bars: dict[Symbol, Annotated[list[Bar], Field(min_length=1, max_length=service.max_bars)]] | None = Field(
            None, max_length=service.max_symbols)

    return PredictRequest


def bars_panel(bars: Mapping[str, Sequence[Bar]]) -> pd.DataFrame:
    """Supplied bars -> the panel contract; a symbol's bars must be strictly increasing in time."""
    frames = []
    for symbol, rows in bars.items():
        stamps = pd.DatetimeIndex([pd.Timestamp(b.timestamp).tz_convert("UTC") for b in rows], name="timestamp")
        steps = np.diff(stamps.asi8)
        if (steps <= 0).any():
            k = int(np.flatnonzero(steps <= 0)[0]) + 1
            raise DataContractError(f"bars of {symbol!r}: bar {k} ({stamps[k].isoformat()}) is not after the bar "
                                    "before it; send each symbol's bars in strictly increasing time")
        bad = [k for k, b in enumerate(rows) if not (b.low <= min(b.open, b.close) and b.high >= max(b.open, b.close))]
        if bad:
            raise DataContractError(f"bars of {symbol!r}: bar {bad[0]} has low above open/close or high below them")
        columns: dict[str, Any] = {c: [getattr(b, c) for b in rows] for c in ("open", "high", "low", "close", "volume")}
        for optional in ("vwap", "turnover"):
            if any(getattr(b, optional) is not None for b in rows):
                columns[optional] = [getattr(b, optional) for b in rows]
        for name in sorted({n for b in rows for n in b.indicators}):
            columns[f"ind__{name}"] = [b.indicators.get(name) for b in rows]
        frame = pd.DataFrame(columns, index=stamps, dtype=np.float64)
        frame["symbol"] = symbol
        frames.append(frame)
    long = pd.concat(frames)
    index = pd.MultiIndex.from_arrays([pd.Categorical(long.pop("symbol"), categories=sorted(bars)), long.index],
                                      names=["symbol", "timestamp"])
    return long.set_axis(index).sort_index()


# --------------------------------------------------------------------------------------------
# responses
# --------------------------------------------------------------------------------------------
def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def prediction_body(result: Prediction, predictor: Predictor) -> dict[str, Any]:
    """The /predict answer: one signal per symbol (forecast per horizon, position, volatility)."""
    card = predictor.card
    signals = []
    for s in result.signals:
        item = {
            "symbol": s.symbol, "timestamp": s.timestamp.isoformat(),
            "forecast": {f"h{h}": _finite(v) for h, v in enumerate(s.forecast, start=1)},
            "position": _finite(s.position), "volatility": _finite(s.volatility),
            "model_fingerprint": card.fingerprint, "data_version": result.data_version,
        }
        if s.quantiles is not None:
            item["quantiles"] = {f"h{h}": {f"q{q:g}": _finite(v) for q, v in zip(card.quantiles, row, strict=True)}
                                 for h, row in enumerate(s.quantiles, start=1)}
        signals.append(item)
    return {"signals": signals, "unavailable": dict(result.unavailable), "complete": not result.unavailable,
            "source": result.source, "model_fingerprint": card.fingerprint, "model_kind": card.model_kind,
            "data_version": result.data_version,
            "forecast_units": "log return over h bars", "timing_ms": {"featurise": round(result.featurise_s * 1e3, 3),
                                                                      "forward": round(result.forward_s * 1e3, 3)}}


def _looks_like_path(value: str) -> bool:
    """Absolute, home- or dot-relative, Windows, or a file name with a data/model suffix."""
    return (value.startswith(("/", "~", "./", "../", "\\")) or (len(value) > 2 and value[1:3] in (":\\", ":/"))
            or value.lower().endswith(PATH_SUFFIXES))


def redact(tree: Any) -> Any:
    """A config without file-system paths or secrets: named keys and path-like strings become <redacted>."""
    if isinstance(tree, Mapping):
        return {k: (REDACTED if k in SECRET_KEYS and v is not None else redact(v)) for k, v in tree.items()}
    if isinstance(tree, list | tuple):
        return [redact(v) for v in tree]
    if isinstance(tree, str) and _looks_like_path(tree):
        return REDACTED
    return tree


def curriculum_schedule(train: Mapping[str, Any], window: int) -> list[dict[str, Any]]:
    """Epoch ranges and the window length used in each (training/datamodule.py's curriculum rule)."""
    stages = [int(w) for w in train.get("curriculum") or ()]
    per = int(train.get("curriculum_epochs") or 1)
    epochs = int(train.get("epochs") or 1)
    schedule, start = [], 0
    for w in stages:
        if start >= epochs:
            break
        end = min(start + per, epochs)
        schedule.append({"epochs": [start, end - 1], "window": w})
        start = end
    if start < epochs:
        schedule.append({"epochs": [start, epochs - 1], "window": window})
    return schedule
