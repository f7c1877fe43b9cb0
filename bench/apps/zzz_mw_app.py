"""zzz app for bench/middleware.py: ``GET /json`` (100 KiB JSON, gzip) and ``/static/*``.

The static directory comes from ``BENCH_STATIC_DIR`` (the harness creates it).
"""

import os

import zzz
from bench.apps.mw_payload import JSON_DOC

app = zzz.Router()
app.use(zzz.compress(codings=["gzip"]))
app.use(zzz.static_files(os.environ["BENCH_STATIC_DIR"], prefix="/static"))


@app.get("/")
def index(ctx: zzz.Context) -> None:
    ctx.text(200, "ok")


@app.get("/json")
def json_doc(ctx: zzz.Context) -> None:
    ctx.respond(200, "application/json", JSON_DOC)
