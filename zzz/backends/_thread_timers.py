"""Timers for backends without an event loop: one thread sleeping on a heap."""

from __future__ import annotations

import heapq
import itertools
import threading
import time

from zzz.timers import Timer

#: Longest the timer thread sleeps before re-checking the stop flag.
MAX_SLEEP_S = 1.0


class ThreadTimerService:
    """Runs timer callbacks on one daemon thread, in deadline order.

    A callback runs on the timer thread, so a slow callback delays the next
    ones; hand long work to a thread of your own. Entries are never removed
    from the heap: cancelling or resetting bumps ``timer.generation`` and the
    stale entry is skipped when it comes up.
    """

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, int, Timer]] = []
        self._seq = itertools.count()
        self._cond = threading.Condition()
        self._stopped = False
        self._thread = threading.Thread(target=self._run, name="zzz-timers", daemon=True)
        self._thread.start()

    def _push(self, timer: Timer) -> None:
        timer.generation += 1
        due = time.monotonic() + timer.interval_ms / 1000.0
        heapq.heappush(self._heap, (due, next(self._seq), timer.generation, timer))
        self._cond.notify()

    def start(self, timer: Timer) -> None:
        with self._cond:
            if not timer.cancelled:
                self._push(timer)

    def cancel(self, timer: Timer) -> None:
        with self._cond:
            timer.cancelled = True
            timer.generation += 1

    def reset(self, timer: Timer) -> None:
        with self._cond:
            timer.cancelled = False
            self._push(timer)

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify()
        self._thread.join(timeout=MAX_SLEEP_S * 2)

    def _run(self) -> None:
        while True:
            with self._cond:
                if self._stopped:
                    return
                now = time.monotonic()
                if not self._heap:
                    self._cond.wait(MAX_SLEEP_S)
                    continue
                due, _, generation, timer = self._heap[0]
                if due > now:
                    self._cond.wait(min(due - now, MAX_SLEEP_S))
                    continue
                heapq.heappop(self._heap)
                if timer.cancelled or generation != timer.generation:
                    continue
                if timer.repeat:
                    self._push(timer)
            timer.fire()
