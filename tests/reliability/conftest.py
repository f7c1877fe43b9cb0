"""Fixtures and probes of the reliability suite (issue 12 §3 and §4).

The suite reuses the integration fixtures (``serve``, ``backend``, ``transport`` and
the TLS test files) by importing them here, so every test runs once per backend and,
unlike the integration suite, over both transports by default: a reliability test
that uses ``transport`` gets ``tcp`` and ``tls``.

The server under test runs in this process (``serve`` starts it in a thread), so
``/proc/self/fd`` counts the server's descriptors *and* the test's own sockets:
:func:`open_fds` is read at quiet moments only (no client socket open), and a leak
shows as a count that does not come back to the baseline taken before the attack.

How hard the attacks hit is set by environment variables, small by default so that
``make test`` stays fast on a loaded 2-core machine:

* ``ZZZ_ATTACKERS``: slow clients open at once in the slow-client test (default 200;
  1,000 is the issue's figure, see :data:`DEFAULT_ATTACKERS`).
* ``ZZZ_STORM_CONNECTS``: connects in the connection-storm burst (default 2,000;
  20,000 is the issue's figure).
"""

from __future__ import annotations

import inspect
import os
import re
import resource
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

# The integration fixtures, shared (never copied): see tests/integration/conftest.py.
from integration.conftest import (  # noqa: F401
    backend,
    interface,
    serve,
    tls_client_context,
    tls_test_files,
    transport,
)

#: Slow clients at once by default: enough to outnumber the native backend's workers
#: 50 to 1, small enough for ``make test`` on 2 shared cores.
DEFAULT_ATTACKERS = 200
#: Connects in the storm burst by default (``ZZZ_STORM_CONNECTS``).
DEFAULT_STORM_CONNECTS = 2000
#: Descriptors the fd probe may differ by once everything is closed: a lazily created
#: executor or event-loop pipe may appear after the baseline.
FD_SLACK = 4
#: ``st`` column of a listening socket in /proc/net/tcp.
TCP_LISTEN = "0A"
#: The native backend's default worker count (Config.worker_threads).
NATIVE_WORKERS = 4
#: Longest wait for the descriptor count to come back to its baseline.
FD_SETTLE_S = 10.0


def env_int(name: str, default: int) -> int:
    """A positive integer from the environment (``default`` when unset)."""
    raw = os.environ.get(name, "")
    if not raw:
        return default
    value = int(raw)
    if value < 1:
        raise ValueError(f"{name} must be >= 1, got {value}")
    return value


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    # Only tests naming ``transport`` themselves: a WebSocket or timer test that uses
    # ``serve`` alone runs over plain TCP (the fixture's default).
    if "transport" in inspect.signature(metafunc.function).parameters:
        metafunc.parametrize("transport", ["tcp", "tls"], indirect=True)


def open_fds(pid: int | str = "self") -> int:
    """Open descriptors of a process; by default this one (the in-process server's
    and the test's)."""
    return len(os.listdir(f"/proc/{pid}/fd"))


def _tcp_inodes(port: int) -> set[str]:
    """Socket inodes of TCP connections (not listeners) whose local port is ``port``."""
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as rows:
                next(rows)
                for row in rows:
                    cols = row.split()
                    local_port = int(cols[1].rsplit(":", 1)[1], 16)
                    if local_port == port and cols[3] != TCP_LISTEN and cols[9] != "0":
                        inodes.add(cols[9])
        except FileNotFoundError:
            continue
    return inodes


def server_conn_fds(port: int, pid: int | str = "self") -> int:
    """Descriptors process ``pid`` (this one by default) holds for accepted connections
    of the server on ``port``: the exact leak probe (0 once every client is gone),
    unlike the total count, which lazily created event loops and pools also move."""
    inodes = _tcp_inodes(port)
    held = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:[") and target[8:-1] in inodes:
            held += 1
    return held


def wait_no_server_conns(port: int, timeout: float = FD_SETTLE_S,
                         pid: int | str = "self") -> int:
    """Wait (bounded) until the server holds no connection fd; return how many it holds."""
    deadline = time.monotonic() + timeout
    held = server_conn_fds(port, pid)
    while held and time.monotonic() < deadline:
        time.sleep(0.05)
        held = server_conn_fds(port, pid)
    return held


def lazy_fd_allowance(backend_name: str, worker_threads: int = NATIVE_WORKERS) -> int:
    """Descriptors a server may open after the baseline without leaking: the native
    backend gives each worker its own asyncio loop (epoll + self-pipe pair) the first
    time that worker runs ``async`` code."""
    return FD_SLACK + (3 * worker_threads if backend_name == "native" else 0)


def rss_bytes() -> int:
    """Resident set size of this process."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def wait_fds_back(baseline: int, slack: int = FD_SLACK, timeout: float = FD_SETTLE_S,
                  pid: int | str = "self") -> int:
    """Wait (bounded) until the fd count is at most ``baseline + slack``; return it."""
    deadline = time.monotonic() + timeout
    count = open_fds(pid)
    while count > baseline + slack and time.monotonic() < deadline:
        time.sleep(0.05)
        count = open_fds(pid)
    return count


def raise_nofile(needed: int) -> tuple[int, int]:
    """Raise RLIMIT_NOFILE so that at least ``needed`` descriptors fit: the soft limit
    up to the hard one, and the hard one too where the process may (root, or
    CAP_SYS_RESOURCE); skip the test when it cannot. Returns the previous limits for
    the caller to restore with ``resource.setrlimit`` (lowering is always allowed)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= needed:
        return soft, hard
    if hard == resource.RLIM_INFINITY or hard >= needed:
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))
        return soft, hard
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, needed))
    except (ValueError, OSError):
        pytest.skip(f"needs {needed} descriptors; RLIMIT_NOFILE hard limit is {hard} "
                    "and this process may not raise it (ZZZ_STORM_CONNECTS lowers the need)")
    return soft, hard


# ---------------------------------------------------------------------- servers in a subprocess

#: The ready line of ``zzz run``, which names the bound port.
READY = re.compile(r"serving https?://127\.0\.0\.1:(\d+)")
#: Longest wait for a server subprocess's ready line.
READY_TIMEOUT_S = 20.0
#: Longest wait for a server subprocess to exit once told to stop (then it is killed).
EXIT_TIMEOUT_S = 15.0
ROOT = Path(__file__).resolve().parents[2]
#: ``python -c`` program: set RLIMIT_NOFILE (soft, hard) from argv[1] (``-`` leaves it;
#: ``max`` raises the soft limit to the hard one), then run ``python -m zzz`` with the rest.
LAUNCHER = (
    "import resource, runpy, sys\n"
    "limit = sys.argv.pop(1)\n"
    "soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)\n"
    "if limit == 'max':\n"
    "    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))\n"
    "elif limit != '-':\n"
    "    resource.setrlimit(resource.RLIMIT_NOFILE, (int(limit), int(limit)))\n"
    "sys.argv[0] = 'zzz'\n"
    "runpy.run_module('zzz', run_name='__main__', alter_sys=True)\n"
)


@dataclass
class CliServer:
    """A ``zzz run`` subprocess: its port and every stderr line so far (``text()``)."""

    proc: subprocess.Popen[str]
    port: int
    log: list[str]

    def text(self) -> str:
        return "".join(self.log)

    def stop(self) -> int:
        """SIGTERM (if still running), bounded wait, kill as a last resort; the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(EXIT_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(EXIT_TIMEOUT_S)


def start_cli_server(*args: str, nofile: str = "-") -> CliServer:
    """``zzz run ARGS --port 0`` in a subprocess with RLIMIT_NOFILE set as ``nofile``
    says (see :data:`LAUNCHER`); returns once it is ready. The caller must ``stop()``."""
    proc = subprocess.Popen(
        [sys.executable, "-c", LAUNCHER, nofile, "run", *args, "--port", "0"],
        cwd=ROOT, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    assert proc.stderr is not None
    log: list[str] = []
    port = 0
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline and not port:
        line = proc.stderr.readline()
        if not line:
            break
        log.append(line)
        match = READY.search(line)
        port = int(match.group(1)) if match else 0
    if not port:
        proc.kill()
        proc.wait(EXIT_TIMEOUT_S)
        pytest.fail("the server did not start:\n" + "".join(log))
    stderr = proc.stderr
    threading.Thread(target=lambda: log.extend(stderr), daemon=True).start()
    return CliServer(proc, port, log)
