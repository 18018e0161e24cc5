"""Load test of the inference service: uvicorn on loopback, concurrent clients, /predict on five symbols.

Usage:
    python benchmarks/bench_serving.py [--presets smoke desktop] [--requests 10000] [--concurrency 1 8]
        [--symbols 5] [--rows 20000] [--workdir DIR] [--checkpoint PRESET=PATH ...]

For each preset:
1. a fixture database with eight symbols (the desktop preset's universe; `--rows` bars each);
2. a checkpoint of the preset's model (architecture, size, window, features, scaler fitted on the
   training segment, lineage with the real feature fingerprint) with weights from a fixed seed:
   latency does not depend on the weights' values (pass --checkpoint smoke=model.pt to use a
   trained one on the same database);
3. `plus-ultra serve` in a subprocess on 127.0.0.1 (one uvicorn worker, `service.threads` torch
   threads), waited for with GET /health;
4. in this process, with the same thread count: the network's bare forward for the same batch (the
   five symbols' latest windows), `Predictor.predict` in process (features cached, the steady state
   between two bars) and a cache miss (a new bar landed: bounded read + features + regime state);
5. for each concurrency C: 200 warm-up requests, then `--requests` POST /predict from C client
   threads (httpx, keep-alive), each timed from send to parsed response; errors counted
   (status != 200 or not five signals);
6. the hostile requests of issue 9 against the live server, with their status codes.

Prints numbers only (no assertion on time). The client threads run on the same machine as the
server; on this 2-core machine shared with other engineers the latencies include that contention
(the load average is printed before and after each run).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
UNIVERSE = ("SPY", "QQQ", "IWM", "EFA", "EEM", "XLK", "XLF", "XLY")
KEY = "bench-key"


def build_market(path: Path, rows: int) -> Path:
    from plus_ultra_ml.config import FixtureConfig
    from plus_ultra_ml.synthetic.fixture import build_fixture

    if not path.exists():
        build_fixture(path, FixtureConfig(symbols=UNIVERSE, rows=rows, alt_features=2, seed=7))
    return path


def preset_config(preset: str, db: Path, workdir: Path) -> tuple[Path, object]:
    import yaml

    from plus_ultra_ml.config import config_from_dict, load_config

    tree = load_config(ROOT / "configs" / f"{preset}.yaml").to_dict()
    tree["data"]["db_path"] = str(db)
    tree["tracking"]["mode"] = "disabled"
    tree["service"]["registry_dir"] = str(workdir / "registry")
    cfg = config_from_dict(tree)
    path = workdir / f"{preset}.yaml"
    path.write_text(yaml.safe_dump(cfg.to_dict()))
    return path, cfg


def build_checkpoint(cfg, db: Path, out: Path) -> Path:
    """A model.pt of the preset's architecture, as training writes it, with seeded (untrained) weights."""
    import torch

    from plus_ultra_ml.checkpoints.supervised import write_checkpoint
    from plus_ultra_ml.data.windows import build_targets, build_windows, split_by_fraction
    from plus_ultra_ml.experiments.dataset import load_training_data
    from plus_ultra_ml.lineage import LineageRecord, code_version, now_utc
    from plus_ultra_ml.models.registry import build_from_config

    data = load_training_data(cfg, db)
    split = split_by_fraction(data.features.index.get_level_values("timestamp"), cfg.windows)
    windowed = build_windows(data.features, build_targets(data.panel, cfg.windows.horizon), split, cfg.windows)
    torch.manual_seed(0)
    net = build_from_config(cfg.model, len(windowed.feature_names), cfg.windows.horizon, windowed.symbols).eval()
    lineage = LineageRecord(
        kind="supervised", created_at=now_utc(), database={"path": str(db), "fingerprint": data.db_fingerprint},
        panel=data.panel_record(), features={"fingerprint": data.feature_fingerprint,
                                             "count": len(windowed.feature_names), "names": windowed.feature_names},
        config=cfg.to_dict(), config_hash=cfg.fingerprint(), code_version=dict(code_version()), seed=0,
        data_cutoff=split.cutoff.isoformat(), split=split.to_dict(), metrics={}, training={"note": "untrained"})
    return write_checkpoint(out, kind="supervised", net=net, feature_names=windowed.feature_names,
                            scaler=windowed.scaler, window=cfg.windows.window, horizon=cfg.windows.horizon,
                            lineage=lineage)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(config: Path, checkpoint: Path, db: Path, port: int, workdir: Path) -> subprocess.Popen:
    script = Path(sys.executable).with_name("plus-ultra")
    command = [str(script)] if script.exists() else [sys.executable, "-c", "from plus_ultra_ml.cli import app; app()"]
    env = {**os.environ, "PLUS_ULTRA_API_KEY": KEY, "PLUS_ULTRA_HOME": str(workdir / "home")}
    log = open(workdir / f"server-{port}.log", "w")
    return subprocess.Popen([*command, "serve", "--config", str(config), "--checkpoint", str(checkpoint), "--db",
                             str(db), "--host", "127.0.0.1", "--port", str(port)],
                            stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)


def wait_healthy(base: str, process: subprocess.Popen, timeout_s: float = 600) -> float:
    import httpx

    started = time.perf_counter()
    while time.perf_counter() - started < timeout_s:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited with code {process.returncode}; see its log")
        try:
            if httpx.get(f"{base}/health", timeout=2).status_code == 200:
                return time.perf_counter() - started
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise RuntimeError("the server did not become healthy in time")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


def load(base: str, symbols: list[str], requests: int, concurrency: int) -> dict:
    """`requests` POST /predict from `concurrency` threads; latency per request in ms."""
    import httpx

    payload = {"symbols": symbols}
    latencies: list[list[float]] = [[] for _ in range(concurrency)]
    errors = [0] * concurrency
    counts = [requests // concurrency + (1 if k < requests % concurrency else 0) for k in range(concurrency)]

    def client(k: int, n: int, record: bool) -> None:
        with httpx.Client(base_url=base, headers={"X-API-Key": KEY}, timeout=60) as session:
            for _ in range(n):
                t0 = time.perf_counter()
                response = session.post("/predict", json=payload)
                ok = response.status_code == 200 and len(response.json()["signals"]) == len(symbols)
                if record:
                    latencies[k].append((time.perf_counter() - t0) * 1e3)
                    errors[k] += 0 if ok else 1

    warm = [threading.Thread(target=client, args=(k, 200 // concurrency, False)) for k in range(concurrency)]
    [t.start() for t in warm]
    [t.join() for t in warm]
    threads = [threading.Thread(target=client, args=(k, counts[k], True)) for k in range(concurrency)]
    started = time.perf_counter()
    [t.start() for t in threads]
    [t.join() for t in threads]
    wall = time.perf_counter() - started
    flat = [x for part in latencies for x in part]
    return {"requests": len(flat), "errors": sum(errors), "wall_s": wall, "throughput": len(flat) / wall,
            "p50": percentile(flat, 50), "p90": percentile(flat, 90), "p99": percentile(flat, 99), "max": max(flat),
            "mean": statistics.fmean(flat)}


def in_process(checkpoint: Path, db: Path, cfg, symbols: list[str], reps: int) -> dict:
    """Bare forward, cached Predictor.predict and a cache miss, in this process, the service's threads."""
    from plus_ultra_ml.serving.predictor import Predictor, run_network
    from plus_ultra_ml.threads import set_torch_threads

    set_torch_threads(cfg.service.threads)
    predictor = Predictor.load(checkpoint, db_path=db, service=cfg.service)
    windows = predictor.featuriser.from_database(symbols)
    ids = predictor.symbol_ids(windows.symbols)

    def timed(fn, n):
        for _ in range(min(3, n)):
            fn()
        samples = []
        for _ in range(n):
            t0 = time.perf_counter()
            fn()
            samples.append((time.perf_counter() - t0) * 1e3)
        return percentile(samples, 50), min(samples)

    forward = timed(lambda: run_network(predictor.model.net, windows.x, ids), reps)
    cached = timed(lambda: predictor.predict(symbols), reps)
    miss = timed(lambda: predictor.featuriser._refresh(), max(3, reps // 20))
    return {"forward_p50": forward[0], "forward_min": forward[1], "predict_p50": cached[0],
            "cache_miss_p50": miss[0], "bars_read_per_symbol": predictor.recipe.budget.bars,
            "batch": tuple(windows.x.shape), "parameters": sum(p.numel() for p in predictor.model.net.parameters())}


def server_means(base: str) -> dict:
    """Mean featurise / forward seconds inside the server (from /metrics), in ms."""
    import httpx

    values = {}
    for line in httpx.get(f"{base}/metrics").text.splitlines():
        for name in ("plus_ultra_featurise_seconds", "plus_ultra_forward_seconds"):
            for suffix in ("_sum", "_count"):
                if line.startswith(name + suffix + " "):
                    values[name + suffix] = float(line.split()[1])
    return {name.split("_")[2]: 1e3 * values[f"{name}_sum"] / max(values[f"{name}_count"], 1)
            for name in ("plus_ultra_featurise_seconds", "plus_ultra_forward_seconds") if f"{name}_sum" in values}


def hostile(base: str) -> list[tuple[str, int]]:
    """Issue 9's hostile requests against the live server: (what, status)."""
    import httpx

    auth = {"X-API-Key": KEY}
    cases = [
        ("POST /reload without a key", lambda c: c.post("/reload")),
        ("POST /reload with a wrong key", lambda c: c.post("/reload", headers={"X-API-Key": "nope"})),
        ("POST /reload {'path': '/etc/passwd'} with the key", lambda c: c.post("/reload", json={"path": "/etc/passwd"},
                                                                             headers=auth)),
        ("POST /reload?path=../model.pt with the key", lambda c: c.post("/reload?path=../model.pt", headers=auth)),
        ("POST /predict symbols ['../../etc/passwd']", lambda c: c.post("/predict", json={"symbols": ["../../etc/passwd"]},
                                                                       headers=auth)),
        ("POST /predict 5 MB body", lambda c: c.post("/predict", content=b'{"symbols": ["' + b"A" * 5_000_000 + b'"]}',
                                                     headers={**auth, "content-type": "application/json"})),
        ("POST /predict 65 symbols", lambda c: c.post("/predict", json={"symbols": [f"S{i}" for i in range(65)]},
                                                      headers=auth)),
        ("POST /predict invalid JSON", lambda c: c.post("/predict", content=b'{"symbols": [',
                                                        headers={**auth, "content-type": "application/json"})),
        ("POST /predict without a key", lambda c: c.post("/predict", json={"symbols": ["SPY"]})),
    ]
    with httpx.Client(base_url=base, timeout=30) as client:
        return [(what, call(client).status_code) for what, call in cases]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--presets", nargs="+", default=["smoke", "desktop"])
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--symbols", type=int, default=5)
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--reps", type=int, default=200, help="in-process repetitions (forward, predict)")
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--checkpoint", nargs="*", default=[], help="PRESET=PATH: serve this checkpoint instead")
    args = parser.parse_args()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="bench_serving_"))
    workdir.mkdir(parents=True, exist_ok=True)
    given = dict(item.split("=", 1) for item in args.checkpoint)
    symbols = list(UNIVERSE[: args.symbols])
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} at start; workdir {workdir}")
    db = build_market(workdir / "market.db", args.rows)
    rows = []
    for preset in args.presets:
        config, cfg = preset_config(preset, db, workdir)
        checkpoint = Path(given[preset]) if preset in given else build_checkpoint(cfg, db, workdir / preset / "model.pt")
        local = in_process(checkpoint, db, cfg, symbols, args.reps if preset == "smoke" else max(args.reps // 10, 10))
        print(f"\n[{preset}] {local['parameters']:,} parameters, batch {local['batch']} (symbols, window, features), "
              f"{local['bars_read_per_symbol']} bars read per symbol on a cache miss")
        print(f"  in process ({cfg.service.threads} torch thread): bare forward p50 {local['forward_p50']:.2f} ms "
              f"(min {local['forward_min']:.2f}); Predictor.predict p50 {local['predict_p50']:.2f} ms (features cached); "
              f"cache miss (new bar) p50 {local['cache_miss_p50']:.1f} ms")
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        server = start_server(config, checkpoint, db, port, workdir)
        try:
            ready = wait_healthy(base, server)
            print(f"  server healthy after {ready:.1f} s (process start, imports, model load, regime state, warm read)")
            for concurrency in args.concurrency:
                before = os.getloadavg()[0]
                result = load(base, symbols, args.requests, concurrency)
                means = server_means(base)
                rows.append({"preset": preset, "concurrency": concurrency, **result, **local,
                             "load_before": before, "load_after": os.getloadavg()[0]})
                print(f"  C={concurrency}: {result['requests']:,} requests, {result['errors']} errors, "
                      f"p50 {result['p50']:.2f} ms, p90 {result['p90']:.2f}, p99 {result['p99']:.2f}, max "
                      f"{result['max']:.1f}; {result['throughput']:.0f} req/s; p50 - bare forward = "
                      f"{result['p50'] - local['forward_p50']:.2f} ms; server means (cumulative): featurise "
                      f"{means.get('featurise', float('nan')):.2f} ms, forward {means.get('forward', float('nan')):.2f} ms; "
                      f"load average {before:.2f} -> {os.getloadavg()[0]:.2f}")
            if preset == args.presets[0]:
                print("  hostile requests against the live server:")
                for what, status in hostile(base):
                    print(f"    {status}  {what}")
        finally:
            server.send_signal(2)
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, 9)
    print("\n| preset | C | requests | errors | p50 ms | p99 ms | req/s | bare forward p50 ms | p50 - forward ms |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['preset']} | {r['concurrency']} | {r['requests']:,} | {r['errors']} | {r['p50']:.2f} | "
              f"{r['p99']:.2f} | {r['throughput']:.0f} | {r['forward_p50']:.2f} | {r['p50'] - r['forward_p50']:.2f} |")
    (workdir / "results.json").write_text(json.dumps(rows, indent=2, default=str))
    if args.workdir is None:
        shutil.rmtree(workdir / "home", ignore_errors=True)


if __name__ == "__main__":
    main()
