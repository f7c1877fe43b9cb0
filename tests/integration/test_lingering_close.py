"""Lingering close: a request refused before its body was read (413, 400, a rejected
100-continue) is answered, our side is shut, and the rest of the body is read and
dropped for a while instead of resetting the connection under the client's feet.

Plain TCP only: TLS cannot half-close, so a refused TLS connection just closes.
"""

from __future__ import annotations

import socket
from typing import Any

import zzz

from .rawhttp import assert_still_serving

#: Body the client announces: far above the server's limit.
ANNOUNCED = 50_000_000
#: The server's body limit in these tests.
LIMIT = 1024
CHUNK = b"x" * 65536
#: What the client keeps sending after the answer: well below the server's linger budget.
AFTER_ANSWER_CHUNKS = 16
TIMEOUT_S = 5.0


def app() -> zzz.Router:
    router = zzz.Router()

    @router.get("/")
    def index(ctx: zzz.Context) -> None:
        ctx.text(200, "hello")

    @router.post("/upload")
    def upload(ctx: zzz.Context) -> None:
        ctx.text(200, "stored")

    return router


def _read_answer(sock: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        assert chunk, f"connection ended before an answer: {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    while len(body) < length:
        chunk = sock.recv(4096)
        assert chunk
        body += chunk
    return head


def test_refused_upload_is_answered_then_drained_not_reset(serve: Any) -> None:
    srv = serve(app(), max_body_size=LIMIT)
    with socket.create_connection(("127.0.0.1", srv.port), timeout=TIMEOUT_S) as sock:
        sock.sendall(
            b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % ANNOUNCED
        )
        sock.sendall(CHUNK)  # the client is already streaming its body
        head = _read_answer(sock)
        assert head.startswith(b"HTTP/1.1 413 ")
        assert b"connection: close" in head.lower()
        # The server shut its side (EOF, not a reset) ...
        assert sock.recv(1) == b""
        # ... and still reads what the client sends for a while: no RST, no EPIPE.
        for _ in range(AFTER_ANSWER_CHUNKS):
            sock.sendall(CHUNK)
        sock.shutdown(socket.SHUT_WR)
    assert_still_serving(srv)


def test_bad_request_mid_stream_is_answered_then_drained(serve: Any) -> None:
    srv = serve(app())
    with socket.create_connection(("127.0.0.1", srv.port), timeout=TIMEOUT_S) as sock:
        sock.sendall(b"POST /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
        sock.sendall(b"zz\r\n" + CHUNK)  # a bad chunk size, then more bytes
        head = _read_answer(sock)
        assert head.startswith(b"HTTP/1.1 400 ")
        assert sock.recv(1) == b""
        for _ in range(AFTER_ANSWER_CHUNKS):
            sock.sendall(CHUNK)
    assert_still_serving(srv)


def test_last_allowed_response_cutting_a_pipelined_request_lingers(serve: Any) -> None:
    srv = serve(app(), max_requests_per_connection=1)
    with socket.create_connection(("127.0.0.1", srv.port), timeout=TIMEOUT_S) as sock:
        # The next request is already arriving when the last allowed answer goes out.
        sock.sendall(
            b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
            b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % ANNOUNCED
        )
        sock.sendall(CHUNK)
        head = _read_answer(sock)
        assert head.startswith(b"HTTP/1.1 200 ")
        assert b"connection: close" in head.lower()
        assert sock.recv(1) == b""
        for _ in range(AFTER_ANSWER_CHUNKS):
            sock.sendall(CHUNK)
    assert_still_serving(srv)


def test_lingering_connection_does_not_hold_the_drain(serve: Any) -> None:
    srv = serve(app(), max_body_size=LIMIT, drain_timeout_ms=10_000)
    sock = socket.create_connection(("127.0.0.1", srv.port), timeout=TIMEOUT_S)
    try:
        sock.sendall(
            b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % ANNOUNCED
        )
        assert _read_answer(sock).startswith(b"HTTP/1.1 413 ")
        # The fixture's teardown shuts the server down and fails if it does not stop;
        # a lingering close must count as finished, not as a request in flight.
        srv.server.shutdown()
        srv.thread.join(TIMEOUT_S)
        assert not srv.thread.is_alive()
    finally:
        sock.close()
