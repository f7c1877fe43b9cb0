"""A streamed request body between a backend (the producer) and an application.

The engine hands a streamed request out at its head and its body as ``Data``
events (see :mod:`zzz.http.connection`). The backend pushes those pieces into
the request's :class:`RequestBody`; the application pulls them — ``for piece in
body`` on a thread, ``async for piece in body`` on a loop. The two sides may be
on different threads (a native worker feeding a coroutine on the shared loop,
an event loop feeding a WSGI app on the blocking pool), so the buffer is
guarded by one lock and an async reader is woken on its own loop.

Flow control is one rule: the backend keeps reading the socket only while
:attr:`RequestBody.wants_more` (fewer than ``STREAM_BUFFER_BYTES`` unread). When
a read brings the buffer back under that mark the body calls ``on_drained``,
and the backend reads again. A slow consumer therefore holds at most one buffer
(plus one socket read) of an upload in memory, however large the upload is.

A backend that reads on the consumer's own thread (the native backend serving a
plain handler) sets ``pull`` instead: a read that finds the buffer empty calls
it to read the socket once more. ``on_first_read`` sends ``100 Continue`` to a
client that waits for it: never before the application asks for the body.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import threading
from collections.abc import AsyncIterator, Callable, Iterator

#: Unread bytes a streamed body may hold before the backend stops reading the
#: socket: large enough to keep a fast consumer busy between two reads, small
#: enough that thousands of concurrent uploads stay bounded (plus one read each).
STREAM_BUFFER_BYTES = 256 * 1024


class BodyError(Exception):
    """The body cannot be read to its end: the client went away, or it broke a
    limit or a deadline (``status`` then says which; the backend answers it)."""

    def __init__(self, detail: str, status: int | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.status = status


class ClientDisconnected(BodyError):
    """The client closed the connection before the whole body arrived."""

    def __init__(self, detail: str = "client disconnected before the body ended") -> None:
        super().__init__(detail, None)


class RequestBody:
    """A flow-controlled, single-consumer stream of request body pieces."""

    __slots__ = (
        "_async_waiter",
        "_buffered",
        "_chunks",
        "_cond",
        "_done",
        "_error",
        "_first_read",
        "_waiter_loop",
        "_waiter_thread",
        "limit",
        "on_drained",
        "on_first_read",
        "pull",
        "received",
    )

    def __init__(self, limit: int = STREAM_BUFFER_BYTES) -> None:
        self.limit = limit
        self._chunks: collections.deque[bytes] = collections.deque()
        self._buffered = 0
        self._done = False
        self._error: BodyError | None = None
        self._cond = threading.Condition(threading.Lock())
        self._async_waiter: asyncio.Future[None] | None = None
        self._waiter_loop: asyncio.AbstractEventLoop | None = None
        self._waiter_thread = 0
        self._first_read = True
        #: Body bytes pushed so far (what the client sent).
        self.received = 0
        #: Called (on the consumer's thread) when a read brings the buffer back
        #: under ``limit``: the backend may read the socket again.
        self.on_drained: Callable[[], None] | None = None
        #: Called once, on the first read: ``100 Continue`` for a waiting client.
        self.on_first_read: Callable[[], None] | None = None
        #: Reads the socket once more on the consumer's thread (native, plain handlers).
        self.pull: Callable[[], None] | None = None

    # ------------------------------------------------------------------ producer side

    def push(self, data: bytes) -> None:
        """Add a piece (any thread)."""
        if not data:
            return
        with self._cond:
            if self._done:
                return
            self._chunks.append(data)
            self._buffered += len(data)
            self.received += len(data)
            self._cond.notify_all()
        self._wake_async()

    def finish(self) -> None:
        """The body ended (any thread)."""
        with self._cond:
            self._done = True
            self._cond.notify_all()
        self._wake_async()

    def fail(self, error: BodyError) -> None:
        """The body cannot end normally; readers get ``error`` once the buffer is read."""
        with self._cond:
            if self._done:
                return
            self._done = True
            self._error = error
            self._cond.notify_all()
        self._wake_async()

    @property
    def wants_more(self) -> bool:
        """True while the backend should keep reading: not ended, buffer under the mark."""
        return not self._done and self._buffered < self.limit

    @property
    def done(self) -> bool:
        """No more pieces will be pushed (ended or failed)."""
        return self._done

    @property
    def complete(self) -> bool:
        """The body ended normally and every piece was read."""
        return self._done and self._error is None and not self._chunks

    @property
    def error(self) -> BodyError | None:
        return self._error

    def wait_for_room(self, timeout: float) -> bool:
        """Block until the buffer is under the mark or the body is done (native pump)."""
        with self._cond:
            if self._done or self._buffered < self.limit:
                return True
            return self._cond.wait_for(
                lambda: self._done or self._buffered < self.limit, timeout)

    def _wake_async(self) -> None:
        waiter = self._async_waiter
        if waiter is None:
            return
        loop = self._waiter_loop
        assert loop is not None
        if threading.get_ident() == self._waiter_thread:
            if not waiter.done():
                waiter.set_result(None)
        else:
            with contextlib.suppress(RuntimeError):  # the loop closed: nobody waits any more
                loop.call_soon_threadsafe(_resolve, waiter)

    # ------------------------------------------------------------------ consumer side

    def _take(self) -> bytes | None:
        """The next piece, ``b""`` at the end, ``None`` when nothing is buffered yet
        (called with the lock held)."""
        chunks = self._chunks
        if chunks:
            piece = chunks.popleft()
            before = self._buffered
            self._buffered = before - len(piece)
            if before >= self.limit > self._buffered:
                # Room again: wake a producer blocked in wait_for_room (the native
                # pump), which would otherwise sleep out its whole poll interval.
                self._cond.notify_all()
                self._cond.release()
                try:
                    if self.on_drained is not None:
                        self.on_drained()
                finally:
                    self._cond.acquire()
            return piece
        if self._done:
            if self._error is not None:
                raise self._error
            return b""
        return None

    def _started(self) -> None:
        if self._first_read:
            with self._cond:
                self._first_read = False
                self._cond.notify_all()
            callback = self.on_first_read
            if callback is not None:
                self.on_first_read = None
                callback()

    @property
    def started(self) -> bool:
        """The application has asked for the body (``100 Continue`` may go out)."""
        return not self._first_read

    def wait_started(self, timeout: float) -> bool:
        """Block until the application first reads (native pump, 100-continue)."""
        with self._cond:
            return self._cond.wait_for(lambda: not self._first_read, timeout)

    def read_sync(self, timeout: float | None = None) -> bytes:
        """The next piece (``b""`` at the end), blocking this thread until it comes.

        Raises :class:`BodyError` when the body cannot end, and ``TimeoutError``
        when ``timeout`` passes with nothing to read.
        """
        self._started()
        while True:
            with self._cond:
                piece = self._take()
                if piece is not None:
                    return piece
                if self.pull is None:
                    if not self._cond.wait(timeout):
                        raise TimeoutError("no request body data in time")
                    continue
            self.pull()  # reads the socket on this thread; pushes, finishes or fails

    async def read(self) -> bytes:
        """The next piece (``b""`` at the end), awaiting it on the running loop."""
        if self.pull is not None:
            # Only a thread can pull: this body belongs to a plain handler's worker.
            raise RuntimeError("this request body can only be read from its worker thread")
        self._started()
        while True:
            with self._cond:
                piece = self._take()
                if piece is not None:
                    return piece
                loop = asyncio.get_running_loop()
                waiter: asyncio.Future[None] = loop.create_future()
                self._async_waiter = waiter
                self._waiter_loop = loop
                self._waiter_thread = threading.get_ident()
            try:
                await waiter
            finally:
                self._async_waiter = None

    def __iter__(self) -> Iterator[bytes]:
        while piece := self.read_sync():
            yield piece

    async def __aiter__(self) -> AsyncIterator[bytes]:
        while piece := await self.read():
            yield piece


def _resolve(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)
