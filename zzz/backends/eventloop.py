"""Event-loop backend: ``asyncio.Protocol`` callbacks on uvloop (libuv) or asyncio.

The original zzz's second backend wraps a C event loop: single-threaded,
callback-driven (accept / read / close), per-connection state on each handle.
Here ``connection_made`` / ``data_received`` / ``connection_lost`` are those
callbacks and :class:`HttpProtocol` holds the state. Streams are not used:
they cost a task and several futures per request.

* Plain-function handlers run inline on the loop thread (the fast path).
  ``async def`` handlers run as a task; requests pipelined behind it wait in
  order, and reading pauses when more than ``max_pipelined`` are queued.
* Flow control: ``pause_writing`` / ``resume_writing`` stop a streamed body
  from being produced faster than the client reads; a client that reads
  nothing for ``write_timeout_ms`` is dropped.
* Deadlines use one timer per connection that is re-armed only when it fires
  (never per request): absolute read deadline → 408, keep-alive timeout →
  quiet close.
* ``event_loop_count`` loops, each on its own thread, all accept on one
  listening socket.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import logging
import socket
import threading
import time
from collections.abc import AsyncIterable, Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any, cast

from zzz.backends._dispatch import LINGER_CLOSE_S, LINGER_MAX_BYTES, answer_expect, app_error
from zzz.backends._drain import may_close_idle
from zzz.backends._listener import bind_listener, bound_address
from zzz.http.connection import (
    ExpectContinue,
    HTTPConnection,
    Limits,
    ProtocolError,
)
from zzz.http.proxy_protocol import connection_class
from zzz.http.request import Request
from zzz.http.response import Response
from zzz.timers import Timer

if TYPE_CHECKING:
    from zzz.server import Server

log = logging.getLogger("zzz.eventloop")

#: The write-buffer high-water mark uvloop and asyncio transports start with.
LOOP_DEFAULT_WRITE_BUFFER_HIGH = 64 * 1024
#: How often the drain loop checks whether every connection has finished.
DRAIN_POLL_S = 0.02
#: Time a secondary loop thread gets to finish beyond the drain deadline (its
#: drain runs alongside the main loop's and is bounded by the same deadline).
LOOP_JOIN_S = 5.0


def new_event_loop(choice: str) -> asyncio.AbstractEventLoop:
    """A new loop: uvloop when asked (or ``auto`` and installed), else asyncio's default."""
    if choice in ("auto", "uvloop"):
        try:
            import uvloop
        except ImportError:
            if choice == "uvloop":
                raise
        else:
            loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
            return loop
    return asyncio.new_event_loop()


class LoopTimers:
    """The server timer API on event loops: ``loop.call_later`` handles.

    Callable from any thread: scheduling always happens on the loop thread.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    def start(self, timer: Timer) -> None:
        self._loop.call_soon_threadsafe(self._arm, timer)

    def cancel(self, timer: Timer) -> None:
        timer.cancelled = True
        self._loop.call_soon_threadsafe(self._disarm, timer)

    def reset(self, timer: Timer) -> None:
        self._loop.call_soon_threadsafe(self._arm, timer)

    def _disarm(self, timer: Timer) -> None:
        timer.generation += 1
        if timer.handle is not None:
            timer.handle.cancel()
            timer.handle = None

    def _arm(self, timer: Timer) -> None:
        self._disarm(timer)
        if timer.cancelled:
            return
        timer.handle = self._loop.call_later(
            timer.interval_ms / 1000.0, self._fire, timer, timer.generation
        )

    def _fire(self, timer: Timer, generation: int) -> None:
        if timer.cancelled or generation != timer.generation:
            return
        timer.handle = None
        if timer.repeat:
            self._arm(timer)
        timer.fire()


class LoopState:
    """What one loop shares with its connections."""

    def __init__(self, backend: EventLoopBackend, loop: asyncio.AbstractEventLoop) -> None:
        self.backend = backend
        self.loop = loop
        self.connections: set[HttpProtocol] = set()
        self.shutting_down = False
        self.aserver: asyncio.base_events.Server | None = None


class HttpProtocol(asyncio.Protocol):
    """One HTTP connection on an event loop."""

    __slots__ = (
        "_busy",
        "_client",
        "_drain_waiter",
        "_engine",
        "_extensions",
        "_idle_since",
        "_loop",
        "_pending",
        "_reading_paused",
        "_request_started",
        "_state",
        "_task",
        "_timer",
        "_write_paused",
        "_write_paused_at",
        "_ws",
        "transport",
    )

    def __init__(self, state: LoopState) -> None:
        self._state = state
        self._loop = state.loop
        self.transport: asyncio.Transport | None = None
        self._engine: HTTPConnection | None = None
        self._client: tuple[str, int] | None = None
        #: Per-connection facts copied onto every request (TLS peer certificate).
        self._extensions: dict[str, Any] = {}
        self._busy = False
        self._pending: collections.deque[Request | ExpectContinue | ProtocolError] = (
            collections.deque()
        )
        self._reading_paused = False
        self._write_paused = False
        self._write_paused_at = 0.0
        self._drain_waiter: asyncio.Future[None] | None = None
        self._task: asyncio.Task[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._request_started: float | None = None
        self._idle_since = 0.0
        #: The WebSocket protocol this connection was upgraded to (``_ws_eventloop``).
        self._ws: Any = None

    # ------------------------------------------------------------------ callbacks

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement the interface without subclassing it.
        self.transport = cast(asyncio.Transport, transport)
        backend = self._state.backend
        peer = transport.get_extra_info("peername")
        client = (str(peer[0]), int(peer[1])) if isinstance(peer, tuple) else None
        self._client = client
        self._engine = backend.engine_class(backend.limits, client, backend.scheme)
        if backend.tls:
            peercert = transport.get_extra_info("peercert")
            if peercert:
                self._extensions["tls_peer_cert"] = peercert
        # TCP_NODELAY: uvloop and asyncio both set it on accepted TCP sockets already.
        if backend.write_buffer_high != LOOP_DEFAULT_WRITE_BUFFER_HIGH:
            self.transport.set_write_buffer_limits(high=backend.write_buffer_high)
        self._state.connections.add(self)
        self._idle_since = self._loop.time()
        self._timer = self._loop.call_at(self._idle_since + backend.check_interval, self._on_timer)
        if self._state.shutting_down:
            self._engine.close_after_response = True

    def connection_lost(self, exc: Exception | None) -> None:
        self._state.connections.discard(self)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._task is not None and not self._task.done():
            self._task.cancel()
        waiter = self._drain_waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(ConnectionResetError("connection lost"))
        self.transport = None

    def data_received(self, data: bytes) -> None:
        engine = self._engine
        assert engine is not None
        events = engine.feed(data)
        if engine.in_request:
            # A request that began in this read after others completed has its own
            # deadline, not the one of the request before it.
            if self._request_started is None or events:
                self._request_started = self._loop.time()
        else:
            self._request_started = None
        if not events:
            if self._busy and engine.is_dead:
                # Behind an upgrade or an error nothing more is HTTP: stop reading
                # until the running response is done (upgrade_data must not grow).
                self._maybe_pause_reading()
            return
        if self._busy:
            self._pending.extend(events)
            self._maybe_pause_reading()
            return
        if len(events) == 1 and not self._state.shutting_down:
            # Fast path (one request, plain-function handler, whole body): no
            # batching or ordering machinery needed.
            request = events[0]
            if type(request) is Request and not request.upgrade and not self._extensions:
                try:
                    result = self._state.backend.server.handle(request)
                except Exception:
                    result = app_error(request)
                if type(result) is Response and result.stream is None:
                    transport = self.transport
                    if transport is None:
                        return
                    if self._state.backend.server.shutting_down.is_set():
                        # The signal arrived while the handler ran (inline, on this thread).
                        engine.close_after_response = True
                    transport.write(engine.serialize(result, request))
                    if engine.must_close:
                        self._close_after_answer()
                    else:
                        self._idle_since = self._loop.time()
                    return
                self._busy = True
                self._task = self._loop.create_task(self._respond_async(result, request))
                return
        self._run_events(events)

    def eof_received(self) -> bool | None:
        # A half-closed client gets the responses it is owed, then the close.
        engine = self._engine
        if engine is not None:
            engine.feed(b"")
        if not self._busy:
            self._close()
        # Over TLS, EOF closes the transport whatever we return (asyncio warns on True).
        return None if self._state.backend.scheme == "https" else True

    def pause_writing(self) -> None:
        self._write_paused = True
        self._write_paused_at = self._loop.time()

    def resume_writing(self) -> None:
        self._write_paused = False
        waiter = self._drain_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # ------------------------------------------------------------------ requests

    def _run_events(self, events: Iterable[Request | ExpectContinue | ProtocolError]) -> None:
        """Answer events in order inline until one needs the loop (async or stream)."""
        engine = self._engine
        transport = self.transport
        assert engine is not None
        if transport is None:
            return
        queue = iter(events)
        out: list[bytes] = []
        state = self._state
        for event in queue:
            if transport.is_closing():
                return
            if state.shutting_down:
                engine.close_after_response = True
            if type(event) is Request:
                if self._extensions:
                    event.extensions.update(self._extensions)
                try:
                    result = state.backend.server.handle(event)
                except Exception:
                    result = app_error(event)
                if type(result) is Response and result.upgrade is not None:
                    out.append(engine.serialize(result, event))
                    transport.write(b"".join(out))
                    self._upgrade(result)
                    return
                if type(result) is Response and result.stream is None:
                    if state.backend.server.shutting_down.is_set():
                        engine.close_after_response = True
                    out.append(engine.serialize(result, event))
                else:
                    # Async handler or streamed body: continue in a task, keep order.
                    if out:
                        transport.write(b"".join(out))
                        out = []
                    self._pending.extend(queue)
                    self._busy = True
                    self._task = self._loop.create_task(self._respond_async(result, event))
                    self._maybe_pause_reading()
                    return
            elif isinstance(event, ExpectContinue):
                out.append(answer_expect(state.backend.server, engine, event))
            else:
                assert isinstance(event, ProtocolError)
                out.append(engine.error_response(event))
            if engine.must_close:
                transport.write(b"".join(out))
                self._close_after_answer()
                return
        if out:
            transport.write(b"".join(out))
        self._idle_since = self._loop.time()
        if engine.is_dead or (state.shutting_down and not engine.in_request):
            self._close()

    async def _respond_async(
        self, result: Response | Awaitable[Response], request: Request
    ) -> None:
        engine = self._engine
        assert engine is not None
        try:
            if not isinstance(result, Response):
                try:
                    result = await result
                except asyncio.CancelledError:
                    raise
                except Exception:
                    result = app_error(request)
            transport = self.transport
            if transport is None:
                if result.stream is not None:
                    await _close_stream(result.stream)
                return
            if self._state.backend.server.shutting_down.is_set():
                engine.close_after_response = True  # shutdown began while the handler ran
            transport.write(engine.serialize(result, request))
            if result.upgrade is not None:
                self._upgrade(result)
                return
            if result.stream is not None:
                if request.method == "HEAD":
                    await _close_stream(result.stream)  # never read: release what it holds
                elif not await self._write_stream(result.stream, request):
                    return
            if engine.must_close:
                self._close_after_answer()
                return
        except (asyncio.CancelledError, ConnectionError):
            return
        except Exception:
            # A failure past the handler (a protocol upgrade that cannot start, ...)
            # must not leave the connection busy, and its client waiting, for ever.
            log.exception("response to %s %s failed; closing", request.method, request.path)
            self._abort()
            return
        finally:
            self._task = None
        self._busy = False
        self._idle_since = self._loop.time()
        pending = self._pending
        if pending:
            self._pending = collections.deque()
            self._resume_reading()
            try:
                self._run_events(pending)
            except Exception:
                # In data_received the loop closes the transport on an exception;
                # here nobody would, and the requests behind would never be answered.
                log.exception("pipelined requests failed; closing")
                self._abort()
        else:
            self._resume_reading()
            if engine.is_dead or (self._state.shutting_down and not engine.in_request):
                self._close()

    async def _write_stream(
        self, stream: Iterable[bytes] | AsyncIterable[bytes], request: Request
    ) -> bool:
        """Write a streamed body, waiting whenever the transport asks us to pause."""
        engine = self._engine
        assert engine is not None
        try:
            if isinstance(stream, AsyncIterable):
                async for piece in stream:
                    if not await self._write_piece(engine.chunk(piece)):
                        return False
            else:
                for piece in stream:
                    if not await self._write_piece(engine.chunk(piece)):
                        return False
        except (asyncio.CancelledError, ConnectionError):
            raise
        except Exception:
            log.exception("stream of %s %s failed; closing", request.method, request.path)
            self._abort()
            return False
        finally:
            # A client that went away (or a cancelled task) leaves the producer
            # suspended: close it now so its ``finally`` blocks run at once, not
            # whenever the garbage collector finds it.
            await _close_stream(stream)
        return await self._write_piece(engine.end())

    async def _write_piece(self, data: bytes) -> bool:
        transport = self.transport
        if transport is None or transport.is_closing():
            return False
        if data:
            transport.write(data)
        if self._write_paused:
            waiter: asyncio.Future[None] = self._loop.create_future()
            self._drain_waiter = waiter
            try:
                await waiter
            finally:
                self._drain_waiter = None
        return self.transport is not None

    def _upgrade(self, response: Response) -> None:
        """Hand the connection to the protocol ``response.upgrade`` names (WebSocket)."""
        from zzz.backends._ws_eventloop import start_websocket

        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._busy = True
        engine = self._engine
        assert engine is not None and self.transport is not None
        self._ws = start_websocket(
            self, self._state, self.transport, response.upgrade, engine.upgrade_data
        )

    # ------------------------------------------------------------------ flow control, timers

    def _maybe_pause_reading(self) -> None:
        """Pause while busy when enough requests wait, or when the parser has
        stopped (error, upgrade): anything read then would only pile up."""
        engine = self._engine
        if (
            not self._reading_paused
            and self.transport is not None
            and (
                len(self._pending) >= self._state.backend.max_pipelined
                or (engine is not None and engine.is_dead)
            )
        ):
            self._reading_paused = True
            self.transport.pause_reading()

    def _resume_reading(self) -> None:
        if self._reading_paused and self.transport is not None:
            self._reading_paused = False
            self.transport.resume_reading()

    def _on_timer(self) -> None:
        """The one per-connection timer: read deadline, keep-alive and write timeout."""
        self._timer = None
        transport = self.transport
        engine = self._engine
        if transport is None or engine is None:
            return
        backend = self._state.backend
        now = self._loop.time()
        due = now + backend.check_interval
        if self._write_paused:
            limit = self._write_paused_at + backend.write_timeout
            if now >= limit:
                log.info("client %s stopped reading: dropped after write timeout", self._client)
                self._abort()
                return
            due = min(due, limit)
        if self._request_started is not None and engine.in_request:
            limit = self._request_started + backend.read_timeout
            if now >= limit:
                error = ProtocolError(408, "request not received in time")
                if self._busy:
                    # An earlier request is still being answered: the 408 goes after
                    # its response, never in its place. Stop parsing and queue it.
                    engine.feed(b"")
                    self._request_started = None
                    self._pending.append(error)
                    self._maybe_pause_reading()
                else:
                    transport.write(engine.error_response(error))
                    self._close()
                    return
            else:
                due = min(due, limit)
        elif not self._busy and not engine.in_request:
            limit = self._idle_since + backend.keepalive_timeout
            if now >= limit:
                self._close()
                return
            due = min(due, limit)
        self._timer = self._loop.call_at(due, self._on_timer)

    def _close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()

    def _close_after_answer(self) -> None:
        """Close once the last answer is written, lingering when input was left unread.

        Closing with unread input makes the kernel send RST, which can destroy
        the answer before the client reads it. So when the engine says the
        client may still be sending (``input_abandoned``), our side is shut
        (``write_eof`` once the answer is out) and a :class:`LingeringClose`
        takes the transport over to read and drop the rest.
        """
        transport = self.transport
        engine = self._engine
        if transport is None:
            return
        if (
            engine is None
            or not engine.input_abandoned
            or self._state.backend.tls
            or self._state.shutting_down
            or not transport.can_write_eof()
        ):
            self._close()
            return
        self._state.connections.discard(self)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._resume_reading()
        transport.write_eof()
        transport.set_protocol(LingeringClose(transport, self._loop))
        self.transport = None

    def _abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    # ------------------------------------------------------------------ shutdown

    def abort_if_closed_and_flushed(self) -> None:
        """During a drain: a closing transport with nothing left to send is done.

        A TLS transport otherwise waits for the peer's close_notify, which a
        client that has gone quiet never sends; that must not hold the drain.
        """
        transport = self.transport
        if (
            transport is not None
            and transport.is_closing()
            and transport.get_write_buffer_size() == 0
        ):
            transport.abort()

    def begin_shutdown(self) -> None:
        """Close when idle; otherwise the next response says ``Connection: close``."""
        if self._ws is not None:
            self._ws.begin_shutdown()
            return
        engine = self._engine
        if engine is None:
            return
        engine.close_after_response = True
        if (not self._busy and not engine.in_request and not self._pending
                and may_close_idle(engine, self._loop.time() - self._idle_since)):
            self._close()


class LingeringClose(asyncio.Protocol):
    """Reads and drops what a refused client still sends, then closes.

    Bounded by ``LINGER_CLOSE_S`` and ``LINGER_MAX_BYTES``; EOF from the client
    ends it at once.
    """

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._left = LINGER_MAX_BYTES
        self._timer = loop.call_later(LINGER_CLOSE_S, transport.close)

    def data_received(self, data: bytes) -> None:
        self._left -= len(data)
        if self._left <= 0:
            self._transport.close()

    def eof_received(self) -> bool | None:
        return None  # the transport closes itself

    def connection_lost(self, exc: Exception | None) -> None:
        self._timer.cancel()


class EventLoopBackend:
    """One running event-loop server: ``event_loop_count`` loops on one listener."""

    def __init__(self, server: Server) -> None:
        self.server = server
        config = server.config
        self.config = config
        self.limits = Limits.from_config(config)
        self.read_timeout = config.read_timeout_ms / 1000.0
        self.write_timeout = config.write_timeout_ms / 1000.0
        self.keepalive_timeout = config.keepalive_timeout_ms / 1000.0
        #: The connection timer never sleeps longer than this, so a request that
        #: starts while it sleeps is still checked exactly at its read deadline.
        self.check_interval = min(self.read_timeout, self.keepalive_timeout, self.write_timeout)
        self.max_pipelined = config.eventloop.max_pipelined
        self.write_buffer_high = config.eventloop.write_buffer_high
        self.tls = server.ssl_context is not None
        self.scheme = "https" if server.ssl_context is not None else "http"
        self.engine_class = connection_class(config)  # PROXY protocol or plain
        self.states: list[LoopState] = []
        self._states_lock = threading.Lock()

    def run(self) -> None:
        server = self.server
        listener = bind_listener(self.config)
        listener.setblocking(False)
        server.address = bound_address(listener)
        executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=self.config.eventloop.blocking_threads,
            thread_name_prefix="zzz-blocking",
        )
        server.blocking_executor = executor
        count = self.config.eventloop.event_loop_count
        threads = [
            threading.Thread(
                target=self._run_loop, args=(listener.dup(), False),
                name=f"zzz-loop-{i}", daemon=True,
            )
            for i in range(1, count)
        ]
        for thread in threads:
            thread.start()
        try:
            self._run_loop(listener, True)
        finally:
            # The other loops drain in parallel, up to the same drain deadline.
            deadline = time.monotonic() + self.config.drain_timeout_ms / 1000.0 + LOOP_JOIN_S
            for thread in threads:
                thread.join(max(0.0, deadline - time.monotonic()))
            executor.shutdown(wait=False, cancel_futures=True)
            server.blocking_executor = None
            with contextlib.suppress(OSError):
                listener.close()

    def _run_loop(self, listener: socket.socket, main: bool) -> None:
        loop = new_event_loop(self.config.eventloop.loop)
        asyncio.set_event_loop(loop)
        state = LoopState(self, loop)
        with self._states_lock:
            self.states.append(state)
        try:
            loop.run_until_complete(self._serve(state, listener, main))
        finally:
            with contextlib.suppress(Exception):
                loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    async def _serve(self, state: LoopState, listener: socket.socket, main: bool) -> None:
        loop = state.loop
        stop = asyncio.Event()
        state.aserver = await loop.create_server(
            lambda: HttpProtocol(state),
            sock=listener,
            ssl=_served_tls_context(self.server, self.read_timeout),
            ssl_handshake_timeout=self.read_timeout if self.server.ssl_context else None,
            backlog=self.config.kernel_backlog,
        )
        self.server.on_shutdown(lambda: _call_threadsafe(loop, stop.set))
        if main:
            self.server.attach_timers(LoopTimers(loop))
            self.server.ready.set()
        await stop.wait()
        await self._drain(state)

    async def _drain(self, state: LoopState) -> None:
        """Stop accepting, close idle connections, wait for in-flight requests."""
        state.shutting_down = True
        if state.aserver is not None:
            state.aserver.close()
        for conn in list(state.connections):
            conn.begin_shutdown()
        deadline = time.monotonic() + self.config.drain_timeout_ms / 1000.0
        while state.connections and time.monotonic() < deadline:
            for conn in list(state.connections):
                conn.abort_if_closed_and_flushed()
                if conn._ws is None:  # a fresh connection's first-request grace ends
                    conn.begin_shutdown()
            await asyncio.sleep(DRAIN_POLL_S)
        if state.connections:
            log.warning(
                "drain deadline passed: cutting %d connection(s) still in flight",
                len(state.connections),
            )
            for conn in list(state.connections):
                conn._abort()
            await asyncio.sleep(0)
        else:
            log.info("drained: all connections closed")


def _served_tls_context(server: Server, handshake_timeout: float) -> Any:
    """The server's TLS context (or None), made to follow ``reload_tls()``: see zzz.tls."""
    if server.ssl_context is None:
        return None
    from zzz.tls import follow_reloads

    return follow_reloads(server.ssl_context, lambda: server.ssl_context, handshake_timeout)


async def _close_stream(stream: Iterable[bytes] | AsyncIterable[bytes]) -> None:
    """Close a response stream (``aclose`` / ``close`` when it has one); errors are logged."""
    try:
        aclose = getattr(stream, "aclose", None)
        if aclose is not None:
            await aclose()
            return
        close = getattr(stream, "close", None)
        if close is not None:
            close()
    except Exception:
        log.exception("closing a response stream failed")


def _call_threadsafe(loop: asyncio.AbstractEventLoop, fn: Callable[[], Any]) -> None:
    with contextlib.suppress(RuntimeError):  # loop already closed
        loop.call_soon_threadsafe(fn)


def listen(server: Server) -> None:
    """Serve ``server`` on the event-loop backend until it shuts down."""
    EventLoopBackend(server).run()
