"""A small app showing the main features; `make run` serves it.

    python -m zzz run examples.hello:app --backend native
    curl localhost:8888/            curl localhost:8888/users/42?verbose=1
    curl -d 'hi' localhost:8888/echo        curl -N localhost:8888/stream

``/`` and ``/json`` have no middleware, so they are what benchmarks hit.
For a load balancer health check add ``app.use(zzz.middleware.Health())``.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator, Iterator

import zzz
from zzz.middleware import Logger, RequestId

#: Pause between streamed chunks, to make the streaming visible with ``curl -N``.
STREAM_DELAY_S = 0.2
STREAM_CHUNKS = 5


def index(ctx: zzz.Context) -> None:
    ctx.text(200, "Hello, World!")


def hello_json(ctx: zzz.Context) -> None:
    ctx.json(200, {"message": "Hello, World!"})


def get_user(ctx: zzz.Context) -> None:
    ctx.json(
        200,
        {
            "id": ctx.path_param("id"),
            "verbose": ctx.query.get("verbose") is not None,
            "request_id": ctx.assigns.get("request_id"),
            "self": app.path_for("user", id=ctx.path_param("id")),
        },
    )


def echo(ctx: zzz.Context) -> None:
    ctx.respond(200, "application/octet-stream", ctx.raw_body())


async def slow_hello(ctx: zzz.Context) -> None:
    """An async handler: awaits without blocking other requests on the event loop."""
    await asyncio.sleep(0.01)
    digest = await ctx.run_blocking(_expensive_digest, ctx.raw_body())
    ctx.json(200, {"message": "Hello, async World!", "sha256": digest})


def _expensive_digest(data: bytes) -> str:
    """Stand-in for blocking work, run off the event loop by ``run_blocking``."""
    return hashlib.sha256(data).hexdigest()


def stream_sync(ctx: zzz.Context) -> None:
    def lines() -> Iterator[str]:
        for number in range(STREAM_CHUNKS):
            yield f"line {number}\n"

    ctx.stream(200, "text/plain; charset=utf-8", lines())


async def stream_async(ctx: zzz.Context) -> None:
    async def ticks() -> AsyncIterator[bytes]:
        for number in range(STREAM_CHUNKS):
            await asyncio.sleep(STREAM_DELAY_S)
            yield b"tick %d\n" % number

    ctx.stream(200, "text/plain; charset=utf-8", ticks())


app = zzz.Router(
    routes=[
        zzz.get("/", index, name="home"),
        zzz.get("/json", hello_json),
        zzz.post("/echo", echo),
        zzz.route(["GET", "POST"], "/async", slow_hello),
        zzz.get("/stream", stream_sync),
        zzz.get("/stream/async", stream_async),
        # Middleware for one group of routes only; `app.use(Health())` would add
        # router-wide middleware (run for every request, 404s included).
        zzz.scope(
            "/users",
            [RequestId(), Logger()],
            [zzz.get("/:id", get_user, name="user")],
        ),
    ],
)


if __name__ == "__main__":
    import logging

    logging.basicConfig(level=logging.INFO)
    zzz.Server(app, zzz.Config(port=8888)).listen()
