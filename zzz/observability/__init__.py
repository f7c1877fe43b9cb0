"""Server-level observability: access log, Prometheus metrics, health and readiness.

Theory of operation
-------------------
Everything here works for *every* application a server runs (the Router
today, ASGI/WSGI adapters), so none of it lives in the Router. Each
:class:`~zzz.server.Server` owns one :class:`Observer` (``server.observer``),
built from ``Config.observability``:

* **Requests** are seen by wrapping the application entry point
  (``Server.handle``) once, at construction — only when something is on. A
  server with no access log, no metrics and no probe path serves through the
  unwrapped entry point: a disabled feature costs one attribute check at
  start-up, nothing per request. The wrapper answers probe paths before
  routing, times the call and records status, body bytes and duration when
  the response is produced (a streamed body: at its last chunk).
* **Connections and protocol errors** the application never sees come from
  one-line hooks in the backends (``observer.connection_opened()``,
  ``observer.bad_request(status)``, ``observer.tls_failed()``,
  ``observer.attach_backend(self)``). Levels (open connections, native queue
  depth, busy workers, parked connections) are read from the backend object
  at scrape time, never updated per request.
* **Shutdown**: ``Server.shutdown()`` first calls ``observer.begin_drain``:
  readiness turns 503 at once; with ``drain_delay_ms`` the listener keeps
  accepting that long before the backend's drain starts. The admin listener
  (``metrics_port``) runs on its own thread and answers (ready 503, live 200)
  until ``Server.listen`` returns.

Modules: :mod:`.observer` (the wrapper, hooks and readiness), :mod:`.metrics`
(``prometheus_client`` collectors; optional extra ``zzz[metrics]``),
:mod:`.multiproc` (``PROMETHEUS_MULTIPROC_DIR`` for a multi-worker
supervisor), :mod:`.admin` (the admin listener), :mod:`.logs` (text/JSON
formats, ``--log-config``, logger names), :mod:`.middleware` (the Router's
``zzz.metrics()`` and ``zzz.structured_logger()`` with route labels).
"""

from zzz.observability.logs import ACCESS_LOGGER, JsonFormatter, configure_logging
from zzz.observability.multiproc import mark_worker_dead, prepare_multiprocess_dir
from zzz.observability.observer import Observer, ReadyCheck

__all__ = [
    "ACCESS_LOGGER",
    "JsonFormatter",
    "Observer",
    "ReadyCheck",
    "configure_logging",
    "mark_worker_dead",
    "prepare_multiprocess_dir",
]
