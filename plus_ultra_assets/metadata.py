"""Materialisation metadata built from library objects: what the UI shows for frames and reports."""

from __future__ import annotations

import json

import dagster as dg
import pandas as pd

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
