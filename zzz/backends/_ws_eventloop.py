"""WebSocket connections on the event-loop backend.

After the ``101`` the HTTP protocol object hands the transport to a
:class:`WebSocketProtocol` (``transport.set_protocol``), so HTTP requests pay
nothing for WebSocket support. Everything runs on the connection's loop:

* ``data_received`` feeds the :class:`~zzz.websocket.Session` and runs the
  callbacks. Plain callbacks run inline; an ``async def`` callback runs as a
  task and the callbacks behind it wait their turn (reading pauses while more
  than :data:`MAX_QUEUED_CALLBACKS` wait), so a connection's messages are
  always handled in order.
* Sends from the loop thread write at once; from any other thread they are
  handed over with ``call_soon_threadsafe``.
* Heartbeat: one timer per connection, re-armed only when it fires: a ping every
  ``ws_ping_interval_ms``; no pong within ``ws_ping_timeout_ms`` → close frame
  1011, our end of TCP closed, ``on_close(1011)``.
* Back-pressure (the policy is in :mod:`zzz.websocket`): the transport's
  high-water mark is ``ws_write_buffer_high``. Between ``pause_writing`` and
  ``resume_writing`` the peer is behind: reading pauses too (a peer that does
  not read our answers gets no more callbacks run for it), sends from other
  threads wait for ``resume_writing``, sends on the loop thread queue at most
  :data:`~zzz.websocket.MAX_MESSAGES_BEHIND` messages, and a timer checks every
  ``write_timeout_ms`` that the backlog drained some: if not, the peer gets a
  1008 close frame where the socket still takes it and the connection is cut.
"""

from __future__ import annotations

import asyncio
import collections
import inspect
import logging
import threading
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from zzz.websocket import (
    CLOSE_TIMEOUT_S,
    MAX_MESSAGES_BEHIND,
    STALLED_CODE,
    STALLED_REASON,
    Session,
    Upgrade,
    WebSocketEndpoint,
    log_callback_error,
)

if TYPE_CHECKING:
    from zzz.backends.eventloop import HttpProtocol, LoopState

log = logging.getLogger("zzz.websocket")

#: Callbacks waiting behind a running ``async def`` callback before reading pauses.
MAX_QUEUED_CALLBACKS = 64
#: Close code and reason sent to open sockets when the server shuts down.
SHUTDOWN_CODE = 1001
SHUTDOWN_REASON = "server shutting down"
#: Sent when a callback raised (RFC 6455 §7.4.1: internal error).
CALLBACK_ERROR_CODE = 1011

_Call = tuple[str, Callable[..., Any], tuple[Any, ...]]
#: Sends that add a message to the backlog (and so wait or count while the peer is behind).
_DATA_SENDS = (Session.send_text, Session.send_binary)


class WebSocketProtocol(asyncio.Protocol):
    """One WebSocket connection on an event loop; also its WebSocket's driver."""

    def __init__(self, owner: HttpProtocol, state: LoopState, transport: asyncio.Transport,
                 upgrade: Upgrade) -> None:
        self._owner = owner
        self._state = state
        self._loop = state.loop
        self._thread = threading.get_ident()
        self.transport: asyncio.Transport | None = transport
        config = state.backend.config
        self._high = config.ws_write_buffer_high
        self._write_timeout = config.write_timeout_ms / 1000.0
        transport.set_write_buffer_limits(high=self._high)
        #: Between pause_writing and resume_writing: the peer is behind.
        self._write_paused = False
        #: Loop-thread messages queued while behind (bounded by MAX_MESSAGES_BEHIND).
        self._behind = 0
        #: Other threads' sends wait on this while the peer is behind.
        self._drained = threading.Condition()
        self._stall_timer: asyncio.TimerHandle | None = None
        #: Backlog size at the last stall check, and bytes written since.
        self._stall_backlog = 0
        self._written = 0
        self.session = upgrade.session(config, self._loop.time())
        self.endpoint: WebSocketEndpoint = upgrade.endpoint
        self.ws = upgrade.websocket(self)
        self._backlog: collections.deque[_Call] = collections.deque()
        self._running = False
        self._task: asyncio.Task[None] | None = None
        self._reading_paused = False
        self._notified = False
        self._lost = False
        self._heartbeat: asyncio.TimerHandle | None = None
        self._close_timer: asyncio.TimerHandle | None = None
        #: Bytes other threads handed to the loop that are not written yet.
        self._queued = 0
        self._queue_lock = threading.Lock()

    def start(self, first: bytes) -> None:
        """Run ``on_open``, arm the heartbeat and process bytes that came with the head."""
        self._dispatch("on_open", self.endpoint.on_open, (self.ws,))
        if self._state.shutting_down:
            self.begin_shutdown()
        due = self.session.heartbeat(self._loop.time())
        if due is not None:
            self._heartbeat = self._loop.call_at(due, self._on_heartbeat)
        if first and not self._lost:
            self.data_received(first)

    # ------------------------------------------------------------------ Driver

    def perform(self, action: Callable[..., bool], *args: Any) -> bool:
        if threading.get_ident() == self._thread:
            return self._perform(action, args)
        if self._lost:
            return False
        # Bytes handed over but not yet written count as backlog too: a thread
        # producing faster than the loop writes waits like one whose peer is behind.
        size = len(args[0]) if args and isinstance(args[0], bytes | str) else 0
        if action in _DATA_SENDS and not self._wait_drained():
            return False
        with self._queue_lock:
            self._queued += size
        try:
            self._loop.call_soon_threadsafe(self._perform_queued, action, args, size)
        except RuntimeError:  # the loop is closed
            return False
        return True

    def _behind_now(self) -> bool:
        return self._write_paused or self._queued > self._high

    def _wait_drained(self) -> bool:
        """Another thread's send while the peer is behind: wait for it to catch up
        (bounded by ``write_timeout_ms``; the stall timer cuts a peer stuck that long)."""
        if not self._behind_now():
            return True
        with self._drained:
            self._drained.wait_for(lambda: self._lost or not self._behind_now(),
                                   self._write_timeout)
        return not (self._lost or self._behind_now())

    def _perform_queued(self, action: Callable[..., bool], args: tuple[Any, ...],
                        size: int) -> None:
        with self._queue_lock:
            self._queued -= size
        if size and self._queued <= self._high:
            self._wake_senders()
        self._perform(action, args)

    def _wake_senders(self) -> None:
        with self._drained:
            self._drained.notify_all()

    def is_open(self) -> bool:
        return not self._lost and self.session.is_open

    def _perform(self, action: Callable[..., bool], args: tuple[Any, ...]) -> bool:
        transport = self.transport
        if transport is None or transport.is_closing():
            return False
        if self._write_paused and action in _DATA_SENDS:
            if self._behind >= MAX_MESSAGES_BEHIND:
                return False  # the loop thread cannot wait: bounded queue, then refuse
            self._behind += 1
        done = action(self.session, *args)
        if done:
            self._flush()
            self._after_io()
        return done

    # ------------------------------------------------------------------ asyncio callbacks

    def data_received(self, data: bytes) -> None:
        messages = self.session.receive(data)
        self._flush()
        on_message = self.endpoint.on_message
        if on_message is not None:
            ws = self.ws
            for message in messages:
                self._dispatch("on_message", on_message, (ws, message))
        if self.session.deferred:  # a failure in the same read waits for these messages
            self._dispatch("release", self._release_deferred, ())
        self._after_io()

    def _release_deferred(self) -> None:
        self.session.release()
        self._flush()
        self._after_io()

    def eof_received(self) -> bool | None:
        self.session.receive_eof()
        self._flush()
        self._after_io()
        return None  # the transport closes itself

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost = True
        self.transport = None
        self._state.connections.discard(self._owner)
        for timer in (self._heartbeat, self._close_timer, self._stall_timer):
            if timer is not None:
                timer.cancel()
        self._heartbeat = self._close_timer = self._stall_timer = None
        self._wake_senders()
        self._notify_close()

    def pause_writing(self) -> None:
        """The peer is behind: stop reading, hold senders, watch for a stall."""
        self._write_paused = True
        self._set_reading()
        if self._stall_timer is None and self.transport is not None:
            self._stall_backlog = self.transport.get_write_buffer_size()
            self._written = 0
            self._stall_timer = self._loop.call_later(self._write_timeout, self._check_stall)

    def resume_writing(self) -> None:
        self._write_paused = False
        self._behind = 0
        if self._stall_timer is not None:
            self._stall_timer.cancel()
            self._stall_timer = None
        self._set_reading()
        self._wake_senders()

    def _check_stall(self) -> None:
        """Every ``write_timeout_ms`` while behind: some of the backlog must have gone."""
        self._stall_timer = None
        transport = self.transport
        if transport is None or not self._write_paused:
            return
        backlog = transport.get_write_buffer_size()
        if backlog < self._stall_backlog + self._written:  # the peer took something
            self._stall_backlog = backlog
            self._written = 0
            self._stall_timer = self._loop.call_later(self._write_timeout, self._check_stall)
            return
        log.info("WebSocket %s stopped reading (%d bytes unsent for %.1f s): closing (%d)",
                 self.ws, backlog, self._write_timeout, STALLED_CODE)
        session = self.session
        session.fail(STALLED_CODE, STALLED_REASON)
        data, _ = session.data_to_send()
        if data:
            transport.write(data)
        if transport.get_write_buffer_size():
            session.lost_close_frame()  # queued behind what the peer never took
        transport.abort()

    # ------------------------------------------------------------------ writing, closing

    def _flush(self) -> None:
        data, eof = self.session.data_to_send()
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        if data:
            self._written += len(data)
            transport.write(data)
        if eof:
            if transport.can_write_eof():
                transport.write_eof()
            else:  # TLS: close_notify, then the TCP close
                transport.close()

    def _after_io(self) -> None:
        session = self.session
        if session.closing and self._close_timer is None and not self._lost:
            self._close_timer = self._loop.call_later(CLOSE_TIMEOUT_S, self._abort)
        if session.finished:
            self._notify_close()

    def _abort(self) -> None:
        self._close_timer = None
        if self.transport is not None:
            self.transport.abort()

    def _notify_close(self) -> None:
        if self._notified:
            return
        self._notified = True
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            self._heartbeat = None
        code, reason = self.session.close_info()
        self._dispatch("on_close", self.endpoint.on_close, (self.ws, code, reason))

    def _on_heartbeat(self) -> None:
        self._heartbeat = None
        if self._lost or self._notified:
            return
        session = self.session
        due = session.heartbeat(self._loop.time())
        self._flush()
        if session.timed_out:
            log.info("WebSocket %s: no pong in time, closing (1011)", self.ws)
        elif due is not None:
            self._heartbeat = self._loop.call_at(due, self._on_heartbeat)
        self._after_io()

    def begin_shutdown(self) -> None:
        """Graceful shutdown: a 1001 close frame now; the drain waits for the answer."""
        self._perform(Session.close, (SHUTDOWN_CODE, SHUTDOWN_REASON))

    # ------------------------------------------------------------------ callbacks, in order

    def _dispatch(self, name: str, fn: Callable[..., Any] | None, args: tuple[Any, ...]) -> None:
        if fn is None:
            return
        self._backlog.append((name, fn, args))
        if self._running or self._task is not None:
            if len(self._backlog) > MAX_QUEUED_CALLBACKS and not self._reading_paused:
                self._set_reading()
            return
        self._run_backlog()

    def _set_reading(self) -> None:
        """Read only while the peer keeps up with our writes and the callbacks keep up
        with its messages."""
        pause = self._write_paused or len(self._backlog) > MAX_QUEUED_CALLBACKS
        transport = self.transport
        if pause != self._reading_paused and transport is not None and not transport.is_closing():
            self._reading_paused = pause
            if pause:
                transport.pause_reading()
            else:
                transport.resume_reading()

    def _run_backlog(self) -> None:
        self._running = True
        try:
            backlog = self._backlog
            while backlog:
                name, fn, args = backlog.popleft()
                try:
                    result = fn(*args)
                except Exception:
                    self._callback_failed(name)
                    continue
                if result is not None and inspect.isawaitable(result):
                    self._task = self._loop.create_task(self._await(name, result))
                    return
        finally:
            self._running = False
        if self._reading_paused:
            self._set_reading()

    async def _await(self, name: str, awaitable: Awaitable[Any]) -> None:
        try:
            await awaitable
        except Exception:
            self._callback_failed(name)
        self._task = None
        self._run_backlog()

    def _callback_failed(self, name: str) -> None:
        log_callback_error(name, self.ws)
        if name != "on_close":
            self._perform(Session.close, (CALLBACK_ERROR_CODE, "internal error"))


def start_websocket(owner: HttpProtocol, state: LoopState, transport: asyncio.Transport,
                    upgrade: Any, first: bytes) -> WebSocketProtocol | None:
    """Switch ``transport`` (its ``101`` already written) to a WebSocket protocol."""
    if not isinstance(upgrade, Upgrade):
        log.error("unknown protocol upgrade %r; closing", upgrade)
        transport.close()
        return None
    protocol = WebSocketProtocol(owner, state, transport, upgrade)
    transport.set_protocol(protocol)
    if owner._reading_paused:
        transport.resume_reading()
    protocol.start(first)
    return protocol

