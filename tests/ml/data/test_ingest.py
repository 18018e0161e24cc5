"""Ingest real samples and user files: mapping, time zones, adjustment, idempotent upserts, all-or-nothing."""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from plus_ultra_ml.cli import app
from plus_ultra_ml.data.ingest import IngestOptions, ingest_files, ingest_frame
from plus_ultra_ml.data.store import load_panel
from plus_ultra_ml.data.validate import validate_database
from plus_ultra_ml.errors import DataContractError, PlusUltraError


@pytest.fixture(scope="module")
def sp500() -> pd.DataFrame:
    from arch.data import sp500

    return sp500.load()


def bokeh_stock(symbol: str) -> pd.DataFrame:
    from bokeh_sampledata import stocks

    return pd.DataFrame(getattr(stocks, symbol))


def test_arch_samples_ingest_and_validate(tmp_path, sp500):
    from arch.data import nasdaq

    path = tmp_path / "indices.db"
    ingest_frame(path, sp500, IngestOptions(symbol="SPX", adjust_column="Adj Close"))
    ingest_frame(path, nasdaq.load(), IngestOptions(symbol="NDX", adjust_column="Adj Close"))
    report = validate_database(path)
    assert report.ok, report.summary()
    panel = load_panel(path)
    assert sorted(panel.index.get_level_values("symbol").unique()) == ["NDX", "SPX"]
    spx = panel.loc["SPX"]
    assert len(spx) == len(sp500)
    assert spx["close"].to_numpy() == pytest.approx(sp500["Adj Close"].to_numpy(), rel=1e-12)


def test_rerun_changes_nothing_and_append_only_adds_new_candles(tmp_path, sp500):
    path = tmp_path / "spx.db"
    history, latest = sp500.iloc[:-10], sp500.iloc[-10:]
    first = ingest_frame(path, history, IngestOptions(symbol="SPX"))
    assert (first.inserted, first.updated) == (len(history), 0) and first.symbols_added == ("SPX",)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    again = ingest_frame(path, history, IngestOptions(symbol="SPX"))
    assert (again.inserted, again.updated, again.unchanged) == (0, 0, len(history))
    assert hashlib.sha256(path.read_bytes()).hexdigest() == digest
    appended = ingest_frame(path, sp500, IngestOptions(symbol="SPX", append_only=True))
    assert (appended.inserted, appended.skipped_not_newer) == (10, len(history))
    assert len(load_panel(path)) == len(sp500)


def test_split_jumps_warned_raw_and_gone_when_adjusted(tmp_path):
    aapl = bokeh_stock("AAPL")  # raw prices: 2:1 splits on 2000-06-21 and 2005-02-28
    splits = {"2000-06-21T00:00:00+00:00", "2005-02-28T00:00:00+00:00"}
    crash = "2000-09-29T00:00:00+00:00"  # a real one-day fall of about 52%: stays in both

    def jump_days(path):
        return {e["timestamp"] for i in validate_database(path).warnings if i.rule == "suspicious_jump" for e in i.examples}

    raw = tmp_path / "raw.db"
    ingest_frame(raw, aapl, IngestOptions(symbol="AAPL"))
    assert jump_days(raw) == splits | {crash}
    adjusted = tmp_path / "adjusted.db"
    ingest_frame(adjusted, aapl, IngestOptions(symbol="AAPL", adjust_column="adj_close"))
    assert jump_days(adjusted) == {crash}


def test_csv_files_with_yahoo_headers_and_local_time(tmp_path, sp500):
    for name in ("spy", "qqq"):
        frame = sp500.iloc[:50].reset_index()
        frame["Date"] = frame["Date"].dt.strftime("%Y-%m-%d") + " 16:00"
        frame.to_csv(tmp_path / f"{name}.csv", index=False)
    path = tmp_path / "eq.db"
    ingest_files(path, [tmp_path / "spy.csv", tmp_path / "qqq.csv"], IngestOptions(timezone="America/New_York"))
    panel = load_panel(path)
    assert sorted(panel.index.get_level_values("symbol").unique()) == ["QQQ", "SPY"]
    first = panel.index.get_level_values("timestamp").min()
    # Changed by issue 15 (daily timestamp convention, docs/architecture.md): a daily bar is stamped at
    # its session date's 00:00 UTC whatever --timezone says; it was 21:00 UTC (16:00 New York in winter),
    # which moved to 20:00 UTC in summer. Intraday bars are still localised, as checked below.
    assert first == pd.Timestamp("1999-01-04 00:00", tz="UTC")
    assert set(panel.index.get_level_values("timestamp").strftime("%H:%M")) == {"00:00"}


def test_intraday_local_times_are_localised_with_dst(tmp_path, sp500):
    frame = sp500.iloc[:4].reset_index()
    frame["Date"] = ["2024-03-08 15:00", "2024-03-08 16:00", "2024-03-11 15:00", "2024-03-11 16:00"]
    path = tmp_path / "intraday.db"
    ingest_frame(path, frame, IngestOptions(symbol="SPY", timezone="America/New_York"))
    times = load_panel(path).index.get_level_values("timestamp")
    assert list(times.strftime("%d %H:%M")) == ["08 20:00", "08 21:00", "11 19:00", "11 20:00"]  # EST, then EDT


def test_long_parquet_with_symbol_column_and_indicators(tmp_path, candles):
    frame = candles(n=30).rename(columns={"timestamp": "Datetime", "symbol": "Ticker"})
    frame["sentiment"] = np.linspace(-1, 1, len(frame))
    frame.to_parquet(tmp_path / "long.parquet")
    path = tmp_path / "long.db"
    results = ingest_files(path, [tmp_path / "long.parquet"], IngestOptions(indicator_columns=("sentiment",)))
    assert results[0].inserted == len(frame) and results[0].indicator_rows == len(frame)
    panel = load_panel(path)
    assert panel["ind__sentiment"].notna().all()


def test_one_bad_row_rejects_every_file_and_writes_nothing(tmp_path, candles):
    good = candles(symbols=("AAA",), n=20)
    bad = candles(symbols=("BBB",), n=20)
    bad.loc[5, "high"] = bad.loc[5, "low"] / 2
    good.to_csv(tmp_path / "good.csv", index=False)
    bad.to_csv(tmp_path / "bad.csv", index=False)
    path = tmp_path / "db.db"
    with pytest.raises(DataContractError, match="nothing was written") as caught:
        ingest_files(path, [tmp_path / "good.csv", tmp_path / "bad.csv"])
    assert {i.rule for i in caught.value.report.errors} >= {"high_below_open_close"}
    example = caught.value.report.errors[0].examples[0]
    assert example["row"] == 6 and example["line"] == 7  # data row 6 (a fresh database's rowid), line 7 of the CSV
    assert not path.exists()


def test_unmappable_source_names_the_columns(tmp_path):
    frame = pd.DataFrame({"when": ["2024-01-01"], "px": [1.0]})
    with pytest.raises(PlusUltraError, match="--map"):
        ingest_frame(tmp_path / "x.db", frame, IngestOptions(symbol="X"))


def test_cli_ingest(tmp_path, sp500):
    sp500.iloc[:30].to_csv(tmp_path / "spx.csv")
    runner = CliRunner()
    result = runner.invoke(app, ["ingest", str(tmp_path / "db.db"), str(tmp_path / "spx.csv"),
                                 "--adjust-column", "Adj Close"])
    assert result.exit_code == 0, result.output
    assert "30 inserted" in result.output
    result = runner.invoke(app, ["ingest", str(tmp_path / "db.db"), str(tmp_path / "spx.csv"), "--append-only"])
    assert "0 inserted" in result.output and "30 skipped" in result.output
