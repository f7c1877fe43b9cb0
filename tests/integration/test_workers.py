"""Worker processes under the supervisor (zzz/supervisor.py), through the real CLI.

Each test starts ``python -m zzz run ... --workers N`` on both backends (the
``backend`` fixture), drives it with real connections and signals, and stops it by
PID. Load is bounded in requests and seconds; each request uses a new connection,
so a refused or reset connection counts as a failure.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import stat
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from .procs import APP, Load, UnixHTTPConnection, ZzzProcess, child_env, get

Start = Callable[..., ZzzProcess]


@pytest.fixture
def zzz_run(backend: str) -> Iterator[Start]:
    """Factory: ``zzz_run(*args)`` → a running ``zzz run APP --backend B *args`` process."""
    started: list[ZzzProcess] = []

    def start(*args: str, app: str = APP, **kwargs: Any) -> ZzzProcess:
        proc = ZzzProcess([app, "--backend", backend, "--port", "0",
                           "--drain-timeout-ms", "5000", *args], **kwargs)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.stop()


def ready(proc: ZzzProcess, count: int) -> None:
    proc.wait_for(r"worker \d+ ready", count)


def test_workers_serve_and_drain_on_sigterm(zzz_run: Start) -> None:
    proc = zzz_run("--workers", "2")
    ready(proc, 2)
    port = proc.port
    assert get(port, "/")[0] == 200
    result: dict[str, Any] = {}

    def slow() -> None:
        result["answer"] = get(port, "/slow?ms=1500")

    thread = threading.Thread(target=slow)
    thread.start()
    proc.wait_for(r"worker \d+ ready", 2)
    time.sleep(0.5)  # the slow request is in a worker's handler
    proc.signal(signal.SIGTERM)
    thread.join(15)
    assert result["answer"][0] == 200  # in flight when SIGTERM came: still answered
    assert proc.wait() == 0
    assert len(proc.matches(r"worker \d+ stopped \(exit code 0\)")) == 2
    for pid in proc.worker_pids():
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def test_crashed_worker_is_logged_and_respawned(zzz_run: Start) -> None:
    proc = zzz_run("--workers", "2")
    ready(proc, 2)
    port = proc.port
    with pytest.raises(OSError):
        get(port, "/crash")
    proc.wait_for(r"worker \d+ died \(exit code 3\)")
    proc.wait_for(r"respawning in \d")
    ready(proc, 3)
    assert all(get(port, "/")[0] == 200 for _ in range(10))
    assert proc.process.poll() is None


def test_crash_loop_at_start_up_exits_2(zzz_run: Start) -> None:
    proc = zzz_run("--workers", "2", app="tests.integration.no_such_module:app")
    assert proc.wait(60) == 2
    proc.wait_for(r"cannot import 'tests.integration.no_such_module'")
    proc.wait_for(r"zzz: error: workers cannot start \(exit code 2")


def test_max_requests_recycles_workers_without_failed_requests(zzz_run: Start) -> None:
    proc = zzz_run("--workers", "2", "--max-requests", "40", "--max-requests-jitter", "10")
    ready(proc, 2)
    load = Load(proc.port, threads=4, max_requests=400, max_seconds=60)
    load.wait_sent(400, timeout=60)
    result = load.stop()
    assert result["failures"] == []
    assert result["ok"] == 400
    pids = set(load.bodies)
    assert len(pids) >= 4  # 400 requests over limits of 40..50: several generations
    assert proc.matches(r"draining on its own")
    assert proc.process.poll() is None


def test_sighup_replaces_every_worker_under_load(zzz_run: Start) -> None:
    proc = zzz_run("--workers", "2")
    ready(proc, 2)
    old = set(proc.worker_pids())
    load = Load(proc.port, threads=4, max_requests=20_000, max_seconds=60)
    load.wait_sent(100)
    proc.signal(signal.SIGHUP)
    proc.wait_for(r"draining 2 old worker")
    proc.wait_for(r"worker \d+ stopped", 2)
    before = load.sent
    load.wait_sent(before + 100)
    result = load.stop()
    assert result["failures"] == []
    new = set(proc.worker_pids()) - old
    assert len(new) == 2
    late = {int(body) for body in load.bodies[-50:]}
    assert late <= new  # only the new generation answers now
    assert proc.process.poll() is None


def test_sigttin_adds_and_sigttou_removes_a_worker(zzz_run: Start) -> None:
    proc = zzz_run("--workers", "2")
    ready(proc, 2)
    proc.signal(signal.SIGTTIN)
    proc.wait_for(r"SIGTTIN: 3 worker")
    ready(proc, 3)
    proc.signal(signal.SIGTTOU)
    proc.wait_for(r"SIGTTOU: 2 worker")
    proc.wait_for(r"worker \d+ stopped \(exit code 0\)")
    assert get(proc.port, "/")[0] == 200
    proc.signal(signal.SIGTERM)
    assert proc.wait() == 0
    assert len(proc.matches(r"worker \d+ stopped")) == 3


def test_second_signal_forces_the_stop(zzz_run: Start) -> None:
    proc = zzz_run("--workers", "1", "--max-requests", "1000", "--drain-timeout-ms", "20000")
    ready(proc, 1)
    port = proc.port
    thread = threading.Thread(target=lambda: _quietly(get, port, "/slow?ms=8000"))
    thread.start()
    time.sleep(0.5)
    proc.signal(signal.SIGTERM)
    proc.wait_for(r"draining 1 worker")
    proc.signal(signal.SIGINT)
    assert proc.wait(10) == 1
    proc.wait_for(r"second SIGINT: killing workers")
    thread.join(15)


def _quietly(fn: Callable[..., Any], *args: Any) -> None:
    with contextlib.suppress(OSError):
        fn(*args)


def test_unix_socket_with_proxy_headers(zzz_run: Start, tmp_path: Path) -> None:
    path = str(tmp_path / "zzz.sock")
    proc = zzz_run("--uds", path, "--uds-mode", "600", "--proxy-headers")
    proc.wait_for("serving unix:" + re.escape(path))
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    conn = UnixHTTPConnection(path)
    try:
        # The Unix socket peer is trusted by default (forwarded_allow_ips "127.0.0.1,unix").
        conn.request("GET", "/client", headers={"X-Forwarded-For": "203.0.113.7",
                                                "X-Forwarded-Proto": "https"})
        response = conn.getresponse()
        assert response.status == 200
        assert json.loads(response.read()) == {
            "client": ["203.0.113.7", 0], "scheme": "https", "host": "localhost"}
    finally:
        conn.close()


def test_systemd_socket_activation_with_an_inherited_fd(backend: str) -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    fd = listener.fileno()
    # systemd puts the socket at fd 3 and sets LISTEN_PID to the service's own PID,
    # which exec keeps: a small launcher does the same.
    launcher = (
        "import os, sys\n"
        f"os.dup2({fd}, 3)\n"
        "os.environ['LISTEN_FDS'] = '1'\n"
        "os.environ['LISTEN_PID'] = str(os.getpid())\n"
        f"os.execv(sys.executable, [sys.executable, '-m', 'zzz', 'run', {APP!r}, "
        f"'--backend', {backend!r}, '--port', '1'])\n"
    )
    proc = ZzzProcess([], argv=[sys.executable, "-c", launcher], env=child_env(),
                      pass_fds=[fd])
    try:
        proc.wait_for(rf"serving http://127\.0\.0\.1:{port}")
        listener.close()  # the server's inherited copy keeps the socket open
        assert get(port, "/") == (200, b"ok")
    finally:
        listener.close()
        proc.stop()


def test_reload_restarts_the_worker_on_a_source_change(zzz_run: Start, tmp_path: Path) -> None:
    module = tmp_path / "reload_app.py"
    module.write_text(_RELOAD_APP.format(answer="one"))
    proc = zzz_run("--reload", app="reload_app:app", cwd=tmp_path)
    ready(proc, 1)
    port = proc.port
    assert get(port, "/") == (200, b"one")
    # A different length: the .pyc check (mtime in seconds + size) must see the change.
    module.write_text(_RELOAD_APP.format(answer="second"))
    proc.wait_for(r"reload: changed reload_app\.py")
    proc.wait_for(r"draining 1 old worker")
    proc.wait_for(r"worker \d+ stopped")
    assert get(port, "/") == (200, b"second")


_RELOAD_APP = """
import zzz

app = zzz.Router()


@app.get("/")
def index(ctx: zzz.Context) -> None:
    ctx.text(200, "{answer}")
"""


def test_failed_reload_keeps_the_old_workers(zzz_run: Start, tmp_path: Path) -> None:
    module = tmp_path / "reload_app.py"
    module.write_text(_RELOAD_APP.format(answer="one"))
    proc = zzz_run("--workers", "2", app="reload_app:app", cwd=tmp_path)
    ready(proc, 2)
    port = proc.port
    module.write_text("def broken(:\n")  # a SyntaxError: the CLI's exit status 2
    proc.signal(signal.SIGHUP)
    proc.wait_for(r"reload failed: new workers cannot start \(exit code 2\)")
    assert all(get(port, "/") == (200, b"one") for _ in range(5))
    assert proc.process.poll() is None
    module.write_text(_RELOAD_APP.format(answer="fixed"))
    proc.signal(signal.SIGHUP)
    proc.wait_for(r"draining 2 old worker")
    old = [int(m.group(1)) for m in proc.matches(r"worker (\d+) ready \(generation 0\)")]
    for pid in old:
        proc.wait_for(rf"worker {pid} stopped")
    assert get(port, "/") == (200, b"fixed")


def test_orphaned_workers_drain_when_the_supervisor_is_killed(zzz_run: Start) -> None:
    proc = zzz_run("--workers", "2")
    ready(proc, 2)
    workers = proc.worker_pids()
    proc.signal(signal.SIGKILL)
    proc.wait()
    deadline = time.monotonic() + 15
    alive = list(workers)
    while alive and time.monotonic() < deadline:
        alive = [pid for pid in alive if _alive(pid)]
        time.sleep(0.1)
    assert alive == []


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (exited, not yet reaped by init) counts as gone.
    with contextlib.suppress(OSError):
        return " Z" not in Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1][:3]
    return False


def _wakeups(pid: int) -> int:
    """Voluntary context switches of every thread of ``pid`` so far (one per sleep)."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):
            status = (task / "status").read_text()
            total += int(re.search(r"^voluntary_ctxt_switches:\s+(\d+)", status, re.M)[1])
    return total


#: How long the idle server is watched, and the wake-ups tolerated meanwhile (a stray
#: one or two; polling every 0.5 s or 50 ms would be several times more).
IDLE_WATCH_S = 3.0
IDLE_WAKEUPS_MAX = 3


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="needs Linux /proc")
def test_an_idle_supervisor_and_its_workers_do_not_wake_up(zzz_run: Start, backend: str) -> None:
    proc = zzz_run("--workers", "2")
    ready(proc, 2)
    assert get(proc.port, "/")[0] == 200  # a connection came and went: watching it ends
    time.sleep(0.5)
    watched = [proc.process.pid]
    if backend == "eventloop":
        # The native backend's own sweeps (connection deadlines, timer thread) poll a
        # few times a second by design; the event loop's only periodic work was the
        # watchdog, which now sleeps while its loop has no connection.
        watched += proc.worker_pids()
    before = {pid: _wakeups(pid) for pid in watched}
    time.sleep(IDLE_WATCH_S)
    woke = {pid: _wakeups(pid) - count for pid, count in before.items()}
    assert all(count <= IDLE_WAKEUPS_MAX for count in woke.values()), woke
