"""Fault injection (issue 12 §4): clients that reset mid-exchange, handlers that raise
wherever application code runs, and a handler that never returns.

Each test injects one fault into a server on each backend (and, for the HTTP faults,
over TCP and TLS), then checks the three things a fault must not break: the next
request is served normally, the process's descriptors come back to the baseline, and
(for client resets) nothing was logged as a server error: a peer's reset is the
peer's business.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import signal
import socket
import ssl
import struct
import subprocess
import threading
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from integration.apps import HELLO, MAX_SLOW_MS, app
from integration.procs import APP as WORKER_APP
from integration.procs import ZzzProcess, get
from integration.rawhttp import (
    ConnectionClosed as RawClosed,
)
from integration.rawhttp import (
    RawClient,
    assert_still_serving,
    build,
    connect,
)
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect as ws_connect

import zzz
from zzz.exit_codes import EXIT_DRAIN_CUT

from .conftest import (
    lazy_fd_allowance,
    open_fds,
    start_cli_server,
    wait_fds_back,
    wait_no_server_conns,
)

#: Longest a test waits for a callback, a timer or a close.
WAIT_S = 5.0
#: Drain deadline of the never-returning handler test: short, the handler is stuck.
HANG_DRAIN_MS = 500
#: How long the never-returning handler is given to start before SIGTERM.
HANDLER_START_S = 0.5
#: Time for the stderr reader thread to collect the last lines after the exit.
LOG_SETTLE_S = 0.2
#: Longest the server may take to stop once the drain deadline passed.
STOP_AFTER_DRAIN_S = 3.0
#: Period of the repeating timer that raises.
REPEAT_MS = 20
#: Body bytes a mid-body reset sends of the announced length.
PARTIAL_BODY = 1000


def _reset(sock: socket.socket) -> None:
    """Close with SO_LINGER 0: the kernel sends RST instead of FIN."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def _client_hello(context: ssl.SSLContext) -> bytes:
    """The first flight of a TLS client (its ClientHello), built in memory."""
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = context.wrap_bio(incoming, outgoing, server_hostname="localhost")
    with pytest.raises(ssl.SSLWantReadError):
        tls.do_handshake()
    return outgoing.read()


def _errors_logged(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.name.startswith("zzz") and r.levelno >= logging.ERROR]


def _baseline(srv: Any) -> int:
    assert_still_serving(srv)  # pools, pipes and TLS state exist from here
    return wait_fds_back(open_fds())


def _assert_no_leak(srv: Any, backend: str, baseline: int) -> None:
    """No connection descriptor left, and no more than the lazily opened ones."""
    assert wait_no_server_conns(srv.port) == 0, "the server still holds a connection fd"
    after = wait_fds_back(baseline, lazy_fd_allowance(backend))
    assert after <= baseline + lazy_fd_allowance(backend), f"fds {baseline} -> {after}"


# ---------------------------------------------------------------------- client resets


@pytest.mark.parametrize("where", ["mid_head", "mid_body", "mid_response", "mid_handshake"])
def test_client_reset(serve, transport, backend, where, caplog):
    if where == "mid_handshake" and transport == "tcp":
        pytest.skip("no TLS handshake over plain TCP")
    caplog.set_level(logging.INFO)
    srv = serve(app)
    baseline = _baseline(srv)
    for _ in range(3):
        if where == "mid_handshake":
            sock = connect(srv.port)  # plain TCP under the TLS server
            hello = _client_hello(srv.client_ssl)
            sock.sendall(hello[: len(hello) // 2])
            time.sleep(0.05)  # the server is now inside the handshake
            _reset(sock)
            continue
        client = RawClient(srv)
        if where == "mid_head":
            client.send(b"GET / HTTP/1.1\r\nHost: x\r\nX-Half: ")
        elif where == "mid_body":
            client.send(build("POST", "/echo", {"Content-Length": str(100_000)})
                        + b"b" * PARTIAL_BODY)
        else:
            client.send(build("GET", "/big-stream"))
            got = 0
            while got < 256 * 1024:
                got += len(client.sock.recv(65536))
        time.sleep(0.05)  # let the server act on what it got before the reset
        _reset(client.sock)
    assert_still_serving(srv)
    _assert_no_leak(srv, backend, baseline)
    assert not _errors_logged(caplog), _errors_logged(caplog)


# ---------------------------------------------------------------------- handlers raising


def _faulty_app() -> zzz.Router:
    def boom_mw(ctx: zzz.Context) -> None:
        if ctx.path == "/mw-boom":
            raise RuntimeError("middleware bug")
        ctx.next()

    router = zzz.Router(middleware=[boom_mw])

    @router.get("/")
    def index(ctx: zzz.Context) -> None:
        ctx.text(200, HELLO)

    @router.get("/mw-boom")
    def unreachable(ctx: zzz.Context) -> None:
        ctx.text(200, "middleware did not raise")

    def failing(first: bool) -> Iterator[bytes]:
        if not first:
            raise RuntimeError("stream bug before the first chunk")
        yield b"first chunk"
        raise RuntimeError("stream bug after the first chunk")

    async def afailing(first: bool) -> AsyncIterator[bytes]:
        await asyncio.sleep(0)
        if not first:
            raise RuntimeError("async stream bug before the first chunk")
        yield b"first chunk"
        raise RuntimeError("async stream bug after the first chunk")

    @router.get("/stream-boom")
    def stream_boom(ctx: zzz.Context) -> None:
        first = ctx.query.get("first") == "1"
        pieces = afailing(first) if ctx.query.get("async") == "1" else failing(first)
        ctx.stream(200, "text/plain", pieces)

    return router


def test_middleware_raising_answers_500_and_serving_goes_on(serve, transport, backend):
    srv = serve(_faulty_app())
    baseline = _baseline(srv)
    with RawClient(srv) as client:
        response = client.request("GET", "/mw-boom")
        assert response.status == 500
        assert b"middleware bug" not in response.body
    assert_still_serving(srv)
    _assert_no_leak(srv, backend, baseline)


@pytest.mark.parametrize("kind", ["sync", "async"])
@pytest.mark.parametrize("first", [False, True], ids=["before_first_chunk", "after_first_chunk"])
def test_stream_raising_never_looks_complete(serve, transport, backend, kind, first):
    """A stream that fails is never presented as a complete response: before anything
    was sent it may still become a 500; after a chunk, the connection is cut without
    the terminating chunk, so the client knows the body is truncated."""
    srv = serve(_faulty_app())
    baseline = _baseline(srv)
    query = f"?first={int(first)}&async={int(kind == 'async')}"
    with RawClient(srv) as client:
        client.send(build("GET", "/stream-boom" + query))
        try:
            response = client.read_response()
        except RawClosed:
            response = None
        if response is not None:
            assert response.status == 500, (response.status, response.body)
            assert not first
    assert_still_serving(srv)
    _assert_no_leak(srv, backend, baseline)


# ---------------------------------------------------------------------- WebSocket and timers


def _ws_app(events: dict[str, threading.Event]) -> zzz.Router:
    router = zzz.Router()

    def open_boom(ws: zzz.WebSocket) -> None:
        raise RuntimeError("on_open bug")

    def echo(ws: zzz.WebSocket, msg: str | bytes) -> None:
        ws.send(msg) if isinstance(msg, str) else ws.send_binary(msg)

    def close_boom(ws: zzz.WebSocket, code: int, reason: str) -> None:
        events["close_called"].set()
        raise RuntimeError("on_close bug")

    async def amessage_boom(ws: zzz.WebSocket, msg: str | bytes) -> None:
        await asyncio.sleep(0)
        raise RuntimeError("async on_message bug")

    router.ws("/open-boom", on_open=open_boom, on_message=echo)
    router.ws("/close-boom", on_message=echo, on_close=close_boom)
    router.ws("/amessage-boom", on_message=amessage_boom)
    router.ws("/echo", on_message=echo)

    @router.get("/")
    def index(ctx: zzz.Context) -> None:
        ctx.text(200, HELLO)

    return router


def _ws_echo_works(port: int) -> None:
    with ws_connect(f"ws://127.0.0.1:{port}/echo", open_timeout=WAIT_S,
                    close_timeout=WAIT_S, proxy=None) as client:
        client.send("still here")
        assert client.recv(timeout=WAIT_S) == "still here"


@pytest.mark.parametrize("path", ["/open-boom", "/amessage-boom", "/close-boom"])
def test_websocket_callback_raising(serve, backend, path):
    events = {"close_called": threading.Event()}
    srv = serve(_ws_app(events))
    baseline = _baseline(srv)
    with ws_connect(f"ws://127.0.0.1:{srv.port}{path}", open_timeout=WAIT_S,
                    close_timeout=WAIT_S, proxy=None) as client:
        if path == "/close-boom":
            client.send("hi")
            assert client.recv(timeout=WAIT_S) == "hi"
            client.close()
        else:
            if path == "/amessage-boom":
                client.send("boom")
            with pytest.raises(ConnectionClosed) as info:
                client.recv(timeout=WAIT_S)
            assert info.value.rcvd is not None and info.value.rcvd.code == 1011
    if path == "/close-boom":
        assert events["close_called"].wait(WAIT_S)
    _ws_echo_works(srv.port)
    assert_still_serving(srv)
    _assert_no_leak(srv, backend, baseline)


def test_timer_raising_is_logged_and_timers_go_on(serve, caplog):
    """A raising timer is logged each time it fires; a repeating one keeps repeating,
    and other timers still fire."""
    srv = serve(app)
    fired = threading.Event()

    def boom() -> None:
        raise RuntimeError("timer bug")

    server = srv.server
    server.add_timer(5, boom)
    repeating = server.add_timer(REPEAT_MS, boom, repeat=True)
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline and len(_timer_failures(caplog)) < 3:
        time.sleep(0.02)
    server.remove_timer(repeating)
    assert len(_timer_failures(caplog)) >= 3, "the repeating timer stopped after raising"
    server.add_timer(5, fired.set)
    assert fired.wait(WAIT_S), "a timer after raising ones never fired"
    assert_still_serving(srv)


def _timer_failures(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "zzz.timers" and r.exc_info
            and str(r.exc_info[1]) == "timer bug"]


# ---------------------------------------------------------------------- never returns


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_handler_that_never_returns_is_cut_by_the_drain_deadline(backend, kind):
    """SIGTERM while a handler runs far past the drain deadline: the process stops at
    the deadline, the client's connection closes without an answer, and the log says
    the drain deadline cut it. A plain handler on the event loop holds the loop itself,
    so its drain cannot run: the drain guard ends the process with EXIT_DRAIN_CUT
    after a line naming the request and handler (zzz/backends/_drain_guard.py);
    everywhere else the drain cuts the connection and the process exits 0."""
    srv = start_cli_server("tests.integration.apps:app", "--backend", backend,
                           "--drain-timeout-ms", str(HANG_DRAIN_MS))
    route = "/slow" if kind == "sync" else "/aslow"
    client = RawClient(srv.port)
    try:
        client.send(build("GET", f"{route}?ms={MAX_SLOW_MS}"))
        time.sleep(HANDLER_START_S)  # the handler is now running
        started = time.monotonic()
        srv.proc.send_signal(signal.SIGTERM)
        try:
            code = srv.proc.wait(HANG_DRAIN_MS / 1000.0 + STOP_AFTER_DRAIN_S)
        except subprocess.TimeoutExpired:
            pytest.fail("the server did not stop after the drain deadline:\n" + srv.text())
        assert time.monotonic() - started < HANG_DRAIN_MS / 1000.0 + STOP_AFTER_DRAIN_S
        with pytest.raises(RawClosed):  # cut: closed without an answer
            client.read_response()
    finally:
        client.close()
        srv.stop()
    time.sleep(LOG_SETTLE_S)  # the reader thread has the last lines
    text = srv.text()
    if backend == "eventloop" and kind == "sync":
        assert code == EXIT_DRAIN_CUT, text
        assert re.search(r"drain deadline passed \(500 ms\) while GET /slow \(route /slow, "
                         r"handler slow\), a handler that never returned, holds the event "
                         r"loop: the drain deadline cut it", text), text
    else:
        assert code == 0, text
        assert "drain deadline passed: cutting 1 connection(s)" in text, text


def test_supervisor_replaces_a_worker_the_drain_guard_ended():
    """A worker whose drain guard ended it (EXIT_DRAIN_CUT) is a worker that stopped
    as told, not one that died: the supervisor logs it as stopped, its successor
    serves, and nothing counts as a death (no respawn back-off). The worker is told
    to stop by a SIGTERM of its own (an operator's, not the supervisor's) while a
    plain handler holds its event loop far past the drain deadline."""
    proc = ZzzProcess([WORKER_APP, "--backend", "eventloop", "--port", "0", "--workers", "1",
                       "--max-requests", "1000",  # one worker, still supervised
                       "--drain-timeout-ms", str(HANG_DRAIN_MS)])
    try:
        proc.wait_for(r"worker \d+ ready")
        status, body = get(proc.port, "/pid")
        assert status == 200
        pid = int(body)
        stuck: dict[str, object] = {}

        def hang() -> None:
            try:
                stuck["answer"] = get(proc.port, f"/slow?ms={MAX_SLOW_MS}")
            except OSError as exc:
                stuck["answer"] = exc

        thread = threading.Thread(target=hang)
        thread.start()
        time.sleep(HANDLER_START_S)
        os.kill(pid, signal.SIGTERM)
        proc.wait_for(rf"worker {pid} stopped \(exit code {EXIT_DRAIN_CUT}: its drain "
                      r"deadline cut a handler that never returned\)")
        proc.wait_for(r"worker \d+ ready", 2)
        thread.join(WAIT_S)
        assert isinstance(stuck.get("answer"), OSError), stuck  # cut, never answered
        status, body = get(proc.port, "/pid")
        assert status == 200 and int(body) != pid
        assert not proc.matches(r"died|respawning in"), proc.log()
    finally:
        proc.stop()
