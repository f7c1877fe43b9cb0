"""The application ``bench/soak.py`` serves: one route per kind of load in the soak
(``python -m zzz run bench.soak_app:app``). It imports only zzz."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import zzz

#: Body of ``GET /``.
HELLO = "hello"
#: Most pieces ``/stream`` sends, whatever the query asks.
MAX_PIECES = 10_000

app = zzz.Router()


@app.get("/")
def index(ctx: zzz.Context) -> None:
    ctx.text(200, HELLO)


@app.post("/upload")
def upload(ctx: zzz.Context) -> None:
    ctx.text(200, str(len(ctx.raw_body())))


@app.get("/stream")
def stream(ctx: zzz.Context) -> None:
    count = min(int(ctx.query.get("n") or "100"), MAX_PIECES)

    def pieces() -> Iterator[bytes]:
        for i in range(count):
            yield b"%06d\n" % i

    ctx.stream(200, "text/plain", pieces())


@app.get("/astream")
async def astream(ctx: zzz.Context) -> None:
    count = min(int(ctx.query.get("n") or "100"), MAX_PIECES)

    async def pieces() -> AsyncIterator[bytes]:
        for i in range(count):
            if i % 50 == 0:
                await asyncio.sleep(0)
            yield b"%06d\n" % i

    ctx.stream(200, "text/plain", pieces())


@app.get("/boom")
def boom(ctx: zzz.Context) -> None:
    raise RuntimeError("soak: deliberate handler exception")


def _echo(ws: zzz.WebSocket, msg: str | bytes) -> None:
    if isinstance(msg, str):
        ws.send(msg)
    else:
        ws.send_binary(msg)


app.ws("/ws", on_message=_echo)
