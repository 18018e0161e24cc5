"""Every rule of the data contract, each caught on a database broken in exactly that way."""

from __future__ import annotations

import hashlib
import json
import sqlite3

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from plus_ultra_ml.cli import app
from plus_ultra_ml.config import DataConfig
from plus_ultra_ml.data.validate import validate_database
from plus_ultra_ml.errors import DatabaseUnreadableError


def _set(frame: pd.DataFrame, row: int, column: str, value) -> pd.DataFrame:
    frame = frame.copy()
    frame[column] = frame[column].astype(object)
    frame.loc[row, column] = value
    return frame


def _ts(frame, row):
    return frame.loc[row, "timestamp"]


# (case id, how to break a clean frame, write_db options, expected table, column, rule, severity)
CASES = [
    ("null", lambda f: _set(f, 7, "open", None), {"schema": "loose"}, "series", "open", "null", "error"),
    ("inf", lambda f: _set(f, 7, "close", np.inf), {}, "series", "close", "non_finite", "error"),
    ("wrong-type", lambda f: _set(f, 9, "volume", "12k"), {}, "series", "volume", "wrong_type", "error"),
    ("duplicate", lambda f: pd.concat([f, f.iloc[[3]]], ignore_index=True), {"schema": "loose"},
     "series", None, "duplicate_key", "error"),
    ("non-positive", lambda f: _set(f, 11, "low", 0.0), {}, "series", "low", "non_positive_price", "error"),
    ("high<max(o,c)", lambda f: _set(f, 12, "high", f.loc[12, "close"] * 0.99), {}, "series", "high",
     "high_below_open_close", "error"),
    ("low>min(o,c)", lambda f: _set(f, 13, "low", f.loc[13, "open"] * 1.01 + f.loc[13, "close"] * 0.01), {},
     "series", "low", "low_above_open_close", "error"),
    ("high<low", lambda f: _set(_set(f, 14, "high", f.loc[14, "low"] * 0.5), 14, "open", f.loc[14, "low"] * 0.4),
     {}, "series", "high", "high_below_low", "error"),
    ("negative-volume", lambda f: _set(f, 15, "volume", -5.0), {}, "series", "volume", "negative_volume", "error"),
    ("unknown-symbol", lambda f: f, {"assets": ["AAA"]}, "series", "symbol", "unknown_symbol", "error"),
    ("unparseable-time", lambda f: _set(f, 16, "timestamp", "16/01/2024 9am"), {}, "series", "timestamp",
     "unparseable_timestamp", "error"),
    ("mixed-timezones", lambda f: _set(f, 17, "timestamp", _ts(f, 17).replace("Z", "")[:19]), {}, "series",
     "timestamp", "mixed_timezones", "error"),
    ("mixed-formats", lambda f: _set(f, 18, "timestamp", int(pd.Timestamp(_ts(f, 18)).timestamp())), {},
     "series", "timestamp", "mixed_timestamp_formats", "error"),
    ("unsorted", lambda f: pd.concat([f.iloc[[20]], f.drop(index=20)], ignore_index=True), {}, "series",
     "timestamp", "unsorted_time", "warning"),
    ("jump", lambda f: f.assign(**{c: np.where(np.arange(len(f)) % 300 >= 150, f[c] / 7, f[c])
                                   for c in ("open", "high", "low", "close")}), {}, "series", "close",
     "suspicious_jump", "warning"),
    ("off-frequency", lambda f: _set(f, 21, "timestamp", _ts(f, 21)[:14] + "07:00Z"), {}, "series", "timestamp",
     "off_frequency", "warning"),
    ("gap", lambda f: f.drop(index=[30, 31]).reset_index(drop=True), {}, "series", "timestamp", "gap", "warning"),
]


@pytest.mark.parametrize(("breaker", "options", "table", "column", "rule", "severity"),
                         [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_rule_catches_its_breakage(make_db, candles, breaker, options, table, column, rule, severity):
    path = make_db(breaker(candles()), **options)
    before = hashlib.sha256(path.read_bytes()).hexdigest()
    report = validate_database(path)
    found = [i for i in report.issues if i.rule == rule]
    assert found, report.summary()
    issue = found[0]
    assert (issue.table, issue.column, issue.severity) == (table, column, severity)
    assert issue.count >= 1 and issue.message.startswith(f"table {table}")
    assert issue.examples, "the report must show the first offending rows"
    assert report.ok == (severity == "warning" and not report.errors)
    assert hashlib.sha256(path.read_bytes()).hexdigest() == before, "validation must never modify the file"


def test_clean_database_has_no_issues(make_db):
    report = validate_database(make_db())
    assert report.issues == [] and report.ok and report.stats["series_rows"] == 600


def test_missing_table_and_column(tmp_path):
    path = tmp_path / "odd.db"
    with sqlite3.connect(path) as connection:
        connection.execute("CREATE TABLE series (timestamp, symbol, open, high, low, close)")
    report = validate_database(path)
    rules = {(i.table, i.column, i.rule) for i in report.errors}
    assert ("assets", None, "missing_table") in rules
    assert ("series", "volume", "missing_column") in rules


def test_indicator_rules(make_db, candles):
    frame = candles(n=20)
    long = frame[["timestamp", "symbol"]].assign(name="flow", value=1.0)
    long = pd.concat([long, long.iloc[[0]], pd.DataFrame(
        [{"timestamp": "2031-01-01T00:00:00Z", "symbol": "AAA", "name": "flow", "value": float("inf")}])])
    report = validate_database(make_db(frame, schema="loose", indicators=long))
    rules = {(i.table, i.rule) for i in report.issues}
    assert {("indicators", "duplicate_key"), ("indicators", "non_finite"), ("indicators", "no_matching_candle")} <= rules


def test_expected_frequency_from_config(make_db, candles):
    report = validate_database(make_db(candles(freq="1h")), DataConfig(freq="30min"))
    assert not [i for i in report.issues if i.rule == "off_frequency"]
    report = validate_database(make_db(candles(freq="1h"), name="b.db"), DataConfig(freq="45min"))
    assert [i for i in report.issues if i.rule == "off_frequency"]


def test_unreadable_file_raises(tmp_path):
    with pytest.raises(DatabaseUnreadableError):
        validate_database(tmp_path / "missing.db")


# ---------------------------------------------------------------------------------------------
# the command: exit codes 0 / 1 / 2, --json, --strict, no tracebacks
# ---------------------------------------------------------------------------------------------
def test_cli_exit_codes(make_db, candles, tmp_path):
    runner = CliRunner()
    ok = runner.invoke(app, ["validate", str(make_db())])
    assert ok.exit_code == 0, ok.output
    bad = runner.invoke(app, ["validate", str(make_db(_set(candles(), 3, "close", -1.0), name="bad.db")), "--json"])
    assert bad.exit_code == 1
    payload = json.loads(bad.stdout)
    assert payload["valid"] is False and "non_positive_price" in {i["rule"] for i in payload["issues"]}
    warn_path = make_db(candles().drop(index=[40]).reset_index(drop=True), name="warn.db")
    assert runner.invoke(app, ["validate", str(warn_path)]).exit_code == 0
    assert runner.invoke(app, ["validate", str(warn_path), "--strict"]).exit_code == 1
    (tmp_path / "text.db").write_text("not a database")
    for target in (tmp_path / "missing.db", tmp_path, tmp_path / "text.db"):
        result = runner.invoke(app, ["validate", str(target)])
        assert result.exit_code == 2
        assert "Traceback" not in result.output and "error:" in result.output
