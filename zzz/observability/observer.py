"""The Observer: what the server and the backends report, and the probes answered early.

One :class:`Observer` per :class:`~zzz.server.Server` (``server.observer``).
It sees requests by *wrapping* the application entry point: when any of
access log, metrics or a probe path is on, ``server.handle`` is replaced once,
at construction, by :meth:`Observer.handle`; otherwise it is left untouched
and a request pays nothing at all. The wrapper:

1. answers the probe paths (health, readiness, metrics) before the
   application is called — the application never sees them and the access
   log mentions them at DEBUG only;
2. times the application call and records the response when it is produced:
   at once for a body, at the last chunk (or the stream's ``close``) for a
   streamed body, when the coroutine finishes for ``async`` handlers, with
   status 500 when the application raised;
3. wraps a WebSocket endpoint's callbacks to count connections and messages.

Because it wraps ``Server.handle``, it works for every application interface
the backends serve (the Router, ASGI/WSGI adapters). What the application
never sees comes from a handful of one-line backend hooks:
:meth:`connection_opened`, :meth:`bad_request`, :meth:`tls_failed` and
:meth:`attach_backend` (levels such as queue depth are read from the backend
object at scrape time). These are cheap method calls per connection or per
error, never per request.

Readiness is :meth:`is_ready`: false from the instant :meth:`begin_drain`
runs (``Server.shutdown`` calls it first), while the server is not yet
listening, or while a user check (:meth:`add_ready_check`) fails. With
``drain_delay_ms`` the listener keeps accepting for that long after
readiness turned 503, so a load balancer can take the instance out of
rotation before connections are refused.
"""

from __future__ import annotations

import copy
import logging
import os
import threading
import time
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

from zzz.http.request import Request
from zzz.http.response import Response
from zzz.observability.lines import LinePath, json_str
from zzz.observability.logs import ACCESS_LOGGER

if TYPE_CHECKING:
    from zzz.observability.admin import AdminListener
    from zzz.observability.metrics import RequestShard, ServerMetrics, ShardedRecorder
    from zzz.server import Server

log = logging.getLogger("zzz.server")
access_log = logging.getLogger(ACCESS_LOGGER)

Handle = Callable[[Request], "Response | Awaitable[Response]"]
#: A user readiness check: true while this instance should receive traffic.
ReadyCheck = Callable[[], bool]

#: Interval of the event-loop lag probe: often enough to catch a handler that blocks
#: the loop for a fraction of a second, rare enough to cost nothing (one timer call).
LAG_PROBE_MS = 250
#: Methods a probe path answers; others go on to the application.
PROBE_METHODS = frozenset({"GET", "HEAD"})
#: Request/response header carrying a request id, as the request_id middleware sets it.
REQUEST_ID_HEADER = "x-request-id"
_REQUEST_ID_NEEDLE = REQUEST_ID_HEADER.encode("latin-1")
#: Probe answers must never be cached by a proxy: a stale 200 would hide a drain.
_NO_STORE = ("Cache-Control", "no-store")
_TEXT = ("Content-Type", "text/plain; charset=utf-8")


class Observer:
    """Observability of one server; see the module docstring."""

    def __init__(self, server: Server) -> None:
        self.server = server
        config = server.config.observability
        self.config = config
        self.metrics: ServerMetrics | None = None
        #: The metrics' per-thread recorder, read directly per request (None in
        #: multiprocess mode, whose recorder writes prometheus_client's files).
        self._sharded: ShardedRecorder | None = None
        if config.metrics_enabled:
            from zzz.observability.metrics import ServerMetrics, ShardedRecorder

            self.metrics = ServerMetrics()
            if isinstance(self.metrics.recorder, ShardedRecorder):
                self._sharded = self.metrics.recorder
        self.access = config.access_log
        self._lines = LinePath(access_log, logging.INFO)
        self.draining = False
        self._ready_checks: list[ReadyCheck] = []
        self._drain_lock = threading.RLock()  # re-entered from a signal handler
        self._delay_timer: threading.Timer | None = None
        self.admin: AdminListener | None = None
        self._lag_due = 0.0
        #: Probe path → answer, on the app port.
        self.probes: dict[str, Callable[[], Response]] = {}
        if config.health_path:
            self.probes[config.health_path] = self.health_response
        if config.ready_path:
            self.probes[config.ready_path] = self.ready_response
        if config.metrics_path:
            self.probes[config.metrics_path] = self.metrics_response
        #: Whether :meth:`wrap` replaces the entry point (anything per request to do).
        self.enabled = bool(self.metrics is not None or self.access or self.probes)
        self._inner: Handle | None = None

    # ------------------------------------------------------------------ lifecycle (Server)

    def wrap(self, handle: Handle) -> Handle:
        """The entry point backends call: ``handle`` itself when nothing is observed."""
        if not self.enabled:
            return handle
        self._inner = handle
        return self.handle

    def start(self) -> None:
        """Before the backend listens: the admin listener, the loop-lag probe."""
        config = self.config
        if config.metrics_port is not None:
            from zzz.observability.admin import AdminListener

            self.admin = AdminListener(self, self.server.config.host, config.metrics_port)
            self.admin.start()
            log.info("admin listener on port %d (metrics, health, readiness)",
                     self.admin.port, extra={"event": "admin_start", "port": self.admin.port})
        if self.metrics is not None and self.server.backend_name == "eventloop":
            self._lag_due = time.monotonic() + LAG_PROBE_MS / 1000.0
            self.server.add_timer(LAG_PROBE_MS, self._probe_lag, repeat=True)

    def stop(self) -> None:
        """After the backend stopped (the process is about to exit): close the admin port."""
        timer = self._delay_timer
        if timer is not None:
            timer.cancel()
        if self.admin is not None:
            self.admin.close()

    def begin_drain(self, stop_accepting: Callable[[], None]) -> bool:
        """Readiness off now. True when ``stop_accepting`` was deferred by ``drain_delay_ms``
        (the caller must not run it); False: the caller runs it at once."""
        with self._drain_lock:
            first = not self.draining
            self.draining = True
            delay = self.config.drain_delay_ms
            if first:
                log.info("drain begins: readiness now 503%s",
                         f"; listener closes in {delay} ms" if delay else "",
                         extra={"event": "drain", "drain_delay_ms": delay})
            if delay <= 0 or not self.server.ready.is_set():
                return False
            if self._delay_timer is None:
                self._delay_timer = threading.Timer(delay / 1000.0, stop_accepting)
                self._delay_timer.name = "zzz-drain-delay"
                self._delay_timer.daemon = True
                self._delay_timer.start()
            return True

    # ------------------------------------------------------------------ readiness

    def add_ready_check(self, check: ReadyCheck) -> None:
        """Readiness is 503 while ``check()`` returns false (or raises)."""
        self._ready_checks.append(check)

    def is_ready(self) -> bool:
        server = self.server
        if self.draining or server.shutting_down.is_set() or not server.ready.is_set():
            return False
        for check in self._ready_checks:
            try:
                if not check():
                    return False
            except Exception:
                log.exception("readiness check %r failed", check)
                return False
        return True

    def health_response(self) -> Response:
        return Response(200, [_TEXT, _NO_STORE], b"ok\n")

    def ready_response(self) -> Response:
        if self.is_ready():
            return Response(200, [_TEXT, _NO_STORE], b"ready\n")
        return Response(503, [_TEXT, _NO_STORE], b"not ready\n")

    def metrics_response(self) -> Response:
        from zzz.observability.metrics import CONTENT_TYPE

        assert self.metrics is not None
        return Response(200, [("Content-Type", CONTENT_TYPE), _NO_STORE],
                        self.metrics.exposition())

    # ------------------------------------------------------------------ backend hooks

    def attach_backend(self, backend: object) -> None:
        """The running backend object, whose levels are read at scrape time."""
        if self.metrics is not None:
            self.metrics.backend.backend = backend

    def connection_opened(self) -> None:
        if self.metrics is not None:
            self.metrics.recorder.accepted()

    def bad_request(self, status: int) -> None:
        """The engine refused a request (400, 408, 413, 414, 431, ...)."""
        if self.metrics is not None:
            self.metrics.bad_requests.labels(str(status)).inc()

    def tls_failed(self) -> None:
        """A TLS handshake failed or timed out (may be called from ``__del__``)."""
        if self.metrics is not None:
            self.metrics.tls_failed()

    # ------------------------------------------------------------------ per request

    def handle(self, request: Request) -> Response | Awaitable[Response]:
        """``server.handle`` when observing: probes first, then the timed application."""
        probe = self.probes.get(request.path)
        if probe is not None and request.method in PROBE_METHODS:
            if self.access and access_log.isEnabledFor(logging.DEBUG):
                access_log.debug("probe %s %s", request.method, request.path)
            return probe()
        start = time.perf_counter_ns()
        sharded = self._sharded
        shard = None
        if sharded is not None:
            try:
                shard = sharded.local.shard
            except AttributeError:
                shard = sharded.shard()
            shard.started += 1
        elif self.metrics is not None:
            self.metrics.recorder.started()
        inner = self._inner
        assert inner is not None
        try:
            result = inner(request)
        except BaseException:
            self.finish(request, None, 500, 0, start)
            raise
        if result.__class__ is Response and result.upgrade is None and result.stream is None:
            # _produced's plain case without its call (this runs per request), and the
            # thread's shard looked up once.
            size = 0 if request.method == "HEAD" else len(result.body)
            self.finish(request, result, result.status, size, start, shard)
            return result
        if isinstance(result, Response):
            return self._produced(request, result, start)
        return self._awaited(request, result, start)

    async def _awaited(self, request: Request, result: Awaitable[Response],
                       start: int) -> Response:
        try:
            response = await result
        except BaseException:
            self.finish(request, None, 500, 0, start)
            raise
        return self._produced(request, response, start)

    def _produced(self, request: Request, response: Response, start: int) -> Response:
        if response.upgrade is not None:
            self._count_websocket(response)
            self.finish(request, response, response.status, 0, start)
        elif response.stream is not None and request.method != "HEAD":
            stream = response.stream
            if isinstance(stream, AsyncIterable):
                response.stream = _CountedAsyncStream(self, request, response, start, stream)
            else:
                response.stream = _CountedStream(self, request, response, start, stream)
        else:
            size = 0 if request.method == "HEAD" else len(response.body)
            self.finish(request, response, response.status, size, start)
        return response

    def finish(self, request: Request, response: Response | None, status: int,
               size: int, start: int, shard: RequestShard | None = None) -> None:
        """Record one answered request (once per request); ``shard``: the calling
        thread's, when the caller has it already."""
        duration_ns = time.perf_counter_ns() - start
        if shard is not None:
            shard.finished(request.method, status, duration_ns, size)
        elif self.metrics is not None:
            self.metrics.recorder.finished(request.method, status, duration_ns, size)
        if self.access and access_log.isEnabledFor(logging.INFO):
            _log_access(self._lines, request, response, status, size, duration_ns // 1000)

    def _count_websocket(self, response: Response) -> None:
        metrics = self.metrics
        endpoint = getattr(response.upgrade, "endpoint", None)
        if metrics is None or endpoint is None:
            return
        counted = copy.copy(endpoint)
        on_open, on_message, on_close = endpoint.on_open, endpoint.on_message, endpoint.on_close

        def opened(ws: Any) -> Any:
            metrics.ws_opened.inc()
            metrics.ws_open.inc()
            return on_open(ws) if on_open is not None else None

        def received(ws: Any, message: Any) -> Any:
            metrics.recorder.ws_message()
            return on_message(ws, message) if on_message is not None else None

        def closed(ws: Any, code: int, reason: str) -> Any:
            metrics.ws_open.dec()
            return on_close(ws, code, reason) if on_close is not None else None

        counted.on_open, counted.on_message, counted.on_close = opened, received, closed
        response.upgrade.endpoint = counted

    def _probe_lag(self) -> None:
        """Runs on the event loop every LAG_PROBE_MS: how late it ran is the loop lag."""
        now = time.monotonic()
        if self.metrics is not None:
            self.metrics.loop_lag.observe(max(0.0, now - self._lag_due))
        self._lag_due = now + LAG_PROBE_MS / 1000.0


def _log_access(lines: LinePath, request: Request, response: Response | None, status: int,
                size: int, duration_us: int) -> None:
    headers = request.headers
    request_id = headers.first(_REQUEST_ID_NEEDLE)
    if request_id is None and response is not None:
        for name, value in response.headers:
            if name.lower() == REQUEST_ID_HEADER:
                request_id = value
                break
    client = request.client
    where = f"{client[0]}:{client[1]}" if client else "-"
    agent = headers.first(b"user-agent")
    method = request.method
    path = request.raw_path
    version = request.http_version
    message = (f'{where} "{method} {path} HTTP/{version}" {status} {size}B {duration_us}us '
               f'rid={request_id or "-"} "{agent or "-"}"')
    now = time.time()
    handler = lines.handler(now)
    if handler is not None:
        # The line zzz's own handler would write for the record below, without the record.
        if handler.json:
            handler.write(
                f'{{"timestamp": "{handler.stamp(now)}", "level": "info", "logger": "zzz.access", '
                f'"message": {json_str(message)}, "method": {json_str(method)}, '
                f'"path": {json_str(path)}, "status": {status}, "duration_us": {duration_us}, '
                f'"bytes": {size}, "client": {json_str(where)}, '
                f'"request_id": {"null" if request_id is None else json_str(request_id)}, '
                f'"user_agent": {"null" if agent is None else json_str(agent)}, '
                f'"http_version": {json_str(version)}}}\n')
        else:
            handler.write(f"{handler.stamp(now)} INFO zzz.access: {message}\n")
        return
    # The record is made directly: ``Logger.info`` would walk the stack for a caller
    # nobody reads. Its fields are attributes (``extra``) for any handler to use.
    access_log.handle(_AccessRecord(now, message, {
        "method": method, "path": path, "status": status, "duration_us": duration_us,
        "bytes": size, "client": where, "request_id": request_id,
        "user_agent": agent, "http_version": version}))


class _AccessRecord(logging.LogRecord):
    """A ``LogRecord`` for one access line, made without ``LogRecord.__init__``.

    The stock constructor splits the source path, looks up the thread, process and
    task names and walks ``args`` for every record: several microseconds per request
    for fields an access line never varies. Here the constant fields are computed
    once (:data:`_ACCESS_CONSTANTS`) and only the time, thread and message are set,
    so every handler and formatter still sees a complete record.
    """

    def __init__(self, now: float, message: str, fields: dict[str, Any]) -> None:
        attrs = self.__dict__
        attrs.update(_ACCESS_CONSTANTS)
        attrs.update(fields)
        self.msg = message
        self.created = now
        self.msecs = (now - int(now)) * 1000
        self.relativeCreated = (now - _START_TIME) * 1000
        self.thread = threading.get_ident()
        self.threadName = threading.current_thread().name
        self.process = _PID


#: The fields of every access record that never change within a process.
_ACCESS_CONSTANTS: dict[str, Any] = {
    "name": ACCESS_LOGGER, "levelno": logging.INFO, "levelname": "INFO",
    "pathname": __file__, "filename": __file__.rsplit("/", 1)[-1], "module": __name__,
    "lineno": 0, "funcName": "_log_access", "args": (), "exc_info": None, "exc_text": None,
    "stack_info": None, "processName": "MainProcess",
}
if "taskName" in vars(logging.makeLogRecord({})):  # Python 3.12+
    _ACCESS_CONSTANTS["taskName"] = None
#: logging's own start time (``relativeCreated`` counts from it, as for stock records).
_START_TIME: float = getattr(logging, "_startTime", time.time())
_PID = os.getpid()


class _Counted:
    """What both counted streams share: the request they answer, the bytes so far,
    and one record of it when the stream ends, fails or is closed."""

    def __init__(self, observer: Observer, request: Request, response: Response,
                 start: int) -> None:
        self._observer = observer
        self._request = request
        self._response = response
        self._start = start
        self._size = 0
        self._done = False

    def _end(self) -> None:
        if not self._done:
            self._done = True
            self._observer.finish(self._request, self._response, self._response.status,
                                  self._size, self._start)


class _CountedStream(_Counted):
    """A sync response stream that counts its bytes and records the request when it
    ends, fails or is closed (backends always close streams)."""

    def __init__(self, observer: Observer, request: Request, response: Response, start: int,
                 inner: Iterable[bytes]) -> None:
        super().__init__(observer, request, response, start)
        self._inner = inner
        self._iterator: Iterator[bytes] | None = None

    def __iter__(self) -> Iterator[bytes]:
        return self

    def __next__(self) -> bytes:
        if self._iterator is None:
            self._iterator = iter(self._inner)
        try:
            piece = next(self._iterator)
        except BaseException:  # StopIteration included: the stream ended
            self._end()
            raise
        self._size += len(piece)
        return piece

    def close(self) -> None:
        try:
            close = getattr(self._inner, "close", None)
            if close is not None:
                close()
        finally:
            self._end()


class _CountedAsyncStream(_Counted):
    """:class:`_CountedStream` for an async stream."""

    def __init__(self, observer: Observer, request: Request, response: Response, start: int,
                 inner: AsyncIterable[bytes]) -> None:
        super().__init__(observer, request, response, start)
        self._inner = inner
        self._iterator: AsyncIterator[bytes] | None = None

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self

    async def __anext__(self) -> bytes:
        if self._iterator is None:
            self._iterator = self._inner.__aiter__()
        try:
            piece = await self._iterator.__anext__()
        except BaseException:  # StopAsyncIteration included: the stream ended
            self._end()
            raise
        self._size += len(piece)
        return piece

    async def aclose(self) -> None:
        try:
            aclose = getattr(self._inner, "aclose", None)
            if aclose is not None:
                await aclose()
        finally:
            self._end()
