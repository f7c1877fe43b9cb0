"""Sans-I/O HTTP/1.1 server connection: bytes in → events out, responses in → bytes out.

One :class:`HTTPConnection` per client connection, driven by a backend:

* ``events = conn.feed(data)`` parses whatever arrived (``b""`` means EOF) and
  returns the complete :class:`~zzz.http.request.Request` objects in order
  (pipelining), an :class:`ExpectContinue` when a client waits for permission
  to send a body, or a :class:`ProtocolError` after which the connection is
  answered with ``conn.error_response(err)`` and closed.
* ``conn.serialize(response, request)`` turns a response into bytes and sets
  ``conn.must_close`` when the connection cannot carry another request.

Bodies are buffered by default: the :class:`Request` comes out with its whole
body, bounded by ``Limits.max_body_size``. With a ``stream_body`` predicate
(the server's: a route that opts in, or any ASGI/WSGI app) a request whose head
announces a body comes out as soon as the head is complete, followed by
:class:`Data` events and one :class:`EndOfMessage` — the shape h11 uses. Flow
control is then the backend's single rule: it stops feeding while the
application has not consumed what it got, so a slow consumer never makes the
server hold an upload. ``Expect: 100-continue`` produces no event in that mode:
the backend sends :data:`CONTINUE_RESPONSE` when the application first reads.
A response serialized while its streamed body is still arriving closes the
connection (the rest is never read; the backend closes lingering).

Parsing is llhttp (via httptools) in its strict default mode, which already
refuses Content-Length together with Transfer-Encoding, duplicate or malformed
Content-Length, obs-fold, bare CR or LF, control bytes in names and values, bad
chunk sizes and transfer codings other than a final ``chunked``.

This module adds what llhttp leaves to the server: size limits, the version
policy, ``Host``, ``Expect``, the HTTP/1.0 smuggling rules and status mapping.
httptools reports no byte positions, so :meth:`HTTPConnection.feed` cuts the
input itself at every point where a message can end (the ``CRLFCRLF`` that ends
a head or a chunked body, the end of a Content-Length body) and hands llhttp
one piece at a time. Message starts are then known exactly, which is what makes
the result independent of how the bytes were split into ``feed`` calls: head
limits are counted on the real head bytes, a bad request line is classified on
its own bytes (400 vs 501 vs 505), the bytes after an ``Upgrade`` head are
exact, and nothing after a ``Connection: close`` request is ever parsed.
A chunked body is cut at every framing line, so a chunk-size line (extensions
included) and a trailer section are bounded on their own bytes as well: the
same input gets the same answer whatever the read sizes of the backend.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from email.utils import formatdate
from typing import cast
from urllib.parse import unquote

import httptools

from zzz.http.chunked import parse_size_line
from zzz.http.headers import Headers
from zzz.http.request import Request
from zzz.http.response import Response
from zzz.http.status import NO_BODY_STATUSES, STATUS_LINES, reason, status_line

#: Where the engine reports responses it had to replace (the application's logger).
_app_log = logging.getLogger("zzz.app")
#: Sent when a client's ``Expect: 100-continue`` is accepted.
CONTINUE_RESPONSE = b"HTTP/1.1 100 Continue\r\n\r\n"
#: The ``Server`` header every response carries.
SERVER_HEADER = b"Server: zzz\r\n"
#: Longest method token answered with 501; a longer unknown token is garbage (400).
MAX_METHOD_LENGTH = 32
#: Stands in for a method llhttp does not know while it parses the rest (any
#: method but CONNECT means the same to llhttp's request parsing).
_PLACEHOLDER_METHOD = b"GET"
#: End of a streamed chunked body.
LAST_CHUNK = b"0\r\n\r\n"
#: Content-Length bodies this large bypass llhttp (:meth:`HTTPConnection._direct_body`):
#: each read is kept as it came instead of being copied by httptools' ``on_body``.
#: Below it the per-request cost of a fresh parser (about 0.5 µs) would not pay.
DIRECT_BODY_MIN = 64 * 1024
#: Streamed pieces this large are framed without a copy (:meth:`HTTPConnection.frame`):
#: below it, one copy into a framed ``bytes`` costs less than a vector write.
FRAME_COPY_BELOW = 16 * 1024
#: Ends every head and every chunked body (RFC 9112 §2.1, §7.1).
_BLANK_LINE = b"\r\n\r\n"

_TCHARS = rb"!#$%&'*+\-.^_`|~0-9A-Za-z"
_TOKEN = re.compile(rb"[" + _TCHARS + rb"]+")
_TOKEN_PREFIX = re.compile(rb"[" + _TCHARS + rb"]*")

_VERSION = re.compile(rb"HTTP/\d\.\d")
#: A response field name must be a token (a value must not contain CR, LF or NUL:
#: they would let a handler that echoes client input split the response).
_FIELD_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_BAD_VALUE_CHARS = re.compile(r"[\r\n\x00]")
#: Response header names the engine writes itself; a handler's copy is dropped.
_ENGINE_HEADERS = frozenset({"content-length", "transfer-encoding", "date", "server"})

#: What ``_fields`` holds between requests: the last request's fields belong to its
#: ``Headers`` alone, so an idle connection keeps none of their bytes. Immutable, so
#: an append that broke that rule would fail loudly instead of sharing data.
_NO_FIELDS = cast(list[tuple[bytes, bytes]], ())
#: What ``_body_parts`` holds outside a buffered body (immutable, like ``_NO_FIELDS``).
_NO_PARTS = cast(list[bytes], ())
#: ``#`` as a byte value (see on_headers_complete).
_HASH = ord("#")
#: The versions served, from the digits of the request line (see ``feed``).
_VERSIONS = {b"1.1": "1.1", b"1.0": "1.0"}

#: Method names as ``str`` without decoding them per request.
_METHOD_NAMES = {
    m.encode(): m for m in ("GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH", "TRACE")
}

# Parser states (what the next input byte belongs to).
_IDLE = 0  # between messages
_HEAD = 1  # request line and header fields
_BODY_LENGTH = 2  # Content-Length body
_BODY_CHUNKED = 3  # a chunk-size line or a trailer field line
_CHUNK_DATA = 4  # the data of one chunk and its CRLF
_BODY_DIRECT = 5  # a large Content-Length body, kept without llhttp (see _direct_body)

# Response body modes for chunk()/end().
_BODY_NONE = 0  # HEAD, 1xx, 204, 304: nothing may follow the head
_BODY_CHUNKED_OUT = 1
_BODY_RAW = 2  # HTTP/1.0 stream, delimited by closing the connection


@dataclass(frozen=True, slots=True)
class Limits:
    """The per-connection limits the engine enforces, as plain data.

    The engine imports nothing of the server's configuration: the server builds
    a ``Limits`` from its ``Config`` (:meth:`zzz.config.Config.engine_limits`), and
    a test or another server can build one directly.
    """

    #: Largest buffered body (413 beyond), decided from Content-Length when it is sent.
    max_body_size: int = 1024 * 1024
    #: Largest request head; also bounds one chunk-size line and a trailer section.
    max_header_size: int = 16 * 1024
    #: Requests served on one connection; the last answer carries ``Connection: close``.
    max_requests: int = 100
    #: Largest streamed body (413 when crossed, mid-stream if need be); 0 = unbounded.
    max_stream_body_size: int = 0


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


class Data:
    """A piece of a streamed request body (see :class:`HTTPConnection`'s ``stream_body``).

    Pieces arrive in order after their :class:`Request`; their sizes follow the
    reads, not the client's chunks.
    """

    __slots__ = ("data",)

    def __init__(self, data: bytes) -> None:
        self.data = data

    def __repr__(self) -> str:
        return f"<Data {len(self.data)} bytes>"


class EndOfMessage:
    """The end of a streamed request body: the next event belongs to the next request."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "<EndOfMessage>"


#: The one :class:`EndOfMessage` (it carries nothing).
END_OF_MESSAGE = EndOfMessage()

Event = Request | ExpectContinue | ProtocolError | Data | EndOfMessage
#: Decides, when a head with a body is complete, whether that body is streamed.
StreamPredicate = Callable[[Request], bool]

#: (second, ``Server`` + ``Date`` lines) — replaced whole, so readers in other
#: threads always see a consistent pair without a lock.
_date_cache: tuple[int, bytes] = (0, b"")


def _server_and_date() -> bytes:
    global _date_cache
    now = int(time.time())
    cached = _date_cache
    if cached[0] != now:
        cached = (
            now,
            SERVER_HEADER + b"Date: " + formatdate(now, usegmt=True).encode("ascii") + b"\r\n",
        )
        _date_cache = cached
    return cached[1]


def date_header() -> bytes:
    """``Date: ...\\r\\n``, formatted at most once per second (shared by all threads)."""
    return _server_and_date()[len(SERVER_HEADER) :]


def _classify_method(line: bytes) -> ProtocolError | None:
    """The status for a request whose method llhttp refused, or ``None`` while the
    bytes that decide it have not arrived yet: a well-formed token followed by a
    space is an extension method (501 here, which the engine turns into a replay:
    see ``_replay_extension_method``), anything else is garbage (400)."""
    token = _TOKEN_PREFIX.match(line)
    end = token.end() if token else 0
    if end == len(line) and end <= MAX_METHOD_LENGTH:
        return None
    if 0 < end <= MAX_METHOD_LENGTH and line[end] == 0x20:
        return ProtocolError(501, "method not implemented")
    return ProtocolError(400, "invalid method")


def _refused_method(exc: Exception) -> bool:
    """llhttp refused a method it knows from RTSP (``DESCRIBE``, ``PLAY``...) only when
    it reached the version: an extension method too. (``PRI`` stays refused: llhttp
    only fails it after the request line, where the head is past replaying.)"""
    return str(exc).startswith("Invalid method for")


def _classify_version(line: bytes) -> ProtocolError:
    """llhttp refuses a version at its minor digit, so the third word of the line
    starts with the whole ``HTTP/x.y``: well-formed but unsupported is 505.

    Only the first 8 bytes of that word decide: they are all that is certain to
    have arrived when llhttp stops, so any split of the input gives the same
    answer (the *last* word would depend on how much of the line came with it).
    """
    line = line.split(b"\r", 1)[0].split(b"\n", 1)[0]
    words = [word for word in line.split(b" ") if word]
    version = words[2][:8] if len(words) > 2 else b""
    if _VERSION.fullmatch(version):
        return ProtocolError(505, "HTTP version not supported")
    return ProtocolError(400, "invalid HTTP version")


#: Fields RFC 9110 §6.5.1 forbids in trailers: framing, routing, request modifiers
#: (controls, conditionals, range), authentication and cookies, response control
#: data, and how to process the content. A trailer holding one is refused (400)
#: rather than ignored: a proxy or application that merged it would be fooled.
FORBIDDEN_TRAILERS = frozenset(
    {
        b"transfer-encoding", b"content-length", b"host", b"connection", b"keep-alive",
        b"upgrade", b"proxy-connection", b"te", b"trailer", b"expect", b"max-forwards",
        b"cache-control", b"pragma", b"range", b"if-match", b"if-none-match",
        b"if-modified-since", b"if-unmodified-since", b"if-range", b"authorization",
        b"proxy-authorization", b"www-authenticate", b"proxy-authenticate", b"cookie",
        b"set-cookie", b"content-encoding", b"content-type", b"content-range", b"age",
        b"expires", b"date", b"location", b"retry-after", b"vary",
    }
)  # fmt: skip


def _check_trailer(name: bytes) -> None:
    if name.lower() in FORBIDDEN_TRAILERS:
        raise ProtocolError(400, f"{name.decode('latin-1')} is not allowed in a trailer")


#: Response field names already checked to be tokens, with their lower-case form.
checked_field_names: dict[str, str] = {}
#: Bound on :data:`checked_field_names` (handlers use a small fixed set of names).
MAX_CHECKED_NAMES = 1024
#: Encoded ``name: value`` lines of fields already checked, keyed by the field's
#: ``(name, value)`` tuple: handlers repeat the same few (Content-Type,
#: Cache-Control...), and a hit skips the checks, the formatting and the encoding.
_field_lines: dict[tuple[str, str], bytes] = {}
#: Bound on :data:`_field_lines`; emptied when full, so fields whose values vary
#: (ids, cookies, ETags) cannot grow it, while the repeated ones come back at once.
MAX_FIELD_LINES = 2048
#: Fields whose value differs on nearly every response: never cached, so they neither
#: pay for an insert nor empty the cache of the fields that do repeat.
_VARYING_FIELDS = frozenset({"x-request-id", "set-cookie", "etag", "last-modified",
                             "location", "content-disposition", "content-range"})
#: Encoded ``Content-Length`` lines by size, for the sizes small responses have.
_length_lines: dict[int, bytes] = {}
#: Largest size kept in :data:`_length_lines` (so at most this many entries).
MAX_CACHED_LENGTH = 16384
_TEXT_PLAIN = b"Content-Type: text/plain; charset=utf-8\r\n"
_INVALID_HEADER_RESPONSE = Response(500, body=b"500 Internal Server Error: invalid response header\n")
_INVALID_BODY_RESPONSE = Response(
    500, [("Content-Type", "text/plain; charset=utf-8")],
    b"500 Internal Server Error: invalid response body\n",
)


def _log_invalid(request: Request | None, what: str) -> None:
    """Name the request and handler whose response the engine had to replace with a 500
    (the handler's bug would otherwise only show as a mysterious 500 to the client)."""
    if request is None:
        _app_log.error("invalid response replaced by a 500: %s", what)
        return
    _app_log.error("invalid response to %s %s (handler %s) replaced by a 500: %s",
                   request.method, request.path,
                   request.handler or request.extensions.get("zzz.handler", "-"), what)


def check_field_name(name: str) -> str:
    """The lower-case form of a response field name, after checking it is a token
    (``ValueError`` otherwise); remembered in :data:`checked_field_names`, which
    callers test first (``Context.set_header`` checks at the handler's line)."""
    if not _FIELD_NAME.fullmatch(name):
        raise ValueError(f"invalid response header name {name!r}")
    lname = name.lower()
    if len(checked_field_names) < MAX_CHECKED_NAMES:
        checked_field_names[name] = lname
    return lname


def _check_value(value: str) -> None:
    """Refuse CR, LF and NUL, which would end the field early (tab and obs-text are fine)."""
    if _BAD_VALUE_CHARS.search(value):
        raise ValueError(f"CR, LF or NUL in response header value {value!r}")


class HTTPConnection:
    """Server-side HTTP/1.1 state for one connection. Not thread-safe: one owner at a time."""

    __slots__ = (
        "_body_mode",
        "_body_parts",
        "_body_size",
        "_client",
        "_content_length",
        "_ctype_seen",
        "_current",
        "_dead",
        "_events",
        "_expect",
        "_ext_method",
        "_fields",
        "_head_len",
        "_host_count",
        "_limits",
        "_line",
        "_line_done",
        "_line_len",
        "_line_size",
        "_next_size",
        "_parser",
        "_pending",
        "_pending_continue",
        "_remaining",
        "_replay",
        "_replaying",
        "_responses",
        "_scheme",
        "_size_line",
        "_state",
        "_stopped",
        "_stream_body",
        "_streaming",
        "_tail",
        "_te",
        "_trailers",
        "_upgraded",
        "_url",
        "_version",
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
        stream_body: StreamPredicate | None = None,
    ) -> None:
        self._limits = limits or Limits()
        #: Asked once per request head that announces a body: True streams it.
        self._stream_body = stream_body
        self._streaming = False  # the current message's body is being streamed
        self._client = client
        self._scheme = scheme
        self._parser: httptools.HttpRequestParser | None = httptools.HttpRequestParser(self)
        self._events: list[Event] = []
        self._state = _IDLE
        self._current: Request | None = None
        self._url = b""
        self._version: str | None = None  # the version by the request line's end (feed)
        self._line_size = 0  # and its size without CRLF
        self._fields = _NO_FIELDS
        self._body_parts = _NO_PARTS
        self._body_size = 0
        self._content_length: int | None = None
        self._te: list[bytes] | None = None
        self._host_count = 0
        self._ctype_seen = False
        self._expect: bytes | None = None
        self._head_len = 0  # head bytes of the current message fed so far
        self._line_done = False  # the request line's LF has been seen
        self._line = b""  # request-line bytes from earlier feeds (while not done)
        self._tail = b""  # last <= 3 bytes of the head fed so far
        self._remaining = 0  # Content-Length body (or chunk data + CRLF) bytes to come
        self._line_len = 0  # bytes of the chunk-size line (or trailer section) so far
        self._size_line = b""  # the chunk-size line arriving (checked whole, then fed)
        self._next_size = 0  # the size of the chunk whose size line just ended
        self._trailers = False  # the last chunk came: trailer field lines follow
        self._pending: bytes | None = None  # a refused method token still arriving
        self._ext_method: str | None = None  # the real method behind the placeholder
        self._replay: bytes | None = None  # a message to parse again with the placeholder
        self._replaying = False
        self._pending_continue: Request | None = None
        self._stopped = False  # a Connection: close request completed
        self._upgraded = False
        self._dead = False
        self._responses = 0
        self._body_mode = _BODY_NONE
        #: True while a request has started arriving but is not complete (read deadline).
        self.in_request = False
        #: Set by the backend during shutdown: the next response says ``Connection: close``.
        self.close_after_response = False
        #: Set by :meth:`serialize`: the connection must close after this response.
        self.must_close = False
        #: Bytes that followed an ``Upgrade`` request (the new protocol's first bytes).
        self.upgrade_data = b""

    # ------------------------------------------------------------------ receiving

    def compact(self) -> bool:
        """Drop the parser while the connection waits between requests; the next
        :meth:`feed` builds a new one (about half a microsecond). A parser with its
        callbacks holds about 850 bytes, most of what an idle keep-alive
        connection costs, and a fresh one is in the same state as one that has
        just finished a message. False (nothing dropped) in the middle of a
        message or once the connection is past HTTP."""
        if (self._parser is None or self._state != _IDLE or self._dead or self._stopped
                or self._events
                or self._pending is not None or self._replay is not None):
            return False
        self._parser = None
        return True

    def feed(self, data: bytes) -> list[Event]:
        """Parse ``data`` (``b""`` for EOF) and return the events it completed."""
        if self._dead:
            if self._upgraded:
                self.upgrade_data += data
            return []
        if not data:
            self._dead = True
            self.in_request = False
            return []
        if self._stopped:
            return []  # RFC 9112 §9.6: nothing after a "close" request is processed
        if self._pending is not None:
            self._continue_pending(data)
            if self._replay is not None:
                self._replay_extension_method()
            events, self._events = self._events, []
            return events
        n = len(data)
        pos = 0
        parser = self._parser
        if parser is None:  # dropped while idle (compact)
            parser = self._parser = httptools.HttpRequestParser(self)
        while pos < n:
            state = self._state
            if state <= _HEAD:
                if state == _IDLE:
                    if data[pos] in b"\r\n":  # empty lines before a request are ignored
                        while pos < n and data[pos] in b"\r\n":
                            pos += 1
                        if pos == n:
                            break
                    # A new message (done here rather than in llhttp's
                    # on_message_begin: one Python call less per request).
                    self._state = state = _HEAD
                    self.in_request = True
                    self._head_len = 0
                    self._line_done = False
                    self._url = b""
                    self._fields = []
                    self._body_size = 0
                    self._content_length = None
                    self._te = None
                    self._host_count = 0
                    self._ctype_seen = False
                    self._expect = None
                    end = data.find(_BLANK_LINE, pos)
                    stop = n if end < 0 else end + 4
                    # Where the request line ends, when it is whole in this read:
                    # its last bytes are the version (see on_headers_complete).
                    eol = data.find(b"\r\n", pos)
                    if eol > pos:
                        self._version = _VERSIONS.get(data[eol - 3 : eol])
                        self._line_size = eol - pos
                    else:
                        self._version = None
                else:
                    end = self._find_blank_line(data, pos)
                    stop = n if end < 0 else end
                budget = self._limits.max_header_size - self._head_len
                over = stop - pos > budget
                if over:
                    stop = pos + budget
            elif state in (_BODY_LENGTH, _CHUNK_DATA):
                stop = min(n, pos + self._remaining)
                self._remaining -= stop - pos
            elif state == _BODY_DIRECT:
                pos = self._direct_body(data, pos, n)
                # A fresh parser once the body is complete (never None here).
                parser = cast(httptools.HttpRequestParser, self._parser)
                if self._stopped:
                    break
                continue
            else:  # _BODY_CHUNKED: cut at every line end, so framing is counted exactly
                end = data.find(b"\n", pos)
                stop = n if end < 0 else end + 1
                budget = self._limits.max_header_size - self._line_len
                over = stop - pos > budget
                if over:
                    stop = pos + budget
            start = pos
            if stop > start:
                try:
                    piece = data[start:stop] if start or stop < n else data
                    if state == _BODY_CHUNKED and not self._trailers:
                        piece = self._size_line_piece(piece)
                    if piece:
                        parser.feed_data(piece)
                except httptools.HttpParserUpgrade as exc:
                    self._on_upgrade(data, start + int(exc.args[0]))
                    break
                except httptools.HttpParserCallbackError as exc:
                    cause = exc.__context__
                    if isinstance(cause, ProtocolError):
                        self._fail(cause)
                    else:
                        self._fail(ProtocolError(400, str(exc)))
                    break
                except ProtocolError as exc:  # from _size_line_piece
                    self._fail(exc)
                    break
                except httptools.HttpParserInvalidMethodError:
                    self._request_line_error(data, start, stop, method_error=True)
                    break
                except httptools.HttpParserError as exc:
                    if state == _HEAD and not self._line_done and _refused_method(exc):
                        self._request_line_error(data, start, stop, method_error=True)
                    elif "HTTP version" in str(exc) and state == _HEAD and not self._line_done:
                        self._request_line_error(data, start, stop, method_error=False)
                    else:
                        self._fail(ProtocolError(400, str(exc)))
                    break
            pos = stop
            if state == _HEAD:
                if self._state == _HEAD:  # the head goes on in the next feed
                    if over:
                        self._fail(self._head_too_large(data, start, stop))
                        break
                    self._head_progress(data, start, stop)
                elif self._pending_continue is not None:
                    # ExpectContinue only when the client is really waiting:
                    # any body byte in the same read means it did not wait.
                    if pos == n:
                        self._events.append(ExpectContinue(self._pending_continue))
                    self._pending_continue = None
            elif state == _BODY_CHUNKED:
                if self._state == _BODY_CHUNKED:
                    if over:
                        self._fail(ProtocolError(431, "chunk framing or trailer too large"))
                        break
                    self._chunk_line(data, start, stop)
            elif state == _CHUNK_DATA and not self._remaining:
                self._state = _BODY_CHUNKED
            if self._stopped or self._dead:
                break
        if self._replay is not None:  # an extension method to parse again (rare)
            self._replay_extension_method()
        events, self._events = self._events, []
        return events

    def _direct_body(self, data: bytes, pos: int, n: int) -> int:
        """Take the bytes of a large Content-Length body from ``data[pos:n]``; the
        position after them.

        llhttp would hand each piece to ``on_body`` as a new copy, and a 1 MiB
        upload would be copied once more than needed. The engine already knows
        how many body bytes remain (Content-Length, checked against the limits
        when the head completed), so it keeps the reads themselves: a read that
        is all body is kept without any copy. llhttp never sees the body, so the
        parser that still waits for it is replaced by a fresh one (the state it
        would reach after the message) when the body is complete.
        """
        stop = min(n, pos + self._remaining)
        self._remaining -= stop - pos
        piece = data[pos:stop] if pos or stop < n else data
        if type(piece) is not bytes:  # a caller's reusable buffer must not be kept
            piece = bytes(piece)
        self.on_body(piece)  # what llhttp's callback does with a piece, limits included
        if not self._remaining:
            self._parser = httptools.HttpRequestParser(self)
            self.on_message_complete()
        return stop

    def _find_blank_line(self, data: bytes, pos: int) -> int:
        """Index just past the first CRLFCRLF from ``pos`` (counting the last bytes
        of this head or chunked body fed earlier), or -1."""
        tail = self._tail
        if tail and (self._state != _HEAD or self._head_len):
            i = (tail + data[pos : pos + 3]).find(_BLANK_LINE)
            if i >= 0:
                return pos + i + 4 - len(tail)
        i = data.find(_BLANK_LINE, pos)
        return i + 4 if i >= 0 else -1

    def _head_progress(self, data: bytes, start: int, stop: int) -> None:
        """Account for head bytes fed without finishing the head."""
        if not self._head_len:
            self._tail = self._line = b""
        self._head_len += stop - start
        tail = self._tail + data[max(start, stop - 3) : stop]
        self._tail = tail[-3:]
        if not self._line_done:
            if data.find(b"\n", start, stop) >= 0:
                self._line_done = True
                self._line = b""
            else:
                self._line += data[start:stop]

    def _head_too_large(self, data: bytes, start: int, stop: int) -> ProtocolError:
        """414 when the request line alone is over the limit, else 431. The
        byte that crossed the limit counts, so any split gives the same answer."""
        if self._line_done or data.find(b"\n", start, stop + 1) >= 0:
            return ProtocolError(431, "request header fields too large")
        return ProtocolError(414, "request line too long")

    def _chunk_line(self, data: bytes, start: int, stop: int) -> None:
        """Account for framing bytes accepted (``data[start:stop]``, at most one
        line). A chunk-size line (extensions included) and the trailer section
        are each bounded by ``max_header_size``, counted on their own bytes, so
        the answer does not depend on read sizes. When a size line ends, its
        size says how many data bytes to cut next."""
        self._line_len += stop - start
        if self._trailers:
            return  # the whole trailer section counts; llhttp ends the message
        if data[stop - 1] != 0x0A:
            return  # the line goes on in the next piece
        size = self._next_size
        self._line_len = 0
        if size:
            self._state = _CHUNK_DATA
            self._remaining = size + 2  # the data and its CRLF
        else:
            self._trailers = True

    def _request_line_error(self, data: bytes, start: int, stop: int, method_error: bool) -> None:
        """llhttp refused the request line; classify it on the line's own bytes."""
        if method_error:
            # Everything from the message start on: an extension method replays it.
            line = self._line + data[start:]
            self._line = b""
            self._pending = b""
            self._continue_pending(line)
        else:
            line = self._line + data[start:stop]
            self._line = b""
            self._fail(_classify_version(line))

    def _continue_pending(self, data: bytes) -> None:
        """Collect the rest of a method token llhttp refused. Bounded: it is decided
        within :data:`MAX_METHOD_LENGTH` + 1 bytes, and only all-token bytes wait."""
        line = (self._pending or b"") + data
        error = _classify_method(line[: MAX_METHOD_LENGTH + 1])
        if error is None:
            self._pending = line
            self.in_request = True
            return
        self._pending = None
        if error.status == 501:
            self._replay = line  # by _replay_extension_method, outside any except block
        else:
            self._fail(error)

    def _replay_extension_method(self) -> None:
        """A well-formed method token llhttp does not know (``FROB``, ``get``): the
        message is parsed again by a fresh parser with :data:`_PLACEHOLDER_METHOD`
        in its place, and :meth:`on_headers_complete` restores the real name, so
        the application decides (a route, else 501 or 405). llhttp gives request
        methods no meaning beyond CONNECT, so the placeholder changes nothing else;
        the head limit counts the placeholder's length instead of the token's.

        Never called inside an ``except`` block: Python would then chain the
        handled exception over the ProtocolError httptools attaches to a callback
        error, and the status would be lost. Replays do not nest: the feed of a
        replay may meet the next extension method (pipelining), which this loop
        then replays, so any number of them in one read costs no recursion."""
        if self._replaying:
            return
        self._replaying = True
        try:
            while self._replay is not None:
                data = self._replay
                self._replay = None
                end = data.index(b" ")
                self._ext_method = data[:end].decode("ascii")
                self._parser = httptools.HttpRequestParser(self)
                self._state = _IDLE
                events = self.feed(_PLACEHOLDER_METHOD + data[end:])  # returns self._events too
                self._events.extend(events)
        finally:
            self._replaying = False

    def _size_line_piece(self, piece: bytes) -> bytes:
        """What llhttp gets of a chunk-size line: nothing while it arrives, then the
        bare ``<hex>\\r\\n`` once it is whole and valid — llhttp refuses valid chunk
        extensions (see :mod:`zzz.http.chunked`), so the engine checks the line
        against RFC 9112's grammar itself and drops the extensions."""
        line = self._size_line + piece
        if line[-1] != 0x0A:
            self._size_line = line  # bounded by max_header_size (the line budget)
            return b""
        self._size_line = b""
        try:
            self._next_size, bare = parse_size_line(line)
        except ValueError as exc:
            raise ProtocolError(400, str(exc)) from None
        return bare

    def _fail(self, error: ProtocolError) -> None:
        self._dead = True
        self.in_request = False
        self._pending_continue = None
        self._events.append(error)

    def _on_upgrade(self, data: bytes, offset: int) -> None:
        request = self._current_or_last()
        if request is None:  # pragma: no cover - llhttp completes the head first
            self._fail(ProtocolError(400, "invalid upgrade"))
            return
        request.upgrade = True
        self.upgrade_data = data[offset:]
        # Nothing after an upgrade request is HTTP any more: the backend either
        # switches protocol or answers and closes.
        self._upgraded = True
        self._dead = True
        self.in_request = False

    def _current_or_last(self) -> Request | None:
        for event in reversed(self._events):
            if isinstance(event, Request):
                return event
        return None

    # httptools callbacks (names fixed by httptools) -------------------------------

    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        if self._state != _HEAD:
            _check_trailer(name)  # chunked trailer fields: checked, then ignored
            return
        if value and value[-1] in (0x20, 0x09):  # OWS after the value
            value = value.rstrip(b" \t")
        size = len(name)
        if size == 4 or size == 6 or size == 14 or size == 17:
            lname = name.lower()
            if lname == b"host":
                self._host_count += 1
            elif lname == b"content-length":
                # llhttp has already refused duplicates, signs and non-digits.
                self._content_length = int(value)
            elif lname == b"transfer-encoding":
                if self._te is None:
                    self._te = [value]
                else:
                    self._te.append(value)
            elif lname == b"expect":
                self._expect = value
        elif size == 12 and name.lower() == b"content-type":
            # A second Content-Type (RFC 9110 §8.3 allows one) makes the content's
            # meaning ambiguous, like a second Host: 400.
            if self._ctype_seen:
                raise ProtocolError(400, "more than one Content-Type header")
            self._ctype_seen = True
        self._fields.append((name, value))

    def on_headers_complete(self) -> None:
        parser = self._parser
        assert parser is not None  # it is the one calling
        method = parser.get_method()
        # The version from the request line's last bytes: cheaper than llhttp's
        # get_http_version(), which formats a new string per request. Only when the
        # line is ``method SP target SP HTTP/x.y`` by its size (llhttp also takes a
        # line without a version, ``GET /HTTP/1.1``, as HTTP/0.9).
        version = self._version
        if version is None or len(method) + len(self._url) + 10 != self._line_size:
            version = parser.get_http_version()
            if version != "1.1" and version != "1.0":
                raise ProtocolError(505, "HTTP version not supported")
        ext_method = self._ext_method
        if ext_method is not None:
            self._ext_method = None
            method = ext_method.encode("ascii")
        if method == b"CONNECT":
            raise ProtocolError(501, "CONNECT is not supported")
        if self._host_count != 1 and (version == "1.1" or self._host_count > 1):
            raise ProtocolError(400, "exactly one Host header is required")
        te = self._te
        if te:
            if version == "1.0":
                raise ProtocolError(400, "Transfer-Encoding in an HTTP/1.0 request")
            if len(te) != 1 or te[0].lower() != b"chunked":  # one field "chunked" is the norm
                codings = b",".join(te).lower().split(b",")
                if codings[-1].strip() != b"chunked":
                    # RFC 9112 §6.3: the body length cannot be determined.
                    raise ProtocolError(400, "chunked is not the final transfer coding")
                # A coding before chunked (gzip, chunked) we would have to undo.
                raise ProtocolError(501, "transfer coding not implemented")
        length = self._content_length
        stream_body = self._stream_body
        if stream_body is None and length is not None and length > self._limits.max_body_size:
            raise ProtocolError(413, "request body too large")
        raw = self._url
        self._url = b""
        fields = self._fields
        self._fields = _NO_FIELDS
        path, _, query = raw.partition(b"?")
        if path[:1] != b"/":
            path = self._other_target_form(path, method)
        if _HASH in raw:  # an int: bytes.__contains__ with a bytes needle is far slower
            raise ProtocolError(400, "fragment in request target")
        raw_path = path.decode("latin-1")
        decoded = raw_path
        if "%" in raw_path:
            decoded = unquote(raw_path)
            if "\x00" in decoded:
                raise ProtocolError(400, "NUL in request path")
        name = _METHOD_NAMES.get(method)
        if name is None:
            name = method.decode("ascii")
        request = Request(
            name,
            raw_path,
            query.decode("latin-1") if query else "",
            Headers(None, fields),
            version,
            decoded,
            b"",
            parser.should_keep_alive(),
            self._client,
            self._scheme,
        )
        self._current = request
        if te:
            self._state = _BODY_CHUNKED
            self._line_len = 0
            self._size_line = b""
            self._trailers = False
        elif length:
            self._state = _BODY_LENGTH if length < DIRECT_BODY_MIN else _BODY_DIRECT
            self._remaining = length
        else:
            return
        self._body_parts = []
        expect = self._expect
        continue_wanted = False
        if expect is not None and version == "1.1":
            if expect.lower() != b"100-continue":
                raise ProtocolError(417, "unsupported expectation")
            request.expect_continue = continue_wanted = True
        if stream_body is not None and stream_body(request):
            limit = self._limits.max_stream_body_size
            if length is not None and limit and length > limit:
                raise ProtocolError(413, "request body too large")
            # Streamed: the request goes out now, its body follows as Data events.
            # A waiting client gets 100 Continue when the application first reads.
            self._streaming = True
            request.streamed = True
            self._events.append(request)
            return
        if length is not None and length > self._limits.max_body_size:
            raise ProtocolError(413, "request body too large")
        if continue_wanted:
            self._pending_continue = request

    @staticmethod
    def _other_target_form(path: bytes, method: bytes) -> bytes:
        """The routing path of an asterisk- or absolute-form target (RFC 9112 §3.2)."""
        if path == b"*" and method == b"OPTIONS":
            return path
        scheme = path[:8].lower()
        if scheme.startswith((b"http://", b"https://")):
            after = path.split(b"//", 1)[1]
            slash = after.find(b"/")
            if slash >= 0:
                return after[slash:]
            if after:
                return b"/"
        raise ProtocolError(400, "invalid request target")

    def on_body(self, body: bytes) -> None:
        self._body_size += len(body)
        if self._streaming:
            limit = self._limits.max_stream_body_size
            if limit and self._body_size > limit:
                # Deliver exactly up to the limit, so the outcome does not depend
                # on how the reads cut the body.
                fits = limit - (self._body_size - len(body))
                if fits > 0:
                    self._events.append(Data(body[:fits]))
                raise ProtocolError(413, "request body too large")
            self._events.append(Data(body))
            return
        self._pending_continue = None
        if self._body_size > self._limits.max_body_size:
            raise ProtocolError(413, "request body too large")
        self._body_parts.append(body)

    def on_message_complete(self) -> None:
        request = self._current
        if request is None:  # pragma: no cover - llhttp always reports headers first
            return
        if self._streaming:
            self._streaming = False
            self._current = None
            self._state = _IDLE
            self.in_request = False
            if not request.keep_alive:
                self._stopped = True
            self._events.append(END_OF_MESSAGE)
            return
        if self._state != _HEAD:
            parts = self._body_parts
            if parts:
                request.body = parts[0] if len(parts) == 1 else b"".join(parts)
            self._body_parts = _NO_PARTS
        self._current = None
        self._state = _IDLE
        self.in_request = False
        if not request.keep_alive:
            self._stopped = True
        self._events.append(request)

    # ------------------------------------------------------------------ sending

    def serialize(self, response: Response, request: Request | None) -> bytes:
        """The bytes of ``response`` to ``request``: the whole message, or only the
        head when ``response.stream`` is set (then :meth:`chunk` and :meth:`end`).

        A response whose header fields cannot be sent safely (a name that is not
        a token, CR/LF/NUL in a value, a character outside Latin-1) becomes a 500:
        the handler's bug must not become a response-splitting hole. So does a
        body that is not bytes: the backend's write path must never raise.
        """
        self._responses += 1
        upgrade = response.upgrade is not None
        close = (
            request is None
            or not request.keep_alive
            or self.close_after_response
            or self._responses >= self._limits.max_requests
            or (request.upgrade and not upgrade)
            # Answered before its streamed body ended: the rest is never read.
            or self._streaming
        )
        parts = [b"", _server_and_date()]
        try:
            for field in response.headers:
                line = _field_lines.get(field) if type(field) is tuple else None
                if line is not None:
                    parts.append(line)
                    continue
                name, value = field
                lname = checked_field_names.get(name) or check_field_name(name)
                if lname in _ENGINE_HEADERS:
                    continue
                if lname == "connection":
                    if "close" in value.lower():
                        close = True
                    if not upgrade:
                        continue
                if not value.isprintable():
                    _check_value(value)
                line = f"{name}: {value}\r\n".encode("latin-1")
                if (lname != "connection" and type(field) is tuple
                        and lname not in _VARYING_FIELDS):
                    if len(_field_lines) >= MAX_FIELD_LINES:
                        _field_lines.clear()
                    _field_lines[field] = line
                parts.append(line)
        except (ValueError, UnicodeEncodeError) as exc:
            _log_invalid(request, str(exc))
            response = _INVALID_HEADER_RESPONSE
            del parts[2:]
            parts.append(_TEXT_PLAIN)
            close = True
            upgrade = False
        status = response.status
        parts[0] = STATUS_LINES.get(status) or status_line(status)
        head_only = request is not None and request.method == "HEAD"
        body = b""
        if status in NO_BODY_STATUSES:
            self._body_mode = _BODY_NONE
        elif response.file is not None:  # sent by the backend (zzz/backends/_sendfile.py)
            self._body_mode = _BODY_NONE
            parts.append(b"Content-Length: %d\r\n" % response.file.count)
        elif response.stream is not None:
            if request is not None and request.http_version == "1.1":
                parts.append(b"Transfer-Encoding: chunked\r\n")
                self._body_mode = _BODY_NONE if head_only else _BODY_CHUNKED_OUT
            elif head_only:
                self._body_mode = _BODY_NONE
            else:
                close = True  # HTTP/1.0: the body ends when the connection does
                self._body_mode = _BODY_RAW
        else:
            self._body_mode = _BODY_NONE
            body = response.body
            if type(body) is not bytes:
                if not isinstance(body, bytearray | memoryview):
                    # An int, None, a str or a dict from an app that bypassed the
                    # Context's checks: a logged 500, never a dropped connection.
                    _log_invalid(request, f"response body is a {type(body).__name__}, "
                                 "not bytes")
                    self._responses -= 1
                    return self.serialize(_INVALID_BODY_RESPONSE, request)
                body = bytes(body)
            size = len(body)
            length_line = _length_lines.get(size)
            if length_line is None:
                length_line = b"Content-Length: %d\r\n" % size
                if size <= MAX_CACHED_LENGTH:
                    _length_lines[size] = length_line
            parts.append(length_line)
            if head_only:
                body = b""
        if upgrade:
            parts.append(b"\r\n")
        elif close:
            parts.append(b"Connection: close\r\n\r\n")
        elif request is not None and request.http_version == "1.0":
            parts.append(b"Connection: keep-alive\r\n\r\n")
        else:
            parts.append(b"\r\n")
        self.must_close = close
        if body:
            parts.append(body)
        try:
            return b"".join(parts)
        except TypeError:
            # A body that is not bytes-like (``Response(body="text")`` via
            # set_response): a 500, like a bad header, rather than an exception
            # in the backend's write path. Caught here, it costs nothing per request.
            if response is _INVALID_BODY_RESPONSE:  # pragma: no cover - cannot recurse
                raise
            self._responses -= 1
            return self.serialize(_INVALID_BODY_RESPONSE, request)

    def chunk(self, data: bytes) -> bytes:
        """One piece of a streamed body, framed for the wire (empty input → ``b""``;
        nothing at all for a response that has no body: HEAD, 1xx, 204, 304)."""
        if not data or self._body_mode == _BODY_NONE:
            return b""
        if self._body_mode == _BODY_CHUNKED_OUT:
            return b"%x\r\n%b\r\n" % (len(data), data)
        return data

    def frame(self, data: bytes) -> tuple[bytes, ...]:
        """:meth:`chunk` without copying a large ``data``: the pieces to write in
        order, for ``writelines`` / ``sendmsg`` (the kernel gathers them). A piece
        below :data:`FRAME_COPY_BELOW` is framed into one ``bytes`` as before:
        copying it costs less than a vector write of three."""
        if len(data) < FRAME_COPY_BELOW or self._body_mode != _BODY_CHUNKED_OUT:
            framed = self.chunk(data)
            return (framed,) if framed else ()
        return (b"%x\r\n" % len(data), data, b"\r\n")

    def end(self) -> bytes:
        """The end of a streamed body."""
        return LAST_CHUNK if self._body_mode == _BODY_CHUNKED_OUT else b""

    def error_response(self, error: ProtocolError) -> bytes:
        """A short plain-text answer to a refused request; the connection then closes."""
        self.must_close = True
        self._dead = True
        body = f"{error.status} {reason(error.status)}: {error.detail}\n".encode("latin-1")
        return b"".join(
            (
                status_line(error.status),
                _server_and_date(),
                b"Content-Type: text/plain; charset=utf-8\r\n",
                b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(body),
                body,
            )
        )

    @property
    def responses_sent(self) -> int:
        return self._responses

    @property
    def input_abandoned(self) -> bool:
        """The connection closes while the client may still be sending what will never
        be read: a request still arriving (a refused 100-continue body, a request cut
        off by the last allowed response) or bytes the parser refused or stopped at.
        The backend then closes lingering: closing with unread input resets the
        connection, which can destroy the answer before the client reads it."""
        return self.must_close and (self.in_request or self._dead)

    @property
    def is_dead(self) -> bool:
        """True after EOF, a protocol error or an upgrade: no more requests will come."""
        return self._dead
