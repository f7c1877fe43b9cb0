"""The one event loop a native process runs every coroutine on.

Worker threads of the native backend serve plain handlers themselves. An
``async def`` handler (or an ASGI app) is a coroutine: it runs here, on one
loop in its own thread, so that every coroutine of the process shares that
loop as in any ASGI server. Two consequences the application can rely on:

* loop-bound objects created once (a module-level ``asyncio.Lock``, an
  ``httpx.AsyncClient``, a database pool, anything made at startup) work from
  every request, because there is only one loop to be bound to;
* a suspended coroutine does not hold a worker thread: the worker hands the
  connection over and serves others, and the coroutine's completion queues the
  connection for the next free worker.

The loop is plain asyncio (never uvloop): running ``native`` must not import
the event-loop backend's dependencies.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

log = logging.getLogger("zzz.native")

T = TypeVar("T")

#: How long ``stop`` waits for the loop thread once the loop was told to stop.
LOOP_STOP_JOIN_S = 5.0
#: How long ``stop`` lets cancelled coroutines run their cleanup.
CANCEL_GRACE_S = 1.0


class SharedLoop:
    """An asyncio loop running forever on a daemon thread."""

    def __init__(self, name: str = "zzz-coroutines") -> None:
        self.loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()
        self._ready.wait()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.call_soon(self._ready.set)
        try:
            self.loop.run_forever()
        finally:
            with contextlib.suppress(Exception):
                self.loop.run_until_complete(self.loop.shutdown_asyncgens())
            self.loop.close()

    @property
    def thread_id(self) -> int | None:
        return self._thread.ident

    def submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        """Start ``coro`` on the loop; its future completes on the loop's thread."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def run(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        """Run ``coro`` on the loop and wait for its result on this thread."""
        if threading.get_ident() == self._thread.ident:  # pragma: no cover - misuse
            coro.close()
            raise RuntimeError("SharedLoop.run called from the loop's own thread")
        return self.submit(coro).result(timeout)

    def stop(self) -> None:
        """Cancel what still runs (after the drain), stop the loop, join its thread."""
        if not self._thread.is_alive():
            return

        async def cancel_all() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            if tasks:
                await asyncio.wait(tasks, timeout=CANCEL_GRACE_S)

        with contextlib.suppress(Exception):
            self.submit(cancel_all()).result(CANCEL_GRACE_S + 1.0)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(LOOP_STOP_JOIN_S)
        if self._thread.is_alive():  # pragma: no cover - a coroutine blocking the loop
            log.warning("coroutine loop did not stop within %.0f s", LOOP_STOP_JOIN_S)
