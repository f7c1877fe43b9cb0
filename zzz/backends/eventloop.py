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
* Deadlines need no timer per connection: each connection keeps the time of
  its next check (``_due``, moved only when a check runs, never per request) and
  one sweep per loop runs the checks that are due: absolute read deadline → 408,
  keep-alive timeout → quiet close, write timeout → dropped.
* ``event_loop_count`` loops, each on its own thread, all accept on one
  listening socket.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import logging
import math
import socket
import threading
import time
from collections.abc import AsyncIterable, Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any, cast

from zzz.backends._dispatch import LINGER_CLOSE_S, LINGER_MAX_BYTES, answer_expect, app_error
from zzz.backends._drain import may_close_idle
from zzz.backends._drain_guard import DrainGuard
from zzz.backends._fd_watch import DescriptorWatch
from zzz.backends._listener import bind_listener, bound_address
from zzz.backends._malloc import tune_malloc
from zzz.backends._peers import client_address
from zzz.backends._sendfile import loop_send_file
from zzz.backends._sockopts import sized_reads, transport_tuner
from zzz.backends._watchdog import LoopWatchdog
from zzz.body import BodyError, ClientDisconnected, RequestBody
from zzz.http.connection import (
    CONTINUE_RESPONSE,
    Data,
    EndOfMessage,
    Event,
    ExpectContinue,
    HTTPConnection,
    ProtocolError,
)
from zzz.http.proxy_protocol import connection_class
from zzz.http.request import Request
from zzz.http.response import Response
from zzz.timers import Timer

if TYPE_CHECKING:
    from zzz.server import Server

log = logging.getLogger("zzz.eventloop")

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


#: A keep-alive connection idle this long drops its parser (``HTTPConnection.compact``:
#: about 850 of its bytes; its next request rebuilds one in about half a microsecond).
#: Swept by one loop timer at this interval, so no request pays for it.
IDLE_COMPACT_S = 0.5
#: The same sweep checks every connection's deadlines (read, keep-alive, write), so a
#: connection needs no timer of its own: it is at most IDLE_COMPACT_S late, or this
#: fraction of the shortest timeout when that is shorter (tests, tight configurations).
SWEEP_TIMEOUT_FRACTION = 0.25
#: Shortest sweep interval, whatever the timeouts: 1 ms, the finest a loop timer resolves.
MIN_SWEEP_S = 0.001


class LoopState:
    """What one loop shares with its connections."""

    def __init__(self, backend: EventLoopBackend, loop: asyncio.AbstractEventLoop) -> None:
        self.backend = backend
        self.loop = loop
        self.connections: set[HttpProtocol] = set()
        self.shutting_down = False
        #: Interval of the sweep (:meth:`_sweep`), which also runs the deadlines.
        self.sweep_s = max(MIN_SWEEP_S,
                           min(IDLE_COMPACT_S, backend.check_interval * SWEEP_TIMEOUT_FRACTION))
        #: The loop's thread (a streamed body's reader may call back from another).
        self.thread_id = threading.get_ident()
        #: Reports stalls of this loop (``loop_block_warn_ms``); its ``lag_s`` is a gauge.
        self.watchdog: LoopWatchdog | None = None
        self.aserver: asyncio.base_events.Server | None = None
        #: The sweep's timer while this loop has connections (deadlines, IDLE_COMPACT_S).
        self.sweeper: asyncio.TimerHandle | None = None
        #: Logs EMFILE once per episode (uvloop is silent); accepts near the limit probe it.
        self.fd_watch = DescriptorWatch(loop, self.connections)

    def start_sweeping(self) -> None:
        self.sweeper = self.loop.call_later(self.sweep_s, self._sweep)

    def stop_sweeping(self) -> None:
        if self.sweeper is not None:
            self.sweeper.cancel()
            self.sweeper = None

    def _sweep(self) -> None:
        """The loop's sweep: connections past their deadline check (``_due``) run it,
        and connections idle for ``IDLE_COMPACT_S`` drop their parser (see the
        constants). One loop timer instead of one per connection: a short-lived
        connection never creates and cancels a timer handle. Without connections the
        sweep stops (an idle worker sleeps); the next connection starts it again."""
        if not self.connections:
            self.sweeper = None
            return
        now = self.loop.time()
        limit = now - IDLE_COMPACT_S
        for conn in list(self.connections):  # a deadline may close one meanwhile
            if conn._due <= now:
                conn._check_deadlines()
            engine = conn._engine
            if engine is not None and not conn._busy and conn._idle_since <= limit:
                engine.compact()
        self.sweeper = self.loop.call_later(self.sweep_s, self._sweep)


class HttpProtocol(asyncio.Protocol):
    """One HTTP connection on an event loop."""

    __slots__ = (
        "_body",
        "_body_error",
        "_body_paused",
        "_busy",
        "_client",
        "_drain_waiter",
        "_due",
        "_engine",
        "_extensions",
        "_future",
        "_idle_since",
        "_loop",
        "_pending",
        "_reading_paused",
        "_request_started",
        "_state",
        "_task",
        "_transport_paused",
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
        #: Per-connection facts copied onto every request (TLS peer certificate);
        #: ``None`` until there is one (an empty dict per idle connection adds up).
        self._extensions: dict[str, Any] | None = None
        self._busy = False
        #: Events read while a response is in progress, answered in order after it.
        #: A list, not a deque: it is only appended to and then taken whole, and an
        #: empty deque costs 600 bytes on each of thousands of idle connections.
        self._pending: list[Event] = []
        self._reading_paused = False
        self._write_paused = False
        self._write_paused_at = 0.0
        self._drain_waiter: asyncio.Future[None] | None = None
        self._task: asyncio.Task[None] | None = None
        #: The answer an ASGI app started on this loop will give (see _await_result).
        self._future: asyncio.Future[Response] | None = None
        #: When the loop's sweep next runs this connection's deadline check (_check_deadlines).
        self._due = math.inf
        self._request_started: float | None = None
        self._idle_since = 0.0
        #: The WebSocket protocol this connection was upgraded to (``_ws_eventloop``).
        self._ws: Any = None
        #: The streamed body still arriving, and the engine's refusal of it (if any).
        self._body: RequestBody | None = None
        self._body_error: ProtocolError | None = None
        #: Reading paused because the body's consumer is behind (flow control).
        self._body_paused = False
        #: What the transport was last told (pipelining and bodies both pause it).
        self._transport_paused = False

    # ------------------------------------------------------------------ callbacks

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement the interface without subclassing it.
        self.transport = cast(asyncio.Transport, transport)
        backend = self._state.backend
        peer = transport.get_extra_info("peername")
        client = client_address(peer)
        self._client = client
        self._engine = backend.engine_class(backend.limits, client, backend.scheme,
                                            backend.stream_body)
        if backend.tls:
            peercert = transport.get_extra_info("peercert")
            if peercert:
                self._extensions = {"tls_peer_cert": peercert}
        if backend.tune_transport is not None:  # watermarks, tcp_nodelay=False (_sockopts)
            backend.tune_transport(self.transport)
        self._state.connections.add(self)
        if self._state.sweeper is None:  # the sweep also runs the deadlines: always on
            self._state.start_sweeping()
        self._state.fd_watch.accepted(len(self._state.connections))
        if self._state.watchdog is not None:
            self._state.watchdog.wake()  # an idle loop is not watched until now
        backend.server.observer.connection_opened()
        self._idle_since = self._loop.time()
        self._due = self._idle_since + backend.check_interval
        if self._state.shutting_down:
            self._engine.close_after_response = True

    def connection_lost(self, exc: Exception | None) -> None:
        self._state.connections.discard(self)
        if self._body is not None:
            self._body.fail(ClientDisconnected())
            self._body = None
        self._due = math.inf
        if self._task is not None and not self._task.done():
            self._task.cancel()
        if self._future is not None and not self._future.done():
            self._future.cancel()  # an ASGI app still thinking: cancelled with its future
        waiter = self._drain_waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(ConnectionResetError("connection lost"))
        self.transport = None

    def data_received(self, data: bytes) -> None:
        engine = self._engine
        assert engine is not None
        events = engine.feed(data)
        if self._body is not None:
            events = self._feed_body(events, 0)
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
            if (type(request) is Request and not request.upgrade and not request.streamed
                    and not self._extensions):
                try:
                    result = self._state.backend.server.handle(request)
                except Exception:
                    result = app_error(request)
                if type(result) is Response and result.stream is None and result.file is None:
                    transport = self.transport
                    if transport is None:
                        return
                    if self._state.backend.server.stopping:
                        # The signal arrived while the handler ran (inline, on this thread).
                        engine.close_after_response = True
                    transport.write(engine.serialize(result, request))
                    if engine.must_close:
                        self._close_after_answer()
                    else:
                        self._idle_since = self._loop.time()
                    return
                self._busy = True
                self._await_result(result, request)
                return
        self._run_events(events)

    def eof_received(self) -> bool | None:
        # A half-closed client gets the responses it is owed, then the close.
        engine = self._engine
        if engine is not None:
            engine.feed(b"")
        if self._body is not None:
            self._body.fail(ClientDisconnected())
            self._body = None
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

    def _run_events(self, events: Iterable[Event]) -> None:
        """Answer events in order inline until one needs the loop (async or stream)."""
        engine = self._engine
        transport = self.transport
        assert engine is not None
        if transport is None:
            return
        batch = events if isinstance(events, list) else list(events)
        out: list[bytes] = []
        state = self._state
        server = state.backend.server
        i = 0
        n = len(batch)
        while i < n:
            event = batch[i]
            i += 1
            if transport.is_closing():
                return
            if state.shutting_down:
                engine.close_after_response = True
            kind = type(event)
            if kind is Request:
                assert isinstance(event, Request)
                if self._extensions:
                    event.extensions.update(self._extensions)
                if event.streamed:
                    self._open_body(event)
                    batch = batch[:i] + self._feed_body(batch[i:], 0)
                    n = len(batch)
                try:
                    result = server.handle(event)
                except Exception:
                    result = app_error(event)
                if type(result) is Response and result.upgrade is not None:
                    out.append(engine.serialize(result, event))
                    transport.write(b"".join(out))
                    self._upgrade(result)
                    return
                if type(result) is Response and result.stream is None and result.file is None:
                    if server.stopping:
                        engine.close_after_response = True
                    if self._body_error is not None:
                        server.observer.bad_request(self._body_error.status)
                        out.append(engine.error_response(self._body_error))
                        self._body_error = None
                    else:
                        out.append(engine.serialize(result, event))
                else:
                    # Async handler or streamed body: continue in a task, keep order.
                    if out:
                        transport.write(b"".join(out))
                        out = []
                    self._pending.extend(batch[i:])
                    self._busy = True
                    self._await_result(result, event)
                    self._maybe_pause_reading()
                    return
            elif kind is ExpectContinue:
                assert isinstance(event, ExpectContinue)
                out.append(answer_expect(server, engine, event))
            elif kind is ProtocolError:
                assert isinstance(event, ProtocolError)
                state.backend.server.observer.bad_request(event.status)
                out.append(engine.error_response(event))
            # Data / EndOfMessage of a body its handler left unread: the answer
            # already closes the connection; they are dropped.
            if engine.must_close:
                transport.write(b"".join(out))
                self._close_after_answer()
                return
        if out:
            transport.write(b"".join(out))
        self._idle_since = self._loop.time()
        if engine.is_dead or (state.shutting_down and not engine.in_request):
            self._close()

    # ------------------------------------------------------------------ streamed bodies

    def _open_body(self, request: Request) -> None:
        """Attach a flow-controlled body to a streamed request; the application may
        read it from this loop or from a blocking-pool thread (WSGI, blocking routes)."""
        body = RequestBody()
        request.body_stream = body
        self._body = body
        self._body_error = None
        body.on_drained = self._body_drained
        if request.expect_continue:
            body.on_first_read = self._body_wants_continue

    def _feed_body(self, events: list[Event], i: int) -> list[Event]:
        """Push the body events at the front of ``events[i:]`` into the open body;
        the events after them."""
        body = self._body
        assert body is not None
        n = len(events)
        while i < n:
            event = events[i]
            kind = type(event)
            if kind is Data:
                assert isinstance(event, Data)
                body.push(event.data)
            elif kind is EndOfMessage:
                body.finish()
                self._body = None
                i += 1
                break
            elif kind is ProtocolError:
                assert isinstance(event, ProtocolError)
                self._body_error = event
                body.fail(BodyError(event.detail, event.status))
                self._body = None
                i += 1
                break
            else:  # pragma: no cover - the engine ends a body before the next request
                break
            i += 1
        if self._body is not None:
            # A streamed body may take long: its read deadline is one of inactivity.
            self._request_started = self._loop.time()
            if not body.wants_more and not self._body_paused:
                self._body_paused = True
                self._apply_reading()
        return events[i:] if i else events

    def _on_loop(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` on this connection's loop (the body's reader may be a thread)."""
        if threading.get_ident() == self._state.thread_id:
            fn()
        else:
            _call_threadsafe(self._loop, fn)

    def _body_drained(self) -> None:
        self._on_loop(self._resume_for_body)

    def _resume_for_body(self) -> None:
        if self._body_paused:
            self._body_paused = False
            self._apply_reading()

    def _body_wants_continue(self) -> None:
        self._on_loop(self._write_continue)

    def _write_continue(self) -> None:
        engine = self._engine
        if self.transport is not None and engine is not None and not engine.is_dead:
            self.transport.write(CONTINUE_RESPONSE)

    def _await_result(self, result: Any, request: Request) -> None:
        """Wait for an answer that is not ready: a future (an ASGI app started on this
        loop) is called back on — no task of ours; a coroutine (an async handler) or a
        streamed body gets a task."""
        if isinstance(result, asyncio.Future):
            self._future = result
            result.add_done_callback(functools.partial(self._result_ready, request))
        else:
            self._task = self._loop.create_task(self._respond_async(result, request))

    def _result_ready(self, request: Request, future: asyncio.Future[Response]) -> None:
        """A future answer resolved: write a complete one at once, stream the rest."""
        self._future = None
        if future.cancelled():
            return  # the connection went away (connection_lost cancelled it)
        exc = future.exception()
        result = app_error(request) if exc is not None else future.result()
        engine = self._engine
        transport = self.transport
        assert engine is not None
        if (transport is None or result.stream is not None or result.file is not None
                or result.upgrade is not None or self._body_error is not None):
            self._task = self._loop.create_task(self._respond_async(result, request))
            return
        if self._state.backend.server.stopping:
            engine.close_after_response = True
        transport.write(engine.serialize(result, request))
        if engine.must_close:
            self._close_after_answer()
            return
        self._next_after_response()

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
            if self._state.backend.server.stopping:
                engine.close_after_response = True  # shutdown began while the handler ran
            if self._body_error is not None:
                # The streamed body broke a limit or a deadline: that is the answer.
                error, self._body_error = self._body_error, None
                if result.stream is not None:
                    await _close_stream(result.stream)
                if result.file is not None:
                    result.file.close()
                self._state.backend.server.observer.bad_request(error.status)
                transport.write(engine.error_response(error))
                self._close_after_answer()
                return
            transport.write(engine.serialize(result, request))
            if result.upgrade is not None:
                self._upgrade(result)
                return
            if result.file is not None:  # zero-copy file body (zzz/backends/_sendfile.py)
                if not await loop_send_file(self._loop, transport, request, result,
                                            self._write_piece,
                                            self._state.backend.write_timeout):
                    self._abort()
                    return
            elif result.stream is not None:
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
        self._next_after_response()

    def _next_after_response(self) -> None:
        """The answer is out: serve what was pipelined behind it, or wait for more."""
        engine = self._engine
        assert engine is not None
        self._busy = False
        self._idle_since = self._loop.time()
        pending = self._pending
        if pending:
            self._pending = []
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
            # engine.frame: a large piece goes out by writelines, not copied into
            # a framed bytes (uvloop gathers the pieces into one writev).
            if isinstance(stream, AsyncIterable):
                async for piece in stream:
                    if not await self._write_piece(*engine.frame(piece)):
                        return False
            else:
                for piece in stream:
                    if not await self._write_piece(*engine.frame(piece)):
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

    async def _write_piece(self, *pieces: bytes) -> bool:
        """Write ``pieces`` (several in one ``writelines``: uvloop gathers them into one
        ``writev``), then wait while the transport is over its high-water mark."""
        transport = self.transport
        if transport is None or transport.is_closing():
            return False
        if len(pieces) > 1:
            transport.writelines(pieces)
        elif pieces and pieces[0]:
            transport.write(pieces[0])
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

        self._due = math.inf  # the WebSocket layer keeps its own time
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
            self._apply_reading()

    def _resume_reading(self) -> None:
        if self._reading_paused:
            self._reading_paused = False
            self._apply_reading()

    def _apply_reading(self) -> None:
        """Tell the transport whether to read: paused while either pipelining or a
        streamed body's consumer asks for it."""
        transport = self.transport
        if transport is None:
            return
        paused = self._reading_paused or self._body_paused
        if paused != self._transport_paused:
            self._transport_paused = paused
            if paused:
                transport.pause_reading()
            else:
                transport.resume_reading()

    def _check_deadlines(self) -> None:
        """The per-connection deadline check, run by the loop's sweep when ``_due``:
        read deadline, keep-alive and write timeout."""
        self._due = math.inf
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
                body = self._body
                if body is not None:
                    # The application is reading a streamed body that stopped coming:
                    # its read fails, and the 408 replaces whatever it answers.
                    engine.feed(b"")
                    self._request_started = None
                    self._body = None
                    self._body_error = error
                    body.fail(BodyError(error.detail, 408))
                elif self._busy:
                    # An earlier request is still being answered: the 408 goes after
                    # its response, never in its place. Stop parsing and queue it.
                    engine.feed(b"")
                    self._request_started = None
                    self._pending.append(error)
                    self._maybe_pause_reading()
                else:
                    backend.server.observer.bad_request(error.status)
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
        self._due = due

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
        self._due = math.inf
        self._reading_paused = self._body_paused = False
        self._apply_reading()
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
        self.limits = config.engine_limits()
        self.stream_body = server.stream_body
        self.read_timeout = config.read_timeout_ms / 1000.0
        self.write_timeout = config.write_timeout_ms / 1000.0
        self.keepalive_timeout = config.keepalive_timeout_ms / 1000.0
        #: A connection's deadline check never waits longer than this, so a request
        #: that starts meanwhile is still checked by its read deadline (plus the sweep).
        self.check_interval = min(self.read_timeout, self.keepalive_timeout, self.write_timeout)
        self.max_pipelined = config.eventloop.max_pipelined
        self.tune_transport = transport_tuner(config)
        self.tls = server.ssl_context is not None
        self.scheme = "https" if server.ssl_context is not None else "http"
        self.engine_class = connection_class(config.proxy_protocol)  # PROXY protocol or plain
        self.states: list[LoopState] = []
        self._states_lock = threading.Lock()
        server.observer.attach_backend(self)

    def run(self) -> None:
        server = self.server
        tune_malloc(self.config.malloc_mmap_threshold, self.config.malloc_trim_threshold)
        executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=self.config.eventloop.blocking_threads,
            thread_name_prefix="zzz-blocking",
        )
        server.blocking_executor = executor
        server.offload_sync = True
        # The application starts on the main loop (the loop its coroutines share)
        # before the port is bound: a failed start-up never had a listener.
        main_loop = new_event_loop(self.config.eventloop.loop)
        server.coroutine_loop = main_loop
        try:
            main_loop.run_until_complete(self._app_lifecycle("startup"))
            listener = bind_listener(self.config)
        except BaseException:
            executor.shutdown(wait=False)
            server.blocking_executor = None
            with contextlib.suppress(Exception):
                main_loop.run_until_complete(main_loop.shutdown_asyncgens())
            main_loop.close()
            raise
        listener.setblocking(False)
        server.address = bound_address(listener)
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
            self._run_loop(listener, True, main_loop)
        finally:
            # The other loops drain in parallel, up to the same drain deadline.
            deadline = time.monotonic() + self.config.drain_timeout_ms / 1000.0 + LOOP_JOIN_S
            for thread in threads:
                thread.join(max(0.0, deadline - time.monotonic()))
            executor.shutdown(wait=False, cancel_futures=True)
            server.blocking_executor = None
            with contextlib.suppress(OSError):
                listener.close()

    def _run_loop(self, listener: socket.socket, main: bool,
                  loop: asyncio.AbstractEventLoop | None = None) -> None:
        if loop is None:
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
            sized_reads(lambda: HttpProtocol(state), self.config.read_size),  # _sockopts
            sock=listener,
            ssl=_served_tls_context(self.server, self.read_timeout),
            ssl_handshake_timeout=self.read_timeout if self.server.ssl_context else None,
            backlog=self.config.kernel_backlog,
        )
        self.server.on_shutdown(lambda: _call_threadsafe(loop, stop.set))
        state.fd_watch.start(listener, self.config.eventloop.event_loop_count)
        guard = DrainGuard(loop, state.thread_id, self.config.drain_timeout_ms / 1000.0,
                           self._describe)
        self.server.on_shutdown(guard.arm)  # cuts a handler that never gives the loop back
        watchdog = None
        if self.config.loop_block_warn_ms:
            watchdog = LoopWatchdog(loop, self.config.loop_block_warn_ms,
                                    state.thread_id, self._describe, state.connections)
            watchdog.start()
            state.watchdog = watchdog
        if main:
            self.server.attach_timers(LoopTimers(loop))
            self.server.ready.set()
        try:
            await stop.wait()
            await self._drain(state)
            if main:
                await self._app_lifecycle("shutdown")
        finally:
            state.stop_sweeping()
            guard.drained()
            if watchdog is not None:
                watchdog.stop()

    async def _app_lifecycle(self, stage: str) -> None:
        """Run the app's start-up or shutdown here, on the loop (from the server's
        synchronous helpers, which expect a runner for the coroutine)."""
        pending: list[Any] = []
        if stage == "startup":
            self.server.run_startup(pending.append)
        else:
            self.server.run_shutdown(pending.append)
        for coro in pending:
            if stage == "startup":
                try:
                    await coro
                except Exception as exc:
                    from zzz.errors import StartupError

                    if isinstance(exc, StartupError):
                        raise
                    raise StartupError(
                        f"application startup failed: {type(exc).__name__}: {exc}") from exc
            else:
                try:
                    await asyncio.wait_for(coro, max(1.0, self.config.drain_timeout_ms / 1000))
                except Exception:
                    log.exception("application shutdown failed")

    def _describe(self, request: Request) -> str:
        describe = getattr(self.server.app, "describe_route", None)
        return str(describe(request)) if describe is not None else "-"

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

    return follow_reloads(server.ssl_context, lambda: server.ssl_context, handshake_timeout,
                          on_failure=server.observer.tls_failed)


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
