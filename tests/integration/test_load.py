"""Resource bounds under load: idle connections, back-pressure, slow readers."""

from __future__ import annotations

import contextlib
import resource
import time

import httpx
import pytest

from .apps import BIG_PIECE, BIG_PIECES, HELLO, app
from .rawhttp import (
    CLOSED_ERRORS,
    SOCKET_TIMEOUT_S,
    RawClient,
    assert_still_serving,
    build,
    connect,
)

#: Idle keep-alive connections held open while a new client must still be served.
IDLE_CONNECTIONS = 1000
#: File descriptors the idle test needs in this process (client and server ends + slack).
FDS_NEEDED = 2 * IDLE_CONNECTIONS + 200
#: Receive buffer of the client that stops reading: small, so the server's writes stall.
STALLED_RCVBUF = 65536


@contextlib.contextmanager
def _enough_file_descriptors():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = hard if hard != resource.RLIM_INFINITY else max(soft, FDS_NEEDED)
    if wanted < FDS_NEEDED:
        pytest.skip(f"RLIMIT_NOFILE hard limit {hard} < {FDS_NEEDED}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, wanted), hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_idle_keepalive_connections_do_not_starve_new_clients(serve):
    with _enough_file_descriptors():
        srv = serve(app)  # native default: 4 workers
        idle: list[RawClient] = []
        try:
            for _ in range(IDLE_CONNECTIONS):
                client = RawClient(srv)
                idle.append(client)
                response = client.request("GET", "/")
                assert response.status == 200 and not response.closes
            # Every connection above is now idle keep-alive; a new client is served.
            with httpx.Client(timeout=SOCKET_TIMEOUT_S) as fresh:
                for _ in range(3):
                    assert fresh.get(f"{srv.url}/").text == HELLO
            # And the idle ones are still alive and usable.
            for client in idle[::100]:
                assert client.request("GET", "/").status == 200
        finally:
            for client in idle:
                client.close()
        assert_still_serving(srv)


def test_backpressure_serves_every_connection(serve):
    """One worker and a queue of two: the acceptor blocks, the kernel backlog holds
    the rest, and every connection is eventually answered (nothing dropped)."""
    srv = serve(app, worker_threads=1, max_connections=2)
    clients = [RawClient(srv, timeout=10.0) for _ in range(8)]
    try:
        for i, client in enumerate(clients):
            client.send(build("GET", f"/slow?ms=50&i={i}", {"Connection": "close"}))
        for client in clients:
            response = client.read_response()
            assert response.status == 200
            assert response.body == b"slept 50"
            client.assert_closed()
    finally:
        for client in clients:
            client.close()
    assert_still_serving(srv)


def test_backpressure_with_keepalive_connections(serve):
    srv = serve(app, worker_threads=1, max_connections=2)
    clients = [RawClient(srv, timeout=10.0) for _ in range(6)]
    try:
        for _round in range(2):
            for client in clients:
                client.send(build("GET", "/slow?ms=20"))
            for client in clients:
                assert client.read_response().status == 200
    finally:
        for client in clients:
            client.close()


def test_write_timeout_drops_a_client_that_stops_reading(serve):
    """A reader that stalls on a huge streamed body is dropped after the write
    timeout, and other clients are served meanwhile."""
    srv = serve(app, write_timeout_ms=500)
    total = len(BIG_PIECE) * BIG_PIECES
    stalled = connect(srv, rcvbuf=STALLED_RCVBUF)
    try:
        stalled.sendall(build("GET", "/big-stream"))
        assert stalled.recv(64).startswith(b"HTTP/1.1 200")
        # Stop reading. Others are served while the writer is blocked.
        with httpx.Client(timeout=SOCKET_TIMEOUT_S) as other:
            assert other.get(f"{srv.url}/").text == HELLO
            time.sleep(2.0)  # buffers fill, then the 500 ms write timeout passes
            assert other.get(f"{srv.url}/users/1").status_code == 200
        # Now drain: we must reach EOF (dropped) long before the whole body.
        received = 0
        deadline = time.monotonic() + 10.0
        while time.monotonic() < deadline:
            try:
                data = stalled.recv(1 << 20)
            except CLOSED_ERRORS:
                break
            except TimeoutError:
                pytest.fail(f"stream stalled without a close after {received} bytes")
            if not data:
                break
            received += len(data)
        else:
            pytest.fail(f"still receiving after 10 s ({received} bytes): client not dropped")
        assert received < total // 4, "the server did not drop the stalled client"
    finally:
        stalled.close()
    assert_still_serving(srv)
