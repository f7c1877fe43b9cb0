"""The native backend's work queue order: TLS handshakes after requests, fairly.

The native backend's workers take connections from one bounded queue: new ones from
the acceptor, parked ones whose socket became readable, resumed ones. In plain FIFO
order a burst of new TLS connections (a storm, or slow-client attackers that each
open a TLS connection) puts hundreds of handshakes — each a millisecond of
public-key work — in front of a keep-alive client's next request, which then waits
for all of them: measured, the good client's worst latency under 1,000 attackers
is the length of that burst.

:class:`HandshakesLast` is the queue's storage (a deque's ``append``/``popleft``/
``len``): connections still in their TLS handshake go to a second line, served when
no other connection waits, and at least one in every ``HANDSHAKE_SHARE`` takes, so
a steady stream of requests cannot starve new clients. Plain TCP connections and
established TLS ones keep their FIFO order. The queue's capacity and blocking are
unchanged (``BoundedQueue``): this only decides which waiting connection is next.
"""

from __future__ import annotations

import collections
from typing import Generic, Protocol, TypeVar


class _Connection(Protocol):
    handshaking: bool


C = TypeVar("C", bound=_Connection)

#: When handshakes wait, at least one take in this many serves a handshake: requests
#: go first, and new TLS clients still progress under a steady load of requests.
HANDSHAKE_SHARE = 4


class HandshakesLast(Generic[C]):
    """Deque-like storage: ``append`` a connection, ``popleft`` the next one to serve."""

    __slots__ = ("_handshakes", "_ready", "_since_handshake")

    def __init__(self) -> None:
        self._ready: collections.deque[C] = collections.deque()
        self._handshakes: collections.deque[C] = collections.deque()
        self._since_handshake = 0

    def append(self, conn: C) -> None:
        (self._handshakes if conn.handshaking else self._ready).append(conn)

    def popleft(self) -> C:
        if self._handshakes and (not self._ready
                                 or self._since_handshake >= HANDSHAKE_SHARE - 1):
            self._since_handshake = 0
            return self._handshakes.popleft()
        self._since_handshake += 1
        return self._ready.popleft()

    def __len__(self) -> int:
        return len(self._ready) + len(self._handshakes)

    def __bool__(self) -> bool:
        return bool(self._ready) or bool(self._handshakes)
