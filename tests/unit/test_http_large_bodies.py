"""Large Content-Length bodies kept without llhttp, and streamed pieces framed without a copy.

A body of ``DIRECT_BODY_MIN`` bytes or more is taken by the engine itself
(``_direct_body``): whatever the read sizes, the request, its body and the
requests pipelined behind it must be exactly those of the llhttp path, and a read
that is all body must be kept as it came (no copy) but never a caller's mutable
buffer.
"""

from __future__ import annotations

import os
import random

import pytest

from zzz.http.connection import (
    DIRECT_BODY_MIN,
    FRAME_COPY_BELOW,
    Data,
    EndOfMessage,
    ExpectContinue,
    HTTPConnection,
    Limits,
    ProtocolError,
)
from zzz.http.request import Request
from zzz.http.response import Response

LIMITS = Limits(max_body_size=4 * DIRECT_BODY_MIN, max_header_size=1024)


def _message(body: bytes, extra: str = "") -> bytes:
    return (f"POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n{extra}\r\n"
            .encode() + body)


def _splits(data: bytes) -> dict[str, list[bytes]]:
    ways = {"whole": [data], "64k": [data[i:i + 65536] for i in range(0, len(data), 65536)]}
    for seed in (1, 2):
        rng = random.Random(seed)
        pieces, pos = [], 0
        while pos < len(data):
            size = rng.randint(1, 40_000)
            pieces.append(data[pos:pos + size])
            pos += size
        ways[f"random{seed}"] = pieces
    return ways


def _events(pieces: list[bytes], stream: bool = False) -> list[object]:
    conn = HTTPConnection(LIMITS, stream_body=(lambda r: True) if stream else None)
    out: list[object] = []
    for piece in pieces:
        for event in conn.feed(piece):
            if isinstance(event, Data):
                if out and isinstance(out[-1], bytes):
                    out[-1] += event.data
                else:
                    out.append(event.data)
            elif isinstance(event, EndOfMessage):
                out.append("end")
            elif isinstance(event, ProtocolError):
                out.append(("error", event.status))
            elif isinstance(event, Request):
                out.append((event.method, event.path, event.body))
            else:
                out.append(type(event).__name__)
    return out


@pytest.mark.parametrize("size", [DIRECT_BODY_MIN - 1, DIRECT_BODY_MIN, 3 * DIRECT_BODY_MIN + 7])
def test_large_body_and_pipelined_requests_whatever_the_reads(size: int) -> None:
    body = os.urandom(size)
    data = _message(body) + b"GET /next HTTP/1.1\r\nHost: x\r\n\r\n" + _message(b"abc")
    expected = [("POST", "/up", body), ("GET", "/next", b""), ("POST", "/up", b"abc")]
    for name, pieces in _splits(data).items():
        assert _events(pieces) == expected, name


def test_large_streamed_body_whatever_the_reads() -> None:
    body = os.urandom(2 * DIRECT_BODY_MIN + 3)
    data = _message(body) + b"GET /next HTTP/1.1\r\nHost: x\r\n\r\n"
    for name, pieces in _splits(data).items():
        assert _events(pieces, stream=True) == [("POST", "/up", b""), body, "end",
                                                ("GET", "/next", b"")], name


def test_a_read_that_is_all_body_is_kept_without_a_copy() -> None:
    conn = HTTPConnection(LIMITS, stream_body=lambda r: True)
    body = os.urandom(DIRECT_BODY_MIN)
    head = _message(b"").replace(b"Length: 0", b"Length: %d" % len(body))
    assert len(conn.feed(head)) == 1  # the streamed request, before its body
    [event] = conn.feed(body[:1000])
    assert isinstance(event, Data) and event.data == body[:1000]
    rest = body[1000:]
    first = conn.feed(rest)[0]
    assert isinstance(first, Data) and first.data is rest


def test_a_callers_buffer_is_never_kept() -> None:
    conn = HTTPConnection(LIMITS)
    body = os.urandom(DIRECT_BODY_MIN)
    head = _message(b"").replace(b"Length: 0", b"Length: %d" % len(body))
    assert conn.feed(head) == []
    buffer = bytearray(body)
    [request] = conn.feed(buffer)  # type: ignore[arg-type]
    buffer[:] = bytes(len(buffer))  # the caller reuses its buffer
    assert isinstance(request, Request) and request.body == body


def test_connection_close_stops_after_a_large_body() -> None:
    body = b"b" * DIRECT_BODY_MIN
    data = _message(body, "Connection: close\r\n") + b"GET /never HTTP/1.1\r\nHost: x\r\n\r\n"
    for name, pieces in _splits(data).items():
        assert _events(pieces) == [("POST", "/up", body)], name


def test_large_body_over_the_limit_is_413_before_any_byte() -> None:
    conn = HTTPConnection(Limits(max_body_size=DIRECT_BODY_MIN))
    events = conn.feed(_message(b"x" * (DIRECT_BODY_MIN + 1)))
    assert [e.status for e in events if isinstance(e, ProtocolError)] == [413]


def test_expect_continue_then_large_body() -> None:
    conn = HTTPConnection(LIMITS)
    body = os.urandom(DIRECT_BODY_MIN + 1)
    head = _message(b"", "Expect: 100-continue\r\n").replace(b"Length: 0",
                                                             b"Length: %d" % len(body))
    [waiting] = conn.feed(head)
    assert isinstance(waiting, ExpectContinue)
    [request] = conn.feed(body)
    assert isinstance(request, Request) and request.body == body
    assert not conn.in_request


def _streaming(version: str = "1.1", method: str = "GET") -> HTTPConnection:
    conn = HTTPConnection(LIMITS)
    [request] = conn.feed(f"{method} / HTTP/{version}\r\nHost: x\r\n\r\n".encode())
    assert isinstance(request, Request)
    conn.serialize(Response(200, stream=iter(())), request)
    return conn


@pytest.mark.parametrize("size", [1, FRAME_COPY_BELOW - 1, FRAME_COPY_BELOW, 100_000])
def test_frame_is_chunk_without_the_copy(size: int) -> None:
    conn = _streaming()
    data = os.urandom(size)
    parts = conn.frame(data)
    assert b"".join(parts) == conn.chunk(data)
    if size >= FRAME_COPY_BELOW:
        assert parts[1] is data  # handed on, not copied
    else:
        assert len(parts) == 1


def test_frame_without_chunking() -> None:
    big = b"z" * FRAME_COPY_BELOW
    assert _streaming(version="1.0").frame(big) == (big,)  # raw, close-delimited
    assert _streaming(method="HEAD").frame(big) == ()
    assert _streaming().frame(b"") == ()
