"""The sans-I/O HTTP/1.1 engine, response side: framing, keep-alive decisions,
HEAD / 204 / 304 / 1xx, Date and Server, max requests, header safety. No sockets."""

from __future__ import annotations

import re

import pytest
from http_feed import TEST_LIMITS, request

from zzz.http import connection as engine
from zzz.http.connection import CONTINUE_RESPONSE, HTTPConnection, Limits, date_header
from zzz.http.request import Request
from zzz.http.response import Response

GET11 = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"


def split(wire: bytes) -> tuple[str, dict[str, list[str]], bytes]:
    """Status line, header fields (lower-case names) and body of a serialized response."""
    head, _, body = wire.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    fields: dict[str, list[str]] = {}
    for line in lines[1:]:
        name, _, value = line.partition(": ")
        fields.setdefault(name.lower(), []).append(value)
    return lines[0], fields, body


def respond(
    response: Response,
    raw: bytes = GET11,
    limits: Limits = TEST_LIMITS,
) -> tuple[HTTPConnection, str, dict[str, list[str]], bytes]:
    conn = HTTPConnection(limits)
    req = request(raw, limits)
    wire = conn.serialize(response, req)
    return (conn, *split(wire))


def test_plain_response_has_length_date_server_and_keeps_alive() -> None:
    conn, status, fields, body = respond(Response(200, [("Content-Type", "text/plain")], b"hi"))
    assert status == "HTTP/1.1 200 OK"
    assert fields["content-length"] == ["2"]
    assert fields["content-type"] == ["text/plain"]
    assert fields["server"] == ["zzz"]
    assert re.fullmatch(r"\w{3}, \d\d \w{3} \d{4} \d\d:\d\d:\d\d GMT", fields["date"][0])
    assert "connection" not in fields
    assert body == b"hi"
    assert conn.must_close is False
    assert conn.responses_sent == 1


def test_date_header_is_cached_within_a_second(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    real = engine.formatdate

    def counting(*args: object, **kwargs: object) -> str:
        calls.append(1)
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(engine, "formatdate", counting)
    monkeypatch.setattr(engine.time, "time", lambda: 1_700_000_000.25)
    first = date_header()
    assert date_header() == first
    monkeypatch.setattr(engine.time, "time", lambda: 1_700_000_000.75)
    assert date_header() == first
    monkeypatch.setattr(engine.time, "time", lambda: 1_700_000_001.0)
    second = date_header()
    assert second != first
    assert second == b"Date: Tue, 14 Nov 2023 22:13:21 GMT\r\n"
    assert len(calls) == 2


def test_request_connection_close_is_answered_with_close() -> None:
    conn, _, fields, _ = respond(
        Response(200, body=b"x"), b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    assert fields["connection"] == ["close"]
    assert conn.must_close


def test_handler_connection_close_closes() -> None:
    conn, _, fields, _ = respond(Response(200, [("Connection", "close")], b"x"))
    assert fields["connection"] == ["close"]
    assert conn.must_close


def test_handler_connection_keep_alive_is_not_copied() -> None:
    conn, _, fields, _ = respond(Response(200, [("Connection", "keep-alive")], b"x"))
    assert "connection" not in fields
    assert not conn.must_close


def test_http10_default_closes() -> None:
    conn, _, fields, _ = respond(Response(200, body=b"x"), b"GET / HTTP/1.0\r\n\r\n")
    assert fields["connection"] == ["close"]
    assert conn.must_close


def test_http10_keep_alive_is_confirmed() -> None:
    """A 1.0 client assumes close unless the response says keep-alive."""
    conn, _, fields, _ = respond(
        Response(200, body=b"x"), b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"
    )
    assert fields["connection"] == ["keep-alive"]
    assert not conn.must_close


def test_close_after_response_during_shutdown() -> None:
    conn = HTTPConnection(TEST_LIMITS)
    conn.close_after_response = True
    _, fields, _ = split(conn.serialize(Response(200), request(GET11)))
    assert fields["connection"] == ["close"]
    assert conn.must_close


def test_response_without_request_closes() -> None:
    conn = HTTPConnection(TEST_LIMITS)
    _, fields, _ = split(conn.serialize(Response(408), None))
    assert fields["connection"] == ["close"]
    assert conn.must_close


def test_max_requests_the_last_response_says_close() -> None:
    conn = HTTPConnection(Limits(max_requests=3))
    (*events,) = conn.feed(GET11 * 3)
    closes = []
    for req in events:
        assert isinstance(req, Request)
        _, fields, _ = split(conn.serialize(Response(200, body=b"ok"), req))
        closes.append((fields.get("connection"), conn.must_close))
    assert closes == [(None, False), (None, False), (["close"], True)]
    assert conn.responses_sent == 3


def test_engine_owned_headers_from_the_handler_are_dropped() -> None:
    _, _, fields, body = respond(
        Response(
            200,
            [
                ("Content-Length", "999"),
                ("Transfer-Encoding", "chunked"),
                ("Server", "other"),
                ("Date", "yesterday"),
                ("X-Kept", "1"),
            ],
            b"abc",
        )
    )
    assert fields["content-length"] == ["3"]
    assert "transfer-encoding" not in fields
    assert fields["server"] == ["zzz"]
    assert len(fields["date"]) == 1
    assert fields["x-kept"] == ["1"]
    assert body == b"abc"


def test_repeated_handler_headers_are_kept_in_order() -> None:
    _, _, fields, _ = respond(Response(200, [("Set-Cookie", "a=1"), ("Set-Cookie", "b=2")]))
    assert fields["set-cookie"] == ["a=1", "b=2"]


def test_head_has_length_but_no_body() -> None:
    conn, _, fields, body = respond(
        Response(200, body=b"hello"), b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n"
    )
    assert fields["content-length"] == ["5"]
    assert body == b""
    assert not conn.must_close


@pytest.mark.parametrize("status", [204, 304, 100, 101, 103])
def test_no_body_statuses(status: int) -> None:
    conn, line, fields, body = respond(Response(status, body=b"ignored"))
    assert line.startswith(f"HTTP/1.1 {status} ")
    assert "content-length" not in fields
    assert "transfer-encoding" not in fields
    assert body == b""
    assert conn.chunk(b"data") == b""
    assert conn.end() == b""


def test_no_body_status_with_stream_sends_nothing_for_chunks() -> None:
    conn, _, fields, body = respond(Response(204, stream=iter([b"x"])))
    assert "transfer-encoding" not in fields
    assert body == b""
    assert conn.chunk(b"x") == b""
    assert conn.end() == b""


def test_stream_on_http11_is_chunked() -> None:
    conn, _, fields, body = respond(Response(200, stream=iter([b"a"])))
    assert fields["transfer-encoding"] == ["chunked"]
    assert "content-length" not in fields
    assert body == b""
    assert conn.chunk(b"hello") == b"5\r\nhello\r\n"
    assert conn.chunk(b"x" * 26) == b"1a\r\n" + b"x" * 26 + b"\r\n"
    assert conn.chunk(b"") == b""  # an empty chunk would end the body early
    assert conn.end() == b"0\r\n\r\n"
    assert not conn.must_close


def test_stream_on_http10_is_close_delimited() -> None:
    conn, _, fields, _ = respond(
        Response(200, stream=iter([b"a"])), b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"
    )
    assert "transfer-encoding" not in fields
    assert "content-length" not in fields
    assert fields["connection"] == ["close"]
    assert conn.must_close
    assert conn.chunk(b"hello") == b"hello"
    assert conn.end() == b""


def test_stream_to_head_sends_no_chunks() -> None:
    conn, _, fields, body = respond(
        Response(200, stream=iter([b"a"])), b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n"
    )
    assert fields["transfer-encoding"] == ["chunked"]
    assert body == b""
    assert conn.chunk(b"hello") == b""
    assert conn.end() == b""
    assert not conn.must_close


def test_stream_to_http10_head_keeps_alive() -> None:
    conn, _, _, _ = respond(
        Response(200, stream=iter([b"a"])),
        b"HEAD / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
    )
    assert not conn.must_close
    assert conn.chunk(b"x") == b""


def test_body_response_after_stream_resets_chunking() -> None:
    conn = HTTPConnection(TEST_LIMITS)
    req = request(GET11)
    conn.serialize(Response(200, stream=iter([])), req)
    conn.serialize(Response(200, body=b"x"), req)
    assert conn.chunk(b"late") == b""
    assert conn.end() == b""


def test_unknown_status_code() -> None:
    _, line, _, _ = respond(Response(599, body=b""))
    assert line == "HTTP/1.1 599 "


def test_continue_response_constant() -> None:
    assert CONTINUE_RESPONSE == b"HTTP/1.1 100 Continue\r\n\r\n"


UPGRADE = (
    b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"
)


def test_upgrade_response_keeps_connection_header_and_stays_open() -> None:
    response = Response(101, [("Upgrade", "websocket"), ("Connection", "Upgrade")])
    response.upgrade = object()
    conn, line, fields, _ = respond(response, UPGRADE)
    assert line == "HTTP/1.1 101 Switching Protocols"
    assert fields["connection"] == ["Upgrade"]
    assert not conn.must_close


def test_refused_upgrade_closes() -> None:
    conn, _, fields, _ = respond(Response(400, body=b"no"), UPGRADE)
    assert fields["connection"] == ["close"]
    assert conn.must_close


@pytest.mark.parametrize(
    "header",
    [
        ("Location", "/a\r\nSet-Cookie: evil=1"),
        ("Location", "/a\nX: y"),
        ("Location", "/a\rX: y"),
        ("X-A", "a\x00b"),
        ("Bad Name", "v"),
        ("Bad:Name", "v"),
        ("", "v"),
        ("X-A\r\nInjected", "v"),
        ("X-Unicode", "\u4e2d"),
    ],
)
def test_unsafe_response_header_becomes_500(header: tuple[str, str]) -> None:
    conn, line, fields, body = respond(Response(302, [header], b"moved"))
    assert line == "HTTP/1.1 500 Internal Server Error"
    assert "location" not in fields
    assert "set-cookie" not in fields
    assert "injected" not in str(fields).lower()
    assert fields["content-length"] == [str(len(body))]
    assert fields["connection"] == ["close"]
    assert conn.must_close


def test_tab_and_latin1_in_response_values_are_fine() -> None:
    _, line, fields, _ = respond(Response(200, [("X-A", "a\tb"), ("X-B", "caf\u00e9")]))
    assert line == "HTTP/1.1 200 OK"
    assert fields["x-a"] == ["a\tb"]
    assert fields["x-b"] == ["caf\u00e9"]
