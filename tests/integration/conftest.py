"""Fixtures shared by the integration tests.

``backend`` is parametrized over every name in :data:`zzz.backends.BACKENDS`, so a
backend registered later runs the whole suite without editing a test. A backend
whose module cannot be imported yet is skipped (not xfailed) with the reason.

``serve(app, **config_overrides)`` starts a real server on 127.0.0.1 with an
ephemeral port in a thread and shuts it down (and checks it stopped) at teardown.

``transport`` runs the HTTP modules (TLS_TRANSPORT_MODULES) twice: over plain TCP and
over TLS with a test CA. Over TLS the returned server's ``url`` is ``https://``,
``client_ssl`` is a client context trusting that CA (None over TCP; ``RawClient(srv)``
uses it) and ``ca_file`` its PEM (for curl's ``--cacert``); httpx trusts the CA through
``SSL_CERT_FILE``. TLS's own behaviour (handshakes, mutual TLS, reload) is test_tls.py's.
"""

from __future__ import annotations

import ssl
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

import zzz.backends
from zzz.config import Config, TlsConfig

from .procs import ServerProcess

#: Longest wait for a server to bind and accept.
READY_TIMEOUT_S = 10.0
#: Longest wait for a server thread to stop after ``shutdown()``.
STOP_TIMEOUT_S = 15.0
#: Drain deadline the fixture uses unless a test overrides it: a test that leaves a
#: request half-sent must not hold the teardown for the 10 s default.
TEST_DRAIN_TIMEOUT_MS = 3000
#: Modules whose serve-based tests run twice, over plain TCP and over TLS (``transport``):
#: the whole HTTP suite (issue 4). Elsewhere mark a test ``@pytest.mark.tls_transport``.
#: A test that cannot mean the same over TLS skips itself there with the reason
#: (``pytest.skip`` when ``transport == "tls"``).
TLS_TRANSPORT_MODULES = frozenset({
    "test_app", "test_bodies", "test_connections", "test_responses", "test_bad_input",
    "test_load", "test_runtime", "test_streaming_bodies", "test_interfaces",
})


#: Modules whose serve-based tests also run with the ASGI and WSGI twins of the Router
#: test app (``interface``: zzz, asgi, wsgi): framing, limits, timeouts and bad input
#: must be refused identically whatever answers the request (issue 9).
INTERFACE_MODULES = frozenset({"test_bad_input"})


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "tls_transport: run this serve-based test over TCP and over TLS")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    module = metafunc.module.__name__.rpartition(".")[2]
    wanted = module in TLS_TRANSPORT_MODULES or any(
        mark.name == "tls_transport" for mark in metafunc.definition.iter_markers())
    interfaces = module in INTERFACE_MODULES and "interface" in metafunc.fixturenames
    if wanted and "transport" in metafunc.fixturenames and interfaces:
        # TLS is the transport's concern, not the interface's: the twins run over TCP.
        metafunc.parametrize(("transport", "interface"), [
            ("tcp", "zzz"), ("tls", "zzz"), ("tcp", "asgi"), ("tcp", "wsgi"),
        ], indirect=True)
    elif wanted and "transport" in metafunc.fixturenames:
        metafunc.parametrize("transport", ["tcp", "tls"], indirect=True)
    elif interfaces:
        metafunc.parametrize("interface", ["zzz", "asgi", "wsgi"], indirect=True)


@pytest.fixture
def interface(request: pytest.FixtureRequest) -> str:
    """``zzz``, ``asgi`` or ``wsgi``: which twin of the test app ``serve`` runs
    (``asgi``/``wsgi`` only in INTERFACE_MODULES)."""
    return str(getattr(request, "param", "zzz"))


@pytest.fixture
def transport(request: pytest.FixtureRequest) -> str:
    """``tcp`` or ``tls``: how ``serve`` listens (``tls`` only in TLS_TRANSPORT_MODULES)."""
    return str(getattr(request, "param", "tcp"))


@pytest.fixture(scope="session")
def tls_test_files(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from .tls_helpers import make_tls_files

    return make_tls_files(tmp_path_factory.mktemp("tls"), "suite")


@pytest.fixture(scope="session")
def tls_client_context(tls_test_files: Any) -> ssl.SSLContext:
    """One client context trusting the suite's CA (loading the CA once, not per client)."""
    context: ssl.SSLContext = tls_test_files.client_context()
    return context


@pytest.fixture(params=sorted(zzz.backends.BACKENDS))
def backend(request: pytest.FixtureRequest) -> str:
    """Name of the backend under test; skipped when its module cannot be imported."""
    name: str = request.param
    try:
        zzz.backends.load(name)
    except ImportError as exc:
        pytest.skip(f"backend {name!r} cannot be loaded: {exc}")
    return name


@dataclass
class RunningServer:
    """A server listening in a background thread."""

    server: Any
    thread: threading.Thread
    port: int
    url: str
    errors: list[BaseException] = field(default_factory=list)
    #: ``tcp`` or ``tls``: the transport the fixture chose.
    transport: str = "tcp"
    #: Client context trusting the test CA when the fixture made the server serve TLS.
    client_ssl: ssl.SSLContext | None = None
    #: The test CA's PEM file (same condition), for clients such as curl.
    ca_file: str | None = None


@pytest.fixture
def serve(
    backend: str, transport: str, interface: str, request: pytest.FixtureRequest,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Callable[..., RunningServer]]:
    """Factory: ``serve(app, **config_overrides)`` → a running server on ``backend``."""
    from zzz.server import Server

    started: list[RunningServer] = []

    def start(app: Any, **overrides: Any) -> RunningServer:
        overrides.setdefault("drain_timeout_ms", TEST_DRAIN_TIMEOUT_MS)
        if interface != "zzz":
            from .apps import app as router_app
            from .interface_apps import TWINS

            if app is not router_app:
                pytest.skip(f"{request.node.name}: a Router-only app has no {interface} twin")
            app = TWINS[interface]
            # ASGI and WSGI bodies are streamed: the same bound, as the stream limit.
            overrides.setdefault("max_stream_body_size",
                                 overrides.get("max_body_size", Config().max_body_size))
        client_ssl: ssl.SSLContext | None = None
        ca_file: str | None = None
        if transport == "tls" and "tls" not in overrides:
            # server.url becomes https://; httpx trusts the test CA, RawClient(srv) too.
            files = request.getfixturevalue("tls_test_files")
            overrides["tls"] = TlsConfig(str(files.cert_file), str(files.key_file))
            ca_file = str(files.ca_file)
            client_ssl = request.getfixturevalue("tls_client_context")
            monkeypatch.setenv("SSL_CERT_FILE", ca_file)
        config = Config(host="127.0.0.1", port=0, **overrides)
        server = Server(app, config, backend=backend)
        errors: list[BaseException] = []

        def run() -> None:
            try:
                server.listen()
            except BaseException as exc:  # reported at teardown
                errors.append(exc)

        thread = threading.Thread(target=run, name=f"zzz-test-{backend}", daemon=True)
        thread.start()
        if not server.ready.wait(READY_TIMEOUT_S):
            server.shutdown()
            thread.join(STOP_TIMEOUT_S)
            raise AssertionError(f"{backend} server not ready after {READY_TIMEOUT_S}s: {errors}")
        assert server.address is not None
        port = server.address[1]
        running = RunningServer(server, thread, port, server.url, errors, transport,
                                client_ssl, ca_file)
        started.append(running)
        return running

    yield start

    for running in started:
        running.server.shutdown()
        running.thread.join(STOP_TIMEOUT_S)
        assert not running.thread.is_alive(), f"{backend} server did not stop"
        assert running.server.stopped.is_set()
        assert not running.errors, f"listen() raised: {running.errors!r}"


@pytest.fixture
def start_process(backend: str) -> Iterator[Callable[..., ServerProcess]]:
    """Start ``python -m zzz run`` processes on ``backend``; every one is killed at the end."""
    started: list[ServerProcess] = []

    def start(*args: str) -> ServerProcess:
        process = ServerProcess(backend, *args)
        started.append(process)
        process.wait_ready()
        return process

    yield start
    for process in started:
        process.kill()
