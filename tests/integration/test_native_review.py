"""Native backend edge cases found in review: shutdown with a full queue, handler
escapes that are not ``Exception``, slow TLS readers, accept errors, fd exhaustion.

Every test here runs on the native backend only (``backend`` is parametrized to
``native``): they exercise its acceptor, queue and worker threads directly.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import re
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import zzz
from zzz.config import NativeConfig, TlsConfig

from .rawhttp import RawClient, build, connect

pytestmark = pytest.mark.parametrize("backend", ["native"])

REPO_ROOT = Path(__file__).resolve().parents[2]
#: Longest a blocked test handler waits before giving up on its own.
HANDLER_BLOCK_S = 10.0
#: Bound on waiting for the listener to refuse connections after shutdown().
REFUSED_WITHIN_S = 3.0
#: Slack on top of a drain deadline for the server thread to stop.
STOP_MARGIN_S = 4.0


def _blocking_app(release: threading.Event, entered: threading.Semaphore) -> zzz.Router:
    app = zzz.Router()

    @app.get("/")
    def index(ctx: zzz.Context) -> None:
        ctx.text(200, "hello")

    @app.get("/block")
    def block(ctx: zzz.Context) -> None:
        entered.release()
        release.wait(HANDLER_BLOCK_S)
        ctx.text(200, "released")

    return app


def _refused_within(port: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            probe = socket.create_connection(("127.0.0.1", port), timeout=0.5)
        except (ConnectionRefusedError, ConnectionResetError):  # reset: closed with a backlog
            return True
        except TimeoutError:  # still listening, backlog full
            continue
        probe.close()
        time.sleep(0.02)
    return False


def test_shutdown_with_acceptor_blocked_on_full_queue(serve: Any) -> None:
    """One worker stuck in a handler, the queue full, one more connection accepted:
    the acceptor is blocked in ``put``. A shutdown must still stop accepting at once
    and honour the drain deadline instead of waiting for the handler."""
    release = threading.Event()
    entered = threading.Semaphore(0)
    drain_ms = 500
    srv = serve(_blocking_app(release, entered), drain_timeout_ms=drain_ms,
                native=NativeConfig(pool_size=1, queue_capacity=1))
    clients = []
    try:
        first = RawClient(srv.port)
        first.send(build("GET", "/block"))
        clients.append(first)
        assert entered.acquire(timeout=5), "handler never started"
        for _ in range(3):  # one fills the queue, the next ones block the acceptor
            client = RawClient(srv.port)
            client.send(build("GET", "/"))
            clients.append(client)
        time.sleep(0.3)  # let the acceptor take them and block in put()
        started = time.monotonic()
        srv.server.shutdown()
        assert _refused_within(srv.port, REFUSED_WITHIN_S), \
            "new connections still accepted after shutdown()"
        srv.thread.join(drain_ms / 1000 + STOP_MARGIN_S)
        assert not srv.thread.is_alive(), "drain deadline ignored: server still running"
        assert time.monotonic() - started < drain_ms / 1000 + STOP_MARGIN_S
    finally:
        release.set()
        for client in clients:
            client.close()


def test_queued_connection_is_served_when_shutdown_finds_the_queue_full(serve: Any) -> None:
    """A connection the acceptor took but could not queue yet is still served during
    the drain (no accepted connection is dropped) once a worker frees up."""
    release = threading.Event()
    entered = threading.Semaphore(0)
    srv = serve(_blocking_app(release, entered), drain_timeout_ms=5000,
                native=NativeConfig(pool_size=1, queue_capacity=1))
    first = RawClient(srv.port)
    waiting = [RawClient(srv.port) for _ in range(2)]
    try:
        first.send(build("GET", "/block"))
        assert entered.acquire(timeout=5), "handler never started"
        for client in waiting:
            client.send(build("GET", "/"))
        time.sleep(0.3)
        srv.server.shutdown()
        assert _refused_within(srv.port, REFUSED_WITHIN_S)
        release.set()
        response = first.read_response()
        assert response.status == 200 and response.closes
        for client in waiting:
            answer = client.read_response()
            assert answer.status == 200 and answer.body == b"hello"
            assert answer.closes
    finally:
        release.set()
        first.close()
        for client in waiting:
            client.close()


def _escaping_app() -> zzz.Router:
    app = zzz.Router()

    @app.get("/")
    def index(ctx: zzz.Context) -> None:
        ctx.text(200, "hello")

    @app.get("/cancelled")
    async def cancelled(ctx: zzz.Context) -> None:
        raise asyncio.CancelledError

    @app.get("/exit")
    def leave(ctx: zzz.Context) -> None:
        raise SystemExit(3)

    @app.get("/stream-exit")
    def stream_exit(ctx: zzz.Context) -> None:
        def pieces() -> Iterator[bytes]:
            yield b"first"
            raise SystemExit(3)

        ctx.stream(200, "text/plain", pieces())

    return app


@pytest.mark.parametrize("route", ["/cancelled", "/exit"])
def test_handler_base_exception_is_a_500_and_worker_survives(serve: Any, route: str) -> None:
    """``CancelledError`` and ``SystemExit`` are not ``Exception``: they must not kill
    the only worker (every later request would hang) nor leak the connection."""
    srv = serve(_escaping_app(), native=NativeConfig(pool_size=1))
    for _ in range(3):  # more escapes than there are workers
        with RawClient(srv.port) as client:
            assert client.request("GET", route).status == 500
    with RawClient(srv.port) as client:
        assert client.request("GET", "/").status == 200


def test_stream_base_exception_closes_and_worker_survives(serve: Any) -> None:
    srv = serve(_escaping_app(), native=NativeConfig(pool_size=1))
    for _ in range(2):
        with RawClient(srv.port) as client:
            client.send(build("GET", "/stream-exit"))
            data = client.read_until_close()
            assert data.startswith(b"HTTP/1.1 200")
            assert not data.endswith(b"0\r\n\r\n"), "a cut stream must not look complete"
    with RawClient(srv.port) as client:
        assert client.request("GET", "/").status == 200


#: Body of the slow-reader test: larger than loopback socket buffers hold.
SLOW_READER_BODY = 12 * 1024 * 1024
#: The slow reader takes this much per read, then pauses READ_PAUSE_S.
READ_STEP = 64 * 1024
READ_PAUSE_S = 0.01


def _big_app() -> zzz.Router:
    app = zzz.Router()
    body = b"x" * SLOW_READER_BODY

    @app.get("/big")
    def big(ctx: zzz.Context) -> None:
        ctx.respond(200, "application/octet-stream", body)

    return app


@pytest.mark.parametrize("use_tls", [False, True], ids=["tcp", "tls"])
def test_slow_but_steady_reader_is_not_dropped(serve: Any, request: pytest.FixtureRequest,
                                               use_tls: bool) -> None:
    """The write timeout is about a client that makes *no progress*: a client that
    reads steadily but needs longer than ``write_timeout_ms`` for the whole body
    gets all of it, over TLS as over plain TCP (where ``SO_SNDTIMEO`` does this)."""
    overrides: dict[str, Any] = {"write_timeout_ms": 400}
    context: ssl.SSLContext | None = None
    if use_tls:
        files = request.getfixturevalue("tls_test_files")
        overrides["tls"] = TlsConfig(str(files.cert_file), str(files.key_file))
        context = request.getfixturevalue("tls_client_context")
    srv = serve(_big_app(), **overrides)
    sock = connect(srv.port, timeout=5.0, ssl_context=context, rcvbuf=64 * 1024)
    try:
        sock.sendall(build("GET", "/big", {"Connection": "close"}))
        received = unpaused = 0
        started = time.monotonic()
        while True:
            try:
                chunk = sock.recv(READ_STEP)
            except (ConnectionResetError, ssl.SSLEOFError):
                break
            if not chunk:
                break
            received += len(chunk)
            unpaused += len(chunk)
            if unpaused >= READ_STEP:  # TLS hands out one record per recv
                unpaused = 0
                time.sleep(READ_PAUSE_S)
        elapsed = time.monotonic() - started
    finally:
        sock.close()
    assert elapsed > 0.4, "the reader was not slower than the write timeout: test is moot"
    assert received > SLOW_READER_BODY, f"dropped after {received} bytes in {elapsed:.1f}s"


def test_client_that_stops_reading_is_dropped_over_tls(serve: Any,
                                                       request: pytest.FixtureRequest) -> None:
    files = request.getfixturevalue("tls_test_files")
    context = request.getfixturevalue("tls_client_context")
    srv = serve(_big_app(), write_timeout_ms=300,
                tls=TlsConfig(str(files.cert_file), str(files.key_file)))
    sock = connect(srv.port, timeout=5.0, ssl_context=context, rcvbuf=64 * 1024)
    try:
        sock.sendall(build("GET", "/big"))
        time.sleep(1.5)  # read nothing: the server must give up
        received = 0
        with contextlib.suppress(ConnectionResetError, ssl.SSLError, TimeoutError):
            while chunk := sock.recv(1 << 20):
                received += len(chunk)
    finally:
        sock.close()
    assert received < SLOW_READER_BODY


# ---------------------------------------------------------------------- accept errors


@pytest.mark.parametrize("code", [errno.ENETDOWN, errno.EHOSTUNREACH, errno.EPERM])
def test_transient_accept_error_does_not_stop_the_server(
        serve: Any, monkeypatch: pytest.MonkeyPatch, code: int) -> None:
    """Linux ``accept()`` reports pending network errors of the new connection (and
    firewall refusals) as its own errors; they concern one client, not the listener."""
    srv = serve(_escaping_app())
    real_accept = socket.socket.accept
    failures = [code]

    def accept(self: socket.socket) -> tuple[socket.socket, Any]:
        if failures and self.getsockname()[1] == srv.port:
            raise OSError(failures.pop(), os.strerror(code))
        return real_accept(self)

    monkeypatch.setattr(socket.socket, "accept", accept)
    with RawClient(srv.port) as client:
        assert client.request("GET", "/").status == 200
    assert not failures
    assert srv.thread.is_alive() and not srv.errors


# ---------------------------------------------------------------------- fd exhaustion

#: RLIMIT_NOFILE of the server subprocess in the EMFILE test.
LOW_NOFILE = 64
#: Connections the EMFILE test opens: well past the limit.
FLOOD_CONNECTIONS = 120
#: How long the EMFILE test lets the server sit at its limit.
EXHAUSTED_FOR_S = 1.5
#: CPU seconds the server may burn while it sits at its fd limit (a spin uses ~1.5).
MAX_CPU_WHILE_EXHAUSTED_S = 0.5
#: "accept failed" log lines allowed for one exhaustion episode (no log flood).
MAX_EMFILE_LOG_LINES = 3

_SERVER_SCRIPT = """
import logging, resource, sys
resource.setrlimit(resource.RLIMIT_NOFILE, ({limit}, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
logging.basicConfig(level=logging.INFO, stream=sys.stderr)
import zzz
from tests.integration.apps import app
server = zzz.Server(app, zzz.Config(port=0, kernel_backlog=512, drain_timeout_ms=1000,
                                    keepalive_timeout_ms=60000), backend="{backend}")
import threading
def announce():
    server.ready.wait(10)
    print("PORT", server.address[1], file=sys.stderr, flush=True)
threading.Thread(target=announce, daemon=True).start()
server.listen()
"""


def _cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextlib.contextmanager
def _low_nofile_server(backend: str) -> Iterator[tuple[subprocess.Popen[str], int, list[str]]]:
    proc = subprocess.Popen(
        [sys.executable, "-c", _SERVER_SCRIPT.format(limit=LOW_NOFILE, backend=backend)],
        cwd=REPO_ROOT, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
        env=dict(os.environ, PYTHONUNBUFFERED="1"),
    )
    lines: list[str] = []
    port_found = threading.Event()
    port: list[int] = []

    def read() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            lines.append(line)
            match = re.match(r"PORT (\d+)", line)
            if match:
                port.append(int(match.group(1)))
                port_found.set()
        port_found.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        assert port_found.wait(15) and port, f"server did not start: {''.join(lines)}"
        yield proc, port[0], lines
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        reader.join(5)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_emfile_on_accept_backs_off_and_recovers(backend: str) -> None:
    """Past RLIMIT_NOFILE ``accept()`` fails with EMFILE while the kernel keeps the
    connection pending: the server must neither spin nor flood its log, and must
    serve again once descriptors free up."""
    with _low_nofile_server(backend) as (proc, port, lines):
        flood: list[socket.socket] = []
        try:
            for _ in range(FLOOD_CONNECTIONS):
                sock = socket.create_connection(("127.0.0.1", port), timeout=5)
                sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
                flood.append(sock)
            time.sleep(0.5)
            cpu_before = _cpu_seconds(proc.pid)
            time.sleep(EXHAUSTED_FOR_S)
            cpu_used = _cpu_seconds(proc.pid) - cpu_before
            assert proc.poll() is None, "server died at its fd limit"
            assert cpu_used < MAX_CPU_WHILE_EXHAUSTED_S, f"spinning: {cpu_used:.2f}s CPU"
        finally:
            for sock in flood:
                sock.close()
        deadline = time.monotonic() + 10
        status = b""
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
                    sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                    status = sock.recv(64)
            except OSError:
                status = b""
            if status.startswith(b"HTTP/1.1 200"):
                break
            time.sleep(0.1)
        assert status.startswith(b"HTTP/1.1 200"), "not serving after fds were freed"
        failures = [line for line in lines if "accept failed" in line]
        assert 1 <= len(failures) <= MAX_EMFILE_LOG_LINES, "".join(failures[:10])


# ---------------------------------------------------------------------- HTTP corners


def _corner_app() -> zzz.Router:
    app = zzz.Router()

    @app.get("/")
    def index(ctx: zzz.Context) -> None:
        ctx.text(200, "hello")

    @app.get("/stream")
    def stream(ctx: zzz.Context) -> None:
        ctx.stream(200, "text/plain", iter([b"a", b"bc", b"def"]))

    return app


def test_head_on_stream_keeps_the_connection_usable(serve: Any) -> None:
    srv = serve(_corner_app())
    with RawClient(srv.port) as client:
        head = client.request("HEAD", "/stream")
        assert head.status == 200 and head.body == b""
        assert client.request("GET", "/").body == b"hello"
        assert client.request("GET", "/stream").body == b"abcdef"


def test_http10_stream_is_delimited_by_close(serve: Any) -> None:
    srv = serve(_corner_app())
    with RawClient(srv.port) as client:
        client.send(build("GET", "/stream", version="HTTP/1.0"))
        data = client.read_until_close()
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200") or head.startswith(b"HTTP/1.0 200")
    assert b"chunked" not in head.lower()
    assert body == b"abcdef"


def test_pipelined_requests_after_connection_close_are_not_answered(serve: Any) -> None:
    srv = serve(_corner_app())
    with RawClient(srv.port) as client:
        client.send(build("GET", "/", {"Connection": "close"}) + build("GET", "/") * 50)
        first = client.read_response()
        assert first.status == 200 and first.closes
        client.assert_closed()


def test_max_requests_per_connection_pipelined(serve: Any) -> None:
    srv = serve(_corner_app(), max_requests_per_connection=3)
    with RawClient(srv.port) as client:
        client.send(build("GET", "/") * 5)
        answers = [client.read_response() for _ in range(3)]
        assert [a.status for a in answers] == [200, 200, 200]
        assert [a.closes for a in answers] == [False, False, True]
        client.assert_closed()


# ---------------------------------------------------------------------- timers


def test_timer_callbacks_may_reset_remove_and_add_timers(serve: Any) -> None:
    srv = serve(_corner_app())
    server = srv.server
    events: list[str] = []
    done = threading.Event()
    holder: dict[str, Any] = {}

    def repeating() -> None:
        events.append("rep")
        if events.count("rep") == 3:
            server.remove_timer(holder["rep"])
            server.add_timer(10, lambda: (events.append("added"), done.set()))

    def once() -> None:
        events.append("once")
        if events.count("once") < 3:
            server.reset_timer(holder["once"], 10)

    holder["rep"] = server.add_timer(10, repeating, repeat=True)
    holder["once"] = server.add_timer(10, once)
    assert done.wait(5)
    time.sleep(0.2)
    assert events.count("rep") == 3, events
    assert events.count("once") == 3, events
    assert events.count("added") == 1, events


def test_repeating_timer_with_zero_interval_is_refused(serve: Any) -> None:
    """A 0 ms repeating timer would busy-loop the timer thread: refused up front."""
    srv = serve(_corner_app())
    server = srv.server
    with pytest.raises(ValueError, match="repeating timer"):
        server.add_timer(0, lambda: None, repeat=True)
    timer = server.add_timer(50, lambda: None, repeat=True)
    with pytest.raises(ValueError, match="repeating timer"):
        server.reset_timer(timer, 0)
    server.remove_timer(timer)
    fired = threading.Event()
    server.add_timer(0, fired.set)  # a one-shot 0 ms timer is fine
    assert fired.wait(5)
