"""Which connection the native backend serves next during a burst (issue 12 §3: the
good client's latency under 1,000 slow-client attackers).

Two things kept a keep-alive client's next request waiting behind a burst of new
connections on the native backend:

* the acceptor accepted (and TLS-wrapped) every pending connection before it polled
  the parked ones again: with 1,000 connects pending, one pass took ~50 ms of CPU
  (~250 ms of wall time on the loaded 2-core machine) during which no parked request
  reached a worker. It now accepts ``ACCEPT_BATCH`` per pass;
* the workers' queue was FIFO, so that request then waited for every TLS handshake
  queued before it. Handshakes now go after requests, with a fair share
  (:mod:`zzz.backends._handshakes_last`).
"""

from __future__ import annotations

import contextlib
import socket
import time
from dataclasses import dataclass
from typing import Any

import pytest
from integration.apps import app

from zzz.backends import native
from zzz.backends._handshakes_last import HANDSHAKE_SHARE, HandshakesLast

#: Connections pending at once in the batch test: several batches' worth.
PENDING = 5 * native.ACCEPT_BATCH
#: Longest wait for the acceptor to take them all.
WAIT_S = 10.0


@dataclass
class _Item:
    name: str
    handshaking: bool


def test_handshakes_wait_behind_requests_but_are_never_starved():
    queue: HandshakesLast[_Item] = HandshakesLast()
    for i in range(3):
        queue.append(_Item(f"h{i}", True))
    for i in range(8):
        queue.append(_Item(f"r{i}", False))
    assert len(queue) == 11
    order = [queue.popleft().name for _ in range(11)]
    assert not queue
    # Requests first, in their order; one handshake in every HANDSHAKE_SHARE takes
    # while requests wait; the rest once no request waits.
    assert [n for n in order if n.startswith("r")] == [f"r{i}" for i in range(8)]
    assert [n for n in order if n.startswith("h")] == ["h0", "h1", "h2"]
    first_handshake = order.index("h0")
    assert first_handshake == HANDSHAKE_SHARE - 1
    assert order[first_handshake + HANDSHAKE_SHARE] == "h1"


def test_plain_fifo_without_handshakes():
    queue: HandshakesLast[_Item] = HandshakesLast()
    for i in range(5):
        queue.append(_Item(f"r{i}", False))
    assert [queue.popleft().name for _ in range(5)] == [f"r{i}" for i in range(5)]


@pytest.mark.parametrize("backend", ["native"], indirect=True)
def test_acceptor_returns_to_poll_between_batches(serve, backend, monkeypatch):
    """A burst of pending connects is accepted in passes of at most ACCEPT_BATCH, so
    parked connections are polled (and their requests queued) between passes."""
    per_pass: list[int] = []
    original_accept_all = native.NativeBackend._accept_all

    class Counting:
        """The listener, counting ``accept()`` calls (a socket takes no new attributes)."""

        def __init__(self, real: socket.socket) -> None:
            self.real, self.taken = real, 0

        def accept(self) -> Any:
            self.taken += 1
            return self.real.accept()

        def __getattr__(self, name: str) -> Any:
            return getattr(self.real, name)

    def counting(self: Any) -> None:
        real = self.listener
        self.listener = Counting(real)
        try:
            original_accept_all(self)
        finally:
            per_pass.append(self.listener.taken)
            self.listener = real

    srv = serve(app, kernel_backlog=2 * PENDING, max_connections=4 * PENDING)
    monkeypatch.setattr(native.NativeBackend, "_accept_all", counting)
    socks = []
    try:
        for _ in range(PENDING):
            sock = socket.socket()
            sock.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                sock.connect(("127.0.0.1", srv.port))
            socks.append(sock)
        deadline = time.monotonic() + WAIT_S
        while time.monotonic() < deadline and sum(per_pass) < PENDING:
            time.sleep(0.05)
        assert sum(per_pass) >= PENDING
        # A pass that ends on EAGAIN counts that last failed accept() too.
        assert max(per_pass) <= native.ACCEPT_BATCH, per_pass
    finally:
        for sock in socks:
            sock.close()
