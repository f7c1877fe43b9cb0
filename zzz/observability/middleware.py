"""Router middleware: ``zzz.metrics()`` and ``zzz.structured_logger()``.

The server-level Observer sees every application but not its routes; these
two run inside the Router, where ``ctx.route`` names the matched route. Both
label a request with the route *pattern* (``/users/:id``), never the raw path,
so a scanner probing a million paths adds no series and no unbounded field:
every request the router answers without a route (404, 405) shares
:data:`UNMATCHED_ROUTE`.

Like the built-in middleware, each is an object with a sync ``__call__`` and
an async ``acall``; configuration happens once, in the factory.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from zzz.context import Context
from zzz.middleware._chain import Hooks
from zzz.observability.lines import LinePath, json_str

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

#: The route label of requests no route matched (404, 405): one label for all of them.
UNMATCHED_ROUTE = "(unmatched)"
#: Logger of ``structured_logger`` lines (the server's own access log is ``zzz.access``:
#: a different name, so enabling both never prints a request twice on one logger).
REQUEST_LOGGER = "zzz.request"
#: Formats ``structured_logger`` writes.
FORMATS = ("text", "json")


_ROUTE_REQUESTS = ("zzz_route_requests", "Requests by method, route pattern and status class")
_ROUTE_DURATION = ("zzz_route_request_duration_seconds", "Time in the middleware chain by route")


def _route(ctx: Context) -> str:
    route = ctx.route
    return route.pattern if route is not None else UNMATCHED_ROUTE


class RouteMetrics(Hooks):
    """Requests and durations by route pattern; answers ``path`` with the exposition
    of its registry followed by the server's own metrics (when the server has them).

    Counts go to per-thread shards summed at scrape time (see
    :mod:`zzz.observability.shards`), or to ``prometheus_client`` objects in
    multiprocess mode.
    """

    __slots__ = ("_bounds", "_duration", "_requests", "_shards", "path", "registry")

    def __init__(self, path: str = "/metrics", registry: CollectorRegistry | None = None) -> None:
        if not path.startswith("/"):
            raise ValueError(f"metrics path must start with '/': {path!r}")
        try:
            from prometheus_client import CollectorRegistry, Counter, Histogram
        except ImportError:
            raise ImportError("zzz.metrics() needs prometheus_client: "
                              "pip install 'zzz[metrics]'") from None
        from zzz.observability.metrics import DURATION_BUCKETS
        from zzz.observability.multiproc import MULTIPROC_ENV
        from zzz.observability.shards import ShardSet

        self.path = path
        self.registry = registry if registry is not None else CollectorRegistry()
        self._bounds = DURATION_BUCKETS
        self._shards: ShardSet | None = None
        self._requests: Any = None
        self._duration: Any = None
        if os.environ.get(MULTIPROC_ENV):
            self._requests = Counter(*_ROUTE_REQUESTS, ["method", "route", "status_class"],
                                     registry=self.registry)
            self._duration = Histogram(*_ROUTE_DURATION, ["route"], buckets=DURATION_BUCKETS,
                                       registry=self.registry)
        else:
            self._shards = ShardSet()
            self.registry.register(_RouteCollector(self._shards, DURATION_BUCKETS))

    def enter(self, ctx: Context) -> bool:
        """Answer a scrape of :attr:`path`."""
        request = ctx.request
        if request.path != self.path or request.method not in ("GET", "HEAD"):
            return False
        from prometheus_client import generate_latest

        from zzz.observability.metrics import CONTENT_TYPE

        server_metrics = getattr(getattr(ctx.server, "observer", None), "metrics", None)
        if self._shards is None and server_metrics is not None:
            body = server_metrics.exposition()  # multiprocess: every file, ours included
        else:
            body = generate_latest(self.registry)
            if server_metrics is not None:
                body += server_metrics.exposition()
        ctx.respond(200, CONTENT_TYPE, body)
        ctx.set_header("Cache-Control", "no-store")
        return True

    def leave(self, ctx: Context, status: int, duration_ns: int) -> None:
        route = ctx.route
        pattern = route.pattern if route is not None else UNMATCHED_ROUTE
        seconds = duration_ns / 1e9
        shards = self._shards
        if shards is not None:
            shard = shards.get()
            counts = shard.counts
            key = (ctx.request.method, pattern, status)
            counts[key] = counts.get(key, 0) + 1
            shard.observe(pattern, self._bounds, seconds)
            return
        from zzz.observability.metrics import method_label, status_class

        self._requests.labels(method_label(ctx.request.method), pattern,
                              status_class(status)).inc()
        self._duration.labels(pattern).observe(seconds)


class _RouteCollector:
    """Builds the route families from the shards at scrape time."""

    def __init__(self, shards: Any, bounds: tuple[float, ...]) -> None:
        self._shards = shards
        self._bounds = bounds

    def describe(self) -> list[Any]:
        return []

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily

        from zzz.observability.metrics import method_label, status_class
        from zzz.observability.shards import histogram_family

        counts, hists = self._shards.merged()
        totals: dict[tuple[str, str, str], int] = {}
        for (method, pattern, status), n in counts.items():
            label = (method_label(method), pattern, status_class(status))
            totals[label] = totals.get(label, 0) + n
        family = CounterMetricFamily(*_ROUTE_REQUESTS, labels=["method", "route", "status_class"])
        for labels, n in sorted(totals.items()):
            family.add_metric(list(labels), n)
        yield family
        yield histogram_family(*_ROUTE_DURATION, ["route"],
                               iter(((pattern,), hist) for pattern, hist in sorted(hists.items())),
                               self._bounds)


class StructuredLogger(Hooks):
    """One record per request on ``zzz.request`` with the route pattern and request id.

    The record's fields are attributes (``extra``), so a JSON handler writes
    them as keys; the message itself is ``key=value`` pairs (``text``) or a
    JSON object (``json``), so a line stays machine-readable under any handler.
    While the logger's only handler is zzz's own (``--log-format``, no
    ``--log-config``, no filters), the line goes to it without a ``LogRecord``
    (:mod:`zzz.observability.lines`), byte for byte what the record would print.
    """

    __slots__ = ("_json", "_level", "_levelname", "_lines", "_log")

    def __init__(self, level: int | str = logging.INFO, format: str = "text",
                 logger: str | logging.Logger = REQUEST_LOGGER) -> None:
        if format not in FORMATS:
            raise ValueError(f"format must be one of {', '.join(FORMATS)}, got {format!r}")
        if isinstance(level, str):
            number = logging.getLevelName(level.upper())
            if not isinstance(number, int):
                raise ValueError(f"unknown log level {level!r}")
            level = number
        self._level = level
        self._levelname = logging.getLevelName(level)
        self._json = format == "json"
        self._log = logging.getLogger(logger) if isinstance(logger, str) else logger
        self._lines = LinePath(self._log, level)

    def leave(self, ctx: Context, status: int, duration_ns: int) -> None:
        if not self._log.isEnabledFor(self._level):
            return
        request = ctx.request
        client = request.client
        method = request.method
        path = request.raw_path
        route = _route(ctx)
        duration_us = duration_ns // 1000
        where = f"{client[0]}:{client[1]}" if client else None
        request_id = _request_id(ctx)
        agent = request.headers.first(b"user-agent")
        now = time.time()
        handler = self._lines.handler(now)
        # Spelled out (not a loop over a dict of fields, no helper calls): this runs per request.
        encoded = ""
        if self._json or (handler is not None and handler.json):
            encoded = (f', "method": {json_str(method)}, "path": {json_str(path)}, '
                       f'"route": {json_str(route)}, "status": {status}, '
                       f'"duration_us": {duration_us}, '
                       f'"client": {"null" if where is None else json_str(where)}, '
                       f'"request_id": {"null" if request_id is None else json_str(request_id)}, '
                       f'"user_agent": {"null" if agent is None else json_str(agent)}')
        quoted = None
        if self._json:
            message = "{" + encoded[2:] + "}"  # = json.dumps(fields, ensure_ascii=False)
            if handler is not None and handler.json:
                # json_str(message), by two C-level replaces instead of a scan in Python's
                # JSON escaper: the message is JSON text, so it holds no raw control
                # characters (its strings were escaped above); only \ and " need escaping.
                quoted = '"' + message.replace("\\", "\\\\").replace('"', '\\"') + '"'
        else:  # method is a token, status and duration numbers: never quoted
            message = (f"method={method} path={_logfmt(path)} route={_logfmt(route)} "
                       f"status={status} duration_us={duration_us} client={where or '-'} "
                       f"request_id={_logfmt(request_id)} user_agent={_logfmt(agent)}")
        if handler is not None:
            handler.write(handler.line(now, self._levelname, self._log.name, message, encoded,
                                       quoted))
            return
        self._log.log(self._level, "%s", message, extra={
            "method": method, "path": path, "route": route, "status": status,
            "duration_us": duration_us, "client": where, "request_id": request_id,
            "user_agent": agent,
        })


def _request_id(ctx: Context) -> str | None:
    assigned = ctx.assigns.get("request_id")
    if isinstance(assigned, str):
        return assigned
    for name, value in ctx.response_headers:
        if name.lower() == "x-request-id":
            return value
    return ctx.request.headers.first(b"x-request-id")


#: Characters that make a logfmt value need quoting.
_LOGFMT_QUOTE = re.compile(r'[ "=\\]')


def _logfmt(value: str | None) -> str:
    """A logfmt value: ``-`` for none, JSON-quoted when empty or holding ``␠"=\\``."""
    if value is None:
        return "-"
    if not value or _LOGFMT_QUOTE.search(value):
        return json.dumps(value)
    return value


def metrics(path: str = "/metrics", registry: CollectorRegistry | None = None) -> RouteMetrics:
    """Router middleware: Prometheus metrics by route pattern, served on ``path``."""
    return RouteMetrics(path, registry)


def structured_logger(level: int | str = logging.INFO, format: str = "text") -> StructuredLogger:
    """Router middleware: one structured record per request (``text`` or ``json``)."""
    return StructuredLogger(level, format)
