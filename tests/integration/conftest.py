"""Fixtures shared by the integration tests.

``backend`` is parametrized over every name in :data:`zzz.backends.BACKENDS`, so a
backend registered later runs the whole suite without editing a test. A backend
whose module cannot be imported yet is skipped (not xfailed) with the reason.

``serve(app, **config_overrides)`` starts a real server on 127.0.0.1 with an
ephemeral port in a thread and shuts it down (and checks it stopped) at teardown.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

import zzz.backends
from zzz.config import Config, TlsConfig

#: Longest wait for a server to bind and accept.
READY_TIMEOUT_S = 10.0
#: Longest wait for a server thread to stop after ``shutdown()``.
STOP_TIMEOUT_S = 15.0
#: Drain deadline the fixture uses unless a test overrides it: a test that leaves a
#: request half-sent must not hold the teardown for the 10 s default.
TEST_DRAIN_TIMEOUT_MS = 3000
#: Modules whose tests run twice, over plain TCP and over TLS (``transport``): the ones
#: that talk through httpx only, which trusts the test CA through ``SSL_CERT_FILE``.
#: Elsewhere mark an httpx-based test ``@pytest.mark.tls_transport`` to run it twice.
#: Raw-socket tests stay on TCP (RawClient speaks plain TCP); HTTPS itself: test_tls.py.
TLS_TRANSPORT_MODULES = frozenset({"test_app"})


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "tls_transport: run this serve-based test over TCP and over TLS")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    module = metafunc.module.__name__.rpartition(".")[2]
    wanted = module in TLS_TRANSPORT_MODULES or any(
        mark.name == "tls_transport" for mark in metafunc.definition.iter_markers())
    if wanted and "transport" in metafunc.fixturenames:
        metafunc.parametrize("transport", ["tcp", "tls"], indirect=True)


@pytest.fixture
def transport(request: pytest.FixtureRequest) -> str:
    """``tcp`` or ``tls``: how ``serve`` listens (``tls`` only in TLS_TRANSPORT_MODULES)."""
    return str(getattr(request, "param", "tcp"))


@pytest.fixture(scope="session")
def tls_test_files(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from .tls_helpers import make_tls_files

    return make_tls_files(tmp_path_factory.mktemp("tls"), "suite")


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


@pytest.fixture
def serve(
    backend: str, transport: str, request: pytest.FixtureRequest,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Callable[..., RunningServer]]:
    """Factory: ``serve(app, **config_overrides)`` → a running server on ``backend``."""
    from zzz.server import Server

    started: list[RunningServer] = []

    def start(app: Any, **overrides: Any) -> RunningServer:
        overrides.setdefault("drain_timeout_ms", TEST_DRAIN_TIMEOUT_MS)
        if transport == "tls":  # server.url becomes https://; httpx trusts the test CA
            files = request.getfixturevalue("tls_test_files")
            overrides.setdefault("tls", TlsConfig(str(files.cert_file), str(files.key_file)))
            monkeypatch.setenv("SSL_CERT_FILE", str(files.ca_file))
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
        running = RunningServer(server, thread, port, server.url, errors)
        started.append(running)
        return running

    yield start

    for running in started:
        running.server.shutdown()
        running.thread.join(STOP_TIMEOUT_S)
        assert not running.thread.is_alive(), f"{backend} server did not stop"
        assert running.server.stopped.is_set()
        assert not running.errors, f"listen() raised: {running.errors!r}"
