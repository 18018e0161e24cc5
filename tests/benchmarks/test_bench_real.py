"""bench_real's dataset loaders: installed packages' own files, parsed into what ingest takes, no download."""

from __future__ import annotations

import gzip
import sys
from importlib import metadata
from pathlib import Path

import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import bench_real  # noqa: E402

from plus_ultra_ml.data.ingest import ingest_frame  # noqa: E402
from plus_ultra_ml.data.store import load_panel  # noqa: E402
from plus_ultra_ml.errors import PlusUltraError  # noqa: E402


def test_bokeh_panel_has_the_five_stocks_and_each_alone_one():
    panel = bench_real.load_dataset("bokeh_panel")
    assert sorted(panel.frame["symbol"].unique()) == sorted(bench_real.BOKEH_SYMBOLS)
    assert bench_real.load_dataset("bokeh_IBM").frame["symbol"].unique().tolist() == ["IBM"]


def test_arch_indices_ingest_through_the_project_path(tmp_path):
    dataset = bench_real.load_dataset("nasdaq")
    db = bench_real.ingest(dataset, tmp_path)
    assert load_panel(db).index.get_level_values("symbol").unique().tolist() == ["NDX"]


def test_wide_close_csv_becomes_a_close_only_panel(tmp_path):
    wide = pd.DataFrame({"Date": ["2020-01-02", "2020-01-03", "2020-01-06"],
                         "AAA": [10.0, 10.5, 10.2], "BBB": [20.0, None, 21.0]})
    path = tmp_path / "sp500_dataset.csv.gz"
    path.write_bytes(gzip.compress(wide.to_csv(index=False).encode()))
    long = bench_real.read_wide_closes(path)
    assert sorted(long.columns) == ["close", "symbol", "timestamp"] and len(long) == 5  # BBB's missing close dropped
    dataset = bench_real.Dataset("wide", long, bench_real.IngestOptions(close_only=True), "test")
    ingest_frame(tmp_path / "wide.db", dataset.frame, dataset.options)
    panel = load_panel(tmp_path / "wide.db")
    assert (panel["high"] == panel["close"]).all() and (panel["low"] == panel["close"]).all()


def test_skfolio_csv_is_found_in_the_distribution_or_its_absence_named():
    try:
        metadata.distribution("skfolio")
    except metadata.PackageNotFoundError:
        with pytest.raises(PlusUltraError, match="skfolio is not installed"):
            bench_real.skfolio_csv()
        return
    dataset = bench_real.load_dataset("skfolio_sp500")
    assert dataset.frame["symbol"].nunique() == 20 and dataset.options.close_only


def test_unknown_dataset_names_the_choices():
    with pytest.raises(PlusUltraError, match="sp500"):
        bench_real.load_dataset("nope")


def test_summary_line_reads_the_reports_own_table():
    rows = [("overall", "model", "sharpe", 0.5), ("overall", "buy_and_hold", "sharpe", 0.7),
            ("strategy_ic", "model", "pooled_ic", 0.06), ("paired", "lightgbm", "pooled_ic_diff", 0.07),
            ("paired", "lightgbm", "pooled_ic_diff_low", -0.05), ("paired", "lightgbm", "pooled_ic_diff_high", 0.17)]
    table = pd.DataFrame([{"scope": s, "fold": "all", "strategy": k, "metric": m, "value": v} for s, k, m, v in rows])
    line = bench_real.summary_line("x", table)
    assert line.startswith("| x | 0.50 |  |  | 0.70 | 0.0600 |") and "0.0700 [-0.0500, 0.1700]" in line
