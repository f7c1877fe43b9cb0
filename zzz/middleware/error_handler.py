"""Error handler: turn what the rest of the chain raises into a deliberate answer.

Without it the router already answers an ``HTTPError`` with its status and a
bare 500 for anything else. This middleware makes those answers match what the
client asked for: JSON (``{"error": ..., "status": ...}``) when the request's
``Accept`` prefers ``application/json``, plain text otherwise, and keeps the
response headers set before the failure (a request ID, CORS headers).

Unexpected exceptions are logged with their traceback (logger ``zzz.app``,
like the router) and answered 500. ``show_details=True`` puts the exception
type, message and traceback in the body: for development only, since it shows
code paths and values to whoever triggers the error.
"""

from __future__ import annotations

import logging
import traceback

from zzz.context import Context
from zzz.errors import HTTPError
from zzz.http.status import reason

log = logging.getLogger("zzz.app")

#: Most traceback frames shown with ``show_details``: the innermost ones matter.
MAX_TRACEBACK_FRAMES = 20


def _wants_json(ctx: Context) -> bool:
    accept = ctx.headers.get("accept")
    if not accept:
        return False
    for item in accept.split(","):
        media = item.partition(";")[0].strip().lower()
        if media == "application/json" or media.endswith("+json"):
            return True
        if media in ("text/html", "text/plain", "*/*"):
            return False
    return False


class ErrorHandler:
    """Answer exceptions from the rest of the chain (see the module docstring)."""

    __slots__ = ("show_details",)

    def __init__(self, show_details: bool = False) -> None:
        self.show_details = show_details

    def _answer(self, ctx: Context, exc: Exception) -> None:
        if isinstance(exc, HTTPError):
            status, message = exc.status, exc.detail
            for name, value in exc.headers:
                ctx.set_header(name, value)
        else:
            request = ctx.request
            log.error("unhandled %s in %s %s (route %s)", type(exc).__name__,
                      request.method, request.path,
                      ctx.route.pattern if ctx.route is not None else "-", exc_info=exc)
            status, message = 500, reason(500)
        details: str | None = None
        if self.show_details and not isinstance(exc, HTTPError):
            frames = traceback.format_exception(exc, limit=-MAX_TRACEBACK_FRAMES)
            details = "".join(frames)
        if _wants_json(ctx):
            payload: dict[str, object] = {"error": message, "status": status}
            if details is not None:
                payload["details"] = details
            ctx.json(status, payload)
        else:
            ctx.text(status, f"{message}\n" + (f"\n{details}" if details else ""))

    def __call__(self, ctx: Context) -> None:
        try:
            ctx.next()
        except Exception as exc:
            self._answer(ctx, exc)

    async def acall(self, ctx: Context) -> None:
        try:
            await ctx.next()
        except Exception as exc:
            self._answer(ctx, exc)


def error_handler(show_details: bool = False) -> ErrorHandler:
    """Middleware answering exceptions as text or JSON; ``show_details`` for development."""
    return ErrorHandler(show_details)
