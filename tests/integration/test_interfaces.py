"""ASGI and WSGI adapters on every backend: the protocol details frameworks hide.

Scope and environ contents, app misuse answered with a logged 500 (never a hang),
``close()`` of a WSGI iterable always called, ``wsgi.file_wrapper`` sent with
sendfile, ASGI ``http.disconnect``, WebSocket accept/reject/subprotocols, and a
large streamed upload through each interface with the server's memory flat.
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
from typing import Any

import httpx
import pytest

from .rawhttp import SOCKET_TIMEOUT_S, RawClient

#: Upload of the memory test: scaled down by default, 1 GiB with ZZZ_FULL_UPLOAD=1.
UPLOAD_BYTES = (1024 if os.environ.get("ZZZ_FULL_UPLOAD") else 96) * 1024 * 1024
#: Largest RSS growth allowed while that upload streams through (issue 9: < 64 MiB).
RSS_GROWTH_LIMIT = 64 * 1024 * 1024


def rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


# ---------------------------------------------------------------------- scope / environ


def test_asgi_scope_is_complete(serve):
    seen: dict[str, Any] = {}

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            return  # an app without lifespan support: served without it
        seen.update(scope)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    srv = serve(app, root_path="/mount")
    with RawClient(srv) as client:
        client.send(b"GET /mount/a%20b/c?x=1&y=%20 HTTP/1.1\r\nHost: example.org\r\n"
                    b"X-Dup: 1\r\nX-Dup: 2\r\n\r\n")
        assert client.read_response().status == 200
    assert seen["type"] == "http"
    assert seen["asgi"]["version"] == "3.0"
    assert seen["http_version"] == "1.1"
    assert seen["method"] == "GET"
    assert seen["scheme"] == srv.url.split(":")[0]
    assert seen["path"] == "/mount/a b/c"
    assert seen["raw_path"] == b"/mount/a%20b/c"
    assert seen["query_string"] == b"x=1&y=%20"
    assert seen["root_path"] == "/mount"
    assert seen["headers"][:3] == [(b"host", b"example.org"), (b"x-dup", b"1"), (b"x-dup", b"2")]
    assert seen["client"][0] == "127.0.0.1"
    assert seen["server"] == ["127.0.0.1", srv.port]


def test_wsgi_environ_is_complete(serve):
    seen: dict[str, Any] = {}

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        seen.update(environ)
        seen["body"] = environ["wsgi.input"].read()
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]

    srv = serve(app, root_path="/mount")
    with RawClient(srv) as client:
        client.send(b"POST /mount/a%20b?x=1 HTTP/1.1\r\nHost: example.org\r\n"
                    b"Content-Type: text/plain\r\nContent-Length: 5\r\n"
                    b"X-Dup: 1\r\nX-Dup: 2\r\nCookie: a=1\r\nCookie: b=2\r\n\r\nhello")
        assert client.read_response().status == 200
    assert seen["REQUEST_METHOD"] == "POST"
    assert seen["SCRIPT_NAME"] == "/mount"
    assert seen["PATH_INFO"] == "/a b"
    assert seen["QUERY_STRING"] == "x=1"
    assert seen["CONTENT_TYPE"] == "text/plain"
    assert seen["CONTENT_LENGTH"] == "5"
    assert seen["SERVER_PROTOCOL"] == "HTTP/1.1"
    assert seen["SERVER_PORT"] == str(srv.port)
    assert seen["REMOTE_ADDR"] == "127.0.0.1"
    assert seen["HTTP_X_DUP"] == "1, 2"
    assert seen["HTTP_COOKIE"] == "a=1; b=2"
    assert seen["wsgi.url_scheme"] == srv.url.split(":")[0]
    assert seen["wsgi.version"] == (1, 0)
    assert seen["wsgi.multithread"] is True
    assert seen["body"] == b"hello"


# ---------------------------------------------------------------------- misuse


@pytest.mark.parametrize("mistake", ["body-first", "start-twice", "str-body", "no-response",
                                     "raises"])
def test_asgi_misuse_is_a_logged_500(serve, mistake, caplog):
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            return
        start = {"type": "http.response.start", "status": 200, "headers": []}
        if mistake == "body-first":
            await send({"type": "http.response.body", "body": b"x"})
        elif mistake == "start-twice":
            await send(start)
            await send(start)
        elif mistake == "str-body":
            await send(start)
            await send({"type": "http.response.body", "body": "text"})
        elif mistake == "raises":
            raise RuntimeError("secret-internal-detail")

    srv = serve(app)
    with httpx.Client(timeout=SOCKET_TIMEOUT_S) as client:
        response = client.get(f"{srv.url}/x")
    assert response.status_code == 500
    assert b"secret" not in response.content
    assert any("ASGI" in r.getMessage() for r in caplog.records)


def test_asgi_failure_after_the_head_cuts_the_connection(serve):
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            return
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"part", "more_body": True})
        raise RuntimeError("mid-body")

    srv = serve(app)
    with RawClient(srv) as client:
        client.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        data = client.read_until_close()
    assert data.startswith(b"HTTP/1.1 200")
    assert not data.endswith(b"0\r\n\r\n")  # never a clean end of a broken body


def test_asgi_disconnect_after_the_response(serve):
    events: list[str] = []
    done = threading.Event()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            return
        events.append((await receive())["type"])
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"bye"})
        events.append((await asyncio.wait_for(receive(), SOCKET_TIMEOUT_S))["type"])
        done.set()

    srv = serve(app)
    with httpx.Client(timeout=SOCKET_TIMEOUT_S) as client:
        assert client.get(f"{srv.url}/").text == "bye"
    assert done.wait(SOCKET_TIMEOUT_S)
    assert events == ["http.request", "http.disconnect"]


@pytest.mark.parametrize("mistake", ["crlf-header", "bad-status", "no-start", "raises"])
def test_wsgi_misuse_is_a_500_never_a_split_response(serve, mistake):
    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        if mistake == "crlf-header":
            start_response("200 OK", [("X-Evil", "a\r\nSet-Cookie: pwned=1")])
        elif mistake == "bad-status":
            start_response("two hundred", [])
        elif mistake == "raises":
            raise RuntimeError("secret-internal-detail")
        return [b"body"]

    srv = serve(app)
    with RawClient(srv) as client:
        client.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        response = client.read_response()
    assert response.status == 500
    assert response.header("set-cookie") is None
    assert b"secret" not in response.body
    assert_still_serving_wsgi(srv)


def assert_still_serving_wsgi(srv: Any) -> None:
    with httpx.Client(timeout=SOCKET_TIMEOUT_S) as client:
        assert client.get(f"{srv.url}/").status_code == 500  # same app, same bug


def test_wsgi_iterable_close_is_always_called(serve):
    closed: list[str] = []

    class Body:
        def __init__(self, name: str, pieces: int) -> None:
            self.name, self.pieces = name, pieces

        def __iter__(self) -> Any:
            for i in range(self.pieces):
                yield b"x" * 65536 if i else b"first"

        def close(self) -> None:
            closed.append(self.name)

    def app(environ: dict[str, Any], start_response: Any) -> Any:
        start_response("200 OK", [("Content-Type", "text/plain")])
        return Body(environ["PATH_INFO"], 2000 if environ["PATH_INFO"] == "/big" else 3)

    srv = serve(app)
    with httpx.Client(timeout=SOCKET_TIMEOUT_S) as client:
        assert client.get(f"{srv.url}/small").status_code == 200
    with RawClient(srv) as client:  # a client that goes away mid-body
        client.send(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
        client.sock.recv(100)
    deadline = time.monotonic() + SOCKET_TIMEOUT_S
    while "/big" not in closed and time.monotonic() < deadline:
        time.sleep(0.02)
    assert "/small" in closed and "/big" in closed


def test_wsgi_iterable_closed_when_the_client_leaves_during_next(serve):
    """The client goes away while a thread is inside the iterable's next(): close()
    still comes once that piece is produced (a running generator cannot be closed)."""
    closed = threading.Event()
    producing = threading.Event()

    class Body:
        def __iter__(self) -> Any:
            yield b"first"
            producing.set()
            time.sleep(0.5)  # the client leaves meanwhile
            for _ in range(1000):
                yield b"x" * 65536

        def close(self) -> None:
            closed.set()

    def app(environ: dict[str, Any], start_response: Any) -> Any:
        start_response("200 OK", [("Content-Type", "text/plain")])
        return Body() if environ["PATH_INFO"] == "/slow" else [b"ok"]

    srv = serve(app)
    with RawClient(srv) as client:
        client.send(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
        client.sock.recv(100)
        assert producing.wait(SOCKET_TIMEOUT_S)
    assert closed.wait(SOCKET_TIMEOUT_S)
    with httpx.Client(timeout=SOCKET_TIMEOUT_S) as client:  # still serving
        assert client.get(f"{srv.url}/").status_code == 200


def spy_sendfile(monkeypatch: Any) -> list[int]:
    """Count the bytes each ``os.sendfile`` call is asked for (the server's calls too)."""
    calls: list[int] = []
    real = os.sendfile

    def spy(out_fd: int, in_fd: int, offset: int | None, count: int) -> int:
        calls.append(count)
        return real(out_fd, in_fd, offset, count)

    monkeypatch.setattr(os, "sendfile", spy)
    return calls


def test_wsgi_file_wrapper_uses_sendfile(serve, tmp_path, monkeypatch):
    payload = os.urandom(3 * 1024 * 1024)
    path = tmp_path / "blob.bin"
    path.write_bytes(payload)
    calls = spy_sendfile(monkeypatch)

    def app(environ: dict[str, Any], start_response: Any) -> Any:
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return environ["wsgi.file_wrapper"](open(path, "rb"))

    srv = serve(app)
    with httpx.Client(timeout=SOCKET_TIMEOUT_S) as client:
        response = client.get(f"{srv.url}/")
    assert response.content == payload
    assert response.headers["content-length"] == str(len(payload))
    if srv.transport == "tcp":
        assert calls, "os.sendfile was not used"


# ---------------------------------------------------------------------- WebSocket


def test_asgi_websocket_reject_is_403_and_subprotocol_is_chosen(serve):
    import websockets

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            return
        assert scope["type"] == "websocket"
        await receive()  # websocket.connect
        if scope["path"] == "/deny":
            await send({"type": "websocket.close", "code": 1008})
            return
        await send({"type": "websocket.accept", "subprotocol": "chat.v2"})
        message = await receive()
        await send({"type": "websocket.send", "text": json.dumps(
            {"got": message.get("text"), "offered": scope["subprotocols"]})})
        closing = await receive()
        assert closing["type"] == "websocket.disconnect"

    srv = serve(app)
    base = srv.url.replace("http", "ws", 1)

    async def talk() -> tuple[str | None, str]:
        async with websockets.connect(base + "/chat", subprotocols=["chat.v1", "chat.v2"],
                                      open_timeout=SOCKET_TIMEOUT_S) as ws:
            await ws.send("hi")
            return ws.subprotocol, str(await asyncio.wait_for(ws.recv(), SOCKET_TIMEOUT_S))

    async def denied() -> int:
        try:
            async with websockets.connect(base + "/deny", open_timeout=SOCKET_TIMEOUT_S):
                return 101
        except websockets.InvalidStatus as exc:
            return exc.response.status_code

    chosen, answer = asyncio.run(talk())
    assert chosen == "chat.v2"
    assert json.loads(answer) == {"got": "hi", "offered": ["chat.v1", "chat.v2"]}
    assert asyncio.run(denied()) == 403


# ---------------------------------------------------------------------- memory


def _upload_apps() -> dict[str, Any]:
    async def asgi(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            return
        size = 0
        while True:
            message = await receive()
            size += len(message.get("body", b""))
            if not message.get("more_body"):
                break
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": str(size).encode()})

    def wsgi(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        size = 0
        while piece := environ["wsgi.input"].read(65536):
            size += len(piece)
        start_response("200 OK", [])
        return [str(size).encode()]

    import zzz

    router = zzz.Router()

    @router.post("/", stream=True)
    async def upload(ctx: zzz.Context) -> None:
        size = 0
        async for piece in ctx.body_stream():
            size += len(piece)
        ctx.text(200, str(size))

    return {"asgi": asgi, "wsgi": wsgi, "zzz": router}


@pytest.mark.parametrize("kind", ["zzz", "asgi", "wsgi"])
def test_large_streamed_upload_keeps_memory_flat(serve, kind):
    srv = serve(_upload_apps()[kind])
    piece = b"u" * (1024 * 1024)
    before = rss_bytes()
    peak = before
    with RawClient(srv, timeout=SOCKET_TIMEOUT_S * 6) as client:
        client.send(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % UPLOAD_BYTES)
        for i in range(UPLOAD_BYTES // len(piece)):
            client.send(piece)
            if i % 16 == 0:
                peak = max(peak, rss_bytes())
        response = client.read_response()
    peak = max(peak, rss_bytes())
    assert response.status == 200
    assert response.body == str(UPLOAD_BYTES).encode()
    assert peak - before < RSS_GROWTH_LIMIT, f"RSS grew by {(peak - before) >> 20} MiB"


@pytest.mark.parametrize("body", [42, None, "text", {"a": 1}])
def test_non_bytes_body_from_any_application_is_a_logged_500(serve, body, caplog):
    """An Application that bypasses the Context's checks: the engine answers a 500
    and logs method, path and handler — never a dropped connection."""
    from zzz.http.response import Response

    class RawApp:
        def handle(self, request: Any, server: Any) -> Response:
            request.extensions["zzz.handler"] = "RawApp.handle"
            return Response(200, [], body)  # type: ignore[arg-type]

        def check_continue(self, request: Any) -> None:
            return None

    srv = serve(RawApp())
    with RawClient(srv) as client:
        client.send(b"GET /thing HTTP/1.1\r\nHost: x\r\n\r\n")
        assert client.read_response().status == 500
    messages = [r.getMessage() for r in caplog.records if r.name == "zzz.app"]
    assert any("GET /thing" in m and "RawApp.handle" in m and type(body).__name__ in m
               for m in messages), messages


def test_asgi_pathsend_is_a_zero_copy_file_body(serve, tmp_path, monkeypatch):
    """``http.response.pathsend`` goes out as the same FileBody ``ctx.send_file`` uses."""
    payload = os.urandom(2 * 1024 * 1024 + 3)
    path = tmp_path / "blob.bin"
    path.write_bytes(payload)
    calls = spy_sendfile(monkeypatch)

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            return
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/octet-stream")]})
        await send({"type": "http.response.pathsend", "path": str(path)})

    srv = serve(app)
    with httpx.Client(timeout=SOCKET_TIMEOUT_S) as client:
        response = client.get(f"{srv.url}/")
        assert response.content == payload
        assert response.headers["content-length"] == str(len(payload))
        assert client.get(f"{srv.url}/").content == payload  # keep-alive goes on
    if srv.transport == "tcp":
        assert calls, "os.sendfile was not used"
