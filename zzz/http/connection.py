"""Sans-I/O HTTP/1.1 server connection: bytes in → events out, responses in → bytes out.

One :class:`HTTPConnection` per client connection, driven by a backend:

* ``events = conn.feed(data)`` parses whatever arrived (``b""`` means EOF) and
  returns the complete :class:`~zzz.http.request.Request` objects in order
  (pipelining), an :class:`ExpectContinue` when a client waits for permission
  to send a body, or a :class:`ProtocolError` after which the connection is
  answered with ``conn.error_response(err)`` and closed.
* ``conn.serialize(response, request)`` turns a response into bytes and sets
  ``conn.must_close`` when the connection cannot carry another request.

Parsing is llhttp (via httptools) in its strict default mode, which already
refuses Content-Length together with Transfer-Encoding, duplicate or malformed
Content-Length, obs-fold, bare CR, control bytes in names and values, bad chunk
sizes and unknown transfer codings. This module adds what llhttp leaves to the
server: size limits, the version policy, ``Host``, ``Expect`` and smuggling
rules for HTTP/1.0.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from email.utils import formatdate
from typing import TYPE_CHECKING
from urllib.parse import unquote

import httptools

from zzz.http.headers import Headers
from zzz.http.request import Request
from zzz.http.response import Response
from zzz.http.status import NO_BODY_STATUSES, reason, status_line

if TYPE_CHECKING:
    from zzz.config import Config

#: Sent when a client's ``Expect: 100-continue`` is accepted.
CONTINUE_RESPONSE = b"HTTP/1.1 100 Continue\r\n\r\n"
#: The ``Server`` header every response carries.
SERVER_HEADER = b"Server: zzz\r\n"
#: Bytes kept from the start of a request to classify a bad method (400 vs 501).
METHOD_PROBE_BYTES = 32
#: End of a chunked body.
LAST_CHUNK = b"0\r\n\r\n"

_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_VERSION = re.compile(rb"HTTP/\d\.\d")
#: Header names the engine owns; a handler setting them is overridden.
_FRAMING_HEADERS = frozenset({"content-length", "transfer-encoding"})


@dataclass(frozen=True, slots=True)
class Limits:
    """The per-connection limits the engine enforces (a subset of :class:`Config`)."""

    max_body_size: int = 1024 * 1024
    max_header_size: int = 16 * 1024
    max_requests: int = 100

    @classmethod
    def from_config(cls, config: Config) -> Limits:
        return cls(
            max_body_size=config.max_body_size,
            max_header_size=config.max_header_size,
            max_requests=config.max_requests_per_connection,
        )


class ProtocolError(Exception):
    """A request the server refuses; answered with ``status`` and a closed connection."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(f"{status} {detail}")
        self.status = status
        self.detail = detail


class ExpectContinue:
    """The head of a request whose client waits for ``100 Continue`` before the body.

    The backend either writes :data:`CONTINUE_RESPONSE` and goes on feeding, or
    answers ``request`` with a final status and closes without reading the body.
    """

    __slots__ = ("request",)

    def __init__(self, request: Request) -> None:
        self.request = request


Event = Request | ExpectContinue | ProtocolError

_date_cache: tuple[int, bytes] = (0, b"")


def date_header() -> bytes:
    """``Date: ...\\r\\n``, formatted at most once per second (shared by all threads)."""
    global _date_cache
    now = int(time.time())
    cached = _date_cache
    if cached[0] != now:
        cached = (now, b"Date: " + formatdate(now, usegmt=True).encode("ascii") + b"\r\n")
        _date_cache = cached
    return cached[1]


class HTTPConnection:
    """Server-side HTTP/1.1 state for one connection. Not thread-safe: one owner at a time."""

    __slots__ = (
        "_body_parts",
        "_body_size",
        "_chunked_response",
        "_client",
        "_content_length",
        "_current",
        "_dead",
        "_events",
        "_fields",
        "_head_bytes",
        "_host_count",
        "_in_head",
        "_limits",
        "_method_probe",
        "_parser",
        "_partial",
        "_pending_continue",
        "_responses",
        "_scheme",
        "_te",
        "_url",
        "close_after_response",
        "in_request",
        "must_close",
        "upgrade_data",
    )

    def __init__(
        self,
        limits: Limits | None = None,
        client: tuple[str, int] | None = None,
        scheme: str = "http",
    ) -> None:
        self._limits = limits or Limits()
        self._client = client
        self._scheme = scheme
        self._parser = httptools.HttpRequestParser(self)
        self._events: list[Event] = []
        self._current: Request | None = None
        self._url = b""
        self._fields: list[tuple[str, str]] = []
        self._body_parts: list[bytes] = []
        self._body_size = 0
        self._head_bytes = 0
        self._partial = 0
        self._in_head = False
        self._content_length: int | None = None
        self._te = False
        self._host_count = 0
        self._pending_continue: Request | None = None
        self._method_probe = b""
        self._dead = False
        self._responses = 0
        self._chunked_response = False
        #: True while a request has started arriving but is not complete (read deadline).
        self.in_request = False
        #: Set by the backend during shutdown: the next response says ``Connection: close``.
        self.close_after_response = False
        #: Set by :meth:`serialize`: the connection must close after this response.
        self.must_close = False
        #: Bytes that followed an ``Upgrade`` request (the new protocol's first bytes).
        self.upgrade_data = b""

    # ------------------------------------------------------------------ receiving

    def feed(self, data: bytes) -> list[Event]:
        """Parse ``data`` (``b""`` for EOF) and return the events it completed."""
        if self._dead:
            return []
        if not data:
            self._dead = True
            return []
        events = self._events
        if not self.in_request:
            self._method_probe = data[:METHOD_PROBE_BYTES]
        elif len(self._method_probe) < METHOD_PROBE_BYTES:
            self._method_probe += data[: METHOD_PROBE_BYTES - len(self._method_probe)]
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade as exc:
            self._on_upgrade(data, exc)
        except httptools.HttpParserInvalidMethodError:
            self._fail(self._method_error())
        except httptools.HttpParserCallbackError as exc:
            cause = exc.__context__
            self._fail(cause if isinstance(cause, ProtocolError) else ProtocolError(400, str(exc)))
        except httptools.HttpParserError as exc:
            self._fail(self._classify(str(exc)))
        except ProtocolError as exc:  # raised by a callback and passed through
            self._fail(exc)
        if self._in_head and not self._dead:
            self._check_partial_head(data)
        if self._pending_continue is not None and not self._dead:
            events.append(ExpectContinue(self._pending_continue))
            self._pending_continue = None
        self._events = []
        return events

    def _check_partial_head(self, data: bytes) -> None:
        """Bound a head that is still arriving.

        httptools buffers a header field until its line ends, so without this a
        client could grow one endless field. The bytes after the last LF of this
        chunk (plus earlier chunks without an LF) are the field in progress.
        """
        last_lf = data.rfind(b"\n")
        self._partial = self._partial + len(data) if last_lf < 0 else len(data) - last_lf - 1
        limit = self._limits.max_header_size
        if len(self._url) > limit:
            self._fail(ProtocolError(414, "request line too long"))
        elif self._head_bytes + self._partial > limit:
            self._fail(ProtocolError(431, "request header fields too large"))

    def _fail(self, error: ProtocolError) -> None:
        self._dead = True
        self.in_request = False
        self._pending_continue = None
        self._events.append(error)

    def _method_error(self) -> ProtocolError:
        method = self._method_probe.lstrip(b"\r\n").split(b" ", 1)[0]
        if method and _TOKEN.fullmatch(method) and b" " in self._method_probe:
            return ProtocolError(501, "method not implemented")
        return ProtocolError(400, "invalid method")

    def _classify(self, message: str) -> ProtocolError:
        if "HTTP version" in message:
            line = self._method_probe.lstrip(b"\r\n").split(b"\r\n", 1)[0]
            version = line.rsplit(b" ", 1)[-1]
            if _VERSION.fullmatch(version):
                return ProtocolError(505, "HTTP version not supported")
        if "URL" in message or "url" in message:
            return ProtocolError(400, "invalid request target")
        return ProtocolError(400, message)

    def _on_upgrade(self, data: bytes, exc: httptools.HttpParserUpgrade) -> None:
        request = self._current_or_last()
        if request is None or request.method == "CONNECT":
            self._fail(ProtocolError(501, "CONNECT is not supported"))
            return
        offset = exc.args[0] if exc.args and isinstance(exc.args[0], int) else len(data)
        request.upgrade = True
        self.upgrade_data = data[offset:]
        # Nothing after an upgrade request is HTTP any more: the backend either
        # switches protocol or answers and closes.
        self._dead = True

    def _current_or_last(self) -> Request | None:
        for event in reversed(self._events):
            if isinstance(event, Request):
                return event
        return None

    # httptools callbacks (names fixed by httptools) -------------------------------

    def on_message_begin(self) -> None:
        self.in_request = True
        self._in_head = True
        self._head_bytes = 0
        self._partial = 0
        self._url = b""
        self._fields = []
        self._body_parts = []
        self._body_size = 0
        self._content_length = None
        self._te = False
        self._host_count = 0
        self._current = None

    def on_url(self, url: bytes) -> None:
        self._url += url
        if len(self._url) > self._limits.max_header_size:
            raise ProtocolError(414, "request line too long")

    def on_header(self, name: bytes, value: bytes) -> None:
        if not self._in_head:
            return  # chunked trailer fields: accepted and ignored
        self._head_bytes += len(name) + len(value) + 4
        if self._head_bytes > self._limits.max_header_size:
            raise ProtocolError(431, "request header fields too large")
        lname = name.lower()
        if lname == b"content-length":
            # llhttp has already refused duplicates and non-digits.
            self._content_length = int(value)
        elif lname == b"transfer-encoding":
            self._te = True
        elif lname == b"host":
            self._host_count += 1
        self._fields.append((name.decode("latin-1"), value.decode("latin-1")))

    def on_headers_complete(self) -> None:
        self._in_head = False
        parser = self._parser
        version = parser.get_http_version()
        if version not in ("1.1", "1.0"):
            raise ProtocolError(505, "HTTP version not supported")
        if len(self._url) + self._head_bytes > self._limits.max_header_size:
            raise ProtocolError(431, "request header fields too large")
        if version == "1.1" and self._host_count != 1:
            raise ProtocolError(400, "exactly one Host header is required")
        if self._host_count > 1:
            raise ProtocolError(400, "duplicate Host header")
        if self._te and version == "1.0":
            raise ProtocolError(400, "Transfer-Encoding in an HTTP/1.0 request")
        length = self._content_length
        if length is not None and length > self._limits.max_body_size:
            raise ProtocolError(413, "request body too large")
        raw = self._url
        path, _, query = raw.partition(b"?")
        if not path.startswith(b"/"):
            if path == b"*" and parser.get_method() == b"OPTIONS":
                pass
            elif path.startswith((b"http://", b"https://")):
                # absolute-form: route on the path part (RFC 9112 §3.2.2).
                after = path.split(b"//", 1)[1]
                slash = after.find(b"/")
                path = after[slash:] if slash >= 0 else b"/"
            else:
                raise ProtocolError(400, "invalid request target")
        raw_path = path.decode("latin-1")
        request = Request(
            parser.get_method().decode("ascii"),
            raw_path,
            query.decode("latin-1"),
            Headers(self._fields),
            version,
            path=unquote(raw_path) if "%" in raw_path else raw_path,
            keep_alive=parser.should_keep_alive(),
            client=self._client,
            scheme=self._scheme,
        )
        self._current = request
        if version == "1.1" and (length or self._te):
            expect = request.headers.get("expect")
            if expect is not None:
                if expect.lower() != "100-continue":
                    raise ProtocolError(417, "unsupported expectation")
                request.expect_continue = True
                self._pending_continue = request

    def on_body(self, body: bytes) -> None:
        self._body_size += len(body)
        if self._body_size > self._limits.max_body_size:
            raise ProtocolError(413, "request body too large")
        self._body_parts.append(body)

    def on_message_complete(self) -> None:
        request = self._current
        if request is None:  # pragma: no cover - llhttp always reports headers first
            return
        parts = self._body_parts
        if parts:
            request.body = parts[0] if len(parts) == 1 else b"".join(parts)
            self._body_parts = []
        if self._pending_continue is request:
            self._pending_continue = None  # the body came with the head: no 100 needed
        self._current = None
        self.in_request = False
        self._events.append(request)

    # ------------------------------------------------------------------ sending

    def serialize(self, response: Response, request: Request | None) -> bytes:
        """The bytes of ``response`` to ``request``: the whole message, or only the
        head when ``response.stream`` is set (then :meth:`chunk` and :meth:`end`)."""
        self._responses += 1
        status = response.status
        close = (
            request is None
            or not request.keep_alive
            or self.close_after_response
            or self._responses >= self._limits.max_requests
            or (request.upgrade and response.upgrade is None)
        )
        parts = [status_line(status), SERVER_HEADER, date_header()]
        for name, value in response.headers:
            lname = name.lower()
            if lname in _FRAMING_HEADERS:
                continue
            if lname == "connection":
                if "close" in value.lower():
                    close = True
                if response.upgrade is None:
                    continue
            parts.append(f"{name}: {value}\r\n".encode("latin-1"))
        head_only = request is not None and request.method == "HEAD"
        body = b""
        self._chunked_response = False
        if status in NO_BODY_STATUSES:
            pass
        elif response.stream is not None:
            if request is not None and request.http_version == "1.1":
                parts.append(b"Transfer-Encoding: chunked\r\n")
                self._chunked_response = not head_only
            else:
                close = True  # HTTP/1.0: the body ends when the connection does
        else:
            body = response.body
            parts.append(b"Content-Length: %d\r\n" % len(body))
            if head_only:
                body = b""
        if response.upgrade is None:
            parts.append(b"Connection: close\r\n\r\n" if close else b"\r\n")
        else:
            parts.append(b"\r\n")
        self.must_close = close
        if body:
            parts.append(body)
        return b"".join(parts)

    def chunk(self, data: bytes) -> bytes:
        """One piece of a streamed body, framed for the wire (empty input → ``b""``)."""
        if not data:
            return b""
        if self._chunked_response:
            return b"%x\r\n%b\r\n" % (len(data), data)
        return data

    def end(self) -> bytes:
        """The end of a streamed body."""
        return LAST_CHUNK if self._chunked_response else b""

    def error_response(self, error: ProtocolError) -> bytes:
        """A short plain-text answer to a refused request; the connection then closes."""
        self.must_close = True
        self._dead = True
        body = f"{error.status} {reason(error.status)}: {error.detail}\n".encode("latin-1")
        return b"".join(
            (
                status_line(error.status),
                SERVER_HEADER,
                date_header(),
                b"Content-Type: text/plain; charset=utf-8\r\n",
                b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(body),
                body,
            )
        )

    @property
    def responses_sent(self) -> int:
        return self._responses

    @property
    def is_dead(self) -> bool:
        """True after EOF, a protocol error or an upgrade: no more requests will come."""
        return self._dead
