"""The sans-I/O HTTP/1.1 engine, request side: framing, keep-alive, pipelining,
targets, headers, upgrade, limits and strict parsing. No sockets.

Every test goes through :func:`http_feed.parse` (directly or via ``request`` /
``error_status``), which runs the input whole, byte by byte and in random
splits and asserts the results agree.
"""

from __future__ import annotations

import pytest
from http_feed import TEST_LIMITS, chunkings, error_status, feed_pieces, parse, request

from zzz.http.connection import ExpectContinue, HTTPConnection, Limits, ProtocolError
from zzz.http.headers import Headers
from zzz.http.request import Request
from zzz.http.response import Response

GET = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"


def post(body: bytes, *fields: bytes, version: bytes = b"1.1") -> bytes:
    head = b"POST /p HTTP/" + version + b"\r\nHost: x\r\n" + b"".join(f + b"\r\n" for f in fields)
    return head + b"\r\n" + body


def chunked(body_wire: bytes, *fields: bytes) -> bytes:
    return post(body_wire, b"Transfer-Encoding: chunked", *fields)


# ---------------------------------------------------------------------- the helper itself


def test_chunkings_cover_whole_bytes_and_random_splits() -> None:
    ways = chunkings(b"abcdefghij" * 3)
    assert ways["whole"] == [b"abcdefghij" * 3]
    assert ways["bytes"] == [bytes([c]) for c in b"abcdefghij" * 3]
    assert {"random1", "random2", "random3"} <= set(ways)
    for pieces in ways.values():
        assert b"".join(pieces) == b"abcdefghij" * 3


def test_parse_detects_a_chunking_dependent_result() -> None:
    """The equality check must be able to fail: ExpectContinue aside, a request
    whose body is cut off by the split would differ."""
    data = post(b"abc", b"Content-Length: 3")
    whole = feed_pieces([data])
    partial = feed_pieces([data[:-1]])
    assert whole.picture() != partial.picture()


# ---------------------------------------------------------------------- basic requests


def test_simple_get() -> None:
    req = request(b"GET /hello?x=1 HTTP/1.1\r\nHost: example.com\r\nUser-Agent: t\r\n\r\n")
    assert req.method == "GET"
    assert req.path == "/hello"
    assert req.raw_path == "/hello"
    assert req.query_string == "x=1"
    assert req.http_version == "1.1"
    assert req.keep_alive is True
    assert req.body == b""
    assert req.headers.get("host") == "example.com"
    assert req.client == ("127.0.0.1", 5000)
    assert req.scheme == "http"
    assert req.upgrade is False
    assert req.expect_continue is False


def test_scheme_is_passed_through() -> None:
    conn = HTTPConnection(TEST_LIMITS, scheme="https")
    (req,) = conn.feed(GET)
    assert isinstance(req, type(request(GET)))
    assert req.scheme == "https"


def test_in_request_tracks_a_partial_request() -> None:
    conn = HTTPConnection(TEST_LIMITS)
    assert conn.in_request is False
    assert conn.feed(GET[:5]) == []
    assert conn.in_request is True
    (req,) = conn.feed(GET[5:])
    assert req.path == "/"
    assert conn.in_request is False


def test_compact_drops_the_parser_only_between_requests() -> None:
    conn = HTTPConnection(TEST_LIMITS)
    assert conn.compact() is True  # fresh: nothing to lose
    assert conn.compact() is False  # already compact
    assert conn.feed(GET[:9]) == []
    assert conn.compact() is False  # mid-head: the parser holds the request line
    (first,) = conn.feed(GET[9:] + b"POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\nab")
    assert first.path == "/"
    assert conn.compact() is False  # mid-body
    (second,) = conn.feed(b"cd")
    assert second.body == b"abcd"
    assert conn.compact() is True
    # A fresh parser takes the next request exactly as the old one would have.
    (third,) = conn.feed(b"GET /again?x=1 HTTP/1.0\r\n\r\n")
    assert (third.path, third.query_string, third.http_version) == ("/again", "x=1", "1.0")
    assert third.keep_alive is False
    assert conn.compact() is False  # HTTP/1.0 without keep-alive: past its last request


def test_eof_makes_the_connection_dead() -> None:
    conn = HTTPConnection(TEST_LIMITS)
    assert conn.feed(b"") == []
    assert conn.is_dead
    assert conn.feed(GET) == []


def test_eof_in_the_middle_of_a_request() -> None:
    conn = HTTPConnection(TEST_LIMITS)
    conn.feed(GET[:10])
    assert conn.feed(b"") == []
    assert conn.is_dead
    assert conn.in_request is False


def test_leading_empty_lines_are_ignored() -> None:
    assert request(b"\r\n\r\n" + GET).path == "/"


@pytest.mark.parametrize(
    "method",
    [b"GET", b"HEAD", b"POST", b"PUT", b"DELETE", b"OPTIONS", b"PATCH", b"TRACE", b"PROPFIND"],
)
def test_known_methods(method: bytes) -> None:
    assert request(method + b" / HTTP/1.1\r\nHost: x\r\n\r\n").method == method.decode()


# ---------------------------------------------------------------------- keep-alive


def test_http11_keeps_alive_by_default() -> None:
    assert request(GET).keep_alive is True


def test_http11_connection_close() -> None:
    assert request(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").keep_alive is False


def test_http10_closes_by_default() -> None:
    req = request(b"GET / HTTP/1.0\r\n\r\n")
    assert req.http_version == "1.0"
    assert req.keep_alive is False


def test_http10_keep_alive_opt_in() -> None:
    assert request(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n").keep_alive is True


def test_http10_with_host_is_fine() -> None:
    assert request(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n").http_version == "1.0"


def test_nothing_is_parsed_after_a_close_request() -> None:
    """RFC 9112 §9.6: no further requests are processed (and no error is raised
    for the bytes that follow: the connection closes after the response)."""
    parsed = parse(b"GET /a HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" + GET + b"garbage")
    assert [r.raw_path for r in parsed.requests] == ["/a"]
    assert parsed.status is None
    assert parsed.conn.in_request is False


def test_http10_request_without_length_has_no_body() -> None:
    parsed = parse(b"POST / HTTP/1.0\r\n\r\nabc")
    assert [r.body for r in parsed.requests] == [b""]
    assert parsed.status is None


# ---------------------------------------------------------------------- pipelining


def test_pipelined_requests_come_back_in_order() -> None:
    data = (
        b"GET /1 HTTP/1.1\r\nHost: x\r\n\r\n"
        + post(b"hello", b"Content-Length: 5").replace(b"/p", b"/2")
        + chunked(b"2\r\nab\r\n0\r\n\r\n").replace(b"/p", b"/3")
        + b"HEAD /4 HTTP/1.1\r\nHost: x\r\n\r\n"
        + b"DELETE /5 HTTP/1.1\r\nHost: x\r\n\r\n"
    )
    parsed = parse(data)
    assert [(r.method, r.path, r.body) for r in parsed.requests] == [
        ("GET", "/1", b""),
        ("POST", "/2", b"hello"),
        ("POST", "/3", b"ab"),
        ("HEAD", "/4", b""),
        ("DELETE", "/5", b""),
    ]
    assert parsed.status is None
    assert parsed.conn.in_request is False


def test_pipelined_request_after_a_body_containing_blank_lines() -> None:
    body = b"\r\n\r\nGET /x HTTP/1.1\r\n\r\n"
    data = post(body, b"Content-Length: %d" % len(body)) + GET
    parsed = parse(data)
    assert [r.body for r in parsed.requests] == [body, b""]


def test_many_pipelined_requests_in_one_feed() -> None:
    conn = HTTPConnection(Limits(max_requests=1000))
    events = conn.feed(GET * 200)
    assert len(events) == 200
    assert all(not isinstance(e, ProtocolError) for e in events)


def test_partial_second_request_waits() -> None:
    parsed = parse(GET + b"GET /b HTTP/1.1\r\nHo")
    assert len(parsed.requests) == 1
    assert parsed.conn.in_request is True


# ---------------------------------------------------------------------- bodies


def test_content_length_body() -> None:
    assert request(post(b"hello", b"Content-Length: 5")).body == b"hello"


def test_content_length_zero() -> None:
    assert request(post(b"", b"Content-Length: 0")).body == b""


def test_content_length_body_waits_for_all_bytes() -> None:
    parsed = parse(post(b"hel", b"Content-Length: 5"))
    assert parsed.requests == []
    assert parsed.conn.in_request is True


def test_body_at_the_limit_is_accepted() -> None:
    body = b"x" * TEST_LIMITS.max_body_size
    assert request(post(body, b"Content-Length: %d" % len(body))).body == body


def test_chunked_body() -> None:
    req = request(chunked(b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"))
    assert req.body == b"hello world"


def test_chunked_body_with_extensions() -> None:
    req = request(chunked(b"5;name=value\r\nhello\r\n0;x=y\r\n\r\n"))
    assert req.body == b"hello"


def test_chunked_uppercase_hex_and_coding_name() -> None:
    body = b"A\r\n0123456789\r\n0\r\n\r\n"
    req = request(post(body, b"Transfer-Encoding: Chunked"))
    assert req.body == b"0123456789"


def test_chunked_data_containing_crlf_crlf() -> None:
    req = request(chunked(b"8\r\n\r\n\r\nab\r\n\r\n0\r\n\r\n"))
    assert req.body == b"\r\n\r\nab\r\n"


def test_trailers_are_ignored_and_never_become_headers() -> None:
    req = request(chunked(b"3\r\nabc\r\n0\r\nX-Trailer: 1\r\nX-Other: evil\r\n\r\n"))
    assert req.body == b"abc"
    assert "x-trailer" not in req.headers
    assert req.headers.get_all("host") == ["x"]


def test_chunked_body_counted_as_it_arrives() -> None:
    body = b"40\r\n" + b"a" * 64 + b"\r\n40\r\n" + b"b" * 64 + b"\r\n0\r\n\r\n"
    assert error_status(chunked(body)) == 413


def test_chunked_413_before_the_body_ends() -> None:
    """The limit trips as bytes arrive, not at the end of the body."""
    conn = HTTPConnection(TEST_LIMITS)
    assert conn.feed(chunked(b"")) == []
    events = conn.feed(b"ff\r\n" + b"a" * 101)
    assert [e.status for e in events if isinstance(e, ProtocolError)] == [413]


def test_content_length_over_limit_is_413_before_the_body() -> None:
    assert error_status(post(b"", b"Content-Length: 101")) == 413


def test_endless_chunk_extension_fed_in_pieces_is_bounded() -> None:
    conn = HTTPConnection(TEST_LIMITS)
    conn.feed(chunked(b"5;ext="))
    events: list[object] = []
    for _ in range(200):
        events += conn.feed(b"a" * 16)
        if events:
            break
    assert [e.status for e in events if isinstance(e, ProtocolError)] == [431]


def test_endless_trailer_fed_in_pieces_is_bounded() -> None:
    """httptools buffers a trailer field whole, so it must not grow without bound.
    (Only meaningful in pieces: one feed is bounded by its own size.)"""
    conn = HTTPConnection(TEST_LIMITS)
    conn.feed(chunked(b"3\r\nabc\r\n0\r\nX-T: "))
    events: list[object] = []
    for _ in range(200):
        events += conn.feed(b"v" * 16)
        if events:
            break
    assert [e.status for e in events if isinstance(e, ProtocolError)] == [431]
    assert conn.is_dead


def test_many_small_chunks_are_fine() -> None:
    body = b"1\r\na\r\n" * 90 + b"0\r\n\r\n"
    assert request(chunked(body)).body == b"a" * 90


# ---------------------------------------------------------------------- 100-continue


EXPECT = post(b"", b"Content-Length: 3", b"Expect: 100-continue")


def test_expect_continue_when_the_body_has_not_arrived() -> None:
    conn = HTTPConnection(TEST_LIMITS)
    events = conn.feed(EXPECT)
    assert len(events) == 1
    assert isinstance(events[0], ExpectContinue)
    assert events[0].request.expect_continue is True
    assert events[0].request.path == "/p"
    assert conn.in_request is True
    (req,) = conn.feed(b"abc")
    assert req is events[0].request
    assert req.body == b"abc"


def test_expect_continue_head_fed_byte_by_byte() -> None:
    conn = HTTPConnection(TEST_LIMITS)
    events: list[object] = []
    for i in range(len(EXPECT)):
        events += conn.feed(EXPECT[i : i + 1])
    assert [type(e) for e in events] == [ExpectContinue]
    assert [type(e) for e in conn.feed(b"abc")] == [type(events[0].request)]  # type: ignore[attr-defined]


def test_no_expect_continue_when_the_body_came_in_the_same_feed() -> None:
    conn = HTTPConnection(TEST_LIMITS)
    events = conn.feed(EXPECT + b"abc")
    assert len(events) == 1
    assert not isinstance(events[0], ExpectContinue)
    assert events[0].body == b"abc"  # type: ignore[union-attr]


def test_no_expect_continue_when_part_of_the_body_came() -> None:
    conn = HTTPConnection(TEST_LIMITS)
    assert conn.feed(EXPECT + b"a") == []
    (req,) = conn.feed(b"bc")
    assert req.body == b"abc"  # type: ignore[union-attr]


def test_expect_continue_all_chunkings_agree_on_the_request() -> None:
    parsed = parse(EXPECT + b"abc")
    assert parsed.requests[0].body == b"abc"
    assert parsed.requests[0].expect_continue is True


def test_expect_continue_over_limit_is_413_without_100() -> None:
    conn = HTTPConnection(TEST_LIMITS)
    events = conn.feed(post(b"", b"Content-Length: 1000", b"Expect: 100-continue"))
    assert [type(e) for e in events] == [ProtocolError]
    assert events[0].status == 413  # type: ignore[union-attr]
    assert error_status(post(b"", b"Content-Length: 1000", b"Expect: 100-continue")) == 413


def test_expect_continue_with_chunked_body() -> None:
    conn = HTTPConnection(TEST_LIMITS)
    events = conn.feed(chunked(b"", b"Expect: 100-continue"))
    assert [type(e) for e in events] == [ExpectContinue]
    (req,) = conn.feed(b"1\r\nz\r\n0\r\n\r\n")
    assert req.body == b"z"  # type: ignore[union-attr]


def test_no_expect_continue_without_a_body() -> None:
    conn = HTTPConnection(TEST_LIMITS)
    events = conn.feed(b"GET / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n\r\n")
    assert [type(e).__name__ for e in events] == ["Request"]


def test_expect_ignored_on_http10() -> None:
    conn = HTTPConnection(TEST_LIMITS)
    events = conn.feed(post(b"", b"Content-Length: 3", b"Expect: 100-continue", version=b"1.0"))
    assert events == []


def test_unknown_expectation_is_417() -> None:
    assert error_status(post(b"abc", b"Content-Length: 3", b"Expect: something")) == 417


# ---------------------------------------------------------------------- targets


def test_percent_decoding_keeps_raw_path() -> None:
    req = request(b"GET /a%20b/%C3%A9?q=%20x&y HTTP/1.1\r\nHost: x\r\n\r\n")
    assert req.path == "/a b/\u00e9"
    assert req.raw_path == "/a%20b/%C3%A9"
    assert req.query_string == "q=%20x&y"


def test_invalid_percent_escape_is_left_as_is() -> None:
    assert request(b"GET /a%zz HTTP/1.1\r\nHost: x\r\n\r\n").path == "/a%zz"


def test_percent_encoded_nul_is_refused() -> None:
    assert error_status(b"GET /a%00b HTTP/1.1\r\nHost: x\r\n\r\n") == 400


def test_fragment_is_refused() -> None:
    assert error_status(b"GET /a#frag HTTP/1.1\r\nHost: x\r\n\r\n") == 400


def test_empty_query() -> None:
    req = request(b"GET /a? HTTP/1.1\r\nHost: x\r\n\r\n")
    assert (req.path, req.query_string) == ("/a", "")


def test_absolute_form_target() -> None:
    req = request(b"GET http://example.com:8080/a/b?c=d HTTP/1.1\r\nHost: example.com\r\n\r\n")
    assert req.path == "/a/b"
    assert req.query_string == "c=d"


def test_absolute_form_without_path_is_root() -> None:
    req = request(b"GET https://example.com?x HTTP/1.1\r\nHost: example.com\r\n\r\n")
    assert (req.path, req.query_string) == ("/", "x")


def test_absolute_form_scheme_is_case_insensitive() -> None:
    assert request(b"GET HTTP://example.com/z HTTP/1.1\r\nHost: e\r\n\r\n").path == "/z"


def test_options_asterisk() -> None:
    req = request(b"OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n")
    assert (req.method, req.path) == ("OPTIONS", "*")


@pytest.mark.parametrize(
    "target",
    [b"*", b"example.com/a", b"ftp://example.com/a", b"http://"],
)
def test_invalid_targets(target: bytes) -> None:
    assert error_status(b"GET " + target + b" HTTP/1.1\r\nHost: x\r\n\r\n") == 400


# ---------------------------------------------------------------------- headers


def test_headers_multi_dict() -> None:
    req = request(
        b"GET / HTTP/1.1\r\nHost: x\r\nAccept: a\r\nX-Multi: 1\r\nx-multi: 2\r\nX-MULTI: 3\r\n\r\n"
    )
    h = req.headers
    assert h.get("x-multi") == "1"
    assert h.get("X-Multi") == "1"
    assert h.get_all("X-MULTI") == ["1", "2", "3"]
    assert h.get_all("absent") == []
    assert h.get("absent") is None
    assert h.get("absent", "d") == "d"
    assert list(h.items()) == [
        ("Host", "x"),
        ("Accept", "a"),
        ("X-Multi", "1"),
        ("x-multi", "2"),
        ("X-MULTI", "3"),
    ]
    assert h["ACCEPT"] == "a"
    assert "accept" in h
    assert "nope" not in h
    assert len(h) == 5
    with pytest.raises(KeyError):
        h["nope"]


def test_headers_add_invalidates_the_index() -> None:
    h = Headers([("A", "1")])
    assert h.get("a") == "1"
    h.add("a", "2")
    assert h.get_all("A") == ["1", "2"]


def test_header_value_whitespace_is_trimmed() -> None:
    req = request(b"GET / HTTP/1.1\r\nHost:   x  \r\nX-A:\tb c\t\r\nX-E:\r\n\r\n")
    assert req.headers.get("host") == "x"
    assert req.headers.get("x-a") == "b c"
    assert req.headers.get("x-e") == ""


def test_obs_text_in_values_is_latin1() -> None:
    req = request(b"GET / HTTP/1.1\r\nHost: x\r\nX-A: caf\xe9\r\n\r\n")
    assert req.headers.get("x-a") == "caf\u00e9"


# ---------------------------------------------------------------------- upgrade / CONNECT

UPGRADE = (
    b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)


def test_upgrade_request_and_following_bytes() -> None:
    parsed = parse(UPGRADE + b"\x81\x85frame" + GET)
    (req,) = parsed.requests
    assert req.upgrade is True
    assert req.path == "/ws"
    assert parsed.conn.upgrade_data == b"\x81\x85frame" + GET
    assert parsed.conn.is_dead
    assert parsed.status is None


def test_upgrade_without_following_bytes() -> None:
    parsed = parse(UPGRADE)
    assert parsed.requests[0].upgrade is True
    assert parsed.conn.upgrade_data == b""


def test_upgrade_after_a_pipelined_request() -> None:
    parsed = parse(GET + UPGRADE + b"xyz")
    assert [r.upgrade for r in parsed.requests] == [False, True]
    assert parsed.conn.upgrade_data == b"xyz"


def test_plain_request_is_not_upgrade() -> None:
    assert request(b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\r\n").upgrade is False


def test_connect_is_501() -> None:
    assert error_status(b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n") == 501
    assert error_status(b"CONNECT example.com:443 HTTP/1.1\r\nHost: e\r\n\r\nTLS") == 501


# ---------------------------------------------------------------------- strict framing


BAD_REQUESTS: dict[str, tuple[bytes, int]] = {
    "cl and te": (post(b"0\r\n\r\n", b"Content-Length: 5", b"Transfer-Encoding: chunked"), 400),
    "te and cl": (post(b"0\r\n\r\n", b"Transfer-Encoding: chunked", b"Content-Length: 5"), 400),
    "duplicate cl fields": (post(b"a", b"Content-Length: 1", b"Content-Length: 1"), 400),
    "duplicate cl in one field": (post(b"a", b"Content-Length: 1, 1"), 400),
    "different cl": (post(b"a", b"Content-Length: 1", b"Content-Length: 2"), 400),
    "cl plus sign": (post(b"abc", b"Content-Length: +3"), 400),
    "cl trailing junk": (post(b"abc", b"Content-Length: 3a"), 400),
    "cl negative": (post(b"abc", b"Content-Length: -3"), 400),
    "cl empty": (post(b"abc", b"Content-Length: "), 400),
    "cl hex": (post(b"abc", b"Content-Length: 0x3"), 400),
    "cl space inside": (post(b"abc", b"Content-Length: 1 2"), 400),
    "cl overflow": (post(b"abc", b"Content-Length: 99999999999999999999999"), 400),
    "te gzip": (post(b"abc", b"Transfer-Encoding: gzip"), 400),
    "te identity": (post(b"abc", b"Transfer-Encoding: identity"), 400),
    "te chunked then gzip": (post(b"abc", b"Transfer-Encoding: chunked, gzip"), 400),
    "te chunked twice": (post(b"0\r\n\r\n", b"Transfer-Encoding: chunked, chunked"), 400),
    "te two fields": (
        post(b"0\r\n\r\n", b"Transfer-Encoding: chunked", b"Transfer-Encoding: chunked"),
        400,
    ),
    "te empty": (post(b"", b"Transfer-Encoding: "), 400),
    "te gzip then chunked": (post(b"0\r\n\r\n", b"Transfer-Encoding: gzip, chunked"), 501),
    "te in http/1.0": (
        b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
        400,
    ),
    "chunk size not hex": (chunked(b"zz\r\nabc\r\n0\r\n\r\n"), 400),
    "chunk size negative": (chunked(b"-3\r\nabc\r\n0\r\n\r\n"), 400),
    "chunk size empty": (chunked(b"\r\nabc\r\n0\r\n\r\n"), 400),
    "chunk size overflow": (chunked(b"ffffffffffffffffffff\r\nabc\r\n0\r\n\r\n"), 400),
    "chunk size 0x prefix": (chunked(b"0x3\r\nabc\r\n0\r\n\r\n"), 400),
    "chunk size with space": (chunked(b"3 \r\nabc\r\n0\r\n\r\n"), 400),
    "chunk data too long": (chunked(b"3\r\nabcd\r\n0\r\n\r\n"), 400),
    "chunk bare lf": (chunked(b"3\nabc\n0\n\n"), 400),
    "obs-fold": (b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\r\n b\r\n\r\n", 400),
    "obs-fold tab": (b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\r\n\tb\r\n\r\n", 400),
    "space before first header": (b"GET / HTTP/1.1\r\n Host: x\r\n\r\n", 400),
    "bare cr in line": (b"GET / HTTP/1.1\r\nHost: x\rX-A: b\r\n\r\n", 400),
    "bare cr in value": (b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\rb\r\n\r\n", 400),
    "bare lf everywhere": (b"GET / HTTP/1.1\nHost: x\n\n", 400),
    "bare lf after header": (b"GET / HTTP/1.1\r\nHost: x\n\r\n", 400),
    "bare lf at end": (b"GET / HTTP/1.1\r\nHost: x\r\n\n", 400),
    "nul in name": (b"GET / HTTP/1.1\r\nHost: x\r\nX\x00A: b\r\n\r\n", 400),
    "nul in value": (b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\n\r\n", 400),
    "control in value": (b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\x01b\r\n\r\n", 400),
    "del in value": (b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\x7fb\r\n\r\n", 400),
    "control in name": (b"GET / HTTP/1.1\r\nHost: x\r\nX\x01A: b\r\n\r\n", 400),
    "space before colon": (b"GET / HTTP/1.1\r\nHost: x\r\nX-A : b\r\n\r\n", 400),
    "tab before colon": (b"GET / HTTP/1.1\r\nHost: x\r\nX-A\t: b\r\n\r\n", 400),
    "empty header name": (b"GET / HTTP/1.1\r\nHost: x\r\n: b\r\n\r\n", 400),
    "no colon": (b"GET / HTTP/1.1\r\nHost: x\r\nXA\r\n\r\n", 400),
    "control in target": (b"GET /a\x01b HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    "non-ascii target": (b"GET /a\xe9 HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    "too long token method": (b"X" * 33 + b" / HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    "garbage method": (b"\x01\x02 / HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    "method with bad char": (b"G(T / HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    "method then tab": (b"FOO\t/ HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    "tls handshake": (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 400),
    "version garbage": (b"GET / HTTP/1.x\r\nHost: x\r\n\r\n", 400),
    "version lower-case": (b"GET / http/1.1\r\nHost: x\r\n\r\n", 400),
    "version no dot": (b"GET / HTTP/11\r\nHost: x\r\n\r\n", 400),
    "version three digits": (b"GET / HTTP/1.10\r\nHost: x\r\n\r\n", 400),
    "version trailing space": (b"GET / HTTP/1.1 \r\nHost: x\r\n\r\n", 400),
    "version missing": (b"GET / \r\nHost: x\r\n\r\n", 400),
    "http/2.0": (b"GET / HTTP/2.0\r\nHost: x\r\n\r\n", 505),
    "http/1.2": (b"GET / HTTP/1.2\r\nHost: x\r\n\r\n", 505),
    "http/3.0": (b"GET / HTTP/3.0\r\nHost: x\r\n\r\n", 505),
    "http/0.9 explicit": (b"GET / HTTP/0.9\r\nHost: x\r\n\r\n", 505),
    "http/0.9 simple request": (b"GET /\r\n\r\n", 505),
    "http/9.9 long target": (b"GET /" + b"a" * 100 + b" HTTP/9.9\r\nHost: x\r\n\r\n", 505),
    "missing host": (b"GET / HTTP/1.1\r\n\r\n", 400),
    "two host fields": (b"GET / HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n", 400),
    "two host fields same value": (b"GET / HTTP/1.1\r\nHost: x\r\nhost: x\r\n\r\n", 400),
    "two host fields http/1.0": (b"GET / HTTP/1.0\r\nHost: x\r\nHost: y\r\n\r\n", 400),
    "data after upgrade-less close": (b"GET / HTTP/1.1\r\nHost: x\r\nX: \x7f\r\n\r\n", 400),
    "bad request after good one": (GET + b"GET / HTTP/1.1\r\nHost x\r\n\r\n", 400),
    "garbage after a body": (post(b"abc", b"Content-Length: 3") + b"\x01OO / HTTP/1.1\r\n", 400),
    "bad version after get": (GET + b"GET / HTTP/1.3\r\n", 505),
}


@pytest.mark.parametrize("name", list(BAD_REQUESTS))
def test_bad_request(name: str) -> None:
    data, status = BAD_REQUESTS[name]
    assert error_status(data) == status


def test_bad_request_after_good_one_keeps_the_good_one() -> None:
    parsed = parse(GET + b"GET / HTTP/1.1\r\nHost x\r\n\r\n")
    assert len(parsed.requests) == 1
    assert parsed.status == 400


def test_unfinished_extension_method_waits_for_the_deciding_byte() -> None:
    conn = HTTPConnection(TEST_LIMITS)
    assert conn.feed(b"FO") == []
    assert conn.feed(b"O") == []
    assert conn.in_request is True
    assert conn.feed(b" / HTTP/1.1\r\n") == []
    (req,) = conn.feed(b"Host: x\r\n\r\n")
    assert isinstance(req, Request)
    assert req.method == "FOO"


def test_endless_method_token_is_bounded() -> None:
    conn = HTTPConnection(TEST_LIMITS)
    events: list[object] = []
    for _ in range(20):
        events += conn.feed(b"FOOOOOOO")
    assert [e.status for e in events if isinstance(e, ProtocolError)] == [400]


def test_error_response_closes() -> None:
    conn = HTTPConnection(TEST_LIMITS)
    (err,) = conn.feed(b"GET / HTTP/1.1\r\n\r\n")
    assert isinstance(err, ProtocolError)
    wire = conn.error_response(err)
    assert wire.startswith(b"HTTP/1.1 400 Bad Request\r\n")
    assert b"\r\nConnection: close\r\n" in wire
    head, body = wire.split(b"\r\n\r\n", 1)
    assert b"Content-Length: %d\r\n" % len(body) in head + b"\r\n"
    assert conn.must_close
    assert conn.is_dead
    assert conn.feed(GET) == []


# ---------------------------------------------------------------------- size limits


def test_request_line_over_limit_is_414() -> None:
    target = b"/" + b"a" * 300
    assert error_status(b"GET " + target + b" HTTP/1.1\r\nHost: x\r\n\r\n") == 414


def test_request_line_at_limit_passes() -> None:
    # request line + CRLF + "Host: x\r\n" + CRLF == limit exactly
    fixed = len(b"GET  HTTP/1.1\r\nHost: x\r\n\r\n")
    target = b"/" + b"a" * (TEST_LIMITS.max_header_size - fixed - 1)
    assert request(b"GET " + target + b" HTTP/1.1\r\nHost: x\r\n\r\n").raw_path == target.decode()
    target += b"a"
    assert error_status(b"GET " + target + b" HTTP/1.1\r\nHost: x\r\n\r\n") == 431


def test_one_header_over_limit_is_431() -> None:
    assert error_status(b"GET / HTTP/1.1\r\nHost: x\r\nX-A: " + b"a" * 300 + b"\r\n\r\n") == 431


def test_many_headers_over_limit_is_431() -> None:
    fields = b"X-A: aaaaaaaaaaaaaaa\r\n" * 20
    assert error_status(b"GET / HTTP/1.1\r\nHost: x\r\n" + fields + b"\r\n") == 431


def test_endless_header_field_fed_in_small_pieces_is_bounded() -> None:
    conn = HTTPConnection(TEST_LIMITS)
    events = conn.feed(b"GET / HTTP/1.1\r\nHost: x\r\nX-Long: ")
    fed = 0
    while not events and fed < 10 * TEST_LIMITS.max_header_size:
        events = conn.feed(b"a" * 7)
        fed += 7
    assert [e.status for e in events if isinstance(e, ProtocolError)] == [431]
    assert fed <= TEST_LIMITS.max_header_size


def test_endless_request_line_fed_in_small_pieces_is_414() -> None:
    conn = HTTPConnection(TEST_LIMITS)
    events = conn.feed(b"GET /")
    fed = 0
    while not events and fed < 10 * TEST_LIMITS.max_header_size:
        events = conn.feed(b"a" * 5)
        fed += 5
    assert [e.status for e in events if isinstance(e, ProtocolError)] == [414]
    assert fed <= TEST_LIMITS.max_header_size


def test_endless_head_without_crlfcrlf_is_431() -> None:
    head = b"GET / HTTP/1.1\r\n" + b"X-A: b\r\n" * 100
    assert error_status(head) == 431


def test_error_before_the_limit_wins_over_the_limit() -> None:
    """A bad byte inside the limit is reported as such, whatever the chunking."""
    data = b"GET / HTTP/1.1\r\nHost: x\r\nX\x00: " + b"a" * 400
    assert error_status(data) == 400


def test_head_limit_counts_each_request_separately() -> None:
    one = b"GET / HTTP/1.1\r\nHost: x\r\nX-A: " + b"a" * 150 + b"\r\n\r\n"
    parsed = parse(one * 5)
    assert len(parsed.requests) == 5
    assert parsed.status is None


def test_big_body_does_not_count_towards_the_next_head() -> None:
    body = b"z" * 90
    data = post(body, b"Content-Length: 90") + b"GET /next HTTP/1.1\r\nHost: x\r\nX-A: " + b"a" * 180
    data += b"\r\n\r\n"
    parsed = parse(data)
    assert [r.path for r in parsed.requests] == ["/p", "/next"]


def test_limits_from_config() -> None:
    from zzz.config import Config

    limits = Config(max_body_size=10, max_header_size=2000, max_requests_per_connection=3,
                    max_stream_body_size=7).engine_limits()
    assert limits == Limits(max_body_size=10, max_header_size=2000, max_requests=3,
                            max_stream_body_size=7)


def test_engine_imports_nothing_of_the_server() -> None:
    """The engine stays usable on its own: no module of zzz/http imports the server's
    configuration, a backend, or any I/O module."""
    import ast
    from pathlib import Path

    import zzz.http

    forbidden = ("zzz.config", "zzz.server", "zzz.backends", "socket", "threading", "asyncio",
                 "selectors", "ssl")
    for path in Path(zzz.http.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                assert not name.startswith(forbidden), f"{path.name} imports {name}"


def test_body_bytes_before_a_partial_head_do_not_count_as_head() -> None:
    """A body and the start of the next head in one read: only head bytes count."""
    limits = Limits(max_body_size=1000, max_header_size=256, max_requests=10)
    data = post(b"z" * 500, b"Content-Length: 500") + b"GET /nex"
    parsed = parse(data, limits)
    assert [r.path for r in parsed.requests] == ["/p"]
    assert parsed.status is None


# ---------------------------------------------------------------------- lingering close


def test_input_abandoned_after_an_error_answer() -> None:
    conn = HTTPConnection(Limits(max_body_size=10))
    (error,) = conn.feed(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 99\r\n\r\n")
    assert isinstance(error, ProtocolError)
    conn.error_response(error)
    assert conn.must_close and conn.input_abandoned


def test_input_abandoned_after_refusing_a_100_continue_body() -> None:
    conn = HTTPConnection()
    (head,) = conn.feed(
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n"
    )
    assert isinstance(head, ExpectContinue)
    conn.close_after_response = True
    conn.serialize(Response(404), head.request)
    assert conn.must_close and conn.input_abandoned


def test_input_abandoned_when_the_last_allowed_response_cuts_a_pipelined_request() -> None:
    conn = HTTPConnection(Limits(max_requests=1))
    (request,) = conn.feed(b"GET / HTTP/1.1\r\nHost: x\r\n\r\nGET /next HTTP/1.1\r\nHo")
    conn.serialize(Response(200), request)
    assert conn.must_close and conn.input_abandoned


def test_input_not_abandoned_by_an_ordinary_close() -> None:
    conn = HTTPConnection()
    (request,) = conn.feed(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    conn.serialize(Response(200), request)
    assert conn.must_close and not conn.input_abandoned
    conn = HTTPConnection()
    (request,) = conn.feed(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    conn.serialize(Response(200), request)
    assert not conn.must_close and not conn.input_abandoned


def test_input_abandoned_when_the_last_allowed_response_precedes_a_refused_request() -> None:
    conn = HTTPConnection(Limits(max_requests=1, max_body_size=10))
    request, error = conn.feed(
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\nPOST / HTTP/1.1\r\nHost: x\r\nContent-Length: 99\r\n\r\n"
    )
    assert isinstance(request, Request) and isinstance(error, ProtocolError)
    conn.serialize(Response(200), request)
    assert conn.must_close and conn.input_abandoned
