"""PROXY protocol v1/v2 parser (sans-I/O) and the engine that sits behind it."""

from __future__ import annotations

import ipaddress
import struct

import pytest

from zzz.config import Config
from zzz.http.connection import HTTPConnection, ProtocolError
from zzz.http.proxy_protocol import (
    V1_MAX_LENGTH,
    V2_SIGNATURE,
    ProxyHeaderParser,
    ProxyProtocolConnection,
    ProxyProtocolError,
    connection_class,
)
from zzz.http.request import Request

REQUEST = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"


def v2(command: int = 0x1, family: int = 0x11, body: bytes | None = None) -> bytes:
    if body is None:
        body = (ipaddress.ip_address("192.0.2.7").packed + ipaddress.ip_address("10.0.0.1").packed
                + struct.pack("!HH", 40000, 443))
    return V2_SIGNATURE + bytes([0x20 | command, family]) + struct.pack("!H", len(body)) + body


def feed_bytewise(data: bytes) -> object:
    parser = ProxyHeaderParser()
    for i in range(len(data)):
        result = parser.feed(data[i:i + 1])
        if result is not None:
            return result
    return None


def test_v1_tcp4_with_the_request_after_it() -> None:
    header = ProxyHeaderParser().feed(b"PROXY TCP4 192.0.2.1 198.51.100.9 56324 443\r\n" + REQUEST)
    assert header is not None
    assert header.version == 1
    assert header.source == ("192.0.2.1", 56324)
    assert header.destination == ("198.51.100.9", 443)
    assert header.remainder == REQUEST


def test_v1_tcp6_and_unknown() -> None:
    header = ProxyHeaderParser().feed(b"PROXY TCP6 2001:db8::1 2001:db8::2 1 2\r\n")
    assert header is not None and header.source == ("2001:db8::1", 1)
    unknown = ProxyHeaderParser().feed(b"PROXY UNKNOWN ffff::1 ffff::2 1 2\r\nrest")
    assert unknown is not None and unknown.source is None and unknown.remainder == b"rest"


def test_v1_fed_one_byte_at_a_time() -> None:
    header = feed_bytewise(b"PROXY TCP4 192.0.2.1 198.51.100.9 56324 443\r\n")
    assert header is not None and header.source == ("192.0.2.1", 56324)  # type: ignore[attr-defined]


@pytest.mark.parametrize("line", [
    b"PROXY TCP4 192.0.2.1 198.51.100.9 56324\r\n",  # a field missing
    b"PROXY TCP4 2001:db8::1 198.51.100.9 1 2\r\n",  # IPv6 under TCP4
    b"PROXY TCP4 192.0.2.1 198.51.100.9 65536 2\r\n",  # port out of range
    b"PROXY TCP4 192.0.2.1 198.51.100.9 01 2\r\n",  # leading zero
    b"PROXY UDP4 192.0.2.1 198.51.100.9 1 2\r\n",  # unknown protocol
    b"GET / HTTP/1.1\r\n",  # no header at all
    b"PROXY TCP4 999.0.2.1 198.51.100.9 1 2\r\n",
])
def test_v1_invalid(line: bytes) -> None:
    with pytest.raises(ProxyProtocolError):
        ProxyHeaderParser().feed(line)


def test_v1_without_crlf_within_107_bytes_is_refused() -> None:
    parser = ProxyHeaderParser()
    assert parser.feed(b"PROXY TCP4 " + b"1" * 50) is None
    with pytest.raises(ProxyProtocolError, match="107"):
        parser.feed(b"1" * V1_MAX_LENGTH)


def test_v2_tcp4() -> None:
    header = ProxyHeaderParser().feed(v2() + REQUEST)
    assert header is not None
    assert header.version == 2
    assert header.source == ("192.0.2.7", 40000)
    assert header.destination == ("10.0.0.1", 443)
    assert header.remainder == REQUEST


def test_v2_tcp6_with_tlvs_fed_bytewise() -> None:
    body = (ipaddress.ip_address("2001:db8::7").packed + ipaddress.ip_address("2001:db8::1").packed
            + struct.pack("!HH", 1234, 80) + b"\x04\x00\x03abc")  # a NOOP TLV, ignored
    header = feed_bytewise(v2(family=0x21, body=body))
    assert header is not None
    assert header.source == ("2001:db8::7", 1234)  # type: ignore[attr-defined]


def test_v2_local_and_unix_have_no_source() -> None:
    local = ProxyHeaderParser().feed(v2(command=0x0, family=0x00, body=b""))
    assert local is not None and local.source is None
    unix = ProxyHeaderParser().feed(v2(family=0x31, body=b"\0" * 216) + b"x")
    assert unix is not None and unix.source is None and unix.remainder == b"x"


@pytest.mark.parametrize("data", [
    V2_SIGNATURE + bytes([0x31, 0x11]) + struct.pack("!H", 12) + b"\0" * 12,  # version 3
    V2_SIGNATURE + bytes([0x22, 0x11]) + struct.pack("!H", 12) + b"\0" * 12,  # command 2
    V2_SIGNATURE + bytes([0x21, 0x11]) + struct.pack("!H", 4) + b"\0" * 4,  # short block
    V2_SIGNATURE + bytes([0x21, 0x51]) + struct.pack("!H", 12) + b"\0" * 12,  # family 5
    V2_SIGNATURE + bytes([0x21, 0x11]) + struct.pack("!H", 60000),  # too large
    b"\r\n\r\n\x00\r\nQUIX\n" + b"\0" * 8,  # bad signature
])
def test_v2_invalid(data: bytes) -> None:
    with pytest.raises(ProxyProtocolError):
        ProxyHeaderParser().feed(data)


def test_eof_before_the_header_is_an_error() -> None:
    parser = ProxyHeaderParser()
    assert parser.feed(b"PROXY") is None
    with pytest.raises(ProxyProtocolError):
        parser.feed(b"")


def test_engine_takes_the_client_from_the_header() -> None:
    engine = ProxyProtocolConnection(client=("10.0.0.2", 5555))
    assert engine.in_request  # the header is under the read deadline
    assert engine.feed(b"PROXY TCP4 192.0.2.1 198.51.100.9 56324 443\r\nGET / HT") == []
    events = engine.feed(b"TP/1.1\r\nHost: x\r\n\r\n")
    assert len(events) == 1 and isinstance(events[0], Request)
    assert events[0].client == ("192.0.2.1", 56324)


def test_engine_refuses_a_connection_without_header() -> None:
    engine = ProxyProtocolConnection(client=("10.0.0.2", 5555))
    events = engine.feed(REQUEST)
    assert len(events) == 1 and isinstance(events[0], ProtocolError)
    assert events[0].status == 400
    assert engine.feed(REQUEST) == []  # nothing more is parsed
    assert engine.is_dead


def test_local_command_keeps_the_peer() -> None:
    engine = ProxyProtocolConnection(client=("10.0.0.2", 5555))
    events = engine.feed(v2(command=0x0, family=0x00, body=b"") + REQUEST)
    assert isinstance(events[0], Request) and events[0].client == ("10.0.0.2", 5555)


def test_connection_class_follows_config() -> None:
    assert connection_class(Config().proxy_protocol) is HTTPConnection
    assert connection_class(Config(proxy_protocol=True).proxy_protocol) is ProxyProtocolConnection
