"""Access log: one ``logging`` record per request, after the response is decided."""

from __future__ import annotations

import logging

from zzz.context import Context
from zzz.middleware._chain import Hooks

#: Logger the access lines go to unless another is given.
ACCESS_LOGGER = "zzz.access"


class Logger(Hooks):
    """Log ``client "METHOD path HTTP/x.y" status duration`` for every request.

    The query string is left out on purpose: it often carries tokens. The
    duration is the time to produce the response; a streamed body may still be
    sending. When the chain raises, the line shows the status the router will
    answer (the ``HTTPError`` status, else 500) and the exception goes on.
    """

    __slots__ = ("_level", "_log")

    def __init__(
        self, logger: str | logging.Logger = ACCESS_LOGGER, level: int = logging.INFO
    ) -> None:
        self._log = logging.getLogger(logger) if isinstance(logger, str) else logger
        self._level = level

    def leave(self, ctx: Context, status: int, duration_ns: int) -> None:
        if not self._log.isEnabledFor(self._level):
            return
        request = ctx.request
        client = request.client[0] if request.client else "-"
        self._log.log(
            self._level,
            '%s "%s %s HTTP/%s" %d %.2fms',
            client,
            request.method,
            request.raw_path,
            request.http_version,
            status,
            duration_ns / 1e6,
        )
