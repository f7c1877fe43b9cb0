"""What a handler produces: status, header fields and a body (bytes or a stream)."""

from __future__ import annotations

from collections.abc import AsyncIterable, Iterable
from typing import Any

#: A streamed body: chunks written as they are produced, with chunked framing.
Stream = Iterable[bytes] | AsyncIterable[bytes]


class Response:
    """An HTTP response before serialisation.

    ``headers`` are ``(name, value)`` pairs in the order they will be sent; the
    engine adds ``Date``, ``Server``, framing and ``Connection`` itself, so
    handlers never set those by hand. A ``stream`` replaces ``body`` and is
    sent with chunked transfer coding (HTTP/1.1) or until close (HTTP/1.0).
    ``upgrade`` carries a protocol switch (WebSocket) the backend performs
    after writing this response.
    """

    __slots__ = ("body", "headers", "status", "stream", "upgrade")

    def __init__(
        self,
        status: int = 200,
        headers: list[tuple[str, str]] | None = None,
        body: bytes = b"",
        stream: Stream | None = None,
    ) -> None:
        self.status = status
        self.headers: list[tuple[str, str]] = headers if headers is not None else []
        self.body = body
        self.stream = stream
        self.upgrade: Any = None

    def __repr__(self) -> str:
        return f"<Response {self.status}>"
