"""zzz benchmark app with plain (sync) handlers: ``GET /`` plaintext and ``POST /echo``.

Served by ``python -m zzz run bench.apps.zzz_app:app --backend native|eventloop``.
"""

import zzz

app = zzz.Router()


@app.get("/")
def plaintext(ctx: zzz.Context) -> None:
    ctx.text(200, "Hello, World!")


@app.post("/echo")
def echo(ctx: zzz.Context) -> None:
    ctx.respond(200, "application/octet-stream", ctx.raw_body())
