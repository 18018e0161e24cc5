"""The trading calendars and annualisation a served model uses: resolved as training resolved them.

A served symbol's calendar comes, in order, from

1. ``assets.exchange`` of the symbol in the database being served,
2. else the training config's ``data.calendar`` (the checkpoint's lineage config),
3. else the calendar recorded in the checkpoint's lineage at training time (``lineage.panel["calendars"]``:
   what build_panel resolved, inferred ones included),
4. else (an older checkpoint with nothing recorded) it is inferred once from the timestamps of the
   training span in the database, with a log line (`data.calendar.infer_calendar`).

Never from the request window: a bounded read of the newest bars (or bars a client sent) is too short
to tell a holiday from a gap. Gaps and forward-fill in served history are computed against these
calendars' sessions (serving/history.py), and the volatility features are annualised with their bars
per year at the training bar spacing, so the served features keep the training fingerprint.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from plus_ultra_ml.config import ExperimentConfig
from plus_ultra_ml.data.calendar import (TradingCalendar, bar_spacing, common_periods_per_year, resolve_calendars,
                                         times_by_symbol)
from plus_ultra_ml.lineage import LineageRecord

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServedCalendars:
    """Each universe symbol's calendar name, and the bars per year the features are annualised with."""

    names: Mapping[str, str]  # symbol -> calendar name (every symbol resolved; empty: nothing known, no database)
    spacing: pd.Timedelta | None  # the training bar spacing
    periods_per_year: float | None  # None: not known here (computed from the bars served, logged)


def _exchanges(db_path: str | Path | None, timeout_s: float) -> dict[str, str]:
    if db_path is None:
        return {}
    from plus_ultra_ml.data.store import connect_readonly, symbol_exchanges

    with connect_readonly(db_path, timeout_s) as connection:
        return symbol_exchanges(connection)


def _training_span(db_path: str | Path, lineage: LineageRecord, symbols: Sequence[str],
                   timeout_s: float) -> dict[str, pd.DatetimeIndex]:
    """Timestamps of the training span of `symbols` (for the last-resort inference)."""
    from plus_ultra_ml.data.store import load_panel

    panel = load_panel(db_path, list(symbols), lineage.panel.get("start"), lineage.panel.get("end"), False, timeout_s)
    by_symbol = times_by_symbol(panel.index.get_level_values("symbol"), panel.index.get_level_values("timestamp"))
    return {s: by_symbol[s] for s in symbols if s in by_symbol}


def resolve_served(lineage: LineageRecord, universe: Sequence[str], db_path: str | Path | None = None,
                   timeout_s: float = 10.0, pinned: float | None = None) -> ServedCalendars:
    """The served universe's calendars (see the module docstring) and the annualisation that follows.

    pinned: features.periods_per_year (from the feature table or the training config) when set.
    """
    from plus_ultra_ml.config import config_from_dict

    cfg: ExperimentConfig = config_from_dict(lineage.config, source="the checkpoint's lineage config")
    record = lineage.panel if isinstance(lineage.panel, Mapping) else {}
    recorded = {str(s): str(n) for s, n in (record.get("calendars") or {}).items() if n}
    exchanges = _exchanges(db_path, timeout_s)
    known = [s for s in universe if exchanges.get(s) or cfg.data.calendar is not None or s in recorded]
    unknown = [s for s in universe if s not in known]
    times = {s: pd.DatetimeIndex([], tz="UTC") for s in known}
    if unknown and db_path is not None:
        times.update(_training_span(db_path, lineage, unknown, timeout_s))
    calendars: dict[str, TradingCalendar] = resolve_calendars(times, exchanges, cfg.data.calendar, recorded) \
        if times else {}
    spacing = _spacing(cfg, record, db_path, universe, timeout_s)
    ppy = pinned
    if ppy is None and calendars and len(calendars) == len(universe) and spacing is not None:
        ppy = common_periods_per_year(calendars, spacing)
    elif ppy is None and record.get("periods_per_year"):
        ppy = float(record["periods_per_year"])
    if ppy is not None and record.get("periods_per_year") and not np.isclose(ppy, record["periods_per_year"]):
        logger.warning("serving annualises with %.2f bars per year, training recorded %.2f (a calendar changed: "
                       "assets.exchange or data.calendar); the feature fingerprint check will refuse the model",
                       ppy, float(record["periods_per_year"]))
    names = {s: c.name for s, c in calendars.items()}
    if names:
        logger.info("serving with trading calendars %s, %s bars per year", sorted(set(names.values())),
                    f"{ppy:,.1f}" if ppy is not None else "unknown")
    return ServedCalendars(names, spacing, ppy)


def _spacing(cfg: ExperimentConfig, record: Mapping, db_path: str | Path | None, universe: Sequence[str],
             timeout_s: float) -> pd.Timedelta | None:
    """The training bar spacing: data.freq, else the one lineage recorded, else the newest bars' step."""
    if cfg.data.freq:
        return pd.Timedelta(cfg.data.freq)
    if record.get("bar_spacing"):
        return pd.Timedelta(record["bar_spacing"])
    if db_path is None:
        return None
    from plus_ultra_ml.serving.history import read_recent

    recent = read_recent(db_path, list(universe), 64, start=cfg.data.start, timeout_s=timeout_s)
    times = recent.panel.index.get_level_values("timestamp")
    return bar_spacing(times) if times.nunique() > 1 else None
