"""RequestBody flow control between threads (zzz/body.py).

A producer blocked in ``wait_for_room`` (the native backend's pump, feeding a
coroutine on the shared loop) must be woken by the read that brings the buffer
back under its mark, not sleep out its poll interval: with a 1 MiB upload and a
256 KiB buffer that sleep was paid four times per request (45 uploads/s).
"""

from __future__ import annotations

import threading

from zzz.body import RequestBody

#: How long the blocked producer would wait if nobody woke it: far beyond the
#: join below, so a missing wake-up fails the test instead of passing slowly.
UNWOKEN_WAIT_S = 60.0
#: Bound on the join: the wake-up is immediate, this only bounds a broken run.
JOIN_S = 10.0


def test_a_read_under_the_mark_wakes_a_blocked_producer() -> None:
    body = RequestBody(limit=10)
    body.push(b"w" * 6)
    assert body.read_sync() == b"w" * 6  # the first read (which notifies on its own)
    body.push(b"x" * 6)
    body.push(b"y" * 6)  # 12 buffered: at or above the mark
    assert not body.wants_more
    woken: list[bool] = []
    waiting = threading.Event()

    def producer() -> None:
        waiting.set()
        woken.append(body.wait_for_room(UNWOKEN_WAIT_S))

    thread = threading.Thread(target=producer, daemon=True)
    thread.start()
    assert waiting.wait(JOIN_S)
    assert body.read_sync(timeout=JOIN_S) == b"x" * 6  # 6 left: under the mark
    thread.join(JOIN_S)
    assert not thread.is_alive(), "the producer was not woken by the read"
    assert woken == [True]
    assert body.wants_more


def test_on_drained_still_called_once_under_the_mark() -> None:
    body = RequestBody(limit=10)
    calls: list[int] = []
    body.on_drained = lambda: calls.append(body._buffered)
    for piece in (b"a" * 4, b"b" * 4, b"c" * 4):
        body.push(piece)
    body.finish()
    assert [body.read_sync(), body.read_sync(), body.read_sync()] == [b"a" * 4, b"b" * 4,
                                                                      b"c" * 4]
    assert calls == [8]  # only the read that crossed below the mark
    assert body.read_sync() == b""
