"""Health check: answer ``GET``/``HEAD`` on one path before routing work happens."""

from __future__ import annotations

from zzz.context import Context
from zzz.middleware._chain import Hooks


class Health(Hooks):
    """Answer ``path`` with 200 ``body``, or 503 once the server is shutting down.

    The 503 during a graceful shutdown tells a load balancer to stop sending
    new requests while in-flight ones finish. Other methods on ``path`` and
    every other path go on down the chain.
    """

    __slots__ = ("body", "path")

    def __init__(self, path: str = "/healthz", body: str = "ok\n") -> None:
        if not path.startswith("/"):
            raise ValueError(f"health path must start with '/': {path!r}")
        self.path = path
        self.body = body

    def enter(self, ctx: Context) -> bool:
        request = ctx.request
        if request.path != self.path or request.method not in ("GET", "HEAD"):
            return False
        shutting_down = getattr(ctx.server, "shutting_down", None)
        if shutting_down is not None and shutting_down.is_set():
            ctx.text(503, "shutting down\n")
        else:
            ctx.text(200, self.body)
        ctx.set_header("Cache-Control", "no-store")
        return True


def health(path: str = "/healthz", body: str = "ok\n") -> Health:
    """Middleware answering ``path`` (200, or 503 once a graceful shutdown began)."""
    return Health(path, body)
