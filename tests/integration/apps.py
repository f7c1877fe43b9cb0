"""Applications the integration tests serve (also loaded by the CLI in the shutdown tests:
``python -m zzz run tests.integration.apps:app``), so this module imports only zzz."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator

import zzz

#: Body of ``GET /``; ``assert_still_serving`` checks it.
HELLO = "hello"
#: Size of one piece of ``/big-stream`` and how many pieces it has at most (1 GiB):
#: far more than socket buffers hold, so a client that stops reading stalls the writer.
BIG_PIECE = b"x" * 65536
BIG_PIECES = 16384
#: Longest ``/slow`` sleeps, whatever the query asks.
MAX_SLOW_MS = 10_000

app = zzz.Router()


@app.get("/")
def index(ctx: zzz.Context) -> None:
    ctx.text(200, HELLO)


@app.get("/users/:id")
def user(ctx: zzz.Context) -> None:
    ctx.json(200, {"id": ctx.path_param("id"), "q": ctx.query.get("q")})


@app.post("/echo")
def echo(ctx: zzz.Context) -> None:
    ctx.set_header("X-Body-Length", str(len(ctx.raw_body())))
    ctx.respond(200, "application/octet-stream", ctx.raw_body())


@app.post("/json")
def json_echo(ctx: zzz.Context) -> None:
    ctx.json(200, {"got": ctx.json_body()})


@app.get("/header")
def header(ctx: zzz.Context) -> None:
    """Echo one request header named by ``?name=``."""
    ctx.text(200, ctx.headers.get(ctx.query.get("name") or "", "") or "")


@app.get("/nocontent")
def nocontent(ctx: zzz.Context) -> None:
    ctx.text(204, "")


@app.get("/notmodified")
def notmodified(ctx: zzz.Context) -> None:
    ctx.set_header("ETag", '"v1"')
    ctx.text(304, "")


@app.get("/cookie")
def cookie(ctx: zzz.Context) -> None:
    ctx.set_cookie("session", "abc")
    ctx.redirect("/")


@app.get("/stream")
def stream(ctx: zzz.Context) -> None:
    count = int(ctx.query.get("n") or "5")

    def pieces() -> Iterator[str]:
        for i in range(count):
            yield f"piece {i}\n"

    ctx.stream(200, "text/plain", pieces())


@app.get("/big-stream")
def big_stream(ctx: zzz.Context) -> None:
    ctx.stream(200, "application/octet-stream", (BIG_PIECE for _ in range(BIG_PIECES)))


@app.get("/slow")
def slow(ctx: zzz.Context) -> None:
    ms = min(int(ctx.query.get("ms") or "800"), MAX_SLOW_MS)
    time.sleep(ms / 1000.0)
    ctx.text(200, f"slept {ms}")


@app.get("/aslow")
async def aslow(ctx: zzz.Context) -> None:
    """Like ``/slow`` but awaiting: in flight without blocking an event loop."""
    ms = min(int(ctx.query.get("ms") or "800"), MAX_SLOW_MS)
    await asyncio.sleep(ms / 1000.0)
    ctx.text(200, f"slept {ms}")


@app.get("/boom")
def boom(ctx: zzz.Context) -> None:
    raise RuntimeError("secret-internal-detail")


@app.get("/async")
async def async_handler(ctx: zzz.Context) -> None:
    await asyncio.sleep(0.01)
    ctx.text(200, "async hello")


@app.get("/async-stream")
async def async_stream(ctx: zzz.Context) -> None:
    async def pieces() -> AsyncIterator[bytes]:
        for i in range(3):
            await asyncio.sleep(0)
            yield f"a{i}".encode()

    ctx.stream(200, "text/plain", pieces())


# An app whose router-wide middleware is async, in front of sync and async handlers.


async def timing_middleware(ctx: zzz.Context) -> None:
    await asyncio.sleep(0)
    ctx.set_header("X-Middleware", "async")
    await ctx.next()


async def guard_middleware(ctx: zzz.Context) -> None:
    """Short-circuits (does not call ``next``) when ``?deny=1``."""
    if ctx.query.get("deny") == "1":
        ctx.text(403, "denied")
        return
    await ctx.next()


def _mw_index(ctx: zzz.Context) -> None:
    ctx.text(200, HELLO)


async def _mw_async(ctx: zzz.Context) -> None:
    await asyncio.sleep(0.01)
    ctx.text(200, "async behind middleware")


middleware_app = zzz.Router(
    middleware=[timing_middleware, guard_middleware],
    routes=[zzz.get("/", _mw_index), zzz.get("/async", _mw_async)],
)
