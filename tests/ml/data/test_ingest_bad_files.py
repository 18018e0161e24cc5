"""Bad source files and busy or seed-style databases: one clear sentence, exit 1 or 2, the database untouched.

Every case goes through the CLI as a user runs it, into a database that already holds clean candles, and
checks the exit code (1: bad data, 2: unreadable), that the message names the file and what is wrong, that
no traceback escapes, and that the database file is byte-identical afterwards.
"""

from __future__ import annotations

import gzip
import io
import sqlite3
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from plus_ultra_ml.cli import app
from plus_ultra_ml.data.store import load_panel

from .sources import digest, stored_database

HEADER = "Date,Open,High,Low,Close,Volume\n"
ROW = "2024-01-{day:02d},10,11,9,10.5,1000\n"
GOOD = HEADER + "".join(ROW.format(day=d) for d in (2, 3, 4))
NOISE = np.random.default_rng(0).bytes(3000)


def _gzip_cut(path: Path) -> None:
    whole = gzip.compress(GOOD.encode() * 50)
    path.write_bytes(whole[: len(whole) // 2])


# name -> (file name, how to write it, expected exit code, words the message must contain)
CASES: dict[str, tuple[str, Callable[[Path], object], int, tuple[str, ...]]] = {
    "zero_bytes": ("x.csv", lambda p: p.write_bytes(b""), 2, ("is empty",)),
    "blank_lines_only": ("x.csv", lambda p: p.write_text("\n\n\n"), 2, ("no header line",)),
    "binary_named_csv": ("x.csv", lambda p: p.write_bytes(NOISE), 2, ("not UTF-8",)),
    "latin1_header": ("x.csv", lambda p: p.write_bytes(b"Date,Op\xe9n,High,Low,Close,Volume\n2024-01-02,1,2,0.5,1.5,9\n"),
                      2, ("0xe9", "line 1", "re-save it as UTF-8")),
    "latin1_in_row_3": ("x.csv", lambda p: p.write_bytes((HEADER + ROW.format(day=2)).encode() + b"2024-01-03,1,2,0.5,1.5,9 \xe9\n"),
                        2, ("line 3",)),
    "random_bytes_gz": ("x.csv.gz", lambda p: p.write_bytes(NOISE), 2, ("not a complete gzip file",)),
    "truncated_gz": ("x.csv.gz", _gzip_cut, 2, ("gzip",)),
    "random_bytes_parquet": ("x.parquet", lambda p: p.write_bytes(NOISE), 2, ("not a readable Parquet file",)),
    "csv_named_parquet": ("x.parquet", lambda p: p.write_text(GOOD), 2, ("Parquet",)),
    "ragged_fields": ("x.csv", lambda p: p.write_text(HEADER + ROW.format(day=2) + "2024-01-03,1,2,3,4,5,6,7\n"),
                      2, ("well-formed CSV", "line 3")),
    "unsupported_suffix": ("x.xlsx", lambda p: p.write_bytes(b"PK\x03\x04"), 2, ("unsupported type",)),
    "naive_beside_offsets": ("x.csv", lambda p: p.write_text(
        HEADER + "2024-01-02T10:00:00,10,11,9,10.5,1\n2024-01-02T11:00:00+00:00,10,11,9,10.5,1\n"),
        1, ("carry a UTC offset", "'row': 1, 'line': 2")),
    "epoch_1e20": ("x.csv", lambda p: p.write_text(
        "timestamp,open,high,low,close,volume\n100000000000000000000,1,2,0.5,1.5,9\n"), 1, ("epoch numbers", "1e20")),
    "unparseable_time": ("x.csv", lambda p: p.write_text(HEADER + "yesterday,10,11,9,10.5,1\n"), 1,
                         ("neither ISO-8601",)),
    "no_close_column": ("x.csv", lambda p: p.write_text("Date,Open,High,Low,Volume\n2024-01-02,1,2,0.5,9\n"), 1,
                        ("no column for ['close']", "--map")),
    "negative_price": ("x.csv", lambda p: p.write_text(HEADER + "2024-01-02,10,11,9,-10.5,1000\n"), 1, ("close",)),
    "high_below_low": ("x.csv", lambda p: p.write_text(HEADER + "2024-01-02,10,8,9,10.5,1000\n"), 1, ("high",)),
    "tab_separated": ("x.csv", lambda p: p.write_text(GOOD.replace(",", "\t")), 1, ("no column for", "--map")),
    "negative_volume": ("x.csv", lambda p: p.write_text(HEADER + "2024-01-02,10,11,9,10.5,-5\n"), 1,
                        ("volume must be >= 0",)),
    "empty_price_cell": ("x.csv", lambda p: p.write_text(HEADER + "2024-01-02,,11,9,10.5,1000\n"), 1,
                         ("column open is empty",)),
    "infinite_price": ("x.csv", lambda p: p.write_text(HEADER + "2024-01-02,10,inf,9,10.5,1000\n"), 1, ("+/-inf",)),
    "text_price": ("x.csv", lambda p: p.write_text(HEADER + "2024-01-02,ten,11,9,10.5,1000\n"), 1,
                   ("column open holds text that is not a number", "line 2: 'ten'")),
    "decimal_comma": ("x.csv", lambda p: p.write_text(HEADER + '2024-01-02,"10,5",11,9,10.5,1000\n'), 1,
                      ("not a number", "'10,5'")),
    "two_close_columns": ("x.csv", lambda p: p.write_text("Date,Open,High,Low,Close,close,Volume\n"
                                                          "2024-01-02,10,11,9,10.5,10.5,1000\n"), 1,
                          ("several source columns map to ['close']",)),
    "duplicate_keys": ("x.csv", lambda p: p.write_text(HEADER + ROW.format(day=2) * 2), 1, ("several rows share (symbol, timestamp)",)),
}



@pytest.fixture
def stored(tmp_path) -> Path:
    """A database that already holds three clean candles of AAA."""
    return stored_database(tmp_path, GOOD)


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_file_is_one_sentence_and_leaves_the_database_untouched(case, tmp_path, stored):
    name, write, code, words = CASES[case]
    source = tmp_path / "in" / name
    source.parent.mkdir()
    write(source)
    before = digest(stored)
    result = CliRunner().invoke(app, ["ingest", str(stored), str(source), "--symbol", "BBB"])
    assert result.exit_code == code, result.output
    assert isinstance(result.exception, SystemExit) and "Traceback" not in result.output
    text = " ".join(result.output.split())  # rich wraps long lines
    assert str(source) in text and "error:" in text
    for word in words:
        assert word in text, (word, text)
    assert digest(stored) == before


def test_a_bad_first_ingest_leaves_no_database_behind(tmp_path):
    source = tmp_path / "x.csv"
    source.write_text(HEADER + "2024-01-02,10,8,9,10.5,1000\n")
    result = CliRunner().invoke(app, ["ingest", str(tmp_path / "new.db"), str(source), "--symbol", "AAA"])
    assert result.exit_code == 1 and not (tmp_path / "new.db").exists()


def test_several_offsets_in_one_file_are_each_converted_to_utc(tmp_path):
    source = tmp_path / "x.csv"
    source.write_text(HEADER + "2024-01-02T10:00:00Z,10,11,9,10.5,1\n2024-01-02T16:00:00+05:00,10,11,9,10.5,1\n"
                      "2024-01-02T07:00:00-05:00,10,11,9,10.5,1\n")
    result = CliRunner().invoke(app, ["ingest", str(tmp_path / "db.db"), str(source), "--symbol", "AAA"])
    assert result.exit_code == 0, result.output
    times = load_panel(tmp_path / "db.db").index.get_level_values("timestamp")
    assert list(times) == [pd.Timestamp("2024-01-02T10:00:00Z"), pd.Timestamp("2024-01-02T11:00:00Z"),
                           pd.Timestamp("2024-01-02T12:00:00Z")]


def test_a_database_held_by_another_writer_waits_then_fails_clearly(tmp_path, stored, caplog):
    source = tmp_path / "more.csv"
    source.write_text(HEADER + ROW.format(day=5))
    holder = sqlite3.connect(stored, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another process is writing
    try:
        before = digest(stored)
        result = CliRunner().invoke(app, ["ingest", str(stored), str(source), "--symbol", "AAA",
                                          "--busy-timeout", "0.3"])
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    text = " ".join(result.output.split())
    assert result.exit_code == 2 and "Traceback" not in text, text
    assert "being written by another process" in text and "--busy-timeout" in text
    assert any("waiting up to 0.3 s" in r.getMessage() for r in caplog.records)  # it said it was waiting
    assert digest(stored) == before
    result = CliRunner().invoke(app, ["ingest", str(stored), str(source), "--symbol", "AAA"])  # released: it works
    assert result.exit_code == 0 and "1 inserted" in " ".join(result.output.split())


def test_seed_style_database_is_refused_with_the_command_that_migrates_it(tmp_path, make_db, candles):
    db = make_db(candles(symbols=("AAA",), n=20, freq="1D"), schema="loose")
    source = tmp_path / "more.csv"
    source.write_text(HEADER + ROW.format(day=2))
    before = digest(db)
    result = CliRunner().invoke(app, ["ingest", str(db), str(source), "--symbol", "ZZZ"])
    text = " ".join(result.output.split())
    assert result.exit_code == 1 and "Traceback" not in text, text
    assert "seed-style database" in text and "series(timestamp, symbol)" in text and "assets(symbol)" in text
    assert f"plus-ultra migrate {db} --write" in text and "--migrate" in text and digest(db) == before
    panel = load_panel(db)
    result = CliRunner().invoke(app, ["migrate", str(db)])  # a dry run lists the steps and writes nothing
    assert result.exit_code == 0 and "to do: series" in result.output and digest(db) == before
    result = CliRunner().invoke(app, ["migrate", str(db), "--write"])
    assert result.exit_code == 0 and "done: series" in result.output, result.output
    pd.testing.assert_frame_equal(load_panel(db), panel)  # the same data, now writable
    result = CliRunner().invoke(app, ["ingest", str(db), str(source), "--symbol", "ZZZ"])
    assert result.exit_code == 0, result.output
    result = CliRunner().invoke(app, ["migrate", str(db)])
    assert result.exit_code == 0 and "nothing to migrate" in " ".join(result.output.split())


def test_ingest_migrate_does_it_in_the_same_transaction(tmp_path, make_db, candles):
    db = make_db(candles(symbols=("AAA",), n=20, freq="1D"), schema="loose")
    source = tmp_path / "more.csv"
    source.write_text(HEADER + ROW.format(day=2))
    result = CliRunner().invoke(app, ["ingest", str(db), str(source), "--symbol", "ZZZ", "--migrate"])
    assert result.exit_code == 0, result.output
    assert set(load_panel(db).index.get_level_values("symbol")) == {"AAA", "ZZZ"}
    result = CliRunner().invoke(app, ["ingest", str(db), str(source), "--symbol", "ZZZ"])  # now as any database
    assert result.exit_code == 0 and "1 unchanged" in " ".join(result.output.split())


def test_migrate_refuses_a_database_that_does_not_validate(tmp_path, make_db, candles):
    frame = candles(symbols=("AAA",), n=20, freq="1D")
    db = make_db(pd.concat([frame, frame.iloc[[3]]]), schema="loose")  # one key twice
    before = digest(db)
    for command in (["migrate", str(db), "--write"], ["ingest", str(db), str(tmp_path / "x.csv"), "--migrate"]):
        (tmp_path / "x.csv").write_text(HEADER + ROW.format(day=2))
        result = CliRunner().invoke(app, [*command, *(["--symbol", "ZZZ"] if command[0] == "ingest" else [])])
        text = " ".join(result.output.split())
        assert result.exit_code == 1 and "Traceback" not in text and "not migrated" in text, text
        assert digest(db) == before


def test_migrate_rewrites_other_iso_notations_as_canonical_text(tmp_path, make_db, candles):
    frame = candles(symbols=("AAA",), n=20, freq="1D")
    frame["timestamp"] = pd.to_datetime(frame["timestamp"]).dt.strftime("%Y-%m-%d %H:%M:%S+00:00")
    db = make_db(frame)  # the contract's keys, another ISO notation
    panel = load_panel(db)
    source = tmp_path / "more.csv"
    source.write_text(HEADER + ROW.format(day=2))
    result = CliRunner().invoke(app, ["ingest", str(db), str(source), "--symbol", "ZZZ"])
    assert result.exit_code == 1 and "rewrite 20 timestamps" in " ".join(result.output.split())
    assert CliRunner().invoke(app, ["migrate", str(db), "--write"]).exit_code == 0
    pd.testing.assert_frame_equal(load_panel(db), panel)
    with sqlite3.connect(db) as connection:
        assert connection.execute("SELECT timestamp FROM series LIMIT 1").fetchone()[0].endswith("Z")
    assert CliRunner().invoke(app, ["ingest", str(db), str(source), "--symbol", "ZZZ"]).exit_code == 0


def test_the_same_candle_with_different_values_in_two_files_is_refused_naming_both(tmp_path, stored):
    (tmp_path / "a.csv").write_text(HEADER + ROW.format(day=8) + ROW.format(day=9))
    (tmp_path / "b.csv").write_text(HEADER + "2024-01-09,10,11,9,10.75,1000\n")
    before = digest(stored)
    result = CliRunner().invoke(app, ["ingest", str(stored), str(tmp_path / "a.csv"), str(tmp_path / "b.csv"),
                                      "--symbol", "AAA"])
    text = " ".join(result.output.split())
    assert result.exit_code == 1 and "Traceback" not in text, text
    assert f"{tmp_path / 'a.csv'} row 2 and {tmp_path / 'b.csv'} row 1 both hold AAA at 2024-01-09" in text
    assert "['close']" in text and digest(stored) == before
    (tmp_path / "b.csv").write_text(HEADER + ROW.format(day=9))  # the same candle twice: fine
    result = CliRunner().invoke(app, ["ingest", str(stored), str(tmp_path / "a.csv"), str(tmp_path / "b.csv"),
                                      "--symbol", "AAA"])
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize("symbol", ["'; DROP TABLE series;--", "A B", "", "X" * 33, 'QUOTE"D'])
def test_a_symbol_with_characters_no_ticker_has_is_refused(tmp_path, stored, symbol):
    source = tmp_path / "long.csv"
    pd.DataFrame({"Date": ["2024-01-02"], "Symbol": [symbol], "Open": [10], "High": [11], "Low": [9], "Close": [10.5],
                  "Volume": [1000]}).to_csv(source, index=False)
    before = digest(stored)
    result = CliRunner().invoke(app, ["ingest", str(stored), str(source)])
    text = " ".join(result.output.split())
    assert result.exit_code == 1 and "Traceback" not in text, text
    assert ("symbol_characters" in text or "symbol" in text.lower()) and digest(stored) == before


@pytest.mark.parametrize("symbol", ["BRK.B", "BRK-B", "^GSPC", "EURUSD=X", "BTC/USDT", "GOOG_bt"])
def test_real_ticker_spellings_are_kept_as_written(tmp_path, symbol):
    source = tmp_path / "long.csv"
    pd.DataFrame({"Date": ["2024-01-02"], "Symbol": [symbol], "Open": [10], "High": [11], "Low": [9], "Close": [10.5],
                  "Volume": [1000]}).to_csv(source, index=False)
    result = CliRunner().invoke(app, ["ingest", str(tmp_path / "db.db"), str(source)])
    assert result.exit_code == 0, result.output
    assert load_panel(tmp_path / "db.db").index.get_level_values("symbol")[0] == symbol


def test_a_file_named_symbol_is_upper_cased_and_says_so(tmp_path, caplog):
    source = tmp_path / "GOOG_bt.csv"
    source.write_text(GOOD)
    result = CliRunner().invoke(app, ["ingest", str(tmp_path / "db.db"), str(source)])
    assert result.exit_code == 0, result.output
    assert load_panel(tmp_path / "db.db").index.get_level_values("symbol")[0] == "GOOG_BT"
    assert any("upper-cased" in r.getMessage() and "--symbol" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize(("column", "flag"), [("Close", "--max-price"), ("Volume", "--max-volume")])
def test_implausible_values_are_refused_unless_the_bound_is_raised(tmp_path, stored, column, flag):
    frame = pd.read_csv(io.StringIO(GOOD)).astype({"Open": float, "High": float, "Low": float, "Close": float,
                                                    "Volume": float})
    frame.loc[1, column] = 1e308
    if column == "Close":
        frame.loc[1, "High"] = 1e308
    source = tmp_path / "spike.csv"
    frame.to_csv(source, index=False)
    before = digest(stored)
    result = CliRunner().invoke(app, ["ingest", str(stored), str(source), "--symbol", "BBB"])
    text = " ".join(result.output.split())
    assert result.exit_code == 1 and "not a plausible market value" in text and "Traceback" not in text, text
    assert flag in text and digest(stored) == before


def test_every_validation_warning_is_printed_during_ingest(tmp_path, caplog):
    frame = pd.read_csv(io.StringIO(GOOD)).astype(float, errors="ignore")
    frame.loc[2, ["Open", "High", "Low", "Close"]] = [30.0, 32.0, 29.0, 31.0]  # a one-bar tripling: the jump warning
    source = tmp_path / "jump.csv"
    frame.to_csv(source, index=False)
    result = CliRunner().invoke(app, ["ingest", str(tmp_path / "db.db"), str(source), "--symbol", "AAA"])
    assert result.exit_code == 0, result.output  # accepted
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any(str(source) in m and "jump" in m for m in warnings), warnings



@pytest.mark.parametrize(("zone", "words"), [("America/New_York", "NonExistentTimeError"),
                                              ("Mars/Phobos", "UnknownTimeZoneError")])
def test_times_that_cannot_be_localised_are_refused(tmp_path, stored, zone, words):
    source = tmp_path / "dst.csv"  # 02:30 on 2024-03-10 does not exist in New York (the clocks jump)
    source.write_text(HEADER + "2024-03-10T02:30:00,10,11,9,10.5,1000\n2024-03-10T03:30:00,10,11,9,10.5,1000\n")
    before = digest(stored)
    result = CliRunner().invoke(app, ["ingest", str(stored), str(source), "--symbol", "BBB", "--timezone", zone])
    text = " ".join(result.output.split())
    assert result.exit_code == 1 and "Traceback" not in text and words in text and "--timezone" in text, text
    assert digest(stored) == before


def test_a_header_without_rows_ingests_nothing_and_says_so(tmp_path, stored):
    source = tmp_path / "header.csv"
    source.write_text(HEADER)
    before = digest(stored)
    result = CliRunner().invoke(app, ["ingest", str(stored), str(source), "--symbol", "BBB"])
    assert result.exit_code == 0 and "0 inserted" in " ".join(result.output.split()), result.output
    assert digest(stored) == before
