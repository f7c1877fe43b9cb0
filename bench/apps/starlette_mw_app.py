"""Starlette app for bench/middleware.py, the same routes as zzz_mw_app (run by uvicorn).

``GZipMiddleware`` gets ``compresslevel=6`` (zzz's level; Starlette's default is 9) so the
comparison measures the servers, not two compression levels.
"""

import os

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.gzip import GZipMiddleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from bench.apps.mw_payload import JSON_DOC


async def index(request: Request) -> Response:
    return PlainTextResponse("ok")


async def json_doc(request: Request) -> Response:
    return Response(JSON_DOC, media_type="application/json")


app = Starlette(
    routes=[
        Route("/", index),
        Route("/json", json_doc),
        Mount("/static", StaticFiles(directory=os.environ["BENCH_STATIC_DIR"])),
    ],
    middleware=[Middleware(GZipMiddleware, minimum_size=256, compresslevel=6)],
)
