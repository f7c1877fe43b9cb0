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


#: Requests pipelined in one write, and the read size the server is given: the batch
#: spans several reads (over TLS it is one record, decrypted one read at a time).
PIPELINED_BATCH = 40
SMALL_READ_SIZE = 4096
#: Largest plaintext of one TLS record: the batch must fit in one.
TLS_RECORD_MAX = 16384
#: A pause between keep-alive requests longer than any worker waits for the next one
#: before parking the connection (native: 0.5 ms).
PAUSE_S = 0.05


def test_a_pipelined_batch_longer_than_one_read_is_answered_whole(serve):
    """After answering what the first read held, the server reads on. Over TLS the rest
    of the record is already decrypted inside OpenSSL, where polling the socket cannot
    see it (the native backend skips the read after an answer when the socket is
    quiet: issue 13), so it must not be stranded there."""
    srv = serve(app, read_size=SMALL_READ_SIZE)
    batch = b"".join(build("GET", f"/users/{i}", {"X-Pad": "p" * 200})
                     for i in range(PIPELINED_BATCH))
    assert 2 * SMALL_READ_SIZE < len(batch) <= TLS_RECORD_MAX
    with RawClient(srv) as client:
        client.send(batch)
        for i in range(PIPELINED_BATCH):
            assert json.loads(client.read_response().body) == {"id": str(i), "q": None}
        assert client.request("GET", "/").body == HELLO.encode()


def test_a_full_tls_record_then_a_small_one_is_answered_whole(serve):
    """One write of exactly one full TLS record of requests and a small second record
    (default read size): the server answers the first, then must find the second. Without
    read-ahead it waits in the socket, where a poll sees it; with read-ahead the whole
    small record would already sit inside OpenSSL, unseen by the poll and by
    ``pending()`` (zzz/tls.py keeps read-ahead off)."""
    srv = serve(app)
    requests = [build("GET", f"/users/{i}", {"X-Pad": "p" * 200}) for i in range(60)]
    head = b"".join(requests)
    assert len(head) < TLS_RECORD_MAX
    fill = TLS_RECORD_MAX - len(head) - len(build("GET", "/users/60", {"X-Pad": ""}))
    assert fill >= 0
    requests.append(build("GET", "/users/60", {"X-Pad": "p" * fill}))
    assert len(b"".join(requests)) == TLS_RECORD_MAX
    requests.append(build("GET", "/users/61"))
    with RawClient(srv) as client:
        client.send(b"".join(requests))
        for i in range(len(requests)):
            assert json.loads(client.read_response().body) == {"id": str(i), "q": None}


def test_keepalive_requests_after_pauses_are_served(serve):
    """The next request comes after the server parked the connection, or while a worker
    still waits for it: both are served, in either order."""
    srv = serve(app)
    with RawClient(srv) as client:
        for i in range(4):
            if i % 2:
                time.sleep(PAUSE_S)
            response = client.request("GET", f"/users/{i}")
            assert json.loads(response.body) == {"id": str(i), "q": None}


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
