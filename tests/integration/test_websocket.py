"""WebSocket over real sockets, once per backend (the ``backend``/``serve`` fixtures).

Clients are the ``websockets`` library (sync client; the asyncio client for the
many-sockets test) and, for what a correct client never sends, the raw-socket
client in :mod:`tests.integration.wsraw`.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import socket
import struct
import threading
import time
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect as aconnect
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

import zzz
from zzz.config import TlsConfig

from .rawhttp import SOCKET_TIMEOUT_S
from .tls_helpers import make_tls_files
from .wsraw import (
    OP_BINARY,
    OP_CLOSE,
    OP_CONT,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    RawWebSocket,
    close_payload,
    frame,
    handshake_request,
)

#: Longest any single wait in these tests may take.
WAIT_S = 10.0
MIB = 1024 * 1024
#: Sockets and workers of the concurrency test.
CONCURRENT_SOCKETS = 200
CONCURRENT_WORKERS = 4
#: Bound of the flood a non-reading client gets in the backpressure test (64 MiB).
FLOOD_CHUNK = b"z" * 65536
FLOOD_MAX_CHUNKS = 1024


class Events:
    """Callback events recorded from server threads, read with bounded waits."""

    def __init__(self) -> None:
        self.q: queue.Queue[tuple[Any, ...]] = queue.Queue()
        self.early: list[tuple[Any, ...]] = []  # arrived while waiting for another kind

    def put(self, *item: Any) -> None:
        self.q.put(item)

    def wait_for(self, kind: str, timeout: float = WAIT_S) -> tuple[Any, ...]:
        for item in self.early:
            if item[0] == kind:
                self.early.remove(item)
                return item
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no {kind!r} event within {timeout}s")
            try:
                item = self.q.get(timeout=remaining)
            except queue.Empty:
                continue
            if item[0] == kind:
                return item
            self.early.append(item)


def make_app(events: Events) -> zzz.Router:
    def tag(ctx: zzz.Context) -> None:
        ctx.assigns["user"] = ctx.query.get("user") or "anon"
        ctx.next()

    def deny(ctx: zzz.Context) -> None:
        if ctx.query.get("token") != "ok":
            ctx.text(403, "forbidden\n")
            return
        ctx.next()

    def on_open(ws: zzz.WebSocket) -> None:
        events.put("open", ws.path_param("room"), ws.assigns.get("user"), ws.query.get("user"))

    def on_message(ws: zzz.WebSocket, msg: str | bytes) -> None:
        if isinstance(msg, str):
            if msg == "who":
                ws.send(f"{ws.path_param('room')}:{ws.assigns['user']}")
            elif msg == "close-me":
                ws.close(4000, "asked")
            else:
                ws.send(msg)
        else:
            ws.send_binary(msg)

    def on_close(ws: zzz.WebSocket, code: int, reason: str) -> None:
        events.put("close", code, reason)

    app = zzz.Router()

    @app.get("/")
    def index(ctx: zzz.Context) -> None:
        ctx.text(200, "hello")

    app.ws("/chat/:room", on_open=on_open, on_message=on_message, on_close=on_close,
           middleware=[tag])
    app.ws("/ws", on_message=on_message, on_close=on_close)
    app.ws("/guarded", on_message=on_message, middleware=[deny])

    async def aecho(ws: zzz.WebSocket, msg: str | bytes) -> None:
        await asyncio.sleep(0)
        ws.send(msg if isinstance(msg, str) else msg.decode())

    app.ws("/async", on_message=aecho)

    def flood(ws: zzz.WebSocket) -> None:
        def run() -> None:
            sent = 0
            while sent < FLOOD_MAX_CHUNKS and ws.send_binary(FLOOD_CHUNK):
                sent += 1
            events.put("flood-stopped", sent)

        threading.Thread(target=run, daemon=True).start()

    app.ws("/flood", on_open=flood, on_close=on_close)

    def timer_open(ws: zzz.WebSocket) -> None:
        server = ws.assigns["server"]
        server.add_timer(10, lambda: ws.send("tick from timer"))
        threading.Thread(target=lambda: ws.send("hello from thread"), daemon=True).start()

    def keep_server(ctx: zzz.Context) -> None:
        ctx.assigns["server"] = ctx.server
        ctx.next()

    app.ws("/timer", on_open=timer_open, middleware=[keep_server])
    return app


def ws_url(running: Any, path: str) -> str:
    return f"ws://127.0.0.1:{running.port}{path}"


def open_client(url: str, **kwargs: Any) -> Any:
    kwargs.setdefault("open_timeout", WAIT_S)
    kwargs.setdefault("close_timeout", WAIT_S)
    kwargs.setdefault("proxy", None)
    return connect(url, **kwargs)


# ---------------------------------------------------------------------- echo


def test_echo_text_and_binary_with_params_query_and_assigns(serve):
    events = Events()
    running = serve(make_app(events))
    with open_client(ws_url(running, "/chat/lobby?user=ann")) as client:
        assert events.wait_for("open") == ("open", "lobby", "ann", "ann")
        client.send("hello")
        assert client.recv(timeout=WAIT_S) == "hello"
        client.send(b"\x00\x01\xff")
        assert client.recv(timeout=WAIT_S) == b"\x00\x01\xff"
        client.send("who")
        assert client.recv(timeout=WAIT_S) == "lobby:ann"
    assert events.wait_for("close")[1] == 1000


def test_one_mebibyte_message_echoed(serve):
    running = serve(make_app(Events()))
    big = "é" * (MIB // 2)  # 1 MiB of UTF-8, the default limit exactly
    with open_client(ws_url(running, "/ws"), compression=None, max_size=2 * MIB) as client:
        client.send(big)
        assert client.recv(timeout=WAIT_S) == big
        blob = bytes(range(256)) * (MIB // 256)
        client.send(blob)
        assert client.recv(timeout=WAIT_S) == blob


def test_oversize_message_closes_1009(serve):
    events = Events()
    running = serve(make_app(events))
    with open_client(ws_url(running, "/ws"), compression=None, max_size=None) as client:
        with pytest.raises(ConnectionClosed) as info:
            client.send(b"x" * (MIB + 1))
            client.recv(timeout=WAIT_S)
        assert info.value.rcvd is not None and info.value.rcvd.code == 1009
    assert events.wait_for("close")[1] == 1009


def test_invalid_utf8_closes_1007(serve):
    events = Events()
    running = serve(make_app(events))
    raw = RawWebSocket(running.port, "/ws")
    try:
        assert raw.status == 101
        raw.send(frame(OP_TEXT, b"ok \xff\xfe"))
        assert raw.read_close() == 1007
        assert raw.at_eof()
    finally:
        raw.close()
    assert events.wait_for("close")[1] == 1007


def test_fragments_are_reassembled_and_pings_answered(serve):
    running = serve(make_app(Events()))
    raw = RawWebSocket(running.port, "/ws")
    try:
        euro = "€".encode()  # split across fragments: must not be refused
        raw.send(frame(OP_TEXT, b"frag-" + euro[:1], fin=False))
        raw.send(frame(OP_PING, b"p1"))
        raw.send(frame(OP_CONT, euro[1:], fin=False))
        raw.send(frame(OP_CONT, b"-end", fin=True))
        assert raw.read_frame() == (OP_PONG, b"p1")
        assert raw.read_frame() == (OP_TEXT, "frag-€-end".encode())
        raw.send(frame(OP_BINARY, b"\x01", fin=False) + frame(OP_CONT, b"\x02"))
        assert raw.read_frame() == (OP_BINARY, b"\x01\x02")
        raw.send(frame(OP_CLOSE, close_payload(1000, "bye")))
        assert raw.read_frame() == (OP_CLOSE, close_payload(1000, "bye"))
        assert raw.at_eof()
    finally:
        raw.close()


@pytest.mark.parametrize(
    "bad",
    [
        frame(OP_TEXT, b"unmasked", mask=False),
        frame(0x3, b"reserved opcode"),
        frame(OP_CONT, b"continuation without a start"),
        frame(OP_PING, b"fragmented ping", fin=False),
        frame(OP_TEXT, b"rsv bits", rsv=0b010),
    ],
    ids=["unmasked", "opcode", "cont", "ping-fragmented", "rsv"],
)
def test_protocol_errors_close_1002(serve, bad):
    events = Events()
    running = serve(make_app(events))
    raw = RawWebSocket(running.port, "/ws")
    try:
        raw.send(bad)
        assert raw.read_close() == 1002
    finally:
        raw.close()
    assert events.wait_for("close")[1] == 1002


def test_client_close_is_echoed_and_server_close_completes(serve):
    events = Events()
    running = serve(make_app(events))
    with open_client(ws_url(running, "/ws")) as client:
        client.send("close-me")
        with pytest.raises(ConnectionClosed) as info:
            client.recv(timeout=WAIT_S)
        assert info.value.rcvd is not None and info.value.rcvd.code == 4000
    assert events.wait_for("close")[1:] == (4000, "asked")


def test_dropped_tcp_connection_gives_1006(serve):
    events = Events()
    running = serve(make_app(events))
    raw = RawWebSocket(running.port, "/ws")
    raw.send(frame(OP_TEXT, b"ping?"))
    assert raw.read_frame() == (OP_TEXT, b"ping?")
    raw.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    raw.close()  # RST, no close frame
    assert events.wait_for("close")[1] == 1006


def test_async_callbacks_keep_message_order(serve):
    running = serve(make_app(Events()))
    with open_client(ws_url(running, "/async")) as client:
        for i in range(50):
            client.send(f"m{i}")
        assert [client.recv(timeout=WAIT_S) for _ in range(50)] == [f"m{i}" for i in range(50)]


# ---------------------------------------------------------------------- handshake


def _raw_handshake(port: int, request: bytes) -> tuple[int, bytes]:
    with socket.create_connection(("127.0.0.1", port), timeout=SOCKET_TIMEOUT_S) as sock:
        sock.sendall(request)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(4096)
            if not chunk:
                break
            data += chunk
    return int(data.split(b" ", 2)[1]), data


def test_bad_upgrades_are_refused_and_the_server_goes_on(serve):
    running = serve(make_app(Events()))
    status, head = _raw_handshake(running.port, handshake_request("/ws", version="8"))
    assert status == 426
    assert b"Sec-WebSocket-Version: 13\r\n" in head
    for request in (
        handshake_request("/ws", key="too-short"),
        handshake_request("/ws", key=""),
        handshake_request("/ws").replace(b"Upgrade: websocket", b"Upgrade: h2c"),
        b"GET /ws HTTP/1.1\r\nHost: x\r\n\r\n",
    ):
        status, _ = _raw_handshake(running.port, request)
        assert status == 400, request
    with pytest.raises(InvalidStatus) as info:
        open_client(ws_url(running, "/guarded?token=no"))
    assert info.value.response.status_code == 403
    with open_client(ws_url(running, "/guarded?token=ok")) as client:
        client.send("still here")
        assert client.recv(timeout=WAIT_S) == "still here"
    assert httpx.get(running.url + "/", timeout=WAIT_S).text == "hello"


def test_permessage_deflate_is_negotiated_when_offered(serve):
    running = serve(make_app(Events()))
    text = "compress me " * 5000
    with open_client(ws_url(running, "/ws")) as client:  # offers deflate by default
        assert "permessage-deflate" in (client.response.headers.get("Sec-WebSocket-Extensions")
                                        or "")
        client.send(text)
        assert client.recv(timeout=WAIT_S) == text
    with open_client(ws_url(running, "/ws"), compression=None) as client:
        assert client.response.headers.get("Sec-WebSocket-Extensions") is None
        client.send("plain")
        assert client.recv(timeout=WAIT_S) == "plain"


# ---------------------------------------------------------------------- threads, timers


def test_send_from_a_timer_and_another_thread(serve):
    running = serve(make_app(Events()))
    with open_client(ws_url(running, "/timer")) as client:
        got = {client.recv(timeout=WAIT_S), client.recv(timeout=WAIT_S)}
    assert got == {"tick from timer", "hello from thread"}


def test_many_concurrent_sockets_all_echoed(serve, backend):
    running = serve(make_app(Events()), worker_threads=CONCURRENT_WORKERS, kernel_backlog=1024)
    url = ws_url(running, "/ws")

    async def one(i: int) -> str:
        async with aconnect(url, proxy=None, open_timeout=WAIT_S, compression=None) as ws:
            await ws.send(f"socket-{i}")
            reply = await ws.recv()
            assert isinstance(reply, str)
            return reply

    async def all_of_them() -> list[str]:
        clients = [asyncio.create_task(one(i)) for i in range(CONCURRENT_SOCKETS)]
        return await asyncio.wait_for(asyncio.gather(*clients), 30)

    replies = asyncio.run(all_of_them())
    assert replies == [f"socket-{i}" for i in range(CONCURRENT_SOCKETS)]


def test_many_sockets_stay_open_together_without_pinning_workers(serve):
    """More open sockets than workers, all idle at once, then all answered."""
    running = serve(make_app(Events()), worker_threads=2)
    with contextlib.ExitStack() as stack:
        clients = [stack.enter_context(open_client(ws_url(running, "/ws"), compression=None))
                   for _ in range(8)]
        for i, client in enumerate(clients):
            client.send(f"c{i}")
        assert [c.recv(timeout=WAIT_S) for c in clients] == [f"c{i}" for i in range(8)]
        assert httpx.get(running.url + "/", timeout=WAIT_S).text == "hello"


# ---------------------------------------------------------------------- heartbeat, limits


def test_heartbeat_closes_a_silent_peer(serve):
    events = Events()
    running = serve(make_app(events), ws_ping_interval_ms=100, ws_ping_timeout_ms=300)
    raw = RawWebSocket(running.port, "/ws")
    try:
        started = time.monotonic()
        got = raw.read_frame()
        assert got is not None and got[0] == OP_PING  # never answered
        assert raw.read_close() == 1011
        assert raw.at_eof()
    finally:
        raw.close()
    assert events.wait_for("close")[1] == 1011
    assert time.monotonic() - started < WAIT_S


def test_heartbeat_keeps_an_answering_peer(serve):
    running = serve(make_app(Events()), ws_ping_interval_ms=50, ws_ping_timeout_ms=200)
    with open_client(ws_url(running, "/ws"), ping_interval=None) as client:
        time.sleep(0.6)  # several ping rounds, answered by the client library
        client.send("alive")
        assert client.recv(timeout=WAIT_S) == "alive"


def test_peer_that_stops_reading_is_cut_off(serve):
    """The flood's sender waits while the peer is behind; after write_timeout_ms
    without progress the peer is cut. Its socket takes nothing, so no close frame
    gets out and on_close says 1006 (not the 1008 that was never sent)."""
    events = Events()
    running = serve(make_app(events), ws_write_buffer_high=256 * 1024, write_timeout_ms=500)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 * 1024)
    sock.settimeout(SOCKET_TIMEOUT_S)
    sock.connect(("127.0.0.1", running.port))
    try:
        sock.sendall(handshake_request("/flood"))  # and never read a byte
        sent = events.wait_for("flood-stopped")[1]
        assert sent < FLOOD_MAX_CHUNKS
        assert events.wait_for("close")[1] == 1006
    finally:
        sock.close()


# ---------------------------------------------------------------------- shutdown


def test_shutdown_closes_open_sockets_with_1001(serve):
    events = Events()
    running = serve(make_app(events), drain_timeout_ms=5000)
    stack = contextlib.ExitStack()
    clients = [stack.enter_context(open_client(ws_url(running, "/ws"))) for _ in range(3)]
    for client in clients:
        client.send("x")
        assert client.recv(timeout=WAIT_S) == "x"
    started = time.monotonic()
    running.server.shutdown()
    for client in clients:
        with pytest.raises(ConnectionClosed) as info:
            client.recv(timeout=WAIT_S)
        assert info.value.rcvd is not None and info.value.rcvd.code == 1001
    stack.close()
    running.thread.join(WAIT_S)
    assert not running.thread.is_alive()
    assert time.monotonic() - started < 5.0  # well before the drain deadline
    assert [events.wait_for("close")[1] for _ in clients] == [1001] * 3


# ---------------------------------------------------------------------- errors, TLS


def test_callback_exception_closes_1011_and_server_goes_on(serve):
    def broken(ws: zzz.WebSocket, msg: str | bytes) -> None:
        raise RuntimeError("handler bug")

    app = make_app(Events())
    app.ws("/broken", on_message=broken)
    running = serve(app)
    with open_client(ws_url(running, "/broken")) as client:
        client.send("boom")
        with pytest.raises(ConnectionClosed) as info:
            client.recv(timeout=WAIT_S)
        assert info.value.rcvd is not None and info.value.rcvd.code == 1011
    with open_client(ws_url(running, "/ws")) as client:
        client.send("fine")
        assert client.recv(timeout=WAIT_S) == "fine"


def test_wss_echo_large_messages_and_close(serve, tmp_path):
    files = make_tls_files(tmp_path, "ws")
    events = Events()
    running = serve(make_app(events),
                    tls=TlsConfig(str(files.cert_file), str(files.key_file)))
    url = f"wss://127.0.0.1:{running.port}/ws"
    blob = bytes(range(256)) * (MIB // 256)
    with open_client(url, ssl=files.client_context(), compression=None,
                     max_size=2 * MIB) as client:
        for _ in range(3):
            client.send(blob)
            assert client.recv(timeout=WAIT_S) == blob
        client.send("close-me")
        with pytest.raises(ConnectionClosed) as info:
            client.recv(timeout=WAIT_S)
        assert info.value.rcvd is not None and info.value.rcvd.code == 4000
    assert events.wait_for("close")[1] == 4000
