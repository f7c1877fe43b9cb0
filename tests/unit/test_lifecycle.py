"""Lifecycle and return-value rules that need no socket: registration errors, State,
the handler recorded on the request, and what each returned type becomes."""

from __future__ import annotations

import asyncio
import contextlib
import types
import warnings
from collections.abc import AsyncIterator
from typing import Any

import pytest

import zzz
from zzz.http.headers import Headers
from zzz.http.request import Request
from zzz.lifecycle import StartupError, State


def fake_server(drain_timeout_ms: int = 1000) -> Any:
    hooks: list[Any] = []
    return types.SimpleNamespace(
        config=zzz.Config(drain_timeout_ms=drain_timeout_ms),
        on_shutdown=hooks.append,
        hooks=hooks,
        offload_sync=False,
        offload_all_sync=False,
    )


def get(app: zzz.Router, path: str) -> zzz.Response:
    request = Request("GET", path, "", Headers([("host", "x")]))
    result = app.handle(request, fake_server())
    if not isinstance(result, zzz.Response):
        result = asyncio.run(result)  # type: ignore[arg-type]
    assert isinstance(result, zzz.Response)
    return result


def test_state_is_an_attribute_namespace_naming_missing_names() -> None:
    state = State({"db": "pool"})
    state.cache = {}
    assert state.db == "pool" and state.cache == {} and "db" in state
    with pytest.raises(AttributeError, match=r"app\.state has no attribute 'nope'"):
        _ = state.nope
    with pytest.raises(ValueError, match="identifiers"):
        state.update({"not a name": 1})


def test_lifespan_must_be_a_context_manager_factory() -> None:
    async def generator(app: Any) -> AsyncIterator[None]:
        yield

    with pytest.raises(TypeError, match="asynccontextmanager"):
        zzz.Router(lifespan=generator)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="callable"):
        zzz.Router(lifespan=42)  # type: ignore[arg-type]


def test_hooks_take_no_argument_or_the_server() -> None:
    app = zzz.Router()
    with pytest.raises(TypeError, match="no argument or one"):
        app.on_startup(lambda a, b: None)
    with pytest.raises(TypeError, match="callable"):
        app.on_shutdown(42)  # type: ignore[arg-type]


def test_lifespan_yielding_something_else_than_a_mapping_fails_startup() -> None:
    @contextlib.asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[int]:
        yield 42

    app = zzz.Router(lifespan=lifespan)
    with pytest.raises(StartupError, match="yielded a int: yield nothing or a mapping"):
        asyncio.run(app.startup(fake_server()))


def test_declarative_hooks_and_state_from_lifespan() -> None:
    seen: list[str] = []

    @contextlib.asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[dict[str, str]]:
        yield {"client": "ready"}
        seen.append("left")

    app = zzz.Router(lifespan=lifespan, on_startup=[lambda: seen.append("up")],
                     on_shutdown=[lambda server: seen.append("down")])

    async def cycle() -> None:
        server = fake_server()
        await app.startup(server)
        assert app.state.client == "ready"
        await app.shutdown(server)
        await app.shutdown(server)  # once only

    asyncio.run(cycle())
    assert seen == ["up", "left", "down"]


def test_shutdown_without_startup_runs_nothing() -> None:
    app = zzz.Router(on_shutdown=[lambda: pytest.fail("ran")])
    asyncio.run(app.shutdown(fake_server()))


def test_handler_is_recorded_on_the_request() -> None:
    app = zzz.Router()

    @app.get("/a/:id")
    def show(ctx: zzz.Context) -> None:
        ctx.text(200, ctx.request.handler or "")

    assert get(app, "/a/1").body == f"{__name__}.test_handler_is_recorded_on_the_request" \
        ".<locals>.show".encode()


@pytest.mark.parametrize(("value", "status", "content_type", "body"), [
    ("text", 200, "text/plain; charset=utf-8", b"text"),
    (bytearray(b"\x01"), 200, "application/octet-stream", b"\x01"),
    ({"k": [1]}, 200, "application/json", b'{"k":[1]}'),
    ([], 200, "application/json", b"[]"),
    (zzz.Response(204, [("X-A", "1")]), 204, None, b""),
])
def test_each_returned_type(value: Any, status: int, content_type: str | None,
                            body: bytes) -> None:
    app = zzz.Router()
    app.add_route("GET", "/", lambda ctx: value)
    response = get(app, "/")
    fields = dict(response.headers)
    assert (response.status, fields.get("Content-Type"), response.body) == (
        status, content_type, body)


def test_value_returned_by_a_middleware_short_circuits() -> None:
    def guard(ctx: zzz.Context) -> Any:
        return {"error": "denied"}

    app = zzz.Router(middleware=[guard])
    app.add_route("GET", "/", lambda ctx: "never")
    response = get(app, "/")
    assert response.body == b'{"error":"denied"}'


def test_handler_returning_a_coroutine_from_a_sync_chain_is_refused() -> None:
    async def work() -> str:
        return "x"

    def middleware(ctx: zzz.Context) -> None:
        ctx.next()

    app = zzz.Router(middleware=[middleware])
    app.add_route("GET", "/", lambda ctx: work())
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the coroutine is closed, not left unawaited
        response = get(app, "/")
    assert response.status == 500
