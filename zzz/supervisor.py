"""Worker processes: one supervisor, N workers sharing one listening socket.

``zzz run APP --workers N`` (``0``: one per CPU) runs this module instead of a
server. Theory of operation, as a staged script:

1. **Bind once.** The supervisor binds the listening socket exactly as a single
   server would (``host``/``port``, ``--uds``, ``--fd`` or systemd's
   ``LISTEN_FDS``) and never accepts on it. It does not import the application.
2. **Spawn.** Each worker is a fresh interpreter running the same command line
   with ``--workers 1 --fd N``: it inherits the socket (``pass_fds``), imports
   the application itself and serves it with the ordinary single-process
   :class:`zzz.Server`, unchanged, on either backend. Every worker accepts from
   the one shared queue of the kernel (see *Why one shared socket* below). A
   pipe per worker carries two one-byte messages back: ``R`` once it accepts
   (ready) and ``D`` when it begins draining on its own (``max_requests``).
3. **Supervise.** A loop waits on a self-pipe (signals) and the worker pipes,
   reaps exited workers and reconciles the set of workers with the target:
   - a worker that exits while it was not asked to is logged with its exit
     code or signal and replaced after an exponential back-off
     (``RESPAWN_BACKOFF_*``), reset once a worker is ready again;
   - a worker that exits before it was ever ready is a start-up failure: exit
     status 2 (the CLI's usage/import error) or ``MAX_STARTUP_FAILURES`` in a
     row mean a crash loop, and the supervisor exits 2 with the error (the
     worker's own error line is already on the shared stderr);
   - a worker that exits with ``EXIT_DRAIN_CUT`` (75: its drain deadline cut a
     plain handler that held its event loop, see ``zzz/backends/_drain_guard.py``)
     stopped as a drained worker does: logged as stopped, replaced at once when it
     was not retiring, never counted as a death or a start-up failure;
   - a worker draining on its own (``D``) is replaced at once, so its
     successor accepts while it finishes; the socket stays open in the
     supervisor and the other workers, so no connection is refused.
4. **Signals.** ``SIGTERM``/``SIGINT``: every worker gets ``SIGTERM`` and drains
   (its readiness answers 503, the drain deadline holds); the supervisor exits
   0 once all are gone and kills stragglers ``KILL_MARGIN_S`` after the drain
   deadline. A second signal kills the workers at once (exit 1). ``SIGHUP``:
   a new generation of workers starts (new code, configuration re-read from the
   command line and environment, TLS files loaded again); once all of them are
   ready the old generation drains. If the new generation cannot start, the old
   one keeps serving and the error is logged. ``SIGTTIN``/``SIGTTOU`` add or
   remove one worker (never below one).
5. **Reload** (``--reload``, development): one worker, and a ``watchfiles``
   thread that turns a change of a ``.py`` file under the working directory
   into a ``SIGHUP``-style reload.

Workers run in their own process group, so a Ctrl-C in a terminal reaches only
the supervisor (which then drains them once) instead of every process twice,
and each worker watches its parent: an orphaned worker (supervisor killed)
drains and exits.

**Idle costs nothing.** With N workers the supervisor and the per-worker
bookkeeping must not eat the second core's gain, so nothing here polls: the
supervisor sleeps in ``select`` until a signal (``SIGCHLD`` included, through
the wake-up pipe), a worker's message or its next deadline, and a worker learns
of its supervisor's death from ``POLLERR`` on its notify pipe (the supervisor
holds the only read end), not from a ``getppid()`` loop. Measured idle cost of
a 2-worker server in ``bench/README.md``.

**Why one shared socket, not SO_REUSEPORT.** With ``SO_REUSEPORT`` every
worker binds its own socket and the kernel hashes each new connection to one
of them. Measured on this 2-core machine (``bench/workers_socket.py``, figures
in ``bench/README.md``): no consistent throughput difference, and
``SO_REUSEPORT`` spreads keep-alive connections more evenly. But a connection
hashed to a worker that exits (``max_requests``, ``SIGHUP``, a crash) sits in
*that* socket's queue and is reset when it closes (seen in the measurement);
the shared socket keeps every queued connection for the next ``accept()`` of
any worker. Zero refused connections across restarts is the requirement, so
the supervisor shares one socket. ``--reuse-port`` sets ``SO_REUSEPORT`` on that
one socket (so another server may bind the port beside it); the workers still
share it. The socket tuning knobs are applied where it is bound (``_listener``).

**Why a fresh interpreter, not fork().** Forking the supervisor after importing
the application would share its pages, but CPython's reference counts dirty
them soon anyway; a fresh interpreter gives ``SIGHUP`` new code for free,
inherits no threads or locks, and runs exactly the single-process code path.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from zzz.backends._listener import bind_listener, bound_address
from zzz.config import Config
from zzz.exit_codes import EXIT_DRAIN_CUT

if TYPE_CHECKING:
    from zzz.server import Server

log = logging.getLogger("zzz.supervisor")

#: Environment variable naming a worker's notify pipe (set by the supervisor only).
NOTIFY_ENV = "ZZZ_WORKER_NOTIFY_FD"
#: Worker → supervisor: accepting connections.
MSG_READY = b"R"
#: Worker → supervisor: draining on its own (max_requests); replace it now.
MSG_DRAINING = b"D"
#: First delay before respawning a worker that died; doubles per death in a row.
RESPAWN_BACKOFF_MIN_S = 0.1
#: Longest delay between respawns of a worker that keeps dying after start-up.
RESPAWN_BACKOFF_MAX_S = 10.0
#: Start-up failures in a row (exit before ready) that make a crash loop.
MAX_STARTUP_FAILURES = 5
#: Worker exit status that means "configuration or import error" (``zzz.cli.EXIT_USAGE``):
#: deterministic, so the first such start-up failure is already a crash loop.
EXIT_USAGE = 2
#: Supervisor exit status after a forced stop (second signal).
EXIT_FORCED = 1
#: After the drain deadline, how long workers still get before SIGKILL.
KILL_MARGIN_S = 5.0
#: Watch interval of the ``--reload`` file watcher (development only).
POLL_S = 0.5
#: Longest sleep of an idle supervision loop. Every event it acts on wakes it at once
#: (signals, SIGCHLD included, through the wake-up pipe; worker messages; deadlines
#: bound the sleep), so this is a safety net that costs one wake-up per period.
IDLE_WAKE_S = 30.0
#: How often a worker re-checks for readiness while its server starts.
READY_POLL_S = 1.0
#: Longest sleep of a worker's orphan watch between re-checks of its own shutdown; the
#: supervisor's exit itself wakes the watch at once (see :func:`attach_worker`).
ORPHAN_WATCH_S = 30.0
#: Largest worker count accepted (and the bound for SIGTTIN).
MAX_WORKERS = 512
#: Signals the supervisor handles.
HANDLED_SIGNALS = ("SIGTERM", "SIGINT", "SIGHUP", "SIGTTIN", "SIGTTOU", "SIGCHLD")


class CrashLoop(Exception):
    """Workers cannot start: the supervisor gives up (exit status 2)."""


def resolve_workers(workers: int) -> int:
    """``--workers`` → a process count (``0`` = one per CPU available to us)."""
    if workers < 0 or workers > MAX_WORKERS:
        raise ValueError(f"workers: must be between 0 and {MAX_WORKERS}, got {workers}")
    if workers:
        return workers
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def describe_exit(returncode: int) -> str:
    """``Popen.returncode`` for a log line: ``exit code 3`` / ``signal SIGKILL``."""
    if returncode == EXIT_DRAIN_CUT:
        return f"exit code {returncode}: its drain deadline cut a handler that never returned"
    if returncode < 0:
        try:
            return f"signal {signal.Signals(-returncode).name}"
        except ValueError:
            return f"signal {-returncode}"
    return f"exit code {returncode}"


@dataclasses.dataclass(eq=False)
class Worker:
    """One worker process as the supervisor sees it."""

    process: subprocess.Popen[bytes]
    notify: int
    generation: int
    started: float
    ready: bool = False
    #: Told to drain (SIGTERM sent) or draining on its own: its exit is expected.
    retiring: bool = False

    @property
    def pid(self) -> int:
        return self.process.pid


class Supervisor:
    """Runs ``target`` workers on one listening socket until told to stop."""

    def __init__(
        self,
        run_args: Sequence[str],
        config: Config,
        workers: int,
        environ: Mapping[str, str] | None = None,
        reload: bool = False,
    ) -> None:
        #: ``zzz run`` arguments (after ``run``) the workers get, plus their own flags.
        self.run_args = list(run_args)
        self.config = config
        self.target = workers
        self.environ = dict(os.environ if environ is None else environ)
        for name in ("LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES"):
            self.environ.pop(name, None)  # the workers get the socket as --fd
        self.reload = reload
        self.workers: list[Worker] = []
        self.generation = 0
        self.listener: socket.socket | None = None
        self.address: tuple[str, int] | None = None
        self.stopping = False
        self.stop_deadline = 0.0
        self.exit_status = 0
        self._signals: list[int] = []
        self._wake_r, self._wake_w = os.pipe()
        self._startup_failures = 0
        self._deaths = 0
        self._next_spawn = 0.0
        self._ever_ready = False
        self._reload_requested = threading.Event()

    # ------------------------------------------------------------------ running

    def run(self) -> int:
        """Bind, spawn, supervise; the process exit status."""
        self.listener = bind_listener(self.config)
        self.listener.set_inheritable(True)
        self.address = bound_address(self.listener)
        restore = self._install_signals()
        watcher = self._start_reloader() if self.reload else None
        log.info("supervisor %d: %d worker(s) on %s", os.getpid(), self.target, self._where())
        try:
            return self._loop()
        except CrashLoop as exc:
            self._kill_all()
            print(f"zzz: error: {exc}", file=sys.stderr, flush=True)
            return EXIT_USAGE
        finally:
            if watcher is not None:
                self._reload_requested.set()
            for signum, previous in restore:
                signal.signal(signum, previous)
            signal.set_wakeup_fd(-1)
            for worker in self.workers:
                with contextlib.suppress(OSError):
                    os.close(worker.notify)
            with contextlib.suppress(OSError):
                self.listener.close()
            if self.config.uds is not None and self.config.fd is None:
                with contextlib.suppress(OSError):
                    os.unlink(self.config.uds)
            os.close(self._wake_r)
            os.close(self._wake_w)

    def _where(self) -> str:
        assert self.address is not None
        host, port = self.address
        return host if port == 0 else f"{host}:{port}"

    def _loop(self) -> int:
        while True:
            self._handle_signals()
            if self._reload_requested.is_set() and not self.stopping:
                self._reload_requested.clear()
                self._begin_reload("source files changed")
            self._reap()
            if self.stopping:
                if not self.workers:
                    log.info("supervisor: all workers stopped")
                    return self.exit_status
                if time.monotonic() >= self.stop_deadline:
                    log.warning("supervisor: drain deadline passed, killing %d worker(s)",
                                len(self.workers))
                    self._kill_all()
                    return self.exit_status
            else:
                self._reconcile()
            self._wait()

    def _wait(self) -> None:
        # Sleep until something happens: a signal (SIGCHLD for an exited worker),
        # a worker's message, or the next deadline. An idle supervisor never polls.
        now = time.monotonic()
        timeout = IDLE_WAKE_S
        if self.stopping:
            timeout = min(timeout, self.stop_deadline - now)
        elif self._next_spawn > now:
            timeout = min(timeout, self._next_spawn - now)
        fds = [self._wake_r] + [w.notify for w in self.workers if w.notify >= 0]
        try:
            readable, _, _ = select.select(fds, [], [], max(0.0, timeout))
        except InterruptedError:  # pragma: no cover - PEP 475 retries select itself
            return
        for fd in readable:
            if fd == self._wake_r:
                with contextlib.suppress(BlockingIOError):
                    os.read(self._wake_r, 512)
                continue
            worker = next((w for w in self.workers if w.notify == fd), None)
            if worker is not None:
                self._on_message(worker)

    def _on_message(self, worker: Worker) -> None:
        try:
            data = os.read(worker.notify, 64)
        except OSError:
            data = b""
        if not data:  # the worker exited (or closed its end): _reap handles it
            os.close(worker.notify)
            worker.notify = -1
            return
        if MSG_READY in data and not worker.ready:
            worker.ready = True
            self._ever_ready = True
            self._startup_failures = 0
            self._deaths = 0
            log.info("worker %d ready (generation %d)", worker.pid, worker.generation)
        if MSG_DRAINING in data and not worker.retiring:
            worker.retiring = True
            log.info("worker %d draining on its own (max_requests): starting its successor",
                     worker.pid)

    # ------------------------------------------------------------------ workers

    def _spawn(self) -> None:
        assert self.listener is not None
        read_end, write_end = os.pipe()
        os.set_inheritable(write_end, True)
        fd = self.listener.fileno()
        argv = [sys.executable, "-m", "zzz", "run", *self.run_args,
                "--workers", "1", "--no-reload", "--fd", str(fd), "--uds="]
        env = dict(self.environ)
        env[NOTIFY_ENV] = str(write_end)
        try:
            process = subprocess.Popen(
                argv, env=env, pass_fds=(fd, write_end), process_group=0, close_fds=True,
            )
        finally:
            os.close(write_end)
        os.set_blocking(read_end, False)
        worker = Worker(process, read_end, self.generation, time.monotonic())
        self.workers.append(worker)
        log.info("worker %d started (generation %d)", worker.pid, worker.generation)

    def _reap(self) -> None:
        for worker in list(self.workers):
            code = worker.process.poll()
            if code is None:
                continue
            self.workers.remove(worker)
            if worker.notify >= 0:
                # A last "R" may still be unread (the worker died right after it).
                with contextlib.suppress(OSError):
                    if MSG_READY in os.read(worker.notify, 64):
                        worker.ready = True
                os.close(worker.notify)
                worker.notify = -1
            self._on_exit(worker, code)

    def _on_exit(self, worker: Worker, code: int) -> None:
        how = describe_exit(code)
        if self.stopping or worker.retiring:
            log.info("worker %d stopped (%s)", worker.pid, how)
            return
        if code == EXIT_DRAIN_CUT and worker.ready:
            # Told to stop by someone else (a SIGTERM not from us): it drained as it
            # should, so it is replaced at once, not counted as a death.
            log.info("worker %d stopped (%s); replacing it", worker.pid, how)
            self._next_spawn = time.monotonic()
            return
        if not worker.ready:
            self._startup_failures += 1
            log.error("worker %d failed to start (%s)", worker.pid, how)
            crash_loop = code == EXIT_USAGE or self._startup_failures >= MAX_STARTUP_FAILURES
            if crash_loop:
                if worker.generation == self.generation and self._old_generation():
                    self._abort_reload(how)
                    return
                if not any(w.ready for w in self.workers):
                    raise CrashLoop(f"workers cannot start ({how}, "
                                    f"{self._startup_failures} attempt(s)); giving up")
        else:
            log.warning("worker %d died (%s)", worker.pid, how)
        delay = min(RESPAWN_BACKOFF_MAX_S, RESPAWN_BACKOFF_MIN_S * 2 ** self._deaths)
        self._deaths += 1
        self._next_spawn = time.monotonic() + delay
        log.info("respawning in %.1f s", delay)

    def _old_generation(self) -> list[Worker]:
        return [w for w in self.workers if w.generation < self.generation and not w.retiring]

    def _current(self) -> list[Worker]:
        return [w for w in self.workers if w.generation == self.generation and not w.retiring]

    def _reconcile(self) -> None:
        current = self._current()
        missing = self.target - len(current)
        if missing > 0 and time.monotonic() >= self._next_spawn:
            for _ in range(missing):
                self._spawn()
        elif missing < 0:
            for worker in sorted(current, key=lambda w: w.started)[:-missing]:
                self._retire(worker)
        old = self._old_generation()
        if old and sum(1 for w in self._current() if w.ready) >= self.target:
            log.info("reload: new generation %d ready; draining %d old worker(s)",
                     self.generation, len(old))
            for worker in old:
                self._retire(worker)

    def _retire(self, worker: Worker) -> None:
        worker.retiring = True
        with contextlib.suppress(ProcessLookupError):
            worker.process.send_signal(signal.SIGTERM)

    def _kill_all(self) -> None:
        for worker in self.workers:
            with contextlib.suppress(ProcessLookupError):
                worker.process.kill()
        for worker in self.workers:
            with contextlib.suppress(subprocess.TimeoutExpired):
                worker.process.wait(KILL_MARGIN_S)

    def _begin_reload(self, why: str) -> None:
        log.info("reload (%s): starting generation %d", why, self.generation + 1)
        self.generation += 1
        self._startup_failures = 0
        self._next_spawn = 0.0

    def _abort_reload(self, how: str) -> None:
        log.error("reload failed: new workers cannot start (%s); old workers keep serving", how)
        for worker in self._current():
            self._retire(worker)
        self.generation += 1  # the surviving workers become the current generation
        for worker in self.workers:
            if not worker.retiring:
                worker.generation = self.generation
        self._startup_failures = 0

    # ------------------------------------------------------------------ signals

    def _install_signals(self) -> list[tuple[int, Any]]:
        restore: list[tuple[int, Any]] = []
        os.set_blocking(self._wake_w, False)
        os.set_blocking(self._wake_r, False)
        signal.set_wakeup_fd(self._wake_w, warn_on_full_buffer=False)
        for name in HANDLED_SIGNALS:
            signum = getattr(signal, name, None)
            if signum is None:  # pragma: no cover - not POSIX
                continue
            restore.append((signum, signal.getsignal(signum)))
            signal.signal(signum, self._on_signal)
        return restore

    def _on_signal(self, signum: int, frame: Any) -> None:
        self._signals.append(signum)

    def _handle_signals(self) -> None:
        while self._signals:
            signum = self._signals.pop(0)
            if signum in (signal.SIGTERM, signal.SIGINT):
                self._stop(signal.Signals(signum).name)
            elif signum == signal.SIGHUP and not self.stopping:
                self._begin_reload("SIGHUP")
            elif signum == signal.SIGTTIN and not self.stopping:
                self.target = min(MAX_WORKERS, self.target + 1)
                log.info("SIGTTIN: %d worker(s)", self.target)
            elif signum == signal.SIGTTOU and not self.stopping:
                self.target = max(1, self.target - 1)
                log.info("SIGTTOU: %d worker(s)", self.target)

    def _stop(self, name: str) -> None:
        if self.stopping:
            log.warning("second %s: killing workers", name)
            self.exit_status = EXIT_FORCED
            self._kill_all()
            self._reap()
            self.workers.clear()
            return
        log.info("%s: draining %d worker(s)", name, len(self.workers))
        self.stopping = True
        self.stop_deadline = (time.monotonic() + self.config.drain_timeout_ms / 1000.0
                              + KILL_MARGIN_S)
        for worker in self.workers:
            self._retire(worker)

    # ------------------------------------------------------------------ --reload

    def _start_reloader(self) -> threading.Thread:
        import watchfiles

        root = os.getcwd()

        def watch() -> None:
            for changes in watchfiles.watch(
                root, watch_filter=watchfiles.PythonFilter(), stop_event=self._reload_requested,
                rust_timeout=int(POLL_S * 1000), yield_on_timeout=False,
            ):
                if self.stopping:
                    return
                paths = sorted({os.path.relpath(path, root) for _, path in changes})
                log.info("reload: changed %s", ", ".join(paths[:5]))
                self._reload_requested.set()
                os.write(self._wake_w, b"\0")
                # Wait for the loop to take the request before watching again.
                while self._reload_requested.is_set() and not self.stopping:
                    time.sleep(POLL_S / 5)

        thread = threading.Thread(target=watch, name="zzz-reload", daemon=True)
        thread.start()
        return thread


# ---------------------------------------------------------------------- worker side


def attach_worker(server: Server, environ: Mapping[str, str]) -> bool:
    """In a worker: report readiness/draining to the supervisor and follow its life.

    Returns False when this process is not a supervised worker.
    """
    text = environ.get(NOTIFY_ENV, "")
    if not text.isdigit():
        return False
    fd = int(text)
    parent = os.getppid()
    lock = threading.Lock()

    def send(message: bytes) -> None:
        with lock, contextlib.suppress(OSError):
            os.write(fd, message)

    def follow() -> None:
        while not server.ready.wait(READY_POLL_S):
            if server.stopped.is_set():
                return
        send(MSG_READY)
        # The supervisor holds the only read end of this pipe: when it exits (killed
        # included) the write end reports POLLERR. Waiting for that costs no wake-up,
        # where polling getppid() woke every worker once a second for nothing.
        watch = select.poll()
        watch.register(fd, 0)  # no events asked: POLLERR/POLLHUP/POLLNVAL still come
        while not server.stopped.is_set():
            revents = sum(events for _, events in watch.poll(ORPHAN_WATCH_S * 1000))
            if not revents and os.getppid() == parent:
                continue
            if not server.stopped.is_set():
                log.warning("supervisor %d is gone: draining", parent)
                server.shutdown()
            return

    def on_shutdown() -> None:
        # Run for every shutdown; the supervisor ignores it when it asked for it.
        send(MSG_DRAINING)

    server.on_shutdown(on_shutdown)
    threading.Thread(target=follow, name="zzz-supervised", daemon=True).start()
    return True
