"""`dagster dev` (webserver + daemon) starts on loopback over our workspace and answers."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.integration


def default_sigint() -> None:
    """Run in the child before exec: SIGINT back to its default, so `dagster dev` handles Ctrl-C.

    A job started in the background by a non-interactive shell (a CI runner's `cmd &`, nohup) ignores
    SIGINT, and an ignored signal stays ignored across exec: the shutdown tests would then wait forever.
    """
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def graphql(port: int, query: str) -> dict:
    request = urllib.request.Request(f"http://127.0.0.1:{port}/graphql", data=json.dumps({"query": query}).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


@pytest.fixture
def dagster_dev(tmp_path):
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(ROOT / "dagster.yaml", home / "dagster.yaml")
    port = free_port()
    env = {**os.environ, "DAGSTER_HOME": str(home), "DAGSTER_DISABLE_TELEMETRY": "1",
           "PLUS_ULTRA_HOME": str(tmp_path / "artifacts"), "PLUS_ULTRA_DB": str(tmp_path / "missing.db")}
    dagster = Path(sys.executable).with_name("dagster")
    process = subprocess.Popen([str(dagster), "dev", "-h", "127.0.0.1", "-p", str(port), "-w", "workspace.yaml"],
                               cwd=ROOT, env=env, start_new_session=True, preexec_fn=default_sigint,
                               stdout=subprocess.DEVNULL, stderr=(tmp_path / "dev.log").open("w"))
    try:
        yield port, process, tmp_path / "dev.log"
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def test_dagster_dev_starts_and_loads_the_code_location(dagster_dev):
    port, process, log = dagster_dev
    deadline = time.monotonic() + 240
    status = None
    while time.monotonic() < deadline:
        assert process.poll() is None, log.read_text()[-3000:]
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/server_info", timeout=5) as response:
                info = json.loads(response.read())
            entries = graphql(port, "{ workspaceOrError { ... on Workspace { locationEntries { name loadStatus } } } }")
            status = {e["name"]: e["loadStatus"] for e in entries["data"]["workspaceOrError"]["locationEntries"]}
            if status.get("plus_ultra") == "LOADED":
                break
        except OSError:
            pass
        time.sleep(1)
    assert status == {"plus_ultra": "LOADED"}, log.read_text()[-3000:]
    assert "dagster_webserver_version" in info
    nodes = graphql(port, "{ assetNodes { assetKey { path } groupName } }")["data"]["assetNodes"]
    assert {"market_panel", "regime_labels", "market_db"} <= {n["assetKey"]["path"][0] for n in nodes}
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=60) is not None
