"""Checks shared by the hypothesis properties, the atheris harness and the corpus replay.

Each ``check_*`` function takes the bytes a fuzzer produced, runs one part of
zzz on them and raises ``AssertionError`` when an invariant breaks (any other
exception escaping is a bug too). Nothing here depends on a fuzzing library,
so a crash found by atheris replays under plain pytest.

The HTTP engine (:func:`check_engine`): the first byte chooses the split, the
rest is the input. Fed whole and fed in pieces it must

* never raise from ``feed``;
* end in complete requests, then at most one error (a status the server
  documents) and nothing after it, or "need more data";
* give the same events, upgrade bytes and final state whatever the split;
* keep its retained buffers within the limits plus one read.

The WebSocket frame path (:func:`check_ws`): the same split rule; the session
never raises, gives the same messages and the same close (code, reason) whatever
the split, fails only with a close code RFC 6455 defines, and never delivers a
message larger than its limit. (The bytes sent may differ by pongs: the library
answers a ping that follows a bad frame in the same read before the session
has checked that frame; a pong after the failure point is harmless.)
"""

from __future__ import annotations

from typing import Any

from zzz.http.connection import ExpectContinue, HTTPConnection, Limits, ProtocolError
from zzz.http.request import Request
from zzz.websocket import Session, negotiate_extensions

#: Every status a ProtocolError may carry (DESIGN.md rule 7 plus 417 for Expect).
ALLOWED_STATUSES = frozenset({400, 408, 413, 414, 417, 431, 501, 505})
#: Small limits so generated inputs cross them now and then.
FUZZ_LIMITS = Limits(max_body_size=256, max_header_size=512, max_requests=100)
#: Retained bytes allowed beyond the limits (fixed-size state: tails, small tokens).
RETAINED_SLACK = 256
#: Message limit of the fuzzed WebSocket sessions.
WS_LIMIT = 4096
#: Close codes a failing session may send (RFC 6455 §7.4.1).
WS_FAIL_CODES = frozenset({1000, 1002, 1007, 1009, 1011})


def split(data: bytes, seed: int) -> list[bytes]:
    """``data`` cut into pieces of 1..8 bytes chosen by ``seed`` (a byte); seed 0: whole."""
    if seed == 0 or not data:
        return [data] if data else []
    pieces = []
    pos = 0
    state = seed
    while pos < len(data):
        state = (state * 1103515245 + 12345) & 0x7FFFFFFF
        size = 1 + (state >> 16) % 8
        pieces.append(data[pos : pos + size])
        pos += size
    return pieces


def retained(conn: HTTPConnection) -> int:
    """Bytes the engine holds between feeds (what an attacker could grow)."""
    total = len(conn._url) + len(conn._line) + len(conn._tail) + len(conn._pending or b"")
    total += sum(len(part) for part in conn._body_parts)
    total += sum(len(name) + len(value) for name, value in conn._fields)
    total += len(conn._size_line)
    return total


def feed_all(pieces: list[bytes], limits: Limits = FUZZ_LIMITS) -> tuple[list[Any], HTTPConnection]:
    conn = HTTPConnection(limits, client=("127.0.0.1", 1))
    events: list[Any] = []
    bound = limits.max_header_size + limits.max_body_size + RETAINED_SLACK
    for piece in pieces:
        out = conn.feed(piece)
        assert isinstance(out, list)
        events.extend(out)
        if not conn.is_dead:
            held = retained(conn)
            assert held <= bound + len(piece), f"engine holds {held} bytes"
    return events, conn


def describe(event: Any) -> tuple[Any, ...]:
    if isinstance(event, ProtocolError):
        return ("error", event.status)
    assert isinstance(event, Request), event
    return ("request", event.method, event.raw_path, event.query_string, event.http_version,
            event.keep_alive, event.body, list(event.headers.items()), event.upgrade)


def picture(events: list[Any], conn: HTTPConnection) -> tuple[Any, ...]:
    return ([describe(e) for e in events if not isinstance(e, ExpectContinue)],
            conn.upgrade_data, conn.is_dead, conn.in_request)


def check_events(events: list[Any]) -> None:
    for index, event in enumerate(events):
        assert isinstance(event, Request | ExpectContinue | ProtocolError), event
        if isinstance(event, ProtocolError):
            assert event.status in ALLOWED_STATUSES, (event.status, event.detail)
            assert index == len(events) - 1, events


def check_engine(data: bytes) -> list[Any]:
    """Run the engine invariants on ``data`` (first byte: the split); the events."""
    if not data:
        return []
    seed, body = data[0], data[1:]
    whole_events, whole = feed_all([body] if body else [])
    split_events, parts = feed_all(split(body, seed or 1))
    check_events(whole_events)
    check_events(split_events)
    assert picture(split_events, parts) == picture(whole_events, whole), body
    for event in whole_events:
        if isinstance(event, ProtocolError):
            assert whole.error_response(event).startswith(b"HTTP/1.1 %d " % event.status)
    return whole_events


def ws_session(deflate: bool) -> Session:
    extensions = negotiate_extensions(["permessage-deflate"])[1] if deflate else []
    return Session(WS_LIMIT, extensions)


def ws_run(pieces: list[bytes], deflate: bool) -> tuple[list[Any], bool, tuple[int, str] | None]:
    session = ws_session(deflate)
    messages: list[Any] = []
    eof = False
    for piece in pieces:
        messages.extend(session.receive(piece))
        if session.deferred:
            session.release()
        eof = session.data_to_send()[1] or eof
    for message in messages:
        assert isinstance(message, str | bytes)
        assert len(message) <= WS_LIMIT
    info = session.close_info() if session.closing else None
    return messages, eof, info


def check_ws(data: bytes) -> list[Any]:
    """Run the WebSocket session invariants on ``data`` (first byte: split and
    whether permessage-deflate is on); the messages."""
    if not data:
        return []
    seed, body = data[0], data[1:]
    deflate = bool(seed & 0x80)
    whole = ws_run([body], deflate)
    parts = ws_run(split(body, (seed & 0x7F) or 1), deflate)
    assert parts == whole, body
    info = whole[2]
    if info is not None:
        # A failure's code, or the code of a close frame the peer sent (1005: it sent none).
        assert info[0] in WS_FAIL_CODES or 3000 <= info[0] <= 4999 or info[0] in (
            1001, 1003, 1005, 1008, 1010, 1012, 1013, 1014), info
    return whole[0]
