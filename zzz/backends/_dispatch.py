"""What both backends do with the engine's events, written once.

The backends differ in how bytes move (blocking workers vs loop callbacks); the
answers to the engine's events do not: a handler that raises becomes a logged
500, an ``Expect: 100-continue`` is granted or refused by the application, and
a connection closed with unread input closes lingering.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from zzz.http.connection import CONTINUE_RESPONSE, ExpectContinue, HTTPConnection
from zzz.http.request import Request
from zzz.http.response import Response

if TYPE_CHECKING:
    from zzz.server import Server

log = logging.getLogger("zzz.app")

#: The answer to a request whose handler raised (the traceback goes to the log only).
INTERNAL_ERROR = Response(
    500, [("Content-Type", "text/plain; charset=utf-8")], b"500 Internal Server Error\n"
)
#: Lingering close after an answer that left the request unread: how long, and how
#: many bytes, of what the client still sends are read and dropped, so that the close
#: does not reset the connection before the client has read the answer.
LINGER_CLOSE_S = 2.0
LINGER_MAX_BYTES = 4 * 1024 * 1024


def app_error(request: Request) -> Response:
    """Log the exception being handled for ``request``; the response to send instead."""
    log.exception("application error for %s %s", request.method, request.path)
    return INTERNAL_ERROR


def answer_expect(server: Server, engine: HTTPConnection, event: ExpectContinue) -> bytes:
    """``100 Continue`` when the application will read the body, else its final answer
    (after which the connection closes without reading the body)."""
    request = event.request
    try:
        rejection = server.check_continue(request)
    except Exception:
        rejection = app_error(request)
    if rejection is None:
        return CONTINUE_RESPONSE
    engine.close_after_response = True
    return engine.serialize(rejection, request)
