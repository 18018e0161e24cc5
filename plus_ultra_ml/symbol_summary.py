"""Per-symbol tables at universe size: shown whole for a few symbols, summarised for many.

A table with one row per symbol (last bar per symbol, net Sharpe per symbol, latest signal per
symbol) reads well for five symbols and not at all for five hundred. Every place that emits one
(Dagster metadata, the walk-forward report, CLI output) asks `many_symbols(n)`: at or below
`MANY_SYMBOLS` it shows the table as before; above, it shows `summarise(values)` (how many symbols,
how many have a value, min / median / max, the `TOP_K` lowest and highest names) and writes the
whole table to a file (`write_symbol_table`) whose path it names.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from plus_ultra_ml.artifacts import atomic_path

MANY_SYMBOLS = 20  # above this many symbols a per-symbol table is summarised, and written whole to a file
TOP_K = 5  # names listed at each end of a summarised table


def many_symbols(n: int) -> bool:
    """True when `n` symbols are too many to list one per row."""
    return n > MANY_SYMBOLS


def _plain(value) -> float | str | None:
    """A JSON-ready scalar: timestamps as ISO text, floats rounded to 6 significant digits, NaN/NaT as None."""
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NaT:
        return None
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    if isinstance(value, int | float):
        return float(f"{float(value):.6g}")
    return str(value)


@dataclass(frozen=True)
class SymbolSummary:
    """One per-symbol column in a few numbers: counts, distribution and the names at both ends."""

    what: str  # the column summarised, e.g. "net Sharpe (model)" or "last bar"
    symbols: int  # rows of the table
    defined: int  # symbols with a value (not NaN / NaT)
    minimum: float | str | None
    median: float | str | None
    maximum: float | str | None
    lowest: tuple[tuple[str, float | str | None], ...]  # the k smallest values, smallest first
    highest: tuple[tuple[str, float | str | None], ...]  # the k largest values, largest first

    def to_dict(self) -> dict:
        return {"what": self.what, "symbols": self.symbols, "defined": self.defined, "min": self.minimum,
                "median": self.median, "max": self.maximum, "lowest": dict(self.lowest), "highest": dict(self.highest)}

    def markdown(self) -> str:
        """Two lines: the distribution, then the names at both ends."""
        def names(pairs):
            return ", ".join(f"{s} ({v:.4g})" if isinstance(v, float) else f"{s} ({v})" for s, v in pairs)

        return (f"{self.what}: {self.defined} of {self.symbols} symbols defined; min {self.minimum}, "
                f"median {self.median}, max {self.maximum}\n\n"
                f"lowest {len(self.lowest)}: {names(self.lowest)}; highest {len(self.highest)}: {names(self.highest)}")


def summarise(values: pd.Series, what: str, k: int = TOP_K) -> SymbolSummary:
    """Summarise a symbol-indexed numeric or datetime Series: counts, min / median / max, the k names
    with the lowest and the highest values (ties in symbol order). NaN / NaT count as undefined."""
    defined = values.dropna()
    ordered = defined.sort_index(kind="stable").sort_values(kind="stable")
    pairs = [(str(s), _plain(v)) for s, v in ordered.items()]
    if len(defined):
        low, mid, high = ordered.iloc[0], ordered.quantile(0.5, interpolation="lower"), ordered.iloc[-1]
    else:
        low = mid = high = None
    return SymbolSummary(what=what, symbols=len(values), defined=len(defined), minimum=_plain(low),
                         median=_plain(mid), maximum=_plain(high), lowest=tuple(pairs[:k]),
                         highest=tuple(reversed(pairs[-k:])) if pairs else ())


def write_symbol_table(table: pd.DataFrame, path: str | Path) -> Path:
    """Write a per-symbol table whole (the index as a ``symbol`` column) to parquet or CSV, atomically."""
    path = Path(path)
    frame = table.rename_axis("symbol").reset_index() if table.index.name in (None, "symbol") else table.reset_index()
    with atomic_path(path) as tmp:
        if path.suffix == ".csv":
            frame.to_csv(tmp, index=False)
        else:
            frame.to_parquet(tmp, index=False)
    return path
