"""Which servers the benchmarks run, how to start them, and how to stop only them.

Shared by bench.py, idle_rss.py and ws_echo.py so every script starts a server the same way:
one process at a time, bound to 127.0.0.1 on a free port, optionally pinned to one CPU, its
output captured to a log file, and stopped by its own PID (SIGTERM, then SIGKILL).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

HOST = "127.0.0.1"
REPO_ROOT = Path(__file__).resolve().parent.parent
BENCH_DIR = REPO_ROOT / "bench"
RESULTS_DIR = BENCH_DIR / "results"

# Comparable concurrency for every thread-pool server (waitress, gunicorn gthread, cheroot,
# zzz native): four worker threads in one process.
POOL_THREADS = 4
# zzz closes a keep-alive connection after 100 requests by default; the other servers never
# do, so the benchmark lifts the cap to compare request handling rather than reconnects.
ZZZ_MAX_REQUESTS_PER_CONNECTION = 1_000_000
# How long a server may take to answer its first request before it counts as failed.
START_TIMEOUT_S = 20.0
# How long a server gets to exit after SIGTERM before it is SIGKILLed.
STOP_TIMEOUT_S = 10.0
# Poll interval while waiting for a server to come up.
READY_POLL_S = 0.1
# Socket timeout of the readiness probe and smoke checks.
PROBE_TIMEOUT_S = 2.0
# Largest probe response read; the bench endpoints answer a few bytes.
PROBE_MAX_BYTES = 64 * 1024
# Lines of a failed server's log quoted in the report.
LOG_TAIL_LINES = 15
#: Where the "-base" servers find an older zzz checkout to compare against (issue 8's
#: "no more than 3 % of plaintext req/s" guard): ``git worktree add /tmp/zzz-old 188c368``.
#: Overridden by ``BENCH_BASELINE_TREE`` or bench.py's ``--baseline-tree``.
BASELINE_TREE = Path(os.environ.get("BENCH_BASELINE_TREE", "/tmp/zzz-old"))


def _py() -> list[str]:
    return [sys.executable]


def _zzz(app: str, backend: str, extra: list[str]) -> Callable[[int, bool], list[str]]:
    def argv(port: int, idle: bool) -> list[str]:
        cmd = [*_py(), "-m", "zzz", "run", app, "--backend", backend, "--host", HOST]
        cmd += ["--port", str(port), "--log-level", "warning", *extra]
        cmd += ["--max-requests-per-connection", str(ZZZ_MAX_REQUESTS_PER_CONNECTION)]
        if idle:
            # Room for the idle-connection test: a larger accept backlog, no connection cap
            # below the test size, and a keep-alive timeout longer than the test.
            cmd += ["--kernel-backlog", "1024", "--max-connections", "65536"]
            cmd += ["--keepalive-timeout-ms", "600000"]
        return cmd

    return argv


def _uvicorn(app: str, ws: bool) -> Callable[[int, bool], list[str]]:
    def argv(port: int, idle: bool) -> list[str]:
        cmd = [*_py(), "-m", "uvicorn", app, "--host", HOST, "--port", str(port)]
        cmd += ["--http", "httptools", "--loop", "uvloop", "--workers", "1"]
        cmd += ["--no-access-log", "--log-level", "warning"]
        cmd += ["--ws", "websockets" if ws else "none"]
        if idle:
            cmd += ["--timeout-keep-alive", "600", "--backlog", "1024"]
        return cmd

    return argv


def _granian(interface: str) -> Callable[[int, bool], list[str]]:
    def argv(port: int, idle: bool) -> list[str]:
        cmd = [*_py(), "-m", "granian", "--interface", interface, "--host", HOST]
        cmd += ["--port", str(port), "--workers", "1", "--runtime-threads", "1", "--http", "1"]
        cmd += ["--no-ws", "--log-level", "warning", "--no-access-log"]
        if interface == "asgi":
            cmd += ["--loop", "uvloop"]
            app = "bench.apps.asgi_app:app"
        else:
            # WSGI calls run on granian's blocking threads: as many as every other pool.
            cmd += ["--blocking-threads", str(POOL_THREADS)]
            app = "bench.apps.wsgi_app:app"
        if idle:
            # granian serves at most backlog/workers connections at once unless told otherwise.
            cmd += ["--backpressure", "65536"]
        return [*cmd, app]

    return argv


def _hypercorn(port: int, idle: bool) -> list[str]:
    cmd = [*_py(), "-m", "hypercorn", "--bind", f"{HOST}:{port}", "--workers", "1"]
    cmd += ["--worker-class", "uvloop", "--log-level", "warning"]
    if idle:
        cmd += ["--keep-alive", "600", "--backlog", "1024"]
    return [*cmd, "bench.apps.asgi_app:app"]


def _waitress(port: int, idle: bool) -> list[str]:
    cmd = [*_py(), "-m", "waitress", f"--host={HOST}", f"--port={port}"]
    cmd += [f"--threads={POOL_THREADS}"]
    if idle:
        cmd += ["--connection-limit=65536", "--backlog=1024", "--channel-timeout=600"]
    return [*cmd, "bench.apps.wsgi_app:app"]


def _gunicorn(port: int, idle: bool) -> list[str]:
    cmd = [*_py(), "-m", "gunicorn", "-k", "gthread", "--workers", "1"]
    cmd += ["--threads", str(POOL_THREADS), "-b", f"{HOST}:{port}", "--log-level", "warning"]
    return [*cmd, "bench.apps.wsgi_app:app"]


def _cheroot(port: int, idle: bool) -> list[str]:
    cmd = [*_py(), "-m", "cheroot", "--bind", f"{HOST}:{port}"]
    cmd += ["--threads", str(POOL_THREADS), "--max-threads", str(POOL_THREADS)]
    return [*cmd, "bench.apps.wsgi_app:app"]


@dataclass(frozen=True)
class ServerSpec:
    """One benchmark contestant: a name and how to build its command line."""

    name: str
    argv: Callable[[int, bool], list[str]]
    note: str
    #: Run from BASELINE_TREE with only it on PYTHONPATH: the older zzz, same bench apps.
    baseline: bool = False

    def cwd(self) -> Path:
        return BASELINE_TREE if self.baseline else REPO_ROOT

    def env(self) -> dict[str, str] | None:
        """The environment to start it with (None: inherit ours)."""
        if not self.baseline:
            return None
        return {**os.environ, "PYTHONPATH": str(BASELINE_TREE)}


_NATIVE_EXTRA = ["--worker-threads", str(POOL_THREADS)]
#: The server half of the observability stack: Prometheus metrics and probes on the app port.
_OBSERVED_EXTRA = ["--metrics-path", "/metrics", "--health-path", "/healthz",
                   "--ready-path", "/readyz"]
#: ... plus one access line per request, actually written (``--log-level info``; the
#: harness sends the server's stderr to a log file).
_LOGGED_EXTRA = [*_OBSERVED_EXTRA, "--access-log", "--log-level", "info"]
#: ... or instead one JSON line per request from the Router's ``structured_logger("info")``.
_SLOGGED_EXTRA = [*_OBSERVED_EXTRA, "--log-format", "json", "--log-level", "info"]
#: The recommended Router stack alone, as the README shows it (issue 10's budget): one JSON
#: line per request from ``structured_logger("info", format="json")``, no server-level flags.
_STACK_EXTRA = ["--log-format", "json", "--log-level", "info"]
_OBSERVED_APP = "bench.apps.zzz_observed_app:app"
_SLOGGED_APP = "bench.apps.zzz_observed_app:json_logged_app"
# The event-loop backend runs WSGI on its blocking pool: the same 4 threads as every pool.
_EVENTLOOP_WSGI_EXTRA = ["--interface", "wsgi", "--eventloop-blocking-threads", str(POOL_THREADS)]

HTTP_SERVERS: dict[str, ServerSpec] = {
    s.name: s
    for s in (
        ServerSpec(
            "zzz-native",
            _zzz("bench.apps.zzz_app:app", "native", _NATIVE_EXTRA),
            f"zzz native backend, {POOL_THREADS} worker threads, sync handlers",
        ),
        ServerSpec(
            "zzz-native-async",
            _zzz("bench.apps.zzz_async_app:app", "native", _NATIVE_EXTRA),
            f"zzz native backend, {POOL_THREADS} worker threads, async handlers",
        ),
        ServerSpec(
            "zzz-eventloop",
            _zzz("bench.apps.zzz_app:app", "eventloop", []),
            "zzz eventloop backend (uvloop when installed), sync handlers",
        ),
        ServerSpec(
            "zzz-eventloop-async",
            _zzz("bench.apps.zzz_async_app:app", "eventloop", []),
            "zzz eventloop backend (uvloop when installed), async handlers",
        ),
        ServerSpec(
            "zzz-native-observed",
            _zzz(_OBSERVED_APP, "native", [*_NATIVE_EXTRA, *_OBSERVED_EXTRA]),
            "zzz-native + metrics/probes (server) + the recommended Router stack, nothing logged",
        ),
        ServerSpec(
            "zzz-eventloop-observed",
            _zzz(_OBSERVED_APP, "eventloop", _OBSERVED_EXTRA),
            "zzz-eventloop + metrics/probes (server) + the recommended Router stack, nothing logged",
        ),
        ServerSpec(
            "zzz-native-logged",
            _zzz(_OBSERVED_APP, "native", [*_NATIVE_EXTRA, *_LOGGED_EXTRA]),
            "zzz-native-observed + the server's access log, one text line per request",
        ),
        ServerSpec(
            "zzz-eventloop-logged",
            _zzz(_OBSERVED_APP, "eventloop", _LOGGED_EXTRA),
            "zzz-eventloop-observed + the server's access log, one text line per request",
        ),
        ServerSpec(
            "zzz-native-stack",
            _zzz(_SLOGGED_APP, "native", [*_NATIVE_EXTRA, *_STACK_EXTRA]),
            "zzz-native + the README's Router stack (health, request_id, metrics, JSON line)",
        ),
        ServerSpec(
            "zzz-eventloop-stack",
            _zzz(_SLOGGED_APP, "eventloop", _STACK_EXTRA),
            "zzz-eventloop + the README's Router stack (health, request_id, metrics, JSON line)",
        ),
        ServerSpec(
            "zzz-native-slogged",
            _zzz(_SLOGGED_APP, "native", [*_NATIVE_EXTRA, *_SLOGGED_EXTRA]),
            "zzz-native-observed with structured_logger('info'): one JSON line per request",
        ),
        ServerSpec(
            "zzz-eventloop-slogged",
            _zzz(_SLOGGED_APP, "eventloop", _SLOGGED_EXTRA),
            "zzz-eventloop-observed with structured_logger('info'): one JSON line per request",
        ),
        ServerSpec(
            "uvicorn",
            _uvicorn("bench.apps.asgi_app:app", ws=False),
            "uvicorn, raw ASGI, --http httptools --loop uvloop, 1 worker",
        ),
        # The same raw ASGI / WSGI apps the competitors serve, on zzz's interface adapters.
        ServerSpec(
            "zzz-eventloop-asgi",
            _zzz("bench.apps.asgi_app:app", "eventloop", ["--interface", "asgi"]),
            "zzz eventloop backend, raw ASGI app (--interface asgi)",
        ),
        ServerSpec(
            "zzz-native-asgi",
            _zzz("bench.apps.asgi_app:app", "native", [*_NATIVE_EXTRA, "--interface", "asgi"]),
            f"zzz native backend, {POOL_THREADS} worker threads, raw ASGI app (shared loop)",
        ),
        ServerSpec(
            "zzz-native-wsgi",
            _zzz("bench.apps.wsgi_app:app", "native", [*_NATIVE_EXTRA, "--interface", "wsgi"]),
            f"zzz native backend, {POOL_THREADS} worker threads, raw WSGI app",
        ),
        ServerSpec(
            "zzz-eventloop-wsgi",
            _zzz("bench.apps.wsgi_app:app", "eventloop", _EVENTLOOP_WSGI_EXTRA),
            f"zzz eventloop backend, raw WSGI app on a {POOL_THREADS}-thread blocking pool",
        ),
        # The same zzz apps on an older checkout (BASELINE_TREE), for before/after runs.
        ServerSpec(
            "zzz-native-base",
            _zzz("bench.apps.zzz_app:app", "native", _NATIVE_EXTRA),
            "zzz-native on the baseline checkout",
            baseline=True,
        ),
        ServerSpec(
            "zzz-native-async-base",
            _zzz("bench.apps.zzz_async_app:app", "native", _NATIVE_EXTRA),
            "zzz-native-async on the baseline checkout",
            baseline=True,
        ),
        ServerSpec(
            "zzz-eventloop-base",
            _zzz("bench.apps.zzz_app:app", "eventloop", []),
            "zzz-eventloop on the baseline checkout",
            baseline=True,
        ),
        ServerSpec(
            "zzz-eventloop-async-base",
            _zzz("bench.apps.zzz_async_app:app", "eventloop", []),
            "zzz-eventloop-async on the baseline checkout",
            baseline=True,
        ),
        # Before/after of the logged stacks (same bench app copied into the baseline tree).
        ServerSpec(
            "zzz-native-logged-base",
            _zzz(_OBSERVED_APP, "native", [*_NATIVE_EXTRA, *_LOGGED_EXTRA]),
            "zzz-native-logged on the baseline checkout",
            baseline=True,
        ),
        ServerSpec(
            "zzz-eventloop-logged-base",
            _zzz(_OBSERVED_APP, "eventloop", _LOGGED_EXTRA),
            "zzz-eventloop-logged on the baseline checkout",
            baseline=True,
        ),
        ServerSpec(
            "zzz-native-slogged-base",
            _zzz(_SLOGGED_APP, "native", [*_NATIVE_EXTRA, *_SLOGGED_EXTRA]),
            "zzz-native-slogged on the baseline checkout",
            baseline=True,
        ),
        ServerSpec(
            "zzz-eventloop-slogged-base",
            _zzz(_SLOGGED_APP, "eventloop", _SLOGGED_EXTRA),
            "zzz-eventloop-slogged on the baseline checkout",
            baseline=True,
        ),
        ServerSpec(
            "granian", _granian("asgi"), "granian --interface asgi, 1 worker, 1 runtime thread"
        ),
        ServerSpec(
            "granian-wsgi",
            _granian("wsgi"),
            f"granian --interface wsgi, 1 worker, 1 runtime thread, {POOL_THREADS} blocking threads",
        ),
        ServerSpec("hypercorn", _hypercorn, "hypercorn -k uvloop, raw ASGI, 1 worker"),
        ServerSpec("waitress", _waitress, f"waitress, raw WSGI, {POOL_THREADS} threads"),
        ServerSpec(
            "gunicorn",
            _gunicorn,
            f"gunicorn -k gthread, raw WSGI, 1 worker x {POOL_THREADS} threads",
        ),
        ServerSpec("cheroot", _cheroot, f"cheroot, raw WSGI, {POOL_THREADS} threads"),
    )
}

DEFAULT_HTTP_SERVERS = [
    "zzz-native",
    "zzz-eventloop",
    "zzz-eventloop-async",
    "uvicorn",
    "granian",
    "waitress",
    "gunicorn",
    "cheroot",
]

WS_SERVERS: dict[str, ServerSpec] = {
    s.name: s
    for s in (
        ServerSpec(
            "zzz-eventloop",
            _zzz("bench.apps.zzz_ws_app:app", "eventloop", []),
            "zzz eventloop backend, app.ws() echo",
        ),
        ServerSpec(
            "zzz-native",
            _zzz("bench.apps.zzz_ws_app:app", "native", _NATIVE_EXTRA),
            "zzz native backend, app.ws() echo",
        ),
        ServerSpec(
            "uvicorn",
            _uvicorn("bench.apps.asgi_ws_app:app", ws=True),
            "uvicorn --ws websockets, raw ASGI echo",
        ),
    )
}


def parse_names(text: str, known: dict[str, ServerSpec]) -> list[str]:
    """Split a comma-separated server list, rejecting unknown names up front."""
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in known]
    if unknown:
        raise SystemExit(f"unknown server(s): {', '.join(unknown)}; known: {', '.join(known)}")
    return names


# --- CPU pinning -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Pinning:
    """``taskset`` prefixes for the server and the load generator (empty when not pinning)."""

    server: list[str] = field(default_factory=list)
    client: list[str] = field(default_factory=list)
    description: str = "not pinned"


def plan_pinning(enabled: bool, server_cpu: int, client_cpu: int) -> Pinning:
    """Pin server and client to different CPUs when taskset and two usable CPUs exist."""
    if not enabled:
        return Pinning(description="not pinned (--no-pin)")
    taskset = shutil.which("taskset")
    if taskset is None:
        return Pinning(description="not pinned (taskset not found)")
    cpus = sorted(os.sched_getaffinity(0))
    if server_cpu not in cpus or client_cpu not in cpus or server_cpu == client_cpu:
        return Pinning(description=f"not pinned (usable CPUs {cpus})")
    return Pinning(
        server=[taskset, "-c", str(server_cpu)],
        client=[taskset, "-c", str(client_cpu)],
        description=f"server on CPU {server_cpu}, load generator on CPU {client_cpu}",
    )


# --- process lifecycle -----------------------------------------------------------------------


def write_results(out_dir: Path, stem: str, doc: object, latest: str, table: str) -> Path:
    """Save one run: ``<stem>.json`` (raw) and ``latest*.md`` (the table), and print it."""
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{stem}.json"
    path.write_text(json.dumps(doc, indent=2) + "\n")
    (out_dir / latest).write_text(table + "\n")
    print()
    print(table)
    print(f"results: {path} and {out_dir / latest}")
    return path


def free_port() -> int:
    """A port on 127.0.0.1 that was free a moment ago (the server binds it right after)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def http_request(port: int, raw: bytes, timeout: float = PROBE_TIMEOUT_S) -> tuple[int, bytes]:
    """Send one raw request on a fresh connection; return (status, body). Raises OSError."""
    with socket.create_connection((HOST, port), timeout=timeout) as s:
        s.sendall(raw)
        data = b""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and len(data) < PROBE_MAX_BYTES:
            head, sep, body = data.partition(b"\r\n\r\n")
            if sep:
                length = _content_length(head)
                if length is not None and len(body) >= length:
                    return _status(head), body[:length]
            chunk = s.recv(PROBE_MAX_BYTES)
            if not chunk:
                break
            data += chunk
        head, sep, body = data.partition(b"\r\n\r\n")
        if not sep:
            raise OSError(f"incomplete response: {data[:200]!r}")
        return _status(head), body


def _status(head: bytes) -> int:
    parts = head.split(b"\r\n", 1)[0].split()
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/"):
        raise OSError(f"not an HTTP response: {head[:200]!r}")
    return int(parts[1])


def _content_length(head: bytes) -> int | None:
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value.strip())
    return None


class ServerFailed(Exception):
    """The server did not start, did not answer, or answered wrongly."""


class RunningServer:
    """A server process this harness started; only this PID (and its group) is ever signalled."""

    def __init__(
        self,
        name: str,
        argv: list[str],
        log_path: Path,
        cwd: Path = REPO_ROOT,
        env: dict[str, str] | None = None,
    ) -> None:
        self.name = name
        self.argv = argv
        self.log_path = log_path
        self.port = 0
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = log_path.open("wb")
        # A new session makes the server the leader of its own process group, so the final
        # SIGKILL can also reach workers it forked (gunicorn) and nothing else.
        self.proc = subprocess.Popen(
            argv,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def wait_ready(self, port: int, timeout: float = START_TIMEOUT_S) -> float:
        """Poll until any HTTP response comes back; return seconds it took."""
        self.port = port
        start = time.monotonic()
        probe = b"GET / HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n"
        last_error = "no attempt"
        while time.monotonic() - start < timeout:
            code = self.proc.poll()
            if code is not None:
                raise ServerFailed(f"exited with code {code} before answering\n{self.log_tail()}")
            try:
                http_request(port, probe)
                return time.monotonic() - start
            except (OSError, ValueError) as exc:
                last_error = str(exc)
            time.sleep(READY_POLL_S)
        raise ServerFailed(
            f"no HTTP answer within {timeout:.0f}s ({last_error})\n{self.log_tail()}"
        )

    def log_tail(self) -> str:
        self._log.flush()
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join(f"    | {line}" for line in lines[-LOG_TAIL_LINES:])

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> int | None:
        """SIGTERM the server, SIGKILL its process group if it lingers; return exit code."""
        try:
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGTERM)
                try:
                    self.proc.wait(timeout)
                except subprocess.TimeoutExpired:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(self.proc.pid, signal.SIGKILL)
                    self.proc.wait(timeout)
            # Workers a master left behind share the group we created; reap them too.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            return self.proc.returncode
        finally:
            self._log.close()


@contextlib.contextmanager
def running(
    spec: ServerSpec,
    log_path: Path,
    pin: Pinning,
    *,
    idle: bool = False,
    timeout: float = START_TIMEOUT_S,
) -> Iterator[RunningServer]:
    """Start ``spec`` on a free port, wait until it answers, and always stop it afterwards."""
    if spec.baseline and not (BASELINE_TREE / "zzz" / "__init__.py").is_file():
        raise ServerFailed(
            f"no baseline zzz checkout at {BASELINE_TREE}: create one with "
            f"`git worktree add {BASELINE_TREE} <commit>` or pass --baseline-tree"
        )
    port = free_port()
    argv = [*pin.server, *spec.argv(port, idle)]
    server = RunningServer(spec.name, argv, log_path, spec.cwd(), spec.env())
    try:
        server.wait_ready(port, timeout)
        yield server
    finally:
        server.stop()


def rss_bytes(pid: int) -> int:
    """Resident set size of ``pid`` from /proc (psutil is not a dependency)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise OSError(f"no VmRSS for pid {pid}")


def tree_rss_bytes(pid: int) -> int:
    """RSS of ``pid`` plus its direct children (gunicorn/granian serve from a child)."""
    total = rss_bytes(pid)
    children = Path(f"/proc/{pid}/task/{pid}/children")
    with contextlib.suppress(OSError):
        for child in children.read_text().split():
            with contextlib.suppress(OSError):
                total += rss_bytes(int(child))
    return total


# --- CPU accounting --------------------------------------------------------------------------

#: Clock ticks per second of the utime/stime fields of /proc/<pid>/stat.
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _descendants(pid: int) -> list[int]:
    """``pid`` and every live process below it (a master's workers and their children)."""
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        with contextlib.suppress(OSError):
            for task in Path(f"/proc/{current}/task").iterdir():
                with contextlib.suppress(OSError):
                    todo += [int(c) for c in (task / "children").read_text().split()]
    return found


def tree_cpu_seconds(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds used so far by ``pid`` and its live descendants.

    Fields 14 and 15 of /proc/<pid>/stat, all threads included; the command name (field 2)
    may hold spaces, so the fields are counted after its closing parenthesis.
    """
    user = system = 0
    for proc in _descendants(pid):
        with contextlib.suppress(OSError, ValueError, IndexError):
            stat = Path(f"/proc/{proc}/stat").read_text()
            fields = stat[stat.rindex(")") + 2 :].split()
            user += int(fields[11])
            system += int(fields[12])
    return user / CLOCK_TICKS, system / CLOCK_TICKS
