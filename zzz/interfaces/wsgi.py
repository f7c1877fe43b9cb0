"""WSGI (PEP 3333) applications on zzz's Application contract.

A WSGI app blocks by design, so it never runs on an event loop: the native
backend calls it on its worker threads (its natural home), the event-loop
backend on its bounded blocking pool, and every ``next()`` of the iterable it
returns runs there too. ``wsgi.input`` reads the request body as it arrives
(the backend stops reading the socket while the app does not read: flow
control), bounded by ``max_stream_body_size``; ``wsgi.input_terminated`` is set,
so frameworks read chunked bodies too.

The response head comes from ``start_response`` (with PEP 3333's ``exc_info``
rules); an iterable that is a list of at most one item is sent with a
Content-Length, anything else is streamed as it is produced. The iterable's
``close()`` is always called, whatever happens to the connection. Header names
or values the engine cannot send safely (CR/LF, not a token) become a 500, never
a split response: the engine checks every header it writes.
"""

from __future__ import annotations

import asyncio
import io
import logging
import os
import sys
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote_to_bytes

from zzz.http.request import Request
from zzz.http.response import FileBody, Response
from zzz.interfaces import streams_body

if TYPE_CHECKING:
    from zzz.server import Server

log = logging.getLogger("zzz.wsgi")

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]

#: Bytes read per piece when the app iterates ``wsgi.file_wrapper`` output.
FILE_BLOCK_SIZE = 256 * 1024
#: Longest line ``wsgi.input.readline()`` returns without a size (bounds a hostile body).
MAX_READLINE = 64 * 1024
_INTERNAL_ERROR = Response(500, [("Content-Type", "text/plain; charset=utf-8")],
                           b"500 Internal Server Error\n")


class WSGIInput(io.RawIOBase):
    """``wsgi.input``: the request body, read as it arrives (file-like, binary)."""

    def __init__(self, request: Request) -> None:
        super().__init__()
        self._stream = request.body_stream
        self._buffer = b"" if self._stream is not None else request.body
        self._eof = self._stream is None

    def readable(self) -> bool:
        return True

    def _fill(self) -> bool:
        """Read one more piece into the buffer; False at the end of the body."""
        if self._eof:
            return False
        piece = self._stream.read_sync() if self._stream is not None else b""
        if not piece:
            self._eof = True
            return False
        self._buffer += piece
        return True

    def read(self, size: int | None = -1) -> bytes:
        if size is None or size < 0:
            while self._fill():
                pass
            data, self._buffer = self._buffer, b""
            return data
        while len(self._buffer) < size and self._fill():
            pass
        data, self._buffer = self._buffer[:size], self._buffer[size:]
        return data

    def readinto(self, target: Any) -> int:
        data = self.read(len(target))
        target[: len(data)] = data
        return len(data)

    def readline(self, size: int | None = -1) -> bytes:
        limit = MAX_READLINE if size is None or size < 0 else size
        while True:
            end = self._buffer.find(b"\n", 0, limit)
            if end >= 0:
                end += 1
                break
            if len(self._buffer) >= limit or not self._fill():
                end = min(limit, len(self._buffer))
                break
        data, self._buffer = self._buffer[:end], self._buffer[end:]
        return data

    def readlines(self, hint: int = -1) -> list[bytes]:
        lines = []
        total = 0
        while line := self.readline():
            lines.append(line)
            total += len(line)
            if 0 < hint <= total:
                break
        return lines

    def __iter__(self) -> Iterator[bytes]:
        while line := self.readline():
            yield line


class FileWrapper:
    """``wsgi.file_wrapper``: a file's blocks as the response body."""

    def __init__(self, file: Any, block_size: int = FILE_BLOCK_SIZE) -> None:
        self.file = file
        self.block_size = block_size

    def __iter__(self) -> Iterator[bytes]:
        while block := self.file.read(self.block_size):
            yield block

    def close(self) -> None:
        close = getattr(self.file, "close", None)
        if close is not None:
            close()


class WSGIApplication:
    """The Application contract around one WSGI callable."""

    def __init__(self, app: WSGIApp, root_path: str = "", multiprocess: bool = False) -> None:
        self.app = app
        self.root_path = root_path.rstrip("/")
        self.multiprocess = multiprocess

    def __repr__(self) -> str:
        return f"<WSGIApplication {self.app!r}>"

    def stream_body(self, request: Request) -> bool:
        """Large or chunked bodies reach wsgi.input as they arrive; small ones whole."""
        return streams_body(request)

    def check_continue(self, request: Request) -> Response | None:
        return None

    def handle(self, request: Request, server: Server) -> Response | Any:
        if server.offload_sync:
            return self._offloaded(request, server)
        return self.call(request, server)

    async def _offloaded(self, request: Request, server: Server) -> Response:
        """On an event loop: the app and every step of its iterable on the blocking pool."""
        loop = asyncio.get_running_loop()
        pool = server.blocking_executor
        response = await loop.run_in_executor(pool, self.call, request, server)
        stream = response.stream
        if isinstance(stream, Iterator):
            response.stream = _OnPool(pool, stream)
        return response

    # ------------------------------------------------------------------ one call

    def environ(self, request: Request, server: Server) -> dict[str, Any]:
        host, port = server.address or (server.config.host, server.config.port)
        path = unquote_to_bytes(request.raw_path).decode("latin-1")
        script_name = self.root_path
        if script_name and (path == script_name or path.startswith(script_name + "/")):
            path = path[len(script_name):]
        environ: dict[str, Any] = {
            "REQUEST_METHOD": request.method,
            "SCRIPT_NAME": script_name,
            "PATH_INFO": path,
            "QUERY_STRING": request.query_string,
            "SERVER_NAME": str(host),
            "SERVER_PORT": str(port),
            "SERVER_PROTOCOL": f"HTTP/{request.http_version}",
            "wsgi.version": (1, 0),
            "wsgi.url_scheme": request.scheme,
            "wsgi.input": WSGIInput(request),
            "wsgi.input_terminated": True,
            "wsgi.errors": sys.stderr,
            "wsgi.multithread": True,
            "wsgi.multiprocess": self.multiprocess,
            "wsgi.run_once": False,
            "wsgi.file_wrapper": FileWrapper,
        }
        if request.client is not None:
            environ["REMOTE_ADDR"] = request.client[0]
            environ["REMOTE_PORT"] = str(request.client[1])
        for name, value in request.headers.items():
            key = name.upper().replace("-", "_")
            if key == "CONTENT_TYPE" or key == "CONTENT_LENGTH":
                environ[key] = value
                continue
            key = "HTTP_" + key
            if key in environ:
                separator = "; " if key == "HTTP_COOKIE" else ", "
                environ[key] = environ[key] + separator + value
            else:
                environ[key] = value
        if "CONTENT_LENGTH" not in environ and request.body_stream is None:
            environ["CONTENT_LENGTH"] = str(len(request.body)) if request.body else ""
        return environ

    def call(self, request: Request, server: Server) -> Response:
        """Run the app for ``request`` on this thread; its answer (maybe streamed)."""
        head: list[Any] = []
        written: list[bytes] = []

        def start_response(status: str, headers: list[tuple[str, str]],
                           exc_info: Any = None) -> Callable[[bytes], None]:
            if exc_info is not None:
                try:
                    if head and head[2]:  # the head went out: re-raise, per PEP 3333
                        raise exc_info[1].with_traceback(exc_info[2])
                finally:
                    exc_info = None
            elif head:
                raise AssertionError("start_response called twice without exc_info")
            head[:] = [status, headers, False]
            return written.append  # the legacy write() callable

        try:
            result = self.app(self.environ(request, server), start_response)
        except Exception:
            log.exception("WSGI app raised for %s %s", request.method, request.path)
            return _INTERNAL_ERROR
        try:
            if isinstance(result, FileWrapper) and not written:
                file_body = _file_body(result.file)
                if file_body is not None:
                    response = self._head(request, head)
                    response.file = file_body  # zero-copy: sendfile on plain TCP
                    head[2] = True
                    return response
            if isinstance(result, list | tuple) and len(result) <= 1 and not written:
                body = b"".join(result)
                response = self._head(request, head)
                response.body = body
                _close(result)
                return response
            iterator = iter(result)
            first = b"".join(written)
            while not first:
                piece = next(iterator, None)
                if piece is None:
                    break
                first = piece
            response = self._head(request, head)
        except Exception:
            log.exception("WSGI app failed for %s %s", request.method, request.path)
            _close(result)
            return _INTERNAL_ERROR
        head[2] = True
        response.stream = _Body(first, iterator, result)
        return response

    @staticmethod
    def _head(request: Request, head: list[Any]) -> Response:
        if not head:
            raise RuntimeError("the app returned without calling start_response")
        status_text, headers, _ = head
        try:
            status = int(str(status_text)[:3])
        except ValueError:
            raise RuntimeError(f"invalid WSGI status {status_text!r}") from None
        if not 100 <= status <= 999:
            raise RuntimeError(f"invalid WSGI status {status_text!r}")
        pairs = []
        for name, value in headers:
            if not isinstance(name, str) or not isinstance(value, str):
                raise RuntimeError(f"WSGI header {(name, value)!r} is not a pair of str")
            pairs.append((name, value))
        return Response(status, pairs)


class _Body:
    """The body after the head: what the app produces, then its ``close()`` — always.

    A class rather than a generator with a ``finally``: closing a generator that
    never started skips its ``finally``, and a body can be dropped before its first
    piece is asked for (the client left, the writing task was cancelled while its
    first ``next()`` was still queued on the pool), which left the app's iterable
    unclosed."""

    __slots__ = ("_closed", "_first", "_iterator", "_result")

    def __init__(self, first: bytes, iterator: Iterator[bytes], result: Iterable[bytes]) -> None:
        self._first = first
        self._iterator = iterator
        self._result = result
        self._closed = False

    def __iter__(self) -> _Body:
        return self

    def __next__(self) -> bytes:
        first = self._first
        if first:
            self._first = b""
            return first
        try:
            for piece in self._iterator:
                if not isinstance(piece, bytes | bytearray | memoryview):
                    raise TypeError(
                        f"the WSGI iterable yielded {type(piece).__name__}, not bytes")
                if piece:
                    return bytes(piece)
        except BaseException:
            self.close()
            raise
        self.close()
        raise StopIteration

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            _close(self._result)


#: What a pooled ``next()`` returns at the end of the body.
_DONE: Any = object()


class _OnPool:
    """A blocking body as an async iterator: each ``next()`` on ``pool`` (never on
    the loop), and ``aclose()`` always closes the body, started or not.

    ``close()`` waits for a ``next()`` still running in a thread (a generator cannot
    be closed while it runs), which happens when the client goes away and the
    writing task is cancelled mid-``next()``: that close is then left to the pool
    rather than awaited, as the producer may take its time. Either way it is
    shielded: a cancelled pool job that had not started would never run."""

    __slots__ = ("_body", "_in_next", "_lock", "_pool")

    def __init__(self, pool: Any, body: Iterator[bytes]) -> None:
        self._pool = pool
        self._body = body
        self._lock = threading.Lock()
        self._in_next = False

    def __aiter__(self) -> _OnPool:
        return self

    async def __anext__(self) -> bytes:
        self._in_next = True
        piece = await asyncio.get_running_loop().run_in_executor(self._pool, self._step)
        self._in_next = False
        if piece is _DONE:
            raise StopAsyncIteration
        return piece  # type: ignore[no-any-return]

    def _step(self) -> Any:
        with self._lock:
            return next(self._body, _DONE)

    def _close(self) -> None:
        with self._lock:
            close = getattr(self._body, "close", None)
            if close is not None:
                close()

    async def aclose(self) -> None:
        # Never cancelled once asked for: the connection's loss cancels the task that
        # awaits this, and a cancelled pool job that had not started never runs.
        closing = asyncio.shield(asyncio.get_running_loop().run_in_executor(self._pool, self._close))
        if not self._in_next:  # else it runs once that next() has returned
            await closing


def _file_body(file: Any) -> FileBody | None:
    """A real file from its current position to its end as a zero-copy body, or
    None for a file-like object without a descriptor (iterated in blocks instead)."""
    try:
        fd = file.fileno()
        size = os.fstat(fd).st_size
        offset = file.tell()
    except (AttributeError, OSError, ValueError, io.UnsupportedOperation):
        return None
    return FileBody(file, offset, max(0, size - offset))


def _close(result: Any) -> None:
    close = getattr(result, "close", None)
    if close is not None:
        try:
            close()
        except Exception:
            log.exception("closing the WSGI iterable failed")


def adapt(app: Any, config: Any = None) -> WSGIApplication:
    root_path = getattr(config, "root_path", "") if config is not None else ""
    return WSGIApplication(app, root_path)
