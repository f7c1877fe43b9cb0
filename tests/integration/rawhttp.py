"""A small HTTP/1.1 client over raw sockets, for cases httpx hides or refuses to send.

:class:`RawClient` writes exact bytes and :meth:`RawClient.read_response` parses one
response at a time off the stream (Content-Length, chunked, or until close), so
pipelined answers, ``100 Continue`` and framing can be checked byte for byte.

The same bytes go over TLS when the server under test runs it: ``RawClient(srv)`` takes
the client context from the ``serve`` fixture's ``srv.client_ssl`` (None over plain TCP),
so one test checks the HTTP layer over both transports. The ways a TLS peer's close
shows up (clean or ragged EOF, ``SSLEOFError``, a reset) all become "closed" here.
"""

from __future__ import annotations

import contextlib
import select
import socket
import ssl
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

import httpx

#: Every socket in the tests gets this timeout: nothing may hang the suite.
SOCKET_TIMEOUT_S = 5.0
#: Largest response the reader accepts (guards against a runaway server).
MAX_RESPONSE_BYTES = 64 * 1024 * 1024
#: Statuses that never carry a body.
NO_BODY = frozenset({204, 304})


#: How a peer's close surfaces on send or receive, over TCP and over TLS (an SSLSocket
#: reports a close mid-record or a close_notify racing our write as SSL errors).
CLOSED_ERRORS: tuple[type[OSError], ...] = (
    BrokenPipeError, ConnectionResetError, ssl.SSLEOFError, ssl.SSLZeroReturnError)


class ConnectionClosed(Exception):
    """The server closed the connection before a complete response arrived."""


class ServerAddress(Protocol):
    """What a client needs of the ``serve`` fixture's RunningServer."""

    port: int
    client_ssl: ssl.SSLContext | None


def connect(target: int | ServerAddress, timeout: float = SOCKET_TIMEOUT_S,
            ssl_context: ssl.SSLContext | None = None,
            rcvbuf: int | None = None) -> socket.socket:
    """A client socket to the server under test: plain TCP, or TLS when ``target`` is a
    RunningServer serving TLS (or ``ssl_context`` is given).

    The TLS handshake is deferred to the first send or receive (OpenSSL runs it inside
    SSL_write/SSL_read), so connecting does not wait for the server, just as a TCP
    connect completes from the kernel's backlog: the back-pressure tests open more
    connections than the server accepts at once. ``rcvbuf`` sets SO_RCVBUF before the
    connect (the window scale is fixed by the SYN), for the slow-reader tests.
    """
    if isinstance(target, int):
        port = target
    else:
        port = target.port
        ssl_context = ssl_context or target.client_ssl
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        if rcvbuf is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.settimeout(timeout)
        sock.connect(("127.0.0.1", port))
        if ssl_context is None:
            return sock
        return ssl_context.wrap_socket(sock, server_hostname="127.0.0.1",
                                       do_handshake_on_connect=False)
    except BaseException:
        sock.close()
        raise


@dataclass
class RawResponse:
    status: int
    reason: str
    version: str
    headers: list[tuple[str, str]]
    body: bytes = b""
    trailers: list[tuple[str, str]] = field(default_factory=list)
    chunked: bool = False

    def header(self, name: str) -> str | None:
        """The first value of ``name`` (case-insensitive), or None."""
        lname = name.lower()
        for key, value in self.headers:
            if key.lower() == lname:
                return value
        return None

    def header_all(self, name: str) -> list[str]:
        lname = name.lower()
        return [value for key, value in self.headers if key.lower() == lname]

    @property
    def closes(self) -> bool:
        """The response announces ``Connection: close``."""
        value = self.header("connection") or ""
        return "close" in value.lower()


class RawClient:
    """One connection to the server under test: ``RawClient(srv)`` (TLS when ``srv``
    serves TLS) or ``RawClient(port)`` (plain TCP unless ``ssl_context`` is given)."""

    def __init__(self, target: int | ServerAddress, timeout: float = SOCKET_TIMEOUT_S,
                 ssl_context: ssl.SSLContext | None = None) -> None:
        self.sock = connect(target, timeout, ssl_context)
        self.timeout = timeout
        self.tls = isinstance(self.sock, ssl.SSLSocket)
        self.buf = b""
        #: The server's close was already seen (by :meth:`wait_readable`).
        self.eof = False

    def __enter__(self) -> RawClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.sock.close()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def send_ignoring_reset(self, data: bytes) -> None:
        """Send, tolerating a server that already answered and closed."""
        with contextlib.suppress(*CLOSED_ERRORS):
            self.sock.sendall(data)

    def _recv(self) -> bytes:
        """Up to 64 KiB of response bytes; b"" once the server closed (however it did)."""
        if self.eof:
            return b""
        try:
            data = self.sock.recv(65536)
        except CLOSED_ERRORS:
            data = b""
        if not data:
            self.eof = True
        return data

    def _fill(self) -> None:
        data = self._recv()
        if not data:
            raise ConnectionClosed(f"connection closed; {len(self.buf)} bytes pending")
        self.buf += data
        if len(self.buf) > MAX_RESPONSE_BYTES:
            raise AssertionError("response too large")

    def wait_readable(self, timeout: float) -> bool:
        """True once response bytes or the server's close arrived within ``timeout``.

        A bare ``select()`` is not enough over TLS: after the handshake a TLS 1.3 server
        sends session tickets, which make the socket readable without any HTTP bytes.
        So over TLS a readable socket is read (non-blocking) and only application data
        or EOF count; what was read stays buffered for :meth:`read_response`.
        """
        deadline = time.monotonic() + timeout
        while not (self.buf or self.eof):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            decrypted = isinstance(self.sock, ssl.SSLSocket) and self.sock.pending() > 0
            if not decrypted and not select.select([self.sock], [], [], remaining)[0]:
                return False
            if not self.tls:
                return True
            self.sock.settimeout(0)
            try:
                self.buf += self._recv()
            except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
                pass  # a TLS record without application data (a session ticket)
            finally:
                self.sock.settimeout(self.timeout)
        return True

    def _read_line(self) -> bytes:
        while b"\r\n" not in self.buf:
            self._fill()
        line, _, self.buf = self.buf.partition(b"\r\n")
        return line

    def _read_exact(self, n: int) -> bytes:
        while len(self.buf) < n:
            self._fill()
        data, self.buf = self.buf[:n], self.buf[n:]
        return data

    def _read_fields(self) -> list[tuple[str, str]]:
        fields: list[tuple[str, str]] = []
        while True:
            line = self._read_line()
            if not line:
                return fields
            name, sep, value = line.decode("latin-1").partition(":")
            assert sep, f"malformed header line {line!r}"
            assert name == name.strip(), f"whitespace around header name {line!r}"
            fields.append((name, value.strip()))

    def read_response(self, head: bool = False) -> RawResponse:
        """Read one response; ``head=True`` when it answers a HEAD (no body follows)."""
        line = self._read_line()
        version, _, rest = line.decode("latin-1").partition(" ")
        code, _, reason = rest.partition(" ")
        assert version.startswith("HTTP/1."), f"bad status line {line!r}"
        response = RawResponse(int(code), reason, version, self._read_fields())
        status = response.status
        if head or status in NO_BODY or 100 <= status < 200:
            return response
        te = (response.header("transfer-encoding") or "").lower()
        length = response.header("content-length")
        if te:
            assert te == "chunked", f"unexpected Transfer-Encoding {te!r}"
            assert length is None, "Content-Length together with Transfer-Encoding"
            response.chunked = True
            parts: list[bytes] = []
            while True:
                size_line = self._read_line().split(b";", 1)[0].strip()
                size = int(size_line, 16)
                if size == 0:
                    response.trailers = self._read_fields()
                    break
                parts.append(self._read_exact(size))
                assert self._read_exact(2) == b"\r\n", "chunk not followed by CRLF"
            response.body = b"".join(parts)
        elif length is not None:
            response.body = self._read_exact(int(length))
        else:
            response.body = self.read_until_close()
        return response

    def read_until_close(self) -> bytes:
        """Everything until the server closes (bounded by the socket timeout)."""
        while True:
            try:
                self._fill()
            except ConnectionClosed:
                data, self.buf = self.buf, b""
                return data

    def assert_closed(self) -> None:
        """The server closed the connection: EOF (or reset) with no further bytes."""
        data = self._recv()
        assert self.buf == b"" and data == b"", f"expected close, got {self.buf + data!r}"

    def request(self, method: str, target: str, headers: dict[str, str] | None = None,
                body: bytes = b"", version: str = "HTTP/1.1") -> RawResponse:
        """Send one simple request and read its response."""
        self.send(build(method, target, headers, body, version))
        return self.read_response(head=method == "HEAD")


def build(method: str, target: str, headers: dict[str, str] | None = None,
          body: bytes = b"", version: str = "HTTP/1.1") -> bytes:
    """The bytes of a well-formed request (Host and Content-Length added when fitting)."""
    fields = {"Host": "127.0.0.1"} if version == "HTTP/1.1" else {}
    if body:
        fields["Content-Length"] = str(len(body))
    fields.update(headers or {})
    head = f"{method} {target} {version}\r\n" + "".join(
        f"{k}: {v}\r\n" for k, v in fields.items()) + "\r\n"
    return head.encode("latin-1") + body


def httpx_client(srv: Any, timeout: float = SOCKET_TIMEOUT_S) -> httpx.Client:
    """An httpx client for ``srv``, trusting the test CA when it serves TLS."""
    context = getattr(srv, "client_ssl", None)
    return httpx.Client(timeout=timeout, verify=context if context is not None else True)


def assert_still_serving(srv: Any) -> None:
    """A fresh client still gets a 200 (after a bad-input or stress test)."""
    with httpx_client(srv) as client:
        response = client.get(f"{srv.url}/")
    assert response.status_code == 200
    assert response.text == "hello"
