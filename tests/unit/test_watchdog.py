"""The event loop's watchdog (zzz/backends/_watchdog.py): idle loops cost nothing.

A real asyncio loop runs in the test's thread; the watchdog's own thread watches
it. Stalls are real ``time.sleep`` calls inside a loop callback, generously longer
than the threshold; waits are bounded.
"""

from __future__ import annotations

import asyncio
import logging
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from zzz.backends._watchdog import LoopWatchdog

#: Watchdog threshold used here (heartbeat every half of it).
THRESHOLD_MS = 100
#: How long a stall lasts: well past the threshold plus one check interval.
STALL_S = 0.4
#: Longest wait for the watchdog's warning.
WARN_WAIT_S = 3.0


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


def run_for(loop: asyncio.AbstractEventLoop, seconds: float) -> None:
    loop.run_until_complete(asyncio.sleep(seconds))


def watchdog(loop: asyncio.AbstractEventLoop, watched: set[object]) -> LoopWatchdog:
    dog = LoopWatchdog(loop, THRESHOLD_MS, threading.get_ident(), lambda request: "-", watched)
    dog.start()
    return dog


def thread_wakeups(dog: LoopWatchdog) -> int:
    native_id = dog._thread.native_id
    status = Path(f"/proc/self/task/{native_id}/status").read_text()
    match = re.search(r"^voluntary_ctxt_switches:\s+(\d+)", status, re.M)
    assert match is not None
    return int(match[1])


def test_a_loop_without_connections_is_not_watched(loop: asyncio.AbstractEventLoop) -> None:
    dog = watchdog(loop, set())
    try:
        assert dog.watching  # armed at start
        run_for(loop, 0.2)  # the first heartbeat finds nothing to watch
        assert not dog.watching
        if Path("/proc/self/task").is_dir():
            before = thread_wakeups(dog)
            run_for(loop, 0.5)  # ten check intervals
            assert thread_wakeups(dog) - before <= 1
    finally:
        dog.stop()
    assert not dog._thread.is_alive()


def test_a_connection_wakes_the_watch_and_a_stall_is_named(
        loop: asyncio.AbstractEventLoop, caplog: pytest.LogCaptureFixture) -> None:
    watched: set[object] = set()
    dog = watchdog(loop, watched)
    try:
        run_for(loop, 0.2)
        assert not dog.watching
        watched.add("connection")
        dog.wake()  # what HttpProtocol.connection_made does
        assert dog.watching
        with caplog.at_level(logging.WARNING, logger="zzz.eventloop"):
            loop.call_soon(time.sleep, STALL_S)
            run_for(loop, 0.05)
            deadline = time.monotonic() + WARN_WAIT_S
            while time.monotonic() < deadline and not caplog.records:
                run_for(loop, 0.02)
        messages = [r.getMessage() for r in caplog.records]
        assert len(messages) == 1 and "event loop blocked" in messages[0], messages
        run_for(loop, 0.2)
        assert dog.watching  # still a connection: still watched
        watched.clear()
        run_for(loop, 0.2)
        assert not dog.watching
    finally:
        dog.stop()
