"""Telemetry: a callback told when each request starts and ends, with its timing.

The callback receives a :class:`TelemetryEvent` twice per request: ``kind ==
"start"`` before the rest of the chain runs, and ``kind == "end"`` once the
response is decided (``status``, ``duration_s``, ``error`` for an exception the
router turns into an answer). ``route`` is the matched pattern
(``/users/:id``), never the raw path, so events group by route with bounded
cardinality; unmatched requests carry ``None``. The end time is taken when the
handler returns: a streamed or file body may still be sending.

The callback runs on the request's thread (or loop), inline: keep it cheap, or
hand off to a queue. An exception in it is logged (logger ``zzz.telemetry``)
and never changes the response.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from zzz.context import Context
from zzz.errors import HTTPError

log = logging.getLogger("zzz.telemetry")


@dataclass(slots=True)
class TelemetryEvent:
    """One request event: ``start`` (status 0, duration 0.0) or ``end``."""

    kind: str
    method: str
    path: str
    route: str | None
    #: ``time.time()`` when the request started (both events carry the same value).
    started_at: float
    status: int = 0
    duration_s: float = 0.0
    #: The request ID set by ``zzz.request_id()`` in front of this middleware, if any.
    request_id: str | None = None
    #: The exception the chain raised (the router answers it), for ``end`` only.
    error: BaseException | None = None


class Telemetry:
    """Call ``on_event`` at the start and the end of every request."""

    __slots__ = ("_on_event",)

    def __init__(self, on_event: Callable[[TelemetryEvent], Any]) -> None:
        if not callable(on_event):
            raise TypeError(f"telemetry: on_event must be callable, got {on_event!r}")
        self._on_event = on_event

    def _emit(self, event: TelemetryEvent) -> None:
        try:
            self._on_event(event)
        except Exception:
            log.exception("telemetry callback failed")

    def _start(self, ctx: Context) -> TelemetryEvent:
        route = ctx.route.pattern if ctx.route is not None else None
        request_id = ctx.assigns.get("request_id")
        event = TelemetryEvent("start", ctx.method, ctx.path, route, time.time(),
                               request_id=request_id if isinstance(request_id, str) else None)
        self._emit(event)
        return event

    def _end(self, start: TelemetryEvent, began: float, status: int,
             error: BaseException | None) -> None:
        self._emit(TelemetryEvent(
            "end", start.method, start.path, start.route, start.started_at, status,
            time.perf_counter() - began, start.request_id, error))

    def __call__(self, ctx: Context) -> None:
        start = self._start(ctx)
        began = time.perf_counter()
        try:
            ctx.next()
        except HTTPError as exc:
            self._end(start, began, exc.status, exc)
            raise
        except Exception as exc:
            self._end(start, began, 500, exc)
            raise
        self._end(start, began, ctx.status, None)

    async def acall(self, ctx: Context) -> None:
        start = self._start(ctx)
        began = time.perf_counter()
        try:
            await ctx.next()
        except HTTPError as exc:
            self._end(start, began, exc.status, exc)
            raise
        except Exception as exc:
            self._end(start, began, 500, exc)
            raise
        self._end(start, began, ctx.status, None)


def telemetry(on_event: Callable[[TelemetryEvent], Any]) -> Telemetry:
    """Middleware reporting request start/end events with timing to ``on_event``."""
    return Telemetry(on_event)
