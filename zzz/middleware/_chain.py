"""Hook middleware: a hook before the rest of the chain and one after it, fused per run.

Health checks, request ids, route metrics, access and structured logs each do one
thing before ``ctx.next()`` (answer a probe path, set an id) and/or one thing after
it (count, log) with the status the router will answer (``ctx.status``, or the
``HTTPError``'s status, else 500) and the time the chain took. Written as ordinary
wrappers, every layer pays a frame, a ``ctx.next()``, a ``try``/``finally`` and two
clock reads: the recommended stack ``health → request_id → metrics →
structured_logger`` cost more than the hello request it observed.

So such middleware subclass :class:`Hooks` and only say what to do on the way in
(:meth:`~Hooks.enter`, which may answer the request and stop the chain) and on the
way out (:meth:`~Hooks.leave`). When the router builds a chain, each run of adjacent
hook middleware becomes one :class:`Fused` layer (:func:`fuse`): one clock read on
each side, one ``ctx.next()``, the ``enter`` hooks in order and the ``leave`` hooks
in reverse (as nested wrappers would run them), and only the hooks a class actually
defines. Behaviour is that of the nested wrappers, with one difference chosen on
purpose: a ``leave`` hook that raises is logged (``zzz.app``) and the others still
run, so a broken log or metric never turns a good answer into a 500.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

from zzz.context import Context
from zzz.errors import HTTPError

_log = logging.getLogger("zzz.app")

Enter = Callable[[Context], bool]
Leave = Callable[[Context, int, int], None]


class Hooks:
    """Base of middleware made of an ``enter`` and/or a ``leave`` hook (see the module)."""

    __slots__ = ()

    def enter(self, ctx: Context) -> bool:
        """Before the rest of the chain. True: this hook answered; the chain stops here."""
        return False

    def leave(self, ctx: Context, status: int, duration_ns: int) -> None:
        """After the rest of the chain: it ended with ``status`` after ``duration_ns``."""

    def __call__(self, ctx: Context) -> None:
        """Run alone (outside a router chain, e.g. called by other middleware)."""
        Fused((self,))(ctx)

    async def acall(self, ctx: Context) -> None:
        await Fused((self,)).acall(ctx)


class Fused:
    """Adjacent :class:`Hooks` run as one chain layer (see the module docstring)."""

    __slots__ = ("_enters", "_leaves", "hooks")

    def __init__(self, hooks: Sequence[Hooks]) -> None:
        self.hooks = tuple(hooks)
        # Only hooks a class overrides are called: most do one side only.
        self._enters: tuple[tuple[int, Enter], ...] = tuple(
            (i, h.enter) for i, h in enumerate(self.hooks) if type(h).enter is not Hooks.enter)
        self._leaves: tuple[tuple[int, Leave], ...] = tuple(
            (i, h.leave) for i, h in reversed(list(enumerate(self.hooks)))
            if type(h).leave is not Hooks.leave)

    def _left(self, ctx: Context, status: int, start: int, entered: int) -> None:
        """Run the ``leave`` hooks of the first ``entered`` hooks, innermost first."""
        duration = time.perf_counter_ns() - start
        for index, leave in self._leaves:
            if index < entered:
                try:
                    leave(ctx, status, duration)
                except Exception:
                    _log.exception("middleware %s failed after %s %s",
                                   type(self.hooks[index]).__name__,
                                   ctx.request.method, ctx.request.path)

    def __call__(self, ctx: Context) -> None:
        start = time.perf_counter_ns() if self._leaves else 0
        for index, enter in self._enters:
            if enter(ctx):
                if self._leaves:
                    self._left(ctx, ctx.status, start, index)
                return
        if not self._leaves:
            ctx.next()
            return
        status = 500
        try:
            ctx.next()
            status = ctx.status
        except HTTPError as exc:
            status = exc.status
            raise
        finally:
            self._left(ctx, status, start, len(self.hooks))

    async def acall(self, ctx: Context) -> None:
        start = time.perf_counter_ns() if self._leaves else 0
        for index, enter in self._enters:
            if enter(ctx):
                if self._leaves:
                    self._left(ctx, ctx.status, start, index)
                return
        if not self._leaves:
            await ctx.next()
            return
        status = 500
        try:
            await ctx.next()
            status = ctx.status
        except HTTPError as exc:
            status = exc.status
            raise
        finally:
            self._left(ctx, status, start, len(self.hooks))

    def __repr__(self) -> str:
        return f"Fused({', '.join(type(h).__name__ for h in self.hooks)})"


def fuse(items: Sequence[Any]) -> list[Any]:
    """``items`` with each run of adjacent :class:`Hooks` replaced by one :class:`Fused`."""
    out: list[Any] = []
    run: list[Hooks] = []
    for item in items:
        if isinstance(item, Hooks):
            run.append(item)
            continue
        if run:
            out.append(Fused(run))
            run = []
        out.append(item)
    if run:
        out.append(Fused(run))
    return out

