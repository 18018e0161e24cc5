"""Materialisation metadata built from library objects: what the UI shows for frames and reports."""

from __future__ import annotations

import json
from pathlib import Path

import dagster as dg
import pandas as pd

from plus_ultra_ml.symbol_summary import many_symbols, summarise, write_symbol_table

PREVIEW_ROWS = 5


def _column_type(dtype) -> str:
    if isinstance(dtype, pd.CategoricalDtype):
        return "category"
    return str(dtype)


def frame_summary(frame: pd.DataFrame) -> dict[str, dg.MetadataValue | int | str]:
    """Rows, symbols, time range, column schema and a small preview of a (symbol, timestamp) frame."""
    times = frame.index.get_level_values("timestamp")
    symbols = frame.index.get_level_values("symbol")
    preview = frame.head(PREVIEW_ROWS).reset_index()
    preview["timestamp"] = preview["timestamp"].astype(str)
    return {
        "dagster/row_count": dg.MetadataValue.int(len(frame)),
        "symbols": dg.MetadataValue.int(int(symbols.nunique())),
        "columns": dg.MetadataValue.int(frame.shape[1]),
        "start": str(times.min()) if len(frame) else "",
        "end": str(times.max()) if len(frame) else "",
        "preview": dg.MetadataValue.md(preview.to_markdown(index=False, floatfmt=".5g")),
        "dagster/column_schema": dg.TableSchema(
            columns=[dg.TableColumn(str(name), _column_type(dtype)) for name, dtype in frame.dtypes.items()]
        ),
    }


def issues_table(issues) -> dg.MetadataValue:
    """Validation issues as a UI table: severity, where, rule, count, message, first example."""
    records = [
        dg.TableRecord({
            "severity": i.severity,
            "where": i.table + (f".{i.column}" if i.column else ""),
            "rule": i.rule,
            "count": int(i.count),
            "message": i.message,
            "example": json.dumps(i.examples[0], default=str) if i.examples else "",
        })
        for i in issues
    ]
    schema = dg.TableSchema(columns=[
        dg.TableColumn("severity", "string"), dg.TableColumn("where", "string"), dg.TableColumn("rule", "string"),
        dg.TableColumn("count", "int"), dg.TableColumn("message", "string"), dg.TableColumn("example", "string"),
    ])
    return dg.MetadataValue.table(records=records, schema=schema)


def report_table(frame: pd.DataFrame, digits: int = 4) -> dg.MetadataValue:
    """A strategy x metric frame as a UI table (floats rounded, NaN as empty)."""
    table = frame.reset_index().rename(columns={"index": "strategy"})
    records = [dg.TableRecord({str(k): (None if isinstance(v, float) and v != v else
                                        round(float(v), digits) if isinstance(v, float) else str(v))
                               for k, v in row.items()}) for row in table.to_dict("records")]
    schema = dg.TableSchema(columns=[dg.TableColumn(str(c), "float" if c != "strategy" else "string")
                                     for c in table.columns])
    return dg.MetadataValue.table(records=records, schema=schema)


def last_bars_metadata(summary: dict[str, dict[str, int | str]], version: str,
                       root: str | Path) -> dict[str, dg.MetadataValue | int]:
    """What market_db's observations say about each symbol's rows and last bar (`data.store.series_summary`).

    Up to `MANY_SYMBOLS` symbols: every last bar, by name. Above: counts, the earliest / median /
    latest last bar with the stalest and freshest names, rows per symbol likewise, and the whole
    table as parquet under `<root>/metadata/market_db/last_bars_<data version>.parquet` (one file per
    data version, so it never changes once written), its path in the metadata.
    """
    if not many_symbols(len(summary)):
        return {"last_bar_per_symbol": dg.MetadataValue.json({k: v["last"] for k, v in summary.items()})}
    from plus_ultra_ml.data.rules import parse_timestamp_column

    table = pd.DataFrame.from_dict(summary, orient="index").rename_axis("symbol")
    raw = table["last"].reset_index(drop=True)
    last, _ = parse_timestamp_column(raw, "series", pd.Series(range(len(raw))))  # the contract's one parser
    last = pd.Series(last.to_numpy(), index=table.index)
    path = Path(root) / "metadata" / "market_db" / f"last_bars_{version}.parquet"
    if not path.exists():
        write_symbol_table(table.assign(last_utc=last), path)
    behind = int((last < last.max()).sum())
    return {
        "last_bar_summary": dg.MetadataValue.json({**summarise(last, "last bar").to_dict(),
                                                   "symbols_behind_the_latest_bar": behind}),
        "rows_per_symbol_summary": dg.MetadataValue.json(summarise(table["rows"].astype(float), "rows").to_dict()),
        "last_bar_table": dg.MetadataValue.path(str(path)),
    }


def per_symbol_metadata(report, path: str | Path) -> dict[str, dg.MetadataValue]:
    """The walk-forward report's per-symbol table (`Report.per_symbol`, written whole at `path`): its
    path, and above `MANY_SYMBOLS` symbols the summary per strategy (min / median / max net Sharpe,
    the lowest and highest names); up to that, the table itself."""
    from plus_ultra_ml.evaluation.report import per_symbol_summary

    if report.per_symbol.empty:
        return {}
    if many_symbols(len(report.per_symbol)):
        shown = per_symbol_summary(report)
    else:
        shown = report.per_symbol.round(4)
    return {"per_symbol": dg.MetadataValue.md(shown.to_markdown(floatfmt=".4g")),
            "per_symbol_table": dg.MetadataValue.path(str(path))}
