"""Server: an application plus its configuration, a shutdown flag and signal handling.

The server owns no sockets, threads or loops: it resolves its backend once
(``zzz.backends.load(name)``) and ``listen()`` delegates to it. What the
backends share lives here: the application entry points (:meth:`Server.handle`,
:meth:`Server.check_continue`), the staged-shutdown flag and the timer API.
"""

from __future__ import annotations

import concurrent.futures
import logging
import os
import signal
import threading
from collections.abc import Awaitable, Callable
from types import FrameType, ModuleType
from typing import Any, Protocol

from zzz import backends, request_hooks
from zzz.config import Config
from zzz.http.request import Request
from zzz.http.response import Response
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
        self, app: Application, config: Config | None = None, backend: str = "native"
    ) -> None:
        self.app = app
        self.config = config if config is not None else Config()
        self.backend_name = backend
        self.backend: ModuleType = backends.load(backend)
        #: Set once: stop accepting, finish in-flight work, drain, stop.
        self.shutting_down = threading.Event()
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
        self.ssl_context: Any = None
        #: Where ``ctx.run_blocking`` sends work; set by backends that need one.
        self.blocking_executor: concurrent.futures.Executor | None = None
        if self.config.tls is not None:
            from zzz.tls import build_context

            self.ssl_context = build_context(self.config.tls)
        request_hooks.install(self)  # proxy headers, max_requests (no-op by default)

    # ------------------------------------------------------------------ lifecycle

    def listen(self) -> None:
        """Serve until shutdown. Installs SIGINT/SIGTERM handlers when on the main thread."""
        restore = self._install_signal_handlers()
        try:
            self.backend.listen(self)
        finally:
            for signum, previous in restore:
                signal.signal(signum, previous)
            self.stopped.set()

    def shutdown(self) -> None:
        """Begin a graceful shutdown (idempotent, thread-safe, signal-safe)."""
        if self.shutting_down.is_set():
            return
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


def _check_interval(interval_ms: int, repeat: bool) -> None:
    if interval_ms < 0:
        raise ValueError("interval_ms must be >= 0")
    if repeat and interval_ms < MIN_REPEAT_INTERVAL_MS:
        raise ValueError(
            f"a repeating timer needs interval_ms >= {MIN_REPEAT_INTERVAL_MS} "
            "(0 would run its callback back to back forever)")
