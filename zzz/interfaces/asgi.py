"""ASGI 3 applications (HTTP, WebSocket, lifespan) on zzz's Application contract.

One request is one :class:`HTTPCycle`: the app runs as a task on the loop the
backend runs coroutines on (the event loop itself, or the native backend's
shared loop). ``handle()`` awaits the app until the response head is known, and
usually the whole body with it: a single ``http.response.body`` without
``more_body`` becomes an ordinary response with a Content-Length. Otherwise the
rest of the body becomes the response's async stream, and each ``send()`` waits
until the backend has taken the previous piece — the backend itself waits for
the socket — so an app can never run ahead of a slow client (back-pressure).

``receive()`` streams the request body (``http.request`` with ``more_body``)
from the request's flow-controlled :class:`~zzz.body.RequestBody`, then returns
``http.disconnect`` once the response is complete or the client is gone.
Protocol misuse by the app (a body before the start, two starts, a non-bytes
body, no response at all) becomes a logged 500, or a cut connection when the
head already went out — never a hung connection.

WebSocket: the app's ``websocket.accept`` becomes the 101 answer and zzz's own
WebSocket machinery (limits, heartbeat, 1001 on shutdown) carries the messages;
``websocket.close`` before accepting is a 403. Lifespan: ``startup`` and
``shutdown`` events around serving, with ``state`` copied into every scope; an
app that does not speak lifespan is served without it.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from typing import TYPE_CHECKING, Any

from zzz.body import BodyError
from zzz.http.request import Request
from zzz.http.response import FileBody, Response
from zzz.interfaces import streams_body

if TYPE_CHECKING:
    from zzz.server import Server

log = logging.getLogger("zzz.asgi")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

#: The ASGI versions served.
ASGI_VERSION = {"version": "3.0", "spec_version": "2.4"}
#: Longest wait for the app's lifespan startup/shutdown to complete.
LIFESPAN_TIMEOUT_S = 30.0
#: The body stream's marker for "the app failed mid-response" (the backend cuts).
_FAILED = b"zzz: the ASGI app failed mid-response"
#: A response to an app that broke the protocol before the head went out.
_INTERNAL_ERROR = Response(500, [("Content-Type", "text/plain; charset=utf-8")],
                           b"500 Internal Server Error\n")


class ClientDisconnect(OSError):
    """``send()`` after the client went away (the ASGI spec's OSError subclass)."""


class ProtocolMisuse(RuntimeError):
    """The app broke the ASGI message protocol."""


def _latin1_headers(request: Request) -> list[tuple[bytes, bytes]]:
    # The bytes the engine parsed, names lowered as ASGI wants: no str round trip.
    return [(name.lower(), value) for name, value in request.headers.raw()]


def _response_headers(raw: Any) -> list[tuple[str, str]]:
    headers: list[tuple[str, str]] = []
    for pair in raw or ():
        name, value = pair
        if not isinstance(name, bytes | bytearray) or not isinstance(value, bytes | bytearray):
            raise ProtocolMisuse(f"response header {pair!r} is not a pair of bytes")
        headers.append((bytes(name).decode("latin-1"), bytes(value).decode("latin-1")))
    return headers


class ASGIApplication:
    """The Application contract around one ASGI 3 callable."""

    def __init__(self, app: ASGIApp, root_path: str = "", lifespan: str = "auto") -> None:
        self.app = app
        self.root_path = root_path
        self.lifespan = lifespan
        #: The lifespan state, shallow-copied into every request scope.
        self.state: dict[str, Any] = {}
        self._lifespan: _Lifespan | None = None

    def __repr__(self) -> str:
        return f"<ASGIApplication {self.app!r}>"

    # ------------------------------------------------------------------ contract

    def stream_body(self, request: Request) -> bool:
        """Large or chunked bodies reach receive() as they arrive; small ones whole."""
        return streams_body(request)

    def check_continue(self, request: Request) -> Response | None:
        return None  # streamed bodies: 100 Continue goes out on the first receive()

    def handle(self, request: Request, server: Server) -> Awaitable[Response]:
        if request.upgrade:
            return self._websocket(request, server)
        cycle = HTTPCycle(self, request, server)
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # a native worker thread: the shared loop runs the coroutine
            return cycle.run()
        return cycle.start(loop)  # on an event loop: a future the backend calls back on

    async def startup(self, server: Server) -> None:
        if self.lifespan == "off":
            return
        self._lifespan = _Lifespan(self, server)
        await self._lifespan.startup()

    async def shutdown(self, server: Server) -> None:
        if self._lifespan is not None:
            await self._lifespan.shutdown()

    # ------------------------------------------------------------------ scopes

    def scope(self, request: Request, server: Server, kind: str) -> Scope:
        path = request.path
        host, port = server.address or (server.config.host, server.config.port)
        scheme = request.scheme
        if kind == "websocket":
            scheme = "wss" if scheme == "https" else "ws"
        raw_path = request.raw_path
        return {
            "type": kind,
            "asgi": ASGI_VERSION,
            "http_version": request.http_version,
            "method": request.method,
            "scheme": scheme,
            "path": path,
            "raw_path": raw_path.encode("latin-1"),
            "query_string": request.query_string.encode("latin-1"),
            "root_path": self.root_path,
            "headers": _latin1_headers(request),
            "client": list(request.client) if request.client else None,
            "server": [host, port],
            "state": dict(self.state),
            "extensions": {"http.response.trailers": {}} if kind == "http" else {},
        }

    async def _websocket(self, request: Request, server: Server) -> Response:
        from zzz.interfaces._asgi_websocket import WebSocketCycle

        return await WebSocketCycle(self, request, server).run()


class HTTPCycle:
    """One HTTP request/response exchange with the app."""

    __slots__ = ("_body_done", "_disconnected", "_gone", "_head_ready", "_headers", "_pieces",
                 "_response_done", "_started", "_status", "_task",
                 "_want_trailers", "adapter", "request", "server")

    def __init__(self, adapter: ASGIApplication, request: Request, server: Server) -> None:
        self.adapter = adapter
        self.request = request
        self.server = server
        self._started = False
        self._status = 200
        self._headers: list[tuple[str, str]] = []
        self._response_done = False
        self._body_done = False
        #: The response is complete or the client is gone (receive() → http.disconnect).
        self._gone = False
        #: Created only when the app waits for the disconnect in receive().
        self._disconnected: asyncio.Future[None] | None = None
        #: Resolved with the response once its head is known.
        self._head_ready: asyncio.Future[Response] | None = None
        self._task: asyncio.Task[None] | None = None
        #: Body pieces after the first, taken one at a time by the backend.
        self._pieces: asyncio.Queue[bytes | None] | None = None
        self._want_trailers = False

    def start(self, loop: asyncio.AbstractEventLoop) -> asyncio.Future[Response]:
        """Start the app on ``loop`` (the running one); the future of its response.

        The backend waits on this future with a callback, not a task of its own: a
        complete answer costs one task (the app's) and two loop iterations.
        Cancelling the future (the connection went away) cancels the app.
        """
        head: asyncio.Future[Response] = loop.create_future()
        self._head_ready = head
        scope = self.adapter.scope(self.request, self.server, "http")
        task = loop.create_task(self._call_app(scope))
        self._task = task
        head.add_done_callback(self._head_done)
        return head

    def _head_done(self, head: asyncio.Future[Response]) -> None:
        if head.cancelled():
            self._disconnect()
            task = self._task
            if task is not None and not task.done():
                task.cancel()

    async def run(self) -> Response:
        """The response, awaited (the native backend's shared loop runs this)."""
        return await self.start(asyncio.get_running_loop())

    def _disconnect(self) -> None:
        self._gone = True
        waiter = self._disconnected
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _answer(self, body: bytes, more: bool) -> None:
        """The head is known (and ``body``, all of it unless ``more``): resolve the future."""
        head = self._head_ready
        assert head is not None
        response = Response(self._status, self._headers, b"" if more else body)
        if more:
            self._pieces = asyncio.Queue()
            task = self._task
            assert task is not None
            response.stream = self._rest(body, task)
        if not head.done():
            head.set_result(response)

    async def _call_app(self, scope: Scope) -> None:
        request = self.request
        head = self._head_ready
        assert head is not None
        try:
            await self.adapter.app(scope, self.receive, self.send)
        except asyncio.CancelledError:
            if not head.done():
                head.cancel()
            raise
        except BaseException as exc:
            if not head.done():
                log.error("ASGI app raised for %s %s before its response started",
                          request.method, request.path, exc_info=exc)
                head.set_result(_INTERNAL_ERROR)
            else:
                log.error("ASGI app raised for %s %s after its response started; "
                          "cutting the connection", request.method, request.path, exc_info=exc)
                self._end_body(failed=True)
            return
        if not head.done():
            log.error("ASGI app returned for %s %s without sending a response",
                      request.method, request.path)
            head.set_result(_INTERNAL_ERROR)
        elif not self._response_done:
            log.error("ASGI app returned for %s %s before its body was complete; "
                      "cutting the connection", request.method, request.path)
            self._end_body(failed=True)

    # ------------------------------------------------------------------ receive

    async def receive(self) -> Message:
        body = self.request.body_stream
        if body is not None:
            if not self._body_done:
                try:
                    piece = await body.read()
                except BodyError:  # the client left, or broke a limit (the backend answers)
                    self._body_done = True
                    return {"type": "http.disconnect"}
                if piece:
                    return {"type": "http.request", "body": piece, "more_body": True}
                self._body_done = True
                return {"type": "http.request", "body": b"", "more_body": False}
        elif not self._body_done:
            self._body_done = True
            return {"type": "http.request", "body": self.request.body, "more_body": False}
        if not self._gone:
            waiter = self._disconnected
            if waiter is None:
                waiter = self._disconnected = asyncio.get_running_loop().create_future()
            await waiter
        return {"type": "http.disconnect"}

    # ------------------------------------------------------------------ send

    async def send(self, message: Message) -> None:
        kind = message.get("type")
        head = self._head_ready
        assert head is not None
        if kind == "http.response.start":
            if self._started:
                raise self._misuse("http.response.start sent twice")
            status = message.get("status")
            if not isinstance(status, int) or not 100 <= status <= 999:
                raise self._misuse(f"invalid status {status!r}")
            try:
                self._headers = _response_headers(message.get("headers"))
            except ProtocolMisuse as exc:
                raise self._misuse(str(exc)) from None
            self._status = status
            self._want_trailers = bool(message.get("trailers"))
            self._started = True
            return
        if kind == "http.response.body":
            if not self._started:
                raise self._misuse("http.response.body before http.response.start")
            if self._response_done:
                if self._gone:
                    raise ClientDisconnect("the response is complete or the client is gone")
                raise self._misuse("http.response.body after the response completed")
            body = message.get("body", b"")
            if not isinstance(body, bytes | bytearray | memoryview):
                raise self._misuse(f"response body must be bytes, got {type(body).__name__}")
            more = bool(message.get("more_body", False))
            data = bytes(body)
            if not head.done():
                if not more:
                    self._response_done = True
                    if not self._want_trailers:
                        self._disconnect()
                self._answer(data, more)
                return
            if self._gone and self._pieces is None:
                raise ClientDisconnect("the client is gone")
            await self._put(data)
            if not more:
                self._response_done = True
                await self._put(None)
            return
        if kind == "http.response.trailers":
            if not self._want_trailers:
                raise self._misuse("http.response.trailers without trailers=True in the start")
            return  # accepted; trailers are not sent (the engine frames no trailers yet)
        if kind == "http.response.pathsend":
            path = message.get("path")
            if not self._started or not isinstance(path, str):
                raise self._misuse("http.response.pathsend needs a start and a str path")
            await self._send_path(path)
            return
        raise self._misuse(f"unknown message type {kind!r}")

    async def _send_path(self, path: str) -> None:
        """``http.response.pathsend``: the file as the body, zero-copy — the same
        :class:`~zzz.http.response.FileBody` ``ctx.send_file`` uses (sendfile on plain
        TCP, bounded reads over TLS; the backend closes it)."""
        head = self._head_ready
        assert head is not None
        if head.done():
            raise self._misuse("http.response.pathsend after the body started")
        file = await asyncio.to_thread(open, path, "rb", buffering=0)
        size = os.fstat(file.fileno()).st_size
        self._response_done = True
        self._disconnect()
        head.set_result(Response(self._status, self._headers, file=FileBody(file, 0, size)))

    async def _put(self, item: bytes | None) -> None:
        pieces = self._pieces
        assert pieces is not None
        if self._gone:
            raise ClientDisconnect("the client is gone")
        await pieces.put(item)
        # Wait until the backend took it (and so the socket took the one before).
        await pieces.join()

    def _misuse(self, detail: str) -> ProtocolMisuse:
        log.error("ASGI protocol misuse in %s %s: %s", self.request.method,
                  self.request.path, detail)
        return ProtocolMisuse(detail)

    def _end_body(self, failed: bool) -> None:
        """End the body stream the backend reads (``failed``: it raises, so the
        backend cuts the connection instead of ending the chunked body cleanly)."""
        pieces = self._pieces
        if pieces is not None:
            pieces.put_nowait(_FAILED if failed else None)

    async def _rest(self, first: bytes, task: asyncio.Task[None]) -> AsyncIterator[bytes]:
        """The response body after the head, as the backend writes it."""
        pieces = self._pieces
        assert pieces is not None
        try:
            if first:
                yield first
            while True:
                piece = await pieces.get()
                pieces.task_done()
                if piece is None:
                    return
                if piece is _FAILED:
                    raise ProtocolMisuse("the app failed mid-response")
                if piece:
                    yield piece
        finally:
            self._disconnect()
            # Wake an app blocked in send() on a client that went away.
            while not pieces.empty():
                pieces.get_nowait()
                pieces.task_done()
            if not task.done():
                await asyncio.sleep(0)  # let a finishing app return on its own


class _Lifespan:
    """The lifespan protocol: one long-running app call with startup/shutdown events."""

    def __init__(self, adapter: ASGIApplication, server: Server) -> None:
        self.adapter = adapter
        self.server = server
        self._events: asyncio.Queue[Message] = asyncio.Queue()
        self._answers: asyncio.Queue[Message] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._unsupported = False

    async def startup(self) -> None:
        scope: Scope = {"type": "lifespan", "asgi": ASGI_VERSION, "state": self.adapter.state}
        self._task = asyncio.get_running_loop().create_task(self._run(scope))
        await self._events.put({"type": "lifespan.startup"})
        answer = await self._answer("startup")
        if answer is None:
            return
        if answer["type"] == "lifespan.startup.failed":
            from zzz.errors import StartupError

            raise StartupError(f"ASGI lifespan startup failed: {answer.get('message', '')}")

    async def shutdown(self) -> None:
        if self._unsupported or self._task is None or self._task.done():
            return
        await self._events.put({"type": "lifespan.shutdown"})
        answer = await self._answer("shutdown")
        if answer is not None and answer["type"] == "lifespan.shutdown.failed":
            log.error("ASGI lifespan shutdown failed: %s", answer.get("message", ""))

    async def _answer(self, stage: str) -> Message | None:
        task = self._task
        assert task is not None
        getter = asyncio.ensure_future(self._answers.get())
        done, _ = await asyncio.wait({getter, task}, timeout=LIFESPAN_TIMEOUT_S,
                                     return_when=asyncio.FIRST_COMPLETED)
        if getter in done:
            return getter.result()
        getter.cancel()
        if task in done:
            exc = task.exception()
            if self.adapter.lifespan == "on" or stage == "shutdown":
                from zzz.errors import StartupError

                if stage == "startup":
                    raise StartupError(f"ASGI lifespan startup failed: {exc!r}")
                log.error("ASGI lifespan %s failed: %r", stage, exc)
                return None
            # The spec's path for apps without lifespan: serve them without it.
            self._unsupported = True
            log.info("ASGI app does not support lifespan (%r): serving without it", exc)
            return None
        from zzz.errors import StartupError

        if stage == "startup":
            raise StartupError(f"ASGI lifespan startup did not complete in "
                               f"{LIFESPAN_TIMEOUT_S:.0f} s")
        log.error("ASGI lifespan shutdown did not complete in %.0f s", LIFESPAN_TIMEOUT_S)
        return None

    async def _run(self, scope: Scope) -> None:
        await self.adapter.app(scope, self._events.get, self._send)

    async def _send(self, message: Message) -> None:
        await self._answers.put(message)


def adapt(app: Any, config: Any = None) -> ASGIApplication:
    root_path = getattr(config, "root_path", "") if config is not None else ""
    lifespan = getattr(config, "lifespan", "auto") if config is not None else "auto"
    return ASGIApplication(app, root_path, lifespan)

