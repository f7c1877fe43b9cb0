"""What a handler produces: status, header fields and a body (bytes, a stream or a file).

Three body forms, in the order a backend prefers them:

* ``body``: bytes, sent with ``Content-Length`` in the same write as the head.
* ``file``: a :class:`FileBody` (an open file, an offset and a byte count), sent
  with ``Content-Length`` and, on plain TCP, without copying through Python
  (``os.sendfile`` on the native backend, ``loop.sendfile`` or its equivalent on
  the event loop; see ``zzz/backends/_sendfile.py``). Over TLS, or anywhere the
  kernel cannot splice, it is read in bounded pieces instead: a :class:`FileBody`
  is also an iterable of ``bytes``, so code that only knows streams still works.
* ``stream``: an iterable or async iterable of ``bytes``, sent with chunked
  framing (HTTP/1.1) or until close (HTTP/1.0).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterable, Iterable, Iterator
from typing import Any

#: A streamed body: chunks written as they are produced, with chunked framing.
Stream = Iterable[bytes] | AsyncIterable[bytes]

#: Largest piece a :class:`FileBody` is read in when it cannot be sent zero-copy
#: (TLS): big enough to amortise the syscalls, small enough that memory per
#: connection stays bounded whatever the file size.
FILE_READ_CHUNK = 64 * 1024


class FileBody:
    """``count`` bytes of an open file from ``offset``: a body sent zero-copy.

    The response owns the file: the backend closes it once sent (or not sent:
    HEAD, client gone). Reads use ``os.pread``, so the file position never
    matters and the same descriptor is safe to hand to ``sendfile``.
    """

    __slots__ = ("count", "file", "offset")

    def __init__(self, file: Any, offset: int, count: int) -> None:
        if offset < 0 or count < 0:
            raise ValueError(f"FileBody needs offset and count >= 0, got {offset}, {count}")
        #: A binary file object with ``fileno()`` (``open(path, "rb", buffering=0)``).
        self.file = file
        self.offset = offset
        self.count = count

    def fileno(self) -> int:
        fileno: int = self.file.fileno()
        return fileno

    def close(self) -> None:
        self.file.close()

    def __iter__(self) -> Iterator[bytes]:
        """The bytes in pieces of at most ``FILE_READ_CHUNK`` (stops early if the file shrank)."""
        fd = self.fileno()
        offset = self.offset
        remaining = self.count
        try:
            while remaining > 0:
                piece = os.pread(fd, min(remaining, FILE_READ_CHUNK), offset)
                if not piece:
                    return
                offset += len(piece)
                remaining -= len(piece)
                yield piece
        finally:
            self.close()

    def __repr__(self) -> str:
        return f"<FileBody {self.offset}+{self.count}>"


class Response:
    """An HTTP response before serialisation.

    ``headers`` are ``(name, value)`` pairs in the order they will be sent; the
    engine adds ``Date``, ``Server``, framing and ``Connection`` itself, so
    handlers never set those by hand. A ``stream`` replaces ``body`` and is
    sent with chunked transfer coding (HTTP/1.1) or until close (HTTP/1.0).
    A ``file`` (:class:`FileBody`) replaces both and is sent zero-copy with a
    ``Content-Length``. ``upgrade`` carries a protocol switch (WebSocket) the
    backend performs after writing this response.
    """

    __slots__ = ("body", "file", "headers", "status", "stream", "upgrade")

    def __init__(
        self,
        status: int = 200,
        headers: list[tuple[str, str]] | None = None,
        body: bytes = b"",
        stream: Stream | None = None,
        file: FileBody | None = None,
    ) -> None:
        self.status = status
        self.headers: list[tuple[str, str]] = headers if headers is not None else []
        self.body = body
        self.stream = stream
        self.file = file
        self.upgrade: Any = None

    def __repr__(self) -> str:
        return f"<Response {self.status}>"
