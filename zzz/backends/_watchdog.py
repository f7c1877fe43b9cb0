"""The event loop's watchdog: one warning, naming the route, when a callback holds the loop.

A plain handler runs inline on the loop (the fast path). One that blocks —
``time.sleep``, a synchronous database driver, heavy CPU — silently serialises
every connection of that loop. The loop cannot report that itself while it is
blocked, so the watchdog is two halves:

* on the loop, a heartbeat callback stamps the time every ``threshold / 2``;
* on its own thread, the watchdog wakes as often and, when the stamp is older
  than the threshold, logs one warning for that stall naming what runs on the
  loop right now and how to fix it. It finds the request by walking the loop
  thread's stack (``sys._current_frames``) for the innermost frame holding a
  :class:`Request`: the hot path marks nothing, so an unstalled loop pays nothing.

It also keeps the largest lag seen (``lag_s``), read by the metrics gauge.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import threading
import time
from collections.abc import Callable

from zzz.http.request import Request

log = logging.getLogger("zzz.eventloop")

#: Longest ``stop`` waits for the watchdog thread (it wakes every half threshold).
WATCHDOG_JOIN_S = 1.0
#: Frames of the loop thread searched for the request being handled (a handler's own
#: calls sit above the backend's frame; this bounds the walk, not the handler).
MAX_STACK_DEPTH = 200


def request_on_stack(thread_id: int) -> Request | None:
    """The request the thread ``thread_id`` is handling now: the innermost frame of its
    stack holding a :class:`Request` (or None). Also used by the drain guard."""
    frame = sys._current_frames().get(thread_id)
    depth = 0
    while frame is not None and depth < MAX_STACK_DEPTH:
        for value in frame.f_locals.values():
            if isinstance(value, Request):
                return value
        frame = frame.f_back
        depth += 1
    return None


class LoopWatchdog:
    """Watches one loop; ``current`` returns the request running inline (or None)."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        threshold_ms: int,
        thread_id: int,
        describe: Callable[[Request], str],
    ) -> None:
        self.loop = loop
        self.threshold = threshold_ms / 1000.0
        self.interval = self.threshold / 2
        self.thread_id = thread_id
        self.describe = describe
        #: Lag of the last heartbeat behind its schedule, in seconds (a gauge).
        self.lag_s = 0.0
        self._beat = time.monotonic()
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="zzz-watchdog", daemon=True)
        self._handle: asyncio.TimerHandle | None = None

    def start(self) -> None:
        """Call on the loop's thread."""
        self._beat = time.monotonic()
        self._handle = self.loop.call_later(self.interval, self._heartbeat)
        self._thread.start()

    def current(self) -> Request | None:
        """The request being handled on the loop thread now, from its stack (or None)."""
        return request_on_stack(self.thread_id)

    def stop(self) -> None:
        """Stop watching; the watchdog thread has ended when this returns."""
        self._stopped.set()
        if self._handle is not None:
            self._handle.cancel()
        if self._thread.ident is not None and self._thread is not threading.current_thread():
            self._thread.join(WATCHDOG_JOIN_S)

    def _heartbeat(self) -> None:
        now = time.monotonic()
        self.lag_s = max(0.0, now - self._beat - self.interval)
        self._beat = now
        self._handle = self.loop.call_later(self.interval, self._heartbeat)

    def _watch(self) -> None:
        warned_for = 0.0
        while not self._stopped.wait(self.interval):
            beat = self._beat
            held = time.monotonic() - beat - self.interval
            if held < self.threshold or beat == warned_for:
                continue
            warned_for = beat
            request = self.current()
            if request is None:
                log.warning(
                    "event loop blocked for more than %.0f ms by a callback (a WebSocket "
                    "callback, timer or coroutine doing blocking work?)", held * 1000)
                continue
            try:
                route = self.describe(request)
            except Exception:  # pragma: no cover - naming must never stop the watch
                route = "-"
            log.warning(
                "event loop blocked for more than %.0f ms by %s %s (%s): a plain "
                "handler that blocks stalls every connection of this loop; register it "
                "with blocking=True, run the blocking call with `await ctx.run_blocking(fn)`, "
                "or serve with --sync-handlers threadpool",
                held * 1000, request.method, request.path, route)
