"""CORS (Fetch standard): preflight answers and the response headers for simple requests."""

from __future__ import annotations

import re
from collections.abc import Iterable

from zzz.context import Context

#: How long (seconds) browsers may cache a preflight answer.
DEFAULT_MAX_AGE = 600
DEFAULT_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")
DEFAULT_HEADERS = ("Content-Type", "Authorization")

_HEADER_LIST = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z, ]*")


def _listed(values: str | Iterable[str]) -> tuple[str, ...]:
    return (values,) if isinstance(values, str) else tuple(values)


class Cors:
    """Allow cross-origin requests from ``allow_origins`` (``"*"``: any origin).

    Preflights (``OPTIONS`` with ``Origin`` and ``Access-Control-Request-Method``)
    from an allowed origin are answered ``204`` here and go no further. Other
    requests from an allowed origin get the CORS headers and continue.
    Requests from other origins pass through untouched; the browser blocks them.
    Credentials with any origin are refused: reflecting every origin with
    cookies would let any site act as the user.
    """

    __slots__ = (
        "_any_origin",
        "_credentials",
        "_expose",
        "_headers",
        "_max_age",
        "_methods",
        "_origins",
        "_reflect_headers",
    )

    def __init__(
        self,
        allow_origins: str | Iterable[str] = "*",
        *,
        allow_methods: str | Iterable[str] = DEFAULT_METHODS,
        allow_headers: str | Iterable[str] = DEFAULT_HEADERS,
        expose_headers: str | Iterable[str] = (),
        allow_credentials: bool = False,
        max_age: int = DEFAULT_MAX_AGE,
    ) -> None:
        origins = _listed(allow_origins)
        self._any_origin = "*" in origins
        if self._any_origin and allow_credentials:
            raise ValueError("CORS: allow_credentials needs an explicit list of allow_origins")
        self._origins = frozenset(origins)
        self._credentials = allow_credentials
        self._methods = ", ".join(m.upper() for m in _listed(allow_methods))
        headers = _listed(allow_headers)
        # "*" means any header, but is only a wildcard without credentials.
        self._reflect_headers = "*" in headers and allow_credentials
        self._headers = ", ".join(headers)
        self._expose = ", ".join(_listed(expose_headers))
        if isinstance(max_age, bool) or not isinstance(max_age, int) or max_age < 0:
            raise ValueError(f"CORS: max_age must be an int >= 0, got {max_age!r}")
        self._max_age = str(max_age)

    def _set_origin(self, ctx: Context, origin: str) -> None:
        if self._any_origin:
            ctx.set_header("Access-Control-Allow-Origin", "*")
        else:
            ctx.set_header("Access-Control-Allow-Origin", origin)
        if self._credentials:
            ctx.set_header("Access-Control-Allow-Credentials", "true")

    def _begin(self, ctx: Context) -> bool:
        """Set the headers; True when this was a preflight answered here."""
        headers = ctx.headers
        origin = headers.get("origin")
        if not self._any_origin:
            # The answer depends on Origin even when it is absent or refused (caches).
            ctx.add_header("Vary", "Origin")
        if origin is None or not (self._any_origin or origin in self._origins):
            return False
        if ctx.method == "OPTIONS" and "access-control-request-method" in headers:
            self._set_origin(ctx, origin)
            ctx.set_header("Access-Control-Allow-Methods", self._methods)
            requested = headers.get("access-control-request-headers")
            if self._reflect_headers:
                if requested and _HEADER_LIST.fullmatch(requested):
                    ctx.set_header("Access-Control-Allow-Headers", requested)
                ctx.add_header("Vary", "Access-Control-Request-Headers")
            elif self._headers:
                ctx.set_header("Access-Control-Allow-Headers", self._headers)
            ctx.set_header("Access-Control-Max-Age", self._max_age)
            ctx.status = 204
            return True
        self._set_origin(ctx, origin)
        if self._expose:
            ctx.set_header("Access-Control-Expose-Headers", self._expose)
        return False

    def __call__(self, ctx: Context) -> None:
        if not self._begin(ctx):
            ctx.next()

    async def acall(self, ctx: Context) -> None:
        if not self._begin(ctx):
            await ctx.next()
