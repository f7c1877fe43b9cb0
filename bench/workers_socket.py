"""Shared listening socket vs SO_REUSEPORT for zzz worker processes (zzz/supervisor.py).

Two worker processes (``zzz run --fd N``, the supervisor's own worker command) serve
``tests.integration.worker_app:app`` on one port, either

- ``shared``: one socket, inherited by both (what the supervisor does), or
- ``reuseport``: one ``SO_REUSEPORT`` socket per worker on the same port (the kernel
  hashes each new connection to one of them).

For each mode it measures (1) throughput with wrk (one thread, 64 connections, a new
connection per request so accept balancing matters, and keep-alive) and how the CPU
time splits between the two workers, and (2) what one worker's exit costs: a client
opens new connections as fast as it can while worker 1 gets SIGTERM and drains; every
connection that is reset or refused is counted. Run:

    PYTHONPATH=. python bench/workers_socket.py [--backend native] [--seconds 5]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
APP = "tests.integration.worker_app:app"
#: wrk connections: enough to keep two workers' accept queues busy.
WRK_CONNECTIONS = 64
#: Client threads of the exit test, and its length after the SIGTERM.
EXIT_CLIENTS = 4
EXIT_AFTER_S = 2.0
CLK_TCK = os.sysconf("SC_CLK_TCK")


def sockets(mode: str) -> tuple[list[socket.socket], int]:
    if mode == "shared":
        sock = socket.create_server(("127.0.0.1", 0), backlog=1024)
        return [sock, sock], sock.getsockname()[1]
    first = socket.socket()
    first.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    first.bind(("127.0.0.1", 0))
    first.listen(1024)
    port = first.getsockname()[1]
    second = socket.socket()
    second.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    second.bind(("127.0.0.1", port))
    second.listen(1024)
    return [first, second], port


def start(mode: str, backend: str) -> tuple[list[subprocess.Popen[bytes]], list[socket.socket], int]:
    socks, port = sockets(mode)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    procs = []
    for sock in socks:
        fd = sock.fileno()
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "zzz", "run", APP, "--backend", backend, "--fd", str(fd),
             "--log-level", "warning", "--max-requests-per-connection", "1000000"],
            env=env, pass_fds=(fd,), cwd=ROOT, stderr=subprocess.DEVNULL))
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            time.sleep(0.1)
    time.sleep(1.0)  # both workers imported and accepting
    return procs, socks, port


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def wrk(port: int, seconds: int, close: bool) -> float:
    args = ["wrk", "-t1", f"-c{WRK_CONNECTIONS}", f"-d{seconds}s", f"http://127.0.0.1:{port}/"]
    if close:
        args[1:1] = ["-H", "Connection: close"]
    out = subprocess.run(args, capture_output=True, text=True, check=True).stdout
    match = re.search(r"Requests/sec:\s+([\d.]+)", out)
    return float(match.group(1)) if match else 0.0


def exit_cost(port: int, victim: subprocess.Popen[bytes]) -> dict[str, int]:
    stop = threading.Event()
    counts = {"ok": 0, "failed": 0}
    lock = threading.Lock()

    def client() -> None:
        while not stop.is_set():
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            try:
                conn.request("GET", "/", headers={"Connection": "close"})
                ok = conn.getresponse().status == 200
            except (OSError, http.client.HTTPException):
                ok = False
            finally:
                conn.close()
            with lock:
                counts["ok" if ok else "failed"] += 1

    threads = [threading.Thread(target=client) for _ in range(EXIT_CLIENTS)]
    for thread in threads:
        thread.start()
    time.sleep(0.5)
    victim.send_signal(signal.SIGTERM)
    time.sleep(EXIT_AFTER_S)
    stop.set()
    for thread in threads:
        thread.join(10)
    return counts


def run(mode: str, backend: str, seconds: int) -> dict[str, object]:
    procs, socks, port = start(mode, backend)
    try:
        before = [cpu_seconds(p.pid) for p in procs]
        close_rps = wrk(port, seconds, close=True)
        keep_rps = wrk(port, seconds, close=False)
        used = [cpu_seconds(p.pid) - b for p, b in zip(procs, before, strict=True)]
        # The parent's copies must go, or the exit test measures a socket kept open here.
        for sock in {id(s): s for s in socks}.values():
            sock.close()
        cost = exit_cost(port, procs[0])
        return {"mode": mode, "backend": backend, "rps_new_connection": close_rps,
                "rps_keepalive": keep_rps,
                "cpu_share_worker1": round(used[0] / max(sum(used), 1e-9), 3),
                "exit_test": cost}
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default="native")
    parser.add_argument("--seconds", type=int, default=5)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is needed (make bench installs it)")
    for mode in ("shared", "reuseport"):
        print(json.dumps(run(mode, args.backend, args.seconds)), flush=True)


if __name__ == "__main__":
    main()
