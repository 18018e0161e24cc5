"""End to end through the real webserver, daemon and a real browser (integration tier).

One `dagster dev` (webserver + daemon) on loopback over a temporary DAGSTER_HOME and a fixture
database, driven only through GraphQL, the CLI and Chromium:
  1. the production line launched through GraphQL succeeds; metadata and checkpoint lineage check out;
  2. new candles appended with `plus-ultra ingest` make the sensor start exactly one run, whose
     checkpoint lineage names the new database fingerprint; a tick without new data starts nothing;
  3. a backfill of three walk-forward folds (partitions added by the fold sensor) launched through
     GraphQL completes and the report includes them;
  4. headless Chromium shows the asset graph with our asset names (screenshot kept);
  5. SIGINT stops everything and leaves no process behind.
Timings (webserver ready, production line, sensor-to-run latency, backfill) are printed.
"""

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

import pandas as pd
import pytest
import yaml

from plus_ultra_ml.config import load_config
from plus_ultra_ml.synthetic.fixture import build_fixture
from tests.e2e.test_dagster_dev import default_sigint

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
LOCATION = "plus_ultra"
REPO = {"repositoryLocationName": LOCATION, "repositoryName": "__repository__"}
TINY = ["fixture.rows=2600", "fixture.symbols=[AAA, BBB, CCC]", "windows.window=16", "windows.horizon=2",
        "pretrain.epochs=1", "pretrain.limit_train_batches=5", "train.epochs=1", "train.limit_train_batches=10",
        "train.batch_size=32", "rl.updates=2", "rl.n_envs=8", "rl.steps_per_rollout=32",
        "walkforward.test_bars=250", "walkforward.val_bars=200", "walkforward.min_train_bars=600",
        "walkforward.n_folds=3", "automation.retrain_on_new_candles=true", "automation.sensor_interval_s=5",
        "tracking.mode=disabled"]
TIMINGS: dict[str, float] = {}
pytestmark = pytest.mark.integration


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Stack:
    def __init__(self, port: int, process: subprocess.Popen, log: Path, env: dict, db: Path, home: Path):
        self.port, self.process, self.log, self.env, self.db, self.home = port, process, log, env, db, home

    def graphql(self, query: str, variables: dict | None = None) -> dict:
        body = json.dumps({"query": query, "variables": variables or {}}).encode()
        request = urllib.request.Request(f"http://127.0.0.1:{self.port}/graphql", data=body,
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as response:
            payload = json.loads(response.read())
        assert "errors" not in payload, payload
        return payload["data"]

    def wait(self, what: str, predicate, timeout: float, every: float = 2.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process.poll() is None, f"dagster dev exited while waiting for {what}:\n{self.tail()}"
            value = predicate()
            if value:
                return value
            time.sleep(every)
        raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}\n{self.tail()}")

    def tail(self) -> str:
        return self.log.read_text()[-4000:] if self.log.exists() else ""

    def runs(self, tags: dict | None = None) -> list[dict]:
        filt = {"tags": [{"key": k, "value": v} for k, v in (tags or {}).items()]} if tags else {}
        data = self.graphql("query($f: RunsFilter) { runsOrError(filter: $f) { ... on Runs { results { runId status "
                            "jobName tags { key value } } } } }", {"f": filt})
        return data["runsOrError"]["results"]

    def run_status(self, run_id: str) -> str:
        data = self.graphql("query($id: ID!) { runOrError(runId: $id) { ... on Run { status } } }", {"id": run_id})
        return data["runOrError"]["status"]

    def latest_metadata(self, asset: str) -> dict:
        data = self.graphql(
            "query($k: [AssetKeyInput!]) { assetNodes(assetKeys: $k) { assetMaterializations(limit: 1) { runId "
            "metadataEntries { label ... on PathMetadataEntry { path } ... on TextMetadataEntry { text } "
            "... on JsonMetadataEntry { jsonString } ... on FloatMetadataEntry { floatValue } } } } }",
            {"k": [{"path": [asset]}]})
        nodes = data["assetNodes"]
        if not nodes or not nodes[0]["assetMaterializations"]:
            return {}
        entries = nodes[0]["assetMaterializations"][0]["metadataEntries"]
        out = {"runId": nodes[0]["assetMaterializations"][0]["runId"]}
        for entry in entries:
            out[entry["label"]] = entry.get("path") or entry.get("text") or entry.get("jsonString") or entry.get("floatValue")
        return out

    def sensor(self, name: str, action: str) -> None:
        selector = {**REPO, "sensorName": name}
        if action == "stop":
            data = self.graphql("query($s: SensorSelector!) { sensorOrError(sensorSelector: $s) { ... on Sensor { "
                                "sensorState { id selectorId } } } }", {"s": selector})
            state = data["sensorOrError"]["sensorState"]
            self.graphql("mutation($o: String!, $i: String!) { stopSensor(id: $o, jobSelectorId: $i) { __typename } }",
                         {"o": state["id"], "i": state["selectorId"]})
        else:
            self.graphql("mutation($s: SensorSelector!) { startSensor(sensorSelector: $s) { __typename } }",
                         {"s": selector})


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    base = tmp_path_factory.mktemp("e2e")
    cfg = load_config(ROOT / "configs/smoke.yaml", TINY)
    db = base / "market.db"
    build_fixture(db, cfg.fixture)
    config_path = base / "e2e.yaml"
    config_path.write_text(yaml.safe_dump({**cfg.to_dict(), "data": {**cfg.to_dict()["data"], "db_path": str(db)}}))
    dagster_home = base / "dagster_home"
    dagster_home.mkdir()
    shutil.copy(ROOT / "dagster.yaml", dagster_home / "dagster.yaml")
    port = free_port()
    env = {**os.environ, "DAGSTER_HOME": str(dagster_home), "PLUS_ULTRA_HOME": str(base / "artifacts"),
           "PLUS_ULTRA_CONFIG": str(config_path), "PLUS_ULTRA_DB": str(db), "DAGSTER_DISABLE_TELEMETRY": "1",
           "WANDB_MODE": "disabled"}
    log = base / "dagster_dev.log"
    started = time.monotonic()
    process = subprocess.Popen([str(BIN / "dagster"), "dev", "-h", "127.0.0.1", "-p", str(port), "-w", "workspace.yaml"],
                               cwd=ROOT, env=env, start_new_session=True, preexec_fn=default_sigint,
                               stdout=log.open("w"), stderr=subprocess.STDOUT)
    stack = Stack(port, process, log, env, db, base)

    def loaded():
        try:
            entries = stack.graphql("{ workspaceOrError { ... on Workspace { locationEntries { name loadStatus } } } }")
            return {e["name"]: e["loadStatus"] for e in entries["workspaceOrError"]["locationEntries"]}.get(LOCATION) == "LOADED"
        except OSError:
            return False

    stack.wait("the webserver and the code location", loaded, timeout=300)
    TIMINGS["webserver_ready_s"] = time.monotonic() - started
    yield stack
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    print("\ne2e timings:", json.dumps({k: round(v, 1) for k, v in TIMINGS.items()}))


def _launch(stack: Stack, job: str) -> str:
    data = stack.graphql(
        "mutation($p: ExecutionParams!) { launchRun(executionParams: $p) { __typename ... on LaunchRunSuccess { run { "
        "runId } } ... on PythonError { message } ... on RunConfigValidationInvalid { errors { message } } } }",
        {"p": {"selector": {**REPO, "jobName": job}}})
    result = data["launchRun"]
    assert result["__typename"] == "LaunchRunSuccess", result
    return result["run"]["runId"]


def _finished(stack: Stack, run_id: str) -> str | None:
    status = stack.run_status(run_id)
    return status if status in ("SUCCESS", "FAILURE", "CANCELED") else None


def test_production_line_through_graphql(stack):
    stack.sensor("new_candles_sensor", "stop")  # the sensor is tested on its own data version below
    started = time.monotonic()
    run_id = _launch(stack, "production_line")
    assert stack.wait("the production line", lambda: _finished(stack, run_id), timeout=900, every=5) == "SUCCESS", \
        stack.tail()
    TIMINGS["production_line_s"] = time.monotonic() - started
    panel = stack.latest_metadata("market_panel")
    assert float(panel["dagster/row_count"] or 0) > 0 or panel.get("data_fingerprint")
    policy = stack.latest_metadata("ppo_policy")
    checkpoint = Path(policy["path"])
    assert checkpoint.is_file()
    lineage = subprocess.run([str(BIN / "plus-ultra"), "lineage", str(checkpoint), "--json"], env=stack.env,
                             capture_output=True, text=True, check=True)
    chain = json.loads(lineage.stdout)
    text = json.dumps(chain)
    assert "supervised" in text and "pretrain" in text and str(stack.db) in text


def test_new_candles_start_exactly_one_run(stack):
    from plus_ultra_ml.data.store import load_panel

    panel = load_panel(stack.db)
    last = panel.index.get_level_values("timestamp").max()
    new = []
    for symbol in ("AAA", "BBB", "CCC"):
        close = float(panel.loc[(symbol, last), "close"])
        for k in range(1, 4):
            new.append({"timestamp": (last + pd.Timedelta(minutes=15 * k)).strftime("%Y-%m-%dT%H:%M:%SZ"),
                        "symbol": symbol, "open": close, "high": close * 1.001, "low": close * 0.999,
                        "close": close, "volume": 1000.0})
    csv = stack.home / "new.csv"
    pd.DataFrame(new).to_csv(csv, index=False)
    before = {r["runId"] for r in stack.runs()}
    subprocess.run([str(BIN / "plus-ultra"), "ingest", str(stack.db), str(csv), "--append-only"], env=stack.env,
                   check=True, capture_output=True)
    appended = time.monotonic()
    stack.sensor("new_candles_sensor", "start")
    new_runs = stack.wait("the sensor's run", lambda: [r for r in stack.runs() if r["runId"] not in before],
                          timeout=240, every=2)
    TIMINGS["sensor_to_run_s"] = time.monotonic() - appended
    assert len(new_runs) == 1 and new_runs[0]["jobName"] == "production_line"
    run_id = new_runs[0]["runId"]
    assert stack.wait("the sensor's run to finish", lambda: _finished(stack, run_id), timeout=900, every=5) == "SUCCESS"
    policy = stack.latest_metadata("ppo_policy")
    assert policy["runId"] == run_id
    from plus_ultra_ml.checkpoints.chain import read_lineage
    from plus_ultra_ml.lineage import database_fingerprint

    record = read_lineage(Path(policy["path"]))
    assert record.database["fingerprint"] == database_fingerprint(stack.db)
    time.sleep(15)  # at least two more ticks with no new data
    assert {r["runId"] for r in stack.runs()} - before == {run_id}


def test_backfill_three_folds_then_report(stack):
    def partitions():
        data = stack.graphql("{ assetNodeOrError(assetKey: {path: [\"walkforward_fold\"]}) { ... on AssetNode { "
                             "partitionKeys } } }")
        keys = data["assetNodeOrError"]["partitionKeys"]
        return keys if len(keys) >= 3 else None

    keys = stack.wait("the fold sensor to add partitions", partitions, timeout=180)[-3:]
    started = time.monotonic()
    data = stack.graphql(
        "mutation($p: LaunchBackfillParams!) { launchPartitionBackfill(backfillParams: $p) { __typename "
        "... on LaunchBackfillSuccess { backfillId } ... on PythonError { message } } }",
        {"p": {"partitionNames": keys, "assetSelection": [{"path": ["walkforward_fold"]}]}})
    backfill = data["launchPartitionBackfill"]
    assert backfill["__typename"] == "LaunchBackfillSuccess", backfill

    def done():
        state = stack.graphql("query($id: String!) { partitionBackfillOrError(backfillId: $id) { ... on "
                              "PartitionBackfill { status } } }", {"id": backfill["backfillId"]})
        status = state["partitionBackfillOrError"]["status"]
        return status if status in ("COMPLETED", "FAILED", "CANCELED", "COMPLETED_SUCCESS", "COMPLETED_FAILED") else None

    assert stack.wait("the backfill", done, timeout=1200, every=5) in ("COMPLETED", "COMPLETED_SUCCESS"), stack.tail()
    TIMINGS["backfill_3_folds_s"] = time.monotonic() - started
    run_id = _launch(stack, "walkforward_report_job")
    assert stack.wait("the report", lambda: _finished(stack, run_id), timeout=300) == "SUCCESS"
    report = stack.latest_metadata("walkforward_report")
    assert set(json.loads(report["folds"])) >= set(keys)
    assert Path(report["report_html"]).is_file()


def test_browser_shows_the_asset_graph(stack):
    playwright = pytest.importorskip("playwright.sync_api")
    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(chromium).exists():
        pytest.fail("Chromium is not installed: apt-get install chromium chromium-driver (see .ci/run)")
    shots = Path(os.environ.get("E2E_ARTIFACTS_DIR", stack.home))
    shots.mkdir(parents=True, exist_ok=True)
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, headless=True, args=[
            "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
            "--disable-component-update", "--disable-sync"])
        try:
            page = browser.new_page(viewport={"width": 1600, "height": 1000})
            page.goto(f"http://127.0.0.1:{stack.port}/assets", wait_until="networkidle", timeout=120_000)
            for name in ("market_panel", "feature_table", "supervised_checkpoint", "walkforward_report"):
                page.get_by_text(name, exact=True).first.wait_for(timeout=60_000)
            page.screenshot(path=str(shots / "asset_catalog.png"), full_page=True)
            page.goto(f"http://127.0.0.1:{stack.port}/locations/{LOCATION}/asset-groups/market",
                      wait_until="networkidle", timeout=120_000)
            page.get_by_text("regime_labels").first.wait_for(timeout=60_000)
            page.screenshot(path=str(shots / "asset_graph_market.png"), full_page=True)
        finally:
            browser.close()
    assert (shots / "asset_catalog.png").stat().st_size > 10_000
    print(f"\nscreenshots: {shots}/asset_catalog.png, {shots}/asset_graph_market.png")


def test_clean_shutdown_leaves_no_process(stack):
    import psutil

    group = os.getpgid(stack.process.pid)
    started = time.monotonic()
    stack.process.send_signal(signal.SIGINT)
    stack.process.wait(timeout=90)
    TIMINGS["shutdown_s"] = time.monotonic() - started

    def leftovers():
        return [p for p in psutil.process_iter(["pid"]) if _group(p) == group]

    deadline = time.monotonic() + 30
    while leftovers() and time.monotonic() < deadline:
        time.sleep(1)
    assert leftovers() == [], [p.cmdline() for p in leftovers()]


def _group(process) -> int | None:
    try:
        return os.getpgid(process.pid)
    except (ProcessLookupError, PermissionError):
        return None
