"""Exceptions an application raises on purpose to answer with an HTTP error status."""

from __future__ import annotations

from collections.abc import Sequence

from zzz.http.status import reason


class HTTPError(Exception):
    """Raise from a handler or middleware to answer ``status`` with a short text body.

    The router turns it into a fresh plain-text response (``detail``, or the
    reason phrase when empty) plus ``headers``; it is not logged as a failure,
    because it is the application's chosen answer, not a bug.
    """

    def __init__(
        self, status: int, detail: str = "", headers: Sequence[tuple[str, str]] = ()
    ) -> None:
        if isinstance(status, bool) or not isinstance(status, int) or not 400 <= status <= 599:
            raise ValueError(f"HTTPError status must be an int in 400..599, got {status!r}")
        self.status = status
        self.detail = detail or reason(status)
        self.headers = list(headers)
        super().__init__(f"{status} {self.detail}")


class StartupError(Exception):
    """The application failed to start (a startup hook, an ASGI lifespan startup):
    the server does not serve, and the CLI exits with status 2 and this message."""
