"""Fuzzing ingest and validate: mutated CSV, gzip, Parquet and SQLite inputs never raise anything but a
`PlusUltraError` (the CLI's one sentence), a refused ingest leaves the database byte-identical, and an
accepted one leaves a database that `validate` passes.

Inputs start from valid files and go through random mutations (hypothesis): byte flips, inserted and
deleted bytes, truncation, duplicated or swapped lines, and cells replaced by hostile values (NaN, inf,
1e308, empty, text, impossible dates, mixed offsets, quotes, separators, non-ASCII). The default tier
runs a bounded number of cases; the `slow` tier runs many more. `pytest --hypothesis-show-statistics`
prints how many ran.
"""

from __future__ import annotations

import gzip
import io
import shutil
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from plus_ultra_ml.data.ingest import IngestOptions, ingest_files
from plus_ultra_ml.data.validate import validate_database
from plus_ultra_ml.errors import PlusUltraError

from .sources import digest, stored_database

HEADER = "Date,Open,High,Low,Close,Volume\n"
GOOD = HEADER + "".join(f"2024-02-{d:02d},{10 + d / 10:.2f},{11 + d / 10:.2f},{9 + d / 10:.2f},{10.5 + d / 10:.2f},"
                        f"{1000 + d}\n" for d in range(1, 21))
HOSTILE = ["", "nan", "NaN", "inf", "-inf", "1e308", "-1", "0", "abc", "2024-13-45", "2024-02-30",
           "2024-02-01T10:00:00+05:00", "2024-02-01T10:00:00Z", "2024-02-01 10:00", "100000000000000000000",
           "1700000000", '"', '""', ",", ";", "\t", "é", "日本", "\x00", " 12 ", "1,5", "0x10", "True", "None"]
DEFAULT = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
LONG = settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@st.composite
def mutated_csv(draw) -> bytes:
    lines = GOOD.splitlines(keepends=True)
    for _ in range(draw(st.integers(0, 4))):
        kind = draw(st.sampled_from(["cell", "cell", "duplicate", "swap", "drop"]))
        i = draw(st.integers(0, len(lines) - 1))
        if kind == "cell":
            cells = lines[i].rstrip("\n").split(",")
            cells[draw(st.integers(0, len(cells) - 1))] = draw(st.sampled_from(HOSTILE) | st.text(max_size=8))
            lines[i] = ",".join(cells) + "\n"
        elif kind == "duplicate":
            lines.insert(i, lines[i])
        elif kind == "swap":
            j = draw(st.integers(0, len(lines) - 1))
            lines[i], lines[j] = lines[j], lines[i]
        elif len(lines) > 1:
            del lines[i]
    data = bytearray("".join(lines).encode("utf-8", errors="surrogatepass"))
    for _ in range(draw(st.integers(0, 3))):
        kind = draw(st.sampled_from(["flip", "insert", "delete", "truncate"]))
        at = draw(st.integers(0, max(len(data) - 1, 0)))
        if kind == "flip" and data:
            data[at] = draw(st.integers(0, 255))
        elif kind == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=6))
        elif kind == "delete":
            del data[at:at + draw(st.integers(1, 20))]
        else:
            del data[at:]
    return bytes(data)



@pytest.fixture
def stored(tmp_path) -> Path:
    return stored_database(tmp_path, GOOD)


def _ingest_holds_its_promises(db: Path, source: Path) -> None:
    """Only a PlusUltraError escapes; refused: the database unchanged; accepted: it still validates."""
    work = db.with_name(f"work_{db.name}")
    shutil.copyfile(db, work)
    before = digest(work)
    try:
        ingest_files(work, [source], IngestOptions(symbol="BBB"))
    except PlusUltraError:
        assert digest(work) == before
    else:
        assert validate_database(work).ok
    finally:
        work.unlink(missing_ok=True)


def _write(tmp_path: Path, data: bytes, suffix: str) -> Path:
    source = tmp_path / f"fuzz{suffix}"
    if suffix == ".csv.gz":
        data = gzip.compress(data, mtime=0)
    elif suffix == ".parquet":
        try:  # a Parquet file of whatever pandas makes of the mutated text, or the raw bytes themselves
            buffer = io.BytesIO()
            pd.read_csv(io.BytesIO(data), dtype=str).to_parquet(buffer)
            data = buffer.getvalue()
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, ValueError):
            pass  # the mutation broke the CSV: the raw bytes fuzz the Parquet reader instead
    source.write_bytes(data)
    return source


def _run(tmp_path, stored, data, suffix):
    _ingest_holds_its_promises(stored, _write(tmp_path, data, suffix))


@DEFAULT
@given(data=mutated_csv(), suffix=st.sampled_from([".csv", ".csv.gz", ".parquet"]))
def test_mutated_sources_never_escape_as_tracebacks(tmp_path, stored, data, suffix):
    _run(tmp_path, stored, data, suffix)


@DEFAULT
@given(cut=st.integers(0, 20_000), flips=st.lists(st.tuples(st.integers(0, 20_000), st.integers(0, 255)), max_size=4))
def test_mutated_databases_are_validated_or_refused_never_a_traceback(tmp_path, stored, cut, flips):
    data = bytearray(stored.read_bytes())
    for at, value in flips:
        if at < len(data):
            data[at] = value
    db = tmp_path / "mutated.db"
    db.write_bytes(bytes(data[: max(cut, 100)] if cut < len(data) else data))
    try:  # a report (valid or not) or a PlusUltraError; anything else (sqlite3.DatabaseError...) fails here
        validate_database(db)
    except PlusUltraError:
        pass


@pytest.mark.slow
@LONG
@given(data=mutated_csv(), suffix=st.sampled_from([".csv", ".csv.gz", ".parquet"]))
def test_many_mutated_sources_never_escape_as_tracebacks(tmp_path, stored, data, suffix):
    _run(tmp_path, stored, data, suffix)
