"""Router: route patterns compiled at registration, middleware chains, dispatch.

Patterns are ``/``-separated segments: static text, ``:name`` (one non-empty
segment) or ``*name`` (last segment only: the rest of the path, slashes
included, possibly empty). Fully static patterns live in one dict keyed by
``(method, path)``, so the common case is a single lookup; the others live in
a segment trie searched static child → ``:param`` child → ``*wildcard`` with
backtracking, which makes static beat param beat wildcard. Trailing slashes
are significant (``/a`` and ``/a/`` are different routes).

Each route's chain (router middleware + scope middleware + handler) is built
and classified sync or async once, at registration: a sync chain is called
directly and :meth:`Router.handle` returns a response; an async chain makes it
return a coroutine. A sync middleware cannot wait for async work behind it, so
that combination is refused up front instead of failing per request.

What a handler returns is part of its answer (:meth:`Context.apply_return`):
``str`` → text, ``bytes`` → octet-stream, ``dict``/``list`` → JSON, a
``Response`` as it is, ``None`` → what the handler set on the context; any
other value is a logged 500 naming the handler. The router looks at the value
of the chain's first element itself; elements behind it (reached through
``ctx.next()``) are wrapped at registration so their value is applied too, and
a route without middleware pays nothing for it.

Every 500 the router answers for an application bug is logged once, naming the
method, path and handler (``module.qualname``, also recorded on the request as
``request.handler`` for logs written further down). A
response is checked where it is built: the context's helpers check their
arguments at the call, and a ready-made ``Response`` (set or returned) is
checked when the router adopts it, so no invalid body or header reaches a
backend from here.

The application lifecycle (start-up and shutdown hooks, ``lifespan``,
``app.state``) lives in :mod:`zzz.lifecycle`; :meth:`Router.startup` and
:meth:`Router.shutdown` are the coroutines a server runs around serving.

Routes are registered before serving; the router is not meant to change while
requests are in flight.
"""

from __future__ import annotations

import inspect
import logging
import re
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import quote, unquote

from zzz.context import TEXT_PLAIN, Context
from zzz.errors import HTTPError
from zzz.http.request import Request
from zzz.http.response import Response
from zzz.lifecycle import Hook, Lifecycle, Lifespan, State, describe
from zzz.middleware._chain import Fused, fuse

if TYPE_CHECKING:
    from zzz.server import Server
    from zzz.websocket import CloseCallback, MessageCallback, OpenCallback

log = logging.getLogger("zzz.app")

#: A handler or middleware: ``(ctx) -> None``, or ``async def`` of the same.
Handler = Callable[[Context], Awaitable[None] | None]
Middleware = Handler
H = TypeVar("H", bound=Callable[..., Any])
F = TypeVar("F", bound=Hook)

#: Methods the server recognises even without a route for them: an unmatched
#: request with one of these is a 404; any other method (an extension method such
#: as PURGE or a made-up FROB) that no route uses anywhere is a 501 (RFC 9110
#: §15.6.2: the server does not support the functionality), and a 405 with
#: ``Allow`` when the path has routes for other methods.
STANDARD_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH", "TRACE"})

#: Body of the generic 500 answer; details go to the log, never to the client.
INTERNAL_ERROR_BODY = b"500 Internal Server Error\n"

_METHOD = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")


# ---------------------------------------------------------------------- patterns


class _Pattern:
    """A validated route pattern split into segments."""

    __slots__ = ("param_names", "segments", "shape", "text", "wildcard")

    def __init__(self, text: str) -> None:
        if not isinstance(text, str) or not text.startswith("/"):
            raise ValueError(f"route pattern must start with '/': {text!r}")
        segments = text[1:].split("/")
        names: list[str] = []
        shape: list[str] = []
        wildcard = False
        for position, segment in enumerate(segments):
            kind = segment[:1]
            if kind in (":", "*"):
                name = segment[1:]
                if not name.isidentifier():
                    raise ValueError(
                        f"route {text}: parameter {segment!r} needs a Python identifier name"
                    )
                if name in names:
                    raise ValueError(f"route {text}: duplicate parameter name {name!r}")
                if kind == "*" and position != len(segments) - 1:
                    raise ValueError(f"route {text}: wildcard {segment!r} must be the last segment")
                names.append(name)
                shape.append(kind)
                wildcard = kind == "*"
            else:
                shape.append("/" + segment)
        self.text = text
        self.segments = segments
        self.param_names = tuple(names)
        #: Same shape == same requests matched, whatever the parameter names.
        self.shape = "/".join(shape)
        self.wildcard = wildcard

    @property
    def is_static(self) -> bool:
        return not self.param_names


class _Node:
    """One segment position in the trie of dynamic routes."""

    __slots__ = ("children", "param", "routes", "wildcard")

    def __init__(self) -> None:
        self.children: dict[str, _Node] = {}
        self.param: _Node | None = None
        #: Routes ending exactly here, by method.
        self.routes: dict[str, Route] = {}
        #: Routes whose ``*wildcard`` starts here, by method.
        self.wildcard: dict[str, Route] = {}


def _segments(path: str, raw_path: str) -> list[str]:
    """The path's segments for the trie (``path`` starts with ``/``).

    Split on the decoded path, except that an encoded slash (``%2F``) stays
    inside its segment (RFC 3986 §2.2: it is data, not a delimiter), so a
    ``:param`` value with a slash, as :meth:`Router.path_for` writes it, routes
    back to its route. Checked only off the static fast path.
    """
    if "%2" in raw_path and ("%2F" in raw_path or "%2f" in raw_path):
        return [unquote(segment) for segment in raw_path[1:].split("/")]
    return path[1:].split("/")


def _pick(routes: dict[str, Route], method: str) -> Route | None:
    route = routes.get(method)
    if route is None and method == "HEAD":
        route = routes.get("GET")
    return route


def _match(node: _Node, segs: list[str], i: int, method: str, values: list[str]) -> Route | None:
    """Highest-priority route for ``segs[i:]`` and ``method``; fills ``values``."""
    if i == len(segs):
        route = _pick(node.routes, method) if node.routes else None
        if route is None and node.wildcard:
            route = _pick(node.wildcard, method)
            if route is not None:
                values.append("")
        return route
    segment = segs[i]
    child = node.children.get(segment)
    if child is not None:
        route = _match(child, segs, i + 1, method, values)
        if route is not None:
            return route
    if node.param is not None and segment:
        values.append(segment)
        route = _match(node.param, segs, i + 1, method, values)
        if route is not None:
            return route
        values.pop()
    if node.wildcard:
        route = _pick(node.wildcard, method)
        if route is not None:
            values.append("/".join(segs[i:]))
            return route
    return None


def _methods_matching(node: _Node, segs: list[str], i: int, out: set[str]) -> None:
    """Every method some route accepts for ``segs[i:]`` (for ``Allow``)."""
    if node.wildcard:
        out.update(node.wildcard)
    if i == len(segs):
        out.update(node.routes)
        return
    segment = segs[i]
    child = node.children.get(segment)
    if child is not None:
        _methods_matching(child, segs, i + 1, out)
    if node.param is not None and segment:
        _methods_matching(node.param, segs, i + 1, out)


# ---------------------------------------------------------------------- chains


_describe = describe


def _is_async(fn: object) -> bool:
    if inspect.iscoroutinefunction(fn):
        return True
    # A callable object with ``async def __call__``.
    return callable(fn) and inspect.iscoroutinefunction(type(fn).__call__)


async def _continue_sync(ctx: Context) -> None:
    """Bridge from an async chain to the all-sync rest of it."""
    ctx.next()


def _returning(fn: Callable[[Context], Any]) -> Callable[[Context], None]:
    """``fn`` behind ``ctx.next()``, with its return value applied to the context."""

    def call(ctx: Context) -> None:
        value = fn(ctx)
        if value is not None:
            ctx.apply_return(value, fn)

    return call


def _areturning(fn: Callable[[Context], Any]) -> Callable[[Context], Awaitable[None]]:
    """As :func:`_returning` for an async ``fn``."""

    async def call(ctx: Context) -> None:
        value = await fn(ctx)
        if value is not None:
            ctx.apply_return(value, fn)

    return call


def _apply_returns(
    chain: list[Callable[[Context], Any]], first_sync: int
) -> tuple[Callable[[Context], Any], ...]:
    """Wrap every element after the first (the router reads its value itself);
    elements from ``first_sync`` on are sync, the ones before it async."""
    wrapped = chain[:1]
    for index in range(1, len(chain)):
        item = chain[index]
        # A fused hook layer returns nothing: no wrapper (its acall: the bound method).
        if item is _continue_sync or isinstance(getattr(item, "__self__", item), Fused):
            wrapped.append(item)
        elif index < first_sync:
            wrapped.append(_areturning(item))
        else:
            wrapped.append(_returning(item))
    return tuple(wrapped)


def build_chain(
    middleware: Sequence[Middleware], handler: Handler
) -> tuple[tuple[Callable[[Context], Any], ...], bool]:
    """The callables to run for a route, and whether the chain is async.

    Middleware objects with an async ``acall(ctx)`` next to their sync
    ``__call__`` fit both kinds of chain. Everything in front of the last
    async-only element must be able to await it; what follows it stays sync.
    """
    items: list[Callable[[Context], Any]] = fuse([*middleware, handler])
    last_async = -1
    for index, item in enumerate(items):
        if not callable(item):
            raise TypeError(f"middleware/handler must be callable, got {item!r}")
        if getattr(item, "acall", None) is None and _is_async(item):
            last_async = index
    if last_async < 0:
        return _apply_returns(items, 0), False
    chain: list[Callable[[Context], Any]] = []
    for item in items[:last_async]:
        acall = getattr(item, "acall", None)
        if acall is not None:
            chain.append(acall)
        elif _is_async(item):
            chain.append(item)
        else:
            raise ValueError(
                f"sync middleware {_describe(item)} cannot wait for async "
                f"{_describe(items[last_async])} behind it: make the middleware "
                "`async def` (and `await ctx.next()`), or give it an async acall(ctx) method"
            )
    chain.append(items[last_async])
    first_sync = len(chain)
    rest = items[last_async + 1 :]
    if rest:
        chain.append(_continue_sync)
        chain.extend(rest)
    return _apply_returns(chain, first_sync), True


# ---------------------------------------------------------------------- routes


class Route:
    """One method + pattern, its handler and compiled chain.

    The endpoint may be any handler-shaped callable; one that must produce a
    special response (a protocol upgrade) uses ``ctx.set_response()``.
    """

    __slots__ = (
        "blocking",
        "chain",
        "first",
        "handler",
        "is_async",
        "label",
        "method",
        "middleware",
        "name",
        "offload",
        "param_names",
        "pattern",
        "stream",
    )

    def __init__(
        self,
        method: str,
        pattern: str,
        handler: Handler,
        middleware: tuple[Middleware, ...],
        name: str | None,
        param_names: tuple[str, ...],
    ) -> None:
        self.method = method
        self.pattern = pattern
        self.handler = handler
        #: The handler's ``module.qualname``, for logs.
        self.label = _describe(handler)
        #: Scope and route middleware (router-wide middleware is added in ``chain``).
        self.middleware = middleware
        self.name = name
        self.param_names = param_names
        self.chain: tuple[Callable[[Context], Any], ...] = ()
        self.first: Callable[[Context], Any] = handler
        self.is_async = False
        #: The body is streamed to the handler (``ctx.body_stream()``), not buffered.
        self.stream = False
        #: The plain handler blocks: never run it inline on an event loop.
        self.blocking = False
        #: Run this (plain) chain on the blocking pool on an event loop: it blocks,
        #: or it reads a streamed body synchronously (which would wait on the loop).
        self.offload = False

    def compile(self, router_middleware: Sequence[Middleware]) -> None:
        chain, is_async = build_chain([*router_middleware, *self.middleware], self.handler)
        self.chain, self.first, self.is_async = chain, chain[0], is_async
        self.offload = not is_async and (self.blocking or self.stream)

    def __repr__(self) -> str:
        return f"<Route {self.method} {self.pattern}>"


class RouteSpec:
    """A route declared as data: ``get("/", index)``; the router registers it."""

    __slots__ = ("blocking", "handler", "methods", "middleware", "name", "path", "stream")

    def __init__(
        self,
        methods: Iterable[str],
        path: str,
        handler: Handler,
        name: str | None = None,
        middleware: Sequence[Middleware] = (),
        stream: bool = False,
        blocking: bool = False,
    ) -> None:
        self.methods = tuple(methods)
        self.path = path
        self.handler = handler
        self.name = name
        self.middleware = tuple(middleware)
        self.stream = stream
        self.blocking = blocking


class Scope:
    """A prefix and middleware shared by nested routes and scopes."""

    __slots__ = ("middleware", "prefix", "routes")

    def __init__(
        self,
        prefix: str,
        middleware: Sequence[Middleware] = (),
        routes: Sequence[RouteSpec | Scope] = (),
    ) -> None:
        if not isinstance(prefix, str) or not prefix.startswith("/"):
            raise ValueError(f"scope prefix must start with '/': {prefix!r}")
        self.prefix = prefix
        self.middleware = tuple(middleware)
        self.routes = tuple(routes)


def _join(prefix: str, path: str) -> str:
    """``/api`` + ``/x`` → ``/api/x``; ``/api`` + ``/`` → ``/api``."""
    if not prefix or prefix == "/":
        return path
    base = prefix.rstrip("/")
    return base if path == "/" else base + path


def route(
    methods: str | Iterable[str],
    path: str,
    handler: Handler,
    *,
    name: str | None = None,
    middleware: Sequence[Middleware] = (),
    stream: bool = False,
    blocking: bool = False,
) -> RouteSpec:
    """Declare a route for one or more methods (options as in :meth:`Router.route`)."""
    methods = (methods,) if isinstance(methods, str) else tuple(methods)
    return RouteSpec(methods, path, handler, name, middleware, stream, blocking)


def _declare(method: str) -> Callable[..., RouteSpec]:
    def declare(
        path: str,
        handler: Handler,
        *,
        name: str | None = None,
        middleware: Sequence[Middleware] = (),
        stream: bool = False,
        blocking: bool = False,
    ) -> RouteSpec:
        return RouteSpec((method,), path, handler, name, middleware, stream, blocking)

    declare.__name__ = declare.__qualname__ = method.lower()
    declare.__doc__ = f"Declare a {method} route."
    return declare


get = _declare("GET")
post = _declare("POST")
put = _declare("PUT")
patch = _declare("PATCH")
delete = _declare("DELETE")
head = _declare("HEAD")
options = _declare("OPTIONS")


def ws(
    path: str,
    handler: object = None,
    *,
    on_open: OpenCallback | None = None,
    on_message: MessageCallback | None = None,
    on_close: CloseCallback | None = None,
    name: str | None = None,
    middleware: Sequence[Middleware] = (),
    compression: bool = True,
    subprotocols: Sequence[str] = (),
    allowed_origins: Sequence[str] | None = None,
) -> RouteSpec:
    """Declare a WebSocket route (see :meth:`Router.ws`)."""
    from zzz.websocket import WebSocketEndpoint  # imports the websockets package

    endpoint = WebSocketEndpoint(
        handler, on_open=on_open, on_message=on_message, on_close=on_close,
        compression=compression, subprotocols=subprotocols, allowed_origins=allowed_origins,
    )
    return RouteSpec(("GET",), path, endpoint, name, middleware)


def scope(
    prefix: str,
    middleware: Sequence[Middleware] = (),
    routes: Sequence[RouteSpec | Scope] = (),
) -> Scope:
    """Group routes (and scopes) under ``prefix`` with extra middleware."""
    return Scope(prefix, middleware, routes)


# ---------------------------------------------------------------------- router


def _plain(status: int, body: bytes, headers: list[tuple[str, str]] | None = None) -> Response:
    fields = [("Content-Type", TEXT_PLAIN)]
    if headers:
        fields.extend(headers)
    return Response(status, fields, body)


class Router:
    """The application: routes, middleware and dispatch (see the module docstring).

    Every registration form ends in :meth:`add_route`, whose endpoint may be any
    handler-shaped callable. That is the extension point for protocols such as
    WebSocket: ``ws(path, ...)`` registers a GET endpoint that, for an upgrade
    request, answers with ``ctx.set_response(response)`` where
    ``response.upgrade`` carries the protocol switch.
    """

    def __init__(
        self,
        *,
        routes: Sequence[RouteSpec | Scope] = (),
        middleware: Sequence[Middleware] = (),
        lifespan: Lifespan | None = None,
        on_startup: Sequence[Hook] = (),
        on_shutdown: Sequence[Hook] = (),
    ) -> None:
        #: Shared by every request (``ctx.state``) and WebSocket (``ws.state``).
        self.state = State()
        self._lifecycle = Lifecycle(lifespan)
        for hook in on_startup:
            self._lifecycle.add_startup(hook)
        for hook in on_shutdown:
            self._lifecycle.add_shutdown(hook)
        self._middleware: list[Middleware] = []
        self._routes: list[Route] = []
        self._static: dict[tuple[str, str], Route] = {}
        self._static_paths: dict[str, dict[str, Route]] = {}
        self._methods = set(STANDARD_METHODS)  # recognised: standard or used by a route
        self._root = _Node()
        self._names: dict[str, Route] = {}
        self._not_found_chain: tuple[Callable[[Context], Any], ...] = ()
        self._not_allowed_chain: tuple[Callable[[Context], Any], ...] = ()
        self._fallback_async = False
        #: Some route streams its body: only then does the engine need to ask.
        self._stream_routes = 0
        for item in middleware:
            self.use(item)
        self._compile_fallbacks()
        for spec in routes:
            self._register(spec, "", ())

    # ------------------------------------------------------------------ lifecycle

    def on_startup(self, fn: F) -> F:
        """Run ``fn()`` or ``fn(server)`` (plain or async) before the server accepts.

        Usable as a decorator. Hooks run in registration order, before the
        ``lifespan`` is entered; the first that raises stops the server from
        starting (:class:`~zzz.lifecycle.StartupError`, exit status 2 from the CLI).
        """
        return self._lifecycle.add_startup(fn)

    def on_shutdown(self, fn: F) -> F:
        """Run ``fn()`` or ``fn(server)`` (plain or async) after the server drained.

        Usable as a decorator. Hooks run in registration order after the
        ``lifespan`` is left, within what remains of the drain deadline; one
        that raises is logged and the next still runs.
        """
        return self._lifecycle.add_shutdown(fn)

    async def startup(self, server: Server) -> None:
        """Start the application (the server awaits this before it binds)."""
        await self._lifecycle.startup(self, self.state, server)

    async def shutdown(self, server: Server) -> None:
        """Stop the application (the server awaits this after draining)."""
        await self._lifecycle.shutdown(server)

    # ------------------------------------------------------------------ registration

    def use(self, middleware: Middleware) -> None:
        """Add router-wide middleware; it runs for every request, 404s and 405s included."""
        if not callable(middleware):
            raise TypeError(f"middleware must be callable, got {middleware!r}")
        self._middleware.append(middleware)
        try:
            for registered in self._routes:
                build_chain([*self._middleware, *registered.middleware], registered.handler)
        except ValueError:
            self._middleware.pop()
            raise
        for registered in self._routes:
            registered.compile(self._middleware)
        self._compile_fallbacks()

    def _compile_fallbacks(self) -> None:
        self._not_found_chain, is_async = build_chain(self._middleware, self._not_found)
        self._not_allowed_chain, _ = build_chain(self._middleware, self._not_allowed)
        self._fallback_async = is_async

    def _register(
        self, spec: RouteSpec | Scope, prefix: str, middleware: tuple[Middleware, ...]
    ) -> None:
        if isinstance(spec, Scope):
            inner_prefix = _join(prefix, spec.prefix) if prefix else spec.prefix
            for item in spec.routes:
                self._register(item, inner_prefix, middleware + spec.middleware)
        elif isinstance(spec, RouteSpec):
            path = _join(prefix, spec.path) if prefix else spec.path
            self.add_route(
                spec.methods,
                path,
                spec.handler,
                name=spec.name,
                middleware=middleware + spec.middleware,
                stream=spec.stream,
                blocking=spec.blocking,
            )
        else:
            raise TypeError(f"routes must hold get()/post()/.../scope() items, got {spec!r}")

    def add_route(
        self,
        methods: str | Iterable[str],
        path: str,
        handler: Handler,
        *,
        name: str | None = None,
        middleware: Sequence[Middleware] = (),
        stream: bool = False,
        blocking: bool = False,
    ) -> list[Route]:
        """Register ``handler`` for ``methods`` on ``path``; every other form ends here.

        Raises ``ValueError`` for a bad pattern, a duplicate route or name, or a
        sync middleware in front of async code.
        """
        if not callable(handler):
            raise TypeError(f"handler for {path!r} must be callable, got {handler!r}")
        method_list = [methods] if isinstance(methods, str) else list(methods)
        if not method_list:
            raise ValueError(f"route {path}: no methods given")
        pattern = _Pattern(path)
        if name is not None:
            existing = self._names.get(name)
            if existing is not None and existing.pattern != pattern.text:
                raise ValueError(f"route name {name!r} is already used for {existing.pattern}")
        routes = []
        for raw_method in method_list:
            if not isinstance(raw_method, str) or not _METHOD.fullmatch(raw_method):
                raise ValueError(f"route {path}: invalid method {raw_method!r}")
            method = raw_method.upper()
            new = Route(method, pattern.text, handler, tuple(middleware), name, pattern.param_names)
            new.stream = bool(stream)
            new.blocking = bool(blocking)
            new.compile(self._middleware)
            routes.append(new)
        seen: set[str] = set()
        for new in routes:
            if new.method in seen:
                raise ValueError(f"duplicate route: {new.method} {path} listed twice")
            seen.add(new.method)
            self._check_free(new.method, pattern)
        for new in routes:
            self._insert(new, pattern)
            self._routes.append(new)
            self._stream_routes += new.stream
        if name is not None:
            self._names.setdefault(name, routes[0])
        return routes

    def _check_free(self, method: str, pattern: _Pattern) -> None:
        existing = (
            self._slot(pattern).get(method)
            if not pattern.is_static
            else (self._static.get((method, pattern.text)))
        )
        if existing is not None:
            raise ValueError(
                f"duplicate route: {method} {pattern.text} matches the same paths as "
                f"{method} {existing.pattern}"
            )

    def _slot(self, pattern: _Pattern, create: bool = False) -> dict[str, Route]:
        """The method table of the trie node where ``pattern`` ends."""
        node = self._root
        segments = pattern.segments
        last = len(segments) - 1
        for position, segment in enumerate(segments):
            if pattern.wildcard and position == last:
                return node.wildcard
            if segment.startswith(":"):
                if node.param is None:
                    if not create:
                        return {}
                    node.param = _Node()
                node = node.param
            else:
                child = node.children.get(segment)
                if child is None:
                    if not create:
                        return {}
                    child = node.children[segment] = _Node()
                node = child
        return node.routes

    def _insert(self, new: Route, pattern: _Pattern) -> None:
        self._methods.add(new.method)
        if pattern.is_static:
            self._static[(new.method, pattern.text)] = new
            self._static_paths.setdefault(pattern.text, {})[new.method] = new
        else:
            self._slot(pattern, create=True)[new.method] = new

    def route(
        self,
        methods: str | Iterable[str],
        path: str,
        *,
        name: str | None = None,
        middleware: Sequence[Middleware] = (),
        stream: bool = False,
        blocking: bool = False,
    ) -> Callable[[H], H]:
        """Decorator: register the function for ``methods`` on ``path``.

        ``stream=True``: the request body is not buffered; the handler reads it
        with ``ctx.body_stream()`` as it arrives. ``blocking=True``: a plain
        handler that blocks (I/O, CPU) runs on the bounded blocking pool on the
        event-loop backend instead of inline on the loop (on the native backend
        plain handlers always run on worker threads).
        """

        def register(handler: H) -> H:
            self.add_route(methods, path, handler, name=name, middleware=middleware,
                           stream=stream, blocking=blocking)
            return handler

        return register

    def get(
        self, path: str, *, name: str | None = None, middleware: Sequence[Middleware] = (),
        stream: bool = False, blocking: bool = False,
    ) -> Callable[[H], H]:
        return self.route("GET", path, name=name, middleware=middleware, stream=stream,
                          blocking=blocking)

    def post(
        self, path: str, *, name: str | None = None, middleware: Sequence[Middleware] = (),
        stream: bool = False, blocking: bool = False,
    ) -> Callable[[H], H]:
        return self.route("POST", path, name=name, middleware=middleware, stream=stream,
                          blocking=blocking)

    def put(
        self, path: str, *, name: str | None = None, middleware: Sequence[Middleware] = (),
        stream: bool = False, blocking: bool = False,
    ) -> Callable[[H], H]:
        return self.route("PUT", path, name=name, middleware=middleware, stream=stream,
                          blocking=blocking)

    def patch(
        self, path: str, *, name: str | None = None, middleware: Sequence[Middleware] = (),
        stream: bool = False, blocking: bool = False,
    ) -> Callable[[H], H]:
        return self.route("PATCH", path, name=name, middleware=middleware, stream=stream,
                          blocking=blocking)

    def delete(
        self, path: str, *, name: str | None = None, middleware: Sequence[Middleware] = (),
        stream: bool = False, blocking: bool = False,
    ) -> Callable[[H], H]:
        return self.route("DELETE", path, name=name, middleware=middleware, stream=stream,
                          blocking=blocking)

    def head(
        self, path: str, *, name: str | None = None, middleware: Sequence[Middleware] = (),
        stream: bool = False, blocking: bool = False,
    ) -> Callable[[H], H]:
        return self.route("HEAD", path, name=name, middleware=middleware, stream=stream,
                          blocking=blocking)

    def options(
        self, path: str, *, name: str | None = None, middleware: Sequence[Middleware] = (),
        stream: bool = False, blocking: bool = False,
    ) -> Callable[[H], H]:
        return self.route("OPTIONS", path, name=name, middleware=middleware, stream=stream,
                          blocking=blocking)

    def ws(
        self,
        path: str,
        handler: object = None,
        *,
        on_open: OpenCallback | None = None,
        on_message: MessageCallback | None = None,
        on_close: CloseCallback | None = None,
        name: str | None = None,
        middleware: Sequence[Middleware] = (),
        compression: bool = True,
        subprotocols: Sequence[str] = (),
        allowed_origins: Sequence[str] | None = None,
    ) -> None:
        """Register a WebSocket route: ``GET path`` with an upgrade.

        Callbacks: ``on_open(ws)``, ``on_message(ws, msg)`` (``str`` for text,
        ``bytes`` for binary) and ``on_close(ws, code, reason)``, plain or
        ``async def``; or ``handler``, an object (or a class, instantiated
        once) with methods of those names. The route's middleware runs before
        the upgrade and may refuse it; ``ws.assigns`` is a copy of what it
        assigned. ``compression`` accepts permessage-deflate when offered.
        ``subprotocols``: names the route speaks, in order of preference (the
        chosen one is ``ws.subprotocol``). ``allowed_origins``: e.g.
        ``["https://app.example"]``; a handshake with another ``Origin`` gets 403.
        """
        spec = ws(path, handler, on_open=on_open, on_message=on_message, on_close=on_close,
                  name=name, middleware=middleware, compression=compression,
                  subprotocols=subprotocols, allowed_origins=allowed_origins)
        self._register(spec, "", ())

    def include(self, *specs: RouteSpec | Scope) -> None:
        """Register declarative routes/scopes after construction."""
        for spec in specs:
            self._register(spec, "", ())

    @property
    def routes(self) -> list[Route]:
        """Every registered route, in registration order."""
        return list(self._routes)

    @property
    def middleware(self) -> list[Middleware]:
        """Router-wide middleware, outermost first."""
        return list(self._middleware)

    def path_for(self, name: str, **params: object) -> str:
        """The path of the route named ``name`` with ``params`` filled in (URL-quoted)."""
        found = self._names.get(name)
        if found is None:
            raise KeyError(f"path_for: no route named {name!r}")
        missing = [p for p in found.param_names if p not in params]
        if missing:
            raise ValueError(f"path_for({name!r}): missing parameter(s) {', '.join(missing)}")
        extra = sorted(set(params) - set(found.param_names))
        if extra:
            raise ValueError(f"path_for({name!r}): unknown parameter(s) {', '.join(extra)}")
        parts = []
        for segment in found.pattern[1:].split("/"):
            kind = segment[:1]
            if kind == ":":
                value = str(params[segment[1:]])
                if not value:
                    raise ValueError(f"path_for({name!r}): parameter {segment[1:]} is empty")
                parts.append(quote(value, safe=""))
            elif kind == "*":
                parts.append(quote(str(params[segment[1:]]), safe="/"))
            else:
                parts.append(segment)
        return "/" + "/".join(parts)

    # ------------------------------------------------------------------ dispatch

    def _find(
        self, method: str, path: str, raw_path: str
    ) -> tuple[Route, dict[str, str] | None] | None:
        """The route for ``method`` and ``path`` (``raw_path`` as sent), with its parameters."""
        route = self._static.get((method, path))
        if route is not None:
            return route, None
        return self._find_beyond_static(method, path, raw_path)

    def _find_beyond_static(
        self, method: str, path: str, raw_path: str
    ) -> tuple[Route, dict[str, str] | None] | None:
        """Like :meth:`_find` once the exact static lookup has missed."""
        if method == "HEAD":
            route = self._static.get(("GET", path))
            if route is not None:
                return route, None
        if not path.startswith("/"):
            return None
        values: list[str] = []
        route = _match(self._root, _segments(path, raw_path), 0, method, values)
        if route is None:
            return None
        names = route.param_names
        if len(names) == 1:  # the common case, without zip's overhead
            return route, {names[0]: values[0]}
        return route, dict(zip(names, values, strict=True))

    def allowed_methods(self, path: str, raw_path: str | None = None) -> list[str]:
        """Methods some route accepts for ``path`` (``HEAD`` implied by ``GET``), sorted.

        ``raw_path`` (the path as sent) keeps an encoded slash inside its segment,
        as routing does.
        """
        methods: set[str] = set(self._static_paths.get(path, ()))
        if path.startswith("/"):
            segments = _segments(path, path if raw_path is None else raw_path)
            _methods_matching(self._root, segments, 0, methods)
        if "GET" in methods:
            methods.add("HEAD")
        return sorted(methods)

    def handle(self, request: Request, server: Server) -> Response | Awaitable[Response]:
        """Answer ``request``: a response for sync chains, a coroutine for async ones.

        Never raises: ``HTTPError`` becomes its status, any other exception is
        logged with its traceback (logger ``zzz.app``) and becomes a bare 500.
        """
        # Two plain lookups: cheaper than building and hashing a (method, path) key.
        methods = self._static_paths.get(request.path)
        route = methods.get(request.method) if methods is not None else None
        if route is None:
            return self._handle_slow(request, server)
        request.handler = route.label
        ctx = Context(request, server, route.chain, None, route, self)
        if route.is_async:
            return self._run_async(ctx, route.first)
        first = route.first
        if (route.offload or server.offload_all_sync) and server.offload_sync:
            return self._run_offloaded(ctx, first)
        try:
            result = first(ctx)
            if result is not None:
                if inspect.isawaitable(result):
                    return self._finish_async(ctx, result, first)
                ctx.apply_return(result, first)
            return ctx.build_response()
        except Exception as exc:
            return self._error(ctx, exc)

    def _handle_slow(self, request: Request, server: Server) -> Response | Awaitable[Response]:
        try:
            found = self._find_beyond_static(request.method, request.path, request.raw_path)
        except Exception as exc:  # pragma: no cover - defensive: routing must never raise
            return self._error(Context(request, server, app=self), exc)
        if found is not None:
            route, params = found
            request.handler = route.label
            ctx = Context(request, server, route.chain, params, route, self)
            first = route.first
            if route.is_async:
                return self._run_async(ctx, first)
            if (route.offload or server.offload_all_sync) and server.offload_sync:
                return self._run_offloaded(ctx, first)
        else:
            if not self._middleware:
                return self._fallback_response(request)
            if self.allowed_methods(request.path, request.raw_path):
                chain = self._not_allowed_chain
            else:
                chain = self._not_found_chain
            ctx = Context(request, server, chain, app=self)
            first = chain[0]
            if self._fallback_async:
                return self._run_async(ctx, first)
        try:
            result = first(ctx)
            if result is not None:
                if inspect.isawaitable(result):
                    return self._finish_async(ctx, result, first)
                ctx.apply_return(result, first)
            return ctx.build_response()
        except Exception as exc:
            return self._error(ctx, exc)

    async def _run_offloaded(self, ctx: Context, first: Callable[[Context], Any]) -> Response:
        """A plain chain that may block, run on the server's blocking pool (event loop)."""
        import asyncio  # only reached on a running loop

        def call() -> Response | Awaitable[Response]:
            try:
                result = first(ctx)
                if result is not None:
                    if inspect.isawaitable(result):
                        return self._finish_async(ctx, result, first)
                    ctx.apply_return(result, first)
                return ctx.build_response()
            except Exception as exc:
                return self._error(ctx, exc)

        loop = asyncio.get_running_loop()
        outcome = await loop.run_in_executor(ctx.server.blocking_executor, call)
        if isinstance(outcome, Response):
            return outcome
        return await outcome

    def describe_route(self, request: Request) -> str:
        """``route /users/:id, handler get_user`` for log lines about ``request``."""
        found = self._find(request.method, request.path, request.raw_path)
        if found is None:
            return "no route"
        route = found[0]
        handler = getattr(route.handler, "__qualname__", None) or type(route.handler).__name__
        return f"route {route.pattern}, handler {handler}"

    def stream_body(self, request: Request) -> bool:
        """The engine asks when a head with a body is complete: stream it? (the route's
        ``stream=True``). Unmatched requests are buffered (and answered 404/405)."""
        if not self._stream_routes:
            return False
        try:
            found = self._find(request.method, request.path, request.raw_path)
        except Exception:  # pragma: no cover - defensive: routing must never raise
            return False
        return found is not None and found[0].stream

    async def _run_async(self, ctx: Context, first: Callable[[Context], Any]) -> Response:
        try:
            result = await first(ctx)
            if result is not None:
                ctx.apply_return(result, first)
            return ctx.build_response()
        except Exception as exc:
            return self._error(ctx, exc)

    async def _finish_async(
        self, ctx: Context, pending: Awaitable[Any], first: Callable[[Context], Any]
    ) -> Response:
        """A "sync" callable returned an awaitable (e.g. an object with async ``__call__``)."""
        try:
            result = await pending
            if result is not None:
                ctx.apply_return(result, first)
            return ctx.build_response()
        except Exception as exc:
            return self._error(ctx, exc)

    def _error(self, ctx: Context, exc: Exception) -> Response:
        if isinstance(exc, HTTPError):
            return _plain(exc.status, exc.detail.encode("utf-8"), exc.headers)
        request = ctx.request
        route = ctx.route
        log.error(
            "unhandled %s in %s %s (handler %s, route %s): %s",
            type(exc).__name__,
            request.method,
            request.path,
            route.label if route is not None else "-",
            route.pattern if route is not None else "-",
            exc,
            exc_info=exc,
        )
        return _plain(500, INTERNAL_ERROR_BODY)

    def _fallback_response(self, request: Request) -> Response:
        allowed = self.allowed_methods(request.path, request.raw_path)
        if allowed:
            return _plain(405, b"405 Method Not Allowed\n", [("Allow", ", ".join(allowed))])
        if request.method not in self._methods:
            return _plain(501, b"501 Not Implemented\n")
        return _plain(404, b"404 Not Found\n")

    def _not_found(self, ctx: Context) -> None:
        if ctx.request.method not in self._methods:
            ctx.text(501, "501 Not Implemented\n")
        else:
            ctx.text(404, "404 Not Found\n")

    def _not_allowed(self, ctx: Context) -> None:
        request = ctx.request
        ctx.set_header("Allow", ", ".join(self.allowed_methods(request.path, request.raw_path)))
        ctx.text(405, "405 Method Not Allowed\n")

    def check_continue(self, request: Request) -> Response | None:
        """For ``Expect: 100-continue``: ``None`` to read the body, else a final 404/405/501.

        Runs no handler. With router-wide middleware it also returns ``None``
        for unmatched requests, because middleware may answer any path (CORS
        preflight, health checks) and the answer must not depend on ``Expect``.
        """
        found = self._find(request.method, request.path, request.raw_path)
        if found is not None or self._middleware:
            return None
        return self._fallback_response(request)
