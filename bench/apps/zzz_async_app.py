"""zzz benchmark app with ``async def`` handlers: measures the coroutine dispatch path."""

import zzz

app = zzz.Router()


@app.get("/")
async def plaintext(ctx: zzz.Context) -> None:
    ctx.text(200, "Hello, World!")


@app.post("/echo")
async def echo(ctx: zzz.Context) -> None:
    ctx.respond(200, "application/octet-stream", ctx.raw_body())
