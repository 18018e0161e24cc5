"""Helpers of the ingest tests: a database already holding candles, and the digest that proves it untouched."""

from __future__ import annotations

import hashlib
from pathlib import Path

from plus_ultra_ml.data.ingest import IngestOptions, ingest_files


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def stored_database(folder: Path, csv_text: str, symbol: str = "AAA") -> Path:
    """`folder`/market.db holding the candles of `csv_text` as `symbol`."""
    (folder / "good.csv").write_text(csv_text)
    db = folder / "market.db"
    ingest_files(db, [folder / "good.csv"], IngestOptions(symbol=symbol))
    return db
