"""Context: what a handler or middleware sees of one request, and how it answers.

One :class:`Context` is built per request by the router, so it is kept cheap:
``__slots__``, and everything a typical handler does not touch (query, cookies,
parsed bodies, ``assigns``, response headers) is created on first use only.

A context collects the response in plain attributes (status, content type,
headers, body or stream) and the router turns them into one
:class:`~zzz.http.response.Response` at the end. A handler that sets nothing
answers ``200`` with an empty body (``Content-Length: 0``): "it ran and had
nothing to say" is a success, and a 404/500 there would hide the route.

Mistakes surface where they are made. The response helpers check their
arguments at the call (a ``dict`` passed to :meth:`Context.respond` is a
``TypeError`` whose traceback points at the handler's line); a ready-made
:class:`~zzz.http.response.Response`, set with :meth:`Context.set_response` or
returned by a handler (:meth:`Context.apply_return`), is checked when the
context takes it; a streamed item that is neither ``bytes`` nor ``str`` ends the
stream with a ``TypeError`` naming the method, path and handler. So nothing the
context hands the router can make a backend fail: a body is always ``bytes``
and every header field has been checked once.

``ctx.server`` is the :class:`~zzz.server.Server` answering the request (its
timers, ``shutdown()``, ``config`` and bound ``address``); ``ctx.state`` is the
application's shared ``app.state`` (:mod:`zzz.lifecycle`).
"""

from __future__ import annotations

import json as _json
import os
import re
from collections.abc import (
    AsyncIterable,
    AsyncIterator,
    Callable,
    Coroutine,
    Iterable,
    Iterator,
    Mapping,
)
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import parse_qsl, quote

from zzz.errors import HTTPError
from zzz.http.connection import check_field_name, checked_field_names
from zzz.http.headers import Headers
from zzz.http.request import Request
from zzz.http.response import Response, Stream
from zzz.lifecycle import describe

if TYPE_CHECKING:
    from zzz.body import RequestBody
    from zzz.forms import FormData, UploadFile
    from zzz.lifecycle import State
    from zzz.routing import Route, Router
    from zzz.server import Server

T = TypeVar("T")

#: Content types the response helpers set.
TEXT_PLAIN = "text/plain; charset=utf-8"
TEXT_HTML = "text/html; charset=utf-8"
APPLICATION_JSON = "application/json"
OCTET_STREAM = "application/octet-stream"
FORM_URLENCODED = "application/x-www-form-urlencoded"
MULTIPART_FORM = "multipart/form-data"

#: Most fields parsed from one query string or form body; far beyond any real
#: form, and it bounds the work a hostile body can cause.
MAX_FORM_FIELDS = 10_000
#: Lowest and highest status a response may carry (RFC 9110 §15).
MIN_STATUS = 100
MAX_STATUS = 599
#: Status codes ``redirect`` accepts.
REDIRECT_STATUSES = frozenset({300, 301, 302, 303, 307, 308})
#: ``SameSite`` values ``set_cookie`` accepts (``None`` leaves the attribute out).
SAME_SITE_VALUES = frozenset({"Lax", "Strict", "None"})

_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_UNSAFE_VALUE = re.compile(r"[\r\n\x00]")
# RFC 6265 §4.1.1 cookie-octet: visible ASCII except DQUOTE , ; \ and space.
_COOKIE_VALUE = re.compile(r"[\x21\x23-\x2b\x2d-\x3a\x3c-\x5b\x5d-\x7e]*")
_COOKIE_ATTR_UNSAFE = re.compile(r"[;\x00-\x1f\x7f]")
# Characters kept as they are when a redirect target with non-ASCII text is quoted.
_URL_SAFE = ":/?#[]@!$&'()*+,;=%~"

#: Shared by every context without path parameters, so it must stay read-only.
_NO_PARAMS: Mapping[str, str] = MappingProxyType({})


class Query:
    """Parsed query string (or form body): a read-only multi-dict of ``str``."""

    __slots__ = ("_index", "_pairs")

    def __init__(self, pairs: list[tuple[str, str]]) -> None:
        self._pairs = pairs
        self._index: dict[str, list[str]] | None = None

    @classmethod
    def parse(cls, text: str) -> Query:
        """Parse ``a=1&b=2`` text; too many fields is the client's error (400)."""
        if not text:
            return cls([])
        try:
            pairs = parse_qsl(text, keep_blank_values=True, max_num_fields=MAX_FORM_FIELDS)
        except ValueError:
            raise HTTPError(400, "too many fields") from None
        return cls(pairs)

    def _lookup(self) -> dict[str, list[str]]:
        index = self._index
        if index is None:
            index = {}
            for name, value in self._pairs:
                index.setdefault(name, []).append(value)
            self._index = index
        return index

    def get(self, name: str, default: str | None = None) -> str | None:
        """The first value of ``name``, or ``default``."""
        values = self._lookup().get(name)
        return values[0] if values else default

    def get_all(self, name: str) -> list[str]:
        """Every value of ``name`` in order (empty when absent)."""
        return list(self._lookup().get(name, ()))

    def items(self) -> list[tuple[str, str]]:
        return list(self._pairs)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name in self._lookup()

    def __len__(self) -> int:
        return len(self._pairs)

    def __repr__(self) -> str:
        return f"Query({self._pairs!r})"


def _as_utf8_text(raw: str) -> str:
    """Undo the engine's Latin-1 decoding of raw URL bytes when they were UTF-8."""
    if raw.isascii():
        return raw
    return raw.encode("latin-1").decode("utf-8", "replace")


def _check_status(status: int) -> None:
    if status.__class__ is not int or not MIN_STATUS <= status <= MAX_STATUS:
        raise ValueError(f"status must be an int in {MIN_STATUS}..{MAX_STATUS}, got {status!r}")


def check_header(name: str, value: str) -> None:
    """Refuse a header that would corrupt the response (header injection) or not encode."""
    if name not in checked_field_names:  # the engine's cache: one check per name
        check_field_name(name)
    if value.isascii() and value.isprintable():
        return  # printable ASCII: no CR, LF or NUL, and Latin-1 (the common case, no regex)
    if _UNSAFE_VALUE.search(value):
        raise ValueError(f"header {name}: value contains CR, LF or NUL")
    if not value.isascii():
        try:
            value.encode("latin-1")
        except UnicodeEncodeError:
            raise ValueError(
                f"header {name}: value must be Latin-1 text (percent-encode other characters)"
            ) from None


def _as_body(body: object, what: str) -> bytes:
    """``body`` as bytes (``str`` as UTF-8, bytes-like copied); ``TypeError`` otherwise."""
    if body.__class__ is bytes:
        return body
    if isinstance(body, str):
        return body.encode("utf-8")
    if isinstance(body, bytes | bytearray | memoryview):
        return bytes(body)
    hint = " (use ctx.json() for JSON)" if isinstance(body, dict | list) else ""
    raise TypeError(f"{what} must be bytes or str, got {type(body).__name__}{hint}")


def _bad_chunk(chunk: object, ctx: Context) -> TypeError:
    request = ctx.request
    route = ctx.route
    return TypeError(
        f"{request.method} {request.path}: the stream of handler "
        f"{route.label if route is not None else '-'} yielded a {type(chunk).__name__}, "
        "expected bytes or str"
    )


def _encode_chunks(chunks: Iterable[bytes | str], ctx: Context) -> Iterator[bytes]:
    # When the backend closes this wrapper (client gone, HEAD), close what it
    # wraps too: a ``for`` loop left early does not, and the handler's generator
    # must run its ``finally`` now, not when the garbage collector gets to it.
    try:
        for chunk in chunks:
            if chunk.__class__ is bytes:
                yield chunk
            elif isinstance(chunk, str):
                yield chunk.encode("utf-8")
            elif isinstance(chunk, bytearray | memoryview):
                yield bytes(chunk)
            else:
                raise _bad_chunk(chunk, ctx)
    finally:
        close = getattr(chunks, "close", None)
        if close is not None:
            close()


async def _aencode_chunks(
    chunks: AsyncIterable[bytes | str], ctx: Context
) -> AsyncIterator[bytes]:
    # As _encode_chunks: an ``async for`` left early does not ``aclose`` its source.
    try:
        async for chunk in chunks:
            if chunk.__class__ is bytes:
                yield chunk
            elif isinstance(chunk, str):
                yield chunk.encode("utf-8")
            elif isinstance(chunk, bytearray | memoryview):
                yield bytes(chunk)
            else:
                raise _bad_chunk(chunk, ctx)
    finally:
        aclose = getattr(chunks, "aclose", None)
        if aclose is not None:
            await aclose()


def _checked_stream(chunks: object, ctx: Context) -> Stream:
    """``chunks`` wrapped so every item is checked (and ``str`` encoded) as it is sent."""
    if isinstance(chunks, AsyncIterable):
        return _aencode_chunks(chunks, ctx)
    if isinstance(chunks, Iterable) and not isinstance(chunks, str | bytes):
        return _encode_chunks(chunks, ctx)
    raise TypeError(f"a response stream must be an iterable or async iterable, got {chunks!r}")


def _check_fields(headers: object) -> list[tuple[str, str]]:
    """A response's header fields as a list of ``(str, str)``, each checked."""
    if not isinstance(headers, list | tuple):
        raise TypeError(f"response headers must be a list of (name, value), got {headers!r}")
    fields: list[tuple[str, str]] = []
    for field in headers:
        if not (isinstance(field, tuple | list) and len(field) == 2
                and isinstance(field[0], str) and isinstance(field[1], str)):
            raise TypeError(f"a response header must be a (str, str) pair, got {field!r}")
        check_header(field[0], field[1])
        fields.append((field[0], field[1]))
    return fields


class _Unset:
    """Marker for "not parsed yet" where ``None`` is a valid parsed value (JSON null)."""

    __slots__ = ()


_UNSET: Any = _Unset()


class _Lazy:
    """What a context parses or creates on demand; one object so the context stays small."""

    __slots__ = ("cookies", "form", "json", "query")

    def __init__(self) -> None:
        self.query: Query | None = None
        self.form: FormData | None = None
        self.json: Any = _UNSET
        self.cookies: dict[str, str] | None = None


class Context:
    """One request in flight: request accessors, response helpers, ``assigns`` and ``next()``.

    Not thread-safe (one request, one owner), and only valid until the router
    has built the response.
    """

    __slots__ = (
        "_assigns",
        "_body",
        "_chain",
        "_content_type",
        "_headers",
        "_index",
        "_lazy",
        "_response",
        "_status",
        "_stream",
        "_unchecked",
        "app",
        "params",
        "request",
        "route",
        "server",
    )

    def __init__(
        self,
        request: Request,
        server: Server,
        chain: tuple[Callable[[Context], Any], ...] = (),
        params: dict[str, str] | None = None,
        route: Route | None = None,
        app: Router | None = None,
    ) -> None:
        self.request = request
        #: The server answering this request: timers (``add_timer``), ``shutdown()``,
        #: ``config``, the bound ``address``.
        self.server = server
        #: The application (router) that matched the request.
        self.app = app
        #: Path parameters of the matched route (``:name`` and ``*name`` segments).
        self.params: Mapping[str, str] = _NO_PARAMS if params is None else params
        #: The matched route, or ``None`` for a 404/405 answered by the router.
        self.route = route
        self._chain = chain
        self._index = 1  # the router calls chain[0] itself
        self._status = 200
        self._content_type: str | None = None
        self._headers: list[tuple[str, str]] | None = None
        self._body = b""
        self._stream: Stream | None = None
        self._response: Response | None = None
        self._lazy: _Lazy | None = None
        self._assigns: dict[str, Any] | None = None
        #: ``response_headers`` was handed out: check its fields when building.
        self._unchecked = False

    def _parsed(self) -> _Lazy:
        lazy = self._lazy
        if lazy is None:
            lazy = self._lazy = _Lazy()
        return lazy

    # ------------------------------------------------------------------ request

    @property
    def method(self) -> str:
        return self.request.method

    @property
    def path(self) -> str:
        """The percent-decoded path the router matched."""
        return self.request.path

    @property
    def query_string(self) -> str:
        """The raw query string (without ``?``), exactly as sent."""
        return self.request.query_string

    @property
    def headers(self) -> Headers:
        """Request header fields (case-insensitive lookups)."""
        return self.request.headers

    @property
    def client(self) -> tuple[str, int] | None:
        """The client ``(host, port)``, when known: the peer, or with ``proxy_headers`` the
        client a trusted proxy reports (port 0), or the PROXY protocol's source."""
        return self.request.client

    @property
    def scheme(self) -> str:
        """``http`` or ``https``: as connected, or as a trusted proxy reports (``proxy_headers``)."""
        return self.request.scheme

    @property
    def tls_peer_cert(self) -> dict[str, Any] | None:
        """The client certificate verified in the TLS handshake (mutual TLS), or ``None``.

        The dict of ``ssl.SSLSocket.getpeercert()``: ``subject``, ``issuer``,
        ``notAfter``, ``serialNumber``, ``subjectAltName``, ...
        """
        cert = self.request.extensions.get("tls_peer_cert")
        return cert if cert else None

    @property
    def tls_peer_subject(self) -> dict[str, str] | None:
        """Subject of the verified client certificate as ``{attribute: value}``, or ``None``.

        E.g. ``{"commonName": "alice", "organizationName": "Example"}``. An
        attribute present more than once keeps its last (most specific) value,
        as OpenSSL does for the common name; the full sequence is in
        ``tls_peer_cert["subject"]``.
        """
        cert = self.tls_peer_cert
        if cert is None:
            return None
        return {key: value for rdn in cert.get("subject", ()) for key, value in rdn}

    @property
    def query(self) -> Query:
        """Query parameters, parsed on first use (blank values kept)."""
        lazy = self._parsed()
        query = lazy.query
        if query is None:
            query = lazy.query = Query.parse(_as_utf8_text(self.request.query_string))
        return query

    @property
    def state(self) -> State:
        """The application's shared ``app.state`` (set in start-up hooks or the lifespan)."""
        app = self.app if self.app is not None else getattr(self.server, "app", None)
        state = getattr(app, "state", None)
        if state is None:
            raise RuntimeError("ctx.state: this context belongs to no application with state")
        result: State = state
        return result

    @property
    def assigns(self) -> dict[str, Any]:
        """Per-request values middleware hands to later middleware and the handler."""
        assigns = self._assigns
        if assigns is None:
            assigns = self._assigns = {}
        return assigns

    def path_param(self, name: str) -> str:
        """The value of path parameter ``name``; ``KeyError`` names the route when absent."""
        try:
            return self.params[name]
        except KeyError:
            pattern = self.route.pattern if self.route is not None else "(no route)"
            raise KeyError(f"route {pattern} has no path parameter {name!r}") from None

    def param(self, name: str) -> str | None:
        """``name`` from the path, else a body field (JSON object or form), else the query.

        A body that is not a JSON object or form, or does not parse, is skipped
        rather than refused: use :meth:`json_body` to insist on a valid body.
        JSON values that are not strings come back as JSON text (``42``, ``true``).
        """
        value = self.params.get(name)
        if value is not None:
            return value
        if self.request.body:
            field = self._body_field(name)
            if field is not None:
                return field
        return self.query.get(name)

    def _body_field(self, name: str) -> str | None:
        content_type = self._request_content_type()
        if content_type == APPLICATION_JSON or content_type.endswith("+json"):
            try:
                data = self.json_body()
            except HTTPError:
                return None
            if isinstance(data, dict) and name in data:
                value = data[name]
                return value if isinstance(value, str) else _json.dumps(value)
            return None
        if content_type in (FORM_URLENCODED, MULTIPART_FORM):
            try:
                return self.form_value(name)
            except HTTPError:
                return None
        return None

    def _request_content_type(self) -> str:
        value = self.request.headers.get("content-type")
        if value is None:
            return ""
        return value.partition(";")[0].strip().lower()

    def raw_body(self) -> bytes:
        """The request body as received (already complete when the handler runs).

        A route registered with ``stream=True`` does not buffer its body: read it
        with :meth:`body_stream` instead (asking for ``raw_body`` there is a bug
        this raises on, rather than silently answering with an empty body).
        """
        if self.request.streamed:
            raise RuntimeError(
                f"{self.request.method} {self.request.path}: the route streams its body; "
                "read it with ctx.body_stream() (for/async for), not ctx.raw_body()")
        return self.request.body

    def body_stream(self) -> RequestBody:
        """The body of a ``stream=True`` route as it arrives: ``async for piece in
        ctx.body_stream()`` in an ``async def`` handler, ``for piece in ...`` in a
        plain one (the event-loop backend runs such handlers on its blocking pool).

        Reading is the flow control: while the handler does not read, the server
        stops reading the socket, so an upload never piles up in memory. A client
        that sent ``Expect: 100-continue`` gets ``100 Continue`` on the first read.
        The stream is bounded by ``max_stream_body_size``; crossing it (or the
        client vanishing) raises :class:`zzz.body.BodyError` from the read.
        On a route that does not stream, the buffered body comes as one piece.
        """
        body = self.request.body_stream
        if body is None:
            from zzz.body import RequestBody  # a buffered body as a one-piece stream

            body = RequestBody()
            body.push(self.request.body)
            body.finish()
            self.request.body_stream = body
        return body  # type: ignore[no-any-return]

    def json_body(self) -> Any:
        """The body parsed as JSON; an invalid body is the client's error (400)."""
        lazy = self._parsed()
        value = lazy.json
        if value is _UNSET:
            try:
                value = _json.loads(self.request.body)
            except (ValueError, RecursionError):
                raise HTTPError(400, "invalid JSON body") from None
            lazy.json = value
        return value

    def form(self) -> FormData:
        """The body parsed as a form (urlencoded or multipart), once; other types: empty.

        Uploaded files above ``zzz.forms.SPOOL_MAX_SIZE`` wait in temporary files
        on disk. A malformed body is the client's error (400, saying what is wrong).
        """
        lazy = self._parsed()
        form = lazy.form
        if form is None:
            from zzz.forms import parse_form

            form = lazy.form = parse_form(self.request.headers.get("content-type"),
                                          (self.request.body,))
        return form

    def form_value(self, name: str) -> str | None:
        """First value of field ``name`` in a urlencoded or multipart form body."""
        return self.form().get(name)

    def file(self, name: str) -> UploadFile | None:
        """The first file uploaded as ``name`` in a ``multipart/form-data`` body."""
        return self.form().file(name)

    def cookie(self, name: str) -> str | None:
        """The value of cookie ``name`` from the ``Cookie`` header(s), unquoted."""
        lazy = self._parsed()
        cookies = lazy.cookies
        if cookies is None:
            cookies = {}
            for header in self.request.headers.get_all("cookie"):
                for part in header.split(";"):
                    key, sep, value = part.partition("=")
                    key = key.strip()
                    if not sep or not key or key in cookies:
                        continue
                    value = value.strip()
                    if len(value) >= 2 and value[0] == value[-1] == '"':
                        value = value[1:-1]
                    cookies[key] = value
            lazy.cookies = cookies
        return cookies.get(name)

    # ------------------------------------------------------------------ response

    @property
    def status(self) -> int:
        """The status the response will carry (200 until a helper sets one)."""
        return self._response.status if self._response is not None else self._status

    @status.setter
    def status(self, status: int) -> None:
        """Change only the status (e.g. ``204`` with headers and no body)."""
        _check_status(status)
        if self._response is not None:
            self._response.status = status
        else:
            self._status = status

    @property
    def response_headers(self) -> list[tuple[str, str]]:
        """Header fields set so far (without ``Content-Type``), in order."""
        headers = self._headers
        if headers is None:
            headers = self._headers = []
        self._unchecked = True
        return headers

    def respond(self, status: int, content_type: str, body: bytes | str) -> None:
        """Answer ``status`` with ``body`` (``str`` is sent as UTF-8).

        Wrong argument types raise ``TypeError`` here, at the caller's line.
        """
        if status.__class__ is not int or not MIN_STATUS <= status <= MAX_STATUS:
            _check_status(status)
        if content_type.__class__ is not str and not isinstance(content_type, str):
            raise TypeError(f"respond() content_type must be str, got {content_type!r}")
        check_header("Content-Type", content_type)  # cheap for a printable ASCII value
        self._body = _as_body(body, "respond() body")
        self._status = status
        self._content_type = content_type
        self._stream = None

    def text(self, status: int, body: str) -> None:
        """Answer with ``text/plain; charset=utf-8``."""
        if status.__class__ is not int or not MIN_STATUS <= status <= MAX_STATUS:
            _check_status(status)
        if body.__class__ is not str and not isinstance(body, str):
            raise TypeError(f"text() body must be str, got {type(body).__name__}")
        self._status = status
        self._content_type = TEXT_PLAIN
        self._body = body.encode("utf-8")
        self._stream = None

    def html(self, status: int, body: str) -> None:
        """Answer with ``text/html; charset=utf-8``."""
        if status.__class__ is not int or not MIN_STATUS <= status <= MAX_STATUS:
            _check_status(status)
        if body.__class__ is not str and not isinstance(body, str):
            raise TypeError(f"html() body must be str, got {type(body).__name__}")
        self._status = status
        self._content_type = TEXT_HTML
        self._body = body.encode("utf-8")
        self._stream = None

    def json(self, status: int, obj: Any) -> None:
        """Answer with ``obj`` as compact JSON (ASCII-escaped, so always valid UTF-8)."""
        if status.__class__ is not int or not MIN_STATUS <= status <= MAX_STATUS:
            _check_status(status)
        self._status = status
        self._content_type = APPLICATION_JSON
        self._body = _json.dumps(obj, separators=(",", ":")).encode("ascii")
        self._stream = None

    def redirect(self, url: str, status: int = 302) -> None:
        """Answer with ``Location: url``; non-ASCII characters are percent-encoded."""
        if status not in REDIRECT_STATUSES:
            raise ValueError(f"redirect status must be one of {sorted(REDIRECT_STATUSES)}")
        if not url.isascii():
            url = quote(url, safe=_URL_SAFE)
        self.set_header("Location", url)
        self._status = status
        self._content_type = None
        self._body = b""
        self._stream = None

    def stream(
        self,
        status: int,
        content_type: str,
        chunks: Iterable[bytes | str] | AsyncIterable[bytes | str],
    ) -> None:
        """Answer with a body produced piece by piece (chunked on HTTP/1.1).

        ``chunks`` is a sync iterable or an async iterable of ``bytes``/``str``
        (``str`` is sent as UTF-8).
        """
        _check_status(status)
        if not isinstance(content_type, str):
            raise TypeError(f"stream() content_type must be str, got {content_type!r}")
        check_header("Content-Type", content_type)
        self._stream = _checked_stream(chunks, self)
        self._status = status
        self._content_type = content_type
        self._body = b""

    def send_file(
        self,
        path: str | os.PathLike[str],
        content_type: str | None = None,
        *,
        max_age: int | None = None,
    ) -> None:
        """Answer with a file, as ``zzz.static_files`` does (one implementation: ``zzz.static``).

        404 when it is missing or not a regular file, 403 when unreadable. The
        type is guessed from the name when not given. Conditional requests
        (``ETag``/``Last-Modified`` → 304) and one ``Range`` (206/416) are
        honoured, and the body is sent with ``sendfile`` on plain TCP. Never
        pass a path built from request data: ``static_files`` confines those.
        Headers set before are kept; later ``set_header`` calls still apply.
        """
        from zzz import static

        filename = os.fspath(path)
        if content_type is not None:
            check_header("Content-Type", content_type)
        else:
            content_type = static.content_type_for(filename)
        self.set_response(
            static.file_response(
                self.request,
                os.path.realpath(filename),
                content_type=content_type,
                max_age=max_age,
                headers=self._headers,
            )
        )

    def set_header(self, name: str, value: str) -> None:
        """Set response header ``name``, replacing earlier values of it."""
        check_header(name, value)
        response = self._response
        if response is not None:  # after set_response()/built_response(): edit it
            lname = name.lower()
            response.headers[:] = [(n, v) for n, v in response.headers if n.lower() != lname]
            response.headers.append((name, value))
            return
        if name.lower() == "content-type":
            self._content_type = value
            return
        headers = self._headers
        if headers is None:
            self._headers = [(name, value)]
            return
        lname = name.lower()
        headers[:] = [(n, v) for n, v in headers if n.lower() != lname]
        headers.append((name, value))

    def _put_header(self, name: str, value: str) -> None:
        """:meth:`set_header` for zzz's own middleware, whose field was checked already
        (a name validated at configuration, a value made of safe characters)."""
        headers = self._headers
        if headers is None and self._response is None:
            self._headers = [(name, value)]
        else:
            self.set_header(name, value)

    def add_header(self, name: str, value: str) -> None:
        """Add a response header field, keeping earlier ones of the same name."""
        check_header(name, value)
        if self._response is not None:
            self._response.headers.append((name, value))
        elif self._headers is None:
            self._headers = [(name, value)]
        else:
            self._headers.append((name, value))

    def set_cookie(
        self,
        name: str,
        value: str,
        *,
        max_age: int | None = None,
        path: str | None = "/",
        domain: str | None = None,
        secure: bool = False,
        http_only: bool = True,
        same_site: str | None = "Lax",
    ) -> None:
        """Add a ``Set-Cookie`` header; refuses values browsers would mangle.

        ``value`` must be RFC 6265 cookie-octets (no space, ``"``, ``,``, ``;``
        or ``\\``): encode anything else (e.g. ``urllib.parse.quote``) first.
        """
        if not _TOKEN.fullmatch(name):
            raise ValueError(f"invalid cookie name {name!r}")
        if not _COOKIE_VALUE.fullmatch(value):
            raise ValueError(f"cookie {name}: value has characters outside RFC 6265 (quote it)")
        parts = [f"{name}={value}"]
        if max_age is not None:
            if isinstance(max_age, bool) or not isinstance(max_age, int):
                raise ValueError(f"cookie {name}: max_age must be an int")
            parts.append(f"Max-Age={max_age}")
        for attr, attr_value in (("Path", path), ("Domain", domain)):
            if attr_value is not None:
                if _COOKIE_ATTR_UNSAFE.search(attr_value):
                    raise ValueError(f"cookie {name}: invalid {attr} {attr_value!r}")
                parts.append(f"{attr}={attr_value}")
        if secure:
            parts.append("Secure")
        if http_only:
            parts.append("HttpOnly")
        if same_site is not None:
            if same_site not in SAME_SITE_VALUES:
                raise ValueError(
                    f"cookie {name}: same_site must be 'Lax', 'Strict', 'None' or None"
                )
            if same_site == "None" and not secure:
                raise ValueError(
                    f"cookie {name}: SameSite=None needs secure=True (browsers drop it)"
                )
            parts.append(f"SameSite={same_site}")
        self.add_header("Set-Cookie", "; ".join(parts))

    def set_response(self, response: Response) -> None:
        """Answer with a ready-made response, replacing everything set so far.

        This is the extension point for endpoints that build the response
        themselves (a protocol upgrade such as WebSocket sets ``response.upgrade``).
        """
        if not isinstance(response, Response):
            raise TypeError(f"set_response() needs a zzz Response, got {response!r}")
        _check_status(response.status)
        response.headers = _check_fields(response.headers)
        response.body = _as_body(response.body, "Response body")
        if response.stream is not None:
            response.stream = _checked_stream(response.stream, self)
        self._response = response

    def apply_return(self, value: object, source: object) -> None:
        """Make what a handler (or middleware) ``source`` returned the answer.

        ``str`` → ``text/plain; charset=utf-8``; ``bytes`` →
        ``application/octet-stream``; ``dict``/``list`` → JSON; each with the
        status set so far (200 unless ``ctx.status`` was set). A
        :class:`~zzz.http.response.Response` replaces status, body and type;
        header fields set on the context before are kept, ahead of its own.
        Anything else is a ``TypeError`` naming ``source``.
        """
        cls = value.__class__
        if cls is str:
            body = value.encode("utf-8")  # type: ignore[attr-defined]
            content_type: str | None = TEXT_PLAIN
        elif cls is dict or cls is list:
            body = _json.dumps(value, separators=(",", ":")).encode("ascii")
            content_type = APPLICATION_JSON
        elif isinstance(value, bytes | bytearray | memoryview):
            body = bytes(value)
            content_type = OCTET_STREAM
        elif isinstance(value, Response):
            self._adopt(value)
            return
        elif isinstance(value, str):
            body = value.encode("utf-8")
            content_type = TEXT_PLAIN
        elif isinstance(value, dict | list):
            body = _json.dumps(value, separators=(",", ":")).encode("ascii")
            content_type = APPLICATION_JSON
        else:
            hint = ""
            if isinstance(value, tuple):
                hint = " (set the status with ctx.status and return the body)"
            elif isinstance(value, Coroutine):
                value.close()  # never awaited: no "never awaited" warning on top
                hint = " (an un-awaited coroutine: await it, and make its caller async def)"
            raise TypeError(
                f"handler {describe(source)} returned a {type(value).__name__}: return str, "
                f"bytes, dict, list, a zzz.Response or None{hint}"
            )
        if self._response is not None:
            self._status = self._response.status
            self._response = None
        self._body = body
        self._content_type = content_type
        self._stream = None

    def _adopt(self, response: Response) -> None:
        if response.upgrade is not None:  # a protocol switch is answered as it is
            self.set_response(response)
            return
        _check_status(response.status)
        fields = _check_fields(response.headers)
        body = _as_body(response.body, "Response body")
        stream = None if response.stream is None else _checked_stream(response.stream, self)
        if any(name.lower() == "content-type" for name, _ in fields):
            self._content_type = None
        if fields:
            if self._headers is None:
                self._headers = fields
            else:
                self._headers.extend(fields)
        self._response = None
        self._status = response.status
        self._body = body
        self._stream = stream

    def built_response(self) -> Response:
        """The response as the rest of the chain left it, for middleware that rewrite it.

        Call it after ``next()`` returned (compression does). From then on the
        response *is* the answer: ``set_header``, ``add_header`` and ``status``
        act on it, and the body helpers (``text``, ``json``...) no longer do.
        """
        response = self._response
        if response is None:
            response = self._response = self.build_response()
        return response

    def build_response(self) -> Response:
        """The response collected so far (the router calls this once at the end).

        Raises ``ValueError`` when a field added through ``response_headers``
        is unsafe (the router answers 500 and logs it, naming the handler).
        """
        response = self._response
        if response is not None:
            return response
        headers = self._headers
        if self._unchecked and headers:
            headers = _check_fields(headers)
        content_type = self._content_type
        if content_type is not None:
            if headers is None:
                headers = [("Content-Type", content_type)]
            else:
                headers.append(("Content-Type", content_type))
        return Response(self._status, headers, self._body, self._stream)

    # ------------------------------------------------------------------ flow

    def next(self) -> Any:
        """Run the rest of the chain: ``None`` in a sync chain, an awaitable in an async one.

        Middleware call it once to continue (``await ctx.next()`` when async);
        not calling it short-circuits. Past the end of the chain it does nothing.
        """
        index = self._index
        chain = self._chain
        if index >= len(chain):
            return None
        self._index = index + 1
        return chain[index](self)

    async def run_blocking(self, fn: Callable[..., T], *args: Any) -> T:
        """Run blocking ``fn(*args)`` without stalling the event loop.

        On the event-loop backend it runs on the server's ``blocking_executor``;
        elsewhere (native backend, tests) it simply runs here.
        """
        executor = getattr(self.server, "blocking_executor", None)
        if executor is None:
            return fn(*args)
        import asyncio  # only reached inside a running loop, where asyncio is loaded

        return await asyncio.get_running_loop().run_in_executor(executor, fn, *args)

    def __repr__(self) -> str:
        return f"<Context {self.request.method} {self.request.path}>"
