"""Connection management over real sockets: keep-alive, close, pipelining, limits."""

from __future__ import annotations

import json
import time

from zzz.backends.eventloop import IDLE_COMPACT_S

from .apps import HELLO, app
from .rawhttp import RawClient, assert_still_serving, build


def test_keepalive_is_the_default_on_http11(serve):
    srv = serve(app)
    with RawClient(srv) as client:
        for i in range(5):
            response = client.request("GET", f"/users/{i}")
            assert response.status == 200
            assert not response.closes
            assert json.loads(response.body) == {"id": str(i), "q": None}


def test_an_idle_keepalive_connection_serves_again_after_compaction(serve):
    """Idle past IDLE_COMPACT_S (event loop) or parked (native), a connection has
    dropped its parser; the next requests, pipelined too, are served as before."""
    srv = serve(app)
    with RawClient(srv) as client:
        for i in range(3):
            if i:
                time.sleep(2 * IDLE_COMPACT_S + 0.2)
            client.send(b"GET /users/1 HTTP/1.1\r\nHost: x\r\n\r\n"
                        b"GET /users/2?q=a HTTP/1.1\r\nHost: x\r\n\r\n")
            assert json.loads(client.read_response().body) == {"id": "1", "q": None}
            assert json.loads(client.read_response().body) == {"id": "2", "q": "a"}


def test_http10_closes_by_default(serve):
    srv = serve(app)
    with RawClient(srv) as client:
        client.send(b"GET / HTTP/1.0\r\n\r\n")
        response = client.read_response()
        assert response.status == 200
        assert response.body == HELLO.encode()
        client.assert_closed()


def test_http10_keeps_alive_with_connection_keep_alive(serve):
    srv = serve(app)
    with RawClient(srv) as client:
        for _ in range(3):
            client.send(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
            response = client.read_response()
            assert response.status == 200
            assert response.body == HELLO.encode()
            assert not response.closes


def test_http10_keep_alive_is_acknowledged(serve):
    """An HTTP/1.0 client only reuses the connection when the response says
    ``Connection: keep-alive`` (RFC 9112 §9.3 / RFC 2068 §19.7.1; ``ab -k`` relies on it)."""
    srv = serve(app)
    with RawClient(srv) as client:
        client.send(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        response = client.read_response()
        assert response.status == 200
        assert "keep-alive" in (response.header("connection") or "").lower()


def test_connection_close_is_honoured(serve):
    srv = serve(app)
    with RawClient(srv) as client:
        client.send(build("GET", "/", {"Connection": "close"}))
        response = client.read_response()
        assert response.status == 200
        assert response.closes
        client.assert_closed()


def test_pipelined_requests_are_answered_in_order(serve):
    srv = serve(app)
    with RawClient(srv) as client:
        client.send(
            build("GET", "/users/1")
            + build("POST", "/echo", body=b"second body")
            + build("GET", "/users/3?q=x")
        )
        first, second, third = (client.read_response() for _ in range(3))
        assert json.loads(first.body) == {"id": "1", "q": None}
        assert second.status == 200 and second.body == b"second body"
        assert json.loads(third.body) == {"id": "3", "q": "x"}
        # The connection is still usable after the pipelined batch.
        assert client.request("GET", "/").body == HELLO.encode()


def test_pipelined_request_after_connection_close_is_not_answered(serve):
    srv = serve(app)
    with RawClient(srv) as client:
        client.send(build("GET", "/", {"Connection": "close"}) + build("GET", "/users/2"))
        response = client.read_response()
        assert response.status == 200 and response.closes
        client.assert_closed()


def test_max_requests_per_connection(serve):
    srv = serve(app, max_requests_per_connection=3)
    with RawClient(srv) as client:
        first = client.request("GET", "/")
        second = client.request("GET", "/")
        third = client.request("GET", "/")
        assert [r.status for r in (first, second, third)] == [200, 200, 200]
        assert not first.closes and not second.closes
        assert third.closes
        client.assert_closed()
    assert_still_serving(srv)


def test_keepalive_timeout_closes_idle_connection_quietly(serve):
    srv = serve(app, keepalive_timeout_ms=300)
    with RawClient(srv) as client:
        assert client.request("GET", "/").status == 200
        # Quietly: EOF with no bytes (no 408); a server that keeps the connection
        # open makes recv() hit the 5 s socket timeout and the test fail.
        client.assert_closed()
    assert_still_serving(srv)
