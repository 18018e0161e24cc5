"""docker/: every entrypoint sub-command runs its command (outside Docker), the health check, and the
compose file, instance config, Dockerfiles and Helm values hold together (Docker cannot run here)."""

from __future__ import annotations

import http.server
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[3]
DOCKER = ROOT / "docker"
BIN = Path(sys.executable).parent
ENTRYPOINT = DOCKER / "entrypoint.sh"

# role -> text its real command's --help prints (proves the entrypoint ran the right program)
ROLES = {
    "serve": "--checkpoint", "predict": "--all-bars", "train": "--pretrain-checkpoint", "pretrain": "--fresh",
    "finetune": "Usage:", "promote": "--rollback", "fixture": "Usage:", "ingest": "--append-only",
    "validate": "--strict", "lineage": "--json", "regimes": "--write",
    "dagster-webserver": "--workspace", "dagster-daemon": "--workspace", "code-server": "--max-workers",
}


def entrypoint(*args: str, env: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    environment = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
                   "PLUS_ULTRA_CONFIG": str(ROOT / "configs" / "smoke.yaml"),
                   "DAGSTER_WORKSPACE": str(DOCKER / "workspace.yaml"), **(env or {})}
    return subprocess.run(["bash", str(ENTRYPOINT), *args], capture_output=True, text=True, env=environment,
                          timeout=timeout, cwd=ROOT)


def test_entrypoint_maps_each_role_to_its_command(tmp_path):
    """With stub programs that echo their arguments: which program, which arguments."""
    for name in ("plus-ultra", "dagster", "dagster-webserver", "dagster-daemon"):
        stub = tmp_path / name
        stub.write_text(f'#!/usr/bin/env bash\necho "{name} $*"\n')
        stub.chmod(0o755)
    env = {"PATH": f"{tmp_path}{os.pathsep}{os.environ['PATH']}", "PLUS_ULTRA_CONFIG": "/cfg.yaml",
           "DAGSTER_WORKSPACE": "/ws.yaml"}
    run = lambda *a: subprocess.run(["bash", str(ENTRYPOINT), *a], capture_output=True, text=True,  # noqa: E731
                                    env={**os.environ, **env}).stdout.strip()
    assert run() == "plus-ultra serve --config /cfg.yaml --host 0.0.0.0 --port 8000"
    assert run("serve", "--checkpoint", "m.pt") == \
        "plus-ultra serve --config /cfg.yaml --host 0.0.0.0 --port 8000 --checkpoint m.pt"
    assert run("serve", "--config", "other.yaml") == "plus-ultra serve --host 0.0.0.0 --port 8000 --config other.yaml"
    assert run("train", "train.epochs=3") == "plus-ultra train --config /cfg.yaml train.epochs=3"
    assert run("predict", "-c", "x.yaml", "--output", "p.parquet") == "plus-ultra predict -c x.yaml --output p.parquet"
    assert run("fixture", "/data/market.db") == "plus-ultra fixture /data/market.db"
    assert run("dagster-webserver") == "dagster-webserver -h 0.0.0.0 -p 3000 -w /ws.yaml"
    assert run("dagster-daemon") == "dagster-daemon run -w /ws.yaml"
    assert run("code-server") == "dagster code-server start -h 0.0.0.0 -p 4000 -m plus_ultra_assets.definitions"
    assert run("echo", "anything") == "anything"
    assert "one image, one sub-command per role" in run("help")


@pytest.mark.parametrize("roles", [list(ROLES)])
def test_every_entrypoint_role_runs_its_real_command(roles):
    """Each role's real program answers --help through the entrypoint (run side by side)."""
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = dict(zip(roles, pool.map(lambda r: entrypoint(r, "--help"), roles), strict=True))
    for role, result in results.items():
        assert result.returncode == 0, f"{role}: {result.stderr[-2000:]}"
        assert ROLES[role] in result.stdout, f"{role}: {result.stdout[:500]}"


def test_entrypoint_roles_are_documented_and_compose_uses_only_them():
    text = ENTRYPOINT.read_text()
    cases = set()
    for pattern in re.findall(r"^\s{2}([a-z|\-]+)\)\s*$", text, flags=re.M):
        cases.update(pattern.split("|"))
    assert set(ROLES) <= cases
    compose = yaml.safe_load((DOCKER / "docker-compose.yml").read_text())
    for name, service in compose["services"].items():
        if "command" in service:
            assert service["command"][0] in cases, name


# --------------------------------------------------------------------------------------------
# the health check
# --------------------------------------------------------------------------------------------
def health(role: str, **env) -> int:
    return subprocess.run([sys.executable, str(DOCKER / "healthcheck.py")], env={**os.environ,
                          "PLUS_ULTRA_ROLE": role, **env}, timeout=30).returncode


def test_healthcheck_asks_the_roles_own_service(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        free = s.getsockname()[1]
    assert health("train") == 0
    assert health("serve", PLUS_ULTRA_PORT=str(free)) == 1  # nothing listening
    (tmp_path / "health").write_text("ok")
    handler = lambda *a, **k: http.server.SimpleHTTPRequestHandler(*a, directory=str(tmp_path), **k)  # noqa: E731
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        port = str(server.server_address[1])
        assert health("serve", PLUS_ULTRA_PORT=port) == 0
        assert health("code-server", DAGSTER_GRPC_PORT=port) == 0
        assert health("dagster-webserver", DAGSTER_WEBSERVER_PORT=port) == 1  # no /server_info there
    finally:
        server.shutdown()


# --------------------------------------------------------------------------------------------
# compose: what `docker compose config` would check (the compose plugin is not installed here)
# --------------------------------------------------------------------------------------------
SERVICE_KEYS = {"image", "build", "command", "entrypoint", "environment", "env_file", "ports", "volumes",
                "depends_on", "healthcheck", "networks", "restart", "group_add", "deploy", "user", "labels",
                "working_dir", "expose", "logging", "secrets", "configs", "ulimits", "shm_size", "stop_signal",
                "stop_grace_period", "profiles", "runtime", "init", "read_only", "tmpfs", "cap_drop"}
VARIABLE = re.compile(r"\$\$|\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:-|:\?|-|\?)(?P<arg>[^}]*))?\}")


def interpolate(value, env: dict):
    """Compose's variable substitution ($$, ${V}, ${V:-default}, ${V:?error}) on a loaded tree."""
    if isinstance(value, dict):
        return {k: interpolate(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env) for v in value]
    if not isinstance(value, str):
        return value

    def one(match: re.Match) -> str:
        if match.group(0) == "$$":
            return "$"
        name, op, arg = match.group("name"), match.group("op"), match.group("arg")
        if env.get(name):
            return env[name]
        if op == ":?":
            raise ValueError(f"required variable {name} is missing a value: {arg}")
        return arg if op in (":-", "-") else ""

    return VARIABLE.sub(one, value)


@pytest.fixture(scope="module")
def compose():
    return yaml.safe_load((DOCKER / "docker-compose.yml").read_text())


def test_compose_services_volumes_networks_and_dependencies_hold_together(compose):
    services = compose["services"]
    assert {"postgres", "code-server", "webserver", "daemon", "inference"} <= set(services)
    declared_volumes, declared_networks = set(compose["volumes"]), set(compose["networks"])
    for name, service in services.items():
        assert set(service) <= SERVICE_KEYS, f"{name}: unknown keys {set(service) - SERVICE_KEYS}"
        for mount in service.get("volumes", []):
            source = mount.split(":")[0]
            assert source.startswith("/") or source in declared_volumes, f"{name}: volume {source} not declared"
        assert set(service.get("networks", [])) <= declared_networks
        for dependency, condition in (service.get("depends_on") or {}).items():
            assert dependency in services and condition["condition"] in ("service_healthy", "service_started")
        for port in service.get("ports", []):
            assert port.startswith("127.0.0.1:"), f"{name} publishes {port} beyond loopback"
    # run containers mount the volumes by their fixed names; the launcher joins the named network
    instance = yaml.safe_load((DOCKER / "dagster.postgres.yaml").read_text())
    launcher = instance["run_launcher"]["config"]
    assert launcher["network"] == compose["networks"]["plus_ultra"]["name"]
    names = {compose["volumes"][v]["name"] for v in ("market_data", "artifacts")}
    assert {m.split(":")[0] for m in launcher["container_kwargs"]["volumes"]} == names
    # every variable the instance config reads is set on the services that load the instance
    for service in ("webserver", "daemon", "code-server"):
        env = services[service]["environment"]
        assert {"DAGSTER_PG_HOST", "DAGSTER_PG_USER", "DAGSTER_PG_PASSWORD", "DAGSTER_PG_DB"} <= set(env)
        assert set(launcher["env_vars"]) <= set(env) | {"DAGSTER_DISABLE_TELEMETRY"}
    workspace = yaml.safe_load((DOCKER / "workspace.yaml").read_text())["load_from"][0]["grpc_server"]
    assert workspace["host"] in services and workspace["port"] == 4000


def test_compose_interpolation_requires_the_api_key(compose):
    with pytest.raises(ValueError, match="PLUS_ULTRA_API_KEY"):
        interpolate(compose, {})
    resolved = interpolate(compose, {"PLUS_ULTRA_API_KEY": "k"})
    inference = resolved["services"]["inference"]
    assert inference["environment"]["PLUS_ULTRA_API_KEY"] == "k"
    assert inference["image"] == "plus-ultra:cpu" and inference["command"] == ["serve"]
    assert resolved["services"]["postgres"]["healthcheck"]["test"][1].startswith("pg_isready -U ${POSTGRES_USER}")
    assert all(":ro" in v for v in inference["volumes"])  # the service never writes the data or the registry


def test_instance_config_validates_against_dagsters_schema(tmp_path, monkeypatch):
    from dagster._core.instance.config import dagster_instance_config

    for key in ("DAGSTER_PG_HOST", "DAGSTER_PG_USER", "DAGSTER_PG_PASSWORD", "DAGSTER_PG_DB"):
        monkeypatch.setenv(key, "x")
    shutil.copy(DOCKER / "dagster.postgres.yaml", tmp_path / "dagster.yaml")
    config, _ = dagster_instance_config(str(tmp_path))
    assert config["run_launcher"]["class"] == "DockerRunLauncher" and "postgres" in config["storage"]
    from plus_ultra_assets.jobs import TRAINING_TAG

    limits = {item["key"]: item["limit"] for item in config["concurrency"]["runs"]["tag_concurrency_limits"]}
    assert limits[TRAINING_TAG] == 1


def test_instance_config_validates_against_the_launcher_and_storage_when_installed(tmp_path, monkeypatch):
    """dagster-docker / dagster-postgres are image-only dependencies; checked when present."""
    docker_lib = pytest.importorskip("dagster_docker")
    postgres_lib = pytest.importorskip("dagster_postgres")
    from dagster._config import process_config

    config = yaml.safe_load((DOCKER / "dagster.postgres.yaml").read_text())
    assert process_config(docker_lib.DockerRunLauncher.config_type(), config["run_launcher"]["config"]).success
    for key in ("DAGSTER_PG_HOST", "DAGSTER_PG_USER", "DAGSTER_PG_PASSWORD", "DAGSTER_PG_DB"):
        monkeypatch.setenv(key, "x")
    assert process_config(postgres_lib.PostgresRunStorage.config_type(), config["storage"]["postgres"]).success


# --------------------------------------------------------------------------------------------
# images and Kubernetes values
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["Dockerfile", "Dockerfile.gpu"])
def test_dockerfiles_run_as_non_root_with_pins_healthcheck_and_numba_warmup(name):
    text = (DOCKER / name).read_text()
    assert re.search(r"^USER plus$", text, flags=re.M)
    assert re.search(r"^HEALTHCHECK .*\n\s+CMD \[\"python\", \"/opt/plus_ultra/docker/healthcheck.py\"\]", text,
                     flags=re.M)
    assert "ARG TORCH_VERSION=2.13.0" in text and '"torch==${TORCH_VERSION}"' in text
    assert "-c requirements.lock" in text and "docker/warm_numba.py" in text  # tests/test_lock.py: the lock
    assert re.search(r'^ENTRYPOINT \[".*tini", "--", "/opt/plus_ultra/docker/entrypoint.sh"\]', text, flags=re.M)
    for source in re.findall(r"^COPY (?:--\S+ )?(.+) \S+$", text, flags=re.M):
        for path in source.split():
            assert (ROOT / path).exists(), f"{name} copies {path}, which does not exist"
    ignore = (DOCKER / f"{name}.dockerignore").read_text()
    assert "!plus_ultra_ml/**" in ignore and ignore.startswith("#")


def test_helm_values_limit_gpus_and_training_runs():
    from plus_ultra_assets.jobs import TRAINING_TAG

    values = yaml.safe_load((DOCKER / "helm" / "values.yaml").read_text())
    deployment = values["dagster-user-deployments"]["deployments"][0]
    assert deployment["dagsterApiGrpcArgs"] == ["-m", "plus_ultra_assets.definitions"]
    run = values["runLauncher"]["config"]["k8sRunLauncher"]["runK8sConfig"]
    assert run["containerConfig"]["resources"]["limits"]["nvidia.com/gpu"] == 1
    limits = values["dagsterDaemon"]["runCoordinator"]["config"]["queuedRunCoordinator"]["tagConcurrencyLimits"]
    assert {"key": TRAINING_TAG, "limit": 1} in limits
    mounts = {m["mountPath"] for m in deployment["volumeMounts"]}
    assert mounts == {"/data", "/var/lib/plus_ultra"}


@pytest.mark.slow
def test_numba_warmup_fills_the_cache_directory(tmp_path):
    """What the image build does (~15-60 s: it compiles every feature kernel)."""
    result = subprocess.run([sys.executable, str(DOCKER / "warm_numba.py")], capture_output=True, text=True,
                            env={**os.environ, "NUMBA_CACHE_DIR": str(tmp_path)}, timeout=900)
    assert result.returncode == 0, result.stderr[-2000:]
    assert any(tmp_path.rglob("*.nbi")) and "features computed" in result.stdout
