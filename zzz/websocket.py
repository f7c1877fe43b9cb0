"""WebSocket (RFC 6455) on the ``websockets`` package's sans-I/O ``ServerProtocol``.

Three layers, so that protocol behaviour is written once for both backends:

* **Handshake** (:class:`WebSocketEndpoint`): a route endpoint. Our HTTP engine
  and router have already parsed the request and run the route's middleware;
  the endpoint validates the upgrade itself (GET on HTTP/1.1, ``Upgrade:
  websocket``, ``Connection: upgrade``, a 16-byte base64 key → else 400;
  ``Sec-WebSocket-Version: 13`` → else 426), negotiates ``permessage-deflate``
  and answers ``101`` with ``response.upgrade`` set to an :class:`Upgrade` that
  tells the backend what to switch to. A route may list ``subprotocols`` (the
  first of them the client offers is selected, server order) and
  ``allowed_origins`` (a browser's ``Origin`` outside the list gets 403: the
  defence against cross-site WebSocket hijacking, since browsers send cookies
  with a cross-site handshake; clients that send no ``Origin`` are not browsers
  and pass).
* **Session** (:class:`Session`): sans-I/O, not thread-safe. Bytes in →
  complete messages out (fragments reassembled, text decoded as strict
  UTF-8, pings answered, the close handshake echoed); sends in → bytes out;
  a heartbeat driven by the time the backend passes in. Framing, masking,
  limits (1009), protocol errors (1002) and compression are the library's.
* **WebSocket** (:class:`WebSocket`): what callbacks get. Sends go through a
  backend *driver* that makes them safe from any thread.

Back-pressure (both backends, same policy): ``ws_write_buffer_high`` is the
mark above which the peer is *behind*, not a size at which it is dropped, so a
single message larger than the mark still goes out to a client that reads.
While the peer is behind, a send from a thread that may block (a worker, a
timer or the application's own thread) waits until the backlog drains below the
mark; a send that must not block (the event loop's thread) is queued, at most
:data:`MAX_MESSAGES_BEHIND` of them, and refused (False) beyond: the bound
counts messages, not frames or bytes. A peer whose backlog makes no progress
for ``write_timeout_ms`` has stopped reading: it gets a 1008 close frame if
the socket can still take one, and its connection is cut.

Which close code ``on_close(ws, code, reason)`` receives: the code of the
peer's close frame when one arrived (a completed close handshake, whoever
started it); otherwise the code the server sent when it failed the connection
(1002 protocol error, 1007 bad UTF-8, 1009 too big, 1011 heartbeat timeout or
callback error, 1001 shutdown the peer never answered, 1008 stopped reading —
only when that close frame really reached the socket); otherwise ``1006``
(RFC 6455 §7.1.5: the TCP connection ended without any close frame — a dropped
peer, or a peer the server cut off because it stopped reading).
"""

from __future__ import annotations

import base64
import binascii
import codecs
import logging
import os
import re
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from websockets.exceptions import InvalidHandshake, NegotiationError, PayloadTooBig
from websockets.exceptions import ProtocolError as WsProtocolError
from websockets.extensions.base import Extension
from websockets.extensions.permessage_deflate import (
    PerMessageDeflate,
    ServerPerMessageDeflateFactory,
)
from websockets.frames import BINARY, CLOSE, CONT, PING, PONG, TEXT, Close, Frame
from websockets.headers import build_extension, parse_extension
from websockets.protocol import CLOSED, OPEN
from websockets.server import ServerProtocol
from websockets.utils import accept_key

from zzz.http.headers import Headers
from zzz.http.response import Response

if TYPE_CHECKING:
    from zzz.config import Config
    from zzz.context import Context, Query
    from zzz.http.request import Request
    from zzz.lifecycle import State
    from zzz.server import Server

log = logging.getLogger("zzz.websocket")
#: The protocol library logs every connection close at INFO (and frames at DEBUG):
#: per-connection noise, so its logger starts at WARNING; lower it to see frames.
_FRAME_LOG = logging.getLogger("zzz.websocket.protocol")
if _FRAME_LOG.level == logging.NOTSET:
    _FRAME_LOG.setLevel(logging.WARNING)

#: The only protocol version RFC 6455 defines; anything else gets 426 naming it.
WS_VERSION = "13"
#: Decoded length of a valid ``Sec-WebSocket-Key`` (RFC 6455 §4.1).
WS_KEY_BYTES = 16
#: How long the server waits for the peer's answer once closing started (our
#: close frame → its close frame; our TCP FIN → its FIN) before cutting the TCP
#: connection: a peer that vanished must not hold a socket for ever.
CLOSE_TIMEOUT_S = 5.0
#: permessage-deflate window sizes (bits): 4 KiB windows instead of zlib's 32 KiB
#: keep per-connection memory small at a small cost in compression ratio.
DEFLATE_WINDOW_BITS = 12
#: zlib memLevel for outgoing compression (1..9; 8 is zlib's default): less memory.
DEFLATE_MEM_LEVEL = 5
#: With permessage-deflate, a compressed frame may be larger than the message it
#: holds (random data does not compress; deflate's stored blocks add 5 bytes per
#: 64 KiB, a naive encoder's fixed Huffman codes up to 1/8): the wire limit is the
#: message limit plus this fraction and :data:`DEFLATE_SLACK_BYTES`, while the
#: decompressed size is held to the exact limit (see :class:`_BoundedInflate`).
DEFLATE_SLACK_DIVISOR = 8
DEFLATE_SLACK_BYTES = 1024
#: Messages a send that must not block may queue while the peer is behind (its
#: unsent bytes above ``ws_write_buffer_high``) before sends are refused.
MAX_MESSAGES_BEHIND = 64
#: Sent to a peer whose backlog made no progress for ``write_timeout_ms``
#: (RFC 6455 §7.4.1 1008: it violates the policy that a client keeps reading).
STALLED_CODE = 1008
STALLED_REASON = "stopped reading"
#: Payload of heartbeat pings (content is irrelevant: any pong counts).
HEARTBEAT_PAYLOAD_BYTES = 4

#: A subprotocol name is a token (RFC 6455 §4.1, RFC 9110 §5.6.2).
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")

#: Close codes an application may send (RFC 6455 §7.4; 1005/1006/1015 are never sent).
_SENDABLE_CODES = frozenset({1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012,
                             1013, 1014})
#: Largest close reason: a control frame payload is at most 125 bytes, 2 are the code.
MAX_CLOSE_REASON_BYTES = 123

OpenCallback = Callable[["WebSocket"], Awaitable[None] | None]
MessageCallback = Callable[["WebSocket", "str | bytes"], Awaitable[None] | None]
CloseCallback = Callable[["WebSocket", int, str], Awaitable[None] | None]

_INVALID_DATA = 1007
_INTERNAL_ERROR = 1011
_ABNORMAL = 1006
_NO_STATUS = 1005


def check_close(code: int, reason: str) -> None:
    """Refuse a close code or reason that cannot be sent (raises ``ValueError``)."""
    if isinstance(code, bool) or not isinstance(code, int) or not (
        code in _SENDABLE_CODES or 3000 <= code <= 4999
    ):
        raise ValueError(f"close code must be 1000-1003, 1007-1014 or 3000-4999, got {code!r}")
    if len(reason.encode("utf-8")) > MAX_CLOSE_REASON_BYTES:
        raise ValueError(f"close reason longer than {MAX_CLOSE_REASON_BYTES} bytes")


# ---------------------------------------------------------------------- session


class _BoundedInflate(Extension):
    """permessage-deflate with the message limit on the *decompressed* bytes.

    The protocol checks one limit against the wire length of a frame and passes
    the same number to the extension as the most it may inflate. A message of
    exactly the limit whose compressed frames are a little larger would be
    refused, so the protocol is given the limit plus a slack (see
    :data:`DEFLATE_SLACK_DIVISOR`) and this wrapper takes the slack off again
    before inflating: zlib never produces more than the real remaining budget,
    so a zip bomb stops at the limit without being inflated whole. Frames that
    are not compressed are checked against the same exact budget.
    """

    def __init__(self, inner: Extension, slack: int) -> None:
        self.inner = inner
        self.name = inner.name
        self.slack = slack

    def decode(self, frame: Frame, *, max_size: int | None = None) -> Frame:
        if max_size is None:
            return self.inner.decode(frame)
        budget = max_size - self.slack
        # zlib treats a budget of 0 as "no limit": ask for one byte and refuse it.
        decoded = self.inner.decode(frame, max_size=max(budget, 1))
        if len(decoded.data) > budget and decoded.opcode not in (CLOSE, PING, PONG):
            raise PayloadTooBig(len(decoded.data), max(budget, 0))
        return decoded

    def encode(self, frame: Frame) -> Frame:
        return self.inner.encode(frame)


def _deflate_slack(max_message_size: int) -> int:
    return max_message_size // DEFLATE_SLACK_DIVISOR + DEFLATE_SLACK_BYTES


class Session:
    """One WebSocket connection, sans-I/O: bytes in → messages out, sends → bytes out.

    Not thread-safe: backends serialise access (a lock on the native backend,
    the loop thread on the event loop). After :meth:`receive` and after every
    send, the backend writes :meth:`data_to_send`; when that reports ``eof``
    the server has finished its side and the backend half-closes TCP.
    """

    __slots__ = (
        "_abnormal",
        "_decoder",
        "_deferred",
        "_next_ping",
        "_parts",
        "_ping_interval",
        "_ping_sent",
        "_ping_timeout",
        "_text",
        "protocol",
        "timed_out",
    )

    def __init__(
        self,
        max_message_size: int,
        extensions: list[Extension] | None = None,
        ping_interval: float = 0.0,
        ping_timeout: float = 0.0,
        now: float = 0.0,
    ) -> None:
        # The handshake was done by our HTTP engine, so the protocol starts OPEN.
        wire_limit = max_message_size
        if extensions:
            extensions = list(extensions)
            for i, extension in enumerate(extensions):
                if isinstance(extension, PerMessageDeflate):
                    slack = _deflate_slack(max_message_size)
                    extensions[i] = _BoundedInflate(extension, slack)
                    wire_limit = max_message_size + slack
        protocol = ServerProtocol(state=OPEN, max_size=wire_limit, logger=_FRAME_LOG)
        if extensions:
            protocol.extensions = extensions
        self.protocol = protocol
        #: What a failure found in the same read as complete messages produced
        #: (its close frame, then EOF): held back until :meth:`release`.
        self._deferred: list[bytes] | None = None
        self._abnormal = False  # our close frame never reached the socket
        self._parts: list[bytes] = []
        self._text = False
        self._decoder: codecs.IncrementalDecoder | None = None
        self._ping_interval = ping_interval
        self._ping_timeout = ping_timeout
        self._ping_sent: float | None = None
        self._next_ping = now + ping_interval
        #: True once the heartbeat gave up on the peer.
        self.timed_out = False

    # ------------------------------------------------------------------ receiving

    def receive(self, data: bytes) -> list[str | bytes]:
        """Feed bytes from the network; the complete messages they finished, in order."""
        protocol = self.protocol
        if protocol.reader.eof:
            return []
        was_open = protocol.state is OPEN
        protocol.receive_data(data)
        frames = protocol.events_received()
        if was_open and protocol.parser_exc is not None:
            self._close_mid_message()
        if not frames:
            return []
        out = self._messages(frames)
        if out and was_open and protocol.state is not OPEN:
            # The read held complete messages and then an invalid frame (or a
            # close): the messages are delivered and answered first, then the
            # close frame goes out (RFC 6455 §5.5.1 allows data before it).
            self._deferred = protocol.data_to_send()
        return out

    def _close_mid_message(self) -> None:
        """A close frame in the middle of a fragmented message ends the connection
        normally (RFC 6455 §5.4 allows control frames between fragments; the
        unfinished message is dropped). websockets fails it with 1002 instead:
        its close frame is replaced by the echo of the peer's."""
        protocol = self.protocol
        received = protocol.close_rcvd
        if (
            received is None
            or not isinstance(protocol.parser_exc, WsProtocolError)
            or str(protocol.parser_exc) != "incomplete fragmented message"
        ):
            return
        if self._replace_close(received):
            protocol.close_rcvd = received
            protocol.close_rcvd_then_sent = True
            self._parts = []

    def _replace_close(self, close: Close) -> bool:
        """Replace the close frame the protocol queued in this read (then EOF) by
        ``close``: the frames are parsed a whole read at a time, so the library
        may have failed on a *later* frame than the one the session refuses."""
        protocol = self.protocol
        writes = protocol.writes
        if len(writes) < 2 or writes[-1] != b"" or writes[-2][:1] != b"\x88":
            return False
        # An empty close frame parses as 1005, which must not be sent: echo it empty.
        payload = b"" if close.code == _NO_STATUS else close.serialize()
        writes[-2] = Frame(CLOSE, payload).serialize(mask=False, extensions=protocol.extensions)
        protocol.close_sent = close
        protocol.close_rcvd = None
        protocol.close_rcvd_then_sent = None
        return True

    @property
    def deferred(self) -> bool:
        """A failure waits for the messages before it to be handled (see :meth:`release`)."""
        return self._deferred is not None

    def release(self) -> None:
        """The messages delivered with a deferred failure have been handled: the
        failure's close frame and EOF now follow whatever the callbacks sent."""
        deferred = self._deferred
        if deferred is not None:
            self._deferred = None
            self.protocol.writes.extend(deferred)

    def _messages(self, frames: list[Any]) -> list[str | bytes]:
        out: list[str | bytes] = []
        for frame in frames:
            if not isinstance(frame, Frame):  # pragma: no cover - only frames once OPEN
                continue
            opcode = frame.opcode
            if opcode is TEXT or opcode is BINARY:
                if frame.fin:  # the common case: a whole message in one frame
                    if opcode is TEXT:
                        try:
                            out.append(bytes(frame.data).decode("utf-8"))
                        except UnicodeDecodeError:
                            self._fail_utf8()
                            return out
                    else:
                        out.append(bytes(frame.data))
                    continue
                self._text = opcode is TEXT
                self._parts = []
                self._decoder = codecs.getincrementaldecoder("utf-8")() if self._text else None
                if not self._add_part(frame.data, False):
                    return out
            elif opcode is CONT:
                if not self._add_part(frame.data, frame.fin):
                    return out
                if frame.fin:
                    parts, self._parts = self._parts, []
                    joined = b"".join(parts)
                    out.append(joined.decode("utf-8") if self._text else joined)
            elif opcode is PONG:
                self._ping_sent = None
            # PING is answered and CLOSE echoed by the protocol itself.
        return out

    def _add_part(self, data: Any, fin: bool) -> bool:
        """Keep one fragment; text is checked as it arrives so bad UTF-8 fails fast."""
        chunk = bytes(data)
        decoder = self._decoder
        if decoder is not None:
            try:
                decoder.decode(chunk, fin)
            except UnicodeDecodeError:
                self._fail_utf8()
                return False
        self._parts.append(chunk)
        return True

    def _fail_utf8(self) -> None:
        self._parts = []
        reason = "invalid UTF-8 in text message"
        if self.protocol.state is OPEN:
            self.protocol.fail(_INVALID_DATA, reason)
        else:  # a later frame of the same read failed or closed: this error came first
            self._replace_close(Close(_INVALID_DATA, reason))

    def receive_eof(self) -> None:
        """The peer closed its side of the TCP connection."""
        self.protocol.receive_eof()

    # ------------------------------------------------------------------ sending

    @property
    def is_open(self) -> bool:
        return self.protocol.state is OPEN or self._deferred is not None

    def send_text(self, text: str) -> bool:
        if self.protocol.state is OPEN:
            self.protocol.send_text(text.encode("utf-8"))
        elif self._deferred is not None:  # answering messages before a deferred failure
            self.protocol.send_frame(Frame(TEXT, text.encode("utf-8")))
        else:
            return False
        return True

    def send_binary(self, data: bytes) -> bool:
        if self.protocol.state is OPEN:
            self.protocol.send_binary(data)
        elif self._deferred is not None:
            self.protocol.send_frame(Frame(BINARY, data))
        else:
            return False
        return True

    def ping(self, payload: bytes = b"") -> bool:
        if self.protocol.state is OPEN:
            self.protocol.send_ping(payload)
        elif self._deferred is not None:
            self.protocol.send_frame(Frame(PING, payload))
        else:
            return False
        return True

    def close(self, code: int = 1000, reason: str = "") -> bool:
        """Start the closing handshake (no-op when closing already started)."""
        if self.protocol.state is not OPEN:
            return False
        self.protocol.send_close(code, reason)
        return True

    def fail(self, code: int, reason: str = "") -> bool:
        """Close at once: a close frame (when still open), then our end of TCP."""
        protocol = self.protocol
        if protocol.state is CLOSED or protocol.eof_sent:
            return False
        protocol.fail(code, reason)
        return True

    def data_to_send(self) -> tuple[bytes, bool]:
        """Bytes to write, and whether the server's side is finished (half-close TCP)."""
        writes = self.protocol.data_to_send()
        if not writes:
            return b"", False
        eof = writes[-1] == b""
        data = writes[0] if len(writes) == 1 else b"".join(writes)
        return data, eof

    # ------------------------------------------------------------------ state

    @property
    def closing(self) -> bool:
        """A close frame was sent or received, or the connection failed."""
        return self.protocol.state is not OPEN

    @property
    def finished(self) -> bool:
        """The WebSocket is over for the application (``on_close`` is due)."""
        protocol = self.protocol
        return (protocol.eof_sent or protocol.state is CLOSED) and self._deferred is None

    def lost_close_frame(self) -> None:
        """The connection is cut before our close frame could be written: ``on_close``
        reports 1006, not a code the peer never saw."""
        if self.protocol.close_rcvd is None:
            self._abnormal = True

    def close_info(self) -> tuple[int, str]:
        """``(code, reason)`` for ``on_close`` (see the module docstring)."""
        protocol = self.protocol
        if self._abnormal:
            return _ABNORMAL, ""
        if protocol.close_rcvd is not None:
            return int(protocol.close_rcvd.code), protocol.close_rcvd.reason
        if protocol.close_sent is not None:
            return int(protocol.close_sent.code), protocol.close_sent.reason
        return _ABNORMAL, ""

    # ------------------------------------------------------------------ heartbeat

    def heartbeat(self, now: float) -> float | None:
        """Advance the heartbeat to ``now``; when to call again (``None``: stopped).

        Pings every ``ping_interval``; a ping whose pong has not arrived
        ``ping_timeout`` later fails the connection with 1011 (as websockets'
        own keepalive does) and sets :attr:`timed_out`.
        """
        if self._ping_interval <= 0 or self.protocol.state is not OPEN:
            return None
        sent = self._ping_sent
        if sent is not None:
            if now >= sent + self._ping_timeout:
                self.timed_out = True
                self.fail(_INTERNAL_ERROR, "keepalive ping timeout")
                return None
            return min(sent + self._ping_timeout, self._next_ping)
        if now >= self._next_ping:
            self.protocol.send_ping(os.urandom(HEARTBEAT_PAYLOAD_BYTES))
            self._ping_sent = now
            self._next_ping = now + self._ping_interval
            return now + min(self._ping_timeout, self._ping_interval)
        return self._next_ping


# ---------------------------------------------------------------------- WebSocket


class Driver(Protocol):
    """How a :class:`WebSocket` reaches its connection; each backend provides one."""

    def perform(self, action: Callable[..., bool], *args: Any) -> bool:
        """Run ``action(session, *args)`` safely and write what it produced.

        True when the action was applied (or, from another thread, queued) on
        an open connection; False when the connection is closing or closed.
        """
        ...

    def is_open(self) -> bool: ...


class WebSocket:
    """One open WebSocket, as the callbacks see it. Sends are safe from any thread.

    ``send``/``send_binary``/``ping``/``close`` never block on the network and
    return False once the connection is closing or closed (so a broadcast loop
    need not catch anything). ``assigns`` is a copy of the HTTP request's
    assigns after the route's middleware ran. ``server`` is the server (its
    timers: ``ws.server.add_timer(ms, fn)``), ``state`` the application's
    shared ``app.state``.
    """

    __slots__ = ("_driver", "assigns", "client", "headers", "params", "path", "query",
                 "query_string", "server", "state", "subprotocol")

    def __init__(
        self,
        driver: Driver,
        *,
        path: str,
        query_string: str,
        query: Query,
        headers: Headers,
        client: tuple[str, int] | None,
        params: dict[str, str],
        assigns: dict[str, Any],
        server: Server | None = None,
        state: State | None = None,
        subprotocol: str | None = None,
    ) -> None:
        self._driver = driver
        self.server = server
        self.state = state
        #: The negotiated ``Sec-WebSocket-Protocol``, or None.
        self.subprotocol = subprotocol
        self.path = path
        self.query_string = query_string
        self.query = query
        self.headers = headers
        self.client = client
        self.params = params
        self.assigns = assigns

    def send(self, text: str) -> bool:
        """Send a text message."""
        if not isinstance(text, str):
            raise TypeError(f"send() takes str (use send_binary for bytes), got {type(text)}")
        return self._driver.perform(Session.send_text, text)

    def send_binary(self, data: bytes | bytearray | memoryview) -> bool:
        """Send a binary message."""
        if not isinstance(data, bytes | bytearray | memoryview):
            raise TypeError(f"send_binary() takes bytes, got {type(data)}")
        return self._driver.perform(Session.send_binary, bytes(data))

    def ping(self, data: bytes = b"") -> bool:
        """Send a ping (the peer's pong also counts for the heartbeat)."""
        if len(data) > 125:
            raise ValueError("ping payload must be at most 125 bytes")
        return self._driver.perform(Session.ping, bytes(data))

    def close(self, code: int = 1000, reason: str = "") -> bool:
        """Start the closing handshake; ``on_close`` runs when it completes."""
        check_close(code, reason)
        return self._driver.perform(Session.close, code, reason)

    @property
    def is_open(self) -> bool:
        """False once closing started (either side) or the connection is gone."""
        return self._driver.is_open()

    def path_param(self, name: str) -> str:
        """The value of path parameter ``name`` of the route that accepted the socket."""
        try:
            return self.params[name]
        except KeyError:
            raise KeyError(f"WebSocket route has no path parameter {name!r}") from None

    def __repr__(self) -> str:
        return f"<WebSocket {self.path} {self.client}>"


# ---------------------------------------------------------------------- endpoint


def _callback(handler: object, explicit: Any, name: str) -> Any:
    fn = explicit if explicit is not None else getattr(handler, name, None)
    if fn is not None and not callable(fn):
        raise TypeError(f"WebSocket {name} must be callable, got {fn!r}")
    return fn


class _BadUpgrade(Exception):
    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


def _tokens(values: list[str]) -> list[str]:
    return [t.strip().lower() for v in values for t in v.split(",") if t.strip()]


def check_upgrade(request_method: str, http_version: str, headers: Headers) -> str:
    """Validate an opening handshake; the ``Sec-WebSocket-Key``, or raise ``_BadUpgrade``."""
    if request_method != "GET":
        raise _BadUpgrade(400, "WebSocket handshake must use GET")
    if http_version != "1.1":
        raise _BadUpgrade(400, "WebSocket handshake needs HTTP/1.1")
    upgrade = [t.split("/", 1)[0] for t in _tokens(headers.get_all("upgrade"))]
    if "websocket" not in upgrade:
        raise _BadUpgrade(400, "missing 'Upgrade: websocket'")
    if "upgrade" not in _tokens(headers.get_all("connection")):
        raise _BadUpgrade(400, "missing 'Connection: upgrade'")
    versions = headers.get_all("sec-websocket-version")
    if len(versions) != 1 or versions[0].strip() != WS_VERSION:
        raise _BadUpgrade(426, f"unsupported WebSocket version (only {WS_VERSION})")
    keys = headers.get_all("sec-websocket-key")
    if len(keys) != 1:
        raise _BadUpgrade(400, "exactly one Sec-WebSocket-Key is required")
    key = keys[0].strip()
    try:
        raw = base64.b64decode(key.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        raw = b""
    if len(raw) != WS_KEY_BYTES:
        raise _BadUpgrade(400, "invalid Sec-WebSocket-Key")
    return key


_DEFLATE = ServerPerMessageDeflateFactory(
    server_max_window_bits=DEFLATE_WINDOW_BITS,
    client_max_window_bits=DEFLATE_WINDOW_BITS,
    compress_settings={"memLevel": DEFLATE_MEM_LEVEL},
)


def negotiate_extensions(offers: list[str]) -> tuple[str | None, list[Extension]]:
    """Accept ``permessage-deflate`` when offered (the first acceptable variant)."""
    accepted: list[Extension] = []
    answer = []
    try:
        items = [item for value in offers for item in parse_extension(value)]
    except InvalidHandshake as exc:
        raise _BadUpgrade(400, f"invalid Sec-WebSocket-Extensions: {exc}") from None
    for name, params in items:
        if name != _DEFLATE.name:
            continue
        try:
            response_params, extension = _DEFLATE.process_request_params(params, accepted)
        except NegotiationError:
            continue
        accepted.append(extension)
        answer.append((name, response_params))
    return (build_extension(answer) if answer else None), accepted


class Upgrade:
    """``Response.upgrade`` of an accepted handshake: what the backend switches to."""

    __slots__ = (
        "assigns",
        "endpoint",
        "extensions",
        "params",
        "query",
        "request_client",
        "request_headers",
        "request_path",
        "request_query",
        "server",
        "state",
        "subprotocol",
    )

    def __init__(self, endpoint: WebSocketEndpoint, ctx: Context,
                 extensions: list[Extension], subprotocol: str | None = None) -> None:
        self.endpoint = endpoint
        self.extensions = extensions
        self.subprotocol = subprotocol
        request = ctx.request
        self.request_path = request.path
        self.request_query = request.query_string
        self.request_headers = request.headers
        self.request_client = request.client
        self.params = dict(ctx.params)
        self.query = ctx.query
        self.assigns = dict(ctx.assigns)
        self.server = ctx.server
        self.state = ctx.app.state if ctx.app is not None else None

    def session(self, config: Config, now: float) -> Session:
        """The protocol state for the new connection (limits and heartbeat from config)."""
        return Session(
            config.ws_max_message_size,
            self.extensions,
            ping_interval=config.ws_ping_interval_ms / 1000.0,
            ping_timeout=config.ws_ping_timeout_ms / 1000.0,
            now=now,
        )

    def websocket(self, driver: Driver) -> WebSocket:
        return WebSocket(
            driver,
            path=self.request_path,
            query_string=self.request_query,
            query=self.query,
            headers=self.request_headers,
            client=self.request_client,
            params=self.params,
            assigns=self.assigns,
            server=self.server,
            state=self.state,
            subprotocol=self.subprotocol,
        )


class WebSocketEndpoint:
    """A WebSocket route's endpoint: validates the upgrade and holds the callbacks.

    Callbacks come from the keyword arguments or, for the class form, from
    ``handler``'s ``on_open`` / ``on_message`` / ``on_close`` attributes (a
    class is instantiated with no arguments). Each may be plain or ``async def``.
    """

    __slots__ = ("allowed_origins", "compression", "on_close", "on_message", "on_open",
                 "subprotocols")

    def __init__(
        self,
        handler: object = None,
        *,
        on_open: OpenCallback | None = None,
        on_message: MessageCallback | None = None,
        on_close: CloseCallback | None = None,
        compression: bool = True,
        subprotocols: Sequence[str] = (),
        allowed_origins: Sequence[str] | None = None,
    ) -> None:
        if isinstance(subprotocols, str) or not all(
            isinstance(p, str) and _TOKEN.fullmatch(p) for p in subprotocols
        ):
            raise ValueError(f"subprotocols must be a list of tokens, got {subprotocols!r}")
        if allowed_origins is not None and (
            isinstance(allowed_origins, str)
            or not all(isinstance(o, str) for o in allowed_origins)
        ):
            raise ValueError(f"allowed_origins must be a list of origins, got {allowed_origins!r}")
        self.subprotocols = tuple(subprotocols)
        self.allowed_origins = (
            None if allowed_origins is None else frozenset(o.lower() for o in allowed_origins)
        )
        if isinstance(handler, type):
            handler = handler()
        self.on_open: OpenCallback | None = _callback(handler, on_open, "on_open")
        self.on_message: MessageCallback | None = _callback(handler, on_message, "on_message")
        self.on_close: CloseCallback | None = _callback(handler, on_close, "on_close")
        if self.on_open is None and self.on_message is None and self.on_close is None:
            raise TypeError("a WebSocket route needs on_open, on_message or on_close")
        self.compression = compression

    def __call__(self, ctx: Context) -> None:
        request = ctx.request
        try:
            key = check_upgrade(request.method, request.http_version, request.headers)
            ext_header, extensions = (
                negotiate_extensions(request.headers.get_all("sec-websocket-extensions"))
                if self.compression
                else (None, [])
            )
            self._check_origin(request.headers)
        except _BadUpgrade as exc:
            if exc.status == 426:
                ctx.set_header("Sec-WebSocket-Version", WS_VERSION)
            ctx.text(exc.status, f"{exc.status} {exc.detail}\n")
            return
        headers = [
            ("Upgrade", "websocket"),
            ("Connection", "Upgrade"),
            ("Sec-WebSocket-Accept", accept_key(key)),
        ]
        if ext_header is not None:
            headers.append(("Sec-WebSocket-Extensions", ext_header))
        subprotocol = self._select_subprotocol(request.headers)
        if subprotocol is not None:
            headers.append(("Sec-WebSocket-Protocol", subprotocol))
        response = Response(101, headers)
        response.upgrade = Upgrade(self, ctx, extensions, subprotocol)
        ctx.set_response(response)

    def _check_origin(self, headers: Headers) -> None:
        allowed = self.allowed_origins
        if allowed is None:
            return
        origins = headers.get_all("origin")
        if not origins:
            return  # not a browser: no ambient credentials to hijack
        if len(origins) > 1 or origins[0].strip().lower() not in allowed:
            raise _BadUpgrade(403, "origin not allowed")

    def _select_subprotocol(self, headers: Headers) -> str | None:
        """The first of the route's subprotocols the client offers (RFC 6455 §4.2.2)."""
        if not self.subprotocols:
            return None
        offered = {t.strip() for v in headers.get_all("sec-websocket-protocol") for t in v.split(",")}
        for subprotocol in self.subprotocols:
            if subprotocol in offered:
                return subprotocol
        return None

    def __repr__(self) -> str:
        return f"<WebSocketEndpoint on_message={self.on_message!r}>"


def log_callback_error(name: str, ws: WebSocket) -> None:
    """Log a callback's exception with its traceback (the caller closes with 1011)."""
    log.exception("WebSocket %s callback failed for %s", name, ws.path)


# ---------------------------------------------------------------------- other interfaces


class BadUpgradeError(Exception):
    """An opening handshake refused before any application code ran (400 or 426)."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail

    def response(self) -> Response:
        headers = [("Content-Type", "text/plain; charset=utf-8")]
        if self.status == 426:
            headers.append(("Sec-WebSocket-Version", WS_VERSION))
        return Response(self.status, headers, f"{self.status} {self.detail}\n".encode())


def handshake_headers(
    request: Request, compression: bool = True
) -> tuple[list[tuple[str, str]], list[Extension]]:
    """Validate ``request``'s handshake: the 101's headers and the accepted extensions.

    The same checks a Router WebSocket route makes, for interfaces without a
    Router (ASGI): raises :class:`BadUpgradeError`.
    """
    try:
        key = check_upgrade(request.method, request.http_version, request.headers)
        ext_header, extensions = (
            negotiate_extensions(request.headers.get_all("sec-websocket-extensions"))
            if compression
            else (None, [])
        )
    except _BadUpgrade as exc:
        raise BadUpgradeError(exc.status, exc.detail) from None
    headers = [
        ("Upgrade", "websocket"),
        ("Connection", "Upgrade"),
        ("Sec-WebSocket-Accept", accept_key(key)),
    ]
    if ext_header is not None:
        headers.append(("Sec-WebSocket-Extensions", ext_header))
    return headers, extensions


def upgrade_response(handler: object, request: Request, headers: list[tuple[str, str]],
                     extensions: list[Extension]) -> Response:
    """A 101 that switches the connection to zzz's WebSocket driver, with ``handler``'s
    ``on_open``/``on_message``/``on_close`` as the callbacks."""
    from zzz.context import Context

    endpoint = WebSocketEndpoint(handler)
    response = Response(101, headers)
    response.upgrade = Upgrade(endpoint, Context(request, None), extensions)  # type: ignore[arg-type]
    return response
