"""The request the engine hands to the application: head plus buffered (or streamed) body."""

from __future__ import annotations

from typing import Any

from zzz.http.headers import Headers


class Request:
    """One parsed HTTP request.

    Built by :class:`zzz.http.connection.HTTPConnection` when the head is complete and
    finished when the body has arrived. ``path`` is percent-decoded for routing;
    ``raw_path`` and ``query_string`` are exactly as sent.
    """

    __slots__ = (
        "body",
        "body_stream",
        "client",
        "expect_continue",
        "extensions",
        "handler",
        "headers",
        "http_version",
        "keep_alive",
        "method",
        "path",
        "query_string",
        "raw_path",
        "scheme",
        "streamed",
        "upgrade",
    )

    def __init__(
        self,
        method: str,
        raw_path: str,
        query_string: str,
        headers: Headers,
        http_version: str = "1.1",
        path: str | None = None,
        body: bytes = b"",
        keep_alive: bool = True,
        client: tuple[str, int] | None = None,
        scheme: str = "http",
    ) -> None:
        self.method = method
        self.raw_path = raw_path
        self.path = raw_path if path is None else path
        self.query_string = query_string
        self.headers = headers
        self.http_version = http_version
        self.body = body
        self.keep_alive = keep_alive
        self.client = client
        self.scheme = scheme
        #: True when the client sent ``Expect: 100-continue`` and waits for our answer.
        self.expect_continue = False
        #: True for an ``Upgrade`` request (WebSocket); the engine stops parsing after it.
        self.upgrade = False
        #: Per-connection facts a backend adds (TLS peer certificate, ...).
        self.extensions: dict[str, Any] = {}
        #: The handler the application chose (``module.qualname``), for log lines
        #: written below the application (the engine's invalid-response 500).
        self.handler: str | None = None
        #: True when the engine handed the request out at its head and streams the
        #: body (``body`` stays empty; read ``body_stream`` instead).
        self.streamed = False
        #: The flow-controlled reader of a streamed body (:class:`zzz.body.RequestBody`),
        #: attached by the backend; ``None`` for a buffered request.
        self.body_stream: Any = None

    def __repr__(self) -> str:
        return f"<Request {self.method} {self.raw_path}>"
