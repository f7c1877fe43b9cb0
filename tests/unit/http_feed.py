"""Feed helpers for the HTTP engine tests: every parse runs under several chunkings.

:func:`parse` feeds the same bytes whole, one byte at a time and in a few
random splits (fixed seeds), and asserts that every chunking gives the same
events, error status, upgrade bytes and final state, so no test can forget the
byte-at-a-time case. ``ExpectContinue`` is left out of that comparison because
whether a client is still waiting legitimately depends on how its bytes arrived;
the 100-continue tests check it with explicit feeds.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from zzz.http.connection import ExpectContinue, HTTPConnection, Limits, ProtocolError
from zzz.http.request import Request

#: Seeds of the random chunkings each parse also runs (fixed: failures reproduce).
RANDOM_SPLIT_SEEDS = (1, 2, 3)
#: Small limits so the limit tests stay small; tests that need others pass their own.
TEST_LIMITS = Limits(max_body_size=100, max_header_size=256, max_requests=100)


def chunkings(data: bytes) -> dict[str, list[bytes]]:
    """The named ways ``data`` is split into ``feed`` calls."""
    ways: dict[str, list[bytes]] = {
        "whole": [data],
        "bytes": [data[i : i + 1] for i in range(len(data))],
    }
    for seed in RANDOM_SPLIT_SEEDS:
        rng = random.Random(seed)
        pieces = []
        pos = 0
        while pos < len(data):
            size = rng.randint(1, 7)
            pieces.append(data[pos : pos + size])
            pos += size
        ways[f"random{seed}"] = pieces
    return ways


def describe(event: object) -> tuple[Any, ...]:
    """A comparable picture of one event."""
    if isinstance(event, ProtocolError):
        return ("error", event.status)
    if isinstance(event, ExpectContinue):
        return ("100-continue", event.request.raw_path)
    assert isinstance(event, Request)
    return (
        "request",
        event.method,
        event.raw_path,
        event.path,
        event.query_string,
        event.http_version,
        event.keep_alive,
        event.body,
        list(event.headers.items()),
        event.upgrade,
    )


@dataclass
class Parsed:
    """What one chunking produced."""

    events: list[object]
    conn: HTTPConnection

    @property
    def requests(self) -> list[Request]:
        return [e for e in self.events if isinstance(e, Request)]

    @property
    def errors(self) -> list[ProtocolError]:
        return [e for e in self.events if isinstance(e, ProtocolError)]

    @property
    def status(self) -> int | None:
        """The error status, or None when no error was reported."""
        errors = self.errors
        return errors[0].status if errors else None

    def picture(self) -> tuple[Any, ...]:
        return (
            [describe(e) for e in self.events if not isinstance(e, ExpectContinue)],
            self.conn.upgrade_data,
            self.conn.is_dead,
            self.conn.in_request,
        )


def feed_pieces(pieces: list[bytes], limits: Limits = TEST_LIMITS) -> Parsed:
    conn = HTTPConnection(limits, client=("127.0.0.1", 5000))
    events: list[object] = []
    for piece in pieces:
        events.extend(conn.feed(piece))
    return Parsed(events, conn)


def parse(data: bytes, limits: Limits = TEST_LIMITS) -> Parsed:
    """Parse ``data`` under every chunking; assert they agree; return the whole-buffer result."""
    results = {name: feed_pieces(pieces, limits) for name, pieces in chunkings(data).items()}
    whole = results["whole"]
    expected = whole.picture()
    for name, result in results.items():
        assert result.picture() == expected, f"chunking {name!r} differs from whole-buffer"
    # An error is always the last event and nothing follows it.
    for result in results.values():
        for index, event in enumerate(result.events):
            if isinstance(event, ProtocolError):
                assert index == len(result.events) - 1
    return whole


def error_status(data: bytes, limits: Limits = TEST_LIMITS) -> int | None:
    """The status of the error ``data`` provokes (under every chunking), or None."""
    parsed = parse(data, limits)
    if parsed.status is not None:
        assert parsed.conn.is_dead
        assert parsed.conn.feed(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n") == []
    return parsed.status


def request(data: bytes, limits: Limits = TEST_LIMITS) -> Request:
    """The single request ``data`` holds (under every chunking)."""
    parsed = parse(data, limits)
    assert parsed.status is None, f"unexpected error {parsed.errors}"
    assert len(parsed.requests) == 1
    return parsed.requests[0]
