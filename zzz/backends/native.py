"""Native backend: one acceptor thread → bounded queue → pool of worker threads.

The original zzz design, made production-grade:

* The acceptor (the thread that called ``listen``) ``accept()``s and pushes
  connections onto a :class:`BoundedQueue`. When the queue is full it blocks,
  so no accepted connection is dropped; the kernel backlog holds the rest.
* Workers pop a connection and serve it *while it has data*. A connection with
  nothing to read (idle keep-alive, or a client trickling a request) is parked
  on the acceptor's selector instead of pinning a worker, and queued again
  when it becomes readable. So 1,000 idle keep-alive connections with 4
  workers cannot stop a new client from being served.
* The acceptor also enforces deadlines of parked connections: the absolute
  read deadline of a partial request (→ 408) and the keep-alive timeout.

Blocking sockets are used in the workers (one syscall per recv/send); the
write timeout is the kernel's ``SO_SNDTIMEO``: a client that makes no progress
reading for ``write_timeout_ms`` is dropped.
"""

from __future__ import annotations

import collections
import concurrent.futures
import contextlib
import errno
import logging
import os
import select
import selectors
import socket
import ssl
import struct
import threading
import time
from collections.abc import AsyncIterable, Awaitable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

from zzz.backends._coroutines import SharedLoop
from zzz.backends._dispatch import (
    LINGER_CLOSE_S,
    LINGER_MAX_BYTES,
    answer_expect,
    app_error,
)
from zzz.backends._drain import may_close_idle
from zzz.backends._handshakes_last import HandshakesLast
from zzz.backends._listener import bind_listener, bound_address
from zzz.backends._malloc import tune_malloc
from zzz.backends._peers import client_address
from zzz.backends._sendfile import native_send_file
from zzz.backends._sockopts import accepted_options, apply_options
from zzz.backends._thread_timers import ThreadTimerService
from zzz.backends._ws_native import NativeWebSockets
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
from zzz.tls import describe_handshake_error

if TYPE_CHECKING:
    from zzz.server import Server

log = logging.getLogger("zzz.native")

#: Bytes asked of the kernel per recv().
RECV_SIZE = 65536
#: Longest the acceptor sleeps before sweeping deadlines of parked connections.
MAX_SWEEP_INTERVAL_S = 0.25
#: How long a worker waits for the next request on its connection before parking it,
#: when no other connection is waiting for a worker (saves a park/unpark round trip).
WAIT_BEFORE_PARK_S = 0.0005
#: Time workers get to exit once the queue is closed after a complete drain.
WORKER_JOIN_S = 2.0
#: Time workers get after the drain deadline cut connections still in flight.
CUT_JOIN_S = 0.1
#: Largest plaintext of one TLS record: a read with a buffer this large drains the
#: record it reads, so OpenSSL (without read-ahead) keeps no decrypted bytes back.
TLS_RECORD_MAX = 16384
#: Largest slice handed to one ``SSLSocket.send``: OpenSSL reports a write only once
#: all of it went out, so slicing makes a slow reader's progress visible to the
#: write timeout (four TLS records).
TLS_SEND_SLICE = 4 * 16384
#: How long a worker waits for a slow reader's socket to take more of a streamed
#: response before parking the connection for writability (a fast reader drains a
#: full buffer well within this; a stalled one no longer holds the worker).
WAIT_BEFORE_WRITE_PARK_S = 0.002
#: Streamed-response states of :meth:`NativeBackend._write_stream`.
_STREAM_DONE, _STREAM_PARKED, _STREAM_CLOSED = 0, 1, 2
#: How often a worker pumping a streamed body to a coroutine re-checks whether the
#: coroutine finished (or first read the body) while the socket is silent.
PUMP_POLL_S = 0.05
#: How often a full queue's ``put`` re-checks the shutdown flag while it waits.
PUT_POLL_S = 0.1
#: How long the acceptor stops watching the listener after ``accept()`` ran out of
#: descriptors or memory: the pending connection stays in the kernel backlog (so the
#: listener stays readable) and retrying at once would spin.
ACCEPT_BACKOFF_S = 0.1
#: Connections accepted per wake-up of the acceptor before it polls again: a burst
#: of thousands would otherwise keep parked clients' requests waiting until every
#: one is accepted and TLS-wrapped (the listener is level-triggered: the rest follow).
ACCEPT_BATCH = 64
#: ``accept()`` errors that mean the process (not one client) is out of a resource.
_ACCEPT_RESOURCE_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
#: ``accept()`` errors that mean the listening socket itself is unusable. Any other
#: error concerns the one connection being accepted: Linux reports a new connection's
#: pending network error (ENETDOWN, EHOSTUNREACH, EPROTO, ...) and a firewall's
#: refusal (EPERM) from ``accept()`` — the next connection is unaffected.
_ACCEPT_FATAL_ERRNOS = frozenset({errno.EBADF, errno.EINVAL, errno.ENOTSOCK, errno.EFAULT})



class QueueClosed(Exception):
    """The queue was closed: the worker should exit."""


class BoundedQueue:
    """A FIFO of connections with a capacity, built on ``threading.Condition``.

    ``put`` blocks while the queue is full (back-pressure on the acceptor) and
    ``get`` blocks while it is empty. ``close`` wakes everyone: ``get`` then
    raises :class:`QueueClosed` once the queue is empty.
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._items: HandshakesLast[Conn] = HandshakesLast()  # TLS handshakes after requests
        self._lock = threading.Lock()
        self._not_empty = threading.Condition(self._lock)
        self._not_full = threading.Condition(self._lock)
        self._closed = False

    def put(self, item: Conn, stop: threading.Event | None = None) -> bool:
        """Add ``item``, waiting while full. False (``item`` not added) if the queue
        closed meanwhile, or if ``stop`` is set while the queue is full: a shutting-down
        acceptor must not stay blocked behind handlers that may outlive the drain."""
        with self._lock:
            while len(self._items) >= self.capacity and not self._closed:
                if stop is not None and stop.is_set():
                    return False
                self._not_full.wait(PUT_POLL_S)
            if self._closed:
                return False
            self._items.append(item)
            self._not_empty.notify()
            return True

    def put_resumed(self, item: Conn) -> bool:
        """Queue a connection whose coroutine finished, at once and whatever the
        capacity (it was accepted already; the capacity bounds new ones). False
        when the queue is closed."""
        with self._lock:
            if self._closed:
                return False
            self._items.append(item)
            self._not_empty.notify()
            return True

    def get(self) -> Conn:
        with self._lock:
            while not self._items:
                if self._closed:
                    raise QueueClosed
                self._not_empty.wait()
            item = self._items.popleft()
            self._not_full.notify()
            return item

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._not_empty.notify_all()
            self._not_full.notify_all()

    def __len__(self) -> int:
        return len(self._items)


class Conn:
    """One client connection and its HTTP state. Owned by one thread at a time.

    Plain TCP sockets are blocking (one syscall per recv/send, ``MSG_DONTWAIT``
    for the non-blocking reads). TLS sockets are non-blocking throughout so the
    handshake, like reads, never holds a worker while the client is silent.
    """

    __slots__ = ("body_error", "deadline", "engine", "extensions", "fd", "handshaking",
                 "idle_since", "linger_left", "lingering", "out_pieces", "out_request",
                 "out_source", "out_view", "pending", "recv_size", "sock", "tls", "waiting",
                 "waiting_request", "ws")

    def __init__(self, sock: socket.socket, engine: HTTPConnection, tls: bool = False,
                 recv_size: int = RECV_SIZE) -> None:
        self.recv_size = recv_size
        self.sock = sock
        self.fd = sock.fileno()
        self.engine = engine
        self.tls = tls
        #: True until the TLS handshake has completed.
        self.handshaking = tls
        #: Absolute monotonic deadline for the request (or handshake) being received.
        self.deadline: float | None = None
        self.idle_since = time.monotonic()
        #: Per-connection facts copied onto every request (TLS peer certificate);
        #: ``None`` until there is one (an empty dict per idle connection adds up).
        self.extensions: dict[str, Any] | None = None
        #: After an error answer: our side is shut, the rest of the request is read
        #: and dropped until EOF, ``deadline`` or ``linger_left`` bytes (lingering close).
        self.lingering = False
        self.linger_left = 0
        #: The WebSocket state once the connection was upgraded (``_ws_native.NativeLink``).
        self.ws: Any = None
        #: Engine events not handled yet: what followed a request handed to a coroutine,
        #: or what a plain handler's body reads brought in after its body ended.
        #: (A list: an empty deque costs 600 bytes on each of thousands of idle
        #: connections, and this one only grows at its end or is taken whole.)
        self.pending: list[Event] = []
        #: The coroutine answering ``waiting_request`` on the shared loop; the
        #: connection is queued again for a worker when it completes.
        self.waiting: concurrent.futures.Future[Response] | None = None
        self.waiting_request: Request | None = None
        #: The engine refused the streamed body being read (413, 400, 408): the
        #: answer is this error, whatever the application made of the broken body.
        self.body_error: ProtocolError | None = None
        #: A streamed response waiting for the client to read (parked for POLLOUT so a
        #: slow reader holds no worker): the unsent bytes, the pieces still to come,
        #: the stream to close at the end, and the request it answers.
        self.out_view: memoryview | None = None
        self.out_pieces: Iterator[bytes] | None = None
        self.out_source: Iterable[bytes] | AsyncIterable[bytes] | None = None
        self.out_request: Request | None = None

    def recv(self) -> bytes | None:
        """Whatever has arrived, ``b""`` at EOF, ``None`` when nothing is waiting."""
        try:
            if self.tls:
                return self.sock.recv(self.recv_size)
            return self.sock.recv(self.recv_size, socket.MSG_DONTWAIT)
        except (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
            return None

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()


class Parker:
    """The selector idle connections wait on, run by the acceptor thread.

    Workers call :meth:`park` from their own threads. With epoll the socket is
    (re-)armed with ``EPOLLONESHOT`` directly — the kernel call is thread-safe
    and needs no wake-up; elsewhere a pending list and a wake-up socket pair
    hand connections to the selector thread.
    """

    def __init__(self, listener: socket.socket) -> None:
        self.parked: dict[int, Conn] = {}
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._listener_fd = listener.fileno()
        self._wake_fd = self._wake_r.fileno()
        self._pending: collections.deque[Conn] = collections.deque()
        #: fd → the connection whose socket is registered with epoll under that fd.
        self._armed: dict[int, Conn] = {}
        #: Makes park (record + arm) and forget (drop + disarm) atomic with each other:
        #: the acceptor's sweep may forget a connection a worker is still parking.
        self._lock = threading.Lock()
        self._epoll: Any = None
        self._selector: selectors.BaseSelector | None = None
        if hasattr(select, "epoll"):
            self._epoll = select.epoll()
            self._epoll.register(self._listener_fd, select.EPOLLIN)
            self._epoll.register(self._wake_fd, select.EPOLLIN)
        else:  # pragma: no cover - non-Linux
            self._selector = selectors.DefaultSelector()
            self._selector.register(self._listener_fd, selectors.EVENT_READ)
            self._selector.register(self._wake_fd, selectors.EVENT_READ)

    def park(self, conn: Conn, writable: bool = False) -> None:
        """Wait until ``conn`` is readable (or, with ``writable``, can take more output)."""
        conn.idle_since = time.monotonic()
        fd = conn.fd
        with self._lock:
            self.parked[fd] = conn
            if self._epoll is None:  # pragma: no cover - non-Linux
                self._pending.append(conn)
                self.wake()
                return
            if writable:
                mask = select.EPOLLOUT | select.EPOLLONESHOT
            else:
                mask = select.EPOLLIN | select.EPOLLONESHOT | select.EPOLLRDHUP
            try:
                if self._armed.get(fd) is conn:
                    self._epoll.modify(fd, mask)
                else:
                    self._epoll.register(fd, mask)
                    self._armed[fd] = conn
            except BaseException:
                self.parked.pop(fd, None)  # the caller closes it
                raise

    def forget(self, conn: Conn) -> None:
        """Drop a connection that is closing (before its socket is closed).

        Only entries of *this* connection are dropped: called again after its
        socket was closed, the fd may already belong to a new connection.
        """
        fd = conn.fd
        with self._lock:
            if self.parked.get(fd) is conn:
                del self.parked[fd]
            if self._armed.get(fd) is conn:
                del self._armed[fd]
                if self._epoll is not None:
                    with contextlib.suppress(OSError, ValueError):
                        self._epoll.unregister(fd)

    def wake(self) -> None:
        with contextlib.suppress(OSError):
            self._wake_w.send(b"x")

    def poll(self, timeout: float) -> tuple[bool, list[Conn]]:
        """Wait up to ``timeout``; returns (listener readable, connections readable)."""
        ready: list[Conn] = []
        accept = False
        if self._epoll is not None:
            try:
                events = self._epoll.poll(timeout)
            except InterruptedError:  # pragma: no cover - PEP 475 retries
                events = []
            for fd, _ in events:
                if fd == self._listener_fd:
                    accept = True
                elif fd == self._wake_fd:
                    self._drain_wake()
                else:
                    conn = self.parked.pop(fd, None)
                    if conn is not None:
                        ready.append(conn)
            return accept, ready
        selector = self._selector  # pragma: no cover - non-Linux
        assert selector is not None
        while self._pending:
            conn = self._pending.popleft()
            wanted = selectors.EVENT_WRITE if conn.out_pieces is not None else selectors.EVENT_READ
            selector.register(conn.fd, wanted, conn)
        for key, _ in selector.select(timeout):
            if key.fd == self._listener_fd:
                accept = True
            elif key.fd == self._wake_fd:
                self._drain_wake()
            else:
                selector.unregister(key.fd)
                conn = self.parked.pop(key.fd, None)
                if conn is not None:
                    ready.append(conn)
        return accept, ready

    def _drain_wake(self) -> None:
        with contextlib.suppress(OSError):
            while self._wake_r.recv(4096):
                pass

    def resume_listening(self) -> None:
        """Watch the listener again (after :meth:`stop_listening` for a back-off)."""
        if self._epoll is not None:
            with contextlib.suppress(FileExistsError):
                self._epoll.register(self._listener_fd, select.EPOLLIN)
        elif self._selector is not None:  # pragma: no cover - non-Linux
            with contextlib.suppress(KeyError, ValueError):
                self._selector.register(self._listener_fd, selectors.EVENT_READ)

    def stop_listening(self) -> None:
        if self._epoll is not None:
            with contextlib.suppress(OSError, ValueError):
                self._epoll.unregister(self._listener_fd)
        elif self._selector is not None:  # pragma: no cover - non-Linux
            with contextlib.suppress(KeyError, ValueError):
                self._selector.unregister(self._listener_fd)

    def close(self) -> None:
        if self._epoll is not None:
            self._epoll.close()
        if self._selector is not None:  # pragma: no cover - non-Linux
            self._selector.close()
        self._wake_r.close()
        self._wake_w.close()


class NativeBackend:
    """State of one running native server; :func:`listen` drives it."""

    def __init__(self, server: Server) -> None:
        self.server = server
        config = server.config
        self.config = config
        self.limits = config.engine_limits()
        self.read_timeout = config.read_timeout_ms / 1000.0
        self.keepalive_timeout = config.keepalive_timeout_ms / 1000.0
        self.write_timeout = config.write_timeout_ms / 1000.0
        self.sweep_interval = min(
            MAX_SWEEP_INTERVAL_S, self.read_timeout / 4, self.keepalive_timeout / 4
        )
        self.queue = BoundedQueue(config.native_queue_capacity)
        self.stop = server.shutting_down
        #: Every coroutine of this process (async handlers, ASGI apps) runs here.
        self.coroutines = SharedLoop()
        #: Where ``ctx.run_blocking`` sends work from coroutines: never the shared loop.
        self.blocking = concurrent.futures.ThreadPoolExecutor(
            max_workers=config.native_workers, thread_name_prefix="zzz-blocking")
        server.blocking_executor = self.blocking
        server.coroutine_loop = self.coroutines.loop
        try:
            # The application starts before the port is bound (uvicorn's order): a
            # start-up that fails never had a listener to refuse connections on.
            server.run_startup(self.coroutines.run)
            self.listener = bind_listener(config)
        except BaseException:
            self.coroutines.stop()
            self.blocking.shutdown(wait=False)
            server.blocking_executor = None
            raise
        self.parker = Parker(self.listener)
        self.accept_options = accepted_options(config, loop_sets_nodelay=False)
        self.recv_size = config.read_size or RECV_SIZE
        self.open_conns: set[Conn] = set()
        #: Connections accepted (or woken) that a full queue could not take once the
        #: shutdown began; the drain queues them as workers free up. Acceptor only.
        self._overflow: collections.deque[Conn] = collections.deque()
        #: While ``accept()`` is out of descriptors: when to watch the listener again.
        self._accept_resume_at: float | None = None
        #: ``accept()`` failed for lack of a resource and has not succeeded since
        #: (one log line per episode, not one per retry).
        self._accept_exhausted = False
        self._open_lock = threading.Lock()
        self.workers: list[threading.Thread] = []
        self._sndtimeo = struct.pack("ll", int(self.write_timeout), int(
            (self.write_timeout % 1) * 1_000_000))
        self.scheme = "https" if server.ssl_context is not None else "http"
        self.engine_class = connection_class(config.proxy_protocol)  # PROXY protocol or plain
        self.websockets = NativeWebSockets(self)
        #: Idents of workers serving a connection (a gauge read at scrape time).
        self.busy_workers: set[int] = set()
        server.observer.attach_backend(self)

    # ------------------------------------------------------------------ acceptor

    def run(self) -> None:
        server = self.server
        # Process-wide glibc settings, as on the event loop (its 64 KiB reads never
        # showed the heap churn, but a setting must not depend on the backend).
        tune_malloc(self.config.malloc_mmap_threshold, self.config.malloc_trim_threshold)
        server.address = bound_address(self.listener)
        self.listener.setblocking(False)
        timers = ThreadTimerService()
        server.attach_timers(timers)
        for i in range(self.config.native_workers):
            thread = threading.Thread(target=self._worker, name=f"zzz-worker-{i}", daemon=True)
            thread.start()
            self.workers.append(thread)
        server.on_shutdown(self.parker.wake)
        server.ready.set()
        drained = False
        try:
            self._accept_loop()
            drained = self._drain()
        finally:
            timers.stop()
            self.queue.close()
            with self._open_lock:
                leftover = list(self.open_conns)
            for conn in leftover:  # cut what the drain deadline left in flight
                conn.close()
            # Workers still inside a handler cannot be interrupted; they are daemon
            # threads, so after the drain deadline they only get a moment to notice.
            join_until = time.monotonic() + (WORKER_JOIN_S if drained else CUT_JOIN_S)
            for thread in self.workers:
                thread.join(max(0.0, join_until - time.monotonic()))
            self.websockets.stop()
            server.run_shutdown(self._run_within_drain)
            self.coroutines.stop()
            self.blocking.shutdown(wait=False, cancel_futures=True)
            self.server.blocking_executor = None
            self.parker.close()
            with contextlib.suppress(OSError):
                self.listener.close()

    def _run_within_drain(self, coro: Any) -> None:
        """Run the app's shutdown on the shared loop, bounded by the drain deadline."""
        self.coroutines.run(coro, max(1.0, self.config.drain_timeout_ms / 1000.0))

    def _accept_loop(self) -> None:
        next_sweep = time.monotonic() + self.sweep_interval
        while not self.stop.is_set():
            timeout = self.sweep_interval
            if self._accept_resume_at is not None:
                timeout = max(0.0, min(timeout, self._accept_resume_at - time.monotonic()))
            accept, ready = self.parker.poll(timeout)
            for conn in ready:
                self._enqueue(conn)
            if self._accept_resume_at is not None and time.monotonic() >= self._accept_resume_at:
                self._accept_resume_at = None
                self.parker.resume_listening()
                accept = True
            if accept and not self.stop.is_set():
                self._accept_all()
            now = time.monotonic()
            if now >= next_sweep:
                self._sweep(now)
                next_sweep = now + self.sweep_interval

    def _enqueue(self, conn: Conn) -> bool:
        """Queue ``conn`` for a worker (blocking while the queue is full). False when
        the shutdown began meanwhile: ``conn`` then waits in ``_overflow`` for the drain."""
        if self.queue.put(conn, self.stop):
            return True
        self._overflow.append(conn)
        return False

    def _accept_failed(self, exc: OSError) -> bool:
        """Handle an ``accept()`` error. True: try the next connection; False: stop
        accepting for now. Raises when the listening socket itself is broken."""
        if exc.errno in _ACCEPT_RESOURCE_ERRNOS:
            if not self._accept_exhausted:
                self._accept_exhausted = True
                log.error("accept failed (%s); retrying every %.0f ms until it succeeds",
                          exc, ACCEPT_BACKOFF_S * 1000)
            # Level-triggered readiness would report the listener at once again:
            # stop watching it for a while instead of sleeping (parked connections
            # and deadlines must still be served meanwhile).
            self.parker.stop_listening()
            self._accept_resume_at = time.monotonic() + ACCEPT_BACKOFF_S
            return False
        if exc.errno in _ACCEPT_FATAL_ERRNOS:
            raise exc
        log.info("accept failed for one connection: %s", exc)
        return True

    def _accept_all(self) -> None:
        for _ in range(ACCEPT_BATCH):  # then back to poll: parked requests go first
            try:
                sock, addr = self.listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if self._accept_failed(exc):
                    continue
                return
            if self._accept_exhausted:
                self._accept_exhausted = False
                log.info("accept succeeds again")
            if self.accept_options:  # none on Linux: inherited from the listener
                apply_options(sock, self.accept_options)
            client = client_address(addr)
            engine = self.engine_class(self.limits, client, self.scheme, self.server.stream_body)
            context = self.server.ssl_context  # read per accept: reload_tls() swaps it
            if context is None:
                sock.setblocking(True)
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, self._sndtimeo)
                conn = Conn(sock, engine, False, self.recv_size)
            else:
                sock.setblocking(False)
                try:
                    tls_sock = context.wrap_socket(
                        sock, server_side=True, do_handshake_on_connect=False
                    )
                except (OSError, ValueError) as exc:
                    log.info("TLS setup failed for %s: %s", client, exc)
                    sock.close()
                    continue
                conn = Conn(tls_sock, engine, True, self.recv_size)
                conn.deadline = time.monotonic() + self.read_timeout
            with self._open_lock:
                self.open_conns.add(conn)
            self.server.observer.connection_opened()
            if not self._enqueue(conn):
                return

    def _sweep(self, now: float) -> None:
        """Close parked connections whose deadline passed (408 for a partial request)."""
        for conn in list(self.parker.parked.values()):
            if conn.ws is not None:  # WebSocket deadlines are the zzz-ws thread's
                continue
            if conn.deadline is not None:
                if now >= conn.deadline:
                    self.parker.forget(conn)
                    if conn.out_pieces is not None:
                        log.info("client %s stopped reading: dropped after write timeout",
                                 conn.engine)
                        self._end_stream(conn)
                    elif conn.handshaking:
                        log.info("TLS handshake with %s timed out", _peer(conn))
                        self.server.observer.tls_failed()
                    elif not conn.lingering:  # a lingering close just ends
                        self.server.observer.bad_request(408)
                        self._send_quietly(conn, conn.engine.error_response(
                            ProtocolError(408, "request not received in time")))
                    self._close(conn)
            elif now - conn.idle_since >= self.keepalive_timeout:
                self.parker.forget(conn)
                self._close(conn)

    # ------------------------------------------------------------------ shutdown

    def _drain(self) -> bool:
        """Stop accepting, close idle connections, wait for in-flight work."""
        self.parker.stop_listening()
        with contextlib.suppress(OSError):
            self.listener.close()
        self.websockets.begin_shutdown()
        deadline = time.monotonic() + self.config.drain_timeout_ms / 1000.0
        log.info("shutting down: no longer accepting; draining in-flight requests")
        while True:
            now = time.monotonic()
            for conn in list(self.parker.parked.values()):
                # Idle keep-alive, or a lingering close (its answer is already sent).
                if (conn.deadline is None and conn.ws is None
                        and may_close_idle(conn.engine, now - conn.idle_since)) or conn.lingering:
                    self.parker.forget(conn)
                    self._close(conn)
            with self._open_lock:
                remaining = len(self.open_conns)
            if remaining == 0:
                log.info("drained: all connections closed")
                return True
            if now >= deadline:
                log.warning(
                    "drain deadline passed: cutting %d connection(s) still in flight", remaining
                )
                return False
            _, ready = self.parker.poll(min(0.05, max(0.0, deadline - now)))
            self._overflow.extend(ready)
            while self._overflow and self.queue.put(self._overflow[0], self.stop):
                self._overflow.popleft()
            self._sweep(now)

    # ------------------------------------------------------------------ workers

    def _worker(self) -> None:
        ident = threading.get_ident()
        busy = self.busy_workers
        while True:
            try:
                conn = self.queue.get()
            except QueueClosed:
                break
            busy.add(ident)
            try:
                self._serve(conn)
            except BaseException:  # nothing above a worker could handle it
                log.exception("unexpected error serving %s", conn.engine)
                self._close(conn)
            busy.discard(ident)

    def _serve(self, conn: Conn) -> None:
        """Serve ``conn`` while it has data; park or close it when it has none,
        or hand it to a coroutine and let the coroutine's completion queue it again."""
        if conn.ws is not None:
            self.websockets.serve(conn)
            return
        engine = conn.engine
        if conn.out_pieces is not None:
            if not self._continue_stream(conn):
                return
        elif conn.waiting is not None:
            if not self._resume(conn):
                return
        elif conn.handshaking and not self._handshake(conn):
            return
        if conn.lingering:
            self._discard(conn)
            return
        if conn.pending and not self._process(conn, []):
            return
        while True:
            try:
                data = conn.recv()
            except OSError:
                self._close(conn)
                return
            if data is None:
                if (
                    WAIT_BEFORE_PARK_S > 0
                    and len(self.queue) == 0
                    and _wait_fd(conn.fd, select.POLLIN, WAIT_BEFORE_PARK_S)
                ):
                    continue
                self._park_or_close(conn)
                return
            if not data:
                self._close(conn)
                return
            if conn.deadline is None:
                conn.deadline = time.monotonic() + self.read_timeout
            events = engine.feed(data)
            if not events:
                if engine.in_request and time.monotonic() >= conn.deadline:
                    self.server.observer.bad_request(408)
                    self._send_quietly(conn, engine.error_response(
                        ProtocolError(408, "request not received in time")))
                    self._close(conn)
                    return
                continue
            if not self._process(conn, events):
                return
            if not self._await_next(conn):
                return

    def _await_next(self, conn: Conn) -> bool:
        """After answering: whether a read now finds the next request (else park or close).

        Right after an answer the client has rarely sent its next request yet, and a
        read that finds nothing is wasted: on TLS an ``SSL_read`` failing with
        ``SSLWantReadError`` (an exception built in C, about 3 µs), on TCP a ``recv``
        failing with ``EAGAIN`` (a system call and a ``BlockingIOError``). Polling first
        skips it: for up to WAIT_BEFORE_PARK_S while no other connection waits for a
        worker; otherwise the connection parks at once (a pipelined request already
        here wakes the acceptor's selector straight away).

        On TLS, a read with a buffer of at least one TLS record drains its record, and
        OpenSSL (no read-ahead) holds nothing beyond it, so the kernel socket alone
        says whether more is coming (smaller buffers ask OpenSSL). False: parked or
        closed."""
        if conn.tls:
            sock = conn.sock
            assert isinstance(sock, ssl.SSLSocket)
            if conn.recv_size < TLS_RECORD_MAX and sock.pending():
                return True
        if (WAIT_BEFORE_PARK_S > 0 and len(self.queue) == 0
                and _wait_fd(conn.fd, select.POLLIN, WAIT_BEFORE_PARK_S)):
            return True
        self._park_or_close(conn)
        return False

    def _process(self, conn: Conn, events: list[Event]) -> bool:
        """Answer ``events`` (then any left in ``conn.pending``) in order. False when
        the connection was closed, or handed to a coroutine."""
        engine = conn.engine
        server = self.server
        out: list[bytes] = []
        while True:
            i = 0
            n = len(events)
            while i < n:
                event = events[i]
                i += 1
                if server.stopping:  # (a plain flag: Event.is_set() is a call per request)
                    engine.close_after_response = True
                kind = type(event)
                if kind is Request:
                    assert isinstance(event, Request)
                    if conn.extensions:
                        event.extensions.update(conn.extensions)
                    if event.streamed:
                        i = self._open_body(conn, event, events, i)
                    try:
                        result = server.handle(event)
                    except BaseException:  # CancelledError, SystemExit: still the app's
                        result = app_error(event)
                    if type(result) is not Response:
                        if out and not self._send(conn, b"".join(out)):
                            return False
                        conn.pending.extend(events[i:])
                        self._hand_off(conn, event, result)
                        return False
                    if not self._respond(conn, event, result, out):
                        if conn.out_pieces is not None:  # parked mid-stream: keep the rest
                            conn.pending[:0] = events[i:]
                        return False
                elif kind is ExpectContinue:
                    assert isinstance(event, ExpectContinue)
                    out.append(answer_expect(server, engine, event))
                elif kind is ProtocolError:
                    assert isinstance(event, ProtocolError)
                    server.observer.bad_request(event.status)
                    out.append(engine.error_response(event))
                # Data / EndOfMessage here belong to a body its handler left unread:
                # the answer already closes the connection; they are dropped.
                if engine.must_close:
                    self._finish(conn, out)
                    return False
            if not conn.pending:
                break
            events, conn.pending = conn.pending, []  # brought in by a plain handler's body reads
        if out and not self._send(conn, b"".join(out)):
            return False
        conn.deadline = time.monotonic() + self.read_timeout if engine.in_request else None
        if engine.is_dead:
            self._close(conn)
            return False
        return True

    # ------------------------------------------------------------------ streamed bodies

    def _open_body(self, conn: Conn, request: Request, events: list[Event], i: int) -> int:
        """Attach a :class:`RequestBody` to a streamed ``request``, fill it with the
        body events that came in the same read, and let a plain handler read the
        rest itself (``pull``, on this worker). Returns the index after them."""
        body = RequestBody()
        request.body_stream = body
        conn.body_error = None
        if request.expect_continue:
            body.on_first_read = lambda: self._send_continue(conn)
        body.pull = lambda: self._pull(conn, body)
        return self._feed_body(conn, body, events, i)

    def _feed_body(self, conn: Conn, body: RequestBody, events: list[Event], i: int) -> int:
        """Push the body events from ``events[i:]`` into ``body``; the index after them."""
        n = len(events)
        while i < n and not body.done:
            event = events[i]
            kind = type(event)
            if kind is Data:
                assert isinstance(event, Data)
                body.push(event.data)
            elif kind is EndOfMessage:
                body.finish()
            elif kind is ProtocolError:
                assert isinstance(event, ProtocolError)
                conn.body_error = event
                body.fail(BodyError(event.detail, event.status))
            else:
                break
            i += 1
        return i

    def _send_continue(self, conn: Conn) -> None:
        if not conn.engine.is_dead:
            self._send(conn, CONTINUE_RESPONSE)

    def _read_body_piece(self, conn: Conn, body: RequestBody, deadline: float) -> float:
        """Read the socket once for ``body`` (waiting up to ``PUMP_POLL_S``); events
        beyond the body go to ``conn.pending``. The new idle deadline."""
        try:
            data = conn.recv()
        except OSError:
            data = b""
        if data is None:
            now = time.monotonic()
            if now >= deadline:
                error = ProtocolError(408, "request body not received in time")
                conn.body_error = error
                body.fail(BodyError(error.detail, 408))
            else:
                _wait_fd(conn.fd, select.POLLIN, min(PUMP_POLL_S, deadline - now))
            return deadline
        if not data:
            conn.engine.feed(b"")
            body.fail(ClientDisconnected())
            return deadline
        events = conn.engine.feed(data)
        i = self._feed_body(conn, body, events, 0)
        conn.pending.extend(events[i:])
        # A streamed body may take long: the read deadline is one of inactivity.
        return time.monotonic() + self.read_timeout

    def _pull(self, conn: Conn, body: RequestBody) -> None:
        """A plain handler wants more of its body: read on its (this worker's) thread
        until a piece (or the end, or a failure) arrives."""
        deadline = time.monotonic() + self.read_timeout
        before = body.received
        while not body.done and body.received == before:
            deadline = self._read_body_piece(conn, body, deadline)

    def _hand_off(self, conn: Conn, request: Request, awaitable: Any) -> None:
        """Run the coroutine answering ``request`` on the shared loop. A streamed body
        is pumped from here (its reader is on the loop); then this worker lets go:
        the coroutine's completion queues the connection for the next free worker."""
        body = request.body_stream
        pumped = isinstance(body, RequestBody) and not body.done
        if isinstance(body, RequestBody):
            # The coroutine reads from the loop: this worker feeds it (and sends
            # 100 Continue itself: only this thread writes to the socket).
            body.pull = None
            body.on_first_read = None
        future = self.coroutines.submit(_as_coroutine(awaitable))
        conn.waiting = future
        conn.waiting_request = request
        if pumped:
            assert isinstance(body, RequestBody)
            self._pump(conn, request, body, future)
        future.add_done_callback(lambda _: self._requeue(conn))

    def _pump(self, conn: Conn, request: Request,
              body: RequestBody, future: concurrent.futures.Future[Response]) -> None:
        """Feed ``body`` from the socket while the coroutine runs, never more than the
        body's buffer ahead of it (flow control: not reading is the back-pressure)."""
        if request.expect_continue:
            while not body.started and not future.done():
                body.wait_started(PUMP_POLL_S)
            if future.done():
                return  # answered without reading: no 100 Continue, a lingering close
            self._send_continue(conn)
        deadline = time.monotonic() + self.read_timeout
        while not body.done and not future.done():
            if not body.wants_more:
                body.wait_for_room(PUMP_POLL_S)
                deadline = time.monotonic() + self.read_timeout
                continue
            deadline = self._read_body_piece(conn, body, deadline)

    def _requeue(self, conn: Conn) -> None:
        """The coroutine finished (on the loop's thread): back to a worker."""
        if not self.queue.put_resumed(conn):
            self._close(conn)

    def _resume(self, conn: Conn) -> bool:
        """Write the answer of the coroutine ``conn`` waited for. False: closed."""
        future = conn.waiting
        request = conn.waiting_request
        assert future is not None and request is not None
        conn.waiting = None
        conn.waiting_request = None
        try:
            result = future.result()
        except BaseException:
            result = app_error(request)
        out: list[bytes] = []
        if not self._respond(conn, request, result, out):
            return False  # closed, or parked mid-stream (its continuation goes on)
        engine = conn.engine
        if engine.must_close:
            self._finish(conn, out)
            return False
        if out and not self._send(conn, b"".join(out)):
            return False
        conn.deadline = time.monotonic() + self.read_timeout if engine.in_request else None
        return True

    # ------------------------------------------------------------------ responses

    def _respond(self, conn: Conn, request: Request, result: Response, out: list[bytes]) -> bool:
        """Append (or stream) the application's answer. False: conn closed."""
        engine = conn.engine
        error = conn.body_error
        if error is not None:
            # The body broke a limit or a deadline: that is the answer.
            conn.body_error = None
            if result.stream is not None:
                self._close_stream(result.stream)
            if result.file is not None:
                result.file.close()
            self.server.observer.bad_request(error.status)
            out.append(engine.error_response(error))
            return True
        if self.server.stopping:  # shutdown began while the handler ran
            engine.close_after_response = True
        if result.upgrade is not None:
            return self.websockets.upgrade(conn, request, result, out)
        out.append(engine.serialize(result, request))
        if result.file is not None:  # zero-copy file body (zzz/backends/_sendfile.py)
            return native_send_file(conn, request, result, out, self._send, self._close)
        stream = result.stream
        if stream is None:
            return True
        if request.method == "HEAD":
            self._close_stream(stream)  # never read: its ``finally`` blocks run now
            return True
        # Streamed body: the head and what is pending first, then piece by piece;
        # a client that stops reading parks the connection instead of a worker.
        conn.out_view = memoryview(b"".join(out))
        out.clear()
        conn.out_pieces = iter(self._aiterate(stream) if isinstance(stream, AsyncIterable)
                               else stream)
        conn.out_source = stream
        conn.out_request = request
        conn.deadline = time.monotonic() + self.write_timeout
        state = self._write_stream(conn)
        if state != _STREAM_DONE:
            return False
        out.append(engine.end())
        return True

    def _write_stream(self, conn: Conn) -> int:
        """Write the parked stream of ``conn`` as far as the client takes it: done,
        parked for writability (the worker is free), or closed (client gone, stream
        failed, write timeout)."""
        engine = conn.engine
        pieces = conn.out_pieces
        request = conn.out_request
        assert pieces is not None and request is not None
        flags = 0 if conn.tls else socket.MSG_DONTWAIT
        while True:
            view = conn.out_view
            if view:
                try:
                    sent = conn.sock.send(view[:TLS_SEND_SLICE] if conn.tls else view, flags)
                except (BlockingIOError, ssl.SSLWantWriteError, ssl.SSLWantReadError):
                    if _wait_fd(conn.fd, select.POLLOUT, WAIT_BEFORE_WRITE_PARK_S):
                        continue
                    if time.monotonic() >= (conn.deadline or 0.0):
                        log.info("client %s stopped reading: dropped after write timeout",
                                 conn.engine)
                        self._end_stream(conn)
                        self._close(conn)
                        return _STREAM_CLOSED
                    self.parker.park(conn, writable=True)
                    return _STREAM_PARKED
                except OSError:
                    self._end_stream(conn)
                    self._close(conn)
                    return _STREAM_CLOSED
                conn.out_view = view[sent:]
                conn.deadline = time.monotonic() + self.write_timeout  # progress
                continue
            try:
                piece = next(pieces, None)
            except BaseException:  # as for the handler itself
                log.exception("stream of %s %s failed; closing", request.method, request.path)
                self._end_stream(conn)
                self._close(conn)
                return _STREAM_CLOSED
            if piece is None:
                self._end_stream(conn)
                conn.deadline = None
                return _STREAM_DONE
            framed = engine.chunk(piece)
            if framed:
                conn.out_view = memoryview(framed)

    def _end_stream(self, conn: Conn) -> None:
        """Forget the parked stream; its ``finally`` blocks run now, not at GC time."""
        source = conn.out_source
        conn.out_view = conn.out_pieces = conn.out_source = None
        conn.out_request = None
        if source is not None:
            self._close_stream(source)

    def _continue_stream(self, conn: Conn) -> bool:
        """A parked stream's client can take more: write on, then carry on with the
        connection as the request's caller would have. False: parked again or closed."""
        request = conn.out_request
        assert request is not None
        if self._write_stream(conn) != _STREAM_DONE:
            return False
        engine = conn.engine
        out = [engine.end()]
        if engine.must_close:
            self._finish(conn, out)
            return False
        if not self._send(conn, b"".join(out)):
            return False
        conn.deadline = time.monotonic() + self.read_timeout if engine.in_request else None
        return True

    def _close_stream(self, stream: Iterable[bytes] | AsyncIterable[bytes]) -> None:
        """``aclose()`` (on the shared loop) or ``close()`` a response stream."""
        try:
            aclose = getattr(stream, "aclose", None)
            if aclose is not None:
                self.coroutines.run(aclose())
                return
            close = getattr(stream, "close", None)
            if close is not None:
                close()
        except Exception:
            log.exception("closing a response stream failed")

    def _aiterate(self, stream: AsyncIterable[bytes]) -> Iterable[bytes]:
        """Iterate an async body stream from this worker thread, each step on the
        shared loop (the worker waits: writing to a blocking socket needs a thread)."""
        iterator = stream.__aiter__()
        while True:
            try:
                yield self.coroutines.run(_anext(iterator))
            except StopAsyncIteration:
                return

    # ------------------------------------------------------------------ I/O helpers

    def _handshake(self, conn: Conn) -> bool:
        """Advance a non-blocking TLS handshake. True when done; else parked or closed."""
        sock = conn.sock
        assert isinstance(sock, ssl.SSLSocket)
        try:
            sock.do_handshake()
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
            self.parker.park(conn)
            return False
        except (ssl.SSLError, OSError) as exc:
            log.info("TLS handshake with %s failed: %s", _peer(conn),
                     describe_handshake_error(exc))
            self.server.observer.tls_failed()
            self._close(conn)
            return False
        conn.handshaking = False
        conn.deadline = None
        peer = sock.getpeercert()
        if peer:
            conn.extensions = {"tls_peer_cert": peer}
        return True

    def _send(self, conn: Conn, data: bytes) -> bool:
        if conn.tls:
            return self._send_nonblocking(conn, data)
        try:
            conn.sock.sendall(data)
            return True
        except OSError as exc:
            if isinstance(exc, BlockingIOError) or exc.errno in (errno.EAGAIN, errno.EWOULDBLOCK):
                log.info("client %s stopped reading: dropped after write timeout",
                         conn.engine)
            self._close(conn)
            return False

    def _send_nonblocking(self, conn: Conn, data: bytes) -> bool:
        """Send on a non-blocking (TLS) socket, waiting for writability up to the timeout.

        Like ``SO_SNDTIMEO`` on plain sockets, the timeout runs from the last
        progress: a client reading slowly but steadily gets the whole response.
        A response of one slice (nearly all of them) is one ``send`` and nothing
        else; the clock is read only once the client stops taking bytes.
        """
        sock = conn.sock
        view: bytes | memoryview = data
        deadline = 0.0  # none while the client takes everything
        try:
            while view:
                try:
                    if len(view) <= TLS_SEND_SLICE:
                        sent = sock.send(view)
                    else:
                        if type(view) is bytes:
                            view = memoryview(view)
                        sent = sock.send(view[:TLS_SEND_SLICE])
                    view = view[sent:]
                    deadline = 0.0
                    continue
                except (BlockingIOError, ssl.SSLWantWriteError, ssl.SSLWantReadError):
                    pass
                now = time.monotonic()
                if not deadline:
                    deadline = now + self.write_timeout
                elif now >= deadline:
                    log.info("client %s stopped reading: dropped after write timeout",
                             conn.engine)
                    self._close(conn)
                    return False
                _wait_fd(conn.fd, select.POLLOUT, deadline - now)
        except OSError:
            self._close(conn)
            return False
        return True

    def _send_quietly(self, conn: Conn, data: bytes) -> None:
        """Best effort, never blocking (a 408 to a client that may not read it)."""
        with contextlib.suppress(OSError, ValueError):
            if conn.tls:
                if not conn.handshaking:
                    conn.sock.send(data)
            else:
                conn.sock.send(data, socket.MSG_DONTWAIT)

    def _finish(self, conn: Conn, out: list[bytes]) -> None:
        """Send the last bytes and close (the response said Connection: close).

        When the engine says the client may still be sending (``input_abandoned``:
        an error answer, a refused body) the close is a lingering one: closing a
        socket with unread input makes the kernel answer with RST, which can
        destroy the response before the client reads it. So our side is shut and
        the rest is read and dropped for up to ``LINGER_CLOSE_S`` /
        ``LINGER_MAX_BYTES`` first.
        """
        if not self._send(conn, b"".join(out)):
            return
        with contextlib.suppress(OSError):
            conn.sock.shutdown(socket.SHUT_WR)
        if not conn.engine.input_abandoned or conn.tls or self.stop.is_set():
            self._close(conn)
            return
        conn.lingering = True
        conn.linger_left = LINGER_MAX_BYTES
        conn.deadline = time.monotonic() + LINGER_CLOSE_S
        self._discard(conn)

    def _discard(self, conn: Conn) -> None:
        """Read and drop what a refused client still sends; close at EOF or a limit."""
        while True:
            try:
                data = conn.recv()
            except OSError:
                data = b""
            if data is None:
                self.parker.park(conn)
                return
            conn.linger_left -= len(data)
            if not data or conn.linger_left <= 0:
                self._close(conn)
                return

    def _park_or_close(self, conn: Conn) -> None:
        """Park a connection with nothing to read; during a drain close it instead
        when it is idle — but a fresh one whose first request may still be on its way
        (accepted just before the listener closed) waits for it like the drain does."""
        if (self.stop.is_set() and not conn.engine.in_request
                and may_close_idle(conn.engine, time.monotonic() - conn.idle_since)):
            self._close(conn)
            return
        # Parked, it holds no parser: the wait costs a thread hand-off anyway, next to
        # which rebuilding one (about half a microsecond) is nothing, and 850 bytes of
        # each idle keep-alive connection are saved.
        conn.engine.compact()
        self.parker.park(conn)

    def _close(self, conn: Conn) -> None:
        self.parker.forget(conn)
        if conn.out_pieces is not None:  # cut mid-stream (drain deadline, sweep)
            self._end_stream(conn)
        conn.close()
        with self._open_lock:
            self.open_conns.discard(conn)


def _wait_fd(fd: int, events: int, timeout: float) -> bool:
    """Wait until ``fd`` is ready for ``events`` (poll: no FD_SETSIZE limit)."""
    poller = select.poll()
    poller.register(fd, events)
    return bool(poller.poll(timeout * 1000.0))


def _peer(conn: Conn) -> str:
    """The client address for a log line (``?`` once the socket is gone)."""
    try:
        host, port = conn.sock.getpeername()[:2]
    except (OSError, ValueError):
        return "?"
    return f"{host}:{port}"


async def _as_coroutine(awaitable: Awaitable[Response]) -> Response:
    return await awaitable


async def _anext(iterator: Any) -> bytes:
    value: bytes = await iterator.__anext__()
    return value


def listen(server: Server) -> None:
    """Serve ``server`` on the native backend until it shuts down."""
    backend = NativeBackend(server)
    log.debug("native backend: %d workers, queue %d, pid %d",
              server.config.native_workers, backend.queue.capacity, os.getpid())
    backend.run()
