"""The event loop's watchdog: one warning, naming the route, when a callback holds the loop.

A plain handler runs inline on the loop (the fast path). One that blocks —
``time.sleep``, a synchronous database driver, heavy CPU — silently serialises
every connection of that loop. The loop cannot report that itself while it is
blocked, so the watchdog is two halves:

* on the loop, a heartbeat callback runs every ``threshold / 2`` and sets when
  the next one is due;
* on its own thread, the watchdog sleeps until ``due + threshold`` — the moment a
  missed heartbeat means the loop has been held that long — and then, if no
  heartbeat moved ``due`` on, logs one warning for that stall naming what runs on
  the loop right now and how to fix it. It finds the request by walking the loop
  thread's stack (``sys._current_frames``) for the innermost frame holding a
  :class:`Request`: the hot path marks nothing, so an unstalled loop pays nothing.

It also keeps the lag of the last heartbeat behind its schedule (``lag_s``).

**What it costs.** Each wake-up of the thread must take the GIL from a busy
loop (a forced switch: several futex calls and context switches), so the thread
wakes about once per threshold, not per heartbeat. And **an idle loop is not
watched**: a fixed tick of both halves every ``threshold / 2`` was, measured,
nearly all the CPU an idle worker process used (about 40 wake-ups and 4 ms of
CPU per second), doubled by ``--workers 2``. A loop
without connections has nobody to stall, so when a heartbeat finds ``watched``
(the loop's connections) empty it does not re-arm, and the thread sleeps on an
event instead of a timeout: zero wake-ups. The backend calls :meth:`wake` when a
connection arrives, which re-arms both before its first request runs. What an
idle loop runs (a timer, a background coroutine) is not watched; it stalls no
connection.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import threading
import time
from collections.abc import Callable, Sized

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
        watched: Sized | None = None,
    ) -> None:
        self.loop = loop
        self.threshold = threshold_ms / 1000.0
        self.interval = self.threshold / 2
        self.thread_id = thread_id
        self.describe = describe
        #: While this is empty (the loop's connections) the loop is idle: not watched.
        #: None: always watched.
        self.watched = watched
        #: Lag of the last heartbeat behind its schedule, in seconds (a gauge).
        self.lag_s = 0.0
        #: When the next heartbeat is due (monotonic); 0.0 while idle (none armed).
        self._due = 0.0
        self._stopped = False
        #: Set by :meth:`wake` and :meth:`stop`: the thread re-reads the state.
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="zzz-watchdog", daemon=True)
        self._handle: asyncio.TimerHandle | None = None

    def start(self) -> None:
        """Call on the loop's thread."""
        self._arm(time.monotonic())
        self._thread.start()

    @property
    def watching(self) -> bool:
        """Whether a heartbeat is armed (False while the loop is idle)."""
        return self._handle is not None

    def wake(self) -> None:
        """On the loop's thread, when work arrives (a connection): watch again if idle."""
        if self._handle is None and not self._stopped:
            self._arm(time.monotonic())
            self._wake.set()

    def current(self) -> Request | None:
        """The request being handled on the loop thread now, from its stack (or None)."""
        return request_on_stack(self.thread_id)

    def stop(self) -> None:
        """Stop watching; the watchdog thread has ended when this returns."""
        self._stopped = True
        self._wake.set()
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        if self._thread.ident is not None and self._thread is not threading.current_thread():
            self._thread.join(WATCHDOG_JOIN_S)

    def _arm(self, now: float) -> None:
        self._due = now + self.interval
        self._handle = self.loop.call_later(self.interval, self._heartbeat)

    def _heartbeat(self) -> None:
        now = time.monotonic()
        self.lag_s = max(0.0, now - self._due)
        if self.watched is not None and not len(self.watched):
            self._handle = None
            self._due = 0.0  # idle: the thread sleeps until wake()
            return
        self._arm(now)

    def _watch(self) -> None:
        # The thread sleeps until the moment a missed heartbeat becomes a stall
        # (``due + threshold``), not a fixed tick: with heartbeats on time it wakes about
        # once per threshold. Each wake-up takes the GIL from a busy loop (a forced
        # switch), so wake-ups, not the check, are what the watchdog costs under load.
        warned_for = 0.0
        wake_at = 0.0
        while not self._stopped:
            due = self._due
            timeout: float | None = None  # idle (nothing due): until wake()/stop()
            if due:
                now = time.monotonic()
                held = now - due
                timeout = due + self.threshold - now
                if held >= self.threshold:
                    timeout = self.threshold  # still held: look again later
                    if due == warned_for:
                        pass
                    elif wake_at and now - wake_at > self.threshold:
                        # This thread itself ran that late: the process was not
                        # scheduled (an overloaded machine), so nothing on the loop
                        # held it. Look again soon; a real stall is still there then.
                        timeout = self.interval
                    else:
                        warned_for = due
                        self._warn(held)
                wake_at = now + timeout
            self._wake.wait(timeout)
            self._wake.clear()

    def _warn(self, held: float) -> None:
        request = self.current()
        if request is None:
            log.warning(
                "event loop blocked for more than %.0f ms by a callback (a WebSocket "
                "callback, timer or coroutine doing blocking work?)", held * 1000)
            return
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
