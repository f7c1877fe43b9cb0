"""Request bodies: Content-Length, chunked (with trailers) and ``Expect: 100-continue``."""

from __future__ import annotations

import os
import time

import httpx

from .apps import app
from .rawhttp import SOCKET_TIMEOUT_S, RawClient, assert_still_serving, build

CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


def test_content_length_body(serve):
    srv = serve(app)
    body = os.urandom(300_000)
    with httpx.Client(timeout=SOCKET_TIMEOUT_S) as client:
        response = client.post(f"{srv.url}/echo", content=body)
    assert response.status_code == 200
    assert response.content == body
    assert response.headers["content-length"] == str(len(body))


def test_json_body(serve):
    srv = serve(app)
    with httpx.Client(timeout=SOCKET_TIMEOUT_S) as client:
        response = client.post(f"{srv.url}/json", json={"a": [1, 2, "ü"]})
    assert response.status_code == 200
    assert response.json() == {"got": {"a": [1, 2, "ü"]}}


def test_chunked_body_with_trailers(serve):
    srv = serve(app)
    with RawClient(srv) as client:
        client.send(
            b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nX-Checksum: abc\r\nX-Other: 1\r\n\r\n"
        )
        response = client.read_response()
        assert response.status == 200
        assert response.body == b"hello world"
        # Trailers were consumed: the connection carries the next request cleanly.
        assert client.request("GET", "/").status == 200


def test_chunked_body_arriving_in_pieces(serve):
    srv = serve(app)
    payload = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in (b"a" * 1000, b"b" * 7, b"c"))
    message = (b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
               + payload + b"0\r\n\r\n")
    with RawClient(srv) as client:
        for start in range(0, len(message), 97):
            client.send(message[start:start + 97])
            time.sleep(0.002)
        response = client.read_response()
        assert response.status == 200
        assert response.body == b"a" * 1000 + b"b" * 7 + b"c"


def test_chunked_body_via_httpx_generator(serve):
    srv = serve(app)

    def pieces():
        for i in range(10):
            yield bytes([65 + i]) * 1000

    with httpx.Client(timeout=SOCKET_TIMEOUT_S) as client:
        response = client.post(f"{srv.url}/echo", content=pieces())
    assert response.status_code == 200
    assert response.content == b"".join(bytes([65 + i]) * 1000 for i in range(10))


def test_expect_continue_accepted(serve):
    srv = serve(app)
    body = b"z" * 5000
    with RawClient(srv) as client:
        client.send(build("POST", "/echo", {"Content-Length": str(len(body)),
                                            "Expect": "100-continue"}, b""))
        interim = client.read_response()
        assert interim.status == 100
        client.send(body)
        response = client.read_response()
        assert response.status == 200
        assert response.body == body
        assert not response.closes
        assert client.request("GET", "/").status == 200


def test_expect_continue_chunked_accepted(serve):
    srv = serve(app)
    with RawClient(srv) as client:
        client.send(b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
                    b"Expect: 100-continue\r\n\r\n")
        assert client.read_response().status == 100
        client.send(b"3\r\nabc\r\n0\r\n\r\n")
        response = client.read_response()
        assert response.status == 200 and response.body == b"abc"


def test_expect_continue_rejected_route_is_not_read(serve):
    """404 before the body: no ``100 Continue``, final status, connection closed.
    If the server waited for the body, read_response() would time out."""
    srv = serve(app)
    with RawClient(srv) as client:
        client.send(build("POST", "/no-such-route",
                          {"Content-Length": "100000", "Expect": "100-continue"}))
        response = client.read_response()
        assert response.status == 404
        assert response.closes
        client.assert_closed()
    assert_still_serving(srv)


def test_expect_continue_wrong_method_is_not_read(serve):
    srv = serve(app)
    with RawClient(srv) as client:
        client.send(build("POST", "/", {"Content-Length": "10", "Expect": "100-continue"}))
        response = client.read_response()
        assert response.status == 405
        assert "GET" in (response.header("allow") or "")
        assert response.closes
        client.assert_closed()
    assert_still_serving(srv)


def test_expect_continue_oversize_body_is_not_read(serve):
    srv = serve(app)
    with RawClient(srv) as client:
        client.send(build("POST", "/echo",
                          {"Content-Length": str(2 * 1024 * 1024), "Expect": "100-continue"}))
        response = client.read_response()
        assert response.status == 413
        assert response.closes
        client.assert_closed()
    assert_still_serving(srv)


def test_expect_continue_with_body_already_sent(serve):
    """A client that does not wait for 100 and sends the body at once is served."""
    srv = serve(app)
    with RawClient(srv) as client:
        client.send(build("POST", "/echo", {"Expect": "100-continue"}, b"eager"))
        response = client.read_response()
        if response.status == 100:  # allowed: an interim response may still precede
            response = client.read_response()
        assert response.status == 200 and response.body == b"eager"
