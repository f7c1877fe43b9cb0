"""PROXY protocol v1 and v2 (HAProxy's spec), sans-I/O.

A TCP load balancer (HAProxy ``send-proxy``, AWS NLB, nginx ``proxy_protocol``)
that does not speak HTTP cannot add ``X-Forwarded-For``; instead it writes one
header at the very start of the connection, before the client's first byte:

- v1, text: ``PROXY TCP4 192.0.2.1 198.51.100.1 56324 443\\r\\n`` (at most 107
  bytes; ``PROXY UNKNOWN ...`` carries no address);
- v2, binary: a 12-byte signature, a version/command byte (``0x21`` PROXY,
  ``0x20`` LOCAL: a health check by the balancer itself), a family/transport
  byte, a 2-byte length, then the addresses and optional TLVs (ignored here).

:class:`ProxyHeaderParser` is fed the connection's first bytes and returns
``None`` until the header is complete, then a :class:`ProxyHeader` with the
source address and the bytes that followed (the start of the HTTP request).
Anything else raises :class:`ProxyProtocolError`: with ``--proxy-protocol`` on,
a connection without the header is refused, because otherwise any client
reaching the port directly could claim any address.

:class:`ProxyProtocolConnection` puts the parser in front of the HTTP engine,
so a backend enables the feature by choosing the engine class (see
:func:`connection_class`) and nothing else changes.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass

from zzz.http.connection import Event, HTTPConnection, Limits, ProtocolError, StreamPredicate

#: v1 header start.
V1_PREFIX = b"PROXY "
#: Longest v1 header, CRLF included (the spec's bound).
V1_MAX_LENGTH = 107
#: v2 header start.
V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
#: Fixed part of a v2 header: signature, version/command, family, length.
V2_FIXED_LENGTH = 16
#: Largest v2 address+TLV block we accept (unix addresses are 216 bytes; TLVs such
#: as AWS's VPC endpoint id add a little): a bound on what one connection buffers.
V2_MAX_BODY = 1024
V2_VERSION = 0x2
V2_COMMAND_LOCAL = 0x0
V2_COMMAND_PROXY = 0x1
V2_AF_UNSPEC, V2_AF_INET, V2_AF_INET6, V2_AF_UNIX = 0x0, 0x1, 0x2, 0x3
#: Address block sizes by family: two addresses and (for IP) two ports.
V2_ADDRESS_LENGTH = {V2_AF_INET: 12, V2_AF_INET6: 36, V2_AF_UNIX: 216}


class ProxyProtocolError(ValueError):
    """The connection did not start with a valid PROXY protocol header."""


@dataclass(frozen=True, slots=True)
class ProxyHeader:
    """A parsed header: who the balancer says the client is."""

    version: int
    #: ``(address, port)`` of the client, or ``None`` (LOCAL, UNKNOWN, unix, unspecified).
    source: tuple[str, int] | None
    destination: tuple[str, int] | None
    #: Bytes received after the header: the beginning of the proxied stream.
    remainder: bytes


class ProxyHeaderParser:
    """Accumulates a connection's first bytes until the PROXY header is complete."""

    __slots__ = ("_buffer",)

    def __init__(self) -> None:
        self._buffer = b""

    def feed(self, data: bytes) -> ProxyHeader | None:
        """Add ``data``; the header once complete, ``None`` while more is needed."""
        if not data:
            raise ProxyProtocolError("connection closed before the PROXY header")
        self._buffer += data
        buffer = self._buffer
        if buffer.startswith(V2_SIGNATURE[: len(buffer)]) and buffer[:1] == b"\r":
            return _parse_v2(buffer) if len(buffer) >= V2_FIXED_LENGTH else None
        if not V1_PREFIX.startswith(buffer[: len(V1_PREFIX)]):
            raise ProxyProtocolError("no PROXY protocol header")
        return _parse_v1(buffer)


def _parse_v1(buffer: bytes) -> ProxyHeader | None:
    end = buffer.find(b"\r\n", 0, V1_MAX_LENGTH)
    if end < 0:
        if len(buffer) >= V1_MAX_LENGTH:
            raise ProxyProtocolError("PROXY v1 header longer than 107 bytes")
        return None
    try:
        line = buffer[:end].decode("ascii")
    except UnicodeDecodeError:
        raise ProxyProtocolError("PROXY v1 header is not ASCII") from None
    parts = line.split(" ")
    remainder = buffer[end + 2:]
    if len(parts) >= 2 and parts[1] == "UNKNOWN":
        return ProxyHeader(1, None, None, remainder)
    if len(parts) != 6 or parts[1] not in ("TCP4", "TCP6"):
        raise ProxyProtocolError(f"malformed PROXY v1 header {line!r}")
    _, family, src, dst, sport, dport = parts
    version = 4 if family == "TCP4" else 6
    source = (_v1_address(src, version), _v1_port(sport))
    destination = (_v1_address(dst, version), _v1_port(dport))
    return ProxyHeader(1, source, destination, remainder)


def _v1_address(text: str, version: int) -> str:
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        raise ProxyProtocolError(f"bad address {text!r} in PROXY v1 header") from None
    if ip.version != version:
        raise ProxyProtocolError(f"address {text!r} is not IPv{version}")
    return str(ip)


def _v1_port(text: str) -> int:
    if not text.isdigit() or len(text) > 5 or (len(text) > 1 and text[0] == "0"):
        raise ProxyProtocolError(f"bad port {text!r} in PROXY v1 header")
    port = int(text)
    if port > 65535:
        raise ProxyProtocolError(f"bad port {text!r} in PROXY v1 header")
    return port


def _parse_v2(buffer: bytes) -> ProxyHeader | None:
    if buffer[:12] != V2_SIGNATURE:
        raise ProxyProtocolError("bad PROXY v2 signature")
    version_command, family_transport, length = struct.unpack("!BBH", buffer[12:16])
    if version_command >> 4 != V2_VERSION:
        raise ProxyProtocolError(f"unsupported PROXY protocol version {version_command >> 4}")
    command = version_command & 0xF
    if command not in (V2_COMMAND_LOCAL, V2_COMMAND_PROXY):
        raise ProxyProtocolError(f"unknown PROXY v2 command {command}")
    if length > V2_MAX_BODY:
        raise ProxyProtocolError(f"PROXY v2 header of {length} bytes is too large")
    total = V2_FIXED_LENGTH + length
    if len(buffer) < total:
        return None
    body = buffer[V2_FIXED_LENGTH:total]
    remainder = buffer[total:]
    family = family_transport >> 4
    if command == V2_COMMAND_LOCAL or family in (V2_AF_UNSPEC, V2_AF_UNIX):
        return ProxyHeader(2, None, None, remainder)
    needed = V2_ADDRESS_LENGTH.get(family)
    if needed is None:
        raise ProxyProtocolError(f"unknown PROXY v2 address family {family}")
    if length < needed:
        raise ProxyProtocolError("PROXY v2 address block too short")
    size = 4 if family == V2_AF_INET else 16
    src = ipaddress.ip_address(body[:size])
    dst = ipaddress.ip_address(body[size: 2 * size])
    sport, dport = struct.unpack("!HH", body[2 * size: 2 * size + 4])
    return ProxyHeader(2, (str(src), sport), (str(dst), dport), remainder)


class ProxyProtocolConnection(HTTPConnection):
    """The HTTP engine behind a PROXY header: the client address comes from the header."""

    __slots__ = ("_proxy",)

    def __init__(
        self,
        limits: Limits | None = None,
        client: tuple[str, int] | None = None,
        scheme: str = "http",
        stream_body: StreamPredicate | None = None,
    ) -> None:
        super().__init__(limits, client, scheme, stream_body)
        self._proxy: ProxyHeaderParser | None = ProxyHeaderParser()
        # The header is part of the first request for deadlines: a peer that
        # sends half a header and stalls gets the read timeout, not keep-alive's.
        self.in_request = True

    def feed(self, data: bytes) -> list[Event]:
        parser = self._proxy
        if parser is None:
            return super().feed(data)
        try:
            header = parser.feed(data)
        except ProxyProtocolError as exc:
            self._proxy = None
            self.in_request = False
            if not data:
                return super().feed(data)
            super().feed(b"")  # the engine is dead: nothing more is parsed
            self.must_close = True
            return [ProtocolError(400, f"PROXY protocol: {exc}")]
        if header is None:
            return []
        self._proxy = None
        self.in_request = False
        if header.source is not None:
            self._client = header.source
        return super().feed(header.remainder) if header.remainder else []


def connection_class(proxy_protocol: bool) -> type[HTTPConnection]:
    """The engine class a backend creates per connection (``Config.proxy_protocol``)."""
    return ProxyProtocolConnection if proxy_protocol else HTTPConnection
