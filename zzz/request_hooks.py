"""What happens to every request before the application, decided by configuration.

Two settings act on each request without the backends knowing about them:

- ``proxy_headers``: the client address and scheme are rewritten from trusted
  proxy headers (:mod:`zzz.proxy`);
- ``max_requests`` (+ ``max_requests_jitter``): after that many requests the
  server begins its graceful shutdown, so its supervisor replaces the worker
  (:mod:`zzz.supervisor`); the request that reaches the limit is answered normally.

:func:`install` wraps the server's ``handle``/``check_continue`` entry points
on the instance, and only when one of the settings is on: a default server
runs the unwrapped methods, with no cost per request.
"""

from __future__ import annotations

import itertools
import logging
import random
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from zzz import proxy
from zzz.http.request import Request
from zzz.http.response import Response

if TYPE_CHECKING:
    from zzz.server import Server

log = logging.getLogger("zzz.server")

#: ``request.extensions`` key marking a request already rewritten from proxy headers
#: (``check_continue`` sees a request before ``handle`` does).
PROXY_APPLIED = "proxy_headers_applied"


def request_limit(max_requests: int, jitter: int, rng: random.Random | None = None) -> int:
    """This worker's limit: ``max_requests`` plus 0..``jitter`` (0: no limit)."""
    if max_requests <= 0:
        return 0
    return max_requests + ((rng or random).randint(0, jitter) if jitter > 0 else 0)


def install(server: Server) -> None:
    """Wrap ``server.handle``/``check_continue`` when proxy headers or max_requests are on."""
    config = server.config
    trusted = proxy.parse_trusted(config.forwarded_allow_ips) if config.proxy_headers else None
    limit = request_limit(config.max_requests, config.max_requests_jitter)
    if trusted is None and limit == 0:
        return
    inner_handle: Callable[[Request], Response | Awaitable[Response]] = server.handle
    inner_continue: Callable[[Request], Response | None] = server.check_continue
    counter = itertools.count(1)  # next() is atomic under the GIL: no lock per request

    def rewrite(request: Request) -> None:
        if trusted is not None and PROXY_APPLIED not in request.extensions:
            request.extensions[PROXY_APPLIED] = True
            proxy.apply(request, trusted)

    def handle(request: Request) -> Response | Awaitable[Response]:
        rewrite(request)
        try:
            return inner_handle(request)
        finally:
            if limit and next(counter) == limit:
                log.info("served %d requests (max_requests): draining for replacement", limit)
                server.shutdown()

    def check_continue(request: Request) -> Response | None:
        rewrite(request)
        return inner_continue(request)

    # Instance attributes shadow the methods; backends call server.handle(...).
    setattr(server, "handle", handle)  # noqa: B010
    setattr(server, "check_continue", check_continue)  # noqa: B010
