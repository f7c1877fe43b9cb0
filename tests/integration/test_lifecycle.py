"""Application lifecycle over real sockets, once per backend (issue 8 §2).

Start-up hooks and the lifespan run before the first accept, their state is
shared with every request and WebSocket, shutdown runs after the drain within
the drain deadline, and a failed start-up never binds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from websockets.sync.client import connect

import zzz
from zzz.lifecycle import StartupError
from zzz.server import Server

from .conftest import STOP_TIMEOUT_S
from .rawhttp import SOCKET_TIMEOUT_S

#: How long the slow request of the drain test takes, and how long the test waits for
#: it to have started: both far below the drain deadline the test gives the server.
SLOW_REQUEST_S = 0.5
DRAIN_TIMEOUT_MS = 5000


def lifecycle_app(events: list[str]) -> zzz.Router:
    @contextlib.asynccontextmanager
    async def lifespan(app: zzz.Router) -> AsyncIterator[dict[str, Any]]:
        events.append(f"lifespan enter (app is router: {app is router})")
        yield {"from_lifespan": "pool"}
        events.append("lifespan exit")

    router = zzz.Router(lifespan=lifespan)
    started = threading.Event()

    @router.on_startup
    def plain_startup() -> None:
        router.state.greeting = "hello"
        events.append("startup plain")

    @router.on_startup
    async def async_startup(server: Server) -> None:
        await asyncio.sleep(0)
        assert not server.ready.is_set(), "startup must run before the server accepts"
        events.append("startup async")

    @router.on_shutdown
    async def async_shutdown() -> None:
        await asyncio.sleep(0)
        events.append("shutdown async")

    @router.on_shutdown
    def plain_shutdown(server: Server) -> None:
        events.append(f"shutdown plain (stopping: {server.shutting_down.is_set()})")

    @router.get("/state")
    def state(ctx: zzz.Context) -> None:
        ctx.json(200, {"greeting": ctx.state.greeting, "lifespan": ctx.state.from_lifespan})

    @router.get("/slow")
    async def slow(ctx: zzz.Context) -> None:
        started.set()
        await asyncio.sleep(SLOW_REQUEST_S)
        events.append("slow request done")
        ctx.text(200, "done")

    router.state.slow_started = started
    return router


def test_startup_state_and_shutdown_order(serve: Any) -> None:
    events: list[str] = []
    app = lifecycle_app(events)
    srv = serve(app, drain_timeout_ms=DRAIN_TIMEOUT_MS)
    assert events == [
        "startup plain", "startup async", "lifespan enter (app is router: True)",
    ]
    with httpx.Client(timeout=SOCKET_TIMEOUT_S) as client:
        response = client.get(f"{srv.url}/state")
        assert response.json() == {"greeting": "hello", "lifespan": "pool"}

        slow: list[httpx.Response] = []
        thread = threading.Thread(target=lambda: slow.append(client.get(f"{srv.url}/slow")))
        thread.start()
        assert app.state.slow_started.wait(SOCKET_TIMEOUT_S)
        srv.server.shutdown()  # shutdown hooks must wait for the in-flight request
        thread.join(SOCKET_TIMEOUT_S)
    srv.thread.join(STOP_TIMEOUT_S)
    assert not srv.thread.is_alive()
    assert [r.text for r in slow] == ["done"]
    assert events[3:] == [
        "slow request done", "lifespan exit", "shutdown async", "shutdown plain (stopping: True)",
    ]


def test_ctx_server_is_the_serving_server(serve: Any) -> None:
    app = zzz.Router()

    @app.get("/")
    def index(ctx: zzz.Context) -> None:
        ctx.text(200, str(ctx.server is ctx.state.server and ctx.server.address is not None))

    @app.on_startup
    def remember(server: Server) -> None:
        app.state.server = server

    srv = serve(app)
    assert httpx.get(f"{srv.url}/", timeout=SOCKET_TIMEOUT_S).text == "True"
    assert app.state.server is srv.server


def test_websocket_reaches_state_and_server_timers(serve: Any) -> None:
    app = zzz.Router()
    app.state.greeting = "welcome"

    def on_open(ws: zzz.WebSocket) -> None:
        assert ws.server is not None and ws.state is not None
        ws.send(ws.state.greeting)
        ws.server.add_timer(10, lambda: ws.send("tick"))

    app.ws("/ws", on_open=on_open, on_message=lambda ws, msg: None)
    srv = serve(app)
    with connect(f"ws://127.0.0.1:{srv.port}/ws", open_timeout=SOCKET_TIMEOUT_S) as client:
        assert client.recv(timeout=SOCKET_TIMEOUT_S) == "welcome"
        assert client.recv(timeout=SOCKET_TIMEOUT_S) == "tick"


@pytest.mark.parametrize("where", ["hook", "lifespan"])
def test_failed_startup_raises_and_never_binds(backend: str, where: str) -> None:
    events: list[str] = []

    @contextlib.asynccontextmanager
    async def lifespan(app: zzz.Router) -> AsyncIterator[None]:
        raise ConnectionRefusedError("database at db:5432 refused")
        yield

    app = zzz.Router(lifespan=lifespan if where == "lifespan" else None)

    @app.on_startup
    def ok() -> None:
        events.append("ok")

    if where == "hook":
        @app.on_startup
        async def connect_db() -> None:
            raise ConnectionRefusedError("database at db:5432 refused")

    @app.on_shutdown
    def never() -> None:
        events.append("shutdown")

    server = Server(app, zzz.Config(host="127.0.0.1", port=0), backend=backend)
    with pytest.raises(StartupError) as info:
        server.listen()
    message = str(info.value)
    assert "ConnectionRefusedError: database at db:5432 refused" in message
    assert ("connect_db" if where == "hook" else "lifespan") in message
    assert "\n" not in message
    assert not server.ready.is_set() and server.address is None
    assert server.stopped.is_set()
    assert events == ["ok"]  # shutdown hooks do not run after a failed start-up


def test_shutdown_is_bounded_by_the_drain_deadline(
    serve: Any, caplog: pytest.LogCaptureFixture
) -> None:
    app = zzz.Router()
    after: list[str] = []

    @app.on_shutdown
    async def hangs() -> None:
        await asyncio.sleep(3600)

    @app.on_shutdown
    def skipped() -> None:
        after.append("ran")

    caplog.set_level(logging.ERROR, logger="zzz.app")
    srv = serve(app, drain_timeout_ms=300)
    srv.server.shutdown()
    srv.thread.join(STOP_TIMEOUT_S)
    assert not srv.thread.is_alive()
    assert after == []
    messages = [r.getMessage() for r in caplog.records]
    assert any("hangs did not finish within the drain deadline" in m for m in messages), messages


def test_failing_shutdown_hook_is_logged_and_the_next_runs(
    serve: Any, caplog: pytest.LogCaptureFixture
) -> None:
    app = zzz.Router()
    after: list[str] = []

    @app.on_shutdown
    def broken() -> None:
        raise RuntimeError("flush failed")

    @app.on_shutdown
    async def next_one() -> None:
        after.append("ran")

    caplog.set_level(logging.ERROR, logger="zzz.app")
    srv = serve(app)
    srv.server.shutdown()
    srv.thread.join(STOP_TIMEOUT_S)
    assert after == ["ran"]
    assert any("broken failed" in r.getMessage() for r in caplog.records)
