"""The timer API's data: a :class:`Timer` handle and what a backend's timer service does.

Backends provide the service (a heap on one thread for the native backend,
``loop.call_at`` on the event loop); the server hands timers to it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Protocol

log = logging.getLogger("zzz.timers")


class Timer:
    """A handle returned by ``server.add_timer``; pass it to remove/reset."""

    __slots__ = ("callback", "cancelled", "generation", "handle", "interval_ms", "repeat")

    def __init__(self, interval_ms: int, callback: Callable[[], Any], repeat: bool) -> None:
        self.interval_ms = interval_ms
        self.callback = callback
        self.repeat = repeat
        self.cancelled = False
        #: Bumped on every (re)schedule so a stale heap entry or loop handle is ignored.
        self.generation = 0
        #: The backend's own handle (an ``asyncio.TimerHandle`` on the event loop).
        self.handle: Any = None

    def fire(self) -> None:
        """Run the callback; an exception is logged and never reaches the backend."""
        try:
            self.callback()
        except Exception:
            log.exception("timer callback %r raised", self.callback)

    def __repr__(self) -> str:
        return f"<Timer {self.interval_ms}ms repeat={self.repeat} cancelled={self.cancelled}>"


class TimerService(Protocol):
    """What a backend implements to run timers."""

    def start(self, timer: Timer) -> None: ...

    def cancel(self, timer: Timer) -> None: ...

    def reset(self, timer: Timer) -> None: ...
