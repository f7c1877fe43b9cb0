"""Interop gaps of the HTTP engine (issue 12 §2), each checked under every chunking.

* Chunk extensions with optional whitespace (RFC 9112 §7.1.1) are accepted and
  ignored; bare CR, LF and control bytes inside them stay refused.
* Trailer fields RFC 9110 §6.5.1 forbids are a 400; so is a second Content-Type.
* Extension methods (any token) reach the application with their real name,
  whether llhttp knows them (PURGE) or not (FROB); non-tokens stay 400.
"""

from __future__ import annotations

import pytest
from http_feed import error_status, parse, request

HEAD_CHUNKED = b"POST /p HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"

VALID_EXTENSIONS = {
    "bws after semicolon": b"5; name=value",
    "bws around semicolons": b'5 ; a ; b="q"',
    "bws around equals": b"5;a = b",
    "tab": b"5\t;\ta",
    "quoted pair": b'5;a="x\\"y"',
    "quoted with space": b'5;a="x y"',
    "several": b"5;a;b=1;c=\"2\"",
    "no extension": b"5",
}


@pytest.mark.parametrize("name", list(VALID_EXTENSIONS))
def test_chunk_extensions_are_accepted_and_ignored(name: str) -> None:
    line = VALID_EXTENSIONS[name]
    req = request(HEAD_CHUNKED + line + b"\r\nhello\r\n0" + line[1:] + b"\r\n\r\n")
    assert req.body == b"hello"


def test_chunk_extension_on_every_chunk_and_pipelined_after() -> None:
    body = b"3 ; x\r\nabc\r\n2; y=z\r\nde\r\n0 ;last\r\n\r\n"
    parsed = parse(HEAD_CHUNKED + body + b"GET /next HTTP/1.1\r\nHost: x\r\n\r\n")
    assert parsed.status is None
    assert [r.raw_path for r in parsed.requests] == ["/p", "/next"]
    assert parsed.requests[0].body == b"abcde"


INVALID_EXTENSIONS = {
    "bare cr": b"5;a\rb\r\n",
    "bare lf": b"5;a\n",
    "control byte": b"5;a\x01\r\n",
    "nul in value": b"5;a=b\x00\r\n",
    "del": b"5;a\x7f\r\n",
    "unterminated quote": b'5;a="x\r\n',
    "empty name": b"5;=b\r\n",
    "empty value": b"5;a=\r\n",
    "trailing space": b"5;a \r\n",
    "space after size only": b"5 \r\n",
    "lf in quoted": b'5;a="x\ny"\r\n',
    "no size": b";a\r\n",
}


@pytest.mark.parametrize("name", list(INVALID_EXTENSIONS))
def test_malformed_chunk_lines_stay_refused(name: str) -> None:
    data = HEAD_CHUNKED + INVALID_EXTENSIONS[name] + b"hello\r\n0\r\n\r\n"
    assert error_status(data) == 400


def test_chunk_size_overflow_with_leading_zeros_is_fine_until_17_digits() -> None:
    assert request(HEAD_CHUNKED + b"0000000000000000005\r\nhello\r\n0\r\n\r\n").body == b"hello"
    assert error_status(HEAD_CHUNKED + b"10000000000000000\r\nhello\r\n0\r\n\r\n") == 400


FORBIDDEN_TRAILERS = (
    "Host", "Content-Length", "Transfer-Encoding", "Content-Type", "Authorization",
    "Proxy-Authorization", "Cookie", "Set-Cookie", "Trailer", "Connection", "TE",
    "Cache-Control", "If-Match", "Range", "Content-Encoding", "Max-Forwards",
)  # fmt: skip


@pytest.mark.parametrize("field", FORBIDDEN_TRAILERS)
def test_forbidden_trailer_field_is_400(field: str) -> None:
    trailer = f"{field.lower()}: v\r\n".encode()
    assert error_status(HEAD_CHUNKED + b"3\r\nabc\r\n0\r\n" + trailer + b"\r\n") == 400


def test_allowed_trailer_fields_are_ignored() -> None:
    req = request(HEAD_CHUNKED + b"3\r\nabc\r\n0\r\nServer-Timing: a\r\nX-Digest: d\r\n\r\n")
    assert req.body == b"abc"
    assert "server-timing" not in req.headers


def test_repeated_content_type_is_400() -> None:
    head = b"GET / HTTP/1.1\r\nHost: x\r\nContent-Type: a/b\r\n"
    assert error_status(head + b"content-type: a/b\r\n\r\n") == 400
    assert request(head + b"\r\n").headers.get("content-type") == "a/b"


EXTENSION_METHODS = (
    "PURGE", "REPORT", "MKCALENDAR", "LINK", "FROB", "get", "DESCRIBE", "M-SEARCH",
    "X" * 32, "A!#$%&'*+-.^_`|~9",
)  # fmt: skip


@pytest.mark.parametrize("method", EXTENSION_METHODS)
def test_extension_method_reaches_the_application(method: str) -> None:
    head = f"{method} /p?q=1 HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc".encode()
    parsed = parse(head + b"GET /2 HTTP/1.1\r\nHost: x\r\n\r\n")
    assert parsed.status is None
    first, second = parsed.requests
    assert (first.method, first.path, first.query_string, first.body) == (method, "/p", "q=1", b"abc")
    assert (second.method, second.path) == ("GET", "/2")


def test_extension_method_with_upgrade_keeps_exact_upgrade_bytes() -> None:
    parsed = parse(b"FROB / HTTP/1.1\r\nHost: x\r\nConnection: upgrade\r\nUpgrade: x\r\n\r\n\x81\x00")
    (req,) = parsed.requests
    assert req.method == "FROB" and req.upgrade
    assert parsed.conn.upgrade_data == b"\x81\x00"


@pytest.mark.parametrize(
    "line",
    [b"X" * 33 + b" / HTTP/1.1", b"G(T / HTTP/1.1", b"FOO\t/ HTTP/1.1", b"\x01\x02 / HTTP/1.1"],
)
def test_non_token_methods_stay_400(line: bytes) -> None:
    assert error_status(line + b"\r\nHost: x\r\n\r\n") == 400


def test_extension_method_keeps_version_and_host_checks() -> None:
    assert error_status(b"FROB / HTTP/1.2\r\nHost: x\r\n\r\n") == 505
    assert error_status(b"FROB / HTTP/1.1\r\n\r\n") == 400


def test_many_pipelined_extension_methods_in_one_read() -> None:
    """Each one is replayed; the replays must not nest (a deep pipeline in one read
    would otherwise hit the recursion limit)."""
    from zzz.http.connection import HTTPConnection, Limits
    from zzz.http.request import Request

    count = 3000
    conn = HTTPConnection(Limits(max_requests=count))
    events = conn.feed(b"FROB / HTTP/1.1\r\nHost: x\r\n\r\n" * count)
    assert len(events) == count
    assert all(isinstance(e, Request) and e.method == "FROB" for e in events)
