"""Build the validated panel a pipeline run starts from: validate, load, fill short gaps, check.

One call does what the `market_panel` asset and the CLI need, in order: the contract is
validated on the database (read-only); if the structure is too broken to load (missing tables or
columns, unreadable types) a `DataContractError` carrying the report is raised; otherwise the
panel is loaded, each symbol's trading calendar is resolved (assets.exchange, else data.calendar,
else inferred; recorded in ``panel.attrs["calendars"]``), gaps against those calendars' open
sessions are forward-filled up to ``data.ffill_limit`` bars, and the result is checked against the
pandera `PanelSchema`. Value errors (a negative price, a broken OHLC bar) do not stop the load: they
are in the report, and the blocking check built on it stops everything downstream.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pandera.errors

from plus_ultra_ml.config import DataConfig
from plus_ultra_ml.data.calendar import CALENDAR_ATTR, TradingCalendar, resolve_calendars, times_by_symbol
from plus_ultra_ml.data.gaps import forward_fill_gaps
from plus_ultra_ml.data.schema import CLOSE_ONLY_ATTR, PanelSchema
from plus_ultra_ml.data.store import (
    connect_readonly,
    data_version,
    load_panel,
    series_summary,
    symbol_close_only,
    symbol_exchanges,
)
from plus_ultra_ml.data.validate import ValidationReport, validate_database
from plus_ultra_ml.errors import DataContractError
from plus_ultra_ml.lineage import database_fingerprint, frame_fingerprint

# rules after which the panel cannot be loaded at all
STRUCTURAL_RULES = {"missing_table", "missing_column", "wrong_type", "empty_table", "unparseable_timestamp",
                    "mixed_timestamp_formats", "duplicate_key"}


@dataclass(frozen=True)
class PanelBuild:
    panel: pd.DataFrame
    report: ValidationReport
    gaps: pd.DataFrame  # one row per irregular gap, with a `filled` flag
    db_path: Path
    db_fingerprint: str
    panel_fingerprint: str
    data_version: str  # the market_db version (per-symbol rows + last bars) the panel was built from
    schema_error: str | None  # pandera's message when the panel breaks PanelSchema

    @property
    def filled_bars(self) -> int:
        return int(self.gaps.loc[self.gaps["filled"], "missing_bars"].sum()) if len(self.gaps) else 0


def check_panel_schema(panel: pd.DataFrame) -> str | None:
    """None if `panel` satisfies PanelSchema, else pandera's explanation."""
    try:
        PanelSchema.validate(panel, lazy=True)
    except (pandera.errors.SchemaErrors, pandera.errors.SchemaError) as error:
        return str(error)[:4000]
    return None


def panel_trading_calendars(db_path: Path, panel: pd.DataFrame, cfg: DataConfig) -> dict[str, TradingCalendar]:
    """Each symbol's calendar, fixed before anything is fitted: assets.exchange, data.calendar, else inferred."""
    with connect_readonly(db_path, cfg.busy_timeout_s) as connection:
        exchanges = symbol_exchanges(connection)
    by_symbol = times_by_symbol(panel.index.get_level_values("symbol"), panel.index.get_level_values("timestamp"))
    return resolve_calendars(by_symbol, exchanges, cfg.calendar)


def build_panel(db_path: str | Path, cfg: DataConfig) -> PanelBuild:
    db_path = Path(db_path).expanduser().resolve()
    version = data_version(series_summary(db_path, cfg.busy_timeout_s)) if db_path.exists() else ""
    report = validate_database(db_path, cfg)
    structural = [i for i in report.errors if i.rule in STRUCTURAL_RULES]
    if structural:
        raise DataContractError(f"cannot build a panel from {db_path}:\n{report.summary()}", report)
    panel = load_panel(db_path, cfg.symbols, cfg.start, cfg.end, cfg.include_indicators, cfg.busy_timeout_s)
    if panel.empty:
        raise DataContractError(
            f"no candles in {db_path} for symbols={cfg.symbols} between {cfg.start} and {cfg.end}; "
            "widen data.symbols / data.start / data.end"
        )
    spacing = pd.Timedelta(cfg.freq) if cfg.freq else None
    calendars = panel_trading_calendars(db_path, panel, cfg)
    panel.attrs[CALENDAR_ATTR] = {symbol: calendar.name for symbol, calendar in calendars.items()}
    with connect_readonly(db_path, cfg.busy_timeout_s) as connection:  # open = high = low = close symbols
        close_only = symbol_close_only(connection)
    panel.attrs[CLOSE_ONLY_ATTR] = {s: close_only[s] for s in calendars if s in close_only}
    panel, gaps = forward_fill_gaps(panel, cfg.ffill_limit, spacing, calendars)
    return PanelBuild(
        panel=panel,
        report=report,
        gaps=gaps,
        db_path=db_path,
        db_fingerprint=database_fingerprint(db_path),
        panel_fingerprint=frame_fingerprint(panel),
        data_version=version,
        schema_error=check_panel_schema(panel),
    )
