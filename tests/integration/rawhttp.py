"""A small HTTP/1.1 client over raw sockets, for cases httpx hides or refuses to send.

:class:`RawClient` writes exact bytes and :meth:`RawClient.read_response` parses one
response at a time off the stream (Content-Length, chunked, or until close), so
pipelined answers, ``100 Continue`` and framing can be checked byte for byte.
"""

from __future__ import annotations

import contextlib
import socket
from dataclasses import dataclass, field
from typing import Any

import httpx

#: Every socket in the tests gets this timeout: nothing may hang the suite.
SOCKET_TIMEOUT_S = 5.0
#: Largest response the reader accepts (guards against a runaway server).
MAX_RESPONSE_BYTES = 64 * 1024 * 1024
#: Statuses that never carry a body.
NO_BODY = frozenset({204, 304})


class ConnectionClosed(Exception):
    """The server closed the connection before a complete response arrived."""


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
    """One TCP connection to the server under test."""

    def __init__(self, port: int, timeout: float = SOCKET_TIMEOUT_S) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.sock.settimeout(timeout)
        self.buf = b""

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
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            self.sock.sendall(data)

    def _fill(self) -> None:
        try:
            data = self.sock.recv(65536)
        except ConnectionResetError:
            data = b""
        if not data:
            raise ConnectionClosed(f"connection closed; {len(self.buf)} bytes pending")
        self.buf += data
        if len(self.buf) > MAX_RESPONSE_BYTES:
            raise AssertionError("response too large")

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
        try:
            data = self.sock.recv(65536)
        except ConnectionResetError:
            data = b""
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


def assert_still_serving(srv: Any) -> None:
    """A fresh client still gets a 200 (after a bad-input or stress test)."""
    with httpx.Client(timeout=SOCKET_TIMEOUT_S) as client:
        response = client.get(f"{srv.url}/")
    assert response.status_code == 200
    assert response.text == "hello"
