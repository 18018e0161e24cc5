"""`trace`: each link's status (ok / mismatch / missing) and the database's (ok / stale / mismatch)."""

from __future__ import annotations

import json
import sqlite3

import pytest
import torch
from typer.testing import CliRunner

from plus_ultra_ml.artifacts import file_fingerprint
from plus_ultra_ml.cli import app
from plus_ultra_ml.lineage import LineageRecord, now_utc
from plus_ultra_ml.lineage_trace import trace


def record(kind, db, parent=None, end="2024-01-01T04:45:00+00:00"):
    return LineageRecord(kind=kind, created_at=now_utc(), database={"path": str(db), "fingerprint": file_fingerprint(db)},
                         panel={"start": "2024-01-01T00:00:00+00:00", "end": end, "rows": 10}, features={},
                         config={}, config_hash="c" * 64, code_version={"package": "0.1.0"}, seed=0,
                         data_cutoff="2024-01-01T03:00:00+00:00", split={}, parent=parent,
                         run_ids={"dagster_run_id": "r1"})


@pytest.fixture
def chain(tmp_path, make_db, candles):
    db = make_db(candles(n=20, freq="15min"))
    end = "2024-01-01T04:45:00+00:00"
    pre = tmp_path / "pre.pt"
    torch.save({"lineage": record("pretrain", db, end=end).to_dict()}, pre)
    sup = tmp_path / "sup.pt"
    parent = {"path": str(pre), "fingerprint": file_fingerprint(pre), "kind": "pretrain"}
    torch.save({"lineage": record("supervised", db, parent, end=end).to_dict()}, sup)
    return db, pre, sup


def test_intact_chain(chain):
    db, pre, sup = chain
    result = trace(sup, with_extensions=False)
    assert [link.kind for link in result.links] == ["supervised", "pretrain"]
    assert [link.status for link in result.links] == ["ok", "ok"]
    assert result.database.status == "ok" and result.healthy


def test_changed_parent_is_a_mismatch_and_fails_the_command(chain):
    db, pre, sup = chain
    payload = torch.load(pre, weights_only=True)
    payload["lineage"]["seed"] = 1
    torch.save(payload, pre)
    assert [link.status for link in trace(sup, with_extensions=False).links] == ["ok", "mismatch"]
    result = CliRunner().invoke(app, ["lineage", str(sup), "--json"])
    assert result.exit_code == 1 and json.loads(result.stdout)["links"][1]["status"] == "mismatch"


def test_missing_parent(chain):
    db, pre, sup = chain
    pre.unlink()
    assert [link.status for link in trace(sup, with_extensions=False).links] == ["ok", "missing"]


def test_new_candles_make_it_stale_rewritten_history_a_mismatch(chain, tmp_path):
    db, pre, sup = chain
    backup = tmp_path / "backup.db"
    with sqlite3.connect(db) as src, sqlite3.connect(backup) as dst:
        src.backup(dst)
    with sqlite3.connect(db) as connection:
        connection.execute("INSERT INTO series(timestamp, symbol, open, high, low, close, volume) "
                           "VALUES ('2024-01-01T05:00:00Z', 'AAA', 1, 1, 1, 1, 1)")
    check = trace(sup, with_extensions=False).database
    assert check.status == "stale" and check.last_bar_now.startswith("2024-01-01T05:00")
    assert CliRunner().invoke(app, ["lineage", str(sup)]).exit_code == 0  # stale is news, not breakage
    with sqlite3.connect(backup) as src, sqlite3.connect(db) as dst:
        src.backup(dst)
    with sqlite3.connect(db) as connection:
        connection.execute("UPDATE series SET volume = volume + 1 WHERE rowid = 3")
    assert trace(sup, with_extensions=False).database.status == "mismatch"
