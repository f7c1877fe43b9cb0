"""Bad input never crashes the server: each case gets its status and a closed
connection, and a fresh client is served afterwards."""

from __future__ import annotations

import time

import httpx
import pytest

from .apps import app
from .rawhttp import (
    CLOSED_ERRORS,
    SOCKET_TIMEOUT_S,
    ConnectionClosed,
    RawClient,
    assert_still_serving,
    build,
)

H = b"Host: x\r\n"

#: (id, raw request, accepted statuses). Every one must be refused and the connection closed.
SMUGGLING_CASES = [
    ("cl-and-te", b"POST /echo HTTP/1.1\r\n" + H
     + b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", {400}),
    ("te-and-cl", b"POST /echo HTTP/1.1\r\n" + H
     + b"Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n", {400}),
    ("duplicate-cl-different", b"POST /echo HTTP/1.1\r\n" + H
     + b"Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello!", {400}),
    ("duplicate-cl-same", b"POST /echo HTTP/1.1\r\n" + H
     + b"Content-Length: 5\r\nContent-Length: 5\r\n\r\nhello", {400}),
    ("cl-list", b"POST /echo HTTP/1.1\r\n" + H + b"Content-Length: 5, 5\r\n\r\nhello", {400}),
    ("cl-not-digits", b"POST /echo HTTP/1.1\r\n" + H + b"Content-Length: 5x\r\n\r\nhello", {400}),
    ("cl-negative", b"POST /echo HTTP/1.1\r\n" + H + b"Content-Length: -1\r\n\r\n", {400}),
    ("cl-plus", b"POST /echo HTTP/1.1\r\n" + H + b"Content-Length: +5\r\n\r\nhello", {400}),
    ("te-not-chunked", b"POST /echo HTTP/1.1\r\n" + H
     + b"Transfer-Encoding: gzip\r\n\r\nhello", {400}),
    ("te-chunked-not-final", b"POST /echo HTTP/1.1\r\n" + H
     + b"Transfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n", {400}),
    ("te-coding-before-chunked", b"POST /echo HTTP/1.1\r\n" + H
     + b"Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", {400, 501}),
    ("te-identity", b"POST /echo HTTP/1.1\r\n" + H
     + b"Transfer-Encoding: identity\r\n\r\nhello", {400}),
    ("te-in-http10", b"POST /echo HTTP/1.0\r\n"
     + b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n", {400}),
    ("bad-chunk-size", b"POST /echo HTTP/1.1\r\n" + H
     + b"Transfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n", {400}),
    ("chunk-size-overflow", b"POST /echo HTTP/1.1\r\n" + H
     + b"Transfer-Encoding: chunked\r\n\r\nfffffffffffffffff1\r\nhello\r\n0\r\n\r\n", {400, 413}),
    ("obs-fold", b"GET / HTTP/1.1\r\n" + H + b"X-Folded: a\r\n b\r\n\r\n", {400}),
    ("bare-cr-in-value", b"GET / HTTP/1.1\r\n" + H + b"X-Cr: a\rb\r\n\r\n", {400}),
    ("bare-cr-line-end", b"GET / HTTP/1.1\r\n" + H + b"X-Cr: a\r\r\n\r\n", {400}),
    ("nul-in-value", b"GET / HTTP/1.1\r\n" + H + b"X-Nul: a\x00b\r\n\r\n", {400}),
    ("ctl-in-value", b"GET / HTTP/1.1\r\n" + H + b"X-Ctl: a\x01b\r\n\r\n", {400}),
    ("nul-in-name", b"GET / HTTP/1.1\r\n" + H + b"X-N\x00ul: a\r\n\r\n", {400}),
    ("space-before-colon", b"GET / HTTP/1.1\r\n" + H + b"X-Space : a\r\n\r\n", {400}),
    ("invalid-version-token", b"GET / HTTX/1.1\r\n" + H + b"\r\n", {400}),
    ("invalid-version-garbage", b"GET / HTTP/1.1x\r\n" + H + b"\r\n", {400}),
    ("unsupported-version-2", b"GET / HTTP/2.0\r\n" + H + b"\r\n", {505}),
    ("unsupported-version-3", b"GET / HTTP/3.0\r\n" + H + b"\r\n", {505}),
    ("missing-host", b"GET / HTTP/1.1\r\n\r\n", {400}),
    ("duplicate-host", b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", {400}),
    ("invalid-method-chars", b"G@T / HTTP/1.1\r\n" + H + b"\r\n", {400}),
    ("invalid-target", b"GET nope HTTP/1.1\r\n" + H + b"\r\n", {400}),
    ("smuggled-after-chunked", b"POST /echo HTTP/1.1\r\n" + H
     + b"Transfer-Encoding: chunked\r\nTransfer-Encoding: x\r\n\r\n0\r\n\r\n", {400}),
]


@pytest.mark.parametrize(
    "raw,statuses", [pytest.param(raw, st, id=name) for name, raw, st in SMUGGLING_CASES]
)
def test_malformed_request_is_refused_and_closed(serve, raw, statuses):
    srv = serve(app)
    with RawClient(srv) as client:
        client.send_ignoring_reset(raw)
        response = client.read_response()
        assert response.status in statuses, response
        assert response.closes
        client.assert_closed()
    assert_still_serving(srv)


def test_refused_request_after_a_good_one_on_the_same_connection(serve):
    srv = serve(app)
    with RawClient(srv) as client:
        client.send(build("GET", "/") + b"POST /echo HTTP/1.1\r\n" + H
                    + b"Content-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
        assert client.read_response().status == 200
        refused = client.read_response()
        assert refused.status == 400 and refused.closes
        client.assert_closed()
    assert_still_serving(srv)


def test_unknown_method_is_501(serve):
    """An extension method no route uses: 501 from the router, connection kept."""
    srv = serve(app)
    with RawClient(srv) as client:
        client.send(b"FOO /nowhere HTTP/1.1\r\n" + H + b"\r\n")
        response = client.read_response()
        assert response.status == 501
        assert not response.closes
        client.send(b"FOO / HTTP/1.1\r\n" + H + b"\r\n")
        response = client.read_response()
        assert response.status == 405
        assert "GET" in (response.header("allow") or "")
    assert_still_serving(srv)


def test_413_from_content_length_without_reading_the_body(serve):
    """The 413 arrives while the body has not been sent: decided from the head alone."""
    srv = serve(app)
    with RawClient(srv) as client:
        client.send(build("POST", "/echo", {"Content-Length": str(2 * 1024 * 1024)}))
        response = client.read_response()
        assert response.status == 413
        assert response.closes
        client.assert_closed()
    assert_still_serving(srv)


def test_413_from_chunked_body_too_big(serve):
    srv = serve(app, max_body_size=1024)
    with RawClient(srv) as client:
        piece = b"y" * 800
        client.send(b"POST /echo HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n")
        client.send_ignoring_reset(b"%x\r\n%s\r\n" % (len(piece), piece) * 2)
        response = client.read_response()
        assert response.status == 413
        assert response.closes
        client.assert_closed()
    assert_still_serving(srv)


def test_body_at_the_limit_is_accepted(serve):
    srv = serve(app, max_body_size=1024)
    with RawClient(srv) as client:
        response = client.request("POST", "/echo", body=b"k" * 1024)
        assert response.status == 200 and len(response.body) == 1024


def test_431_header_fields_too_large(serve):
    srv = serve(app)
    with RawClient(srv) as client:
        client.send_ignoring_reset(build("GET", "/", {"X-Big": "v" * (20 * 1024)}))
        response = client.read_response()
        assert response.status == 431
        assert response.closes
        client.assert_closed()
    assert_still_serving(srv)


def test_431_many_header_fields(serve):
    srv = serve(app)
    headers = {f"X-Field-{i}": "v" * 100 for i in range(200)}
    with RawClient(srv) as client:
        client.send_ignoring_reset(build("GET", "/", headers))
        response = client.read_response()
        assert response.status == 431
        client.assert_closed()
    assert_still_serving(srv)


def test_414_request_line_too_long(serve):
    srv = serve(app)
    with RawClient(srv) as client:
        client.send_ignoring_reset(build("GET", "/" + "a" * (20 * 1024)))
        response = client.read_response()
        assert response.status == 414
        assert response.closes
        client.assert_closed()
    assert_still_serving(srv)


def test_header_just_under_the_limit_is_accepted(serve):
    srv = serve(app)
    with RawClient(srv) as client:
        response = client.request("GET", "/header?name=X-Big", {"X-Big": "v" * 12_000})
        assert response.status == 200
        assert response.body == b"v" * 12_000


def test_408_when_a_client_trickles_a_request(serve):
    """One byte every 100 ms never completes the head; the absolute read deadline
    (600 ms) must answer 408 and close even though bytes keep arriving."""
    srv = serve(app, read_timeout_ms=600)
    trickle = b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"s" * 1000
    with RawClient(srv) as client:
        deadline = time.monotonic() + SOCKET_TIMEOUT_S
        for byte in trickle:
            if client.wait_readable(0.1) or time.monotonic() > deadline:
                break
            try:
                client.send(bytes([byte]))
            except CLOSED_ERRORS:
                break
        try:
            response = client.read_response()
        except ConnectionClosed:
            pytest.fail("connection closed without a 408")
        assert response.status == 408
        assert response.closes
        client.assert_closed()
    assert_still_serving(srv)


def test_408_when_a_client_stops_mid_body(serve):
    srv = serve(app, read_timeout_ms=600)
    with RawClient(srv) as client:
        client.send(build("POST", "/echo", {"Content-Length": "100"}) + b"only part")
        response = client.read_response()
        assert response.status == 408
        client.assert_closed()
    assert_still_serving(srv)


def test_404_and_405_with_allow(serve):
    srv = serve(app)
    with httpx.Client(timeout=SOCKET_TIMEOUT_S) as client:
        missing = client.get(f"{srv.url}/no/such/route")
        assert missing.status_code == 404
        wrong = client.delete(f"{srv.url}/users/1")
        assert wrong.status_code == 405
        allowed = {m.strip() for m in wrong.headers["allow"].split(",")}
        assert {"GET", "HEAD"} <= allowed
        assert "DELETE" not in allowed
        still = client.get(f"{srv.url}/users/1")
        assert still.status_code == 200


def test_handler_exception_is_a_generic_500_and_the_server_goes_on(serve):
    srv = serve(app)
    with httpx.Client(timeout=SOCKET_TIMEOUT_S) as client:
        for _ in range(3):
            response = client.get(f"{srv.url}/boom")
            assert response.status_code == 500
            assert b"secret-internal-detail" not in response.content
            assert b"Traceback" not in response.content
            assert b"RuntimeError" not in response.content
        assert client.get(f"{srv.url}/").status_code == 200
    assert_still_serving(srv)


def test_abrupt_disconnects_do_not_hurt(serve):
    srv = serve(app)
    for raw in (b"", b"GET / HT", build("POST", "/echo", {"Content-Length": "50"}) + b"x"):
        with RawClient(srv) as client:
            if raw:
                client.send(raw)
    with RawClient(srv) as client:
        client.send(build("GET", "/stream?n=1000"))
        client.sock.recv(10)
    assert_still_serving(srv)


def test_oversized_chunk_extension_is_431_whatever_the_reads(serve):
    """A 100 KB chunk extension is refused identically on every backend (the engine
    bounds one chunk-size line on its own bytes, not per socket read)."""
    srv = serve(app)
    line = b"5;" + b"e" * 100_000 + b"\r\n"
    with RawClient(srv) as client:
        client.send(b"POST /echo HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n")
        client.send_ignoring_reset(line + b"hello\r\n0\r\n\r\n")
        response = client.read_response()
        assert response.status == 431
        assert response.closes
    assert_still_serving(srv)
