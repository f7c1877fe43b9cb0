"""The drain deadline for an event loop that a plain handler never gives back.

A plain (``def``) handler runs inline on its event loop. One that never returns —
a lock nobody releases, a socket read without a timeout, a sleep — keeps the loop
inside it, so the loop's own drain (``EventLoopBackend._drain``, a coroutine on
that loop) never runs and cannot cut anything at the deadline. Python cannot
interrupt a thread blocked in C code either. What remains is gunicorn's answer to
its worker timeout: the process ends. Theory of operation:

1. When shutdown begins (``Server.shutdown``, from a signal or any thread), each
   loop's guard is armed: a daemon thread waits on "this loop's drain finished"
   for the drain timeout.
2. If the drain finished, the guard is done. Otherwise it asks the loop to run a
   no-op callback and waits ``STUCK_GRACE_S`` for it. A loop that runs it is slow,
   not stuck (its own drain cuts what is left), so the guard asks again until the
   drain ends or the loop closes.
3. A loop that does not run it is stuck: the guard logs one line naming what holds
   it (the request on the loop thread's stack, found as the watchdog does:
   method, path, route and handler) and that the drain deadline cut it, flushes the
   log handlers and ends the process with :data:`EXIT_DRAIN_CUT`. The kernel closes
   every descriptor: the stuck request's client sees its connection close without
   an answer, like any request cut by a drain.

The exit status (``zzz.exit_codes.EXIT_DRAIN_CUT``) is chosen to mean "this process
was fine, one request was cut": 75, ``EX_TEMPFAIL`` of ``sysexits.h`` ("temporary
failure; retry"), distinct from 1 (forced by a second signal) and 2 (usage or
import error). The supervisor treats
it as a worker that was replaced normally (``zzz.supervisor``); a process manager
running a single server should count it as a stop (systemd: ``SuccessExitStatus=75``).

A handler blocked where Python never regains control (a C call that ignores
signals) also ignores the SIGTERM that starts the drain: then nothing in the
process can act, and the supervisor's ``SIGKILL`` after its kill margin ends it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
import threading
from collections.abc import Callable

from zzz.backends._watchdog import request_on_stack
from zzz.exit_codes import EXIT_DRAIN_CUT
from zzz.http.request import Request

log = logging.getLogger("zzz.eventloop")

#: How long a loop past its drain deadline gets to run a no-op callback before it is
#: called stuck: far above a busy loop's scheduling delay, small beside any deadline.
STUCK_GRACE_S = 1.0


class DrainGuard:
    """Ends the process when a loop is still stuck after the drain deadline."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        thread_id: int,
        drain_timeout_s: float,
        describe: Callable[[Request], str],
        exit: Callable[[int], object] = os._exit,
    ) -> None:
        self.loop = loop
        self.thread_id = thread_id
        self.drain_timeout_s = drain_timeout_s
        self.describe = describe
        self._exit = exit
        self._drained = threading.Event()
        self._armed = False
        self._lock = threading.Lock()

    def arm(self) -> None:
        """Shutdown began: start the deadline (once; any thread, signal-safe)."""
        with self._lock:
            if self._armed or self._drained.is_set():
                return
            self._armed = True
        threading.Thread(target=self._watch, name="zzz-drain-guard", daemon=True).start()

    def drained(self) -> None:
        """The loop's drain has ended (or the loop stopped): nothing to enforce."""
        self._drained.set()

    def _watch(self) -> None:
        if self._drained.wait(self.drain_timeout_s):
            return
        while not self._drained.is_set():
            turned = threading.Event()
            try:
                self.loop.call_soon_threadsafe(turned.set)
            except RuntimeError:  # the loop is closed: it was not stuck
                return
            if turned.wait(STUCK_GRACE_S) or self._drained.is_set():
                self._drained.wait(STUCK_GRACE_S)
                continue
            self._cut()
            return

    def _cut(self) -> None:
        request = request_on_stack(self.thread_id)
        if request is None:
            holder = "a callback (WebSocket callback, timer or coroutine) that never returned"
        else:
            try:
                route = self.describe(request)
            except Exception:  # pragma: no cover - naming must never stop the cut
                route = "-"
            holder = f"{request.method} {request.path} ({route}), a handler that never returned,"
        log.critical(
            "drain deadline passed (%.0f ms) while %s holds the event loop: the drain "
            "deadline cut it by ending the process (exit status %d)",
            self.drain_timeout_s * 1000, holder, EXIT_DRAIN_CUT)
        _flush_logs()
        self._exit(EXIT_DRAIN_CUT)


def _flush_logs() -> None:
    """Flush every handler the line went through: ``os._exit`` skips interpreter exit."""
    logger: logging.Logger | None = log
    while logger is not None:
        for handler in logger.handlers:
            with contextlib.suppress(Exception):  # a broken handler must not stop the exit
                handler.flush()
        logger = logger.parent
    for stream in (sys.stderr, sys.stdout):
        with contextlib.suppress(Exception):
            stream.flush()
