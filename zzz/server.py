"""Server: an application plus its configuration, a shutdown flag and signal handling.

The server owns no sockets, threads or loops: it resolves its backend once
(``zzz.backends.load(name)``) and ``listen()`` delegates to it. What the
backends share lives here: the application entry points (:meth:`Server.handle`,
:meth:`Server.check_continue`), the staged-shutdown flag and the timer API.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import inspect
import logging
import os
import signal
import threading
from collections.abc import Awaitable, Callable, Coroutine
from types import FrameType, ModuleType
from typing import Any, Protocol

from zzz import backends, request_hooks
from zzz.config import Config
from zzz.errors import StartupError
from zzz.http.connection import StreamPredicate
from zzz.http.request import Request
from zzz.http.response import Response
from zzz.observability.observer import Observer
from zzz.timers import Timer, TimerService

log = logging.getLogger("zzz.server")

#: Exit status when a second signal forces exit during a graceful shutdown.
FORCED_EXIT_STATUS = 1
#: Shortest interval of a repeating timer: one of 0 ms would run its callback back
#: to back forever (a busy loop on the timer thread, a starved event loop), so it
#: is refused rather than silently stretched. One-shot timers may use 0.
MIN_REPEAT_INTERVAL_MS = 1


class Application(Protocol):
    """What a server serves. :class:`zzz.Router` is one; any object with these works."""

    def handle(self, request: Request, server: Server) -> Response | Awaitable[Response]:
        """Answer ``request``: a response, or an awaitable of one for async handlers."""
        ...

    def check_continue(self, request: Request) -> Response | None:
        """Before reading a ``100-continue`` body: ``None`` to read it, or a final response."""
        ...


class Server:
    """An application served by one backend.

    ``listen()`` blocks until shutdown; ``shutdown()`` may be called from any
    thread or signal handler. ``address`` is the bound ``(host, port)`` once
    ``ready`` is set (useful with ``port=0``).
    """

    def __init__(
        self, app: Application | Any, config: Config | None = None, backend: str = "native"
    ) -> None:
        self.config = config if config is not None else Config()
        from zzz.interfaces import adapt

        #: The application, as zzz's contract: a Router as it is, an ASGI or WSGI
        #: callable through its adapter (``config.interface``, detected by default).
        self.app: Application = adapt(app, self.config.interface, self.config)
        self.backend_name = backend
        self.backend: ModuleType = backends.load(backend)
        #: Which request bodies are streamed rather than buffered (the application's
        #: choice: a Router route that opts in, every body of an ASGI or WSGI app).
        self.stream_body: StreamPredicate | None = getattr(self.app, "stream_body", None)
        #: Set once: stop accepting, finish in-flight work, drain, stop.
        self.shutting_down = threading.Event()
        #: ``shutting_down`` as a plain flag, for the per-request check of a backend's
        #: hot path (an attribute read instead of a method call).
        self.stopping = False
        #: Set by the backend when the listening socket accepts connections.
        self.ready = threading.Event()
        #: Set by the backend when it has stopped completely.
        self.stopped = threading.Event()
        self.address: tuple[str, int] | None = None
        self._shutdown_hooks: list[Callable[[], None]] = []
        self._hooks_lock = threading.Lock()
        self._timers: TimerService | None = None
        self._early_timers: list[Timer] = []
        #: Guards the hand-over of early timers to the backend's service (another
        #: thread may add a timer while ``listen()`` attaches the service).
        self._timers_lock = threading.Lock()
        self._signals = 0
        self._started_app = False
        self.ssl_context: Any = None
        #: Where ``ctx.run_blocking`` sends work; set by backends that need one.
        self.blocking_executor: concurrent.futures.Executor | None = None
        #: Set by a backend whose plain handlers would otherwise run on an event loop:
        #: blocking routes (and every plain one with ``sync_handlers=threadpool``)
        #: then run on ``blocking_executor``.
        self.offload_sync = False
        self.offload_all_sync = self.config.sync_handlers == "threadpool"
        #: The loop every coroutine of this process runs on, once the backend runs
        #: (the native backend's shared loop; the event-loop backend's main loop).
        self.coroutine_loop: asyncio.AbstractEventLoop | None = None
        if self.config.tls is not None:
            from zzz.tls import build_context

            self.ssl_context = build_context(self.config.tls)
        #: Access log, metrics, probes (zzz.observability); wraps ``handle`` only when on.
        self.observer = Observer(self)
        wrapped = self.observer.wrap(self.handle)
        if wrapped != self.handle:  # nothing observed: the plain method, no wrapper at all
            self.handle = wrapped  # type: ignore[method-assign, assignment]
        request_hooks.install(self)  # proxy headers, max_requests (no-op by default)

    # ------------------------------------------------------------------ lifecycle

    def listen(self) -> None:
        """Serve until shutdown. Installs SIGINT/SIGTERM handlers when on the main thread.

        The backend runs the application's ``startup`` on the loop coroutines
        share, before the first accept (a failure raises
        :class:`~zzz.errors.StartupError`), and its ``shutdown`` after the drain.
        """
        restore = self._install_signal_handlers()
        try:
            self.observer.start()
            self.backend.listen(self)
        finally:
            for signum, previous in restore:
                signal.signal(signum, previous)
            self.observer.stop()
            self.stopped.set()

    def shutdown(self) -> None:
        """Begin a graceful shutdown (idempotent, thread-safe, signal-safe)."""
        if self.shutting_down.is_set():
            return
        if self.observer.begin_drain(self._stop_accepting):  # readiness 503 first
            return  # drain_delay_ms: the listener closes later
        self._stop_accepting()

    def _stop_accepting(self) -> None:
        """The backend's drain begins: stop accepting, finish in-flight work."""
        if self.shutting_down.is_set():
            return
        self.stopping = True
        self.shutting_down.set()
        with self._hooks_lock:
            hooks = list(self._shutdown_hooks)
        for hook in hooks:
            try:
                hook()
            except Exception:  # pragma: no cover - a backend hook must not stop the others
                log.exception("shutdown hook failed")

    def on_shutdown(self, hook: Callable[[], None]) -> None:
        """Backends register wake-ups here; runs at once when already shutting down."""
        with self._hooks_lock:
            self._shutdown_hooks.append(hook)
        if self.shutting_down.is_set():
            hook()

    def _install_signal_handlers(self) -> list[tuple[int, Any]]:
        if threading.current_thread() is not threading.main_thread():
            return []
        restore: list[tuple[int, Any]] = []
        for signum in (signal.SIGINT, signal.SIGTERM):
            restore.append((signum, signal.getsignal(signum)))
            signal.signal(signum, self._on_signal)
        if hasattr(signal, "SIGHUP") and self.config.tls is not None:
            restore.append((signal.SIGHUP, signal.getsignal(signal.SIGHUP)))
            signal.signal(signal.SIGHUP, self._on_sighup)
        return restore

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self._signals += 1
        if self._signals > 1:
            log.warning("second signal: forcing exit")
            os._exit(FORCED_EXIT_STATUS)
        log.info("received %s: shutting down gracefully", signal.Signals(signum).name)
        self.shutdown()

    def _on_sighup(self, signum: int, frame: FrameType | None) -> None:
        threading.Thread(target=self._reload_tls_logged, name="zzz-tls-reload", daemon=True).start()

    def _reload_tls_logged(self) -> None:
        try:
            self.reload_tls()
        except Exception as exc:
            log.error("TLS reload failed, keeping the old certificate: %s", exc)

    def reload_tls(self) -> None:
        """Load the certificate and key again; new connections use them."""
        if self.config.tls is None:
            raise RuntimeError("reload_tls: the server has no TLS configuration")
        from zzz.tls import build_context

        self.ssl_context = build_context(self.config.tls)
        log.info("TLS certificate reloaded from %s", self.config.tls.cert_file)

    # ------------------------------------------------------------------ application

    def run_startup(self, run: Callable[[Coroutine[Any, Any, None]], None]) -> None:
        """Run the application's start-up (hooks, ASGI lifespan) with ``run``, which
        executes a coroutine on the loop the process's coroutines share. Called by
        the backend before the first accept; a failure is a :class:`StartupError`."""
        startup = getattr(self.app, "startup", None)
        if startup is None:
            return
        try:
            run(_awaited(startup(self)))
        except StartupError:
            raise
        except Exception as exc:
            raise StartupError(f"application startup failed: {type(exc).__name__}: {exc}"
                               ) from exc
        self._started_app = True

    def run_shutdown(self, run: Callable[[Coroutine[Any, Any, None]], None]) -> None:
        """Run the application's shutdown after the drain (errors are logged)."""
        shutdown = getattr(self.app, "shutdown", None)
        if shutdown is None or not self._started_app:
            return
        self._started_app = False
        try:
            run(_awaited(shutdown(self)))
        except Exception:
            log.exception("application shutdown failed")

    def handle(self, request: Request) -> Response | Awaitable[Response]:
        """Run the application for ``request`` (backends call this)."""
        return self.app.handle(request, self)

    def check_continue(self, request: Request) -> Response | None:
        return self.app.check_continue(request)

    # ------------------------------------------------------------------ timers

    def attach_timers(self, service: TimerService) -> None:
        """Called by the backend when it starts: timers added earlier begin now."""
        with self._timers_lock:
            self._timers = service
            early, self._early_timers = self._early_timers, []
        for timer in early:
            service.start(timer)

    def add_timer(
        self, interval_ms: int, callback: Callable[[], Any], repeat: bool = False
    ) -> Timer:
        """Call ``callback`` after ``interval_ms`` (every ``interval_ms`` with ``repeat``).

        Under ``--workers N`` every worker process is a server of its own, so a timer
        added at start-up runs in every worker.

        A repeating timer needs ``interval_ms >= MIN_REPEAT_INTERVAL_MS``.
        """
        _check_interval(interval_ms, repeat)
        timer = Timer(interval_ms, callback, repeat)
        with self._timers_lock:
            service = self._timers
            if service is None:
                self._early_timers.append(timer)
        if service is not None:
            service.start(timer)
        return timer

    def remove_timer(self, timer: Timer) -> None:
        """Cancel ``timer`` (a no-op when it already fired or was removed)."""
        timer.cancelled = True
        with self._timers_lock:
            service = self._timers
            if service is None and timer in self._early_timers:
                self._early_timers.remove(timer)
        if service is not None:
            service.cancel(timer)

    def reset_timer(self, timer: Timer, interval_ms: int | None = None) -> None:
        """Restart ``timer`` from now, optionally with a new interval."""
        if interval_ms is not None:
            _check_interval(interval_ms, timer.repeat)
            timer.interval_ms = interval_ms
        timer.cancelled = False
        with self._timers_lock:
            service = self._timers
            if service is None and timer not in self._early_timers:
                self._early_timers.append(timer)
        if service is not None:
            service.reset(timer)

    @property
    def url(self) -> str:
        host, port = self.address if self.address else (self.config.host, self.config.port)
        scheme = "https" if self.config.tls is not None else "http"
        shown = f"[{host}]" if ":" in host else host
        return f"{scheme}://{shown}:{port}"


async def _awaited(result: object) -> None:
    """Await ``result`` when it is awaitable (an application's plain ``startup()`` is fine)."""
    if inspect.isawaitable(result):
        await result


def _check_interval(interval_ms: int, repeat: bool) -> None:
    if interval_ms < 0:
        raise ValueError("interval_ms must be >= 0")
    if repeat and interval_ms < MIN_REPEAT_INTERVAL_MS:
        raise ValueError(
            f"a repeating timer needs interval_ms >= {MIN_REPEAT_INTERVAL_MS} "
            "(0 would run its callback back to back forever)")
