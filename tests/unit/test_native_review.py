"""Parker bookkeeping of the native backend, without a running server."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any, cast

import pytest

from zzz.backends.native import BoundedQueue, Conn, Parker


@pytest.fixture
def parker() -> Iterator[Parker]:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    parker = Parker(listener)
    yield parker
    parker.close()
    listener.close()


def _conn() -> tuple[Conn, socket.socket]:
    left, right = socket.socketpair()
    return Conn(left, cast(Any, None)), right


def test_stale_forget_after_fd_reuse_leaves_the_new_connection_parked(parker: Parker) -> None:
    """Forgetting a connection twice (an error path closing it again) must not
    unpark the *new* connection that got the same file descriptor meanwhile."""
    old, old_peer = _conn()
    parker.park(old)
    parker.forget(old)
    old.close()
    old_peer.close()
    new, new_peer = _conn()
    try:
        if new.fd != old.fd:
            pytest.skip("the kernel did not reuse the descriptor")
        parker.park(new)
        parker.forget(old)  # stale: must be a no-op
        assert parker.parked.get(new.fd) is new
        new_peer.send(b"x")
        _, ready = parker.poll(2.0)
        assert ready == [new], "the new connection's epoll registration was removed"
    finally:
        new.close()
        new_peer.close()


def test_park_again_after_wakeup_rearms(parker: Parker) -> None:
    conn, peer = _conn()
    try:
        for _ in range(3):
            parker.park(conn)
            peer.send(b"x")
            _, ready = parker.poll(2.0)
            assert ready == [conn]
            conn.sock.recv(16)
    finally:
        parker.forget(conn)
        conn.close()
        peer.close()


def test_full_queue_put_gives_up_once_stop_is_set() -> None:
    import threading

    queue = BoundedQueue(1)
    first, first_peer = _conn()
    second, second_peer = _conn()
    try:
        assert queue.put(first)
        stop = threading.Event()
        stop.set()
        assert not queue.put(second, stop)
        assert len(queue) == 1
    finally:
        for sock in (first.sock, first_peer, second.sock, second_peer):
            sock.close()
