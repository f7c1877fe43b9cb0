"""ASGI and WSGI twins of the Router test app (``apps.app``), route for route, so the
integration suite runs the same tests once per interface (the ``interface`` axis).

Routes: ``GET /`` (``hello``), ``POST /echo``, ``GET /header?name=``, ``GET /users/<id>``
(405 with ``Allow`` for other methods), ``GET /boom`` (raises), ``GET /stream?n=``,
``GET /slow?ms=``; anything else is 404. Written against the raw interfaces (no
framework), so what is tested is zzz's adapter, not a framework's.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any
from urllib.parse import parse_qs

from .apps import HELLO, MAX_SLOW_MS

Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


#: Methods the twins know; like the Router, another token method is a 501 where no
#: route has it and a 405 (with Allow) where the path exists.
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH"})
PATHS = frozenset({"/", "/echo", "/header", "/boom", "/stream", "/slow"})


def _unknown_method(method: str, path: str) -> tuple[str, list[tuple[str, str]]] | None:
    """``(status, headers)`` for a method the twins do not implement, else None."""
    if method in KNOWN_METHODS:
        return None
    if path in PATHS or (path.startswith("/users/") and path.count("/") == 2):
        allow = "POST" if path == "/echo" else "GET, HEAD"
        return "405 Method Not Allowed", [("Allow", allow)]
    return "501 Not Implemented", []


def _query(raw: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(raw).items()}


# ---------------------------------------------------------------------- ASGI


async def asgi_app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            else:
                await send({"type": "lifespan.shutdown.complete"})
                return
    assert scope["type"] == "http"
    path, method = scope["path"], scope["method"]
    query = _query(scope["query_string"].decode("latin-1"))
    headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}

    async def answer(status: int, body: bytes, content_type: str = "text/plain",
                     extra: list[tuple[bytes, bytes]] | None = None) -> None:
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", content_type.encode()), *(extra or [])]})
        await send({"type": "http.response.body", "body": body})

    refused = _unknown_method(method, path)
    if refused is not None:
        status, extra = refused
        await answer(int(status[:3]), status.encode() + b"\n",
                     extra=[(k.lower().encode(), v.encode()) for k, v in extra])
    elif path == "/" and method in ("GET", "HEAD"):
        await answer(200, HELLO.encode())
    elif path == "/echo" and method == "POST":
        parts = []
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            parts.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        body = b"".join(parts)
        await answer(200, body, "application/octet-stream",
                     [(b"x-body-length", str(len(body)).encode())])
    elif path == "/header" and method == "GET":
        await answer(200, headers.get(query.get("name", "").lower(), "").encode())
    elif path.startswith("/users/") and path.count("/") == 2:
        if method not in ("GET", "HEAD"):
            await answer(405, b"405 Method Not Allowed\n", extra=[(b"allow", b"GET, HEAD")])
        else:
            payload = {"id": path.rsplit("/", 1)[1], "q": query.get("q")}
            await answer(200, json.dumps(payload).encode(), "application/json")
    elif path == "/boom":
        raise RuntimeError("secret-internal-detail")
    elif path == "/stream":
        count = int(query.get("n", "5"))
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/plain")]})
        for i in range(count):
            await send({"type": "http.response.body", "body": f"piece {i}\n".encode(),
                        "more_body": True})
        await send({"type": "http.response.body", "body": b""})
    elif path == "/slow":
        ms = min(int(query.get("ms", "800")), MAX_SLOW_MS)
        await asyncio.sleep(ms / 1000.0)
        await answer(200, f"slept {ms}".encode())
    else:
        await answer(404, b"404 Not Found\n")


# ---------------------------------------------------------------------- WSGI


def wsgi_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
    path, method = environ["PATH_INFO"], environ["REQUEST_METHOD"]
    query = _query(environ.get("QUERY_STRING", ""))

    def answer(status: str, body: bytes, content_type: str = "text/plain",
               extra: list[tuple[str, str]] | None = None) -> list[bytes]:
        start_response(status, [("Content-Type", content_type), *(extra or [])])
        return [body]

    refused = _unknown_method(method, path)
    if refused is not None:
        return answer(refused[0], refused[0].encode() + b"\n", extra=refused[1])
    if path == "/" and method in ("GET", "HEAD"):
        return answer("200 OK", HELLO.encode())
    if path == "/echo" and method == "POST":
        body = environ["wsgi.input"].read()
        return answer("200 OK", body, "application/octet-stream",
                      [("X-Body-Length", str(len(body)))])
    if path == "/header" and method == "GET":
        key = "HTTP_" + query.get("name", "").upper().replace("-", "_")
        return answer("200 OK", environ.get(key, "").encode("latin-1"))
    if path.startswith("/users/") and path.count("/") == 2:
        if method not in ("GET", "HEAD"):
            return answer("405 Method Not Allowed", b"405 Method Not Allowed\n",
                          extra=[("Allow", "GET, HEAD")])
        payload = {"id": path.rsplit("/", 1)[1], "q": query.get("q")}
        return answer("200 OK", json.dumps(payload).encode(), "application/json")
    if path == "/boom":
        raise RuntimeError("secret-internal-detail")
    if path == "/stream":
        count = int(query.get("n", "5"))
        start_response("200 OK", [("Content-Type", "text/plain")])

        def pieces() -> Iterator[bytes]:
            for i in range(count):
                yield f"piece {i}\n".encode()

        return pieces()
    if path == "/slow":
        ms = min(int(query.get("ms", "800")), MAX_SLOW_MS)
        time.sleep(ms / 1000.0)
        return answer("200 OK", f"slept {ms}".encode())
    return answer("404 Not Found", b"404 Not Found\n")


#: The twin of ``apps.app`` per interface.
TWINS: dict[str, Any] = {"asgi": asgi_app, "wsgi": wsgi_app}
