"""Application lifecycle: start-up and shutdown hooks, a ``lifespan`` and ``app.state``.

Theory of operation. An application owns resources that outlive one request
(a database pool, an HTTP client, a cache warmed from disk). It acquires them
once before the first connection is accepted and releases them once after the
last one is answered. :class:`Lifecycle` holds what the application
registered for that, and :meth:`zzz.Router.startup` / :meth:`zzz.Router.shutdown`
run it:

* **Start-up** runs the ``on_startup`` hooks in registration order, then
  enters the ``lifespan`` context manager (Starlette's shape: ``lifespan(app)``
  returns an async context manager; a mapping it yields is merged into
  ``app.state``). The first failure stops start-up with :class:`StartupError`,
  whose one-line message names the hook and the exception; the server then
  does not bind, and the CLI prints that line and exits with status 2. Hooks
  that already ran are not undone (as in uvicorn: a failed start-up is a
  process that never served, and it exits).
* **Shutdown** runs only after a completed start-up, once the server has
  drained: it leaves the ``lifespan`` first (it was entered last), then runs the
  ``on_shutdown`` hooks in registration order. A failing hook is logged and the
  next one still runs. The whole sequence is bounded by what remains of the
  drain deadline (``drain_timeout_ms`` from the moment shutdown began), with a
  short floor so that releasing resources is never skipped outright.

Hooks are plain or ``async def`` functions taking no argument or one: the
:class:`~zzz.server.Server` (to add timers, read the bound address). The
coroutines run on the event loop the server gives them; sync hooks run inline.

``app.state`` is a :class:`State`: a plain attribute namespace shared by every
request (``ctx.state``) and WebSocket (``ws.state``). It is not locked: what it
holds is shared by every worker thread, as a module global would be.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Any, TypeVar

from zzz.errors import StartupError

if TYPE_CHECKING:
    from zzz.server import Server

log = logging.getLogger("zzz.app")

#: A start-up or shutdown hook: ``fn()`` or ``fn(server)``, plain or ``async def``.
Hook = Callable[..., Awaitable[None] | None]
#: ``lifespan(app)`` → an async context manager (``@contextlib.asynccontextmanager``).
Lifespan = Callable[[Any], AbstractAsyncContextManager[Any]]
F = TypeVar("F", bound=Hook)

#: Shutdown hooks get at least this long even when the drain used the whole
#: deadline: closing a pool or flushing a buffer is worth one more second, and a
#: hook that hangs is still cut off.
SHUTDOWN_FLOOR_S = 1.0



class State:
    """An attribute namespace: ``app.state.db = pool``; ``ctx.state.db`` in a handler.

    Reading an attribute that was never set raises ``AttributeError`` naming it.
    """

    def __init__(self, values: Mapping[str, Any] | None = None) -> None:
        if values:
            self.update(values)

    def update(self, values: Mapping[str, Any]) -> None:
        """Set every ``name: value`` of ``values`` as an attribute."""
        for name, value in values.items():
            if not isinstance(name, str) or not name.isidentifier():
                raise ValueError(f"state names must be identifiers, got {name!r}")
            setattr(self, name, value)

    def __getattr__(self, name: str) -> Any:
        # Only reached when the attribute does not exist.
        raise AttributeError(
            f"app.state has no attribute {name!r} (set it in a startup hook or the lifespan)"
        )

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name in self.__dict__

    def __repr__(self) -> str:
        return f"State({self.__dict__!r})"


def describe(fn: object) -> str:
    """``module.qualname`` of a function or callable object, for logs and errors."""
    name = getattr(fn, "__qualname__", None) or type(fn).__qualname__
    module = getattr(fn, "__module__", None) or type(fn).__module__
    return f"{module}.{name}"


def _takes_server(fn: Hook) -> bool:
    """Whether ``fn`` wants the server as its one argument (decided at registration)."""
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):  # a builtin without a signature: call it bare
        return False
    required = [
        p for p in signature.parameters.values()
        if p.default is p.empty and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
    ]
    if len(required) > 1:
        raise TypeError(
            f"lifecycle hook {describe(fn)} must take no argument or one (the server)"
        )
    if required:
        return True
    return any(p.kind is p.VAR_POSITIONAL for p in signature.parameters.values())


async def _call(fn: Hook, with_server: bool, server: Server) -> None:
    result = fn(server) if with_server else fn()
    if result is not None and inspect.isawaitable(result):
        await result


class Lifecycle:
    """The hooks and lifespan of one application, and whether it has started."""

    __slots__ = ("_began", "_lifespan", "_open", "_shutdown", "_started", "_startup")

    def __init__(self, lifespan: Lifespan | None = None) -> None:
        if lifespan is not None:
            if not callable(lifespan):
                raise TypeError(f"lifespan must be callable, got {lifespan!r}")
            if inspect.isasyncgenfunction(lifespan):
                raise TypeError(
                    f"lifespan {describe(lifespan)} is an async generator: "
                    "decorate it with @contextlib.asynccontextmanager"
                )
        self._lifespan = lifespan
        self._startup: list[tuple[Hook, bool]] = []
        self._shutdown: list[tuple[Hook, bool]] = []
        self._open: AbstractAsyncContextManager[Any] | None = None
        self._started = False
        #: ``time.monotonic()`` when the server began shutting down.
        self._began: float | None = None

    def add_startup(self, fn: F) -> F:
        self._startup.append(self._checked(fn))
        return fn

    def add_shutdown(self, fn: F) -> F:
        self._shutdown.append(self._checked(fn))
        return fn

    @staticmethod
    def _checked(fn: Hook) -> tuple[Hook, bool]:
        if not callable(fn):
            raise TypeError(f"lifecycle hook must be callable, got {fn!r}")
        return fn, _takes_server(fn)

    def _mark_shutdown(self) -> None:
        if self._began is None:
            self._began = time.monotonic()

    async def startup(self, app: Any, state: State, server: Server) -> None:
        """Run the start-up hooks, then enter the lifespan; :class:`StartupError` on failure."""
        self._began = None
        server.on_shutdown(self._mark_shutdown)
        for fn, with_server in self._startup:
            try:
                await _call(fn, with_server, server)
            except Exception as exc:
                raise StartupError(_failure(f"startup hook {describe(fn)}", exc)) from exc
        if self._lifespan is not None:
            name = f"lifespan {describe(self._lifespan)}"
            try:
                manager = self._lifespan(app)
                entered = manager.__aenter__
            except Exception as exc:
                raise StartupError(_failure(name, exc)) from exc
            try:
                value = await entered()
            except Exception as exc:
                raise StartupError(_failure(name, exc)) from exc
            self._open = manager
            if value is not None:
                if not isinstance(value, Mapping):
                    raise StartupError(
                        f"{name} yielded a {type(value).__name__}: "
                        "yield nothing or a mapping of state"
                    )
                state.update(value)
        self._started = True

    async def shutdown(self, server: Server) -> None:
        """Leave the lifespan, run the shutdown hooks; bounded by the drain deadline."""
        if not self._started:
            return
        self._started = False
        budget = server.config.drain_timeout_ms / 1000.0
        if self._began is not None:
            budget -= time.monotonic() - self._began
        budget = max(budget, min(SHUTDOWN_FLOOR_S, server.config.drain_timeout_ms / 1000.0))
        current = "shutdown"
        try:
            async with asyncio.timeout(budget):
                manager, self._open = self._open, None
                if manager is not None:
                    current = f"lifespan {describe(self._lifespan)}"
                    try:
                        await manager.__aexit__(None, None, None)
                    except Exception:
                        log.exception("%s failed while shutting down", current)
                for fn, with_server in self._shutdown:
                    current = f"shutdown hook {describe(fn)}"
                    try:
                        await _call(fn, with_server, server)
                    except Exception:
                        log.exception("%s failed", current)
        except TimeoutError:
            log.error("%s did not finish within the drain deadline (%.1f s); skipped the rest",
                      current, budget)


def _failure(what: str, exc: BaseException) -> str:
    detail = " ".join(str(exc).split())
    return f"{what} failed: {type(exc).__name__}" + (f": {detail}" if detail else "")

