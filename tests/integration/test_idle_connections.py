"""10,000 idle keep-alive connections held open while a new client is still served.

The server runs in a subprocess (through the real CLI) so that it and this test
each have their own file-descriptor limit.
"""

from __future__ import annotations

import contextlib
import os
import re
import resource
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

#: Idle keep-alive connections the test holds open.
IDLE_CONNECTIONS = 10_000
#: File descriptors the test needs beyond the idle connections.
FD_MARGIN = 200
#: Longest wait for the server's ready line.
READY_TIMEOUT_S = 20.0
#: Longest the fresh client may wait for its answer (generous: CI machines are slow).
FRESH_CLIENT_TIMEOUT_S = 5.0
REQUEST = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
READY = re.compile(r"serving http://127\.0\.0\.1:(\d+)")


def _raise_nofile(needed: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < needed:
        if hard != resource.RLIM_INFINITY and hard < needed:
            pytest.skip(f"RLIMIT_NOFILE hard limit {hard} < {needed}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))


@contextlib.contextmanager
def cli_server(backend: str, *args: str) -> Iterator[tuple[subprocess.Popen[str], int]]:
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    proc = subprocess.Popen(
        [sys.executable, "-m", "zzz", "run", "tests.integration.apps:app",
         "--backend", backend, "--port", "0", "--kernel-backlog", "4096",
         "--keepalive-timeout-ms", "120000", "--drain-timeout-ms", "2000", *args],
        cwd=root, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
    )
    try:
        assert proc.stderr is not None
        deadline = time.monotonic() + READY_TIMEOUT_S
        port = 0
        while time.monotonic() < deadline:
            line = proc.stderr.readline()
            if not line:
                break
            match = READY.search(line)
            if match:
                port = int(match.group(1))
                break
        assert port, "server did not log its ready line"
        yield proc, port
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def _request(sock: socket.socket) -> bytes:
    sock.sendall(REQUEST)
    data = b""
    while True:
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
        if len(data) > 4096 or (b"\r\n\r\n" in data and data.split(b"\r\n\r\n", 1)[1]):
            break
    return data


def test_ten_thousand_idle_keepalive_connections(backend: str) -> None:
    _raise_nofile(IDLE_CONNECTIONS + FD_MARGIN)
    with cli_server(backend) as (proc, port):
        idle: list[socket.socket] = []
        try:
            for _ in range(IDLE_CONNECTIONS):
                sock = socket.create_connection(("127.0.0.1", port), timeout=10)
                idle.append(sock)
                assert _request(sock).startswith(b"HTTP/1.1 200")
            assert proc.poll() is None
            # Every idle connection is parked; a new client is still answered.
            started = time.monotonic()
            with socket.create_connection(("127.0.0.1", port),
                                          timeout=FRESH_CLIENT_TIMEOUT_S) as fresh:
                assert _request(fresh).startswith(b"HTTP/1.1 200")
            elapsed = time.monotonic() - started
            # And the idle ones are still usable (a sample of them).
            for sock in idle[:: IDLE_CONNECTIONS // 20]:
                assert _request(sock).startswith(b"HTTP/1.1 200")
            print(f"{backend}: fresh client answered in {elapsed * 1000:.1f} ms "
                  f"with {IDLE_CONNECTIONS} idle connections")
        finally:
            for sock in idle:
                sock.close()
