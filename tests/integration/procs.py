"""``zzz run`` as a real process for the worker/deployment tests, and a bounded load driver.

:class:`ZzzProcess` starts ``python -m zzz run ...`` from the repository root,
collects its stderr (the log) on a thread and is always stopped by PID: SIGTERM,
then SIGKILL after a bound, and any worker PID the supervisor logged that is
still alive is killed too. :class:`Load` sends GET requests from a few threads,
each on a new connection (so a refused or reset connection is seen as such),
bounded in count and in time, and records every failure.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

#: Repository root: workers import zzz and tests.integration.worker_app from here.
ROOT = Path(__file__).resolve().parents[2]
#: Longest wait for a log line the test expects.
LOG_TIMEOUT_S = 30.0
#: Longest wait for the process to exit after SIGTERM before SIGKILL.
STOP_TIMEOUT_S = 20.0
#: Socket timeout of one load request.
REQUEST_TIMEOUT_S = 10.0
APP = "tests.integration.worker_app:app"


def child_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ZZZ_", "LISTEN_"))}
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env.update(extra)
    return env


class ZzzProcess:
    """One ``zzz run`` process (supervisor or single server) and its log."""

    def __init__(self, args: Sequence[str], *, env: dict[str, str] | None = None,
                 pass_fds: Sequence[int] = (), argv: Sequence[str] | None = None,
                 cwd: str | Path = ROOT) -> None:
        command = list(argv) if argv is not None else [sys.executable, "-m", "zzz", "run", *args]
        self.process = subprocess.Popen(
            command, cwd=cwd, env=env if env is not None else child_env(),
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            pass_fds=tuple(pass_fds),
        )
        self.lines: list[str] = []
        self._changed = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        for raw in self.process.stderr:
            with self._changed:
                self.lines.append(raw.decode(errors="replace").rstrip("\n"))
                self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    @property
    def log(self) -> str:
        with self._changed:
            return "\n".join(self.lines)

    def matches(self, pattern: str) -> list[re.Match[str]]:
        regex = re.compile(pattern)
        with self._changed:
            return [m for line in self.lines if (m := regex.search(line))]

    def wait_for(self, pattern: str, count: int = 1,
                 timeout: float = LOG_TIMEOUT_S) -> list[re.Match[str]]:
        """Wait until ``pattern`` matched ``count`` log lines; AssertionError with the log."""
        deadline = time.monotonic() + timeout
        while True:
            found = self.matches(pattern)
            if len(found) >= count:
                return found
            remaining = deadline - time.monotonic()
            if remaining <= 0 or (self.process.poll() is not None and not self._reader.is_alive()):
                raise AssertionError(f"{count} x {pattern!r} not logged; log:\n{self.log}")
            with self._changed:
                self._changed.wait(min(remaining, 0.2))

    @property
    def port(self) -> int:
        match = self.wait_for(r"(?:on|serving https?://)\S*?:(\d+)")[0]
        return int(match.group(1))

    def worker_pids(self) -> list[int]:
        return [int(m.group(1)) for m in self.matches(r"worker (\d+) started")]

    def signal(self, signum: int) -> None:
        self.process.send_signal(signum)

    def wait(self, timeout: float = STOP_TIMEOUT_S) -> int:
        return self.process.wait(timeout)

    def stop(self) -> None:
        """SIGTERM, then SIGKILL; also kill logged workers still alive (by PID)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(STOP_TIMEOUT_S)
        for pid in self.worker_pids():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        self._reader.join(STOP_TIMEOUT_S)
        if self.process.stderr is not None:
            self.process.stderr.close()


def get(port: int, path: str = "/", timeout: float = REQUEST_TIMEOUT_S,
        headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path, headers={"Connection": "close", **(headers or {})})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


class UnixHTTPConnection(http.client.HTTPConnection):
    """``http.client`` over a Unix domain socket."""

    def __init__(self, path: str, timeout: float = REQUEST_TIMEOUT_S) -> None:
        super().__init__("localhost", timeout=timeout)
        self.unix_path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self.unix_path)
        self.sock = sock


class Load:
    """GET ``path`` from ``threads`` threads until stopped, ``max_requests`` or ``max_seconds``."""

    def __init__(self, port: int, path: str = "/pid", threads: int = 4,
                 max_requests: int = 5000, max_seconds: float = 60.0) -> None:
        self.port = port
        self.path = path
        self.max_requests = max_requests
        self.deadline = time.monotonic() + max_seconds
        self.ok = 0
        self.failures: list[str] = []
        self.bodies: list[bytes] = []
        self._reserved = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]
        for thread in self._threads:
            thread.start()

    @property
    def sent(self) -> int:
        with self._lock:
            return self.ok + len(self.failures)

    def _run(self) -> None:
        while not self._stop.is_set() and time.monotonic() < self.deadline:
            with self._lock:
                if self._reserved >= self.max_requests:
                    return
                self._reserved += 1
            try:
                status, body = get(self.port, self.path)
            except (OSError, http.client.HTTPException) as exc:
                with self._lock:
                    self.failures.append(f"{type(exc).__name__}: {exc}")
                continue
            with self._lock:
                if status == 200:
                    self.ok += 1
                    self.bodies.append(body)
                else:
                    self.failures.append(f"status {status}")

    def wait_sent(self, count: int, timeout: float = LOG_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout
        while self.sent < count and time.monotonic() < deadline:
            time.sleep(0.02)

    def stop(self) -> dict[str, Any]:
        self._stop.set()
        for thread in self._threads:
            thread.join(REQUEST_TIMEOUT_S * 2)
        return {"ok": self.ok, "failures": self.failures}


#: The app ``ServerProcess`` serves (the integration tests' shared app).
APP_SPEC = "tests.integration.apps:app"
READY_LINE = re.compile(r"serving https?://127\.0\.0\.1:(\d+) \(backend=(\w+), workers=(\d+)\)")
#: Longest wait for the subprocess to print its ready line.
READY_TIMEOUT_S = 15.0


class ServerProcess:
    """``python -m zzz run`` in a subprocess, with stderr collected by a thread."""

    def __init__(self, backend: str, *args: str, app: str = APP_SPEC) -> None:
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "zzz", "run", app, "--port", "0",
             "--backend", backend, *args],
            cwd=ROOT, env=env, stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )
        self.lines: list[str] = []
        self._ready = threading.Event()
        self.port = 0
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line)
            match = READY_LINE.search(line)
            if match and not self._ready.is_set():
                self.port = int(match.group(1))
                self._ready.set()
        self._ready.set()  # EOF: unblock the waiter (port stays 0)

    def wait_ready(self) -> int:
        if not self._ready.wait(READY_TIMEOUT_S) or not self.port:
            self.kill()
            pytest.fail(f"server not ready; stderr:\n{self.stderr}")
        return self.port

    @property
    def stderr(self) -> str:
        return "".join(self.lines)

    def wait_exit(self, timeout: float) -> int:
        code = self.proc.wait(timeout)
        self._reader.join(5)
        return code

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def wait_log(self, text: str, timeout: float = LOG_TIMEOUT_S) -> bool:
        """Whether a stderr line containing ``text`` appears within ``timeout``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(text in line for line in self.lines):
                return True
            time.sleep(0.05)
        return False

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> int:
        """SIGTERM, then the exit code (killed, and the timeout raised, past ``timeout``)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.wait_exit(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise
