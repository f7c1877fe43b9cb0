"""The admin listener: metrics, liveness and readiness on their own port and thread.

A scrape or a probe on the app port queues behind application traffic (and,
on the event loop, renders on the loop thread). The admin port does not: it is
a small ``http.server.ThreadingHTTPServer`` on its own thread, so it answers
while every worker is busy — and while the app listener is closed during a
drain, which is exactly when a load balancer needs ``/readyz`` to say 503.
It closes only when the server has stopped (``Server.listen`` returning,
i.e. just before the process exits).

Paths: ``/metrics`` (when metrics are on), ``/healthz``, ``/readyz``, plus the
configured ``metrics_path``/``health_path``/``ready_path`` if they differ.
Nothing here is logged at INFO. With ``PROMETHEUS_MULTIPROC_DIR`` set (several
workers) the port is bound with ``SO_REUSEPORT`` so that every worker can bind it;
the kernel hands each scrape to one of them, which reports all workers' sums
(readiness and liveness are then those of the worker reached).
"""

from __future__ import annotations

import http.server
import logging
import os
import socket
import threading
from typing import TYPE_CHECKING, Any

from zzz.http.response import Response
from zzz.observability.multiproc import MULTIPROC_ENV

if TYPE_CHECKING:
    from zzz.observability.observer import Observer

log = logging.getLogger("zzz.server")

#: Default probe paths on the admin port (Kubernetes' conventional names).
ADMIN_HEALTH_PATH = "/healthz"
ADMIN_READY_PATH = "/readyz"
ADMIN_METRICS_PATH = "/metrics"
#: Seconds a silent admin client may hold its handler thread.
ADMIN_TIMEOUT_S = 10.0
#: How often the admin thread checks for close(): bounds how long a stop waits for it.
ADMIN_POLL_S = 0.05


class AdminListener:
    """``ThreadingHTTPServer`` bound at construction, serving from :meth:`start`."""

    def __init__(self, observer: Observer, host: str, port: int) -> None:
        routes: dict[str, Any] = {
            ADMIN_HEALTH_PATH: observer.health_response,
            ADMIN_READY_PATH: observer.ready_response,
        }
        config = observer.config
        if config.health_path:
            routes[config.health_path] = observer.health_response
        if config.ready_path:
            routes[config.ready_path] = observer.ready_response
        if observer.metrics is not None:
            routes[ADMIN_METRICS_PATH] = observer.metrics_response
            if config.metrics_path:
                routes[config.metrics_path] = observer.metrics_response
        handler = type("AdminHandler", (_Handler,), {"routes": routes})
        server_class: type[http.server.ThreadingHTTPServer] = http.server.ThreadingHTTPServer
        if ":" in host:
            server_class = _V6Server
        self._httpd = server_class((host, port), handler, bind_and_activate=False)
        # Several workers (multiprocess metrics) each bind the admin port: any of them
        # answers a scrape with every worker's sums. One process alone binds it exclusively.
        self._httpd.allow_reuse_port = bool(os.environ.get(MULTIPROC_ENV))
        try:
            self._httpd.server_bind()
            self._httpd.server_activate()
        except OSError as exc:
            self._httpd.server_close()
            raise OSError(exc.errno, f"observability.metrics_port: cannot listen on "
                                     f"{host}:{port}: {exc.strerror}") from None
        self._httpd.daemon_threads = True
        self.port: int = self._httpd.server_address[1]
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(ADMIN_POLL_S,),
                                        name="zzz-admin", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        if self._thread.is_alive():  # shutdown() would wait for ever on a loop never run
            self._httpd.shutdown()
            self._thread.join()
        self._httpd.server_close()


class _V6Server(http.server.ThreadingHTTPServer):
    address_family = socket.AF_INET6


class _Handler(http.server.BaseHTTPRequestHandler):
    routes: dict[str, Any] = {}
    timeout = ADMIN_TIMEOUT_S
    protocol_version = "HTTP/1.1"
    server_version = "zzz-admin"

    def do_GET(self) -> None:
        self._answer(send_body=True)

    def do_HEAD(self) -> None:
        self._answer(send_body=False)

    def _answer(self, send_body: bool) -> None:
        path = self.path.split("?", 1)[0]
        answer = self.routes.get(path)
        if answer is None:
            response = Response(404, [("Content-Type", "text/plain")], b"not found\n")
        else:
            response = answer()
        self.send_response(response.status)
        for name, value in response.headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(response.body)))
        self.end_headers()
        if send_body:
            self.wfile.write(response.body)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("admin: " + format, *args)
