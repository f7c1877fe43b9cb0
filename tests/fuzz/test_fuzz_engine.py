"""Property-based tests of the sans-I/O HTTP engine (issue 12 §1).

* Any bytes, any split: :func:`harness.check_engine` (no exception escapes
  ``feed``, well-formed outcome, split-independence, bounded retained memory).
* Valid requests from the RFC 9112 grammar (:mod:`strategies`), pipelined and
  split anywhere: every one is accepted and reported exactly as generated.
* The same requests mutated: the engine invariants hold.
* A stream that never ends a head, a chunk line or a trailer, fed in pieces:
  the engine refuses it before holding more than its limits.
"""

from __future__ import annotations

import harness
from hypothesis import example, given
from hypothesis import strategies as st
from strategies import LLHTTP_REFUSES, Built, mutated, pipelines

from zzz.http.connection import HTTPConnection, Limits, ProtocolError
from zzz.http.request import Request

#: Limits large enough for every generated valid request.
ROOMY = Limits(max_body_size=64 * 1024, max_header_size=16 * 1024, max_requests=100)


@given(st.binary(max_size=600))
@example(b"\x00GET / HTTP/1.1\r\nHost: x\r\n\r\n")
@example(b"\x03FROB / HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\n\r\n")
@example(b"\x05POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5 ; a\r\nhello\r\n0\r\n\r\n")
@example(b"\x02GEU /kTTP/1.0\r\nConnecion: keep-alive\r\n\r\n")  # found: replay inside except
@example(b"\x01PRI / HTTP/1.1\r\nHost: x\r\n\r\n")  # found: llhttp fails PRI after the line
def test_any_bytes_any_split(data: bytes) -> None:
    harness.check_engine(data)


@given(mutated(), st.integers(0, 255))
def test_mutated_requests_keep_the_invariants(data: bytes, seed: int) -> None:
    harness.check_engine(bytes([seed]) + data)


def _expect(built: Built, request: Request) -> None:
    assert request.method == built.method
    path, _, query = built.target.partition("?")
    assert (request.raw_path, request.query_string) == (path, query)
    assert request.http_version == built.version
    assert list(request.headers.items()) == built.fields
    assert request.body == built.body
    assert request.keep_alive == built.keep_alive


@given(pipelines(), st.integers(1, 255))
def test_valid_requests_are_accepted_exactly_under_any_split(batch: list[Built], seed: int) -> None:
    wire = b"".join(r.wire for r in batch)
    if any(r.features & LLHTTP_REFUSES for r in batch):
        return  # a known llhttp divergence, checked in test_fuzz_h11.py
    for pieces in ([wire], harness.split(wire, seed)):
        events, conn = harness.feed_all(pieces, ROOMY)
        assert not [e for e in events if isinstance(e, ProtocolError)], (wire, events)
        requests = [e for e in events if isinstance(e, Request)]
        assert len(requests) == len(batch), wire
        for built, request in zip(batch, requests, strict=True):
            _expect(built, request)
        assert not conn.in_request


ENDLESS = {
    "head": b"GET / HTTP/1.1\r\nX: ",
    "request line": b"GET /",
    "chunk line": b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5;a=",
    "trailer": b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX: ",
    "method": b"FROB",
}


@given(st.sampled_from(sorted(ENDLESS)), st.integers(1, 64), st.sampled_from(b"ab ;=\t"))
def test_endless_input_is_refused_within_the_limits(kind: str, piece: int, byte: int) -> None:
    conn = HTTPConnection(harness.FUZZ_LIMITS)
    events = conn.feed(ENDLESS[kind])
    limits = harness.FUZZ_LIMITS
    bound = limits.max_header_size + limits.max_body_size + harness.RETAINED_SLACK
    for _ in range(2 * (limits.max_header_size + limits.max_body_size) // piece + 2):
        if events:
            break
        events = conn.feed(bytes([byte]) * piece)
        if not conn.is_dead:
            assert harness.retained(conn) <= bound + piece
    assert events and isinstance(events[-1], ProtocolError), kind
    assert events[-1].status in (400, 413, 414, 431)
