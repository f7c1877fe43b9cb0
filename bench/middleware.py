"""Middleware benchmarks: gzip of a 100 KiB JSON response and a 1 MiB static file.

    .venv/bin/python -m bench.middleware [--duration 5] [--rounds 3] [--no-pin]

Contestants, one process at a time (``bench/servers.py`` starts and stops them):

* ``zzz-native`` / ``zzz-eventloop``: ``bench/apps/zzz_mw_app.py`` — ``zzz.compress``
  (gzip only, level 6) and ``zzz.static_files`` (``sendfile``).
* ``uvicorn-starlette``: ``bench/apps/starlette_mw_app.py`` on uvicorn (httptools, uvloop) —
  ``GZipMiddleware`` (level 6 too) and ``StaticFiles``.
* ``nginx`` (static only): ``sendfile on``, one worker process, access log off.

Every answer is checked once before measuring (the gzip body must decompress to the
document, the file must come back byte for byte). Figures are medians over rounds,
written to ``bench/results/mw-<timestamp>.json`` and ``latest-mw.md``.
"""

from __future__ import annotations

import argparse
import datetime
import gzip
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import servers
from bench.apps.mw_payload import JSON_DOC
from bench.bench import RESULT_RE, WRK_GRACE_S, WRK_SCRIPT, WRK_TIMEOUT_S

#: Size of the static file served.
STATIC_SIZE = 1024 * 1024
#: Concurrent connections wrk keeps open.
CONNECTIONS = 16
#: Largest response the smoke check reads.
MAX_CHECK_BYTES = 4 * STATIC_SIZE
#: Socket timeout of the smoke check.
CHECK_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class Scenario:
    name: str
    path: str
    headers: tuple[tuple[str, str], ...]
    check: Callable[[dict[str, str], bytes], bool]
    servers: tuple[str, ...]


def _check_gzip(headers: dict[str, str], body: bytes) -> bool:
    return headers.get("content-encoding") == "gzip" and gzip.decompress(body) == JSON_DOC


def _check_static(expected: bytes) -> Callable[[dict[str, str], bytes], bool]:
    return lambda headers, body: body == expected


def _zzz(backend: str, extra: list[str]) -> Callable[[int, bool], list[str]]:
    def argv(port: int, idle: bool) -> list[str]:
        return [sys.executable, "-m", "zzz", "run", "bench.apps.zzz_mw_app:app",
                "--backend", backend, "--host", servers.HOST, "--port", str(port),
                "--log-level", "warning", "--max-requests-per-connection",
                str(servers.ZZZ_MAX_REQUESTS_PER_CONNECTION), *extra]

    return argv


def _uvicorn(port: int, idle: bool) -> list[str]:
    return [sys.executable, "-m", "uvicorn", "bench.apps.starlette_mw_app:app",
            "--host", servers.HOST, "--port", str(port), "--http", "httptools",
            "--loop", "uvloop", "--workers", "1", "--no-access-log", "--log-level", "warning",
            "--ws", "none"]


def _nginx(workdir: Path, static_dir: Path) -> Callable[[int, bool], list[str]]:
    def argv(port: int, idle: bool) -> list[str]:
        conf = workdir / f"nginx-{port}.conf"
        conf.write_text(f"""
daemon off;
worker_processes 1;
user root;
pid {workdir}/nginx-{port}.pid;
error_log {workdir}/nginx-{port}.err warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    include /etc/nginx/mime.types;
    server {{
        listen {servers.HOST}:{port};
        location = / {{ return 200 "ok"; }}
        location /static/ {{ alias {static_dir}/; }}
    }}
}}
""")
        return ["nginx", "-p", str(workdir), "-e", f"{workdir}/nginx-{port}.err", "-c", str(conf)]

    return argv


def fetch(port: int, path: str, headers: tuple[tuple[str, str], ...]) -> tuple[dict[str, str],
                                                                                bytes]:
    """One request with ``Connection: close``; the head as a dict and the raw body."""
    lines = [f"GET {path} HTTP/1.1", "Host: bench", "Connection: close"]
    lines += [f"{k}: {v}" for k, v in headers]
    with socket.create_connection((servers.HOST, port), timeout=CHECK_TIMEOUT_S) as sock:
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        data = b""
        while len(data) <= MAX_CHECK_BYTES and (piece := sock.recv(65536)):
            data += piece
    head, _, body = data.partition(b"\r\n\r\n")
    fields = {}
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.decode("latin-1").partition(":")
        fields[name.strip().lower()] = value.strip()
    if fields.get("transfer-encoding") == "chunked":
        body = _dechunk(body)
    return fields, body


def _dechunk(data: bytes) -> bytes:
    out = b""
    while True:
        size_line, _, rest = data.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            return out
        out += rest[:size]
        data = rest[size + 2 :]


def run_wrk(pin: servers.Pinning, port: int, sc: Scenario, secs: int) -> dict[str, Any]:
    cmd = [*pin.client, "wrk", "-t", "1", "-c", str(CONNECTIONS), "-d", f"{secs}s",
           "--latency", "--timeout", f"{WRK_TIMEOUT_S}s", "-s", str(WRK_SCRIPT)]
    for name, value in sc.headers:
        cmd += ["-H", f"{name}: {value}"]
    cmd.append(f"http://{servers.HOST}:{port}{sc.path}")
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=secs + WRK_GRACE_S,
                          check=False)
    match = RESULT_RE.search(proc.stdout)
    if proc.returncode != 0 or match is None:
        raise servers.ServerFailed(f"wrk failed: {(proc.stderr or proc.stdout)[-400:]}")
    result: dict[str, Any] = json.loads(match.group(1))
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=int, default=5, help="seconds per measured run")
    parser.add_argument("--rounds", type=int, default=3, help="runs per cell (median)")
    parser.add_argument("--no-pin", action="store_true", help="do not pin with taskset")
    args = parser.parse_args(argv)
    pin = servers.plan_pinning(not args.no_pin, 0, 1)
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%SZ")
    log_dir = servers.RESULTS_DIR / "logs" / stamp
    with tempfile.TemporaryDirectory(prefix="zzz-bench-mw-") as tmp:
        workdir = Path(tmp)
        static_dir = workdir / "static"
        static_dir.mkdir()
        payload = os.urandom(STATIC_SIZE)
        (static_dir / "1mib.bin").write_bytes(payload)
        os.chmod(workdir, 0o755)
        os.environ["BENCH_STATIC_DIR"] = str(static_dir)
        specs = {
            "zzz-native": _zzz("native", ["--worker-threads", str(servers.POOL_THREADS)]),
            "zzz-eventloop": _zzz("eventloop", []),
            "uvicorn-starlette": _uvicorn,
        }
        if shutil.which("nginx"):
            specs["nginx"] = _nginx(workdir, static_dir)
        scenarios = [
            Scenario("gzip 100 KiB JSON", "/json", (("Accept-Encoding", "gzip"),), _check_gzip,
                     ("zzz-native", "zzz-eventloop", "uvicorn-starlette")),
            Scenario("static 1 MiB file", "/static/1mib.bin", (), _check_static(payload),
                     ("zzz-native", "zzz-eventloop", "uvicorn-starlette", "nginx")),
        ]
        cells: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for rnd in range(args.rounds):
            for sc in scenarios:
                for name in sc.servers:
                    if name not in specs:
                        continue
                    spec = servers.ServerSpec(name, specs[name], name)
                    log = log_dir / f"{name}-{sc.path.strip('/').replace('/', '_')}-{rnd}.log"
                    with servers.running(spec, log, pin) as server:
                        head, body = fetch(server.port, sc.path, sc.headers)
                        if not sc.check(head, body):
                            raise servers.ServerFailed(f"{name} answered {sc.path} wrongly")
                        run_wrk(pin, server.port, sc, 1)  # warm-up, not measured
                        result = run_wrk(pin, server.port, sc, args.duration)
                    rps = result["requests"] * 1e6 / result["duration_us"]
                    cells.setdefault((sc.name, name), []).append({**result, "rps": rps})
                    print(f"round {rnd + 1} {sc.name:<20} {name:<18} {rps:10.0f} req/s")
    lines = [f"Middleware benchmarks ({args.rounds} rounds x {args.duration} s, "
             f"{CONNECTIONS} connections, wrk -t1; {pin.description})", "",
             "| scenario | server | req/s (median) | p50 ms | p99 ms | MiB/s |",
             "|---|---|---:|---:|---:|---:|"]
    summary = {}
    for (scenario, name), runs in cells.items():
        rps = statistics.median(r["rps"] for r in runs)
        p50 = statistics.median(r["p50_us"] for r in runs) / 1000
        p99 = statistics.median(r["p99_us"] for r in runs) / 1000
        mibs = statistics.median(r["bytes"] / r["duration_us"] for r in runs) * 1e6 / 2**20
        summary[f"{scenario} / {name}"] = {"rps": rps, "p50_ms": p50, "p99_ms": p99}
        lines.append(f"| {scenario} | {name} | {rps:,.0f} | {p50:.2f} | {p99:.2f} | "
                     f"{mibs:,.0f} |")
    doc = {"stamp": stamp, "pinning": pin.description, "cells": {
        f"{s} / {n}": runs for (s, n), runs in cells.items()}, "summary": summary}
    servers.write_results(servers.RESULTS_DIR, f"mw-{stamp}", doc, "latest-mw.md",
                          "\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
