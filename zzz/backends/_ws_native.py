"""WebSocket connections on the native (thread pool) backend.

An open WebSocket never pins a worker. Its connection stays in the backend's
ownership model: parked on the acceptor's selector while quiet, queued when
readable, served by one worker at a time — so messages of one connection are
delivered in order, while different connections run in parallel.

* Receiving (the owning worker): read what is there, feed the
  :class:`~zzz.websocket.Session`, run ``on_message`` for each complete message,
  then park the socket again.
* Sending (any thread): a per-connection lock guards the session and the
  socket. Writes never block: what the kernel does not take waits in the
  connection's buffer and a service thread finishes it when the socket becomes
  writable (epoll ``EPOLLOUT``). Back-pressure follows the policy in
  :mod:`zzz.websocket`: while more than ``ws_write_buffer_high`` bytes wait, a
  send waits (on the link's ``drained`` condition, which the service thread
  signals) — except on the service thread itself, which queues a bounded
  number of messages; a backlog with no progress for ``write_timeout_ms`` is
  a peer that stopped reading: 1008 where possible, then the cut.
* The service thread (``zzz-ws``, started with the first WebSocket) also runs
  the heartbeat — built in here too, with the same ``ws_ping_interval_ms`` /
  ``ws_ping_timeout_ms`` as the event loop — and the close timeouts.
* A thread other than the owner never closes the socket: it shuts it down,
  which wakes the owner through the selector, and the owner finishes the
  connection (``on_close``, then ``close``). So a file descriptor is never
  closed while another thread may still use it.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import select
import socket
import ssl
import threading
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from zzz.http.request import Request
from zzz.http.response import Response
from zzz.websocket import (
    CLOSE_TIMEOUT_S,
    MAX_MESSAGES_BEHIND,
    STALLED_CODE,
    STALLED_REASON,
    Session,
    Upgrade,
    WebSocket,
    WebSocketEndpoint,
    log_callback_error,
)

if TYPE_CHECKING:
    from zzz.backends.native import Conn, NativeBackend

log = logging.getLogger("zzz.websocket")

#: Bounds of the service thread's sweep period (heartbeat and close timeouts are
#: checked this often; a quarter of the shortest of them, within these bounds).
MIN_SWEEP_S = 0.01
MAX_SWEEP_S = 0.5
#: Close code and reason sent to open sockets when the server shuts down.
SHUTDOWN_CODE = 1001
SHUTDOWN_REASON = "server shutting down"
#: Sent when a callback raised (RFC 6455 §7.4.1: internal error).
CALLBACK_ERROR_CODE = 1011

_EAGAIN = (BlockingIOError, ssl.SSLWantWriteError, ssl.SSLWantReadError)
#: Sends that add a message to the backlog (and so wait while the peer is behind).
_DATA_SENDS = (Session.send_text, Session.send_binary)


class NativeLink:
    """One WebSocket connection: the :class:`~zzz.websocket.Driver` of its WebSocket.

    Everything that touches the session or the socket for writing holds
    ``lock``; ``notified`` is only touched by the owning worker.
    """

    __slots__ = ("behind", "broken", "conn", "deadline", "drained", "endpoint", "eof_done",
                 "eof_wanted", "finished", "lock", "manager", "notified", "pending",
                 "progress_at", "session", "write_registered", "ws")

    def __init__(self, manager: NativeWebSockets, conn: Conn, session: Session,
                 endpoint: WebSocketEndpoint) -> None:
        self.manager = manager
        self.conn = conn
        self.session = session
        self.endpoint = endpoint
        self.lock = threading.RLock()
        #: Signalled when the backlog drains below the mark or the link ends.
        self.drained = threading.Condition(self.lock)
        self.ws: WebSocket | None = None
        #: Bytes the kernel has not taken yet.
        self.pending = bytearray()
        #: When the kernel last took bytes of ``pending`` (or it became non-empty).
        self.progress_at = 0.0
        #: Messages queued without waiting while the peer was behind.
        self.behind = 0
        #: The session finished our side: half-close once ``pending`` is out.
        self.eof_wanted = False
        self.eof_done = False
        #: The connection is being cut (write error, backpressure, timeout): the
        #: owner treats it as EOF; nothing is written any more.
        self.broken = False
        #: The owner closed the socket; nothing may touch it.
        self.finished = False
        #: ``on_close`` has run.
        self.notified = False
        #: Close-handshake deadline (monotonic), set once closing started.
        self.deadline: float | None = None
        self.write_registered = False

    # ------------------------------------------------------------------ Driver

    def perform(self, action: Callable[..., bool], *args: Any) -> bool:
        with self.lock:
            if self.finished or self.broken:
                return False
            if (action in _DATA_SENDS and len(self.pending) > self.manager.write_buffer_high
                    and not self._wait_drained_locked()):
                return False
            done = action(self.session, *args)
            if done:
                self.flush_locked()
            return done

    def is_open(self) -> bool:
        return not (self.finished or self.broken) and self.session.is_open

    def _wait_drained_locked(self) -> bool:
        """The peer is behind: wait (bounded by ``write_timeout_ms``; the sweep cuts
        a peer stalled that long) for the backlog to drain, or, on the service
        thread, which must not block, queue up to :data:`MAX_MESSAGES_BEHIND`."""
        manager = self.manager
        if threading.current_thread() is manager.service_thread:
            if self.behind >= MAX_MESSAGES_BEHIND:
                return False
            self.behind += 1
            return True
        deadline = time.monotonic() + manager.write_timeout
        while len(self.pending) > manager.write_buffer_high:
            remaining = deadline - time.monotonic()
            if self.finished or self.broken or remaining <= 0:
                return False
            self.drained.wait(remaining)
        return not (self.finished or self.broken)

    # ------------------------------------------------------------------ writing

    def flush_locked(self) -> None:
        """Write what the session produced (caller holds ``lock``)."""
        data, eof = self.session.data_to_send()
        if eof:
            self.eof_wanted = True
        if data and not self.broken:
            if self.pending:
                self.pending += data
            else:
                sent = self._send_some(data)
                if sent < len(data):
                    self.pending += memoryview(data)[sent:]
                    self.progress_at = time.monotonic()
        self.write_locked()

    def write_locked(self) -> None:
        """Push ``pending`` without blocking; arm the writer while some is left."""
        if self.broken:
            return
        pending = self.pending
        if pending:
            sent = self._send_some(pending)
            if sent:
                del pending[:sent]
                self.progress_at = time.monotonic()
                if len(pending) <= self.manager.write_buffer_high:
                    self.behind = 0
                    self.drained.notify_all()
            if self.broken:
                return
            if pending:
                self.manager.want_write(self)
                return
        if self.eof_wanted and not self.eof_done:
            self.eof_done = True
            self._shutdown(socket.SHUT_WR)

    def _send_some(self, data: bytes | bytearray) -> int:
        sock = self.conn.sock
        total = 0
        with memoryview(data) as view:
            size = len(view)
            try:
                while total < size:
                    if self.conn.tls:
                        sent = sock.send(view[total:])
                    else:
                        sent = sock.send(view[total:], socket.MSG_DONTWAIT)
                    if sent <= 0:
                        break
                    total += sent
            except _EAGAIN:
                pass
            except OSError:
                self.kill_locked()
        return total

    def kill_locked(self) -> None:
        """Cut the connection: the owner wakes up (EOF) and finishes it."""
        if self.broken or self.finished:
            return
        self.broken = True
        self.pending = bytearray()
        self.drained.notify_all()
        self._shutdown(socket.SHUT_RDWR)

    def stall_locked(self, stalled_s: float) -> None:
        """The peer took nothing for ``write_timeout_ms``: a 1008 close frame if
        the socket still takes it (behind what is queued), then the cut."""
        log.info("WebSocket %s stopped reading (%d bytes unsent for %.1f s): closing (%d)",
                 self.ws, len(self.pending), stalled_s, STALLED_CODE)
        self.session.fail(STALLED_CODE, STALLED_REASON)
        data, _ = self.session.data_to_send()
        self.pending += data
        sent = self._send_some(self.pending)
        del self.pending[:sent]
        if self.pending:
            self.session.lost_close_frame()
        self.kill_locked()

    def _shutdown(self, how: int) -> None:
        # socket.socket.shutdown, not SSLSocket.shutdown: the latter drops the TLS
        # object, and the owner may still have to read (and discard) records.
        with contextlib.suppress(OSError):
            socket.socket.shutdown(self.conn.sock, how)


class NativeWebSockets:
    """All WebSocket connections of one native backend, and the ``zzz-ws`` service thread."""

    def __init__(self, backend: NativeBackend) -> None:
        self.backend = backend
        config = backend.config
        self.config = config
        self.write_buffer_high = config.ws_write_buffer_high
        self.write_timeout = config.write_timeout_ms / 1000.0
        self.shutting_down = False
        shortest = min(CLOSE_TIMEOUT_S, self.write_timeout)
        if config.ws_ping_interval_ms > 0:
            shortest = min(shortest, config.ws_ping_interval_ms / 1000.0,
                           config.ws_ping_timeout_ms / 1000.0)
        self.sweep_interval = max(MIN_SWEEP_S, min(MAX_SWEEP_S, shortest / 4))
        self._links: set[NativeLink] = set()
        self._lock = threading.Lock()
        self._writers: dict[int, NativeLink] = {}
        self._thread: threading.Thread | None = None
        self._stopped = False
        self._epoll: Any = None
        self._wake_r: socket.socket | None = None
        self._wake_w: socket.socket | None = None

    # ------------------------------------------------------------------ worker side

    def upgrade(self, conn: Conn, request: Request, response: Response, out: list[bytes]) -> bool:
        """Send the ``101`` (after any earlier pipelined responses) and take the
        connection over. Always False: the HTTP serving loop must let go of it."""
        backend = self.backend
        upgrade = response.upgrade
        if not isinstance(upgrade, Upgrade):
            log.error("unknown protocol upgrade %r; closing", upgrade)
            backend._close(conn)
            return False
        out.append(conn.engine.serialize(response, request))
        if not backend._send(conn, b"".join(out)):
            return False
        out.clear()
        session = upgrade.session(self.config, time.monotonic())
        link = NativeLink(self, conn, session, upgrade.endpoint)
        ws = link.ws = upgrade.websocket(link)
        conn.ws = link
        conn.deadline = None
        self._register(link)
        self._call(link, "on_open", upgrade.endpoint.on_open, ws)
        if self.shutting_down:
            link.perform(Session.close, SHUTDOWN_CODE, SHUTDOWN_REASON)
        self.serve(conn, conn.engine.upgrade_data)
        return False

    def serve(self, conn: Conn, first: bytes = b"") -> None:
        """Serve a WebSocket connection while it has data, then park or finish it."""
        link: NativeLink = conn.ws
        session = link.session
        endpoint = link.endpoint
        ws = link.ws
        assert ws is not None
        data: bytes | None = first or None
        while True:
            with link.lock:
                if data is None:
                    if link.broken:
                        data = b""
                    else:
                        try:
                            data = conn.recv()
                        except OSError:
                            data = b""
                        if data is None:
                            break
                if data:
                    messages = session.receive(data)
                else:
                    messages = []
                    session.receive_eof()
                link.flush_locked()
                if session.closing and link.deadline is None:
                    link.deadline = time.monotonic() + CLOSE_TIMEOUT_S
            for message in messages:
                self._call(link, "on_message", endpoint.on_message, ws, message)
            if session.deferred:  # a failure in the same read waited for these messages
                with link.lock:
                    session.release()
                    link.flush_locked()
            if not data:
                self._finish(link)
                return
            if session.finished and not link.notified:
                self._notify_close(link)
            data = None
        self.backend.parker.park(conn)

    def _call(self, link: NativeLink, name: str, fn: Callable[..., Any] | None,
              *args: Any) -> None:
        if fn is None:
            return
        ws = link.ws
        assert ws is not None
        try:
            result = fn(*args)
            if result is not None and inspect.isawaitable(result):
                self.backend.coroutines.run(_await(result))
        except Exception:
            log_callback_error(name, ws)
            if name != "on_close":
                link.perform(Session.close, CALLBACK_ERROR_CODE, "internal error")

    def _notify_close(self, link: NativeLink) -> None:
        link.notified = True
        ws = link.ws
        assert ws is not None
        code, reason = link.session.close_info()
        self._call(link, "on_close", link.endpoint.on_close, ws, code, reason)

    def _finish(self, link: NativeLink) -> None:
        """The owner ends the connection: ``on_close`` (once), then close the socket."""
        with link.lock:
            link.finished = True
            link.pending = bytearray()
            link.drained.notify_all()
            self._unwatch_locked(link)
        with self._lock:
            self._links.discard(link)
        if not link.notified:
            self._notify_close(link)
        self.backend._close(link.conn)

    # ------------------------------------------------------------------ shutdown

    def begin_shutdown(self) -> None:
        """Graceful shutdown: every open socket gets a 1001 close frame now."""
        self.shutting_down = True
        with self._lock:
            links = list(self._links)
        for link in links:
            link.perform(Session.close, SHUTDOWN_CODE, SHUTDOWN_REASON)

    def stop(self) -> None:
        """The backend is stopping: end the service thread; ``on_close`` for any
        socket the drain deadline cut (its TCP connection is closed by the backend)."""
        self._stopped = True
        thread = self._thread
        if thread is not None:
            self._wake()
            thread.join(MAX_SWEEP_S * 4)
        with self._lock:
            links = list(self._links)
            self._links.clear()
        for link in links:
            with link.lock:
                link.finished = True
                link.drained.notify_all()
            if not link.notified:
                self._notify_close(link)
        if self._epoll is not None:
            self._epoll.close()
        for sock in (self._wake_r, self._wake_w):
            if sock is not None:
                sock.close()

    # ------------------------------------------------------------------ service thread

    @property
    def service_thread(self) -> threading.Thread | None:
        return self._thread

    def _register(self, link: NativeLink) -> None:
        with self._lock:
            self._links.add(link)
            if self._thread is None:
                self._wake_r, self._wake_w = socket.socketpair()
                self._wake_r.setblocking(False)
                self._wake_w.setblocking(False)
                if hasattr(select, "epoll"):
                    self._epoll = select.epoll()
                    self._epoll.register(self._wake_r.fileno(), select.EPOLLIN)
                self._thread = threading.Thread(target=self._run, name="zzz-ws", daemon=True)
                self._thread.start()

    def want_write(self, link: NativeLink) -> None:
        """Ask the service thread to finish ``link``'s writes (caller holds its lock)."""
        epoll = self._epoll
        if epoll is None:  # pragma: no cover - non-Linux: the sweep retries writes
            self._writers[id(link)] = link
            return
        fd = link.conn.fd
        mask = select.EPOLLOUT | select.EPOLLONESHOT
        self._writers[fd] = link
        try:
            if link.write_registered:
                epoll.modify(fd, mask)
            else:
                epoll.register(fd, mask)
                link.write_registered = True
        except OSError:
            link.kill_locked()

    def _unwatch_locked(self, link: NativeLink) -> None:
        if self._epoll is None:  # pragma: no cover - non-Linux
            self._writers.pop(id(link), None)
            return
        fd = link.conn.fd
        if self._writers.get(fd) is link:
            del self._writers[fd]
        if link.write_registered:
            link.write_registered = False
            with contextlib.suppress(OSError, ValueError):
                self._epoll.unregister(fd)

    def _wake(self) -> None:
        if self._wake_w is not None:
            with contextlib.suppress(OSError):
                self._wake_w.send(b"x")

    def _run(self) -> None:
        next_sweep = time.monotonic() + self.sweep_interval
        wake_fd = self._wake_r.fileno() if self._wake_r is not None else -1
        while not self._stopped:
            timeout = max(0.0, next_sweep - time.monotonic())
            if self._epoll is not None:
                try:
                    events = self._epoll.poll(timeout)
                except (OSError, ValueError):  # pragma: no cover - closed under us
                    return
                for fd, _ in events:
                    if fd == wake_fd:
                        with contextlib.suppress(OSError):
                            while self._wake_r is not None and self._wake_r.recv(4096):
                                pass
                        continue
                    link = self._writers.get(fd)
                    if link is not None:
                        with link.lock:
                            if not link.finished and link.conn.fd == fd:
                                link.write_locked()
            else:  # pragma: no cover - non-Linux
                time.sleep(timeout)
                for link in list(self._writers.values()):
                    with link.lock:
                        if not link.finished:
                            link.write_locked()
            now = time.monotonic()
            if now >= next_sweep:
                self._sweep(now)
                next_sweep = now + self.sweep_interval

    def _sweep(self, now: float) -> None:
        """Stalled peers (1008), heartbeat pings, pong timeouts (1011) and
        close-handshake timeouts."""
        with self._lock:
            links = list(self._links)
        for link in links:
            with link.lock:
                if link.finished or link.broken:
                    continue
                if link.pending and now - link.progress_at >= self.write_timeout:
                    link.stall_locked(now - link.progress_at)
                    continue
                session = link.session
                if session.closing:
                    if link.deadline is None:
                        link.deadline = now + CLOSE_TIMEOUT_S
                    elif now >= link.deadline:
                        link.kill_locked()
                    continue
                session.heartbeat(now)
                link.flush_locked()
                if session.timed_out:
                    log.info("WebSocket %s: no pong in time, closing (1011)", link.ws)
                    link.kill_locked()


async def _await(awaitable: Awaitable[Any]) -> Any:
    return await awaitable
