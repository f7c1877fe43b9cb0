"""Which idle connections a draining server may close at once.

A graceful drain closes idle keep-alive connections: their client has had its
answers and is told nothing is lost. A connection that was *just accepted* is
different: its client has connected and is about to send its first request,
which may simply not have arrived yet. Behind a shared listening socket (worker
processes replaced by ``max_requests`` or ``SIGHUP``) closing it would turn a
request the client already sent into a reset. Such a connection gets
``FIRST_REQUEST_GRACE_S`` to send its request; it is then served with
``Connection: close`` like any other in-flight request.
"""

from __future__ import annotations

from zzz.http.connection import HTTPConnection

#: How long a draining server waits for the first request of a fresh connection:
#: far above a client's connect-to-send gap, far below any drain deadline.
FIRST_REQUEST_GRACE_S = 1.0


def may_close_idle(engine: HTTPConnection, idle_for: float) -> bool:
    """Whether an idle connection may be closed now by a drain."""
    return engine.responses_sent > 0 or idle_for >= FIRST_REQUEST_GRACE_S
