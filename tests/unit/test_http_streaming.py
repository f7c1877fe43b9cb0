"""Streamed request bodies in the sans-I/O engine: head event, Data events, EndOfMessage.

Every stream is also fed byte by byte and in random splits (``chunkings``): the
body bytes, their order relative to pipelined requests and every error status
must not depend on how the input was cut.
"""

from __future__ import annotations

import pytest
from http_feed import chunkings

from zzz.http.connection import (
    CONTINUE_RESPONSE,
    Data,
    EndOfMessage,
    ExpectContinue,
    HTTPConnection,
    Limits,
    ProtocolError,
)
from zzz.http.request import Request
from zzz.http.response import Response

LIMITS = Limits(max_body_size=10, max_header_size=256, max_requests=100, max_stream_body_size=0)


def always(request: Request) -> bool:
    return True


def only_upload(request: Request) -> bool:
    return request.path == "/upload"


def run(pieces: list[bytes], limits: Limits = LIMITS, predicate=always) -> list[object]:  # type: ignore[no-untyped-def]
    """Feed ``pieces``; a picture of the events with adjacent Data merged."""
    conn = HTTPConnection(limits, stream_body=predicate)
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
            elif isinstance(event, ExpectContinue):
                out.append(("100", event.request.path))
            else:
                assert isinstance(event, Request)
                out.append((event.method, event.path, event.streamed, event.body))
    return out


def every_split(data: bytes, limits: Limits = LIMITS, predicate=always) -> list[object]:  # type: ignore[no-untyped-def]
    results = {name: run(pieces, limits, predicate) for name, pieces in chunkings(data).items()}
    first = results["whole"]
    for name, result in results.items():
        assert result == first, f"{name} differs: {result} != {first}"
    return first


def test_content_length_body_streams_after_its_head() -> None:
    data = b"POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: 26\r\n\r\n" + b"a" * 26
    # Larger than max_body_size (10): streaming has its own limit (0 = unbounded).
    assert every_split(data) == [("POST", "/up", True, b""), b"a" * 26, "end"]


def test_chunked_body_streams_and_pipelined_request_follows() -> None:
    data = (b"POST /up HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"5\r\nhello\r\n10\r\n" + b"b" * 16 + b"\r\n0\r\n\r\n"
            b"GET /next HTTP/1.1\r\nHost: x\r\n\r\n")
    assert every_split(data) == [
        ("POST", "/up", True, b""), b"hello" + b"b" * 16, "end", ("GET", "/next", False, b"")]


def test_head_arrives_before_any_body_byte() -> None:
    conn = HTTPConnection(LIMITS, stream_body=always)
    events = conn.feed(b"PUT /f HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\n")
    assert len(events) == 1 and isinstance(events[0], Request) and events[0].streamed
    assert conn.in_request
    events = conn.feed(b"ab")
    assert [type(e) for e in events] == [Data]
    events = conn.feed(b"cd")
    assert [type(e) for e in events] == [Data, EndOfMessage]
    assert not conn.in_request


def test_predicate_chooses_per_request() -> None:
    data = (b"POST /form HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc"
            b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nxyz")
    assert every_split(data, predicate=only_upload) == [
        ("POST", "/form", False, b"abc"), ("POST", "/upload", True, b""), b"xyz", "end"]


def test_buffered_requests_keep_max_body_size() -> None:
    data = b"POST /form HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\n" + b"a" * 11
    assert every_split(data, predicate=only_upload) == [("error", 413)]


def test_stream_limit_from_content_length() -> None:
    limits = Limits(max_body_size=10, max_header_size=256, max_stream_body_size=100)
    data = b"POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: 101\r\n\r\n"
    assert every_split(data, limits) == [("error", 413)]


def test_stream_limit_crossed_mid_stream() -> None:
    limits = Limits(max_body_size=10, max_header_size=256, max_stream_body_size=100)
    body = b"40\r\n" + b"c" * 64 + b"\r\n" + b"40\r\n" + b"d" * 64 + b"\r\n0\r\n\r\n"
    data = b"POST /up HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" + body
    events = every_split(data, limits)
    assert events[0] == ("POST", "/up", True, b"")
    assert events[-1] == ("error", 413)
    # What was delivered before the limit never exceeds it.
    delivered = b"".join(e for e in events if isinstance(e, bytes))
    assert delivered == b"c" * 64 + b"d" * 36


def test_expect_continue_is_left_to_the_first_read() -> None:
    """Streaming: no ExpectContinue event; the request says the client waits."""
    conn = HTTPConnection(LIMITS, stream_body=always)
    events = conn.feed(b"POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n"
                       b"Expect: 100-continue\r\n\r\n")
    assert len(events) == 1
    request = events[0]
    assert isinstance(request, Request) and request.streamed and request.expect_continue
    assert CONTINUE_RESPONSE.startswith(b"HTTP/1.1 100")


def test_answer_before_the_body_ended_closes() -> None:
    conn = HTTPConnection(LIMITS, stream_body=always)
    (request,) = conn.feed(b"POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: 300\r\n\r\n")
    assert isinstance(request, Request)
    conn.feed(b"x" * 10)
    out = conn.serialize(Response(413, body=b"no"), request)
    assert b"Connection: close" in out and conn.must_close
    assert conn.input_abandoned  # the backend closes lingering


def test_answer_after_the_body_keeps_the_connection() -> None:
    conn = HTTPConnection(LIMITS, stream_body=always)
    (request,) = conn.feed(b"POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\n")
    assert isinstance(request, Request)
    conn.feed(b"abc")
    out = conn.serialize(Response(200, body=b"ok"), request)
    assert b"Connection: close" not in out and not conn.must_close


def test_bodyless_request_is_not_streamed() -> None:
    data = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
    assert every_split(data) == [("GET", "/", False, b"")]


@pytest.mark.parametrize("read_size", [1, 7, 4096, 65536, 1 << 20])
def test_chunk_extension_limit_does_not_depend_on_read_size(read_size: int) -> None:
    """A chunk-size line longer than max_header_size is 431 whatever the reads are."""
    limits = Limits(max_body_size=1 << 20, max_header_size=16 * 1024)
    line = b"5;" + b"e" * 100_000 + b"\r\n"
    data = (b"POST /up HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
            + line + b"hello\r\n0\r\n\r\n")
    conn = HTTPConnection(limits)
    statuses = []
    for i in range(0, len(data), read_size):
        statuses += [e.status for e in conn.feed(data[i : i + read_size])
                     if isinstance(e, ProtocolError)]
    assert statuses == [431]


@pytest.mark.parametrize("read_size", [1, 4096, 1 << 20])
def test_chunk_extension_under_the_limit_passes(read_size: int) -> None:
    limits = Limits(max_body_size=1 << 20, max_header_size=16 * 1024)
    line = b"5;" + b"e" * 1000 + b"\r\n"
    data = (b"POST /up HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
            + line + b"hello\r\n0\r\n\r\n")
    conn = HTTPConnection(limits)
    events = []
    for i in range(0, len(data), read_size):
        events += conn.feed(data[i : i + read_size])
    assert [type(e) for e in events] == [Request]
    assert isinstance(events[0], Request) and events[0].body == b"hello"


def test_trailer_section_is_bounded_exactly() -> None:
    limits = Limits(max_body_size=1 << 20, max_header_size=1024)
    trailer = b"X-T: " + b"v" * 2000 + b"\r\n"
    data = (b"POST /up HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"5\r\nhello\r\n0\r\n" + trailer + b"\r\n")
    for size in (1, 100, 1 << 20):
        conn = HTTPConnection(limits)
        statuses = []
        for i in range(0, len(data), size):
            statuses += [e.status for e in conn.feed(data[i : i + size])
                         if isinstance(e, ProtocolError)]
        assert statuses == [431], size
