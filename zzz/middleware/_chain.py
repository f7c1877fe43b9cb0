"""The one wrapper every observing middleware needs: time the rest of the chain and
learn the status the router will answer.

The access logger, the route metrics and the structured logger all do the same
around ``ctx.next()`` — start a clock, run the chain, take ``ctx.status``, or the
``HTTPError``'s status (else 500) when it raises, and record even then. Written
once here for the sync and the async chain; each subclass only says whether to
observe (``_observing``) and what to do with the outcome (``_done``).
"""

from __future__ import annotations

import time

from zzz.context import Context
from zzz.errors import HTTPError
from zzz.http.headers import Headers


class ChainObserver:
    """Base of middleware that record the status and duration of the rest of the chain."""

    __slots__ = ()

    #: True when :meth:`_observing` can say no (a subclass overriding it sets this):
    #: the others skip the call on every request.
    _filtered = False

    def _observing(self, ctx: Context) -> bool:
        """False: run the chain without timing it (say, its log level is off)."""
        return True

    def _done(self, ctx: Context, status: int, start_ns: int) -> None:
        """The chain ended with ``status`` (it started at ``perf_counter_ns`` = ``start_ns``)."""
        raise NotImplementedError

    def __call__(self, ctx: Context) -> None:
        if self._filtered and not self._observing(ctx):
            ctx.next()
            return
        start = time.perf_counter_ns()
        status = 500
        try:
            ctx.next()
            status = ctx.status
        except HTTPError as exc:
            status = exc.status
            raise
        finally:
            self._done(ctx, status, start)

    async def acall(self, ctx: Context) -> None:
        if self._filtered and not self._observing(ctx):
            await ctx.next()
            return
        start = time.perf_counter_ns()
        status = 500
        try:
            await ctx.next()
            status = ctx.status
        except HTTPError as exc:
            status = exc.status
            raise
        finally:
            self._done(ctx, status, start)


def first_header(headers: Headers, lowered: str) -> str | None:
    """The first value of header ``lowered`` (a lower-case name) by one pass over the fields.

    ``Headers.get`` builds a lookup index of every field on first use; middleware
    reading one or two headers per request on every request (request ids, log lines)
    is cheaper scanning the few fields a request carries, comparing lengths first.
    """
    size = len(lowered)
    for name, value in headers.items():
        if len(name) == size and name.lower() == lowered:
            return value
    return None
