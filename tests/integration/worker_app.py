"""The application the worker-process tests serve through the CLI
(``python -m zzz run tests.integration.worker_app:app``); it imports only zzz."""

from __future__ import annotations

import os
import time

import zzz

#: Longest ``/slow`` sleep, whatever the query asks.
MAX_SLOW_MS = 10_000
#: Exit status of a worker that ``/crash`` kills (the supervisor log names it).
CRASH_STATUS = 3

app = zzz.Router()


@app.get("/")
def index(ctx: zzz.Context) -> None:
    ctx.text(200, "ok")


@app.get("/pid")
def pid(ctx: zzz.Context) -> None:
    ctx.text(200, str(os.getpid()))


@app.get("/slow")
def slow(ctx: zzz.Context) -> None:
    time.sleep(min(int(ctx.query.get("ms") or "0"), MAX_SLOW_MS) / 1000)
    ctx.text(200, str(os.getpid()))


@app.get("/crash")
def crash(ctx: zzz.Context) -> None:
    os._exit(CRASH_STATUS)


@app.get("/client")
def client(ctx: zzz.Context) -> None:
    ctx.json(200, {"client": list(ctx.client) if ctx.client else None, "scheme": ctx.scheme,
                   "host": ctx.headers.get("host")})
