"""Streamed request bodies through the Router (``stream=True``) on every backend.

Plain and ``async def`` handlers both read ``ctx.body_stream()``; the server reads
the socket only as fast as the handler consumes (flow control), answers
``100 Continue`` on the first read, refuses a body over ``max_stream_body_size``
with 413 mid-stream, and closes (lingering) when a handler answers unread.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import threading
import time

import httpx
import pytest

import zzz
from zzz.body import BodyError

from .rawhttp import SOCKET_TIMEOUT_S, RawClient, assert_still_serving

CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
#: Upload size of the flow-control test: many times the per-connection buffer.
SLOW_UPLOAD_BYTES = 48 * 1024 * 1024


def make_app(progress: dict[str, int] | None = None,
             release: threading.Event | None = None) -> zzz.Router:
    app = zzz.Router()

    @app.get("/")
    def index(ctx: zzz.Context) -> None:
        ctx.text(200, "hello")

    @app.post("/sync", stream=True)
    def sync_digest(ctx: zzz.Context) -> None:
        digest = hashlib.sha256()
        size = 0
        for piece in ctx.body_stream():
            digest.update(piece)
            size += len(piece)
        ctx.json(200, {"size": size, "sha256": digest.hexdigest()})

    @app.post("/async", stream=True)
    async def async_digest(ctx: zzz.Context) -> None:
        digest = hashlib.sha256()
        size = 0
        async for piece in ctx.body_stream():
            digest.update(piece)
            size += len(piece)
        ctx.json(200, {"size": size, "sha256": digest.hexdigest()})

    @app.post("/slow", stream=True)
    async def slow_reader(ctx: zzz.Context) -> None:
        # Reads one piece, then waits: the server must stop reading the socket.
        body = ctx.body_stream()
        first = await body.read()
        assert progress is not None and release is not None
        progress["first"] = len(first)
        while not release.is_set():
            import asyncio

            await asyncio.sleep(0.01)
        size = len(first)
        async for piece in body:
            size += len(piece)
        ctx.json(200, {"size": size})

    @app.post("/refuse", stream=True)
    def refuse(ctx: zzz.Context) -> None:
        ctx.text(403, "no thanks\n")

    @app.post("/guarded", stream=True)
    def guarded(ctx: zzz.Context) -> None:
        try:
            for _ in ctx.body_stream():
                pass
        except BodyError as exc:
            if progress is not None:
                progress["error"] = exc.status or 0
            raise
        ctx.text(200, "read it all\n")

    @app.post("/buffered")
    def buffered(ctx: zzz.Context) -> None:
        ctx.respond(200, "application/octet-stream", ctx.raw_body())

    return app


@pytest.mark.parametrize("path", ["/sync", "/async"])
def test_streamed_upload_arrives_whole(serve, path):
    srv = serve(make_app())
    body = os.urandom(3 * 1024 * 1024 + 17)  # over max_body_size: only streaming takes it
    with httpx.Client(timeout=SOCKET_TIMEOUT_S * 4) as client:
        response = client.post(f"{srv.url}{path}", content=body)
        assert response.status_code == 200, response.text
        assert response.json() == {"size": len(body),
                                   "sha256": hashlib.sha256(body).hexdigest()}
        # Chunked upload (a generator body), then keep-alive goes on.
        pieces = [os.urandom(50_000) for _ in range(20)]
        response = client.post(f"{srv.url}{path}", content=iter(pieces))
        assert response.json()["size"] == sum(len(p) for p in pieces)
        assert client.post(f"{srv.url}/buffered", content=b"abc").content == b"abc"


def test_slow_consumer_holds_back_the_upload(serve):
    """The server stops reading while the handler does not consume: the client's
    send stalls instead of the server buffering the upload."""
    progress: dict[str, int] = {}
    release = threading.Event()
    srv = serve(make_app(progress, release))
    sent = 0
    stalled = False
    with RawClient(srv) as client:
        sock = client.sock
        client.send(b"POST /slow HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n"
                    % SLOW_UPLOAD_BYTES)
        sock.settimeout(0.5)
        piece = b"z" * 65536
        deadline = time.monotonic() + 20
        while sent < SLOW_UPLOAD_BYTES and time.monotonic() < deadline:
            try:
                sent += sock.send(piece[: SLOW_UPLOAD_BYTES - sent])
            except (TimeoutError, BlockingIOError):
                stalled = True
                break
            except OSError:  # an SSL want-write surfaces as a timeout above
                stalled = True
                break
        assert stalled, f"the whole upload went through ({sent} bytes) with nobody reading"
        assert sent < SLOW_UPLOAD_BYTES
        release.set()
        sock.settimeout(SOCKET_TIMEOUT_S)
        while sent < SLOW_UPLOAD_BYTES:
            sent += sock.send(piece[: SLOW_UPLOAD_BYTES - sent])
        response = client.read_response()
    assert response.status == 200
    assert b'"size":%d' % SLOW_UPLOAD_BYTES in response.body


@pytest.mark.parametrize("path", ["/sync", "/async"])
def test_continue_is_sent_on_first_read(serve, path):
    srv = serve(make_app())
    with RawClient(srv) as client:
        client.send(b"POST " + path.encode() + b" HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
                    b"Expect: 100-continue\r\n\r\n")
        assert client._read_exact(len(CONTINUE)) == CONTINUE
        client.send(b"hello")
        response = client.read_response()
    assert response.status == 200
    assert b'"size":5' in response.body


def test_answer_without_reading_sends_no_continue_and_closes(serve):
    srv = serve(make_app())
    with RawClient(srv) as client:
        client.send(b"POST /refuse HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n"
                    b"Expect: 100-continue\r\n\r\n")
        response = client.read_response()
        assert response.status == 403
        assert response.closes
    assert_still_serving(srv)


@pytest.mark.parametrize("path", ["/sync", "/async"])
def test_stream_limit_gives_413_mid_stream(serve, path):
    srv = serve(make_app(), max_stream_body_size=100_000)
    with RawClient(srv) as client:
        client.send(b"POST " + path.encode() + b" HTTP/1.1\r\nHost: x\r\n"
                    b"Transfer-Encoding: chunked\r\n\r\n")
        with contextlib.suppress(OSError):  # the server may close while we still send
            for _ in range(5):
                client.send(b"8000\r\n" + b"q" * 0x8000 + b"\r\n")
        response = client.read_response()
    assert response.status == 413
    assert_still_serving(srv)


def test_stream_limit_from_content_length_before_any_read(serve):
    srv = serve(make_app(), max_stream_body_size=1000)
    with RawClient(srv) as client:
        client.send(b"POST /sync HTTP/1.1\r\nHost: x\r\nContent-Length: 1001\r\n\r\n")
        assert client.read_response().status == 413


def test_handler_sees_the_body_error(serve):
    progress: dict[str, int] = {}
    srv = serve(make_app(progress), max_stream_body_size=10)
    with RawClient(srv) as client:
        client.send(b"POST /guarded HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                    b"5\r\nhello\r\n10\r\n" + b"x" * 16 + b"\r\n0\r\n\r\n")
        assert client.read_response().status == 413
    assert progress.get("error") == 413


def test_client_vanishing_mid_body_leaves_the_server_serving(serve):
    srv = serve(make_app())
    for path in (b"/sync", b"/async"):
        with RawClient(srv) as client:
            client.send(b"POST " + path + b" HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n"
                        b"\r\n" + b"a" * 1000)
    assert_still_serving(srv)
    with httpx.Client(timeout=SOCKET_TIMEOUT_S) as client:
        assert client.post(f"{srv.url}/async", content=b"x" * 10).json()["size"] == 10
