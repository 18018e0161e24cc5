"""Container health check: asks the service this container runs whether it is up.

The role is the entrypoint's sub-command, read from PID 1's command line (tini -- entrypoint.sh
<role> ...) or from $PLUS_ULTRA_ROLE. serve: GET /health must answer 200 (503 while no model is
loaded); dagster-webserver: GET /server_info; code-server: a TCP connection to the gRPC port;
batch roles (train, predict, ...) are healthy while they run. Exit 0 healthy, 1 not.
"""

import os
import socket
import sys
import urllib.error
import urllib.request
from pathlib import Path

ROLES = ("serve", "dagster-webserver", "dagster-daemon", "code-server")


def role() -> str:
    if os.environ.get("PLUS_ULTRA_ROLE"):
        return os.environ["PLUS_ULTRA_ROLE"]
    try:
        argv = Path("/proc/1/cmdline").read_bytes().split(b"\0")
    except OSError:
        return "unknown"
    words = [a.decode(errors="replace") for a in argv if a]
    for i, word in enumerate(words):
        if word.endswith("entrypoint.sh"):
            return words[i + 1] if i + 1 < len(words) else "serve"
    return "unknown"


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def tcp_ok(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5):
            return True
    except OSError:
        return False


def main() -> int:
    current = role()
    if current == "serve":
        return 0 if http_ok(f"http://127.0.0.1:{os.environ.get('PLUS_ULTRA_PORT', '8000')}/health") else 1
    if current == "dagster-webserver":
        return 0 if http_ok(f"http://127.0.0.1:{os.environ.get('DAGSTER_WEBSERVER_PORT', '3000')}/server_info") else 1
    if current == "code-server":
        return 0 if tcp_ok(int(os.environ.get("DAGSTER_GRPC_PORT", "4000"))) else 1
    return 0  # the daemon and batch commands: alive while the process runs


if __name__ == "__main__":
    sys.exit(main())
